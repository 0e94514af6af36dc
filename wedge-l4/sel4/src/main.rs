//! The wedge on seL4. The VMM server starts the guest thread here
//! (`wedge_start`, rdi = a `WedgeBoot`): the wedge rewrites the guest's
//! pre-virtualized sites into calls to `wedge_site_entry`, then enters the
//! guest at its PV entry. Each site call saves the guest's registers on the
//! wedge's own stack, emulates the site with wedge-l4's core (asking the VMM
//! over IPC for what it cannot do alone) and returns to the guest with
//! `iretq`, which loads rip, rsp and the flags in one instruction at user
//! level.
//!
//! The virtual CPU lives in the vCPU page (`previrt_protocol::VCPU_PAGE`),
//! which the VMM makes the guest thread's IPC buffer, so `%gs` addresses it
//! from anywhere: `cli` becomes one store to the vCPU's `vif` byte, and
//! `sti`, `pushf` and `popf` call short fast paths here (`wedge_*_fast`) that
//! save no registers and fall back to `wedge_site_entry` only when they
//! cannot finish alone.
#![no_std]
#![no_main]

mod backend;
mod memory;

use core::sync::atomic::{AtomicU64, Ordering};

use previrt_protocol::{
    Request, ShutdownReason, WedgeBoot, WedgeStats, DEFERRED_EOI_OFFSET, ENTER_LINUX, FAST_IRET,
    FAST_PIC_COMMAND, FAST_POPF, FAST_PUSHF, FAST_SLOTS_OFFSET, FAST_STI, REFLECT_SITE,
    REFLECT_SOFTWARE_INTERRUPT, REFLECT_SYSCALL, STATS_OFFSET, VCPU_OFFSET, VCPU_PAGE,
    WEDGE_BOOT_MAGIC, WEDGE_STATS_MAGIC,
};
use wedge_l4::afterburn_format::Kind;
use wedge_l4::alternatives::{Alternatives, Placements};
use wedge_l4::emulate::{emulate_decoded, enter_syscall, EmulateError, Outcome};
use wedge_l4::memory::{reg, GuestRegs};
use wedge_l4::records::Records;
use wedge_l4::rewrite::{rewrite_placed, FastPaths, SiteEntry, SiteTable};
use wedge_l4::vcpu::{SegReg, Vcpu, FLAG_IOPL, VCPU_MAGIC};

use crate::backend::Sel4Backend;
use crate::memory::DirectMemory;

const STACK_SIZE: usize = 32 * 1024;
const MAX_SITES: usize = 4096;
/// Sites left as written the wedge remembers (Linux 6.1 has 67).
const MAX_LEFT: usize = 256;
/// Most sites the guest copies before running them (Linux 6.1 with our
/// config: 18 in `.altinstr_replacement`).
const MAX_COPIED: usize = 256;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

