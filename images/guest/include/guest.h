/* The guest kernel's shared declarations: types, CPU access, console,
 * traps, paging, tests. Every privileged or sensitive instruction is written
 * here once, as inline assembly, so the afterburner sees each in one form. */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;
typedef u64 size_t;
#define NULL ((void *)0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the PV boot protocol (docs/pv-boot.md) ---- */
#define PV_BOOT_MAGIC 0x49425650u /* "PVBI" */
#define PV_BOOT_VERSION 1
#define PV_MMAP_MAX 16
#define PV_MMAP_RAM 1

struct pv_mmap_entry {
    u64 base;
    u64 length;
    u32 type;
    u32 reserved;
};

struct pv_boot_info {
    u32 magic;
    u32 version;
    u64 cmdline; /* address of a NUL-terminated string, or 0 */
    u32 mmap_count;
    u32 reserved;
    struct pv_mmap_entry mmap[PV_MMAP_MAX];
};

void kernel_main(const struct pv_boot_info *boot);

/* ---- port I/O ---- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline void outsb(u16 port, const void *buf, u64 n)
{
    __asm__ volatile("rep outsb" : "+S"(buf), "+c"(n) : "d"(port) : "memory");
}

/* ---- interrupt flag ---- */
#define RFLAGS_IF (1ul << 9)
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline u64 save_flags(void)
{
    u64 f;
    __asm__ volatile("pushfq; popq %0" : "=r"(f) : : "memory");
    return f;
}
static inline void restore_flags(u64 f) { __asm__ volatile("pushq %0; popfq" : : "r"(f) : "memory", "cc"); }
static inline u64 irq_save(void)
{
    u64 f = save_flags();
    cli();
    return f;
}
/* sti and hlt as one pair: the interrupt shadow of sti covers hlt. */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }

