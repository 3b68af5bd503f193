/*
 * export-classify: classify 28 x 28 digits with a model baked into the program by
 * `lenet-native export --pretrained softmax lenet5.c` (no library, no model file):
 *
 *   lenet-native export --pretrained softmax lenet5.c
 *   cc -std=c99 -O2 -I. examples/c/export_classify.c lenet5.c -lm -o export-classify
 *   ./export-classify [--outputs] t10k-images-idx3-ubyte
 *
 * Prints one label per line (--outputs: and the ten outputs). Another stem than lenet5:
 * -DLENET_EXPORT_HEADER='"digits.h"' -DLENET_EXPORT_STEM=digits.
 */
#include <stdio.h>
#include <string.h>

#include "digit_files.h"

#ifndef LENET_EXPORT_HEADER
#define LENET_EXPORT_HEADER "lenet5.h"
#endif
#ifndef LENET_EXPORT_STEM
#define LENET_EXPORT_STEM lenet5
#endif
#include LENET_EXPORT_HEADER

#define GLUE(a, b) a##b
#define NAME(stem, f) GLUE(stem, f)
#define PREDICT NAME(LENET_EXPORT_STEM, _predict)
#define PREPROCESS NAME(LENET_EXPORT_STEM, _preprocess)

int main(int argc, char **argv)
{
    const int show_outputs = argc == 3 && strcmp(argv[1], "--outputs") == 0;
    if (argc != 2 + show_outputs) {
        fprintf(stderr, "usage: %s [--outputs] IMAGES (IDX or PGM, 28x28)\n", argv[0]);
        return 2;
    }
    char err[512];
    size_t n = 0;
    unsigned char *digits = digit_load(argv[1 + show_outputs], &n, err, sizeof err);
    if (!digits) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        float x[32 * 32], out[10];
        PREPROCESS(digits + i * 784, x);
        printf("%d", PREDICT(x, out));
        if (show_outputs)
            for (int k = 0; k < 10; k++) printf(" %.9g", (double)out[k]);
        printf("\n");
    }
    free(digits);
    return 0;
}