static mut STACK: Stack = Stack([0; STACK_SIZE]);
/// The wedge's state: the table of rewritten sites (the virtual CPU is in
/// the vCPU page). Only the guest thread runs wedge code, one site at a time.
static mut STATE: State = State {
    vcpu_ready: false,
    left: [(0, Kind::Cli); MAX_LEFT],
    left_count: 0,
    sites: SiteTable::new(),
    copied: Placements::new(),
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
/// How far below its recorded address the guest's code may also run
/// (`WedgeBoot::code_alias`: Linux before it loads its own page tables).
static CODE_ALIAS: AtomicU64 = AtomicU64::new(0);

struct State {
    /// The vCPU page holds an initialised `Vcpu`.
    vcpu_ready: bool,
    /// The sites the rewrite left as written (their instruction does not
    /// decode), address and kind; the first `MAX_LEFT` of `left_count`.
    left: [(u64, Kind); MAX_LEFT],
    left_count: usize,
    /// Too big for the stack (about 200 KiB): filled in place.
    sites: SiteTable<MAX_SITES>,
    /// Where the sites the guest copies run (`wedge_l4::alternatives`).
    copied: Placements<MAX_COPIED>,
}

// Register order of `GuestRegs::gpr` (x86 encoding numbers), then rip and
// rflags: the stubs build and consume exactly that struct.
core::arch::global_asm!(
    // Both guest entries save the guest's registers on the wedge's stack as
    // a `GuestRegs` (rsp as it was at entry) and pass its address in rdi.
    ".macro save_guest_registers",
    "mov [rip + GUEST_RSP], rsp",
    "lea rsp, [rip + {stack} + {size}]",
    "pushfq",
    "push 0",
    "push r15", "push r14", "push r13", "push r12", "push r11", "push r10", "push r9", "push r8",
    "push rdi", "push rsi", "push rbp",
    "push qword ptr [rip + GUEST_RSP]",
    "push rbx", "push rdx", "push rcx", "push rax",
    "mov rdi, rsp",
    ".endm",
    "",
    ".section .text.wedge_start, \"ax\"",
    ".global wedge_start",
    "wedge_start:",
    "lea rsp, [rip + {stack} + {size}]",
    "sub rsp, 144",
    "mov rsi, rsp",
    "call {init}",
    "jmp wedge_exit",
    "",
    // The VMM moved a faulting guest thread here: every register but rip
    // is the guest's. Saved like a site's, then delivered.
    ".global wedge_reflect_entry",
    "wedge_reflect_entry:",
    "save_guest_registers",
    "call {reflect}",
    "jmp wedge_exit",
    "",
    ".global wedge_site_entry",
    "wedge_site_entry:",
    "save_guest_registers",
    "call {site}",
    "",
    "wedge_exit:",
    "pop rax", "pop rcx", "pop rdx", "pop rbx",
    "add rsp, 8",
    "pop rbp", "pop rsi", "pop rdi",
    "pop r8", "pop r9", "pop r10", "pop r11", "pop r12", "pop r13", "pop r14", "pop r15",
    "lea rsp, [rip + IRET_FRAME]",
    "iretq",
    "",
    // The fast paths run on the guest's stack, called from a site with
    // `call *%gs:slot` ([rsp] = the return address, right after the call).
    // They keep every register and the real arithmetic flags.
    //
    // sti: set vif; if an interrupt may be pending, the general path
    // delivers it (after the shadow).
    ".global wedge_fast_begin",
    "wedge_fast_begin:",
    ".global wedge_sti_fast",
    "wedge_sti_fast:",
    "mov byte ptr gs:[{vif}], 1",
    "pushfq",
    "cmp byte ptr gs:[{pending}], 0",
    "jne 1f",
    "popfq",
    "ret",
    "1:",
    "popfq",
    "jmp wedge_site_entry",
    "",
    // pushf: the real flags (IF is always set at user level) with IF
    // cleared when vif is. Stack on entry: R; on return: the image.
    ".global wedge_pushf_fast",
    "wedge_pushf_fast:",
    "push qword ptr [rsp]",     // R R
    "pushfq",                   // F R R
    "pop qword ptr [rsp + 8]",  // R F (the address is taken after the pop)
    "cmp byte ptr gs:[{vif}], 0",
    "jne 1f",
    "and byte ptr [rsp + 9], 0xfd",
    "1:",
    "push qword ptr [rsp + 8]", // the flags again: restore the real ones
    "popfq",
    "ret",
    "",
    // popf: vif from the image's IF, the rest into the real flags (a CPL 3
    // popfq ignores IF and IOPL). An image with IOPL, or interrupts turned
    // on with one pending, take the general path. Stack: R F.
    ".global wedge_popf_fast",
    "wedge_popf_fast:",
    "test byte ptr [rsp + 9], 0x30",
    "jnz 2f",
    "test byte ptr [rsp + 9], 0x02",
    "setnz byte ptr gs:[{vif}]",
    "jz 1f",
    "cmp byte ptr gs:[{pending}], 0",
    "jne 2f",
    "1:",
    "push qword ptr [rsp + 8]",
    "popfq",
    "ret 8",
    "2:",
    "jmp wedge_site_entry",
    "",
    // iretq: vif from the image's IF, the virtual CS and SS from the
    // frame; then the real iretq, with the real selectors written over the
    // (popped, dead) frame's. IOPL, or interrupts turned on with one
    // pending, take the general path. Stack: R, rip cs rflags rsp ss.
    ".global wedge_iret_fast",
    "wedge_iret_fast:",
    "test byte ptr [rsp + 25], 0x30",
    "jnz 2f",
    // A return to CPL 3 changes views: the general path.
    "test byte ptr [rsp + 16], 0x03",
    "jnz 2f",
    "test byte ptr [rsp + 25], 0x02",
    "setnz byte ptr gs:[{vif}]",
    "jz 1f",
    "cmp byte ptr gs:[{pending}], 0",
    "jne 2f",
    "1:",
    "push word ptr [rsp + 16]",
    "pop word ptr gs:[{vcs}]",
    "push word ptr [rsp + 40]",
    "pop word ptr gs:[{vss}]",
    "push qword ptr [rip + {selectors}]",
    "pop qword ptr [rsp + 16]",
    "push qword ptr [rip + {selectors} + 8]",
    "pop qword ptr [rsp + 40]",
    "lea rsp, [rsp + 8]",
    "iretq",
    "2:",
    "jmp wedge_site_entry",
    "",
    // outb %al, $0x20: a non-specific EOI (al = 0x20) is counted in the
    // vCPU page for the VMM (docs/protocol.md); any other command to the
    // master 8259 takes the general path.
    ".global wedge_pic_command_fast",
    "wedge_pic_command_fast:",
    "pushfq",
    "cmp al, 0x20",
    "jne 1f",
    "lock add dword ptr gs:[{eoi}], 1",
    "popfq",
    "ret",
    "1:",
    "popfq",
    "jmp wedge_site_entry",
    ".global wedge_fast_end",
    "wedge_fast_end:",
    eoi = const DEFERRED_EOI_OFFSET,
    vcs = const VCPU_OFFSET + core::mem::offset_of!(Vcpu, segs) as u64 + 2,
    vss = const VCPU_OFFSET + core::mem::offset_of!(Vcpu, segs) as u64 + 4,
    selectors = sym SELECTORS,
    vif = const VCPU_OFFSET + core::mem::offset_of!(Vcpu, vif) as u64,
    pending = const VCPU_OFFSET + core::mem::offset_of!(Vcpu, pending_any) as u64,
    stack = sym STACK,
    size = const STACK_SIZE,
    init = sym wedge_init,
    site = sym wedge_site,
    reflect = sym wedge_reflect,
);

extern "C" {
    fn wedge_site_entry();
    fn wedge_reflect_entry();
    fn wedge_sti_fast();
    fn wedge_pushf_fast();
    fn wedge_popf_fast();
    fn wedge_iret_fast();
    fn wedge_pic_command_fast();
    fn wedge_fast_begin();
    fn wedge_fast_end();
}

/// The vCPU page's parts (their layout: `previrt_protocol::vcpu_page`).
fn vcpu_page_at<T>(offset: u64) -> *mut T {
    (VCPU_PAGE + offset) as *mut T
}

/// The virtual CPU, in the vCPU page.
///
/// # Safety
///
/// The caller must hold no other reference to the vCPU while the one
/// returned lives. Each wedge entry (`wedge_init`, `wedge_site`,
/// `wedge_reflect`) calls this once and passes the reference down; nothing
/// else calls it. (Only the guest thread runs wedge code, one entry at a
/// time: the wedge itself has no sites.)
unsafe fn vcpu<'a>() -> &'a mut Vcpu {
    // SAFETY: the VMM maps the whole wedge area, the vCPU page included,
    // before it starts this thread; `wedge_init` writes a `Vcpu` there
    // before any site runs (`vcpu_ready`); the caller holds no other
    // reference (this function's contract).
    unsafe { &mut *vcpu_page_at::<Vcpu>(VCPU_OFFSET) }
}

/// The wedge's statistics, in the vCPU page (the VMM reads them).
fn stats() -> &'static mut WedgeStats {
    // SAFETY: as for `vcpu`: mapped, written at init, one user.
    unsafe { &mut *vcpu_page_at::<WedgeStats>(STATS_OFFSET) }
}

