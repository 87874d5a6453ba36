/* model.c - mind4_model: weights from a validated checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine.h"

mind4_status mind4_model_options_init(mind4_model_options* options) {
    if (!options) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_model_options_init: options is NULL");
    memset(options, 0, sizeof *options);
    options->num_threads = 0;
    options->weight_dtype = MIND4_DTYPE_AUTO;
    options->check_finite = 1;
    return MIND4_SUCCESS;
}

static void* keep(mind4_model* m, void* p) {
    if (!p) return NULL;
    if (m->num_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void** t = (void**)realloc(m->owned, cap * sizeof *t);
        if (!t) {
            m4_free(p);
            return NULL;
        }
        m->owned = t;
        m->cap_owned = cap;
    }
    m->owned[m->num_owned++] = p;
    return p;
}

static bool finite_f32(const unsigned char* data, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, data + 4 * i, 4);
        if ((u & 0x7f800000u) == 0x7f800000u) return false;
    }
    return true;
}

static bool finite_16(const unsigned char* data, size_t n, uint16_t exp_mask) {
    for (size_t i = 0; i < n; i++) {
        uint16_t u;
        memcpy(&u, data + 2 * i, 2);
        if ((u & exp_mask) == exp_mask) return false;
    }
    return true;
}

static mind4_status check_finite(const mind4_model* m, const char* name, const m4_ckpt_weight* w) {
    const m4_st_tensor* t = w->tensor;
    bool ok = true;
    switch (w->dtype) {
        case MIND4_DTYPE_F32: ok = finite_f32(t->data, (size_t)t->numel); break;
        case MIND4_DTYPE_BF16: ok = finite_16(t->data, (size_t)t->numel, 0x7f80u); break;
        case MIND4_DTYPE_F16: ok = finite_16(t->data, (size_t)t->numel, 0x7c00u); break;
        case MIND4_DTYPE_MXFP4:
            for (size_t i = 0; i < w->scales->nbytes && ok; i++) ok = w->scales->data[i] != 0xff;
            break;
        default: break;
    }
    if (ok) return MIND4_SUCCESS;
    return m4_fail(MIND4_CORRUPT_FILE,
                   "%s: tensor \"%s\" contains NaN or infinity%s; fix the checkpoint (or load with "
                   "check_finite=0 to get NaN logits instead)",
                   m->ckpt.path, name, w->dtype == MIND4_DTYPE_MXFP4 ? " (an E8M0 scale of 0xFF)" : "");
}

/* A vector (norm scale, bias, sinks) widened to an owned f32 array. */
static mind4_status load_vector(mind4_model* m, const char* name, const float** out) {
    m4_ckpt_weight w;
    mind4_status st = m4_checkpoint_weight(&m->ckpt, name, &w);
    if (st != MIND4_SUCCESS) return st;
    size_t n = (size_t)w.tensor->numel;
    float* v = (float*)keep(m, m4_alloc(n * sizeof(float)));
    if (!v) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory loading \"%s\"", name);
    const unsigned char* src = w.tensor->data;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        switch (w.dtype) {
            case MIND4_DTYPE_F32: memcpy(&v[i], src + 4 * i, 4); break;
            case MIND4_DTYPE_BF16:
                memcpy(&h, src + 2 * i, 2);
                v[i] = m4_bf16_to_f32(h);
                break;
            default:
                memcpy(&h, src + 2 * i, 2);
                v[i] = m4_f16_to_f32(h);
                break;
        }
    }
    *out = v;
    return MIND4_SUCCESS;
}

/* A matrix kept in (or converted to) the requested dtype. rows/cols: the
 * logical 2-D view ([E * rows, cols] for stacked experts). */
