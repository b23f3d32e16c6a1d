/* SPDX-License-Identifier: MIT */
/* Coroutine stack allocator (interface and guarantees in stack.h).
 *
 * Default-size stacks come from slabs. A slab is one anonymous
 * MAP_NORESERVE mapping laid out as
 *
 *   [header page][guard|stack 0][guard|stack 1] ... [guard|stack 63]
 *
 * The header page holds the slab's bookkeeping (struct slab), so no heap
 * memory is spent on slabs. 64 units per slab because:
 *  - mapping a slab is one mmap plus one fault on its header page, shared by
 *    64 stacks; units cost nothing until handed out (MAP_NORESERVE), and each
 *    unit's guard is installed only when it is first handed out;
 *  - a slab is given back only when all its units are free, which gets less
 *    likely as slabs grow; 64 x 260 KiB = 16.3 MiB of address space keeps
 *    the granule modest;
 *  - 64 units fit one 64-bit "live" mask, which the lock-free guard lookup
 *    reads (see coro__stack_is_guard).
 *
 * Guards: madvise(MADV_GUARD_INSTALL) (Linux >= 6.13) marks the page without
 * splitting the mapping, so slabs stay one VMA each (adjacent slabs even
 * merge) and vm.max_map_count does not bound the number of stacks. The first
 * EINVAL switches the process to mprotect(PROT_NONE) guards for good; those
 * split the mapping (about two VMAs per stack), and when mprotect fails with
 * ENOMEM (map count exhausted) the allocation fails with -ENOMEM rather than
 * hand out an unguarded stack.
 *
 * Free stacks:
 *  - warm list: freed stacks with their pages kept, most recently freed
 *    first; allocation pops its head (its top pages are still faulted in).
 *    At most CACHE_MAX (1024) stacks are warm: 256 MiB of address space, and
 *    as much RSS only if every cached coroutine had used its whole stack.
 *    Freeing beyond that "cools" the least recently freed warm stack: its
 *    pages are returned with MADV_DONTNEED (outside the lock) and it moves to
 *    the cold list.
 *  - cold list: stacks whose pages were returned, and never-used units of
 *    mapped slabs. Still reserved and guarded; reusing one costs page faults
 *    only.
 *  - A slab is unmapped as soon as all its units are free and either none
 *    is warm (its last warm unit just cooled) or the cache is full when its
 *    last stack in use is freed (its warm stacks are dropped with it: the
 *    cache refills from other slabs). So after a million-task burst the
 *    memory and the mappings go back to the kernel on their own; only the
 *    slabs holding the <= 1024 warm stacks stay. Alloc/free cycles never
 *    unmap (the check is made before the freed stack is cached, so a full
 *    cache minus the one just taken does not count). coro__stack_trim()
 *    cools every warm stack and unmaps every fully free slab.
 *
 * Other sizes: one mapping per stack ([guard|stack]), same guard method.
 * Up to ODD_CACHE_MAX (16) of them, 64 MiB in total, are kept on free for
 * reuse by an exact size match (a coroutine pool of a custom size then makes
 * no syscalls); beyond that they are unmapped on free. Their bookkeeping
 * lives in the region table entry (below), again not on the heap.
 *
 * Region table: every mapping (slab or single stack) has an entry in a table
 * of atomics that coro__stack_is_guard scans without locks: base address,
 * unit stride, unit count and a bit per unit that is set while the unit is
 * handed out. The first 4096 entries are static (enough for 262,144 default
 * stacks), further chunks of 4096 are mmap'd on demand and kept (their slots
 * are recycled). Entries are published by storing the base last (release)
 * and retired by clearing it before the mapping goes away.
 *
 * Locking: one process-wide mutex guards the lists and counters; no
 * syscall, fault or heap allocation happens under it on the alloc/free
 * paths (exceptions: a region-table chunk is mapped under it once per 4096
 * mappings beyond the first 4096, and trim calls madvise under it). Fork:
 * pthread_atfork handlers keep the mutex consistent in the child.
 *
 * Sanitizers: stacks are registered with Valgrind while handed out. Under
 * AddressSanitizer a reused warm stack is unpoisoned when handed out again
 * (frames abandoned by a finished coroutine may have left redzones); memory
 * given back (cooled stacks, unmapped mappings) has its shadow dropped with
 * madvise instead, so never-touched stacks never touch their shadow. */