/// True if `%gs` addresses the vCPU page (the VMM made it the thread's IPC
/// buffer): the fast paths depend on it.
fn gs_reaches_vcpu() -> bool {
    let magic: u32;
    // SAFETY: a read through %gs; GS base is the thread's IPC buffer (or 0,
    // which faults to the VMM like any stray access of the guest thread,
    // before the guest's code has run).
    unsafe {
        core::arch::asm!(
            "mov {0:e}, dword ptr gs:[{off}]",
            out(reg) magic,
            off = const VCPU_OFFSET,
            options(nostack, readonly, preserves_flags),
        );
    }
    magic == VCPU_MAGIC
}

/// Points the `pushf`/`popf`/`iretq` fast paths at the general entry while
/// the guest runs with a nonzero virtual IOPL (which they do not model).
fn set_fast_slots(vcpu: &Vcpu) {
    let general = wedge_site_entry as *const () as u64;
    let iopl = vcpu.rflags & FLAG_IOPL != 0;
    let unless_iopl = |fast: unsafe extern "C" fn()| {
        if iopl {
            general
        } else {
            fast as *const () as u64
        }
    };
    let slots = [
        (FAST_STI, wedge_sti_fast as *const () as u64),
        (FAST_PUSHF, unless_iopl(wedge_pushf_fast)),
        (FAST_POPF, unless_iopl(wedge_popf_fast)),
        (FAST_IRET, unless_iopl(wedge_iret_fast)),
        (FAST_PIC_COMMAND, wedge_pic_command_fast as *const () as u64),
    ];
    for (index, entry) in slots {
        // SAFETY: the slots are u64s inside the mapped vCPU page, written
        // only by the guest thread here.
        unsafe { vcpu_page_at::<u64>(FAST_SLOTS_OFFSET + 8 * index).write(entry) };
    }
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

fn stop(why: ShutdownReason) -> ! {
    let mut backend = Sel4Backend;
    backend.request(Request::Shutdown { reason: why.code() });
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
        (*boot.cast_mut()).fast_begin = wedge_fast_begin as *const () as u64;
        (*boot.cast_mut()).fast_end = wedge_fast_end as *const () as u64;
        *boot
    };
    if boot.magic != WEDGE_BOOT_MAGIC {
        stop(ShutdownReason::BadBootMagic);
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
        Err(_) => stop(ShutdownReason::RecordsUnparsable),
    };
    let linux = boot.protocol == ENTER_LINUX;
    CODE_ALIAS.store(boot.code_alias, Ordering::Relaxed);
    let at_entry = if linux {
        Vcpu::at_linux_entry(boot.cr3)
    } else {
        Vcpu::at_pv_entry(boot.cr3)
    };
    // SAFETY: the vCPU page is mapped (see `vcpu`); nothing refers to it yet.
    unsafe {
        vcpu_page_at::<Vcpu>(VCPU_OFFSET).write(at_entry);
        vcpu_page_at::<WedgeStats>(STATS_OFFSET).write(WedgeStats::default());
    }
    st.vcpu_ready = true;
    // SAFETY: the first and only reference to the vCPU in this entry.
    set_fast_slots(unsafe { vcpu() });
    let fast = FastPaths {
        vcpu: VCPU_OFFSET as u32,
        sti: (FAST_SLOTS_OFFSET + 8 * FAST_STI) as u32,
        pushf: (FAST_SLOTS_OFFSET + 8 * FAST_PUSHF) as u32,
        popf: (FAST_SLOTS_OFFSET + 8 * FAST_POPF) as u32,
        iret: (FAST_SLOTS_OFFSET + 8 * FAST_IRET) as u32,
        pic_command: (FAST_SLOTS_OFFSET + 8 * FAST_PIC_COMMAND) as u32,
    };
    // The sites the rewrite will leave as written, as it decides it: their
    // instruction does not decode (read before the rewrite changes bytes).
    records.for_each_site(|site| {
        let insn = site
            .address
            .checked_sub(boot.code_start)
            .and_then(|at| code.get(at as usize..at as usize + usize::from(site.insn_len)));
        let left = !wedge_l4::rewrite::stays_native(site.kind)
            && !records.is_opted_out(site.address)
            && insn.is_some_and(|b| wedge_l4::decode::decode(site.kind, b).is_err());
        if left {
            if let Some(slot) = st.left.get_mut(st.left_count) {
                *slot = (site.address, site.kind);
            }
            st.left_count += 1;
        }
    });
    // Where the sites of code the guest copies (Linux's alternatives) will
    // run, read from its table before the rewrite writes the code: the
    // table must lie in the code the wedge was given.
    let alts = if boot.alternatives_len == 0 {
        Alternatives::none()
    } else {
        let table = boot
            .alternatives
            .checked_sub(boot.code_start)
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| code.get(at..at.checked_add(boot.alternatives_len as usize)?));
        match table.map(|t| Alternatives::new(t, boot.alternatives)) {
            Some(Ok(a)) => a,
            _ => stop(ShutdownReason::SitesNotRewritable),
        }
    };
    if st.copied.decide(&records, &alts).is_err() {
        stop(ShutdownReason::SitesNotRewritable);
    }
    let copied = &st.copied;
    let summary = match rewrite_placed(
        code,
        boot.code_start,
        &records,
        wedge_site_entry as *const () as u64,
        gs_reaches_vcpu().then_some(&fast),
        &mut st.sites,
        &|site| copied.of(site),
    ) {
        Ok(s) => s,
        Err(_) => stop(ShutdownReason::SitesNotRewritable),
    };
    let stats = stats();
    for (out, n) in stats.rewritten.iter_mut().zip(summary.by_kind) {
        *out = n;
    }
    stats.fast = summary.fast as u32;
    stats.native = (summary.native + summary.opted_out + summary.unplaceable) as u32;
    stats.undecodable = summary.undecodable as u64;
    stats.first_undecodable = summary.first_undecodable.unwrap_or(0);
    stats.magic = WEDGE_STATS_MAGIC;
    *regs = GuestRegs::default();
    regs.rip = boot.pv_entry;
    // The PV protocol's boot information in rdi; Linux's zero page in rsi
    // (its 64-bit boot protocol). Both registers hold it either way.
    regs.gpr[usize::from(reg::RDI)] = boot.boot_info;
    regs.gpr[usize::from(reg::RSI)] = boot.boot_info;
    regs.rflags = 0x202;
    resume_at(regs);
}

