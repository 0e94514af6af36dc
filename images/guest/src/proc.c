/* Processes: address spaces with a shared kernel half, ring 3 through
 * iretq and sysretq, system calls through `syscall` and `int $0x80`,
 * round-robin scheduling (the timer preempts user mode), fork with
 * copy-on-write, exit and wait, a demand-zero heap and stack, and a
 * per-process FS base.
 *
 * Process 0 is the kernel's own context (the test that started the
 * processes); it runs only when no process can, and waits for its
 * children there. The kernel is not preemptible: it runs with interrupts
 * off (interrupt gates, SFMASK clears IF) and switches only in schedule(). */
#include "guest.h"
#include "user.h"

#define NPROC 16
#define KSTACK_SIZE 8192
#define RFLAGS_USER 0x202ul /* IF, and the reserved bit 1 */
/* What SFMASK clears on `syscall`: IF, TF, DF, NT, AC. */
#define SFMASK_BITS (0x200ul | 0x100ul | 0x400ul | 0x4000ul | 0x40000ul)
/* The GS bases while the kernel runs and while a process does: swapgs
 * exchanges them at every crossing; the kernel never uses %gs itself. */
#define KERNEL_GS_VALUE 0xffff800000001000ul
#define USER_GS_VALUE 0ul

enum state { FREE, RUNNABLE, WAITING, ZOMBIE };

struct proc {
    enum state state;
    int pid;
    struct proc *parent;
    u64 cr3, ksp, fs_base, brk;
    u64 status;
    struct proc_fault fault;
};

static struct proc procs[NPROC];
static u8 kstacks[NPROC][KSTACK_SIZE] __attribute__((aligned(16)));
static struct proc *current;
static int next_pid;

u64 user_reports[REPORT_SLOTS];
volatile u64 proc_preemptions, proc_cow_copies, proc_zero_fills, proc_syscalls, proc_int80s;

u64 user_va(const void *symbol)
{
    return USER_BASE + ((u64)symbol - (u64)user_section_start);
}

static u64 kstack_top(struct proc *p)
{
    return (u64)kstacks[p - procs] + KSTACK_SIZE;
}

/* ---- address spaces ---- */

#define USER_TABLE (PTE_P | PTE_W | PTE_U)

static int is_user(u64 va)
{
    return (va >> 39) == USER_SLOT;
}

/* A PML4 with every slot of the kernel's space but the user one. */
static u64 space_new(void)
{
    u64 *pml4 = (u64 *)page_alloc();
    const u64 *boot = (const u64 *)(boot_cr3 & PTE_ADDR);
    for (int i = 0; i < 512; i++) {
        if (i != USER_SLOT) {
            pml4[i] = boot[i];
        }
    }
    /* The programs' code, read-only and shared by every process. */
    for (u64 a = (u64)user_section_start; a < (u64)user_section_end; a += PAGE_SIZE) {
        *pte_lookup_flags((u64)pml4, user_va((const void *)a), 1, USER_TABLE) = a | PTE_P | PTE_U;
    }
    return (u64)pml4;
}

/* Calls leaf(va, &pte) for every present page of the user slot, and
 * table(frame) for each table under it after its entries. */
static void space_walk(u64 pml4, void (*leaf)(u64, u64 *, void *), void (*table)(u64), void *ctx)
{
    u64 *l4 = (u64 *)pml4;
    if (!(l4[USER_SLOT] & PTE_P)) {
        return;
    }
    u64 *l3 = (u64 *)(l4[USER_SLOT] & PTE_ADDR);
    for (int i = 0; i < 512; i++) {
        if (!(l3[i] & PTE_P)) {
            continue;
        }
        u64 *l2 = (u64 *)(l3[i] & PTE_ADDR);
        for (int j = 0; j < 512; j++) {
            if (!(l2[j] & PTE_P)) {
                continue;
            }
            u64 *l1 = (u64 *)(l2[j] & PTE_ADDR);
            for (int k = 0; k < 512; k++) {
                if (l1[k] & PTE_P) {
                    u64 va = USER_BASE | (u64)i << 30 | (u64)j << 21 | (u64)k << 12;
                    if (leaf) {
                        leaf(va, &l1[k], ctx);
                    }
                }
            }
            if (table) {
                table((u64)l1);
            }
        }
        if (table) {
            table((u64)l2);
        }
    }
    if (table) {
        table((u64)l3);
    }
}

