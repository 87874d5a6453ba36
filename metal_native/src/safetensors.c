/* safetensors.c - see safetensors.h. */
#include "safetensors.h"

#include <stdlib.h>

static const struct {
    const char* name;
    m4_st_dtype dtype;
    size_t size;
} k_dtypes[] = {
    {"F64", M4_ST_F64, 8},  {"F32", M4_ST_F32, 4},   {"F16", M4_ST_F16, 2},   {"BF16", M4_ST_BF16, 2},
    {"I64", M4_ST_I64, 8},  {"I32", M4_ST_I32, 4},   {"I16", M4_ST_I16, 2},   {"I8", M4_ST_I8, 1},
    {"U64", M4_ST_U64, 8},  {"U32", M4_ST_U32, 4},   {"U16", M4_ST_U16, 2},   {"U8", M4_ST_U8, 1},
    {"BOOL", M4_ST_BOOL, 1}, {"F8_E4M3", M4_ST_F8_E4M3, 1}, {"F8_E5M2", M4_ST_F8_E5M2, 1},
};

size_t m4_st_dtype_size(m4_st_dtype dtype) {
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++) {
        if (k_dtypes[i].dtype == dtype) return k_dtypes[i].size;
    }
    return 0;
}

static bool non_negative_int(const m4j_value* v, uint64_t* out) {
    if (!v || v->type != M4J_NUMBER || !v->is_integer || v->integer < 0) return false;
    *out = (uint64_t)v->integer;
    return true;
}

static int compare_begin(const void* a, const void* b) {
    const m4_st_tensor* x = *(const m4_st_tensor* const*)a;
    const m4_st_tensor* y = *(const m4_st_tensor* const*)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static mind4_status parse_entry(const m4j_member* m, size_t data_size, const unsigned char* data_area,
                                const char* what, m4_st_tensor* t) {
    const m4j_value* v = &m->value;
    const char* name = m->key;
    if (m->key_length == 0) return m4_fail(MIND4_CORRUPT_FILE, "%s: a tensor has an empty name", what);
    if (v->type != M4J_OBJECT) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: header entry \"%.200s\" is not an object", what, name);
    }
    const m4j_value *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (size_t i = 0; i < v->count; i++) {
        const m4j_member* f = &v->members[i];
        if (strcmp(f->key, "dtype") == 0) {
            dtype = &f->value;
        } else if (strcmp(f->key, "shape") == 0) {
            shape = &f->value;
        } else if (strcmp(f->key, "data_offsets") == 0) {
            offsets = &f->value;
        } else {
            return m4_fail(MIND4_CORRUPT_FILE, "%s: tensor \"%.200s\": unknown field \"%.100s\"", what, name, f->key);
        }
    }
    if (!dtype || dtype->type != M4J_STRING) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: tensor \"%.200s\": \"dtype\" missing or not a string", what, name);
    }
    bool known = false;
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++) {
        if (strcmp(dtype->string, k_dtypes[i].name) == 0) {
            t->dtype = k_dtypes[i].dtype;
            t->dtype_name = k_dtypes[i].name;
            known = true;
        }
    }
    if (!known) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: tensor \"%.200s\": unknown dtype \"%.50s\"", what, name, dtype->string);
    }
    if (!shape || shape->type != M4J_ARRAY) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: tensor \"%.200s\": \"shape\" missing or not an array", what, name);
    }
    if (shape->count > M4_ST_MAX_DIMS) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: tensor \"%.200s\": %zu dimensions (at most %d supported)", what, name,
                       shape->count, M4_ST_MAX_DIMS);
    }
    t->ndim = (uint32_t)shape->count;
    uint64_t numel = 1;
    for (size_t i = 0; i < shape->count; i++) {
        if (!non_negative_int(&shape->items[i], &t->shape[i])) {
            return m4_fail(MIND4_CORRUPT_FILE, "%s: tensor \"%.200s\": shape entry %zu is not an integer >= 0", what,
                           name, i);
        }
        if (!m4_mul_u64(numel, t->shape[i], &numel)) {
            return m4_fail(MIND4_CORRUPT_FILE, "%s: tensor \"%.200s\": element count overflows", what, name);
        }
    }
    t->numel = numel;
    uint64_t nbytes;
    if (!m4_mul_u64(numel, m4_st_dtype_size(t->dtype), &nbytes) || nbytes > SIZE_MAX) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: tensor \"%.200s\": byte size overflows", what, name);
    }
    uint64_t begin, end;
    if (!offsets || offsets->type != M4J_ARRAY || offsets->count != 2 || !non_negative_int(&offsets->items[0], &begin) ||
        !non_negative_int(&offsets->items[1], &end)) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: tensor \"%.200s\": \"data_offsets\" must be [begin, end] integers >= 0",
                       what, name);
    }
    if (begin > end) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: tensor \"%.200s\": data_offsets begin %llu > end %llu", what, name,
                       (unsigned long long)begin, (unsigned long long)end);
    }
    if (end > data_size) {
        return m4_fail(MIND4_CORRUPT_FILE,
                       "%s: tensor \"%.200s\": data ends at byte %llu of the data area, past its end (%zu bytes); "
                       "the file is truncated or its header is wrong",
                       what, name, (unsigned long long)end, data_size);
    }
    if (end - begin != nbytes) {
        return m4_fail(MIND4_CORRUPT_FILE,
                       "%s: tensor \"%.200s\": data_offsets span %llu bytes but dtype %s and its shape need %llu", what,
                       name, (unsigned long long)(end - begin), t->dtype_name, (unsigned long long)nbytes);
    }
    t->name = name;
    t->name_length = m->key_length;
    t->begin = (size_t)begin;
    t->nbytes = (size_t)nbytes;
    t->data = data_area + begin;
    return MIND4_SUCCESS;
}

