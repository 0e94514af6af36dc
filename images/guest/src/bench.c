/* Workloads, each timed with the TSC by the caller (`bench NAME n ticks`). */
#include "guest.h"
#include "user.h"

static u8 buffer[16384];
static volatile u64 sink;

static void cpu(u64 n)
{
    u64 a = 1, b = 0;
    for (u64 i = 0; i < n; i++) {
        for (u64 j = 0; j < sizeof(buffer); j++) {
            a = (a + buffer[j] + j) % 65521;
            b = (b + a) % 65521;
        }
    }
    sink = (b << 16) | a;
}

static void irqsave(u64 n)
{
    for (u64 i = 0; i < n; i++) {
        restore_flags(irq_save());
    }
}

static void pio(u64 n)
{
    for (u64 i = 0; i < n; i++) {
        outb(0x80, (u8)i); /* the POST diagnostic port: no device effect */
    }
}

#define BENCH_VA 0x80200000ul

static void pagefault(u64 n)
{
    demand_region(BENCH_VA, PAGE_SIZE);
    *(volatile u64 *)BENCH_VA = 0; /* map it once (and its page table) */
    u64 *pte = pte_lookup(read_cr3(), BENCH_VA, 0);
    for (u64 i = 0; i < n; i++) {
        *pte &= ~PTE_P; /* keep the frame: the fault handler maps it again */
        invlpg(BENCH_VA);
        sink = *(volatile u64 *)BENCH_VA; /* fault, map, retry */
    }
}

static void cr3(u64 n)
{
    u64 home = read_cr3(), other = address_space_new();
    for (u64 i = 0; i < n; i++) {
        write_cr3(other);
        write_cr3(home);
    }
}

static void invlpg_loop(u64 n)
{
    for (u64 i = 0; i < n; i++) {
        invlpg(0x100000 + (i & 63) * PAGE_SIZE);
    }
}

static void count_tick(struct trap_frame *f)
{
    (void)f;
    timer_ticks++;
    pic_eoi(0);
}

/* Turns of a loop that waits for `ticks` timer interrupts, or gives up
 * after `limit` turns: the same code measures the loop's own cost (with
 * interrupts off) and the time the interrupts leave it. */
static __attribute__((noinline)) u64 spin(u64 ticks, u64 limit)
{
    u64 turns = 0;
    while (timer_ticks < ticks && turns < limit) {
        turns++;
    }
    return turns;
}

/* Guest time taken per timer interrupt: n periods of the PIT at 1 kHz,
 * less what the waiting loop ran meanwhile (its cost per turn measured
 * first, with interrupts off). The workload reports that time itself. */
static void timer(u64 n)
{
    cli();
    pic_init();
    trap_set_handler(IRQ_BASE, count_tick);
    pic_unmask(0);
    timer_ticks = 0;
    const u64 calibration = 100000;
    u64 t0 = rdtsc();
    spin(1, calibration);
    u64 per_turn_x1000 = (rdtsc() - t0) * 1000 / calibration;
    pit_start(1000);
    t0 = rdtsc();
    sti();
    u64 turns = spin(n, ~0ul);
    cli();
    u64 elapsed = rdtsc() - t0;
    pit_stop();
    pic_mask_all();
    trap_set_handler(IRQ_BASE, NULL);
    u64 looping = turns * per_turn_x1000 / 1000;
    bench_ticks = elapsed > looping ? elapsed - looping : 0;
}

static void syscall_handler(struct trap_frame *f)
{
    f->rax = f->rdi + 1;
}

/* Something like a kernel's system-call path: trap in, save and disable
 * interrupts, touch a device, compute a little, restore, return. */
static void mixed(u64 n)
{
    trap_set_handler(0x80, syscall_handler);
    u64 acc = 0;
    for (u64 i = 0; i < n; i++) {
        u64 r;
        __asm__ volatile("int $0x80" : "=a"(r) : "D"(i) : "memory");
        u64 f = irq_save();
        outb(0x80, (u8)r);
        for (int k = 0; k < 50; k++) {
            acc = acc * 31 + buffer[(i + k) & 1023];
        }
        restore_flags(f);
    }
    sink = acc;
    trap_set_handler(0x80, NULL);
}