#include "ctx/stack.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coro-internal.h"

#if defined(CORO_HAVE_VALGRIND)
# include <valgrind/valgrind.h>
#endif
#if defined(CORO__ASAN)
# include <sanitizer/asan_interface.h>
#endif

#ifndef MADV_GUARD_INSTALL
# define MADV_GUARD_INSTALL 102
#endif
#ifndef MAP_NORESERVE
# define MAP_NORESERVE 0
#endif
/* Since Linux 6.7 MAP_STACK also implies VM_NOHUGEPAGE. */
#ifndef MAP_STACK
# define MAP_STACK 0
#endif

#define SLAB_UNITS 64
#define CACHE_MAX 1024
#define ODD_CACHE_MAX 16
#define ODD_CACHE_BYTES ((size_t)64 << 20)
#define TABLE_CHUNK 4096
#define TABLE_CHUNKS 1024
#define MAP_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK)

#define WORD_BITS (sizeof(uintptr_t) * CHAR_BIT)
#define LIVE_WORDS ((SLAB_UNITS + WORD_BITS - 1) / WORD_BITS)

CORO__STATIC_ASSERT(ATOMIC_POINTER_LOCK_FREE == 2,
                    "is_guard needs lock-free atomics");

/* ---- region table (read lock-free by coro__stack_is_guard) ------------- */

struct slab;

struct region {
  _Atomic uintptr_t base;   /* guard page of unit 0; 0 while unused */
  _Atomic uintptr_t stride; /* bytes per unit: guard page + stack */
  _Atomic uintptr_t nunits;
  _Atomic uintptr_t live[LIVE_WORDS]; /* bit i: unit i handed out */
  /* Under the lock: */
  struct slab *slab;        /* NULL for a single stack */
  struct region *next;      /* single-stack cache / free-slot list */
  size_t size;              /* single stack: usable bytes */
};

static struct region table0[TABLE_CHUNK];
static struct region *_Atomic table[TABLE_CHUNKS] = {table0};
static _Atomic size_t table_used; /* slots ever handed out */

/* ---- slabs ------------------------------------------------------------- */

enum { U_WARM, U_COLD, U_LIVE, U_COOLING };

struct unit {
  struct unit *next, *prev; /* warm or cold list */
  uint16_t idx;
  uint8_t state;            /* under the lock */
  uint8_t guarded;          /* written by the owner of the live unit */
};

struct ulist {
  struct unit *head, *tail;
  size_t n;
};

struct slab {
  struct slab *next, *prev; /* all mapped slabs */
  struct region *region;
  char *units;              /* first unit (its guard page) */
  unsigned nfree;           /* units on the warm or cold list */
  unsigned nwarm;
  struct unit unit[SLAB_UNITS];
};

/* ---- global state ------------------------------------------------------ */

enum { GUARD_UNKNOWN, GUARD_MADV, GUARD_MPROT };

static _Atomic size_t page_size;
static _Atomic int guard_mode;
static _Atomic size_t n_guard_madv, n_guard_mprot;

