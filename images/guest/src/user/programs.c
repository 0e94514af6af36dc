/* The guest's user programs. Built position-independent into the user
 * section (link.ld), which every process maps at USER_BASE; they use no
 * data of their own (no globals, no constants in .rodata) and reach the
 * kernel only through system calls. Each reports what it saw with
 * SYS_REPORT or its exit status; the kernel's test (tests/user.c) judges. */
#include "user.h"

static long sys0(ulong nr) { return u_sys(nr, 0, 0, 0, 0); }
static long sys1(ulong nr, ulong a) { return u_sys(nr, a, 0, 0, 0); }
static void report(ulong slot, ulong value) { u_sys(SYS_REPORT, slot, value, 0, 0); }
static void __attribute__((noreturn)) sys_exit(ulong status)
{
    sys1(SYS_EXIT, status);
    for (;;) {
    }
}
static ulong rdtsc(void)
{
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((ulong)hi << 32) | lo;
}

/* Slots 0..15: system call results. */
void prog_calls(ulong arg)
{
    (void)arg;
    report(0, (ulong)sys0(SYS_GETPID));
    report(1, (ulong)u_int80(SYS_GETPID, 0, 0, 0, 0));
    report(2, (ulong)u_sys(SYS_SUM4, 1, 2, 3, 4));
    report(3, (ulong)u_int80(SYS_SUM4, 5, 6, 7, 8));
    report(4, (ulong)sys0(12345));
    report(5, (ulong)u_int80(SYS_COUNT, 0, 0, 0, 0));
    report(6, u_preserve());
    report(7, (ulong)sys0(SYS_GSCHECK));
    report(8, (ulong)sys0(SYS_GETPPID));
    report(9, (ulong)sys1(SYS_SET_FS, 0x800000000000ul)); /* not a user address */
    ulong status = 0;
    report(10, (ulong)u_wait(&status)); /* no children */
    /* The heap: demand-zero pages behind brk. */
    ulong base = (ulong)sys1(SYS_BRK, 0);
    report(11, base);
    ulong end = (ulong)sys1(SYS_BRK, base + 3 * 4096);
    report(12, end - base);
    ulong sum = 0;
    volatile ulong *heap = (volatile ulong *)base;
    for (ulong i = 0; i < 3 * 512; i += 512) {
        sum += heap[i];
        heap[i] = i + 1;
    }
    for (ulong i = 0; i < 3 * 512; i += 512) {
        sum += heap[i];
    }
    report(13, sum); /* zeros, then 1 + 513 + 1025 */
    report(14, (ulong)sys1(SYS_BRK, USER_HEAP + USER_HEAP_MAX + 4096)); /* refused */
    sys_exit(7);
}

/* Slots 16..23: fork with copy-on-write over 16 heap pages. */
void prog_fork(ulong arg)
{
    (void)arg;
    ulong base = (ulong)sys1(SYS_BRK, 0);
    sys1(SYS_BRK, base + 16 * 4096);
    volatile ulong *heap = (volatile ulong *)base;
    for (ulong i = 0; i < 16; i++) {
        heap[i * 512] = 0x1111 * (i + 1);
    }
    long me = sys0(SYS_GETPID);
    long child = sys0(SYS_FORK);
    if (child == 0) {
        ulong seen = 0;
        for (ulong i = 0; i < 16; i++) {
            seen += heap[i * 512] == 0x1111 * (i + 1);
            heap[i * 512] = 0xc0de0000 + i;
        }
        ulong kept = 0;
        for (ulong i = 0; i < 16; i++) {
            kept += heap[i * 512] == 0xc0de0000 + i;
        }
        report(16, seen);
        report(17, kept);
        report(18, (ulong)(sys0(SYS_GETPPID) == me));
        sys_exit(0x42);
    }
    ulong status = 0;
    long waited = u_wait(&status);
    report(19, (ulong)(waited == child));
    report(20, status);
    ulong intact = 0;
    for (ulong i = 0; i < 16; i++) {
        intact += heap[i * 512] == 0x1111 * (i + 1);
        heap[i * 512] = i; /* the last reference: no copy */
    }
    report(21, intact);
    report(22, (ulong)(child > me));
    sys_exit(0);
}

/* FS bases: process `arg` puts its own base at heap + 64 * arg, with its
 * own value there, and reads it back through %fs: across yields and
 * preemption. Exits with the number of wrong reads; reports its first. */
void prog_tls(ulong arg)
{
    ulong base = (ulong)sys1(SYS_BRK, 0);
    sys1(SYS_BRK, base + 4096);
    volatile ulong *slot = (volatile ulong *)(base + 64 * arg);
    ulong magic = 0x7e5000 + arg;
    slot[0] = magic;
    slot[1] = ~magic;
    sys1(SYS_SET_FS, base + 64 * arg);
    report(24 + arg, u_fs_read(0));
    ulong wrong = 0;
    for (ulong round = 0; round < 40; round++) {
        if (round % 4 == 0) {
            sys0(SYS_YIELD);
        }
        for (volatile ulong spin = 0; spin < 2000; spin++) {
        }
        wrong += u_fs_read(0) != magic;
        wrong += u_fs_read(8) != ~magic;
    }
    sys_exit(wrong);
}

