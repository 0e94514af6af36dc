//! The VMM server. Today it does its bring-up check: it reads what the
//! generated system gave it (its start registers and the CSpace slots of
//! `capdl::generate`), proves each guest's RAM frames, RAM window and image
//! window are usable, and reports. Loading and running the guest (with the
//! wedge) is the next step of the project; until then it ends the run.
#![no_std]
#![no_main]

mod bringup;

use capdl::generate::StartInfo;
use previrt_sel4::{println, Word};

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
        "vmm-server: bring-up {}; running guests is not built yet",
        if ok { "passed" } else { "FAILED" }
    );
    bringup::exit(&info, ok)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("vmm-server: panic: {info}");
    loop {
        previrt_sel4::sys::syscalls::yield_now();
    }
}
