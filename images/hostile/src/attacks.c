/* The attacks. Each prints what it did and what it saw, as
 * `hostile: ATTACK: ...` lines, and counts the answers it expected. */
#include "hostile.h"

#define SEL4_INVALID_CAPABILITY 2 /* seL4_Error: the kernel's reply label */
#define NON_CANONICAL 0x800000000000ul

/* ---- calls that may trap ---- */

extern int attempt(u64 target, u64 arg);
extern const u8 attempt_resume[];
extern u64 attempt_rsp;
static struct caught *catching;

/* Records the trap and resumes `attempt` as if the call had returned. */
static void catch_trap(struct trap_frame *f)
{
    catching->vector = f->vector;
    catching->error = f->error;
    catching->rip = f->rip;
    catching->cr2 = f->vector == 14 ? read_cr2() : 0;
    f->rip = (u64)attempt_resume;
    f->rsp = attempt_rsp;
}

int attempt_call(u64 target, u64 arg, struct caught *c)
{
    *c = (struct caught){ 0, 0, 0, 0 };
    catching = c;
    /* Every exception vector: whatever the VMM reflects is caught. */
    for (u8 v = 0; v < 32; v++) {
        trap_set_handler(v, catch_trap);
    }
    int trapped = attempt(target, arg);
    /* trap.c's own #PF handling (the probes) again. */
    for (u8 v = 0; v < 32; v++) {
        trap_set_handler(v, NULL);
    }
    return trapped;
}

/* ---- ipc: raw system calls on the VMM's endpoint, bypassing the wedge ---- */

struct garbage {
    const char *what;
    struct sel4_msg m;
};

void attack_ipc(struct report *r)
{
    /* All of guest RAM: the usable part, the wedge's memory, the VMM's
     * boot tables. */
    u64 ram_size = ram_end() + WEDGE_AREA + VMM_TABLES;
    const struct garbage garbage[] = {
        { "unknown label 0x1ff", { 0x1ff, 0, { 0 } } },
        { "label 0x42 (neither a request nor a fault)", { 0x42, 2, { 1, 2 } } },
        { "label 0 with no registers", { 0, 0, { 0 } } },
        { "label 0xfffff (the largest of 20 bits)", { 0xfffff, 1, { 0 } } },
        { "port-in with 3 registers", { LABEL_PORT_IN, 3, { 0x3f8, 1, 0 } } },
        { "port-in of size 3", { LABEL_PORT_IN, 2, { 0x3f8, 3 } } },
        { "port-in of port 0x10000", { LABEL_PORT_IN, 2, { 0x10000, 1 } } },
        { "port-out of a 33-bit value", { LABEL_PORT_OUT, 3, { 0x3f8, 1, 1ul << 32 } } },
        { "port-out-string of 25 bytes", { LABEL_PORT_OUT_STRING, 4, { 0x3f8 | 1 << 16 | 25ul << 24 } } },
        { "port-out-string of 3 bytes in words", { LABEL_PORT_OUT_STRING, 4, { 0x3f8 | 2 << 16 | 3ul << 24 } } },
        { "cr3 at 1 TiB", { LABEL_LOAD_CR3, 1, { 1ul << 40 } } },
        { "cr3 at the first page past guest RAM", { LABEL_LOAD_CR3, 1, { ram_size } } },
        { "invlpg of a non-canonical address", { LABEL_INVLPG, 1, { NON_CANONICAL } } },
        { "fs base non-canonical", { LABEL_SET_FS_BASE, 1, { 0x8000000000000000ul } } },
        { "a VM fault message of 3 registers", { 5, 3, { 0x1000, 0x1000, 0 } } },
        { "a user exception message of 4 registers", { 3, 4, { 0x1000, 0, 0, 6 } } },
        { "an unknown-syscall message of 4 registers", { 2, 4, { 0 } } },
        { "a capability fault message of 3 registers", { 1, 3, { 0x1000, 5, 0 } } },
    };
    u32 refused = 0;
    for (u64 i = 0; i < ARRAY_SIZE(garbage); i++) {
        struct sel4_msg m = garbage[i].m;
        sel4_syscall(SYS_CALL, SLOT_VMM, &m);
        kprintf("hostile: ipc: %s: reply label %lu\n", garbage[i].what, m.label);
        expect(r, m.label == STATUS_INVALID, garbage[i].what);
        refused += m.label == STATUS_INVALID;
    }
    /* A well-formed request works from anywhere: the VMM serves messages,
     * not the wedge. The 16550's line status says the transmitter is empty. */
    struct sel4_msg lsr = { LABEL_PORT_IN, 2, { 0x3fd, 1 } };
    sel4_syscall(SYS_CALL, SLOT_VMM, &lsr);
    kprintf("hostile: ipc: a well-formed port-in: reply label %lu, value 0x%lx\n", lsr.label, lsr.mr[0]);
    expect(r, lsr.label == STATUS_OK && (lsr.mr[0] & 0x20), "a well-formed port-in is served");
    /* A send has no reply to wait for: the VMM refuses it to no one. */
    struct sel4_msg sent = { 0x1ff, 1, { 7 } };
    sel4_syscall(SYS_SEND, SLOT_VMM, &sent);
    kprintf("hostile: ipc: a send of unknown label 0x1ff returned\n");
    kprintf("hostile: ipc: %u garbage messages refused as invalid, 1 sent without a reply\n", refused);
}

