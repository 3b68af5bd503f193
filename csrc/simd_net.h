/*
 * Internal header of the SIMD variants of the whole network (the kernels behind
 * lenet_kernels, simd_api.h). Three files include it, each compiled once per instruction
 * set (setup.py): -DLENET_SIMD_AVX2 with -mavx2 -mfma, -DLENET_SIMD_AVX512 with
 * -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma, and -DLENET_SIMD_VEC128 with no
 * -m flags (generic 4-lane vectors). Nothing here runs unless lenet_isa_supported() said
 * the CPU has that instruction set.
 *
 *   simd_forward.c  the forward: one image (spatial layout) and a block of images (lanes),
 *                   the element-wise squash, and the variant's kernel table
 *   simd_grad.c     the gradient of a block of images (lanes) and the element-wise SGD update
 *   simd_sdlm.c     one SDLM sample: the one-image backward fused with its update
 *
 * Two layouts, one arithmetic:
 *   - one image, "spatial": vectors run along a row of output pixels (C1, pooling) or
 *     along the row-major pixels of a map (C3);
 *   - a block, VL images side by side in the lanes: a (C, H, W) map becomes (C, H, W, VL),
 *     and every 5x5 tap is one broadcast-multiply-add over the lanes.
 * Every output element is computed by the same operations in the same order in both, so
 * an image's result is bit-for-bit the same alone or anywhere in a batch:
 *   conv (C1, C3): acc = bias; for each input map (C3: in pair-list order), for ki, for kj:
 *                  acc = fma(w, x, acc);
 *   subsampling:   fma(coef, (x00 + x01) + (x10 + x11), bias);
 *   dense (C5, F6, output) and RBF: VL partial sums, lane l taking k = l (mod VL) in
 *                  order, then the fixed tree of vhsum, then + bias;
 *   squash:        vsquash, lane-wise.
 * The dense layers always run image-major (one image's inputs contiguous), for one image
 * or for the VL images of a block.
 */
#ifndef LENET_SIMD_NET_H
#define LENET_SIMD_NET_H

#include <string.h>

#include "lenet.h"
#include "common.h"
#include "simd_api.h"
#include "simd.h"

/* ---- one symbol per variant ------------------------------------------------------------
 * The functions the three files share are external symbols, so each variant's copy gets
 * its own name: lenet_avx2_<name>, lenet_avx512_<name>, lenet_vec128_<name>, written
 * SIMD_FN(name); the three helpers below keep their plain names as macros for theirs. */
#if defined(LENET_SIMD_AVX512)
#define LENET_SIMD_TABLE lenet_kernels_avx512
#define SIMD_FN(name) lenet_avx512_##name
#elif defined(LENET_SIMD_AVX2)
#define LENET_SIMD_TABLE lenet_kernels_avx2
#define SIMD_FN(name) lenet_avx2_##name
#elif defined(LENET_SIMD_VEC128)
#define LENET_SIMD_TABLE lenet_kernels_vec128
#define SIMD_FN(name) lenet_vec128_##name
#else
#error "the simd_*.c files are compiled with -DLENET_SIMD_AVX2, -DLENET_SIMD_AVX512 or -DLENET_SIMD_VEC128"
#endif

#define forward_one_keep SIMD_FN(forward_one_keep)
#define conv_forward_lanes SIMD_FN(conv_forward_lanes)
#define dense_layers_forward SIMD_FN(dense_layers_forward)

