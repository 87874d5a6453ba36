/* kernels.h - the compute kernels of metal_native, in portable C11.
 *
 * Shapes are written as [rows, cols] (row-major). "T" is the number of tokens
 * in a batch, "H" the hidden size, "D" the head dim. Weights stay in their
 * storage dtype (f32, bf16, or MXFP4 packed) and are widened to f32 inside the
 * kernels; activations and accumulators are f32.
 *
 * The hot loops (matmul, MXFP4 decode) exist twice: a generic version the
 * compiler vectorises, and an AVX2+FMA version chosen at run time when the
 * CPU has it (m4_kernels_isa). */
#ifndef M4_KERNELS_H
#define M4_KERNELS_H

#include "common.h"
#include "pool.h"

/* ------------------------------------------------------------ dispatch */
typedef enum m4_isa { M4_ISA_GENERIC = 0, M4_ISA_AVX2 = 1 } m4_isa;
/* The ISA in use: the best the CPU supports, unless MIND4_ISA=generic is set
 * in the environment or m4_kernels_force_isa was called. */
m4_isa m4_kernels_isa(void);
/* Force an ISA (tests); false if the CPU cannot run it. */
bool m4_kernels_force_isa(m4_isa isa);
const char* m4_isa_name(m4_isa isa);

/* ------------------------------------------------------------ matrices */
typedef struct m4_matrix {
    mind4_dtype dtype;     /* F32, BF16 or MXFP4 */
    const void* data;      /* F32/BF16: [rows, cols]; MXFP4: blocks [rows, cols/32, 16] */
    const uint8_t* scales; /* MXFP4 only: [rows, cols/32] E8M0 */
    size_t rows, cols;
    /* read once per token and not worth caching (experts, unembedding): decode
     * GEMVs prefetch it with a non-temporal hint so it does not evict the
     * weights that could stay in the last-level cache */
    bool stream;
} m4_matrix;

/* Row r of a (stacked) matrix view: rows [r0, r0 + n) as its own matrix. */
m4_matrix m4_matrix_rows(const m4_matrix* m, size_t r0, size_t n);
size_t m4_matrix_bytes(const m4_matrix* m);

/* y[t, r] = sum_k x[t, k] * W[r, k] + bias[r]  (bias may be NULL)
 * x: [T, ldx] (ldx >= W.cols), y: [T, ldy] (ldy >= W.rows). */
typedef struct m4_matmul_job {
    const m4_matrix* w;
    const float* bias;
    const float* x;
    size_t ldx;
    float* y;
    size_t ldy;
    size_t T;
} m4_matmul_job;

/* Run the jobs in one parallel dispatch: every thread takes a slice of the
 * output rows of each job. scratch: per-thread scratch from
 * m4_matmul_scratch_floats (may be NULL when every weight is F32 and T < 4). */
void m4_matmul_batch(m4_pool* pool, const m4_matmul_job* jobs, size_t num_jobs, float* scratch,
                     size_t scratch_floats_per_thread);
void m4_matmul(m4_pool* pool, const m4_matrix* w, const float* bias, const float* x, size_t T, float* y,
               float* scratch, size_t scratch_floats_per_thread);
/* Floats of per-thread scratch matmuls of `cols` columns need. */
size_t m4_matmul_scratch_floats(size_t cols);

/* Single-thread building block: rows [r0, r1) of one job. */
void m4_matmul_rows(const m4_matmul_job* job, size_t r0, size_t r1, float* scratch);

/* ------------------------------------------------------------- MXFP4 */
/* FP4 E2M1 values of codes 0..15. */
extern const float m4_fp4_values[16];
/* E8M0 scales: 2^(scale - 127) is applied exactly as (2 * fp4) * 2^(scale - 128);
 * this returns 2^(scale - 128) (exponent field scale - 1 for scale >= 2;
 * 2^-127 and 2^-128 are subnormal: mantissa bits 22 and 21). */
