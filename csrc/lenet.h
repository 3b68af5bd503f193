/*
 * lenet_native: LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998) kernels in plain C99.
 *
 * Conventions (after karpathy/llm.c and ggml):
 *   - every exported symbol starts with lenet_ (macros LENET_); one lenet_<layer>_forward /
 *     lenet_<layer>_backward pair per layer (_backward2: Gauss-Newton second derivatives);
 *   - arguments: outputs first, then inputs, then sizes; each pointer's shape in a comment;
 *   - gradients ACCUMULATE (+=) into caller-zeroed buffers;
 *   - kernels never allocate and hold no global or static mutable state, so every call
 *     is thread-safe; scratch memory comes from the caller (see *_workspace_size);
 *   - entry points return an int status (LENET_OK == 0); they never exit or print.
 *
 * Parameters of the whole network live in ONE flat float32 vector (see LENET_OFF_*),
 * so optimisers are simple element-wise loops. C3 weights are PACKED: one 5x5 kernel per
 * connected (C3 map, S2 map) pair of the paper's Table I, in the order of the pair list.
 */
#ifndef LENET_H
#define LENET_H

#include <stddef.h>
#include <stdint.h>

#include "lenet_native.h"

/* MSVC's C compiler outside its C11 mode knows C99's restrict only as __restrict (not
 * built or tested here: the project's machines have no Windows) */
#if defined(_MSC_VER) && !defined(__clang__) && !defined(__cplusplus) && !defined(restrict) \
    && (!defined(__STDC_VERSION__) || __STDC_VERSION__ < 201112L)
#define restrict __restrict
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* status codes (LENET_OK, LENET_ERR_*) and heads (LENET_HEAD_*) come from the public
 * header lenet_native.h: the kernels and the public API (api.c) share one list */

/* ---- instruction-set variants ---------------------------------------------------------
 * The whole-network entry points (lenet_forward, lenet_loss_grad, lenet_hessian_diag,
 * lenet_sdlm_epoch) exist in several variants: the portable C99 code, always built,
 * AVX2+FMA / AVX-512 kernels built from csrc/simd_*.c with per-file -m flags, and the
 * same files built for generic 128-bit vectors (vec128: SSE2 on x86-64, NEON on ARM64). The
 * variant is chosen by the caller (lenet_net.isa), normally once at start-up from
 * lenet_best_isa(); there is no global state. Within one variant results are
 * deterministic, independent of the thread count and of the batch an image comes in;
 * different variants agree to float32 rounding (FMA and summation order differ). */
enum { LENET_ISA_PORTABLE = 0, LENET_ISA_AVX2 = 1, LENET_ISA_AVX512 = 2, LENET_ISA_VEC128 = 3,
       LENET_ISA_AVX512VNNI = 4,   /* int8 kernels only (csrc/q8.h): no fp32 kernel table */
       LENET_NISA = 5 };
int lenet_isa_compiled(int isa);    /* 1 if the variant was built into this library */
int lenet_isa_supported(int isa);   /* 1 if built and this CPU (and OS) can run it */
int lenet_best_isa(void);           /* the fastest supported variant */
const char *lenet_isa_name(int isa);/* "portable", "avx2", "avx512", "vec128"; NULL if unknown */

/* inputs must satisfy |x| < 2^61 (about 2.3e18; preprocessed digits lie in [-0.1, 1.175]) */
#define LENET_MAX_INPUT_LOG2 61

/* ---- geometry ------------------------------------------------------------------------ */
#define LENET_IN 32          /* input is 1@32x32 */
#define LENET_C1_MAPS 6
#define LENET_C1_HW 28
#define LENET_S2_HW 14
#define LENET_C3_MAPS 16
#define LENET_C3_HW 10
#define LENET_S4_HW 5
#define LENET_C5 120
#define LENET_F6 84
#define LENET_OUT 10
#define LENET_K 5            /* every convolution is 5x5 */
#define LENET_KK 25
#define LENET_C3_PAIRS 60    /* connected pairs of Table I */

