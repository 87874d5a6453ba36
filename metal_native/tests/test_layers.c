/* test_layers.c - every non-matmul kernel against a double-precision
 * reference written from REFERENCE.md: embedding, RMSNorm, YaRN RoPE, SDPA
 * (GQA, sinks, window, offset), top-k routing, clamped SwiGLU, MXFP4
 * decode/encode, dtype conversions, random fills. */
#include "m4test.h"

static void test_embedding(void) {
    size_t V = rnd_int(3, 50), H = rnd_int(1, 70), T = rnd_int(1, 9);
    float* table = falloc(V * H);
    rnd_fill(table, V * H, 1.0);
    uint16_t* tb = (uint16_t*)calloc(V * H, 2);
    m4_f32_to_bf16_array(table, V * H, tb);
    uint32_t tokens[9];
    for (size_t t = 0; t < T; t++) tokens[t] = (uint32_t)rnd_int(0, V - 1);
    float* out = falloc(T * H);
    double* ref = dalloc(T * H);
    m4_matrix mf = {MIND4_DTYPE_F32, table, NULL, V, H, false}, mb = {MIND4_DTYPE_BF16, tb, NULL, V, H, false};
    m4_embedding(&mf, tokens, T, out);
    for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < H; i++) ref[t * H + i] = table[tokens[t] * H + i];
    CHECK(rel_err(out, ref, T * H) == 0.0, "f32 embedding is not an exact copy");
    m4_embedding(&mb, tokens, T, out);
    for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < H; i++) ref[t * H + i] = m4_bf16_to_f32(tb[tokens[t] * H + i]);
    CHECK(rel_err(out, ref, T * H) == 0.0, "bf16 embedding is not an exact widening");
    double e = 0.0; /* bf16 rounding is within 2^-9 relative */
    for (size_t i = 0; i < V * H; i++) e = fmax(e, fabs(m4_bf16_to_f32(tb[i]) - table[i]) / fabs(table[i]));
    CHECK(e <= 1.0 / 256.0, "bf16 rounding error %.3g", e);
    free(table), free(tb), free(out), free(ref);
}

static void test_rmsnorm(void) {
    size_t T = rnd_int(1, 7), H = rnd_int(1, 600);
    float* x = falloc(T * H);
    float* s = falloc(H);
    float* y = falloc(T * H);
    double* ref = dalloc(T * H);
    rnd_fill(x, T * H, 3.0);
    rnd_fill(s, H, 1.0);
    float eps = 1e-5f;
    m4_rmsnorm(x, s, eps, T, H, y);
    for (size_t t = 0; t < T; t++) {
        double ss = 0.0;
        for (size_t i = 0; i < H; i++) ss += (double)x[t * H + i] * x[t * H + i];
        double r = 1.0 / sqrt(ss / (double)H + (double)eps);
        for (size_t i = 0; i < H; i++) ref[t * H + i] = x[t * H + i] * r * s[i];
    }
    double err = rel_err(y, ref, T * H);
    CHECK(err < 1e-6, "rmsnorm T=%zu H=%zu rel err %.3g", T, H, err);
    m4_rmsnorm(x, s, eps, T, H, x); /* in place */
    CHECK(rel_err(x, ref, T * H) < 1e-6, "rmsnorm in place differs");
    free(x), free(s), free(y), free(ref);
}