extern "C" fn wedge_site(regs: &mut GuestRegs) {
    let st = state();
    if !st.vcpu_ready {
        stop(ShutdownReason::EnteredBeforeStart)
    }
    // SAFETY: the one reference to the vCPU in this entry; everything below
    // borrows it.
    let vcpu = unsafe { vcpu() };
    let table = &st.sites;
    let mut mem = DirectMemory;
    let rsp = regs.gpr[usize::from(reg::RSP)];
    let mut ret = [0u8; 8];
    if wedge_l4::memory::GuestMemory::read(&mut mem, rsp, &mut ret).is_err() {
        stop(ShutdownReason::ReturnAddressUnreadable);
    }
    let return_address = u64::from_le_bytes(ret);
    // Where the records put it, or (before Linux runs at the addresses it
    // is linked at) at its alias, `CODE_ALIAS` lower.
    let alias = CODE_ALIAS.load(Ordering::Relaxed);
    let (entry, alias) = match table.by_return_address_aliased(return_address, alias, &mut mem) {
        Ok((e, alias)) => (*e, alias),
        Err(_) => stop(ShutdownReason::CallFromOutsideSite),
    };
    // The call's return address is not the guest's: drop it.
    regs.gpr[usize::from(reg::RSP)] = rsp + 8;
    run_site(&entry, alias, vcpu, regs)
}

