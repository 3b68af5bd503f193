/*
 * The SIMD variants of the whole network (see simd_api.h). This file is compiled once per
 * instruction set: -DLENET_SIMD_AVX2 with -mavx2 -mfma, -DLENET_SIMD_AVX512 with
 * -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma. Nothing here is called unless
 * lenet_isa_supported() said the CPU has that instruction set.
 */
#include <string.h>

#include "lenet.h"
#include "net_portable.h"
#include "simd_api.h"

#if defined(LENET_SIMD_AVX512)
#define LENET_SIMD_TABLE lenet_simd_kernels_avx512
#elif defined(LENET_SIMD_AVX2)
#define LENET_SIMD_TABLE lenet_simd_kernels_avx2
#else
#error "simd_net.c is compiled with -DLENET_SIMD_AVX2 or -DLENET_SIMD_AVX512"
#endif

static void forward_one(float *restrict out, float *restrict acts, const lenet_net *net,
                        const float *restrict x, float *restrict ws)
{
    float *a = acts ? acts : ws;
    net_forward_one(a, net, x);
    memcpy(out, a + LENET_ACT_OUT, 10 * sizeof(float));
}

static void forward_block(float *restrict out, float *restrict acts, const lenet_net *net,
                          const float *restrict x, int n, float *restrict ws)
{
    for (int i = 0; i < n; i++)
        forward_one(out + 10 * i, acts ? acts + (size_t)i * LENET_NACTS : NULL, net, x + 1024 * i, ws);
}

static float grad_one(float *restrict grad, float *restrict out, const lenet_net *net,
                      const float *restrict x, int label, float scale, float *restrict ws)
{
    float *acts = ws, *d = ws + LENET_NACTS, *dpre = d + LENET_NACTS;
    net_forward_one(acts, net, x);
    if (out) memcpy(out, acts + LENET_ACT_OUT, 10 * sizeof(float));
    return net_backward_one(grad, d, dpre, acts, net, x, label, scale);
}

static void grad_block(float *restrict grad, float *restrict losses, float *restrict out,
                       const lenet_net *net, const float *restrict x, const int32_t *restrict labels,
                       float scale, int n, float *restrict ws)
{
    for (int i = 0; i < n; i++) {
        const float l = grad_one(grad, out ? out + 10 * i : NULL, net, x + 1024 * i, labels[i], scale, ws);
        if (losses) losses[i] = l;
    }
}

const lenet_simd_kernels LENET_SIMD_TABLE = {
    .lanes = 16,
    .ws_floats = 3 * LENET_NACTS,
    .forward_one = forward_one,
    .forward_block = forward_block,
    .grad_block = grad_block,
    .grad_one = grad_one,
};
