#ifndef NANOFIND_CFFTW_SHIM_H
#define NANOFIND_CFFTW_SHIM_H
#include <fftw3.h>
#endif
