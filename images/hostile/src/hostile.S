/* The hostile guest's hand-written pieces: raw seL4 system calls, a call
 * that survives a trap, and a marked pre-virtualized site. */

/* u64 sel4_syscall(i64 number, u64 cap, struct sel4_msg *m)
 * seL4 5.0.0 on x86_64: rdx = number, rdi = cap, rsi = message info
 * (label << 12 | length), r10 r8 r9 r15 = message registers 0-3; the
 * kernel clobbers rcx and r11 and does not keep rsp (libsel4 parks it in
 * rbx). The reply comes back in the same registers; rdi (a badge, or what
 * seL4_DebugCapIdentify answers) is returned. */
    .text
    .global sel4_syscall
sel4_syscall:
    push %rbx
    push %r12
    push %r15
    mov %rdx, %r12
    mov %rdi, %rax
    mov %rsi, %rdi
    mov 0(%r12), %rsi
    shl $12, %rsi
    mov 8(%r12), %rcx
    and $0x7f, %rcx
    or %rcx, %rsi
    mov 16(%r12), %r10
    mov 24(%r12), %r8
    mov 32(%r12), %r9
    mov 40(%r12), %r15
    mov %rax, %rdx
    mov %rsp, %rbx
    syscall
    mov %rbx, %rsp
    mov %rsi, %rax
    shr $12, %rax
    mov %rax, 0(%r12)
    and $0x7f, %rsi
    mov %rsi, 8(%r12)
    mov %r10, 16(%r12)
    mov %r8, 24(%r12)
    mov %r9, 32(%r12)
    mov %r15, 40(%r12)
    mov %rdi, %rax
    pop %r15
    pop %r12
    pop %rbx
    ret

/* int attempt(u64 target, u64 arg): calls target(arg) and returns 0. A
 * trap handler that catches a fault meanwhile resumes at attempt_resume
 * with rsp = attempt_rsp (the stack as it was before the call), and
 * attempt returns 1. */
    .global attempt, attempt_resume, attempt_rsp
attempt:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    sub $8, %rsp
    mov %rsp, attempt_rsp(%rip)
    mov %rdi, %rax
    mov %rsi, %rdi
    call *%rax
    xor %eax, %eax
    jmp 1f
attempt_resume:
    mov $1, %eax
1:  add $8, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

/* A system call number seL4 does not know (its own are -1 to -14 in a
 * debug build): the kernel reports it to the VMM as an UnknownSyscall
 * fault. */
    .global unknown_syscall
unknown_syscall:
    push %rbx
    mov $42, %rdx
    mov %rsp, %rbx
    syscall
    mov %rbx, %rsp
    pop %rbx
    ret

/* int_table: 256 stubs of 4 bytes, stub n being `int $n; ret`. Written as
 * bytes: the afterburner pads an `int` it sees (the wedge would emulate
 * it), and these must reach the CPU, hence seL4, as they are. */
    .global int_table
    .balign 4
int_table:
    .set vector, 0
    .rept 256
    .byte 0xcd, vector
    ret
    nop
    .set vector, vector + 1
    .endr

/* A `sysenter`, as bytes for the same reason. */
    .global sysenter_call
sysenter_call:
    .byte 0x0f, 0x34
    ret

/* A sensitive instruction at a known address: the afterburner pads and
 * records it, the wedge rewrites it into a call through its slot (it is
 * never run). A port write: the wedge rewrites cli and a few other kinds
 * into forms that do not call its general entry. */
    .global marked_site
marked_site:
    outb %al, $0x80
    ret

    .section .bss
    .balign 8
attempt_rsp:
    .skip 8