/// Emulates the site of `entry` (`regs` are the guest's as before its
/// call), which ran `alias` below its recorded address, and resumes the
/// guest where it goes on: the emulation sees the site where it ran, so
/// the guest goes on (and a fault is reported) there.
fn run_site(entry: &SiteEntry, alias: u64, vcpu: &mut Vcpu, regs: &mut GuestRegs) {
    let mut mem = DirectMemory;
    let mut site = entry.site;
    site.address = site.address.wrapping_sub(alias);
    regs.rip = site.address;
    if let Some(n) = stats()
        .emulated
        .get_mut(usize::from(entry.site.kind.number()))
    {
        *n += 1;
    }
    let mut backend = Sel4Backend;
    match emulate_decoded(
        &site,
        entry.insn,
        entry.pair(),
        vcpu,
        regs,
        &mut mem,
        &mut backend,
    ) {
        Ok(outcome) => {
            // Only these can change the virtual IOPL the fast paths depend on.
            if matches!(entry.site.kind, Kind::Popf | Kind::Iret | Kind::Sysret) {
                set_fast_slots(vcpu);
            }
            // An interrupt may be waiting (the VMM says so in pending_any):
            // taken at this instruction boundary if virtual IF allows.
            if vcpu.interrupts_enabled() && vcpu.pending_any.load(Ordering::Acquire) != 0 {
                take_interrupt(vcpu, regs, &mut mem, &mut backend);
            }
            // Still bound for CPL 3 (no interrupt taken on the way): the
            // process runs in its user view, never in this address space.
            if outcome == Outcome::EnterUser && vcpu.seg(SegReg::Cs) & 3 != 0 {
                enter_user(vcpu, regs, &mut backend);
            }
            resume_at(regs)
        }
        Err(e) => {
            record_stop(&site, e);
            stop(ShutdownReason::SiteNotEmulated)
        }
    }
}

