/*
 * Reading 28 x 28 digits for the examples: an uncompressed MNIST IDX image file
 * (t10k-images-idx3-ubyte: magic 00 00 08 03, big-endian counts, then the pixels) or a binary
 * PGM (P5, 28 x 28, maxval <= 255; several images may follow one another in one file).
 * Pixels are MNIST intensities: 0 = background, 255 = ink (a PGM of dark ink on light paper
 * must be inverted first). Header-only, C99, no dependencies beyond the C library.
 */
#ifndef DIGIT_FILES_H
#define DIGIT_FILES_H

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the whole file (at most max_bytes), or NULL with a message in err */
static unsigned char *digit_read_file(const char *path, size_t max_bytes, size_t *size,
                                      char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = (unsigned char *)malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap || cap > max_bytes) break;
        unsigned char *bigger = (unsigned char *)realloc(buf, cap * 2);
        if (!bigger) { free(buf); buf = NULL; break; }
        buf = bigger;
        cap *= 2;
    }
    const int bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > max_bytes) {
        snprintf(err, errlen, "%s: %s", path, !buf ? "out of memory" : bad ? "read error" : "too large");
        free(buf);
        return NULL;
    }
    *size = n;
    return buf;
}

/* one PGM header field: skips whitespace and # comments, reads a decimal number */
static int pgm_field(const unsigned char *b, size_t n, size_t *at, unsigned *value)
{
    size_t i = *at;
    for (;;) {
        while (i < n && isspace(b[i])) i++;
        if (i < n && b[i] == '#') {
            while (i < n && b[i] != '\n') i++;
            continue;
        }
        break;
    }
    if (i >= n || !isdigit(b[i])) return 0;
    unsigned v = 0;
    while (i < n && isdigit(b[i]) && v < 100000) v = v * 10 + (unsigned)(b[i++] - '0');
    *value = v;
    *at = i;
    return 1;
}

/* The digits of an IDX or PGM file: a malloc'ed (count, 28, 28) uint8 array, or NULL with a
 * message in err. */
static unsigned char *digit_load(const char *path, size_t *count, char *err, size_t errlen)
{
    size_t n = 0;
    unsigned char *b = digit_read_file(path, (size_t)1 << 31, &n, err, errlen);
    if (!b) return NULL;
    unsigned char *out = NULL;
    *count = 0;
    if (n >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 0x08 && b[3] == 3) {   /* IDX, ubyte, 3-D */
        if (n < 16) {
            snprintf(err, errlen, "%s: truncated IDX header", path);
            goto done;
        }
        unsigned long d[3];
        for (int k = 0; k < 3; k++)
            d[k] = (unsigned long)b[4 + 4 * k] << 24 | (unsigned long)b[5 + 4 * k] << 16
                 | (unsigned long)b[6 + 4 * k] << 8 | (unsigned long)b[7 + 4 * k];
        if (d[1] != 28 || d[2] != 28) {
            snprintf(err, errlen, "%s: images are %lux%lu, expected 28x28", path, d[1], d[2]);
            goto done;
        }
        if ((n - 16) / 784 < d[0]) {
            snprintf(err, errlen, "%s: truncated (%lu images announced)", path, d[0]);
            goto done;
        }
        out = (unsigned char *)malloc(d[0] * 784 + 1);
        if (!out) {
            snprintf(err, errlen, "%s: out of memory", path);
            goto done;
        }
        memcpy(out, b + 16, d[0] * 784);
        *count = d[0];
    } else if (n >= 2 && b[0] == 'P' && b[1] == '5') {                      /* binary PGM(s) */
        out = (unsigned char *)malloc(n / 784 * 784 + 784);
        if (!out) {
            snprintf(err, errlen, "%s: out of memory", path);
            goto done;
        }
        size_t at = 0;
        while (at + 1 < n && b[at] == 'P' && b[at + 1] == '5') {
            unsigned w, h, maxval;
            at += 2;
            if (!pgm_field(b, n, &at, &w) || !pgm_field(b, n, &at, &h) || !pgm_field(b, n, &at, &maxval)
                || at >= n || !isspace(b[at]) || maxval == 0 || maxval > 255) {
                snprintf(err, errlen, "%s: bad PGM header (image %lu)", path, (unsigned long)*count);
                goto fail;
            }
            at++;
            if (w != 28 || h != 28) {
                snprintf(err, errlen, "%s: image %lu is %ux%u, expected 28x28", path, (unsigned long)*count, w, h);
                goto fail;
            }
            if (n - at < 784) {
                snprintf(err, errlen, "%s: truncated PGM (image %lu)", path, (unsigned long)*count);
                goto fail;
            }
            for (int k = 0; k < 784; k++)   /* to 0..255 (maxval 255: unchanged) */
                out[*count * 784 + k] = (unsigned char)((b[at + k] * 255u + maxval / 2) / maxval);
            at += 784;
            ++*count;
            while (at < n && isspace(b[at])) at++;
        }
        if (at != n) {
            snprintf(err, errlen, "%s: unexpected data after PGM image %lu", path, (unsigned long)*count);
            goto fail;
        }
    } else {
        snprintf(err, errlen, "%s: neither an uncompressed IDX image file nor a binary PGM", path);
    }
    goto done;
fail:
    free(out);
    out = NULL;
    *count = 0;
done:
    free(b);
    return out;
}

#endif /* DIGIT_FILES_H */
