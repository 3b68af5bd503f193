/*
 * libFuzzer target of the .lenet loader (lenet_model_load_memory, csrc/api.c): any input
 * must give a status, never a crash, a read outside the input, or undefined behaviour.
 * Each input is loaded twice: as it is (most mutations then stop at the CRC check), and
 * with its last four bytes replaced by the CRC-32 of the rest, so that mutations reach the
 * table, offset and value checks behind the CRC. A model that loads is run on one image.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc csrc/fuzz/fuzz_load.c \
 *       csrc/api.c csrc/network.c csrc/layers.c csrc/isa.c -lm -o fuzz_load
 *   ./fuzz_load -runs=20000 corpus/        # corpus: valid .lenet files (.ci/sanitize makes them)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lenet_native.h"

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t table[256], crc = 0xFFFFFFFFu;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

static void load_and_run(const uint8_t *data, size_t size)
{
    lenet_model *m = NULL;
    const int st = lenet_model_load_memory(&m, data, size);
    if ((st == LENET_OK) != (m != NULL)) abort();         /* a model exactly when OK */
    if (st != LENET_OK) {
        if (lenet_strerror(st)[0] == '\0') abort();
        return;
    }
    float x[32 * 32], out[10];
    for (int k = 0; k < 32 * 32; k++) x[k] = (float)(k % 7) * 0.2f - 0.1f;
    if (lenet_model_outputs(m, out, x, 1, 1) != LENET_OK) abort();
    lenet_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_and_run(data, size);
    if (size >= 36) {
        uint8_t *fixed = (uint8_t *)malloc(size);
        if (!fixed) return 0;
        memcpy(fixed, data, size);
        const uint32_t crc = crc32_of(fixed, size - 4);
        for (int k = 0; k < 4; k++) fixed[size - 4 + k] = (uint8_t)(crc >> (8 * k));
        load_and_run(fixed, size);
        free(fixed);
    }
    return 0;
}