/// The site at `rip` (or at its alias) that the rewrite left as written,
/// if `rip` is one: its kind.
fn left_as_written(rip: u64) -> Option<Kind> {
    let alias = CODE_ALIAS.load(Ordering::Relaxed);
    let st = state();
    st.left[..st.left_count.min(MAX_LEFT)]
        .iter()
        .find(|(at, _)| *at == rip || (alias != 0 && *at == rip.wrapping_add(alias)))
        .map(|&(_, kind)| kind)
}

/// Leaves in the statistics where and why a site could not be emulated,
/// for the VMM's report.
fn record_stop(site: &wedge_l4::records::Site, e: EmulateError) {
    use previrt_protocol::{
        STOP_BACKEND, STOP_DECODE, STOP_DELIVERY, STOP_MEMORY, STOP_UNSUPPORTED,
    };
    let (error, value) = match e {
        EmulateError::Decode(_) | EmulateError::BytesTooShort { .. } | EmulateError::Not64Bit => {
            (STOP_DECODE, 0)
        }
        EmulateError::Unsupported { kind } => (STOP_UNSUPPORTED, u64::from(kind.number())),
        EmulateError::UnsupportedPair | EmulateError::LeavesLongMode { .. } => {
            (STOP_UNSUPPORTED, 0)
        }
        EmulateError::Memory(m) => (STOP_MEMORY, m.address),
        EmulateError::Backend(b) => (STOP_BACKEND, b as u64),
        EmulateError::TripleFault(_) | EmulateError::Delivery(_) => (STOP_DELIVERY, 0),
    };
    let stats = stats();
    stats.stopped_at = site.address;
    stats.stopped_kind = u64::from(site.kind.number());
    stats.stopped_error = error;
    stats.stopped_value = value;
}

