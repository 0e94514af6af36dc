/* Workloads, each timed with the TSC by the caller (`bench NAME n ticks`). */
#include "guest.h"

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

/* stress=S: S seconds of guest time with the timer at 1 kHz while the mixed
 * workload runs; the ticks counted must match what the VMM delivered. */
void stress(u64 seconds)
{
    u64 target = seconds * 1000, rounds = 0;
    cli();
    trap_set_handler(IRQ_BASE, count_tick);
    pic_unmask(0);
    timer_ticks = 0;
    pit_start(1000);
    sti();
    while (timer_ticks < target) {
        mixed(100);
        rounds++;
    }
    cli();
    u64 ticks = timer_ticks;
    pit_stop();
    pic_mask_all();
    trap_set_handler(IRQ_BASE, NULL);
    kprintf("stress: %lu timer interrupts counted in %lu s of guest time at 1 kHz, "
            "%lu iterations of mixed\n",
            ticks, seconds, rounds * 100);
}

const struct workload workloads[] = {
    { "cpu", 20, cpu },           { "irqsave", 100000, irqsave }, { "pio", 10000, pio },
    { "pagefault", 1000, pagefault }, { "cr3", 10000, cr3 },      { "invlpg", 10000, invlpg_loop },
    { "timer", 100, timer },      { "mixed", 10000, mixed },
};
const u64 workload_count = ARRAY_SIZE(workloads);
