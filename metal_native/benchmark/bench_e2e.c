/* bench_e2e.c - end-to-end prefill and decode tokens/s of a random
 * gpt-oss-architecture model (default: the 64M-parameter "small" shape:
 * vocab 8192, hidden 512, 8 layers, 8 heads of 64, 2 KV heads, 8 experts
 * top-2, intermediate 512, window 128).
 *
 *   bench_e2e [--dtype f32|bf16] [--experts f32|bf16|mxfp4] [--threads 2]
 *             [--prefill 512] [--decode 256] [--reps 3] [--dir CHECKPOINT]
 *             [--placement auto|mapped|copied]
 *
 * --dir loads a checkpoint directory instead of building a model in memory.
 * --ab step|variant: paired comparison in one process, for a noisy shared
 * machine: decode alternates in blocks of 16 tokens (A B B A ...) between the
 * per-kernel path (A) and the decode step (B), or m4_ab_variant 0 (A) and 1
 * (B), and reports each one's tok/s over --reps rounds of --decode tokens.
 * --roofline 1: after every 16 decoded tokens, 2 passes over 256 MB with the
 * model's threads measure the DRAM read rate of that moment; reports decode's
 * weight-read rate as a fraction of it (the host's bandwidth varies with its
 * other tenants, the fraction much less).
 * Decode: tokens appended and processed one at a time after a prefill of
 * --prefill tokens; the reported figure is the median of --reps runs. */
#include "bench_util.h"
#include "ckpt_builder.h"
#include "engine.h"
#include "pool.h"

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

typedef struct read_task {
    const float* data;
    size_t n;
    float sink[64];
} read_task;

static void read_worker(void* arg, size_t index, size_t count) {
    read_task* t = (read_task*)arg;
    size_t b, e;
    m4_split(t->n, 1024, index, count, &b, &e);
    if (e > b && index < 64) t->sink[index] += m4_kernels()->max(t->data + b, e - b);
}

static void die(mind4_status st, const char* what) {
    if (st != MIND4_SUCCESS) {
        fprintf(stderr, "%s: %s: %s\n", what, mind4_status_string(st), mind4_last_error());
        exit(1);
    }
}

