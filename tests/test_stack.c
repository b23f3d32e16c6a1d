/* SPDX-License-Identifier: MIT */
/* Coroutine stack allocator: rounding, reuse order, guard pages (faults are
 * provoked in forked children), the mapping count with many stacks, thread
 * safety, other sizes and the high-water mark of the warm cache. */
#include "helpers.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coro-internal.h"
#include "ctx/stack.h"

static size_t page(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* Lines of /proc/self/maps, i.e. the number of mappings (VMAs). */
static long maps_lines(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL) return -1;
  long n = 0;
  int c;
  while ((c = getc(f)) != EOF)
    if (c == '\n') n++;
  fclose(f);
  return n;
}

/* Mappings that overlap [lo, hi). */
static long maps_lines_in(uintptr_t lo, uintptr_t hi) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL) return -1;
  char line[512];
  long n = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long a, b;
    if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a < hi && b > lo) n++;
  }
  fclose(f);
  return n;
}

/* Resident set size in pages. */
static long rss_pages(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, rss = -1;
  if (f == NULL) return -1;
  if (fscanf(f, "%ld %ld", &size, &rss) != 2) rss = -1;
  fclose(f);
  return rss;
}

/* 1 if the page holding p is resident; 0 if not or no longer mapped. */
static int resident(const void *p) {
  uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page() - 1);
  unsigned char v = 0;
  if (mincore((void *)a, page(), &v) != 0) return 0;
  return v & 1;
}

/* 1 if the page holding p is mapped. */
static int mapped(const void *p) {
  uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page() - 1);
  unsigned char v = 0;
  return mincore((void *)a, page(), &v) == 0 || errno != ENOMEM;
}

static coro__stack_stats stats(void) {
  coro__stack_stats s;
  memset(&s, 0, sizeof s);
  coro__stack_get_stats(&s);
  return s;
}

static size_t guards(void) {
  coro__stack_stats s = stats();
  return s.guard_madv + s.guard_mprot;
}

/* Start from an allocator holding nothing: no stack is live between tests,
 * so trimming unmaps every slab. */
static void start_empty(void) {
  coro__stack_trim();
  coro__stack_stats s = stats();
  assert_int_equal(s.live, 0);
  assert_int_equal(s.slabs, 0);
  assert_int_equal(s.cached, 0);
}

/* ---- rounding ---------------------------------------------------------- */

static void test_round(void **state) {
  (void)state;
  size_t pg = page();
  assert_int_equal(coro__stack_round(0), CORO__STACK_DEFAULT);
  assert_int_equal(coro__stack_round(1), CORO__STACK_MIN);
  assert_int_equal(coro__stack_round(CORO__STACK_MIN - 1), CORO__STACK_MIN);
  assert_int_equal(coro__stack_round(CORO__STACK_MIN), CORO__STACK_MIN);
  assert_int_equal(coro__stack_round(CORO__STACK_MIN + 1), CORO__STACK_MIN + pg);
  assert_int_equal(coro__stack_round(CORO__STACK_DEFAULT), CORO__STACK_DEFAULT);
  assert_int_equal(coro__stack_round(CORO__STACK_DEFAULT - 1), CORO__STACK_DEFAULT);
  assert_int_equal(coro__stack_round(100000), (100000 + pg - 1) / pg * pg);
  assert_int_equal(coro__stack_round((size_t)1 << 20), (size_t)1 << 20);
  /* Huge requests must not wrap around to a small size. */
  size_t huge = coro__stack_round(SIZE_MAX);
  assert_true(huge >= SIZE_MAX - pg);
  assert_int_equal(huge % pg, 0);
}

/* ---- reuse ------------------------------------------------------------- */

