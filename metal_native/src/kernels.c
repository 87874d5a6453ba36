/* kernels.c - ISA dispatch, the matmul driver and every layer kernel that is
 * not ISA-specific. See kernels.h for shapes and semantics. */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>

#if defined(M4_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
#define M4_CPU_CHECK 1
#elif defined(M4_HAVE_AVX2) && defined(_MSC_VER)
#include <immintrin.h>
#include <intrin.h>
#endif

/* ------------------------------------------------------------ dispatch */
/* the ISA in use, -1 until first asked (threads may race to set it: same value) */
#if defined(_MSC_VER) && !defined(__clang__)
static volatile long g_isa = -1;
#else
#include <stdatomic.h>
static _Atomic int g_isa = -1;
#endif

static bool cpu_has_avx2(void) {
#if defined(M4_CPU_CHECK)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif defined(M4_HAVE_AVX2) && defined(_MSC_VER)
    int info[4];
    __cpuid(info, 0);
    if (info[0] < 7) return false;
    __cpuidex(info, 7, 0);
    bool avx2 = (info[1] & (1 << 5)) != 0;
    __cpuid(info, 1);
    bool fma = (info[2] & (1 << 12)) != 0, osxsave = (info[2] & (1 << 27)) != 0;
    return avx2 && fma && osxsave && (_xgetbv(0) & 6) == 6;
#else
    return false;
#endif
}

m4_isa m4_kernels_isa(void) {
    int isa = (int)g_isa;
    if (isa < 0) {
        const char* env = getenv("MIND4_ISA");
        bool generic = env && strcmp(env, "generic") == 0;
        isa = (!generic && cpu_has_avx2()) ? M4_ISA_AVX2 : M4_ISA_GENERIC;
        g_isa = isa;
    }
    return (m4_isa)isa;
}

bool m4_kernels_force_isa(m4_isa isa) {
    if (isa == M4_ISA_AVX2 && !cpu_has_avx2()) return false;
    g_isa = (int)isa;
    return true;
}

const char* m4_isa_name(m4_isa isa) { return isa == M4_ISA_AVX2 ? "avx2+fma" : "generic"; }

const m4_isa_kernels* m4_kernels(void) {
#if defined(M4_HAVE_AVX2)
    if (m4_kernels_isa() == M4_ISA_AVX2) return &m4_avx2_kernels;
#endif
    return &m4_generic_kernels;
}

/* ------------------------------------------------------------ matrices */
m4_matrix m4_matrix_rows(const m4_matrix* m, size_t r0, size_t n) {
    m4_matrix s = *m;
    s.rows = n;
    switch (m->dtype) {
        case MIND4_DTYPE_F32: s.data = (const float*)m->data + r0 * m->cols; break;
        case MIND4_DTYPE_BF16: s.data = (const uint16_t*)m->data + r0 * m->cols; break;
        case MIND4_DTYPE_MXFP4:
            s.data = (const uint8_t*)m->data + r0 * (m->cols / 2);
            s.scales = m->scales + r0 * (m->cols / 32);
            break;
        default: break;
    }
    return s;
}

size_t m4_matrix_bytes(const m4_matrix* m) {
    switch (m->dtype) {
        case MIND4_DTYPE_F32: return m->rows * m->cols * 4;
        case MIND4_DTYPE_BF16: return m->rows * m->cols * 2;
        case MIND4_DTYPE_MXFP4: return m->rows * (m->cols / 2 + m->cols / 32);
        default: return 0;
    }
}

/* ------------------------------------------------------------ matmul */
#define PANEL_FLOATS 16384 /* a widened weight panel: 64 KiB of f32 */

size_t m4_matmul_scratch_floats(size_t cols) {
    size_t panel = M4_MAX((size_t)4, PANEL_FLOATS / (cols ? cols : 1)) * cols;
    return M4_MAX(panel, cols) + 64;
}

static size_t panel_rows(size_t cols) {
    size_t p = PANEL_FLOATS / (cols ? cols : 1);
    p = p < 4 ? 4 : (p / 4) * 4;
    return p;
}

