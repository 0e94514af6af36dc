/* Page tables built by the guest itself, from a pool of frames. */
#include "guest.h"

#define POOL_PAGES 512
static u8 pool[POOL_PAGES][PAGE_SIZE] __attribute__((aligned(4096)));
static u64 pool_next;
/* The address space the kernel was entered with (its own boot tables on the
 * multiboot path, the VMM's identity map on the PV path). */
u64 boot_cr3;

u64 page_alloc(void)
{
    if (pool_next == POOL_PAGES) {
        kprintf("guest: out of page-table frames\n");
        guest_exit(0);
    }
    u8 *p = pool[pool_next++];
    kmemset(p, 0, PAGE_SIZE);
    return (u64)p;
}

static u64 *table(u64 entry)
{
    return (u64 *)(entry & PTE_ADDR);
}

u64 *pte_lookup(u64 pml4, u64 va, int create)
{
    u64 *t = (u64 *)pml4;
    for (int shift = 39; shift > 12; shift -= 9) {
        u64 *e = &t[(va >> shift) & 511];
        if (!(*e & PTE_P)) {
            if (!create) {
                return NULL;
            }
            *e = page_alloc() | PTE_P | PTE_W;
        } else if (*e & PTE_PS) {
            return NULL; /* inside a large page of the identity map */
        }
        t = table(*e);
    }
    return &t[(va >> 12) & 511];
}

void map_page(u64 pml4, u64 va, u64 pa, u64 flags)
{
    *pte_lookup(pml4, va, 1) = (pa & PTE_ADDR) | flags | PTE_P;
}

u64 address_space_new(void)
{
    u64 *pml4 = (u64 *)page_alloc();
    /* Share the identity map of low memory the kernel was entered with. */
    pml4[0] = ((const u64 *)(boot_cr3 & PTE_ADDR))[0];
    return (u64)pml4;
}
