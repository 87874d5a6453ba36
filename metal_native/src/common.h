/* common.h - internal helpers shared by every metal_native source file. */
#ifndef M4_COMMON_H
#define M4_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mind4.h"

#if defined(_MSC_VER)
#define M4_TLS __declspec(thread)
#define M4_RESTRICT __restrict
#define M4_PRINTF(a, b)
#else
#define M4_TLS _Thread_local
#define M4_RESTRICT __restrict__
#if defined(__MINGW32__) /* built with __USE_MINGW_ANSI_STDIO: C99 formats */
#define M4_PRINTF(a, b) __attribute__((format(gnu_printf, a, b)))
#else
#define M4_PRINTF(a, b) __attribute__((format(printf, a, b)))
#endif
#endif

#define M4_MIN(a, b) ((a) < (b) ? (a) : (b))
#define M4_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Record the calling thread's error sentence and return status. */
mind4_status m4_fail(mind4_status status, const char* fmt, ...) M4_PRINTF(2, 3);
/* Clear the thread's error sentence. */
void m4_clear_error(void);

/* ---- overflow-safe size arithmetic: false on overflow (result untouched) */
static inline bool m4_mul_size(size_t a, size_t b, size_t* out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}
static inline bool m4_add_size(size_t a, size_t b, size_t* out) {
    if (b > SIZE_MAX - a) return false;
    *out = a + b;
    return true;
}
static inline bool m4_mul_u64(uint64_t a, uint64_t b, uint64_t* out) {
    if (a != 0 && b > UINT64_MAX / a) return false;
    *out = a * b;
    return true;
}

/* ---- memory: 64-byte aligned, NULL on failure or overflow; free(NULL) ok */
void* m4_alloc(size_t bytes);
void* m4_calloc(size_t count, size_t size);
void m4_free(void* p);
/* Large allocations on 2 MiB boundaries, advised to use transparent huge pages
 * (Linux); smaller ones as m4_alloc. Free with m4_free. */
void* m4_alloc_huge(size_t bytes);
/* Physical memory in bytes (0 if unknown). */
uint64_t m4_physical_memory(void);

/* ---- bfloat16 / float16 bits <-> float32 */
static inline float m4_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t m4_f32_to_bf16(float f) { /* round to nearest even; NaN stays NaN */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
float m4_f16_to_f32(uint16_t h);

/* ---- reference counting (atomic where C11 atomics exist) */
#if defined(__STDC_NO_ATOMICS__) && !defined(_MSC_VER)
#error "metal_native needs C11 atomics"
#endif
#if defined(_MSC_VER) && !defined(__clang__)
#include <windows.h>
typedef volatile long m4_refcount;
#define m4_ref_init(r) (*(r) = 1)
#define m4_ref_inc(r) InterlockedIncrement(r)
#define m4_ref_dec(r) InterlockedDecrement(r) /* returns the new count */
#else
#include <stdatomic.h>
typedef atomic_long m4_refcount;
#define m4_ref_init(r) atomic_init((r), 1)
#define m4_ref_inc(r) atomic_fetch_add((r), 1)
#define m4_ref_dec(r) (atomic_fetch_sub((r), 1) - 1)
#endif

#endif /* M4_COMMON_H */
