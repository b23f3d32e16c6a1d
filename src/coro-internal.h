/* SPDX-License-Identifier: MIT */
/* Internal helpers shared by every subsystem: allocation through the
 * replaceable allocator, container_of, assertions, branch hints. */
#ifndef CORO_SRC_CORO_INTERNAL_H_
#define CORO_SRC_CORO_INTERNAL_H_

#include <stddef.h>

#include <coro.h>

#define coro__container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

#if defined(__GNUC__) || defined(__clang__)
# define CORO__LIKELY(x) __builtin_expect(!!(x), 1)
# define CORO__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
# define CORO__LIKELY(x) (x)
# define CORO__UNLIKELY(x) (x)
#endif

#define CORO__STATIC_ASSERT(expr, msg) _Static_assert(expr, msg)

/* Protocol checks. CORO__ASSERT(expr) states what must hold at that point
 * (the task suspending is the running one, a timer starts on its own
 * loop's thread, ...). With the CORO_ASSERTS build option (on in Debug
 * and CI builds) a false one prints "libcoro: assertion failed: EXPR
 * (file:line, function)" and aborts; without it the expression is not
 * evaluated, so it must have no side effects. CORO__UNREACHABLE() marks a
 * point the code can never reach (a switch over every enum value, say): it
 * reports and aborts in every build. */
#if defined(CORO_ASSERTS) && CORO_ASSERTS
# define CORO__ASSERT(expr)                                                \
  (CORO__LIKELY(expr) ? (void)0                                            \
                      : coro__assert_fail(#expr, __FILE__, __LINE__, __func__))
#else
# define CORO__ASSERT(expr) ((void)sizeof(!(expr)))
#endif
#define CORO__UNREACHABLE()                                                \
  coro__assert_fail("unreachable code", __FILE__, __LINE__, __func__)
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noreturn, cold))
#endif
void coro__assert_fail(const char *expr, const char *file, int line,
                       const char *func);


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
