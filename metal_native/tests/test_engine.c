/* test_engine.c - the whole engine against the float64 reference forward:
 * logits of random models (f32 / bf16 dense weights, f32 / bf16 / MXFP4
 * experts, aligned and unaligned data, 1-3 threads, every ISA), incremental
 * decode == full prefill, chunked prefill at an offset, reset with prefix
 * reuse, truncate, context overflow, sampling, NaN weights. */
#include "ckpt_builder.h"
#include "m4test.h"

static mind4_model* load(const cb_model* cb, uint32_t threads, mind4_dtype wdtype, uint32_t check_finite) {
    mind4_model_options o;
    mind4_model_options_init(&o);
    o.num_threads = threads;
    o.weights_placement = threads % 2 ? MIND4_WEIGHTS_MAPPED : MIND4_WEIGHTS_COPIED; /* both paths */
    o.weight_dtype = wdtype;
    o.check_finite = check_finite;
    mind4_model* m = NULL;
    mind4_status st = mind4_model_create_from_memory(cb->config_json, strlen(cb->config_json), cb->image,
                                                     cb->image_size, &o, &m);
    CHECK(st == MIND4_SUCCESS, "model load: %s: %s", mind4_status_string(st), mind4_last_error());
    uint32_t placement = 99;
    if (m) mind4_model_get_weights_placement(m, &placement);
    CHECK(!m || placement == o.weights_placement, "placement %u want %u", placement, o.weights_placement);
    return m;
}

static void random_tokens(uint32_t* t, size_t n, uint32_t V) {
    for (size_t i = 0; i < n; i++) t[i] = (uint32_t)rnd_int(0, V - 1);
}

