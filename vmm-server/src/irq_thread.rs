//! The VMM's interrupt thread.
//!
//! It runs one priority level above the main thread and the guests. It
//! waits for the real PIT's IRQ, counts it ([`crate::clock`]), acknowledges
//! it, and serves the tick itself if the main thread is waiting
//! ([`crate::shared`]); otherwise it raises the main thread to its own level
//! and wakes it: the main thread then runs at once, even while a guest of
//! its priority spins, and lowers itself again when it has dealt with the
//! tick. (At the main thread's normal level, equal to the guests', seL4
//! replies to a guest's calls on its fastpath.)

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use previrt_protocol::vmm_layout::{
    PIT_IRQ_SLOT, TIMER_NOTIFICATION_SLOT, VMM_IRQ_TCB_SLOT, VMM_TCB_SLOT, VMM_WAKE_SIGNAL_SLOT,
};
use previrt_sel4::{println, IrqHandler, Notification, Tcb};

use crate::clock::record_tick;
use crate::shared::SHARED;

/// The interrupt thread's priority (the main thread's + 1); 0 until it runs.
static IRQ_PRIORITY: AtomicU8 = AtomicU8::new(0);
/// Ticks the interrupt thread served itself, and those it left to the
/// main thread.
pub static TICKS_SERVED_HERE: AtomicU64 = AtomicU64::new(0);
pub static TICKS_PASSED_ON: AtomicU64 = AtomicU64::new(0);

/// The interrupt thread's body (`priority` is its own, from its start
/// registers; `shared`: the supervisor owns the PIT and signals this VMM's
/// tick notification, so there is no IRQ to acknowledge).
pub fn irq_thread(priority: u8, shared: bool) -> ! {
    IRQ_PRIORITY.store(priority, Ordering::Release);
    let irq = IrqHandler(PIT_IRQ_SLOT);
    let timer = Notification(TIMER_NOTIFICATION_SLOT);
    let main = Tcb(VMM_TCB_SLOT);
    let wake = Notification(VMM_WAKE_SIGNAL_SLOT);
    // seL4 masks an IRQ each time it arrives, delivered or not, until it
    // is acknowledged: one that came before the loader bound the handler
    // (the firmware leaves the PIT running) would keep it masked.
    if !shared {
        if let Err(e) = irq.ack() {
            println!("vmm-server: the interrupt thread cannot acknowledge the timer IRQ: {e}");
        }
    }
    let mut reported = false;
    loop {
        timer.wait();
        record_tick();
        if shared {
            // Nothing to acknowledge: the supervisor did.
        } else if let Err(e) = irq.ack() {
            if !reported {
                println!("vmm-server: the interrupt thread: {e}");
                reported = true;
            }
        }
        // With the main thread waiting (one CPU: it cannot run until this
        // thread waits again), serve the tick here: no wake-up, no change
        // of priorities, no second thread's system calls.
        let served = SHARED.while_main_waits(|g| match g.on_tick() {
            None => true,
            // The main thread ends the run.
            Some(ending) => {
                g.ending = Some(ending);
                false
            }
        });
        if served == Some(true) {
            TICKS_SERVED_HERE.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        TICKS_PASSED_ON.fetch_add(1, Ordering::Relaxed);
        let done = main.set_priority(Tcb(VMM_IRQ_TCB_SLOT), priority);
        match done {
            Err(e) if !reported => {
                println!("vmm-server: the interrupt thread: {e}");
                reported = true;
            }
            _ => {}
        }
        wake.signal();
    }
}

/// The main thread's priority, to return to after a wake-up.
pub fn main_priority() -> Option<u8> {
    match IRQ_PRIORITY.load(Ordering::Acquire) {
        0 => None,
        p => Some(p - 1),
    }
}

/// Lowers the VMM's main thread to its own priority after a wake-up raised
/// it (at the guests' priority, seL4 replies to them on its fastpath).
pub fn lower_priority() {
    if let Some(p) = main_priority() {
        let me = Tcb(VMM_TCB_SLOT);
        let _ = me.set_priority(me, p);
    }
}
