/* SPDX-License-Identifier: MIT */
/* The raw context switch (src/ctx/ctx.h) with no loop: ping-pong, direct
 * coroutine-to-coroutine switches, callee-saved registers and FP control
 * state preserved, deep recursion, exit and stack reuse, stack alignment.
 *
 * cmocka's assertions longjmp to the runner on the main stack, so code on a
 * coroutine stack records failures with CHECK() and the test body asserts
 * them after the coroutine is gone. */
#include <fenv.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "ctx/ctx.h"
#include "ctx/stack.h"


/* ---- helpers ------------------------------------------------------------ */

static void co_new(coro__stack *st, coro__ctx *ctx, size_t size,
                   coro__ctx_fn fn, void *arg) {
  assert_int_equal(coro__stack_alloc(st, size), 0);
  assert_true(st->size >= coro__stack_round(size));
  assert_int_equal(coro__ctx_make(ctx, st->lo, st->size, fn, arg), 0);
}

static void co_free(coro__stack *st, coro__ctx *ctx) {
  coro__ctx_destroy(ctx);
  coro__stack_free(st);
}

/* Architecture helpers written in assembly, so that the compiler cannot
 * move values out of the registers under test.
 *
 * test_ctx_regs_switch(from, to, out, seed): loads seed+1, seed+2, ... into
 * every callee-saved register, calls coro__ctx_switch(from, to), and when it
 * comes back stores those registers into out[] in the same order.
 *   x86-64:  rbx rbp r12 r13 r14 r15                     (6 values)
 *   AArch64: x19..x28 x29, then d8..d15 as raw bits       (19 values)
 * test_ctx_caller_sp(): the caller's stack pointer at the call (before the
 * return address is pushed, on x86-64). The ABIs make it 16-byte aligned. */
#if defined(__x86_64__)
# define HAVE_REGS_TEST 1
# define NREGS 6
__asm__(
    ".text\n"
    ".globl test_ctx_regs_switch\n"
    ".type test_ctx_regs_switch, @function\n"
    "test_ctx_regs_switch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  pushq %rdx\n" /* out; 7 pushes re-align rsp to 16 */
    "  leaq 1(%rcx), %rbx\n"
    "  leaq 2(%rcx), %rbp\n"
    "  leaq 3(%rcx), %r12\n"
    "  leaq 4(%rcx), %r13\n"
    "  leaq 5(%rcx), %r14\n"
    "  leaq 6(%rcx), %r15\n"
    "  call coro__ctx_switch\n"
    "  popq %rdx\n"
    "  movq %rbx, 0(%rdx)\n"
    "  movq %rbp, 8(%rdx)\n"
    "  movq %r12, 16(%rdx)\n"
    "  movq %r13, 24(%rdx)\n"
    "  movq %r14, 32(%rdx)\n"
    "  movq %r15, 40(%rdx)\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size test_ctx_regs_switch, . - test_ctx_regs_switch\n"
    ".globl test_ctx_caller_sp\n"
    ".type test_ctx_caller_sp, @function\n"
    "test_ctx_caller_sp:\n"
    "  leaq 8(%rsp), %rax\n"
    "  ret\n"
    ".size test_ctx_caller_sp, . - test_ctx_caller_sp\n");
#elif defined(__aarch64__)
# define HAVE_REGS_TEST 1
# define NREGS 19
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
#endif
#if defined(HAVE_REGS_TEST)
void test_ctx_regs_switch(coro__ctx *from, coro__ctx *to, uint64_t *out,
                          uint64_t seed);
uintptr_t test_ctx_caller_sp(void);
#endif

/* ---- coro__ctx_method --------------------------------------------------- */

static void test_method(void **state) {
  (void)state;
#if defined(CORO_CTX_UCONTEXT)
  assert_string_equal(coro__ctx_method(), "ucontext");
#elif defined(__x86_64__)
  assert_string_equal(coro__ctx_method(), "asm,x86_64");
#elif defined(__aarch64__)
  assert_string_equal(coro__ctx_method(), "asm,aarch64");
#endif
}

/* ---- ping-pong between the thread's context and a coroutine ------------- */