/// Asks the VMM to start the process whose registers are `regs` in its
/// user view (docs/guest-processes.md): the VMM restarts this thread there,
/// cancelling the call, so it does not return.
fn enter_user(vcpu: &Vcpu, regs: &GuestRegs, backend: &mut Sel4Backend) -> ! {
    stats().user_entries += 1;
    backend.request(Request::EnterUser {
        regs: regs as *const GuestRegs as u64,
        fs_base: vcpu.fs_base,
    });
    stop(ShutdownReason::UserModeRefused)
}

/// Takes the interrupt the VMM says may be waiting: a vector already in the
/// vCPU's pending map, or else the one the VMM's acknowledge cycle gives
/// (`InterruptAck`); delivers it through the guest's IDT (`regs.rip` must
/// be where the guest continues).
fn take_interrupt(
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut DirectMemory,
    backend: &mut Sel4Backend,
) {
    if vcpu.has_pending() {
        if wedge_l4::interrupts::deliver_pending(vcpu, regs, mem).is_err() {
            stop(ShutdownReason::InterruptUndeliverable);
        }
        return;
    }
    // Cleared before asking: the VMM sets it again if more waits.
    vcpu.pending_any.store(0, Ordering::Release);
    let reply = backend.request(Request::InterruptAck);
    let Ok(vector) = u8::try_from(reply.value) else {
        return; // NO_VECTOR: the request went away meanwhile.
    };
    if reply.status != previrt_protocol::Status::Ok {
        return;
    }
    stats().interrupts_at_sites += 1;
    if wedge_l4::interrupts::deliver(vector, None, vcpu, regs, mem).is_err() {
        stop(ShutdownReason::InterruptUndeliverable);
    }
}

/// The guest's `syscall` entry (LSTAR) begins, as kernels' do, with
/// `swapgs` while still on the process's stack: a site call there would push
/// its return address onto that stack, which the process may have left
/// unmapped or read-only (copy-on-write). So the wedge applies a `swapgs`
/// site at LSTAR itself when it enters the guest kernel there, and starts
/// it after the site. The lookup is remembered per LSTAR value.
fn swapgs_at_syscall_entry(vcpu: &mut Vcpu, regs: &mut GuestRegs) {
    static ENTRY: [AtomicU64; 2] = [const { AtomicU64::new(u64::MAX) }; 2];
    let lstar = regs.rip;
    let skip = if ENTRY[0].load(Ordering::Relaxed) == lstar {
        ENTRY[1].load(Ordering::Relaxed)
    } else {
        let skip = state()
            .sites
            .at(lstar)
            .filter(|e| e.site.kind == Kind::Swapgs)
            .map_or(0, |e| u64::from(e.site.site_len));
        ENTRY[0].store(lstar, Ordering::Relaxed);
        ENTRY[1].store(skip, Ordering::Relaxed);
        skip
    };
    if skip != 0 {
        core::mem::swap(&mut vcpu.gs_base, &mut vcpu.kernel_gs_base);
        regs.rip = lstar + skip;
        if let Some(n) = stats().emulated.get_mut(usize::from(Kind::Swapgs.number())) {
            *n += 1;
        }
    }
}

/// A process's `int $n` that seL4's own gate refused: the guest's gate
/// decides, as the CPU's would (DPL 3: vector n after the 2-byte
/// instruction; else #GP(8n+2) at it).
fn software_interrupt(
    n: u8,
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut DirectMemory,
) -> Result<(), wedge_l4::interrupts::DeliverError> {
    if wedge_l4::interrupts::software_interrupt_allowed(n, vcpu, mem)? {
        regs.rip = regs.rip.wrapping_add(2);
        wedge_l4::interrupts::deliver(n, None, vcpu, regs, mem)
    } else {
        stats().reflected += 1;
        wedge_l4::interrupts::deliver(13, Some(u64::from(n) << 3 | 2), vcpu, regs, mem)
    }
}

