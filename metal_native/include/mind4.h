/*
 * mind4.h - the C API of metal_native, Mind 4's native gpt-oss engine.
 *
 * Conventions
 * - Every function returns a mind4_status. MIND4_SUCCESS is 0; anything else is
 *   an error and leaves the output arguments unchanged. No function aborts,
 *   exits or prints, whatever the input: bad input gives a status, and
 *   mind4_last_error() gives a sentence saying what was wrong and where
 *   (file, tensor, field) for the calling thread's latest failure.
 * - Handles (model, context, sampler, tokenizer view) are opaque and reference
 *   counted: *_create returns a handle holding one reference; *_retain adds one;
 *   *_release drops one and frees the object when the count reaches zero.
 *   A context holds a reference to its model.
 * - One handle may be used from several threads, but not concurrently: calls on
 *   the same context (or sampler) must be serialised by the caller. Contexts of
 *   the same model may run concurrently; they share the model's thread pool,
 *   which serialises their kernels.
 * - Token ids are uint32_t; logits and probabilities are float32.
 */
#ifndef MIND4_H
#define MIND4_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MIND4_API_VERSION 1

typedef enum mind4_status {
    MIND4_SUCCESS = 0,
    MIND4_INVALID_ARGUMENT = 1,  /* a NULL pointer, a value out of range, a wrong state */
    MIND4_UNSUPPORTED = 2,       /* valid, but this build cannot do it (a dtype, a layout) */
    MIND4_IO_ERROR = 3,          /* a file cannot be opened, read or mapped */
    MIND4_OUT_OF_MEMORY = 4,     /* an allocation failed or a size overflowed */
    MIND4_CONTEXT_OVERFLOW = 5,  /* more tokens than the context can hold */
    MIND4_CORRUPT_FILE = 6,      /* malformed JSON or safetensors, offsets past the end, ... */
    MIND4_CONFIG_MISMATCH = 7,   /* a tensor's name, shape or dtype disagrees with config.json */
    MIND4_NOT_FOUND = 8,         /* a file or a tensor that must exist does not */
    MIND4_INTERNAL_ERROR = 9,    /* a bug: please report it */
} mind4_status;

/* Data types of weights. */
typedef enum mind4_dtype {
    MIND4_DTYPE_AUTO = 0,  /* options only: keep what the file stores */
    MIND4_DTYPE_F32 = 1,
    MIND4_DTYPE_BF16 = 2,
    MIND4_DTYPE_F16 = 3,
    MIND4_DTYPE_MXFP4 = 4,  /* expert weights only: .blocks uint8 + .scales E8M0 */
} mind4_dtype;

/* A static, never-NULL name of a status ("success", "invalid argument", ...). */
const char* mind4_status_string(mind4_status status);

/* A static, never-NULL name of a dtype ("float32", "bfloat16", ...). */
const char* mind4_dtype_string(mind4_dtype dtype);

/* The calling thread's latest error sentence ("" if none yet). The pointer is
 * valid until the next mind4 call on this thread. */
const char* mind4_last_error(void);

/* MIND4_API_VERSION of the library actually linked. */
uint32_t mind4_api_version(void);

/* ------------------------------------------------------------------ model */

/* The shape of a gpt-oss-architecture model (config.json field names). */
typedef struct mind4_model_config {
    uint32_t vocab_size;
    uint32_t hidden_size;
    uint32_t num_hidden_layers;
    uint32_t num_attention_heads;
    uint32_t num_key_value_heads;
    uint32_t head_dim;
    uint32_t intermediate_size;
    uint32_t num_experts;
    uint32_t experts_per_token;
    uint32_t initial_context_length;
    uint32_t max_context_length;
    uint32_t sliding_window; /* window of even layers; 0 = none */
    double rope_theta;
    double rope_scaling_factor;
    double rope_ntk_alpha;
    double rope_ntk_beta;
    double swiglu_limit;
    double rms_norm_eps;
} mind4_model_config;

typedef struct mind4_model_options {
    /* worker threads including the caller; 0 = number of online CPUs */
    uint32_t num_threads;
    /* dtype of the dense weights (embedding, attention, router, unembedding)
     * and of non-MXFP4 expert weights: AUTO keeps the file's (float16 is
     * widened to float32), F32 or BF16 converts at load. */
    mind4_dtype weight_dtype;
    /* nonzero: scan every weight at load and fail with MIND4_CORRUPT_FILE,
     * naming the tensor, if one holds NaN or infinity (or an MXFP4 scale of
     * 0xFF, NaN in E8M0). Zero skips the scan: a NaN weight then yields NaN
     * logits, which mind4_sampler_sample / mind4_context_sample reject with
     * MIND4_INVALID_ARGUMENT. Default: 1. */
    uint32_t check_finite;
    /* non-NULL: config.json text used instead of the checkpoint directory's
     * own config.json (a caller that validated or overrode the config). */
    const char* config_json;
    size_t config_json_size;
    /* Where the weights live: MIND4_WEIGHTS_AUTO copies them out of the file
     * mapping (or the caller's buffer) into anonymous memory backed by huge
     * pages where the OS allows (decode reads the whole model per token; 4 KiB
     * pages cost a TLB miss every 4 KiB) when they take less than a quarter of
     * physical memory, else keeps the zero-copy mapping. */
    uint32_t weights_placement;
} mind4_model_options;

