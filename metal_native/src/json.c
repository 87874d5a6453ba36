/* json.c - see json.h. Recursive descent over a bounded depth; values are
 * copied into an arena of chunks so that one free releases a document. */
#include "json.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- arena */
typedef struct arena_chunk {
    struct arena_chunk* next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
} arena_chunk;

typedef struct arena {
    arena_chunk* head;
} arena;

static void* arena_alloc(arena* a, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    if (bytes == 0) bytes = 16;
    if (a->head == NULL || a->head->size - a->head->used < bytes) {
        size_t size = bytes > 65536 ? bytes : 65536;
        if (size > SIZE_MAX - sizeof(arena_chunk)) return NULL;
        arena_chunk* c = (arena_chunk*)malloc(sizeof(arena_chunk) + size);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->size = size;
        a->head = c;
    }
    void* p = a->head->data + a->head->used;
    a->head->used += bytes;
    return p;
}

static void arena_free(arena* a) {
    arena_chunk* c = a->head;
    while (c) {
        arena_chunk* next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ---------------------------------------------------------------- parser */
typedef struct parser {
    const char* s;
    size_t n, pos;
    const char* what;
    arena* arena;
    mind4_status status;
} parser;

static bool fail_at(parser* p, const char* msg) {
    if (p->status == MIND4_SUCCESS) {
        p->status = m4_fail(MIND4_CORRUPT_FILE, "%s: invalid JSON at byte %zu: %s", p->what, p->pos, msg);
    }
    return false;
}

static bool fail_oom(parser* p) {
    if (p->status == MIND4_SUCCESS) {
        p->status = m4_fail(MIND4_OUT_OF_MEMORY, "%s: out of memory while parsing JSON", p->what);
    }
    return false;
}

static void skip_ws(parser* p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            p->pos++;
        } else {
            break;
        }
    }
}

static bool literal(parser* p, const char* word) {
    size_t len = strlen(word);
    if (p->n - p->pos < len || memcmp(p->s + p->pos, word, len) != 0) return fail_at(p, "unknown literal");
    p->pos += len;
    return true;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser* p, uint32_t* out) {
    if (p->n - p->pos < 4) return fail_at(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p->s[p->pos + i]);
        if (d < 0) return fail_at(p, "bad hex digit in \\u escape");
        v = v * 16 + (uint32_t)d;
    }
    p->pos += 4;
    *out = v;
    return true;
}

/* Length of a valid UTF-8 sequence starting at s[0..avail), or 0. */
static size_t utf8_sequence(const unsigned char* s, size_t avail) {
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
    if (cp >= 0xd800 && cp <= 0xdfff) return 0;
    return len;
}

static size_t put_utf8(char* out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* p->s[p->pos] is the opening quote. Decoded text never exceeds the raw length. */
static bool parse_string(parser* p, const char** out, size_t* out_len) {
    p->pos++; /* opening quote */
    size_t start = p->pos, end = start;
    bool escapes = false;
    while (end < p->n && p->s[end] != '"') {
        if (p->s[end] == '\\') {
            escapes = true;
            end++;
        }
        end++;
    }
    if (end >= p->n) return fail_at(p, "unterminated string");
    char* buf = (char*)arena_alloc(p->arena, end - start + 1);
    if (!buf) return fail_oom(p);
    size_t w = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) return fail_at(p, "control character in string");
        if (c == '\\') {
            p->pos++;
            char e = p->s[p->pos++];
            switch (e) {
                case '"': buf[w++] = '"'; break;
                case '\\': buf[w++] = '\\'; break;
                case '/': buf[w++] = '/'; break;
                case 'b': buf[w++] = '\b'; break;
                case 'f': buf[w++] = '\f'; break;
                case 'n': buf[w++] = '\n'; break;
                case 'r': buf[w++] = '\r'; break;
                case 't': buf[w++] = '\t'; break;
                case 'u': {
                    uint32_t cp;
                    if (!read_hex4(p, &cp)) return false;
                    if (cp >= 0xd800 && cp <= 0xdbff) {
                        uint32_t lo;
                        if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                            return fail_at(p, "unpaired surrogate in \\u escape");
                        }
                        p->pos += 2;
                        if (!read_hex4(p, &lo)) return false;
                        if (lo < 0xdc00 || lo > 0xdfff) return fail_at(p, "unpaired surrogate in \\u escape");
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                        return fail_at(p, "unpaired surrogate in \\u escape");
                    }
                    if (cp == 0) return fail_at(p, "\\u0000 is not allowed in strings");
                    /* a \uXXXX escape (6 raw bytes) decodes to <= 3 bytes, a pair (12) to 4 */
                    w += put_utf8(buf + w, cp);
                    break;
                }
                default: return fail_at(p, "unknown escape in string");
            }
            if (p->pos > end) return fail_at(p, "escape runs past the end of the string");
        } else if (c < 0x80) {
            buf[w++] = (char)c;
            p->pos++;
        } else {
            size_t len = utf8_sequence((const unsigned char*)p->s + p->pos, end - p->pos);
            if (len == 0) return fail_at(p, "invalid UTF-8 in string");
            memcpy(buf + w, p->s + p->pos, len);
            w += len;
            p->pos += len;
        }
    }
    (void)escapes;
    buf[w] = '\0';
    p->pos = end + 1;
    *out = buf;
    *out_len = w;
    return true;
}

