/* test_matmul.c - y = x W^T + b for f32, bf16 and MXFP4 weights, decode
 * (T < 4) and prefill (panel) paths, odd shapes, 1 and 3 threads, every ISA. */
#include "m4test.h"

/* y = x W^T + b in double, and mag = |x| |W|^T + |b|: the size of the terms each output
 * sums, which bounds float32 rounding even where the terms cancel (a single output near
 * zero made ||out - ref|| / ||ref|| flaky: 1.4e-5 for N = 1 in one CI run) */
static void reference(const double* w, const double* bias, const float* x, size_t T, size_t N, size_t K, double* y,
                      double* mag) {
    for (size_t t = 0; t < T; t++) {
        for (size_t r = 0; r < N; r++) {
            double s = bias ? bias[r] : 0.0, a = bias ? fabs(bias[r]) : 0.0;
            for (size_t k = 0; k < K; k++) {
                s += w[r * K + k] * (double)x[t * K + k];
                a += fabs(w[r * K + k] * (double)x[t * K + k]);
            }
            y[t * N + r] = s;
            mag[t * N + r] = a;
        }
    }
}

/* ||out - ref|| / ||mag|| */
static double err_vs_terms(const float* out, const double* ref, const double* mag, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)out[i] - ref[i]) * ((double)out[i] - ref[i]);
        den += mag[i] * mag[i];
    }
    return sqrt(num) / (sqrt(den) + 1e-300);
}

static void run_case(m4_pool* pool, mind4_dtype dtype, size_t T, size_t N, size_t K, bool with_bias) {
    float* wf = falloc(N * K);
    rnd_fill(wf, N * K, 1.0 / sqrt((double)K));
    double* wd = dalloc(N * K);
    m4_matrix m = {dtype, NULL, NULL, N, K, rnd_int(0, 1) == 1}; /* stream hint on or off */
    uint16_t* wb = NULL;
    uint8_t *blocks = NULL, *scales = NULL;
    if (dtype == MIND4_DTYPE_F32) {
        for (size_t i = 0; i < N * K; i++) wd[i] = wf[i];
        m.data = wf;
    } else if (dtype == MIND4_DTYPE_BF16) {
        wb = (uint16_t*)calloc(N * K, 2);
        m4_f32_to_bf16_array(wf, N * K, wb);
        for (size_t i = 0; i < N * K; i++) wd[i] = m4_bf16_to_f32(wb[i]);
        m.data = wb;
    } else {
        blocks = (uint8_t*)calloc(N * K / 2, 1);
        scales = (uint8_t*)calloc(N * K / 32, 1);
        m4_mxfp4_encode(wf, N, K, blocks, scales);
        for (size_t r = 0; r < N; r++) {
            for (size_t k = 0; k < K; k++) { /* decode independently of the kernels */
                uint8_t byte = blocks[(r * K + k) / 2];
                uint8_t code = (k % 2 == 0) ? (byte & 15) : (byte >> 4);
                wd[r * K + k] = m4_fp4_values[code] * ldexp(1.0, (int)scales[(r * K + k) / 32] - 127);
            }
        }
        m.data = blocks;
        m.scales = scales;
    }
    float* bias = with_bias ? falloc(N) : NULL;
    double* biasd = with_bias ? dalloc(N) : NULL;
    if (bias) {
        rnd_fill(bias, N, 0.5);
        for (size_t i = 0; i < N; i++) biasd[i] = bias[i];
    }
    float* x = falloc(T * K);
    rnd_fill(x, T * K, 1.0);
    float* y = falloc(T * N);
    double* yd = dalloc(T * N);
    double* mag = dalloc(T * N);
    size_t threads = m4_pool_size(pool);
    size_t per = m4_matmul_scratch_floats(K);
    float* scratch = falloc(per * threads);
    m4_matmul(pool, &m, bias, x, T, y, scratch, per);
    reference(wd, biasd, x, T, N, K, yd, mag);
    double err = err_vs_terms(y, yd, mag, T * N);
    CHECK(err < 1e-6, "matmul %s T=%zu N=%zu K=%zu bias=%d threads=%zu: error %.3g of the terms' size",
          mind4_dtype_string(dtype), T, N, K, (int)with_bias, threads, err);
    free(wf), free(wd), free(wb), free(blocks), free(scales), free(bias), free(biasd), free(x), free(y), free(yd),
        free(mag), free(scratch);
}