static mind4_status load_matrix(mind4_model* m, const char* name, mind4_dtype want, size_t rows, size_t cols,
                                m4_matrix* out, mind4_dtype* dtype_out) {
    m4_ckpt_weight w;
    mind4_status st = m4_checkpoint_weight(&m->ckpt, name, &w);
    if (st != MIND4_SUCCESS) return st;
    out->rows = rows;
    out->cols = cols;
    out->scales = NULL;
    if (w.dtype == MIND4_DTYPE_MXFP4) {
        out->dtype = MIND4_DTYPE_MXFP4;
        out->data = w.tensor->data;
        out->scales = w.scales->data;
        *dtype_out = MIND4_DTYPE_MXFP4;
        return MIND4_SUCCESS;
    }
    mind4_dtype target = want;
    if (target == MIND4_DTYPE_AUTO) target = w.dtype == MIND4_DTYPE_BF16 ? MIND4_DTYPE_BF16 : MIND4_DTYPE_F32;
    size_t n = rows * cols; /* == numel, validated */
    const unsigned char* src = w.tensor->data;
    size_t elem = target == MIND4_DTYPE_F32 ? 4 : 2;
    if (target == w.dtype && ((uintptr_t)src % elem) == 0) {
        out->dtype = target;
        out->data = src; /* zero copy from the mapping */
        *dtype_out = target;
        return MIND4_SUCCESS;
    }
    void* dst = keep(m, m4_alloc_huge(n * elem));
    if (!dst) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory converting \"%s\" to %s", name, mind4_dtype_string(target));
    for (size_t i = 0; i < n; i++) {
        float f;
        uint16_t h;
        switch (w.dtype) {
            case MIND4_DTYPE_F32: memcpy(&f, src + 4 * i, 4); break;
            case MIND4_DTYPE_BF16:
                memcpy(&h, src + 2 * i, 2);
                f = m4_bf16_to_f32(h);
                break;
            default:
                memcpy(&h, src + 2 * i, 2);
                f = m4_f16_to_f32(h);
                break;
        }
        if (target == MIND4_DTYPE_F32) {
            ((float*)dst)[i] = f;
        } else {
            ((uint16_t*)dst)[i] = m4_f32_to_bf16(f);
        }
    }
    out->dtype = target;
    out->data = dst;
    *dtype_out = target;
    return MIND4_SUCCESS;
}

static bool owned(const mind4_model* m, const void* p) {
    for (size_t i = 0; i < m->num_owned; i++) {
        if (m->owned[i] == p) return true;
    }
    return false;
}

/* Every matrix of the model (to copy them out of the mapping). */
static size_t all_matrices(mind4_model* m, m4_matrix** out) {
    size_t n = 0;
    out[n++] = &m->embedding;
    out[n++] = &m->unembedding;
    for (uint32_t l = 0; l < m->config.num_hidden_layers; l++) {
        m4_layer* L = &m->layers[l];
        out[n++] = &L->qkv;
        out[n++] = &L->out;
        out[n++] = &L->gate;
        out[n++] = &L->mlp1;
        out[n++] = &L->mlp2;
    }
    return n;
}

/* Copy every matrix still pointing into the file mapping (or the caller's
 * buffer) into one huge-page-backed block. */
static mind4_status copy_weights(mind4_model* m) {
    size_t count = 2 + 5 * (size_t)m->config.num_hidden_layers;
    m4_matrix** mats = (m4_matrix**)malloc(count * sizeof *mats);
    if (!mats) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory");
    count = all_matrices(m, mats);
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        if (owned(m, mats[i]->data)) continue;
        size_t bytes = mats[i]->dtype == MIND4_DTYPE_MXFP4 ? mats[i]->rows * (mats[i]->cols / 2)
                                                          : m4_matrix_bytes(mats[i]);
        total += (bytes + 63) & ~(size_t)63;
        if (mats[i]->dtype == MIND4_DTYPE_MXFP4) total += (mats[i]->rows * (mats[i]->cols / 32) + 63) & ~(size_t)63;
    }
    unsigned char* block = total ? (unsigned char*)keep(m, m4_alloc_huge(total)) : NULL;
    if (total && !block) {
        free(mats);
        return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory copying %zu bytes of weights", total);
    }
    size_t pos = 0;
    for (size_t i = 0; i < count; i++) {
        m4_matrix* w = mats[i];
        if (owned(m, w->data)) continue;
        size_t bytes = w->dtype == MIND4_DTYPE_MXFP4 ? w->rows * (w->cols / 2) : m4_matrix_bytes(w);
        memcpy(block + pos, w->data, bytes);
        w->data = block + pos;
        pos += (bytes + 63) & ~(size_t)63;
        if (w->dtype == MIND4_DTYPE_MXFP4) {
            size_t sbytes = w->rows * (w->cols / 32);
            memcpy(block + pos, w->scales, sbytes);
            w->scales = block + pos;
            pos += (sbytes + 63) & ~(size_t)63;
        }
    }
    free(mats);
    return MIND4_SUCCESS;
}

