/* edgecomp native recurrent kernel: stacked LSTM / GRU + Linear head, fp32 or int8 per map.
 *
 * The math is edgecomp_runtime/native/reference.py's (the test oracle). Python packs and
 * validates everything (native/__init__.py); prepare() copies the packed arrays into one
 * aligned block it owns and checks every buffer size again; run() reads it only, so one
 * prepared model may run in several threads at once (scratch is per call, no global state).
 *
 * Layouts (Np = N rounded up to 64, Kp = K rounded up to 4):
 *   int8 weight  [Np/64][Kp/4][64][4] int8 (the 4-byte groups vpdpbusd multiplies)
 *   fp32 weight  [Np/64][K][64] float
 *   comp[n] = 128 * sum_k w[n][k] (activations are stored as q + 128 in uint8)
 * Sequences are time-major [L][B][width] float.
 *
 * x86-64: the int8 GEMM uses AVX512-VNNI where the CPU has it, else AVX2 (checked at load; both
 * give the exact integer sums), the fp32 GEMM and the gates AVX-512, else (the gates) AVX2; every
 * other loop is plain C, compiled for x86-64, x86-64-v3 and x86-64-v4 (target_clones) and picked
 * at load. Other CPUs (aarch64) run the plain C,
 * auto-vectorized, int8 maps as exact integer math in float32.
 */
#ifndef EC_NO_PYTHON /* EC_NO_PYTHON: the kernel alone (tests/runtime/native_harness.c) */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(EC_PORTABLE)
#define EC_X86 1
#define CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#include <immintrin.h>
#else
#define EC_X86 0
#define CLONES
#endif

#define MAX_LAYERS 16
#define NB 64

typedef struct {
    int int8, K, Kp, N, Np;
    const void *w;
    const float *wf;     /* fp32 layout for the plain GEMM: w itself, or int8 w as floats */
    const float *sw;     /* [Np] int8 only */
    const int32_t *comp; /* [Np] int8 only */
    const float *bias;   /* [Np] */
    int m128;            /* int8 only: a weight is -128 (the AVX2 sign trick needs |w| <= 127) */
} Lin;

typedef struct {
    int gru, L, F, n_layers, horizon, n_targets, residual, vnni, avx512, avx2;
    int hidden[MAX_LAYERS];
    Lin ih[MAX_LAYERS], hh[MAX_LAYERS], head;
    const int32_t *target_index;
    void *block, *fblock;
} Model;

/* ---------------------------------------------------------------- elementwise */

static inline float ec_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (x * 1.44269504088896341f + magic) - magic;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } bits;
    bits.i = ((int32_t)n + 127) << 23;
    return p * bits.f;
}

static inline float ec_sigmoid(float x) { return 1.0f / (1.0f + ec_exp(-x)); }
static inline float ec_tanh(float x) { return 2.0f / (1.0f + ec_exp(-2.0f * x)) - 1.0f; }

CLONES static void lstm_cell(const float *restrict xg, const float *restrict hg, float *restrict c,
                             float *restrict h, int H) {
    for (int j = 0; j < H; j++) {
        float i = ec_sigmoid(xg[j] + hg[j]);
        float f = ec_sigmoid(xg[H + j] + hg[H + j]);
        float g = ec_tanh(xg[2 * H + j] + hg[2 * H + j]);
        float o = ec_sigmoid(xg[3 * H + j] + hg[3 * H + j]);
        float cj = f * c[j] + i * g;
        c[j] = cj;
        h[j] = o * ec_tanh(cj);
    }
}

CLONES static void gru_cell(const float *restrict xg, const float *restrict hg,
                            const float *restrict hp, float *restrict h, int H) {
    for (int j = 0; j < H; j++) {
        float r = ec_sigmoid(xg[j] + hg[j]);
        float z = ec_sigmoid(xg[H + j] + hg[H + j]);
        float n = ec_tanh(xg[2 * H + j] + r * hg[2 * H + j]);
        h[j] = (1.0f - z) * n + z * hp[j];
    }
}


/* ---------------------------------------------------------------- plain GEMM
 * Without AVX512-VNNI an int8 map runs as float: its int8 weights and the quantized input are
 * small integers held exactly in float32, so the products and their sums (|sum| < 2^24 for
 * K < 1040) are the integer ones; the result is the int8 math of the VNNI path. */

typedef float v8f __attribute__((vector_size(32)));

/* a row whose largest |value| is at most this quantizes to zeros: 127 / peak would overflow to
   infinity below ~3.7e-37 (0 * inf = NaN); such a row contributes nothing in float32 anyway */
#define TINY_PEAK 0x1p-100f

/* unaligned 8-float load / store (macros: no vector crosses a function boundary) */
#define LD8(v, p) memcpy(&(v), (p), sizeof(v8f))
#define ST8(p, v) memcpy((p), &(v), sizeof(v8f))

/* Per-row symmetric int8 of A as floats (the integers q) into Q [M][Kp], scale into S [M]. */
CLONES static void quantize_rows_float(const float *restrict A, int M, int lda, int K, int Kp,
                                       float *restrict Q, float *restrict S) {
    for (int m = 0; m < M; m++) {
        const float *a = A + (size_t)m * lda;
        uint32_t peak_bits = 0;
        for (int k = 0; k < K; k++) {
            union { float f; uint32_t u; } v = {a[k]};
            uint32_t b = v.u & 0x7fffffffu;
            peak_bits = b > peak_bits ? b : peak_bits;
        }
        union { uint32_t u; float f; } peak = {peak_bits};
        float inv = peak.f > TINY_PEAK ? 127.0f / peak.f : 0.0f;
        float *q = Q + (size_t)m * Kp;
        for (int k = 0; k < K; k++) {
            float v = rintf(a[k] * inv);
            v = v < -127.0f ? -127.0f : v;
            q[k] = v > 127.0f ? 127.0f : v;
        }
        for (int k = K; k < Kp; k++) q[k] = 0.0f;
        S[m] = peak.f / 127.0f;
    }
}