enum {
    MIND4_WEIGHTS_AUTO = 0,
    MIND4_WEIGHTS_MAPPED = 1, /* zero copy: read from the file mapping */
    MIND4_WEIGHTS_COPIED = 2, /* copied into (huge-page) anonymous memory */
};

typedef struct mind4_model mind4_model;

/* Fill *options with defaults (all threads, file dtypes, check_finite on). */
mind4_status mind4_model_options_init(mind4_model_options* options);

/* Load a checkpoint directory: config.json + one or more *.safetensors files in
 * the canonical gpt-oss layout. Files are memory-mapped; every tensor's name,
 * dtype, shape, offsets and extent are validated against config.json before
 * any is used. options may be NULL (defaults). */
mind4_status mind4_model_create_from_path(
    const char* checkpoint_dir, const mind4_model_options* options, mind4_model** model_out);

/* The same from memory: config.json text and one safetensors image. The
 * buffers must stay valid and unchanged until the model is released. */
mind4_status mind4_model_create_from_memory(
    const char* config_json, size_t config_json_size, const void* safetensors,
    size_t safetensors_size, const mind4_model_options* options, mind4_model** model_out);

mind4_status mind4_model_get_config(const mind4_model* model, mind4_model_config* config_out);

/* Where the weights ended up: MIND4_WEIGHTS_MAPPED or MIND4_WEIGHTS_COPIED. */
mind4_status mind4_model_get_weights_placement(const mind4_model* model, uint32_t* placement_out);

/* dtypes the model computes with: dense weights and expert weights. */
mind4_status mind4_model_get_dtypes(
    const mind4_model* model, mind4_dtype* dense_out, mind4_dtype* experts_out);

mind4_status mind4_model_get_num_threads(const mind4_model* model, uint32_t* num_threads_out);

/* Bytes of weights the model reads: in total, and per decoded token (dense
 * weights + experts_per_token experts per layer, one embedding row). */
mind4_status mind4_model_get_weight_bytes(
    const mind4_model* model, uint64_t* total_out, uint64_t* per_token_out);

mind4_status mind4_model_retain(mind4_model* model);
mind4_status mind4_model_release(mind4_model* model); /* NULL is accepted */

/* ---------------------------------------------------------------- context */

/* A token sequence with its KV cache. Tokens are appended, then processed
 * (prefill / decode); logits of the last processed token stay readable. */
typedef struct mind4_context mind4_context;

/* max_tokens = 0 means the model's max_context_length. */
mind4_status mind4_context_create(mind4_model* model, size_t max_tokens, mind4_context** context_out);

mind4_status mind4_context_get_max_tokens(const mind4_context* context, size_t* max_tokens_out);
mind4_status mind4_context_get_num_tokens(const mind4_context* context, size_t* num_tokens_out);
/* How many of the tokens have their keys/values in the cache. */
mind4_status mind4_context_get_num_processed(const mind4_context* context, size_t* num_processed_out);

/* Copy up to capacity token ids into tokens_out; *num_tokens_out gets the count held. */
mind4_status mind4_context_get_tokens(
    const mind4_context* context, uint32_t* tokens_out, size_t capacity, size_t* num_tokens_out);

/* Append tokens without processing them. MIND4_CONTEXT_OVERFLOW if they do not
 * fit (nothing is appended then); MIND4_INVALID_ARGUMENT for an id >= vocab. */
mind4_status mind4_context_append_tokens(mind4_context* context, const uint32_t* tokens, size_t num_tokens);

/* Run the model over the tokens not yet processed (prefill, or one decode
 * step), writing their keys/values into the cache and computing the logits of
 * the last token. A no-op when everything is processed and the logits are
 * current; after a truncate, the last token is reprocessed for its logits. */
mind4_status mind4_context_process(mind4_context* context);

/* As mind4_context_process, and also write the logits of every newly processed
 * token, row after row, into logits_out (capacity in floats, at least
 * new_tokens * vocab_size). *num_rows_out gets the number of rows written. */
mind4_status mind4_context_process_all(
    mind4_context* context, float* logits_out, size_t capacity, size_t* num_rows_out);

/* Copy the vocab_size logits of the last processed token. MIND4_INVALID_ARGUMENT
 * if there are none (nothing processed, or tokens pending). */
mind4_status mind4_context_get_logits(const mind4_context* context, float* logits_out, size_t capacity);

/* Keep the first num_tokens tokens (their cache stays valid); drop the rest. */
mind4_status mind4_context_truncate(mind4_context* context, size_t num_tokens);