/* ---- flat parameter vector ------------------------------------------------------------ */
#define LENET_OFF_C1_W 0                                                  /* (6, 25)        */
#define LENET_OFF_C1_B (LENET_OFF_C1_W + LENET_C1_MAPS * LENET_KK)        /* (6,)           */
#define LENET_OFF_S2_W (LENET_OFF_C1_B + LENET_C1_MAPS)                   /* (6,)           */
#define LENET_OFF_S2_B (LENET_OFF_S2_W + LENET_C1_MAPS)                   /* (6,)           */
#define LENET_OFF_C3_W (LENET_OFF_S2_B + LENET_C1_MAPS)                   /* (60, 25) packed */
#define LENET_OFF_C3_B (LENET_OFF_C3_W + LENET_C3_PAIRS * LENET_KK)       /* (16,)          */
#define LENET_OFF_S4_W (LENET_OFF_C3_B + LENET_C3_MAPS)                   /* (16,)          */
#define LENET_OFF_S4_B (LENET_OFF_S4_W + LENET_C3_MAPS)                   /* (16,)          */
#define LENET_OFF_C5_W (LENET_OFF_S4_B + LENET_C3_MAPS)                   /* (120, 400)     */
#define LENET_OFF_C5_B (LENET_OFF_C5_W + LENET_C5 * LENET_C3_MAPS * LENET_KK) /* (120,)     */
#define LENET_OFF_F6_W (LENET_OFF_C5_B + LENET_C5)                        /* (84, 120)      */
#define LENET_OFF_F6_B (LENET_OFF_F6_W + LENET_F6 * LENET_C5)             /* (84,)          */
#define LENET_OFF_OUT_W (LENET_OFF_F6_B + LENET_F6)   /* (10, 84): softmax weight or RBF prototypes */
#define LENET_OFF_OUT_B (LENET_OFF_OUT_W + LENET_OUT * LENET_F6)  /* (10,): softmax bias (unused by RBF) */
#define LENET_NPARAMS (LENET_OFF_OUT_B + LENET_OUT)                       /* 60850 */

/* per-image activation buffer: every layer's post-squash output, then the head's output */
#define LENET_ACT_C1 0
#define LENET_ACT_S2 (LENET_ACT_C1 + LENET_C1_MAPS * LENET_C1_HW * LENET_C1_HW)
#define LENET_ACT_C3 (LENET_ACT_S2 + LENET_C1_MAPS * LENET_S2_HW * LENET_S2_HW)
#define LENET_ACT_S4 (LENET_ACT_C3 + LENET_C3_MAPS * LENET_C3_HW * LENET_C3_HW)
#define LENET_ACT_C5 (LENET_ACT_S4 + LENET_C3_MAPS * LENET_S4_HW * LENET_S4_HW)
#define LENET_ACT_F6 (LENET_ACT_C5 + LENET_C5)
#define LENET_ACT_OUT (LENET_ACT_F6 + LENET_F6)
#define LENET_NACTS (LENET_ACT_OUT + LENET_OUT)                         /* 8094 floats per image */

/* the squashing function f(a) = A tanh(S a) */
#define LENET_SQUASH_A 1.7159f
#define LENET_SQUASH_S 0.66666667f
#define LENET_RBF_J 0.1f

/* The network as the kernels see it: the flat parameters and the C3 pair list. */
typedef struct {
    const float *params;      /* (LENET_NPARAMS,) */
    const int32_t *c3_out;    /* (60,) C3 map of each connected pair, non-decreasing */
    const int32_t *c3_in;     /* (60,) S2 map of each connected pair */
    int head;                 /* LENET_HEAD_SOFTMAX or LENET_HEAD_RBF */
    int isa;                  /* LENET_ISA_*; 0 (portable) when zero-initialised */
} lenet_net;

/* ================================ layer kernels ======================================= */

