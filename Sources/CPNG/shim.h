#ifndef NANOFIND_CPNG_SHIM_H
#define NANOFIND_CPNG_SHIM_H
#include <png.h>
#endif
