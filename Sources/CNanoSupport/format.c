#include "CNanoSupport.h"
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#if defined(__APPLE__)
#include <xlocale.h>
#endif

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale = (locale_t)0;
static void make_c_locale(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

int nf_format_fixed(char *buffer, size_t size, double value, int digits) {
    pthread_once(&c_locale_once, make_c_locale);
    /* This thread only, for this call: "." for the decimal point whatever the process set. */
    locale_t previous = c_locale ? uselocale(c_locale) : (locale_t)0;
    int n = snprintf(buffer, size, "%.*f", digits, value);
    if (previous) uselocale(previous);
    return n;
}