/* Replace the sequence by tokens[0..num_tokens), keeping the cache of the
 * longest prefix shared with the processed tokens (at least the last token is
 * reprocessed, so logits follow). num_tokens may be 0 (clear). */
mind4_status mind4_context_reset(mind4_context* context, const uint32_t* tokens, size_t num_tokens);

typedef struct mind4_sampler mind4_sampler;

/* Process pending tokens if any, then draw the next token from the last
 * logits with the sampler (the token is not appended). */
mind4_status mind4_context_sample(mind4_context* context, mind4_sampler* sampler, uint32_t* token_out);

mind4_status mind4_context_retain(mind4_context* context);
mind4_status mind4_context_release(mind4_context* context); /* NULL is accepted */

/* ---------------------------------------------------------------- sampler */

/* Semantics (the same as mind4_core.protocols.Sampler):
 * temperature 0 -> argmax (lowest index on ties). Otherwise
 * p = softmax(logits / temperature); top_k > 0 keeps the k most probable
 * tokens (lower index first on equal probability); top_p < 1 then keeps, in
 * descending order of probability, each token whose preceding cumulative mass
 * is < top_p; the kept probabilities are renormalised. A seeded generator
 * (xoshiro256**) draws the same tokens for the same seed and calls. */
mind4_status mind4_sampler_create(mind4_sampler** sampler_out);

/* temperature: finite, >= 0; top_k: 0 = off; top_p: in (0, 1], 1 = off. */
mind4_status mind4_sampler_set_params(mind4_sampler* sampler, float temperature, uint32_t top_k, float top_p);
mind4_status mind4_sampler_get_params(
    const mind4_sampler* sampler, float* temperature_out, uint32_t* top_k_out, float* top_p_out);

/* Restart the random stream from a seed. */
mind4_status mind4_sampler_set_seed(mind4_sampler* sampler, uint64_t seed);

/* Draw one token from logits[0..vocab_size). NaN logits are an error. */
mind4_status mind4_sampler_sample(
    mind4_sampler* sampler, const float* logits, size_t vocab_size, uint32_t* token_out);

/* The distribution mind4_sampler_sample draws from (one-hot at temperature 0). */
mind4_status mind4_sampler_probabilities(
    const mind4_sampler* sampler, const float* logits, size_t vocab_size, float* probabilities_out);

mind4_status mind4_sampler_retain(mind4_sampler* sampler);
mind4_status mind4_sampler_release(mind4_sampler* sampler); /* NULL is accepted */

/* -------------------------------------------------------- tokenizer view */

/* A view of a byte-level BPE vocabulary: token id <-> bytes (it does not
 * encode text). Built from a tiktoken ranks file, one "<base64 token> <rank>"
 * per line with ranks 0..N-1 and every token distinct; special tokens are
 * added with their ids (>= N). */
typedef struct mind4_tokenizer mind4_tokenizer;

mind4_status mind4_tokenizer_create_from_file(const char* ranks_path, mind4_tokenizer** tokenizer_out);
mind4_status mind4_tokenizer_create_from_memory(const char* ranks_text, size_t size, mind4_tokenizer** tokenizer_out);

/* Register a special token (e.g. "<|start|>") at id >= the ranked tokens. */
mind4_status mind4_tokenizer_add_special(mind4_tokenizer* tokenizer, uint32_t id, const char* text, size_t size);

/* num_ranked: ids 0..N-1 from the ranks; vocab_size: 1 + the largest id known. */
mind4_status mind4_tokenizer_get_num_tokens(
    const mind4_tokenizer* tokenizer, uint32_t* num_ranked_out, uint32_t* vocab_size_out);

/* The bytes of one token (valid while the tokenizer lives). MIND4_NOT_FOUND for
 * an id with no token (a gap between ranked and special ids). */
mind4_status mind4_tokenizer_get_token(
    const mind4_tokenizer* tokenizer, uint32_t id, const uint8_t** bytes_out, size_t* size_out);

/* Concatenated bytes of ids[0..n). *size_out gets the bytes needed; when
 * capacity is smaller, MIND4_INVALID_ARGUMENT and nothing is written. */
mind4_status mind4_tokenizer_decode(const mind4_tokenizer* tokenizer, const uint32_t* ids, size_t num_ids,
                                    uint8_t* bytes_out, size_t capacity, size_t* size_out);

/* The id whose bytes are exactly bytes[0..size) (ranked or special), or MIND4_NOT_FOUND. */
mind4_status mind4_tokenizer_find(
    const mind4_tokenizer* tokenizer, const uint8_t* bytes, size_t size, uint32_t* id_out);

mind4_status mind4_tokenizer_retain(mind4_tokenizer* tokenizer);
mind4_status mind4_tokenizer_release(mind4_tokenizer* tokenizer); /* NULL is accepted */

#ifdef __cplusplus
}
#endif

#endif /* MIND4_H */
