/* ckpt_builder.h - random canonical gpt-oss checkpoints built in memory for
 * tests, fuzz seeds and benchmarks, and a float64 reference forward pass
 * written from REFERENCE.md (plain loops, no library kernels). */
#ifndef CKPT_BUILDER_H
#define CKPT_BUILDER_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels.h"
#include "mind4.h"

typedef struct cb_tensor {
    char name[128];
    const char* dtype; /* "F32", "BF16", "F16", "U8" */
    int ndim;
    uint64_t shape[4];
    unsigned char* bytes;
    size_t nbytes;
    double* values; /* decoded logical values (NULL when not kept); MXFP4: on the .blocks entry */
    uint64_t numel; /* logical element count of values */
} cb_tensor;

typedef struct cb_model {
    mind4_model_config cfg;
    cb_tensor* t;
    size_t n, cap;
    unsigned char* image;
    size_t image_size;
    char config_json[4096];
} cb_model;

static inline mind4_model_config cb_default_config(void) {
    mind4_model_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 97;
    c.hidden_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.intermediate_size = 32;
    c.num_experts = 4;
    c.experts_per_token = 2;
    c.initial_context_length = 64;
    c.max_context_length = 256;
    c.sliding_window = 5;
    c.rope_theta = 10000.0;
    c.rope_scaling_factor = 4.0;
    c.rope_ntk_alpha = 1.0;
    c.rope_ntk_beta = 32.0;
    c.swiglu_limit = 7.0;
    c.rms_norm_eps = 1e-5;
    return c;
}

static inline void cb_write_config_json(const mind4_model_config* c, char* buf, size_t size) {
    snprintf(buf, size,
             "{\"vocab_size\": %u, \"hidden_size\": %u, \"num_hidden_layers\": %u, \"num_attention_heads\": %u, "
             "\"num_key_value_heads\": %u, \"head_dim\": %u, \"intermediate_size\": %u, \"num_experts\": %u, "
             "\"experts_per_token\": %u, \"initial_context_length\": %u, \"max_context_length\": %u, "
             "\"sliding_window\": %u, \"rope_theta\": %.17g, \"rope_scaling_factor\": %.17g, \"rope_ntk_alpha\": "
             "%.17g, \"rope_ntk_beta\": %.17g, \"swiglu_limit\": %.17g, \"rms_norm_eps\": %.17g, \"backend\": \"metal\", "
             "\"sampling\": {\"temperature\": 0.7}}",
             c->vocab_size, c->hidden_size, c->num_hidden_layers, c->num_attention_heads, c->num_key_value_heads,
             c->head_dim, c->intermediate_size, c->num_experts, c->experts_per_token, c->initial_context_length,
             c->max_context_length, c->sliding_window, c->rope_theta, c->rope_scaling_factor, c->rope_ntk_alpha,
             c->rope_ntk_beta, c->swiglu_limit, c->rms_norm_eps);
}

static inline cb_tensor* cb_new(cb_model* m, const char* name, const char* dtype, int ndim, uint64_t a, uint64_t b,
                                uint64_t c, uint64_t d) {
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->t = (cb_tensor*)realloc(m->t, m->cap * sizeof *m->t);
    }
    cb_tensor* t = &m->t[m->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape[0] = a, t->shape[1] = b, t->shape[2] = c, t->shape[3] = d;
    return t;
}

/* A float tensor of random values: uniform with the given mean and std
 * (uniform is ~10x faster to draw than normal for the 64M benchmark model). */
