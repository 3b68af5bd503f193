/*
 * Which instruction-set variants exist and which this CPU can run. Pure functions of the
 * build and of the CPU (no state of our own: __builtin_cpu_supports reads the CPUID data
 * that libgcc gathers once at load time and checks that the OS saves the vector state),
 * and the table that maps each variant to its kernels (simd_api.h).
 */
#include <stddef.h>

#include "lenet.h"
#include "simd_api.h"
#include "q8.h"

/* The one list of variants: name, fp32 kernel table and int8 kernel table (q8.h) (NULL:
 * not built into this library, or the variant has no such kernels). Every dispatch goes
 * through lenet_kernels_for() and lenet_q8_kernels_for(). */
static const struct {
    const char *name;
    const lenet_kernels *kernels;
    const lenet_q8_kernels *q8;
} VARIANTS[LENET_NISA] = {
    [LENET_ISA_PORTABLE] = {"portable", &lenet_kernels_portable, &lenet_q8_kernels_portable},
#ifdef LENET_HAVE_AVX2
    [LENET_ISA_AVX2] = {"avx2", &lenet_kernels_avx2},
#else
    [LENET_ISA_AVX2] = {"avx2", NULL},
#endif
#ifdef LENET_HAVE_AVX512
    [LENET_ISA_AVX512] = {"avx512", &lenet_kernels_avx512},
#else
    [LENET_ISA_AVX512] = {"avx512", NULL},
#endif
#ifdef LENET_HAVE_VEC128
    [LENET_ISA_VEC128] = {"vec128", &lenet_kernels_vec128},
#else
    [LENET_ISA_VEC128] = {"vec128", NULL},
#endif
#ifdef LENET_HAVE_AVX512VNNI
    [LENET_ISA_AVX512VNNI] = {"avx512vnni", NULL, &lenet_q8_kernels_avx512vnni},
#else
    [LENET_ISA_AVX512VNNI] = {"avx512vnni", NULL, NULL},
#endif
};

const char *lenet_isa_name(int isa)
{
    return isa >= 0 && isa < LENET_NISA ? VARIANTS[isa].name : NULL;
}

const lenet_kernels *lenet_kernels_for(int isa)
{
    return isa >= 0 && isa < LENET_NISA ? VARIANTS[isa].kernels : NULL;
}

int lenet_isa_compiled(int isa)
{
    return lenet_kernels_for(isa) != NULL;
}

const lenet_q8_kernels *lenet_q8_kernels_for(int isa)
{
    return isa >= 0 && isa < LENET_NISA ? VARIANTS[isa].q8 : NULL;
}

int lenet_q8_compiled(int isa)
{
    return lenet_q8_kernels_for(isa) != NULL;
}

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define LENET_CPU_DETECT 1
#endif

/* this CPU and OS run the instructions of variant isa (built or not) */
static int cpu_runs(int isa)
{
    /* portable C, and generic vectors the compiler lowered to the target's baseline
     * (x86-64: SSE2; ARM64: NEON) */
    if (isa == LENET_ISA_PORTABLE || isa == LENET_ISA_VEC128) return 1;
#ifdef LENET_CPU_DETECT
    __builtin_cpu_init();
    if (isa == LENET_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == LENET_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == LENET_ISA_AVX512VNNI)
        return cpu_runs(LENET_ISA_AVX512) && __builtin_cpu_supports("avx512vnni");
#endif
    return 0;
}

int lenet_isa_supported(int isa)
{
    return lenet_isa_compiled(isa) && cpu_runs(isa);
}

int lenet_q8_supported(int isa)
{
    return lenet_q8_compiled(isa) && cpu_runs(isa);
}

int lenet_q8_best_isa(void)
{
    return lenet_q8_supported(LENET_ISA_AVX512VNNI) ? LENET_ISA_AVX512VNNI : LENET_ISA_PORTABLE;
}

int lenet_best_isa(void)
{
    const int fastest_first[] = {LENET_ISA_AVX512, LENET_ISA_AVX2, LENET_ISA_VEC128,
                                 LENET_ISA_PORTABLE};
    for (int k = 0; k < 4; k++)
        if (lenet_isa_supported(fastest_first[k])) return fastest_first[k];
    return LENET_ISA_PORTABLE;
}
