/* context.c - mind4_context: token sequence, KV cache and the forward pass. */
#include <math.h>
#include <stdlib.h>

#include "engine.h"

#define MAX_CHUNK 512

static void context_free(mind4_context* ctx) {
    if (!ctx) return;
    void* bufs[] = {ctx->tokens,       ctx->logits,        ctx->x,           ctx->xn,          ctx->qkv,
                    ctx->attn,         ctx->tmp,           ctx->gate_logits, ctx->gate_weights, ctx->gate_indices,
                    ctx->pair_order,   ctx->expert_counts, ctx->moe_x,       ctx->moe_h,       ctx->moe_a,
                    ctx->moe_y,        ctx->rope_cos,      ctx->rope_sin,    ctx->scratch,     ctx->jobs,
                    ctx->dec_state,    ctx->dec_parts,     ctx->dec_steals};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) m4_free(bufs[i]);
    free(ctx->k_cache); /* calloc: pages are touched only when used */
    free(ctx->v_cache);
    mind4_model_release(ctx->model);
    free(ctx);
}

static float* floats(size_t a, size_t b, bool* ok) {
    size_t n;
    if (!m4_mul_size(a, b, &n)) {
        *ok = false;
        return NULL;
    }
    float* p = (float*)m4_alloc(n * sizeof(float) + 64);
    if (!p) *ok = false;
    return p;
}

