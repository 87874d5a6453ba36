/* checkpoint.h - a canonical gpt-oss checkpoint: config.json + safetensors
 * files, opened and validated (names, dtypes, shapes against the config)
 * before any tensor data is touched. */
#ifndef M4_CHECKPOINT_H
#define M4_CHECKPOINT_H

#include "common.h"
#include "json.h"
#include "mapfile.h"
#include "safetensors.h"

#define M4_MAX_CONFIG_BYTES (1u << 20)
#define M4_MAX_NAME 128

mind4_status m4_config_parse(const char* text, size_t size, const char* what, mind4_model_config* out);

/* How one logical canonical weight is stored. */
typedef struct m4_ckpt_weight {
    mind4_dtype dtype;            /* F32 / BF16 / F16, or MXFP4 */
    const m4_st_tensor* tensor;   /* the dense tensor, or the .blocks tensor */
    const m4_st_tensor* scales;   /* MXFP4 only */
} m4_ckpt_weight;

typedef struct m4_checkpoint {
    mind4_model_config config;
    char* path;                    /* directory, or "<memory>" */
    m4_mapped_file* files;
    size_t num_files;
    m4_safetensors* parsed;        /* one per file */
    size_t num_parsed;
    char** file_paths;             /* one per file: where each tensor comes from, for messages */
    size_t num_file_paths;
    const m4_st_tensor** by_name;  /* every tensor, sorted by name */
    size_t num_tensors;
    bool* used;                    /* by_name[i] belongs to a canonical weight */
} m4_checkpoint;

/* config_json may be NULL: read dir/config.json */
mind4_status m4_checkpoint_open_path(const char* dir, const char* config_json, size_t config_size, m4_checkpoint* out);
mind4_status m4_checkpoint_open_memory(const char* config_json, size_t config_size, const void* safetensors,
                                       size_t safetensors_size, m4_checkpoint* out);
void m4_checkpoint_close(m4_checkpoint* ckpt);

/* A canonical weight by logical name (MXFP4 resolved from .blocks/.scales);
 * dtype/shape were validated when the checkpoint was opened. */
mind4_status m4_checkpoint_weight(const m4_checkpoint* ckpt, const char* name, m4_ckpt_weight* out);

#endif
