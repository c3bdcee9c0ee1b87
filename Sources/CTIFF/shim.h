#ifndef NANOFIND_CTIFF_SHIM_H
#define NANOFIND_CTIFF_SHIM_H
#include <tiffio.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* libtiff reports problems through printf-style callbacks with a va_list, which Swift cannot
   implement. These helpers keep the first error message of one open TIFF in a buffer (so the
   Swift reader can put libtiff's reason into its MicrographError) and drop warnings, so
   nothing is ever printed on stderr. */
typedef struct {
    char message[512];
    int count;
} nf_tiff_messages;

static inline int nf_tiff_error_handler(TIFF *tif, void *user, const char *module,
                                        const char *fmt, va_list ap) {
    (void)tif; (void)module;
    nf_tiff_messages *m = (nf_tiff_messages *)user;
    if (m != NULL) {
        if (m->count == 0) vsnprintf(m->message, sizeof m->message, fmt, ap);
        m->count += 1;
    }
    return 1; /* handled: do not call the global handler */
}

static inline int nf_tiff_warning_handler(TIFF *tif, void *user, const char *module,
                                          const char *fmt, va_list ap) {
    (void)tif; (void)user; (void)module; (void)fmt; (void)ap;
    return 1;
}

/* Opens `path` with per-handle error capture and an allocation cap. The global handlers are
   removed too, for the few libtiff paths that still report through them. */
static inline TIFF *nf_tiff_open(const char *path, const char *mode, nf_tiff_messages *messages,
                                 tmsize_t max_single_alloc) {
    TIFFSetErrorHandler(NULL);
    TIFFSetWarningHandler(NULL);
    TIFFOpenOptions *options = TIFFOpenOptionsAlloc();
    if (options == NULL) return NULL;
    if (max_single_alloc > 0) TIFFOpenOptionsSetMaxSingleMemAlloc(options, max_single_alloc);
    TIFFOpenOptionsSetErrorHandlerExtR(options, nf_tiff_error_handler, messages);
    TIFFOpenOptionsSetWarningHandlerExtR(options, nf_tiff_warning_handler, NULL);
    TIFF *tif = TIFFOpenExt(path, mode, options);
    TIFFOpenOptionsFree(options);
    return tif;
}

/* TIFFGetField is variadic; these fixed-signature wrappers are callable from Swift. */
static inline int nf_tiff_get_u16(TIFF *tif, uint32_t tag, uint16_t *value) {
    return TIFFGetFieldDefaulted(tif, tag, value);
}
static inline int nf_tiff_get_u32(TIFF *tif, uint32_t tag, uint32_t *value) {
    return TIFFGetFieldDefaulted(tif, tag, value);
}
static inline int nf_tiff_get_float(TIFF *tif, uint32_t tag, float *value) {
    return TIFFGetField(tif, tag, value);
}
static inline int nf_tiff_get_string(TIFF *tif, uint32_t tag, const char **value) {
    return TIFFGetField(tif, tag, value);
}
/* The first ExtraSamples value (0 unspecified, 1 associated alpha, 2 unassociated alpha): 1 when
   the page has one, 0 when not. */
static inline int nf_tiff_get_extrasample(TIFF *tif, uint16_t *value) {
    uint16_t count = 0;
    uint16_t *values = NULL;
    if (TIFFGetField(tif, TIFFTAG_EXTRASAMPLES, &count, &values) != 1 || count < 1 || values == NULL) return 0;
    *value = values[0];
    return 1;
}
static inline int nf_tiff_set_u16(TIFF *tif, uint32_t tag, uint16_t value) {
    return TIFFSetField(tif, tag, (int)value);
}
static inline int nf_tiff_set_u32(TIFF *tif, uint32_t tag, uint32_t value) {
    return TIFFSetField(tif, tag, value);
}
#endif
