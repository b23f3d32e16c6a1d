/* SPDX-License-Identifier: MIT */
/* The portable half of the context switch: the sanitizer annotations around
 * the backend's raw jump, the C function every new context starts in, and
 * (for the assembly backends) the initial frame a new stack is given.
 *
 * AddressSanitizer needs to know which stack is live, or it reports false
 * stack-buffer-overflows and cannot place its fake stacks. Before each jump
 * the leaving context calls __sanitizer_start_switch_fiber with the bounds
 * of the destination and a slot for its own fake stack; the first thing the
 * destination does is __sanitizer_finish_switch_fiber with the slot it saved
 * when it left (NULL when it is brand new). A context that leaves for good
 * passes NULL as its slot, which frees its fake stack. A thread's own context
 * has no bounds of its own: ASan reports them at the first finish done on
 * some coroutine stack after the thread's context left, and they are kept in
 * asan_lo/asan_size for the switches back to it.
 *
 * ThreadSanitizer gets one fiber per coroutine; the thread's own context uses
 * the fiber current at coro__ctx_init_main. Switching uses flags 0, so every
 * switch is a happens-before edge, as a single-threaded scheduler wants.
 *
 * Valgrind is told about stacks by the stack allocator (stack.c); the one
 * annotation here is in coro__ctx_stack_copy. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coro-internal.h"
#include "ctx/ctx.h"

#if defined(CORO_HAVE_VALGRIND)
# include <valgrind/memcheck.h>
#endif
#if defined(CORO__ASAN)
# include <sanitizer/asan_interface.h>
#endif
#if defined(CORO__TSAN)
# include <sanitizer/tsan_interface.h>
#endif

#if !defined(CORO_CTX_ASM) && !defined(CORO_CTX_UCONTEXT)
# error "define CORO_CTX_ASM or CORO_CTX_UCONTEXT"
#endif

/* Called first on the destination stack after every jump. fake is the slot
 * the destination saved when it left (NULL for a new context); prev is the
 * context that jumped here. */
static void asan_finish(void *fake, coro__ctx *prev) {
#if defined(CORO__ASAN)
  const void *lo = NULL;
  size_t size = 0;
  __sanitizer_finish_switch_fiber(fake, &lo, &size);
  if (prev->stack_lo == NULL) {
    /* The thread's own stack, as ASan knows it. */
    prev->asan_lo = lo;
    prev->asan_size = size;
  }
#else
  (void)fake;
  (void)prev;
#endif
}

void coro__ctx_init_main(coro__ctx *ctx) {
  *ctx = (coro__ctx){0};
#if defined(CORO__TSAN)
  ctx->tsan_fiber = __tsan_get_current_fiber();
#endif
}

int coro__ctx_make(coro__ctx *ctx, void *stack_lo, size_t size,
                   coro__ctx_fn fn, void *arg) {
  CORO__ASSERT(stack_lo != NULL);
  CORO__ASSERT(((uintptr_t)stack_lo & 15) == 0 && (size & 15) == 0);
  CORO__ASSERT(size >= 1024);
  *ctx = (coro__ctx){0};
  ctx->fn = fn;
  ctx->arg = arg;
  ctx->stack_lo = stack_lo;
  ctx->stack_size = size;
  ctx->asan_lo = stack_lo;
  ctx->asan_size = size;
#if defined(CORO__ASAN)
  /* Stacks are pooled: the redzones of frames left by the stack's previous
   * owner (which exited without unwinding) are still poisoned. */
  __asan_unpoison_memory_region(stack_lo, size);
#endif
  int err = coro__ctx_backend_make(ctx);
  if (err != 0) return err;
#if defined(CORO__TSAN)
  ctx->tsan_fiber = __tsan_create_fiber(0);
#endif
  return 0;
}

void coro__ctx_reset(coro__ctx *ctx) {
#if defined(CORO__ASAN)
  __asan_unpoison_memory_region(ctx->stack_lo, ctx->stack_size);
#endif
  ctx->asan_fake = NULL;
  (void)coro__ctx_backend_make(ctx); /* the assembly backends cannot fail */
}

#if defined(CORO__ASAN)
__attribute__((no_sanitize_address))
#endif
void coro__ctx_stack_copy(void *dst, const void *src, size_t n) {
#if defined(CORO__ASAN)
  /* Byte by byte through volatile: memcpy would be intercepted and checked
   * against the redzones of the frames being copied. */
  __asan_unpoison_memory_region(dst, n);
  volatile unsigned char *d = dst;
  const volatile unsigned char *s = src;
  for (size_t i = 0; i < n; i++) d[i] = s[i];
#else
# if defined(CORO_HAVE_VALGRIND)
  /* A copy back into a shared stack writes below the stack pointer another
   * task left there, which memcheck marked unaddressable when those frames
   * returned. The copy itself carries the definedness of every byte. */
  (void)VALGRIND_MAKE_MEM_UNDEFINED(dst, n);
# endif
  memcpy(dst, src, n);
#endif
}

