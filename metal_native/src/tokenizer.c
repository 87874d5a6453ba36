/* tokenizer.c - mind4_tokenizer: id <-> bytes over a tiktoken ranks file.
 * Token bytes live in one buffer; a hash table (open addressing, FNV-1a)
 * maps bytes back to ids. */
#include <stdio.h>
#include <stdlib.h>

#include "engine.h"
#include "mapfile.h"

#define MAX_TOKENS (1u << 24)
#define MAX_RANKS_BYTES (512u << 20)

typedef struct token_entry {
    size_t offset, size; /* into bytes; size 0 = no token */
} token_entry;

struct mind4_tokenizer {
    m4_refcount refs;
    uint32_t num_ranked, vocab_size;
    token_entry* tokens; /* [capacity] by id */
    size_t capacity;
    unsigned char* bytes;
    size_t bytes_size, bytes_capacity;
    uint32_t* table; /* id + 1 per slot, 0 = empty */
    size_t table_size; /* power of two */
};

static uint64_t fnv1a(const unsigned char* p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static const unsigned char* token_bytes(const mind4_tokenizer* t, uint32_t id) { return t->bytes + t->tokens[id].offset; }

/* slot holding bytes, or the empty slot where they would go */
static size_t lookup(const mind4_tokenizer* t, const unsigned char* p, size_t n) {
    size_t mask = t->table_size - 1, i = (size_t)fnv1a(p, n) & mask;
    while (t->table[i]) {
        uint32_t id = t->table[i] - 1;
        if (t->tokens[id].size == n && memcmp(token_bytes(t, id), p, n) == 0) return i;
        i = (i + 1) & mask;
    }
    return i;
}

static bool grow_table(mind4_tokenizer* t, size_t min_entries) {
    size_t size = 64;
    while (size < 2 * min_entries) size *= 2;
    if (size <= t->table_size) return true;
    uint32_t* old = t->table;
    size_t old_size = t->table_size;
    t->table = (uint32_t*)calloc(size, sizeof *t->table);
    if (!t->table) {
        t->table = old;
        return false;
    }
    t->table_size = size;
    for (size_t i = 0; i < old_size; i++) {
        if (old[i]) {
            uint32_t id = old[i] - 1;
            t->table[lookup(t, token_bytes(t, id), t->tokens[id].size)] = old[i];
        }
    }
    free(old);
    return true;
}

/* Append a token with id (capacity grows); fails on a duplicate. */
static mind4_status put(mind4_tokenizer* t, uint32_t id, const unsigned char* p, size_t n, const char* where) {
    if (id >= t->capacity) {
        size_t cap = t->capacity ? t->capacity : 1024;
        while (cap <= id) cap *= 2;
        token_entry* e = (token_entry*)realloc(t->tokens, cap * sizeof *e);
        if (!e) return m4_fail(MIND4_OUT_OF_MEMORY, "%s: out of memory", where);
        memset(e + t->capacity, 0, (cap - t->capacity) * sizeof *e);
        t->tokens = e;
        t->capacity = cap;
    }
    if (t->tokens[id].size) return m4_fail(MIND4_INVALID_ARGUMENT, "%s: id %u is already taken", where, id);
    if (t->bytes_size + n > t->bytes_capacity) {
        size_t cap = t->bytes_capacity ? t->bytes_capacity : 65536;
        while (cap < t->bytes_size + n) cap *= 2;
        unsigned char* b = (unsigned char*)realloc(t->bytes, cap);
        if (!b) return m4_fail(MIND4_OUT_OF_MEMORY, "%s: out of memory", where);
        t->bytes = b;
        t->bytes_capacity = cap;
    }
    if (!grow_table(t, (size_t)id + 1)) return m4_fail(MIND4_OUT_OF_MEMORY, "%s: out of memory", where);
    size_t slot = lookup(t, p, n);
    if (t->table[slot]) {
        return m4_fail(MIND4_CORRUPT_FILE, "%s: token bytes of id %u repeat those of id %u", where, id, t->table[slot] - 1);
    }
    memcpy(t->bytes + t->bytes_size, p, n);
    t->tokens[id].offset = t->bytes_size;
    t->tokens[id].size = n;
    t->bytes_size += n;
    t->table[slot] = id + 1;
    if (id + 1 > t->vocab_size) t->vocab_size = id + 1;
    return MIND4_SUCCESS;
}

static int b64(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict base64 (padding required, no whitespace) -> out; returns length or -1. */
static long decode_b64(const unsigned char* s, size_t n, unsigned char* out) {
    if (n == 0 || n % 4 != 0) return -1;
    size_t w = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            if (s[i + j] == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
            } else {
                if (pad) return -1; /* data after padding */
                v[j] = b64(s[i + j]);
                if (v[j] < 0) return -1;
            }
        }
        uint32_t x = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
        out[w++] = (unsigned char)(x >> 16);
        if (pad < 2) out[w++] = (unsigned char)(x >> 8);
        if (pad < 1) out[w++] = (unsigned char)x;
        if ((pad == 1 && (v[2] & 3)) || (pad == 2 && (v[1] & 15))) return -1; /* non-canonical */
    }
    return (long)w;
}

