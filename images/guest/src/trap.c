/* The IDT, trap dispatch, fault probes and demand paging. */
#include "guest.h"

struct idt_gate {
    u16 offset_low, selector;
    u8 ist, type;
    u16 offset_mid;
    u32 offset_high, reserved;
} __attribute__((packed));

struct table_pointer {
    u16 limit;
    u64 base;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));
static trap_handler handlers[256];

trap_handler trap_get_handler(u8 vector)
{
    return handlers[vector];
}
extern const u64 trap_stub_table[48];
extern const u64 trap_stub_syscall;
extern const char probe_read_access[], probe_read_fixup[], probe_write_access[], probe_write_fixup[];
u64 probe_cr2, probe_error;

static void set_gate(u8 vector, u64 handler, u8 dpl)
{
    idt[vector] = (struct idt_gate){
        .offset_low = (u16)handler,
        .selector = SEL_CODE,
        .ist = 0,
        .type = (u8)(0x8e | (dpl << 5)), /* present, 64-bit interrupt gate */
        .offset_mid = (u16)(handler >> 16),
        .offset_high = (u32)(handler >> 32),
    };
}

void trap_set_handler(u8 vector, trap_handler h)
{
    handlers[vector] = h;
}

static u64 demand_base, demand_size;
volatile u64 demand_faults;

void demand_region(u64 base, u64 size)
{
    demand_base = base;
    demand_size = size;
}

static void page_fault(struct trap_frame *f)
{
    u64 cr2 = read_cr2();
    /* A probe that faulted resumes after its access with a failure result. */
    if (f->rip == (u64)probe_read_access || f->rip == (u64)probe_write_access) {
        probe_cr2 = cr2;
        probe_error = f->error;
        f->rip = f->rip == (u64)probe_read_access ? (u64)probe_read_fixup : (u64)probe_write_fixup;
        f->rax = 1;
        return;
    }
    if (cr2 >= demand_base && cr2 < demand_base + demand_size && !(f->error & PTE_P)) {
        u64 *pte = pte_lookup(read_cr3(), cr2, 1);
        /* A frame that was mapped here before is reused (the pagefault
         * workload unmaps and refaults the same page many times). */
        u64 frame = (*pte & PTE_ADDR) ? (*pte & PTE_ADDR) : page_alloc();
        *pte = frame | PTE_W | PTE_P;
        demand_faults++;
        return; /* retry the access */
    }
    kprintf("guest: unexpected page fault at 0x%lx, rip 0x%lx, error 0x%lx\n", cr2, f->rip, f->error);
    guest_exit(0);
}

trap_handler user_trap_hook;

void trap_dispatch(struct trap_frame *f)
{
    if ((f->cs & 3) && user_trap_hook) {
        user_trap_hook(f);
    } else if (f->vector >= ARRAY_SIZE(handlers)) {
        kprintf("guest: unexpected entry %lu at rip 0x%lx\n", f->vector, f->rip);
        guest_exit(0);
    } else if (handlers[f->vector]) {
        handlers[f->vector](f);
    } else if (f->vector == 14) {
        page_fault(f);
    } else {
        kprintf("guest: unexpected trap %lu at rip 0x%lx, error 0x%lx\n", f->vector, f->rip, f->error);
        guest_exit(0);
    }
}

void traps_init(void)
{
    for (int v = 0; v < 48; v++) {
        set_gate((u8)v, trap_stub_table[v], v == 3 ? 3 : 0);
    }
    set_gate(0x80, trap_stub_syscall, 3);
    struct table_pointer p = { sizeof(idt) - 1, (u64)idt };
    __asm__ volatile("lidt %0" : : "m"(p));
}
