/* test_checkpoint.c - bad input never crashes: strict JSON, safetensors
 * headers (truncation, offsets past the end, overlaps, overflowing shapes,
 * unknown dtypes), config.json fields, tensors that disagree with the
 * config, and files on disk (missing, empty, sharded). Every case must give
 * the right status and a sentence naming what is wrong. */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "ckpt_builder.h"
#include "json.h"
#include "m4test.h"
#include "safetensors.h"

static void json_case(const char* text, bool valid) {
    m4j_document doc;
    mind4_status st = m4j_parse(text, strlen(text), "test.json", &doc);
    CHECK((st == MIND4_SUCCESS) == valid, "JSON %s: got %s (%s)", text, mind4_status_string(st), mind4_last_error());
    if (st == MIND4_SUCCESS) m4j_free(&doc);
}

static void test_json(void) {
    json_case("{}", true);
    json_case("  [1, -2.5e3, true, false, null, \"a\\u00e9\\ud83d\\ude00\"]  ", true);
    json_case("{\"a\": {\"b\": [[]]}}", true);
    json_case("", false);
    json_case("{", false);
    json_case("{\"a\": 1,}", false);
    json_case("[1 2]", false);
    json_case("{\"a\": 1} x", false);
    json_case("{\"a\": 1, \"a\": 2}", false);
    json_case("[01]", false);
    json_case("[1.]", false);
    json_case("[-]", false);
    json_case("[1e]", false);
    json_case("[nul]", false);
    json_case("[\"\\x\"]", false);
    json_case("[\"\\u12\"]", false);
    json_case("[\"\\ud800\"]", false);
    json_case("[\"\\udc00\"]", false);
    json_case("[\"\\u0000\"]", false);
    json_case("[\"a\x01\"]", false);
    json_case("[\"\xff\"]", false);
    json_case("[\"\xc0\xaf\"]", false);     /* overlong */
    json_case("[\"\xed\xa0\x80\"]", false); /* encoded surrogate */
    json_case("[\"unterminated]", false);
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[199] = '\0';
    deep[198] = ']';
    m4j_document doc;
    CHECK(m4j_parse(deep, 200, "deep", &doc) == MIND4_CORRUPT_FILE, "100-deep nesting accepted");
    CHECK(strstr(mind4_last_error(), "deep") != NULL, "message: %s", mind4_last_error());
    /* integers: exact int64, big ones become non-integer doubles */
    const char* nums = "[9223372036854775807, -9223372036854775808, 18446744073709551616, 1.5, 2e2]";
    CHECK_OK(m4j_parse(nums, strlen(nums), "nums", &doc));
    if (doc.arena) {
        const m4j_value* a = doc.root.items;
        CHECK(a[0].is_integer && a[0].integer == INT64_MAX, "INT64_MAX not exact");
        CHECK(a[1].is_integer && a[1].integer == INT64_MIN, "INT64_MIN not exact");
        CHECK(!a[2].is_integer, "2^64 marked integer");
        CHECK(!a[3].is_integer && a[3].number == 1.5, "1.5");
        CHECK(!a[4].is_integer && a[4].number == 200.0, "2e2");
        m4j_free(&doc);
    }
}

/* A safetensors image from a header string and `data` bytes of payload. */
static unsigned char* image(const char* header, size_t data, size_t* size) {
    size_t h = strlen(header);
    *size = 8 + h + data;
    unsigned char* p = (unsigned char*)calloc(*size, 1);
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(((uint64_t)h >> (8 * i)) & 0xff);
    memcpy(p + 8, header, h);
    for (size_t i = 0; i < data; i++) p[8 + h + i] = (unsigned char)(i * 7 + 1);
    return p;
}

static void st_case(const char* header, size_t data, mind4_status want, const char* needle) {
    size_t size;
    unsigned char* p = image(header, data, &size);
    m4_safetensors st;
    mind4_status got = m4_st_parse(p, size, "x.safetensors", &st);
    CHECK(got == want, "header %s: got %s want %s (%s)", header, mind4_status_string(got), mind4_status_string(want),
          mind4_last_error());
    if (got == MIND4_SUCCESS) {
        m4_st_free(&st);
    } else if (needle) {
        CHECK(strstr(mind4_last_error(), needle) != NULL, "message lacks '%s': %s", needle, mind4_last_error());
    }
    free(p);
}

