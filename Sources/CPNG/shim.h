#ifndef NANOFIND_CPNG_SHIM_H
#define NANOFIND_CPNG_SHIM_H
#include <png.h>
#include <zlib.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* libpng reports errors by longjmp, which Swift must never see. These helpers do the whole
   decode or encode in C, catch libpng's longjmp here, and hand Swift a status code plus the
   reason in `message`. Nothing is printed: warnings are dropped. */

typedef struct {
    const unsigned char *data;
    size_t size;
    size_t position;
    /* encoder output (malloc'd, grown with realloc) */
    unsigned char *output;
    size_t output_size;
    size_t output_capacity;
    char message[256];
} nf_png_io;

typedef struct {
    uint32_t width;
    uint32_t height;
    int channels;     /* after transforms: 1 (grey) or 3 (RGB) */
    int bit_depth;    /* after transforms: 8 or 16 (16-bit samples are little-endian) */
    int color_type;   /* as stored in IHDR */
    int stored_bit_depth;
    unsigned char *pixels; /* malloc'd; the caller frees it with nf_png_free */
    size_t size;
} nf_png_image;

static inline void nf_png_set_message(nf_png_io *io, const char *text) {
    if (io == NULL) return;
    strncpy(io->message, text, sizeof io->message - 1);
    io->message[sizeof io->message - 1] = 0;
}

static inline void nf_png_error_fn(png_structp png, png_const_charp text) {
    nf_png_set_message((nf_png_io *)png_get_error_ptr(png), text);
    png_longjmp(png, 1);
}

static inline void nf_png_warning_fn(png_structp png, png_const_charp text) {
    (void)png; (void)text;
}

static inline void nf_png_read_fn(png_structp png, png_bytep out, size_t count) {
    nf_png_io *io = (nf_png_io *)png_get_io_ptr(png);
    if (io->size - io->position < count) png_error(png, "truncated: the file ends inside a chunk");
    memcpy(out, io->data + io->position, count);
    io->position += count;
}

static inline void nf_png_free(void *p) { free(p); }

/* Decodes a PNG held in memory. Grey stays grey (1..16 bit → 8 or 16 bit), palette and RGB
   become 8/16-bit RGB, alpha is dropped. Refuses images whose decoded size exceeds max_bytes
   before allocating them. Returns 0 on success. */
