/* test_api.c - the C API contract: every entry point refuses NULL and bad
 * arguments with a status and a sentence, status/dtype names exist, and
 * reference counting keeps a model alive while a context uses it. */
#include "ckpt_builder.h"
#include "m4test.h"

int main(void) {
    test_init("test_api");
    for (int s = 0; s <= 9; s++) {
        const char* name = mind4_status_string((mind4_status)s);
        CHECK(name && *name && strcmp(name, "unknown status") != 0, "status %d has no name", s);
    }
    CHECK(strcmp(mind4_status_string((mind4_status)1234), "unknown status") == 0, "unknown status name");
    CHECK(strcmp(mind4_dtype_string(MIND4_DTYPE_BF16), "bfloat16") == 0, "dtype name");
    CHECK(mind4_api_version() == MIND4_API_VERSION, "api version");
    mind4_model* m = NULL;
    CHECK_STATUS(mind4_model_create_from_path(NULL, NULL, &m), MIND4_INVALID_ARGUMENT);
    CHECK(*mind4_last_error() != '\0', "no error sentence");
    CHECK_STATUS(mind4_model_create_from_path("/tmp", NULL, NULL), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_model_create_from_memory(NULL, 5, NULL, 0, NULL, &m), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_model_options_init(NULL), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_model_get_config(NULL, NULL), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_model_retain(NULL), MIND4_INVALID_ARGUMENT);
    CHECK_OK(mind4_model_release(NULL));
    mind4_context* ctx = NULL;
    CHECK_STATUS(mind4_context_create(NULL, 4, &ctx), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_context_append_tokens(NULL, NULL, 0), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_context_process(NULL), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_context_get_logits(NULL, NULL, 0), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_context_reset(NULL, NULL, 0), MIND4_INVALID_ARGUMENT);
    CHECK_STATUS(mind4_context_sample(NULL, NULL, NULL), MIND4_INVALID_ARGUMENT);
    CHECK_OK(mind4_context_release(NULL));

    /* options: bad thread count and dtype */
    mind4_model_config c = cb_default_config();
    cb_model cb;
    cb_random_model(&cb, &c, "F32", "F32", g_seed, false);
    cb_build_image(&cb, 0);
    mind4_model_options o;
    CHECK_OK(mind4_model_options_init(&o));
    CHECK(o.check_finite == 1 && o.num_threads == 0 && o.weight_dtype == MIND4_DTYPE_AUTO, "option defaults");
    o.num_threads = 5000;
    CHECK_STATUS(mind4_model_create_from_memory(cb.config_json, strlen(cb.config_json), cb.image, cb.image_size, &o, &m),
                 MIND4_INVALID_ARGUMENT);
    o.num_threads = 2;
    o.weight_dtype = MIND4_DTYPE_MXFP4;
    CHECK_STATUS(mind4_model_create_from_memory(cb.config_json, strlen(cb.config_json), cb.image, cb.image_size, &o, &m),
                 MIND4_UNSUPPORTED);
    o.weight_dtype = MIND4_DTYPE_AUTO;
    CHECK_OK(mind4_model_create_from_memory(cb.config_json, strlen(cb.config_json), cb.image, cb.image_size, &o, &m));
    uint32_t threads = 0;
    CHECK_OK(mind4_model_get_num_threads(m, &threads));
    CHECK(threads == 2, "threads %u", threads);
    mind4_model_config got;
    CHECK_OK(mind4_model_get_config(m, &got));
    CHECK(got.hidden_size == c.hidden_size && got.sliding_window == c.sliding_window &&
              got.rope_scaling_factor == c.rope_scaling_factor,
          "config round trip");
    /* the context keeps the model alive after the caller's release */
    CHECK_OK(mind4_context_create(m, 8, &ctx));
    CHECK_OK(mind4_model_release(m));
    uint32_t tok[3] = {1, 2, 3};
    CHECK_OK(mind4_context_append_tokens(ctx, tok, 3));
    CHECK_OK(mind4_context_process(ctx));
    CHECK_OK(mind4_context_retain(ctx));
    CHECK_OK(mind4_context_release(ctx));
    CHECK_OK(mind4_context_process(ctx)); /* nothing pending: no-op */
    CHECK_OK(mind4_context_release(ctx));
    cb_free(&cb);
    return test_finish("test_api");
}