/* 5x5 valid cross-correlation, every input map to every output map (C1; C5 in general). */
int lenet_conv5x5_forward(float *restrict out,        /* out: (N, M, H-4, W-4) pre-activation */
                          const float *restrict in,   /* in:  (N, C, H, W) */
                          const float *restrict w,    /* w:   (M, C, 5, 5) */
                          const float *restrict b,    /* b:   (M,) */
                          int64_t N, int C, int M, int H, int W, int nthreads);
int lenet_conv5x5_backward(float *restrict din,       /* din: (N, C, H, W) += ; may be NULL */
                           float *restrict dw,        /* dw:  (M, C, 5, 5) += */
                           float *restrict db,        /* db:  (M,) += */
                           const float *restrict dout,/* dout:(N, M, H-4, W-4) */
                           const float *restrict in,  /* in:  (N, C, H, W) */
                           const float *restrict w,   /* w:   (M, C, 5, 5) */
                           int64_t N, int C, int M, int H, int W);

/* Sparse 5x5 convolution over a list of connected (out, in) pairs with packed weights (C3). */
int lenet_c3_forward(float *restrict out,             /* out: (N, M, H-4, W-4) pre-activation */
                     const float *restrict in,        /* in:  (N, C, H, W) */
                     const float *restrict w,         /* w:   (P, 5, 5) packed, pair order */
                     const float *restrict b,         /* b:   (M,) */
                     const int32_t *restrict pout,    /* pout:(P,) output map of each pair */
                     const int32_t *restrict pin,     /* pin: (P,) input map of each pair */
                     int P, int64_t N, int C, int M, int H, int W, int nthreads);
int lenet_c3_backward(float *restrict din,            /* din: (N, C, H, W) += ; may be NULL */
                      float *restrict dw,             /* dw:  (P, 5, 5) += */
                      float *restrict db,             /* db:  (M,) += */
                      const float *restrict dout,     /* dout:(N, M, H-4, W-4) */
                      const float *restrict in,       /* in:  (N, C, H, W) */
                      const float *restrict w,        /* w:   (P, 5, 5) */
                      const int32_t *restrict pout, const int32_t *restrict pin,
                      int P, int64_t N, int C, int M, int H, int W);

/* Trainable 2x2 subsampling: out = coef[c] * (sum of the 2x2 block) + bias[c] (S2, S4). */
int lenet_subsample_forward(float *restrict out,      /* out: (N, C, H/2, W/2) pre-activation */
                            const float *restrict in, /* in:  (N, C, H, W), H and W even */
                            const float *restrict coef, /* coef: (C,) */
                            const float *restrict bias, /* bias: (C,) */
                            int64_t N, int C, int H, int W, int nthreads);
int lenet_subsample_backward(float *restrict din,     /* din:  (N, C, H, W) += ; may be NULL */
                             float *restrict dcoef,   /* dcoef:(C,) += */
                             float *restrict dbias,   /* dbias:(C,) += */
                             const float *restrict dout, /* dout: (N, C, H/2, W/2) */
                             const float *restrict in,   /* in:   (N, C, H, W) */
                             const float *restrict coef, /* coef: (C,) */
                             int64_t N, int C, int H, int W);
/* Gauss-Newton second derivatives through subsampling: hcoef += (block sum)^2 h,
 * hbias += h, hin += coef^2 h. */
int lenet_subsample_backward2(float *restrict hin, float *restrict hcoef, float *restrict hbias,
                              const float *restrict hout, const float *restrict in,
                              const float *restrict coef, int64_t N, int C, int H, int W);

/* Scaled tanh f(a) = A tanh(S a); in place allowed (out == in). */
int lenet_squash_forward(float *out,                  /* out: (n,) */
                         const float *in,             /* in:  (n,) */
                         int64_t n);
/* lenet_squash_forward computed by an instruction-set variant's vectorised squash (LENET_ISA_*;
 * portable: lenet_squash_forward itself); within 4 (portable) or 6 (AVX2, AVX-512) float32 ulps of A tanh(S a). */