static struct {
  pthread_mutex_t mu;
  struct ulist warm, cold;
  struct slab *slabs;
  size_t nslabs;
  size_t live;
  size_t dontneed;
  struct region *odd;       /* cached single stacks, most recent first */
  size_t nodd, odd_bytes;
  struct region *free_slots;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void lock(void) { pthread_mutex_lock(&S.mu); }
static void unlock(void) { pthread_mutex_unlock(&S.mu); }

static void atfork_child(void) { pthread_mutex_init(&S.mu, NULL); }

static size_t pagesz(void) {
  size_t p = atomic_load_explicit(&page_size, memory_order_relaxed);
  if (CORO__UNLIKELY(p == 0)) {
    long v = sysconf(_SC_PAGESIZE);
    p = v > 0 ? (size_t)v : 4096;
    atomic_store_explicit(&page_size, p, memory_order_relaxed);
  }
  return p;
}

static size_t unit_stride(void) { return pagesz() + CORO__STACK_DEFAULT; }
static size_t slab_bytes(void) { return pagesz() + SLAB_UNITS * unit_stride(); }

static struct slab *unit_slab(struct unit *u) {
  return coro__container_of(u - u->idx, struct slab, unit[0]);
}

static char *unit_lo(struct unit *u) {
  return unit_slab(u)->units + (size_t)u->idx * unit_stride() + pagesz();
}

/* ---- lists ------------------------------------------------------------- */

static void ulist_push(struct ulist *l, struct unit *u) {
  u->prev = NULL;
  u->next = l->head;
  if (l->head != NULL)
    l->head->prev = u;
  else
    l->tail = u;
  l->head = u;
  l->n++;
}

static void ulist_remove(struct ulist *l, struct unit *u) {
  if (u->prev != NULL)
    u->prev->next = u->next;
  else
    l->head = u->next;
  if (u->next != NULL)
    u->next->prev = u->prev;
  else
    l->tail = u->prev;
  u->next = u->prev = NULL;
  l->n--;
}

/* ---- region table ------------------------------------------------------ */

static void live_set(struct region *r, size_t i) {
  atomic_fetch_or_explicit(&r->live[i / WORD_BITS], (uintptr_t)1 << (i % WORD_BITS),
                           memory_order_release);
}

static void live_clear(struct region *r, size_t i) {
  atomic_fetch_and_explicit(&r->live[i / WORD_BITS],
                            ~((uintptr_t)1 << (i % WORD_BITS)),
                            memory_order_release);
}

/* Under the lock. NULL when the table is full or a chunk cannot be mapped. */
static struct region *region_new(void *base, size_t stride, size_t nunits) {
  struct region *r = S.free_slots;
  if (r != NULL) {
    S.free_slots = r->next;
  } else {
    size_t i = atomic_load_explicit(&table_used, memory_order_relaxed);
    if (i >= (size_t)TABLE_CHUNK * TABLE_CHUNKS) return NULL;
    struct region *chunk =
        atomic_load_explicit(&table[i / TABLE_CHUNK], memory_order_relaxed);
    if (chunk == NULL) {
      /* Rare (every 4096 mappings): zero-filled, never unmapped. */
      void *p = mmap(NULL, sizeof(struct region) * TABLE_CHUNK,
                     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return NULL;
      chunk = p;
      atomic_store_explicit(&table[i / TABLE_CHUNK], chunk, memory_order_release);
    }
    r = &chunk[i % TABLE_CHUNK];
    atomic_store_explicit(&table_used, i + 1, memory_order_release);
  }
  r->next = NULL;
  r->slab = NULL;
  r->size = 0;
  atomic_store_explicit(&r->stride, stride, memory_order_relaxed);
  atomic_store_explicit(&r->nunits, nunits, memory_order_relaxed);
  atomic_store_explicit(&r->base, (uintptr_t)base, memory_order_release);
  return r;
}

/* Under the lock, before the mapping goes away. */
static void region_retire(struct region *r) {
  atomic_store_explicit(&r->base, 0, memory_order_release);
  for (size_t w = 0; w < LIVE_WORDS; w++)
    atomic_store_explicit(&r->live[w], 0, memory_order_relaxed);
  r->slab = NULL;
  r->next = S.free_slots;
  S.free_slots = r;
}

int coro__stack_is_guard(const void *addr) {
  uintptr_t a = (uintptr_t)addr;
  size_t page = atomic_load_explicit(&page_size, memory_order_relaxed);
  if (page == 0 || a == 0) return 0;
  size_t n = atomic_load_explicit(&table_used, memory_order_acquire);
  for (size_t i = 0; i < n; i++) {
    struct region *chunk =
        atomic_load_explicit(&table[i / TABLE_CHUNK], memory_order_acquire);
    if (chunk == NULL) break;
    struct region *r = &chunk[i % TABLE_CHUNK];
    uintptr_t base = atomic_load_explicit(&r->base, memory_order_acquire);
    if (base == 0 || a < base) continue;
    uintptr_t stride = atomic_load_explicit(&r->stride, memory_order_relaxed);
    uintptr_t nunits = atomic_load_explicit(&r->nunits, memory_order_relaxed);
    if (stride == 0) continue;
    uintptr_t idx = (a - base) / stride;
    if (idx >= nunits || idx >= SLAB_UNITS) continue;
    if ((a - base) % stride >= page) return 0; /* inside a stack */
    uintptr_t w = atomic_load_explicit(&r->live[idx / WORD_BITS],
                                       memory_order_acquire);
    return (w >> (idx % WORD_BITS)) & 1;
  }
  return 0;
}

/* ---- sanitizers -------------------------------------------------------- */

#if defined(CORO__ASAN)
/* Memory [p, p+n) is being given back: drop its shadow pages (they read as
 * zero, i.e. unpoisoned, afterwards) without faulting untouched ones in. */
static void asan_forget(void *p, size_t n) {
  size_t scale, offset, page = pagesz();
  __asan_get_shadow_mapping(&scale, &offset);
  uintptr_t s = ((uintptr_t)p >> scale) + offset;
  uintptr_t e = (((uintptr_t)p + n) >> scale) + offset;
  uintptr_t ps = (s + page - 1) & ~(uintptr_t)(page - 1);
  uintptr_t pe = e & ~(uintptr_t)(page - 1);
  if (pe > ps && madvise((void *)ps, pe - ps, MADV_DONTNEED) == 0) {
    uintptr_t mid_lo = (ps - offset) << scale, mid_hi = (pe - offset) << scale;
    if (mid_lo > (uintptr_t)p)
      __asan_unpoison_memory_region(p, mid_lo - (uintptr_t)p);
    if ((uintptr_t)p + n > mid_hi)
      __asan_unpoison_memory_region((void *)mid_hi, (uintptr_t)p + n - mid_hi);
  } else {
    __asan_unpoison_memory_region(p, n);
  }
}
#else
# define asan_forget(p, n) ((void)0)
#endif

static void hand_out(coro__stack *st, void *lo, size_t size, void *priv,
                     int reused) {
  (void)reused;
#if defined(CORO__ASAN)
  if (reused) __asan_unpoison_memory_region(lo, size);
#endif
  st->lo = lo;
  st->size = size;
  st->priv = priv;
#if defined(CORO_HAVE_VALGRIND)
  st->vg_id = VALGRIND_STACK_REGISTER((char *)lo, (char *)lo + size);
#else
  st->vg_id = 0;
#endif
}

static void take_back(coro__stack *st) {
#if defined(CORO_HAVE_VALGRIND)
  if (st->vg_id != 0) VALGRIND_STACK_DEREGISTER(st->vg_id);
#endif
  st->lo = NULL;
  st->priv = NULL;
  st->vg_id = 0;
}

/* ---- guards ------------------------------------------------------------ */

/* Guard the page at p. 0 or -ENOMEM. */
static int guard_install(void *p) {
  size_t page = pagesz();
  if (atomic_load_explicit(&guard_mode, memory_order_relaxed) != GUARD_MPROT) {
    int tries = 0;
    for (;;) {
      if (madvise(p, page, MADV_GUARD_INSTALL) == 0) {
        int unknown = GUARD_UNKNOWN;
        atomic_compare_exchange_strong(&guard_mode, &unknown, GUARD_MADV);
        atomic_fetch_add_explicit(&n_guard_madv, 1, memory_order_relaxed);
        return 0;
      }
      if ((errno == EINTR || errno == EAGAIN) && ++tries < 16) continue;
      break;
    }
    /* EINVAL: the kernel predates guard regions (or the mapping is locked,
     * which they refuse): use mprotect from now on. */
    if (errno == EINVAL)
      atomic_store_explicit(&guard_mode, GUARD_MPROT, memory_order_relaxed);
  }
  if (mprotect(p, page, PROT_NONE) == 0) {
    atomic_fetch_add_explicit(&n_guard_mprot, 1, memory_order_relaxed);
    return 0;
  }
  return -ENOMEM;
}

/* Test hook: behave as on a kernel without MADV_GUARD_INSTALL. */
void coro__stack_test_force_mprotect(void) {
  atomic_store_explicit(&guard_mode, GUARD_MPROT, memory_order_relaxed);
}

static void atfork_register(void) { pthread_atfork(lock, unlock, atfork_child); }

/* Outside the lock (pthread_atfork must not be called under it: fork runs
 * the prepare handlers with glibc's atfork lock held). */
static void *map_region(size_t bytes) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, atfork_register);
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_FLAGS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  /* Kernels that refuse guard regions may predate MAP_STACK implying
   * no-THP; a huge page would put several stacks' memory in one fault. */
  if (atomic_load_explicit(&guard_mode, memory_order_relaxed) != GUARD_MADV)
    (void)madvise(p, bytes, MADV_NOHUGEPAGE);
  return p;
}