enum { PING_N = 100000 };
static struct {
  coro__ctx main, co;
  long value;
} pp;

static void pp_fn(void *arg) {
  CHECK(arg == &pp);
  for (long i = 0; i < PING_N; i++) {
    CHECK_EQ(pp.value, 2 * i + 1);
    pp.value++;
    coro__ctx_switch(&pp.co, &pp.main);
  }
  pp.value = -1;
  coro__ctx_exit(&pp.co, &pp.main);
}

static void test_ping_pong(void **state) {
  (void)state;
  coro__stack st;
  coro__ctx_init_main(&pp.main);
  pp.value = 0;
  co_new(&st, &pp.co, 0, pp_fn, &pp);
  for (long i = 0; i < PING_N; i++) {
    pp.value++;
    coro__ctx_switch(&pp.main, &pp.co);
    if (pp.value != 2 * i + 2) fail_msg("round %ld: value %ld", i, pp.value);
  }
  coro__ctx_switch(&pp.main, &pp.co); /* let it finish */
  assert_int_equal(pp.value, -1);
  co_free(&st, &pp.co);
  coro__ctx_destroy(&pp.main);
  assert_checks_passed();
}

/* ---- two coroutines switching directly to each other -------------------- */

enum { TWO_N = 1000 };
static struct {
  coro__ctx main, a, b;
  char log[2 * TWO_N + 8];
  int n;
} tw;

static void tw_a(void *arg) {
  (void)arg;
  for (int i = 0; i < TWO_N; i++) {
    tw.log[tw.n++] = 'a';
    coro__ctx_switch(&tw.a, &tw.b);
  }
  tw.log[tw.n++] = 'A';
  coro__ctx_exit(&tw.a, &tw.b); /* a coroutine may end into another one */
}

static void tw_b(void *arg) {
  (void)arg;
  for (int i = 0; i < TWO_N; i++) {
    tw.log[tw.n++] = 'b';
    coro__ctx_switch(&tw.b, &tw.a);
  }
  tw.log[tw.n++] = 'B';
  coro__ctx_exit(&tw.b, &tw.main);
}

static void test_two_coroutines(void **state) {
  (void)state;
  coro__stack sa, sb;
  memset(&tw, 0, sizeof tw);
  coro__ctx_init_main(&tw.main);
  co_new(&sa, &tw.a, 0, tw_a, NULL);
  co_new(&sb, &tw.b, 0, tw_b, NULL);
  coro__ctx_switch(&tw.main, &tw.a);
  assert_int_equal(tw.n, 2 * TWO_N + 2);
  for (int i = 0; i < TWO_N; i++) {
    assert_int_equal(tw.log[2 * i], 'a');
    assert_int_equal(tw.log[2 * i + 1], 'b');
  }
  assert_int_equal(tw.log[2 * TWO_N], 'A');
  assert_int_equal(tw.log[2 * TWO_N + 1], 'B');
  co_free(&sa, &tw.a);
  co_free(&sb, &tw.b);
  coro__ctx_destroy(&tw.main);
}

/* ---- a coroutine makes and starts another; exits in any order ----------- */

static struct {
  coro__ctx main, c1, c2;
  coro__stack s2;
  int step;
} nest;

static void nest_c2(void *arg) {
  (void)arg;
  CHECK_EQ(nest.step, 1);
  nest.step = 2;
  coro__ctx_exit(&nest.c2, &nest.main); /* straight to main, not c1 */
}

static void nest_c1(void *arg) {
  (void)arg;
  CHECK_EQ(nest.step, 0);
  nest.step = 1;
  CHECK_EQ(coro__ctx_make(&nest.c2, nest.s2.lo, nest.s2.size, nest_c2, NULL),
           0);
  coro__ctx_switch(&nest.c1, &nest.c2);
  CHECK_EQ(nest.step, 3);
  nest.step = 4;
  coro__ctx_exit(&nest.c1, &nest.main);
}

