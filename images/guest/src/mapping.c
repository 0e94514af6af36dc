/* Workloads that stress mapping consistency (docs/vtlb.md): the guest
 * changes its own page tables as a kernel does, and checks every access
 * x86 defines the result of. Seeded, so every run does the same.
 *
 * x86's rule: after a page-table entry changes, the old translation may
 * still be used until an invlpg of the page or a CR3 load. A workload that
 * changes an entry without invlpg therefore leaves that page alone until
 * the next CR3 load; every other read must see the frame its tables name.
 * Each frame holds its own tag, so a read through a stale mapping shows.
 * Each workload ends with `mapping NAME: C reads checked, W wrong`. */
#include "guest.h"
#include "user.h"

/* Everything these workloads keep lives in its own section, which the
 * linker script places after the rest of the kernel's: the 2 MiB-aligned
 * block would otherwise move the kernel's other data (its page-table pool)
 * into other 2 MiB regions and change what the other workloads measure. */
#define MAPPING_DATA __attribute__((section(".bss.mapping")))

#define DATA_FRAMES 32
static u64 frames[DATA_FRAMES][PAGE_SIZE / 8] MAPPING_DATA __attribute__((aligned(4096)));
/* A 2 MiB-aligned block, mapped as one large page and split again. */
static u64 big[512][PAGE_SIZE / 8] MAPPING_DATA __attribute__((aligned(2 << 20)));

static u64 checked MAPPING_DATA, wrong MAPPING_DATA;
/* Wrong reads of every mapping workload run: the guest's exit says so. */
u64 mapping_wrong MAPPING_DATA;

static u64 rng MAPPING_DATA;
static u64 next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static u64 frame_tag(u64 f) { return 0x7a600000ul + f; }

static void tag_frames(void)
{
    for (u64 f = 0; f < DATA_FRAMES; f++) {
        frames[f][0] = frame_tag(f);
    }
}

static void check(u64 va, u64 expected)
{
    checked++;
    if (*(volatile u64 *)va != expected) {
        wrong++;
    }
}

static void report(const char *name)
{
    kprintf("mapping %s: %lu reads checked, %lu wrong\n", name, checked, wrong);
    mapping_wrong += wrong;
}

/* ---- ptmut: random remaps, protection changes and unmaps ---- */

#define MUT_PAGES 64
/* Two 2 MiB regions, 32 pages each. */
static u64 mut_va(u64 i) { return 0x81000000ul + (i / 32) * (2 << 20) + (i % 32) * PAGE_SIZE; }

struct mut_page {
    i64 frame; /* -1: not mapped */
    int writable;
    int stale; /* changed without invlpg since the last flush */
};
static struct mut_page mut[MUT_PAGES] MAPPING_DATA;

static void mut_set(u64 pml4, u64 i, i64 frame, int writable, int flush)
{
    u64 *pte = pte_lookup(pml4, mut_va(i), 1);
    *pte = frame < 0 ? 0 : ((u64)frames[frame] & PTE_ADDR) | PTE_P | (writable ? PTE_W : 0);
    mut[i].frame = frame;
    mut[i].writable = writable;
    if (flush) {
        invlpg(mut_va(i));
        mut[i].stale = 0;
    } else {
        mut[i].stale = 1;
    }
}

