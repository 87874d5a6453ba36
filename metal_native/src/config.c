/* config.c - config.json -> mind4_model_config, every field checked.
 *
 * Model fields follow mind4_core.config.ModelConfig (same names, same
 * defaults). Other keys (runtime choices such as "backend", the "sampling" and
 * "logging" sections, "tokenizer", ...) belong to the Python side and are
 * ignored here. Limits keep every size computation far from overflow. */
#include <math.h>

#include "checkpoint.h"

typedef struct int_field {
    const char* name;
    size_t offset;
    bool required;
    uint32_t default_value;
    uint32_t min, max;
} int_field;

typedef struct float_field {
    const char* name;
    size_t offset;
    double default_value;
} float_field;

#define OFF(f) offsetof(mind4_model_config, f)

static const int_field k_int_fields[] = {
    {"vocab_size", OFF(vocab_size), true, 0, 1, 1u << 24},
    {"hidden_size", OFF(hidden_size), true, 0, 1, 1u << 16},
    {"num_hidden_layers", OFF(num_hidden_layers), true, 0, 1, 1024},
    {"num_attention_heads", OFF(num_attention_heads), true, 0, 1, 1024},
    {"num_key_value_heads", OFF(num_key_value_heads), true, 0, 1, 1024},
    {"head_dim", OFF(head_dim), true, 0, 2, 1024},
    {"intermediate_size", OFF(intermediate_size), true, 0, 1, 1u << 18},
    {"num_experts", OFF(num_experts), true, 0, 1, 4096},
    {"experts_per_token", OFF(experts_per_token), true, 0, 1, 64},
    {"initial_context_length", OFF(initial_context_length), false, 4096, 1, 1u << 24},
    {"max_context_length", OFF(max_context_length), false, 4096, 1, 1u << 24},
    {"sliding_window", OFF(sliding_window), false, 128, 0, 1u << 24},
};

static const float_field k_float_fields[] = {
    {"rope_theta", OFF(rope_theta), 150000.0},     {"rope_scaling_factor", OFF(rope_scaling_factor), 1.0},
    {"rope_ntk_alpha", OFF(rope_ntk_alpha), 1.0},  {"rope_ntk_beta", OFF(rope_ntk_beta), 32.0},
    {"swiglu_limit", OFF(swiglu_limit), 7.0},      {"rms_norm_eps", OFF(rms_norm_eps), 1e-5},
};

mind4_status m4_config_parse(const char* text, size_t size, const char* what, mind4_model_config* out) {
    m4j_document doc;
    mind4_status st = m4j_parse(text, size, what, &doc);
    if (st != MIND4_SUCCESS) return st;
    mind4_model_config c;
    memset(&c, 0, sizeof c);
    const m4j_value* root = &doc.root;
    if (root->type != M4J_OBJECT) {
        st = m4_fail(MIND4_CORRUPT_FILE, "%s: expected a JSON object", what);
        goto done;
    }
    for (size_t i = 0; i < sizeof k_int_fields / sizeof k_int_fields[0]; i++) {
        const int_field* f = &k_int_fields[i];
        const m4j_value* v = m4j_get(root, f->name);
        uint32_t* dst = (uint32_t*)((char*)&c + f->offset);
        if (!v) {
            if (f->required) {
                st = m4_fail(MIND4_CONFIG_MISMATCH,
                             "%s: missing field \"%s\" (only the canonical gpt-oss config.json is read natively; "
                             "convert other layouts with `mind4 convert`)",
                             what, f->name);
                goto done;
            }
            *dst = f->default_value;
            continue;
        }
        if (v->type != M4J_NUMBER || !v->is_integer || v->integer < (int64_t)f->min || v->integer > (int64_t)f->max) {
            st = m4_fail(MIND4_CONFIG_MISMATCH, "%s: field \"%s\" must be an integer in [%u, %u]", what, f->name, f->min,
                         f->max);
            goto done;
        }
        *dst = (uint32_t)v->integer;
    }
    for (size_t i = 0; i < sizeof k_float_fields / sizeof k_float_fields[0]; i++) {
        const float_field* f = &k_float_fields[i];
        const m4j_value* v = m4j_get(root, f->name);
        double* dst = (double*)((char*)&c + f->offset);
        if (!v) {
            *dst = f->default_value;
            continue;
        }
        if (v->type != M4J_NUMBER || !isfinite(v->number) || !(v->number > 0) || v->number > 1e30) {
            st = m4_fail(MIND4_CONFIG_MISMATCH, "%s: field \"%s\" must be a finite number > 0", what, f->name);
            goto done;
        }
        *dst = v->number;
    }
    if (!m4j_get(root, "max_context_length") && m4j_get(root, "initial_context_length")) {
        /* as mind4_core: the YaRN-extended context, int(initial * factor) */
        double extended = (double)c.initial_context_length * c.rope_scaling_factor;
        if (extended > (double)(1u << 24)) {
            st = m4_fail(MIND4_CONFIG_MISMATCH, "%s: initial_context_length * rope_scaling_factor exceeds %u", what,
                         1u << 24);
            goto done;
        }
        c.max_context_length = extended >= 1.0 ? (uint32_t)extended : 1;
    }
    if (c.num_attention_heads % c.num_key_value_heads != 0) {
        st = m4_fail(MIND4_CONFIG_MISMATCH, "%s: num_key_value_heads (%u) must divide num_attention_heads (%u)", what,
                     c.num_key_value_heads, c.num_attention_heads);
        goto done;
    }
    if (c.experts_per_token > c.num_experts) {
        st = m4_fail(MIND4_CONFIG_MISMATCH, "%s: experts_per_token (%u) must be <= num_experts (%u)", what,
                     c.experts_per_token, c.num_experts);
        goto done;
    }
    if (c.head_dim % 2 != 0) {
        st = m4_fail(MIND4_CONFIG_MISMATCH, "%s: head_dim (%u) must be even (RoPE rotates pairs)", what, c.head_dim);
        goto done;
    }
    if ((uint64_t)c.head_dim * (c.num_attention_heads + 2ull * c.num_key_value_heads) > (1u << 20)) {
        st = m4_fail(MIND4_CONFIG_MISMATCH, "%s: head_dim * (heads + 2 * kv heads) is absurdly large", what);
        goto done;
    }
    *out = c;
done:
    m4j_free(&doc);
    return st;
}