static void unmap_region(void *p, size_t bytes) {
  asan_forget(p, bytes);
  munmap(p, bytes);
}

/* ---- slab allocation --------------------------------------------------- */

/* Under the lock: take an entirely free slab out of every list and the
 * table; the caller unmaps it after unlocking. */
static struct slab *slab_detach(struct slab *sl) {
  for (unsigned i = 0; i < SLAB_UNITS; i++) {
    struct unit *u = &sl->unit[i];
    ulist_remove(u->state == U_WARM ? &S.warm : &S.cold, u);
  }
  if (sl->prev != NULL)
    sl->prev->next = sl->next;
  else
    S.slabs = sl->next;
  if (sl->next != NULL) sl->next->prev = sl->prev;
  region_retire(sl->region);
  S.nslabs--;
  return sl;
}

/* Under the lock: detach sl if it is entirely free and holds no warm stack. */
static struct slab *slab_detach_if_idle(struct slab *sl) {
  if (sl->nfree != SLAB_UNITS || sl->nwarm != 0) return NULL;
  return slab_detach(sl);
}

/* Map a slab and fill in its header (outside the lock). */
static struct slab *slab_map(void) {
  size_t page = pagesz();
  CORO__STATIC_ASSERT(sizeof(struct slab) <= 4096, "slab header > one page");
  char *p = map_region(slab_bytes());
  if (p == NULL) return NULL;
  struct slab *sl = (struct slab *)p;
  sl->units = p + page;
  sl->nwarm = 0;
  sl->nfree = 0;
  for (unsigned i = 0; i < SLAB_UNITS; i++) {
    sl->unit[i].idx = (uint16_t)i;
    sl->unit[i].state = U_COLD;
  }
  return sl;
}