static void test_rope(bool yarn) {
    size_t D = 2 * rnd_int(1, 40), T = rnd_int(1, 6), heads = rnd_int(1, 4), p0 = rnd_int(0, 5000);
    double theta = 150000.0, f = yarn ? 32.0 : 1.0, alpha = 1.0, beta = 32.0, L0 = 4096.0;
    size_t stride = heads * D + rnd_int(0, 5);
    double inv[512], conc;
    m4_rope_init(D, theta, f, alpha, beta, L0, inv, &conc);
    /* reference: REFERENCE.md formulas */
    double ref_inv[512];
    double half = (double)(D / 2), pi = 3.141592653589793;
    double low = half * log(L0 / (beta * 2 * pi)) / log(theta), high = half * log(L0 / (alpha * 2 * pi)) / log(theta);
    low = fmax(low, 0.0);
    high = fmin(high, (double)D - 1);
    for (size_t i = 0; i < D / 2; i++) {
        double freq = pow(theta, 2.0 * (double)i / (double)D);
        if (f > 1) {
            double ramp = fmin(fmax(((double)i - low) / (high - low), 0.0), 1.0);
            ref_inv[i] = (1 / (f * freq)) * ramp + (1 / freq) * (1 - ramp);
        } else {
            ref_inv[i] = 1 / freq;
        }
        CHECK(fabs(inv[i] - ref_inv[i]) <= 1e-15 * ref_inv[i], "inv_freq[%zu] %.17g != %.17g", i, inv[i], ref_inv[i]);
    }
    double ref_conc = f > 1 ? 0.1 * log(f) + 1.0 : 1.0;
    CHECK(fabs(conc - ref_conc) < 1e-15, "concentration %.17g != %.17g", conc, ref_conc);
    float* c = falloc(T * D / 2);
    float* s = falloc(T * D / 2);
    m4_rope_table(inv, conc, D / 2, p0, T, c, s);
    float* x = falloc(T * stride);
    rnd_fill(x, T * stride, 1.0);
    double* ref = dalloc(T * stride);
    for (size_t t = 0; t < T; t++) {
        for (size_t j = 0; j < stride; j++) ref[t * stride + j] = x[t * stride + j];
        for (size_t h = 0; h < heads; h++) {
            for (size_t i = 0; i < D / 2; i++) {
                double a = (double)(p0 + t) * ref_inv[i];
                double x1 = x[t * stride + h * D + i], x2 = x[t * stride + h * D + D / 2 + i];
                ref[t * stride + h * D + i] = (x1 * cos(a) - x2 * sin(a)) * ref_conc;
                ref[t * stride + h * D + D / 2 + i] = (x2 * cos(a) + x1 * sin(a)) * ref_conc;
            }
        }
    }
    m4_rope_apply(x, T, stride, heads, D, c, s);
    double err = rel_err(x, ref, T * stride);
    CHECK(err < 1e-6, "rope yarn=%d D=%zu p0=%zu rel err %.3g", (int)yarn, D, p0, err);
    free(c), free(s), free(x), free(ref);
}