static void test_nested_make(void **state) {
  (void)state;
  coro__stack s1;
  memset(&nest, 0, sizeof nest);
  coro__ctx_init_main(&nest.main);
  assert_int_equal(coro__stack_alloc(&nest.s2, 0), 0);
  co_new(&s1, &nest.c1, 0, nest_c1, NULL);
  coro__ctx_switch(&nest.main, &nest.c1);
  assert_int_equal(nest.step, 2);
  nest.step = 3;
  coro__ctx_switch(&nest.main, &nest.c1);
  assert_int_equal(nest.step, 4);
  co_free(&s1, &nest.c1);
  co_free(&nest.s2, &nest.c2);
  coro__ctx_destroy(&nest.main);
  assert_checks_passed();
}

/* ---- callee-saved registers --------------------------------------------- */

#if defined(HAVE_REGS_TEST)
# define SEED_MAIN UINT64_C(0x5a5a5a5a00000000)
# define SEED_CO UINT64_C(0xa5a5a5a500000000)
static struct {
  coro__ctx main, co;
  uint64_t out_main[NREGS], out_co[NREGS];
} rg;

static void rg_fn(void *arg) {
  (void)arg;
  test_ctx_regs_switch(&rg.co, &rg.main, rg.out_co, SEED_CO);
  coro__ctx_exit(&rg.co, &rg.main);
}

static void test_callee_saved(void **state) {
  (void)state;
  coro__stack st;
  memset(&rg, 0, sizeof rg);
  coro__ctx_init_main(&rg.main);
  co_new(&st, &rg.co, 0, rg_fn, NULL);
  /* main loads its values and enters co; co loads others and comes back. */
  test_ctx_regs_switch(&rg.main, &rg.co, rg.out_main, SEED_MAIN);
  for (int i = 0; i < NREGS; i++)
    if (rg.out_main[i] != SEED_MAIN + (uint64_t)i + 1)
      fail_msg("main reg %d: %#llx", i, (unsigned long long)rg.out_main[i]);
  /* main's values are gone from the registers now; co must get its own. */
  coro__ctx_switch(&rg.main, &rg.co);
  for (int i = 0; i < NREGS; i++)
    if (rg.out_co[i] != SEED_CO + (uint64_t)i + 1)
      fail_msg("co reg %d: %#llx", i, (unsigned long long)rg.out_co[i]);
  co_free(&st, &rg.co);
  coro__ctx_destroy(&rg.main);
}
#endif

/* ---- floating-point control state --------------------------------------- */

/* The rounding mode is set the way fesetround does it, but inline: the
 * fenv functions live in libm, which nothing else here needs. The mode's
 * effect on arithmetic is checked too. FE_* are the values of the hardware
 * fields on both architectures. */
#if defined(__x86_64__)
# define HAVE_FP_TEST 1
# define MXCSR_CONTROL 0xffc0u /* DAZ, masks, RC, FTZ; not the sticky flags */
# define MXCSR_FTZ 0x8000u
# define FCW_PC 0x0300u        /* x87 precision control */
static unsigned get_mxcsr(void) {
  unsigned v;
  __asm__ volatile("stmxcsr %0" : "=m"(v));
  return v;
}
static void set_mxcsr(unsigned v) { __asm__ volatile("ldmxcsr %0" : : "m"(v)); }
static unsigned get_fcw(void) {
  unsigned short v;
  __asm__ volatile("fnstcw %0" : "=m"(v));
  return v;
}
static void set_fcw(unsigned v) {
  unsigned short s = (unsigned short)v;
  __asm__ volatile("fldcw %0" : : "m"(s));
}
static int get_round(void) {
  int x87 = (int)(get_fcw() & 0xc00u), sse = (int)((get_mxcsr() >> 3) & 0xc00u);
  return x87 == sse ? x87 : -1;
}
static void set_round(int r) {
  set_fcw((get_fcw() & ~0xc00u) | (unsigned)r);
  set_mxcsr((get_mxcsr() & ~0x6000u) | ((unsigned)r << 3));
}
typedef struct fpctl { unsigned mxcsr, fcw; } fpctl;
static fpctl fp_get(void) { return (fpctl){get_mxcsr(), get_fcw()}; }
static void fp_set(fpctl c) {
  set_mxcsr(c.mxcsr);
  set_fcw(c.fcw);
}
#elif defined(__aarch64__)
# define HAVE_FP_TEST 1
static uint64_t get_fpcr(void) {
  uint64_t v;
  __asm__ volatile("mrs %0, fpcr" : "=r"(v));
  return v;
}
static void set_fpcr(uint64_t v) { __asm__ volatile("msr fpcr, %0" : : "r"(v)); }
static int get_round(void) { return (int)(get_fpcr() & 0xc00000u); }
static void set_round(int r) {
  set_fpcr((get_fpcr() & ~(uint64_t)0xc00000u) | (uint64_t)r);
}
typedef struct fpctl { uint64_t fpcr; } fpctl;
static fpctl fp_get(void) { return (fpctl){get_fpcr()}; }
static void fp_set(fpctl c) { set_fpcr(c.fpcr); }
#endif

