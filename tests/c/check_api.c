/*
 * Checks of liblenet's public API, driven by tests/test_clib.py (one process per mode):
 *
 *   check_api api MODEL.lenet IDX        edge cases, u8 == preprocess + float, probabilities,
 *                                        labels, many threads on one model; prints "api ok"
 *   check_api sweep MODEL.lenet STRIDE [MUTANT.lenet ...]
 *                                        every truncation of MODEL, every byte of its header,
 *                                        table and metadata flipped and every STRIDE-th byte
 *                                        after, each must be refused; then each MUTANT file
 *                                        loaded by path: prints "<file> <status>"
 *   check_api outputs MODEL.lenet IDX ISA
 *                                        the outputs of lenet_model_outputs_u8 with the
 *                                        variant ISA, as hex floats, one image a line
 *
 * Exit status 0 when every check passes; a failed check prints what failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lenet_native.h"
#include "digit_files.h"

static int failures = 0;
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "check_api: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

static unsigned char *read_all(const char *path, size_t *n)
{
    char err[256];
    unsigned char *b = digit_read_file(path, (size_t)1 << 26, n, err, sizeof err);
    if (!b) fprintf(stderr, "check_api: %s\n", err);
    return b;
}

/* ---- many threads on one model ---- */
typedef struct {
    const lenet_model *m;
    const unsigned char *digits;
    size_t n;
    float *out;
    int status;
} job;

static void *run_job(void *arg)
{
    job *j = (job *)arg;
    for (int rep = 0; rep < 3 && j->status == LENET_OK; rep++)
        for (size_t i = 0; i < j->n && j->status == LENET_OK; i++)   /* one image per call */
            j->status = lenet_model_outputs_u8(j->m, j->out + i * 10, j->digits + i * 784, 1, 1);
    return NULL;
}

