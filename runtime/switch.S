// Task context switch for x86-64 System V (see runtime/context.h).
//
// A suspended context is its stack pointer: the callee-saved registers
// (rbx, rbp, r12-r15) and the return address are on its stack. Everything
// else is caller-saved and already spilled by the C++ caller, so a switch is
// six pushes, two stack-pointer moves, six pops and a return. The x87 control
// word and MXCSR are not switched: tasks share their M's floating-point
// environment (Go makes the same choice).
//
// It returns with ret, not (as Boost.Context's fcontext does) with a pop and
// an indirect jmp. In the scheduler both sides of a switch resume at the
// same call site in switch_out, so the return stack buffer predicts the ret;
// the jmp leaves the buffer unbalanced and every later ret on the way out
// mispredicts. Measured (bench/micro/switch_bench.cc and sched_yield):
// the jmp form wins the two-site micro benchmark (5 against 24 ns a round
// trip) and loses the scheduler's yield, 34 against 25 ns.

	.text

	.globl	gort_ctx_switch_region_start
	.hidden	gort_ctx_switch_region_start
gort_ctx_switch_region_start:

// void gort_ctx_switch(void** save_sp, void* new_sp)
	.globl	gort_ctx_switch
	.hidden	gort_ctx_switch
	.type	gort_ctx_switch, @function
	.p2align 4
gort_ctx_switch:
	.cfi_startproc
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.cfi_endproc
	.size	gort_ctx_switch, .-gort_ctx_switch

// void gort_ctx_switch_to(void** save_sp, void** load_sp): the same switch,
// loading the new stack pointer from *load_sp and clearing *load_sp.
	.globl	gort_ctx_switch_to
	.hidden	gort_ctx_switch_to
	.type	gort_ctx_switch_to, @function
	.p2align 4
gort_ctx_switch_to:
	.cfi_startproc
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, (%rdi)
	movq	(%rsi), %rsp
	movq	$0, (%rsi)
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.cfi_endproc
	.size	gort_ctx_switch_to, .-gort_ctx_switch_to

	.globl	gort_ctx_switch_region_end
	.hidden	gort_ctx_switch_region_end
gort_ctx_switch_region_end:

// The first frame of a new context (gort_ctx_make): the switch's ret lands
// here with the entry function in r12 and its argument in r13. The entry
// function never returns; ud2 traps if it does. rip is marked undefined so
// that unwinders and debuggers stop here.
	.globl	gort_ctx_start
	.hidden	gort_ctx_start
	.type	gort_ctx_start, @function
	.p2align 4
gort_ctx_start:
	.cfi_startproc
	.cfi_undefined rip
	movq	%r13, %rdi
	callq	*%r12
	ud2
	.cfi_endproc
	.size	gort_ctx_start, .-gort_ctx_start

	.section .note.GNU-stack,"",@progbits
