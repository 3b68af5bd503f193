/*
 * lenet_native.h -- LeNet-5 inference from C: the public interface of liblenet.
 *
 * LeNet-5 exactly as LeCun, Bottou, Bengio and Haffner (1998) made it, computed by the same
 * C kernels as the Python package lenet_native, with the same results: for the same
 * instruction-set variant an image gets the same output bits as LeNet5.forward.
 *
 *     lenet_model *m;
 *     int st = lenet_model_load(&m, "lenet5.lenet");        // a file written by lenet_native
 *     if (st != LENET_OK) { fprintf(stderr, "%s\n", lenet_strerror(st)); return 1; }
 *     int32_t label;
 *     st = lenet_model_labels_u8(m, &label, digit, 1, 1);   // digit: 28 x 28 uint8, 0 = paper
 *     lenet_model_free(m);
 *
 * Conventions
 *   - Every function returns an int status, LENET_OK (0) on success (lenet_strerror and
 *     lenet_version return strings); on failure outputs are unspecified and nothing leaks.
 *   - A model handle is opaque and read-only once loaded: any number of threads may run
 *     inference on one model at the same time. Only lenet_model_set_isa and
 *     lenet_model_free change it; call them while no other thread uses the model.
 *   - Memory: the caller owns inputs and outputs; the library allocates the model (fixed
 *     size, about 240 KB) and, per inference call, a scratch workspace (about 0.75 MB per
 *     thread with AVX-512, less otherwise; uint8 input adds up to 4 MB of converted images),
 *     freed before the call returns. The library keeps no global mutable state.
 *   - nthreads: threads used by one call (OpenMP); 1 when the library was built without
 *     OpenMP; values below 1 mean 1. An image's result never depends on nthreads nor on the
 *     batch it comes in.
 *   - Arrays are C order, float32 native endian: inputs N x 32 x 32 (already preprocessed,
 *     the network's input) or N x 28 x 28 uint8 (MNIST digits, 0 = background, 255 = ink);
 *     outputs N x 10.
 *
 * Build and link: pkg-config --cflags --libs lenet, or in CMake
 * find_package(lenet) and target_link_libraries(app PRIVATE lenet::lenet) (lenet::lenet_static
 * for the static library, which also needs the OpenMP runtime when it was built with it).
 */
#ifndef LENET_NATIVE_H
#define LENET_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#define LENET_VERSION_MAJOR 0
#define LENET_VERSION_MINOR 1
#define LENET_VERSION_PATCH 0
#define LENET_VERSION_STRING "0.1.0"
/* the .lenet file format version this library reads and lenet_native writes */
#define LENET_FORMAT_VERSION 1

#if defined(_WIN32) && defined(LENET_SHARED_BUILD)
#define LENET_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define LENET_API __attribute__((visibility("default")))
#else
#define LENET_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------------------- */
enum {
    LENET_OK = 0,
    LENET_ERR_SIZE = 1,      /* a size is negative, zero where it may not be, or inconsistent */
    LENET_ERR_ARG = 2,       /* an argument is out of its domain (unknown head or ISA name, ...) */
    LENET_ERR_LABEL = 3,     /* a label is outside 0..9 (training kernels only) */
    LENET_ERR_NULL = 4,      /* a required pointer is NULL */
    LENET_ERR_WORKSPACE = 5, /* a workspace is too small (internal kernels only) */
    LENET_ERR_ISA = 6,       /* the instruction-set variant is not built or not on this CPU */
    LENET_ERR_NONFINITE = 7, /* an input holds a NaN, an infinity or |x| >= 2^61 */
    LENET_ERR_NOMEM = 8,     /* out of memory */
    LENET_ERR_IO = 9,        /* the file cannot be opened or read */
    LENET_ERR_FORMAT = 10,   /* not a .lenet file (wrong magic) */
    LENET_ERR_VERSION = 11,  /* a .lenet format version this library does not read */
    LENET_ERR_TRUNCATED = 12,/* the file is shorter than its header says */
    LENET_ERR_CRC = 13,      /* the file's CRC-32 does not match its contents */
    LENET_ERR_CORRUPT = 14   /* the file's structure or values are invalid: sizes, names,
                                shapes, offsets, NaN/infinity, Table I's zeros, ... */
};

/* the two output layers: a dense layer with softmax, or the paper's Euclidean RBF units */
enum { LENET_HEAD_SOFTMAX = 0, LENET_HEAD_RBF = 1 };

