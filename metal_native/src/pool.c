/* pool.c - see pool.h. pthreads on POSIX, Win32 threads on Windows. */
#include "pool.h"

#include <stdlib.h>

#if defined(_WIN32)
#include <windows.h>
#define thread_yield() SwitchToThread()
typedef HANDLE m4_thread;
typedef CRITICAL_SECTION m4_mutex;
typedef CONDITION_VARIABLE m4_cond;
#define mutex_init(m) (InitializeCriticalSection(m), 0)
#define mutex_destroy(m) DeleteCriticalSection(m)
#define mutex_lock(m) EnterCriticalSection(m)
#define mutex_unlock(m) LeaveCriticalSection(m)
#define cond_init(c) (InitializeConditionVariable(c), 0)
#define cond_destroy(c) ((void)0)
#define cond_wait(c, m) SleepConditionVariableCS(c, m, INFINITE)
#define cond_broadcast(c) WakeAllConditionVariable(c)
#else
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#define thread_yield() sched_yield()
typedef pthread_t m4_thread;
typedef pthread_mutex_t m4_mutex;
typedef pthread_cond_t m4_cond;
#define mutex_init(m) pthread_mutex_init(m, NULL)
#define mutex_destroy(m) pthread_mutex_destroy(m)
#define mutex_lock(m) pthread_mutex_lock(m)
#define mutex_unlock(m) pthread_mutex_unlock(m)
#define cond_init(c) pthread_cond_init(c, NULL)
#define cond_destroy(c) pthread_cond_destroy(c)
#define cond_wait(c, m) pthread_cond_wait(c, m)
#define cond_broadcast(c) pthread_cond_broadcast(c)
#endif

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

#if defined(_MSC_VER) && !defined(__clang__)
typedef volatile long long atomic_sz;
#define a_load(p) InterlockedOr64((p), 0)
#define a_store(p, v) InterlockedExchange64((p), (long long)(v))
#define a_add(p, v) (InterlockedExchangeAdd64((p), (long long)(v)))
#else
#include <stdatomic.h>
typedef _Atomic size_t atomic_sz;
#define a_load(p) atomic_load(p)
#define a_store(p, v) atomic_store((p), (v))
#define a_add(p, v) atomic_fetch_add((p), (v))
#endif

/* Idle workers poll with a pause instruction, then yield their core between
 * polls (a waiting thread must not starve the one it waits for when the
 * machine is oversubscribed), then sleep. */
#define PAUSE_POLLS 2000
#define SPIN_POLLS 20000

#if defined(M4_POOL_PROFILE)
/* Developer profiling (-DM4_POOL_PROFILE): per dispatch, the caller's time
 * since the previous dispatch returned (serial work), and every thread's
 * start and end; m4_pool_profile_dump prints averages per task function. */
#include <stdio.h>
#include <time.h>
#define PROF_MAX 64
static double prof_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
typedef struct prof_site {
    m4_task_fn fn;
    size_t calls;
    double serial, wake, work_min, work_max, tail, total;
} prof_site;
static prof_site g_prof[PROF_MAX];
static double g_prof_last_return, g_prof_start[1024], g_prof_end[1024];
void m4_pool_profile_dump(void) {
    double all = 0;
    for (int i = 0; i < PROF_MAX && g_prof[i].fn; i++) all += g_prof[i].serial + g_prof[i].total;
    for (int i = 0; i < PROF_MAX && g_prof[i].fn; i++) {
        prof_site* p = &g_prof[i];
        double c = (double)p->calls;
        fprintf(stderr,
                "site %d: %zu calls  serial-before %.2f us  wake %.2f us  work min %.2f max %.2f us  tail %.2f us  "
                "total %.2f us  (%.1f%% of all)\n",
                i, p->calls, 1e6 * p->serial / c, 1e6 * p->wake / c, 1e6 * p->work_min / c, 1e6 * p->work_max / c,
                1e6 * p->tail / c, 1e6 * p->total / c, 100 * (p->serial + p->total) / all);
    }
    memset(g_prof, 0, sizeof g_prof);
}
#endif

struct m4_pool {
    size_t num_threads;
    m4_thread* threads;
    m4_mutex mutex;  /* guards sleeping */
    m4_cond wake;
    m4_mutex run_mutex; /* serialises m4_pool_run callers */
    atomic_sz generation;
    atomic_sz pending;   /* workers still running the current task */
    atomic_sz sleepers;
    atomic_sz stop;
    m4_task_fn fn;
    void* arg;
    /* m4_pool_barrier: arrivals and the generation, on their own cache lines */
    unsigned char pad0[64];
    atomic_sz bar_count;
    unsigned char pad1[64 - sizeof(atomic_sz)];
    atomic_sz bar_gen;
    unsigned char pad2[64 - sizeof(atomic_sz)];
};

