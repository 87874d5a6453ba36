/* status.c - status names, the thread's last error sentence, allocation. */
#if !defined(_WIN32) && !defined(_DEFAULT_SOURCE)
/* madvise and MADV_HUGEPAGE are not POSIX: without this glibc hides them
 * under the build's _POSIX_C_SOURCE and the huge-page advice compiles out */
#define _DEFAULT_SOURCE 1
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(_WIN32)
#include <windows.h>
#else
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "common.h"

static M4_TLS char g_last_error[1024];

const char* mind4_status_string(mind4_status status) {
    switch (status) {
        case MIND4_SUCCESS: return "success";
        case MIND4_INVALID_ARGUMENT: return "invalid argument";
        case MIND4_UNSUPPORTED: return "unsupported";
        case MIND4_IO_ERROR: return "I/O error";
        case MIND4_OUT_OF_MEMORY: return "out of memory";
        case MIND4_CONTEXT_OVERFLOW: return "context overflow";
        case MIND4_CORRUPT_FILE: return "corrupt file";
        case MIND4_CONFIG_MISMATCH: return "checkpoint does not match its config";
        case MIND4_NOT_FOUND: return "not found";
        case MIND4_INTERNAL_ERROR: return "internal error";
    }
    return "unknown status";
}

const char* mind4_dtype_string(mind4_dtype dtype) {
    switch (dtype) {
        case MIND4_DTYPE_AUTO: return "auto";
        case MIND4_DTYPE_F32: return "float32";
        case MIND4_DTYPE_BF16: return "bfloat16";
        case MIND4_DTYPE_F16: return "float16";
        case MIND4_DTYPE_MXFP4: return "mxfp4";
    }
    return "unknown dtype";
}

const char* mind4_last_error(void) { return g_last_error; }

uint32_t mind4_api_version(void) { return MIND4_API_VERSION; }

mind4_status m4_fail(mind4_status status, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
    va_end(ap);
    return status;
}

void m4_clear_error(void) { g_last_error[0] = '\0'; }

void* m4_alloc(size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes > SIZE_MAX - 64) return NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
#if defined(_WIN32)
    return _aligned_malloc(rounded, 64);
#else
    void* p = NULL;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
#endif
}

void* m4_calloc(size_t count, size_t size) {
    size_t bytes;
    if (!m4_mul_size(count, size, &bytes)) return NULL;
    void* p = m4_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void m4_free(void* p) {
#if defined(_WIN32)
    _aligned_free(p);
#else
    free(p);
#endif
}

void* m4_alloc_huge(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    if (bytes < 2 * huge) return m4_alloc(bytes);
#if defined(_WIN32)
    return m4_alloc(bytes);
#else
    if (bytes > SIZE_MAX - huge) return NULL;
    size_t rounded = (bytes + huge - 1) & ~(huge - 1);
    void* p = NULL;
    if (posix_memalign(&p, huge, rounded) != 0) return NULL;
#if defined(MADV_HUGEPAGE)
    madvise(p, rounded, MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
    return p;
#endif
}

uint64_t m4_physical_memory(void) {
#if defined(_WIN32)
    MEMORYSTATUSEX m;
    m.dwLength = sizeof m;
    return GlobalMemoryStatusEx(&m) ? (uint64_t)m.ullTotalPhys : 0;
#elif defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
#else
    return 0;
#endif
}

float m4_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}
