/*
 * The public inference API of lenet_native.h over the kernels of lenet.h: the .lenet
 * loader (docs/lenet-format.md), the model handle, preprocessing, and outputs /
 * probabilities / labels for batches. A model is read-only once loaded; every inference
 * call builds its lenet_net on the stack and allocates its own workspace, so calls on one
 * model from many threads never touch shared mutable memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lenet.h"
#include "lenet_native.h"

/* ------------------------------------------------------------------------ messages */

const char *lenet_version(void)
{
    return LENET_VERSION_STRING;
}

const char *lenet_strerror(int status)
{
    switch (status) {
    case LENET_OK: return "success";
    case LENET_ERR_SIZE: return "a size is negative or inconsistent";
    case LENET_ERR_ARG: return "an argument is out of its domain";
    case LENET_ERR_LABEL: return "a label is outside 0..9";
    case LENET_ERR_NULL: return "a required pointer is NULL";
    case LENET_ERR_WORKSPACE: return "the workspace is too small";
    case LENET_ERR_ISA: return "the instruction-set variant is not built into this library or not supported by this CPU";
    case LENET_ERR_NONFINITE: return "an input value is NaN, infinite or too large (|x| >= 2^61)";
    case LENET_ERR_NOMEM: return "out of memory";
    case LENET_ERR_IO: return "the file cannot be opened or read";
    case LENET_ERR_FORMAT: return "not a .lenet model file (wrong magic)";
    case LENET_ERR_VERSION: return "unsupported .lenet format version";
    case LENET_ERR_TRUNCATED: return "the .lenet file is truncated";
    case LENET_ERR_CRC: return "the .lenet file's CRC-32 does not match (damaged file)";
    case LENET_ERR_CORRUPT: return "the .lenet file is corrupt (invalid sizes, names, shapes, offsets or values)";
    default: return "unknown status";
    }
}

/* ------------------------------------------------------------------------ Table I */

/* C3 map -> the S2 maps it reads (the paper's Table I), and the pair list handed to the
 * kernels: (C3 map, S2 map) of each connection, sorted by C3 map (60 pairs) */
static const unsigned char TABLE_I[LENET_C3_MAPS][LENET_C1_MAPS] = {
    {1, 1, 1, 0, 0, 0}, {0, 1, 1, 1, 0, 0}, {0, 0, 1, 1, 1, 0}, {0, 0, 0, 1, 1, 1},
    {1, 0, 0, 0, 1, 1}, {1, 1, 0, 0, 0, 1}, {1, 1, 1, 1, 0, 0}, {0, 1, 1, 1, 1, 0},
    {0, 0, 1, 1, 1, 1}, {1, 0, 0, 1, 1, 1}, {1, 1, 0, 0, 1, 1}, {1, 1, 1, 0, 0, 1},
    {1, 1, 0, 1, 1, 0}, {0, 1, 1, 0, 1, 1}, {1, 0, 1, 1, 0, 1}, {1, 1, 1, 1, 1, 1},
};
static const int32_t C3_OUT[LENET_C3_PAIRS] = {
    0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8, 8, 8, 8,
    9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11, 12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14,
    15, 15, 15, 15, 15, 15};
static const int32_t C3_IN[LENET_C3_PAIRS] = {
    0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4, 5, 0, 4, 5, 0, 1, 5, 0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5,
    0, 3, 4, 5, 0, 1, 4, 5, 0, 1, 2, 5, 0, 1, 3, 4, 1, 2, 4, 5, 0, 2, 3, 5,
    0, 1, 2, 3, 4, 5};

/* ------------------------------------------------------------------------ the model */

struct lenet_model {
    float *params;      /* (LENET_NPARAMS,) inside this allocation, C5's weights on a 64-byte line */
    int head;           /* LENET_HEAD_* */
    int isa;            /* LENET_ISA_* */
};

/* One allocation: the struct, then the parameters placed so that C5's weights (read a
 * 400-float row at a time) start on a 64-byte line, as lenet_native places them (speed
 * only: results do not depend on addresses). */
static lenet_model *model_new(void)
{
    const size_t bytes = sizeof(lenet_model) + 64 + (size_t)LENET_NPARAMS * sizeof(float);
    lenet_model *m = (lenet_model *)calloc(1, bytes);
    if (!m) return NULL;
    uintptr_t c5 = (uintptr_t)(m + 1) + (uintptr_t)LENET_OFF_C5_W * sizeof(float);
    c5 = (c5 + 63) & ~(uintptr_t)63;
    m->params = (float *)(c5 - (uintptr_t)LENET_OFF_C5_W * sizeof(float));
    m->isa = lenet_best_isa();
    return m;
}