static mind4_status check_all_finite(mind4_model* m) {
    for (size_t i = 0; i < m->ckpt.num_tensors; i++) {
        const m4_st_tensor* t = m->ckpt.by_name[i];
        char name[M4_MAX_NAME];
        size_t len = t->name_length < sizeof name - 1 ? t->name_length : sizeof name - 1;
        memcpy(name, t->name, len);
        name[len] = '\0';
        m4_ckpt_weight w;
        memset(&w, 0, sizeof w);
        w.tensor = t;
        if (t->dtype == M4_ST_F32) {
            w.dtype = MIND4_DTYPE_F32;
        } else if (t->dtype == M4_ST_BF16) {
            w.dtype = MIND4_DTYPE_BF16;
        } else if (t->dtype == M4_ST_F16) {
            w.dtype = MIND4_DTYPE_F16;
        } else if (len > 7 && strcmp(name + len - 7, ".scales") == 0) {
            w.dtype = MIND4_DTYPE_MXFP4;
            w.scales = t;
        } else {
            continue;
        }
        mind4_status st = check_finite(m, name, &w);
        if (st != MIND4_SUCCESS) return st;
    }
    return MIND4_SUCCESS;
}

static void model_free(mind4_model* m) {
    if (!m) return;
    m4_pool_destroy(m->pool);
    for (size_t i = 0; i < m->num_owned; i++) m4_free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->rope_inv_freq);
    m4_checkpoint_close(&m->ckpt);
    free(m);
}

