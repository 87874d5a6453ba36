/* sampler.c - mind4_sampler: temperature / top-k / top-p over logits with a
 * seeded xoshiro256** stream. */
#include <math.h>
#include <stdlib.h>

#include "engine.h"

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

mind4_status mind4_sampler_create(mind4_sampler** sampler_out) {
    m4_clear_error();
    if (!sampler_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_sampler_create: sampler_out is NULL");
    mind4_sampler* s = (mind4_sampler*)calloc(1, sizeof *s);
    if (!s) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory creating a sampler");
    s->temperature = 1.0f;
    s->top_k = 0;
    s->top_p = 1.0f;
    mind4_sampler_set_seed(s, 0);
    m4_ref_init(&s->refs);
    *sampler_out = s;
    return MIND4_SUCCESS;
}

mind4_status mind4_sampler_set_params(mind4_sampler* s, float temperature, uint32_t top_k, float top_p) {
    if (!s) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_sampler_set_params: sampler is NULL");
    if (!(temperature >= 0.0f) || isinf(temperature)) {
        return m4_fail(MIND4_INVALID_ARGUMENT, "temperature must be a finite number >= 0 (0 = greedy), got %g",
                       (double)temperature);
    }
    if (!(top_p > 0.0f && top_p <= 1.0f)) {
        return m4_fail(MIND4_INVALID_ARGUMENT, "top_p must be in (0, 1] (1 = off), got %g", (double)top_p);
    }
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    return MIND4_SUCCESS;
}

mind4_status mind4_sampler_get_params(const mind4_sampler* s, float* temperature_out, uint32_t* top_k_out,
                                      float* top_p_out) {
    if (!s) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_sampler_get_params: sampler is NULL");
    if (temperature_out) *temperature_out = s->temperature;
    if (top_k_out) *top_k_out = s->top_k;
    if (top_p_out) *top_p_out = s->top_p;
    return MIND4_SUCCESS;
}

mind4_status mind4_sampler_set_seed(mind4_sampler* s, uint64_t seed) {
    if (!s) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_sampler_set_seed: sampler is NULL");
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        x = m4_splitmix64(x);
        s->state[i] = x;
    }
    return MIND4_SUCCESS;
}

static mind4_status ensure_work(mind4_sampler* s, size_t V) {
    if (s->work_capacity >= V) return MIND4_SUCCESS;
    m4_sample_entry* w = (m4_sample_entry*)m4_calloc(V, sizeof *w);
    if (!w) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory sampling over %zu tokens", V);
    m4_free(s->work);
    s->work = w;
    s->work_capacity = V;
    return MIND4_SUCCESS;
}

mind4_status mind4_sampler_sample(mind4_sampler* s, const float* logits, size_t V, uint32_t* token_out) {
    if (!s || !logits || !token_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_sampler_sample: NULL argument");
    if (V == 0 || V > UINT32_MAX) return m4_fail(MIND4_INVALID_ARGUMENT, "vocab_size %zu is out of range", V);
    mind4_status st = ensure_work(s, V);
    if (st != MIND4_SUCCESS) return st;
    double u = (double)(next_u64(s->state) >> 11) * (1.0 / 9007199254740992.0);
    if (!m4_sample_draw(logits, V, s->temperature, s->top_k, s->top_p, u, token_out, s->work)) {
        return m4_fail(MIND4_INVALID_ARGUMENT,
                       "the logits contain NaN (NaN weights or inputs in the model?); cannot sample");
    }
    return MIND4_SUCCESS;
}

mind4_status mind4_sampler_probabilities(const mind4_sampler* s, const float* logits, size_t V, float* probs_out) {
    if (!s || !logits || !probs_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_sampler_probabilities: NULL argument");
    if (V == 0 || V > UINT32_MAX) return m4_fail(MIND4_INVALID_ARGUMENT, "vocab_size %zu is out of range", V);
    m4_sample_entry* work = (m4_sample_entry*)m4_calloc(V, sizeof *work);
    if (!work) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory over %zu tokens", V);
    bool ok = m4_sample_distribution(logits, V, s->temperature, s->top_k, s->top_p, probs_out, work);
    m4_free(work);
    if (!ok) return m4_fail(MIND4_INVALID_ARGUMENT, "the logits contain NaN; no distribution");
    return MIND4_SUCCESS;
}

mind4_status mind4_sampler_retain(mind4_sampler* s) {
    if (!s) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_sampler_retain: sampler is NULL");
    m4_ref_inc(&s->refs);
    return MIND4_SUCCESS;
}

mind4_status mind4_sampler_release(mind4_sampler* s) {
    if (s && m4_ref_dec(&s->refs) == 0) {
        m4_free(s->work);
        free(s);
    }
    return MIND4_SUCCESS;
}
