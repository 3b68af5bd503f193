/*
 * int8 inference (issue 18): the quantized network, its layouts, and its kernel table.
 * docs/int8.md describes the scheme; csrc/README.md maps the functions.
 *
 * Integer layers: C1, C3, C5 and F6 multiply int8 weights (per output map scale) by 8-bit
 * activations and sum in int32, exactly. Activations are stored as uint8: the input image
 * as p = round(x / 0.005) + 20 (the preprocessed range [-0.1, 1.175] maps onto 0..255, MNIST
 * digits exactly), the S2, S4 and C5 outputs as q + 128 with q = round(y / s) in -127..127
 * (per-tensor scales s calibrated on digits). Every accumulator is corrected for the
 * activation's zero point in int32: acc = sum w * u - zp * sum w = sum w * (u - zp).
 * The float epilogue of each layer, the same in every variant:
 *   C1, C3, C5, F6: a = (float)acc * mul[m] + bias[m]  (mul = weight scale * input scale);
 *                   y = squash(a)
 *   S2, S4:         a = coef * ((y00 + y01) + (y10 + y11)) + bias; y = squash(a)
 *   requantize:     q = clamp(rint(y * inv_scale), -127, 127)   (S2, S4, C5 outputs)
 * The output layer (softmax head's dense 84 -> 10, or the RBF distances) runs in float
 * on F6's float outputs (850 of 340,908 connections).
 */
#ifndef LENET_Q8_H
#define LENET_Q8_H

#include <stddef.h>
#include <stdint.h>

#include "lenet.h"
#include "layers_impl.h"

/* int8 weight layouts (lenet_native/quantize.py packs them) */
/* A 5x5 kernel as 7 groups of 4 taps (one vpdpbusd each): groups 0..4 are row ky's taps
 * kx 0..3, group 5 the taps kx 4 of rows 0..3, group 6 the tap (4, 4) and 3 zeros */
#define LENET_Q8_KBYTES 28
#define LENET_Q8_TAP(ky, kx) ((kx) < 4 ? 4 * (ky) + (kx) : 20 + (ky))   /* its byte */
#define LENET_Q8_W1 (6 * LENET_Q8_KBYTES)      /* C1 (6, 28) */
#define LENET_Q8_W3 (60 * LENET_Q8_KBYTES)     /* C3 (60 pairs, 28), Table I pair order */
#define LENET_Q8_C5M 128                       /* C5 outputs padded to 128 */
#define LENET_Q8_W5 (100 * LENET_Q8_C5M * 4)   /* C5 (100, 128, 4): w[k/4][o][k%4], k = 25 c + 5 ky + kx */
#define LENET_Q8_F6M 96                        /* F6 outputs padded to 96 */
#define LENET_Q8_W6 (30 * LENET_Q8_F6M * 4)    /* F6 (30, 96, 4): w[k/4][o][k%4] */
#define LENET_Q8_NW (LENET_Q8_W1 + LENET_Q8_W3 + LENET_Q8_W5 + LENET_Q8_W6)
#define LENET_Q8_OFF_W5 0                               /* the big ones first, on 64-byte lines */
#define LENET_Q8_OFF_W6 (LENET_Q8_OFF_W5 + LENET_Q8_W5)
#define LENET_Q8_OFF_W1 (LENET_Q8_OFF_W6 + LENET_Q8_W6)
#define LENET_Q8_OFF_W3 (LENET_Q8_OFF_W1 + LENET_Q8_W1)

/* int32 zero-point corrections zp * sum(w) per output map: C1 (6), C3 (16), C5 (120), F6 (84) */
#define LENET_Q8_OFF_Z1 0
#define LENET_Q8_OFF_Z3 6
#define LENET_Q8_OFF_Z5 22
#define LENET_Q8_OFF_Z6 142
#define LENET_Q8_NZ 226

/* float parameters */
#define LENET_Q8_OFF_MUL1 0      /* 6 */
#define LENET_Q8_OFF_B1 6        /* 6 */
#define LENET_Q8_OFF_S2C 12      /* 6 */
#define LENET_Q8_OFF_S2B 18      /* 6 */
#define LENET_Q8_OFF_MUL3 24     /* 16 */
#define LENET_Q8_OFF_B3 40       /* 16 */
#define LENET_Q8_OFF_S4C 56      /* 16 */
#define LENET_Q8_OFF_S4B 72      /* 16 */
#define LENET_Q8_OFF_MUL5 88     /* 120 */
#define LENET_Q8_OFF_B5 208      /* 120 */
#define LENET_Q8_OFF_MUL6 328    /* 84 */
#define LENET_Q8_OFF_B6 412      /* 84 */
#define LENET_Q8_OFF_OUTW 496    /* 840: dense weights (10, 84) or RBF prototypes */
#define LENET_Q8_OFF_OUTB 1336   /* 10 */
#define LENET_Q8_OFF_INV2 1346   /* 1 / s(S2) */
#define LENET_Q8_OFF_INV4 1347   /* 1 / s(S4) */
#define LENET_Q8_OFF_INV5 1348   /* 1 / s(C5) */
#define LENET_Q8_NF 1352