static double rel_err_f(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static void test_model(const char* dense, const char* experts, size_t misalign, uint32_t threads) {
    mind4_model_config c = cb_default_config();
    c.num_key_value_heads = (uint32_t)rnd_int(1, 2) == 1 ? 1 : 2; /* MQA or GQA */
    c.rope_scaling_factor = rnd_int(0, 1) ? 1.0 : 8.0;
    cb_model cb;
    cb_random_model(&cb, &c, dense, experts, g_seed + threads, true);
    cb_build_image(&cb, misalign);
    mind4_model* m = load(&cb, threads, MIND4_DTYPE_AUTO, 1);
    if (!m) {
        cb_free(&cb);
        return;
    }
    size_t n = 13, V = c.vocab_size;
    uint32_t tokens[13];
    random_tokens(tokens, n, c.vocab_size);
    double* ref = dalloc(n * V);
    cb_reference_logits(&cb, tokens, n, ref);
    float* got = falloc(n * V);
    mind4_context* ctx = NULL;
    CHECK_OK(mind4_context_create(m, 64, &ctx));
    CHECK_OK(mind4_context_append_tokens(ctx, tokens, n));
    size_t rows = 0;
    CHECK_OK(mind4_context_process_all(ctx, got, n * V, &rows));
    CHECK(rows == n, "process_all wrote %zu rows", rows);
    double err = rel_err(got, ref, n * V);
    CHECK(err < 1e-4, "logits %s/%s misalign=%zu threads=%u kv=%u yarn=%g: rel err %.3g", dense, experts, misalign,
          threads, c.num_key_value_heads, c.rope_scaling_factor, err);
    /* incremental decode: one token at a time equals the full forward */
    mind4_context* inc = NULL;
    CHECK_OK(mind4_context_create(m, 64, &inc));
    float* last = falloc(V);
    double worst = 0.0;
    for (size_t t = 0; t < n; t++) {
        CHECK_OK(mind4_context_append_tokens(inc, &tokens[t], 1));
        CHECK_OK(mind4_context_process(inc));
        CHECK_OK(mind4_context_get_logits(inc, last, V));
        worst = fmax(worst, rel_err_f(last, got + t * V, V));
    }
    CHECK(worst < 1e-5, "incremental decode differs from prefill: %.3g", worst);
    /* chunked prefill at an offset */
    CHECK_OK(mind4_context_reset(inc, NULL, 0));
    CHECK_OK(mind4_context_append_tokens(inc, tokens, 4));
    CHECK_OK(mind4_context_process(inc));
    CHECK_OK(mind4_context_append_tokens(inc, tokens + 4, n - 4));
    float* tail = falloc((n - 4) * V);
    CHECK_OK(mind4_context_process_all(inc, tail, (n - 4) * V, &rows));
    CHECK(rel_err_f(tail, got + 4 * V, (n - 4) * V) < 1e-5, "chunked prefill differs");
    /* reset with prefix reuse: keep 7 tokens, change the rest */
    uint32_t other[13];
    memcpy(other, tokens, sizeof other);
    for (size_t i = 7; i < n; i++) other[i] = (tokens[i] + 1) % c.vocab_size;
    CHECK_OK(mind4_context_reset(inc, other, n));
    size_t processed = 99;
    CHECK_OK(mind4_context_get_num_processed(inc, &processed));
    CHECK(processed == 7, "reset kept %zu processed tokens, want 7", processed);
    CHECK_STATUS(mind4_context_get_logits(inc, last, V), MIND4_INVALID_ARGUMENT);
    CHECK_OK(mind4_context_process(inc));
    CHECK_OK(mind4_context_get_logits(inc, last, V));
    double* ref2 = dalloc(n * V);
    cb_reference_logits(&cb, other, n, ref2);
    CHECK(rel_err(last, ref2 + (n - 1) * V, V) < 1e-4, "logits after reset differ from the reference");
    /* reset to the same tokens reprocesses only the last one */
    CHECK_OK(mind4_context_reset(inc, other, n));
    CHECK_OK(mind4_context_get_num_processed(inc, &processed));
    CHECK(processed == n - 1, "reset to identical tokens kept %zu, want %zu", processed, n - 1);
    /* truncate alone: process recomputes the last kept token's logits */
    CHECK_OK(mind4_context_truncate(inc, 9));
    CHECK_STATUS(mind4_context_get_logits(inc, last, V), MIND4_INVALID_ARGUMENT);
    CHECK_OK(mind4_context_process(inc));
    CHECK_OK(mind4_context_get_logits(inc, last, V));
    CHECK(rel_err(last, ref2 + 8 * V, V) < 1e-4, "logits after truncate differ");
    /* truncate then continue */
    CHECK_OK(mind4_context_truncate(inc, 5));
    CHECK_OK(mind4_context_append_tokens(inc, tokens + 5, n - 5));
    CHECK_OK(mind4_context_process(inc));
    CHECK_OK(mind4_context_get_logits(inc, last, V));
    CHECK(rel_err_f(last, got + (n - 1) * V, V) < 1e-5, "truncate + append differs");
    /* greedy sampling = argmax of the reference */
    mind4_sampler* s = NULL;
    CHECK_OK(mind4_sampler_create(&s));
    CHECK_OK(mind4_sampler_set_params(s, 0.0f, 0, 1.0f));
    uint32_t tok = 0;
    CHECK_OK(mind4_context_sample(inc, s, &tok));
    size_t best = 0;
    for (size_t i = 1; i < V; i++) best = ref[(n - 1) * V + i] > ref[(n - 1) * V + best] ? i : best;
    CHECK(tok == best, "greedy token %u, reference argmax %zu", tok, best);
    mind4_sampler_release(s);
    free(tail), free(last), free(ref), free(ref2), free(got);
    mind4_context_release(inc);
    mind4_context_release(ctx);
    mind4_model_release(m);
    cb_free(&cb);
}

static void test_long_prompt(void) {
    /* more tokens than one 512-token chunk, window and full layers */
    mind4_model_config c = cb_default_config();
    c.max_context_length = 600;
    c.hidden_size = 32;
    c.num_hidden_layers = 2;
    c.sliding_window = 50;
    cb_model cb;
    cb_random_model(&cb, &c, "F32", "BF16", g_seed + 77, true);
    cb_build_image(&cb, 0);
    mind4_model* m = load(&cb, 2, MIND4_DTYPE_AUTO, 1);
    size_t n = 530, V = c.vocab_size;
    uint32_t* tokens = (uint32_t*)malloc(n * 4);
    random_tokens(tokens, n, c.vocab_size);
    double* ref = dalloc(n * V);
    cb_reference_logits(&cb, tokens, n, ref);
    float* got = falloc(n * V);
    mind4_context* ctx = NULL;
    CHECK_OK(mind4_context_create(m, 0, &ctx));
    size_t maxt = 0;
    CHECK_OK(mind4_context_get_max_tokens(ctx, &maxt));
    CHECK(maxt == 600, "default max_tokens %zu", maxt);
    CHECK_OK(mind4_context_append_tokens(ctx, tokens, n));
    size_t rows;
    CHECK_OK(mind4_context_process_all(ctx, got, n * V, &rows));
    double err = rel_err(got, ref, n * V);
    CHECK(err < 1e-4, "530-token prompt: rel err %.3g", err);
    free(tokens), free(ref), free(got);
    mind4_context_release(ctx);
    mind4_model_release(m);
    cb_free(&cb);
}

static void test_errors_and_options(void) {
    mind4_model_config c = cb_default_config();
    cb_model cb;
    cb_random_model(&cb, &c, "F32", "F32", g_seed + 5, true);
    cb_build_image(&cb, 0);
    mind4_model* m = load(&cb, 1, MIND4_DTYPE_AUTO, 1);
    mind4_context* ctx = NULL;
    CHECK_STATUS(mind4_context_create(m, c.max_context_length + 1, &ctx), MIND4_CONTEXT_OVERFLOW);
    CHECK_OK(mind4_context_create(m, 16, &ctx));
    uint32_t tokens[17] = {0};
    CHECK_STATUS(mind4_context_process(ctx), MIND4_INVALID_ARGUMENT); /* empty */
    CHECK_STATUS(mind4_context_append_tokens(ctx, tokens, 17), MIND4_CONTEXT_OVERFLOW);
    CHECK(strstr(mind4_last_error(), "exceed") != NULL, "overflow message: %s", mind4_last_error());
    size_t nt = 99;
    CHECK_OK(mind4_context_get_num_tokens(ctx, &nt));
    CHECK(nt == 0, "a failed append left %zu tokens", nt);
    tokens[3] = c.vocab_size;
    CHECK_STATUS(mind4_context_append_tokens(ctx, tokens, 4), MIND4_INVALID_ARGUMENT);
    CHECK(strstr(mind4_last_error(), "vocabulary") != NULL, "bad token message: %s", mind4_last_error());
    tokens[3] = 1;
    CHECK_OK(mind4_context_append_tokens(ctx, tokens, 16));
    CHECK_STATUS(mind4_context_append_tokens(ctx, tokens, 1), MIND4_CONTEXT_OVERFLOW);
    CHECK_STATUS(mind4_context_truncate(ctx, 17), MIND4_INVALID_ARGUMENT);
    float small[3];
    size_t rows;
    CHECK_STATUS(mind4_context_process_all(ctx, small, 3, &rows), MIND4_INVALID_ARGUMENT);
    CHECK_OK(mind4_context_process(ctx));
    uint32_t back[16];
    CHECK_OK(mind4_context_get_tokens(ctx, back, 16, &nt));
    CHECK(nt == 16 && memcmp(back, tokens, sizeof back) == 0, "get_tokens differs");
    mind4_context_release(ctx);
    /* weight dtype conversions: f32 file computed in bf16 stays close; */
    mind4_model* mb = load(&cb, 1, MIND4_DTYPE_BF16, 1);
    mind4_dtype dd, de;
    CHECK_OK(mind4_model_get_dtypes(mb, &dd, &de));
    CHECK(dd == MIND4_DTYPE_BF16 && de == MIND4_DTYPE_BF16, "converted dtypes %d %d", dd, de);
    uint32_t tk[6] = {1, 2, 3, 4, 5, 6};
    double* ref = dalloc(6 * c.vocab_size);
    cb_reference_logits(&cb, tk, 6, ref);
    float* got = falloc(6 * c.vocab_size);
    CHECK_OK(mind4_context_create(mb, 8, &ctx));
    CHECK_OK(mind4_context_append_tokens(ctx, tk, 6));
    CHECK_OK(mind4_context_process_all(ctx, got, 6 * c.vocab_size, &rows));
    double err = rel_err(got, ref, 6 * c.vocab_size);
    CHECK(err > 1e-6, "bf16-converted model equals the f32 one (rel err %.3g): not converted?", err);
    /* against the reference with every matrix rounded to bf16 (vectors stay f32,
     * as the conversion keeps them): as close as any f32-activation run; comparing
     * with the f32 reference instead fails now and then when rounding flips a
     * router choice */
    for (size_t i = 0; i < cb.n; i++) {
        size_t len = strlen(cb.t[i].name);
        const char* end = len > 7 ? cb.t[i].name + len - 7 : "";
        bool matrix = strcmp(end, "_weight") == 0 || strcmp(end, ".weight") == 0;
        if (matrix && cb.t[i].values) {
            for (uint64_t j = 0; j < cb.t[i].numel; j++) {
                cb.t[i].values[j] = m4_bf16_to_f32(m4_f32_to_bf16((float)cb.t[i].values[j]));
            }
        }
    }
    cb_reference_logits(&cb, tk, 6, ref);
    err = rel_err(got, ref, 6 * c.vocab_size);
    CHECK(err < 1e-4, "bf16-converted model vs the bf16-rounded reference: rel err %.3g", err);
    mind4_context_release(ctx);
    mind4_model_release(mb);
    uint64_t total = 0, per_token = 0;
    CHECK_OK(mind4_model_get_weight_bytes(m, &total, &per_token));
    CHECK(total > per_token && per_token > 0, "weight bytes %llu %llu", (unsigned long long)total,
          (unsigned long long)per_token);
    mind4_model_release(m);
    /* NaN weight: refused at load with check_finite, NaN logits -> sampling error without */
    for (size_t i = 0; i < cb.n; i++) {
        if (strcmp(cb.t[i].name, "block.1.attn.out.weight") == 0) {
            float nan = NAN;
            memcpy(cb.t[i].bytes + 4 * 7, &nan, 4);
        }
    }
    free(cb.image);
    cb_build_image(&cb, 0);
    mind4_model_options o;
    mind4_model_options_init(&o);
    mind4_model* bad = NULL;
    CHECK_STATUS(mind4_model_create_from_memory(cb.config_json, strlen(cb.config_json), cb.image, cb.image_size, &o, &bad),
                 MIND4_CORRUPT_FILE);
    CHECK(strstr(mind4_last_error(), "block.1.attn.out.weight") != NULL, "NaN message: %s", mind4_last_error());
    CHECK(bad == NULL, "model_out set on failure");
    o.check_finite = 0;
    CHECK_OK(mind4_model_create_from_memory(cb.config_json, strlen(cb.config_json), cb.image, cb.image_size, &o, &bad));
    CHECK_OK(mind4_context_create(bad, 8, &ctx));
    CHECK_OK(mind4_context_append_tokens(ctx, tk, 3));
    mind4_sampler* s = NULL;
    CHECK_OK(mind4_sampler_create(&s));
    uint32_t tok;
    CHECK_STATUS(mind4_context_sample(ctx, s, &tok), MIND4_INVALID_ARGUMENT);
    CHECK(strstr(mind4_last_error(), "NaN") != NULL, "NaN logits message: %s", mind4_last_error());
    mind4_sampler_release(s);
    mind4_context_release(ctx);
    mind4_model_release(bad);
    free(ref), free(got);
    cb_free(&cb);
}

/* Decode logits of n tokens, one at a time, with `threads` threads. */
static void decode_logits(const cb_model* cb, uint32_t threads, const uint32_t* tokens, size_t n, float* out) {
    mind4_model* m = load(cb, threads, MIND4_DTYPE_AUTO, 1);
    if (!m) return;
    mind4_context* ctx = NULL;
    CHECK_OK(mind4_context_create(m, 64, &ctx));
    size_t V = cb->cfg.vocab_size;
    for (size_t t = 0; t < n; t++) {
        CHECK_OK(mind4_context_append_tokens(ctx, &tokens[t], 1));
        CHECK_OK(mind4_context_process(ctx));
        CHECK_OK(mind4_context_get_logits(ctx, out + t * V, V));
    }
    mind4_context_release(ctx);
    mind4_model_release(m);
}

/* The one-task decode step (threads dividing the KV heads: 1, 2) computes
 * every element like the per-kernel path (3 threads, 2 KV heads): the logits
 * are bit-identical, past the sliding window and with experts of every dtype. */
static void test_decode_step_matches(const char* dense, const char* experts) {
    mind4_model_config c = cb_default_config();
    c.num_key_value_heads = 2;
    c.intermediate_size = 96; /* 2I = 192: chunks of the expert rows cross from one expert to the next */
    cb_model cb;
    cb_random_model(&cb, &c, dense, experts, g_seed + 11, true);
    cb_build_image(&cb, 0);
    size_t n = 12, V = c.vocab_size;
    uint32_t tokens[12];
    random_tokens(tokens, n, c.vocab_size);
    float* one = falloc(n * V);
    float* two = falloc(n * V);
    float* three = falloc(n * V);
    decode_logits(&cb, 1, tokens, n, one);
    decode_logits(&cb, 2, tokens, n, two);
    decode_logits(&cb, 3, tokens, n, three);
    CHECK(memcmp(one, three, n * V * sizeof(float)) == 0, "%s/%s: 1-thread decode step differs from the kernel path",
          dense, experts);
    CHECK(memcmp(two, three, n * V * sizeof(float)) == 0, "%s/%s: 2-thread decode step differs from the kernel path",
          dense, experts);
    free(one), free(two), free(three);
    cb_free(&cb);
}

int main(void) {
    test_init("test_engine");
    FOR_EACH_ISA(isa) {
        test_model("F32", "F32", 0, 1);
        test_model("BF16", "BF16", 0, 2);
        test_model("F32", "MXFP4", 0, 3);
        test_model("BF16", "MXFP4", 2, 2);
        test_model("F32", "BF16", 1, 2); /* unaligned f32: converted copy */
        test_decode_step_matches("F32", "F32");
        test_decode_step_matches("BF16", "BF16");
        test_decode_step_matches("BF16", "MXFP4");
    }
    test_long_prompt();
    test_errors_and_options();
    return test_finish("test_engine");
}
