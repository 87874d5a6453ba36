/* checkpoint.c - see checkpoint.h. */
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>

static int compare_tensor_names(const void* a, const void* b) {
    const m4_st_tensor* x = *(const m4_st_tensor* const*)a;
    const m4_st_tensor* y = *(const m4_st_tensor* const*)b;
    size_t n = x->name_length < y->name_length ? x->name_length : y->name_length;
    int c = memcmp(x->name, y->name, n);
    if (c) return c;
    return (x->name_length > y->name_length) - (x->name_length < y->name_length);
}

/* Index of a tensor in ck->by_name, or SIZE_MAX. */
static size_t find_index(const m4_checkpoint* ck, const char* name) {
    size_t len = strlen(name), lo = 0, hi = ck->num_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const m4_st_tensor* t = ck->by_name[mid];
        size_t n = t->name_length < len ? t->name_length : len;
        int c = memcmp(t->name, name, n);
        if (c == 0) c = (t->name_length > len) - (t->name_length < len);
        if (c == 0) return mid;
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return SIZE_MAX;
}

static const m4_st_tensor* find(const m4_checkpoint* ck, const char* name) {
    size_t i = find_index(ck, name);
    return i == SIZE_MAX ? NULL : ck->by_name[i];
}

static size_t index_of(const m4_checkpoint* ck, const m4_st_tensor* t) {
    char name[M4_MAX_NAME];
    size_t len = t->name_length < sizeof name - 1 ? t->name_length : sizeof name - 1;
    memcpy(name, t->name, len);
    name[len] = '\0';
    return find_index(ck, name);
}

/* ------------------------------------------------------ expected tensors */
typedef enum kind { DENSE, VECTOR, EXPERT } kind;

typedef struct expected {
    char name[96];
    kind kind;
    uint32_t ndim;
    uint64_t shape[3];
} expected;

static void add(expected* list, size_t* n, kind k, uint32_t ndim, uint64_t a, uint64_t b, uint64_t c, const char* fmt,
                int layer) {
    expected* e = &list[(*n)++];
    snprintf(e->name, sizeof e->name, fmt, layer);
    e->kind = k;
    e->ndim = ndim;
    e->shape[0] = a;
    e->shape[1] = b;
    e->shape[2] = c;
}

static size_t expected_tensors(const mind4_model_config* c, expected* list) {
    size_t n = 0;
    uint64_t H = c->hidden_size, V = c->vocab_size, D = c->head_dim, nq = c->num_attention_heads;
    uint64_t nkv = c->num_key_value_heads, E = c->num_experts, I = c->intermediate_size;
    add(list, &n, DENSE, 2, V, H, 0, "embedding.weight", 0);
    for (uint32_t l = 0; l < c->num_hidden_layers; l++) {
        int li = (int)l;
        add(list, &n, VECTOR, 1, H, 0, 0, "block.%d.attn.norm.scale", li);
        add(list, &n, DENSE, 2, (nq + 2 * nkv) * D, H, 0, "block.%d.attn.qkv.weight", li);
        add(list, &n, VECTOR, 1, (nq + 2 * nkv) * D, 0, 0, "block.%d.attn.qkv.bias", li);
        add(list, &n, VECTOR, 1, nq, 0, 0, "block.%d.attn.sinks", li);
        add(list, &n, DENSE, 2, H, nq * D, 0, "block.%d.attn.out.weight", li);
        add(list, &n, VECTOR, 1, H, 0, 0, "block.%d.attn.out.bias", li);
        add(list, &n, VECTOR, 1, H, 0, 0, "block.%d.mlp.norm.scale", li);
        add(list, &n, DENSE, 2, E, H, 0, "block.%d.mlp.gate.weight", li);
        add(list, &n, VECTOR, 1, E, 0, 0, "block.%d.mlp.gate.bias", li);
        add(list, &n, EXPERT, 3, E, 2 * I, H, "block.%d.mlp.mlp1_weight", li);
        add(list, &n, VECTOR, 2, E, 2 * I, 0, "block.%d.mlp.mlp1_bias", li);
        add(list, &n, EXPERT, 3, E, H, I, "block.%d.mlp.mlp2_weight", li);
        add(list, &n, VECTOR, 2, E, H, 0, "block.%d.mlp.mlp2_bias", li);
    }
    add(list, &n, VECTOR, 1, H, 0, 0, "norm.scale", 0);
    add(list, &n, DENSE, 2, V, H, 0, "unembedding.weight", 0);
    return n;
}

