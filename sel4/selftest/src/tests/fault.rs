//! Fault IPC: a thread whose fault endpoint is ours touches unmapped memory;
//! we receive the VM fault message, map a frame there, reply, and the thread
//! continues and reads what we wrote.

use core::ptr::{read_volatile, write_volatile};

use previrt_sel4::sys::bitfield::seL4_Fault_VMFault;
use previrt_sel4::sys::constants::{
    seL4_VMFault_Addr, seL4_VMFault_FSR, seL4_VMFault_IP, seL4_VMFault_PrefetchFault,
};
use previrt_sel4::{ipc, println, CapRights, Word};

use super::{check, Context, Outcome};
use crate::objects::Objects;
use crate::threads;

const UNMAPPED: Word = 0x5000_0000;
const FAULT_BADGE: Word = 0x42;
const REPORT_BADGE: Word = 0x43;
const VALUE: Word = 0xfeed_face_0bad_f00d;

/// Reads the unmapped address (faulting once), then reports what it read.
extern "C" fn toucher(report_endpoint: Word) -> ! {
    // SAFETY: the address is unmapped on purpose; the resulting fault is
    // handled by the test, which maps a frame there before replying.
    let value = unsafe { read_volatile(UNMAPPED as *const Word) };
    ipc::send(report_endpoint, 0, &[value]);
    loop {
        previrt_sel4::sys::syscalls::yield_now();
    }
}

pub fn run(objects: &mut Objects) -> Outcome {
    let endpoint = objects.endpoint().doing("create the endpoint")?;
    // The kernel sends faults only through a capability with write and grant.
    let fault_cap = objects
        .mint(endpoint.0, CapRights::ALL, FAULT_BADGE)
        .doing("mint the fault endpoint")?;
    let report_cap = objects
        .mint(endpoint.0, CapRights::ALL, REPORT_BADGE)
        .doing("mint the report endpoint")?;
    // Below our own priority: it runs only once we block in recv.
    threads::spawn(objects, toucher, report_cap, 200, fault_cap)
        .doing("start the faulting thread")?;

    let fault = endpoint.recv();
    let (ip, addr) = (
        fault.mr(seL4_VMFault_IP as usize),
        fault.mr(seL4_VMFault_Addr as usize),
    );
    let (prefetch, fsr) = (
        fault.mr(seL4_VMFault_PrefetchFault as usize),
        fault.mr(seL4_VMFault_FSR as usize),
    );
    println!(
        "fault: label {} badge {:#x}: VM fault at address {addr:#x}, ip {ip:#x}, prefetch {prefetch}, fsr {fsr:#x}",
        fault.label(),
        fault.badge
    );
    check(
        fault.label() == seL4_Fault_VMFault,
        "the message is not a VM fault",
    )?;
    check(
        fault.badge == FAULT_BADGE,
        "the fault did not come through the fault endpoint's badge",
    )?;
    check(addr == UNMAPPED, "wrong fault address")?;
    let entry = toucher as *const () as Word;
    check(
        ip >= entry && ip < entry + 0x100,
        "fault IP is not in the faulting function",
    )?;
    check(
        prefetch == 0,
        "a data read reported as an instruction fetch",
    )?;
    check(fsr & 0b110 == 0b100, "error code is not a user-mode read")?;

    let frame = objects.frame().doing("retype the frame for the fault")?;
    objects
        .map(frame, UNMAPPED, CapRights::READ_WRITE)
        .doing("map the frame at the fault address")?;
    // SAFETY: just mapped read-write in our (shared) address space.
    unsafe { write_volatile(UNMAPPED as *mut Word, VALUE) };
    ipc::reply(0, &[]);

    let report = endpoint.recv();
    println!(
        "fault: handler mapped a frame at {UNMAPPED:#x} and replied; the thread continued and read {:#x} (badge {:#x})",
        report.mr(0),
        report.badge
    );
    check(
        report.badge == REPORT_BADGE,
        "report came with the wrong badge",
    )?;
    check(
        report.mr(0) == VALUE,
        "the faulting thread did not read what the handler wrote",
    )
}