static volatile double fp_one = 1.0, fp_three = 3.0;

#if defined(HAVE_FP_TEST)
static struct {
  coro__ctx main, co;
  double third_nearest;
  unsigned co_mxcsr, co_fcw;
} fpc;

static void fpc_fn(void *arg) {
  (void)arg;
  /* Inherited from the creator at coro__ctx_make. */
  CHECK_EQ(get_round(), FE_DOWNWARD);
  set_round(FE_UPWARD);
# if defined(__x86_64__)
  set_mxcsr(get_mxcsr() | MXCSR_FTZ);
  set_fcw(get_fcw() & ~FCW_PC); /* single precision */
  fpc.co_mxcsr = get_mxcsr() & MXCSR_CONTROL;
  fpc.co_fcw = get_fcw();
# endif
  coro__ctx_switch(&fpc.co, &fpc.main);
  /* main changed its own mode meanwhile; ours is untouched. */
  CHECK_EQ(get_round(), FE_UPWARD);
  /* Really rounds up (Valgrind's SSE emulation always rounds to nearest). */
  CHECK(UNDER_VALGRIND() || fp_one / fp_three > fpc.third_nearest);
# if defined(__x86_64__)
  CHECK_EQ(get_mxcsr() & MXCSR_CONTROL, fpc.co_mxcsr);
  CHECK_EQ(get_fcw(), fpc.co_fcw);
# endif
  coro__ctx_exit(&fpc.co, &fpc.main);
}

static void test_fp_control(void **state) {
  (void)state;
  coro__stack st;
  fpctl saved = fp_get();
  memset(&fpc, 0, sizeof fpc);
  fpc.third_nearest = fp_one / fp_three;
  coro__ctx_init_main(&fpc.main);
  set_round(FE_DOWNWARD);
  co_new(&st, &fpc.co, 0, fpc_fn, NULL);
  set_round(FE_TONEAREST);
# if defined(__x86_64__)
  unsigned m_mxcsr = get_mxcsr() & MXCSR_CONTROL, m_fcw = get_fcw();
# endif
  coro__ctx_switch(&fpc.main, &fpc.co);
  int round_after = get_round();
  double third_after = fp_one / fp_three;
# if defined(__x86_64__)
  unsigned mxcsr_after = get_mxcsr() & MXCSR_CONTROL, fcw_after = get_fcw();
# endif
  set_round(FE_TOWARDZERO);
  coro__ctx_switch(&fpc.main, &fpc.co);
  int round_end = get_round();
  fp_set(saved);
  assert_int_equal(round_after, FE_TONEAREST);
  assert_true(third_after == fpc.third_nearest);
  assert_int_equal(round_end, FE_TOWARDZERO);
# if defined(__x86_64__)
  assert_int_equal(mxcsr_after, m_mxcsr);
  assert_int_equal(fcw_after, m_fcw);
  assert_int_not_equal(fpc.co_mxcsr, m_mxcsr);
  assert_int_not_equal(fpc.co_fcw, m_fcw);
# endif
  co_free(&st, &fpc.co);
  coro__ctx_destroy(&fpc.main);
  assert_checks_passed();
}
#endif

/* ---- floating-point values live across switches ------------------------- */

enum { FPV_N = 200 };
static struct {
  coro__ctx main, co;
  double co_result;
} fpv;

