/* bench_util.h - timing and argument helpers for the benchmarks. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>
static double now_seconds(void) {
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)f.QuadPart;
}
static double cpu_seconds(void) { /* CPU time of the process (all threads) */
    FILETIME c, e, k, u;
    GetProcessTimes(GetCurrentProcess(), &c, &e, &k, &u);
    return ((double)u.dwLowDateTime + 4294967296.0 * (double)u.dwHighDateTime) * 1e-7;
}
#else
#include <time.h>
static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static double cpu_seconds(void) { /* CPU time of the process (all threads, spinning included) */
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
#endif

/* --name value lookup; returns def when absent */
static const char* arg_str(int argc, char** argv, const char* name, const char* def) {
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    }
    return def;
}
static long arg_int(int argc, char** argv, const char* name, long def) {
    const char* s = arg_str(argc, argv, name, NULL);
    return s ? strtol(s, NULL, 10) : def;
}

/* best (minimum) time of `reps` runs of body, after one warm-up */
#define BEST_OF(reps, out_seconds, body)                 \
    do {                                                 \
        body;                                            \
        double best_ = 1e30;                             \
        for (int r_ = 0; r_ < (reps); r_++) {            \
            double t0_ = now_seconds();                  \
            body;                                        \
            double dt_ = now_seconds() - t0_;            \
            if (dt_ < best_) best_ = dt_;                \
        }                                                \
        (out_seconds) = best_;                           \
    } while (0)

#endif
