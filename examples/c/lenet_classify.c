/*
 * lenet-classify: classify 28 x 28 digits with a .lenet model through liblenet.
 *
 *   lenet-classify [--threads N] [--isa NAME] [--outputs] [--time] MODEL.lenet IMAGES
 *
 * IMAGES: an uncompressed MNIST IDX image file (t10k-images-idx3-ubyte) or a binary PGM
 * (P5, 28 x 28, 0 = background; several may be concatenated). Prints one predicted label
 * per line; --outputs adds the head's ten outputs (what LeNet5.forward returns, printed
 * with 9 significant digits: exact float32 values). --time reports on stderr the median
 * latency of one image (one call per image, one thread) and the images/s of the whole
 * file in one call. --threads: threads of the whole-file call (default: every CPU);
 * --isa: portable, vec128, avx2, avx512 or best (default).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lenet_native.h"
#include "digit_files.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int usage(void)
{
    fprintf(stderr, "usage: lenet-classify [--threads N] [--isa NAME] [--outputs] [--time] MODEL.lenet IMAGES\n");
    return 2;
}

int main(int argc, char **argv)
{
    int threads = 1, show_outputs = 0, timing = 0;
#ifdef _SC_NPROCESSORS_ONLN
    threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
#endif
    const char *isa = NULL, *paths[2];
    int npaths = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--isa") == 0 && i + 1 < argc) isa = argv[++i];
        else if (strcmp(argv[i], "--outputs") == 0) show_outputs = 1;
        else if (strcmp(argv[i], "--time") == 0) timing = 1;
        else if (argv[i][0] == '-' && argv[i][1] != '\0') return usage();
        else if (npaths < 2) paths[npaths++] = argv[i];
        else return usage();
    }
    if (npaths != 2 || threads < 1) return usage();

    lenet_model *model;
    int st = lenet_model_load(&model, paths[0]);
    if (st != LENET_OK) {
        fprintf(stderr, "lenet-classify: %s: %s\n", paths[0], lenet_strerror(st));
        return 1;
    }
    if ((st = lenet_model_set_isa(model, isa)) != LENET_OK) {
        fprintf(stderr, "lenet-classify: --isa %s: %s\n", isa, lenet_strerror(st));
        lenet_model_free(model);
        return 1;
    }
    char err[512];
    size_t n = 0;
    unsigned char *digits = digit_load(paths[1], &n, err, sizeof err);
    if (!digits) {
        fprintf(stderr, "lenet-classify: %s\n", err);
        lenet_model_free(model);
        return 1;
    }
    int32_t *labels = (int32_t *)malloc((n + 1) * sizeof(int32_t));
    float *out = (float *)malloc((n + 1) * 10 * sizeof(float));
    if (!labels || !out) st = LENET_ERR_NOMEM;
    if (st == LENET_OK) st = lenet_model_labels_u8(model, labels, digits, n, threads);
    if (st == LENET_OK && show_outputs) st = lenet_model_outputs_u8(model, out, digits, n, threads);
    if (st != LENET_OK) {
        fprintf(stderr, "lenet-classify: %s\n", lenet_strerror(st));
    } else {
        for (size_t i = 0; i < n; i++) {
            printf("%d", (int)labels[i]);
            if (show_outputs)
                for (int k = 0; k < 10; k++) printf(" %.9g", (double)out[i * 10 + k]);
            printf("\n");
        }
    }
    if (st == LENET_OK && timing && n > 0) {
        /* one image per call, one thread: the latency an interactive caller sees */
        const size_t calls = n < 2000 ? (n < 200 ? 200 : n) : 2000;
        double *t = (double *)malloc(calls * sizeof(double));
        for (size_t i = 0; st == LENET_OK && t && i < calls; i++) {
            const double t0 = now();
            st = lenet_model_labels_u8(model, labels, digits + (i % n) * 784, 1, 1);
            t[i] = now() - t0;
        }
        /* the whole file in one call, best of 3 */
        double best = 1e300;
        for (int r = 0; st == LENET_OK && r < 3; r++) {
            const double t0 = now();
            st = lenet_model_labels_u8(model, labels, digits, n, threads);
            const double dt = now() - t0;
            if (dt < best) best = dt;
        }
        if (t && st == LENET_OK) {
            qsort(t, calls, sizeof(double), cmp_double);
            const char *name = "?";
            lenet_model_isa(model, &name);
            fprintf(stderr, "lenet-classify: one image: median %.1f us over %lu calls (1 thread, %s)\n",
                    1e6 * t[calls / 2], (unsigned long)calls, name);
            fprintf(stderr, "lenet-classify: whole file: %lu images in %.3f s = %.0f images/s (%d threads)\n",
                    (unsigned long)n, best, (double)n / best, threads);
        }
        free(t);
    }
    free(out);
    free(labels);
    free(digits);
    lenet_model_free(model);
    return st == LENET_OK ? 0 : 1;
}