/* ---- library ------------------------------------------------------------------------ */

/* The library's version, "MAJOR.MINOR.PATCH" (compare with LENET_VERSION_STRING to catch a
 * header/library mismatch). */
LENET_API const char *lenet_version(void);

/* A short English message for a status code (never NULL; "unknown status" if not one). */
LENET_API const char *lenet_strerror(int status);

/* ---- models ------------------------------------------------------------------------- */

typedef struct lenet_model lenet_model;

/* Load a .lenet model file (docs/lenet-format.md; written by lenet_native's
 * LeNet5.save("m.lenet") or `lenet-native export ... m.lenet`). *model receives a new
 * handle, or NULL on failure. Everything is checked: magic, version, sizes, CRC-32, array
 * names and shapes, Table I's zeros, finiteness; a damaged or truncated file gives a status
 * (LENET_ERR_FORMAT .. LENET_ERR_CORRUPT), never a crash. Reads at most 2 MiB. */
LENET_API int lenet_model_load(lenet_model **model, const char *path);

/* lenet_model_load from the size bytes at data (the whole file's contents); never reads
 * outside them. The buffer may be freed once this returns. */
LENET_API int lenet_model_load_memory(lenet_model **model, const void *data, size_t size);

/* Free a model (NULL is allowed). Always LENET_OK. */
LENET_API int lenet_model_free(lenet_model *model);

/* *head = LENET_HEAD_SOFTMAX or LENET_HEAD_RBF. */
LENET_API int lenet_model_head(const lenet_model *model, int *head);

/* Choose the instruction-set variant the model runs with: "portable", "vec128", "avx2",
 * "avx512", or NULL / "best" for the fastest this CPU supports (the default after loading,
 * and lenet_native's default). LENET_ERR_ARG for an unknown name, LENET_ERR_ISA if this
 * library or CPU lacks it. Variants agree to float32 rounding; within one, results are
 * deterministic. Not thread-safe: call before sharing the model. */
LENET_API int lenet_model_set_isa(lenet_model *model, const char *isa);

/* *isa = the name of the variant the model runs with (a static string). */
LENET_API int lenet_model_isa(const lenet_model *model, const char **isa);

/* ---- inference ---------------------------------------------------------------------- */

/* The head's outputs, what lenet_native's LeNet5.forward returns: out (n, 10) gets the
 * logits (softmax head) or the RBF distances y_i (rbf head) of x (n, 32, 32), preprocessed
 * input. LENET_ERR_NONFINITE if an input value is NaN, infinite or |x| >= 2^61. n = 0 does
 * nothing. */
LENET_API int lenet_model_outputs(const lenet_model *model, float *out, const float *x,
                                  size_t n, int nthreads);

/* Class probabilities (n, 10): softmax of the logits, or of -y for the RBF head (as
 * LeNet5.predict_proba). */
LENET_API int lenet_model_probabilities(const lenet_model *model, float *probs, const float *x,
                                        size_t n, int nthreads);

/* Predicted labels (n,), 0..9: the largest logit, or the nearest RBF prototype (smallest y);
 * ties go to the lowest label (as LeNet5.predict). */
LENET_API int lenet_model_labels(const lenet_model *model, int32_t *labels, const float *x,
                                 size_t n, int nthreads);

/* The same three from MNIST-style digits (n, 28, 28) uint8 (0 = background, 255 = ink),
 * preprocessed as by lenet_preprocess. */
LENET_API int lenet_model_outputs_u8(const lenet_model *model, float *out,
                                     const uint8_t *digits, size_t n, int nthreads);
LENET_API int lenet_model_probabilities_u8(const lenet_model *model, float *probs,
                                           const uint8_t *digits, size_t n, int nthreads);
LENET_API int lenet_model_labels_u8(const lenet_model *model, int32_t *labels,
                                    const uint8_t *digits, size_t n, int nthreads);

/* The paper's preprocessing, bit-identical to lenet_native.preprocess: x (n, 32, 32) gets
 * digits (n, 28, 28) with 2 pixels of background on every side, pixel p mapped to
 * p * (1.275 / 255) - 0.1 in float32 (background -0.1, ink 1.175). */
LENET_API int lenet_preprocess(float *x, const uint8_t *digits, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* LENET_NATIVE_H */