static inline float m4_e8m0_half_scale(uint8_t scale) {
    uint32_t bits = scale >= 2 ? (uint32_t)(scale - 1) << 23 : (scale == 1 ? 0x00400000u : 0x00200000u);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
/* blocks [rows, cols/32, 16], scales [rows, cols/32] -> out [rows, cols] */
void m4_mxfp4_decode(const uint8_t* blocks, const uint8_t* scales, size_t rows, size_t cols, float* out);
/* x [rows, cols] -> MXFP4, the same rounding as mind4_core.mxfp4.encode: per
 * block the smallest power-of-two scale bringing max|x| within 6, then the
 * nearest FP4 value (the smaller magnitude on a tie), no negative zero. */
void m4_mxfp4_encode(const float* x, size_t rows, size_t cols, uint8_t* blocks, uint8_t* scales);

/* ------------------------------------------------------------- dtype */
void m4_bf16_to_f32_array(const uint16_t* src, size_t n, float* dst);
void m4_f32_to_bf16_array(const float* src, size_t n, uint16_t* dst);
void m4_f16_to_f32_array(const uint16_t* src, size_t n, float* dst);

/* ------------------------------------------------------------- layers */
/* out[t, :] = table[tokens[t], :] widened to f32; table F32 or BF16 [V, H]. */
void m4_embedding(const m4_matrix* table, const uint32_t* tokens, size_t T, float* out);

/* y[t] = x[t] * rsqrt(mean(x[t]^2) + eps) * scale ; x, y: [T, H] (may alias) */
void m4_rmsnorm(const float* x, const float* scale, float eps, size_t T, size_t H, float* y);

/* YaRN RoPE. inv_freq[D/2] and concentration come from m4_rope_init. */
void m4_rope_init(size_t head_dim, double theta, double scaling_factor, double ntk_alpha, double ntk_beta,
                  double initial_context_length, double* inv_freq, double* concentration);
/* cos/sin tables [T, D/2] for positions position0 .. position0 + T - 1
 * (angles in double: float inv_freq would be off by ~1e-4 rad at 4k tokens) */
void m4_rope_table(const double* inv_freq, double concentration, size_t half, size_t position0, size_t T,
                   float* cos_out, float* sin_out);
/* Rotate half-split pairs (x[i], x[i + D/2]) of every head: x [T, row_stride],
 * heads [0, num_heads) starting at x[t * row_stride], each D floats. */
void m4_rope_apply(float* x, size_t T, size_t row_stride, size_t num_heads, size_t head_dim, const float* cos_table,
                   const float* sin_table);

/* Attention with sinks, GQA, sliding window, at a cache offset.
 * q [T, Hq, D] (token stride q_stride); k, v caches [S, Hkv, D] hold keys for positions 0..offset+T-1;
 * query t sits at position offset + t and sees keys s <= it (and, with
 * window > 0, s > position - window). out [T, Hq, D]. scratch: per thread
 * m4_sdpa_scratch_floats(D) floats. Computed flash-style: blocks of queries of
 * one head against blocks of keys, with a running max and sum (the sink is the
 * initial max), so memory does not grow with the context. */
typedef struct m4_sdpa_args {
    const float* q;
    size_t q_stride; /* floats between consecutive tokens of q (>= Hq * D) */
    const float* k;
    const float* v;
    const float* sinks;
    float* out;
    size_t T, offset, Hq, Hkv, D, window;
    float sm_scale;
    float* scratch;
    size_t scratch_floats_per_thread;
    /* cache layout, in floats: between consecutive positions and between KV
     * heads; 0 and 0 mean [S, Hkv, D] (Hkv D and D). The engine keeps
     * [Hkv, capacity, D] (D and capacity D): each KV head one contiguous run. */
    size_t kv_row_stride, kv_head_stride;
} m4_sdpa_args;
void m4_sdpa(m4_pool* pool, const m4_sdpa_args* args);
/* Single-thread decode attention (T == 1): every query head of KV group g. */
void m4_sdpa_decode_group(const m4_sdpa_args* args, size_t g, float* scratch);
/* per-thread scratch of m4_sdpa (flash-style blocks: independent of the keys) */
size_t m4_sdpa_scratch_floats(size_t head_dim);

/* Router: top-k of logits [T, E] (descending, lower index first on ties) and
 * the softmax over those k. indices, weights: [T, k]. */
void m4_topk_softmax(const float* logits, size_t T, size_t E, size_t k, uint32_t* indices, float* weights);

/* Clamped SwiGLU on interleaved h [T, 2I] (glu = even, lin = odd) -> out [T, I]. */
void m4_swiglu(const float* h, size_t T, size_t I, float limit, float* out);

/* ------------------------------------------------------------- random */
/* Deterministic counter-based fills: element i depends only on (seed, i). */
void m4_fill_uniform(float* x, size_t n, uint64_t seed, float lo, float hi);
void m4_fill_normal(float* x, size_t n, uint64_t seed, float mean, float std);
uint64_t m4_splitmix64(uint64_t x);

/* ------------------------------------------------------------- sampling */
/* The sampler distribution (see mind4.h): probs[V] in float. Returns false
 * when a logit is NaN. `work` holds V (index, value) pairs. */
typedef struct m4_sample_entry {
    float p;
    uint32_t index;
} m4_sample_entry;
bool m4_sample_distribution(const float* logits, size_t V, float temperature, uint32_t top_k, float top_p,
                            float* probs, m4_sample_entry* work);
/* Draw with uniform u in [0, 1) from the same distribution (work as above). */
bool m4_sample_draw(const float* logits, size_t V, float temperature, uint32_t top_k, float top_p, double u,
                    uint32_t* token, m4_sample_entry* work);

/* ---------------------------------------------- ISA-specific entry points */
typedef struct m4_isa_kernels {
    /* y[t, r] for rows [r0, r1), all T; W f32 [rows, ldw] */
    void (*gemm_f32)(const float* w, size_t ldw, size_t K, const float* x, size_t ldx, size_t T, const float* bias,
                     float* y, size_t ldy, size_t r0, size_t r1);
    /* T == 1 GEMVs for rows [r0, r1) of W [rows, K] in f32 / bf16 */
    void (*gemv_f32)(const float* w, size_t K, const float* x, const float* bias, float* y, size_t r0, size_t r1,
                     bool stream);
    void (*gemv_bf16)(const uint16_t* w, size_t K, const float* x, const float* bias, float* y, size_t r0, size_t r1,
                      bool stream);
    /* MXFP4 GEMV; xp is x permuted per 32-block into (even elements, odd elements) */
    void (*gemv_mxfp4)(const uint8_t* blocks, const uint8_t* scales, size_t K, const float* xp, const float* bias,
                       float* y, size_t r0, size_t r1, bool stream);
    /* widen rows: bf16 [n] -> f32 */
    void (*bf16_to_f32)(const uint16_t* src, size_t n, float* dst);
    /* decode one MXFP4 row of K values */
    void (*mxfp4_row)(const uint8_t* blocks, const uint8_t* scales, size_t K, float* dst);
    /* dot product of n floats */
    float (*dot)(const float* a, const float* b, size_t n);
    /* y += a * x over n floats */
    void (*axpy)(float a, const float* x, float* y, size_t n);
    /* max of n >= 1 floats */
    float (*max)(const float* x, size_t n);
    /* x[i] = exp(x[i] * scale - m), returns the sum (exp of -inf is 0) */
    float (*exp_sum)(float* x, size_t n, float scale, float m);
    /* out[d] += sum_s p[s] * v[s * ldv + d] for d < D */
    void (*pv)(const float* p, size_t n, const float* v, size_t ldv, float* out, size_t D);
    /* clamped SwiGLU of one interleaved row h [2I] -> out [I] */
    void (*swiglu_row)(const float* h, size_t I, float limit, float* out);
} m4_isa_kernels;

const m4_isa_kernels* m4_kernels(void);
extern const m4_isa_kernels m4_generic_kernels;
#if defined(M4_HAVE_AVX2)
extern const m4_isa_kernels m4_avx2_kernels;
#endif

#endif