/* ---- jumps: to addresses nothing maps, or the guest must not run ---- */

void attack_jumps(struct report *r)
{
    const struct {
        const char *what;
        u64 target;
        u64 vector;
    } jumps[] = {
        { "an address its page tables do not map", 0x4000000000ul, 14 },
        { "a non-canonical address", NON_CANONICAL, 13 },
        { "seL4's physical-memory window", 0xffff800000000000ul, 14 },
        { "seL4's own code", 0xffff807f80100000ul, 14 },
        { "the wedge's PML4 entry past its memory", WEDGE_BASE + (2ul << 20), 14 },
    };
    for (u64 i = 0; i < ARRAY_SIZE(jumps); i++) {
        struct caught c;
        int trapped = attempt_call(jumps[i].target, 0, &c);
        kprintf("hostile: jumps: to %s (0x%lx): %s vector %lu, cr2 0x%lx\n", jumps[i].what, jumps[i].target,
                trapped ? "trapped with" : "returned,", c.vector, c.cr2);
        expect(r,
               trapped && c.vector == jumps[i].vector &&
                   (c.vector != 14 || c.cr2 == jumps[i].target),
               jumps[i].what);
    }
}

/* ---- ptloop: page tables that point at themselves, and outside RAM ---- */

/* The address whose four table indices are a, b, c, d. */
static u64 va(u64 a, u64 b, u64 c, u64 d)
{
    return a << 39 | b << 30 | c << 21 | d << 12;
}

