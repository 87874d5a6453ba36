/* json.h - a small strict JSON parser (RFC 8259) for config.json and
 * safetensors headers. Rejects: trailing data, duplicate object keys, control
 * characters in strings, invalid UTF-8 escapes, "\u0000", nesting deeper than
 * M4J_MAX_DEPTH, and numbers outside the grammar. All memory lives in one
 * arena freed by m4j_free. */
#ifndef M4_JSON_H
#define M4_JSON_H

#include "common.h"

#define M4J_MAX_DEPTH 64

typedef enum m4j_type { M4J_NULL, M4J_BOOL, M4J_NUMBER, M4J_STRING, M4J_ARRAY, M4J_OBJECT } m4j_type;

typedef struct m4j_value m4j_value;
typedef struct m4j_member m4j_member;

struct m4j_value {
    m4j_type type;
    bool boolean;
    /* numbers: the double value; is_integer when written without fraction or
     * exponent and within int64 range (then integer holds it exactly) */
    double number;
    bool is_integer;
    int64_t integer;
    /* strings: decoded UTF-8, NUL-terminated (no embedded NUL) */
    const char* string;
    size_t length;
    /* arrays: items[0..count); objects: members[0..count) in file order */
    m4j_value* items;
    m4j_member* members;
    size_t count;
};

struct m4j_member {
    const char* key;
    size_t key_length;
    m4j_value value;
};

typedef struct m4j_document {
    m4j_value root;
    void* arena;
} m4j_document;

/* Parse text[0..size). On failure the error sentence names `what` and the
 * byte offset; returns MIND4_CORRUPT_FILE or MIND4_OUT_OF_MEMORY. */
mind4_status m4j_parse(const char* text, size_t size, const char* what, m4j_document* doc_out);
void m4j_free(m4j_document* doc);

/* The member of an object named key, or NULL. */
const m4j_value* m4j_get(const m4j_value* object, const char* key);

#endif
