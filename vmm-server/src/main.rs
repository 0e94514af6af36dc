//! The VMM server. Today it does its bring-up check: it reads what the
//! generated system gave it (its start registers and the CSpace slots of
//! `capdl::generate`), proves each guest's RAM frames, RAM window and image
//! window are usable, and reports. Loading and running the guest (with the
//! wedge) is the next step of the project; until then it ends the run.
#![no_std]
#![no_main]

mod bringup;
mod elf;
mod guest;
mod ram;
mod run;
mod sites;
mod vtlb;

use capdl::generate::{
    guest_image_window, guest_pml4_slot, guest_ram_window, guest_tcb_slot, guest_untyped_slot,
    StartInfo,
};
use previrt_sel4::{println, Tcb, Untyped, UserContext, VSpace, Word};

use crate::ram::Ram;
use crate::run::Ending;
use crate::sites::Sites;
use crate::vtlb::Vtlb;

/// The command line the guest gets (its self-tests).
const GUEST_CMDLINE: &str = "tests=all";

static mut VTLB: Vtlb = Vtlb::new(VSpace(0), Untyped(0), 0, (0, 0));
static mut SITES: Sites = Sites::empty();

// The loader starts the VMM with its stack set up by the spec and the start
// information in the six argument registers.
core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym vmm_main,
);

extern "C" fn vmm_main(rdi: Word, rsi: Word, rdx: Word, rcx: Word, r8: Word, r9: Word) -> ! {
    let start = previrt_sel4::cpu::rdtsc();
    let info = StartInfo::from_registers([rdi, rsi, rdx, rcx, r8, r9]);
    println!(
        "vmm-server: started at TSC {start}: {} guest(s), CNode of 2^{} slots, devices {:#x}",
        info.guest_count, info.cnode_bits, info.devices
    );
    let ok = bringup::check(&info);
    println!(
        "vmm-server: bring-up {}",
        if ok { "passed" } else { "FAILED" }
    );
    if !ok || info.guest_count == 0 {
        bringup::exit(&info, ok);
    }
    let ran = run_guest(&info, 0);
    bringup::exit(&info, ran)
}

/// Prepares guest `g` and serves it until it stops. Returns whether it got
/// as far as the VMM can take it today: its first pre-virtualized site.
fn run_guest(info: &StartInfo, g: usize) -> bool {
    let guest = info.guests[g];
    let ram_bytes = u64::from(guest.ram_frames) * 4096;
    // SAFETY: the generated spec maps the guest's RAM frames read-write at
    // its RAM window, contiguously, for the VMM's whole life; only the VMM
    // and (through its own mappings) the guest touch them.
    let ram = unsafe { Ram::new(guest_ram_window(g as u64), ram_bytes) };
    // SAFETY: the spec maps the guest's ELF file read-only at its image
    // window; `image_bytes` is the file's size (the generator's StartInfo).
    let image = unsafe {
        core::slice::from_raw_parts(
            guest_image_window(g as u64) as *const u8,
            guest.image_bytes as usize,
        )
    };
    let prepared = match guest::prepare(&ram, image, GUEST_CMDLINE) {
        Ok(p) => p,
        Err(e) => {
            println!("vmm-server: guest{g}: refused: {e}");
            return false;
        }
    };
    // The VMM is single-threaded and these statics are used only here, once.
    let (vtlb, sites) = (&raw mut VTLB, &raw mut SITES);
    // SAFETY: (as above) the only references to these statics, made once.
    let (vtlb, sites) = unsafe { (&mut *vtlb, &mut *sites) };
    match prepared.afterburn.map(|(at, len)| ram.slice(at, len)) {
        Some(Ok(section)) => {
            if let Err(e) = sites.read(section) {
                println!("vmm-server: guest{g}: {e}");
                return false;
            }
        }
        _ => {
            println!("vmm-server: guest{g}: refused: no .afterburn section (not a pre-virtualized image)");
            return false;
        }
    }
    println!(
        "vmm-server: guest{g}: loaded; PV entry {:#x}, {} pre-virtualized sites, page tables at {:#x}, command line \"{GUEST_CMDLINE}\"",
        prepared.entry, sites.count, prepared.cr3
    );
    let Some(ram_first) = info.ram_first_slot(g) else {
        return false;
    };
    vtlb.reset(
        VSpace(guest_pml4_slot(g as u64)),
        Untyped(guest_untyped_slot(g as u64)),
        ram_first,
        (info.free_first_slot(), 1 << info.cnode_bits),
    );
    let regs = UserContext {
        rip: prepared.entry,
        rdi: prepared.boot_info,
        rflags: 0x202,
        ..UserContext::default()
    };
    if let Err(e) = Tcb(guest_tcb_slot(g as u64)).write_registers(true, &regs) {
        println!("vmm-server: guest{g}: cannot start its thread: {e}");
        return false;
    }
    let mut stats = run::Stats { page_faults: 0 };
    let ending = run::serve(g as u64, &ram, prepared.cr3, vtlb, sites, &mut stats);
    println!(
        "vmm-server: guest{g}: {} page faults served, {} pages mapped, {} seL4 paging structures created",
        stats.page_faults, vtlb.count, vtlb.tables_created
    );
    let consistent = match vtlb.check_consistency(&ram, prepared.cr3) {
        Ok(n) => {
            println!("vmm-server: guest{g}: mapping consistency: all {n} seL4 mappings justified by the guest's page tables");
            true
        }
        Err(u) => {
            println!(
                "vmm-server: guest{g}: mapping consistency VIOLATED at {:#x}: {}",
                u.va, u.why
            );
            false
        }
    };
    consistent
        && match ending {
            Ending::SensitiveInstruction {
                rip,
                vector,
                site_kind: Some(kind),
            } => {
                println!(
                "vmm-server: guest{g}: stopped at its first pre-virtualized site: `{kind}` at {rip:#x} (exception {vector}); rewriting sites is the wedge's job, not built yet"
            );
                true
            }
            Ending::SensitiveInstruction {
                rip,
                vector,
                site_kind: None,
            } => {
                println!("vmm-server: guest{g}: exception {vector} at {rip:#x}, outside every recorded site");
                false
            }
            Ending::UnmappedAccess { rip, addr } => {
                println!("vmm-server: guest{g}: touched {addr:#x} at {rip:#x}, which its page tables do not map");
                false
            }
            Ending::Failed(why) => {
                println!("vmm-server: guest{g}: {why}");
                false
            }
        }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("vmm-server: panic: {info}");
    loop {
        previrt_sel4::sys::syscalls::yield_now();
    }
}