/* x permuted per 32-block to (even elements, odd elements): low nibbles hold the even elements */
static void permute_for_mxfp4(const float* x, size_t K, float* xp) {
    for (size_t b = 0; b < K / 32; b++) {
        for (int j = 0; j < 16; j++) {
            xp[b * 32 + j] = x[b * 32 + 2 * j];
            xp[b * 32 + 16 + j] = x[b * 32 + 2 * j + 1];
        }
    }
}

void m4_matmul_rows(const m4_matmul_job* job, size_t r0, size_t r1, float* scratch) {
    const m4_isa_kernels* K = m4_kernels();
    const m4_matrix* w = job->w;
    size_t cols = w->cols, T = job->T;
    if (r0 >= r1 || T == 0) return;
    if (w->dtype == MIND4_DTYPE_F32) {
        if (T == 1) {
            K->gemv_f32((const float*)w->data, cols, job->x, job->bias, job->y, r0, r1, w->stream);
        } else {
            K->gemm_f32((const float*)w->data, cols, cols, job->x, job->ldx, T, job->bias, job->y, job->ldy, r0, r1);
        }
        return;
    }
    if (T < 4) { /* decode: stream the packed weights once per token */
        for (size_t t = 0; t < T; t++) {
            const float* x = job->x + t * job->ldx;
            float* y = job->y + t * job->ldy;
            if (w->dtype == MIND4_DTYPE_BF16) {
                K->gemv_bf16((const uint16_t*)w->data, cols, x, job->bias, y, r0, r1, w->stream);
            } else {
                permute_for_mxfp4(x, cols, scratch);
                K->gemv_mxfp4((const uint8_t*)w->data, w->scales, cols, scratch, job->bias, y, r0, r1, w->stream);
            }
        }
        return;
    }
    /* prefill: widen a panel of rows to f32 once, reuse it for every token */
    size_t P = panel_rows(cols);
    for (size_t p0 = r0; p0 < r1; p0 += P) {
        size_t n = M4_MIN(P, r1 - p0);
        for (size_t r = 0; r < n; r++) {
            if (w->dtype == MIND4_DTYPE_BF16) {
                K->bf16_to_f32((const uint16_t*)w->data + (p0 + r) * cols, cols, scratch + r * cols);
            } else {
                K->mxfp4_row((const uint8_t*)w->data + (p0 + r) * (cols / 2), w->scales + (p0 + r) * (cols / 32),
                             cols, scratch + r * cols);
            }
        }
        K->gemm_f32(scratch, cols, cols, job->x, job->ldx, T, job->bias ? job->bias + p0 : NULL, job->y + p0,
                    job->ldy, 0, n);
    }
}

typedef struct matmul_task {
    const m4_matmul_job* jobs;
    size_t num_jobs;
    float* scratch;
    size_t scratch_stride;
} matmul_task;

static void matmul_worker(void* arg, size_t index, size_t count) {
    const matmul_task* task = (const matmul_task*)arg;
    float* scratch = task->scratch ? task->scratch + index * task->scratch_stride : NULL;
    for (size_t j = 0; j < task->num_jobs; j++) {
        size_t r0, r1;
        m4_split(task->jobs[j].w->rows, 4, index, count, &r0, &r1);
        m4_matmul_rows(&task->jobs[j], r0, r1, scratch);
    }
}

void m4_matmul_batch(m4_pool* pool, const m4_matmul_job* jobs, size_t num_jobs, float* scratch,
                     size_t scratch_floats_per_thread) {
    matmul_task task = {jobs, num_jobs, scratch, scratch_floats_per_thread};
    m4_pool_run(pool, matmul_worker, &task);
}

void m4_matmul(m4_pool* pool, const m4_matrix* w, const float* bias, const float* x, size_t T, float* y,
               float* scratch, size_t scratch_floats_per_thread) {
    m4_matmul_job job = {w, bias, x, w->cols, y, w->rows, T};
    m4_matmul_batch(pool, &job, 1, scratch, scratch_floats_per_thread);
}

