/* The GDT the kernel runs on: flat code and data, a TSS, an LDT and the
 * user segments. */
#include "guest.h"

struct tss {
    u32 reserved0;
    u64 rsp[3];
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3, iomap_base;
} __attribute__((packed));

static struct tss tss;
static u64 ldt[2] = { 0, 0x00cf92000000ffff }; /* one data segment */
u64 gdt[GDT_ENTRIES] __attribute__((aligned(16)));

/* A 16-byte system descriptor (TSS type 9, LDT type 2) for 64-bit mode. */
static void system_descriptor(int index, u64 base, u32 limit, u8 type)
{
    gdt[index] = (limit & 0xffff) | ((base & 0xffffff) << 16) | ((u64)(0x80 | type) << 40) |
                 ((u64)((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    gdt[index + 1] = base >> 32;
}

void gdt_init(void)
{
    gdt[0] = 0;
    gdt[1] = 0x00af9a000000ffff; /* SEL_CODE: 64-bit code */
    gdt[2] = 0x00cf92000000ffff; /* SEL_DATA */
    system_descriptor(3, (u64)&tss, sizeof(tss) - 1, 0x9); /* SEL_TSS */
    system_descriptor(5, (u64)ldt, sizeof(ldt) - 1, 0x2); /* SEL_LDT */
    gdt[7] = 0x00cffa000000ffff; /* SEL_USER_BASE: 32-bit user code, unused */
    gdt[8] = 0x00cff2000000ffff; /* SEL_USER_DATA: DPL 3 */
    gdt[9] = 0x00affa000000ffff; /* SEL_USER_CODE: 64-bit, DPL 3 */
    tss.iomap_base = sizeof(tss);
    struct {
        u16 limit;
        u64 base;
    } __attribute__((packed)) p = { sizeof(gdt) - 1, (u64)gdt };
    __asm__ volatile("lgdt %0" : : "m"(p));
}

void tss_set_rsp0(u64 rsp0)
{
    tss.rsp[0] = rsp0;
}