/* ---- sizes ------------------------------------------------------------------------------ */
#define SIMD_MAX(a, b) ((a) > (b) ? (a) : (b))
#define RUP(n) (((n) + 15) & ~15)   /* floats, rounded up to 64 bytes */
#define PAD 32                      /* floats readable past the end of a map buffer */
#define LN VL                       /* images per block */
#define C5S RUP(LENET_C5)           /* row strides of the image-major C5, F6, output rows */
#define F6S RUP(LENET_F6)
#define OUTS 16
#define C1_NV (32 / VL)             /* vectors per C1 row in the spatial layout (build_xs) */
#define C3_NV (16 / VL)             /* vectors per C3 input row (build_ss, the backward's layout) */
/* C3's one-image forward with 16 lanes (simd_forward.c, c3_forward_spatial): a map's 100
 * outputs in C3P_NV vectors, C3P_VB of them accumulated at a time, for C3_MB output maps at
 * a time (C3_MB * C3P_VB accumulators); its scratch: accumulators (16, C3P_NV VL), windows
 * (25, C3P_NV VL), packed rows (5, C3P_STRIDE). With 4 or 8 lanes (c3_forward_rows):
 * build_ss's rows and a packed tail (TL_FLOATS), C3P_NV vectors per map already. */
#define C3P_NV ((100 + VL - 1) / VL)
#define C3P_VB C3P_NV
#define C3_MB 2
#define C3P_STRIDE 160
#if VL < 16
#define TL_FLOATS (6 * 5 * 32)
#else
#define TL_FLOATS 0
#endif
#define C3_SCRATCH (41 * C3P_NV * VL + 5 * C3P_STRIDE)

/* ---- workspaces (floats from a 64-byte aligned start) ------------------------------------ */

/* forward_one (simd_forward.c) */
#define O_C1 0
#define O_S2 (O_C1 + RUP(4704 + PAD))
#define O_XS (O_S2 + RUP(1176 + PAD))       /* (5, 32, 32) or (6, 5, 14, 16) scratch */
#define O_CP O_XS                           /* C3's scratch (C3_SCRATCH floats or ss), after C1 */
#define O_C3 (O_XS + SIMD_MAX(6 * 5 * 14 * 16, C3_SCRATCH))
#define O_S4 (O_C3 + RUP(1600 + PAD))
#define O_C5 (O_S4 + RUP(400 + PAD))
#define O_F6 (O_C5 + C5S)
#define O_OUT (O_F6 + F6S)
#define O_TL (O_OUT + OUTS)                 /* C3's packed tail input (VL < 16) */
#define ONE_WS (O_TL + RUP(TL_FLOATS))

/* forward_block (simd_forward.c) */
#define B_X 0                               /* (32, 32, LN) input */
#define B_C1 (B_X + 1024 * LN)              /* (2 rows, 6, 28, LN) */
#define B_S2 (B_C1 + 2 * 168 * LN)          /* (6, 14, 14, LN) */
#define B_C3 (B_S2 + 1176 * LN)             /* (2 rows, 10, LN) */
#define B_S4 (B_C3 + 20 * LN)               /* (16, 5, 5, LN) */
#define B_S4T (B_S4 + 400 * LN)             /* (LN, 400) image-major */
#define B_C5 (B_S4T + 400 * LN)             /* (LN, C5S) */
#define B_F6 (B_C5 + C5S * LN)              /* (LN, F6S) */
#define B_OUT (B_F6 + F6S * LN)             /* (LN, OUTS) */
#define BLOCK_WS (B_OUT + OUTS * LN)

/* grad_block (simd_grad.c) */
#define T_X 0                               /* (32, 32, LN) */
#define T_C1 (T_X + 1024 * LN)              /* (28 rows, 6, 28, LN), then its gradient */
#define T_S2 (T_C1 + 4704 * LN)             /* (6, 14, 14, LN) */
#define T_C3 (T_S2 + 1176 * LN)             /* (16, 10, 10, LN), then its gradient */
#define T_S4 (T_C3 + 1600 * LN)             /* (16, 5, 5, LN) */
#define T_S4T (T_S4 + 400 * LN)             /* (LN, 400) */
#define T_C5 (T_S4T + 400 * LN)             /* (LN, C5S) */
#define T_F6 (T_C5 + C5S * LN)              /* (LN, F6S) */
#define T_OUT (T_F6 + F6S * LN)             /* (LN, OUTS) */
#define T_DOUT (T_OUT + OUTS * LN)          /* (LN, OUTS) */
#define T_DF6 (T_DOUT + OUTS * LN)          /* (LN, F6S) */
#define T_DC5 (T_DF6 + F6S * LN)            /* (LN, C5S) */
#define T_DS4T (T_DC5 + C5S * LN)           /* (LN, 400) */
#define T_DS4 (T_DS4T + 400 * LN)           /* (16, 5, 5, LN) */
#define T_DS2 (T_DS4 + 400 * LN)            /* (6, 14, 14, LN) */
#define TRAIN_WS (T_DS2 + 1176 * LN)