static void tokenizer_free(mind4_tokenizer* t) {
    if (!t) return;
    free(t->tokens);
    free(t->bytes);
    free(t->table);
    free(t);
}

/* One line of a ranks file: token bytes (decoded into buf) and rank.
 * Returns 1 for a token, 0 for a blank line, -1 (error set) if malformed. */
static int parse_line(const unsigned char* s, size_t a, size_t e, size_t line, unsigned char* buf, size_t buf_size,
                      long* n_out, uint64_t* rank_out) {
    if (e > a && s[e - 1] == '\r') e--;
    while (a < e && (s[a] == ' ' || s[a] == '\t')) a++;
    if (a == e) return 0;
    size_t tok_end = a;
    while (tok_end < e && s[tok_end] != ' ' && s[tok_end] != '\t') tok_end++;
    size_t r = tok_end;
    while (r < e && (s[r] == ' ' || s[r] == '\t')) r++;
    size_t r_end = r;
    while (r_end < e && s[r_end] >= '0' && s[r_end] <= '9') r_end++;
    size_t tail = r_end;
    while (tail < e && (s[tail] == ' ' || s[tail] == '\t')) tail++;
    if (r == r_end || tail != e || tok_end - a > 4 * (buf_size / 3)) {
        m4_fail(MIND4_CORRUPT_FILE, "ranks, line %zu: expected '<base64 token> <rank>'", line);
        return -1;
    }
    long n = decode_b64(s + a, tok_end - a, buf);
    if (n <= 0) {
        m4_fail(MIND4_CORRUPT_FILE, "ranks, line %zu: the token is not canonical base64", line);
        return -1;
    }
    uint64_t rank = 0;
    for (size_t i = r; i < r_end && rank < MAX_TOKENS; i++) rank = rank * 10 + (uint64_t)(s[i] - '0');
    if (rank >= MAX_TOKENS) {
        m4_fail(MIND4_CORRUPT_FILE, "ranks, line %zu: rank above %u", line, MAX_TOKENS - 1);
        return -1;
    }
    *n_out = n;
    *rank_out = rank;
    return 1;
}