static void drop_leaf(u64 va, u64 *pte, void *ctx)
{
    (void)va;
    (void)ctx;
    page_free(*pte & PTE_ADDR);
    *pte = 0;
}

static void space_free(u64 pml4)
{
    space_walk(pml4, drop_leaf, page_free, NULL);
    page_free(pml4);
}

/* Shares every page with the child: writable ones become copy-on-write
 * in both. */
static void share_leaf(u64 va, u64 *pte, void *child)
{
    if (*pte & (PTE_W | PTE_COW)) {
        *pte = (*pte & ~PTE_W) | PTE_COW;
    }
    page_ref(*pte & PTE_ADDR);
    u64 *dst = pte_lookup_flags((u64)child, va, 1, USER_TABLE);
    if (*dst & PTE_P) { /* the shared code, mapped by space_new */
        return;
    }
    *dst = *pte;
}

/* ---- scheduling ---- */

static void switch_process(struct proc *prev, struct proc *next)
{
    current = next;
    if (next->cr3 != prev->cr3) {
        write_cr3(next->cr3);
    }
    tss_set_rsp0(kstack_top(next));
    syscall_kstack = kstack_top(next);
    if (next->fs_base != prev->fs_base) {
        wrmsr(MSR_FS_BASE, next->fs_base);
    }
    switch_to(&prev->ksp, next->ksp);
}

/* Round robin over the processes that can run, after the current one;
 * process 0 when none can. */
static void schedule(void)
{
    struct proc *prev = current, *next = &procs[0];
    int at = (int)(prev - procs);
    for (int i = 1; i <= NPROC; i++) {
        struct proc *p = &procs[(at + i) % NPROC];
        if (p != &procs[0] && p->state == RUNNABLE) {
            next = p;
            break;
        }
    }
    if (next != prev) {
        switch_process(prev, next);
    }
}

static struct proc *proc_alloc(struct proc *parent)
{
    for (int i = 1; i < NPROC; i++) {
        if (procs[i].state == FREE) {
            struct proc *p = &procs[i];
            *p = (struct proc){ .state = WAITING, .pid = ++next_pid, .parent = parent };
            return p;
        }
    }
    return NULL;
}

/* The new process's kernel stack: its trap frame at the top, and below it
 * what switch_to pops, returning into trap_return. */
static void frame_setup(struct proc *p, const struct trap_frame *tf)
{
    struct trap_frame *f = (struct trap_frame *)(kstack_top(p) - sizeof(*f));
    *f = *tf;
    u64 *sp = (u64 *)f;
    *--sp = (u64)trap_return;
    for (int i = 0; i < 6; i++) {
        *--sp = 0;
    }
    p->ksp = (u64)sp;
}

int proc_spawn(void (*program)(ulong), ulong arg)
{
    struct proc *p = proc_alloc(current);
    if (!p) {
        return -1;
    }
    p->cr3 = space_new();
    p->brk = USER_HEAP;
    struct trap_frame tf = {
        .rip = user_va(u_start),
        .cs = SEL_USER_CODE | 3,
        .rflags = RFLAGS_USER,
        .rsp = USER_STACK_TOP,
        .ss = SEL_USER_DATA | 3,
        .rdi = arg,
        .rsi = user_va(program),
    };
    frame_setup(p, &tf);
    p->state = RUNNABLE;
    return p->pid;
}

static struct proc *zombie_child(struct proc *parent, int *any)
{
    *any = 0;
    for (int i = 1; i < NPROC; i++) {
        if (procs[i].state != FREE && procs[i].parent == parent) {
            *any = 1;
            if (procs[i].state == ZOMBIE) {
                return &procs[i];
            }
        }
    }
    return NULL;
}

static int reap(struct proc *z, u64 *status, struct proc_fault *fault)
{
    int pid = z->pid;
    *status = z->status;
    if (fault) {
        *fault = z->fault;
    }
    z->state = FREE;
    return pid;
}