void attack_ptloop(struct report *r)
{
    u64 pml4 = address_space_new();
    u64 *t = (u64 *)pml4;
    u64 pdpt = t[0] & PTE_ADDR;
    /* Slot 1 points at the PML4 itself: walking 1,1,1,k reads the PML4 as
     * every level, and ends at the page PML4[k] names. */
    t[1] = pml4 | PTE_P | PTE_W;
    /* Slots 2 and 3: two tables naming each other, round and round. */
    u64 a = page_alloc(), b = page_alloc();
    t[2] = a | PTE_P | PTE_W;
    ((u64 *)a)[0] = b | PTE_P | PTE_W;
    ((u64 *)b)[0] = a | PTE_P | PTE_W;
    /* Slot 4: a table outside guest RAM. */
    t[4] = (1ul << 40) | PTE_P | PTE_W;
    write_cr3(pml4);

    u64 v = 0;
    int faulted = probe_read(va(1, 1, 1, 1), &v);
    kprintf("hostile: ptloop: PML4[1] = itself; reading through 1,1,1,1: %s 0x%lx\n",
            faulted ? "#PF," : "read", v);
    expect(r, !faulted && v == t[0], "1,1,1,1 is the PML4 page");
    faulted = probe_read(va(1, 1, 1, 0), &v);
    kprintf("hostile: ptloop: reading through 1,1,1,0: %s 0x%lx\n", faulted ? "#PF," : "read", v);
    expect(r, !faulted && v == ((u64 *)pdpt)[0], "1,1,1,0 is the PDPT page");
    faulted = probe_write(va(1, 1, 1, 1) + 8 * 5, 0x5a5a000);
    kprintf("hostile: ptloop: writing PML4[5] through the loop: %s, PML4[5] = 0x%lx\n",
            faulted ? "#PF" : "done", t[5]);
    expect(r, !faulted && t[5] == 0x5a5a000, "a write through the loop lands in the PML4");
    t[5] = 0;
    invlpg(va(1, 1, 1, 1));

    faulted = probe_read(va(2, 0, 0, 0), &v);
    kprintf("hostile: ptloop: two tables naming each other; reading through 2,0,0,0: %s 0x%lx\n",
            faulted ? "#PF," : "read", v);
    /* b[0], read as the page: the walk used it as a directory entry, so
     * the CPU (and the VMM's vTLB, as the CPU) set its accessed bit. */
    expect(r, !faulted && (v & ~PTE_A) == (a | PTE_P | PTE_W) && (v & PTE_A),
           "2,0,0,0 is the second table's page");

    faulted = probe_read(va(4, 0, 0, 0), &v);
    kprintf("hostile: ptloop: a table outside RAM; reading through it: %s cr2 0x%lx, error 0x%lx\n",
            faulted ? "#PF," : "read,", probe_cr2, probe_error);
    expect(r, faulted && probe_cr2 == va(4, 0, 0, 0) && !(probe_error & PTE_P),
           "a table outside RAM is a not-present #PF");
    write_cr3(boot_cr3);
}

/* ---- caps: capability slots the guest's CSpace does not hold ---- */

void attack_caps(struct report *r)
{
    struct sel4_msg m = { 0, 0, { 0 } };
    sel4_syscall(SYS_CALL, 0, &m);
    kprintf("hostile: caps: call on slot 0 (empty): kernel error %lu\n", m.label);
    expect(r, m.label == SEL4_INVALID_CAPABILITY, "an empty slot is seL4_InvalidCapability");
    /* A non-blocking send to nothing is dropped: no fault, no reply. */
    m = (struct sel4_msg){ 0x100, 2, { 0x3f8, 1 } };
    sel4_syscall(SYS_NBSEND, 2, &m);
    sel4_syscall(SYS_NBSEND, 12345, &m);
    kprintf("hostile: caps: non-blocking sends to slots 2 and 12345 returned\n");
    kprintf("hostile: caps: calling slot 12345 (beyond its CSpace); the VMM should end this guest\n");
    m = (struct sel4_msg){ 0x100, 2, { 0x3f8, 1 } };
    sel4_syscall(SYS_CALL, 12345, &m);
    kprintf("hostile: caps: the call on slot 12345 returned, label %lu\n", m.label);
    expect(r, 0, "a call on slot 12345 ends the guest");
}

void attack_recv(struct report *r)
{
    /* Its endpoint capability has no receive right: were it to receive, it
     * would take messages meant for the VMM. */
    kprintf("hostile: recv: receiving on its endpoint (slot 1); the VMM should end this guest\n");
    struct sel4_msg m = { 0, 0, { 0 } };
    sel4_syscall(SYS_RECV, SLOT_VMM, &m);
    kprintf("hostile: recv: received label %lu\n", m.label);
    expect(r, 0, "receiving on its endpoint ends the guest");
}

/* ---- the wedge: its code, its memory through the guest's own tables, its
 * state, the middle of its code ---- */

void attack_wedge_code(struct report *r)
{
    u64 v = 0;
    int faulted = probe_read(WEDGE_BASE, &v);
    kprintf("hostile: wedge-code: reading the wedge's first code bytes at 0x%lx: %s 0x%lx\n", WEDGE_BASE,
            faulted ? "#PF," : "read", v);
    expect(r, !faulted, "the wedge's code is readable");
    kprintf("hostile: wedge-code: overwriting them; the VMM should end this guest\n");
    faulted = probe_write(WEDGE_BASE, 0xcccccccccccccccc);
    kprintf("hostile: wedge-code: the write %s\n", faulted ? "faulted into the guest" : "went through");
    expect(r, 0, "a write to the wedge's code ends the guest");
}