static void test_safetensors(void) {
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, MIND4_SUCCESS, NULL);
    st_case("{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,2]}}", 2,
            MIND4_SUCCESS, NULL);
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8, MIND4_SUCCESS, NULL);
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 23, MIND4_CORRUPT_FILE, "past its end");
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24, MIND4_CORRUPT_FILE, "need 24");
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 24, MIND4_CORRUPT_FILE, "begin");
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
            16, MIND4_CORRUPT_FILE, "overlap");
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
            MIND4_CORRUPT_FILE, "overflow");
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8, MIND4_CORRUPT_FILE,
            "overflow");
    st_case("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, MIND4_CORRUPT_FILE, "dtype");
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, MIND4_CORRUPT_FILE, "shape");
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, MIND4_CORRUPT_FILE, "shape");
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 8, MIND4_CORRUPT_FILE,
            "dimensions");
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, MIND4_CORRUPT_FILE, "data_offsets");
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, MIND4_CORRUPT_FILE, "unknown");
    st_case("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, MIND4_CORRUPT_FILE, "dtype");
    st_case("{\"a\":[]}", 8, MIND4_CORRUPT_FILE, "not an object");
    st_case("{\"__metadata__\":{\"k\":1}}", 0, MIND4_CORRUPT_FILE, "__metadata__");
    st_case("[]", 0, MIND4_CORRUPT_FILE, "JSON object");
    st_case("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, MIND4_CORRUPT_FILE, "invalid JSON");
    /* header length past the end of the file, and absurd lengths */
    unsigned char small[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}', ' ', ' '};
    m4_safetensors st;
    CHECK_STATUS(m4_st_parse(small, sizeof small, "x", &st), MIND4_CORRUPT_FILE);
    CHECK(strstr(mind4_last_error(), "runs past") != NULL, "message: %s", mind4_last_error());
    CHECK_STATUS(m4_st_parse(small, 5, "x", &st), MIND4_CORRUPT_FILE);
    CHECK_STATUS(m4_st_parse(NULL, 0, "x", &st), MIND4_CORRUPT_FILE);
}

static mind4_status load_mem(const char* config, const cb_model* cb) {
    mind4_model* m = NULL;
    mind4_model_options o;
    mind4_model_options_init(&o);
    o.num_threads = 1;
    mind4_status st = mind4_model_create_from_memory(config, strlen(config), cb->image, cb->image_size, &o, &m);
    CHECK((st == MIND4_SUCCESS) == (m != NULL), "model_out and status disagree");
    mind4_model_release(m);
    return st;
}

/* the config with one "key": value replaced */
static void with_field(const cb_model* cb, const char* key, const char* value, char* out, size_t size) {
    const char* p = strstr(cb->config_json, key);
    if (!p) {
        snprintf(out, size, "%s", cb->config_json);
        return;
    }
    const char* colon = strchr(p, ':');
    const char* end = strpbrk(colon, ",}");
    snprintf(out, size, "%.*s: %s%s", (int)(colon - cb->config_json), cb->config_json, value, end);
}

static void config_case(const cb_model* cb, const char* key, const char* value, mind4_status want, const char* needle) {
    char cfg[4096];
    with_field(cb, key, value, cfg, sizeof cfg);
    mind4_status got = load_mem(cfg, cb);
    CHECK(got == want, "%s=%s: got %s want %s (%s)", key, value, mind4_status_string(got), mind4_status_string(want),
          mind4_last_error());
    if (needle && got != MIND4_SUCCESS) {
        CHECK(strstr(mind4_last_error(), needle) != NULL, "message lacks '%s': %s", needle, mind4_last_error());
    }
}

static void test_config(void) {
    mind4_model_config c = cb_default_config();
    cb_model cb;
    cb_random_model(&cb, &c, "F32", "MXFP4", g_seed, false);
    cb_build_image(&cb, 0);
    CHECK_OK(load_mem(cb.config_json, &cb));
    config_case(&cb, "\"hidden_size\"", "65", MIND4_CONFIG_MISMATCH, "implies");
    config_case(&cb, "\"hidden_size\"", "64.0", MIND4_CONFIG_MISMATCH, "hidden_size");
    config_case(&cb, "\"hidden_size\"", "\"64\"", MIND4_CONFIG_MISMATCH, "hidden_size");
    config_case(&cb, "\"hidden_size\"", "-1", MIND4_CONFIG_MISMATCH, "hidden_size");
    config_case(&cb, "\"hidden_size\"", "99999999999999999999", MIND4_CONFIG_MISMATCH, "hidden_size");
    config_case(&cb, "\"vocab_size\"", "4294967297", MIND4_CONFIG_MISMATCH, "vocab_size");
    config_case(&cb, "\"num_hidden_layers\"", "3", MIND4_CONFIG_MISMATCH, "block.2");
    config_case(&cb, "\"num_hidden_layers\"", "1", MIND4_CONFIG_MISMATCH, "unexpected tensor");
    config_case(&cb, "\"num_key_value_heads\"", "3", MIND4_CONFIG_MISMATCH, "divide");
    config_case(&cb, "\"experts_per_token\"", "5", MIND4_CONFIG_MISMATCH, "experts_per_token");
    config_case(&cb, "\"head_dim\"", "15", MIND4_CONFIG_MISMATCH, "even");
    config_case(&cb, "\"rope_theta\"", "-1", MIND4_CONFIG_MISMATCH, "rope_theta");
    config_case(&cb, "\"rope_theta\"", "1e999", MIND4_CONFIG_MISMATCH, "rope_theta");
    config_case(&cb, "\"swiglu_limit\"", "null", MIND4_CONFIG_MISMATCH, "swiglu_limit");
    config_case(&cb, "\"sliding_window\"", "0", MIND4_SUCCESS, NULL);
    config_case(&cb, "\"num_experts\"", "null", MIND4_CONFIG_MISMATCH, "num_experts");
    CHECK_STATUS(load_mem("{\"hidden_size\": 64}", &cb), MIND4_CONFIG_MISMATCH);
    CHECK(strstr(mind4_last_error(), "missing field") != NULL, "message: %s", mind4_last_error());
    CHECK_STATUS(load_mem("[1]", &cb), MIND4_CORRUPT_FILE);
    CHECK_STATUS(load_mem("{\"hidden_size\": 64", &cb), MIND4_CORRUPT_FILE);
    cb_free(&cb);
}

/* tensors disagreeing with the config: rename / retype / reshape one */
static void tensor_case(const char* what, void (*mutate)(cb_model*), mind4_status want, const char* needle) {
    mind4_model_config c = cb_default_config();
    cb_model cb;
    cb_random_model(&cb, &c, "BF16", "MXFP4", g_seed + 3, false);
    mutate(&cb);
    cb_build_image(&cb, 0);
    mind4_status got = load_mem(cb.config_json, &cb);
    CHECK(got == want, "%s: got %s want %s (%s)", what, mind4_status_string(got), mind4_status_string(want),
          mind4_last_error());
    if (needle) CHECK(strstr(mind4_last_error(), needle) != NULL, "%s: message lacks '%s': %s", what, needle, mind4_last_error());
    cb_free(&cb);
}

static cb_tensor* find_t(cb_model* cb, const char* name) {
    for (size_t i = 0; i < cb->n; i++)
        if (strcmp(cb->t[i].name, name) == 0) return &cb->t[i];
    return NULL;
}
static void m_rename(cb_model* cb) { snprintf(find_t(cb, "norm.scale")->name, 128, "final_norm.scale"); }
static void m_extra(cb_model* cb) { snprintf(find_t(cb, "block.0.attn.sinks")->name, 128, "block.0.attn.sinks2"); }
static void m_dtype(cb_model* cb) { find_t(cb, "block.1.attn.qkv.bias")->dtype = "I16"; }
static void m_shape(cb_model* cb) {
    cb_tensor* t = find_t(cb, "block.0.attn.out.weight");
    t->shape[0] = t->shape[0] / 2, t->shape[1] = t->shape[1] * 2;
}
static void m_scales(cb_model* cb) { snprintf(find_t(cb, "block.1.mlp.mlp2_weight.scales")->name, 128, "block.1.mlp.mlp2_weight.scale"); }
static void m_blocks_dtype(cb_model* cb) { find_t(cb, "block.0.mlp.mlp1_weight.blocks")->dtype = "I8"; }
static void m_dup(cb_model* cb) { snprintf(find_t(cb, "block.0.mlp.mlp1_bias")->name, 128, "block.0.mlp.mlp2_bias"); }

static void test_tensors(void) {
    tensor_case("renamed", m_rename, MIND4_CONFIG_MISMATCH, "norm.scale");
    tensor_case("extra", m_extra, MIND4_CONFIG_MISMATCH, "sinks");
    tensor_case("wrong dtype", m_dtype, MIND4_CONFIG_MISMATCH, "I16");
    tensor_case("wrong shape", m_shape, MIND4_CONFIG_MISMATCH, "block.0.attn.out.weight");
    tensor_case("missing scales", m_scales, MIND4_CONFIG_MISMATCH, "mlp2_weight");
    tensor_case("blocks dtype", m_blocks_dtype, MIND4_CONFIG_MISMATCH, "U8");
    tensor_case("duplicate name", m_dup, MIND4_CORRUPT_FILE, "duplicate");
}

#if defined(_WIN32)
static void test_files(void) {}
#else
static void test_files(void) {
    char dir[] = "/tmp/mind4_ckpt_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(false, "mkdtemp failed");
        return;
    }
    mind4_model* m = NULL;
    char path[256];
    CHECK_STATUS(mind4_model_create_from_path(dir, NULL, &m), MIND4_NOT_FOUND);
    CHECK(strstr(mind4_last_error(), "config.json") != NULL, "message: %s", mind4_last_error());
    mind4_model_config c = cb_default_config();
    cb_model cb;
    cb_random_model(&cb, &c, "F32", "F32", g_seed + 9, false);
    cb_build_image(&cb, 0);
    CHECK(cb_write_dir(&cb, dir) == 0, "cannot write %s", dir);
    CHECK_OK(mind4_model_create_from_path(dir, NULL, &m));
    mind4_model_release(m);
    m = NULL;
    /* a shard with a tensor that is also in model.safetensors */
    snprintf(path, sizeof path, "%s/extra.safetensors", dir);
    size_t size;
    unsigned char* img = image("{\"norm.scale\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[0,256]}}", 256, &size);
    FILE* f = fopen(path, "wb");
    fwrite(img, 1, size, f);
    fclose(f);
    free(img);
    CHECK_STATUS(mind4_model_create_from_path(dir, NULL, &m), MIND4_CORRUPT_FILE);
    CHECK(strstr(mind4_last_error(), "two safetensors") != NULL, "message: %s", mind4_last_error());
    /* an empty shard */
    f = fopen(path, "wb");
    fclose(f);
    CHECK_STATUS(mind4_model_create_from_path(dir, NULL, &m), MIND4_CORRUPT_FILE);
    CHECK(strstr(mind4_last_error(), "extra.safetensors") != NULL, "message: %s", mind4_last_error());
    unlink(path);
    /* truncated main file */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    fwrite(cb.image, 1, cb.image_size - 1, f);
    fclose(f);
    CHECK_STATUS(mind4_model_create_from_path(dir, NULL, &m), MIND4_CORRUPT_FILE);
    CHECK(strstr(mind4_last_error(), "truncated") != NULL, "message: %s", mind4_last_error());
    unlink(path);
    CHECK_STATUS(mind4_model_create_from_path(dir, NULL, &m), MIND4_NOT_FOUND);
    CHECK(strstr(mind4_last_error(), "safetensors") != NULL, "message: %s", mind4_last_error());
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
    CHECK_STATUS(mind4_model_create_from_path("/nonexistent/mind4", NULL, &m), MIND4_NOT_FOUND);
    CHECK(m == NULL, "model_out set on failure");
    cb_free(&cb);
}
#endif

int main(void) {
    test_init("test_checkpoint");
    test_json();
    test_safetensors();
    test_config();
    test_tensors();
    test_files();
    return test_finish("test_checkpoint");
}
