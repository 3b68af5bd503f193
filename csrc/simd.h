/*
 * A thin vector layer over AVX2+FMA (8 float lanes) or AVX-512 (16 float lanes), enough
 * for the kernels of simd_net.c: each function is one or two intrinsics. Only included by
 * files compiled with -DLENET_SIMD_AVX2 or -DLENET_SIMD_AVX512 and the matching -m flags.
 *
 * Every operation is lane-wise (no reduction across lanes), so a value computed in lane
 * k depends on lane k's inputs alone: that is what makes images side by side in the lanes
 * give bit-for-bit the results of the same image computed alone.
 */
#ifndef LENET_SIMD_H
#define LENET_SIMD_H

#include <immintrin.h>
#include <stdint.h>

#include "lenet.h"

#if defined(LENET_SIMD_AVX512)

#define VL 16
typedef __m512 vf;
typedef __mmask16 vmask;

static inline vf vload(const float *p) { return _mm512_loadu_ps(p); }
static inline vf vloada(const float *p) { return _mm512_load_ps(p); }
static inline void vstore(float *p, vf a) { _mm512_storeu_ps(p, a); }
static inline void vstorea(float *p, vf a) { _mm512_store_ps(p, a); }
static inline vf vset1(float a) { return _mm512_set1_ps(a); }
static inline vf vzero(void) { return _mm512_setzero_ps(); }
static inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }   /* a*b + c */
static inline vf vfnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); } /* c - a*b */
static inline vf vand(vf a, vf b) { return _mm512_and_ps(a, b); }
static inline vf vandnot(vf a, vf b) { return _mm512_andnot_ps(a, b); }       /* ~a & b */
static inline vf vxor(vf a, vf b) { return _mm512_xor_ps(a, b); }
static inline vf vor(vf a, vf b) { return _mm512_or_ps(a, b); }
/* a > b ? x : y */
static inline vf vsel_gt(vf a, vf b, vf x, vf y)
{
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), y, x);
}
/* truncation toward zero of a float to int, back to float; and 2^n for integer-valued n */
static inline vf vtrunc(vf a) { return _mm512_cvtepi32_ps(_mm512_cvttps_epi32(a)); }
static inline vf vpow2i(vf n)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n),
                                                                  _mm512_set1_epi32(127)), 23));
}
/* loads/stores of the first m (0..VL) lanes; the others read as 0 / are left alone */
static inline vmask vmask_first(int m) { return (vmask)(m >= 16 ? 0xffff : (1u << m) - 1u); }
static inline vf vload_first(const float *p, int m) { return _mm512_maskz_loadu_ps(vmask_first(m), p); }
static inline void vstore_first(float *p, vf a, int m) { _mm512_mask_storeu_ps(p, vmask_first(m), a); }
static inline float vhsum(vf a) { return _mm512_reduce_add_ps(a); }

#elif defined(LENET_SIMD_AVX2)

#define VL 8
typedef __m256 vf;

static inline vf vload(const float *p) { return _mm256_loadu_ps(p); }
static inline vf vloada(const float *p) { return _mm256_load_ps(p); }
static inline void vstore(float *p, vf a) { _mm256_storeu_ps(p, a); }
static inline void vstorea(float *p, vf a) { _mm256_store_ps(p, a); }
static inline vf vset1(float a) { return _mm256_set1_ps(a); }
static inline vf vzero(void) { return _mm256_setzero_ps(); }
static inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vfnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline vf vand(vf a, vf b) { return _mm256_and_ps(a, b); }
static inline vf vandnot(vf a, vf b) { return _mm256_andnot_ps(a, b); }
static inline vf vxor(vf a, vf b) { return _mm256_xor_ps(a, b); }
static inline vf vor(vf a, vf b) { return _mm256_or_ps(a, b); }
static inline vf vsel_gt(vf a, vf b, vf x, vf y)
{
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_GT_OQ));
}
static inline vf vtrunc(vf a) { return _mm256_cvtepi32_ps(_mm256_cvttps_epi32(a)); }
static inline vf vpow2i(vf n)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n),
                                                                  _mm256_set1_epi32(127)), 23));
}
static inline __m256i vmask_first(int m)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(m), idx);
}
static inline vf vload_first(const float *p, int m) { return _mm256_maskload_ps(p, vmask_first(m)); }
static inline void vstore_first(float *p, vf a, int m) { _mm256_maskstore_ps(p, vmask_first(m), a); }
static inline float vhsum(vf a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#else
#error "simd.h needs LENET_SIMD_AVX2 or LENET_SIMD_AVX512"
#endif

/* Scaled tanh f(a) = A tanh(S a) of VL lanes: the Cephes tanhf of layers_impl.h
 * (lenet_tanhf), lane-wise, with fused multiply-adds:
 *   |z| <= 0.625: z + z^3 P(z^2);   |z| > 0.625: 1 - 2 / (exp(2|z|) + 1), |z| clamped to 9.
 * Error bound: at most 4 float32 ulps of A tanh(S a) (tests/test_isa.py checks this for
 * every variant, densely over [-20, 20], as tests/test_kernels.py does for the portable one). */
static inline vf vsquash(vf a)
{
    const vf z = vmul(a, vset1(LENET_SQUASH_S));
    const vf sign = vset1(-0.0f);
    const vf az = vmin(vandnot(sign, z), vset1(9.0f));
    const vf t = vadd(az, az);
    const vf fn = vtrunc(vfma(t, vset1(1.44269504088896341f), vset1(0.5f)));
    vf r = vfnma(fn, vset1(0.693359375f), t);
    r = vfnma(fn, vset1(-2.12194440e-4f), r);
    const vf r2 = vmul(r, r);
    vf p = vfma(vset1(1.9875691500e-4f), r, vset1(1.3981999507e-3f));
    p = vfma(p, r, vset1(8.3334519073e-3f));
    p = vfma(p, r, vset1(4.1665795894e-2f));
    p = vfma(p, r, vset1(1.6666665459e-1f));
    p = vfma(p, r, vset1(5.0000001201e-1f));
    p = vadd(vfma(p, r2, r), vset1(1.0f));
    const vf e = vfma(p, vpow2i(fn), vset1(1.0f));
    vf big = vsub(vset1(1.0f), vdiv(vset1(2.0f), e));
    big = vxor(big, vand(sign, z));
    const vf s = vmul(z, z);
    vf q = vfma(vset1(-5.70498872745e-3f), s, vset1(2.06390887954e-2f));
    q = vfma(q, s, vset1(-5.37397155531e-2f));
    q = vfma(q, s, vset1(1.33314422036e-1f));
    q = vfma(q, s, vset1(-3.33332819422e-1f));
    const vf small = vfma(vmul(q, s), z, z);
    return vmul(vset1(LENET_SQUASH_A), vsel_gt(az, vset1(0.625f), big, small));
}

#endif /* LENET_SIMD_H */
