#ifndef NANOFIND_CTIFF_SHIM_H
#define NANOFIND_CTIFF_SHIM_H
#include <tiffio.h>
#endif
