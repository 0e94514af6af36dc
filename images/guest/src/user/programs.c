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

/* forkchurn (mapping.c, docs/vtlb.md): address-space churn with real
 * processes. The parent keeps CHURN_PAGES heap pages, each tagged with its
 * index and a version the parent bumps on each write; a seeded sequence of
 * operations forks children (at most CHURN_LIVE live at once), waits for
 * them, yields to them, and reads and writes its pages. A child reads the
 * pages it inherited (each must still hold the tag it had at the fork),
 * writes some (copy-on-write: the copy is its own) and reads them back,
 * yielding now and then so that several children run in turn, and exits
 * with its counts. Everything lives in registers and on the stack (the
 * programs have no data), which fork copies too. Reports: slot
 * CHURN_SLOT_CHECKED the reads checked, CHURN_SLOT_WRONG the wrong ones
 * (a child that did not exit normally counts as one wrong read). */
static ulong churn_next(ulong *rng)
{
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    return *rng;
}

static ulong churn_tag(ulong page, ulong version) { return 0xc4c1000000000000ul | page << 32 | version; }

/* A child's life: reads of inherited pages, copy-on-write writes. */
static void __attribute__((noreturn)) churn_child(volatile ulong *heap, const ulong *version, ulong rng)
{
    long me = sys0(SYS_GETPID);
    ulong checked = 0, wrong = 0;
    ulong mine = 0; /* pages this child wrote (a bit each) */
    rng ^= (ulong)me * 0x9e3779b97f4a7c15ul;
    for (ulong step = 0; step < CHURN_CHILD_STEPS; step++) {
        ulong r = churn_next(&rng);
        ulong i = (r >> 8) % CHURN_PAGES;
        ulong expected = (mine >> i) & 1 ? churn_tag(i, 0xc000 + (ulong)me) : churn_tag(i, version[i]);
        switch (r % 4) {
        case 0: /* write: a copy of its own (or its page already) */
            heap[i * 512] = churn_tag(i, 0xc000 + (ulong)me);
            mine |= 1ul << i;
            expected = churn_tag(i, 0xc000 + (ulong)me);
            break;
        case 1:
            sys0(SYS_YIELD);
            continue;
        default:
            break;
        }
        checked++;
        wrong += heap[i * 512] != expected;
    }
    sys_exit(CHURN_EXITED | checked << 16 | wrong);
}

void prog_forkchurn(ulong arg)
{
    ulong n = arg;
    ulong rng = 0x6a09e667f3bcc909ul;
    ulong version[CHURN_PAGES];
    ulong base = (ulong)sys1(SYS_BRK, 0);
    sys1(SYS_BRK, base + CHURN_PAGES * 4096);
    volatile ulong *heap = (volatile ulong *)base;
    for (ulong i = 0; i < CHURN_PAGES; i++) {
        version[i] = 0;
        heap[i * 512] = churn_tag(i, 0);
    }
    ulong live = 0, checked = 0, wrong = 0;
    for (ulong k = 0; k < n || live > 0; k++) {
        ulong r = churn_next(&rng);
        ulong i = (r >> 8) % CHURN_PAGES;
        ulong op = k < n ? r % 8 : 2; /* at the end, only waits */
        if (op <= 1 && live < CHURN_LIVE) {
            if (sys0(SYS_FORK) == 0) {
                churn_child(heap, version, r);
            }
            live++;
        } else if (op == 2 && live > 0) {
            ulong status = 0;
            if (u_wait(&status) > 0) {
                live--;
                if ((status & CHURN_EXITED) != 0) {
                    checked += (status >> 16) & 0xffff;
                    wrong += status & 0xffff;
                } else {
                    wrong++;
                }
            } else {
                wrong++;
                live = 0;
            }
        } else if (op == 3) {
            sys0(SYS_YIELD);
        } else if (op == 4) {
            /* a write: copy-on-write while a child shares the page */
            version[i]++;
            heap[i * 512] = churn_tag(i, version[i]);
        } else if (op >= 5) {
            checked++;
            wrong += heap[i * 512] != churn_tag(i, version[i]);
        }
    }
    report(CHURN_SLOT_CHECKED, checked);
    report(CHURN_SLOT_WRONG, wrong);
    sys_exit(0);
}