int lenet_squash_forward_isa(float *out, const float *in, int64_t n, int isa);
/* din += dout * f'(a), with f'(a) computed from the OUTPUT y = f(a): S (A^2 - y^2) / A. */
int lenet_squash_backward(float *restrict din, const float *restrict dout,
                          const float *restrict out, int64_t n);
/* Gauss-Newton: hin += hout * f'(a)^2 */
int lenet_squash_backward2(float *restrict hin, const float *restrict hout,
                           const float *restrict out, int64_t n);

/* Dense layer out = in W^T + b (F6, softmax head; C5 on 5x5 maps). */
int lenet_dense_forward(float *restrict out,          /* out: (N, M) */
                        const float *restrict in,     /* in:  (N, K) */
                        const float *restrict w,      /* w:   (M, K) */
                        const float *restrict b,      /* b:   (M,), may be NULL */
                        int64_t N, int K, int M, int nthreads);
int lenet_dense_backward(float *restrict din,         /* din: (N, K) += ; may be NULL */
                         float *restrict dw,          /* dw:  (M, K) += */
                         float *restrict db,          /* db:  (M,) += ; may be NULL */
                         const float *restrict dout,  /* dout:(N, M) */
                         const float *restrict in,    /* in:  (N, K) */
                         const float *restrict w,     /* w:   (M, K) */
                         int64_t N, int K, int M);

/* Euclidean RBF units y_i = sum_j (x_j - w_ij)^2 (the paper's output layer). */
int lenet_rbf_forward(float *restrict out,            /* out: (N, M) */
                      const float *restrict in,       /* in:  (N, K) */
                      const float *restrict proto,    /* proto: (M, K) */
                      int64_t N, int K, int M, int nthreads);
int lenet_rbf_backward(float *restrict din,           /* din: (N, K) += */
                       const float *restrict dout,    /* dout:(N, M) */
                       const float *restrict in,      /* in:  (N, K) */
                       const float *restrict proto,   /* proto: (M, K) */
                       int64_t N, int K, int M);

/* Row-wise softmax (numerically stable); sign = +1 for logits, -1 for RBF distances. */
int lenet_softmax_forward(float *restrict probs,      /* probs: (N, M) */
                          const float *restrict in,   /* in:    (N, M) */
                          float sign, int64_t N, int M);

/* Softmax cross-entropy. losses[i] = -log p[label]; dlogits += scale * (p - onehot). */
int lenet_xent_forward(float *restrict losses,        /* losses: (N,) */
                       const float *restrict logits,  /* logits: (N, M) */
                       const int32_t *restrict labels,/* labels: (N,) */
                       int64_t N, int M);
int lenet_xent_backward(float *restrict dlogits,      /* dlogits: (N, M) += */
                        const float *restrict logits, const int32_t *restrict labels,
                        float scale, int64_t N, int M);

/* The paper's RBF loss (eq. 9): E = y_label + log(exp(-j) + sum_i exp(-y_i)). */
int lenet_rbfloss_forward(float *restrict losses, const float *restrict y,
                          const int32_t *restrict labels, float j, int64_t N, int M);
int lenet_rbfloss_backward(float *restrict dy, const float *restrict y,
                           const int32_t *restrict labels, float j, float scale, int64_t N, int M);

/* ================================ whole network ======================================= */

/* Scratch floats needed by lenet_forward for `nthreads` threads (enough for every ISA
 * variant; the same holds for the other *_workspace_size functions). */
size_t lenet_forward_workspace_size(int nthreads);

/* Forward pass over a batch, streamed through per-thread buffers (image by image for the
 * portable variant, blocks of 8/16 images side by side in the vector lanes for the SIMD
 * ones), so the extra memory is bounded whatever N is. out gets the logits (softmax head)
 * or the RBF distances. If acts is not NULL it receives every layer's output per image.
 * The workspace may be NULL only for the portable variant with acts given. An image's
 * output does not depend on the thread count nor on the batch it comes in. */