/* Computes without a system call for a while: only the timer gets the CPU
 * back from it. */
void prog_spin(ulong arg)
{
    ulong a = 1, b = 0;
    for (ulong i = 0; i < arg; i++) {
        a = (a + i) % 65521;
        b = (b + a) % 65521;
    }
    sys_exit(b & 0xff);
}

void prog_bad(ulong arg)
{
    switch (arg) {
    case BAD_CLI:
        u_cli();
        break;
    case BAD_HLT:
        u_hlt();
        break;
    case BAD_OUT:
        u_out();
        break;
    case BAD_CR3:
        u_read_cr3();
        break;
    case BAD_READ_KERNEL:
        report(32, *(volatile ulong *)BAD_KERNEL_ADDRESS);
        break;
    case BAD_WRITE_KERNEL:
        *(volatile ulong *)BAD_KERNEL_ADDRESS = 0xbad;
        break;
    case BAD_JUMP_KERNEL:
        ((void (*)(void))BAD_KERNEL_ADDRESS)();
        break;
    case BAD_JUMP_WEDGE:
        ((void (*)(void))BAD_WEDGE_ADDRESS)();
        break;
    default:
        break;
    }
    sys_exit(0); /* it should not get here */
}

/* Slots 40..41: system calls dressed as a microkernel's. rdx carries a
 * seL4 system call number (seL4 takes its number from rdx: -1 Call ...
 * -13, and numbers it does not know), rdi slot 1 (where a pre-virtualized
 * guest's thread has its VMM's endpoint). Whatever the platform, each must
 * reach this guest's kernel as its own system call: getpid answers. */
void prog_raw(ulong arg)
{
    (void)arg;
    long me = sys0(SYS_GETPID);
    ulong answered = 0, tried = 0;
    for (long n = -16; n <= 2; n++) {
        tried++;
        answered += u_sys(SYS_GETPID, 1, 0, (ulong)n, 0) == me;
        tried++;
        answered += u_int80(SYS_GETPID, 1, 0, (ulong)n, 0) == me;
    }
    ulong extremes[2] = { 0x8000000000000000ul, 0x7ffffffffffffffful };
    for (int i = 0; i < 2; i++) {
        tried++;
        answered += u_sys(SYS_GETPID, 1, 0, extremes[i], 0) == me;
    }
    report(40, answered);
    report(41, tried);
    sys_exit(0);
}

/* The processes' workloads (bench.c): each exits with the ticks its loop
 * took, so the kernel's own bookkeeping around it is not counted. */
void prog_bench(ulong arg)
{
    ulong n = arg >> 8;
    ulong start = rdtsc();
    switch (arg & 0xff) {
    case BENCH_SYSCALL:
        for (ulong i = 0; i < n; i++) {
            sys0(SYS_GETPID);
        }
        break;
    case BENCH_INT80:
        for (ulong i = 0; i < n; i++) {
            u_int80(SYS_GETPID, 0, 0, 0, 0);
        }
        break;
    case BENCH_CTXSW: {
        /* Two processes yield to each other, n / 2 times each: n switches. */
        long child = sys0(SYS_FORK);
        start = rdtsc();
        for (ulong i = 0; i < n / 2; i++) {
            sys0(SYS_YIELD);
        }
        if (child == 0) {
            sys_exit(0);
        }
        ulong ticks = rdtsc() - start;
        ulong status;
        u_wait(&status);
        sys_exit(ticks);
    }
    case BENCH_FORK: {
        ulong base = (ulong)sys1(SYS_BRK, 0);
        sys1(SYS_BRK, base + 16 * 4096);
        volatile ulong *heap = (volatile ulong *)base;
        for (ulong p = 0; p < 16; p++) {
            heap[p * 512] = p;
        }
        start = rdtsc();
        for (ulong i = 0; i < n; i++) {
            if (sys0(SYS_FORK) == 0) {
                for (ulong p = 0; p < 16; p++) {
                    heap[p * 512] = i;
                }
                sys_exit(0);
            }
            ulong status;
            u_wait(&status);
        }
        break;
    }
    case BENCH_UFAULT: {
        ulong base = (ulong)sys1(SYS_BRK, 0);
        sys1(SYS_BRK, base + n * 4096);
        start = rdtsc();
        for (ulong i = 0; i < n; i++) {
            *(volatile ulong *)(base + i * 4096) = i;
        }
        break;
    }
    default:
        break;
    }
    sys_exit(rdtsc() - start);
}
