/* engine.h - internal layout of the model, context and sampler handles. */
#ifndef M4_ENGINE_H
#define M4_ENGINE_H

#include "checkpoint.h"
#include "kernels.h"
#include "pool.h"

typedef struct m4_layer {
    const float* attn_norm; /* [H] */
    m4_matrix qkv;          /* [(Hq + 2 Hkv) D, H] */
    const float* qkv_bias;  /* [(Hq + 2 Hkv) D] */
    const float* sinks;     /* [Hq] */
    m4_matrix out;          /* [H, Hq D] */
    const float* out_bias;  /* [H] */
    const float* mlp_norm;  /* [H] */
    m4_matrix gate;         /* [E, H] */
    const float* gate_bias; /* [E] */
    m4_matrix mlp1;         /* stacked [E * 2I, H]: expert e = rows [e 2I, (e + 1) 2I) */
    const float* mlp1_bias; /* [E, 2I] */
    m4_matrix mlp2;         /* stacked [E * H, I] */
    const float* mlp2_bias; /* [E, H] */
    size_t window;          /* 0 = full causal attention */
} m4_layer;

struct mind4_model {
    m4_refcount refs;
    mind4_model_config config;
    m4_checkpoint ckpt; /* keeps the mappings alive */
    m4_matrix embedding;   /* [V, H] */
    m4_matrix unembedding; /* [V, H] */
    const float* norm;     /* [H] */
    m4_layer* layers;
    double* rope_inv_freq; /* [D/2] */
    double rope_concentration;
    m4_pool* pool;
    mind4_dtype dense_dtype, expert_dtype;
    uint32_t weights_placement; /* MIND4_WEIGHTS_MAPPED or _COPIED */
    void** owned; /* converted copies of weights */
    size_t num_owned, cap_owned;
};

struct mind4_context {
    m4_refcount refs;
    mind4_model* model;
    size_t max_tokens, num_tokens, num_processed;
    uint32_t* tokens;
    float* k_cache; /* [L, Hkv, max_tokens, D]: one contiguous run per layer and KV head */
    float* v_cache;
    float* logits;  /* [V] of the last processed token */
    bool logits_valid;
    size_t chunk;   /* tokens per forward step */
    /* activations for one chunk of C tokens */
    float *x, *xn, *qkv, *attn, *tmp;           /* [C, H], [C, H], [C, QKV], [C, Hq D], [C, H] */
    float *gate_logits, *gate_weights;          /* [C, E], [C, k] */
    uint32_t* gate_indices;                     /* [C, k] */
    uint32_t *pair_order, *expert_counts;       /* [C k], [E + 1] */
    float *moe_x, *moe_h, *moe_a, *moe_y;       /* [C k, H], [C k, 2I], [C k, I], [C k, H] */
    float *rope_cos, *rope_sin;                 /* [C, D/2] */
    float* scratch;                             /* per thread */
    size_t scratch_per_thread;
    m4_matmul_job* jobs;                        /* [E] */
    /* decode step: one token in one parallel task (see decode_step) */
    float* dec_state;                           /* per thread: x, xn, router, SwiGLU rows */
    size_t dec_stride;                          /* floats per thread */
    m4_steal_part* dec_parts;                   /* [3 L + 1, threads] work-stealing counters */
    m4_steal* dec_steals;                       /* [3 L + 1] */
    size_t dec_chunk_rows;                      /* rows per stolen chunk (multiple of 16) */
};

struct mind4_sampler {
    m4_refcount refs;
    float temperature, top_p;
    uint32_t top_k;
    uint64_t state[4]; /* xoshiro256** */
    m4_sample_entry* work;
    size_t work_capacity;
};

/* Decode path switch for tests and benchmarks: 1 (default) runs a decoded
 * token as one parallel task (decode_step in context.c), 0 the per-kernel path. */
extern int m4_decode_step_enabled;
/* Development knob for paired A/B benchmarks of kernel variants (bench_e2e
 * --ab variant): 0 by default; code under test may read it. */
extern int m4_ab_variant;

#if defined(M4_POOL_PROFILE)
void m4_decode_profile_dump(void); /* per-phase times of the decode step (stderr) */
#endif

/* Run the model over tokens [from, from + T) of the context (their KV written),
 * logits of the last one into ctx->logits, and of all into all_logits if set. */
mind4_status m4_forward(mind4_context* ctx, size_t from, size_t T, float* all_logits);

#endif