/* ------------------------------------------------------------- MXFP4 */
const float m4_fp4_values[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
                                 -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

void m4_mxfp4_decode(const uint8_t* blocks, const uint8_t* scales, size_t rows, size_t cols, float* out) {
    const m4_isa_kernels* K = m4_kernels();
    for (size_t r = 0; r < rows; r++) K->mxfp4_row(blocks + r * (cols / 2), scales + r * (cols / 32), cols, out + r * cols);
}

void m4_mxfp4_encode(const float* x, size_t rows, size_t cols, uint8_t* blocks, uint8_t* scales) {
    for (size_t r = 0; r < rows; r++) {
        for (size_t b = 0; b < cols / 32; b++) {
            const float* g = x + r * cols + b * 32;
            float amax = 0.0f;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(g[j]));
            int e = -127;
            if (amax > 0.0f) {
                /* smallest e with amax / 2^e <= 6, exactly: amax/6 = m * 2^p with m in [0.5, 1),
                   so e = p - 1 when m == 0.5 (a power of two) and p otherwise (as mind4_core.mxfp4) */
                int p;
                double m = frexp((double)amax / 6.0, &p);
                e = m == 0.5 ? p - 1 : p;
                if (e < -127) e = -127;
                if (e > 127) e = 127;
            }
            float inv = (float)ldexp(1.0, -e); /* exact power of two */
            float divisor = (float)ldexp(1.0, e);
            uint8_t codes[32];
            for (int j = 0; j < 32; j++) {
                float scaled = e == -127 ? g[j] / divisor : g[j] * inv;
                float mag = fabsf(scaled);
                int best = 0;
                float best_d = fabsf(mag - m4_fp4_values[0]);
                for (int c = 1; c < 8; c++) {
                    float d = fabsf(mag - m4_fp4_values[c]);
                    /* nearest value; a tie (between adjacent codes) goes to the even code,
                       the rule of mind4_core.mxfp4 and the oracle */
                    if (d < best_d || (d == best_d && c % 2 == 0)) {
                        best_d = d;
                        best = c;
                    }
                }
                uint8_t code = (uint8_t)best;
                if (best != 0 && scaled < 0.0f) code |= 8;
                codes[j] = code;
            }
            for (int j = 0; j < 16; j++) blocks[(r * (cols / 32) + b) * 16 + j] = (uint8_t)(codes[2 * j] | (codes[2 * j + 1] << 4));
            scales[r * (cols / 32) + b] = (uint8_t)(e + 127);
        }
    }
}

/* ------------------------------------------------------------- dtype */
void m4_bf16_to_f32_array(const uint16_t* src, size_t n, float* dst) { m4_kernels()->bf16_to_f32(src, n, dst); }

void m4_f32_to_bf16_array(const float* src, size_t n, uint16_t* dst) {
    for (size_t i = 0; i < n; i++) dst[i] = m4_f32_to_bf16(src[i]);
}

void m4_f16_to_f32_array(const uint16_t* src, size_t n, float* dst) {
    for (size_t i = 0; i < n; i++) dst[i] = m4_f16_to_f32(src[i]);
}

/* ------------------------------------------------------------- layers */
void m4_embedding(const m4_matrix* table, const uint32_t* tokens, size_t T, float* out) {
    size_t H = table->cols;
    for (size_t t = 0; t < T; t++) {
        if (table->dtype == MIND4_DTYPE_BF16) {
            m4_bf16_to_f32_array((const uint16_t*)table->data + (size_t)tokens[t] * H, H, out + t * H);
        } else {
            memcpy(out + t * H, (const float*)table->data + (size_t)tokens[t] * H, H * sizeof(float));
        }
    }
}

void m4_rmsnorm(const float* x, const float* scale, float eps, size_t T, size_t H, float* y) {
    for (size_t t = 0; t < T; t++) {
        const float* xt = x + t * H;
        float* yt = y + t * H;
        double acc[8] = {0};
        size_t i = 0;
        for (; i + 8 <= H; i += 8) {
            for (int j = 0; j < 8; j++) acc[j] += (double)xt[i + j] * xt[i + j];
        }
        double ss = 0.0;
        for (; i < H; i++) ss += (double)xt[i] * xt[i];
        for (int j = 0; j < 8; j++) ss += acc[j];
        float r = (float)(1.0 / sqrt(ss / (double)H + (double)eps));
        for (i = 0; i < H; i++) yt[i] = xt[i] * r * scale[i];
    }
}