static mind4_status build(mind4_model* m, const mind4_model_options* o) {
    const mind4_model_config* c = &m->config;
    size_t H = c->hidden_size, V = c->vocab_size, D = c->head_dim, nq = c->num_attention_heads;
    size_t nkv = c->num_key_value_heads, E = c->num_experts, I = c->intermediate_size;
    mind4_dtype want = o->weight_dtype, got;
    if (want != MIND4_DTYPE_AUTO && want != MIND4_DTYPE_F32 && want != MIND4_DTYPE_BF16) {
        return m4_fail(MIND4_UNSUPPORTED, "weight_dtype %s is not supported (use auto, float32 or bfloat16)",
                       mind4_dtype_string(want));
    }
    mind4_status st;
    if (o->check_finite) {
        st = check_all_finite(m);
        if (st != MIND4_SUCCESS) return st;
    }
    m->layers = (m4_layer*)calloc(c->num_hidden_layers, sizeof *m->layers);
    m->rope_inv_freq = (double*)calloc(D / 2, sizeof(double));
    if (!m->layers || !m->rope_inv_freq) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory");
    if ((st = load_matrix(m, "embedding.weight", want, V, H, &m->embedding, &got)) != MIND4_SUCCESS) return st;
    if ((st = load_matrix(m, "unembedding.weight", want, V, H, &m->unembedding, &got)) != MIND4_SUCCESS) return st;
    if ((st = load_vector(m, "norm.scale", &m->norm)) != MIND4_SUCCESS) return st;
    char name[M4_MAX_NAME];
#define NAME(fmt) (snprintf(name, sizeof name, "block.%u." fmt, l), name)
    for (unsigned l = 0; l < c->num_hidden_layers; l++) {
        m4_layer* L = &m->layers[l];
        if ((st = load_vector(m, NAME("attn.norm.scale"), &L->attn_norm))) return st;
        if ((st = load_matrix(m, NAME("attn.qkv.weight"), want, (nq + 2 * nkv) * D, H, &L->qkv, &got))) return st;
        if (l == 0) m->dense_dtype = got;
        if ((st = load_vector(m, NAME("attn.qkv.bias"), &L->qkv_bias))) return st;
        if ((st = load_vector(m, NAME("attn.sinks"), &L->sinks))) return st;
        if ((st = load_matrix(m, NAME("attn.out.weight"), want, H, nq * D, &L->out, &got))) return st;
        if ((st = load_vector(m, NAME("attn.out.bias"), &L->out_bias))) return st;
        if ((st = load_vector(m, NAME("mlp.norm.scale"), &L->mlp_norm))) return st;
        if ((st = load_matrix(m, NAME("mlp.gate.weight"), want, E, H, &L->gate, &got))) return st;
        if ((st = load_vector(m, NAME("mlp.gate.bias"), &L->gate_bias))) return st;
        if ((st = load_matrix(m, NAME("mlp.mlp1_weight"), want, E * 2 * I, H, &L->mlp1, &got))) return st;
        if (l == 0) m->expert_dtype = got;
        if ((st = load_vector(m, NAME("mlp.mlp1_bias"), &L->mlp1_bias))) return st;
        if ((st = load_matrix(m, NAME("mlp.mlp2_weight"), want, E * H, I, &L->mlp2, &got))) return st;
        if ((st = load_vector(m, NAME("mlp.mlp2_bias"), &L->mlp2_bias))) return st;
        L->window = (l % 2 == 0) ? c->sliding_window : 0;
    }
#undef NAME
    /* experts and the unembedding are read once per token; MIND4_STREAM=1
     * makes decode prefetch them with a non-temporal hint (meant to keep the
     * attention weights in the last-level cache). Off by default: on the
     * project's 2-core AMD machines it measured no faster (noisy) than the
     * hardware prefetcher alone. */
    const char* env = getenv("MIND4_STREAM");
    bool stream = env && strcmp(env, "1") == 0;
    m->unembedding.stream = stream;
    for (unsigned l = 0; l < c->num_hidden_layers; l++) {
        m->layers[l].mlp1.stream = stream;
        m->layers[l].mlp2.stream = stream;
    }
    m->weights_placement = MIND4_WEIGHTS_MAPPED;
    if (o->weights_placement > MIND4_WEIGHTS_COPIED) {
        return m4_fail(MIND4_INVALID_ARGUMENT, "weights_placement %u is not one of auto (0), mapped (1), copied (2)",
                       o->weights_placement);
    }
    bool copy = o->weights_placement == MIND4_WEIGHTS_COPIED;
    if (o->weights_placement == MIND4_WEIGHTS_AUTO) {
        uint64_t total = 0, per_token = 0, memory = m4_physical_memory();
        mind4_model_get_weight_bytes(m, &total, &per_token);
        copy = memory > 0 && total < memory / 4;
    }
    if (copy) {
        if ((st = copy_weights(m)) != MIND4_SUCCESS) return st;
        m->weights_placement = MIND4_WEIGHTS_COPIED;
    }
    m4_rope_init(D, c->rope_theta, c->rope_scaling_factor, c->rope_ntk_alpha, c->rope_ntk_beta,
                 (double)c->initial_context_length, m->rope_inv_freq, &m->rope_concentration);
    return m4_pool_create(o->num_threads, &m->pool);
}

static mind4_status finish(mind4_model* m, const mind4_model_options* options, mind4_model** model_out) {
    mind4_model_options defaults;
    if (!options) {
        mind4_model_options_init(&defaults);
        options = &defaults;
    }
    m->config = m->ckpt.config;
    mind4_status st = build(m, options);
    if (st != MIND4_SUCCESS) {
        model_free(m);
        return st;
    }
    m4_ref_init(&m->refs);
    *model_out = m;
    return MIND4_SUCCESS;
}