static inline int nf_png_decode(const unsigned char *data, size_t size, size_t max_bytes,
                                nf_png_image *out, nf_png_io *io) {
    memset(out, 0, sizeof *out);
    memset(io, 0, sizeof *io);
    io->data = data;
    io->size = size;
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        nf_png_set_message(io, "not a PNG file (bad signature)");
        return 1;
    }
    /* Every chunk's length is checked against what the file still holds before libpng sees it:
       libpng allocates a text chunk's claimed length before reading it (2 GB for a 44-byte file). */
    for (size_t pos = 8; pos + 8 <= size;) {
        size_t length = ((size_t)data[pos] << 24) | ((size_t)data[pos + 1] << 16) | ((size_t)data[pos + 2] << 8) | data[pos + 3];
        if (length > size - pos - 8 || size - pos - 8 - length < 4) {
            char type[5] = {0};
            memcpy(type, data + pos + 4, 4);
            for (int k = 0; k < 4; k++) if (type[k] < 32 || type[k] > 126) type[k] = '?';
            snprintf(io->message, sizeof io->message, "truncated: chunk %s claims %zu bytes, the file holds %zu after it",
                     type, length, size - pos - 8);
            return 1;
        }
        if (memcmp(data + pos + 4, "IEND", 4) == 0) break;
        pos += 12 + length;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, io, nf_png_error_fn, nf_png_warning_fn);
    if (png == NULL) { nf_png_set_message(io, "libpng could not start"); return 1; }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        nf_png_set_message(io, "libpng could not start");
        return 1;
    }
    unsigned char *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free((void *)pixels);
        free((void *)rows);
        return 1;
    }
    png_set_read_fn(png, io, nf_png_read_fn);
    png_set_user_limits(png, 1000000, 1000000);
    png_set_chunk_malloc_max(png, 16u << 20);
    png_read_info(png, info);
    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, NULL, NULL, NULL);
    out->color_type = color_type;
    out->stored_bit_depth = bit_depth;
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    /* Alpha is dropped, also the alpha a palette's (or grey image's) tRNS chunk would add. */
    if ((color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    if (bit_depth == 16) png_set_swap(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    int depth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if ((channels != 1 && channels != 3) || (depth != 8 && depth != 16) ||
        rowbytes != (size_t)width * (size_t)channels * (size_t)(depth / 8)) {
        png_error(png, "unsupported colour layout after conversion");
    }
    if (width == 0 || height == 0 || rowbytes == 0 || height > max_bytes / rowbytes) {
        png_error(png, "image size is larger than the file can hold (decompression limit)");
    }
    pixels = (unsigned char *)malloc(rowbytes * height);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * height);
    if (pixels == NULL || rows == NULL) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    out->width = width;
    out->height = height;
    out->channels = channels;
    out->bit_depth = depth;
    out->pixels = pixels;
    out->size = rowbytes * height;
    free((void *)rows);
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

static inline void nf_png_write_fn(png_structp png, png_bytep data, size_t count) {
    nf_png_io *io = (nf_png_io *)png_get_io_ptr(png);
    if (io->output_capacity - io->output_size < count) {
        size_t capacity = io->output_capacity ? io->output_capacity : 65536;
        while (capacity - io->output_size < count) capacity *= 2;
        unsigned char *grown = (unsigned char *)realloc(io->output, capacity);
        if (grown == NULL) png_error(png, "out of memory");
        io->output = grown;
        io->output_capacity = capacity;
    }
    memcpy(io->output + io->output_size, data, count);
    io->output_size += count;
}

static inline void nf_png_flush_fn(png_structp png) { (void)png; }

/* The one libpng write path: rows of `rowbytes` bytes, the given colour type, depth and row
   filter, a palette when `entries` > 0, 16-bit samples
   given little-endian; or, when `stream` is given, no rows: that zlib stream of them (made by
   the caller, rows already filtered and big-endian) as the image data. On success io->output holds the file (free it with
   nf_png_free). */
static inline int nf_png_encode_rows(const unsigned char *pixels, uint32_t width, uint32_t height, size_t rowbytes,
                                     int color_type, int bit_depth, int filter,
                                     const unsigned char *palette, int entries,
                                     const unsigned char *stream, size_t stream_size, nf_png_io *io) {
    memset(io, 0, sizeof *io);
    if (entries < 0 || entries > 256) { nf_png_set_message(io, "palette needs at most 256 entries"); return 1; }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, io, nf_png_error_fn, nf_png_warning_fn);
    if (png == NULL) { nf_png_set_message(io, "libpng could not start"); return 1; }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        nf_png_set_message(io, "libpng could not start");
        return 1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(io->output);
        io->output = NULL;
        io->output_size = 0;
        return 1;
    }
    png_set_write_fn(png, io, nf_png_write_fn, nf_png_flush_fn);
    /* Fast zlib level (RGB plots; masks, labels and overlays come compressed): level 1 is several
       times faster than the default 6 for a few per cent more bytes. */
    png_set_compression_level(png, 1);
    png_set_filter(png, 0, filter);
    png_set_IHDR(png, info, width, height, bit_depth, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (entries > 0) {
        png_color colours[256];
        for (int k = 0; k < entries; k++) {
            colours[k].red = palette[3 * k]; colours[k].green = palette[3 * k + 1]; colours[k].blue = palette[3 * k + 2];
        }
        png_set_PLTE(png, info, colours, entries);
    }
    png_write_info(png, info);
    if (stream != NULL) {
        const size_t most = (size_t)1 << 30;  /* a chunk holds below 2^31 bytes */
        for (size_t at = 0; at < stream_size; at += most) {
            png_write_chunk(png, (png_const_bytep)"IDAT", stream + at, stream_size - at < most ? stream_size - at : most);
        }
        png_write_chunk(png, (png_const_bytep)"IEND", NULL, 0);
    } else {
        if (bit_depth == 16) png_set_swap(png);
        for (uint32_t y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * rowbytes));
        png_write_end(png, info);
    }
    png_destroy_write_struct(&png, &info);
    return 0;
}

/* A PNG whose image data the caller compressed: `stream`, the zlib stream of the rows, each led
   by its filter byte; a palette when `entries` > 0. On success io->output holds the file (free
   it with nf_png_free). */
static inline int nf_png_encode_stream(uint32_t width, uint32_t height, int color_type, int bit_depth,
                                       const unsigned char *palette, int entries,
                                       const unsigned char *stream, size_t size, nf_png_io *io) {
    return nf_png_encode_rows(NULL, width, height, 0, color_type, bit_depth, PNG_FILTER_NONE, palette, entries,
                              stream, size, io);
}

/* Encodes 8/16-bit RGB pixels; 16-bit input samples are little-endian. Row filter: libpng's
   default tries all five on every row and keeps the best, which costs more than the deflate
   itself; photographs and plots take the cheap SUB filter. (Grey images, masks and label
   images, and palette images, overlays, are compressed by the caller: `nf_png_encode_stream`.) */
static inline int nf_png_encode_rgb(const unsigned char *pixels, uint32_t width, uint32_t height, int bit_depth,
                                    nf_png_io *io) {
    size_t rowbytes = (size_t)width * 3 * (size_t)(bit_depth / 8);
    return nf_png_encode_rows(pixels, width, height, rowbytes, PNG_COLOR_TYPE_RGB, bit_depth, PNG_FILTER_SUB, NULL, 0, NULL, 0, io);
}

#endif