/* out [M][ldo] = A [M][lda] @ W (wf: [Np/64][K][64]), no bias; 2 rows x 64 columns at a time */
CLONES static void fgemm_plain(const float *restrict wf, int K, int Np, const float *restrict A,
                               int M, int lda, float *restrict out, int ldo) {
    for (int nb = 0; nb < Np; nb += NB) {
        const float *wb = wf + (size_t)nb * K;
        int m = 0;
        for (; m + 2 <= M; m += 2) {
            const float *a0 = A + (size_t)m * lda, *a1 = a0 + lda;
            v8f c0[8], c1[8];
            for (int j = 0; j < 8; j++) c0[j] = c1[j] = (v8f){0};
            for (int k = 0; k < K; k++) {
                const float *w = wb + (size_t)k * NB;
                const v8f x0 = (v8f){0} + a0[k], x1 = (v8f){0} + a1[k];
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    v8f wj;
                    LD8(wj, w + 8 * j);
                    c0[j] += x0 * wj;
                    c1[j] += x1 * wj;
                }
            }
            for (int j = 0; j < 8; j++) {
                ST8(out + (size_t)m * ldo + nb + 8 * j, c0[j]);
                ST8(out + (size_t)(m + 1) * ldo + nb + 8 * j, c1[j]);
            }
        }
        if (m < M) {
            const float *a0 = A + (size_t)m * lda;
            v8f c0[8], d0[8];
            for (int j = 0; j < 8; j++) c0[j] = d0[j] = (v8f){0};
            int k = 0;
            for (; k + 2 <= K; k += 2) { /* two chains per column block hide the add latency */
                const float *w = wb + (size_t)k * NB;
                const v8f x0 = (v8f){0} + a0[k], x1 = (v8f){0} + a0[k + 1];
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    v8f u, v;
                    LD8(u, w + 8 * j);
                    LD8(v, w + NB + 8 * j);
                    c0[j] += x0 * u;
                    d0[j] += x1 * v;
                }
            }
            for (; k < K; k++) {
                const float *w = wb + (size_t)k * NB;
                const v8f x0 = (v8f){0} + a0[k];
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    v8f u;
                    LD8(u, w + 8 * j);
                    c0[j] += x0 * u;
                }
            }
            for (int j = 0; j < 8; j++) {
                c0[j] += d0[j];
                ST8(out + (size_t)m * ldo + nb + 8 * j, c0[j]);
            }
        }
    }
}

/* out[m][n] = out[m][n] * (S[m] * sw[n]) + bias[n] (int8), or out[m][n] + bias[n] (S NULL) */
CLONES static void finish_rows(float *restrict out, int M, int ldo, int Np,
                               const float *restrict S, const float *restrict sw,
                               const float *restrict bias) {
    for (int m = 0; m < M; m++) {
        float *o = out + (size_t)m * ldo;
        if (S) {
            const float s = S[m];
            for (int n = 0; n < Np; n++) o[n] = o[n] * (s * sw[n]) + bias[n];
        } else {
            for (int n = 0; n < Np; n++) o[n] += bias[n];
        }
    }
}

#if EC_X86
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vnni,avx512vl")))

/* MB rows x 64 columns; two accumulator sets (even / odd k groups) hide the dpbusd latency. */
static inline __attribute__((always_inline)) VNNI void vnni_tile(
    const int MB, const int8_t *wb, int kgs, const uint8_t *Q, int ldq, const float *S,
    const Lin *W, int nb, float *out, int ldo) {
    __m512i acc[4][4], acd[4][4];
    for (int i = 0; i < MB; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = acd[i][j] = _mm512_setzero_si512();
    (void)acd;
    int g = 0;
    /* up to 2 rows: a second accumulator set for odd groups (4 rows already have 16 chains,
     * and 32 accumulators would spill) */
    for (; MB <= 2 && g + 2 <= kgs; g += 2) {
        const int8_t *w = wb + (size_t)g * 256;
        __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 64);
        __m512i w2 = _mm512_loadu_si512(w + 128), w3 = _mm512_loadu_si512(w + 192);
        __m512i v0 = _mm512_loadu_si512(w + 256), v1 = _mm512_loadu_si512(w + 320);
        __m512i v2 = _mm512_loadu_si512(w + 384), v3 = _mm512_loadu_si512(w + 448);
        for (int i = 0; i < MB; i++) {
            int32_t a4, b4;
            memcpy(&a4, Q + (size_t)i * ldq + 4 * g, 4);
            memcpy(&b4, Q + (size_t)i * ldq + 4 * g + 4, 4);
            __m512i a = _mm512_set1_epi32(a4), b = _mm512_set1_epi32(b4);
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], a, w0);
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], a, w1);
            acc[i][2] = _mm512_dpbusd_epi32(acc[i][2], a, w2);
            acc[i][3] = _mm512_dpbusd_epi32(acc[i][3], a, w3);
            acd[i][0] = _mm512_dpbusd_epi32(acd[i][0], b, v0);
            acd[i][1] = _mm512_dpbusd_epi32(acd[i][1], b, v1);
            acd[i][2] = _mm512_dpbusd_epi32(acd[i][2], b, v2);
            acd[i][3] = _mm512_dpbusd_epi32(acd[i][3], b, v3);
        }
    }
    for (; g < kgs; g++) {
        const int8_t *w = wb + (size_t)g * 256;
        __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 64);
        __m512i w2 = _mm512_loadu_si512(w + 128), w3 = _mm512_loadu_si512(w + 192);
        for (int i = 0; i < MB; i++) {
            int32_t a4;
            memcpy(&a4, Q + (size_t)i * ldq + 4 * g, 4);
            __m512i a = _mm512_set1_epi32(a4);
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], a, w0);
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], a, w1);
            acc[i][2] = _mm512_dpbusd_epi32(acc[i][2], a, w2);
            acc[i][3] = _mm512_dpbusd_epi32(acc[i][3], a, w3);
        }
    }
    for (int j = 0; j < 4; j++) {
        __m512i comp = _mm512_loadu_si512(W->comp + nb + 16 * j);
        __m512 sw = _mm512_loadu_ps(W->sw + nb + 16 * j);
        __m512 bias = _mm512_loadu_ps(W->bias + nb + 16 * j);
        for (int i = 0; i < MB; i++) {
            __m512i sum = MB <= 2 ? _mm512_add_epi32(acc[i][j], acd[i][j]) : acc[i][j];
            sum = _mm512_sub_epi32(sum, comp);
            __m512 scale = _mm512_mul_ps(_mm512_set1_ps(S[i]), sw);
            __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, bias);
            _mm512_storeu_ps(out + (size_t)i * ldo + nb + 16 * j, y);
        }
    }
}

/* quantize_rows on AVX-512: the same rounding (to nearest even) and clamp. */
VNNI static void quantize_rows_512(const float *A, int M, int lda, int K, int Kp, uint8_t *Q,
                                   float *S) {
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    const __m512i zero_point = _mm512_set1_epi32(128);
    for (int m = 0; m < M; m++) {
        const float *a = A + (size_t)m * lda;
        __m512 peak = _mm512_setzero_ps();
        for (int k = 0; k < K; k += 16) {
            const __mmask16 mask = K - k >= 16 ? 0xffff : (__mmask16)((1u << (K - k)) - 1);
            peak = _mm512_max_ps(peak, _mm512_abs_ps(_mm512_maskz_loadu_ps(mask, a + k)));
        }
        const float top = _mm512_reduce_max_ps(peak);
        const __m512 inv = _mm512_set1_ps(top > TINY_PEAK ? 127.0f / top : 0.0f);
        uint8_t *q = Q + (size_t)m * Kp;
        for (int k = 0; k < Kp; k += 16) { /* lanes past K load 0: q = 128, the padding */
            const __mmask16 mask = K - k >= 16 ? 0xffff : K > k ? (__mmask16)((1u << (K - k)) - 1) : 0;
            const __mmask16 store = Kp - k >= 16 ? 0xffff : (__mmask16)((1u << (Kp - k)) - 1);
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, a + k), inv));
            v = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v, lo), hi), zero_point);
            _mm_mask_storeu_epi8(q + k, store, _mm512_cvtepi32_epi8(v));
        }
        S[m] = top / 127.0f;
    }
}