static void test_sdpa(m4_pool* pool, bool big) {
    size_t Hkv = rnd_int(1, 3), group = rnd_int(1, 4), Hq = Hkv * group, D = rnd_int(1, 40) * 2;
    size_t T = rnd_int(1, 9), offset = rnd_int(0, 40), S;
    size_t window = rnd_int(0, 1) ? rnd_int(1, 12) : 0;
    if (big) { /* several query blocks (16) and key blocks (128) */
        D = 64 + 8 * rnd_int(0, 9);
        T = rnd_int(17, 60);
        offset = rnd_int(0, 300);
        window = rnd_int(0, 1) ? rnd_int(100, 200) : 0;
    }
    S = offset + T;
    size_t q_stride = Hq * D + rnd_int(0, 7);
    float* q = falloc(T * q_stride);
    float* k = falloc(S * Hkv * D);
    float* v = falloc(S * Hkv * D);
    float* sinks = falloc(Hq);
    rnd_fill(q, T * q_stride, 1.0);
    rnd_fill(k, S * Hkv * D, 1.0);
    rnd_fill(v, S * Hkv * D, 1.0);
    rnd_fill(sinks, Hq, 2.0);
    float* out = falloc(T * Hq * D);
    double* ref = dalloc(T * Hq * D);
    float scale = (float)(1.0 / sqrt((double)D));
    for (size_t t = 0; t < T; t++) {
        size_t p = offset + t;
        for (size_t h = 0; h < Hq; h++) {
            size_t g = h / group;
            double m = sinks[h];
            double* w = dalloc(S);
            for (size_t s = 0; s <= p; s++) {
                bool visible = window == 0 || p - s < window;
                if (!visible) continue;
                double dot = 0.0;
                for (size_t d = 0; d < D; d++) dot += (double)q[t * q_stride + h * D + d] * k[(s * Hkv + g) * D + d];
                w[s] = dot * scale;
                m = fmax(m, w[s]);
            }
            double den = exp(sinks[h] - m);
            for (size_t s = 0; s <= p; s++) {
                if (window == 0 || p - s < window) den += exp(w[s] - m);
            }
            for (size_t d = 0; d < D; d++) {
                double acc = 0.0;
                for (size_t s = 0; s <= p; s++) {
                    if (window == 0 || p - s < window) acc += exp(w[s] - m) / den * v[(s * Hkv + g) * D + d];
                }
                ref[(t * Hq + h) * D + d] = acc;
            }
            free(w);
        }
    }
    size_t per = m4_sdpa_scratch_floats(D);
    float* scratch = falloc(per * m4_pool_size(pool));
    m4_sdpa_args a = {q, q_stride, k, v, sinks, out, T, offset, Hq, Hkv, D, window, scale, scratch, per, 0, 0};
    m4_sdpa(pool, &a);
    double err = rel_err(out, ref, T * Hq * D);
    CHECK(err < 2e-6, "sdpa Hq=%zu Hkv=%zu D=%zu T=%zu offset=%zu window=%zu rel err %.3g", Hq, Hkv, D, T, offset, window,
          err);
    /* the engine's cache layout [Hkv, capacity, D] (capacity > S) gives the same result */
    size_t cap = S + rnd_int(0, 5);
    float* kh = falloc(Hkv * cap * D);
    float* vh = falloc(Hkv * cap * D);
    rnd_fill(kh, Hkv * cap * D, 1.0); /* rows past S must not be read: garbage there */
    rnd_fill(vh, Hkv * cap * D, 1.0);
    for (size_t s = 0; s < S; s++) {
        for (size_t g = 0; g < Hkv; g++) {
            memcpy(kh + (g * cap + s) * D, k + (s * Hkv + g) * D, D * sizeof(float));
            memcpy(vh + (g * cap + s) * D, v + (s * Hkv + g) * D, D * sizeof(float));
        }
    }
    float* out2 = falloc(T * Hq * D);
    m4_sdpa_args b = a;
    b.k = kh;
    b.v = vh;
    b.out = out2;
    b.kv_row_stride = D;
    b.kv_head_stride = cap * D;
    m4_sdpa(pool, &b);
    CHECK(memcmp(out, out2, T * Hq * D * sizeof(float)) == 0, "sdpa with the [Hkv, capacity, D] cache differs");
    free(q), free(k), free(v), free(sinks), free(out), free(ref), free(scratch), free(kh), free(vh), free(out2);
}

static void test_topk(void) {
    size_t T = rnd_int(1, 6), E = rnd_int(1, 40), k = rnd_int(1, E);
    float* logits = falloc(T * E);
    rnd_fill(logits, T * E, 2.0);
    if (E > 3) logits[1] = logits[3] = logits[2]; /* a tie: lower index first */
    uint32_t* idx = (uint32_t*)calloc(T * k, 4);
    float* w = falloc(T * k);
    m4_topk_softmax(logits, T, E, k, idx, w);
    for (size_t t = 0; t < T; t++) {
        bool used[64] = {false};
        for (size_t j = 0; j < k; j++) { /* the j-th pick is the best among the unused ones */
            size_t best = E;
            for (size_t e = 0; e < E; e++) {
                if (!used[e] && (best == E || logits[t * E + e] > logits[t * E + best])) best = e;
            }
            used[best] = true;
            CHECK(idx[t * k + j] == best, "top-k t=%zu slot %zu: got %u want %zu", t, j, idx[t * k + j], best);
        }
        double m = logits[t * E + idx[t * k]], den = 0.0;
        for (size_t j = 0; j < k; j++) den += exp(logits[t * E + idx[t * k + j]] - m);
        double ref[64];
        for (size_t j = 0; j < k; j++) ref[j] = exp(logits[t * E + idx[t * k + j]] - m) / den;
        CHECK(rel_err(w + t * k, ref, k) < 1e-6, "top-k softmax weights differ");
    }
    free(logits), free(idx), free(w);
}

static void test_swiglu(void) {
    size_t T = rnd_int(1, 5), I = rnd_int(1, 100);
    float limit = 7.0f;
    float* h = falloc(T * 2 * I);
    rnd_fill(h, T * 2 * I, 6.0); /* many values beyond the clamp */
    float* out = falloc(T * I);
    double* ref = dalloc(T * I);
    m4_swiglu(h, T, I, limit, out);
    for (size_t t = 0; t < T; t++) {
        for (size_t i = 0; i < I; i++) {
            double glu = fmin(h[t * 2 * I + 2 * i], limit);
            double lin = fmin(fmax(h[t * 2 * I + 2 * i + 1], -limit), limit);
            ref[t * I + i] = glu / (1.0 + exp(-1.702 * glu)) * (lin + 1.0);
        }
    }
    double err = rel_err(out, ref, T * I);
    CHECK(err < 1e-6, "swiglu rel err %.3g", err);
    free(h), free(out), free(ref);
}