void coro__ctx_switch(coro__ctx *from, coro__ctx *to) {
#if defined(CORO__ASAN)
  __sanitizer_start_switch_fiber(&from->asan_fake, to->asan_lo, to->asan_size);
#endif
#if defined(CORO__TSAN)
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
  coro__ctx *prev = coro__ctx_jump(from, to);
  asan_finish(from->asan_fake, prev);
}

void coro__ctx_exit(coro__ctx *from, coro__ctx *to) {
#if defined(CORO__ASAN)
  /* NULL slot: this context never comes back, drop its fake stack. */
  __sanitizer_start_switch_fiber(NULL, to->asan_lo, to->asan_size);
#endif
#if defined(CORO__TSAN)
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
  coro__ctx_jump(from, to);
  abort(); /* resumed after exit: a scheduler bug */
}

void coro__ctx_destroy(coro__ctx *ctx) {
  coro__ctx_backend_destroy(ctx);
#if defined(CORO__TSAN)
  if (ctx->stack_lo != NULL && ctx->tsan_fiber != NULL)
    __tsan_destroy_fiber(ctx->tsan_fiber);
#endif
  ctx->tsan_fiber = NULL;
}

/* The first C code on a new stack, entered from the backend's trampoline. */
void coro__ctx_start(coro__ctx *prev, coro__ctx *self) {
  asan_finish(NULL, prev);
  coro__ctx_backend_destroy(self); /* the entry state is not needed now */
  self->fn(self->arg);
  abort(); /* fn must end with coro__ctx_exit */
}

const char *coro_ctx_method(void) { return coro__ctx_method(); }

const char *coro__ctx_method(void) {
#if defined(CORO_CTX_UCONTEXT)
  return "ucontext";
#elif defined(__x86_64__)
  return "asm,x86_64";
#elif defined(__aarch64__)
  return "asm,aarch64";
#endif
}

/* ---- Initial frames for the assembly backends ----------------------------
 * A new context looks like one suspended inside coro__ctx_jump: its saved sp
 * points at a frame (the layout is drawn at the top of each .S file) whose
 * return address is coro__ctx_entry, and whose first callee-saved register
 * holds the context itself. The trampoline calls coro__ctx_start(prev, ctx)
 * with prev being what the jump returns. Frame-pointer slots are zero so
 * that frame-pointer walks end there too. */
#if defined(CORO_CTX_ASM)

void coro__ctx_entry(void); /* the trampoline, in the .S file */

CORO__STATIC_ASSERT(offsetof(coro__ctx, sp) == 0,
                    "the assembly reads and writes sp at offset 0");

# if defined(__x86_64__)

int coro__ctx_backend_make(coro__ctx *ctx) {
  /* 8 slots of frame (fpu word, r15 r14 r13 r12 rbx rbp, return address)
   * and 2 above it, so that the trampoline starts with rsp = top - 16 and
   * its call keeps the 16-byte alignment. */
  uint64_t *top = (uint64_t *)((char *)ctx->stack_lo + ctx->stack_size);
  uint64_t *f = top - 10;
  uint32_t mxcsr;
  uint16_t fcw;
  /* A new context starts with the FP control state of its creator, as a new
   * thread does. */
  __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
  __asm__ volatile("fnstcw %0" : "=m"(fcw));
  f[0] = (uint64_t)mxcsr | ((uint64_t)fcw << 32);
  f[1] = 0;                                /* r15 */
  f[2] = 0;                                /* r14 */
  f[3] = 0;                                /* r13 */
  f[4] = 0;                                /* r12 */
  f[5] = (uint64_t)(uintptr_t)ctx;         /* rbx: the trampoline's self */
  f[6] = 0;                                /* rbp: ends frame-pointer walks */
  f[7] = (uint64_t)(uintptr_t)coro__ctx_entry;
  f[8] = 0;
  f[9] = 0;
  ctx->sp = f;
  return 0;
}

# elif defined(__aarch64__)

int coro__ctx_backend_make(coro__ctx *ctx) {
  /* 20 slots: x29 x30, x19..x28, d8..d15. The jump's final add leaves
   * sp = top (16-byte aligned) in the trampoline. */
  uint64_t *top = (uint64_t *)((char *)ctx->stack_lo + ctx->stack_size);
  uint64_t *f = top - 20;
  for (int i = 0; i < 20; i++) f[i] = 0;
  f[1] = (uint64_t)(uintptr_t)coro__ctx_entry; /* x30 (lr) */
  f[2] = (uint64_t)(uintptr_t)ctx;             /* x19: the trampoline's self */
  ctx->sp = f;
  return 0;
}

# else
#  error "CORO_CTX_ASM: no assembly switch for this architecture"
# endif

void coro__ctx_backend_destroy(coro__ctx *ctx) { (void)ctx; }

#endif /* CORO_CTX_ASM */
