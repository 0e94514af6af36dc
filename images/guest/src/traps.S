/* Interrupt and exception entry: one stub per vector pushes a uniform
 * (vector, error code) pair, then trap_common saves the registers into a
 * struct trap_frame and calls trap_dispatch. A trap from CPL 3 swaps GS
 * bases on the way in and out (the kernel's GS base is its own while it
 * runs; it never dereferences %gs). The `syscall` entry builds the same
 * frame and returns with sysretq. */

    .text
    .macro stub vector, has_error
    .balign 16
trap_stub_\vector:
    .if \has_error == 0
    pushq $0
    .endif
    pushq $\vector
    jmp trap_common
    .endm

    /* Exceptions with an error code: 8, 10-14, 17, 21, 29, 30. */
    stub 0, 0
    stub 1, 0
    stub 2, 0
    stub 3, 0
    stub 4, 0
    stub 5, 0
    stub 6, 0
    stub 7, 0
    stub 8, 1
    stub 9, 0
    stub 10, 1
    stub 11, 1
    stub 12, 1
    stub 13, 1
    stub 14, 1
    stub 15, 0
    stub 16, 0
    stub 17, 1
    stub 18, 0
    stub 19, 0
    stub 20, 0
    stub 21, 1
    stub 22, 0
    stub 23, 0
    stub 24, 0
    stub 25, 0
    stub 26, 0
    stub 27, 0
    stub 28, 0
    stub 29, 1
    stub 30, 1
    stub 31, 0
    stub 32, 0
    stub 33, 0
    stub 34, 0
    stub 35, 0
    stub 36, 0
    stub 37, 0
    stub 38, 0
    stub 39, 0
    stub 40, 0
    stub 41, 0
    stub 42, 0
    stub 43, 0
    stub 44, 0
    stub 45, 0
    stub 46, 0
    stub 47, 0
    stub 128, 0

    .section .rodata
    .balign 8
    .global trap_stub_table
trap_stub_table:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    .quad trap_stub_\v
    .endr
    .global trap_stub_syscall
trap_stub_syscall:
    .quad trap_stub_128

    .text
trap_common:
    testb $3, 24(%rsp) /* the frame's CS: from user mode? */
    jz 1f
    swapgs
1:  push %r15
    push %r14
    push %r13
    push %r12
    push %r11
    push %r10
    push %r9
    push %r8
    push %rbp
    push %rdi
    push %rsi
    push %rdx
    push %rcx
    push %rbx
    push %rax
    mov %rsp, %rdi
    call trap_dispatch
    .global trap_return
trap_return:
    pop %rax
    pop %rbx
    pop %rcx
    pop %rdx
    pop %rsi
    pop %rdi
    pop %rbp
    pop %r8
    pop %r9
    pop %r10
    pop %r11
    pop %r12
    pop %r13
    pop %r14
    pop %r15
    add $16, %rsp
    testb $3, 8(%rsp)
    jz 2f
    swapgs
2:  iretq

/* The `syscall` entry (LSTAR). SFMASK has cleared IF: nothing interrupts
 * the switch to the kernel stack. The frame is a trap frame with vector
 * VECTOR_SYSCALL, so a process that entered here can also leave through
 * trap_return (a forked child does). */
    .global syscall_entry
syscall_entry:
    swapgs
    mov %rsp, syscall_user_rsp(%rip)
    mov syscall_kstack(%rip), %rsp
    pushq $0x43 /* SEL_USER_DATA | 3 */
    pushq syscall_user_rsp(%rip)
    push %r11 /* rflags */
    pushq $0x4b /* SEL_USER_CODE | 3 */
    push %rcx /* rip */
    pushq $0
    pushq $0x100 /* VECTOR_SYSCALL */
    push %r15
    push %r14
    push %r13
    push %r12
    push %r11
    push %r10
    push %r9
    push %r8
    push %rbp
    push %rdi
    push %rsi
    push %rdx
    push %rcx
    push %rbx
    push %rax
    mov %rsp, %rdi
    call trap_dispatch
    pop %rax
    pop %rbx
    pop %rcx
    pop %rdx
    pop %rsi
    pop %rdi
    pop %rbp
    pop %r8
    pop %r9
    pop %r10
    pop %r11
    pop %r12
    pop %r13
    pop %r14
    pop %r15
    add $16, %rsp
    pop %rcx /* rip */
    add $8, %rsp
    pop %r11 /* rflags */
    pop %rsp /* the user's stack; interrupts stay off until sysret */
    swapgs
    sysretq

/* void switch_to(u64 *save, u64 next) */
    .global switch_to
switch_to:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, (%rdi)
    mov %rsi, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

    .section .bss
    .balign 8
    .global syscall_kstack
syscall_kstack: .skip 8
syscall_user_rsp: .skip 8
    .text

/* int probe_read(u64 addr, u64 *value): rdi = addr, rsi = value. A fault at
 * probe_read_access resumes at probe_read_fixup with rax = 1. */
    .global probe_read, probe_read_access, probe_read_fixup
probe_read:
    xor %eax, %eax
probe_read_access:
    mov (%rdi), %rdx
    mov %rdx, (%rsi)
probe_read_fixup:
    ret

/* int probe_write(u64 addr, u64 value) */
    .global probe_write, probe_write_access, probe_write_fixup
probe_write:
    xor %eax, %eax
probe_write_access:
    mov %rsi, (%rdi)
probe_write_fixup:
    ret
