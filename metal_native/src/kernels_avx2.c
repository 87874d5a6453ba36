/* kernels_avx2.c - AVX2 + FMA versions of the hot loops. Compiled with
 * -mavx2 -mfma (or /arch:AVX2) and only called after a run-time CPU check. */
#include <immintrin.h>
#include <math.h>

#include "kernels.h"

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 4 horizontal sums at once -> one __m128 (a, b, c, d) */
static inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 ab = _mm256_hadd_ps(a, b);
    __m256 cd = _mm256_hadd_ps(c, d);
    __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

static float dot_avx2(const float* a, const float* b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t k = 0;
    for (; k + 16 <= n; k += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
    }
    for (; k + 8 <= n; k += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; k < n; k++) s += a[k] * b[k];
    return s;
}

static void axpy_avx2(float a, const float* x, float* y, size_t n) {
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* Micro-kernel: 3 tokens x 4 rows, 12 accumulators; rows r..r+3 of w, tokens t..t+2 of x. */
static inline void tile_3x4(const float* w, size_t ldw, size_t K, const float* x, size_t ldx, const float* bias,
                            float* y, size_t ldy, size_t r) {
    const float* w0 = w + r * ldw;
    const float* w1 = w0 + ldw;
    const float* w2 = w1 + ldw;
    const float* w3 = w2 + ldw;
    const float* x0 = x;
    const float* x1 = x + ldx;
    const float* x2 = x + 2 * ldx;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
    __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    size_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 a0 = _mm256_loadu_ps(x0 + k), a1 = _mm256_loadu_ps(x1 + k), a2 = _mm256_loadu_ps(x2 + k);
        __m256 b = _mm256_loadu_ps(w0 + k);
        c00 = _mm256_fmadd_ps(a0, b, c00);
        c10 = _mm256_fmadd_ps(a1, b, c10);
        c20 = _mm256_fmadd_ps(a2, b, c20);
        b = _mm256_loadu_ps(w1 + k);
        c01 = _mm256_fmadd_ps(a0, b, c01);
        c11 = _mm256_fmadd_ps(a1, b, c11);
        c21 = _mm256_fmadd_ps(a2, b, c21);
        b = _mm256_loadu_ps(w2 + k);
        c02 = _mm256_fmadd_ps(a0, b, c02);
        c12 = _mm256_fmadd_ps(a1, b, c12);
        c22 = _mm256_fmadd_ps(a2, b, c22);
        b = _mm256_loadu_ps(w3 + k);
        c03 = _mm256_fmadd_ps(a0, b, c03);
        c13 = _mm256_fmadd_ps(a1, b, c13);
        c23 = _mm256_fmadd_ps(a2, b, c23);
    }
    __m128 s0 = hsum4(c00, c01, c02, c03);
    __m128 s1 = hsum4(c10, c11, c12, c13);
    __m128 s2 = hsum4(c20, c21, c22, c23);
    float o[3][4];
    _mm_storeu_ps(o[0], s0);
    _mm_storeu_ps(o[1], s1);
    _mm_storeu_ps(o[2], s2);
    for (; k < K; k++) {
        for (int i = 0; i < 3; i++) {
            const float* xi = x + i * ldx;
            o[i][0] += xi[k] * w0[k];
            o[i][1] += xi[k] * w1[k];
            o[i][2] += xi[k] * w2[k];
            o[i][3] += xi[k] * w3[k];
        }
    }
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 4; j++) y[i * ldy + r + j] = o[i][j] + (bias ? bias[r + j] : 0.0f);
    }
}

