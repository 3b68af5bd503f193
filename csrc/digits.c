/*
 * Network input from raw MNIST digits, gathered a batch at a time: the training set stays
 * uint8 (47 MB for 60,000 digits instead of 287 MB of float32), and each batch is padded
 * and normalised as it is taken, with the float operations of lenet_native.preprocess:
 *   background (the 2 px border)  -0.1f
 *   pixel p                       (float)p * (float)(1.275 / 255) - 0.1f
 * two float32 roundings, never a fused multiply-add (see digit_lut), so the result has the
 * bits of preprocess.
 */
#include <stdint.h>

#include "lenet.h"

#define CHECK(cond, code) do { if (!(cond)) return (code); } while (0)

/* lut (256,): the input value of each pixel value, as preprocess computes it. The product
 * goes through a volatile so that it is rounded to float before the subtraction whatever
 * the build's contraction flags (GCC's -ffp-contract=fast fuses across statements and
 * changes 1 bit of some values); 256 entries per call, so the cost is nil. */
static void digit_lut(float *restrict lut)
{
    const float scale = (float)(1.275 / 255.0), offset = 0.1f;
    for (int p = 0; p < 256; p++) {
        volatile float prod = (float)p * scale;
        lut[p] = prod - offset;
    }
}

/* out (32, 32) = digit (28, 28) placed at row 2 + dy, column 2 + dx of a background frame */
static void gather_one(float *restrict out, const uint8_t *restrict digit, const float *restrict lut,
                       int dy, int dx)
{
    const float bg = lut[0];
    for (int i = 0; i < LENET_IN * LENET_IN; i++) out[i] = bg;
    for (int r = 0; r < 28; r++) {
        float *o = out + (r + 2 + dy) * LENET_IN + 2 + dx;
        const uint8_t *d = digit + r * 28;
        for (int c = 0; c < 28; c++) o[c] = lut[d[c]];
    }
}

int lenet_digits_gather(float *restrict out, const uint8_t *restrict digits,
                        const int64_t *restrict index, const int8_t *restrict shift, int64_t B,
                        int64_t N)
{
    CHECK(B >= 0 && N >= 0, LENET_ERR_SIZE);
    if (B == 0) return LENET_OK;
    CHECK(out, LENET_ERR_NULL);
    if (index) {
        for (int64_t b = 0; b < B; b++) CHECK(index[b] >= 0 && index[b] < N, LENET_ERR_ARG);
    } else {
        CHECK(B <= N, LENET_ERR_SIZE);
    }
    if (shift)
        for (int64_t k = 0; k < 2 * B; k++) CHECK(shift[k] >= -2 && shift[k] <= 2, LENET_ERR_ARG);
    CHECK(digits, LENET_ERR_NULL);   /* B > 0 rows of [0, N): N > 0 */
    float lut[256];
    digit_lut(lut);
    for (int64_t b = 0; b < B; b++) {
        const int64_t row = index ? index[b] : b;
        gather_one(out + b * (LENET_IN * LENET_IN), digits + row * (28 * 28), lut,
                   shift ? shift[2 * b] : 0, shift ? shift[2 * b + 1] : 0);
    }
    return LENET_OK;
}
