/* paging: the guest's own 4-level tables, CR3 switches (and the TLB flush
 * they imply), aliases, unmap with invlpg, and write protection. */
#include "guest.h"

/* Beyond the shared identity map (PML4 slot 0), so each address space has
 * its own tables here. */
#define TEST_VA 0x8000000000ul

/* The page directory entry for `va` in `pml4`, making the tables above it. */
static u64 *pde_lookup(u64 pml4, u64 va)
{
    u64 *t = (u64 *)pml4;
    for (int shift = 39; shift > 21; shift -= 9) {
        u64 *e = &t[(va >> shift) & 511];
        if (!(*e & PTE_P)) {
            *e = page_alloc() | PTE_P | PTE_W;
        }
        t = (u64 *)(*e & PTE_ADDR);
    }
    return &t[(va >> 21) & 511];
}

/* An offset in the first page where the 2 MiB frames at `a` and `b` (read
 * through the identity map) differ. */
static u64 differing_offset(u64 a, u64 b)
{
    for (u64 o = 0; o < PAGE_SIZE; o += 8) {
        if (*(const u64 *)(a + o) != *(const u64 *)(b + o)) {
            return o;
        }
    }
    return 0;
}

void test_paging(struct checker *c)
{
    u64 as1 = address_space_new(), as2 = address_space_new();
    u64 f1 = page_alloc(), f2 = page_alloc();
    *(volatile u64 *)f1 = 0x1111;
    *(volatile u64 *)f2 = 0x2222;
    map_page(as1, TEST_VA, f1, PTE_W);
    map_page(as2, TEST_VA, f2, PTE_W);
    map_page(as1, TEST_VA + 0x1000, f1, PTE_W); /* alias of f1 */
    map_page(as1, TEST_VA + 0x2000, f1, 0);     /* read-only view */

    u64 saved = read_cr3();
    write_cr3(as1);
    u64 in1 = *(volatile u64 *)TEST_VA;
    write_cr3(as2);
    u64 in2 = *(volatile u64 *)TEST_VA;
    write_cr3(as1);
    check_eq(c, "address space 1 sees its frame", 0x1111, in1);
    check_eq(c, "address space 2 sees its frame at the same address", 0x2222, in2);

    /* A CR3 load flushes the TLB: an entry changed without invlpg is seen. */
    (void)*(volatile u64 *)TEST_VA; /* cached (in a TLB, or the VMM's) */
    *pte_lookup(as1, TEST_VA, 0) = f2 | PTE_W | PTE_P;
    write_cr3(as1);
    u64 after = *(volatile u64 *)TEST_VA;
    *pte_lookup(as1, TEST_VA, 0) = f1 | PTE_W | PTE_P;
    write_cr3(as1);
    check_eq(c, "a CR3 load drops an entry changed without invlpg", 0x2222, after);

    /* The same through a large page: a changed PDE is seen after a CR3 load. */
    u64 big_va = TEST_VA + 0x400000, from = 0x200000, to = 0x400000;
    u64 o = differing_offset(from, to);
    u64 *pde = pde_lookup(as1, big_va);
    *pde = from | PTE_PS | PTE_P;
    write_cr3(as1);
    u64 before = *(volatile u64 *)(big_va + o);
    *pde = to | PTE_PS | PTE_P;
    write_cr3(as1);
    u64 moved = *(volatile u64 *)(big_va + o);
    *pde = 0;
    write_cr3(as1);
    check_true(c, "a large page reads its frame", before == *(const u64 *)(from + o));
    check_true(c, "a CR3 load drops a large page changed without invlpg",
               moved == *(const u64 *)(to + o) && moved != before);

    *(volatile u64 *)(TEST_VA + 8) = 0xa11a5;
    check_eq(c, "write through one mapping, read through the alias", 0xa11a5,
             *(volatile u64 *)(TEST_VA + 0x1000 + 8));

    u64 value = 0;
    check_eq(c, "read-only view is readable", 0, probe_read(TEST_VA + 0x2000, &value));
    check_eq(c, "write to a read-only page faults", 1, probe_write(TEST_VA + 0x2000, 1));
    check_eq(c, "#PF address of the read-only write", TEST_VA + 0x2000, probe_cr2);
    check_eq(c, "#PF error: present, write", 0x3, probe_error & 0x7);

    /* Widening an entry needs no invlpg on x86: the next write may fault
     * spuriously (a cached read-only entry) or succeed; after an invlpg it
     * succeeds. */
    *pte_lookup(as1, TEST_VA + 0x2000, 0) |= PTE_W;
    (void)probe_write(TEST_VA + 0x2000, 2);
    invlpg(TEST_VA + 0x2000);
    check_eq(c, "a widened entry is writable", 0, probe_write(TEST_VA + 0x2000, 3));

    *pte_lookup(as1, TEST_VA + 0x1000, 0) = 0;
    invlpg(TEST_VA + 0x1000);
    check_eq(c, "touching an unmapped page faults", 1, probe_read(TEST_VA + 0x1000, &value));
    check_eq(c, "#PF address after unmap and invlpg", TEST_VA + 0x1000, probe_cr2);
    check_eq(c, "#PF error: not present, read", 0x0, probe_error & 0x7);

    /* Accessed and dirty bits, as the CPU sets them (what Linux reads for
     * page reclaim and writeback): a read sets A in every entry of the
     * walk and no D; the first write sets D in the page's entry. The CR3
     * load drops whatever a TLB held of the cleared entries. */
    u64 ad_va = TEST_VA + 0x3000;
    map_page(as1, ad_va, page_alloc(), PTE_W);
    /* Volatile: the CPU (or the VMM) writes them behind the compiler. */
    volatile u64 *ad_pte = pte_lookup(as1, ad_va, 0), *ad_pde = pde_lookup(as1, ad_va);
    volatile u64 *ad_pml4e = &((u64 *)as1)[(ad_va >> 39) & 511];
    *ad_pte &= ~(PTE_A | PTE_D);
    *ad_pde &= ~PTE_A;
    *ad_pml4e &= ~PTE_A;
    write_cr3(as1);
    (void)*(volatile u64 *)ad_va;
    check_eq(c, "a read sets the accessed bit, not the dirty bit", PTE_A, *ad_pte & (PTE_A | PTE_D));
    check_eq(c, "a read sets the accessed bit in the tables above", PTE_A, *ad_pde & *ad_pml4e & PTE_A);
    *(volatile u64 *)ad_va = 1;
    check_eq(c, "the first write sets the dirty bit", PTE_A | PTE_D, *ad_pte & (PTE_A | PTE_D));
    *ad_pte &= ~(PTE_A | PTE_D);
    invlpg(ad_va);
    *(volatile u64 *)ad_va = 2;
    check_eq(c, "a write after invlpg sets both again", PTE_A | PTE_D, *ad_pte & (PTE_A | PTE_D));

    write_cr3(saved);
    check_eq(c, "back on the boot address space", saved, read_cr3());
}
