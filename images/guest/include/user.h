/* The guest's processes: the system call ABI shared by the kernel (proc.c)
 * and the user programs (src/user/), the user address-space layout, and
 * what the kernel exposes to its tests. */
#ifndef USER_H
#define USER_H

/* System calls: number in rax, arguments in rdi, rsi, rdx, r10 (through
 * `syscall` or `int $0x80` alike); result in rax (and rdx for wait). */
#define SYS_GETPID 0
#define SYS_YIELD 1
#define SYS_EXIT 2
#define SYS_FORK 3
#define SYS_WAIT 4 /* rax = pid (or -ECHILD), rdx = its status */
#define SYS_BRK 5  /* new end (0: query); returns the end in force */
#define SYS_SET_FS 6
#define SYS_REPORT 7 /* (slot, value): a result for the kernel's test */
#define SYS_GETPPID 8
#define SYS_SUM4 9     /* a + 2b + 3c + 4d: the four arguments arrive */
#define SYS_GSCHECK 10 /* 1 if GS_BASE and KERNEL_GS_BASE are swapped right */
#define SYS_COUNT 11

#define ENOSYS 38
#define ECHILD 10
#define EINVAL 22

/* A process killed by an exception exits with this bit and the vector. */
#define STATUS_KILLED 0x100ul

/* The user half of every address space: PML4 slot 2 (1 TiB up). The
 * programs' code at USER_BASE, the heap (grown by brk, demand-zero) from
 * USER_HEAP, the stack (demand-zero) below USER_STACK_TOP. */
#define USER_SLOT 2
#define USER_BASE 0x0000010000000000ul
#define USER_HEAP 0x0000010040000000ul
#define USER_HEAP_MAX (64ul << 20)
#define USER_STACK_TOP 0x0000010080000000ul
#define USER_STACK_SIZE (256ul << 10)

/* Result slots the programs report into (SYS_REPORT). */
#define REPORT_SLOTS 64

typedef unsigned long ulong;

/* ---- user side (src/user/ulib.S; position-independent, opted out of the
 * afterburner: these instructions are the process's own) ---- */
long u_sys(ulong nr, ulong a, ulong b, ulong c, ulong d);
long u_int80(ulong nr, ulong a, ulong b, ulong c, ulong d);
long u_wait(ulong *status);
ulong u_fs_read(ulong offset);
/* 0 if rbx, rbp, r12-r15 survive a `syscall` and an `int $0x80`. */
ulong u_preserve(void);
void u_cli(void);
void u_hlt(void);
void u_out(void);
void u_read_cr3(void);
void u_start(ulong arg, void (*program)(ulong));
extern const char user_section_start[], user_section_end[];

/* The programs (src/user/programs.c). */
void prog_calls(ulong arg);
void prog_fork(ulong arg);
void prog_tls(ulong arg);
void prog_spin(ulong arg);
void prog_bad(ulong arg);
void prog_bench(ulong arg);
void prog_raw(ulong arg);
/* arg: operations (mapping.c's forkchurn). */
void prog_forkchurn(ulong arg);

/* prog_bad's modes. */
#define BAD_CLI 0
#define BAD_HLT 1
#define BAD_OUT 2
#define BAD_CR3 3
#define BAD_READ_KERNEL 4
#define BAD_WRITE_KERNEL 5
#define BAD_JUMP_KERNEL 6
#define BAD_JUMP_WEDGE 7
#define BAD_MODES 8
/* The kernel address prog_bad touches: the image's first page. */
#define BAD_KERNEL_ADDRESS 0x200000ul
/* Where a pre-virtualizing VMM puts its wedge (PML4 entry 257,
 * docs/pv-boot.md): nothing a process may reach. */
#define BAD_WEDGE_ADDRESS 0xffff808000000000ul

/* prog_bench's workloads: arg = workload | iterations << 8; exits with the
 * TSC ticks the loop took. */
#define BENCH_SYSCALL 0
#define BENCH_INT80 1
#define BENCH_CTXSW 2
#define BENCH_FORK 3
#define BENCH_UFAULT 4

/* prog_forkchurn: its heap pages, the most children live at once, each
 * child's steps; a child's exit status (CHURN_EXITED | checked << 16 |
 * wrong); the report slots of its totals. */
#define CHURN_PAGES 24
#define CHURN_LIVE 4
#define CHURN_CHILD_STEPS 24
#define CHURN_EXITED (1ul << 40)
#define CHURN_SLOT_CHECKED 48
#define CHURN_SLOT_WRONG 49

/* ---- kernel side (proc.c) ---- */
struct proc_fault {
    ulong vector, error, rip, cr2;
};
void proc_init(void);
void proc_fini(void);
/* Starts program(arg) in a new process, child of the kernel; its pid. */
int proc_spawn(void (*program)(ulong), ulong arg);
/* Waits for a child of the kernel: its pid, status and (if it was killed)
 * the fault; -1 if none is left. */
int proc_wait(ulong *status, struct proc_fault *fault);
/* The user address of a symbol of the user section. */
ulong user_va(const void *symbol);
extern ulong user_reports[REPORT_SLOTS];
extern volatile ulong proc_preemptions, proc_cow_copies, proc_zero_fills, proc_syscalls,
    proc_int80s;

#endif
