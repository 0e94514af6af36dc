/* The hostile test guest: attacks on the VMM from inside a guest, each
 * reporting what it saw. It shares images/guest's boot code, console, traps
 * and page-table helpers (guest.h). */
#ifndef HOSTILE_H
#define HOSTILE_H

#include "guest.h"

/* previrt_protocol::WEDGE_BASE: PML4 entry 257, the wedge's region. */
#define WEDGE_BASE 0xffff808000000000ul
/* vmm-server's guest::WEDGE_AREA: the wedge's memory, right above the RAM
 * the memory map gives the guest; the VMM's boot tables follow. */
#define WEDGE_AREA 0x100000ul
#define VMM_TABLES 0x4000ul
/* The wedge's boot block (last page of its area) and, in it, the entry the
 * VMM sends the guest thread to for a reflected exception. */
#define WEDGE_BOOT_BLOCK (WEDGE_BASE + WEDGE_AREA - PAGE_SIZE)
#define WEDGE_BOOT_REFLECT_ENTRY 64

/* ---- raw seL4 system calls (seL4 5.0.0, x86_64), bypassing the wedge ---- */
#define SYS_CALL (-1l)
#define SYS_REPLY_RECV (-2l)
#define SYS_SEND (-3l)
#define SYS_NBSEND (-4l)
#define SYS_RECV (-5l)
#define SYS_REPLY (-6l)
#define SYS_YIELD (-7l)
#define SYS_NBRECV (-8l)
/* Debug builds only (CONFIG_DEBUG_BUILD); a release kernel does not know
 * them. */
#define SYS_DEBUG_PUT_CHAR (-9l)
#define SYS_DEBUG_HALT (-10l)
#define SYS_DEBUG_CAP_IDENTIFY (-11l)
#define SYS_DEBUG_SNAPSHOT (-12l)
#define SYS_DEBUG_NAME_THREAD (-13l)
/* The guest CSpace's only capability: the VMM's endpoint, badged. */
#define SLOT_VMM 1ul

struct sel4_msg {
    u64 label, length;
    u64 mr[4];
};
/* One system call: `number` on `cap` with m's label, length and registers;
 * returns the reply (label, length, registers) in m, and rdi. */
u64 sel4_syscall(i64 number, u64 cap, struct sel4_msg *m);
/* previrt-protocol's request labels and reply statuses. */
#define LABEL_PORT_IN 0x100ul
#define LABEL_PORT_OUT 0x101ul
#define LABEL_PORT_OUT_STRING 0x102ul
#define LABEL_LOAD_CR3 0x103ul
#define LABEL_INVLPG 0x104ul
#define LABEL_SET_FS_BASE 0x108ul
#define STATUS_OK 0
#define STATUS_INVALID 3

/* ---- calls that may trap (hostile.S) ---- */
/* Calls target(arg). Returns 0 if it returned; 1 if it trapped with an
 * exception (vectors 0-31), whose details are in `caught`. */
struct caught {
    u64 vector, error, rip, cr2;
};
int attempt_call(u64 target, u64 arg, struct caught *c);
/* A syscall instruction with a number seL4 does not know (hostile.S). */
void unknown_syscall(void);
/* A pre-virtualized `cli`: a site the wedge rewrites (hostile.S). */
extern const u8 marked_site[];
/* 256 stubs of 4 bytes: stub n is `int $n; ret` (hostile.S). */
extern const u8 int_table[];
/* `sysenter; ret` (hostile.S). */
void sysenter_call(void);

/* ---- attacks ---- */
struct report {
    const char *attack;
    u32 expected, unexpected;
};
void expect(struct report *r, int ok, const char *what);
u64 ram_end(void); /* the end of the usable RAM in the memory map */

void attack_ipc(struct report *r);
void attack_jumps(struct report *r);
void attack_ptloop(struct report *r);
void attack_caps(struct report *r);
void attack_recv(struct report *r);
void attack_wedge_code(struct report *r);
void attack_wedge_alias(struct report *r);
void attack_wedge_state(struct report *r);
void attack_wedge_middle(struct report *r);
void attack_syscall(struct report *r);
void attack_cr3(struct report *r);
void attack_halt(struct report *r);
void attack_sleep(struct report *r);
void attack_spin(struct report *r);
void attack_syscalls(struct report *r);
void attack_ints(struct report *r);
/* `sys:NUMBER[@SLOT]`: one system call (main.c parses the argument). */
void attack_sys(struct report *r, i64 number, u64 slot);

#endif
