/* desc: descriptor-table loads and stores, segment loads, far return. */
#include "guest.h"

struct table_pointer {
    u16 limit;
    u64 base;
} __attribute__((packed));


static u16 read_ds(void) { u16 v; __asm__ volatile("mov %%ds, %0" : "=r"(v)); return v; }
static u16 read_cs(void) { u16 v; __asm__ volatile("mov %%cs, %0" : "=r"(v)); return v; }

void test_desc(struct checker *c)
{
    struct table_pointer g = { 0, 0 }, i = { 0, 0 };
    __asm__ volatile("sgdt %0" : "=m"(g));
    __asm__ volatile("sidt %0" : "=m"(i));
    check_eq(c, "sgdt base is the kernel's GDT", (u64)gdt, g.base);
    check_eq(c, "sgdt limit", sizeof(gdt) - 1, g.limit);
    check_eq(c, "sidt limit covers 256 gates", 256 * 16 - 1, i.limit);

    /* Reload the same GDT and IDT and read them back. */
    __asm__ volatile("lgdt %0" : : "m"(g));
    __asm__ volatile("lidt %0" : : "m"(i));
    struct table_pointer g2 = { 0, 0 };
    __asm__ volatile("sgdt %0" : "=m"(g2));
    check_eq(c, "lgdt then sgdt", g.base, g2.base);

    u16 tr = SEL_TSS, ldtr = SEL_LDT, tr_read = 0, ldtr_read = 0;
    __asm__ volatile("ltr %0" : : "r"(tr));
    __asm__ volatile("str %0" : "=r"(tr_read));
    __asm__ volatile("lldt %0" : : "r"(ldtr));
    __asm__ volatile("sldt %0" : "=r"(ldtr_read));
    check_eq(c, "ltr then str", SEL_TSS, tr_read);
    check_eq(c, "lldt then sldt", SEL_LDT, ldtr_read);

    u16 msw;
    __asm__ volatile("smsw %0" : "=r"(msw));
    check_eq(c, "smsw: protected mode and paging bits", 0x1, msw & 0x1);

    u16 data = SEL_DATA;
    __asm__ volatile("mov %0, %%ds; mov %0, %%es" : : "r"(data));
    check_eq(c, "ds after a segment load", SEL_DATA, read_ds());

    /* A far return to the next instruction reloads CS. */
    __asm__ volatile("pushq %0; leaq 1f(%%rip), %%rax; pushq %%rax; lretq; 1:"
                     :
                     : "i"(SEL_CODE)
                     : "rax", "memory");
    check_eq(c, "cs after a far return", SEL_CODE, read_cs());
}
