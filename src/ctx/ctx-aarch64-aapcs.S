/* SPDX-License-Identifier: MIT */
/* Context switch for AArch64, AAPCS64 (Linux, the BSDs; Apple arm64 too).
 *
 * A suspended context is its stack pointer alone (coro__ctx.sp, offset 0);
 * everything else sits on its own stack, in the 160-byte frame
 * coro__ctx_jump stored:
 *
 *   offset from sp   contents
 *   +------+---------------------------------------------------+
 *   |   0  | x29 (fp)   (new context: 0)                       |
 *   |   8  | x30 (lr)   (new context: coro__ctx_entry)         |
 *   |  16  | x19        (new context: the coro__ctx *)         |
 *   |  24  | x20                                               |
 *   |  32  | x21                                               |
 *   |  40  | x22                                               |
 *   |  48  | x23                                               |
 *   |  56  | x24                                               |
 *   |  64  | x25                                               |
 *   |  72  | x26                                               |
 *   |  80  | x27                                               |
 *   |  88  | x28                                               |
 *   |  96  | d8         (low 64 bits of v8; the rest is        |
 *   | 104  | d9          caller-saved)                         |
 *   | 112  | d10                                               |
 *   | 120  | d11                                               |
 *   | 128  | d12                                               |
 *   | 136  | d13                                               |
 *   | 144  | d14                                               |
 *   | 152  | d15                                               |
 *   | 160  | sp of the suspended code after the return         |
 *   +------+---------------------------------------------------+
 *   sp is 16-byte aligned. The pair at offset 0 is an ordinary frame
 *   record, so a debugger resumes a suspended context with x29 = sp[0],
 *   pc = sp[1], sp = sp + 160.
 *
 * The AAPCS64 callee-saved set is x19-x28, x29, sp, and the low halves of
 * v8-v15; x30 is saved as the place to return to. FPCR is not switched
 * (writing it is slow on several cores).
 *
 * coro__ctx *coro__ctx_jump(coro__ctx *from, coro__ctx *to)
 *   Stores the frame, writes sp to from->sp, loads to->sp, reloads and
 *   branches to to's x30 with x0 = from: the resumed context learns who
 *   switched to it.
 *
 * coro__ctx_entry
 *   Where a new context's first jump returns, with sp = top of its stack.
 *   Calls coro__ctx_start(prev, self): prev is the jump's return value,
 *   self was preloaded into x19. */

#if defined(__APPLE__)
# define SYM(name) _##name
# define FUNC_BEGIN(name) .globl SYM(name) %% .private_extern SYM(name) %% \
    .p2align 4 %% SYM(name):
# define FUNC_END(name)
#else
# define SYM(name) name
# define FUNC_BEGIN(name) .globl name; .hidden name; \
    .type name, %function; .p2align 4; name:
# define FUNC_END(name) .size name, . - name
#endif

	.text

FUNC_BEGIN(coro__ctx_jump)
	.cfi_startproc
	sub	sp, sp, #160
	.cfi_def_cfa_offset 160
	stp	x29, x30, [sp, #0]
	.cfi_rel_offset x29, 0
	.cfi_rel_offset x30, 8
	stp	x19, x20, [sp, #16]
	.cfi_rel_offset x19, 16
	.cfi_rel_offset x20, 24
	stp	x21, x22, [sp, #32]
	.cfi_rel_offset x21, 32
	.cfi_rel_offset x22, 40
	stp	x23, x24, [sp, #48]
	.cfi_rel_offset x23, 48
	.cfi_rel_offset x24, 56
	stp	x25, x26, [sp, #64]
	.cfi_rel_offset x25, 64
	.cfi_rel_offset x26, 72
	stp	x27, x28, [sp, #80]
	.cfi_rel_offset x27, 80
	.cfi_rel_offset x28, 88
	stp	d8, d9, [sp, #96]
	.cfi_rel_offset d8, 96
	.cfi_rel_offset d9, 104
	stp	d10, d11, [sp, #112]
	.cfi_rel_offset d10, 112
	.cfi_rel_offset d11, 120
	stp	d12, d13, [sp, #128]
	.cfi_rel_offset d12, 128
	.cfi_rel_offset d13, 136
	stp	d14, d15, [sp, #144]
	.cfi_rel_offset d14, 144
	.cfi_rel_offset d15, 152

	/* Both stacks hold the same frame shape, so the CFI above stays
	 * true across the exchange. */
	mov	x9, sp
	str	x9, [x0]
	ldr	x9, [x1]
	mov	sp, x9

	ldp	x29, x30, [sp, #0]
	ldp	x19, x20, [sp, #16]
	ldp	x21, x22, [sp, #32]
	ldp	x23, x24, [sp, #48]
	ldp	x25, x26, [sp, #64]
	ldp	x27, x28, [sp, #80]
	ldp	d8, d9, [sp, #96]
	ldp	d10, d11, [sp, #112]
	ldp	d12, d13, [sp, #128]
	ldp	d14, d15, [sp, #144]
	add	sp, sp, #160
	.cfi_def_cfa_offset 0
	.cfi_restore x29
	.cfi_restore x30
	.cfi_restore x19
	.cfi_restore x20
	.cfi_restore x21
	.cfi_restore x22
	.cfi_restore x23
	.cfi_restore x24
	.cfi_restore x25
	.cfi_restore x26
	.cfi_restore x27
	.cfi_restore x28
	.cfi_restore d8
	.cfi_restore d9
	.cfi_restore d10
	.cfi_restore d11
	.cfi_restore d12
	.cfi_restore d13
	.cfi_restore d14
	.cfi_restore d15
	/* br, not ret: the return-address predictor holds the call made on
	 * the other stack, so ret would always mispredict. */
	br	x30
	.cfi_endproc
FUNC_END(coro__ctx_jump)

FUNC_BEGIN(coro__ctx_entry)
	.cfi_startproc
	/* The outermost frame of every coroutine: unwinders stop here. */
	.cfi_undefined x30
	mov	x1, x19
	bl	SYM(coro__ctx_start)
	brk	#0
	.cfi_endproc
FUNC_END(coro__ctx_entry)

#if defined(__ELF__)
	.section .note.GNU-stack, "", %progbits
#endif