/* Several doubles stay live across every switch: on AArch64 the compiler
 * keeps them in d8-d15, on x86-64 it spills them around the call. */
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
  fpv.co_result = fp_series(FPV_N, &fpv.co, &fpv.main);
  coro__ctx_exit(&fpv.co, &fpv.main);
}

static void test_fp_values(void **state) {
  (void)state;
  coro__stack st;
  double want = fp_series(FPV_N, NULL, NULL);
  coro__ctx_init_main(&fpv.main);
  fpv.co_result = 0;
  co_new(&st, &fpv.co, 0, fpv_fn, NULL);
  double got = fp_series(FPV_N, &fpv.main, &fpv.co);
  coro__ctx_switch(&fpv.main, &fpv.co); /* co finishes */
  assert_true(got == want);
  assert_true(fpv.co_result == want);
  co_free(&st, &fpv.co);
  coro__ctx_destroy(&fpv.main);
}

/* ---- deep recursion on a coroutine stack -------------------------------- */

#define DEEP_STACK ((size_t)256 * 1024)
#define DEEP_TARGET ((size_t)200 * 1024)
static struct {
  coro__ctx main, co;
  uintptr_t top;
  size_t used;
  int depth;
  long sum;
} dp;

/* Recurse until frames span DEEP_TARGET bytes of the real stack, measured
 * with the frame address (under ASan the arrays may live on a fake stack),
 * switch to main from the bottom, then unwind. */
__attribute__((noinline)) static long deep(int depth) {
  volatile char buf[1000];
  buf[0] = (char)depth;
  buf[sizeof buf - 1] = 1;
  uintptr_t here = (uintptr_t)__builtin_frame_address(0);
  long r;
  if (dp.top - here < DEEP_TARGET && depth < 1000000) {
    r = deep(depth + 1);
  } else {
    dp.used = dp.top - here;
    dp.depth = depth;
    coro__ctx_switch(&dp.co, &dp.main);
    r = 0;
  }
  return r + buf[sizeof buf - 1];
}

static void dp_fn(void *arg) {
  (void)arg;
  dp.sum = deep(1);
  coro__ctx_exit(&dp.co, &dp.main);
}

static void test_deep_recursion(void **state) {
  (void)state;
  coro__stack st;
  memset(&dp, 0, sizeof dp);
  coro__ctx_init_main(&dp.main);
  co_new(&st, &dp.co, DEEP_STACK, dp_fn, NULL);
  assert_true(st.size >= DEEP_STACK);
  dp.top = (uintptr_t)st.lo + st.size;
  coro__ctx_switch(&dp.main, &dp.co);
  assert_true(dp.used >= DEEP_TARGET);
  assert_true(dp.used < st.size);
  coro__ctx_switch(&dp.main, &dp.co);
  assert_int_equal(dp.sum, dp.depth);
  co_free(&st, &dp.co);
  coro__ctx_destroy(&dp.main);
}

/* ---- exit, then the same stack for a new context, many times ------------ */

enum { REUSE_N = 1000 };
static struct {
  coro__ctx main, co;
  long count;
  int exit_deep;
} ru;

/* Leaves poisoned redzones (under ASan) and stale data on the stack. */
__attribute__((noinline)) static void ru_deeper(int n) {
  volatile char pad[300];
  memset((char *)pad, n, sizeof pad);
  if (n > 0) {
    ru_deeper(n - 1);
    return;
  }
  ru.count += pad[0] + 1;
  if (ru.exit_deep) /* always: from deep inside, nothing unwound */
    coro__ctx_exit(&ru.co, &ru.main);
}

static void ru_fn(void *arg) {
  long i = (long)(intptr_t)arg;
  ru_deeper((int)(i % 8));
  CHECK(!"not reached");
  coro__ctx_exit(&ru.co, &ru.main);
}