static void test_reuse_lifo(void **state) {
  (void)state;
  coro__stack a, b, c, x;
  start_empty();
  assert_coro_ok(coro__stack_alloc(&a, 0));
  assert_int_equal(a.size, CORO__STACK_DEFAULT);
  assert_int_equal((uintptr_t)a.lo % page(), 0);
  coro__stack_stats s1 = stats();
  assert_int_equal(s1.live, 1);
  assert_int_equal(s1.slabs, 1);
  void *lo_a = a.lo;
  coro__stack_free(&a);
  assert_int_equal(stats().live, 0);
  assert_int_equal(stats().cached, 1);

  /* The stack just freed comes back. */
  assert_coro_ok(coro__stack_alloc(&x, CORO__STACK_DEFAULT));
  assert_ptr_equal(x.lo, lo_a);
  assert_coro_ok(coro__stack_alloc(&b, 0));
  assert_coro_ok(coro__stack_alloc(&c, 0));
  assert_ptr_not_equal(b.lo, x.lo);
  assert_ptr_not_equal(c.lo, b.lo);
  void *lo_b = b.lo, *lo_c = c.lo;
  coro__stack_free(&c);
  coro__stack_free(&b); /* b is now the most recently freed */
  assert_int_equal(stats().cached, 2);
  assert_coro_ok(coro__stack_alloc(&b, 0));
  assert_ptr_equal(b.lo, lo_b);
  assert_coro_ok(coro__stack_alloc(&c, 0));
  assert_ptr_equal(c.lo, lo_c);
  size_t g = guards();
  coro__stack_stats s2 = stats();
  assert_int_equal(s2.slabs, 1);
  assert_int_equal(s2.live, 3);
  assert_int_equal(s2.cached, 0);
  coro__stack_free(&b);
  coro__stack_free(&c);
  coro__stack_free(&x);
  assert_null(x.lo);
  /* Reuse installs no new guard. */
  assert_coro_ok(coro__stack_alloc(&x, 0));
  assert_int_equal(guards(), g);
  coro__stack_free(&x);
  coro__stack_free(&x); /* freeing a freed (cleared) descriptor: no-op */
  assert_int_equal(stats().live, 0);
}

/* ---- writable ---------------------------------------------------------- */

static void check_writable(size_t request, size_t want) {
  coro__stack st;
  assert_coro_ok(coro__stack_alloc(&st, request));
  assert_int_equal(st.size, want);
  assert_int_equal((uintptr_t)st.lo % page(), 0);
  unsigned char *lo = st.lo;
  memset(lo, 0xA5, st.size);
  for (size_t i = 0; i < st.size; i += 997) assert_int_equal(lo[i], 0xA5);
  assert_int_equal(lo[0], 0xA5);
  assert_int_equal(lo[st.size - 1], 0xA5);
  assert_false(coro__stack_is_guard(lo));
  assert_false(coro__stack_is_guard(lo + st.size - 1));
  coro__stack_free(&st);
}

static void test_writable(void **state) {
  (void)state;
  check_writable(0, CORO__STACK_DEFAULT);
  check_writable(64 * 1024, 64 * 1024);
  check_writable(1024 * 1024, 1024 * 1024);
  check_writable(20000, coro__stack_round(20000));
  check_writable(1, CORO__STACK_MIN);
}

/* ---- guard pages ------------------------------------------------------- */

struct poke {
  char *addr;
};

static void poke_child(void *arg) {
  struct poke *p = arg;
  *(volatile char *)p->addr = 42;
  (void)*(volatile char *)p->addr;
}

/* The child writes at addr; returns its wait status. */
static int poke(void *addr) {
  struct poke p = {addr};
  return coro_test_in_child(poke_child, &p, 10000);
}

static void assert_segv(int status, const char *what) {
  if (!(status >= 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV))
    fail_msg("%s: child status %d (%s %d), want death by SIGSEGV", what,
             status, status >= 0 && WIFSIGNALED(status) ? "signal" : "exit",
             status >= 0 && WIFSIGNALED(status) ? WTERMSIG(status)
                                                 : (status >= 0 ? WEXITSTATUS(status) : -1));
}

static void assert_exit0(int status, const char *what) {
  if (!(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0))
    fail_msg("%s: child status %d, want a clean exit", what, status);
}

