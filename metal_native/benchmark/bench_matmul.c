/* bench_matmul.c - matmul throughput: decode GEMV (T = 1, memory bound,
 * reported in GB/s of weights read) and prefill GEMM (T = 512, reported in
 * GFLOP/s) for f32, bf16 and MXFP4 weights.
 *
 *   bench_matmul [--threads 2] [--rows 8192] [--cols 512] [--T 512] [--reps 20] [--stream 0|1] */
#include "bench_util.h"
#include "engine.h"
#include "kernels.h"
#include "pool.h"

int main(int argc, char** argv) {
    size_t threads = (size_t)arg_int(argc, argv, "--threads", 2);
    size_t N = (size_t)arg_int(argc, argv, "--rows", 8192), K = (size_t)arg_int(argc, argv, "--cols", 512);
    size_t T = (size_t)arg_int(argc, argv, "--T", 512);
    int reps = (int)arg_int(argc, argv, "--reps", 20);
    /* several copies of the weights so decode reads from DRAM, not cache */
    size_t copies = (size_t)arg_int(argc, argv, "--copies", 8);
    bool stream = arg_int(argc, argv, "--stream", 0) != 0;
    bool ab = arg_int(argc, argv, "--ab", 0) != 0; /* compare m4_ab_variant 0 and 1 */ /* non-temporal prefetch in the GEMVs */
    m4_pool* pool = NULL;
    if (m4_pool_create((uint32_t)threads, &pool) != MIND4_SUCCESS) return 1;
    float* wf = (float*)m4_alloc_huge(N * K * 4 * copies);
    uint16_t* wb = (uint16_t*)m4_alloc_huge(N * K * 2 * copies);
    uint8_t* blocks = (uint8_t*)m4_alloc_huge(N * K / 2 * copies);
    uint8_t* scales = (uint8_t*)m4_alloc(N * K / 32 * copies);
    m4_fill_uniform(wf, N * K * copies, 1, -0.05f, 0.05f);
    m4_f32_to_bf16_array(wf, N * K * copies, wb);
    m4_mxfp4_encode(wf, N * copies, K, blocks, scales);
    float* x = (float*)m4_alloc(T * K * 4);
    float* y = (float*)m4_alloc(T * N * 4);
    m4_fill_uniform(x, T * K, 2, -1.0f, 1.0f);
    size_t per = m4_matmul_scratch_floats(K);
    float* scratch = (float*)m4_alloc(per * threads * 4);
    printf("matmul %zu x %zu, %zu threads, isa %s, stream hint %d\n", N, K, threads, m4_isa_name(m4_kernels_isa()),
           (int)stream);
    mind4_dtype dtypes[3] = {MIND4_DTYPE_F32, MIND4_DTYPE_BF16, MIND4_DTYPE_MXFP4};
    for (int d = 0; d < 3; d++) {
        m4_matrix m[64];
        for (size_t c = 0; c < copies && c < 64; c++) {
            m[c].dtype = dtypes[d];
            m[c].rows = N;
            m[c].cols = K;
            m[c].scales = scales + c * N * K / 32;
            m[c].stream = stream;
            m[c].data = d == 0 ? (const void*)(wf + c * N * K)
                                : d == 1 ? (const void*)(wb + c * N * K) : (const void*)(blocks + c * N * K / 2);
        }
        double t;
        size_t c = 0;
        double bytes = (double)m4_matrix_bytes(&m[0]) * (double)copies;
        for (int v = 0; v <= (ab ? 1 : 0); v++) { /* --ab: m4_ab_variant 0 then 1 */
            m4_ab_variant = v;
            BEST_OF(reps, t, {
                for (c = 0; c < copies; c++) m4_matmul(pool, &m[c], NULL, x, 1, y, scratch, per);
            });
            printf("  %-8s GEMV (T=1):   %7.1f GB/s  (%.3f ms per %.1f MB)%s\n", mind4_dtype_string(dtypes[d]),
                   bytes / t / 1e9, t * 1e3 / (double)copies, bytes / (double)copies / 1e6,
                   ab ? (v ? "  [B]" : "  [A]") : "");
        }
        m4_ab_variant = 0;
        BEST_OF(reps / 4 + 1, t, m4_matmul(pool, &m[0], NULL, x, T, y, scratch, per));
        printf("  %-8s GEMM (T=%zu): %7.1f GFLOP/s\n", mind4_dtype_string(dtypes[d]), T,
               2.0 * (double)N * (double)K * (double)T / t / 1e9);
    }
    m4_pool_destroy(pool);
    m4_free(wf), m4_free(wb), m4_free(blocks), m4_free(scales), m4_free(x), m4_free(y), m4_free(scratch);
    return 0;
}
