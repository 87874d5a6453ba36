/* bench_memory.c - read bandwidth of the kinds of memory weights can live in,
 * with the thread pool and access pattern of decode: every thread streams its
 * contiguous half of a buffer the size of one decoded token's weights.
 *
 *   bench_memory [--threads 2] [--mb 88] [--reps 20]
 *
 * Kinds: "anon 4K" (malloc'd, huge pages advised off where Linux allows),
 * "anon huge" (m4_alloc_huge: 2 MiB aligned, MADV_HUGEPAGE), and on POSIX
 * "file mmap" (a temporary file mapped read-only, like a checkpoint). Also a
 * split read: the same bytes in 40 dispatches per pass (the pool's
 * synchronisation cost at decode's granularity). */
#if !defined(_WIN32)
#define _DEFAULT_SOURCE 1 /* madvise, MADV_* */
#endif
#include "bench_util.h"
#include "kernels.h"
#include "pool.h"

#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

typedef struct read_task {
    const float* data;
    size_t n;       /* floats */
    float sink[64]; /* per-thread results, so the reads are not optimised away */
} read_task;

static void read_worker(void* arg, size_t index, size_t count) {
    read_task* t = (read_task*)arg;
    size_t b, e;
    m4_split(t->n, 1024, index, count, &b, &e);
    if (e > b) t->sink[index] += m4_kernels()->max(t->data + b, e - b);
}

static double read_pass(m4_pool* pool, const float* data, size_t n, size_t pieces, int reps) {
    read_task t;
    memset(&t, 0, sizeof t);
    double best;
    size_t piece = n / pieces;
    BEST_OF(reps, best, {
        for (size_t p = 0; p < pieces; p++) {
            t.data = data + p * piece;
            t.n = piece;
            m4_pool_run(pool, read_worker, &t);
        }
    });
    return (double)(piece * pieces) * 4 / best / 1e9;
}

static void report(m4_pool* pool, const char* kind, const float* data, size_t n, int reps) {
    printf("  %-12s one pass %6.1f GB/s   40 pieces %6.1f GB/s\n", kind, read_pass(pool, data, n, 1, reps),
           read_pass(pool, data, n, 40, reps));
}

int main(int argc, char** argv) {
    size_t threads = (size_t)arg_int(argc, argv, "--threads", 2);
    size_t mb = (size_t)arg_int(argc, argv, "--mb", 88);
    int reps = (int)arg_int(argc, argv, "--reps", 20);
    size_t n = mb * 1000 * 1000 / 4 / 4096 * 4096; /* floats, a multiple of 40 x 1024 */
    n = n / (40 * 1024) * (40 * 1024);
    m4_pool* pool = NULL;
    if (m4_pool_create((uint32_t)threads, &pool) != MIND4_SUCCESS) return 1;
    printf("read bandwidth, %zu threads, %.1f MB, isa %s\n", threads, (double)n * 4 / 1e6,
           m4_isa_name(m4_kernels_isa()));

    float* small = NULL;
#if !defined(_WIN32)
    if (posix_memalign((void**)&small, 4096, n * 4) != 0) return 1;
#if defined(MADV_NOHUGEPAGE)
    madvise(small, n * 4, MADV_NOHUGEPAGE);
#endif
#else
    small = (float*)m4_alloc(n * 4);
#endif
    float* huge = (float*)m4_alloc_huge(n * 4);
    if (!small || !huge) return 1;
    m4_fill_uniform(small, n, 1, -1.0f, 1.0f);
    memcpy(huge, small, n * 4);
    report(pool, "anon 4K", small, n, reps);
    report(pool, "anon huge", huge, n, reps);
#if !defined(_WIN32)
    char path[] = "/tmp/m4_bench_memory_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) {
        size_t done = 0;
        while (done < n * 4) {
            ssize_t w = write(fd, (const char*)small + done, n * 4 - done);
            if (w <= 0) break;
            done += (size_t)w;
        }
        unlink(path);
        void* map = done == n * 4 ? mmap(NULL, n * 4, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
        close(fd);
        if (map != MAP_FAILED) {
            report(pool, "file mmap", (const float*)map, n, reps);
            munmap(map, n * 4);
        }
    }
    free(small);
#else
    m4_free(small);
#endif
    m4_free(huge);
    m4_pool_destroy(pool);
    return 0;
}
