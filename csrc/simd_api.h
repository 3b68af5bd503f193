/*
 * Internal interface between the drivers of network.c (argument checks, threads,
 * workspace, the order of gradient sums) and the kernels of each instruction-set variant:
 * one lenet_kernels table per variant. The SIMD tables come from simd_forward.c,
 * simd_grad.c and simd_sdlm.c (simd_net.h), compiled once per instruction set with its
 * own -m flags and a LENET_SIMD_* macro that names the table (lenet_kernels_avx2,
 * lenet_kernels_avx512, lenet_kernels_vec128). The portable variant fills the same table
 * in network.c (lenet_kernels_portable, lanes = 1), so the drivers run every variant
 * alike. isa.c holds the one list of variants: lenet_kernels_for(isa) is the only place a
 * table is picked.
 *
 * Every network kernel works on ONE image or ONE block of up to `lanes` images (images
 * side by side in the vector lanes), out of the caller's workspace (squash and sgd_update
 * are element-wise); no kernel allocates, threads or keeps state. For a given ISA, an
 * image's outputs are bit-for-bit the same whether it goes through forward_one or through
 * any lane of forward_block: every output element is the same sequence of float
 * operations in both (the layouts differ, the arithmetic does not).
 */
#ifndef LENET_SIMD_API_H
#define LENET_SIMD_API_H

#include <stddef.h>
#include <stdint.h>

#include "lenet.h"

typedef struct {
    int lanes;          /* images per block */
    size_t ws_floats;   /* workspace (floats, 64-byte aligned start) any one kernel call needs */

    /* One image. out (10,); acts (LENET_NACTS,) receives every layer's output, or NULL. */
    void (*forward_one)(float *restrict out, float *restrict acts, const lenet_net *net,
                        const float *restrict x, float *restrict ws);

    /* n (1..lanes) images x (n, 32, 32) -> out (n, 10); acts (n, LENET_NACTS) or NULL. */
    void (*forward_block)(float *restrict out, float *restrict acts, const lenet_net *net,
                          const float *restrict x, int n, float *restrict ws);

    /* n (1..lanes) images: grad (LENET_NPARAMS,) += scale * d(sum of losses)/dparams;
     * losses (n,) and out (n, 10) receive the per-image loss and output (either may be NULL).
     * labels are already checked. */
    void (*grad_block)(float *restrict grad, float *restrict losses, float *restrict out,
                       const lenet_net *net, const float *restrict x,
                       const int32_t *restrict labels, float scale, int n, float *restrict ws);

    /* out[0..n) = A tanh(S in[0..n)), the variant's vectorised squash (out == in allowed) */
    void (*squash)(float *out, const float *in, int64_t n);

    /* lenet_sgd_update's loop (lenet.h), the same operations: p, v updated where mask != 0 */
    void (*sgd_update)(float *restrict p, float *restrict v, const float *restrict g,
                       const uint8_t *restrict mask, float lr, float momentum, float decay,
                       int64_t n);

    /* One SDLM sample: params -= step * (the gradient of the sample's loss at params).
     * grad (LENET_NPARAMS,) is scratch, zero on entry and on return. Returns the loss. */
    float (*sdlm_sample)(float *params, const float *restrict step, float *restrict grad,
                         const lenet_net *net, const float *restrict x, int label,
                         float *restrict ws);
} lenet_kernels;

extern const lenet_kernels lenet_kernels_portable;
#ifdef LENET_HAVE_AVX2
extern const lenet_kernels lenet_kernels_avx2;
#endif
#ifdef LENET_HAVE_AVX512
extern const lenet_kernels lenet_kernels_avx512;
#endif
#ifdef LENET_HAVE_VEC128
extern const lenet_kernels lenet_kernels_vec128;
#endif

/* The kernel table of variant isa (LENET_ISA_*), or NULL if it was not built (isa.c). */
const lenet_kernels *lenet_kernels_for(int isa);

#endif /* LENET_SIMD_API_H */