static bool parse_number(parser* p, m4j_value* v) {
    size_t start = p->pos;
    bool negative = false, integral = true;
    if (p->pos < p->n && p->s[p->pos] == '-') {
        negative = true;
        p->pos++;
    }
    if (p->pos >= p->n) return fail_at(p, "truncated number");
    if (p->s[p->pos] == '0') {
        p->pos++;
    } else if (p->s[p->pos] >= '1' && p->s[p->pos] <= '9') {
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
    } else {
        return fail_at(p, "bad number");
    }
    size_t int_end = p->pos;
    if (p->pos < p->n && p->s[p->pos] == '.') {
        integral = false;
        p->pos++;
        size_t d = p->pos;
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
        if (p->pos == d) return fail_at(p, "digits expected after '.'");
    }
    if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        integral = false;
        p->pos++;
        if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        size_t d = p->pos;
        while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
        if (p->pos == d) return fail_at(p, "digits expected in exponent");
    }
    size_t len = p->pos - start;
    if (len > 400) return fail_at(p, "number too long");
    char buf[401];
    memcpy(buf, p->s + start, len);
    buf[len] = '\0';
    v->type = M4J_NUMBER;
    v->number = strtod(buf, NULL);
    v->is_integer = false;
    if (integral) {
        /* exact int64 when it fits */
        uint64_t mag = 0;
        bool fits = true;
        for (size_t i = (negative ? 1 : 0); i < int_end - start; i++) {
            uint64_t d = (uint64_t)(buf[i] - '0');
            if (mag > (UINT64_MAX - d) / 10) {
                fits = false;
                break;
            }
            mag = mag * 10 + d;
        }
        if (fits && (negative ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX)) {
            v->is_integer = true;
            v->integer = negative ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
        }
    }
    return true;
}

static int compare_members(const void* a, const void* b) {
    const m4j_member* x = *(const m4j_member* const*)a;
    const m4j_member* y = *(const m4j_member* const*)b;
    size_t n = x->key_length < y->key_length ? x->key_length : y->key_length;
    int c = memcmp(x->key, y->key, n);
    if (c != 0) return c;
    return (x->key_length > y->key_length) - (x->key_length < y->key_length);
}

static bool parse_value(parser* p, m4j_value* v, int depth);

/* Growable temporary vector of values or members (malloc'd, moved to the arena at the end). */
/* Move the ``count`` elements grown in the heap buffer ``tmp`` into the arena (the
   buffer is freed either way); ``*out`` is NULL for an empty array or object. */
static bool move_to_arena(parser* p, void* tmp, size_t count, size_t size, void** out) {
    *out = NULL;
    if (count) {
        *out = arena_alloc(p->arena, count * size);
        if (!*out) {
            free(tmp);
            return fail_oom(p);
        }
        memcpy(*out, tmp, count * size);
    }
    free(tmp);
    return true;
}

static bool parse_array(parser* p, m4j_value* v, int depth) {
    p->pos++; /* [ */
    size_t cap = 0, count = 0;
    m4j_value* tmp = NULL;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ']') {
        p->pos++;
    } else {
        for (;;) {
            if (count == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                m4j_value* t = (ncap > SIZE_MAX / sizeof *tmp) ? NULL : (m4j_value*)realloc(tmp, ncap * sizeof *tmp);
                if (!t) {
                    free(tmp);
                    return fail_oom(p);
                }
                tmp = t;
                cap = ncap;
            }
            if (!parse_value(p, &tmp[count], depth + 1)) {
                free(tmp);
                return false;
            }
            count++;
            skip_ws(p);
            if (p->pos >= p->n) {
                free(tmp);
                return fail_at(p, "unterminated array");
            }
            char c = p->s[p->pos++];
            if (c == ']') break;
            if (c != ',') {
                free(tmp);
                return fail_at(p, "',' or ']' expected in array");
            }
        }
    }
    v->type = M4J_ARRAY;
    v->count = count;
    return move_to_arena(p, tmp, count, sizeof *tmp, (void**)&v->items);
}