void attack_wedge_alias(struct report *r)
{
    /* The wedge's memory is guest RAM right above what the memory map
     * gives the guest, and the VMM's identity map covers it. */
    u64 alias = ram_end();
    int same = 1;
    for (u64 i = 0; i < 4; i++) {
        u64 x = 0, y = 0;
        int faulted = probe_read(alias + 8 * i, &x) | probe_read(WEDGE_BASE + 8 * i, &y);
        same &= !faulted && x == y;
    }
    kprintf("hostile: wedge-alias: guest-physical 0x%lx %s the wedge's first bytes\n", alias,
            same ? "reads as" : "does not read as");
    expect(r, same, "the identity map reaches the wedge's memory");
    kprintf("hostile: wedge-alias: writing there; the VMM should end this guest\n");
    int faulted = probe_write(alias, 0xcccccccccccccccc);
    kprintf("hostile: wedge-alias: the write %s\n", faulted ? "faulted into the guest" : "went through");
    expect(r, 0, "a write to the wedge's memory ends the guest");
}

void attack_wedge_state(struct report *r)
{
    u64 at = WEDGE_BOOT_BLOCK + WEDGE_BOOT_REFLECT_ENTRY, entry = 0;
    int faulted = probe_read(at, &entry) || probe_write(at, 0x1000);
    kprintf("hostile: wedge-state: the wedge's reflect entry 0x%lx overwritten with 0x1000: %s\n", entry,
            faulted ? "#PF" : "done");
    expect(r, !faulted, "the wedge's boot block is writable");
    kprintf("hostile: wedge-state: raising #UD; the VMM should end this guest\n");
    __asm__ volatile("ud2");
    kprintf("hostile: wedge-state: #UD was delivered\n");
    expect(r, 0, "a reflection into an overwritten entry ends the guest");
}

/* Where the rewritten sites call: read from the slot of the marked `cli`
 * site, which the wedge turned into `call *slot(%rip)` (ff 15 disp32). */
static u64 site_entry(struct report *r)
{
    const u8 *site = marked_site;
    int rewritten = site[0] == 0xff && site[1] == 0x15;
    expect(r, rewritten, "the marked site is rewritten into a call");
    if (!rewritten) {
        return 0;
    }
    i64 disp = (int)(site[2] | site[3] << 8 | site[4] << 16 | (u32)site[5] << 24);
    return *(const u64 *)(site + 6 + disp);
}

void attack_wedge_middle(struct report *r)
{
    /* One byte into the site entry: the middle of its first instruction.
     * What runs depends on the wedge's bytes there; the VMM must end the
     * guest whatever the wedge then does. */
    u64 entry = site_entry(r);
    if (!entry) {
        return;
    }
    kprintf("hostile: wedge-middle: jumping to 0x%lx, inside the wedge's first instruction there; "
            "the VMM should end this guest\n",
            entry + 1);
    struct caught c;
    int trapped = attempt_call(entry + 1, 0, &c);
    kprintf("hostile: wedge-middle: %s (vector %lu)\n", trapped ? "trapped" : "returned", c.vector);
    expect(r, 0, "a jump into the middle of the wedge ends the guest");
}

void attack_syscall(struct report *r)
{
    kprintf("hostile: syscall: system call number 42, which seL4 does not know; the VMM should end this guest\n");
    struct caught c;
    int trapped = attempt_call((u64)unknown_syscall, 0, &c);
    kprintf("hostile: syscall: %s (vector %lu)\n", trapped ? "trapped" : "returned", c.vector);
    expect(r, 0, "an unknown system call ends the guest");
}

void attack_cr3(struct report *r)
{
    kprintf("hostile: cr3: loading cr3 = 1 TiB through the wedge; the VMM should end this guest\n");
    write_cr3(1ul << 40);
    kprintf("hostile: cr3: the load went through\n");
    expect(r, 0, "a cr3 outside RAM ends the guest");
}

void attack_halt(struct report *r)
{
    kprintf("hostile: halt: hlt with interrupts disabled, which nothing can end; the VMM should end this guest\n");
    cli();
    __asm__ volatile("hlt" ::: "memory");
    kprintf("hostile: halt: hlt returned\n");
    expect(r, 0, "hlt with interrupts off ends the guest");
}