static void test_mxfp4(void) {
    size_t rows = rnd_int(1, 5), cols = 32 * rnd_int(1, 4);
    uint8_t* blocks = (uint8_t*)calloc(rows * cols / 2, 1);
    uint8_t* scales = (uint8_t*)calloc(rows * cols / 32, 1);
    for (size_t i = 0; i < rows * cols / 2; i++) blocks[i] = (uint8_t)rnd_int(0, 255);
    for (size_t i = 0; i < rows * cols / 32; i++) scales[i] = (uint8_t)rnd_int(0, 254);
    scales[0] = 0; /* subnormal scales 2^-127, 2^-126 */
    if (rows * cols / 32 > 1) scales[1] = 1;
    float* out = falloc(rows * cols);
    m4_mxfp4_decode(blocks, scales, rows, cols, out);
    size_t bad = 0;
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < cols; c++) {
            uint8_t byte = blocks[(r * cols + c) / 2];
            uint8_t code = c % 2 == 0 ? (byte & 15) : (byte >> 4);
            double want = (double)m4_fp4_values[code] * ldexp(1.0, (int)scales[(r * cols + c) / 32] - 127);
            if ((double)out[r * cols + c] != (float)want) bad++;
        }
    }
    CHECK(bad == 0, "mxfp4 decode: %zu values differ from the exact value", bad);
    /* encode: decode(encode(x)) is the nearest representable value of each element */
    float* x = falloc(rows * cols);
    rnd_fill(x, rows * cols, 0.3);
    x[1] = 0.0f;
    m4_mxfp4_encode(x, rows, cols, blocks, scales);
    m4_mxfp4_decode(blocks, scales, rows, cols, out);
    size_t far = 0;
    for (size_t b = 0; b < rows * cols / 32; b++) {
        double amax = 0.0;
        for (int j = 0; j < 32; j++) amax = fmax(amax, fabs(x[b * 32 + j]));
        int e = amax > 0 ? (int)ceil(log2(amax / 6.0)) : -127;
        CHECK(scales[b] == (uint8_t)(e + 127), "mxfp4 encode block %zu scale %u want %d", b, scales[b], e + 127);
        for (int j = 0; j < 32; j++) {
            double xs = x[b * 32 + j] * ldexp(1.0, -e), best = 1e300;
            for (int c = 0; c < 8; c++) best = fmin(best, fabs(fabs(xs) - m4_fp4_values[c]));
            double got = fabs(fabs(out[b * 32 + j] * ldexp(1.0, -e)) - fabs(xs));
            if (got > best + 1e-12) far++;
            if (out[b * 32 + j] != 0.0f && (out[b * 32 + j] < 0) != (x[b * 32 + j] < 0)) far++;
        }
    }
    CHECK(far == 0, "mxfp4 encode: %zu values not rounded to the nearest FP4 value", far);
    /* ties go to the even code: midpoints 0.25 0.75 1.25 1.75 2.5 3.5 5 (block scale 2^0) */
    {
        float tie[32] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f,
                         -0.25f, -0.75f, -1.25f, -1.75f, -2.5f, -3.5f, -5.0f, -6.0f};
        const float want[16] = {0.0f, 1.0f, 1.0f, 2.0f, 2.0f, 4.0f, 4.0f, 6.0f,
                                0.0f, -1.0f, -1.0f, -2.0f, -2.0f, -4.0f, -4.0f, -6.0f};
        uint8_t tb[16], ts[1];
        float back[32];
        m4_mxfp4_encode(tie, 1, 32, tb, ts);
        m4_mxfp4_decode(tb, ts, 1, 32, back);
        size_t wrong = 0;
        for (int j = 0; j < 16; j++) wrong += back[j] != want[j];
        CHECK(ts[0] == 127 && wrong == 0, "mxfp4 encode: %zu ties not rounded to the even code", wrong);
    }
    free(blocks), free(scales), free(out), free(x);
}