void m4_rope_init(size_t head_dim, double theta, double f, double ntk_alpha, double ntk_beta, double L0,
                  double* inv_freq, double* concentration) {
    size_t half = head_dim / 2;
    const double pi = 3.14159265358979323846;
    double low = 0.0, high = 0.0;
    if (f > 1.0) {
        low = (double)half * log(L0 / (ntk_beta * 2.0 * pi)) / log(theta);
        high = (double)half * log(L0 / (ntk_alpha * 2.0 * pi)) / log(theta);
        if (low < 0.0) low = 0.0;
        if (high > (double)head_dim - 1.0) high = (double)head_dim - 1.0;
    }
    for (size_t i = 0; i < half; i++) {
        double freq = pow(theta, (double)(2 * i) / (double)head_dim);
        if (f > 1.0) {
            double denom = high - low;
            double ramp = denom != 0.0 ? ((double)i - low) / denom : ((double)i > low ? 1.0 : 0.0);
            if (ramp < 0.0) ramp = 0.0;
            if (ramp > 1.0) ramp = 1.0;
            inv_freq[i] = (1.0 / (f * freq)) * ramp + (1.0 / freq) * (1.0 - ramp);
        } else {
            inv_freq[i] = 1.0 / freq;
        }
    }
    *concentration = f > 1.0 ? 0.1 * log(f) + 1.0 : 1.0;
}

void m4_rope_table(const double* inv_freq, double concentration, size_t half, size_t position0, size_t T,
                   float* cos_out, float* sin_out) {
    for (size_t t = 0; t < T; t++) {
        double pos = (double)(position0 + t);
        for (size_t i = 0; i < half; i++) {
            double a = pos * inv_freq[i];
            cos_out[t * half + i] = (float)(cos(a) * concentration);
            sin_out[t * half + i] = (float)(sin(a) * concentration);
        }
    }
}

void m4_rope_apply(float* x, size_t T, size_t row_stride, size_t num_heads, size_t head_dim, const float* cos_table,
                   const float* sin_table) {
    size_t half = head_dim / 2;
    for (size_t t = 0; t < T; t++) {
        const float* c = cos_table + t * half;
        const float* s = sin_table + t * half;
        for (size_t h = 0; h < num_heads; h++) {
            float* a = x + t * row_stride + h * head_dim;
            float* b = a + half;
            for (size_t i = 0; i < half; i++) {
                float x1 = a[i], x2 = b[i];
                a[i] = x1 * c[i] - x2 * s[i];
                b[i] = x2 * c[i] + x1 * s[i];
            }
        }
    }
}

#define SDPA_BQ 16  /* queries of one head per work item */
#define SDPA_BK 128 /* keys per block */

size_t m4_sdpa_scratch_floats(size_t head_dim) { return SDPA_BQ * SDPA_BK + SDPA_BQ * head_dim + 2 * SDPA_BQ + 64; }

typedef struct sdpa_task {
    const m4_sdpa_args* a;
    m4_dynamic work;
} sdpa_task;

/* A block of query rows that share one KV head: either tokens [t0, t0 + nq)
 * of head h (prefill), or heads [h, h + nq) of token t0 (decode: the heads of
 * a GQA group read each key and value once). */
typedef struct sdpa_rows {
    size_t h, t0, nq;
    bool heads; /* rows are heads of one token */
} sdpa_rows;