#define TENSORS_PER_LAYER 13

/* The file a tensor lives in (for messages). */
static const char* file_of(const m4_checkpoint* ck, const m4_st_tensor* t) {
    if (ck->file_paths && t->file_index < ck->num_parsed && ck->file_paths[t->file_index]) {
        return ck->file_paths[t->file_index];
    }
    return ck->path;
}

static void shape_string(char* buf, size_t size, uint32_t ndim, const uint64_t* shape) {
    size_t w = 0;
    w += (size_t)snprintf(buf + w, size - w, "[");
    for (uint32_t i = 0; i < ndim && w < size; i++) {
        w += (size_t)snprintf(buf + w, size - w, i ? ", %llu" : "%llu", (unsigned long long)shape[i]);
    }
    if (w < size) snprintf(buf + w, size - w, "]");
}

static bool float_dtype(m4_st_dtype d, mind4_dtype* out) {
    switch (d) {
        case M4_ST_F32: *out = MIND4_DTYPE_F32; return true;
        case M4_ST_BF16: *out = MIND4_DTYPE_BF16; return true;
        case M4_ST_F16: *out = MIND4_DTYPE_F16; return true;
        default: return false;
    }
}

static mind4_status check_shape(const m4_checkpoint* ck, const m4_st_tensor* t, uint32_t ndim, const uint64_t* shape) {
    bool same = t->ndim == ndim;
    for (uint32_t i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (same) return MIND4_SUCCESS;
    char got[160], want[160];
    shape_string(got, sizeof got, t->ndim, t->shape);
    shape_string(want, sizeof want, ndim, shape);
    return m4_fail(MIND4_CONFIG_MISMATCH, "%s: tensor \"%.200s\" has shape %s but config.json implies %s",
                   file_of(ck, t), t->name, got, want);
}

static mind4_status check_weight(const m4_checkpoint* ck, const expected* e, m4_ckpt_weight* w) {
    memset(w, 0, sizeof *w);
    const m4_st_tensor* t = find(ck, e->name);
    char bname[112], sname[112];
    snprintf(bname, sizeof bname, "%s.blocks", e->name);
    snprintf(sname, sizeof sname, "%s.scales", e->name);
    const m4_st_tensor* blocks = e->kind == EXPERT ? find(ck, bname) : NULL;
    const m4_st_tensor* scales = e->kind == EXPERT ? find(ck, sname) : NULL;
    if (t && (blocks || scales)) {
        return m4_fail(MIND4_CONFIG_MISMATCH, "%s: both \"%s\" and its MXFP4 .blocks/.scales are present", ck->path,
                       e->name);
    }
    if (t) {
        if (!float_dtype(t->dtype, &w->dtype)) {
            return m4_fail(MIND4_CONFIG_MISMATCH, "%s: tensor \"%s\" has dtype %s; expected F32, BF16 or F16",
                           file_of(ck, t), e->name, t->dtype_name);
        }
        w->tensor = t;
        return check_shape(ck, t, e->ndim, e->shape);
    }
    if (blocks || scales) {
        if (!blocks || !scales) {
            return m4_fail(MIND4_CONFIG_MISMATCH, "%s: MXFP4 weight \"%s\" needs both .blocks and .scales; only %s found",
                           ck->path, e->name, blocks ? ".blocks" : ".scales");
        }
        if (blocks->dtype != M4_ST_U8 || scales->dtype != M4_ST_U8) {
            return m4_fail(MIND4_CONFIG_MISMATCH, "%s: MXFP4 \"%s\" .blocks/.scales must be U8, got %s/%s",
                           file_of(ck, blocks), e->name, blocks->dtype_name, scales->dtype_name);
        }
        uint64_t cols = e->shape[2];
        if (cols % 32 != 0) {
            return m4_fail(MIND4_CONFIG_MISMATCH, "%s: MXFP4 \"%s\" needs a column count divisible by 32, got %llu",
                           ck->path, e->name, (unsigned long long)cols);
        }
        uint64_t bshape[4] = {e->shape[0], e->shape[1], cols / 32, 16};
        mind4_status st = check_shape(ck, blocks, 4, bshape);
        if (st == MIND4_SUCCESS) st = check_shape(ck, scales, 3, bshape);
        w->dtype = MIND4_DTYPE_MXFP4;
        w->tensor = blocks;
        w->scales = scales;
        return st;
    }
    return m4_fail(MIND4_CONFIG_MISMATCH, "%s: tensor \"%s\" is missing (config.json has %u layers)", ck->path, e->name,
                   ck->config.num_hidden_layers);
}

static mind4_status validate(m4_checkpoint* ck) {
    size_t total = 0;
    for (size_t i = 0; i < ck->num_parsed; i++) total += ck->parsed[i].count;
    ck->by_name = (const m4_st_tensor**)malloc((total ? total : 1) * sizeof *ck->by_name);
    if (!ck->by_name) return m4_fail(MIND4_OUT_OF_MEMORY, "%s: out of memory", ck->path);
    size_t n = 0;
    for (size_t i = 0; i < ck->num_parsed; i++) {
        for (size_t j = 0; j < ck->parsed[i].count; j++) {
            ck->parsed[i].tensors[j].file_index = (uint32_t)i;
            ck->by_name[n++] = &ck->parsed[i].tensors[j];
        }
    }
    ck->num_tensors = n;
    qsort(ck->by_name, n, sizeof *ck->by_name, compare_tensor_names);
    for (size_t i = 1; i < n; i++) {
        if (compare_tensor_names(&ck->by_name[i - 1], &ck->by_name[i]) == 0) {
            return m4_fail(MIND4_CORRUPT_FILE, "%s: tensor \"%.200s\" appears in two safetensors files (also in %s)",
                           file_of(ck, ck->by_name[i]), ck->by_name[i]->name, file_of(ck, ck->by_name[i - 1]));
        }
    }
    size_t num_expected = 4 + (size_t)TENSORS_PER_LAYER * ck->config.num_hidden_layers;
    expected* list = (expected*)malloc(num_expected * sizeof *list);
    if (!list) return m4_fail(MIND4_OUT_OF_MEMORY, "%s: out of memory", ck->path);
    size_t got = expected_tensors(&ck->config, list);
    mind4_status st = MIND4_SUCCESS;
    ck->used = (bool*)calloc(n ? n : 1, sizeof *ck->used);
    if (!ck->used) {
        free(list);
        return m4_fail(MIND4_OUT_OF_MEMORY, "%s: out of memory", ck->path);
    }
    for (size_t i = 0; i < got && st == MIND4_SUCCESS; i++) {
        m4_ckpt_weight w;
        st = check_weight(ck, &list[i], &w);
        if (st == MIND4_SUCCESS) {
            ck->used[index_of(ck, w.tensor)] = true;
            if (w.scales) ck->used[index_of(ck, w.scales)] = true;
        }
    }
    free(list);
    if (st != MIND4_SUCCESS) return st;
    for (size_t i = 0; i < n; i++) {
        if (!ck->used[i]) {
            return m4_fail(MIND4_CONFIG_MISMATCH,
                           "%s: unexpected tensor \"%.200s\" (not in the canonical gpt-oss layout for %u layers)",
                           file_of(ck, ck->by_name[i]), ck->by_name[i]->name, ck->config.num_hidden_layers);
        }
    }
    return MIND4_SUCCESS;
}

/* Parse "block.N.rest" or a top-level name into its expected entry. */
mind4_status m4_checkpoint_weight(const m4_checkpoint* ck, const char* name, m4_ckpt_weight* out) {
    const mind4_model_config* c = &ck->config;
    expected e[TENSORS_PER_LAYER];
    size_t n = 0;
    int layer = -1;
    if (strncmp(name, "block.", 6) == 0) {
        const char* p = name + 6;
        long v = 0;
        if (*p < '0' || *p > '9') return m4_fail(MIND4_NOT_FOUND, "no canonical tensor \"%s\"", name);
        while (*p >= '0' && *p <= '9' && v < 100000) v = v * 10 + (*p++ - '0');
        if (*p != '.' || v >= (long)c->num_hidden_layers) return m4_fail(MIND4_NOT_FOUND, "no canonical tensor \"%s\"", name);
        layer = (int)v;
    }
    mind4_model_config one = *c;
    one.num_hidden_layers = 1;
    expected all[4 + TENSORS_PER_LAYER];
    size_t total = expected_tensors(&one, all);
    for (size_t i = 0; i < total; i++) {
        char fixed[96];
        if (layer >= 0 && strncmp(all[i].name, "block.0.", 8) == 0) {
            snprintf(fixed, sizeof fixed, "block.%d.%.60s", layer, all[i].name + 8);
        } else if (layer < 0 && strncmp(all[i].name, "block.", 6) != 0) {
            snprintf(fixed, sizeof fixed, "%.90s", all[i].name);
        } else {
            continue;
        }
        if (strcmp(fixed, name) == 0) {
            e[n] = all[i];
            memcpy(e[n].name, fixed, sizeof fixed);
            n++;
            break;
        }
    }
    if (n == 0) return m4_fail(MIND4_NOT_FOUND, "no canonical tensor \"%s\"", name);
    return check_weight(ck, &e[0], out);
}

static void free_parsed(m4_checkpoint* ck) {
    if (ck->file_paths) {
        for (size_t i = 0; i < ck->num_file_paths; i++) free(ck->file_paths[i]);
        free(ck->file_paths);
        ck->file_paths = NULL;
    }
    for (size_t i = 0; i < ck->num_parsed; i++) m4_st_free(&ck->parsed[i]);
    free(ck->parsed);
    ck->parsed = NULL;
    ck->num_parsed = 0;
}

void m4_checkpoint_close(m4_checkpoint* ck) {
    if (!ck) return;
    free(ck->by_name);
    free(ck->used);
    free_parsed(ck);
    for (size_t i = 0; i < ck->num_files; i++) m4_unmap_file(&ck->files[i]);
    free(ck->files);
    free(ck->path);
    memset(ck, 0, sizeof *ck);
}

static char* join(const char* dir, const char* name) {
    size_t a = strlen(dir), b = strlen(name);
    char* p = (char*)malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static char* dup_string(const char* s) {
    size_t n = strlen(s);
    char* p = (char*)malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

mind4_status m4_checkpoint_open_path(const char* dir, const char* config_json, size_t config_size, m4_checkpoint* out) {
    if (!dir || !out) return m4_fail(MIND4_INVALID_ARGUMENT, "checkpoint path is NULL");
    m4_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    mind4_status st;
    ck.path = dup_string(dir);
    char* config_path = join(dir, "config.json");
    char** names = NULL;
    size_t num_names = 0;
    if (!ck.path || !config_path) {
        free(config_path);
        st = m4_fail(MIND4_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    if (config_json) {
        free(config_path);
        if (config_size > M4_MAX_CONFIG_BYTES) {
            st = m4_fail(MIND4_CORRUPT_FILE, "config.json: larger than the %u bytes allowed", M4_MAX_CONFIG_BYTES);
        } else {
            st = m4_config_parse(config_json, config_size, "config.json (given)", &ck.config);
        }
        if (st != MIND4_SUCCESS) goto fail;
    } else {
        char* text = NULL;
        size_t size = 0;
        st = m4_read_file(config_path, M4_MAX_CONFIG_BYTES, &text, &size);
        if (st == MIND4_SUCCESS) {
            st = m4_config_parse(text, size, config_path, &ck.config);
            free(text);
        } else if (st == MIND4_NOT_FOUND) {
            st = m4_fail(MIND4_NOT_FOUND, "%s: no config.json in the checkpoint directory", dir);
        }
        free(config_path);
        if (st != MIND4_SUCCESS) goto fail;
    }
    st = m4_list_dir(dir, ".safetensors", &names, &num_names);
    if (st != MIND4_SUCCESS) goto fail;
    if (num_names == 0) {
        st = m4_fail(MIND4_NOT_FOUND, "%s: no *.safetensors files in the checkpoint directory", dir);
        goto fail;
    }
    ck.files = (m4_mapped_file*)calloc(num_names, sizeof *ck.files);
    ck.parsed = (m4_safetensors*)calloc(num_names, sizeof *ck.parsed);
    ck.file_paths = (char**)calloc(num_names, sizeof *ck.file_paths);
    ck.num_file_paths = ck.file_paths ? num_names : 0;
    if (!ck.files || !ck.parsed || !ck.file_paths) {
        st = m4_fail(MIND4_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < num_names; i++) {
        char* path = join(dir, names[i]);
        if (!path) {
            st = m4_fail(MIND4_OUT_OF_MEMORY, "out of memory");
            goto fail;
        }
        ck.file_paths[i] = path; /* owned by the checkpoint from here on */
        st = m4_map_file(path, &ck.files[i]);
        if (st == MIND4_SUCCESS) {
            ck.num_files = i + 1;
            st = m4_st_parse(ck.files[i].data, ck.files[i].size, path, &ck.parsed[i]);
            if (st == MIND4_SUCCESS) ck.num_parsed = i + 1;
        }
        if (st != MIND4_SUCCESS) goto fail;
    }
    m4_free_names(names, num_names);
    names = NULL;
    st = validate(&ck);
    if (st != MIND4_SUCCESS) goto fail;
    *out = ck;
    return MIND4_SUCCESS;
fail:
    if (names) m4_free_names(names, num_names);
    m4_checkpoint_close(&ck);
    return st;
}

mind4_status m4_checkpoint_open_memory(const char* config_json, size_t config_size, const void* safetensors,
                                       size_t safetensors_size, m4_checkpoint* out) {
    if (!out || (!config_json && config_size) || (!safetensors && safetensors_size)) {
        return m4_fail(MIND4_INVALID_ARGUMENT, "checkpoint buffers are NULL");
    }
    if (config_size > M4_MAX_CONFIG_BYTES) {
        return m4_fail(MIND4_CORRUPT_FILE, "config.json: larger than the %u bytes allowed", M4_MAX_CONFIG_BYTES);
    }
    m4_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    mind4_status st;
    ck.path = dup_string("<memory>");
    ck.parsed = (m4_safetensors*)calloc(1, sizeof *ck.parsed);
    ck.file_paths = (char**)calloc(1, sizeof *ck.file_paths);
    ck.num_file_paths = ck.file_paths ? 1 : 0;
    if (ck.file_paths) ck.file_paths[0] = dup_string("model.safetensors");
    if (!ck.path || !ck.parsed || !ck.file_paths || !ck.file_paths[0]) {
        st = m4_fail(MIND4_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    st = m4_config_parse(config_json, config_size, "config.json", &ck.config);
    if (st != MIND4_SUCCESS) goto fail;
    st = m4_st_parse((const unsigned char*)safetensors, safetensors_size, "model.safetensors", &ck.parsed[0]);
    if (st != MIND4_SUCCESS) goto fail;
    ck.num_parsed = 1;
    st = validate(&ck);
    if (st != MIND4_SUCCESS) goto fail;
    *out = ck;
    return MIND4_SUCCESS;
fail:
    m4_checkpoint_close(&ck);
    return st;
}