static inline void cb_add_float(cb_model* m, const char* name, const char* dtype, int ndim, uint64_t a, uint64_t b,
                                uint64_t c, double mean, double std, uint64_t seed, bool keep) {
    cb_tensor* t = cb_new(m, name, dtype, ndim, a, b, c, 0);
    uint64_t numel = a * (ndim > 1 ? b : 1) * (ndim > 2 ? c : 1);
    size_t elem = strcmp(dtype, "F32") == 0 ? 4 : 2;
    t->numel = numel;
    t->nbytes = (size_t)numel * elem;
    t->bytes = (unsigned char*)malloc(t->nbytes ? t->nbytes : 1);
    float* f = (float*)malloc((size_t)numel * sizeof(float) + 4);
    double half = std * 1.7320508075688772; /* uniform [mean - a, mean + a] has std a / sqrt(3) */
    m4_fill_uniform(f, (size_t)numel, seed, (float)(mean - half), (float)(mean + half));
    if (keep) t->values = (double*)malloc((size_t)numel * sizeof(double) + 8);
    for (uint64_t i = 0; i < numel; i++) {
        double v;
        if (elem == 4) {
            memcpy(t->bytes + 4 * i, &f[i], 4);
            v = f[i];
        } else if (strcmp(dtype, "BF16") == 0) {
            uint16_t h = m4_f32_to_bf16(f[i]);
            memcpy(t->bytes + 2 * i, &h, 2);
            v = m4_bf16_to_f32(h);
        } else { /* F16: only small exact values are used in tests */
            float r = roundf(f[i] * 64.0f) / 64.0f;
            if (r > 8.0f) r = 8.0f;
            if (r < -8.0f) r = -8.0f;
            /* encode r (a multiple of 2^-6 in [-8, 8]) as f16 */
            uint16_t h = 0;
            if (r != 0.0f) {
                int e;
                double mant = frexp(fabs((double)r), &e); /* r = mant * 2^e, mant in [0.5, 1) */
                int exp16 = e - 1 + 15;
                uint16_t frac = (uint16_t)((mant * 2.0 - 1.0) * 1024.0 + 0.5);
                h = (uint16_t)((r < 0 ? 0x8000 : 0) | (exp16 << 10) | frac);
            }
            memcpy(t->bytes + 2 * i, &h, 2);
            v = r;
        }
        if (keep) t->values[i] = v;
    }
    free(f);
}

/* An expert weight [E, rows, cols] in MXFP4 (.blocks + .scales). */
static inline void cb_add_mxfp4(cb_model* m, const char* name, uint64_t E, uint64_t rows, uint64_t cols, double std,
                                uint64_t seed, bool keep) {
    char bname[128], sname[128];
    snprintf(bname, sizeof bname, "%.100s.blocks", name);
    snprintf(sname, sizeof sname, "%.100s.scales", name);
    size_t n = (size_t)(E * rows * cols);
    float* f = (float*)malloc(n * sizeof(float));
    m4_fill_uniform(f, n, seed, (float)(-std * 1.7320508075688772), (float)(std * 1.7320508075688772));
    cb_tensor* b = cb_new(m, bname, "U8", 4, E, rows, cols / 32, 16);
    b->nbytes = n / 2;
    b->bytes = (unsigned char*)malloc(n / 2);
    uint8_t* scales = (uint8_t*)malloc(n / 32);
    m4_mxfp4_encode(f, (size_t)(E * rows), (size_t)cols, b->bytes, scales);
    b->numel = n;
    if (keep) {
        b->values = (double*)malloc(n * sizeof(double));
        for (size_t i = 0; i < n; i++) {
            uint8_t byte = b->bytes[i / 2];
            uint8_t code = i % 2 == 0 ? (byte & 15) : (byte >> 4);
            b->values[i] = (double)m4_fp4_values[code] * ldexp(1.0, (int)scales[i / 32] - 127);
        }
    }
    cb_tensor* s = cb_new(m, sname, "U8", 3, E, rows, cols / 32, 0);
    s->nbytes = n / 32;
    s->bytes = scales;
    free(f);
}