static bool parse_object(parser* p, m4j_value* v, int depth) {
    p->pos++; /* { */
    size_t cap = 0, count = 0;
    m4j_member* tmp = NULL;
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == '}') {
        p->pos++;
    } else {
        for (;;) {
            if (count == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                m4j_member* t = (ncap > SIZE_MAX / sizeof *tmp) ? NULL : (m4j_member*)realloc(tmp, ncap * sizeof *tmp);
                if (!t) {
                    free(tmp);
                    return fail_oom(p);
                }
                tmp = t;
                cap = ncap;
            }
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != '"') {
                free(tmp);
                return fail_at(p, "string key expected in object");
            }
            if (!parse_string(p, &tmp[count].key, &tmp[count].key_length)) {
                free(tmp);
                return false;
            }
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') {
                free(tmp);
                return fail_at(p, "':' expected after key");
            }
            p->pos++;
            if (!parse_value(p, &tmp[count].value, depth + 1)) {
                free(tmp);
                return false;
            }
            count++;
            skip_ws(p);
            if (p->pos >= p->n) {
                free(tmp);
                return fail_at(p, "unterminated object");
            }
            char c = p->s[p->pos++];
            if (c == '}') break;
            if (c != ',') {
                free(tmp);
                return fail_at(p, "',' or '}' expected in object");
            }
        }
    }
    v->type = M4J_OBJECT;
    v->count = count;
    if (!move_to_arena(p, tmp, count, sizeof *tmp, (void**)&v->members)) return false;
    if (count > 1) { /* duplicate keys: sort pointers, compare neighbours */
        const m4j_member** order = (const m4j_member**)malloc(count * sizeof *order);
        if (!order) return fail_oom(p);
        for (size_t i = 0; i < count; i++) order[i] = &v->members[i];
        qsort(order, count, sizeof *order, compare_members);
        for (size_t i = 1; i < count; i++) {
            if (compare_members(&order[i - 1], &order[i]) == 0) {
                if (p->status == MIND4_SUCCESS) {
                    p->status = m4_fail(MIND4_CORRUPT_FILE, "%s: invalid JSON: duplicate key \"%.200s\"", p->what,
                                        order[i]->key);
                }
                free(order);
                return false;
            }
        }
        free(order);
    }
    return true;
}

static bool parse_value(parser* p, m4j_value* v, int depth) {
    memset(v, 0, sizeof *v);
    if (depth > M4J_MAX_DEPTH) return fail_at(p, "nesting too deep");
    skip_ws(p);
    if (p->pos >= p->n) return fail_at(p, "value expected");
    char c = p->s[p->pos];
    switch (c) {
        case '{': return parse_object(p, v, depth);
        case '[': return parse_array(p, v, depth);
        case '"':
            v->type = M4J_STRING;
            return parse_string(p, &v->string, &v->length);
        case 't':
            v->type = M4J_BOOL;
            v->boolean = true;
            return literal(p, "true");
        case 'f':
            v->type = M4J_BOOL;
            v->boolean = false;
            return literal(p, "false");
        case 'n': v->type = M4J_NULL; return literal(p, "null");
        default:
            if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
            return fail_at(p, "unexpected character");
    }
}

mind4_status m4j_parse(const char* text, size_t size, const char* what, m4j_document* doc_out) {
    if (!doc_out || (!text && size)) return m4_fail(MIND4_INVALID_ARGUMENT, "m4j_parse: NULL argument");
    arena* a = (arena*)calloc(1, sizeof *a);
    if (!a) return m4_fail(MIND4_OUT_OF_MEMORY, "%s: out of memory", what);
    parser p = {text, size, 0, what, a, MIND4_SUCCESS};
    m4j_value root;
    bool ok = parse_value(&p, &root, 0);
    if (ok) {
        skip_ws(&p);
        if (p.pos != p.n) ok = fail_at(&p, "trailing data after the JSON value");
    }
    if (!ok) {
        arena_free(a);
        free(a);
        return p.status;
    }
    doc_out->root = root;
    doc_out->arena = a;
    return MIND4_SUCCESS;
}

void m4j_free(m4j_document* doc) {
    if (!doc || !doc->arena) return;
    arena_free((arena*)doc->arena);
    free(doc->arena);
    doc->arena = NULL;
}

const m4j_value* m4j_get(const m4j_value* object, const char* key) {
    if (!object || object->type != M4J_OBJECT) return NULL;
    size_t len = strlen(key);
    for (size_t i = 0; i < object->count; i++) {
        const m4j_member* m = &object->members[i];
        if (m->key_length == len && memcmp(m->key, key, len) == 0) return &m->value;
    }
    return NULL;
}
