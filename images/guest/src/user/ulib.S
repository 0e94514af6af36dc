/* The user programs' instructions that C cannot write: system calls, %fs:
 * reads, and the privileged instructions a process must not get to run.
 * Position-independent (the section is mapped at USER_BASE in every
 * process), and one region opted out of the afterburner: these run at CPL 3,
 * where the CPU itself (or, pre-virtualized, the VMM) answers them; the
 * wedge must leave them as they are. */

# afterburn: off
    .text

/* void u_start(arg, program): a process's first instruction. */
    .global u_start
u_start:
    call *%rsi
    mov %rax, %rdi
    mov $2, %eax /* SYS_EXIT */
    syscall
    ud2

/* long u_sys(nr, a, b, c, d) */
    .global u_sys
u_sys:
    mov %rdi, %rax
    mov %rsi, %rdi
    mov %rdx, %rsi
    mov %rcx, %rdx
    mov %r8, %r10
    syscall
    ret

/* long u_int80(nr, a, b, c, d) */
    .global u_int80
u_int80:
    mov %rdi, %rax
    mov %rsi, %rdi
    mov %rdx, %rsi
    mov %rcx, %rdx
    mov %r8, %r10
    int $0x80
    ret

/* long u_wait(ulong *status) */
    .global u_wait
u_wait:
    push %rdi
    mov $4, %eax /* SYS_WAIT */
    syscall
    pop %rdi
    mov %rdx, (%rdi)
    ret

/* ulong u_fs_read(offset) */
    .global u_fs_read
u_fs_read:
    mov %fs:(%rdi), %rax
    ret

/* ulong u_preserve(void): loads patterns into the callee-saved registers,
 * makes a system call each way, and returns how many differ afterwards. */
    .global u_preserve
u_preserve:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov $0x1111111111111111, %rbx
    mov $0x2222222222222222, %rbp
    mov $0x3333333333333333, %r12
    mov $0x4444444444444444, %r13
    mov $0x5555555555555555, %r14
    mov $0x6666666666666666, %r15
    xor %eax, %eax /* SYS_GETPID */
    syscall
    xor %eax, %eax
    int $0x80
    xor %eax, %eax
    mov $0x1111111111111111, %rcx
    cmp %rcx, %rbx
    setne %al
    mov $0x2222222222222222, %rcx
    cmp %rcx, %rbp
    setne %cl
    add %cl, %al
    mov $0x3333333333333333, %rcx
    cmp %rcx, %r12
    setne %cl
    add %cl, %al
    mov $0x4444444444444444, %rcx
    cmp %rcx, %r13
    setne %cl
    add %cl, %al
    mov $0x5555555555555555, %rcx
    cmp %rcx, %r14
    setne %cl
    add %cl, %al
    mov $0x6666666666666666, %rcx
    cmp %rcx, %r15
    setne %cl
    add %cl, %al
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

/* Each raises #GP at CPL 3 with IOPL 0. */
    .global u_cli, u_hlt, u_out, u_read_cr3
u_cli:
    cli
    ret
u_hlt:
    hlt
    ret
u_out:
    outb %al, $0x80
    ret
u_read_cr3:
    mov %cr3, %rax
    ret
# afterburn: on
