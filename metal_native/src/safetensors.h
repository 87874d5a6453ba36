/* safetensors.h - parse and validate a safetensors image held in memory.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype": str, "shape": [int...], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {str: str}}, then the data area; offsets are relative to it.
 * Checked: N within the file, strict JSON, known keys only, known dtypes,
 * at most M4_ST_MAX_DIMS dims, element count * size without overflow and equal
 * to end - begin, end within the data area, no two tensors overlapping. */
#ifndef M4_SAFETENSORS_H
#define M4_SAFETENSORS_H

#include "common.h"
#include "json.h"

#define M4_ST_MAX_DIMS 8
#define M4_ST_MAX_HEADER (100u << 20)

typedef enum m4_st_dtype {
    M4_ST_F64, M4_ST_F32, M4_ST_F16, M4_ST_BF16, M4_ST_I64, M4_ST_I32, M4_ST_I16, M4_ST_I8,
    M4_ST_U64, M4_ST_U32, M4_ST_U16, M4_ST_U8, M4_ST_BOOL, M4_ST_F8_E4M3, M4_ST_F8_E5M2,
} m4_st_dtype;

typedef struct m4_st_tensor {
    const char* name;
    size_t name_length;
    m4_st_dtype dtype;
    const char* dtype_name;
    uint32_t ndim;
    uint64_t shape[M4_ST_MAX_DIMS];
    uint64_t numel;
    size_t begin;                /* offset in the data area */
    size_t nbytes;
    const unsigned char* data;   /* header end + begin */
    uint32_t file_index;         /* which file of a checkpoint (set by the caller) */
} m4_st_tensor;

typedef struct m4_safetensors {
    m4_st_tensor* tensors;
    size_t count;
    size_t data_offset; /* 8 + N */
    m4j_document doc;   /* owns the names */
} m4_safetensors;

mind4_status m4_st_parse(const unsigned char* data, size_t size, const char* what, m4_safetensors* out);
void m4_st_free(m4_safetensors* st);

size_t m4_st_dtype_size(m4_st_dtype dtype);

#endif