int lenet_forward(float *restrict out,          /* out:  (N, 10) */
                  float *restrict acts,         /* acts: (N, LENET_NACTS) or NULL */
                  const lenet_net *net,
                  const float *restrict x,      /* x:    (N, 32, 32) */
                  int64_t N, int nthreads,
                  float *restrict workspace, size_t workspace_floats);
/* lenet_forward that, when check_finite is non-zero, also checks every input pixel as the
 * images stream through and returns LENET_ERR_NONFINITE if one is a NaN or an infinity
 * (out and acts are then unspecified). Cheaper than a separate pass over x. */
int lenet_forward_checked(float *restrict out, float *restrict acts, const lenet_net *net,
                          const float *restrict x, int64_t N, int nthreads, int check_finite,
                          float *restrict workspace, size_t workspace_floats);

/* Scratch floats needed by lenet_loss_grad. */
size_t lenet_grad_workspace_size(int64_t N, int nthreads);
/* Most gradient partial sums any variant uses for N images (min(N, 8); a SIMD variant uses
 * min(ceil(N / (2 lanes)), 8), each over whole blocks). Fixed by N and the variant, so results do
 * not depend on the thread count. */
int lenet_grad_chunks(int64_t N);

/* Mean loss over the batch and its gradient. grad (LENET_NPARAMS,) ACCUMULATES
 * scale * d(sum of per-sample losses)/dparams (pass scale = 1/N for the mean).
 * losses (N,) gets the per-sample losses; out (N,10) the outputs (either may be NULL).
 * The result is bit-for-bit independent of nthreads. */
int lenet_loss_grad(float *restrict grad,       /* grad: (LENET_NPARAMS,) += */
                    float *restrict losses,     /* losses: (N,) or NULL */
                    float *restrict out,        /* out: (N, 10) or NULL */
                    const lenet_net *net,
                    const float *restrict x,    /* x: (N, 32, 32) */
                    const int32_t *restrict labels, /* labels: (N,) */
                    float scale, int64_t N, int nthreads,
                    float *restrict workspace, size_t workspace_floats);

/* One SGD step on the batch: the gradient (lenet_loss_grad's, scale = 1/N for the mean
 * loss), then lenet_sgd_update (below) with it, the update applied to each slice of the
 * parameters as soon as its gradient is summed (one pass, no gradient buffer). params must
 * be net->params (updated in place); the same bits as lenet_loss_grad into a zeroed buffer
 * followed by lenet_sgd_update. N = 0 changes nothing (no momentum-only step).
 * Workspace: lenet_grad_workspace_size(N, nthreads). */
int lenet_sgd_train_step(float *params,         /* params: (LENET_NPARAMS,) == net->params */
                         float *restrict velocity, /* velocity: (LENET_NPARAMS,) */
                         float *restrict losses, /* losses: (N,) or NULL */
                         float *restrict out,    /* out: (N, 10) or NULL */
                         const uint8_t *restrict mask, /* mask: (LENET_NPARAMS,) 1 = trainable */
                         float lr, float momentum, float decay,
                         const lenet_net *net,
                         const float *restrict x, /* x: (N, 32, 32) */
                         const int32_t *restrict labels, /* labels: (N,) */
                         float scale, int64_t N, int nthreads,
                         float *restrict workspace, size_t workspace_floats);

/* Gauss-Newton diagonal (paper, appendix C): h (LENET_NPARAMS,) += scale * sum over samples.
 * Single-threaded over samples (it runs on a few hundred samples per pass). */
size_t lenet_hessian_workspace_size(void);
int lenet_hessian_diag(float *restrict h,       /* h: (LENET_NPARAMS,) += */
                       const lenet_net *net,
                       const float *restrict x, /* x: (N, 32, 32) */
                       const int32_t *restrict labels, /* labels: (N,) */
                       float scale, int64_t N,
                       float *restrict workspace, size_t workspace_floats);

/* ================================ distortions ========================================= */

