//! The supervisor of a system of several guests (docs/vmm-server.md,
//! "Several guests"). Each guest has a VMM of its own that holds only its
//! guest's capabilities; what the machine has one of is here:
//!
//! - the real PIT, run at [`SHARED_TICK_PERIOD`]: each of its IRQs is
//!   passed on as a signal to every VMM's tick notification (a write-only
//!   cap each), so every guest's time counts the same real ticks;
//! - the exit port: each VMM reports its guest's end on the supervisor's
//!   endpoint (badged with the guest's number + 1, so a VMM cannot speak
//!   for another); once every guest has ended, the supervisor ends the
//!   machine with the first failure's value, or 0 if all passed;
//! - COM1, for its own lines.
//!
//! It runs above every VMM and guest, so a guest spinning with interrupts
//! off delays no tick.
#![no_std]
#![no_main]

use previrt_protocol::vmm_layout::{
    supervisor_ticks_slot, DEVICE_DEBUG_EXIT, DEVICE_PIT, DEVICE_SERIAL, MAX_SYSTEM_GUESTS,
    SHARED_TICK_PERIOD, SUPERVISOR_DEBUG_EXIT_SLOT, SUPERVISOR_OWN_ENDPOINT_SLOT,
    SUPERVISOR_PIT_IRQ_SLOT, SUPERVISOR_PIT_PORTS_SLOT, SUPERVISOR_SERIAL_SLOT,
    SUPERVISOR_TCB_SLOT, SUPERVISOR_TIMER_SLOT, TIMER_BADGE,
};
use previrt_sel4::{println, Endpoint, IoPort, IrqHandler, Notification, Tcb, Word};

use supervisor::ledger::{Ledger, Report};

// The loader starts the task with its stack set up by the spec and the
// start registers (rdi: the number of guests, rsi: device bits).
core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym supervisor_main,
);

extern "C" fn supervisor_main(guests: Word, devices: Word) -> ! {
    let devices = devices as u8;
    if devices & DEVICE_SERIAL != 0 {
        let _ = previrt_sel4::debug::init(
            IoPort(SUPERVISOR_SERIAL_SLOT),
            previrt_sel4::debug::COM1_BASE,
        );
    }
    let count = (guests as usize).min(MAX_SYSTEM_GUESTS);
    println!("supervisor: started: {count} guests, each with a VMM of its own");
    let pit = devices & DEVICE_PIT != 0;
    if pit {
        start_pit();
    }
    let mut ledger = Ledger::new(count);
    let endpoint = Endpoint(SUPERVISOR_OWN_ENDPOINT_SLOT);
    let mut ticks: u64 = 0;
    loop {
        let message = endpoint.recv();
        if message.badge & TIMER_BADGE != 0 {
            ticks += 1;
            for n in 0..count {
                Notification(supervisor_ticks_slot(n as u64)).signal();
            }
            if let Err(e) = IrqHandler(SUPERVISOR_PIT_IRQ_SLOT).ack() {
                println!("supervisor: acknowledging the timer IRQ failed: {e}");
            }
            continue;
        }
        let report = ledger.report(
            message.badge,
            message.label(),
            message.info.length() as usize,
            message.mr(0),
        );
        match report {
            Err(e) => println!("supervisor: ignored a message: {e}"),
            Ok(Report::Ended { guest, value, left }) => println!(
                "supervisor: guest {guest} ended with exit value {value} ({left} still running, {ticks} timer ticks passed on)"
            ),
            Ok(Report::AllEnded {
                guest,
                value,
                machine,
            }) => {
                // The last guest's own line too: every guest's end and
                // value is on COM1.
                println!(
                    "supervisor: guest {guest} ended with exit value {value} (0 still running, {ticks} timer ticks passed on)"
                );
                println!(
                    "supervisor: every guest has ended; exit value {machine} ({ticks} timer ticks passed on)"
                );
                if devices & DEVICE_DEBUG_EXIT != 0 {
                    let _ = IoPort(SUPERVISOR_DEBUG_EXIT_SLOT).out8(0xf4, machine);
                }
                loop {
                    previrt_sel4::sys::syscalls::yield_now();
                }
            }
        }
    }
}

/// Runs the real PIT at [`SHARED_TICK_PERIOD`] (channel 0, mode 2) and
/// takes its IRQ on this thread's endpoint wait.
fn start_pit() {
    let bound = Tcb(SUPERVISOR_TCB_SLOT).bind_notification(Notification(SUPERVISOR_TIMER_SLOT));
    if let Err(e) = bound {
        println!("supervisor: cannot take the timer IRQ: {e}");
        return;
    }
    // seL4 masks an IRQ after each arrival until it is acknowledged: one
    // may have come before the loader bound the handler.
    let _ = IrqHandler(SUPERVISOR_PIT_IRQ_SLOT).ack();
    let ports = IoPort(SUPERVISOR_PIT_PORTS_SLOT);
    let [low, high, ..] = SHARED_TICK_PERIOD.to_le_bytes();
    let programmed = ports
        .out8(0x43, 0x34)
        .and_then(|()| ports.out8(0x40, low))
        .and_then(|()| ports.out8(0x40, high));
    match programmed {
        Ok(()) => println!(
            "supervisor: the real PIT runs at {SHARED_TICK_PERIOD} input ticks a period; each tick goes to every VMM"
        ),
        Err(e) => println!("supervisor: programming the real PIT failed: {e}"),
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("supervisor: panic: {info}");
    loop {
        previrt_sel4::sys::syscalls::yield_now();
    }
}