static int mode_api(const char *model_path, const char *idx_path)
{
    lenet_model *m = NULL;
    CHECK(lenet_model_load(&m, model_path) == LENET_OK && m);
    if (!m) return 1;
    char err[256];
    size_t n = 0;
    unsigned char *digits = digit_load(idx_path, &n, err, sizeof err);
    if (!digits || n < 20) {
        fprintf(stderr, "check_api: %s\n", digits ? "too few images" : err);
        return 1;
    }
    float *x = (float *)malloc(n * 1024 * sizeof(float)), *o1 = (float *)malloc(n * 10 * sizeof(float));
    float *o2 = (float *)malloc(n * 10 * sizeof(float)), *pr = (float *)malloc(n * 10 * sizeof(float));
    int32_t *lab = (int32_t *)malloc(n * sizeof(int32_t)), *lab2 = (int32_t *)malloc(n * sizeof(int32_t));
    int head = -1;
    const char *isa = NULL;

    /* versions and messages */
    CHECK(strcmp(lenet_version(), LENET_VERSION_STRING) == 0);
    for (int s = 0; s <= LENET_ERR_CORRUPT; s++) CHECK(strlen(lenet_strerror(s)) > 5);
    CHECK(strcmp(lenet_strerror(12345), "unknown status") == 0);
    CHECK(lenet_model_head(m, &head) == LENET_OK && (head == LENET_HEAD_SOFTMAX || head == LENET_HEAD_RBF));
    CHECK(lenet_model_isa(m, &isa) == LENET_OK && isa && isa[0]);

    /* uint8 digits give the bits of preprocess + float input, at any thread count */
    CHECK(lenet_preprocess(x, digits, n) == LENET_OK);
    CHECK(lenet_model_outputs(m, o1, x, n, 1) == LENET_OK);
    CHECK(lenet_model_outputs_u8(m, o2, digits, n, 2) == LENET_OK);
    CHECK(memcmp(o1, o2, n * 10 * sizeof(float)) == 0);
    CHECK(lenet_model_outputs(m, o2, x, n, 3) == LENET_OK);
    CHECK(memcmp(o1, o2, n * 10 * sizeof(float)) == 0);
    /* labels: the largest logit or the smallest RBF distance; the same from u8 */
    CHECK(lenet_model_labels(m, lab, x, n, 2) == LENET_OK);
    CHECK(lenet_model_labels_u8(m, lab2, digits, n, 1) == LENET_OK);
    CHECK(memcmp(lab, lab2, n * sizeof(int32_t)) == 0);
    for (size_t i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < 10; k++)
            if (head == LENET_HEAD_RBF ? o1[i * 10 + k] < o1[i * 10 + best] : o1[i * 10 + k] > o1[i * 10 + best]) best = k;
        CHECK(lab[i] == best);
    }
    /* probabilities: sum to 1, largest at the label; the same from u8 */
    CHECK(lenet_model_probabilities(m, pr, x, n, 1) == LENET_OK);
    CHECK(lenet_model_probabilities_u8(m, o2, digits, n, 2) == LENET_OK);
    CHECK(memcmp(pr, o2, n * 10 * sizeof(float)) == 0);
    for (size_t i = 0; i < n; i++) {
        double s = 0.0;
        int best = 0;
        for (int k = 0; k < 10; k++) {
            s += pr[i * 10 + k];
            if (pr[i * 10 + k] > pr[i * 10 + best]) best = k;
        }
        CHECK(fabs(s - 1.0) < 1e-5);
        CHECK(best == lab[i]);
    }

    /* many threads on one model at once: the bits of the single-threaded call */
    enum { T = 4 };
    pthread_t th[T];
    job jobs[T];
    for (int t = 0; t < T; t++) {
        jobs[t].m = m;
        jobs[t].digits = digits;
        jobs[t].n = n < 100 ? n : 100;
        jobs[t].out = (float *)malloc(jobs[t].n * 10 * sizeof(float));
        jobs[t].status = LENET_OK;
        CHECK(pthread_create(&th[t], NULL, run_job, &jobs[t]) == 0);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        CHECK(jobs[t].status == LENET_OK);
        CHECK(memcmp(jobs[t].out, o1, jobs[t].n * 10 * sizeof(float)) == 0);
        free(jobs[t].out);
    }

    /* refusals */
    CHECK(lenet_model_outputs(m, NULL, x, 1, 1) == LENET_ERR_NULL);
    CHECK(lenet_model_outputs(m, o2, NULL, 1, 1) == LENET_ERR_NULL);
    CHECK(lenet_model_outputs(NULL, o2, x, 1, 1) == LENET_ERR_NULL);
    CHECK(lenet_model_labels_u8(m, lab, NULL, 1, 1) == LENET_ERR_NULL);
    CHECK(lenet_model_outputs(m, NULL, NULL, 0, 1) == LENET_OK);     /* n = 0: nothing */
    CHECK(lenet_model_outputs(m, o2, x, 1, 0) == LENET_OK);          /* threads < 1: one */
    x[5] = NAN;
    CHECK(lenet_model_outputs(m, o2, x, 2, 1) == LENET_ERR_NONFINITE);
    x[5] = INFINITY;
    CHECK(lenet_model_labels(m, lab, x, 2, 2) == LENET_ERR_NONFINITE);
    x[5] = 3e18f;
    CHECK(lenet_model_probabilities(m, pr, x, 2, 1) == LENET_ERR_NONFINITE);
    CHECK(lenet_model_set_isa(m, "no-such-isa") == LENET_ERR_ARG);
    CHECK(lenet_model_set_isa(m, "portable") == LENET_OK);
    CHECK(lenet_model_isa(m, &isa) == LENET_OK && strcmp(isa, "portable") == 0);
    CHECK(lenet_model_set_isa(m, NULL) == LENET_OK);
    CHECK(lenet_model_head(m, NULL) == LENET_ERR_NULL);
    lenet_model *none = m;
    CHECK(lenet_model_load(&none, "/nonexistent/model.lenet") == LENET_ERR_IO && none == NULL);
    CHECK(lenet_model_load_memory(&none, NULL, 0) != LENET_OK && none == NULL);
    CHECK(lenet_model_load_memory(&none, "not a model at all, not at all", 31) == LENET_ERR_FORMAT);
    CHECK(lenet_model_load(NULL, model_path) == LENET_ERR_NULL);
    CHECK(lenet_model_free(NULL) == LENET_OK);

    free(x); free(o1); free(o2); free(pr); free(lab); free(lab2); free(digits);
    lenet_model_free(m);
    if (!failures) printf("api ok\n");
    return failures != 0;
}