static void ptmut(u64 n)
{
    u64 pml4 = read_cr3();
    rng = 0x9e3779b97f4a7c15ul;
    checked = wrong = 0;
    tag_frames();
    for (u64 i = 0; i < MUT_PAGES; i++) {
        mut_set(pml4, i, (i64)(i % DATA_FRAMES), 1, 1);
    }
    for (u64 k = 0; k < n; k++) {
        u64 r = next_random();
        u64 i = (r >> 8) % MUT_PAGES;
        int flush = (r >> 20) & 1;
        struct mut_page *p = &mut[i];
        switch (r % 8) {
        case 0: /* remap to another frame */
            mut_set(pml4, i, (i64)((r >> 24) % DATA_FRAMES), (r >> 40) & 1, flush);
            break;
        case 1: /* protection change */
            if (p->frame >= 0) {
                mut_set(pml4, i, p->frame, !p->writable, flush);
            }
            break;
        case 2: /* unmap */
            mut_set(pml4, i, -1, 0, flush);
            break;
        case 3: /* a CR3 load flushes everything */
            write_cr3(pml4);
            for (u64 j = 0; j < MUT_PAGES; j++) {
                mut[j].stale = 0;
            }
            break;
        case 4:
        case 5: /* read */
            if (p->frame >= 0 && !p->stale) {
                check(mut_va(i), frame_tag((u64)p->frame));
            }
            break;
        default: /* write (the tag again: frames keep their tags) */
            if (p->frame >= 0 && !p->stale && p->writable) {
                *(volatile u64 *)mut_va(i) = frame_tag((u64)p->frame);
                check(mut_va(i), frame_tag((u64)p->frame));
            }
            break;
        }
    }
    for (u64 i = 0; i < MUT_PAGES; i++) {
        mut_set(pml4, i, -1, 0, 1);
    }
    write_cr3(pml4);
    report("ptmut");
}

/* ---- largepage: a 2 MiB page split into 4 KiB pages and merged back ---- */

#define LARGE_VA 0x81800000ul

static void largepage(u64 n)
{
    u64 pml4 = read_cr3();
    u64 base = (u64)big & PTE_ADDR;
    rng = 0x2545f4914f6cdd1dul;
    checked = wrong = 0;
    for (u64 f = 0; f < 512; f++) {
        big[f][0] = frame_tag(0x1000 + f);
    }
    /* The PD entry for LARGE_VA (created with a page table under it). */
    pte_lookup(pml4, LARGE_VA, 1);
    u64 *pdpt = (u64 *)(((u64 *)pml4)[(LARGE_VA >> 39) & 511] & PTE_ADDR);
    u64 *pd = (u64 *)(pdpt[(LARGE_VA >> 30) & 511] & PTE_ADDR);
    u64 *pde = &pd[(LARGE_VA >> 21) & 511];
    u64 *pt = (u64 *)page_alloc();
    int split = 0;
    *pde = base | PTE_P | PTE_W | PTE_PS;
    write_cr3(pml4);
    for (u64 k = 0; k < n; k++) {
        u64 r = next_random();
        u64 f = (r >> 8) % 512;
        switch (r % 4) {
        case 0: /* split: the same frames through a page table; some read-only */
            if (!split) {
                for (u64 j = 0; j < 512; j++) {
                    pt[j] = (base + j * PAGE_SIZE) | PTE_P | (((r >> 16) + j) % 7 ? PTE_W : 0);
                }
                *pde = (u64)pt | PTE_P | PTE_W;
                split = 1;
                write_cr3(pml4);
            }
            break;
        case 1: /* merge back */
            if (split) {
                *pde = base | PTE_P | PTE_W | PTE_PS;
                split = 0;
                write_cr3(pml4);
            }
            break;
        case 2: /* while split: swap two frames' mappings, with invlpg */
            if (split) {
                u64 g = (r >> 24) % 512;
                u64 t = pt[f];
                pt[f] = pt[g];
                pt[g] = t;
                invlpg(LARGE_VA + f * PAGE_SIZE);
                invlpg(LARGE_VA + g * PAGE_SIZE);
            }
            break;
        default: { /* read, and write where writable */
            u64 entry = split ? pt[f] : base + f * PAGE_SIZE;
            u64 frame = ((entry & PTE_ADDR) - base) / PAGE_SIZE;
            check(LARGE_VA + f * PAGE_SIZE, frame_tag(0x1000 + frame));
            if (!split || (pt[f] & PTE_W)) {
                *(volatile u64 *)(LARGE_VA + f * PAGE_SIZE) = frame_tag(0x1000 + frame);
            }
            break;
        }
        }
    }
    *pde = 0;
    write_cr3(pml4);
    report("largepage");
}