/* spin: 2^28 turns of a two-instruction loop with interrupts disabled,
 * never faulting or calling: nothing reaches the VMM, and only seL4's round
 * robin among the guests (each of its own VMM) lets the others run
 * meanwhile. Under -icount shift=3 it lasts 4.3 s of guest time. */
#define SPIN_TURNS (1ul << 28)

void attack_spin(struct report *r)
{
    kprintf("hostile: spin: 2^28 turns with interrupts disabled, no fault, no call\n");
    cli();
    u64 left = SPIN_TURNS;
    __asm__ volatile("1: dec %0\n\tjnz 1b" : "+r"(left) : : "cc");
    sti();
    kprintf("hostile: spin: done\n");
    expect(r, left == 0, "the spin ran to its end");
}

void attack_sleep(struct report *r)
{
    kprintf("hostile: sleep: sti; hlt with no timer running; the VMM should end this guest\n");
    sti_hlt();
    cli();
    kprintf("hostile: sleep: hlt returned\n");
    expect(r, 0, "hlt with no interrupt source ends the guest");
}

/* ---- syscalls: every seL4 system call the guest survives, bypassing the
 * wedge, with nothing to receive or reply to and empty or absent slots.
 * The same on a debug and a release kernel. ---- */

void attack_syscalls(struct report *r)
{
    struct sel4_msg m = { 0, 0, { 0 } };
    sel4_syscall(SYS_YIELD, 0, &m);
    kprintf("hostile: syscalls: Yield (-7): returned\n");
    expect(r, 1, "Yield returns");
    m = (struct sel4_msg){ 0, 1, { 5 } };
    sel4_syscall(SYS_REPLY, 0, &m);
    kprintf("hostile: syscalls: Reply (-6) with no reply capability: returned\n");
    expect(r, 1, "Reply returns");
    /* Slot 0 is its CSpace's empty slot (slot 2 on is beyond it: a
     * blocking invocation there is a capability fault). */
    m = (struct sel4_msg){ 0x100, 2, { 0x3f8, 1 } };
    sel4_syscall(SYS_CALL, 0, &m);
    kprintf("hostile: syscalls: Call (-1) on slot 0 (empty): kernel error %lu\n", m.label);
    expect(r, m.label == SEL4_INVALID_CAPABILITY, "Call on an empty slot is seL4_InvalidCapability");
    m = (struct sel4_msg){ 0x100, 2, { 0x3f8, 1 } };
    sel4_syscall(SYS_SEND, 0, &m);
    kprintf("hostile: syscalls: Send (-3) on slot 0 (empty): returned\n");
    const u64 nowhere[] = { 0, 2, 12345, ~0ul };
    for (u64 i = 0; i < ARRAY_SIZE(nowhere); i++) {
        m = (struct sel4_msg){ 0x100, 2, { 0x3f8, 1 } };
        sel4_syscall(SYS_NBSEND, nowhere[i], &m);
    }
    kprintf("hostile: syscalls: NBSend (-4) on slots 0, 2, 12345, 0x%lx: returned\n", ~0ul);
}

/* ---- ints: `int $n` for every n, and `sysenter`, bypassing the wedge ---- */

/* What an `int $n` came back with, at the instruction unless said: #GP
 * with the error code of an IDT gate it may not use (IDT bit and the
 * gate's index: 8n+2 in the SDM, 16n+2 from QEMU's TCG in long mode, the
 * gate's byte offset), #BP after it, nothing, or anything else. */
enum int_answer { INT_GP, INT_GP16, INT_BP, INT_RETURNED, INT_OTHER };
static const char *const int_answer_names[] = { "#GP(8n+2)", "#GP(16n+2)", "#BP", "returned", "other" };

static void print_run(u64 first, u64 last, enum int_answer a, int comma)
{
    if (first == last) {
        kprintf("%s%lu %s", comma ? ", " : "", first, int_answer_names[a]);
    } else {
        kprintf("%s%lu-%lu %s", comma ? ", " : "", first, last, int_answer_names[a]);
    }
}