#define LENET_Q8_IN_SCALE 0.005f   /* input step: 1.275 / 255 */
#define LENET_Q8_IN_ZERO 20        /* the input code of 0.0 (the background -0.1 is code 0) */
#define LENET_Q8_ACT_ZERO 128      /* uint8 code of 0 for S2, S4, C5 outputs */

typedef struct {
    const int8_t *w;       /* LENET_Q8_NW, 64-byte aligned */
    const int32_t *zw;     /* LENET_Q8_NZ */
    const float *f;        /* LENET_Q8_NF */
    const int32_t *c3_out, *c3_in;   /* Table I's 60 pairs, sorted by C3 map */
    int head;              /* LENET_HEAD_* */
    int isa;               /* LENET_ISA_PORTABLE or LENET_ISA_AVX512VNNI (lenet_q8_supported) */
} lenet_qnet;

/* What a forward can hand back per image for tests (lenet_q8_forward's qacts): the int32
 * accumulators, corrected for the zero point, and the uint8 codes of the requantized layers */
#define LENET_Q8_QA_C1 0                 /* int32 (6, 28, 28) */
#define LENET_Q8_QA_C3 4704              /* int32 (16, 10, 10) */
#define LENET_Q8_QA_C5 6304              /* int32 (120,) */
#define LENET_Q8_QA_F6 6424              /* int32 (84,) */
#define LENET_Q8_QA_IN 6508              /* uint8 codes, stored one per int32: input (32, 32) */
#define LENET_Q8_QA_S2 7532              /* (6, 14, 14) */
#define LENET_Q8_QA_S4 8708              /* (16, 5, 5) */
#define LENET_Q8_QA_C5Q 9108             /* (120,) */
#define LENET_Q8_NQA 9228                /* int32 per image */

/* One variant's int8 kernels. input: one image's floats x (1024) -> its codes q (1024,
 * then zeros up to LENET_Q8_XPAD): p = (int)(min(max(x * 200 + 20, 0), 255) + 0.5), the
 * multiply and the add rounded apart (NaN -> 0); returns 1 if x holds a NaN or an
 * infinity. forward_one: one image's input codes x -> out (10,); qa (LENET_Q8_NQA,) or
 * NULL; ws: LENET_Q8_WS bytes, 64-byte aligned. */
#define LENET_Q8_XPAD (1024 + 128)
#define LENET_Q8_WS (96 * 1024)
typedef struct {
    int (*input)(uint8_t *restrict q, const float *restrict x);
    void (*forward_one)(float *restrict out, int32_t *restrict qa, const lenet_qnet *qn,
                        const uint8_t *restrict x, unsigned char *restrict ws);
} lenet_q8_kernels;

extern const lenet_q8_kernels lenet_q8_kernels_portable;
#ifdef LENET_HAVE_AVX512VNNI
extern const lenet_q8_kernels lenet_q8_kernels_avx512vnni;
#endif

/* isa.c: the int8 column of the one variant table */
const lenet_q8_kernels *lenet_q8_kernels_for(int isa);
int lenet_q8_compiled(int isa);
int lenet_q8_supported(int isa);
int lenet_q8_best_isa(void);

/* The scratch bytes lenet_q8_forward needs for nthreads threads */
size_t lenet_q8_workspace_size(int nthreads);

/* N preprocessed images x (N, 32, 32) float -> out (N, 10): the quantized network.
 * qa (N, LENET_Q8_NQA) or NULL. Returns LENET_ERR_NONFINITE for a NaN or infinite input
 * (values outside [-0.1, 1.175] saturate to the input codes 0 and 255). */
int lenet_q8_forward(float *restrict out, int32_t *restrict qa, const lenet_qnet *qn,
                     const float *restrict x, int64_t N, int nthreads,
                     unsigned char *restrict workspace, size_t workspace_bytes);

/* ---- the end of one image's forward, the same in every int8 variant ---- */

/* qa (LENET_Q8_NQA,): the requantized codes of S2 (1176), S4 (400) and C5 (120) */
static inline void q8_keep_codes(int32_t *restrict qa, const uint8_t *restrict q2,
                                 const uint8_t *restrict q4, const uint8_t *restrict q5)
{
    for (int k = 0; k < 1176; k++) qa[LENET_Q8_QA_S2 + k] = q2[k];
    for (int k = 0; k < 400; k++) qa[LENET_Q8_QA_S4 + k] = q4[k];
    for (int k = 0; k < 120; k++) qa[LENET_Q8_QA_C5Q + k] = q5[k];
}

/* out (10,): the float output layer on F6 (84,): RBF distances or dense logits */
static inline void q8_head(float *restrict out, const lenet_qnet *qn, const float *restrict f6)
{
    const float *F = qn->f;
    if (qn->head == LENET_HEAD_RBF)
        rbf_forward_one(out, f6, F + LENET_Q8_OFF_OUTW, 84, 10);
    else
        dense_forward_one(out, f6, F + LENET_Q8_OFF_OUTW, F + LENET_Q8_OFF_OUTB, 84, 10);
}

#endif /* LENET_Q8_H */