/* Random canonical model. dense/experts: "F32" or "BF16" (experts also "MXFP4"). */
static inline void cb_random_model(cb_model* m, const mind4_model_config* c, const char* dense, const char* experts,
                                   uint64_t seed, bool keep) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    cb_write_config_json(c, m->config_json, sizeof m->config_json);
    uint64_t H = c->hidden_size, V = c->vocab_size, D = c->head_dim, nq = c->num_attention_heads;
    uint64_t nkv = c->num_key_value_heads, E = c->num_experts, I = c->intermediate_size;
    uint64_t s = seed * 1000;
    char name[128];
    cb_add_float(m, "embedding.weight", dense, 2, V, H, 0, 0.0, 1.0, s++, keep);
    for (unsigned l = 0; l < c->num_hidden_layers; l++) {
#define N(x) (snprintf(name, sizeof name, "block.%u." x, l), name)
        cb_add_float(m, N("attn.norm.scale"), "F32", 1, H, 0, 0, 1.0, 0.1, s++, keep);
        cb_add_float(m, N("attn.qkv.weight"), dense, 2, (nq + 2 * nkv) * D, H, 0, 0.0, 1.0 / sqrt((double)H), s++, keep);
        cb_add_float(m, N("attn.qkv.bias"), dense, 1, (nq + 2 * nkv) * D, 0, 0, 0.0, 0.1, s++, keep);
        cb_add_float(m, N("attn.sinks"), dense, 1, nq, 0, 0, 0.0, 1.0, s++, keep);
        cb_add_float(m, N("attn.out.weight"), dense, 2, H, nq * D, 0, 0.0, 1.0 / sqrt((double)(nq * D)), s++, keep);
        cb_add_float(m, N("attn.out.bias"), dense, 1, H, 0, 0, 0.0, 0.1, s++, keep);
        cb_add_float(m, N("mlp.norm.scale"), "F32", 1, H, 0, 0, 1.0, 0.1, s++, keep);
        cb_add_float(m, N("mlp.gate.weight"), dense, 2, E, H, 0, 0.0, 1.0 / sqrt((double)H), s++, keep);
        cb_add_float(m, N("mlp.gate.bias"), dense, 1, E, 0, 0, 0.0, 0.1, s++, keep);
        if (strcmp(experts, "MXFP4") == 0) {
            cb_add_mxfp4(m, N("mlp.mlp1_weight"), E, 2 * I, H, 1.0 / sqrt((double)H), s++, keep);
        } else {
            cb_add_float(m, N("mlp.mlp1_weight"), experts, 3, E, 2 * I, H, 0.0, 1.0 / sqrt((double)H), s++, keep);
        }
        cb_add_float(m, N("mlp.mlp1_bias"), dense, 2, E, 2 * I, 0, 0.0, 0.1, s++, keep);
        if (strcmp(experts, "MXFP4") == 0) {
            cb_add_mxfp4(m, N("mlp.mlp2_weight"), E, H, I, 1.0 / sqrt((double)I), s++, keep);
        } else {
            cb_add_float(m, N("mlp.mlp2_weight"), experts, 3, E, H, I, 0.0, 1.0 / sqrt((double)I), s++, keep);
        }
        cb_add_float(m, N("mlp.mlp2_bias"), dense, 2, E, H, 0, 0.0, 0.1, s++, keep);
#undef N
    }
    cb_add_float(m, "norm.scale", "F32", 1, H, 0, 0, 1.0, 0.1, s++, keep);
    cb_add_float(m, "unembedding.weight", dense, 2, V, H, 0, 0.0, 1.0 / sqrt((double)H), s++, keep);
}

/* Serialise to a safetensors image: header padded with spaces to a multiple
 * of 8 (+ `misalign` extra bytes to test unaligned data), tensors in order. */
static inline void cb_build_image(cb_model* m, size_t misalign) {
    size_t cap = 256 + m->n * 256, w = 0;
    char* header = (char*)malloc(cap);
    w += (size_t)snprintf(header + w, cap - w, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t offset = 0;
    for (size_t i = 0; i < m->n; i++) {
        cb_tensor* t = &m->t[i];
        w += (size_t)snprintf(header + w, cap - w, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            w += (size_t)snprintf(header + w, cap - w, d ? ",%llu" : "%llu", (unsigned long long)t->shape[d]);
        }
        w += (size_t)snprintf(header + w, cap - w, "],\"data_offsets\":[%zu,%zu]}", offset, offset + t->nbytes);
        offset += t->nbytes;
    }
    w += (size_t)snprintf(header + w, cap - w, "}");
    size_t hlen = w;
    while ((8 + hlen) % 8 != 0) header[hlen++] = ' ';
    hlen += misalign;
    for (size_t i = w; i < hlen; i++) header[i] = ' ';
    m->image_size = 8 + hlen + offset;
    m->image = (unsigned char*)malloc(m->image_size);
    for (int i = 0; i < 8; i++) m->image[i] = (unsigned char)(((uint64_t)hlen >> (8 * i)) & 0xff);
    memcpy(m->image + 8, header, hlen);
    size_t pos = 8 + hlen;
    for (size_t i = 0; i < m->n; i++) {
        memcpy(m->image + pos, m->t[i].bytes, m->t[i].nbytes);
        pos += m->t[i].nbytes;
    }
    free(header);
}

static inline void cb_free(cb_model* m) {
    for (size_t i = 0; i < m->n; i++) {
        free(m->t[i].bytes);
        free(m->t[i].values);
    }
    free(m->t);
    free(m->image);
    memset(m, 0, sizeof *m);
}

static inline const double* cb_values(const cb_model* m, const char* name) {
    char blocks[160];
    snprintf(blocks, sizeof blocks, "%s.blocks", name);
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->t[i].name, name) == 0 || strcmp(m->t[i].name, blocks) == 0) return m->t[i].values;
    }
    fprintf(stderr, "ckpt_builder: no tensor %s\n", name);
    exit(2);
}