/* stress=S: S seconds of guest time (S * 1000 ticks) with the timer at
 * 1 kHz while a mix of work runs: sites and port I/O with interrupts off
 * (like `mixed`), request-free computing with interrupts on (where ticks
 * arrive by redirection; every 16th round for about a period), now and
 * then an interrupts-off stretch of 2.5 periods (ticks owed by the VMM)
 * and a tick handler that runs 1.25 periods (a tick latched behind the one
 * in service). The handler of the
 * last tick stops the PIT, so exactly S * 1000 edges happen.
 *
 * Under QEMU -icount the TSC counts guest time in ns on the clock the PIT
 * runs on, so each tick's TSC is compared with its edge: edge k comes at
 * most at t0 + k * period, t0 the TSC just before the guest programs the
 * PIT. The line reports how late ticks were, and how late after the
 * guest last turned interrupts on (the delivery's own cost). */
#define STRESS_COUNT (1193182u / 1000u) /* PIT input ticks per period */
#define STRESS_PERIOD_NS ((u64)STRESS_COUNT * 1000000000ul / 1193182u)

static u64 stress_target, stress_t0, stress_if_on, stress_early, stress_late_min,
    stress_late_max, stress_after_on_max, stress_off_max, stress_slow, stress_long_off;

static void stress_off_until(u64 since)
{
    u64 t = rdtsc();
    if (t - since > stress_off_max) {
        stress_off_max = t - since;
    }
    stress_if_on = t; /* interrupts go on right after */
}

/* The tick that came latest after the guest could take it: which, where. */
static u64 stress_worst_k, stress_worst_rip, stress_worst_edge_after_on;
/* The most lateness in the second half of the ticks: beside other guests,
 * past their start (loading and booting), while they only run. */
static u64 stress_late_max2, stress_after_on_max2;
static void stress_tick(struct trap_frame *f)
{
    u64 now = rdtsc();
    u64 k = ++timer_ticks;
    u64 edge = stress_t0 + k * STRESS_COUNT * 1000000000ul / 1193182u;
    if (now < edge) {
        stress_early++;
    } else {
        u64 late = now - edge;
        if (late < stress_late_min) {
            stress_late_min = late;
        }
        if (late > stress_late_max) {
            stress_late_max = late;
        }
        u64 from = edge > stress_if_on ? edge : stress_if_on;
        if (k > stress_target / 2) {
            if (late > stress_late_max2) {
                stress_late_max2 = late;
            }
            if (now - from > stress_after_on_max2) {
                stress_after_on_max2 = now - from;
            }
        }
        if (now - from > stress_after_on_max) {
            stress_after_on_max = now - from;
            stress_worst_k = k;
            stress_worst_rip = f->rip;
            stress_worst_edge_after_on = edge > stress_if_on;
        }
    }
    if (k == stress_target) {
        pit_stop(); /* no edge after the last tick counted */
    } else if (k % 37 == 0) {
        stress_slow++; /* a slow handler: the next edge comes meanwhile */
        while (rdtsc() - now < STRESS_PERIOD_NS * 5 / 4) {
        }
    }
    pic_eoi(0);
    stress_off_until(now);
}

static void stress_syscall(struct trap_frame *f)
{
    f->rax = f->rdi + 1;
    stress_if_on = rdtsc();
}

static u64 stress_round(u64 i)
{
    u64 r, acc = i;
    __asm__ volatile("int $0x80" : "=a"(r) : "D"(i) : "memory");
    u64 f = irq_save();
    u64 off = rdtsc();
    outb(0x80, (u8)r);
    for (int k = 0; k < 50; k++) {
        acc = acc * 31 + buffer[(i + k) & 1023];
    }
    if (i % 1024 == 1023) {
        stress_long_off++; /* 2.5 periods with interrupts off: edges owed */
        while (rdtsc() - off < STRESS_PERIOD_NS * 5 / 2) {
        }
    }
    stress_off_until(off);
    restore_flags(f);
    /* No site, no request: ticks arrive by redirection. Every 16th round
     * computes about a period, as a guest's own code does between its
     * calls: a tick the VMM leaves waiting for the guest's next request
     * would wait that long. */
    u64 work = i % 16 == 15 ? 20000 : 400;
    for (u64 k = 0; k < work; k++) {
        acc = acc * 33 + buffer[(i * 7 + k) & 16383];
    }
    return acc;
}