typedef struct worker_arg {
    m4_pool* pool;
    size_t index;
} worker_arg;

static void worker_loop(m4_pool* pool, size_t index) {
    size_t seen = 0;
    for (;;) {
        size_t gen;
        int polls = 0;
        while ((gen = (size_t)a_load(&pool->generation)) == seen && !a_load(&pool->stop)) {
            if (++polls < SPIN_POLLS) {
                if (polls < PAUSE_POLLS) {
                    cpu_relax();
                } else {
                    thread_yield();
                }
                continue;
            }
            mutex_lock(&pool->mutex);
            a_add(&pool->sleepers, 1);
            while ((size_t)a_load(&pool->generation) == seen && !a_load(&pool->stop)) cond_wait(&pool->wake, &pool->mutex);
            a_add(&pool->sleepers, (size_t)-1);
            mutex_unlock(&pool->mutex);
            polls = 0;
        }
        if (a_load(&pool->stop)) return;
        seen = gen;
#if defined(M4_POOL_PROFILE)
        g_prof_start[index] = prof_now();
#endif
        pool->fn(pool->arg, index, pool->num_threads);
#if defined(M4_POOL_PROFILE)
        g_prof_end[index] = prof_now();
#endif
        a_add(&pool->pending, (size_t)-1);
    }
}