mind4_status mind4_model_create_from_path(const char* checkpoint_dir, const mind4_model_options* options,
                                          mind4_model** model_out) {
    m4_clear_error();
    if (!checkpoint_dir || !model_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_model_create_from_path: NULL argument");
    mind4_model* m = (mind4_model*)calloc(1, sizeof *m);
    if (!m) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory");
    mind4_status st = m4_checkpoint_open_path(checkpoint_dir, options ? options->config_json : NULL,
                                              options ? options->config_json_size : 0, &m->ckpt);
    if (st != MIND4_SUCCESS) {
        free(m);
        return st;
    }
    return finish(m, options, model_out);
}

mind4_status mind4_model_create_from_memory(const char* config_json, size_t config_json_size, const void* safetensors,
                                            size_t safetensors_size, const mind4_model_options* options,
                                            mind4_model** model_out) {
    m4_clear_error();
    if (!model_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_model_create_from_memory: model_out is NULL");
    mind4_model* m = (mind4_model*)calloc(1, sizeof *m);
    if (!m) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory");
    mind4_status st = m4_checkpoint_open_memory(config_json, config_json_size, safetensors, safetensors_size, &m->ckpt);
    if (st != MIND4_SUCCESS) {
        free(m);
        return st;
    }
    return finish(m, options, model_out);
}

mind4_status mind4_model_get_config(const mind4_model* model, mind4_model_config* config_out) {
    if (!model || !config_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_model_get_config: NULL argument");
    *config_out = model->config;
    return MIND4_SUCCESS;
}

mind4_status mind4_model_get_dtypes(const mind4_model* model, mind4_dtype* dense_out, mind4_dtype* experts_out) {
    if (!model) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_model_get_dtypes: model is NULL");
    if (dense_out) *dense_out = model->dense_dtype;
    if (experts_out) *experts_out = model->expert_dtype;
    return MIND4_SUCCESS;
}

mind4_status mind4_model_get_weights_placement(const mind4_model* model, uint32_t* placement_out) {
    if (!model || !placement_out) {
        return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_model_get_weights_placement: NULL argument");
    }
    *placement_out = model->weights_placement;
    return MIND4_SUCCESS;
}

mind4_status mind4_model_get_num_threads(const mind4_model* model, uint32_t* num_threads_out) {
    if (!model || !num_threads_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_model_get_num_threads: NULL argument");
    *num_threads_out = (uint32_t)m4_pool_size(model->pool);
    return MIND4_SUCCESS;
}

mind4_status mind4_model_get_weight_bytes(const mind4_model* model, uint64_t* total_out, uint64_t* per_token_out) {
    if (!model) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_model_get_weight_bytes: model is NULL");
    const mind4_model_config* c = &model->config;
    uint64_t dense = m4_matrix_bytes(&model->unembedding), experts_all = 0, experts_active = 0;
    uint64_t total = m4_matrix_bytes(&model->embedding) + dense;
    for (uint32_t l = 0; l < c->num_hidden_layers; l++) {
        const m4_layer* L = &model->layers[l];
        uint64_t d = m4_matrix_bytes(&L->qkv) + m4_matrix_bytes(&L->out) + m4_matrix_bytes(&L->gate);
        uint64_t e = m4_matrix_bytes(&L->mlp1) + m4_matrix_bytes(&L->mlp2);
        dense += d;
        total += d + e;
        experts_all += e;
        experts_active += e / c->num_experts * c->experts_per_token;
    }
    (void)experts_all;
    if (total_out) *total_out = total;
    if (per_token_out) *per_token_out = dense + experts_active + m4_matrix_bytes(&model->embedding) / c->vocab_size;
    return MIND4_SUCCESS;
}

mind4_status mind4_model_retain(mind4_model* model) {
    if (!model) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_model_retain: model is NULL");
    m4_ref_inc(&model->refs);
    return MIND4_SUCCESS;
}

mind4_status mind4_model_release(mind4_model* model) {
    if (model && m4_ref_dec(&model->refs) == 0) model_free(model);
    return MIND4_SUCCESS;
}