int main(int argc, char** argv) {
    const char* dtype = arg_str(argc, argv, "--dtype", "f32");
    const char* experts = arg_str(argc, argv, "--experts", dtype);
    const char* dir = arg_str(argc, argv, "--dir", NULL);
    uint32_t threads = (uint32_t)arg_int(argc, argv, "--threads", 2);
    size_t prefill = (size_t)arg_int(argc, argv, "--prefill", 512);
    size_t decode = (size_t)arg_int(argc, argv, "--decode", 256);
    int reps = (int)arg_int(argc, argv, "--reps", 3);
    if (reps < 1 || reps > 64) reps = 3;
    const char* st_dense = strcmp(dtype, "bf16") == 0 ? "BF16" : "F32";
    const char* st_experts = strcmp(experts, "mxfp4") == 0 ? "MXFP4" : (strcmp(experts, "bf16") == 0 ? "BF16" : "F32");

    mind4_model_options o;
    mind4_model_options_init(&o);
    o.num_threads = threads;
    const char* placement = arg_str(argc, argv, "--placement", "auto");
    o.weights_placement = strcmp(placement, "mapped") == 0   ? MIND4_WEIGHTS_MAPPED
                          : strcmp(placement, "copied") == 0 ? MIND4_WEIGHTS_COPIED
                                                             : MIND4_WEIGHTS_AUTO;
    mind4_model* model = NULL;
    cb_model cb;
    memset(&cb, 0, sizeof cb);
    double t0 = now_seconds();
    if (dir) {
        die(mind4_model_create_from_path(dir, &o, &model), dir);
    } else {
        mind4_model_config c;
        memset(&c, 0, sizeof c);
        c.vocab_size = 8192;
        c.hidden_size = 512;
        c.num_hidden_layers = 8;
        c.num_attention_heads = 8;
        c.num_key_value_heads = 2;
        c.head_dim = 64;
        c.intermediate_size = 512;
        c.num_experts = 8;
        c.experts_per_token = 2;
        c.initial_context_length = 4096;
        c.max_context_length = 4096;
        c.sliding_window = 128;
        c.rope_theta = 150000.0;
        c.rope_scaling_factor = 1.0;
        c.rope_ntk_alpha = 1.0;
        c.rope_ntk_beta = 32.0;
        c.swiglu_limit = 7.0;
        c.rms_norm_eps = 1e-5;
        cb_random_model(&cb, &c, st_dense, st_experts, 1, false);
        cb_build_image(&cb, 0);
        for (size_t i = 0; i < cb.n; i++) { /* keep only the image */
            free(cb.t[i].bytes);
            cb.t[i].bytes = NULL;
        }
        die(mind4_model_create_from_memory(cb.config_json, strlen(cb.config_json), cb.image, cb.image_size, &o, &model),
            "model");
    }
    double load = now_seconds() - t0;
    mind4_model_config c;
    mind4_model_get_config(model, &c);
    uint64_t total = 0, per_token = 0;
    mind4_model_get_weight_bytes(model, &total, &per_token);
    mind4_dtype dd, de;
    mind4_model_get_dtypes(model, &dd, &de);
    uint32_t nthreads = 0;
    mind4_model_get_num_threads(model, &nthreads);
    uint32_t placed = 0;
    mind4_model_get_weights_placement(model, &placed);
    printf("model: %s, dense %s, experts %s, %u threads, isa %s, %.1f MB of weights (%s), %.1f MB read per decoded "
           "token, load %.2f s\n",
           dir ? dir : "random 64M (small)", mind4_dtype_string(dd), mind4_dtype_string(de), nthreads,
           m4_isa_name(m4_kernels_isa()), (double)total / 1e6, placed == MIND4_WEIGHTS_COPIED ? "copied" : "mapped",
           (double)per_token / 1e6, load);

    size_t ctx_tokens = prefill + decode + 1;
    mind4_context* ctx = NULL;
    die(mind4_context_create(model, ctx_tokens, &ctx), "context");
    uint32_t* tokens = (uint32_t*)malloc(ctx_tokens * sizeof(uint32_t));
    for (size_t i = 0; i < ctx_tokens; i++) tokens[i] = (uint32_t)(m4_splitmix64(i) % c.vocab_size);
    mind4_sampler* sampler = NULL;
    die(mind4_sampler_create(&sampler), "sampler");
    die(mind4_sampler_set_params(sampler, 0.0f, 0, 1.0f), "sampler");

    if (arg_int(argc, argv, "--roofline", 0)) {
        size_t n = (size_t)64 << 20; /* 256 MB of floats */
        float* buf = (float*)m4_alloc_huge(n * sizeof(float));
        if (!buf) return 1;
        m4_fill_uniform(buf, n, 9, -1.0f, 1.0f);
        read_task rt;
        memset(&rt, 0, sizeof rt);
        rt.data = buf;
        rt.n = n;
        double t_dec = 0, t_read = 0;
        size_t n_dec = 0, n_read = 0;
        for (int r = -1; r < reps; r++) {
            die(mind4_context_reset(ctx, NULL, 0), "reset");
            die(mind4_context_append_tokens(ctx, tokens, prefill), "append");
            die(mind4_context_process(ctx), "prefill");
            for (size_t i = 0; i < decode; i++) {
                double a = now_seconds();
                uint32_t next;
                die(mind4_context_sample(ctx, sampler, &next), "sample");
                die(mind4_context_append_tokens(ctx, &next, 1), "append");
                die(mind4_context_process(ctx), "decode");
                double b = now_seconds();
                if (r >= 0) {
                    t_dec += b - a;
                    n_dec++;
                }
                if (i % 16 == 15) {
                    for (int pass = 0; pass < 2; pass++) m4_pool_run(model->pool, read_worker, &rt);
                    if (r >= 0) {
                        t_read += now_seconds() - b;
                        n_read += 2;
                    }
                }
            }
        }
        double dec_gbs = (double)per_token * (double)n_dec / t_dec / 1e9;
        double read_gbs = (double)n * 4.0 * (double)n_read / t_read / 1e9;
        printf("roofline: decode %.0f tok/s = %.1f GB/s of weights; DRAM read %.1f GB/s; fraction %.2f\n",
               (double)n_dec / t_dec, dec_gbs, read_gbs, dec_gbs / read_gbs);
        m4_free(buf);
        return 0;
    }
    const char* ab = arg_str(argc, argv, "--ab", NULL);
    if (ab) {
        int* knob = strcmp(ab, "step") == 0 ? &m4_decode_step_enabled : &m4_ab_variant;
        double t_ab[2] = {0, 0};
        size_t n_ab[2] = {0, 0};
        for (int r = -1; r < reps; r++) {
            die(mind4_context_reset(ctx, NULL, 0), "reset");
            die(mind4_context_append_tokens(ctx, tokens, prefill), "append");
            die(mind4_context_process(ctx), "prefill");
            for (size_t i = 0; i < decode; i++) {
                size_t block = i / 16;
                int which = (int)((block ^ (block >> 1)) & 1); /* A B B A A B B A ... */
                *knob = which;
                double a = now_seconds();
                uint32_t next;
                die(mind4_context_sample(ctx, sampler, &next), "sample");
                die(mind4_context_append_tokens(ctx, &next, 1), "append");
                die(mind4_context_process(ctx), "decode");
                if (r >= 0) {
                    t_ab[which] += now_seconds() - a;
                    n_ab[which]++;
                }
            }
        }
        *knob = strcmp(ab, "step") == 0 ? 1 : 0;
        printf("a/b %s: A %.0f tok/s   B %.0f tok/s   B/A %.3f\n", ab, (double)n_ab[0] / t_ab[0],
               (double)n_ab[1] / t_ab[1], ((double)n_ab[1] / t_ab[1]) / ((double)n_ab[0] / t_ab[0]));
        return 0;
    }
    double* prefill_s = (double*)calloc((size_t)reps, sizeof(double));
    double* decode_s = (double*)calloc((size_t)reps, sizeof(double));
    double* prefill_cpu = (double*)calloc((size_t)reps, sizeof(double));
    double* decode_cpu = (double*)calloc((size_t)reps, sizeof(double));
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up (page faults, caches) */
        die(mind4_context_reset(ctx, NULL, 0), "reset");
        die(mind4_context_append_tokens(ctx, tokens, prefill), "append");
        double a = now_seconds(), ca = cpu_seconds();
        die(mind4_context_process(ctx), "prefill");
        double b = now_seconds(), cb_ = cpu_seconds();
#if defined(M4_POOL_PROFILE)
        if (r == reps - 1) fprintf(stderr, "-- prefill\n");
        m4_pool_profile_dump();
#endif
        for (size_t i = 0; i < decode; i++) {
            uint32_t next;
            die(mind4_context_sample(ctx, sampler, &next), "sample");
            die(mind4_context_append_tokens(ctx, &next, 1), "append");
            die(mind4_context_process(ctx), "decode");
        }
        double d = now_seconds(), cd = cpu_seconds();
#if defined(M4_POOL_PROFILE)
        if (r == reps - 1) fprintf(stderr, "-- decode\n");
        m4_pool_profile_dump();
        m4_decode_profile_dump();
#endif
        if (r >= 0) {
            prefill_s[r] = b - a;
            decode_s[r] = d - b;
            prefill_cpu[r] = cb_ - ca;
            decode_cpu[r] = cd - cb_;
        }
    }
    qsort(prefill_s, (size_t)reps, sizeof(double), cmp_double);
    qsort(decode_s, (size_t)reps, sizeof(double), cmp_double);
    qsort(prefill_cpu, (size_t)reps, sizeof(double), cmp_double);
    qsort(decode_cpu, (size_t)reps, sizeof(double), cmp_double);
    double p = prefill_s[reps / 2], dcd = decode_s[reps / 2];
    /* CPU time per thread: what the run would take alone on its cores (it
     * also counts idle workers' spinning, so it is an upper bound) */
    double pc = prefill_cpu[reps / 2] / nthreads, dc = decode_cpu[reps / 2] / nthreads;
    printf("prefill: %zu tokens in %.4f s = %.0f tok/s   [cpu time/thread %.4f s = %.0f tok/s]\n", prefill, p,
           (double)prefill / p, pc, (double)prefill / pc);
    if (decode) {
        printf("decode:  %zu tokens in %.4f s = %.0f tok/s (%.1f GB/s of weights)   [cpu time/thread %.4f s = %.0f "
               "tok/s]\n",
               decode, dcd, (double)decode / dcd, (double)per_token * (double)decode / dcd / 1e9, dc,
               (double)decode / dc);
    }
    mind4_sampler_release(sampler);
    mind4_context_release(ctx);
    mind4_model_release(model);
    cb_free(&cb);
    free(tokens), free(prefill_s), free(decode_s), free(prefill_cpu), free(decode_cpu);
    return 0;
}