mind4_status mind4_tokenizer_create_from_memory(const char* text, size_t size, mind4_tokenizer** out) {
    m4_clear_error();
    if ((!text && size) || !out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_tokenizer_create_from_memory: NULL argument");
    if (size > MAX_RANKS_BYTES) return m4_fail(MIND4_CORRUPT_FILE, "ranks: larger than %u bytes", MAX_RANKS_BYTES);
    const unsigned char* s = (const unsigned char*)text;
    unsigned char decoded[3 * 1024];
    /* pass 1: syntax, count and largest rank, so memory follows the file's size */
    size_t count = 0;
    uint64_t max_rank = 0;
    for (size_t pos = 0, line = 1; pos < size; line++) {
        size_t end = pos;
        while (end < size && s[end] != '\n') end++;
        long n;
        uint64_t rank;
        int got = parse_line(s, pos, end, line, decoded, sizeof decoded, &n, &rank);
        if (got < 0) return MIND4_CORRUPT_FILE;
        if (got > 0) {
            count++;
            if (rank > max_rank) max_rank = rank;
        }
        pos = end + 1;
    }
    if (count == 0) return m4_fail(MIND4_CORRUPT_FILE, "ranks: no tokens");
    if (max_rank + 1 != count) {
        return m4_fail(MIND4_CORRUPT_FILE, "ranks: %zu tokens but ranks go up to %llu (ranks must be 0..N-1, none repeated or missing)", count,
                       (unsigned long long)max_rank);
    }
    mind4_tokenizer* t = (mind4_tokenizer*)calloc(1, sizeof *t);
    if (!t) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory");
    mind4_status st = MIND4_SUCCESS;
    for (size_t pos = 0, line = 1; pos < size && st == MIND4_SUCCESS; line++) { /* pass 2: store */
        size_t end = pos;
        while (end < size && s[end] != '\n') end++;
        long n;
        uint64_t rank;
        if (parse_line(s, pos, end, line, decoded, sizeof decoded, &n, &rank) > 0) {
            char where[64];
            snprintf(where, sizeof where, "ranks, line %zu", line);
            st = put(t, (uint32_t)rank, decoded, (size_t)n, where);
            if (st == MIND4_INVALID_ARGUMENT) {
                st = m4_fail(MIND4_CORRUPT_FILE, "ranks, line %zu: rank %llu repeats", line, (unsigned long long)rank);
            }
        }
        pos = end + 1;
    }
    if (st != MIND4_SUCCESS) {
        tokenizer_free(t);
        return st;
    }
    t->num_ranked = (uint32_t)count;
    m4_ref_init(&t->refs);
    *out = t;
    return MIND4_SUCCESS;
}

mind4_status mind4_tokenizer_create_from_file(const char* path, mind4_tokenizer** out) {
    m4_clear_error();
    if (!path || !out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_tokenizer_create_from_file: NULL argument");
    char* text = NULL;
    size_t size = 0;
    mind4_status st = m4_read_file(path, MAX_RANKS_BYTES, &text, &size);
    if (st != MIND4_SUCCESS) return st;
    st = mind4_tokenizer_create_from_memory(text, size, out);
    free(text);
    if (st != MIND4_SUCCESS) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", mind4_last_error());
        return m4_fail(st, "%s: %s", path, msg);
    }
    return MIND4_SUCCESS;
}

mind4_status mind4_tokenizer_add_special(mind4_tokenizer* t, uint32_t id, const char* text, size_t size) {
    m4_clear_error();
    if (!t || !text || size == 0) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_tokenizer_add_special: NULL or empty text");
    if (id < t->num_ranked || id >= MAX_TOKENS) {
        return m4_fail(MIND4_INVALID_ARGUMENT, "special token id %u must be in [%u, %u)", id, t->num_ranked, MAX_TOKENS);
    }
    if (size > 4096) return m4_fail(MIND4_INVALID_ARGUMENT, "special token of %zu bytes is too long", size);
    return put(t, id, (const unsigned char*)text, size, "special token");
}

mind4_status mind4_tokenizer_get_num_tokens(const mind4_tokenizer* t, uint32_t* num_ranked_out, uint32_t* vocab_size_out) {
    if (!t) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_tokenizer_get_num_tokens: tokenizer is NULL");
    if (num_ranked_out) *num_ranked_out = t->num_ranked;
    if (vocab_size_out) *vocab_size_out = t->vocab_size;
    return MIND4_SUCCESS;
}

mind4_status mind4_tokenizer_get_token(const mind4_tokenizer* t, uint32_t id, const uint8_t** bytes_out, size_t* size_out) {
    if (!t || !bytes_out || !size_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_tokenizer_get_token: NULL argument");
    if (id >= t->capacity || t->tokens[id].size == 0) return m4_fail(MIND4_NOT_FOUND, "no token with id %u", id);
    *bytes_out = token_bytes(t, id);
    *size_out = t->tokens[id].size;
    return MIND4_SUCCESS;
}

mind4_status mind4_tokenizer_decode(const mind4_tokenizer* t, const uint32_t* ids, size_t n, uint8_t* out,
                                    size_t capacity, size_t* size_out) {
    if (!t || (!ids && n) || (!out && capacity) || !size_out) {
        return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_tokenizer_decode: NULL argument");
    }
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= t->capacity || t->tokens[ids[i]].size == 0) {
            return m4_fail(MIND4_NOT_FOUND, "id %u (position %zu) has no token", ids[i], i);
        }
        need += t->tokens[ids[i]].size;
    }
    *size_out = need;
    if (need > capacity) return m4_fail(MIND4_INVALID_ARGUMENT, "decode needs %zu bytes, the buffer holds %zu", need, capacity);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + w, token_bytes(t, ids[i]), t->tokens[ids[i]].size);
        w += t->tokens[ids[i]].size;
    }
    return MIND4_SUCCESS;
}

mind4_status mind4_tokenizer_find(const mind4_tokenizer* t, const uint8_t* bytes, size_t size, uint32_t* id_out) {
    if (!t || (!bytes && size) || !id_out) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_tokenizer_find: NULL argument");
    if (size == 0 || !t->table_size) return m4_fail(MIND4_NOT_FOUND, "no token with these bytes");
    size_t slot = lookup(t, bytes, size);
    if (!t->table[slot]) return m4_fail(MIND4_NOT_FOUND, "no token with these %zu bytes", size);
    *id_out = t->table[slot] - 1;
    return MIND4_SUCCESS;
}

mind4_status mind4_tokenizer_retain(mind4_tokenizer* t) {
    if (!t) return m4_fail(MIND4_INVALID_ARGUMENT, "mind4_tokenizer_retain: tokenizer is NULL");
    m4_ref_inc(&t->refs);
    return MIND4_SUCCESS;
}

mind4_status mind4_tokenizer_release(mind4_tokenizer* t) {
    if (t && m4_ref_dec(&t->refs) == 0) tokenizer_free(t);
    return MIND4_SUCCESS;
}