/// The VMM sent the guest thread here with an exception to deliver (in the
/// reflection block, with the guest's rip); `regs` holds the guest's other
/// registers as they were at the fault.
extern "C" fn wedge_reflect(regs: &mut GuestRegs) {
    // SAFETY: the VMM writes the reflection block (in wedge memory) before
    // it sends the thread here, and nothing else writes it meanwhile.
    let r = unsafe { *(REFLECTION.load(Ordering::Relaxed) as *const previrt_protocol::Reflection) };
    if !state().vcpu_ready {
        stop(ShutdownReason::EnteredBeforeStart)
    }
    // SAFETY: the one reference to the vCPU in this entry.
    let vcpu = unsafe { vcpu() };
    if r.vector < 32 {
        stats().reflected += 1;
    } else {
        // An external interrupt the VMM acknowledged for the running guest.
        stats().interrupts_redirected += 1;
    }
    let mut mem = DirectMemory;
    // A site whose call could not push (the stack is a process's): run as
    // if called.
    if r.vector == REFLECT_SITE {
        let alias = CODE_ALIAS.load(Ordering::Relaxed);
        let sites = &state().sites;
        let found = match sites.at(r.rip) {
            Some(e) => Some((*e, 0)),
            None if alias != 0 => sites.at(r.rip.wrapping_add(alias)).map(|e| (*e, alias)),
            None => None,
        };
        let Some((entry, alias)) = found else {
            stop(ShutdownReason::CallFromOutsideSite)
        };
        return run_site(&entry, alias, vcpu, regs);
    }
    // A process's `syscall` (caught in its user view): into the guest
    // kernel at LSTAR, as the instruction goes.
    if r.vector == REFLECT_SYSCALL {
        stats().user_syscalls += 1;
        match enter_syscall(r.rip, vcpu, regs, &mut mem) {
            Ok(Outcome::Resume) => {
                swapgs_at_syscall_entry(vcpu, regs);
                return resume_at(regs);
            }
            Ok(_) => return resume_at(regs),
            Err(_) => stop(ShutdownReason::ReflectionUndeliverable),
        }
    }
    if r.vector >= REFLECT_SOFTWARE_INTERRUPT && r.vector < REFLECT_SOFTWARE_INTERRUPT + 256 {
        let n = (r.vector - REFLECT_SOFTWARE_INTERRUPT) as u8;
        regs.rip = r.rip;
        match software_interrupt(n, vcpu, regs, &mut mem) {
            Ok(()) => return resume_at(regs),
            Err(_) => stop(ShutdownReason::ReflectionUndeliverable),
        }
    }
    regs.rip = r.rip;
    // A site the wedge left as written (it cannot emulate its instruction)
    // trapped: the guest's kernel ran it expecting it to work, as it would
    // at CPL 0, so a #GP or #UD delivered to it would be a fault of ours,
    // not its. The guest stops there, with the site named.
    if matches!(r.vector, 6 | 13) {
        if let Some(kind) = left_as_written(r.rip) {
            let stats = stats();
            stats.stopped_at = r.rip;
            stats.stopped_kind = u64::from(kind.number());
            stats.stopped_error = previrt_protocol::STOP_DECODE;
            stats.stopped_value = r.vector;
            stop(ShutdownReason::SiteNotEmulated);
        }
    }
    if r.vector == 14 {
        vcpu.cr2 = r.cr2;
    }
    let vector = r.vector as u8;
    let error = wedge_l4::interrupts::has_error_code(vector).then_some(r.error);
    match wedge_l4::interrupts::deliver(vector, error, vcpu, regs, &mut mem) {
        Ok(()) => resume_at(regs),
        Err(_) => stop(ShutdownReason::ReflectionUndeliverable),
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    stop(ShutdownReason::WedgePanicked)
}