int proc_wait(ulong *status, struct proc_fault *fault)
{
    for (;;) {
        int any;
        struct proc *z = zombie_child(current, &any);
        if (z) {
            return reap(z, status, fault);
        }
        if (!any) {
            return -1;
        }
        /* Process 0 comes back here only when no process can run. */
        schedule();
        if (!zombie_child(current, &any) && any) {
            kprintf("user: every process waits and none will exit\n");
            return -1;
        }
    }
}

static void __attribute__((noreturn)) proc_exit(u64 status)
{
    struct proc *p = current;
    write_cr3(boot_cr3);
    space_free(p->cr3);
    p->cr3 = boot_cr3;
    p->status = status;
    for (int i = 1; i < NPROC; i++) {
        if (procs[i].state != FREE && procs[i].parent == p) {
            procs[i].parent = &procs[0];
        }
    }
    p->state = ZOMBIE;
    if (p->parent->state == WAITING) {
        p->parent->state = RUNNABLE;
    }
    schedule();
    kprintf("guest: a dead process was scheduled\n");
    guest_exit(0);
}

static void __attribute__((noreturn)) kill(struct trap_frame *f, u64 cr2)
{
    current->fault = (struct proc_fault){ f->vector, f->error, f->rip, cr2 };
    proc_exit(STATUS_KILLED | f->vector);
}

/* ---- system calls ---- */

static void sys_fork(struct trap_frame *f)
{
    struct proc *c = proc_alloc(current);
    if (!c) {
        f->rax = (u64)-11; /* EAGAIN */
        return;
    }
    c->cr3 = space_new();
    space_walk(current->cr3, share_leaf, NULL, (void *)c->cr3);
    write_cr3(current->cr3); /* the parent's pages just lost their write right */
    c->brk = current->brk;
    c->fs_base = current->fs_base;
    struct trap_frame tf = *f;
    tf.rax = 0;
    frame_setup(c, &tf);
    c->state = RUNNABLE;
    f->rax = (u64)c->pid;
}

static void sys_wait(struct trap_frame *f)
{
    for (;;) {
        int any;
        struct proc *z = zombie_child(current, &any);
        if (z) {
            f->rax = (u64)reap(z, &f->rdx, NULL);
            return;
        }
        if (!any) {
            f->rax = (u64)-ECHILD;
            return;
        }
        current->state = WAITING;
        schedule();
    }
}

static void unmap_from(u64 va, u64 *pte, void *end)
{
    if (va >= (u64)end && va < USER_HEAP + USER_HEAP_MAX && va >= USER_HEAP) {
        page_free(*pte & PTE_ADDR);
        *pte = 0;
        invlpg(va);
    }
}