static void sdpa_block(const m4_sdpa_args* a, sdpa_rows rows, float* scratch) {
    const m4_isa_kernels* K = m4_kernels();
    size_t D = a->D, g = rows.h / (a->Hq / a->Hkv), nq = rows.nq;
    size_t ldkv = a->kv_row_stride ? a->kv_row_stride : a->Hkv * D;
    size_t head_stride = a->kv_row_stride ? a->kv_head_stride : D;
    float* S = scratch;                       /* [BQ, BK] scores */
    float* acc = S + SDPA_BQ * SDPA_BK;       /* [BQ, D] unnormalised outputs */
    float* m = acc + SDPA_BQ * D;             /* [BQ] running max (scaled units) */
    float* l = m + SDPA_BQ;                   /* [BQ] running sum */
    size_t pos_step = rows.heads ? 0 : 1;
    size_t p_first = a->offset + rows.t0, p_last = p_first + (nq - 1) * pos_step;
    size_t lo = (a->window > 0 && p_first + 1 > a->window) ? p_first + 1 - a->window : 0;
    const float* q = a->q + rows.t0 * a->q_stride + rows.h * D;
    size_t ldq = rows.heads ? D : a->q_stride;
    const float* kbase = a->k + g * head_stride;
    const float* vbase = a->v + g * head_stride;
    for (size_t r = 0; r < nq; r++) {
        m[r] = a->sinks[rows.heads ? rows.h + r : rows.h]; /* the sink joins the softmax: exp(0) = 1 */
        l[r] = 1.0f;
    }
    memset(acc, 0, nq * D * sizeof(float));
    for (size_t s0 = lo; s0 <= p_last; s0 += SDPA_BK) {
        size_t nk = M4_MIN((size_t)SDPA_BK, p_last + 1 - s0);
        /* S[r, j] = q_r . k_{s0 + j} */
        K->gemm_f32(kbase + s0 * ldkv, ldkv, D, q, ldq, nq, NULL, S, SDPA_BK, 0, nk);
        for (size_t r = 0; r < nq; r++) {
            size_t p = p_first + r * pos_step;
            size_t first = (a->window > 0 && p + 1 > a->window) ? p + 1 - a->window : 0;
            size_t jlo = first > s0 ? first - s0 : 0;
            if (p < s0 || jlo >= nk) continue; /* no visible key in this block */
            size_t jhi = M4_MIN(p - s0, nk - 1);
            size_t n = jhi - jlo + 1;
            float* row = S + r * SDPA_BK + jlo;
            float mx = K->max(row, n) * a->sm_scale;
            float mnew = mx > m[r] ? mx : m[r];
            float alpha = expf(m[r] - mnew);
            float sum = K->exp_sum(row, n, a->sm_scale, mnew);
            float* o = acc + r * D;
            if (alpha != 1.0f) {
                for (size_t d = 0; d < D; d++) o[d] *= alpha;
            }
            l[r] = l[r] * alpha + sum;
            m[r] = mnew;
            K->pv(row, n, vbase + (s0 + jlo) * ldkv, ldkv, o, D);
        }
    }
    for (size_t r = 0; r < nq; r++) {
        float inv = 1.0f / l[r];
        size_t t = rows.heads ? rows.t0 : rows.t0 + r, h = rows.heads ? rows.h + r : rows.h;
        float* out = a->out + (t * a->Hq + h) * D;
        for (size_t d = 0; d < D; d++) out[d] = acc[r * D + d] * inv;
    }
}

static void sdpa_worker(void* arg, size_t index, size_t count) {
    (void)count;
    sdpa_task* task = (sdpa_task*)arg;
    const m4_sdpa_args* a = task->a;
    float* scratch = a->scratch + index * a->scratch_floats_per_thread;
    size_t group = a->Hq / a->Hkv, b, e;
    while (m4_dynamic_next(&task->work, &b, &e)) {
        for (size_t i = b; i < e; i++) {
            sdpa_rows rows;
            if (a->T == 1) { /* item i: a chunk of at most BQ heads of one GQA group */
                size_t chunks = (group + SDPA_BQ - 1) / SDPA_BQ, g = i / chunks, c = i % chunks;
                rows.h = g * group + c * SDPA_BQ;
                rows.nq = M4_MIN((size_t)SDPA_BQ, group - c * SDPA_BQ);
                rows.t0 = 0;
                rows.heads = true;
            } else { /* item i: head i % Hq, query block i / Hq */
                rows.h = i % a->Hq;
                rows.t0 = (i / a->Hq) * SDPA_BQ;
                rows.nq = M4_MIN((size_t)SDPA_BQ, a->T - rows.t0);
                rows.heads = false;
            }
            sdpa_block(a, rows, scratch);
        }
    }
}

void m4_sdpa_decode_group(const m4_sdpa_args* a, size_t g, float* scratch) {
    size_t group = a->Hq / a->Hkv;
    for (size_t c = 0; c * SDPA_BQ < group; c++) {
        sdpa_rows rows = {g * group + c * SDPA_BQ, 0, M4_MIN((size_t)SDPA_BQ, group - c * SDPA_BQ), true};
        sdpa_block(a, rows, scratch);
    }
}

void m4_sdpa(m4_pool* pool, const m4_sdpa_args* args) {
    sdpa_task task;
    task.a = args;
    size_t group = args->Hq / args->Hkv;
    size_t items = args->T == 1 ? args->Hkv * ((group + SDPA_BQ - 1) / SDPA_BQ)
                                : ((args->T + SDPA_BQ - 1) / SDPA_BQ) * args->Hq;
    m4_dynamic_init(&task.work, items, 1);
    m4_pool_run(pool, sdpa_worker, &task);
}

