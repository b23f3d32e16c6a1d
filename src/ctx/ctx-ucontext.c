/* SPDX-License-Identifier: MIT */
/* Portable context switch: makecontext to enter a new stack once, then
 * _setjmp/_longjmp for every later switch.
 *
 * swapcontext saves and restores the signal mask, a system call each way;
 * _setjmp/_longjmp do not touch it and cost about as much as the assembly
 * switch. They cannot start a new stack, so the first switch into a context
 * goes through setcontext (one sigprocmask) on the ucontext_t prepared by
 * coro__ctx_make, which the new context frees as soon as it runs.
 *
 * jmp_buf holds no floating-point control state, so the jump saves it
 * itself: MXCSR and the x87 control word on x86, FPCR on AArch64, the
 * rounding mode elsewhere. A new context starts with the state captured by getcontext in
 * coro__ctx_make, i.e. its creator's. */

/* Fortified _longjmp (__longjmp_chk) aborts when the target frame lies below
 * the current stack pointer outside a signal stack, which is every other
 * switch between two stacks. */
#undef _FORTIFY_SOURCE

#include <fenv.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <ucontext.h>

#include "coro-internal.h"
#include "ctx/ctx.h"

#if !defined(CORO_CTX_UCONTEXT)
# error "ctx-ucontext.c is built with -DCORO_CTX_UCONTEXT=1"
#endif

#if defined(__x86_64__) || defined(__i386__)
typedef struct fpstate {
  uint32_t mxcsr;
  uint16_t fcw;
} fpstate;
static inline void fp_save(fpstate *s) {
  __asm__ volatile("stmxcsr %0" : "=m"(s->mxcsr));
  __asm__ volatile("fnstcw %0" : "=m"(s->fcw));
}
static inline void fp_restore(const fpstate *s) {
  __asm__ volatile("ldmxcsr %0" : : "m"(s->mxcsr));
  __asm__ volatile("fldcw %0" : : "m"(s->fcw));
}
#elif defined(__aarch64__)
typedef struct fpstate {
  uint64_t fpcr;
} fpstate;
static inline void fp_save(fpstate *s) {
  __asm__ volatile("mrs %0, fpcr" : "=r"(s->fpcr));
}
static inline void fp_restore(const fpstate *s) {
  uint64_t now;
  __asm__ volatile("mrs %0, fpcr" : "=r"(now));
  if (now != s->fpcr) /* writing FPCR is slow on several cores */
    __asm__ volatile("msr fpcr, %0" : : "r"(s->fpcr));
}
#else
/* Elsewhere only the rounding mode (and this needs libm). */
typedef struct fpstate {
  int round;
} fpstate;
static inline void fp_save(fpstate *s) { s->round = fegetround(); }
static inline void fp_restore(const fpstate *s) {
  if (fegetround() != s->round) fesetround(s->round);
}
#endif

/* makecontext passes int arguments only: the pointer goes in two halves. */
static void uc_entry(unsigned int lo, unsigned int hi) {
  coro__ctx *self =
      (coro__ctx *)(uintptr_t)(((uint64_t)hi << 32) | (uint64_t)lo);
  /* coro__ctx_start frees self->uc (backend_destroy) once the sanitizer
   * knows which stack this is; setcontext is done reading it. */
  coro__ctx_start(self->uc_from, self);
}

int coro__ctx_backend_make(coro__ctx *ctx) {
  ucontext_t *uc = coro__malloc(sizeof *uc);
  if (uc == NULL) return CORO_ENOMEM;
  if (getcontext(uc) != 0) {
    coro__free(uc);
    return CORO_ENOMEM;
  }
  uc->uc_stack.ss_sp = ctx->stack_lo;
  uc->uc_stack.ss_size = ctx->stack_size;
  uc->uc_stack.ss_flags = 0;
  uc->uc_link = NULL;
  uint64_t p = (uint64_t)(uintptr_t)ctx;
  makecontext(uc, (void (*)(void))uc_entry, 2, (unsigned int)p,
              (unsigned int)(p >> 32));
  ctx->uc = uc;
  return 0;
}

void coro__ctx_backend_destroy(coro__ctx *ctx) {
  /* The entry state: freed when the context first runs, or here if it never
   * did. */
  coro__free(ctx->uc);
  ctx->uc = NULL;
}

coro__ctx *coro__ctx_jump(coro__ctx *from, coro__ctx *to) {
  /* Nothing local changes between _setjmp and its second return, so the
   * locals are intact when it does. */
  fpstate fp;
  fp_save(&fp);
  to->uc_from = from;
  if (_setjmp(from->jb) == 0) {
    if (to->uc != NULL) setcontext(to->uc);
    _longjmp(to->jb, 1);
  }
  fp_restore(&fp);
  return from->uc_from;
}
