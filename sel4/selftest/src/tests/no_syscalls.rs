//! A thread with no system calls (kernel patch 0003, the user view of a
//! pre-virtualized guest): its fault-handler address has the top bit set and
//! its CSpace holds only its fault endpoint. Every `syscall` it makes —
//! each seL4 number in rdx, the debug ones, unknown ones, and Call with its
//! fault endpoint's own address in rdi — reaches us as an UnknownSyscall
//! fault carrying its real rsp; a reply that moves its rip past the
//! instruction resumes it with that rsp.

use core::arch::global_asm;

use previrt_sel4::sys::bitfield::seL4_Fault_UnknownSyscall;
use previrt_sel4::sys::constants::{
    seL4_CapTableObject, seL4_UnknownSyscall_FaultIP, seL4_UnknownSyscall_Length,
    seL4_UnknownSyscall_SP, seL4_UnknownSyscall_Syscall, seL4_X64_PML4Object,
};
use previrt_sel4::tcb::TcbConfig;
use previrt_sel4::{
    init, ipc, println, CNode, CapRights, Page, Priority, Slot, UserContext, VSpace, Word,
};

use super::{check, Context, Outcome};
use crate::objects::Objects;

const FAULT_BADGE: Word = 0x55;
/// The thread's fault-handler address: slot 1 of its 2-slot CNode (the top
/// bit selects the slot), and the mark that it has no system calls.
const FAULT_CPTR: Word = 1 << 63;
/// What rdx holds at each `syscall`: every seL4 number (release and debug),
/// numbers seL4 does not know, then the probe's verdict.
const NUMBERS: [i64; 17] = [
    -1,
    -2,
    -3,
    -4,
    -5,
    -6,
    -7,
    -8,
    -9,
    -10,
    -11,
    -12,
    -13,
    0,
    1,
    12345,
    i64::MIN,
];
const DONE: Word = 0x600d;
const LOST_RSP: Word = 0xbad;

global_asm!(
    ".global no_syscalls_probe",
    "no_syscalls_probe:",
    "lea r12, [rip + no_syscalls_numbers]",
    "mov r13, {count}",
    "1:",
    "mov rdx, [r12]",
    "movabs rdi, {cptr}",
    "xor esi, esi",
    "mov r14, rsp",
    "syscall",
    "cmp rsp, r14",
    "jne 3f",
    "add r12, 8",
    "dec r13",
    "jnz 1b",
    "mov rdx, {done}",
    "syscall",
    // Then null system calls for the cost figures, until suspended.
    "2:",
    "xor edx, edx",
    "syscall",
    "jmp 2b",
    "3:",
    "mov rdx, {lost}",
    "syscall",
    "4:",
    "jmp 4b",
    ".section .rodata",
    ".balign 8",
    "no_syscalls_numbers:",
    ".quad -1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -13, 0, 1, 12345, 0x8000000000000000",
    ".text",
    count = const NUMBERS.len(),
    cptr = const FAULT_CPTR,
    done = const DONE,
    lost = const LOST_RSP,
);

extern "C" {
    fn no_syscalls_probe() -> !;
}

#[repr(C, align(16))]
struct Stack([u8; 4096]);
static mut STACK: Stack = Stack([0; 4096]);