static void test_conversions(void) {
    const float specials[] = {0.0f, -0.0f, 1.0f, -2.5f, 3.0e38f, 1e-40f, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        float f = m4_bf16_to_f32(m4_f32_to_bf16(specials[i]));
        double tol = fmax(fabs(specials[i]) / 256, ldexp(1.0, -134)); /* half a bf16 subnormal step */
        CHECK(f == specials[i] || fabs(f - specials[i]) <= tol, "bf16 round trip of %g gave %g",
              (double)specials[i], (double)f);
    }
    CHECK(isnan(m4_bf16_to_f32(m4_f32_to_bf16(NAN))), "bf16 of NaN is not NaN");
    /* round to nearest even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 -> 1 */
    CHECK(m4_bf16_to_f32(m4_f32_to_bf16(1.0f + 1.0f / 256)) == 1.0f, "bf16 tie not to even");
    CHECK(m4_bf16_to_f32(m4_f32_to_bf16(1.0f + 3.0f / 256)) == 1.0f + 4.0f / 256, "bf16 tie not to even (up)");
    /* f16: 1.0, -2.0, max 65504, smallest subnormal 2^-24, inf */
    const uint16_t h[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x0000};
    const double want[] = {1.0, -2.0, 65504.0, ldexp(1.0, -24), INFINITY, 0.0};
    float out[6];
    m4_f16_to_f32_array(h, 6, out);
    for (int i = 0; i < 6; i++) CHECK((double)out[i] == want[i], "f16 %04x -> %g want %g", h[i], (double)out[i], want[i]);
    uint16_t b[37];
    float f[37], back[37];
    rnd_fill(f, 37, 10.0);
    m4_f32_to_bf16_array(f, 37, b);
    m4_bf16_to_f32_array(b, 37, back);
    for (int i = 0; i < 37; i++) CHECK(back[i] == m4_bf16_to_f32(b[i]), "bf16 array widening differs at %d", i);
}

static void test_random(void) {
    size_t n = 200001;
    float* x = falloc(n);
    uint64_t seed = g_seed;
    m4_fill_uniform(x, n, seed, -2.0f, 3.0f);
    double mean = 0.0, var = 0.0, lo = 1e9, hi = -1e9;
    for (size_t i = 0; i < n; i++) mean += x[i], lo = fmin(lo, x[i]), hi = fmax(hi, x[i]);
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n;
    CHECK(lo >= -2.0 && hi < 3.0, "uniform fill outside [-2, 3): [%g, %g]", lo, hi);
    CHECK(fabs(mean - 0.5) < 0.02 && fabs(var - 25.0 / 12.0) < 0.03, "uniform fill mean %g var %g", mean, var);
    /* floats 8 apart: half the doubles in [lo, hi) round to hi; none may be returned */
    m4_fill_uniform(x, 1000, seed, 1e8f, 1e8f + 8.0f);
    for (size_t i = 0; i < 1000; i++)
        CHECK(x[i] >= 1e8f && x[i] < 1e8f + 8.0f, "uniform fill gave %.9g", (double)x[i]);
    m4_fill_uniform(x, n, seed, -2.0f, 3.0f);
    float first = x[12345];
    m4_fill_uniform(x, n, seed, -2.0f, 3.0f);
    CHECK(x[12345] == first, "uniform fill is not deterministic");
    m4_fill_normal(x, n, seed + 1, 1.0f, 2.0f);
    mean = var = 0.0;
    for (size_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n;
    CHECK(fabs(mean - 1.0) < 0.02 && fabs(var - 4.0) < 0.08, "normal fill mean %g var %g", mean, var);
    free(x);
}

int main(void) {
    test_init("test_layers");
    m4_pool* pool = NULL;
    CHECK_OK(m4_pool_create(3, &pool));
    FOR_EACH_ISA(isa) {
        for (int rep = 0; rep < 20; rep++) {
            test_embedding();
            test_rmsnorm();
            test_rope(rep % 2 == 0);
            test_sdpa(rep % 2 ? pool : NULL, rep % 5 == 0);
            test_topk();
            test_swiglu();
            test_mxfp4();
        }
        test_conversions();
    }
    test_random();
    m4_pool_destroy(pool);
    return test_finish("test_layers");
}