/* sdlm_sample (simd_sdlm.c), after acts, d, dpre (3 RUP(LENET_NACTS)) */
#define G_XS 0                              /* (5, 32, 32) build_xs */
#define G_SS (G_XS + 5 * 32 * 32)           /* (6, 5, 14, 16) build_ss */
#define G_D3 (G_SS + 6 * 5 * 14 * 16)       /* (16, 10, 16) dC3 pre-activation, padded rows */
#define G_D1 (G_D3 + 16 * 10 * 16)          /* (6, 28, 32) dC1 pre-activation, padded rows */
#define G_T (G_D1 + 6 * 28 * 32)            /* (5, 14, 32) shifted partial sums of dS2 */
#define G_FWD (G_T + 5 * 14 * 32)           /* forward_one's workspace */
#define GRAD_ONE_WS (G_FWD + ONE_WS)

/* what any one kernel call of the variant needs (lenet_kernels.ws_floats) */
#define SIMD_WS SIMD_MAX(SIMD_MAX(BLOCK_WS, TRAIN_WS), 3 * RUP(LENET_NACTS) + GRAD_ONE_WS)

/* ---- helpers of more than one file ------------------------------------------------------ */

/* C3 pairs of each output map: [first[m], first[m + 1]) (the list is sorted by out map) */
static inline void c3_ranges(int first[17], const int32_t *restrict pout)
{
    int p = 0;
    for (int m = 0; m < 16; m++) {
        first[m] = p;
        while (p < LENET_C3_PAIRS && pout[p] == m) p++;
    }
    first[16] = p;
}

/* out[0..n) = f(in[0..n)), the variant's vsquash (out == in allowed) */
static inline void squash_array(float *out, const float *in, int64_t n)
{
    int64_t k = 0;
    for (; k + VL <= n; k += VL) vstore(out + k, vsquash(vload(in + k)));
    if (k < n) vstore_first(out + k, vsquash(vload_first(in + k, (int)(n - k))), (int)(n - k));
}

/* sum over the lanes and count vectors, stride floats apart */
static inline float lanes_sum(const float *restrict a, int count, size_t stride)
{
    vf acc0 = vzero(), acc1 = vzero();
    int k = 0;
    for (; k + 2 <= count; k += 2) {
        acc0 = vadd(acc0, vloada(a + k * stride));
        acc1 = vadd(acc1, vloada(a + (k + 1) * stride));
    }
    if (k < count) acc0 = vadd(acc0, vloada(a + k * stride));
    return vhsum(vadd(acc0, acc1));
}

/* dw[0..25) += the lane sums of acc[0..25) */
static inline void add_hsums25(float *restrict dw, const vf *restrict acc)
{
    int k = 0;
    for (; k + 4 <= 25; k += 4)
        vhsum4_add(dw + k, acc[k], acc[k + 1], acc[k + 2], acc[k + 3]);
    dw[24] += vhsum(acc[24]);
}

/* The weight-gradient correlations (simd_grad.c: corr_w_*, simd_sdlm.c: corr_one_*) take
 * the 5 kernel rows in passes of NK rows, with 5 NK accumulators (one per kernel entry),
 * each a chain of dependent multiply-adds. With 32 registers (AVX-512) the passes are
 * 3 + 2 rows: 15 and 10 chains to cover the FMA latency (a pass of one row has only 5;
 * 2 + 2 + 1 before: an SGD step of 64 images, one thread, C harness, min 1.00-1.05 ->
 * 0.97-0.99 ms in five alternating runs); with 16 registers, 2 + 2 + 1. The split does not
 * change the arithmetic: every accumulator sums the same products in the same order (same
 * bits). FN(acc, k0, NK, ...) adds kernel rows k0 .. k0 + NK - 1. */
