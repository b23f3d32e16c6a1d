/* SPDX-License-Identifier: MIT */
/* The replaceable allocator (modelled on uv_replace_allocator). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "coro-internal.h"

static struct {
  coro_malloc_fn m;
  coro_realloc_fn r;
  coro_calloc_fn c;
  coro_free_fn f;
} alloc = {malloc, realloc, calloc, free};

static atomic_int holds; /* loops running */

void coro__alloc_hold(int delta) { atomic_fetch_add(&holds, delta); }

int coro_replace_allocator(coro_malloc_fn m, coro_realloc_fn r,
                           coro_calloc_fn c, coro_free_fn f) {
  if (m == NULL || r == NULL || c == NULL || f == NULL) return CORO_EINVAL;
  if (atomic_load(&holds) != 0) return CORO_EBUSY;
  alloc.m = m;
  alloc.r = r;
  alloc.c = c;
  alloc.f = f;
  return 0;
}

void *coro__malloc(size_t size) { return alloc.m(size); }
void *coro__calloc(size_t count, size_t size) { return alloc.c(count, size); }
void *coro__realloc(void *ptr, size_t size) { return alloc.r(ptr, size); }
void coro__free(void *ptr) {
  if (ptr != NULL) alloc.f(ptr);
}

char *coro__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = coro__malloc(n);
  if (d != NULL) memcpy(d, s, n);
  return d;
}
