/* Page tables built by the guest itself, from a pool of frames. */
#include "guest.h"

#define POOL_PAGES 1536
static u8 pool[POOL_PAGES][PAGE_SIZE] __attribute__((aligned(4096)));
static u64 pool_next;
/* Freed frames, linked through their first word; reference counts for
 * copy-on-write sharing. */
static u64 free_list;
static u64 free_count;
static u16 refs[POOL_PAGES];
/* The address space the kernel was entered with (its own boot tables on the
 * multiboot path, the VMM's identity map on the PV path). */
u64 boot_cr3;

static int in_pool(u64 frame)
{
    return frame >= (u64)pool && frame < (u64)pool + sizeof(pool);
}

static u16 *ref_of(u64 frame)
{
    return &refs[(frame - (u64)pool) / PAGE_SIZE];
}

u64 page_alloc(void)
{
    u8 *p;
    if (free_list) {
        p = (u8 *)free_list;
        free_list = *(u64 *)p;
        free_count--;
    } else if (pool_next < POOL_PAGES) {
        p = pool[pool_next++];
    } else {
        kprintf("guest: out of page-table frames\n");
        guest_exit(0);
    }
    kmemset(p, 0, PAGE_SIZE);
    *ref_of((u64)p) = 1;
    return (u64)p;
}

void page_ref(u64 frame)
{
    if (in_pool(frame)) {
        (*ref_of(frame))++;
    }
}

u32 page_refs(u64 frame)
{
    return in_pool(frame) ? *ref_of(frame) : 0;
}

/* Drops one reference; the frame returns to the pool with the last. */
void page_free(u64 frame)
{
    if (!in_pool(frame) || *ref_of(frame) == 0) {
        return;
    }
    if (--*ref_of(frame) == 0) {
        *(u64 *)frame = free_list;
        free_list = frame;
        free_count++;
    }
}

u64 pages_free(void)
{
    return POOL_PAGES - pool_next + free_count;
}

static u64 *table(u64 entry)
{
    return (u64 *)(entry & PTE_ADDR);
}

u64 *pte_lookup(u64 pml4, u64 va, int create)
{
    return pte_lookup_flags(pml4, va, create, PTE_P | PTE_W);
}

u64 *pte_lookup_flags(u64 pml4, u64 va, int create, u64 table_flags)
{
    u64 *t = (u64 *)pml4;
    for (int shift = 39; shift > 12; shift -= 9) {
        u64 *e = &t[(va >> shift) & 511];
        if (!(*e & PTE_P)) {
            if (!create) {
                return NULL;
            }
            *e = page_alloc() | table_flags;
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
