/* bench_kernels.c - throughput of every non-matmul kernel at the shapes of the
 * 64M "small" model (hidden 512, 8 heads of 64, 2 KV heads, 8 experts top-2,
 * intermediate 512, vocab 8192), in GB/s of data touched or GFLOP/s.
 *
 *   bench_kernels [--threads 2] [--T 512] [--reps 20] */
#include <math.h>

#include "bench_util.h"
#include "kernels.h"
#include "pool.h"

static void report(const char* name, double seconds, double bytes, double flops) {
    if (flops > 0) {
        printf("  %-34s %9.3f ms  %8.1f GB/s  %8.1f GFLOP/s\n", name, seconds * 1e3, bytes / seconds / 1e9,
               flops / seconds / 1e9);
    } else {
        printf("  %-34s %9.3f ms  %8.1f GB/s\n", name, seconds * 1e3, bytes / seconds / 1e9);
    }
}

int main(int argc, char** argv) {
    size_t threads = (size_t)arg_int(argc, argv, "--threads", 2);
    size_t T = (size_t)arg_int(argc, argv, "--T", 512);
    int reps = (int)arg_int(argc, argv, "--reps", 20);
    size_t H = 512, V = 8192, D = 64, Hq = 8, Hkv = 2, E = 8, k = 2, I = 512, S = 4096;
    m4_pool* pool = NULL;
    if (m4_pool_create((uint32_t)threads, &pool) != MIND4_SUCCESS) return 1;
    printf("kernels, %zu threads, isa %s, T=%zu\n", threads, m4_isa_name(m4_kernels_isa()), T);
    float* a = (float*)m4_alloc(V * H * 4);
    float* b = (float*)m4_alloc(V * H * 4);
    float* c = (float*)m4_alloc(V * H * 4);
    uint16_t* h16 = (uint16_t*)m4_alloc(V * H * 2);
    m4_fill_uniform(a, V * H, 1, -1.0f, 1.0f);
    m4_fill_uniform(b, V * H, 2, -1.0f, 1.0f);
    double t;

    BEST_OF(reps, t, m4_fill_uniform(c, V * H, 3, -1.0f, 1.0f));
    report("fill_uniform (4M floats)", t, (double)V * H * 4, 0);
    BEST_OF(reps, t, m4_fill_normal(c, V * H, 3, 0.0f, 1.0f));
    report("fill_normal (4M floats)", t, (double)V * H * 4, 0);
    BEST_OF(reps, t, m4_f32_to_bf16_array(a, V * H, h16));
    report("f32 -> bf16 (4M)", t, (double)V * H * 6, 0);
    BEST_OF(reps, t, m4_bf16_to_f32_array(h16, V * H, c));
    report("bf16 -> f32 (4M)", t, (double)V * H * 6, 0);

    uint32_t* tokens = (uint32_t*)m4_alloc(T * 4);
    for (size_t i = 0; i < T; i++) tokens[i] = (uint32_t)(m4_splitmix64(i) % V);
    m4_matrix table = {MIND4_DTYPE_BF16, h16, NULL, V, H, false};
    BEST_OF(reps, t, m4_embedding(&table, tokens, T, c));
    report("embedding bf16 (T rows)", t, (double)T * H * 6, 0);

    BEST_OF(reps, t, m4_rmsnorm(a, b, 1e-5f, T, H, c));
    report("rmsnorm (T x 512)", t, (double)T * H * 8, (double)T * H * 4);

    double inv[32], conc;
    m4_rope_init(D, 150000.0, 32.0, 1.0, 32.0, 4096.0, inv, &conc);
    float* cs = (float*)m4_alloc(T * D / 2 * 4);
    float* sn = (float*)m4_alloc(T * D / 2 * 4);
    BEST_OF(reps, t, m4_rope_table(inv, conc, D / 2, 100, T, cs, sn));
    report("rope table (T positions)", t, (double)T * D * 4, 0);
    size_t qkv = (Hq + 2 * Hkv) * D;
    BEST_OF(reps, t, m4_rope_apply(a, T, qkv, Hq + Hkv, D, cs, sn));
    report("rope apply (T x 10 heads)", t, (double)T * (Hq + Hkv) * D * 8, (double)T * (Hq + Hkv) * D * 3);

    /* attention: q [T, Hq D] against a cache of S keys */
    size_t per = m4_sdpa_scratch_floats(D);
    float* scratch = (float*)m4_alloc(per * threads * 4);
    float* kc = (float*)m4_alloc(S * Hkv * D * 4);
    float* vc = (float*)m4_alloc(S * Hkv * D * 4);
    float* sinks = (float*)m4_alloc(Hq * 4);
    m4_fill_uniform(kc, S * Hkv * D, 4, -1.0f, 1.0f);
    m4_fill_uniform(vc, S * Hkv * D, 5, -1.0f, 1.0f);
    m4_fill_uniform(sinks, Hq, 6, -1.0f, 1.0f);
    size_t windows[2] = {0, 128};
    for (int w = 0; w < 2; w++) {
        m4_sdpa_args s1 = {a, Hq * D, kc, vc, sinks, c, 1, S - 1, Hq, Hkv, D, windows[w], 0.125f, scratch, per, 0, 0};
        BEST_OF(reps, t, m4_sdpa(pool, &s1));
        size_t keys = windows[w] ? windows[w] : S;
        char name[80];
        snprintf(name, sizeof name, "sdpa decode, %zu keys", keys);
        report(name, t, (double)keys * Hkv * D * 8, 4.0 * keys * Hq * D);
        m4_sdpa_args sp = {a, Hq * D, kc, vc, sinks, c, T, 0, Hq, Hkv, D, windows[w], 0.125f, scratch, per, 0, 0};
        BEST_OF(reps / 4 + 1, t, m4_sdpa(pool, &sp));
        double pairs = 0;
        for (size_t q = 0; q < T; q++) pairs += (double)(windows[w] && q + 1 > windows[w] ? windows[w] : q + 1);
        snprintf(name, sizeof name, "sdpa prefill T, window %zu", windows[w]);
        report(name, t, pairs * Hkv * D * 8 / (Hq / Hkv), 4.0 * pairs * Hq * D);
    }

    uint32_t* idx = (uint32_t*)m4_alloc(T * k * 4);
    float* gw = (float*)m4_alloc(T * k * 4);
    BEST_OF(reps, t, m4_topk_softmax(a, T, E, k, idx, gw));
    report("top-2 of 8 + softmax (T rows)", t, (double)T * E * 4, 0);
    BEST_OF(reps, t, m4_swiglu(a, T * k, I, 7.0f, c));
    report("swiglu (T k x 512)", t, (double)T * k * I * 12, 0);

    uint8_t* blocks = (uint8_t*)m4_alloc(V * H / 2);
    uint8_t* scales = (uint8_t*)m4_alloc(V * H / 32);
    BEST_OF(reps / 4 + 1, t, m4_mxfp4_encode(a, V, H, blocks, scales));
    report("mxfp4 encode (4M values)", t, (double)V * H * 4, 0);
    BEST_OF(reps, t, m4_mxfp4_decode(blocks, scales, V, H, c));
    report("mxfp4 decode (4M values)", t, (double)V * H * 4.5, 0);

    m4_sample_entry* work = (m4_sample_entry*)m4_alloc(V * sizeof(m4_sample_entry));
    uint32_t tok;
    BEST_OF(reps, t, m4_sample_draw(a, V, 0.0f, 0, 1.0f, 0.5, &tok, work));
    report("sample greedy (V=8192)", t, (double)V * 4, 0);
    BEST_OF(reps, t, m4_sample_draw(a, V, 0.8f, 0, 1.0f, 0.5, &tok, work));
    report("sample T=0.8 (V=8192)", t, (double)V * 4, 0);
    BEST_OF(reps, t, m4_sample_draw(a, V, 0.8f, 40, 1.0f, 0.5, &tok, work));
    report("sample top-k 40 (V=8192)", t, (double)V * 4, 0);
    BEST_OF(reps, t, m4_sample_draw(a, V, 0.8f, 0, 0.9f, 0.5, &tok, work));
    report("sample top-p 0.9 (V=8192)", t, (double)V * 4, 0);

    m4_pool_destroy(pool);
    m4_free(a), m4_free(b), m4_free(c), m4_free(h16), m4_free(tokens), m4_free(cs), m4_free(sn), m4_free(scratch);
    m4_free(kc), m4_free(vc), m4_free(sinks), m4_free(idx), m4_free(gw), m4_free(blocks), m4_free(scales), m4_free(work);
    return 0;
}
