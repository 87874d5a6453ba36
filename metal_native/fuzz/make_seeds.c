/* make_seeds.c - write valid tiny checkpoints (and a few broken ones) in the
 * fuzz input layout to a corpus directory: make_seeds <dir>. */
#include "ckpt_builder.h"

static void write_seed(const char* dir, const char* name, const char* config, const unsigned char* image, size_t size) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE* f = fopen(path, "wb");
    if (!f) return;
    size_t L = strlen(config);
    unsigned char hdr[2] = {(unsigned char)(L & 0xff), (unsigned char)(L >> 8)};
    fwrite(hdr, 1, 2, f);
    fwrite(config, 1, L, f);
    fwrite(image, 1, size, f);
    fclose(f);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds <dir>\n");
        return 2;
    }
    mind4_model_config c = cb_default_config();
    c.vocab_size = 8;
    c.hidden_size = 32;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 8;
    c.intermediate_size = 32;
    c.num_experts = 2;
    c.experts_per_token = 1;
    const char* kinds[][2] = {{"F32", "F32"}, {"BF16", "BF16"}, {"BF16", "MXFP4"}, {"F32", "MXFP4"}};
    for (int i = 0; i < 4; i++) {
        c.num_hidden_layers = (uint32_t)(1 + i % 2);
        cb_model cb;
        cb_random_model(&cb, &c, kinds[i][0], kinds[i][1], (uint64_t)i + 1, false);
        cb_build_image(&cb, (size_t)i % 2);
        char name[64];
        snprintf(name, sizeof name, "seed_%s_%s", kinds[i][0], kinds[i][1]);
        write_seed(argv[1], name, cb.config_json, cb.image, cb.image_size);
        /* truncated image */
        snprintf(name, sizeof name, "seed_%s_%s_truncated", kinds[i][0], kinds[i][1]);
        write_seed(argv[1], name, cb.config_json, cb.image, cb.image_size / 2);
        cb_free(&cb);
    }
    return 0;
}
