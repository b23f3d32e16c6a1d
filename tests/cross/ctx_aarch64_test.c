/* SPDX-License-Identifier: MIT */
/* The context switch on AArch64, built by tests/cross/aarch64.sh with a
 * cross compiler and run under qemu-aarch64. Plain C: no cmocka, no libuv,
 * stacks from mmap. Linked with src/ctx/ctx.c and either
 * ctx-aarch64-aapcs.S (-DCORO_CTX_ASM=1) or ctx-ucontext.c
 * (-DCORO_CTX_UCONTEXT=1).
 *
 * Prints one line per test and "passed=N failed=M"; exits 1 on failure. */
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "coro-internal.h"
#include "ctx/ctx.h"

#if !defined(__aarch64__)
# error "this test is for AArch64"
#endif

/* ctx.c and ctx-ucontext.c allocate through these. */
static long live_allocs;
void *coro__malloc(size_t size) {
  void *p = malloc(size);
  if (p != NULL) live_allocs++;
  return p;
}
void coro__free(void *ptr) {
  if (ptr == NULL) return;
  live_allocs--;
  free(ptr);
}

static int failed_line;
#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond) && failed_line == 0) {                                        \
      failed_line = __LINE__;                                                 \
      fprintf(stderr, "  CHECK failed at line %d: %s\n", __LINE__, #cond);  \
    }                                                                         \
  } while (0)

#define STACK_SIZE ((size_t)256 * 1024)
#define GUARD ((size_t)64 * 1024) /* covers 4K, 16K and 64K pages */