/* ---- control registers, MSRs, TLB ---- */
static inline u64 read_cr0(void) { u64 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline u64 read_cr2(void) { u64 v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline u64 read_cr3(void) { u64 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void write_cr3(u64 v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void invlpg(u64 va) { __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory"); }
static inline u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
}
static inline u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}
static inline void cpuid(u32 leaf, u32 *a, u32 *b, u32 *c, u32 *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}
#define MSR_EFER 0xc0000080u
#define MSR_STAR 0xc0000081u
#define MSR_LSTAR 0xc0000082u
#define MSR_SFMASK 0xc0000084u
#define MSR_FS_BASE 0xc0000100u
#define MSR_GS_BASE 0xc0000101u
#define MSR_KERNEL_GS_BASE 0xc0000102u
#define EFER_SCE 0x1ul
static inline void swapgs(void) { __asm__ volatile("swapgs" ::: "memory"); }

/* ---- console (COM1 16550) ---- */
void console_init(void);
void console_putc(char c);
void console_write(const char *s, u64 n);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
u64 kstrlen(const char *s);
int kstrncmp(const char *a, const char *b, u64 n);
void kmemset(void *p, int c, u64 n);
void kmemcpy(void *d, const void *s, u64 n);

/* ---- exit (isa-debug-exit) ---- */
void guest_exit(int passed) __attribute__((noreturn));

/* ---- traps ---- */
struct trap_frame {
    u64 rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15;
    u64 vector, error;
    u64 rip, cs, rflags, rsp, ss;
};
typedef void (*trap_handler)(struct trap_frame *);
/* The frame's vector for an entry through the `syscall` instruction. */
#define VECTOR_SYSCALL 0x100
/* Every trap from CPL 3 goes here when set (the process layer, proc.c). */
extern trap_handler user_trap_hook;
/* The syscall entry (traps.S) and the kernel stack it switches to. */
extern const char syscall_entry[];
extern u64 syscall_kstack;
/* Kernel context switch: saves callee-saved registers and rsp in *save,
 * continues on `next` (traps.S). */
void switch_to(u64 *save, u64 next);
/* Where a new process's kernel stack starts: restores its trap frame and
 * returns to it with iretq (traps.S). */
extern const char trap_return[];
void traps_init(void);
void trap_set_handler(u8 vector, trap_handler h);
trap_handler trap_get_handler(u8 vector);
/* Reads or writes a word, returning 0, or 1 if the access faulted (the fault's
 * CR2 and error code are left in probe_cr2 / probe_error). */
int probe_read(u64 addr, u64 *value);
int probe_write(u64 addr, u64 value);
extern u64 probe_cr2, probe_error;

/* ---- descriptors ---- */
#define SEL_CODE 0x08
#define SEL_DATA 0x10
#define SEL_TSS 0x18
#define SEL_LDT 0x28
/* The user segments, in the order STAR's sysret base requires: base 0x38
 * (a 32-bit user code segment, never used), data at base + 8, 64-bit code at
 * base + 16. */
#define SEL_USER_BASE 0x38
#define SEL_USER_DATA 0x40
#define SEL_USER_CODE 0x48
#define GDT_ENTRIES 10
extern u64 gdt[GDT_ENTRIES];
void gdt_init(void);
/* The stack the CPU switches to on an interrupt or exception from CPL 3. */
void tss_set_rsp0(u64 rsp0);

/* ---- paging ---- */
#define PAGE_SIZE 4096ul
#define PTE_P 0x1ul
#define PTE_W 0x2ul
#define PTE_U 0x4ul
#define PTE_A 0x20ul /* accessed: set by the CPU in every entry a walk uses */
#define PTE_D 0x40ul /* dirty: set by the CPU at the first write to the page */
#define PTE_PS 0x80ul
#define PTE_COW 0x200ul /* software: a copy-on-write page (available bit 9) */
#define PTE_ADDR 0x000ffffffffff000ul
u64 page_alloc(void); /* a zeroed 4 KiB frame (identity mapped) */
u64 *pte_lookup(u64 pml4, u64 va, int create); /* the 4K PTE for va */
void map_page(u64 pml4, u64 va, u64 pa, u64 flags);
u64 address_space_new(void); /* a PML4 sharing the boot identity map */
void page_free(u64 frame);
/* Copy-on-write sharing: frames of the pool carry a reference count (1 when
 * allocated); others (the kernel image) are never counted or freed. */
void page_ref(u64 frame);
u32 page_refs(u64 frame);
u64 pages_free(void); /* frames left in the pool */
/* pte_lookup, with every table it creates given `table_flags`. */
u64 *pte_lookup_flags(u64 pml4, u64 va, int create, u64 table_flags);
extern u64 boot_cr3;
/* Demand paging: faults inside [base, base+size) map a fresh frame. */
void demand_region(u64 base, u64 size);
extern volatile u64 demand_faults;

/* ---- the 8259 PIC and 8254 PIT ---- */
#define IRQ_BASE 0x20
void pic_init(void);
void pic_unmask(u8 irq);
void pic_mask_all(void);
void pic_eoi(u8 irq);
void pit_start(u32 hz);
void pit_stop(void);
u16 pit_read_count(void);
extern volatile u64 timer_ticks;

/* ---- tests and benchmarks ---- */
struct checker {
    const char *test;
    u32 checks, failures;
};
void check_eq(struct checker *c, const char *what, u64 expected, u64 actual);
void check_true(struct checker *c, const char *what, int ok);

struct selftest {
    const char *name;
    void (*run)(struct checker *c);
};
void test_console(struct checker *c);
void test_cpu(struct checker *c);
void test_flags(struct checker *c);
void test_desc(struct checker *c);
void test_paging(struct checker *c);
void test_exceptions(struct checker *c);
void test_timer(struct checker *c);
void test_user(struct checker *c);

struct workload {
    const char *name;
    u64 iterations;
    void (*run)(u64 iterations);
};
extern const struct workload workloads[];
/* stress=S on the command line: S seconds at 1 kHz under the mixed load. */
void stress(u64 seconds);
/* A workload that measures its own ticks sets this (0: the whole run). */
extern u64 bench_ticks;
extern const u64 workload_count;
/* Workloads that stress mapping consistency (mapping.c). */
extern const struct workload mapping_workloads[];
extern const u64 mapping_workload_count;
extern u64 mapping_wrong;

#endif
