/* pool.h - a small thread pool for data-parallel kernels.
 *
 * m4_pool_run(pool, fn, arg) calls fn(arg, i, n) once for every thread index
 * i < n (index 0 runs on the caller) and returns when all have finished.
 * Idle workers spin briefly (decode issues dozens of dispatches per token),
 * then sleep on a condition variable. Concurrent callers are serialised. */
#ifndef M4_POOL_H
#define M4_POOL_H

#include "common.h"

typedef struct m4_pool m4_pool;
typedef void (*m4_task_fn)(void* arg, size_t thread_index, size_t num_threads);

mind4_status m4_pool_create(uint32_t num_threads, m4_pool** pool_out);
void m4_pool_destroy(m4_pool* pool);
size_t m4_pool_size(const m4_pool* pool);
void m4_pool_run(m4_pool* pool, m4_task_fn fn, void* arg);

/* Dynamic scheduling helper: threads grab [begin, end) chunks of [0, n) from a
 * shared counter until none remain. */
typedef struct m4_dynamic {
#if defined(_MSC_VER) && !defined(__clang__)
    volatile long long next;
#else
    _Atomic size_t next;
#endif
    size_t n, chunk;
} m4_dynamic;
void m4_dynamic_init(m4_dynamic* d, size_t n, size_t chunk);
bool m4_dynamic_next(m4_dynamic* d, size_t* begin, size_t* end);

/* Barrier for the threads running one m4_pool_run task: every thread calls
 * it the same number of times and it returns once all have arrived. It
 * spins (then yields): meant for the short phases of a decode step. */
void m4_pool_barrier(m4_pool* pool);

/* Work stealing over [0, n) in chunks: thread i owns the i-th of `count`
 * contiguous ranges (aligned to chunk) and takes its chunks in order, so it
 * reads the same rows every time; when its range is used up it takes chunks
 * from the other ranges. Initialise before the task starts (or behind a
 * barrier); each part sits on its own cache line. */
typedef struct m4_steal_part {
#if defined(_MSC_VER) && !defined(__clang__)
    volatile long long next;
#else
    _Atomic size_t next;
#endif
    size_t end;
    unsigned char pad[64 - 2 * sizeof(size_t)];
} m4_steal_part;
typedef struct m4_steal {
    m4_steal_part* parts; /* [count] */
    size_t count, chunk;
} m4_steal;
void m4_steal_init(m4_steal* s, m4_steal_part* parts, size_t count, size_t n, size_t chunk);
bool m4_steal_next(m4_steal* s, size_t self, size_t* begin, size_t* end);

/* Static split of [0, n) into num_threads parts aligned to `align`. */
static inline void m4_split(size_t n, size_t align, size_t index, size_t count, size_t* begin, size_t* end) {
    size_t units = (n + align - 1) / align;
    size_t b = units * index / count, e = units * (index + 1) / count;
    *begin = M4_MIN(b * align, n);
    *end = M4_MIN(e * align, n);
}

#if defined(M4_POOL_PROFILE)
void m4_pool_profile_dump(void);
#endif

/* Number of online CPUs (>= 1). */
uint32_t m4_num_cpus(void);

#endif
