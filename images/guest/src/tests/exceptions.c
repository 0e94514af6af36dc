/* exceptions: #PF by demand paging, #UD, #BP, #DE, int $n, and an exception
 * taken while handling another. */
#include "guest.h"

#define DEMAND_VA 0x80000000ul

static char events[16];
static int event_count;
static void event(char e)
{
    if (event_count < (int)sizeof(events) - 1) {
        events[event_count++] = e;
    }
}

static void on_ud(struct trap_frame *f)
{
    event('U');
    f->rip += 2; /* ud2 */
}

static void on_de(struct trap_frame *f)
{
    event('D');
    f->rip += 3; /* divq %rcx */
}

static int nest;
static void on_bp(struct trap_frame *f)
{
    (void)f;
    event('B');
    if (nest) {
        nest = 0;
        __asm__ volatile("ud2"); /* a #UD while handling the #BP */
        event('b');
    }
}

/* Where the last native #BP and #UD said they happened. */
static u64 native_bp_rip, native_ud_rip;
static void on_native_bp(struct trap_frame *f)
{
    native_bp_rip = f->rip;
}
static void on_native_ud(struct trap_frame *f)
{
    native_ud_rip = f->rip;
    f->rip += 2; /* ud2 */
}

/* A trap Linux writes as bytes, so no site: int3 (its text poking and
 * static calls write them at run time) and ud2 (BUG()). Each must reach the
 * guest's own handler with the vector and rip hardware gives: #BP with rip
 * after the int3, #UD with rip at the ud2. */
static void native_traps(struct checker *c)
{
    u64 after_int3, at_ud2;
    trap_set_handler(3, on_native_bp);
    trap_set_handler(6, on_native_ud);
    native_bp_rip = native_ud_rip = 0;
    __asm__ volatile("lea 1f(%%rip), %0\n\t.byte 0xcc\n1:" : "=r"(after_int3)::"memory");
    __asm__ volatile("lea 1f(%%rip), %0\n1:\t.byte 0x0f, 0x0b" : "=r"(at_ud2)::"memory");
    check_eq(c, "a native int3 is #BP with rip after it", after_int3, native_bp_rip);
    check_eq(c, "a native ud2 is #UD with rip at it", at_ud2, native_ud_rip);
}

static void on_syscall(struct trap_frame *f)
{
    event('S');
    f->rax = f->rdi * 2 + 1;
}

void test_exceptions(struct checker *c)
{
    event_count = 0;
    trap_set_handler(6, on_ud);
    trap_set_handler(0, on_de);
    trap_set_handler(3, on_bp);
    trap_set_handler(0x80, on_syscall);

    demand_region(DEMAND_VA, 16 * PAGE_SIZE);
    u64 before = demand_faults;
    u64 first = *(volatile u64 *)(DEMAND_VA + 0x3008);
    *(volatile u64 *)(DEMAND_VA + 0x3010) = 0xd0d0;
    u64 again = *(volatile u64 *)(DEMAND_VA + 0x3010);
    check_eq(c, "demand-mapped page reads zero", 0, first);
    check_eq(c, "one fault mapped the page", before + 1, demand_faults);
    check_eq(c, "the mapped page keeps writes", 0xd0d0, again);

    __asm__ volatile("ud2");
    __asm__ volatile("int3");
    u64 zero = 0, lo = 7, hi = 0;
    __asm__ volatile("divq %2" : "+a"(lo), "+d"(hi) : "c"(zero)); /* 48 f7 f1 */
    u64 result;
    __asm__ volatile("int $0x80" : "=a"(result) : "D"(20ul) : "memory");
    check_eq(c, "int $0x80 returned the handler's value", 41, result);
    nest = 1;
    __asm__ volatile("int3");
    events[event_count] = 0;
    kprintf("exceptions: events %s\n", events);
    check_eq(c, "#UD, #BP, #DE, int, then #UD nested in #BP", 6,
             (u64)(event_count == 7 && !kstrncmp(events, "UBDSBUb", 7)) * 6);

    native_traps(c);

    trap_set_handler(6, NULL);
    trap_set_handler(0, NULL);
    trap_set_handler(3, NULL);
    trap_set_handler(0x80, NULL);
}