/* Affine warp with bilinear sampling for maps whose source row depends on the output row
 * only (the paper's distortions: translation, scaling, squeezing, horizontal shear). For
 * image b, output pixel (Y, X) samples the input, padded with `background` (one row and
 * column before it, two after), at
 *   row    sy = clip(ayy[b] Y + offy[b], 0, H + 1),
 *   column sx = clip(ax[b] X + (axy[b] Y + offx[b]), 0, W + 1)
 * (padded coordinates). The same float operations as lenet_native.distort's NumPy path.
 * workspace: W + 3 floats. */
int lenet_warp_rows_forward(float *restrict out,      /* out: (N, H, W) */
                            const float *restrict in, /* in:  (N, H, W) */
                            const float *restrict ax, const float *restrict axy,
                            const float *restrict ayy, /* (N,) each */
                            const float *restrict offx, const float *restrict offy, /* (N,) each */
                            float background, int64_t N, int H, int W, float *restrict workspace);

/* ================================ input ================================================ */

/* Network input from raw MNIST digits: out[b] = digits[index[b]] padded with 2 px of
 * background to 32x32 and mapped p -> (float)p * (float)(1.275 / 255) - 0.1f (the bits of
 * lenet_native.preprocess; background -0.1f). With shift, digit b is placed at row
 * 2 + shift[2b], column 2 + shift[2b + 1] of the frame instead of (2, 2): a translation of
 * up to 2 px that never crops. LENET_ERR_ARG if an index is outside [0, N) or a shift
 * outside [-2, 2] (nothing is written then). */
int lenet_digits_gather(float *restrict out,            /* out:    (B, 32, 32) written whole */
                        const uint8_t *restrict digits, /* digits: (N, 28, 28) 0 = background, 255 = ink */
                        const int64_t *restrict index,  /* index:  (B,) rows of digits; NULL = 0..B-1 (B <= N) */
                        const int8_t *restrict shift,   /* shift:  (B, 2) (dy, dx) in [-2, 2]; NULL = none */
                        int64_t B, int64_t N);

/* ================================ optimisers ========================================== */

/* SGD with momentum and L2 weight decay, element-wise over the flat vector:
 *   v = momentum * v + (g + decay * p) ; p -= lr * v ; only where mask[k] != 0. */
int lenet_sgd_update(float *restrict p, float *restrict v, const float *restrict g,
                     const uint8_t *restrict mask, float lr, float momentum, float decay, int64_t n);
/* lenet_sgd_update by an instruction-set variant (LENET_ISA_*): the same operations in the same
 * order (separate multiplies and adds, no fused multiply-add), so the same bits. */
int lenet_sgd_update_isa(float *restrict p, float *restrict v, const float *restrict g,
                         const uint8_t *restrict mask, float lr, float momentum, float decay,
                         int64_t n, int isa);

/* Stochastic diagonal Levenberg-Marquardt: one update per sample,
 *   p_k -= eta / (mu + h_kk) * g_k   (per-sample gradient g),
 * for samples order[0..N), each sample's gradient computed at the current weights. */
size_t lenet_sdlm_workspace_size(void);
int lenet_sdlm_epoch(float *restrict params,    /* params: (LENET_NPARAMS,) updated in place */
                     float *restrict losses,    /* losses: (N,) per-sample loss before its update, or NULL */
                     const int32_t *restrict c3_out, const int32_t *restrict c3_in, int head,
                     int isa,                   /* LENET_ISA_* variant of the per-image kernels */
                     const float *restrict step,/* step: (LENET_NPARAMS,) eta/(mu+h), 0 = frozen */
                     const float *restrict x,   /* x: (total, 32, 32) */
                     const int32_t *restrict labels, /* labels: (total,) */
                     const int64_t *restrict order,  /* order: (N,) indices into x */
                     int64_t N, int64_t total,
                     float *restrict workspace, size_t workspace_floats);

#ifdef __cplusplus
}
#endif
#endif /* LENET_H */