#if defined(_WIN32)
static DWORD WINAPI worker_main(LPVOID p) {
#else
static void* worker_main(void* p) {
#endif
    worker_arg a = *(worker_arg*)p;
    free(p);
    worker_loop(a.pool, a.index);
    return 0;
}

uint32_t m4_num_cpus(void) {
#if defined(_WIN32)
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwNumberOfProcessors ? (uint32_t)si.dwNumberOfProcessors : 1;
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (uint32_t)n : 1;
#endif
}

mind4_status m4_pool_create(uint32_t num_threads, m4_pool** pool_out) {
    if (num_threads == 0) num_threads = m4_num_cpus();
    if (num_threads > 1024) return m4_fail(MIND4_INVALID_ARGUMENT, "num_threads %u is more than 1024", num_threads);
    m4_pool* pool = (m4_pool*)calloc(1, sizeof *pool);
    if (!pool) return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory creating the thread pool");
    pool->num_threads = num_threads;
    a_store(&pool->generation, 0);
    a_store(&pool->pending, 0);
    a_store(&pool->sleepers, 0);
    a_store(&pool->stop, 0);
    a_store(&pool->bar_count, 0);
    a_store(&pool->bar_gen, 0);
    if (mutex_init(&pool->mutex) != 0 || mutex_init(&pool->run_mutex) != 0 || cond_init(&pool->wake) != 0) {
        free(pool);
        return m4_fail(MIND4_INTERNAL_ERROR, "cannot create thread pool synchronisation objects");
    }
    pool->threads = (m4_thread*)calloc(num_threads, sizeof *pool->threads);
    if (!pool->threads) {
        m4_pool_destroy(pool);
        return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory creating the thread pool");
    }
    for (size_t i = 1; i < num_threads; i++) {
        worker_arg* a = (worker_arg*)malloc(sizeof *a);
        if (!a) {
            pool->num_threads = i; /* join only the started ones */
            m4_pool_destroy(pool);
            return m4_fail(MIND4_OUT_OF_MEMORY, "out of memory creating the thread pool");
        }
        a->pool = pool;
        a->index = i;
#if defined(_WIN32)
        pool->threads[i] = CreateThread(NULL, 0, worker_main, a, 0, NULL);
        bool ok = pool->threads[i] != NULL;
#else
        bool ok = pthread_create(&pool->threads[i], NULL, worker_main, a) == 0;
#endif
        if (!ok) {
            free(a);
            pool->num_threads = i;
            m4_pool_destroy(pool);
            return m4_fail(MIND4_INTERNAL_ERROR, "cannot start worker thread %zu", i);
        }
    }
    *pool_out = pool;
    return MIND4_SUCCESS;
}

void m4_pool_destroy(m4_pool* pool) {
    if (!pool) return;
    mutex_lock(&pool->mutex);
    a_store(&pool->stop, 1);
    cond_broadcast(&pool->wake);
    mutex_unlock(&pool->mutex);
    if (pool->threads) {
        for (size_t i = 1; i < pool->num_threads; i++) {
#if defined(_WIN32)
            WaitForSingleObject(pool->threads[i], INFINITE);
            CloseHandle(pool->threads[i]);
#else
            pthread_join(pool->threads[i], NULL);
#endif
        }
    }
    free(pool->threads);
    cond_destroy(&pool->wake);
    mutex_destroy(&pool->mutex);
    mutex_destroy(&pool->run_mutex);
    free(pool);
}

size_t m4_pool_size(const m4_pool* pool) { return pool ? pool->num_threads : 1; }

void m4_pool_run(m4_pool* pool, m4_task_fn fn, void* arg) {
    if (!pool || pool->num_threads <= 1) {
        fn(arg, 0, 1);
        return;
    }
    mutex_lock(&pool->run_mutex);
#if defined(M4_POOL_PROFILE)
    double t_call = prof_now();
#endif
    pool->fn = fn;
    pool->arg = arg;
    a_store(&pool->pending, pool->num_threads - 1);
    a_add(&pool->generation, 1);
    if (a_load(&pool->sleepers) > 0) {
        mutex_lock(&pool->mutex);
        cond_broadcast(&pool->wake);
        mutex_unlock(&pool->mutex);
    }
#if defined(M4_POOL_PROFILE)
    g_prof_start[0] = prof_now();
#endif
    fn(arg, 0, pool->num_threads);
#if defined(M4_POOL_PROFILE)
    g_prof_end[0] = prof_now();
#endif
    for (int polls = 0; a_load(&pool->pending) != 0; polls++) {
        if (polls < PAUSE_POLLS) {
            cpu_relax();
        } else {
            thread_yield();
        }
    }
#if defined(M4_POOL_PROFILE)
    double t_ret = prof_now();
    int site = 0;
    while (site < PROF_MAX - 1 && g_prof[site].fn && g_prof[site].fn != fn) site++;
    prof_site* p = &g_prof[site];
    p->fn = fn;
    p->calls++;
    if (g_prof_last_return > 0) p->serial += t_call - g_prof_last_return;
    double wmin = 1e9, wmax = 0, smax = 0, emax = 0;
    for (size_t i = 0; i < pool->num_threads; i++) {
        double w = g_prof_end[i] - g_prof_start[i];
        wmin = w < wmin ? w : wmin;
        wmax = w > wmax ? w : wmax;
        smax = g_prof_start[i] > smax ? g_prof_start[i] : smax;
        emax = g_prof_end[i] > emax ? g_prof_end[i] : emax;
    }
    p->wake += smax - t_call;
    p->work_min += wmin;
    p->work_max += wmax;
    p->tail += t_ret - emax;
    p->total += t_ret - t_call;
    g_prof_last_return = t_ret;
#endif
    mutex_unlock(&pool->run_mutex);
}

void m4_pool_barrier(m4_pool* pool) {
    if (!pool || pool->num_threads <= 1) return;
    size_t gen = (size_t)a_load(&pool->bar_gen);
    if ((size_t)a_add(&pool->bar_count, 1) == pool->num_threads - 1) {
        a_store(&pool->bar_count, 0); /* the last one in resets, then releases the others */
        a_add(&pool->bar_gen, 1);
        return;
    }
    for (int polls = 0; (size_t)a_load(&pool->bar_gen) == gen; polls++) {
        if (polls < PAUSE_POLLS) {
            cpu_relax();
        } else {
            thread_yield();
        }
    }
}

void m4_steal_init(m4_steal* s, m4_steal_part* parts, size_t count, size_t n, size_t chunk) {
    s->parts = parts;
    s->count = count ? count : 1;
    s->chunk = chunk ? chunk : 1;
    for (size_t i = 0; i < s->count; i++) {
        size_t b, e;
        m4_split(n, s->chunk, i, s->count, &b, &e);
        a_store(&parts[i].next, b);
        parts[i].end = e;
    }
}

bool m4_steal_next(m4_steal* s, size_t self, size_t* begin, size_t* end) {
    for (size_t i = 0; i < s->count; i++) {
        m4_steal_part* p = &s->parts[(self + i) % s->count];
        if ((size_t)a_load(&p->next) >= p->end) continue; /* used up: skip without writing its line */
        size_t b = (size_t)a_add(&p->next, s->chunk);
        if (b < p->end) {
            *begin = b;
            *end = M4_MIN(b + s->chunk, p->end);
            return true;
        }
    }
    return false;
}

void m4_dynamic_init(m4_dynamic* d, size_t n, size_t chunk) {
    a_store(&d->next, 0);
    d->n = n;
    d->chunk = chunk ? chunk : 1;
}

bool m4_dynamic_next(m4_dynamic* d, size_t* begin, size_t* end) {
    size_t b = (size_t)a_add(&d->next, d->chunk);
    if (b >= d->n) return false;
    *begin = b;
    *end = M4_MIN(b + d->chunk, d->n);
    return true;
}