/* 1 token x 4 rows, two k-steps in flight (decode GEMV on f32 weights). */
static inline void tile_1x4(const float* w, size_t ldw, size_t K, const float* x, const float* bias, float* y,
                            size_t r) {
    const float* w0 = w + r * ldw;
    const float* w1 = w0 + ldw;
    const float* w2 = w1 + ldw;
    const float* w3 = w2 + ldw;
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, d0 = c0, d1 = c0, d2 = c0, d3 = c0;
    size_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m256 a = _mm256_loadu_ps(x + k), b = _mm256_loadu_ps(x + k + 8);
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(w0 + k), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(w1 + k), c1);
        c2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(w2 + k), c2);
        c3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(w3 + k), c3);
        d0 = _mm256_fmadd_ps(b, _mm256_loadu_ps(w0 + k + 8), d0);
        d1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(w1 + k + 8), d1);
        d2 = _mm256_fmadd_ps(b, _mm256_loadu_ps(w2 + k + 8), d2);
        d3 = _mm256_fmadd_ps(b, _mm256_loadu_ps(w3 + k + 8), d3);
    }
    for (; k + 8 <= K; k += 8) {
        __m256 a = _mm256_loadu_ps(x + k);
        c0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(w0 + k), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(w1 + k), c1);
        c2 = _mm256_fmadd_ps(a, _mm256_loadu_ps(w2 + k), c2);
        c3 = _mm256_fmadd_ps(a, _mm256_loadu_ps(w3 + k), c3);
    }
    float o[4];
    _mm_storeu_ps(o, hsum4(_mm256_add_ps(c0, d0), _mm256_add_ps(c1, d1), _mm256_add_ps(c2, d2), _mm256_add_ps(c3, d3)));
    for (; k < K; k++) {
        o[0] += x[k] * w0[k];
        o[1] += x[k] * w1[k];
        o[2] += x[k] * w2[k];
        o[3] += x[k] * w3[k];
    }
    for (int j = 0; j < 4; j++) y[r + j] = o[j] + (bias ? bias[r + j] : 0.0f);
}

static void gemm_f32_avx2(const float* w, size_t ldw, size_t K, const float* x, size_t ldx, size_t T,
                          const float* bias, float* y, size_t ldy, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        size_t t = 0;
        for (; t + 3 <= T; t += 3) tile_3x4(w, ldw, K, x + t * ldx, ldx, bias, y + t * ldy, ldy, r);
        for (; t < T; t++) tile_1x4(w, ldw, K, x + t * ldx, bias, y + t * ldy, r);
    }
    for (; r < r1; r++) {
        for (size_t t = 0; t < T; t++) y[t * ldy + r] = dot_avx2(w + r * ldw, x + t * ldx, K) + (bias ? bias[r] : 0.0f);
    }
}

static inline __m256 load_bf16(const uint16_t* p) {
    __m128i h = _mm_loadu_si128((const __m128i*)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static void bf16_to_f32_avx2(const uint16_t* src, size_t n, float* dst) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16(src + i));
    for (; i < n; i++) dst[i] = m4_bf16_to_f32(src[i]);
}

/* Decode GEMVs read one row after another, so a thread's rows form a single
 * sequential stream: the hardware prefetcher follows it at full speed (four
 * interleaved 1-2 KiB row streams ran at half the bandwidth). With `stream`,
 * a non-temporal prefetch runs STREAM_AHEAD bytes ahead so weights read once
 * per token do not evict the ones that could stay in the last-level cache. */
#define STREAM_AHEAD 1024
#define PREFETCH_NTA(p) _mm_prefetch((const char*)(p), _MM_HINT_NTA)

static inline float row_dot_f32(const float* w, const float* x, size_t K, bool stream) {
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    size_t k = 0;
    for (; k + 32 <= K; k += 32) { /* 128 bytes: two cache lines */
        if (stream) {
            PREFETCH_NTA((const char*)(w + k) + STREAM_AHEAD);
            PREFETCH_NTA((const char*)(w + k) + STREAM_AHEAD + 64);
        }
        c0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(w + k), c0);
        c1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), _mm256_loadu_ps(w + k + 8), c1);
        c2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 16), _mm256_loadu_ps(w + k + 16), c2);
        c3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 24), _mm256_loadu_ps(w + k + 24), c3);
    }
    for (; k + 8 <= K; k += 8) c0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(w + k), c0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)));
    for (; k < K; k++) s += x[k] * w[k];
    return s;
}

static void gemv_f32_avx2(const float* w, size_t K, const float* x, const float* bias, float* y, size_t r0,
                          size_t r1, bool stream) {
    for (size_t r = r0; r < r1; r++) y[r] = row_dot_f32(w + r * K, x, K, stream) + (bias ? bias[r] : 0.0f);
}

static inline float row_dot_bf16(const uint16_t* w, const float* x, size_t K, bool stream) {
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    size_t k = 0;
    for (; k + 32 <= K; k += 32) { /* 64 bytes: one cache line */
        if (stream) PREFETCH_NTA((const char*)(w + k) + STREAM_AHEAD);
        c0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load_bf16(w + k), c0);
        c1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), load_bf16(w + k + 8), c1);
        c2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 16), load_bf16(w + k + 16), c2);
        c3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 24), load_bf16(w + k + 24), c3);
    }
    for (; k + 8 <= K; k += 8) c0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load_bf16(w + k), c0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)));
    for (; k < K; k++) s += x[k] * m4_bf16_to_f32(w[k]);
    return s;
}