/* ---- aschurn: many address spaces, switched among and rebuilt ---- */

#define SPACES 8
#define SPACE_PAGES 16
/* In the second PML4 slot, which each address space has its own of (the
 * first, the kernel's, is shared). */
#define SPACE_VA 0x8000000000ul

static u64 spaces[SPACES] MAPPING_DATA;
static u64 space_frame[SPACES][SPACE_PAGES] MAPPING_DATA;

static void space_fill(u64 s, u64 seed)
{
    for (u64 i = 0; i < SPACE_PAGES; i++) {
        u64 f = (seed + i * 7 + s) % DATA_FRAMES;
        space_frame[s][i] = f;
        *pte_lookup(spaces[s], SPACE_VA + i * PAGE_SIZE, 1) =
            ((u64)frames[f] & PTE_ADDR) | PTE_P | PTE_W;
    }
}

static void aschurn(u64 n)
{
    u64 home = read_cr3();
    rng = 0x853c49e6748fea9bul;
    checked = wrong = 0;
    tag_frames();
    for (u64 s = 0; s < SPACES; s++) {
        if (!spaces[s]) {
            spaces[s] = address_space_new();
        }
        space_fill(s, s * 3);
    }
    u64 current = SPACES;
    for (u64 k = 0; k < n; k++) {
        u64 r = next_random();
        u64 s = (r >> 8) % SPACES;
        switch (r % 4) {
        case 0: /* rebuild a space that is not current: it is reloaded before use */
            if (s != current) {
                space_fill(s, r >> 16);
            }
            break;
        case 1: /* switch */
            write_cr3(spaces[s]);
            current = s;
            break;
        default: /* touch the current space */
            if (current < SPACES) {
                u64 i = (r >> 16) % SPACE_PAGES;
                check(SPACE_VA + i * PAGE_SIZE, frame_tag(space_frame[current][i]));
            }
            break;
        }
    }
    write_cr3(home);
    report("aschurn");
}

/* ---- forkchurn: address-space churn with processes ---- */

/* A process (prog_forkchurn, src/user/programs.c) forks children that read
 * and write (copy-on-write) the pages they inherit, yield to each other,
 * exit and are waited for, up to four live at once: CR3 loads switch among
 * real process address spaces, and every exit frees a space's page tables
 * for the next fork to reuse (as tables or as data). n is the parent's
 * operations. Timer interrupts stay masked, so the run is the same under
 * every strategy (processes switch only when they yield, wait or exit). */
static void forkchurn(u64 n)
{
    cli();
    proc_init();
    checked = wrong = 0;
    u64 status = 0;
    struct proc_fault fault = { 0, 0, 0, 0 };
    int pid = proc_spawn(prog_forkchurn, n);
    int reaped = proc_wait(&status, &fault);
    proc_fini();
    if (pid < 0 || reaped != pid || status != 0 || fault.rip) {
        kprintf("mapping forkchurn: the process failed: status 0x%lx, vector %lu at rip %lx, cr2 %lx\n",
                status, fault.vector, fault.rip, fault.cr2);
        wrong++;
    }
    checked += user_reports[CHURN_SLOT_CHECKED];
    wrong += user_reports[CHURN_SLOT_WRONG];
    kprintf("forkchurn: %lu system calls, %lu copy-on-write copies, %lu demand-zero pages\n",
            proc_syscalls, proc_cow_copies, proc_zero_fills);
    report("forkchurn");
}

const struct workload mapping_workloads[] = {
    { "ptmut", 20000, ptmut },
    { "largepage", 2000, largepage },
    { "aschurn", 20000, aschurn },
    { "forkchurn", 1000, forkchurn },
};
const u64 mapping_workload_count = ARRAY_SIZE(mapping_workloads);