void m4_topk_softmax(const float* logits, size_t T, size_t E, size_t k, uint32_t* indices, float* weights) {
    for (size_t t = 0; t < T; t++) {
        const float* l = logits + t * E;
        uint32_t* idx = indices + t * k;
        float* w = weights + t * k;
        size_t n = 0; /* sorted descending; a later equal value goes after (lower index first) */
        for (size_t e = 0; e < E; e++) {
            float v = l[e];
            if (n == k && !(v > l[idx[n - 1]])) continue;
            size_t pos = n < k ? n : k - 1;
            while (pos > 0 && v > l[idx[pos - 1]]) {
                if (pos < k) idx[pos] = idx[pos - 1];
                pos--;
            }
            idx[pos] = (uint32_t)e;
            if (n < k) n++;
        }
        float m = l[idx[0]];
        double sum = 0.0;
        for (size_t i = 0; i < k; i++) {
            double e = exp((double)l[idx[i]] - m);
            w[i] = (float)e;
            sum += e;
        }
        for (size_t i = 0; i < k; i++) w[i] = (float)(w[i] / sum);
    }
}

void m4_swiglu(const float* h, size_t T, size_t I, float limit, float* out) {
    const m4_isa_kernels* K = m4_kernels();
    for (size_t t = 0; t < T; t++) K->swiglu_row(h + t * 2 * I, I, limit, out + t * I);
}

/* ------------------------------------------------------------- random */
uint64_t m4_splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static double unit(uint64_t seed, uint64_t i) { /* [0, 1) with 53 random bits */
    return (double)(m4_splitmix64(seed ^ m4_splitmix64(i)) >> 11) * (1.0 / 9007199254740992.0);
}

void m4_fill_uniform(float* x, size_t n, uint64_t seed, float lo, float hi) {
    /* [lo, hi): a double just below hi can round to hi itself as a float (seen: 3.0 in
     * [-2, 3) with seed 1370940575), so such a value is moved to the float below hi */
    const float top = nextafterf(hi, lo);
    for (size_t i = 0; i < n; i++) {
        float v = (float)(lo + (hi - lo) * unit(seed, i));
        x[i] = v < hi ? v : top;
    }
}

void m4_fill_normal(float* x, size_t n, uint64_t seed, float mean, float std) {
    const double two_pi = 6.28318530717958647692;
    for (size_t i = 0; i < n; i += 2) { /* Box-Muller on the pair (i, i + 1) */
        double u1 = 1.0 - unit(seed, 2 * (uint64_t)i), u2 = unit(seed, 2 * (uint64_t)i + 1);
        double r = sqrt(-2.0 * log(u1));
        x[i] = (float)(mean + std * r * cos(two_pi * u2));
        if (i + 1 < n) x[i + 1] = (float)(mean + std * r * sin(two_pi * u2));
    }
}