static void gemv_bf16_avx2(const uint16_t* w, size_t K, const float* x, const float* bias, float* y, size_t r0,
                           size_t r1, bool stream) {
    for (size_t r = r0; r < r1; r++) y[r] = row_dot_bf16(w + r * K, x, K, stream) + (bias ? bias[r] : 0.0f);
}

/* 2 * FP4 value as int8, indexed by code */
#define FP4X2_LUT _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)

static inline __m256 i8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

static inline __m256 half_scale(uint8_t s) { return _mm256_set1_ps(m4_e8m0_half_scale(s)); }

static void gemv_mxfp4_avx2(const uint8_t* blocks, const uint8_t* scales, size_t K, const float* xp,
                            const float* bias, float* y, size_t r0, size_t r1, bool stream) {
    const __m128i lut = FP4X2_LUT, mask = _mm_set1_epi8(0x0f);
    size_t nb = K / 32;
    for (size_t r = r0; r < r1; r++) {
        const uint8_t* br = blocks + r * nb * 16;
        const uint8_t* sr = scales + r * nb;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        for (size_t b = 0; b < nb; b++) {
            if (stream && (b & 3) == 0) PREFETCH_NTA(br + STREAM_AHEAD + b * 16);
            __m128i bytes = _mm_loadu_si128((const __m128i*)(br + b * 16));
            __m128i lo = _mm_shuffle_epi8(lut, _mm_and_si128(bytes, mask));
            __m128i hi = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(bytes, 4), mask));
            const float* xb = xp + b * 32;
            __m256 s = _mm256_mul_ps(i8_to_ps(lo), _mm256_loadu_ps(xb));
            __m256 t = _mm256_mul_ps(i8_to_ps(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(xb + 8));
            s = _mm256_fmadd_ps(i8_to_ps(hi), _mm256_loadu_ps(xb + 16), s);
            t = _mm256_fmadd_ps(i8_to_ps(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(xb + 24), t);
            if (b & 1) {
                acc1 = _mm256_fmadd_ps(_mm256_add_ps(s, t), half_scale(sr[b]), acc1);
            } else {
                acc0 = _mm256_fmadd_ps(_mm256_add_ps(s, t), half_scale(sr[b]), acc0);
            }
        }
        y[r] = hsum(_mm256_add_ps(acc0, acc1)) + (bias ? bias[r] : 0.0f);
    }
}

static void mxfp4_row_avx2(const uint8_t* blocks, const uint8_t* scales, size_t K, float* dst) {
    const __m128i lut = FP4X2_LUT, mask = _mm_set1_epi8(0x0f);
    for (size_t b = 0; b < K / 32; b++) {
        __m128i bytes = _mm_loadu_si128((const __m128i*)(blocks + b * 16));
        __m128i lo = _mm_shuffle_epi8(lut, _mm_and_si128(bytes, mask));
        __m128i hi = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(bytes, 4), mask));
        __m128i v0 = _mm_unpacklo_epi8(lo, hi); /* elements 0..15 in order */
        __m128i v1 = _mm_unpackhi_epi8(lo, hi); /* elements 16..31 */
        __m256 s = half_scale(scales[b]);
        float* d = dst + b * 32;
        _mm256_storeu_ps(d, _mm256_mul_ps(i8_to_ps(v0), s));
        _mm256_storeu_ps(d + 8, _mm256_mul_ps(i8_to_ps(_mm_srli_si128(v0, 8)), s));
        _mm256_storeu_ps(d + 16, _mm256_mul_ps(i8_to_ps(v1), s));
        _mm256_storeu_ps(d + 24, _mm256_mul_ps(i8_to_ps(_mm_srli_si128(v1, 8)), s));
    }
}

static float max_avx2(const float* x, size_t n) {
    size_t i = 0;
    float r = x[0];
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        r = _mm_cvtss_f32(h);
    }
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

/* exp(x) to ~1 ulp (Cephes expf polynomial on [-ln2/2, ln2/2]); 0 below
 * -87.3 (and for -inf), clamped at 88 (inputs here are <= 0). */
static inline __m256 exp256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.0f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

