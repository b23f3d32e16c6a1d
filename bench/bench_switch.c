/* SPDX-License-Identifier: MIT */
/* Context-switch cost: libcoro's compiled-in switch against the usual
 * alternatives, measured in one run on the same machine.
 *
 *   bench_switch [N]     N one-way switches per method (default 20000000)
 *
 * A "switch" is one one-way transfer; a ping-pong round trip is two. Each
 * method runs 5 times and the best time is reported, one line each:
 *   switch: 5.9 ns/switch n=20000000 method=asm,x86_64
 * Methods: libcoro's coro__ctx_switch (whatever backend is compiled in);
 * a bare _setjmp/_longjmp ping-pong (what the ucontext backend does after
 * the first entry, without its FP control save); glibc swapcontext (a
 * sigprocmask system call per switch, so it runs N/20 switches); and
 * boost.context's fcontext when libboost_context is linked in. */
#undef _FORTIFY_SOURCE /* __longjmp_chk rejects jumps between stacks */

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

#include "coro-internal.h"
#include "ctx/ctx.h"

/* The other methods are not annotated for sanitizers, which report false
 * errors on their stacks; a sanitized build measures libcoro alone. */
#if defined(CORO__ASAN) || defined(CORO__TSAN)
# define SANITIZED 1
#endif

#define REPS 5
#define STACK_SIZE ((size_t)256 * 1024)

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *stack_new(void) {
  void *p = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  return p;
}

static void stack_free(void *p) { munmap(p, STACK_SIZE); }

/* Best of REPS runs of fn(rounds), in ns per one-way switch. */
static double best_of(double (*fn)(long rounds), long switches) {
  long rounds = switches / 2;
  double best = 0;
  fn(rounds / 100 + 1); /* warm up caches and stack pages */
  for (int i = 0; i < REPS; i++) {
    double ns = fn(rounds) / (double)(2 * rounds);
    if (i == 0 || ns < best) best = ns;
  }
  return best;
}

/* ---- libcoro ------------------------------------------------------------ */

static coro__ctx lc_main, lc_co;
static volatile int lc_stop;

static void lc_fn(void *arg) {
  (void)arg;
  while (!lc_stop) coro__ctx_switch(&lc_co, &lc_main);
  coro__ctx_exit(&lc_co, &lc_main);
}

static double lc_run(long rounds) {
  void *stack = stack_new();
  coro__ctx_init_main(&lc_main);
  if (coro__ctx_make(&lc_co, stack, STACK_SIZE, lc_fn, NULL) != 0) {
    fprintf(stderr, "coro__ctx_make failed\n");
    exit(1);
  }
  lc_stop = 0;
  double t0 = now_ns();
  for (long i = 0; i < rounds; i++) coro__ctx_switch(&lc_main, &lc_co);
  double t = now_ns() - t0;
  lc_stop = 1;
  coro__ctx_switch(&lc_main, &lc_co);
  coro__ctx_destroy(&lc_co);
  coro__ctx_destroy(&lc_main);
  stack_free(stack);
  return t;
}

/* ---- _setjmp/_longjmp, entered once through setcontext ------------------ */

static jmp_buf sj_main, sj_co;
static ucontext_t sj_uc;

__attribute__((noinline)) static void sj_co_once(void) {
  if (_setjmp(sj_co) == 0) _longjmp(sj_main, 1);
}

static void sj_entry(void) {
  for (;;) sj_co_once();
}

__attribute__((noinline)) static void sj_main_once(void) {
  if (_setjmp(sj_main) == 0) _longjmp(sj_co, 1);
}

static double sj_run(long rounds) {
  void *stack = stack_new();
  getcontext(&sj_uc);
  sj_uc.uc_stack.ss_sp = stack;
  sj_uc.uc_stack.ss_size = STACK_SIZE;
  sj_uc.uc_link = NULL;
  makecontext(&sj_uc, sj_entry, 0);
  if (_setjmp(sj_main) == 0) setcontext(&sj_uc); /* co saves sj_co, returns */
  double t0 = now_ns();
  for (long i = 0; i < rounds; i++) sj_main_once();
  double t = now_ns() - t0;
  stack_free(stack); /* co is left suspended; nothing on it to release */
  return t;
}

/* ---- swapcontext --------------------------------------------------------- */

static ucontext_t sw_main, sw_co;

static void sw_entry(void) {
  for (;;) swapcontext(&sw_co, &sw_main);
}

static double sw_run(long rounds) {
  void *stack = stack_new();
  getcontext(&sw_co);
  sw_co.uc_stack.ss_sp = stack;
  sw_co.uc_stack.ss_size = STACK_SIZE;
  sw_co.uc_link = NULL;
  makecontext(&sw_co, sw_entry, 0);
  double t0 = now_ns();
  for (long i = 0; i < rounds; i++) swapcontext(&sw_main, &sw_co);
  double t = now_ns() - t0;
  stack_free(stack);
  return t;
}

/* ---- boost.context fcontext (its C-linkage assembly entry points) -------- */

#if defined(CORO_BENCH_HAVE_BOOST)
typedef void *fcontext_t;
typedef struct {
  fcontext_t fctx;
  void *data;
} transfer_t;
transfer_t jump_fcontext(fcontext_t const to, void *vp);
fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(transfer_t));

static void bf_entry(transfer_t t) {
  for (;;) t = jump_fcontext(t.fctx, NULL);
}

static double bf_run(long rounds) {
  void *stack = stack_new();
  fcontext_t co =
      make_fcontext((char *)stack + STACK_SIZE, STACK_SIZE, bf_entry);
  double t0 = now_ns();
  for (long i = 0; i < rounds; i++) co = jump_fcontext(co, NULL).fctx;
  double t = now_ns() - t0;
  stack_free(stack);
  return t;
}
#endif

int main(int argc, char **argv) {
  long n = 20000000;
  if (argc > 1) {
    n = strtol(argv[1], NULL, 10);
    if (n < 2) n = 2;
  }
  n &= ~1L;

  /* The backend's name up to the comma: "asm" or "ucontext". */
  const char *method = coro__ctx_method();
  char kind[32];
  size_t k = strcspn(method, ",");
  if (k >= sizeof kind) k = sizeof kind - 1;
  memcpy(kind, method, k);
  kind[k] = '\0';

  double lc = best_of(lc_run, n);
  printf("switch: %.1f ns/switch n=%ld method=%s\n", lc, n, method);
  fflush(stdout);

#if defined(SANITIZED)
  printf("switch: skipped method=setjmp,swapcontext,boost.fcontext "
         "(sanitizer build)\n");
  return 0;
#endif

  double sj = best_of(sj_run, n);
  printf("switch: %.1f ns/switch n=%ld method=setjmp\n", sj, n);
  fflush(stdout);

  long n_sw = (n / 20) & ~1L;
  if (n_sw < 2) n_sw = 2;
  double sw = best_of(sw_run, n_sw);
  printf("switch: %.1f ns/switch n=%ld method=swapcontext\n", sw, n_sw);
  fflush(stdout);

#if defined(CORO_BENCH_HAVE_BOOST)
  double bf = best_of(bf_run, n);
  printf("switch: %.1f ns/switch n=%ld method=boost.fcontext\n", bf, n);
  printf("switch_ratio: %.2f %s/boost\n", lc / bf, kind);
#else
  (void)kind;
  printf("switch: skipped method=boost.fcontext "
         "(libboost-context-dev not installed)\n");
#endif
  return 0;
}
