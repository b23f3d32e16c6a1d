/* SPDX-License-Identifier: MIT */
/* Coroutine stacks: reserved with MAP_NORESERVE (pages cost memory only when
 * touched), a guard page below each that faults on overflow.
 *
 * Stacks of the default size are carved from large slabs and guarded with
 * madvise(MADV_GUARD_INSTALL) (Linux >= 6.13), which does not split the
 * mapping, so vm.max_map_count does not cap the number of coroutines; where
 * the kernel refuses it, an mprotect(PROT_NONE) guard is used instead.
 * Freed stacks are reused (most recently freed first, its pages still warm),
 * so steady-state allocation makes no syscall and no first-touch fault.
 * The allocator is process-wide and thread-safe. */
#ifndef CORO_SRC_CTX_STACK_H_
#define CORO_SRC_CTX_STACK_H_

#include <stddef.h>

typedef struct coro__stack {
  void *lo;          /* lowest usable address (just above the guard page) */
  size_t size;       /* usable bytes, a multiple of the page size */
  void *priv;        /* allocator bookkeeping */
  unsigned vg_id;    /* Valgrind stack id, 0 if none */
} coro__stack;

#define CORO__STACK_DEFAULT ((size_t)256 * 1024)
#define CORO__STACK_MIN ((size_t)16 * 1024)

/* Round a requested size: 0 means the default; below the minimum gives the
 * minimum; others round up to whole pages. */
size_t coro__stack_round(size_t size);

/* Get a stack of coro__stack_round(size) usable bytes. 0 or -ENOMEM. */
int coro__stack_alloc(coro__stack *st, size_t size);

/* Give a stack back. Its pages may be kept (reuse) or returned to the kernel
 * (above a high-water mark of cached bytes). */
void coro__stack_free(coro__stack *st);

/* 1 if addr lies in the guard page of a stack handed out and not yet freed
 * (used by the overflow report; async-signal-safe, no locks). */
int coro__stack_is_guard(const void *addr);

/* Statistics for tests and benchmarks. */
typedef struct coro__stack_stats {
  size_t live;        /* stacks handed out and not freed */
  size_t cached;      /* freed stacks kept for reuse */
  size_t slabs;       /* slabs mapped */
  size_t guard_madv;  /* guards installed with MADV_GUARD_INSTALL */
  size_t guard_mprot; /* guards installed with mprotect */
  size_t cold;        /* free default stacks whose pages are not kept (still
                       * reserved in a mapped slab, incl. never-used units) */
  size_t dontneed;    /* times a cached stack's pages were returned */
  size_t cache_max;   /* most default-size stacks kept warm (high-water) */
} coro__stack_stats;
void coro__stack_get_stats(coro__stack_stats *out);

/* Return every cached stack and empty slab to the kernel (tests use it to
 * check for leaks: afterwards slabs == 0 if live == 0). */
void coro__stack_trim(void);

/* Test hook: from now on guard with mprotect, as on kernels without
 * MADV_GUARD_INSTALL. */
void coro__stack_test_force_mprotect(void);

#endif /* CORO_SRC_CTX_STACK_H_ */