int lenet_model_free(lenet_model *model)
{
    free(model);
    return LENET_OK;
}

int lenet_model_head(const lenet_model *model, int *head)
{
    if (!model || !head) return LENET_ERR_NULL;
    *head = model->head;
    return LENET_OK;
}

int lenet_model_isa(const lenet_model *model, const char **isa)
{
    if (!model || !isa) return LENET_ERR_NULL;
    *isa = lenet_isa_name(model->isa);
    return LENET_OK;
}

int lenet_model_set_isa(lenet_model *model, const char *isa)
{
    if (!model) return LENET_ERR_NULL;
    if (!isa || strcmp(isa, "best") == 0) {
        model->isa = lenet_best_isa();
        return LENET_OK;
    }
    for (int k = 0; k < LENET_NISA; k++)
        if (strcmp(isa, lenet_isa_name(k)) == 0) {
            if (!lenet_isa_supported(k)) return LENET_ERR_ISA;
            model->isa = k;
            return LENET_OK;
        }
    return LENET_ERR_ARG;
}

/* ------------------------------------------------------------------------ .lenet files */

#define HEADER_BYTES 32
#define ENTRY_BYTES 64
#define NAME_BYTES 24
#define MAX_META_BYTES (1u << 20)
#define MAX_FILE_BYTES (2u << 20)   /* > header + table + meta + arrays + padding */
#define DTYPE_F32 1
#define DTYPE_U8 2
static const unsigned char MAGIC[8] = {0x89, 'L', 'E', 'N', 'E', 'T', '\r', '\n'};

/* where an array goes: an offset into the flat parameters, or one of these */
enum { DEST_C3_DENSE = -1, DEST_C3_TABLE = -2 };

typedef struct {
    const char *name;
    int dtype, ndim;
    uint32_t dims[4];
    int dest;
} array_spec;

/* The arrays of each head, in the order of the file (docs/lenet-format.md). */
#define TRUNK_ARRAYS \
    {"c1.weight", DTYPE_F32, 4, {6, 1, 5, 5}, LENET_OFF_C1_W}, \
    {"c1.bias", DTYPE_F32, 1, {6, 0, 0, 0}, LENET_OFF_C1_B}, \
    {"s2.weight", DTYPE_F32, 1, {6, 0, 0, 0}, LENET_OFF_S2_W}, \
    {"s2.bias", DTYPE_F32, 1, {6, 0, 0, 0}, LENET_OFF_S2_B}, \
    {"c3.weight", DTYPE_F32, 4, {16, 6, 5, 5}, DEST_C3_DENSE}, \
    {"c3.bias", DTYPE_F32, 1, {16, 0, 0, 0}, LENET_OFF_C3_B}, \
    {"s4.weight", DTYPE_F32, 1, {16, 0, 0, 0}, LENET_OFF_S4_W}, \
    {"s4.bias", DTYPE_F32, 1, {16, 0, 0, 0}, LENET_OFF_S4_B}, \
    {"c5.weight", DTYPE_F32, 4, {120, 16, 5, 5}, LENET_OFF_C5_W}, \
    {"c5.bias", DTYPE_F32, 1, {120, 0, 0, 0}, LENET_OFF_C5_B}, \
    {"f6.weight", DTYPE_F32, 2, {84, 120, 0, 0}, LENET_OFF_F6_W}, \
    {"f6.bias", DTYPE_F32, 1, {84, 0, 0, 0}, LENET_OFF_F6_B}