/* strided x/y (ldx > K, ldy > N) through m4_matmul_batch with two jobs */
static void run_batch(m4_pool* pool) {
    size_t T = 5, N = 12, K = 64, ldx = 80, ldy = 30;
    float* w1 = falloc(N * K);
    float* w2 = falloc(N * K);
    rnd_fill(w1, N * K, 0.1);
    rnd_fill(w2, N * K, 0.1);
    m4_matrix m1 = {MIND4_DTYPE_F32, w1, NULL, N, K, false}, m2 = {MIND4_DTYPE_F32, w2, NULL, N, K, true};
    float* x = falloc(T * ldx);
    rnd_fill(x, T * ldx, 1.0);
    float* y = falloc(2 * T * ldy);
    for (size_t i = 0; i < 2 * T * ldy; i++) y[i] = 12345.0f;
    m4_matmul_job jobs[2] = {{&m1, NULL, x, ldx, y, ldy, T}, {&m2, NULL, x, ldx, y + T * ldy, ldy, T}};
    size_t per = m4_matmul_scratch_floats(K);
    float* scratch = falloc(per * m4_pool_size(pool));
    m4_matmul_batch(pool, jobs, 2, scratch, per);
    double max_err = 0.0;
    bool untouched = true;
    for (int j = 0; j < 2; j++) {
        const float* w = j ? w2 : w1;
        for (size_t t = 0; t < T; t++) {
            for (size_t r = 0; r < ldy; r++) {
                float got = y[j * T * ldy + t * ldy + r];
                if (r >= N) {
                    untouched = untouched && got == 12345.0f;
                    continue;
                }
                double s = 0.0;
                for (size_t k = 0; k < K; k++) s += (double)w[r * K + k] * x[t * ldx + k];
                max_err = fmax(max_err, fabs(got - s));
            }
        }
    }
    CHECK(max_err < 1e-4, "batched strided matmul: max abs err %.3g", max_err);
    CHECK(untouched, "batched matmul wrote past ldy columns it does not own");
    free(w1), free(w2), free(x), free(y), free(scratch);
}

int main(void) {
    test_init("test_matmul");
    m4_pool* pools[2] = {NULL, NULL};
    CHECK_OK(m4_pool_create(1, &pools[0]));
    CHECK_OK(m4_pool_create(3, &pools[1]));
    const size_t Ts[] = {1, 2, 3, 4, 5, 7, 33};
    FOR_EACH_ISA(isa) {
        for (int p = 0; p < 2; p++) {
            for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
                size_t N = rnd_int(1, 37), K = 32 * rnd_int(1, 6);
                run_case(pools[p], MIND4_DTYPE_F32, Ts[i], N, K + rnd_int(0, 9), i % 2 == 0);
                run_case(pools[p], MIND4_DTYPE_BF16, Ts[i], N, K + rnd_int(0, 9), i % 2 == 1);
                run_case(pools[p], MIND4_DTYPE_MXFP4, Ts[i], N, K, i % 2 == 0);
            }
            run_case(pools[p], MIND4_DTYPE_F32, 40, 300, 512, true);
            run_case(pools[p], MIND4_DTYPE_BF16, 40, 300, 512, true);
            run_case(pools[p], MIND4_DTYPE_MXFP4, 9, 64, 1024, true);
            run_batch(pools[p]);
        }
    }
    m4_pool_destroy(pools[0]);
    m4_pool_destroy(pools[1]);
    return test_finish("test_matmul");
}