void attack_ints(struct report *r)
{
    static u8 answers[256];
    u64 counts[5] = { 0, 0, 0, 0, 0 };
    for (u64 n = 0; n < 256; n++) {
        u64 stub = (u64)int_table + 4 * n;
        struct caught c;
        int trapped = attempt_call(stub, 0, &c);
        enum int_answer a = INT_OTHER;
        if (!trapped) {
            a = INT_RETURNED;
        } else if (c.vector == 13 && c.error == 8 * n + 2 && c.rip == stub) {
            a = INT_GP;
        } else if (c.vector == 13 && c.error == 16 * n + 2 && c.rip == stub) {
            a = INT_GP16;
        } else if (c.vector == 3 && c.rip == stub + 2) {
            a = INT_BP;
        } else {
            kprintf("hostile: ints: int $%lu: vector %lu, error 0x%lx, at the int + %ld\n", n, c.vector,
                    c.error, (i64)(c.rip - stub));
        }
        answers[n] = (u8)a;
        counts[a]++;
    }
    /* One line, by runs of the same answer. */
    kprintf("hostile: ints: by vector: ");
    u64 first = 0;
    for (u64 n = 1; n <= 256; n++) {
        if (n == 256 || answers[n] != answers[first]) {
            print_run(first, n - 1, (enum int_answer)answers[first], first != 0);
            first = n;
        }
    }
    kprintf("\n");
    kprintf("hostile: ints: 256 int instructions: %lu #GP(8n+2), %lu #GP(16n+2), %lu #BP, %lu returned, %lu other\n",
            counts[INT_GP], counts[INT_GP16], counts[INT_BP], counts[INT_RETURNED], counts[INT_OTHER]);
    expect(r, counts[INT_OTHER] == 0, "every int is a #GP, a #BP or nothing");
    struct caught c;
    int trapped = attempt_call((u64)sysenter_call, 0, &c);
    kprintf("hostile: ints: sysenter: %s vector %lu, error 0x%lx, at the sysenter + %ld\n",
            trapped ? "trapped with" : "returned,", c.vector, c.error, (i64)(c.rip - (u64)sysenter_call));
    expect(r, trapped, "sysenter traps");
}

/* ---- sys:NUMBER[@SLOT]: one system call number, which may end the guest
 * (one boot each) ---- */

static const char *sys_name(i64 number)
{
    static const char *const names[] = {
        "Call", "ReplyRecv", "Send", "NBSend", "Recv", "Reply", "Yield", "NBRecv",
        "DebugPutChar, debug kernels only", "DebugHalt, debug kernels only",
        "DebugCapIdentify, debug kernels only", "DebugSnapshot, debug kernels only",
        "DebugNameThread, debug kernels only", "DebugRun, not configured",
    };
    if (number <= -1 && number >= -14) {
        return names[-number - 1];
    }
    if (number <= -15 && number >= -21) {
        return "Benchmark*, not configured";
    }
    if (number == -22) {
        return "VMEnter, not configured";
    }
    return "not a seL4 system call";
}

/* The line DebugPutChar tries to forge on the kernel's console: it must
 * never appear where a release kernel runs. Kept out of every other
 * output (the guest's console names it only by its description). */
static const char forged[] = "vmm-server: guest0: forged by the guest through seL4_DebugPutChar\n";

void attack_sys(struct report *r, i64 number, u64 slot)
{
    (void)r;
    struct sel4_msg m = { 0, 0, { 0 } };
    if (number == SYS_DEBUG_PUT_CHAR) {
        kprintf("hostile: sys: %ld (%s): printing a forged VMM line on the kernel's console; "
                "unless the kernel serves it, the VMM should end this guest\n",
                number, sys_name(number));
        u64 n = 0;
        for (; forged[n]; n++) {
            sel4_syscall(number, (u64)(u8)forged[n], &m);
        }
        kprintf("hostile: sys: %ld: returned after %lu characters\n", number, n);
        return;
    }
    kprintf("hostile: sys: %ld (%s) on slot %lu; unless the kernel serves it, the VMM should end this guest\n",
            number, sys_name(number), slot);
    u64 rdi = sel4_syscall(number, slot, &m);
    kprintf("hostile: sys: %ld: returned: label %lu, length %lu, rdi 0x%lx\n", number, m.label, m.length, rdi);
}