static const array_spec SOFTMAX_ARRAYS[] = {
    TRUNK_ARRAYS,
    {"out.weight", DTYPE_F32, 2, {10, 84, 0, 0}, LENET_OFF_OUT_W},
    {"out.bias", DTYPE_F32, 1, {10, 0, 0, 0}, LENET_OFF_OUT_B},
    {"c3.table", DTYPE_U8, 2, {16, 6, 0, 0}, DEST_C3_TABLE},
};
static const array_spec RBF_ARRAYS[] = {
    TRUNK_ARRAYS,
    {"out.prototypes", DTYPE_F32, 2, {10, 84, 0, 0}, LENET_OFF_OUT_W},
    {"c3.table", DTYPE_U8, 2, {16, 6, 0, 0}, DEST_C3_TABLE},
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static float rdf32(const unsigned char *p)
{
    const uint32_t u = rd32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, as zlib's crc32 and Python's
 * zlib.crc32), table built on the stack */
static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

static int is_finite_bits(uint32_t u)
{
    return (u & 0x7F800000u) != 0x7F800000u;
}

/* Check the structure of the file held in b[0..n): header, sizes, CRC, array table
 * (every check but the values). Reads only inside b; every size and offset is bounded
 * before use, in 64-bit arithmetic that cannot overflow (each quantity is first bounded by
 * MAX_FILE_BYTES). Cheap for a file refused early: a truncation is found before the CRC. */
static int check_structure(const unsigned char *b, size_t n)
{
    if (n < sizeof MAGIC)
        return memcmp(b, MAGIC, n) == 0 ? LENET_ERR_TRUNCATED : LENET_ERR_FORMAT;
    if (memcmp(b, MAGIC, sizeof MAGIC) != 0) return LENET_ERR_FORMAT;
    if (n < HEADER_BYTES) return LENET_ERR_TRUNCATED;
    if (rd32(b + 8) != LENET_FORMAT_VERSION) return LENET_ERR_VERSION;
    const uint32_t h = rd32(b + 12), narrays = rd32(b + 16), meta = rd32(b + 20);
    const uint64_t file_bytes = rd64(b + 24);
    if (h != LENET_HEAD_SOFTMAX && h != LENET_HEAD_RBF) return LENET_ERR_CORRUPT;
    const array_spec *spec = h == LENET_HEAD_RBF ? RBF_ARRAYS : SOFTMAX_ARRAYS;
    const uint32_t nspec = h == LENET_HEAD_RBF ? (uint32_t)COUNT(RBF_ARRAYS) : (uint32_t)COUNT(SOFTMAX_ARRAYS);
    if (narrays != nspec || meta > MAX_META_BYTES || file_bytes > MAX_FILE_BYTES)
        return LENET_ERR_CORRUPT;
    const uint64_t data_start = HEADER_BYTES + (uint64_t)ENTRY_BYTES * narrays + meta;
    if (file_bytes < data_start + 4) return LENET_ERR_CORRUPT;
    if ((uint64_t)n < file_bytes) return LENET_ERR_TRUNCATED;
    if ((uint64_t)n > file_bytes) return LENET_ERR_CORRUPT;   /* data after the CRC */
    const size_t crc_at = (size_t)file_bytes - 4;
    if (crc32_of(b, crc_at) != rd32(b + crc_at)) return LENET_ERR_CRC;

    /* the table: names, types and shapes exactly as expected; arrays in increasing order,
     * 4-byte aligned, after the metadata, before the CRC, not overlapping */
    uint64_t prev_end = data_start;
    for (uint32_t i = 0; i < narrays; i++) {
        const unsigned char *e = b + HEADER_BYTES + (size_t)ENTRY_BYTES * i;
        const array_spec *s = &spec[i];
        char name[NAME_BYTES] = {0};
        memcpy(name, s->name, strlen(s->name));
        if (memcmp(e, name, NAME_BYTES) != 0) return LENET_ERR_CORRUPT;
        if (rd32(e + 24) != (uint32_t)s->dtype || rd32(e + 28) != (uint32_t)s->ndim)
            return LENET_ERR_CORRUPT;
        uint64_t count = 1;
        for (int d = 0; d < 4; d++) {
            if (rd32(e + 32 + 4 * d) != s->dims[d]) return LENET_ERR_CORRUPT;
            if (d < s->ndim) count *= s->dims[d];
        }
        const uint64_t off = rd64(e + 48), nbytes = rd64(e + 56);
        if (nbytes != count * (s->dtype == DTYPE_F32 ? 4u : 1u)) return LENET_ERR_CORRUPT;
        if (off % 4 != 0 || off < prev_end || off > crc_at || nbytes > crc_at - off)
            return LENET_ERR_CORRUPT;
        prev_end = off + nbytes;
    }
    return LENET_OK;
}

/* The values of a file check_structure accepted, into params (LENET_NPARAMS,) and *head:
 * finite floats; c3.table is Table I; c3.weight zero where Table I does not connect; RBF
 * prototypes +1 or -1. */
static int read_values(float *params, int *head, const unsigned char *b)
{
    const uint32_t h = rd32(b + 12), narrays = rd32(b + 16);
    const array_spec *spec = h == LENET_HEAD_RBF ? RBF_ARRAYS : SOFTMAX_ARRAYS;
    memset(params, 0, (size_t)LENET_NPARAMS * sizeof(float));
    for (uint32_t i = 0; i < narrays; i++) {
        const unsigned char *e = b + HEADER_BYTES + (size_t)ENTRY_BYTES * i;
        const array_spec *s = &spec[i];
        const unsigned char *v = b + (size_t)rd64(e + 48);
        const size_t count = (size_t)rd64(e + 56) / (s->dtype == DTYPE_F32 ? 4u : 1u);
        if (s->dest == DEST_C3_TABLE) {
            for (int m = 0; m < LENET_C3_MAPS; m++)
                for (int c = 0; c < LENET_C1_MAPS; c++)
                    if (v[m * LENET_C1_MAPS + c] != TABLE_I[m][c]) return LENET_ERR_CORRUPT;
            continue;
        }
        for (size_t k = 0; k < count; k++)
            if (!is_finite_bits(rd32(v + 4 * k))) return LENET_ERR_CORRUPT;
        if (s->dest == DEST_C3_DENSE) {
            float *w = params + LENET_OFF_C3_W;
            int p = 0;
            for (int m = 0; m < LENET_C3_MAPS; m++)
                for (int c = 0; c < LENET_C1_MAPS; c++) {
                    const unsigned char *kv = v + 4 * (size_t)((m * LENET_C1_MAPS + c) * LENET_KK);
                    for (int k = 0; k < LENET_KK; k++) {
                        const float f = rdf32(kv + 4 * k);
                        if (TABLE_I[m][c]) w[p * LENET_KK + k] = f;
                        else if (f != 0.0f) return LENET_ERR_CORRUPT;
                    }
                    p += TABLE_I[m][c];
                }
            continue;
        }
        float *dst = params + s->dest;
        for (size_t k = 0; k < count; k++) dst[k] = rdf32(v + 4 * k);
        if (h == LENET_HEAD_RBF && s->dest == LENET_OFF_OUT_W)
            for (size_t k = 0; k < count; k++)
                if (dst[k] != 1.0f && dst[k] != -1.0f) return LENET_ERR_CORRUPT;
    }
    *head = (int)h;
    return LENET_OK;
}

int lenet_model_load_memory(lenet_model **model, const void *data, size_t size)
{
    if (!model) return LENET_ERR_NULL;
    *model = NULL;
    if (!data && size) return LENET_ERR_NULL;
    const unsigned char *b = (const unsigned char *)(data ? data : "");
    int st = check_structure(b, data ? size : 0);   /* before allocating anything */
    if (st != LENET_OK) return st;
    lenet_model *m = model_new();
    if (!m) return LENET_ERR_NOMEM;
    st = read_values(m->params, &m->head, b);
    if (st != LENET_OK) {
        free(m);
        return st;
    }
    *model = m;
    return LENET_OK;
}

int lenet_model_load(lenet_model **model, const char *path)
{
    if (!model) return LENET_ERR_NULL;
    *model = NULL;
    if (!path) return LENET_ERR_NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return LENET_ERR_IO;
    /* the header says how long the file is: read that much and one byte more (data after
     * the CRC is an error), never more than MAX_FILE_BYTES + 1 */
    unsigned char hdr[HEADER_BYTES];
    size_t got = fread(hdr, 1, sizeof hdr, f);
    size_t want = got;
    if (got == sizeof hdr && memcmp(hdr, MAGIC, sizeof MAGIC) == 0) {
        const uint64_t fb = rd64(hdr + 24);
        want = fb > MAX_FILE_BYTES || fb < got ? got : (size_t)fb;   /* else refused unread */
    }
    unsigned char *buf = (unsigned char *)malloc(want + 1);
    if (!buf) {
        fclose(f);
        return LENET_ERR_NOMEM;
    }
    memcpy(buf, hdr, got);
    if (got == sizeof hdr) got += fread(buf + got, 1, want + 1 - got, f);
    const int io_error = ferror(f);
    fclose(f);
    int st = io_error ? LENET_ERR_IO : lenet_model_load_memory(model, buf, got);
    free(buf);
    return st;
}

/* ------------------------------------------------------------------------ inference */

int lenet_preprocess(float *x, const uint8_t *digits, size_t n)
{
    if (n == 0) return LENET_OK;
    if (!x || !digits) return LENET_ERR_NULL;
    /* lenet_native.preprocess: np.float32(p) * np.float32(1.275 / 255) - np.float32(0.1),
     * two float32 roundings (no fused multiply-add: this file has no -mfma, C99 mode
     * contracts nothing) */
    const float scale = (float)(1.275 / 255.0), shift = 0.1f;
    for (size_t i = 0; i < n; i++) {
        float *xi = x + i * 1024;
        const uint8_t *d = digits + i * 784;
        for (int k = 0; k < 1024; k++) xi[k] = -shift;
        for (int r = 0; r < 28; r++)
            for (int c = 0; c < 28; c++) xi[(r + 2) * 32 + c + 2] = (float)d[r * 28 + c] * scale - shift;
    }
    return LENET_OK;
}

enum { RESULT_OUTPUTS, RESULT_PROBS, RESULT_LABELS };

/* images converted or scored per pass when the result needs a temporary (uint8 input,
 * probabilities, labels): bounds the extra memory whatever n is (4 MB of input floats) */
#define CHUNK 1024

static int run(const lenet_model *m, int kind, void *result, const float *x, const uint8_t *u8,
               size_t n, int nthreads)
{
    if (!m) return LENET_ERR_NULL;
    if (n == 0) return LENET_OK;
    if (!result || (!x && !u8)) return LENET_ERR_NULL;
    if (n > (size_t)INT64_MAX / 1024 || n > SIZE_MAX / (1024 * sizeof(float))) return LENET_ERR_SIZE;
    const lenet_net net = {m->params, C3_OUT, C3_IN, m->head, m->isa};
    const int temp_out = kind != RESULT_OUTPUTS;
    const size_t chunk = (u8 || temp_out) && n > CHUNK ? CHUNK : n;
    if (nthreads < 1) nthreads = 1;
    if ((size_t)nthreads > chunk) nthreads = (int)chunk;
    const size_t ws_floats = lenet_forward_workspace_size(nthreads);
    float *ws = (float *)malloc(ws_floats * sizeof(float));
    float *xbuf = u8 ? (float *)malloc(chunk * 1024 * sizeof(float)) : NULL;
    float *obuf = temp_out ? (float *)malloc(chunk * 10 * sizeof(float)) : NULL;
    int st = LENET_OK;
    if (!ws || (u8 && !xbuf) || (temp_out && !obuf)) st = LENET_ERR_NOMEM;
    const float sign = m->head == LENET_HEAD_RBF ? -1.0f : 1.0f;
    for (size_t lo = 0; st == LENET_OK && lo < n; lo += chunk) {
        const size_t cnt = n - lo < chunk ? n - lo : chunk;
        const float *xi = x ? x + lo * 1024 : xbuf;
        if (u8) lenet_preprocess(xbuf, u8 + lo * 784, cnt);
        float *o = temp_out ? obuf : (float *)result + lo * 10;
        /* preprocessed digits are finite by construction: only float input is checked */
        st = lenet_forward_checked(o, NULL, &net, xi, (int64_t)cnt, nthreads, u8 == NULL, ws, ws_floats);
        if (st != LENET_OK) break;
        if (kind == RESULT_PROBS) {
            st = lenet_softmax_forward((float *)result + lo * 10, o, sign, (int64_t)cnt, 10);
        } else if (kind == RESULT_LABELS) {
            int32_t *lab = (int32_t *)result + lo;
            for (size_t i = 0; i < cnt; i++) {
                /* numpy's argmax / argmin: the first extreme; a NaN counts as the extreme */
                const float *oi = o + i * 10;
                int best = 0;
                for (int k = 1; k < 10 && oi[best] == oi[best]; k++)
                    if (oi[k] != oi[k] || sign * oi[k] > sign * oi[best]) best = k;
                lab[i] = best;
            }
        }
    }
    free(ws);
    free(xbuf);
    free(obuf);
    return st;
}

int lenet_model_outputs(const lenet_model *model, float *out, const float *x, size_t n, int nthreads)
{
    return run(model, RESULT_OUTPUTS, out, x, NULL, n, nthreads);
}

int lenet_model_probabilities(const lenet_model *model, float *probs, const float *x, size_t n,
                              int nthreads)
{
    return run(model, RESULT_PROBS, probs, x, NULL, n, nthreads);
}

int lenet_model_labels(const lenet_model *model, int32_t *labels, const float *x, size_t n,
                       int nthreads)
{
    return run(model, RESULT_LABELS, labels, x, NULL, n, nthreads);
}

int lenet_model_outputs_u8(const lenet_model *model, float *out, const uint8_t *digits, size_t n,
                           int nthreads)
{
    return run(model, RESULT_OUTPUTS, out, NULL, digits, n, nthreads);
}

int lenet_model_probabilities_u8(const lenet_model *model, float *probs, const uint8_t *digits,
                                 size_t n, int nthreads)
{
    return run(model, RESULT_PROBS, probs, NULL, digits, n, nthreads);
}

int lenet_model_labels_u8(const lenet_model *model, int32_t *labels, const uint8_t *digits,
                          size_t n, int nthreads)
{
    return run(model, RESULT_LABELS, labels, NULL, digits, n, nthreads);
}