void stress(u64 seconds)
{
    u64 rounds = 0, acc = 0;
    cli();
    trap_set_handler(IRQ_BASE, stress_tick);
    trap_set_handler(0x80, stress_syscall);
    pic_unmask(0);
    timer_ticks = 0;
    stress_target = seconds * 1000;
    stress_late_min = ~0ul;
    stress_t0 = rdtsc();
    stress_if_on = stress_t0;
    pit_start(1000);
    stress_off_until(stress_t0);
    sti();
    while (timer_ticks < stress_target) {
        acc += stress_round(rounds++);
    }
    cli();
    sink = acc;
    u64 ticks = timer_ticks;
    pit_stop();
    pic_mask_all();
    trap_set_handler(IRQ_BASE, NULL);
    trap_set_handler(0x80, NULL);
    kprintf("stress: %lu timer interrupts counted in %lu s of guest time at 1 kHz, "
            "%lu rounds\n",
            ticks, seconds, rounds);
    /* Guest time (TSC) from each tick's edge to its handler: least, most,
     * and most after the guest last turned interrupts on. */
    kprintf("stress: timing: late_min=%lu late_max=%lu early=%lu after_on_max=%lu "
            "off_max=%lu slow_handlers=%lu long_off=%lu period=%lu\n",
            stress_late_min, stress_late_max, stress_early, stress_after_on_max,
            stress_off_max, stress_slow, stress_long_off, STRESS_PERIOD_NS);
    kprintf("stress: latest after interrupts went on: tick %lu at rip %lx (edge %s)\n",
            stress_worst_k, stress_worst_rip,
            stress_worst_edge_after_on ? "with interrupts on" : "with interrupts off");
    kprintf("stress: second half: late_max=%lu after_on_max=%lu\n", stress_late_max2,
            stress_after_on_max2);
}

/* A process's workload (prog_bench): the loop times itself in user mode and
 * exits with its ticks, so creating and reaping the process is not
 * counted. */
static void in_process(u64 which, u64 n)
{
    cli();
    proc_init();
    u64 status = 0;
    struct proc_fault fault = { 0, 0, 0, 0 };
    int pid = proc_spawn(prog_bench, which | n << 8);
    int reaped = proc_wait(&status, &fault);
    proc_fini();
    /* Its status is a tick count: a killed process is known by its fault. */
    if (pid < 0 || reaped != pid || fault.rip) {
        kprintf("guest: the benchmark process failed (status 0x%lx)\n", status);
        guest_exit(0);
    }
    bench_ticks = status;
}

static void syscall_loop(u64 n) { in_process(BENCH_SYSCALL, n); }
static void int80_loop(u64 n) { in_process(BENCH_INT80, n); }
static void ctxsw(u64 n) { in_process(BENCH_CTXSW, n); }
static void fork_loop(u64 n) { in_process(BENCH_FORK, n); }
static void ufault(u64 n) { in_process(BENCH_UFAULT, n); }

const struct workload workloads[] = {
    { "cpu", 20, cpu },           { "irqsave", 100000, irqsave }, { "pio", 10000, pio },
    { "pagefault", 1000, pagefault }, { "cr3", 10000, cr3 },      { "invlpg", 10000, invlpg_loop },
    { "timer", 100, timer },      { "mixed", 10000, mixed },
    /* Processes: a null system call each way; one switch between two
     * processes that yield to each other; fork + exit + wait of a child
     * that writes 16 pages; one demand-zero fault. */
    { "syscall", 10000, syscall_loop }, { "int80", 10000, int80_loop },
    { "ctxsw", 10000, ctxsw },          { "fork", 100, fork_loop },
    { "ufault", 500, ufault },
};
const u64 workload_count = ARRAY_SIZE(workloads);
