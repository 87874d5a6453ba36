/* fuzz_checkpoint.c - libFuzzer target for the checkpoint reader: config.json
 * parser, safetensors header parser, validation against the config, model
 * construction, and a two-token forward pass on whatever loads.
 *
 * Input layout: 2 bytes little-endian config length L, L bytes of config.json,
 * the rest is a safetensors image. Every input must end in a status code:
 * sanitizers turn any out-of-bounds access, leak or UB into a crash. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mind4.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    size_t L = (size_t)data[0] | ((size_t)data[1] << 8);
    if (L > size - 2) L = size - 2;
    const char* config = (const char*)data + 2;
    const uint8_t* image = data + 2 + L;
    size_t image_size = size - 2 - L;
    mind4_model_options o;
    mind4_model_options_init(&o);
    o.num_threads = 1;
    o.check_finite = (size & 1) ? 1 : 0;
    mind4_model* model = NULL;
    mind4_status st = mind4_model_create_from_memory(config, L, image, image_size, &o, &model);
    if (st != MIND4_SUCCESS) {
        /* the error sentence must exist and be a terminated string */
        volatile size_t n = strlen(mind4_last_error());
        (void)n;
        return 0;
    }
    mind4_model_config c;
    mind4_model_get_config(model, &c);
    mind4_context* ctx = NULL;
    /* keep fuzzing fast: only tiny models run a forward pass */
    if ((uint64_t)c.hidden_size * c.vocab_size < (1u << 16) && c.num_hidden_layers <= 4 &&
        mind4_context_create(model, 4, &ctx) == MIND4_SUCCESS) {
        uint32_t tokens[2] = {0, (uint32_t)(size % c.vocab_size)};
        mind4_context_append_tokens(ctx, tokens, 2);
        mind4_context_process(ctx);
        mind4_sampler* s = NULL;
        if (mind4_sampler_create(&s) == MIND4_SUCCESS) {
            uint32_t tok;
            mind4_sampler_set_params(s, 0.8f, 3, 0.9f);
            mind4_context_sample(ctx, s, &tok);
            mind4_sampler_release(s);
        }
        mind4_context_release(ctx);
    }
    mind4_model_release(model);
    return 0;
}