VNNI static void qgemm_vnni(const Lin *W, const uint8_t *Q, const float *S, int M, float *out,
                            int ldo) {
    const int kgs = W->Kp / 4, ldq = W->Kp;
    for (int nb = 0; nb < W->Np; nb += NB) {
        const int8_t *wb = (const int8_t *)W->w + (size_t)nb * W->Kp;
        int m = 0;
        for (; m + 4 <= M; m += 4)
            vnni_tile(4, wb, kgs, Q + (size_t)m * ldq, ldq, S + m, W, nb, out + (size_t)m * ldo, ldo);
        const uint8_t *q = Q + (size_t)m * ldq;
        float *o = out + (size_t)m * ldo;
        switch (M - m) {
        case 3: vnni_tile(3, wb, kgs, q, ldq, S + m, W, nb, o, ldo); break;
        case 2: vnni_tile(2, wb, kgs, q, ldq, S + m, W, nb, o, ldo); break;
        case 1: vnni_tile(1, wb, kgs, q, ldq, S + m, W, nb, o, ldo); break;
        default: break;
        }
    }
}
/* ---------------------------------------------------------------- AVX2 int8 (no VNNI)
 * Activations are quantized to signed int8 q (no offset, so no compensation). vpmaddubsw needs
 * an unsigned operand: |q| times w with q's sign moved onto w (vpsignb); each int16 pair sum is
 * at most 2 * 127 * 127 < 2^15 (no saturation: maps with a -128 weight run the plain GEMM), and
 * vpmaddwd by ones widens the pairs to the 4-term int32 sums vpdpbusd gives. Exact. */
#define AVX2 __attribute__((target("avx2,fma")))

/* quantize_rows on AVX2: the same rounding (cvtps: to nearest even) and clamp, q as int8. */
AVX2 static void quantize_rows_avx2(const float *A, int M, int lda, int K, int Kp, int8_t *Q,
                                    float *S) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (int m = 0; m < M; m++) {
        const float *a = A + (size_t)m * lda;
        __m256 peak = _mm256_setzero_ps();
        int k = 0;
        for (; k + 8 <= K; k += 8)
            peak = _mm256_max_ps(peak, _mm256_and_ps(_mm256_loadu_ps(a + k), magnitude));
        __m128 p4 = _mm_max_ps(_mm256_castps256_ps128(peak), _mm256_extractf128_ps(peak, 1));
        p4 = _mm_max_ps(p4, _mm_movehl_ps(p4, p4));
        p4 = _mm_max_ss(p4, _mm_movehdup_ps(p4));
        float top = _mm_cvtss_f32(p4);
        for (; k < K; k++) {
            const float v = fabsf(a[k]);
            top = v > top ? v : top;
        }
        const float inv = top > TINY_PEAK ? 127.0f / top : 0.0f;
        const __m256 vinv = _mm256_set1_ps(inv);
        int8_t *q = Q + (size_t)m * Kp;
        for (k = 0; k + 8 <= K; k += 8) {
            __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(a + k), vinv));
            v = _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
            __m128i p = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            _mm_storel_epi64((__m128i *)(q + k), _mm_packs_epi16(p, p));
        }
        for (; k < K; k++) {
            int v = _mm_cvtss_si32(_mm_set_ss(a[k] * inv));
            v = v < -127 ? -127 : v;
            q[k] = (int8_t)(v > 127 ? 127 : v);
        }
        for (; k < Kp; k++) q[k] = 0;
        S[m] = top / 127.0f;
    }
}

/* one row x 32 columns from column c0 of the 64-column block at nb */
AVX2 static void avx2_tile(const int8_t *wb, int kgs, const int8_t *q, float s, const Lin *W,
                           int nb, int c0, float *out) {
    __m256i acc[4];
    const __m256i ones = _mm256_set1_epi16(1);
    for (int j = 0; j < 4; j++) acc[j] = _mm256_setzero_si256();
    for (int g = 0; g < kgs; g++) {
        const int8_t *w = wb + (size_t)g * 256 + 4 * c0;
        int32_t a4;
        memcpy(&a4, q + 4 * g, 4);
        const __m256i a = _mm256_set1_epi32(a4), u = _mm256_abs_epi8(a);
        for (int j = 0; j < 4; j++) {
            const __m256i wj = _mm256_loadu_si256((const __m256i *)(w + 32 * j));
            const __m256i pairs = _mm256_maddubs_epi16(u, _mm256_sign_epi8(wj, a));
            acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(pairs, ones));
        }
    }
    for (int j = 0; j < 4; j++) {
        const int n = nb + c0 + 8 * j;
        const __m256 scale = _mm256_mul_ps(_mm256_set1_ps(s), _mm256_loadu_ps(W->sw + n));
        const __m256 y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[j]), scale,
                                         _mm256_loadu_ps(W->bias + n));
        _mm256_storeu_ps(out + n, y);
    }
}

/* one row x 32 columns at a time: 4 accumulators (two rows x 64 columns spilled; two rows x 32
 * columns, or one row x 64, measured no faster: 4 ops per 32 products bound it) */
AVX2 static void qgemm_avx2(const Lin *W, const int8_t *Q, const float *S, int M, float *out,
                            int ldo) {
    const int kgs = W->Kp / 4, ldq = W->Kp;
    for (int nb = 0; nb < W->Np; nb += NB) {
        const int8_t *wb = (const int8_t *)W->w + (size_t)nb * W->Kp;
        for (int m = 0; m < M; m++)
            for (int c0 = 0; c0 < NB; c0 += 32)
                avx2_tile(wb, kgs, Q + (size_t)m * ldq, S[m], W, nb, c0, out + (size_t)m * ldo);
    }
}

/* AVX2 gates (the AVX-512 ones below on 8 lanes): 2^n from the exponent bits, 1 / d by rcp and
 * one Newton step (about 22 bits); the last H % 8 units on the plain C cell's math. */
static inline __attribute__((always_inline)) AVX2 __m256 v8_exp_neg(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.0f)), _mm256_set1_ps(87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(-1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmsub_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* n in [-126, 127]: 2^n is a normal float */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __attribute__((always_inline)) AVX2 __m256 v8_sigmoid(__m256 x) {
    const __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), v8_exp_neg(x));
    const __m256 r = _mm256_rcp_ps(d);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}

static inline __attribute__((always_inline)) AVX2 __m256 v8_tanh(__m256 x) {
    return _mm256_fmsub_ps(v8_sigmoid(_mm256_add_ps(x, x)), _mm256_set1_ps(2.0f), _mm256_set1_ps(1.0f));
}

#define V8_GATE(a, b) _mm256_add_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b))