/* Under the lock: publish a fresh slab, list units 1.. as cold (unit 1
 * first) and return unit 0, or NULL if the table is full. */
static struct unit *slab_attach(struct slab *sl) {
  sl->region = region_new(sl->units, unit_stride(), SLAB_UNITS);
  if (sl->region == NULL) return NULL;
  sl->region->slab = sl;
  sl->prev = NULL;
  sl->next = S.slabs;
  if (S.slabs != NULL) S.slabs->prev = sl;
  S.slabs = sl;
  S.nslabs++;
  for (unsigned i = SLAB_UNITS - 1; i >= 1; i--) ulist_push(&S.cold, &sl->unit[i]);
  sl->nfree = SLAB_UNITS - 1;
  return &sl->unit[0];
}

/* Under the lock: u becomes free (warm or cold). Returns a slab to unmap. */
static struct slab *unit_put(struct unit *u, int warm) {
  struct slab *sl = unit_slab(u);
  sl->nfree++;
  if (warm) {
    u->state = U_WARM;
    sl->nwarm++;
    ulist_push(&S.warm, u);
    return NULL;
  }
  u->state = U_COLD;
  ulist_push(&S.cold, u);
  return slab_detach_if_idle(sl);
}

static void slab_unmap(struct slab *sl) {
  if (sl != NULL) unmap_region(sl, slab_bytes());
}

