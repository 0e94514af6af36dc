//! The wedge on seL4. The VMM server starts the guest thread here
//! (`wedge_start`, rdi = a `WedgeBoot`): the wedge rewrites the guest's
//! pre-virtualized sites into calls to `wedge_site_entry`, then enters the
//! guest at its PV entry. Each site call saves the guest's registers on the
//! wedge's own stack, emulates the site with wedge-l4's core (asking the VMM
//! over IPC for what it cannot do alone) and returns to the guest with
//! `iretq`, which loads rip, rsp and the flags in one instruction at user
//! level.
#![no_std]
#![no_main]

mod backend;
mod memory;

use core::sync::atomic::{AtomicU64, Ordering};

use previrt_protocol::{Request, WedgeBoot, WEDGE_BOOT_MAGIC};
use wedge_l4::emulate::emulate;
use wedge_l4::memory::{reg, GuestRegs};
use wedge_l4::records::Records;
use wedge_l4::rewrite::{rewrite, SiteTable, CALL_LEN};
use wedge_l4::vcpu::Vcpu;

use crate::backend::Sel4Backend;
use crate::memory::DirectMemory;

const STACK_SIZE: usize = 32 * 1024;
const MAX_SITES: usize = 4096;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

static mut STACK: Stack = Stack([0; STACK_SIZE]);
/// The wedge's state: one virtual CPU, the table of rewritten sites. Only
/// the guest thread runs wedge code, one site at a time.
static mut STATE: State = State {
    vcpu: None,
    sites: SiteTable::new(),
};
/// The frame `iretq` resumes the guest from: rip, cs, rflags, rsp, ss.
#[no_mangle]
static IRET_FRAME: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
/// The code and stack selectors the guest runs with, read once at start:
/// after a system call seL4 returns with `sysret`, whose selectors need not
/// match a GDT entry `iretq` would accept.
static SELECTORS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// The guest's rsp at a site call (pointing at the return address).
#[no_mangle]
static GUEST_RSP: AtomicU64 = AtomicU64::new(0);

struct State {
    vcpu: Option<Vcpu>,
    /// Too big for the stack (about 200 KiB): filled in place.
    sites: SiteTable<MAX_SITES>,
}

// Register order of `GuestRegs::gpr` (x86 encoding numbers), then rip and
// rflags: the stubs build and consume exactly that struct.
core::arch::global_asm!(
    ".section .text.wedge_start, \"ax\"",
    ".global wedge_start",
    "wedge_start:",
    "lea rsp, [rip + {stack} + {size}]",
    "sub rsp, 144",
    "mov rsi, rsp",
    "call {init}",
    "jmp wedge_exit",
    "",
    ".global wedge_reflect_entry",
    "wedge_reflect_entry:",
    "lea rsp, [rip + {stack} + {size}]",
    "sub rsp, 144",
    "mov rdi, rsp",
    "call {reflect}",
    "jmp wedge_exit",
    "",
    ".global wedge_site_entry",
    "wedge_site_entry:",
    "mov [rip + GUEST_RSP], rsp",
    "lea rsp, [rip + {stack} + {size}]",
    "pushfq",
    "push 0",
    "push r15", "push r14", "push r13", "push r12", "push r11", "push r10", "push r9", "push r8",
    "push rdi", "push rsi", "push rbp",
    "push qword ptr [rip + GUEST_RSP]",
    "push rbx", "push rdx", "push rcx", "push rax",
    "mov rdi, rsp",
    "call {site}",
    "",
    "wedge_exit:",
    "pop rax", "pop rcx", "pop rdx", "pop rbx",
    "add rsp, 8",
    "pop rbp", "pop rsi", "pop rdi",
    "pop r8", "pop r9", "pop r10", "pop r11", "pop r12", "pop r13", "pop r14", "pop r15",
    "lea rsp, [rip + IRET_FRAME]",
    "iretq",
    stack = sym STACK,
    size = const STACK_SIZE,
    init = sym wedge_init,
    site = sym wedge_site,
    reflect = sym wedge_reflect,
);

extern "C" {
    fn wedge_site_entry();
    fn wedge_reflect_entry();
}

/// Where the VMM writes a `Reflection` (the boot block + REFLECTION_OFFSET).
static REFLECTION: AtomicU64 = AtomicU64::new(0);

fn state() -> &'static mut State {
    let state = &raw mut STATE;
    // SAFETY: only the guest thread runs the wedge, and it enters one site
    // at a time (the wedge itself has no sites), so this is the only live
    // reference.
    unsafe { &mut *state }
}

fn selectors() -> (u64, u64) {
    let (cs, ss): (u64, u64);
    // SAFETY: reading segment selectors has no side effects.
    unsafe {
        core::arch::asm!("mov {0:x}, cs", "mov {1:x}, ss", out(reg) cs, out(reg) ss, options(nomem, nostack));
    }
    (cs & 0xffff, ss & 0xffff)
}