static inline int cb_write_dir(const cb_model* m, const char* dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE* f = fopen(path, "wb");
    if (!f) return -1;
    fputs(m->config_json, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    if (!f) return -1;
    size_t wrote = fwrite(m->image, 1, m->image_size, f);
    fclose(f);
    return wrote == m->image_size ? 0 : -1;
}

/* ------------------------------------------------- float64 reference */
static inline void ref_rmsnorm(const double* x, const double* s, double eps, size_t H, double* y) {
    double ss = 0.0;
    for (size_t i = 0; i < H; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / (double)H + eps);
    for (size_t i = 0; i < H; i++) y[i] = x[i] * r * s[i];
}

static inline void ref_linear(const double* w, const double* b, const double* x, size_t N, size_t K, double* y) {
    for (size_t r = 0; r < N; r++) {
        double s = b ? b[r] : 0.0;
        for (size_t k = 0; k < K; k++) s += w[r * K + k] * x[k];
        y[r] = s;
    }
}

/* logits [n, V] of a full causal forward over tokens[0..n) */
static inline void cb_reference_logits(const cb_model* m, const uint32_t* tokens, size_t n, double* logits) {
    const mind4_model_config* c = &m->cfg;
    size_t H = c->hidden_size, V = c->vocab_size, D = c->head_dim, nq = c->num_attention_heads;
    size_t nkv = c->num_key_value_heads, E = c->num_experts, K = c->experts_per_token, I = c->intermediate_size;
    size_t QKV = (nq + 2 * nkv) * D;
    double* x = (double*)calloc(n * H, sizeof(double));
    double* xn = (double*)calloc(H, sizeof(double));
    double* qkv = (double*)calloc(n * QKV, sizeof(double));
    double* att = (double*)calloc(nq * D, sizeof(double));
    double* tmp = (double*)calloc(H + 2 * I + E, sizeof(double));
    double* h1 = (double*)calloc(2 * I, sizeof(double));
    double* a = (double*)calloc(I, sizeof(double));
    double* w = (double*)calloc(n + 1, sizeof(double));
    const double* emb = cb_values(m, "embedding.weight");
    for (size_t t = 0; t < n; t++) memcpy(x + t * H, emb + tokens[t] * H, H * sizeof(double));
    /* RoPE / YaRN */
    double half = (double)(D / 2), pi = 3.141592653589793, f = c->rope_scaling_factor, theta = c->rope_theta;
    double L0 = (double)c->initial_context_length;
    double low = half * log(L0 / (c->rope_ntk_beta * 2 * pi)) / log(theta);
    double high = half * log(L0 / (c->rope_ntk_alpha * 2 * pi)) / log(theta);
    low = fmax(low, 0.0);
    high = fmin(high, (double)D - 1);
    double conc = f > 1 ? 0.1 * log(f) + 1.0 : 1.0;
    double inv[1024];
    for (size_t i = 0; i < D / 2; i++) {
        double freq = pow(theta, 2.0 * (double)i / (double)D);
        double ramp = f > 1 ? fmin(fmax(((double)i - low) / (high - low), 0.0), 1.0) : 0.0;
        inv[i] = f > 1 ? (1 / (f * freq)) * ramp + (1 / freq) * (1 - ramp) : 1 / freq;
    }
    char name[128];
    for (unsigned l = 0; l < c->num_hidden_layers; l++) {
#define W(x) cb_values(m, (snprintf(name, sizeof name, "block.%u." x, l), name))
        size_t window = (l % 2 == 0) ? c->sliding_window : 0;
        for (size_t t = 0; t < n; t++) {
            ref_rmsnorm(x + t * H, W("attn.norm.scale"), c->rms_norm_eps, H, xn);
            ref_linear(W("attn.qkv.weight"), W("attn.qkv.bias"), xn, QKV, H, qkv + t * QKV);
            for (size_t hd = 0; hd < nq + nkv; hd++) {
                double* v = qkv + t * QKV + hd * D;
                for (size_t i = 0; i < D / 2; i++) {
                    double ang = (double)t * inv[i], x1 = v[i], x2 = v[i + D / 2];
                    v[i] = (x1 * cos(ang) - x2 * sin(ang)) * conc;
                    v[i + D / 2] = (x2 * cos(ang) + x1 * sin(ang)) * conc;
                }
            }
        }
        const double* sinks = W("attn.sinks");
        for (size_t t = 0; t < n; t++) {
            for (size_t h = 0; h < nq; h++) {
                size_t g = h / (nq / nkv);
                double mx = sinks[h];
                for (size_t s = 0; s <= t; s++) {
                    if (window && t - s >= window) continue;
                    double d = 0.0;
                    for (size_t i = 0; i < D; i++) d += qkv[t * QKV + h * D + i] * qkv[s * QKV + nq * D + g * D + i];
                    w[s] = d / sqrt((double)D);
                    mx = fmax(mx, w[s]);
                }
                double den = exp(sinks[h] - mx);
                for (size_t s = 0; s <= t; s++) {
                    if (!(window && t - s >= window)) den += exp(w[s] - mx);
                }
                for (size_t i = 0; i < D; i++) {
                    double acc = 0.0;
                    for (size_t s = 0; s <= t; s++) {
                        if (window && t - s >= window) continue;
                        acc += exp(w[s] - mx) / den * qkv[s * QKV + (nq + nkv) * D + g * D + i];
                    }
                    att[h * D + i] = acc;
                }
            }
            ref_linear(W("attn.out.weight"), W("attn.out.bias"), att, H, nq * D, tmp);
            for (size_t i = 0; i < H; i++) x[t * H + i] += tmp[i];
        }
        for (size_t t = 0; t < n; t++) {
            ref_rmsnorm(x + t * H, W("mlp.norm.scale"), c->rms_norm_eps, H, xn);
            double gl[4096];
            ref_linear(W("mlp.gate.weight"), W("mlp.gate.bias"), xn, E, H, gl);
            bool used[4096] = {false};
            size_t pick[64];
            for (size_t j = 0; j < K; j++) {
                size_t best = E;
                for (size_t e = 0; e < E; e++) {
                    if (!used[e] && (best == E || gl[e] > gl[best])) best = e;
                }
                used[best] = true;
                pick[j] = best;
            }
            double den = 0.0, gw[64];
            for (size_t j = 0; j < K; j++) den += exp(gl[pick[j]] - gl[pick[0]]);
            for (size_t j = 0; j < K; j++) gw[j] = exp(gl[pick[j]] - gl[pick[0]]) / den;
            for (size_t j = 0; j < K; j++) {
                size_t e = pick[j];
                ref_linear(W("mlp.mlp1_weight") + e * 2 * I * H, W("mlp.mlp1_bias") + e * 2 * I, xn, 2 * I, H, h1);
                for (size_t i = 0; i < I; i++) {
                    double glu = fmin(h1[2 * i], c->swiglu_limit);
                    double lin = fmin(fmax(h1[2 * i + 1], -c->swiglu_limit), c->swiglu_limit);
                    a[i] = glu / (1.0 + exp(-1.702 * glu)) * (lin + 1.0);
                }
                ref_linear(W("mlp.mlp2_weight") + e * H * I, W("mlp.mlp2_bias") + e * H, a, H, I, tmp);
                for (size_t i = 0; i < H; i++) x[t * H + i] += gw[j] * tmp[i];
            }
        }
#undef W
    }
    for (size_t t = 0; t < n; t++) {
        ref_rmsnorm(x + t * H, cb_values(m, "norm.scale"), c->rms_norm_eps, H, xn);
        ref_linear(cb_values(m, "unembedding.weight"), NULL, xn, V, H, logits + t * V);
    }
    free(x), free(xn), free(qkv), free(att), free(tmp), free(h1), free(a), free(w);
}

#endif
