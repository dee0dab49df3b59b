/* The native kernel without Python, for tests that run it on another architecture (aarch64 under
 * qemu-user; tests/runtime/test_native.py builds and runs it where a cross compiler is installed).
 *
 *   native_harness IN OUT
 *
 * IN (little-endian): int64 nmeta, int64 meta[nmeta]; int64 narrays, then per array int64 len
 * and len bytes (what edgecomp_runtime.native._kernel_arrays gives); int64 portable; int64 B and
 * float32 x[B, L, F]. OUT: float32 y[B, horizon * n_targets]. Exit status 0 on success.
 */
#define EC_NO_PYTHON
#include "../../runtime/edgecomp_runtime/native/kernel.c"

#include <stdio.h>

static int64_t read_i64(FILE *f) {
    int64_t v = -1;
    return fread(&v, sizeof v, 1, f) == 1 ? v : -1;
}

static void *read_bytes(FILE *f, size_t n) {
    void *p = malloc(n ? n : 1);
    if (p && n && fread(p, 1, n, f) != n) {
        free(p);
        return NULL;
    }
    return p;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    FILE *f = fopen(argv[1], "rb");
    if (!f) return 3;
    long meta[8 + 3 * MAX_LAYERS];
    const int64_t nmeta = read_i64(f);
    if (nmeta < 1 || nmeta > 8 + 3 * MAX_LAYERS) return 4;
    for (int64_t i = 0; i < nmeta; i++) meta[i] = (long)read_i64(f);
    const int64_t n = read_i64(f);
    if (n < 1 || n > 3 * 4 * MAX_LAYERS + 8) return 4;
    const void *bufs[3 * 4 * MAX_LAYERS + 8];
    size_t lens[3 * 4 * MAX_LAYERS + 8];
    for (int64_t i = 0; i < n; i++) {
        const int64_t len = read_i64(f);
        if (len < 0 || !(bufs[i] = read_bytes(f, (size_t)len))) return 5;
        lens[i] = (size_t)len;
    }
    const int portable = (int)read_i64(f);
    Source src = {bufs, lens, (size_t)n, 0, NULL, NULL};
    Model *md = model_new(meta, (size_t)nmeta, &src, portable);
    if (!md) {
        fprintf(stderr, "model_new: %s\n", src.err);
        return 6;
    }
    const int64_t B = read_i64(f);
    if (B < 1) return 7;
    const size_t nx = (size_t)B * md->L * md->F, ny = (size_t)B * md->horizon * md->n_targets;
    float *x = read_bytes(f, nx * 4), *y = malloc(ny * 4);
    fclose(f);
    if (!x || !y || model_run(md, x, (int)B, y)) return 8;
    FILE *out = fopen(argv[2], "wb");
    if (!out || fwrite(y, 4, ny, out) != ny || fclose(out)) return 9;
    model_free(md);
    return 0;
}