static void check_guarded(size_t request) {
  coro__stack st;
  assert_coro_ok(coro__stack_alloc(&st, request));
  char *lo = st.lo;
  /* Controls: both ends of the usable range are writable. */
  assert_exit0(poke(lo), "write at lo");
  assert_exit0(poke(lo + st.size - 1), "write at the top");
  /* Just below lo, and the bottom of the guard page, fault. */
  assert_segv(poke(lo - 1), "write just below lo");
  assert_segv(poke(lo - page()), "write at the bottom of the guard page");
  assert_true(coro__stack_is_guard(lo - 1));
  assert_true(coro__stack_is_guard(lo - page()));
  assert_false(coro__stack_is_guard(lo));
  assert_false(coro__stack_is_guard(lo + st.size / 2));
  coro__stack_free(&st);
  /* Not reported once the stack is free. */
  assert_false(coro__stack_is_guard(lo - 1));
}

static void test_guard_faults(void **state) {
  (void)state;
  check_guarded(0);
}

static void test_guard_other_sizes(void **state) {
  (void)state;
  coro__stack_stats s0 = stats();
  check_guarded(64 * 1024);
  check_guarded(1024 * 1024);
  /* Other sizes never take slab units. */
  assert_int_equal(stats().slabs, s0.slabs);
}

static void test_guard_method(void **state) {
  (void)state;
  start_empty();
  coro__stack_stats s0 = stats();
  coro__stack a;
  /* A fresh slab: its first unit gets exactly one guard. */
  assert_coro_ok(coro__stack_alloc(&a, 0));
  coro__stack_stats s1 = stats();
  assert_int_equal(s1.slabs, 1);
  assert_int_equal((s1.guard_madv + s1.guard_mprot) -
                       (s0.guard_madv + s0.guard_mprot), 1);
  assert_true(s1.guard_madv > 0 || s1.guard_mprot > 0);
  /* Once one method worked, the other is not used: exactly one grew. */
  assert_true((s1.guard_madv > s0.guard_madv) != (s1.guard_mprot > s0.guard_mprot));
  if (s1.guard_madv > s0.guard_madv)
    print_message("stack guards: MADV_GUARD_INSTALL\n");
  else
    print_message("stack guards: mprotect (no MADV_GUARD_INSTALL here)\n");
  /* Reusing the stack does not install another guard. */
  void *lo = a.lo;
  coro__stack_free(&a);
  assert_coro_ok(coro__stack_alloc(&a, 0));
  assert_ptr_equal(a.lo, lo);
  assert_int_equal(guards(), s1.guard_madv + s1.guard_mprot);
  coro__stack_free(&a);
}

/* In a child: switch to mprotect guards, check they are counted, split the
 * mapping and fault; then die on the guard. Exit codes name the check. */
static void mprotect_child(void *arg) {
  (void)arg;
  coro__stack st[3], odd;
  coro__stack_trim();
  coro__stack_stats s0 = stats();
  long m0 = maps_lines();
  if (s0.slabs != 0) _exit(10);
  coro__stack_test_force_mprotect();
  for (int i = 0; i < 3; i++)
    if (coro__stack_alloc(&st[i], 0) != 0) _exit(11);
  if (coro__stack_alloc(&odd, 64 * 1024) != 0) _exit(11);
  coro__stack_stats s1 = stats();
  if (s1.guard_mprot - s0.guard_mprot != 4) _exit(12);
  if (s1.guard_madv != s0.guard_madv) _exit(13);
  if (maps_lines() - m0 < 4) _exit(14); /* mprotect splits mappings */
  for (int i = 0; i < 3; i++) {
    if (!coro__stack_is_guard((char *)st[i].lo - 1)) _exit(15);
    memset(st[i].lo, 1, st[i].size);
  }
  if (!coro__stack_is_guard((char *)odd.lo - 1)) _exit(15);
  memset(odd.lo, 1, odd.size);
  void *lo = st[2].lo;
  coro__stack_free(&st[2]);
  if (coro__stack_alloc(&st[2], 0) != 0 || st[2].lo != lo) _exit(16);
  if (stats().guard_mprot != s1.guard_mprot) _exit(17);
  *(volatile char *)((char *)odd.lo - 1) = 1; /* must fault */
  *(volatile char *)((char *)st[1].lo - 1) = 1;
  _exit(18);
}