static int slab_alloc(coro__stack *st) {
  struct unit *u;
  struct slab *sl;
  int reused = 0; /* from the warm list: pages (and ASan shadow) kept */
  lock();
  if ((u = S.warm.head) != NULL) {
    reused = 1;
    ulist_remove(&S.warm, u);
    unit_slab(u)->nwarm--;
    unit_slab(u)->nfree--;
  } else if ((u = S.cold.head) != NULL) {
    ulist_remove(&S.cold, u);
    unit_slab(u)->nfree--;
  } else {
    unlock();
    sl = slab_map();
    if (sl == NULL) return -ENOMEM;
    lock();
    u = slab_attach(sl);
    if (u == NULL) {
      unlock();
      unmap_region(sl, slab_bytes());
      return -ENOMEM;
    }
  }
  u->state = U_LIVE;
  S.live++;
  int guarded = u->guarded;
  unlock();

  sl = unit_slab(u);
  if (!guarded) {
    if (guard_install(sl->units + (size_t)u->idx * unit_stride()) != 0) {
      lock();
      S.live--;
      struct slab *idle = unit_put(u, 0);
      unlock();
      slab_unmap(idle);
      return -ENOMEM;
    }
    u->guarded = 1;
  }
  live_set(sl->region, u->idx);
  hand_out(st, unit_lo(u), CORO__STACK_DEFAULT, u, reused);
  return 0;
}

/* Return the pages of a unit taken off the warm list, then list it cold. */
static void unit_cool(struct unit *u) {
  char *lo = unit_lo(u);
  (void)madvise(lo, CORO__STACK_DEFAULT, MADV_DONTNEED);
  asan_forget(lo, CORO__STACK_DEFAULT);
  lock();
  S.dontneed++;
  struct slab *idle = unit_put(u, 0);
  unlock();
  slab_unmap(idle);
}

static void slab_free(struct unit *u) {
  struct unit *victim = NULL;
  struct slab *sl = unit_slab(u);
  live_clear(sl->region, u->idx);
  lock();
  S.live--;
  if (S.warm.n >= CACHE_MAX && sl->nfree == SLAB_UNITS - 1) {
    /* The cache is full and this was the slab's last stack in use: give the
     * whole slab back (its warm stacks too) rather than cache in it. */
    unit_put(u, 0);
    struct slab *idle = slab_detach(sl);
    unlock();
    slab_unmap(idle);
    return;
  }
  unit_put(u, 1);
  if (S.warm.n > CACHE_MAX) {
    victim = S.warm.tail;
    ulist_remove(&S.warm, victim);
    victim->state = U_COOLING;
    unit_slab(victim)->nwarm--;
    unit_slab(victim)->nfree--;
  }
  unlock();
  if (victim != NULL) unit_cool(victim);
}

/* ---- single stacks (other sizes) -------------------------------------- */

static int single_alloc(coro__stack *st, size_t size) {
  size_t page = pagesz();
  struct region *r, **pp;
  if (size > SIZE_MAX / 2) return -ENOMEM;
  lock();
  for (pp = &S.odd; (r = *pp) != NULL; pp = &r->next) {
    if (r->size == size) {
      *pp = r->next;
      S.nodd--;
      S.odd_bytes -= size;
      S.live++;
      break;
    }
  }
  unlock();
  if (r != NULL) {
    live_set(r, 0);
    hand_out(st, (char *)atomic_load_explicit(&r->base, memory_order_relaxed) + page,
             size, r, 1);
    return 0;
  }

  char *p = map_region(page + size);
  if (p == NULL) return -ENOMEM;
  if (guard_install(p) != 0) {
    unmap_region(p, page + size);
    return -ENOMEM;
  }
  lock();
  r = region_new(p, page + size, 1);
  if (r != NULL) {
    r->size = size;
    S.live++;
  }
  unlock();
  if (r == NULL) {
    unmap_region(p, page + size);
    return -ENOMEM;
  }
  live_set(r, 0);
  hand_out(st, p + page, size, r, 0);
  return 0;
}

