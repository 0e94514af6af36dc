/* user: processes at CPL 3 (proc.c, src/user/programs.c). Each check judges
 * what a program reported or how it ended; nothing printed depends on
 * timing, so the console is the same bare and virtualized. */
#include "guest.h"
#include "user.h"

static void on_tick(struct trap_frame *f)
{
    (void)f;
    timer_ticks++;
    pic_eoi(0);
}

/* Runs program(arg) alone to its end; its status and fault. */
static u64 run_one(void (*program)(ulong), ulong arg, struct proc_fault *fault)
{
    u64 status = ~0ul;
    int pid = proc_spawn(program, arg);
    if (pid < 0 || proc_wait(&status, fault) != pid) {
        return ~0ul;
    }
    return status;
}

static void calls(struct checker *c)
{
    u64 syscalls = proc_syscalls, int80s = proc_int80s;
    u64 status = run_one(prog_calls, 0, NULL);
    check_eq(c, "prog_calls exit status", 7, status);
    check_eq(c, "getpid through syscall", 1, user_reports[0]);
    check_eq(c, "getpid through int $0x80", 1, user_reports[1]);
    check_eq(c, "four arguments through syscall", 1 + 4 + 9 + 16, user_reports[2]);
    check_eq(c, "four arguments through int $0x80", 5 + 12 + 21 + 32, user_reports[3]);
    check_eq(c, "an unknown number is ENOSYS", (u64)-ENOSYS, user_reports[4]);
    check_eq(c, "one past the last is ENOSYS", (u64)-ENOSYS, user_reports[5]);
    check_eq(c, "callee-saved registers survive both ways in", 0, user_reports[6]);
    check_eq(c, "GS bases swapped on entry", 1, user_reports[7]);
    check_eq(c, "the kernel's child has parent 0", 0, user_reports[8]);
    check_eq(c, "an FS base in the kernel half is refused", (u64)-EINVAL, user_reports[9]);
    check_eq(c, "wait without children", (u64)-ECHILD, user_reports[10]);
    check_eq(c, "the heap starts at USER_HEAP", USER_HEAP, user_reports[11]);
    check_eq(c, "brk grows the heap", 3 * PAGE_SIZE, user_reports[12]);
    check_eq(c, "heap pages are demand-zero and keep writes", 1 + 513 + 1025, user_reports[13]);
    check_eq(c, "brk past the limit is refused", USER_HEAP + 3 * PAGE_SIZE, user_reports[14]);
    check_true(c, "system calls came through syscall", proc_syscalls > syscalls);
    check_true(c, "system calls came through int $0x80", proc_int80s >= int80s + 4);
}

static void fork_cow(struct checker *c)
{
    u64 copies = proc_cow_copies;
    u64 status = run_one(prog_fork, 0, NULL);
    check_eq(c, "prog_fork exit status", 0, status);
    check_eq(c, "the child sees the parent's 16 pages", 16, user_reports[16]);
    check_eq(c, "the child keeps its own writes", 16, user_reports[17]);
    check_eq(c, "the child's parent is the forker", 1, user_reports[18]);
    check_eq(c, "wait returns the child", 1, user_reports[19]);
    check_eq(c, "wait returns the child's status", 0x42, user_reports[20]);
    check_eq(c, "the child's writes do not reach the parent", 16, user_reports[21]);
    check_eq(c, "the child has a new pid", 1, user_reports[22]);
    /* The 16 heap pages the child wrote, and the stack page (whichever of
     * the two writes it first copies it; the other then holds the last
     * reference and keeps it). */
    check_eq(c, "copy-on-write copied 16 heap pages and the stack", 17, proc_cow_copies - copies);
}

/* Three FS-base processes and two that compute, all at once under the
 * timer. */
static void together(struct checker *c)
{
    u64 preempted = proc_preemptions;
    int pids[5];
    for (ulong i = 0; i < 3; i++) {
        pids[i] = proc_spawn(prog_tls, i);
    }
    pids[3] = proc_spawn(prog_spin, 300000);
    pids[4] = proc_spawn(prog_spin, 300000);
    u64 status[5] = { ~0ul, ~0ul, ~0ul, ~0ul, ~0ul };
    for (int n = 0; n < 5; n++) {
        u64 s = 0;
        int pid = proc_wait(&s, NULL);
        for (int i = 0; i < 5; i++) {
            if (pids[i] == pid) {
                status[i] = s;
            }
        }
    }
    for (ulong i = 0; i < 3; i++) {
        check_eq(c, "the FS base reads the process's own value", 0x7e5000 + i, user_reports[24 + i]);
        check_eq(c, "the FS base survives switches and preemption", 0, status[i]);
    }
    check_eq(c, "the spinners compute the same", status[3], status[4]);
    check_true(c, "the spinners finished", status[3] < 0x100);
    check_true(c, "the timer preempted user mode", proc_preemptions > preempted);
}

static void hostile(struct checker *c)
{
    static const char *const what[BAD_MODES] = {
        "cli at CPL 3 is #GP(0)",
        "hlt at CPL 3 is #GP(0)",
        "out at CPL 3 is #GP(0)",
        "mov %cr3 at CPL 3 is #GP(0)",
        "a read of kernel memory is a user #PF",
        "a write to kernel memory is a user #PF",
        "a jump into the kernel is a user #PF",
        "a jump to the wedge's address is a user #PF",
    };
    const void *sites[4] = { u_cli, u_hlt, u_out, u_read_cr3 };
    for (ulong mode = 0; mode < BAD_MODES; mode++) {
        struct proc_fault fault = { 0, 0, 0, 0 };
        u64 status = run_one(prog_bad, mode, &fault);
        if (mode < 4) {
            check_eq(c, what[mode], 13, fault.vector);
            check_eq(c, "  its error code", 0, fault.error);
            check_eq(c, "  at the instruction", user_va(sites[mode]), fault.rip);
        } else {
            u64 target = mode == BAD_JUMP_WEDGE ? BAD_WEDGE_ADDRESS : BAD_KERNEL_ADDRESS;
            check_eq(c, what[mode], 14, fault.vector);
            check_eq(c, "  at the address", target, fault.cr2);
            if (mode == BAD_READ_KERNEL || mode == BAD_WRITE_KERNEL) {
                /* present, user, and write for the write */
                check_eq(c, "  its error code", mode == BAD_WRITE_KERNEL ? 7 : 5, fault.error);
            } else {
                check_eq(c, "  fetched there", target, fault.rip);
            }
        }
        check_eq(c, "  the process was killed", STATUS_KILLED | fault.vector, status);
    }
    check_eq(c, "no read of kernel memory was reported", 0, user_reports[32]);

    u64 status = run_one(prog_raw, 0, NULL);
    check_eq(c, "microkernel-looking system calls: the process lives", 0, status);
    check_eq(c, "  every one reached the guest kernel", user_reports[41], user_reports[40]);
    check_eq(c, "  all 40 of them", 40, user_reports[41]);
}

void test_user(struct checker *c)
{
    cli();
    u64 free_before = pages_free();
    proc_init();
    calls(c);
    fork_cow(c);
    hostile(c);

    pic_init();
    trap_set_handler(IRQ_BASE + 0, on_tick);
    pic_unmask(0);
    pit_start(1000);
    together(c);
    pit_stop();
    pic_mask_all();
    trap_set_handler(IRQ_BASE + 0, NULL);

    proc_fini();
    check_eq(c, "every frame came back", free_before, pages_free());
    kprintf("user: %lu demand-zero fills, %lu copy-on-write copies\n", proc_zero_fills,
            proc_cow_copies);
}
