/* kernels_generic.c - portable versions of the ISA-specific hot loops.
 * Reductions keep 8 independent lanes so compilers vectorise them without
 * -ffast-math (lane-wise arithmetic, combined at the end). */
#include <math.h>

#include "kernels.h"

#define LANES 8

static float dot_generic(const float* a, const float* b, size_t n) {
    float acc[LANES] = {0};
    size_t k = 0;
    for (; k + LANES <= n; k += LANES) {
        for (int j = 0; j < LANES; j++) acc[j] += a[k + j] * b[k + j];
    }
    float s = 0.0f;
    for (; k < n; k++) s += a[k] * b[k];
    for (int j = 0; j < LANES; j++) s += acc[j];
    return s;
}

static void axpy_generic(float a, const float* x, float* y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* 4 tokens share each weight row load. */
static void gemm_f32_generic(const float* w, size_t ldw, size_t K, const float* x, size_t ldx, size_t T,
                             const float* bias, float* y, size_t ldy, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        const float* wr = w + r * ldw;
        float b = bias ? bias[r] : 0.0f;
        size_t t = 0;
        for (; t + 4 <= T; t += 4) {
            float acc[4][LANES] = {{0}};
            const float* x0 = x + t * ldx;
            size_t k = 0;
            for (; k + LANES <= K; k += LANES) {
                for (int j = 0; j < LANES; j++) {
                    float wv = wr[k + j];
                    acc[0][j] += wv * x0[k + j];
                    acc[1][j] += wv * x0[ldx + k + j];
                    acc[2][j] += wv * x0[2 * ldx + k + j];
                    acc[3][j] += wv * x0[3 * ldx + k + j];
                }
            }
            for (int i = 0; i < 4; i++) {
                float s = 0.0f;
                for (size_t kk = k; kk < K; kk++) s += wr[kk] * x0[i * ldx + kk];
                for (int j = 0; j < LANES; j++) s += acc[i][j];
                y[(t + i) * ldy + r] = s + b;
            }
        }
        for (; t < T; t++) y[t * ldy + r] = dot_generic(wr, x + t * ldx, K) + b;
    }
}

static void bf16_to_f32_generic(const uint16_t* src, size_t n, float* dst) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}

static void gemv_f32_generic(const float* w, size_t K, const float* x, const float* bias, float* y, size_t r0,
                             size_t r1, bool stream) {
    (void)stream;
    gemm_f32_generic(w, K, K, x, K, 1, bias, y, 1, r0, r1);
}

static void gemv_bf16_generic(const uint16_t* w, size_t K, const float* x, const float* bias, float* y, size_t r0,
                              size_t r1, bool stream) {
    (void)stream;
    float row[256];
    for (size_t r = r0; r < r1; r++) {
        const uint16_t* wr = w + r * K;
        float s = 0.0f;
        for (size_t k0 = 0; k0 < K; k0 += 256) {
            size_t n = M4_MIN((size_t)256, K - k0);
            bf16_to_f32_generic(wr + k0, n, row);
            s += dot_generic(row, x + k0, n);
        }
        y[r] = s + (bias ? bias[r] : 0.0f);
    }
}

static void mxfp4_row_generic(const uint8_t* blocks, const uint8_t* scales, size_t K, float* dst) {
    for (size_t b = 0; b < K / 32; b++) {
        float s = m4_e8m0_half_scale(scales[b]);
        for (int j = 0; j < 16; j++) {
            uint8_t byte = blocks[b * 16 + j];
            dst[b * 32 + 2 * j] = (2.0f * m4_fp4_values[byte & 15]) * s;
            dst[b * 32 + 2 * j + 1] = (2.0f * m4_fp4_values[byte >> 4]) * s;
        }
    }
}

static void gemv_mxfp4_generic(const uint8_t* blocks, const uint8_t* scales, size_t K, const float* xp,
                               const float* bias, float* y, size_t r0, size_t r1, bool stream) {
    (void)stream;
    size_t nb = K / 32;
    for (size_t r = r0; r < r1; r++) {
        const uint8_t* br = blocks + r * nb * 16;
        const uint8_t* sr = scales + r * nb;
        float s = 0.0f;
        for (size_t b = 0; b < nb; b++) {
            float v[32];
            for (int j = 0; j < 16; j++) {
                v[j] = 2.0f * m4_fp4_values[br[b * 16 + j] & 15];
                v[16 + j] = 2.0f * m4_fp4_values[br[b * 16 + j] >> 4];
            }
            s += dot_generic(v, xp + b * 32, 32) * m4_e8m0_half_scale(sr[b]);
        }
        y[r] = s + (bias ? bias[r] : 0.0f);
    }
}

static float max_generic(const float* x, size_t n) {
    float m[LANES];
    size_t i = 0;
    for (int j = 0; j < LANES; j++) m[j] = x[0];
    for (; i + LANES <= n; i += LANES) {
        for (int j = 0; j < LANES; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    }
    float r = m[0];
    for (int j = 1; j < LANES; j++) r = m[j] > r ? m[j] : r;
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

static float exp_sum_generic(float* x, size_t n, float scale, float m) {
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] * scale - m);
        s += x[i];
    }
    return s;
}

static void pv_generic(const float* p, size_t n, const float* v, size_t ldv, float* out, size_t D) {
    for (size_t s = 0; s < n; s++) axpy_generic(p[s], v + s * ldv, out, D);
}

static void swiglu_row_generic(const float* h, size_t I, float limit, float* out) {
    for (size_t i = 0; i < I; i++) {
        float glu = h[2 * i], lin = h[2 * i + 1];
        glu = glu < limit ? glu : limit;
        lin = lin < -limit ? -limit : (lin > limit ? limit : lin);
        out[i] = glu / (1.0f + expf(-1.702f * glu)) * (lin + 1.0f);
    }
}

const m4_isa_kernels m4_generic_kernels = {
    gemm_f32_generic, gemv_f32_generic, gemv_bf16_generic, gemv_mxfp4_generic, bf16_to_f32_generic, mxfp4_row_generic,
    dot_generic,      axpy_generic,      max_generic,        exp_sum_generic,     pv_generic,
    swiglu_row_generic,
};