static float exp_sum_avx2(float* x, size_t n, float scale, float m) {
    __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_fmsub_ps(_mm256_loadu_ps(x + i), vs, vm));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    float s = hsum(sum);
    if (i < n) { /* tail through a padded vector */
        float tmp[8] = {0};
        for (size_t j = i; j < n; j++) tmp[j - i] = x[j] * scale - m;
        for (size_t j = n - i; j < 8; j++) tmp[j] = -INFINITY;
        __m256 e = exp256(_mm256_loadu_ps(tmp));
        _mm256_storeu_ps(tmp, e);
        for (size_t j = i; j < n; j++) {
            x[j] = tmp[j - i];
            s += tmp[j - i];
        }
    }
    return s;
}

/* out[:D] += p @ v: 64 output floats live in 8 registers per pass. */
static void pv_avx2(const float* p, size_t n, const float* v, size_t ldv, float* out, size_t D) {
    size_t d0 = 0;
    for (; d0 + 64 <= D; d0 += 64) {
        __m256 o0 = _mm256_loadu_ps(out + d0), o1 = _mm256_loadu_ps(out + d0 + 8);
        __m256 o2 = _mm256_loadu_ps(out + d0 + 16), o3 = _mm256_loadu_ps(out + d0 + 24);
        __m256 o4 = _mm256_loadu_ps(out + d0 + 32), o5 = _mm256_loadu_ps(out + d0 + 40);
        __m256 o6 = _mm256_loadu_ps(out + d0 + 48), o7 = _mm256_loadu_ps(out + d0 + 56);
        for (size_t s = 0; s < n; s++) {
            const float* vs = v + s * ldv + d0;
            __m256 w = _mm256_broadcast_ss(p + s);
            o0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs), o0);
            o1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 8), o1);
            o2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 16), o2);
            o3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 24), o3);
            o4 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 32), o4);
            o5 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 40), o5);
            o6 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 48), o6);
            o7 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 56), o7);
        }
        _mm256_storeu_ps(out + d0, o0);
        _mm256_storeu_ps(out + d0 + 8, o1);
        _mm256_storeu_ps(out + d0 + 16, o2);
        _mm256_storeu_ps(out + d0 + 24, o3);
        _mm256_storeu_ps(out + d0 + 32, o4);
        _mm256_storeu_ps(out + d0 + 40, o5);
        _mm256_storeu_ps(out + d0 + 48, o6);
        _mm256_storeu_ps(out + d0 + 56, o7);
    }
    if (d0 < D) {
        for (size_t s = 0; s < n; s++) axpy_avx2(p[s], v + s * ldv + d0, out + d0, D - d0);
    }
}

static void swiglu_row_avx2(const float* h, size_t I, float limit, float* out) {
    const __m256 lim = _mm256_set1_ps(limit), nlim = _mm256_set1_ps(-limit), one = _mm256_set1_ps(1.0f);
    const __m256 k = _mm256_set1_ps(-1.702f);
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    size_t i = 0;
    for (; i + 8 <= I; i += 8) {
        /* 16 interleaved values -> 8 glu (even) and 8 lin (odd) */
        __m256 a = _mm256_permutevar8x32_ps(_mm256_loadu_ps(h + 2 * i), even);     /* g0 g1 g2 g3 l0 l1 l2 l3 */
        __m256 b = _mm256_permutevar8x32_ps(_mm256_loadu_ps(h + 2 * i + 8), even); /* g4..g7 l4..l7 */
        __m256 glu = _mm256_permute2f128_ps(a, b, 0x20);
        __m256 lin = _mm256_permute2f128_ps(a, b, 0x31);
        glu = _mm256_min_ps(glu, lim);
        lin = _mm256_min_ps(_mm256_max_ps(lin, nlim), lim);
        __m256 sig = _mm256_div_ps(glu, _mm256_add_ps(one, exp256(_mm256_mul_ps(k, glu))));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(sig, _mm256_add_ps(lin, one)));
    }
    for (; i < I; i++) {
        float glu = h[2 * i], lin = h[2 * i + 1];
        glu = glu < limit ? glu : limit;
        lin = lin < -limit ? -limit : (lin > limit ? limit : lin);
        out[i] = glu / (1.0f + expf(-1.702f * glu)) * (lin + 1.0f);
    }
}

const m4_isa_kernels m4_avx2_kernels = {
    gemm_f32_avx2, gemv_f32_avx2, gemv_bf16_avx2, gemv_mxfp4_avx2, bf16_to_f32_avx2, mxfp4_row_avx2, dot_avx2,
    axpy_avx2,     max_avx2,       exp_sum_avx2,    pv_avx2,          swiglu_row_avx2,
};