/* A stack with an inaccessible guard below it. */
static void *stack_new(void) {
  char *p = mmap(NULL, STACK_SIZE + GUARD, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  if (mprotect(p, GUARD, PROT_NONE) != 0) {
    perror("mprotect");
    exit(2);
  }
  return p + GUARD;
}

static void stack_free(void *lo) { munmap((char *)lo - GUARD, STACK_SIZE + GUARD); }

static void make(coro__ctx *ctx, void *stack, coro__ctx_fn fn, void *arg) {
  if (coro__ctx_make(ctx, stack, STACK_SIZE, fn, arg) != 0) {
    fprintf(stderr, "coro__ctx_make failed\n");
    exit(2);
  }
}

/* test_ctx_regs_switch(from, to, out, seed): loads seed+1 .. seed+11 into
 * x19..x29 and seed+12 .. seed+19 into d8..d15 (as raw bits), calls
 * coro__ctx_switch(from, to), and when it comes back stores those 19
 * registers into out[]. test_ctx_caller_sp(): the caller's sp. */
__asm__(
    ".text\n"
    ".globl test_ctx_regs_switch\n"
    ".type test_ctx_regs_switch, %function\n"
    "test_ctx_regs_switch:\n"
    "  sub sp, sp, #176\n"
    "  stp x29, x30, [sp, #0]\n"
    "  stp x19, x20, [sp, #16]\n"
    "  stp x21, x22, [sp, #32]\n"
    "  stp x23, x24, [sp, #48]\n"
    "  stp x25, x26, [sp, #64]\n"
    "  stp x27, x28, [sp, #80]\n"
    "  stp d8, d9, [sp, #96]\n"
    "  stp d10, d11, [sp, #112]\n"
    "  stp d12, d13, [sp, #128]\n"
    "  stp d14, d15, [sp, #144]\n"
    "  str x2, [sp, #160]\n"
    "  add x19, x3, #1\n"
    "  add x20, x3, #2\n"
    "  add x21, x3, #3\n"
    "  add x22, x3, #4\n"
    "  add x23, x3, #5\n"
    "  add x24, x3, #6\n"
    "  add x25, x3, #7\n"
    "  add x26, x3, #8\n"
    "  add x27, x3, #9\n"
    "  add x28, x3, #10\n"
    "  add x29, x3, #11\n"
    "  add x9, x3, #12\n  fmov d8, x9\n"
    "  add x9, x3, #13\n  fmov d9, x9\n"
    "  add x9, x3, #14\n  fmov d10, x9\n"
    "  add x9, x3, #15\n  fmov d11, x9\n"
    "  add x9, x3, #16\n  fmov d12, x9\n"
    "  add x9, x3, #17\n  fmov d13, x9\n"
    "  add x9, x3, #18\n  fmov d14, x9\n"
    "  add x9, x3, #19\n  fmov d15, x9\n"
    "  bl coro__ctx_switch\n"
    "  ldr x2, [sp, #160]\n"
    "  stp x19, x20, [x2, #0]\n"
    "  stp x21, x22, [x2, #16]\n"
    "  stp x23, x24, [x2, #32]\n"
    "  stp x25, x26, [x2, #48]\n"
    "  stp x27, x28, [x2, #64]\n"
    "  str x29, [x2, #80]\n"
    "  str d8, [x2, #88]\n"
    "  str d9, [x2, #96]\n"
    "  str d10, [x2, #104]\n"
    "  str d11, [x2, #112]\n"
    "  str d12, [x2, #120]\n"
    "  str d13, [x2, #128]\n"
    "  str d14, [x2, #136]\n"
    "  str d15, [x2, #144]\n"
    "  ldp x29, x30, [sp, #0]\n"
    "  ldp x19, x20, [sp, #16]\n"
    "  ldp x21, x22, [sp, #32]\n"
    "  ldp x23, x24, [sp, #48]\n"
    "  ldp x25, x26, [sp, #64]\n"
    "  ldp x27, x28, [sp, #80]\n"
    "  ldp d8, d9, [sp, #96]\n"
    "  ldp d10, d11, [sp, #112]\n"
    "  ldp d12, d13, [sp, #128]\n"
    "  ldp d14, d15, [sp, #144]\n"
    "  add sp, sp, #176\n"
    "  ret\n"
    ".size test_ctx_regs_switch, . - test_ctx_regs_switch\n"
    ".globl test_ctx_caller_sp\n"
    ".type test_ctx_caller_sp, %function\n"
    "test_ctx_caller_sp:\n"
    "  mov x0, sp\n"
    "  ret\n"
    ".size test_ctx_caller_sp, . - test_ctx_caller_sp\n");
#define NREGS 19
void test_ctx_regs_switch(coro__ctx *from, coro__ctx *to, uint64_t *out,
                          uint64_t seed);
uintptr_t test_ctx_caller_sp(void);

/* ---- tests --------------------------------------------------------------- */

static coro__ctx main_ctx, co, co2;

static void test_method(void) {
#if defined(CORO_CTX_UCONTEXT)
  CHECK(strcmp(coro__ctx_method(), "ucontext") == 0);
#else
  CHECK(strcmp(coro__ctx_method(), "asm,aarch64") == 0);
#endif
}

enum { PING_N = 100000 };
static long pp_value;

static void pp_fn(void *arg) {
  CHECK(arg == &pp_value);
  for (long i = 0; i < PING_N; i++) {
    CHECK(pp_value == 2 * i + 1);
    pp_value++;
    coro__ctx_switch(&co, &main_ctx);
  }
  pp_value = -1;
  coro__ctx_exit(&co, &main_ctx);
}

static void test_ping_pong(void) {
  void *st = stack_new();
  coro__ctx_init_main(&main_ctx);
  pp_value = 0;
  make(&co, st, pp_fn, &pp_value);
  for (long i = 0; i < PING_N; i++) {
    pp_value++;
    coro__ctx_switch(&main_ctx, &co);
    CHECK(pp_value == 2 * i + 2);
  }
  coro__ctx_switch(&main_ctx, &co);
  CHECK(pp_value == -1);
  coro__ctx_destroy(&co);
  stack_free(st);
}

enum { TWO_N = 1000 };
static char tw_log[2 * TWO_N + 8];
static int tw_n;

static void tw_a(void *arg) {
  (void)arg;
  for (int i = 0; i < TWO_N; i++) {
    tw_log[tw_n++] = 'a';
    coro__ctx_switch(&co, &co2);
  }
  tw_log[tw_n++] = 'A';
  coro__ctx_exit(&co, &co2);
}

static void tw_b(void *arg) {
  (void)arg;
  for (int i = 0; i < TWO_N; i++) {
    tw_log[tw_n++] = 'b';
    coro__ctx_switch(&co2, &co);
  }
  tw_log[tw_n++] = 'B';
  coro__ctx_exit(&co2, &main_ctx);
}

static void test_two_coroutines(void) {
  void *sa = stack_new(), *sb = stack_new();
  coro__ctx_init_main(&main_ctx);
  tw_n = 0;
  make(&co, sa, tw_a, NULL);
  make(&co2, sb, tw_b, NULL);
  coro__ctx_switch(&main_ctx, &co);
  CHECK(tw_n == 2 * TWO_N + 2);
  for (int i = 0; i < TWO_N; i++)
    CHECK(tw_log[2 * i] == 'a' && tw_log[2 * i + 1] == 'b');
  CHECK(tw_log[2 * TWO_N] == 'A' && tw_log[2 * TWO_N + 1] == 'B');
  coro__ctx_destroy(&co);
  coro__ctx_destroy(&co2);
  stack_free(sa);
  stack_free(sb);
}

#define SEED_MAIN UINT64_C(0x5a5a5a5a00000000)
#define SEED_CO UINT64_C(0xa5a5a5a500000000)
static uint64_t out_main[NREGS], out_co[NREGS];

static void rg_fn(void *arg) {
  (void)arg;
  test_ctx_regs_switch(&co, &main_ctx, out_co, SEED_CO);
  coro__ctx_exit(&co, &main_ctx);
}

static void test_callee_saved(void) {
  void *st = stack_new();
  coro__ctx_init_main(&main_ctx);
  memset(out_main, 0, sizeof out_main);
  memset(out_co, 0, sizeof out_co);
  make(&co, st, rg_fn, NULL);
  test_ctx_regs_switch(&main_ctx, &co, out_main, SEED_MAIN);
  for (int i = 0; i < NREGS; i++) CHECK(out_main[i] == SEED_MAIN + (uint64_t)i + 1);
  coro__ctx_switch(&main_ctx, &co);
  for (int i = 0; i < NREGS; i++) CHECK(out_co[i] == SEED_CO + (uint64_t)i + 1);
  coro__ctx_destroy(&co);
  stack_free(st);
}

static volatile double fp_one = 1.0, fp_three = 3.0;

enum { FPV_N = 200 };
static double fpv_co_result;

static double fp_series(int n, coro__ctx *from, coro__ctx *to) {
  double a = 1.0, b = 0.5, c = 0.25, d = 3.0, e = fp_one / fp_three;
  for (int i = 0; i < n; i++) {
    a = a * 1.0001 + b;
    b = b * 0.999 + c * e;
    c = c + d * 1e-3;
    d = d * 0.9999 + a * 1e-6;
    e = e * 1.00001 - 1e-7;
    if (from != NULL) coro__ctx_switch(from, to);
  }
  return a + b * 3.0 + c * 5.0 + d * 7.0 + e * 11.0;
}

static void fpv_fn(void *arg) {
  (void)arg;
  fpv_co_result = fp_series(FPV_N, &co, &main_ctx);
  coro__ctx_exit(&co, &main_ctx);
}

static void test_fp_values(void) {
  void *st = stack_new();
  double want = fp_series(FPV_N, NULL, NULL);
  coro__ctx_init_main(&main_ctx);
  make(&co, st, fpv_fn, NULL);
  double got = fp_series(FPV_N, &main_ctx, &co);
  coro__ctx_switch(&main_ctx, &co);
  CHECK(got == want);
  CHECK(fpv_co_result == want);
  coro__ctx_destroy(&co);
  stack_free(st);
}

#define DEEP_TARGET ((size_t)200 * 1024)
static uintptr_t deep_top;
static size_t deep_used;
static int deep_depth;
static long deep_sum;

__attribute__((noinline)) static long deep(int depth) {
  volatile char buf[1000];
  buf[0] = (char)depth;
  buf[sizeof buf - 1] = 1;
  uintptr_t here = (uintptr_t)__builtin_frame_address(0);
  long r;
  if (deep_top - here < DEEP_TARGET && depth < 1000000) {
    r = deep(depth + 1);
  } else {
    deep_used = deep_top - here;
    deep_depth = depth;
    coro__ctx_switch(&co, &main_ctx);
    r = 0;
  }
  return r + buf[sizeof buf - 1];
}

static void dp_fn(void *arg) {
  (void)arg;
  deep_sum = deep(1);
  coro__ctx_exit(&co, &main_ctx);
}

static void test_deep_recursion(void) {
  void *st = stack_new();
  coro__ctx_init_main(&main_ctx);
  deep_top = (uintptr_t)st + STACK_SIZE;
  make(&co, st, dp_fn, NULL);
  coro__ctx_switch(&main_ctx, &co);
  CHECK(deep_used >= DEEP_TARGET && deep_used < STACK_SIZE);
  coro__ctx_switch(&main_ctx, &co);
  CHECK(deep_sum == deep_depth);
  coro__ctx_destroy(&co);
  stack_free(st);
}

enum { REUSE_N = 1000 };
static long ru_count;
static int ru_exit_deep = 1;

__attribute__((noinline)) static void ru_deeper(int n) {
  volatile char pad[300];
  memset((char *)pad, n, sizeof pad);
  if (n > 0) {
    ru_deeper(n - 1);
    return;
  }
  ru_count += pad[0] + 1;
  if (ru_exit_deep) coro__ctx_exit(&co, &main_ctx);
}

static void ru_fn(void *arg) {
  ru_deeper((int)((intptr_t)arg % 8));
  CHECK(!"not reached");
  coro__ctx_exit(&co, &main_ctx);
}

static void test_exit_reuse(void) {
  void *st = stack_new();
  coro__ctx_init_main(&main_ctx);
  ru_count = 0;
  for (long i = 0; i < REUSE_N; i++) {
    make(&co, st, ru_fn, (void *)(intptr_t)i);
    coro__ctx_switch(&main_ctx, &co);
    coro__ctx_destroy(&co);
    CHECK(ru_count == i + 1);
  }
  stack_free(st);
}

static char al_text[64];

__attribute__((noinline)) static void al_nested(void) {
  alignas(16) volatile char x[16];
  x[0] = 1;
  CHECK(((uintptr_t)x & 15) == 0);
  CHECK((test_ctx_caller_sp() & 15) == 0);
}

static void al_fn(void *arg) {
  (void)arg;
  CHECK((test_ctx_caller_sp() & 15) == 0);
  al_nested();
  snprintf(al_text, sizeof al_text, "%.3f %.2Lf", fp_one / fp_three,
           (long double)2.25);
  coro__ctx_exit(&co, &main_ctx);
}

static void test_alignment(void) {
  void *st = stack_new();
  coro__ctx_init_main(&main_ctx);
  make(&co, st, al_fn, NULL);
  coro__ctx_switch(&main_ctx, &co);
  CHECK(strcmp(al_text, "0.333 2.25") == 0);
  coro__ctx_destroy(&co);
  stack_free(st);
}

#if defined(CORO_CTX_UCONTEXT)
/* Only the ucontext backend switches FPCR (the assembly one leaves it
 * thread-wide, see ctx-aarch64-aapcs.S). */
static uint64_t get_fpcr(void) {
  uint64_t v;
  __asm__ volatile("mrs %0, fpcr" : "=r"(v));
  return v;
}
static void set_fpcr(uint64_t v) { __asm__ volatile("msr fpcr, %0" : : "r"(v)); }
#define RMODE 0xc00000u
#define RM_UP 0x400000u
#define RM_DOWN 0x800000u

static void fpcr_fn(void *arg) {
  (void)arg;
  CHECK((get_fpcr() & RMODE) == RM_DOWN); /* inherited at make */
  set_fpcr((get_fpcr() & ~(uint64_t)RMODE) | RM_UP);
  coro__ctx_switch(&co, &main_ctx);
  CHECK((get_fpcr() & RMODE) == RM_UP);
  coro__ctx_exit(&co, &main_ctx);
}

static void test_fpcr(void) {
  void *st = stack_new();
  uint64_t saved = get_fpcr();
  coro__ctx_init_main(&main_ctx);
  set_fpcr((saved & ~(uint64_t)RMODE) | RM_DOWN);
  make(&co, st, fpcr_fn, NULL);
  set_fpcr(saved & ~(uint64_t)RMODE);
  coro__ctx_switch(&main_ctx, &co);
  CHECK((get_fpcr() & RMODE) == 0);
  coro__ctx_switch(&main_ctx, &co);
  CHECK((get_fpcr() & RMODE) == 0);
  set_fpcr(saved);
  coro__ctx_destroy(&co);
  stack_free(st);
}
#endif

int main(void) {
  static const struct {
    const char *name;
    void (*fn)(void);
  } tests[] = {
      {"method", test_method},
      {"ping_pong", test_ping_pong},
      {"two_coroutines", test_two_coroutines},
      {"callee_saved", test_callee_saved},
      {"fp_values", test_fp_values},
      {"deep_recursion", test_deep_recursion},
      {"exit_reuse", test_exit_reuse},
      {"alignment", test_alignment},
#if defined(CORO_CTX_UCONTEXT)
      {"fpcr", test_fpcr},
#endif
  };
  int passed = 0, failed = 0;
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    failed_line = 0;
    long before = live_allocs;
    tests[i].fn();
    if (live_allocs != before && failed_line == 0) {
      fprintf(stderr, "  %ld allocation(s) leaked\n", live_allocs - before);
      failed_line = -1;
    }
    printf("%s %s\n", failed_line ? "FAIL" : "ok  ", tests[i].name);
    if (failed_line) failed++;
    else passed++;
  }
  printf("passed=%d failed=%d\n", passed, failed);
  return failed ? 1 : 0;
}