#if VL == 16
#define CORR_PASSES(FN, acc, ...) \
    do { FN(acc, 0, 3, __VA_ARGS__); FN(acc, 3, 2, __VA_ARGS__); } while (0)
#else
#define CORR_PASSES(FN, acc, ...) \
    do { FN(acc, 0, 2, __VA_ARGS__); FN(acc, 2, 2, __VA_ARGS__); FN(acc, 4, 1, __VA_ARGS__); } while (0)
#endif

/* grad[0..25) += the lane sums of the correlation FN (its arguments after k0, NK) */
#define CORR_GRAD(FN, grad, ...)                                                                 \
    do {                                                                                         \
        vf acc_[25];                                                                             \
        for (int k_ = 0; k_ < 25; k_++) acc_[k_] = vzero();                                      \
        CORR_PASSES(FN, acc_, __VA_ARGS__);                                                      \
        add_hsums25(grad, acc_);                                                                 \
    } while (0)

/* ---- functions of one file used by another ---------------------------------------------- */

/* simd_forward.c: forward_one with C1's pre-shifted input built in xs (5, 32, 32) and, if
 * ss is not NULL, C3's in ss (6, 5, 14, 16) (build_ss; sdlm_sample's backward reads both;
 * forward_one passes xs = ws + O_XS, ss = NULL). out (10,); acts (LENET_NACTS,) or NULL. */
void forward_one_keep(float *restrict out, float *restrict acts, const lenet_net *net,
                      const float *restrict x, float *restrict ws, float *xs, float *ss);

/* simd_forward.c: the convolution part of a block in the lanes, x (n, 32, 32) -> S4
 * (16, 5, 5, LN) post-squash. X (32, 32, LN) receives the input (lanes past n: zeros),
 * S2 (6, 14, 14, LN). C1 holds C1 rows (28 or 2 rows of (6, 28, LN)) and C3 the C3 rows
 * (160 or 2 rows of (10, LN)), all of them when keep is set (training), else only the last
 * two. acts (n, LENET_NACTS) receives C1..S4 if not NULL. */
void conv_forward_lanes(float *restrict X, float *restrict C1, float *restrict S2,
                        float *restrict C3, float *restrict S4, float *restrict acts,
                        const lenet_net *net, const float *restrict x, int n, int keep);

/* simd_forward.c: C5 (as a dense 400 -> 120), F6 and the head for n images, image-major:
 * c5 (n, C5S), f6 (n, F6S), out (n, os) from s4 (n, s4s) post-squash. */
void dense_layers_forward(float *restrict c5, float *restrict f6, float *restrict out, int os,
                          const float *restrict s4, int s4s, const lenet_net *net, int n);

/* the kernel table's entries (simd_api.h describes them) */
void SIMD_FN(forward_one)(float *restrict out, float *restrict acts, const lenet_net *net,
                          const float *restrict x, float *restrict ws);
void SIMD_FN(forward_block)(float *restrict out, float *restrict acts, const lenet_net *net,
                            const float *restrict x, int n, float *restrict ws);
void SIMD_FN(squash)(float *out, const float *in, int64_t n);
void SIMD_FN(grad_block)(float *restrict grad, float *restrict losses, float *restrict out,
                         const lenet_net *net, const float *restrict x, const int32_t *restrict labels,
                         float scale, int n, float *restrict ws);
void SIMD_FN(sgd_update)(float *restrict p, float *restrict v, const float *restrict g,
                         const uint8_t *restrict mask, float lr, float momentum, float decay,
                         int64_t n);
float SIMD_FN(sdlm_sample)(float *params, const float *restrict step, float *restrict grad,
                           const lenet_net *net, const float *restrict x, int label, float *restrict ws);

#endif /* LENET_SIMD_NET_H */