pub fn run(objects: &mut Objects) -> Outcome {
    let endpoint = objects.endpoint().doing("create the endpoint")?;
    let fault_cap = objects
        .mint(endpoint.0, CapRights::ALL, FAULT_BADGE)
        .doing("mint the fault endpoint")?;
    // Its CSpace: two slots, the fault endpoint in slot 1, nothing else.
    let cnode = CNode(
        objects
            .create(seL4_CapTableObject, 1)
            .doing("create the 2-slot CNode")?,
    );
    Slot {
        root: cnode,
        index: 1,
        depth: 1,
    }
    .copy(init::CNODE.slot(fault_cap), CapRights::ALL)
    .doing("put the fault endpoint in it")?;
    let tcb = objects.tcb().doing("create the thread")?;
    tcb.configure(TcbConfig {
        fault_endpoint: FAULT_CPTR,
        priority: Priority { prio: 200, mcp: 0 },
        cspace: cnode,
        cspace_data: 0,
        vspace: init::VSPACE,
        ipc_buffer_addr: 0,
        ipc_buffer_frame: Page(0),
    })
    .doing("configure the thread")?;
    // SAFETY: only this test uses the stack, and only its address is taken.
    let top = unsafe { (&raw mut STACK).add(1) } as Word;
    let regs = UserContext {
        rip: no_syscalls_probe as *const () as Word,
        rsp: top - 64,
        rflags: 0x202,
        ..UserContext::default()
    };
    tcb.write_registers(true, &regs).doing("start the thread")?;

    let mut fault = endpoint.recv();
    let mut seen = 0;
    let mut ips = (Word::MAX, 0);
    loop {
        check(
            fault.label() == seL4_Fault_UnknownSyscall,
            "a system call of the thread was not an UnknownSyscall fault",
        )?;
        check(
            fault.badge == FAULT_BADGE,
            "the fault came with another badge",
        )?;
        let number = fault.mr(seL4_UnknownSyscall_Syscall as usize);
        check(
            fault.mr(seL4_UnknownSyscall_SP as usize) == top - 64,
            "the fault's rsp is not the thread's",
        )?;
        if number == DONE || number == LOST_RSP {
            check(
                number == DONE,
                "the thread's rsp changed across a system call",
            )?;
            break;
        }
        check(
            seen < NUMBERS.len() && number == NUMBERS[seen] as Word,
            "a system call arrived out of order or was lost",
        )?;
        seen += 1;
        let ip = fault.mr(seL4_UnknownSyscall_FaultIP as usize);
        ips = (ips.0.min(ip), ips.1.max(ip));
        fault = ipc::reply_recv(endpoint.0, 0, &resume_words(&fault));
    }
    // What the mechanism costs (TSC ticks; exact only under -icount): a
    // null system call of the thread, fault to reply with every register;
    // and moving it to another VSpace and back, as a view switch would.
    let rounds: Word = 1000;
    let start = rdtsc();
    for _ in 0..rounds {
        fault = ipc::reply_recv(endpoint.0, 0, &resume_words(&fault));
    }
    let per_call = (rdtsc() - start) / rounds;
    tcb.suspend().doing("suspend the thread")?;
    let other = VSpace(
        objects
            .create(seL4_X64_PML4Object, 0)
            .doing("create a second VSpace")?,
    );
    init::ASID_POOL
        .assign(other)
        .doing("give the second VSpace an ASID")?;
    let start = rdtsc();
    for i in 0..rounds {
        let vspace = if i % 2 == 0 { other } else { init::VSPACE };
        tcb.set_space(FAULT_CPTR, cnode, 0, vspace)
            .doing("move the thread to another VSpace")?;
    }
    let per_switch = (rdtsc() - start) / rounds;
    println!(
        "no-syscalls: costs: a system call round trip (fault, reply with every register) {per_call} ticks; TCB_SetSpace {per_switch} ticks"
    );
    let entry = no_syscalls_probe as *const () as Word;
    check(
        ips.0 == ips.1 && ips.0 > entry && ips.0 < entry + 64,
        "the faults' IPs are not the probe's syscall instruction",
    )?;
    println!(
        "no-syscalls: {seen} of {} system calls (rdx = every seL4 number, unknown ones, slot of its fault endpoint in rdi) reached the handler as UnknownSyscall faults, rsp kept; message of {} words",
        NUMBERS.len(),
        seL4_UnknownSyscall_Length
    );
    check(seen == NUMBERS.len(), "not every system call arrived")
}

/// The reply that resumes a thread after its `syscall`: every register as
/// the fault reported it, rip past the instruction.
fn resume_words(fault: &previrt_sel4::Message) -> [Word; seL4_UnknownSyscall_Syscall as usize] {
    let mut words = [0; seL4_UnknownSyscall_Syscall as usize];
    for (i, w) in words.iter_mut().enumerate() {
        *w = fault.mr(i);
    }
    words[seL4_UnknownSyscall_FaultIP as usize] += 2;
    words
}

fn rdtsc() -> Word {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc reads the time-stamp counter; no memory is touched.
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (Word::from(hi) << 32) | Word::from(lo)
}