static void test_guard_mprotect_fallback(void **state) {
  (void)state;
  int status = coro_test_in_child(mprotect_child, NULL, 20000);
  if (status >= 0 && WIFEXITED(status))
    fail_msg("mprotect child exited with %d (failed check)", WEXITSTATUS(status));
  assert_segv(status, "mprotect guard");
}

/* ---- many stacks ------------------------------------------------------- */

#define MANY 100000

static void test_many_stacks(void **state) {
  (void)state;
  coro__stack *st = calloc(MANY, sizeof *st);
  assert_non_null(st);
  start_empty();
  /* Where guards split mappings (mprotect), 100k of them would exceed
   * max_map_count: check 1000 and two mappings per stack instead. */
  coro__stack probe;
  size_t mprot0 = stats().guard_mprot;
  assert_coro_ok(coro__stack_alloc(&probe, 0));
  int mprot = stats().guard_mprot != mprot0;
  coro__stack_free(&probe);
  coro__stack_trim();
  const size_t n = mprot ? 1000 : MANY;
  const size_t step = n / 100 - 3; /* sample about 100 stacks */

  long m0 = maps_lines();
  assert_true(m0 > 0);
  size_t ok = 0;
  int rc = 0;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (; ok < n; ok++) {
    if ((rc = coro__stack_alloc(&st[ok], 0)) != 0) break;
    uintptr_t a = (uintptr_t)st[ok].lo;
    if (a < lo) lo = a;
    if (a + st[ok].size > hi) hi = a + st[ok].size;
  }
  coro__stack_stats s1 = stats();
  long m1 = maps_lines();
  /* Our mappings only (sanitizers add shadow mappings elsewhere). */
  long ours = maps_lines_in(lo - 2 * page(), hi + 2 * page());
  int distinct = 1, guarded = 1;
  size_t sampled = 0, unmapped = 0;
  char *sample[MANY / 97 + 1];
  for (size_t i = 1; i < ok; i += step) {
    distinct &= st[i].lo != st[i - 1].lo;
    guarded &= coro__stack_is_guard((char *)st[i].lo - 1);
    sample[sampled++] = st[i].lo;
  }
  /* Free before checking, so that a failure does not leave 100k stacks to
   * the following tests. */
  for (size_t i = 0; i < ok; i++) coro__stack_free(&st[i]);
  coro__stack_stats s2 = stats();
  coro__stack_trim();
  coro__stack_stats s3 = stats();
  long m3 = maps_lines();
  for (size_t i = 0; i < sampled; i++)
    unmapped += !mapped(sample[i]);
  free(st);

  if (rc != 0) fail_msg("stack %zu: %s", ok, coro_err_name(rc));
  print_message("%zu stacks (%s guards): %zu slabs, %ld mappings (+%ld in all)\n",
                n, mprot ? "mprotect" : "madvise", s1.slabs, ours, m1 - m0);
  assert_int_equal(s1.live, n);
  assert_true(s1.slabs >= n / 64);
  /* madvise guards do not split mappings: at most one mapping per slab
   * (adjacent slabs merge), plus a few foreign ones in between; mprotect
   * guards split each stack off its neighbours: two more per stack. */
  long allowed = (long)s1.slabs + 8 + (mprot ? 2 * (long)n : 0);
  assert_true(ours <= allowed);
#if !defined(CORO__TSAN)
  assert_true(m1 - m0 <= allowed);
#endif
  assert_true(distinct);
  assert_true(guarded);
  assert_int_equal(s2.live, 0);
  assert_true(s2.cached <= s2.cache_max);
  /* Slabs that went entirely cold were released without a trim. */
  assert_true(s2.slabs < s1.slabs / 2);
  assert_int_equal(s3.slabs, 0);
  assert_int_equal(s3.cached, 0);
  assert_int_equal(s3.cold, 0);
  /* Really unmapped (a few addresses may have been mapped again by
   * someone else since). */
  assert_true(sampled > 90);
  assert_true(unmapped >= sampled * 9 / 10);
#if !defined(CORO__TSAN) /* TSan keeps its shadow mappings */
  assert_true(m3 - m0 <= 2 && m0 - m3 <= 2);
#else
  (void)m3;
#endif
}

