/* m4test.h - a tiny test harness: CHECK macros, relative errors against
 * double-precision references, fresh random inputs (seed printed, override
 * with MIND4_TEST_SEED), and a loop over the kernel ISAs this CPU runs. */
#ifndef M4TEST_H
#define M4TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "kernels.h"
#include "mind4.h"

static int g_failures = 0;
static int g_checks = 0;
static uint64_t g_seed = 0;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        g_checks++;                                                            \
        if (!(cond)) {                                                         \
            g_failures++;                                                      \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, " [seed %llu]\n", (unsigned long long)g_seed);    \
        }                                                                      \
    } while (0)

#define CHECK_STATUS(expr, want)                                                               \
    do {                                                                                       \
        mind4_status got_ = (expr);                                                            \
        CHECK(got_ == (want), "%s returned %s (want %s): %s", #expr, mind4_status_string(got_), \
              mind4_status_string(want), mind4_last_error());                                  \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, MIND4_SUCCESS)

static inline void test_init(const char* name) {
    const char* env = getenv("MIND4_TEST_SEED");
    g_seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    printf("%s: seed %llu\n", name, (unsigned long long)g_seed);
}

static inline int test_finish(const char* name) {
    printf("%s: %d checks, %d failures\n", name, g_checks, g_failures);
    return g_failures ? 1 : 0;
}

/* xoshiro-free simple generator for tests: splitmix on a counter */
static uint64_t g_rng_counter = 0;
static inline double rnd_unit(void) {
    return (double)(m4_splitmix64(g_seed * 0x9e3779b97f4a7c15ull + g_rng_counter++) >> 11) * (1.0 / 9007199254740992.0);
}
static inline double rnd_normal(void) {
    double u1 = 1.0 - rnd_unit(), u2 = rnd_unit();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
static inline size_t rnd_int(size_t lo, size_t hi) { /* [lo, hi] */
    return lo + (size_t)(rnd_unit() * (double)(hi - lo + 1));
}
static inline void rnd_fill(float* x, size_t n, double std) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(rnd_normal() * std);
}

/* ||out - ref|| / ||ref|| */
static inline double rel_err(const float* out, const double* ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)out[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    if (den == 0.0) return sqrt(num);
    return sqrt(num / den);
}

static inline double* dalloc(size_t n) {
    double* p = (double*)calloc(n ? n : 1, sizeof(double));
    if (!p) {
        fprintf(stderr, "test: out of memory\n");
        exit(2);
    }
    return p;
}
static inline float* falloc(size_t n) {
    float* p = (float*)calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "test: out of memory\n");
        exit(2);
    }
    return p;
}

/* Run body once per ISA the CPU supports. */
#define FOR_EACH_ISA(isa_var)                                                          \
    for (int isa_var = 0; isa_var <= 1; isa_var++)                                     \
        if (m4_kernels_force_isa((m4_isa)isa_var) && printf("  isa %s\n", m4_isa_name((m4_isa)isa_var)))

#endif
