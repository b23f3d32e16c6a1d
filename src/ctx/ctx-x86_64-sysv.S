/* SPDX-License-Identifier: MIT */
/* Context switch for x86-64, System V ABI (Linux, the BSDs, macOS).
 *
 * A suspended context is its stack pointer alone (coro__ctx.sp, offset 0);
 * everything else sits on its own stack, in the frame coro__ctx_jump pushed:
 *
 *   offset from sp   contents
 *   +------+------------------------------------------------+
 *   |   0  | MXCSR (4 bytes) | x87 control word (2) | pad (2) |
 *   |   8  | r15                                            |
 *   |  16  | r14                                            |
 *   |  24  | r13                                            |
 *   |  32  | r12                                            |
 *   |  40  | rbx       (new context: the coro__ctx *)       |
 *   |  48  | rbp       (new context: 0)                     |
 *   |  56  | rip       (return address; coro__ctx_entry)    |
 *   |  64  | rsp of the suspended code after the return     |
 *   +------+------------------------------------------------+
 *   sp is 16-byte aligned (the call left rsp = 8 mod 16, then 7 slots).
 *   A debugger resumes a suspended context with rbp = sp[6], rip = sp[7],
 *   rsp = sp + 64.
 *
 * The System V callee-saved set is rbx, rbp, r12-r15, rsp, the MXCSR
 * control bits and the x87 control word; all of rax..r11 and xmm0-15 are
 * caller-saved, so the C caller has already spilled whatever it keeps there.
 *
 * coro__ctx *coro__ctx_jump(coro__ctx *from, coro__ctx *to)
 *   Pushes the frame above, stores rsp in from->sp, loads to->sp, reloads
 *   the frame and jumps to its return address. The value returned (in to)
 *   is from: it tells the resumed context who switched to it.
 *
 * coro__ctx_entry
 *   Where a new context's first jump returns (ctx.c builds that frame with
 *   rsp = top - 16 after the return). Calls coro__ctx_start(prev, self):
 *   prev is the jump's return value, self was preloaded into rbx. */

#if defined(__APPLE__)
# define SYM(name) _##name
# define FUNC_BEGIN(name) .globl SYM(name); .private_extern SYM(name); \
    .p2align 4; SYM(name):
# define FUNC_END(name)
#else
# define SYM(name) name
# define FUNC_BEGIN(name) .globl name; .hidden name; \
    .type name, @function; .p2align 4; name:
# define FUNC_END(name) .size name, . - name
#endif

#if defined(__CET__) && (__CET__ & 1)
# define ENDBR endbr64
#else
# define ENDBR
#endif

/* Pushes the frame described above (below the return address a call
 * left), with CFI for each slot. */
.macro SAVE_FRAME
	pushq	%rbp
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %rbp, 0
	pushq	%rbx
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %rbx, 0
	pushq	%r12
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r12, 0
	pushq	%r13
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r13, 0
	pushq	%r14
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r14, 0
	pushq	%r15
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r15, 0
	subq	$8, %rsp
	.cfi_adjust_cfa_offset 8
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
.endm

/* Reloads what SAVE_FRAME saved, from the frame at rsp (rsp unchanged). */
.macro LOAD_FRAME
	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
	movq	8(%rsp), %r15
	.cfi_restore %r15
	movq	16(%rsp), %r14
	.cfi_restore %r14
	movq	24(%rsp), %r13
	.cfi_restore %r13
	movq	32(%rsp), %r12
	.cfi_restore %r12
	movq	40(%rsp), %rbx
	.cfi_restore %rbx
	movq	48(%rsp), %rbp
	.cfi_restore %rbp
.endm

	.text

FUNC_BEGIN(coro__ctx_jump)
	.cfi_startproc
	ENDBR
	SAVE_FRAME

	/* Both stacks hold the same frame shape, so the CFI above stays
	 * true across the exchange. */
	movq	%rsp, (%rdi)
	movq	(%rsi), %rsp

	LOAD_FRAME
	/* Return with an indirect jump, not ret: the return stack buffer holds
	 * the call made on the other stack, so ret would always mispredict. */
	movq	56(%rsp), %r8
	.cfi_register %rip, %r8
	leaq	64(%rsp), %rsp
	.cfi_def_cfa_offset 0
	movq	%rdi, %rax
	jmp	*%r8
	.cfi_endproc
FUNC_END(coro__ctx_jump)

/* void coro__ctx_call(coro__ctx *self, void *top, void (*fn)(void *), void *arg)
 *   Runs fn(arg) on the stack that ends at top (16-byte aligned), like a
 *   call. First it pushes the frame above and stores rsp in self->sp, so
 *   that a jump to self (from code running on the other stack) returns
 *   from this call, with a nonzero value. If fn returns instead, the frame
 *   is reloaded and this call returns 0. */
FUNC_BEGIN(coro__ctx_call)
	.cfi_startproc
	ENDBR
	SAVE_FRAME
	movq	%rsp, (%rdi)
	movq	%rdi, %rbx
	.cfi_remember_state
	movq	%rsi, %rsp
	/* On the other stack: unwinders stop here, as at coro__ctx_entry. */
	.cfi_undefined %rip
	movq	%rcx, %rdi
	call	*%rdx
	movq	(%rbx), %rsp
	.cfi_restore_state
	LOAD_FRAME
	leaq	56(%rsp), %rsp
	.cfi_def_cfa_offset 8
	xorl	%eax, %eax
	ret
	.cfi_endproc
FUNC_END(coro__ctx_call)

FUNC_BEGIN(coro__ctx_entry)
	.cfi_startproc
	/* The outermost frame of every coroutine: unwinders stop here. */
	.cfi_undefined %rip
	movq	%rax, %rdi
	movq	%rbx, %rsi
	call	SYM(coro__ctx_start)
	ud2
	.cfi_endproc
FUNC_END(coro__ctx_entry)

#if defined(__ELF__)
	.section .note.GNU-stack, "", @progbits
#endif