AVX2 static void lstm_cell_avx2(const float *xg, const float *hg, float *c, float *h, int H) {
    int j = 0;
    for (; j + 8 <= H; j += 8) {
        __m256 i = v8_sigmoid(V8_GATE(xg + j, hg + j));
        __m256 f = v8_sigmoid(V8_GATE(xg + H + j, hg + H + j));
        __m256 g = v8_tanh(V8_GATE(xg + 2 * H + j, hg + 2 * H + j));
        __m256 o = v8_sigmoid(V8_GATE(xg + 3 * H + j, hg + 3 * H + j));
        __m256 cj = _mm256_fmadd_ps(f, _mm256_loadu_ps(c + j), _mm256_mul_ps(i, g));
        _mm256_storeu_ps(c + j, cj);
        _mm256_storeu_ps(h + j, _mm256_mul_ps(o, v8_tanh(cj)));
    }
    for (; j < H; j++) {
        float i = ec_sigmoid(xg[j] + hg[j]), f = ec_sigmoid(xg[H + j] + hg[H + j]);
        float g = ec_tanh(xg[2 * H + j] + hg[2 * H + j]);
        float o = ec_sigmoid(xg[3 * H + j] + hg[3 * H + j]);
        c[j] = f * c[j] + i * g;
        h[j] = o * ec_tanh(c[j]);
    }
}

AVX2 static void gru_cell_avx2(const float *xg, const float *hg, const float *hp, float *h, int H) {
    int j = 0;
    for (; j + 8 <= H; j += 8) {
        __m256 r = v8_sigmoid(V8_GATE(xg + j, hg + j));
        __m256 z = v8_sigmoid(V8_GATE(xg + H + j, hg + H + j));
        __m256 n = v8_tanh(_mm256_fmadd_ps(r, _mm256_loadu_ps(hg + 2 * H + j),
                                           _mm256_loadu_ps(xg + 2 * H + j)));
        __m256 hj = _mm256_loadu_ps(hp + j);
        _mm256_storeu_ps(h + j, _mm256_fmadd_ps(z, _mm256_sub_ps(hj, n), n));
    }
    for (; j < H; j++) {
        float r = ec_sigmoid(xg[j] + hg[j]), z = ec_sigmoid(xg[H + j] + hg[H + j]);
        float n = ec_tanh(xg[2 * H + j] + r * hg[2 * H + j]);
        h[j] = (1.0f - z) * n + z * hp[j];
    }
}

/* AVX-512 gates: the same exp polynomial, 1 / d by rcp14 and one Newton step (no divisions). */
#define AVX512 __attribute__((target("avx512f")))