/* ------------------------------------------------------------- sampling */
static int compare_entries(const void* a, const void* b) {
    const m4_sample_entry* x = (const m4_sample_entry*)a;
    const m4_sample_entry* y = (const m4_sample_entry*)b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static bool entry_before(const m4_sample_entry* x, const m4_sample_entry* y) { return compare_entries(x, y) < 0; }

/* Heap whose root is the latest entry in sample order (the worst kept one). */
static void sift_down(m4_sample_entry* h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && entry_before(&h[w], &h[l])) w = l;
        if (r < n && entry_before(&h[w], &h[r])) w = r;
        if (w == i) return;
        m4_sample_entry t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Heap whose root is the earliest entry in sample order (the best one). */
static void sift_down_best(m4_sample_entry* h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && entry_before(&h[l], &h[w])) w = l;
        if (r < n && entry_before(&h[r], &h[w])) w = r;
        if (w == i) return;
        m4_sample_entry t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Move the k first entries (in sample order) to w[0..k), in any order. */
static void select_top(m4_sample_entry* w, size_t n, size_t k) {
    for (size_t i = k / 2; i-- > 0;) sift_down(w, k, i);
    for (size_t i = k; i < n; i++) {
        if (entry_before(&w[i], &w[0])) {
            w[0] = w[i];
            sift_down(w, k, 0);
        }
    }
}

/* Fills work[0..*kept) with the kept entries in descending order, p holding
 * unnormalised probabilities exp(z - max); returns their sum. When nothing is
 * filtered, *kept = V and work is in index order (unsorted). */
static double kept_entries(const float* logits, size_t V, float temperature, uint32_t top_k, float top_p,
                           m4_sample_entry* work, size_t* kept) {
    double inv_t = 1.0 / (double)temperature;
    float m = logits[0];
    for (size_t i = 1; i < V; i++) m = logits[i] > m ? logits[i] : m;
    double total = 0.0;
    for (size_t i = 0; i < V; i++) {
        /* infinite maxima: the tokens at the maximum share the mass equally */
        double e = isinf(m) ? (logits[i] == m ? 1.0 : 0.0) : exp(((double)logits[i] - (double)m) * inv_t);
        work[i].p = (float)e;
        work[i].index = (uint32_t)i;
        total += (double)work[i].p;
    }
    size_t n = V;
    if (top_k > 0 && top_k < V) {
        select_top(work, V, top_k); /* the k first in sample order, any order */
        n = top_k;
    }
    if (top_p < 1.0f) {
        /* pop best-first from a heap until the popped mass reaches top_p of
         * the candidates' mass: O(V + kept log V) instead of a full sort */
        double norm = 0.0, mass = 0.0;
        for (size_t i = 0; i < n; i++) norm += (double)work[i].p;
        double target = (double)top_p * norm;
        for (size_t i = n / 2; i-- > 0;) sift_down_best(work, n, i);
        size_t end = n;
        while (end > 0 && mass < target) { /* preceding mass < top_p: keep the next best */
            m4_sample_entry best = work[0];
            work[0] = work[end - 1];
            work[end - 1] = best;
            mass += (double)best.p;
            end--;
            sift_down_best(work, end, 0);
        }
        size_t keep = n - end; /* kept: work[end..n), best last */
        for (size_t i = 0; i < keep && i < n - 1 - i; i++) { /* to the front, best first */
            m4_sample_entry t = work[i];
            work[i] = work[n - 1 - i];
            work[n - 1 - i] = t;
        }
        n = keep ? keep : 1;
    }
    if (n < V || top_p < 1.0f) {
        total = 0.0;
        for (size_t i = 0; i < n; i++) total += (double)work[i].p;
    }
    *kept = n;
    return total;
}

static bool has_nan(const float* x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (x[i] != x[i]) return true;
    }
    return false;
}

static uint32_t argmax(const float* logits, size_t V) {
    size_t best = 0;
    for (size_t i = 1; i < V; i++) {
        if (logits[i] > logits[best]) best = i;
    }
    return (uint32_t)best;
}

bool m4_sample_distribution(const float* logits, size_t V, float temperature, uint32_t top_k, float top_p,
                            float* probs, m4_sample_entry* work) {
    if (V == 0 || has_nan(logits, V)) return false;
    memset(probs, 0, V * sizeof(float));
    if (temperature == 0.0f) {
        probs[argmax(logits, V)] = 1.0f;
        return true;
    }
    size_t n;
    double total = kept_entries(logits, V, temperature, top_k, top_p, work, &n);
    for (size_t i = 0; i < n; i++) probs[work[i].index] = (float)((double)work[i].p / total);
    return true;
}

bool m4_sample_draw(const float* logits, size_t V, float temperature, uint32_t top_k, float top_p, double u,
                    uint32_t* token, m4_sample_entry* work) {
    if (V == 0 || has_nan(logits, V)) return false;
    if (temperature == 0.0f) {
        *token = argmax(logits, V);
        return true;
    }
    size_t n;
    double total = kept_entries(logits, V, temperature, top_k, top_p, work, &n);
    double target = u * total, cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += (double)work[i].p;
        if (cum > target && work[i].p > 0.0f) {
            *token = work[i].index;
            return true;
        }
    }
    for (size_t i = n; i-- > 0;) { /* rounding: the last token with mass */
        if (work[i].p > 0.0f) {
            *token = work[i].index;
            return true;
        }
    }
    *token = work[0].index;
    return true;
}
