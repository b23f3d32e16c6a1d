/* SPDX-License-Identifier: MIT */
/* Context switch: save the callee-saved state of one context, resume another.
 *
 * Backends (one is compiled in, chosen by -DCORO_CTX=auto|asm|ucontext):
 *   ctx-x86_64-sysv.S    rbx rbp r12-r15 rsp, MXCSR and the x87 control word
 *   ctx-aarch64-aapcs.S  x19-x30, sp, d8-d15
 *   ctx-ucontext.c       makecontext to enter a new stack once, then
 *                        _setjmp/_longjmp (swapcontext costs a syscall)
 * ctx.c wraps the backend with the AddressSanitizer, ThreadSanitizer and
 * Valgrind annotations, so nothing above this layer knows about them.
 *
 * Contexts are asymmetric in use but symmetric here: any context may switch
 * to any other context of the same thread. */
#ifndef CORO_SRC_CTX_CTX_H_
#define CORO_SRC_CTX_CTX_H_

#include <stddef.h>

#include "coro-internal.h" /* CORO__ASAN, CORO__TSAN */
#if defined(CORO_CTX_UCONTEXT)
# include <setjmp.h>
# include <ucontext.h>
#endif

typedef struct coro__ctx coro__ctx;

/* Entry function of a new context. It must never return: its last act is
 * coro__ctx_exit(). */
typedef void (*coro__ctx_fn)(void *arg);

struct coro__ctx {
#if defined(CORO_CTX_UCONTEXT)
  jmp_buf jb;          /* saved state once the context has run */
  ucontext_t *uc;      /* entry state until the first switch, then NULL */
#else
  void *sp;            /* saved stack pointer; the frame below holds the rest */
#endif
  coro__ctx_fn fn;     /* entry function and its argument */
  void *arg;
  void *stack_lo;      /* lowest usable address; NULL for a thread's own stack */
  size_t stack_size;   /* usable bytes above stack_lo */
  void *asan_fake;     /* ASan fake stack saved while switched out */
  void *tsan_fiber;    /* TSan fiber of this context */
  /* Private to src/ctx/. The stack bounds given to ASan: stack_lo and
   * stack_size for a coroutine; for a thread's own context, what ASan
   * reported after it first switched away. Present in every build so that
   * the layout does not depend on the sanitizer flags. */
  const void *asan_lo;
  size_t asan_size;
#if defined(CORO_CTX_UCONTEXT)
  coro__ctx *uc_from;  /* the context that switched to this one last */
#endif
};

/* Describe the calling thread's own context (the scheduler's). It needs no
 * stack; it is filled in by the first switch away from it. */
void coro__ctx_init_main(coro__ctx *ctx);

/* Prepare ctx to run fn(arg) on [stack_lo, stack_lo + size) at its first
 * switch. stack_lo and size are 16-byte aligned. Returns 0 or -ENOMEM
 * (ucontext: the entry state is allocated). */
int coro__ctx_make(coro__ctx *ctx, void *stack_lo, size_t size,
                   coro__ctx_fn fn, void *arg);

/* Make ctx, which is not running and whose stack holds nothing anyone
 * needs, start its fn(arg) afresh on the same stack at its next switch
 * (shared stacks of compact tasks). Assembly backends only. */
void coro__ctx_reset(coro__ctx *ctx);

/* Copy n bytes between a stack and a buffer, from the scheduler's context:
 * the stack's frames may carry AddressSanitizer redzones, which this copy
 * neither checks nor keeps (the destination range is left unpoisoned). */
void coro__ctx_stack_copy(void *dst, const void *src, size_t n);

/* Run fn(arg) on another stack as a plain call (x86-64 assembly backend,
 * without sanitizers: CORO__CTX_HAVE_CALL): the caller's state is saved in
 * self first, so code on the other stack may instead switch to self, which
 * returns from this call early (nonzero). 0 when fn returned. The stack
 * ends at top (16-byte aligned); whatever it held is overwritten. */
#if defined(CORO_CTX_ASM) && defined(__x86_64__) && !defined(CORO__ASAN) && \
    !defined(CORO__TSAN)
# define CORO__CTX_HAVE_CALL 1
void *coro__ctx_call(coro__ctx *self, void *top, void (*fn)(void *),
                     void *arg);
#endif

/* Save the current state into from and resume to. Returns when some context
 * switches back to from. */
void coro__ctx_switch(coro__ctx *from, coro__ctx *to);

/* The last switch out of a context that will never be resumed (its stack may
 * be freed afterwards). Does not return. */
void coro__ctx_exit(coro__ctx *from, coro__ctx *to) __attribute__((noreturn));

/* Release what coro__ctx_make or coro__ctx_init_main acquired (TSan fiber,
 * ucontext entry state). Never on a running context. */
void coro__ctx_destroy(coro__ctx *ctx);

/* "asm,x86_64", "asm,aarch64" or "ucontext". */
const char *coro__ctx_method(void);

/* ---- Backend interface, private to src/ctx/ ------------------------------
 * ctx.c does the sanitizer bookkeeping; the backend only moves registers.
 *
 * coro__ctx_jump saves the current state into from, resumes to, and returns
 * (in the resumed context) the context that switched to it. ctx.c relies on
 * offsetof(coro__ctx, sp) == 0 for the assembly backends.
 *
 * coro__ctx_backend_make prepares ctx (stack_lo, stack_size set) so that its
 * first resumption calls coro__ctx_start(prev, ctx), prev being the context
 * that switched to it. coro__ctx_start never returns. It calls
 * coro__ctx_backend_destroy, which releases the entry state (ucontext) and
 * is called again by coro__ctx_destroy, so it must be idempotent. */
coro__ctx *coro__ctx_jump(coro__ctx *from, coro__ctx *to);
int coro__ctx_backend_make(coro__ctx *ctx);
void coro__ctx_backend_destroy(coro__ctx *ctx);
void coro__ctx_start(coro__ctx *prev, coro__ctx *self)
    __attribute__((noreturn));

#endif /* CORO_SRC_CTX_CTX_H_ */