mind4_status m4_st_parse(const unsigned char* data, size_t size, const char* what, m4_safetensors* out) {
    if (!out || (!data && size)) return m4_fail(MIND4_INVALID_ARGUMENT, "m4_st_parse: NULL argument");
    memset(out, 0, sizeof *out);
    if (size < 8) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: %zu bytes, shorter than the 8-byte safetensors header length", what,
                       size);
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | data[i];
    if (n > size - 8) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: header length %llu runs past the end of the file (%zu bytes)", what,
                       (unsigned long long)n, size);
    }
    if (n > M4_ST_MAX_HEADER) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: header length %llu exceeds the %u-byte limit", what,
                       (unsigned long long)n, M4_ST_MAX_HEADER);
    }
    if (n < 2 || data[8] != '{') {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: the header is not a JSON object", what);
    }
    m4j_document doc;
    mind4_status st = m4j_parse((const char*)data + 8, (size_t)n, what, &doc);
    if (st != MIND4_SUCCESS) return st;
    if (doc.root.type != M4J_OBJECT) {
        m4j_free(&doc);
        return m4_fail(MIND4_CORRUPT_FILE, "%s: the header is not a JSON object", what);
    }
    size_t data_offset = 8 + (size_t)n;
    size_t data_size = size - data_offset;
    const unsigned char* data_area = data + data_offset;
    size_t count = 0;
    m4_st_tensor* tensors = (m4_st_tensor*)calloc(doc.root.count ? doc.root.count : 1, sizeof *tensors);
    const m4_st_tensor** order = (const m4_st_tensor**)calloc(doc.root.count ? doc.root.count : 1, sizeof *order);
    if (!tensors || !order) {
        st = m4_fail(MIND4_OUT_OF_MEMORY, "%s: out of memory", what);
        goto fail;
    }
    for (size_t i = 0; i < doc.root.count; i++) {
        const m4j_member* m = &doc.root.members[i];
        if (strcmp(m->key, "__metadata__") == 0 && m->key_length == 12) {
            if (m->value.type != M4J_OBJECT) {
                st = m4_fail(MIND4_CORRUPT_FILE, "%s: \"__metadata__\" is not an object", what);
                goto fail;
            }
            for (size_t j = 0; j < m->value.count; j++) {
                if (m->value.members[j].value.type != M4J_STRING) {
                    st = m4_fail(MIND4_CORRUPT_FILE, "%s: \"__metadata__\" value of \"%.100s\" is not a string", what,
                                 m->value.members[j].key);
                    goto fail;
                }
            }
            continue;
        }
        st = parse_entry(m, data_size, data_area, what, &tensors[count]);
        if (st != MIND4_SUCCESS) goto fail;
        order[count] = &tensors[count];
        count++;
    }
    /* overlap: sorted by begin, each non-empty tensor must start at or after the previous end */
    qsort(order, count, sizeof *order, compare_begin);
    size_t prev_end = 0;
    const m4_st_tensor* prev = NULL;
    for (size_t i = 0; i < count; i++) {
        const m4_st_tensor* t = order[i];
        if (t->nbytes == 0) continue;
        if (prev && t->begin < prev_end) {
            st = m4_fail(MIND4_CORRUPT_FILE, "%s: tensors \"%.200s\" and \"%.200s\" overlap in the data area", what,
                         prev->name, t->name);
            goto fail;
        }
        prev_end = t->begin + t->nbytes;
        prev = t;
    }
    free(order);
    out->tensors = tensors;
    out->count = count;
    out->data_offset = data_offset;
    out->doc = doc;
    return MIND4_SUCCESS;
fail:
    free(order);
    free(tensors);
    m4j_free(&doc);
    return st;
}

void m4_st_free(m4_safetensors* st) {
    if (!st) return;
    free(st->tensors);
    m4j_free(&st->doc);
    memset(st, 0, sizeof *st);
}