/* ---- threads ----------------------------------------------------------- */

#define THREADS 4
#define CYCLES 10000

struct worker {
  pthread_t tid;
  int id;
  int bad;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  coro__stack a, b;
  for (int i = 0; i < CYCLES; i++) {
    size_t bsize = (i % 8 == 0) ? 64 * 1024 : 0;
    if (coro__stack_alloc(&a, 0) != 0 || coro__stack_alloc(&b, bsize) != 0) {
      w->bad = 1;
      return NULL;
    }
    /* Tag both ends; another owner of the same stack would overwrite. */
    int tag = w->id * 1000000 + i;
    memcpy(a.lo, &tag, sizeof tag);
    memcpy((char *)a.lo + a.size - sizeof tag, &tag, sizeof tag);
    memcpy(b.lo, &tag, sizeof tag);
    if ((i & 63) == 0) sched_yield();
    int t1, t2, t3;
    memcpy(&t1, a.lo, sizeof t1);
    memcpy(&t2, (char *)a.lo + a.size - sizeof tag, sizeof t2);
    memcpy(&t3, b.lo, sizeof t3);
    if (t1 != tag || t2 != tag || t3 != tag || a.lo == b.lo) w->bad = 2;
    if (!coro__stack_is_guard((char *)a.lo - 1)) w->bad = 3;
    coro__stack_free(&b);
    coro__stack_free(&a);
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  struct worker w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i].id = i + 1;
    w[i].bad = 0;
    assert_int_equal(pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(w[i].tid, NULL);
  for (int i = 0; i < THREADS; i++)
    if (w[i].bad) fail_msg("thread %d: failure %d", w[i].id, w[i].bad);
  coro__stack_stats s = stats();
  assert_int_equal(s.live, 0);
  /* Concurrent cycles reuse stacks: at most one slab per thread (when
   * they all missed at once). */
  assert_true(s.slabs <= THREADS);
}

/* ---- other sizes ------------------------------------------------------- */

static void test_other_sizes(void **state) {
  (void)state;
  start_empty();
  coro__stack a, b, c;
  assert_coro_ok(coro__stack_alloc(&a, 64 * 1024));
  assert_coro_ok(coro__stack_alloc(&b, 1024 * 1024));
  assert_int_equal(a.size, 64 * 1024);
  assert_int_equal(b.size, 1024 * 1024);
  assert_int_equal(stats().live, 2);
  assert_int_equal(stats().slabs, 0);
  void *lo_a = a.lo, *lo_b = b.lo;
  coro__stack_free(&a);
  coro__stack_free(&b);
  assert_int_equal(stats().cached, 2);
  /* An exact size match is reused; another size is not. */
  assert_coro_ok(coro__stack_alloc(&c, 100 * 1024));
  assert_ptr_not_equal(c.lo, lo_a);
  assert_ptr_not_equal(c.lo, lo_b);
  assert_coro_ok(coro__stack_alloc(&a, 64 * 1024));
  assert_ptr_equal(a.lo, lo_a);
  assert_coro_ok(coro__stack_alloc(&b, 1024 * 1024));
  assert_ptr_equal(b.lo, lo_b);
  assert_true(coro__stack_is_guard((char *)b.lo - 1));
  coro__stack_free(&a);
  coro__stack_free(&b);
  coro__stack_free(&c);
  /* Trim unmaps cached ones. */
  coro__stack_trim();
  assert_int_equal(stats().cached, 0);
  assert_int_equal(resident(lo_a), 0);
  assert_false(mapped(lo_a));
  assert_false(mapped(lo_b));
}

static void test_enomem(void **state) {
  (void)state;
  coro__stack st;
  size_t live = stats().live;
  assert_coro_err(coro__stack_alloc(&st, SIZE_MAX), -ENOMEM);
  assert_coro_err(coro__stack_alloc(&st, (size_t)1 << 62), -ENOMEM);
  assert_int_equal(stats().live, live);
  assert_false(coro__stack_is_guard(NULL));
  assert_false(coro__stack_is_guard(&st));
  assert_false(coro__stack_is_guard((void *)(uintptr_t)-1));
}

/* ---- high-water mark --------------------------------------------------- */

#define TOUCH_PAGES 4
#define HOLD_EVERY 32

static void test_high_water(void **state) {
  (void)state;
  start_empty();
  coro__stack_stats s0 = stats();
  size_t n = s0.cache_max + 1100;
  size_t pg = page(), touched = TOUCH_PAGES * pg;
  coro__stack *st = calloc(n, sizeof *st);
  char **top = calloc(n, sizeof *top); /* each stack's top page */
  assert_non_null(st);
  assert_non_null(top);
  for (size_t i = 0; i < n; i++) {
    assert_coro_ok(coro__stack_alloc(&st[i], 0));
    /* A coroutine uses the top of its stack. */
    memset((char *)st[i].lo + st[i].size - touched, 0x5A, touched);
    top[i] = (char *)st[i].lo + st[i].size - pg;
    assert_true(resident(top[i]));
  }
  coro__stack_stats s1 = stats();
  long rss1 = rss_pages();

  /* Free all but every HOLD_EVERY-th: no slab becomes entirely free, so
   * memory can only come back through the high-water mark. */
  size_t freed = 0, holders = 0;
  for (size_t i = 0; i < n; i++) {
    if (i % HOLD_EVERY == 0) {
      holders++;
      continue;
    }
    coro__stack_free(&st[i]);
    freed++;
  }
  size_t cooled = freed - s0.cache_max;
  long rss2 = rss_pages();
  coro__stack_stats s2 = stats();
  size_t gone = 0, warm = 0, seen = 0;
  for (size_t i = 0; i < n; i++) {
    if (i % HOLD_EVERY == 0) continue;
    if (seen++ < cooled)
      gone += !resident(top[i]);
    else
      warm += resident(top[i]);
  }
  print_message("rss: %ld pages with %zu stacks, %ld after freeing %zu\n", rss1,
                n, rss2, freed);

  /* The holders go too: cooling now releases whole slabs, no trim needed. */
  for (size_t i = 0; i < n; i += HOLD_EVERY) coro__stack_free(&st[i]);
  coro__stack_stats s3 = stats();
  long rss3 = rss_pages();
  coro__stack_trim();
  coro__stack_stats s4 = stats();
  long rss4 = rss_pages();
  free(top);
  free(st);

  assert_int_equal(s2.live, holders);
  assert_int_equal(s2.slabs, s1.slabs); /* nothing unmapped */
  /* The cache holds exactly its high-water mark; the rest gave pages back. */
  assert_int_equal(s2.cached, s0.cache_max);
  assert_int_equal(s2.dontneed - s0.dontneed, cooled);
  assert_true(gone >= cooled * 9 / 10);
  assert_true(warm >= s0.cache_max * 9 / 10); /* most recently freed */
  long want = (long)(cooled * TOUCH_PAGES / 2);
  if (rss1 - rss2 < want)
    fail_msg("rss dropped by %ld pages, want >= %ld", rss1 - rss2, want);

  assert_int_equal(s3.live, 0);
  assert_true(s3.cached <= s0.cache_max);
  assert_true(s3.slabs < s1.slabs);
  assert_true(rss3 <= rss2);

  assert_int_equal(s4.cached, 0);
  assert_int_equal(s4.slabs, 0);
  want = (long)(s0.cache_max * TOUCH_PAGES / 2);
  if (rss3 - rss4 < want)
    fail_msg("trim: rss dropped by %ld pages, want >= %ld", rss3 - rss4, want);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, coro_test_setup, coro_test_teardown)
      T(test_round),
      T(test_reuse_lifo),
      T(test_writable),
      T(test_guard_faults),
      T(test_guard_other_sizes),
      T(test_guard_method),
      T(test_guard_mprotect_fallback),
      T(test_many_stacks),
      T(test_threads),
      T(test_other_sizes),
      T(test_enomem),
      T(test_high_water),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