mind4_status mind4_context_create(mind4_model* model, size_t max_tokens, mind4_context** context_out) {
    m4_clear_error();
    if (!model || !context_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_create: NULL argument");
    const mind4_model_config* c = &model->config;
    if (max_tokens == 0) max_tokens = c->max_context_length;
    if (max_tokens > c->max_context_length) {
        return m4_fail(MIND4_CONTEXT_OVERFLOW, "a context of %zu tokens exceeds the model's max_context_length (%u)",
                       max_tokens, c->max_context_length);
    }
    mind4_context* ctx = (mind4_context*)calloc(1, sizeof *ctx);
    if (!ctx) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory creating a context");
    mind4_model_retain(model);
    ctx->model = model;
    ctx->max_tokens = max_tokens;
    size_t H = c->hidden_size, D = c->head_dim, nq = c->num_attention_heads, nkv = c->num_key_value_heads;
    size_t E = c->num_experts, k = c->experts_per_token, I = c->intermediate_size, L = c->num_hidden_layers;
    size_t QKV = (nq + 2 * nkv) * D, C = M4_MIN((size_t)MAX_CHUNK, max_tokens);
    ctx->chunk = C;
    bool ok = true;
    size_t kv;
    if (!m4_mul_size(L, max_tokens, &kv) || !m4_mul_size(kv, nkv * D, &kv) || kv > SIZE_MAX / sizeof(float)) ok = false;
    if (ok) {
        ctx->k_cache = (float*)calloc(kv, sizeof(float));
        ctx->v_cache = (float*)calloc(kv, sizeof(float));
        ok = ctx->k_cache && ctx->v_cache;
    }
    ctx->tokens = (uint32_t*)m4_alloc(max_tokens * sizeof(uint32_t));
    ok = ok && ctx->tokens;
    ctx->logits = floats(c->vocab_size, 1, &ok);
    ctx->x = floats(C, H, &ok);
    ctx->xn = floats(C, H, &ok);
    ctx->tmp = floats(C, H, &ok);
    ctx->qkv = floats(C, QKV, &ok);
    ctx->attn = floats(C, nq * D, &ok);
    ctx->gate_logits = floats(C, E, &ok);
    ctx->gate_weights = floats(C, k, &ok);
    ctx->gate_indices = (uint32_t*)floats(C, k, &ok);
    ctx->pair_order = (uint32_t*)floats(C, k, &ok);
    ctx->expert_counts = (uint32_t*)floats(E + 1, 1, &ok);
    ctx->moe_x = floats(C * k, H, &ok);
    ctx->moe_h = floats(C * k, 2 * I, &ok);
    ctx->moe_a = floats(C * k, I, &ok);
    ctx->moe_y = floats(C * k, H, &ok);
    ctx->rope_cos = floats(C, D / 2, &ok);
    ctx->rope_sin = floats(C, D / 2, &ok);
    size_t widest = M4_MAX(M4_MAX(H, I), nq * D);
    ctx->scratch_per_thread = M4_MAX(m4_matmul_scratch_floats(widest), m4_sdpa_scratch_floats(D));
    ctx->scratch_per_thread = (ctx->scratch_per_thread + 15) & ~(size_t)15;
    ctx->scratch = floats(m4_pool_size(model->pool), ctx->scratch_per_thread, &ok);
    ctx->jobs = (m4_matmul_job*)m4_alloc(E * sizeof(m4_matmul_job));
    ok = ok && ctx->jobs;
    /* decode step: per thread x [H], xn [H], router logits [E], weights [k],
     * indices and order [k, k] (as floats), SwiGLU input rows [chunk] */
    size_t threads = m4_pool_size(model->pool), phases = 3 * L + 1;
    size_t row_bytes = M4_MAX(m4_matrix_bytes(&model->layers[0].mlp1) / model->layers[0].mlp1.rows, (size_t)1);
    ctx->dec_chunk_rows = M4_MIN(M4_MAX((size_t)32768 / row_bytes, (size_t)16), (size_t)256) & ~(size_t)15;
#define PAD16(n) (((n) + 15) & ~(size_t)15)
    ctx->dec_stride = 2 * PAD16(H) + PAD16(E) + 3 * PAD16(k) + PAD16(ctx->dec_chunk_rows);
#undef PAD16
    ctx->dec_state = floats(threads, ctx->dec_stride, &ok);
    ctx->dec_parts = (m4_steal_part*)m4_calloc(phases * threads, sizeof(m4_steal_part));
    ctx->dec_steals = (m4_steal*)m4_calloc(phases, sizeof(m4_steal));
    ok = ok && ctx->dec_parts && ctx->dec_steals;
    if (!ok) {
        context_free(ctx);
        return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory creating a context of %zu tokens", max_tokens);
    }
    m4_ref_init(&ctx->refs);
    *context_out = ctx;
    return MIND4_SUCCESS;
}

/* ------------------------------------------------------------ forward */

/* x[t] += sum over slots of weight * y[row]; y rows ordered by expert. */
static void combine(mind4_context* ctx, size_t rows, size_t k, size_t H) {
    for (size_t row = 0; row < rows; row++) {
        uint32_t pair = ctx->pair_order[row];
        float w = ctx->gate_weights[pair];
        float* xt = ctx->x + (pair / k) * H;
        const float* y = ctx->moe_y + row * H;
        for (size_t i = 0; i < H; i++) xt[i] += w * y[i];
    }
}

/* Decode MoE with k a multiple of the thread count: thread i runs experts
 * rows i, i + n, ... end to end (mlp1 -> SwiGLU -> mlp2), each a long
 * sequential read, with no barrier between the two matmuls. */
typedef struct moe_decode_task {
    mind4_context* ctx;
    const m4_layer* Lw;
} moe_decode_task;

static void moe_decode_worker(void* arg, size_t index, size_t count) {
    moe_decode_task* task = (moe_decode_task*)arg;
    mind4_context* ctx = task->ctx;
    const m4_layer* Lw = task->Lw;
    const mind4_model_config* c = &ctx->model->config;
    size_t H = c->hidden_size, I = c->intermediate_size, k = c->experts_per_token;
    float* scratch = ctx->scratch + index * ctx->scratch_per_thread;
    for (size_t row = index; row < k; row += count) {
        size_t e = ctx->gate_indices[ctx->pair_order[row]];
        m4_matrix w1 = m4_matrix_rows(&Lw->mlp1, e * 2 * I, 2 * I), w2 = m4_matrix_rows(&Lw->mlp2, e * H, H);
        m4_matmul_job j1 = {&w1, Lw->mlp1_bias + e * 2 * I, ctx->moe_x + row * H, H, ctx->moe_h + row * 2 * I, 2 * I, 1};
        m4_matmul_rows(&j1, 0, 2 * I, scratch);
        m4_swiglu(ctx->moe_h + row * 2 * I, 1, I, (float)c->swiglu_limit, ctx->moe_a + row * I);
        m4_matmul_job j2 = {&w2, Lw->mlp2_bias + e * H, ctx->moe_a + row * I, I, ctx->moe_y + row * H, H, 1};
        m4_matmul_rows(&j2, 0, H, scratch);
    }
}

static void moe(mind4_context* ctx, const m4_layer* Lw, size_t T) {
    const mind4_model* m = ctx->model;
    const mind4_model_config* c = &m->config;
    size_t H = c->hidden_size, E = c->num_experts, k = c->experts_per_token, I = c->intermediate_size;
    m4_pool* pool = m->pool;
    /* router: [T, E] logits, then top-k + softmax (tiny: run on this thread) */
    m4_matmul(NULL, &Lw->gate, Lw->gate_bias, ctx->xn, T, ctx->gate_logits, ctx->scratch, ctx->scratch_per_thread);
    m4_topk_softmax(ctx->gate_logits, T, E, k, ctx->gate_indices, ctx->gate_weights);
    /* group (token, slot) pairs by expert: counting sort */
    uint32_t* count = ctx->expert_counts;
    memset(count, 0, (E + 1) * sizeof *count);
    for (size_t i = 0; i < T * k; i++) count[ctx->gate_indices[i] + 1]++;
    for (size_t e = 0; e < E; e++) count[e + 1] += count[e]; /* count[e] = first row of expert e */
    for (size_t i = 0; i < T * k; i++) {
        uint32_t e = ctx->gate_indices[i];
        ctx->pair_order[count[e]++] = (uint32_t)i; /* count[e] becomes the end of expert e */
    }
    for (size_t row = 0; row < T * k; row++) {
        memcpy(ctx->moe_x + row * H, ctx->xn + (ctx->pair_order[row] / k) * H, H * sizeof(float));
    }
    size_t threads = m4_pool_size(pool);
    if (T == 1 && k % threads == 0) { /* decode: whole experts per thread, no barrier inside */
        moe_decode_task task = {ctx, Lw};
        m4_pool_run(pool, moe_decode_worker, &task);
        combine(ctx, T * k, k, H);
        return;
    }
    /* mlp1 for every active expert in one dispatch: [n_e, H] -> [n_e, 2I]
     * (at most 64 jobs per dispatch: their matrix views live on the stack) */
    m4_matrix mats[64];
    size_t jobs = 0, begin = 0;
    for (size_t e = 0; e < E; e++) {
        size_t end = count[e];
        size_t n = end - begin;
        if (n > 0) {
            mats[jobs % 64] = m4_matrix_rows(&Lw->mlp1, e * 2 * I, 2 * I);
            m4_matmul_job* j = &ctx->jobs[jobs];
            j->w = &mats[jobs % 64];
            j->bias = Lw->mlp1_bias + e * 2 * I;
            j->x = ctx->moe_x + begin * H;
            j->ldx = H;
            j->y = ctx->moe_h + begin * 2 * I;
            j->ldy = 2 * I;
            j->T = n;
            jobs++;
            if (jobs == 64) { /* flush: the views array is full */
                m4_matmul_batch(pool, ctx->jobs, jobs, ctx->scratch, ctx->scratch_per_thread);
                jobs = 0;
            }
        }
        begin = end;
    }
    if (jobs) m4_matmul_batch(pool, ctx->jobs, jobs, ctx->scratch, ctx->scratch_per_thread);
    m4_swiglu(ctx->moe_h, T * k, I, (float)c->swiglu_limit, ctx->moe_a);
    /* mlp2: [n_e, I] -> [n_e, H] */
    jobs = 0;
    begin = 0;
    for (size_t e = 0; e < E; e++) {
        size_t end = count[e];
        size_t n = end - begin;
        if (n > 0) {
            mats[jobs % 64] = m4_matrix_rows(&Lw->mlp2, e * H, H);
            m4_matmul_job* j = &ctx->jobs[jobs];
            j->w = &mats[jobs % 64];
            j->bias = Lw->mlp2_bias + e * H;
            j->x = ctx->moe_a + begin * I;
            j->ldx = I;
            j->y = ctx->moe_y + begin * H;
            j->ldy = H;
            j->T = n;
            jobs++;
            if (jobs == 64) {
                m4_matmul_batch(pool, ctx->jobs, jobs, ctx->scratch, ctx->scratch_per_thread);
                jobs = 0;
            }
        }
        begin = end;
    }
    if (jobs) m4_matmul_batch(pool, ctx->jobs, jobs, ctx->scratch, ctx->scratch_per_thread);
    combine(ctx, T * k, k, H);
}

static m4_sdpa_args sdpa_args(mind4_context* ctx, const m4_layer* Lw, size_t layer, size_t p0, size_t T) {
    const mind4_model_config* c = &ctx->model->config;
    size_t D = c->head_dim, nq = c->num_attention_heads, nkv = c->num_key_value_heads, KV = nkv * D;
    m4_sdpa_args a;
    a.q = ctx->qkv;
    a.q_stride = (nq + 2 * nkv) * D;
    a.k = ctx->k_cache + layer * ctx->max_tokens * KV;
    a.v = ctx->v_cache + layer * ctx->max_tokens * KV;
    a.sinks = Lw->sinks;
    a.out = ctx->attn;
    a.T = T;
    a.offset = p0;
    a.Hq = nq;
    a.Hkv = nkv;
    a.D = D;
    a.window = Lw->window;
    a.sm_scale = (float)(1.0 / sqrt((double)D));
    a.scratch = ctx->scratch;
    a.scratch_floats_per_thread = ctx->scratch_per_thread;
    a.kv_row_stride = D;
    a.kv_head_stride = ctx->max_tokens * D;
    return a;
}

/* Decode attention with the KV groups split across threads: thread i
 * computes q, k, v of its groups (three row ranges of the qkv matrix), ropes
 * them, writes its cache slices and attends, without a barrier in between. */
typedef struct attention_decode_task {
    mind4_context* ctx;
    const m4_layer* Lw;
    m4_sdpa_args a;
    float *k_cache, *v_cache; /* this layer's caches [Hkv, max_tokens, D] */
} attention_decode_task;

/* q, k, v of KV group g from xn (three row ranges of the qkv matrix), RoPE,
 * the cache write and the group's attention. */
static void attend_group(mind4_context* ctx, const m4_layer* Lw, const m4_sdpa_args* a, float* k_cache,
                         float* v_cache, const float* xn, size_t g, float* scratch) {
    const mind4_model_config* c = &ctx->model->config;
    size_t H = c->hidden_size, D = c->head_dim, nq = c->num_attention_heads, nkv = c->num_key_value_heads;
    size_t group = nq / nkv, QKV = (nq + 2 * nkv) * D, p0 = a->offset, at = (g * ctx->max_tokens + p0) * D;
    size_t first[3] = {g * group * D, nq * D + g * D, (nq + nkv) * D + g * D}; /* q, k, v rows */
    size_t rows[3] = {group * D, D, D};
    for (int part = 0; part < 3; part++) {
        m4_matrix w = m4_matrix_rows(&Lw->qkv, first[part], rows[part]);
        m4_matmul_job job = {&w, Lw->qkv_bias + first[part], xn, H, ctx->qkv + first[part], QKV, 1};
        m4_matmul_rows(&job, 0, rows[part], scratch);
    }
    m4_rope_apply(ctx->qkv + first[0], 1, QKV, group, D, ctx->rope_cos, ctx->rope_sin);
    m4_rope_apply(ctx->qkv + first[1], 1, QKV, 1, D, ctx->rope_cos, ctx->rope_sin);
    memcpy(k_cache + at, ctx->qkv + first[1], D * sizeof(float));
    memcpy(v_cache + at, ctx->qkv + first[2], D * sizeof(float));
    m4_sdpa_decode_group(a, g, scratch);
}

static void attention_decode_worker(void* arg, size_t index, size_t count) {
    attention_decode_task* task = (attention_decode_task*)arg;
    mind4_context* ctx = task->ctx;
    float* scratch = ctx->scratch + index * ctx->scratch_per_thread;
    for (size_t g = index; g < ctx->model->config.num_key_value_heads; g += count) {
        attend_group(ctx, task->Lw, &task->a, task->k_cache, task->v_cache, ctx->xn, g, scratch);
    }
}

static void attention(mind4_context* ctx, const m4_layer* Lw, size_t layer, size_t p0, size_t T) {
    const mind4_model* m = ctx->model;
    const mind4_model_config* c = &m->config;
    size_t H = c->hidden_size, D = c->head_dim, nq = c->num_attention_heads, nkv = c->num_key_value_heads;
    size_t QKV = (nq + 2 * nkv) * D, KV = nkv * D;
    m4_sdpa_args a = sdpa_args(ctx, Lw, layer, p0, T);
    if (T == 1 && nkv % m4_pool_size(m->pool) == 0) {
        attention_decode_task task = {ctx, Lw, a, ctx->k_cache + layer * ctx->max_tokens * KV,
                                      ctx->v_cache + layer * ctx->max_tokens * KV};
        m4_pool_run(m->pool, attention_decode_worker, &task);
    } else {
        m4_matmul(m->pool, &Lw->qkv, Lw->qkv_bias, ctx->xn, T, ctx->qkv, ctx->scratch, ctx->scratch_per_thread);
        /* RoPE on q heads and k heads (contiguous in each row: q then k) */
        m4_rope_apply(ctx->qkv, T, QKV, nq + nkv, D, ctx->rope_cos, ctx->rope_sin);
        float* kc = ctx->k_cache + layer * ctx->max_tokens * KV;
        float* vc = ctx->v_cache + layer * ctx->max_tokens * KV;
        for (size_t g = 0; g < nkv; g++) {
            float* kg = kc + (g * ctx->max_tokens + p0) * D;
            float* vg = vc + (g * ctx->max_tokens + p0) * D;
            for (size_t t = 0; t < T; t++) {
                memcpy(kg + t * D, ctx->qkv + t * QKV + (nq + g) * D, D * sizeof(float));
                memcpy(vg + t * D, ctx->qkv + t * QKV + (nq + nkv + g) * D, D * sizeof(float));
            }
        }
        m4_sdpa(m->pool, &a);
    }
    m4_matmul(m->pool, &Lw->out, Lw->out_bias, ctx->attn, T, ctx->tmp, ctx->scratch, ctx->scratch_per_thread);
    for (size_t i = 0; i < T * H; i++) ctx->x[i] += ctx->tmp[i];
}

/* ------------------------------------------------------- decode step */

/* One decoded token in a single parallel task: every thread keeps its own
 * copy of the residual stream x and recomputes the cheap serial steps
 * (embedding row, RMSNorm, router, expert combine: identical results on every
 * thread), so a layer needs only four barriers and no thread ever waits on a
 * serial section. Per layer:
 *   A  attention of this thread's KV groups (q/k/v rows, RoPE, cache, SDPA)
 *   B  out projection rows                   -> tmp [H]
 *   C  x += tmp, norm, router; mlp1 rows of the k experts with SwiGLU per chunk -> moe_a [k, I]
 *   D  mlp2 rows of the k experts            -> moe_y [k, H]
 * and at the end the unembedding rows -> logits. B, C, D and the unembedding
 * are split by work stealing (each thread starts on the same rows every token
 * and helps the others when done). The arithmetic of every output element is
 * that of the per-kernel path, so results are bit-identical to it. */
typedef struct decode_task {
    mind4_context* ctx;
    size_t p0; /* position of the token */
} decode_task;

/* x += sum over the k experts (in ascending expert order, like combine) of weight * y */
static void decode_combine(const mind4_context* ctx, float* x, const float* gw, const uint32_t* order) {
    const mind4_model_config* c = &ctx->model->config;
    size_t H = c->hidden_size;
    for (size_t j = 0; j < c->experts_per_token; j++) {
        uint32_t s = order[j];
        float w = gw[s];
        const float* y = ctx->moe_y + s * H;
        for (size_t i = 0; i < H; i++) x[i] += w * y[i];
    }
}

#if defined(M4_POOL_PROFILE)
/* per thread (up to 4) and phase: work and barrier-wait seconds */
#include <stdio.h>
#include <time.h>
static double g_ph_work[4][6], g_ph_wait[4][6];
static size_t g_ph_tokens;
static double ph_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
#define PH_MARK(phase)                                                      \
    do {                                                                    \
        double t_ = ph_now();                                               \
        if (index < 4) g_ph_work[index][phase] += t_ - ph_t;                \
        m4_pool_barrier(m->pool);                                           \
        ph_t = ph_now();                                                    \
        if (index < 4) g_ph_wait[index][phase] += ph_t - t_;                \
    } while (0)
void m4_decode_profile_dump(void) {
    const char* names[6] = {"A attn", "B out", "C mlp1", "D mlp2", "unembed", ""};
    for (int p = 0; p < 5; p++) {
        fprintf(stderr, "  %-8s", names[p]);
        for (int i = 0; i < 2; i++) {
            fprintf(stderr, "  t%d work %7.1f us wait %6.1f us", i, 1e6 * g_ph_work[i][p] / (double)g_ph_tokens,
                    1e6 * g_ph_wait[i][p] / (double)g_ph_tokens);
        }
        fprintf(stderr, "\n");
    }
    memset(g_ph_work, 0, sizeof g_ph_work);
    memset(g_ph_wait, 0, sizeof g_ph_wait);
    g_ph_tokens = 0;
}
#else
#define PH_MARK(phase) m4_pool_barrier(m->pool)
#endif

static void decode_worker(void* arg, size_t index, size_t count) {
    decode_task* task = (decode_task*)arg;
    mind4_context* ctx = task->ctx;
    const mind4_model* m = ctx->model;
    const mind4_model_config* c = &m->config;
    size_t H = c->hidden_size, E = c->num_experts, k = c->experts_per_token, I = c->intermediate_size;
    size_t V = c->vocab_size, nkv = c->num_key_value_heads, KV = nkv * c->head_dim, p0 = task->p0;
    float eps = (float)c->rms_norm_eps, limit = (float)c->swiglu_limit;
    size_t Hp = (H + 15) & ~(size_t)15, Ep = (E + 15) & ~(size_t)15, kp = (k + 15) & ~(size_t)15;
    float* x = ctx->dec_state + index * ctx->dec_stride; /* [H] this thread's residual stream */
    float* xn = x + Hp;                                  /* [H] normed */
    float* glog = xn + Hp;                               /* [E] router logits */
    float* gw = glog + Ep;                               /* [k] expert weights by slot */
    uint32_t* idx = (uint32_t*)(gw + kp);                /* [k] expert of each slot */
    uint32_t* order = idx + kp;                          /* [k] slots by ascending expert */
    float* h = (float*)(order + kp);                     /* [chunk] mlp1 rows before SwiGLU */
    float* scratch = ctx->scratch + index * ctx->scratch_per_thread;
    m4_steal* steal = ctx->dec_steals;
    size_t b, e;
#if defined(M4_POOL_PROFILE)
    double ph_t = ph_now();
    if (index == 0) g_ph_tokens++;
#endif
    m4_embedding(&m->embedding, ctx->tokens + p0, 1, x);
    for (size_t l = 0; l < c->num_hidden_layers; l++, steal += 3) {
        const m4_layer* Lw = &m->layers[l];
        if (l > 0) decode_combine(ctx, x, gw, order);
        m4_rmsnorm(x, Lw->attn_norm, eps, 1, H, xn);
        /* A: attention */
        m4_sdpa_args a = sdpa_args(ctx, Lw, l, p0, 1);
        float* kc = ctx->k_cache + l * ctx->max_tokens * KV;
        float* vc = ctx->v_cache + l * ctx->max_tokens * KV;
        for (size_t g = index; g < nkv; g += count) attend_group(ctx, Lw, &a, kc, vc, xn, g, scratch);
        PH_MARK(0);
        /* B: out projection */
        m4_matmul_job out = {&Lw->out, Lw->out_bias, ctx->attn, Lw->out.cols, ctx->tmp, H, 1};
        while (m4_steal_next(&steal[0], index, &b, &e)) m4_matmul_rows(&out, b, e, scratch);
        PH_MARK(1);
        /* C: residual, norm, router, mlp1 + SwiGLU */
        for (size_t i = 0; i < H; i++) x[i] += ctx->tmp[i];
        m4_rmsnorm(x, Lw->mlp_norm, eps, 1, H, xn);
        m4_matmul_job gate = {&Lw->gate, Lw->gate_bias, xn, H, glog, E, 1};
        m4_matmul_rows(&gate, 0, E, scratch);
        m4_topk_softmax(glog, 1, E, k, idx, gw);
        for (size_t j = 0; j < k; j++) { /* insertion sort of the k slots by expert */
            size_t i = j;
            for (; i > 0 && idx[order[i - 1]] > idx[j]; i--) order[i] = order[i - 1];
            order[i] = (uint32_t)j;
        }
        while (m4_steal_next(&steal[1], index, &b, &e)) {
            while (b < e) { /* pieces within one expert: slot s, rows [r, r + n) of its 2I */
                size_t s = b / (2 * I), r = b % (2 * I), n = M4_MIN(e - b, 2 * I - r), ex = idx[s];
                m4_matrix w1 = m4_matrix_rows(&Lw->mlp1, ex * 2 * I + r, n);
                m4_matmul_job j1 = {&w1, Lw->mlp1_bias + ex * 2 * I + r, xn, H, h, n, 1};
                m4_matmul_rows(&j1, 0, n, scratch);
                m4_swiglu(h, 1, n / 2, limit, ctx->moe_a + s * I + r / 2);
                b += n;
            }
        }
        PH_MARK(2);
        /* D: mlp2 */
        while (m4_steal_next(&steal[2], index, &b, &e)) {
            while (b < e) {
                size_t s = b / H, r = b % H, n = M4_MIN(e - b, H - r), ex = idx[s];
                m4_matrix w2 = m4_matrix_rows(&Lw->mlp2, ex * H, H);
                m4_matmul_job j2 = {&w2, Lw->mlp2_bias + ex * H, ctx->moe_a + s * I, I, ctx->moe_y + s * H, H, 1};
                m4_matmul_rows(&j2, r, r + n, scratch);
                b += n;
            }
        }
        PH_MARK(3);
    }
    decode_combine(ctx, x, gw, order);
    m4_rmsnorm(x, m->norm, eps, 1, H, xn);
    m4_matmul_job un = {&m->unembedding, NULL, xn, H, ctx->logits, V, 1};
    while (m4_steal_next(steal, index, &b, &e)) m4_matmul_rows(&un, b, e, scratch);
#if defined(M4_POOL_PROFILE)
    if (index < 4) g_ph_work[index][4] += ph_now() - ph_t;
#endif
}

int m4_decode_step_enabled = 1;
int m4_ab_variant = 0;

/* The decode step applies when every thread gets the same number of KV groups. */
static bool decode_step_applies(const mind4_context* ctx, size_t T) {
    return T == 1 && m4_decode_step_enabled &&
           ctx->model->config.num_key_value_heads % m4_pool_size(ctx->model->pool) == 0;
}

static void decode_step(mind4_context* ctx, size_t p0) {
    const mind4_model* m = ctx->model;
    const mind4_model_config* c = &m->config;
    size_t H = c->hidden_size, I = c->intermediate_size, k = c->experts_per_token, threads = m4_pool_size(m->pool);
    size_t chunk = ctx->dec_chunk_rows;
    m4_rope_table(m->rope_inv_freq, m->rope_concentration, c->head_dim / 2, p0, 1, ctx->rope_cos, ctx->rope_sin);
    m4_steal_part* parts = ctx->dec_parts;
    m4_steal* steal = ctx->dec_steals;
    for (size_t l = 0; l < c->num_hidden_layers; l++, steal += 3, parts += 3 * threads) {
        m4_steal_init(&steal[0], parts, threads, H, 16);
        m4_steal_init(&steal[1], parts + threads, threads, k * 2 * I, chunk);
        m4_steal_init(&steal[2], parts + 2 * threads, threads, k * H, chunk);
    }
    m4_steal_init(steal, parts, threads, c->vocab_size, 64);
    decode_task task = {ctx, p0};
    m4_pool_run(m->pool, decode_worker, &task);
}

mind4_status m4_forward(mind4_context* ctx, size_t from, size_t T, float* all_logits) {
    const mind4_model* m = ctx->model;
    const mind4_model_config* c = &m->config;
    size_t H = c->hidden_size, V = c->vocab_size, D = c->head_dim;
    float eps = (float)c->rms_norm_eps;
    if (decode_step_applies(ctx, T)) {
        decode_step(ctx, from);
        if (all_logits) memcpy(all_logits, ctx->logits, V * sizeof(float));
        return MIND4_SUCCESS;
    }
    for (size_t done = 0; done < T;) {
        size_t n = M4_MIN(ctx->chunk, T - done), p0 = from + done;
        m4_embedding(&m->embedding, ctx->tokens + p0, n, ctx->x);
        m4_rope_table(m->rope_inv_freq, m->rope_concentration, D / 2, p0, n, ctx->rope_cos, ctx->rope_sin);
        for (size_t l = 0; l < c->num_hidden_layers; l++) {
            const m4_layer* Lw = &m->layers[l];
            m4_rmsnorm(ctx->x, Lw->attn_norm, eps, n, H, ctx->xn);
            attention(ctx, Lw, l, p0, n);
            m4_rmsnorm(ctx->x, Lw->mlp_norm, eps, n, H, ctx->xn);
            moe(ctx, Lw, n);
        }
        bool last_chunk = done + n == T;
        if (all_logits) {
            m4_rmsnorm(ctx->x, m->norm, eps, n, H, ctx->xn);
            m4_matmul(m->pool, &m->unembedding, NULL, ctx->xn, n, all_logits + done * V, ctx->scratch,
                      ctx->scratch_per_thread);
            if (last_chunk) memcpy(ctx->logits, all_logits + (T - 1) * V, V * sizeof(float));
        } else if (last_chunk) {
            m4_rmsnorm(ctx->x + (n - 1) * H, m->norm, eps, 1, H, ctx->xn);
            m4_matmul(m->pool, &m->unembedding, NULL, ctx->xn, 1, ctx->logits, ctx->scratch, ctx->scratch_per_thread);
        }
        done += n;
    }
    return MIND4_SUCCESS;
}

/* ------------------------------------------------------------ API */
mind4_status mind4_context_get_max_tokens(const mind4_context* ctx, size_t* out) {
    if (!ctx || !out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_get_max_tokens: NULL argument");
    *out = ctx->max_tokens;
    return MIND4_SUCCESS;
}

mind4_status mind4_context_get_num_tokens(const mind4_context* ctx, size_t* out) {
    if (!ctx || !out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_get_num_tokens: NULL argument");
    *out = ctx->num_tokens;
    return MIND4_SUCCESS;
}

mind4_status mind4_context_get_num_processed(const mind4_context* ctx, size_t* out) {
    if (!ctx || !out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_get_num_processed: NULL argument");
    *out = ctx->num_processed;
    return MIND4_SUCCESS;
}

mind4_status mind4_context_get_tokens(const mind4_context* ctx, uint32_t* tokens_out, size_t capacity,
                                      size_t* num_tokens_out) {
    if (!ctx || (!tokens_out && capacity)) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_get_tokens: NULL argument");
    size_t n = M4_MIN(capacity, ctx->num_tokens);
    if (n) memcpy(tokens_out, ctx->tokens, n * sizeof(uint32_t));
    if (num_tokens_out) *num_tokens_out = ctx->num_tokens;
    return MIND4_SUCCESS;
}

mind4_status mind4_context_append_tokens(mind4_context* ctx, const uint32_t* tokens, size_t num_tokens) {
    m4_clear_error();
    if (!ctx || (!tokens && num_tokens)) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_append_tokens: NULL argument");
    if (num_tokens > ctx->max_tokens - ctx->num_tokens) {
        return m4_fail(MIND4_CONTEXT_OVERFLOW,
                       "appending %zu tokens to %zu would exceed the context's %zu tokens; start a new context or "
                       "create it with more tokens",
                       num_tokens, ctx->num_tokens, ctx->max_tokens);
    }
    uint32_t V = ctx->model->config.vocab_size;
    for (size_t i = 0; i < num_tokens; i++) {
        if (tokens[i] >= V) {
            return m4_fail(MIND4_INVALID_ARGUMENT, "token %zu of the batch is id %u, outside the vocabulary (size %u)", i,
                           tokens[i], V);
        }
    }
    if (num_tokens) memcpy(ctx->tokens + ctx->num_tokens, tokens, num_tokens * sizeof(uint32_t));
    ctx->num_tokens += num_tokens;
    if (num_tokens) ctx->logits_valid = false;
    return MIND4_SUCCESS;
}

mind4_status mind4_context_process_all(mind4_context* ctx, float* logits_out, size_t capacity, size_t* num_rows_out) {
    m4_clear_error();
    if (!ctx) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_process: context is NULL");
    if (ctx->num_tokens > 0 && ctx->num_processed == ctx->num_tokens && !ctx->logits_valid) {
        ctx->num_processed--; /* logits dropped by truncate: recompute the last token's */
    }
    size_t pending = ctx->num_tokens - ctx->num_processed;
    if (logits_out) {
        size_t need;
        if (!m4_mul_size(pending, ctx->model->config.vocab_size, &need) || capacity < need) {
            return m4_fail(MIND4_INVALID_ARGUMENT, "logits buffer holds %zu floats; %zu new tokens need %zu x %u", capacity,
                           pending, pending, ctx->model->config.vocab_size);
        }
    }
    if (num_rows_out) *num_rows_out = 0;
    if (pending == 0) {
        if (ctx->num_tokens == 0) return m4_fail(MIND4_INVALID_ARGUMENT, "the context holds no tokens to process");
        return MIND4_SUCCESS;
    }
    mind4_status st = m4_forward(ctx, ctx->num_processed, pending, logits_out);
    if (st != MIND4_SUCCESS) return st;
    ctx->num_processed = ctx->num_tokens;
    ctx->logits_valid = true;
    if (num_rows_out) *num_rows_out = logits_out ? pending : 0;
    return MIND4_SUCCESS;
}

mind4_status mind4_context_process(mind4_context* ctx) { return mind4_context_process_all(ctx, NULL, 0, NULL); }

mind4_status mind4_context_get_logits(const mind4_context* ctx, float* logits_out, size_t capacity) {
    if (!ctx || !logits_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_get_logits: NULL argument");
    size_t V = ctx->model->config.vocab_size;
    if (capacity < V) return m4_fail(MIND4_INVALID_ARGUMENT, "logits buffer holds %zu floats, needs %zu", capacity, V);
    if (!ctx->logits_valid) {
        return m4_fail(MIND4_INVALID_ARGUMENT, "no logits: process the context's pending tokens first");
    }
    memcpy(logits_out, ctx->logits, V * sizeof(float));
    return MIND4_SUCCESS;
}

mind4_status mind4_context_truncate(mind4_context* ctx, size_t num_tokens) {
    if (!ctx) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_truncate: context is NULL");
    if (num_tokens > ctx->num_tokens) {
        return m4_fail(MIND4_INVALID_ARGUMENT, "cannot truncate a context of %zu tokens to %zu", ctx->num_tokens, num_tokens);
    }
    if (num_tokens < ctx->num_tokens) {
        ctx->num_tokens = num_tokens;
        ctx->logits_valid = false;
    }
    if (ctx->num_processed > num_tokens) ctx->num_processed = num_tokens;
    return MIND4_SUCCESS;
}

mind4_status mind4_context_reset(mind4_context* ctx, const uint32_t* tokens, size_t num_tokens) {
    m4_clear_error();
    if (!ctx || (!tokens && num_tokens)) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_reset: NULL argument");
    if (num_tokens > ctx->max_tokens) {
        return m4_fail(MIND4_CONTEXT_OVERFLOW, "%zu tokens exceed the context's %zu", num_tokens, ctx->max_tokens);
    }
    uint32_t V = ctx->model->config.vocab_size;
    for (size_t i = 0; i < num_tokens; i++) {
        if (tokens[i] >= V) {
            return m4_fail(MIND4_INVALID_ARGUMENT, "token %zu is id %u, outside the vocabulary (size %u)", i, tokens[i], V);
        }
    }
    size_t common = 0;
    while (common < num_tokens && common < ctx->num_processed && ctx->tokens[common] == tokens[common]) common++;
    if (common == num_tokens && common > 0) common--; /* reprocess the last token for its logits */
    ctx->num_processed = common;
    ctx->num_tokens = common;
    ctx->logits_valid = false;
    if (num_tokens > common) memcpy(ctx->tokens + common, tokens + common, (num_tokens - common) * sizeof(uint32_t));
    ctx->num_tokens = num_tokens;
    return MIND4_SUCCESS;
}

mind4_status mind4_context_sample(mind4_context* ctx, mind4_sampler* sampler, uint32_t* token_out) {
    if (!ctx || !sampler || !token_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_sample: NULL argument");
    mind4_status st = mind4_context_process(ctx);
    if (st != MIND4_SUCCESS) return st;
    return mind4_sampler_sample(sampler, ctx->logits, ctx->model->config.vocab_size, token_out);
}

mind4_status mind4_context_retain(mind4_context* ctx) {
    if (!ctx) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_context_retain: context is NULL");
    m4_ref_inc(&ctx->refs);
    return MIND4_SUCCESS;
}

mind4_status mind4_context_release(mind4_context* ctx) {
    if (ctx && m4_ref_dec(&ctx->refs) == 0) context_free(ctx);
    return MIND4_SUCCESS;
}