static void single_free(struct region *r) {
  void *base = (void *)atomic_load_explicit(&r->base, memory_order_relaxed);
  size_t bytes = atomic_load_explicit(&r->stride, memory_order_relaxed);
  int keep;
  live_clear(r, 0);
  lock();
  S.live--;
  keep = S.nodd < ODD_CACHE_MAX && S.odd_bytes + r->size <= ODD_CACHE_BYTES;
  if (keep) {
    r->next = S.odd;
    S.odd = r;
    S.nodd++;
    S.odd_bytes += r->size;
  } else {
    region_retire(r);
  }
  unlock();
  if (!keep) unmap_region(base, bytes);
}

/* ---- interface --------------------------------------------------------- */

size_t coro__stack_round(size_t size) {
  size_t page = pagesz();
  if (size == 0) return CORO__STACK_DEFAULT;
  if (size < CORO__STACK_MIN) size = CORO__STACK_MIN;
  if (size > SIZE_MAX - (page - 1)) return SIZE_MAX & ~(page - 1);
  return (size + page - 1) & ~(page - 1);
}

int coro__stack_alloc(coro__stack *st, size_t size) {
  size = coro__stack_round(size);
  if (size == CORO__STACK_DEFAULT) return slab_alloc(st);
  return single_alloc(st, size);
}

void coro__stack_free(coro__stack *st) {
  if (st == NULL || st->priv == NULL) return;
  void *priv = st->priv;
  size_t size = st->size;
  take_back(st);
  if (size == CORO__STACK_DEFAULT)
    slab_free(priv);
  else
    single_free(priv);
}

void coro__stack_get_stats(coro__stack_stats *out) {
  lock();
  out->live = S.live;
  out->cached = S.warm.n + S.nodd;
  out->cold = S.cold.n;
  out->slabs = S.nslabs;
  out->dontneed = S.dontneed;
  unlock();
  out->cache_max = CACHE_MAX;
  out->guard_madv = atomic_load_explicit(&n_guard_madv, memory_order_relaxed);
  out->guard_mprot = atomic_load_explicit(&n_guard_mprot, memory_order_relaxed);
}

void coro__stack_trim(void) {
  struct slab *idle = NULL, *sl, *next;
  struct region *odd;
  struct unit *u;
  lock();
  /* Warm stacks of slabs that stay mapped give their pages back; those of
   * idle slabs go with the slab. */
  while ((u = S.warm.head) != NULL) {
    sl = unit_slab(u);
    ulist_remove(&S.warm, u);
    sl->nwarm--;
    if (sl->nfree != SLAB_UNITS) {
      (void)madvise(unit_lo(u), CORO__STACK_DEFAULT, MADV_DONTNEED);
      asan_forget(unit_lo(u), CORO__STACK_DEFAULT);
      S.dontneed++;
    }
    u->state = U_COLD;
    ulist_push(&S.cold, u);
  }
  for (sl = S.slabs; sl != NULL; sl = next) {
    next = sl->next;
    if (slab_detach_if_idle(sl) != NULL) {
      sl->next = idle;
      idle = sl;
    }
  }
  odd = S.odd;
  S.odd = NULL;
  S.nodd = 0;
  S.odd_bytes = 0;
  unlock();

  for (sl = idle; sl != NULL; sl = next) {
    next = sl->next;
    slab_unmap(sl);
  }
  while (odd != NULL) {
    struct region *r = odd;
    odd = r->next;
    /* Read before retiring: retire clears base and relinks the slot. */
    void *base = (void *)atomic_load_explicit(&r->base, memory_order_relaxed);
    size_t bytes = atomic_load_explicit(&r->stride, memory_order_relaxed);
    lock();
    region_retire(r);
    unlock();
    unmap_region(base, bytes);
  }
}