/* exp(-x): the negation folded into the range reduction (r = -x - n ln2, n = round(-x log2 e)) */
static inline __attribute__((always_inline)) AVX512 __m512 v_exp_neg(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.0f)), _mm512_set1_ps(87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(-1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmsub_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static inline __attribute__((always_inline)) AVX512 __m512 v_recip(__m512 d) {
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

static inline __attribute__((always_inline)) AVX512 __m512 v_sigmoid(__m512 x) {
    return v_recip(_mm512_add_ps(_mm512_set1_ps(1.0f), v_exp_neg(x)));
}

static inline __attribute__((always_inline)) AVX512 __m512 v_tanh(__m512 x) {
    __m512 s = v_sigmoid(_mm512_add_ps(x, x));
    return _mm512_fmsub_ps(s, _mm512_set1_ps(2.0f), _mm512_set1_ps(1.0f));
}

static inline __attribute__((always_inline)) AVX512 __m512 v_load(const float *p, __mmask16 k) {
    return _mm512_maskz_loadu_ps(k, p);
}

AVX512 static void lstm_cell_512(const float *xg, const float *hg, float *c, float *h, int H) {
    for (int j = 0; j < H; j += 16) {
        const __mmask16 k = H - j >= 16 ? 0xffff : (__mmask16)((1u << (H - j)) - 1);
        __m512 i = v_sigmoid(_mm512_add_ps(v_load(xg + j, k), v_load(hg + j, k)));
        __m512 f = v_sigmoid(_mm512_add_ps(v_load(xg + H + j, k), v_load(hg + H + j, k)));
        __m512 g = v_tanh(_mm512_add_ps(v_load(xg + 2 * H + j, k), v_load(hg + 2 * H + j, k)));
        __m512 o = v_sigmoid(_mm512_add_ps(v_load(xg + 3 * H + j, k), v_load(hg + 3 * H + j, k)));
        __m512 cj = _mm512_fmadd_ps(f, v_load(c + j, k), _mm512_mul_ps(i, g));
        _mm512_mask_storeu_ps(c + j, k, cj);
        _mm512_mask_storeu_ps(h + j, k, _mm512_mul_ps(o, v_tanh(cj)));
    }
}

AVX512 static void gru_cell_512(const float *xg, const float *hg, const float *hp, float *h, int H) {
    for (int j = 0; j < H; j += 16) {
        const __mmask16 k = H - j >= 16 ? 0xffff : (__mmask16)((1u << (H - j)) - 1);
        __m512 r = v_sigmoid(_mm512_add_ps(v_load(xg + j, k), v_load(hg + j, k)));
        __m512 z = v_sigmoid(_mm512_add_ps(v_load(xg + H + j, k), v_load(hg + H + j, k)));
        __m512 n = v_tanh(_mm512_fmadd_ps(r, v_load(hg + 2 * H + j, k), v_load(xg + 2 * H + j, k)));
        __m512 hj = v_load(hp + j, k);
        _mm512_mask_storeu_ps(h + j, k, _mm512_fmadd_ps(z, _mm512_sub_ps(hj, n), n));
    }
}
#endif

#if EC_X86
/* MB rows x 64 columns of the fp32 GEMM; up to 2 rows, a second accumulator set for odd k. */
static inline __attribute__((always_inline)) AVX512 void f512_tile(
    const int MB, const float *wb, int K, const float *A, int lda, const Lin *W, int nb,
    float *out, int ldo) {
    __m512 acc[4][4], acd[4][4];
    for (int i = 0; i < MB; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = acd[i][j] = _mm512_setzero_ps();
    int k = 0;
    for (; MB <= 2 && k + 2 <= K; k += 2) {
        const float *w = wb + (size_t)k * NB;
        __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16);
        __m512 w2 = _mm512_loadu_ps(w + 32), w3 = _mm512_loadu_ps(w + 48);
        __m512 v0 = _mm512_loadu_ps(w + 64), v1 = _mm512_loadu_ps(w + 80);
        __m512 v2 = _mm512_loadu_ps(w + 96), v3 = _mm512_loadu_ps(w + 112);
        for (int i = 0; i < MB; i++) {
            __m512 a = _mm512_set1_ps(A[(size_t)i * lda + k]);
            __m512 b = _mm512_set1_ps(A[(size_t)i * lda + k + 1]);
            acc[i][0] = _mm512_fmadd_ps(a, w0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, w1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(a, w2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(a, w3, acc[i][3]);
            acd[i][0] = _mm512_fmadd_ps(b, v0, acd[i][0]);
            acd[i][1] = _mm512_fmadd_ps(b, v1, acd[i][1]);
            acd[i][2] = _mm512_fmadd_ps(b, v2, acd[i][2]);
            acd[i][3] = _mm512_fmadd_ps(b, v3, acd[i][3]);
        }
    }
    for (; k < K; k++) {
        const float *w = wb + (size_t)k * NB;
        __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16);
        __m512 w2 = _mm512_loadu_ps(w + 32), w3 = _mm512_loadu_ps(w + 48);
        for (int i = 0; i < MB; i++) {
            __m512 a = _mm512_set1_ps(A[(size_t)i * lda + k]);
            acc[i][0] = _mm512_fmadd_ps(a, w0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, w1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(a, w2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(a, w3, acc[i][3]);
        }
    }
    for (int j = 0; j < 4; j++) {
        __m512 bias = _mm512_loadu_ps(W->bias + nb + 16 * j);
        for (int i = 0; i < MB; i++) {
            __m512 sum = MB <= 2 ? _mm512_add_ps(acc[i][j], acd[i][j]) : acc[i][j];
            _mm512_storeu_ps(out + (size_t)i * ldo + nb + 16 * j, _mm512_add_ps(sum, bias));
        }
    }
}

AVX512 static void fgemm_512(const Lin *W, const float *A, int M, int lda, float *out, int ldo) {
    for (int nb = 0; nb < W->Np; nb += NB) {
        const float *wb = (const float *)W->w + (size_t)nb * W->K;
        int m = 0;
        for (; m + 4 <= M; m += 4)
            f512_tile(4, wb, W->K, A + (size_t)m * lda, lda, W, nb, out + (size_t)m * ldo, ldo);
        const float *a = A + (size_t)m * lda;
        float *o = out + (size_t)m * ldo;
        switch (M - m) {
        case 3: f512_tile(3, wb, W->K, a, lda, W, nb, o, ldo); break;
        case 2: f512_tile(2, wb, W->K, a, lda, W, nb, o, ldo); break;
        case 1: f512_tile(1, wb, W->K, a, lda, W, nb, o, ldo); break;
        default: break;
        }
    }
}
#endif

/* out [M][ldo] = A [M][lda] @ W^T + bias, in W's precision (Q, S: quantization scratch). */
static void linear(const Model *md, const Lin *W, const float *A, int M, int lda, float *out,
                   int ldo, uint8_t *Q, float *S) {
#if EC_X86
    if (!W->int8 && md->avx512) {
        fgemm_512(W, A, M, lda, out, ldo);
        return;
    }
    if (W->int8 && md->vnni) {
        quantize_rows_512(A, M, lda, W->K, W->Kp, Q, S);
        qgemm_vnni(W, Q, S, M, out, ldo);
        return;
    }
    if (W->int8 && md->avx2 && !W->m128) {
        quantize_rows_avx2(A, M, lda, W->K, W->Kp, (int8_t *)Q, S);
        qgemm_avx2(W, (const int8_t *)Q, S, M, out, ldo);
        return;
    }
#endif
    (void)md;
    if (!W->int8) {
        fgemm_plain(W->wf, W->K, W->Np, A, M, lda, out, ldo);
        finish_rows(out, M, ldo, W->Np, NULL, NULL, W->bias);
        return;
    }
    float *Qf = (float *)Q;
    quantize_rows_float(A, M, lda, W->K, W->Kp, Qf, S);
    fgemm_plain(W->wf, W->Kp, W->Np, Qf, M, W->Kp, out, ldo);
    finish_rows(out, M, ldo, W->Np, S, W->sw, W->bias);
}

/* ---------------------------------------------------------------- the model */

typedef struct {
    float *seq_a, *seq_b, *xg, *hg, *c, *zero, *y;
    uint8_t *q;
    float *s;
    int chunk;
} Scratch;

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

static void *scratch_alloc(const Model *md, int B, Scratch *sc) {
    int widest = md->F, gmax = 0, qk = 0;
    for (int l = 0; l < md->n_layers; l++) {
        widest = md->hidden[l] > widest ? md->hidden[l] : widest;
        gmax = md->ih[l].Np > gmax ? md->ih[l].Np : gmax;
        qk = md->ih[l].Kp > qk ? md->ih[l].Kp : qk;
        qk = md->hh[l].Kp > qk ? md->hh[l].Kp : qk;
    }
    qk = md->head.Kp > qk ? md->head.Kp : qk;
    /* hoisted input projection over `chunk` steps, about 256 KiB of gate inputs at a time */
    int chunk = (int)(65536 / ((size_t)B * gmax));
    chunk = chunk < 1 ? 1 : (chunk > md->L ? md->L : chunk);
    size_t seq = round64((size_t)md->L * B * widest * 4), xg = round64((size_t)chunk * B * gmax * 4);
    size_t hg = round64((size_t)B * gmax * 4), state = round64((size_t)B * widest * 4);
    size_t qrows = (size_t)chunk * B > (size_t)B ? (size_t)chunk * B : (size_t)B;
    size_t q = round64(qrows * qk * 4), s = round64(qrows * 4), y = round64((size_t)B * md->head.Np * 4);
    size_t total = 2 * seq + xg + hg + 2 * state + q + s + y;
    char *p = aligned_alloc(64, total);
    if (!p) return NULL;
    sc->seq_a = (float *)p; p += seq;
    sc->seq_b = (float *)p; p += seq;
    sc->xg = (float *)p; p += xg;
    sc->hg = (float *)p; p += hg;
    sc->c = (float *)p; p += state;
    sc->zero = (float *)p; p += state;
    sc->q = (uint8_t *)p; p += q;
    sc->s = (float *)p; p += s;
    sc->y = (float *)p;
    memset(sc->zero, 0, state);
    sc->chunk = chunk;
    return sc->seq_a;
}

static void run_layer(const Model *md, int l, const float *in, int width, float *out, int B,
                      Scratch *sc) {
    const Lin *ih = &md->ih[l], *hh = &md->hh[l];
    const int H = md->hidden[l], ld = ih->Np;
    memset(sc->c, 0, (size_t)B * H * 4);
    for (int t0 = 0; t0 < md->L; t0 += sc->chunk) {
        const int steps = md->L - t0 < sc->chunk ? md->L - t0 : sc->chunk;
        linear(md, ih, in + (size_t)t0 * B * width, steps * B, width, sc->xg, ld, sc->q, sc->s);
        for (int t = t0; t < t0 + steps; t++) {
            const float *hp = t ? out + (size_t)(t - 1) * B * H : sc->zero;
            float *ht = out + (size_t)t * B * H;
            linear(md, hh, hp, B, H, sc->hg, ld, sc->q, sc->s);
            const float *xg = sc->xg + (size_t)(t - t0) * B * ld;
            for (int b = 0; b < B; b++) {
#if EC_X86
                if (md->avx512) {
                    if (md->gru)
                        gru_cell_512(xg + (size_t)b * ld, sc->hg + (size_t)b * ld,
                                     hp + (size_t)b * H, ht + (size_t)b * H, H);
                    else
                        lstm_cell_512(xg + (size_t)b * ld, sc->hg + (size_t)b * ld,
                                      sc->c + (size_t)b * H, ht + (size_t)b * H, H);
                    continue;
                }
                if (md->avx2) {
                    if (md->gru)
                        gru_cell_avx2(xg + (size_t)b * ld, sc->hg + (size_t)b * ld,
                                      hp + (size_t)b * H, ht + (size_t)b * H, H);
                    else
                        lstm_cell_avx2(xg + (size_t)b * ld, sc->hg + (size_t)b * ld,
                                       sc->c + (size_t)b * H, ht + (size_t)b * H, H);
                    continue;
                }
#endif
                if (md->gru)
                    gru_cell(xg + (size_t)b * ld, sc->hg + (size_t)b * ld, hp + (size_t)b * H,
                             ht + (size_t)b * H, H);
                else
                    lstm_cell(xg + (size_t)b * ld, sc->hg + (size_t)b * ld, sc->c + (size_t)b * H,
                              ht + (size_t)b * H, H);
            }
        }
    }
}

static int model_run(const Model *md, const float *x, int B, float *y) {
    Scratch sc;
    void *block = scratch_alloc(md, B, &sc);
    if (!block) return -1;
    const int L = md->L, F = md->F;
    for (int t = 0; t < L; t++) /* batch-major x -> time-major */
        for (int b = 0; b < B; b++)
            memcpy(sc.seq_a + ((size_t)t * B + b) * F, x + ((size_t)b * L + t) * F, (size_t)F * 4);
    float *in = sc.seq_a, *out = sc.seq_b;
    int width = F;
    for (int l = 0; l < md->n_layers; l++) {
        run_layer(md, l, in, width, out, B, &sc);
        float *tmp = in; in = out; out = tmp;
        width = md->hidden[l];
    }
    const Lin *head = &md->head;
    linear(md, head, in + (size_t)(L - 1) * B * width, B, width, sc.y, head->Np, sc.q, sc.s);
    const int T = md->n_targets, outs = md->horizon * T;
    for (int b = 0; b < B; b++) {
        float *yb = y + (size_t)b * outs;
        memcpy(yb, sc.y + (size_t)b * head->Np, (size_t)outs * 4);
        if (md->residual) {
            const float *last = x + ((size_t)b * L + L - 1) * F;
            for (int k = 0; k < outs; k++) yb[k] += last[md->target_index[k % T]];
        }
    }
    free(block);
    return 0;
}

#ifndef EC_NO_PYTHON /* the stream step: the Python binding's only */
/* One stream step: reading x [F] (scaled), state [S] (every layer's h, then, LSTM, every layer's
 * c; S = sum of hidden, twice for an LSTM) advanced in place, forecast y [horizon * n_targets].
 * The windowed run's math for one step of one window (same maps, same per-row quantization, same
 * cells); the state is the caller's, so one prepared model may step several streams at once. */
static size_t step_state(const Model *md) {
    size_t s = 0;
    for (int l = 0; l < md->n_layers; l++) s += (size_t)md->hidden[l];
    return md->gru ? s : 2 * s;
}

static int model_step(const Model *md, const float *x, float *state, float *y) {
    int gmax = md->head.Np, qk = md->head.Kp, hmax = 1;
    for (int l = 0; l < md->n_layers; l++) {
        gmax = md->ih[l].Np > gmax ? md->ih[l].Np : gmax;
        qk = md->ih[l].Kp > qk ? md->ih[l].Kp : qk;
        qk = md->hh[l].Kp > qk ? md->hh[l].Kp : qk;
        hmax = md->hidden[l] > hmax ? md->hidden[l] : hmax;
    }
    const size_t g = round64((size_t)gmax * 4), hb = round64((size_t)hmax * 4);
    char *p = aligned_alloc(64, 2 * g + 2 * hb + round64((size_t)qk * 4) + 64);
    if (!p) return -1;
    float *xg = (float *)p, *hg = (float *)(p + g), *hn = (float *)(p + 2 * g);
    float *in = (float *)(p + 2 * g + hb);
    uint8_t *q = (uint8_t *)(p + 2 * g + 2 * hb);
    float *s = (float *)(p + 2 * g + 2 * hb + round64((size_t)qk * 4));
    const size_t half = md->gru ? 0 : step_state(md) / 2;
    const float *cur = x;
    size_t off = 0;
    for (int l = 0; l < md->n_layers; l++) {
        const int H = md->hidden[l];
        float *h = state + off, *c = state + half + off;
        linear(md, &md->ih[l], cur, 1, md->ih[l].K, xg, md->ih[l].Np, q, s);
        linear(md, &md->hh[l], h, 1, H, hg, md->hh[l].Np, q, s);
#if EC_X86
        if (md->avx512) {
            if (md->gru) gru_cell_512(xg, hg, h, hn, H);
            else lstm_cell_512(xg, hg, c, hn, H);
        } else if (md->avx2) {
            if (md->gru) gru_cell_avx2(xg, hg, h, hn, H);
            else lstm_cell_avx2(xg, hg, c, hn, H);
        } else
#endif
        if (md->gru) gru_cell(xg, hg, h, hn, H);
        else lstm_cell(xg, hg, c, hn, H);
        memcpy(h, hn, (size_t)H * 4);
        memcpy(in, hn, (size_t)H * 4); /* the next layer's input (h is the caller's buffer) */
        cur = in;
        off += (size_t)H;
    }
    const Lin *head = &md->head;
    linear(md, head, cur, 1, head->K, xg, head->Np, q, s);
    const int T = md->n_targets, outs = md->horizon * T;
    memcpy(y, xg, (size_t)outs * 4);
    if (md->residual)
        for (int k = 0; k < outs; k++) y[k] += x[md->target_index[k % T]];
    free(p);
    return 0;
}

/* A stream step from a raw reading: x = (raw - mean) * inv_std in double rounded to float (as
 * predict scales a float64 window), model_step, then y = y * std + mean (and max(y, floor)) in
 * float, each operation rounded apart (as predict unscales: no fused multiply-add). Returns
 * whether every forecast value is finite. sc64 = [mean F, inv_std F]; sc32 = [std, mean, floor]
 * of horizon * n_targets each. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
static int step_raw(const Model *md, const double *raw, const double *sc64, const float *sc32,
                    int floor, float *state, float *y, int *finite) {
    float x[md->F];
    for (int f = 0; f < md->F; f++) x[f] = (float)((raw[f] - sc64[f]) * sc64[md->F + f]);
    if (model_step(md, x, state, y)) return -1;
    const int outs = md->horizon * md->n_targets;
    int ok = 1;
    for (int k = 0; k < outs; k++) {
        float v = y[k] * sc32[k];
        v = v + sc32[outs + k];
        if (floor && v < sc32[2 * outs + k]) v = sc32[2 * outs + k];
        y[k] = v;
        ok &= isfinite(v) != 0;
    }
    *finite = ok;
    return 0;
}
#endif

/* ---------------------------------------------------------------- preparing a model */

static void model_free(Model *md) {
    free(md->block);
    free(md->fblock);
    free(md);
}

/* The plain GEMM's weights: fp32 maps read their own; int8 maps the int8 GEMMs do not take (no
 * VNNI, and no AVX2 or a -128 weight) get a float copy of their int8 weights, [Np/64][Kp][64],
 * in one block. */
static int plain_int8(const Model *md, const Lin *W) {
    return W->int8 && !md->vnni && (!md->avx2 || W->m128);
}

static int float_weights(Model *md) {
    Lin *lins[2 * MAX_LAYERS + 1];
    int n = 0;
    for (int l = 0; l < md->n_layers; l++) lins[n++] = &md->ih[l], lins[n++] = &md->hh[l];
    lins[n++] = &md->head;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (plain_int8(md, lins[i])) total += round64((size_t)lins[i]->Np * lins[i]->Kp * 4);
    char *cur = NULL;
    if (total && !(cur = md->fblock = aligned_alloc(64, total))) return -1;
    for (int i = 0; i < n; i++) {
        Lin *W = lins[i];
        if (!W->int8) {
            W->wf = W->w;
            continue;
        }
        if (!plain_int8(md, W)) continue;
        float *wf = (float *)cur;
        const int8_t *w = W->w;
        for (int nb = 0; nb < W->Np; nb += NB)
            for (int k = 0; k < W->Kp; k++)
                for (int c = 0; c < NB; c++)
                    wf[(size_t)nb * W->Kp + (size_t)k * NB + c] =
                        (float)w[(size_t)nb * W->Kp + (size_t)(k / 4) * NB * 4 + c * 4 + k % 4];
        W->wf = wf;
        cur += round64((size_t)W->Np * W->Kp * 4);
    }
    return 0;
}

typedef struct {
    const void *const *bufs; /* the packed arrays, in prepare()'s order */
    const size_t *lens;
    size_t n, next;
    char *cursor;
    const char *err;
} Source;

/* Copy the next array, which must hold exactly `nbytes`, into the block; NULL otherwise. */
static const void *take(Source *src, size_t nbytes) {
    if (src->next >= src->n) {
        src->err = "too few arrays";
        return NULL;
    }
    if (src->lens[src->next] != nbytes) {
        src->err = "an array's byte count does not match the meta";
        return NULL;
    }
    char *dst = src->cursor;
    memcpy(dst, src->bufs[src->next++], nbytes);
    src->cursor += round64(nbytes);
    return dst;
}

static size_t lin_bytes(const Lin *W) {
    size_t w = W->int8 ? (size_t)W->Np * W->Kp : (size_t)W->Np * W->K * 4;
    return round64(w) + 3 * round64((size_t)W->Np * 4);
}

static int lin_take(Lin *W, Source *src) {
    size_t w = W->int8 ? (size_t)W->Np * W->Kp : (size_t)W->Np * W->K * 4;
    if (!(W->w = take(src, w))) return -1;
    if (W->int8) {
        const int8_t *w8 = W->w;
        for (size_t i = 0; i < w && !W->m128; i++) W->m128 = w8[i] == -128;
        if (!(W->sw = take(src, (size_t)W->Np * 4))) return -1;
        if (!(W->comp = take(src, (size_t)W->Np * 4))) return -1;
    }
    return (W->bias = take(src, (size_t)W->Np * 4)) ? 0 : -1;
}

static void lin_shape(Lin *W, int int8, int K, int N) {
    W->int8 = int8;
    W->K = K;
    W->Kp = (K + 3) & ~3;
    W->N = N;
    W->Np = (N + NB - 1) / NB * NB;
}

/* A model from its meta ints and arrays (see prepare() below), or NULL with *err set.
 * meta: gru, L, F, n_layers, horizon, n_targets, residual, head_int8, then per layer
 * (hidden, hh int8, ih int8); arrays: per layer ih (w, [sw, comp,] bias), hh (...), head (...),
 * target_index int32. force (tests): 0 the best paths this CPU has, 1 the plain C loops only (as
 * on aarch64), 2 no AVX-512 (as on AVX2-only x86: int8 on AVX2, the rest plain C). */
static Model *model_new(const long *v, size_t nmeta, Source *src, int force) {
    for (size_t i = 0; i < nmeta; i++)
        if (v[i] < 0 || v[i] > 100000000) {
            src->err = "bad meta";
            return NULL;
        }
    if (nmeta < 11 || nmeta != 8 + 3 * (size_t)v[3] || v[3] < 1 || v[3] > MAX_LAYERS || v[1] < 1 ||
        v[2] < 1 || v[4] < 1 || v[5] < 1) {
        src->err = "bad meta";
        return NULL;
    }
    Model *md = calloc(1, sizeof(Model));
    if (!md) {
        src->err = "out of memory";
        return NULL;
    }
    md->gru = (int)v[0], md->L = (int)v[1], md->F = (int)v[2], md->n_layers = (int)v[3];
    md->horizon = (int)v[4], md->n_targets = (int)v[5], md->residual = (int)v[6];
    const int G = md->gru ? 3 : 4;
    int width = md->F;
    size_t total = 0;
    for (int l = 0; l < md->n_layers; l++) {
        const int H = (int)v[8 + 3 * l], int8 = (int)v[9 + 3 * l], ih8 = (int)v[10 + 3 * l];
        md->hidden[l] = H;
        lin_shape(&md->ih[l], ih8, width, G * H);
        lin_shape(&md->hh[l], int8, H, G * H);
        total += lin_bytes(&md->ih[l]) + lin_bytes(&md->hh[l]);
        width = H;
    }
    lin_shape(&md->head, (int)v[7], width, md->horizon * md->n_targets);
    total += lin_bytes(&md->head) + round64((size_t)md->n_targets * 4);
    if (!(src->cursor = md->block = aligned_alloc(64, total))) {
        src->err = "out of memory";
        model_free(md);
        return NULL;
    }
    int bad = 0;
    for (int l = 0; l < md->n_layers && !bad; l++)
        bad = lin_take(&md->ih[l], src) || lin_take(&md->hh[l], src);
    bad = bad || lin_take(&md->head, src);
    bad = bad || !(md->target_index = take(src, (size_t)md->n_targets * 4));
    for (int t = 0; !bad && t < md->n_targets; t++)
        if (md->target_index[t] < 0 || md->target_index[t] >= md->F) {
            src->err = "target_index out of range";
            bad = 1;
        }
    if (!bad && src->next != src->n) {
        src->err = "too many arrays";
        bad = 1;
    }
    if (bad) {
        model_free(md);
        return NULL;
    }
#if EC_X86
    __builtin_cpu_init();
    md->avx512 = !force && __builtin_cpu_supports("avx512f");
    md->vnni = md->avx512 && __builtin_cpu_supports("avx512vnni") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    md->avx2 = force != 1 && !md->vnni && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
#else
    (void)force;
#endif
    if (float_weights(md)) {
        src->err = "out of memory";
        model_free(md);
        return NULL;
    }
    return md;
}

#ifndef EC_NO_PYTHON
/* ---------------------------------------------------------------- Python binding */

static void capsule_free(PyObject *capsule) {
    Model *md = PyCapsule_GetPointer(capsule, "edgecomp.native.model");
    if (md) model_free(md);
}

/* prepare(meta: tuple of ints, arrays: tuple of buffers, force: int = 0) -> capsule */
static PyObject *py_prepare(PyObject *self, PyObject *args) {
    PyObject *meta, *arrays;
    int force = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!|i", &PyTuple_Type, &meta, &PyTuple_Type, &arrays, &force))
        return NULL;
    if (force < 0 || force > 2) {
        PyErr_SetString(PyExc_ValueError, "native kernel: force must be 0, 1 or 2");
        return NULL;
    }
    long v[8 + 3 * MAX_LAYERS];
    const Py_ssize_t nmeta = PyTuple_GET_SIZE(meta), n = PyTuple_GET_SIZE(arrays);
    if (nmeta > 8 + 3 * MAX_LAYERS || n > 3 * 4 * MAX_LAYERS + 8) {
        PyErr_SetString(PyExc_ValueError, "native kernel: bad meta");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nmeta; i++) {
        v[i] = PyLong_AsLong(PyTuple_GET_ITEM(meta, i));
        if (v[i] == -1 && PyErr_Occurred()) return NULL;
    }
    Py_buffer views[3 * 4 * MAX_LAYERS + 8];
    const void *bufs[3 * 4 * MAX_LAYERS + 8];
    size_t lens[3 * 4 * MAX_LAYERS + 8];
    Py_ssize_t got = 0;
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(arrays, got), &views[got], PyBUF_C_CONTIGUOUS) < 0)
            break;
        bufs[got] = views[got].buf;
        lens[got] = (size_t)views[got].len;
    }
    Model *md = NULL;
    Source src = {bufs, lens, (size_t)n, 0, NULL, NULL};
    if (got == n) {
        md = model_new(v, (size_t)nmeta, &src, force);
        if (!md) PyErr_Format(PyExc_ValueError, "native kernel: %s", src.err);
    }
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    if (!md) return NULL;
    PyObject *capsule = PyCapsule_New(md, "edgecomp.native.model", capsule_free);
    if (!capsule) model_free(md);
    return capsule;
}

/* run(capsule, x: float32 [B, L, F] buffer, y: writable float32 [B, horizon * n_targets]) */
static PyObject *py_run(PyObject *self, PyObject *args) {
    PyObject *capsule;
    Py_buffer x, y;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oy*w*", &capsule, &x, &y)) return NULL;
    const Model *md = PyCapsule_GetPointer(capsule, "edgecomp.native.model");
    PyObject *result = NULL;
    if (md) {
        const size_t row = (size_t)md->L * md->F * 4, outs = (size_t)md->horizon * md->n_targets * 4;
        const size_t B = (size_t)x.len / row;
        if (B < 1 || B > 1000000 || (size_t)x.len != B * row || (size_t)y.len != B * outs) {
            PyErr_SetString(PyExc_ValueError, "native kernel: input or output size mismatch");
        } else {
            int rc;
            Py_BEGIN_ALLOW_THREADS rc = model_run(md, x.buf, (int)B, y.buf);
            Py_END_ALLOW_THREADS if (rc) PyErr_NoMemory();
            else result = Py_NewRef(Py_None);
        }
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    return result;
}

/* step(capsule, x: float32 [F], state: writable float32 [S], y: writable float32 [horizon *
 * n_targets]): one stream step (model_step); state advances in place. */
static PyObject *py_step(PyObject *self, PyObject *args) {
    PyObject *capsule;
    Py_buffer x, state, y;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oy*w*w*", &capsule, &x, &state, &y)) return NULL;
    const Model *md = PyCapsule_GetPointer(capsule, "edgecomp.native.model");
    PyObject *result = NULL;
    if (md) {
        const size_t outs = (size_t)md->horizon * md->n_targets * 4;
        if ((size_t)x.len != (size_t)md->F * 4 || (size_t)state.len != step_state(md) * 4 ||
            (size_t)y.len != outs) {
            PyErr_SetString(PyExc_ValueError, "native kernel: reading, state or output size mismatch");
        } else if (model_step(md, x.buf, state.buf, y.buf)) {
            PyErr_NoMemory();
        } else {
            result = Py_NewRef(Py_None);
        }
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&state);
    PyBuffer_Release(&y);
    return result;
}

/* step_raw(capsule, raw: float64 [F], sc64: float64 [2F], sc32: float32 [3 outs], floor: int,
 * state: writable float32 [S], y: writable float32 [outs]) -> bool (all finite); see step_raw. */
static PyObject *py_step_raw(PyObject *self, PyObject *args) {
    PyObject *capsule;
    Py_buffer raw, sc64, sc32, state, y;
    int floor;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oy*y*y*iw*w*", &capsule, &raw, &sc64, &sc32, &floor, &state, &y))
        return NULL;
    const Model *md = PyCapsule_GetPointer(capsule, "edgecomp.native.model");
    PyObject *result = NULL;
    if (md) {
        const size_t F = (size_t)md->F, outs = (size_t)md->horizon * md->n_targets;
        int finite = 0;
        if ((size_t)raw.len != F * 8 || (size_t)sc64.len != 2 * F * 8 ||
            (size_t)sc32.len != 3 * outs * 4 || (size_t)state.len != step_state(md) * 4 ||
            (size_t)y.len != outs * 4) {
            PyErr_SetString(PyExc_ValueError, "native kernel: reading, scaler, state or output size mismatch");
        } else if (step_raw(md, raw.buf, sc64.buf, sc32.buf, floor, state.buf, y.buf, &finite)) {
            PyErr_NoMemory();
        } else {
            result = PyBool_FromLong(finite);
        }
    }
    PyBuffer_Release(&raw);
    PyBuffer_Release(&sc64);
    PyBuffer_Release(&sc32);
    PyBuffer_Release(&state);
    PyBuffer_Release(&y);
    return result;
}

static PyObject *py_vnni(PyObject *self, PyObject *capsule) {
    (void)self;
    const Model *md = PyCapsule_GetPointer(capsule, "edgecomp.native.model");
    if (!md) return NULL;
    return PyBool_FromLong(md->vnni);
}

static const char *int8_isa(int vnni, int avx2) {
    return vnni ? "avx512-vnni" : avx2 ? "avx2" : "portable";
}

static PyObject *py_isa(PyObject *self, PyObject *capsule) {
    (void)self;
    const Model *md = PyCapsule_GetPointer(capsule, "edgecomp.native.model");
    if (!md) return NULL;
    return PyUnicode_FromString(int8_isa(md->vnni, md->avx2));
}

static PyObject *py_host_isa(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    int vnni = 0, avx2 = 0;
#if EC_X86
    __builtin_cpu_init();
    vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return PyUnicode_FromString(int8_isa(vnni, avx2 && !vnni));
}

static PyMethodDef methods[] = {
    {"prepare", py_prepare, METH_VARARGS, "Copy a packed model into the kernel; a capsule."},
    {"run", py_run, METH_VARARGS, "Run a prepared model on float32 windows."},
    {"step", py_step, METH_VARARGS, "One stream step of a prepared model; the state in place."},
    {"step_raw", py_step_raw, METH_VARARGS, "One stream step from a raw reading to a raw forecast."},
    {"vnni", py_vnni, METH_O, "Whether the prepared model runs int8 on AVX512-VNNI."},
    {"isa", py_isa, METH_O, "The prepared model's int8 path: avx512-vnni, avx2 or portable."},
    {"host_isa", py_host_isa, METH_NOARGS, "The fastest int8 path this CPU has."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
#endif