static int mode_sweep(const char *path, size_t stride, int nmutants, char **mutants)
{
    size_t n = 0;
    unsigned char *b = read_all(path, &n);
    if (!b || n < 32) return 1;
    lenet_model *m = NULL;
    CHECK(lenet_model_load_memory(&m, b, n) == LENET_OK);
    lenet_model_free(m);
    /* the header, the table and the metadata: the first 32 + 64 narrays + meta bytes */
    const size_t head_end = 32 + 64 * (size_t)b[16] + ((size_t)b[20] | (size_t)b[21] << 8 | (size_t)b[22] << 16);
    size_t truncs = 0, trunc_ok = 0, flips = 0, flip_ok = 0;
    for (size_t len = 0; len < n; len++) {              /* every truncation */
        m = NULL;
        const int st = lenet_model_load_memory(&m, b, len);
        truncs++;
        if (st == LENET_OK || m) {
            trunc_ok++;
            fprintf(stderr, "check_api: truncated to %lu bytes and accepted\n", (unsigned long)len);
        }
        lenet_model_free(m);
    }
    unsigned char *c = (unsigned char *)malloc(n);
    memcpy(c, b, n);
    for (size_t i = 0; i < n; i += i < head_end ? 1 : stride) {   /* flips */
        for (int kind = 0; kind < 2; kind++) {
            const unsigned char mask = kind ? (unsigned char)(1u << (i % 8)) : 0xFF;
            c[i] ^= mask;
            m = NULL;
            const int st = lenet_model_load_memory(&m, c, n);
            flips++;
            if (st == LENET_OK || m) {
                flip_ok++;
                fprintf(stderr, "check_api: byte %lu ^ 0x%02x accepted\n", (unsigned long)i, mask);
            }
            lenet_model_free(m);
            c[i] ^= mask;
        }
    }
    printf("truncations %lu accepted %lu\nflips %lu accepted %lu\n", (unsigned long)truncs,
           (unsigned long)trunc_ok, (unsigned long)flips, (unsigned long)flip_ok);
    for (int k = 0; k < nmutants; k++) {                /* crafted files, by path */
        m = NULL;
        const int st = lenet_model_load(&m, mutants[k]);
        printf("%s %d\n", mutants[k], st);
        if (st == LENET_OK || m) failures++;
        lenet_model_free(m);
    }
    free(c);
    free(b);
    return failures != 0 || trunc_ok || flip_ok;
}

static int mode_outputs(const char *model_path, const char *idx_path, const char *isa)
{
    lenet_model *m = NULL;
    int st = lenet_model_load(&m, model_path);
    if (st == LENET_OK) st = lenet_model_set_isa(m, isa);
    char err[256];
    size_t n = 0;
    unsigned char *digits = st == LENET_OK ? digit_load(idx_path, &n, err, sizeof err) : NULL;
    float *out = digits ? (float *)malloc((n + 1) * 10 * sizeof(float)) : NULL;
    if (out) st = lenet_model_outputs_u8(m, out, digits, n, 2);
    if (!out || st != LENET_OK) {
        fprintf(stderr, "check_api: %s\n", st != LENET_OK ? lenet_strerror(st) : err);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 10; k++) printf("%a%c", (double)out[i * 10 + k], k == 9 ? '\n' : ' ');
    free(out);
    free(digits);
    lenet_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "api") == 0) return mode_api(argv[2], argv[3]);
    if (argc >= 4 && strcmp(argv[1], "sweep") == 0)
        return mode_sweep(argv[2], (size_t)strtoul(argv[3], NULL, 10), argc - 4, argv + 4);
    if (argc == 5 && strcmp(argv[1], "outputs") == 0) return mode_outputs(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: check_api api MODEL IDX | sweep MODEL STRIDE [MUTANT...] | outputs MODEL IDX ISA\n");
    return 2;
}