/// Sets where `iretq` takes the guest next.
fn resume_at(regs: &GuestRegs) {
    let (cs, ss) = (
        SELECTORS[0].load(Ordering::Relaxed),
        SELECTORS[1].load(Ordering::Relaxed),
    );
    let frame = [
        regs.rip,
        cs,
        regs.rflags,
        regs.gpr[usize::from(reg::RSP)],
        ss,
    ];
    for (slot, value) in IRET_FRAME.iter().zip(frame) {
        slot.store(value, Ordering::Relaxed);
    }
}

fn stop(why: u64) -> ! {
    let mut backend = Sel4Backend;
    backend.request(Request::Shutdown { reason: why });
    loop {
        previrt_sel4::sys::syscalls::yield_now();
    }
}

extern "C" fn wedge_init(boot: *const WedgeBoot, regs: &mut GuestRegs) {
    REFLECTION.store(
        boot as u64 + previrt_protocol::REFLECTION_OFFSET,
        Ordering::Relaxed,
    );
    // SAFETY: the VMM server writes the boot block into wedge memory it
    // mapped before starting this thread, and passes its address; the
    // wedge writes back where it takes reflected exceptions.
    let boot = unsafe {
        (*boot.cast_mut()).reflect_entry = wedge_reflect_entry as *const () as u64;
        *boot
    };
    if boot.magic != WEDGE_BOOT_MAGIC {
        stop(1);
    }
    // SAFETY: the VMM maps the guest's records and code (identity-mapped
    // guest RAM, faulted in on demand) before it starts the wedge; nothing
    // else runs while the wedge rewrites them.
    let (section, code) = unsafe {
        (
            core::slice::from_raw_parts(boot.afterburn as *const u8, boot.afterburn_len as usize),
            core::slice::from_raw_parts_mut(
                boot.code_start as *mut u8,
                (boot.code_end - boot.code_start) as usize,
            ),
        )
    };
    let (cs, ss) = selectors();
    SELECTORS[0].store(cs, Ordering::Relaxed);
    SELECTORS[1].store(ss, Ordering::Relaxed);
    let st = state();
    let records = match Records::parse(section) {
        Ok(r) => r,
        Err(_) => stop(2),
    };
    if rewrite(
        code,
        boot.code_start,
        &records,
        wedge_site_entry as *const () as u64,
        &mut st.sites,
    )
    .is_err()
    {
        stop(3);
    }
    st.vcpu = Some(Vcpu::at_pv_entry(boot.cr3));
    *regs = GuestRegs::default();
    regs.rip = boot.pv_entry;
    regs.gpr[usize::from(reg::RDI)] = boot.boot_info;
    regs.rflags = 0x202;
    resume_at(regs);
}

extern "C" fn wedge_site(regs: &mut GuestRegs) {
    let st = state();
    let Some(vcpu) = st.vcpu.as_mut() else {
        stop(4)
    };
    let table = &st.sites;
    let mut mem = DirectMemory;
    let rsp = regs.gpr[usize::from(reg::RSP)];
    let mut ret = [0u8; 8];
    if wedge_l4::memory::GuestMemory::read(&mut mem, rsp, &mut ret).is_err() {
        stop(5);
    }
    let return_address = u64::from_le_bytes(ret);
    let entry = match table.by_return_address(return_address, &mut mem) {
        Ok(e) => *e,
        Err(_) => stop(6),
    };
    // The call's return address is not the guest's: drop it.
    regs.gpr[usize::from(reg::RSP)] = rsp + 8;
    regs.rip = return_address - u64::from(CALL_LEN);
    let mut backend = Sel4Backend;
    match emulate(
        &entry.site,
        entry.bytes(),
        vcpu,
        regs,
        &mut mem,
        &mut backend,
    ) {
        Ok(_) => resume_at(regs),
        Err(_) => stop(7),
    }
}

/// The VMM sent the guest thread here with an exception to deliver: the
/// guest's registers and the exception are in the reflection block.
extern "C" fn wedge_reflect(regs: &mut GuestRegs) {
    // SAFETY: the VMM writes the reflection block (in wedge memory) before
    // it sends the thread here, and nothing else writes it meanwhile.
    let r = unsafe { *(REFLECTION.load(Ordering::Relaxed) as *const previrt_protocol::Reflection) };
    let st = state();
    let Some(vcpu) = st.vcpu.as_mut() else {
        stop(4)
    };
    regs.gpr = r.gpr;
    regs.rip = r.rip;
    regs.rflags = r.rflags;
    if r.vector == 14 {
        vcpu.cr2 = r.cr2;
    }
    let vector = r.vector as u8;
    let error = wedge_l4::interrupts::has_error_code(vector).then_some(r.error);
    let mut mem = DirectMemory;
    match wedge_l4::interrupts::deliver(vector, error, vcpu, regs, &mut mem) {
        Ok(()) => resume_at(regs),
        Err(_) => stop(10),
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    stop(8)
}