static void test_exit_reuse(void **state) {
  (void)state;
  coro__stack st;
  coro__ctx_init_main(&ru.main);
  ru.count = 0;
  ru.exit_deep = 1;
  assert_int_equal(coro__stack_alloc(&st, 0), 0);
  for (long i = 0; i < REUSE_N; i++) {
    if (i % 100 == 99) { /* and through the allocator's cache */
      coro__stack_free(&st);
      assert_int_equal(coro__stack_alloc(&st, 0), 0);
    }
    assert_int_equal(
        coro__ctx_make(&ru.co, st.lo, st.size, ru_fn, (void *)(intptr_t)i),
        0);
    coro__ctx_switch(&ru.main, &ru.co);
    coro__ctx_destroy(&ru.co);
    assert_int_equal(ru.count, i + 1);
  }
  coro__stack_free(&st);
  coro__ctx_destroy(&ru.main);
  assert_checks_passed();
}

/* ---- made and destroyed without ever running ---------------------------- */

static void never_fn(void *arg) {
  (void)arg;
  CHECK(!"never runs");
}

static void test_destroy_unstarted(void **state) {
  (void)state;
  coro__stack st;
  coro__ctx c;
  assert_int_equal(coro__stack_alloc(&st, 0), 0);
  for (int i = 0; i < 100; i++) {
    assert_int_equal(coro__ctx_make(&c, st.lo, st.size, never_fn, NULL), 0);
    coro__ctx_destroy(&c);
  }
  coro__stack_free(&st);
  assert_checks_passed();
}

/* ---- 16-byte stack alignment in a new context --------------------------- */

static struct {
  coro__ctx main, co;
  char text[64];
} al;

__attribute__((noinline)) static void al_nested(void) {
  alignas(16) volatile char x[16];
  x[0] = 1;
  CHECK_EQ(((uintptr_t)x & 15), 0);
#if defined(HAVE_REGS_TEST)
  CHECK((test_ctx_caller_sp() & 15) == 0);
#endif
}

static void al_fn(void *arg) {
  (void)arg;
#if defined(HAVE_REGS_TEST)
  CHECK((test_ctx_caller_sp() & 15) == 0);
#endif
  alignas(16) volatile char x[16];
  x[0] = 1;
  CHECK_EQ(((uintptr_t)x & 15), 0);
  al_nested();
  /* vfprintf spills SSE registers with aligned stores. */
  snprintf(al.text, sizeof al.text, "%.3f %.2Lf", fp_one / fp_three,
           (long double)2.25);
  coro__ctx_switch(&al.co, &al.main);
  al_nested();
  coro__ctx_exit(&al.co, &al.main);
}

static void test_alignment(void **state) {
  (void)state;
  coro__stack st;
  coro__ctx_init_main(&al.main);
  co_new(&st, &al.co, 0, al_fn, NULL);
  coro__ctx_switch(&al.main, &al.co);
  assert_string_equal(al.text, "0.333 2.25");
  coro__ctx_switch(&al.main, &al.co);
  co_free(&st, &al.co);
  coro__ctx_destroy(&al.main);
  assert_checks_passed();
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_method, coro_test_setup,
                                      coro_test_teardown),
      cmocka_unit_test_setup_teardown(test_ping_pong, coro_test_setup,
                                      coro_test_teardown),
      cmocka_unit_test_setup_teardown(test_two_coroutines, coro_test_setup,
                                      coro_test_teardown),
      cmocka_unit_test_setup_teardown(test_nested_make, coro_test_setup,
                                      coro_test_teardown),
#if defined(HAVE_REGS_TEST) /* no such test where the registers are unknown */
      cmocka_unit_test_setup_teardown(test_callee_saved, coro_test_setup,
                                      coro_test_teardown),
#endif
#if defined(HAVE_FP_TEST)
      cmocka_unit_test_setup_teardown(test_fp_control, coro_test_setup,
                                      coro_test_teardown),
#endif
      cmocka_unit_test_setup_teardown(test_fp_values, coro_test_setup,
                                      coro_test_teardown),
      cmocka_unit_test_setup_teardown(test_deep_recursion, coro_test_setup,
                                      coro_test_teardown),
      cmocka_unit_test_setup_teardown(test_exit_reuse, coro_test_setup,
                                      coro_test_teardown),
      cmocka_unit_test_setup_teardown(test_destroy_unstarted, coro_test_setup,
                                      coro_test_teardown),
      cmocka_unit_test_setup_teardown(test_alignment, coro_test_setup,
                                      coro_test_teardown),
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