static void sys_brk(struct trap_frame *f)
{
    u64 end = f->rdi;
    if (end >= USER_HEAP && end <= USER_HEAP + USER_HEAP_MAX) {
        if (end < current->brk) {
            u64 keep = (end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
            space_walk(current->cr3, unmap_from, NULL, (void *)keep);
        }
        current->brk = end;
    }
    f->rax = current->brk;
}

static void syscall(struct trap_frame *f)
{
    u64 a = f->rdi;
    switch (f->rax) {
    case SYS_GETPID:
        f->rax = (u64)current->pid;
        break;
    case SYS_GETPPID:
        f->rax = (u64)(current->parent == &procs[0] ? 0 : current->parent->pid);
        break;
    case SYS_YIELD:
        f->rax = 0;
        schedule();
        break;
    case SYS_EXIT:
        proc_exit(a);
    case SYS_FORK:
        sys_fork(f);
        break;
    case SYS_WAIT:
        sys_wait(f);
        break;
    case SYS_BRK:
        sys_brk(f);
        break;
    case SYS_SET_FS:
        if (a >= 0x800000000000ul) {
            f->rax = (u64)-EINVAL;
            break;
        }
        current->fs_base = a;
        wrmsr(MSR_FS_BASE, a);
        f->rax = 0;
        break;
    case SYS_REPORT:
        if (a < REPORT_SLOTS) {
            user_reports[a] = f->rsi;
        }
        f->rax = 0;
        break;
    case SYS_SUM4:
        f->rax = a + 2 * f->rsi + 3 * f->rdx + 4 * f->r10;
        break;
    case SYS_GSCHECK:
        f->rax = rdmsr(MSR_GS_BASE) == KERNEL_GS_VALUE && rdmsr(MSR_KERNEL_GS_BASE) == USER_GS_VALUE;
        break;
    default:
        f->rax = (u64)-ENOSYS;
        break;
    }
}

/* ---- faults ---- */

static void page_fault(struct trap_frame *f)
{
    u64 cr2 = read_cr2();
    if (!is_user(cr2)) {
        kill(f, cr2);
    }
    u64 *pte = pte_lookup_flags(current->cr3, cr2, 0, USER_TABLE);
    if (!(f->error & PTE_P)) {
        int heap = cr2 >= USER_HEAP && cr2 < current->brk;
        int stack = cr2 < USER_STACK_TOP && cr2 >= USER_STACK_TOP - USER_STACK_SIZE;
        if (!heap && !stack) {
            kill(f, cr2);
        }
        pte = pte_lookup_flags(current->cr3, cr2, 1, USER_TABLE);
        *pte = page_alloc() | PTE_P | PTE_W | PTE_U;
        proc_zero_fills++;
        return;
    }
    if ((f->error & PTE_W) && pte && (*pte & PTE_COW)) {
        u64 frame = *pte & PTE_ADDR;
        if (page_refs(frame) == 1) {
            *pte = (*pte & ~PTE_COW) | PTE_W;
        } else {
            u64 copy = page_alloc();
            kmemcpy((void *)copy, (const void *)frame, PAGE_SIZE);
            page_free(frame);
            *pte = copy | PTE_P | PTE_W | PTE_U;
            proc_cow_copies++;
        }
        invlpg(cr2 & ~(PAGE_SIZE - 1));
        return;
    }
    kill(f, cr2);
}

static void user_trap(struct trap_frame *f)
{
    u64 v = f->vector;
    if (v == VECTOR_SYSCALL) {
        proc_syscalls++;
        syscall(f);
    } else if (v == 0x80) {
        proc_int80s++;
        syscall(f);
    } else if (v == 14) {
        page_fault(f);
    } else if (v >= IRQ_BASE && v < IRQ_BASE + 16) {
        trap_handler h = trap_get_handler((u8)v);
        if (h) {
            h(f);
        } else {
            pic_eoi((u8)(v - IRQ_BASE));
        }
        if (v == IRQ_BASE) {
            proc_preemptions++;
            schedule();
        }
    } else {
        kill(f, 0);
    }
}

/* ---- set-up ---- */

void proc_init(void)
{
    u16 tr = 0;
    __asm__ volatile("str %0" : "=r"(tr));
    if (tr != SEL_TSS) {
        __asm__ volatile("ltr %0" : : "r"((u16)SEL_TSS));
    }
    kmemset(procs, 0, sizeof(procs));
    kmemset(user_reports, 0, sizeof(user_reports));
    current = &procs[0];
    procs[0] = (struct proc){ .state = RUNNABLE, .pid = 0, .cr3 = read_cr3(), .fs_base = rdmsr(MSR_FS_BASE) };
    next_pid = 0;
    proc_preemptions = proc_cow_copies = proc_zero_fills = proc_syscalls = proc_int80s = 0;
    tss_set_rsp0(kstack_top(&procs[0]));
    wrmsr(MSR_STAR, (u64)SEL_USER_BASE << 48 | (u64)SEL_CODE << 32);
    wrmsr(MSR_LSTAR, (u64)syscall_entry);
    wrmsr(MSR_SFMASK, SFMASK_BITS);
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
    wrmsr(MSR_GS_BASE, KERNEL_GS_VALUE);
    wrmsr(MSR_KERNEL_GS_BASE, USER_GS_VALUE);
    user_trap_hook = user_trap;
}

void proc_fini(void)
{
    user_trap_hook = NULL;
    wrmsr(MSR_FS_BASE, procs[0].fs_base);
}
