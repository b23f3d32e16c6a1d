/* SPDX-License-Identifier: MIT */
/* Internal helpers shared by every subsystem: allocation through the
 * replaceable allocator, container_of, assertions, branch hints. */
#ifndef CORO_SRC_CORO_INTERNAL_H_
#define CORO_SRC_CORO_INTERNAL_H_

#include <assert.h>
#include <stddef.h>

#include <coro.h>

#define coro__container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

#define CORO__STATIC_ASSERT(expr, msg) _Static_assert(expr, msg)
#define CORO__ASSERT(expr) assert(expr)

#if defined(__GNUC__) || defined(__clang__)
# define CORO__LIKELY(x) __builtin_expect(!!(x), 1)
# define CORO__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
# define CORO__LIKELY(x) (x)
# define CORO__UNLIKELY(x) (x)
#endif

/* Sanitizer detection (gcc defines __SANITIZE_*__, clang has __has_feature). */
#if defined(__SANITIZE_ADDRESS__)
# define CORO__ASAN 1
#elif defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define CORO__ASAN 1
# endif
#endif
#if defined(__SANITIZE_THREAD__)
# define CORO__TSAN 1
#elif defined(__has_feature)
# if __has_feature(thread_sanitizer)
#  define CORO__TSAN 1
# endif
#endif

/* All of libcoro's heap memory goes through these (coro_replace_allocator). */
void *coro__malloc(size_t size);
void *coro__calloc(size_t count, size_t size);
void *coro__realloc(void *ptr, size_t size);
void coro__free(void *ptr);
char *coro__strdup(const char *s);
/* Loops count themselves in (+1 at start, -1 at end): the allocator cannot
 * be replaced while any loop runs (util/alloc.c). */
void coro__alloc_hold(int delta);

#endif /* CORO_SRC_CORO_INTERNAL_H_ */
