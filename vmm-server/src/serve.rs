//! The VMM's serving loop for one guest: the guest thread's faults and the
//! wedge's requests arrive on the VMM's endpoint with the guest's badge,
//! told apart by label (docs/protocol.md). This is the seL4 half of the
//! dispatch: it receives, decodes the kernel's message into a
//! `vmm_core::event::Event`, lets `vmm_core::guest::Guest` decide, and
//! carries out the step with IPC.

use previrt_protocol::vmm_layout::{guest_badge, TIMER_BADGE, VMM_ENDPOINT_SLOT};
use previrt_sel4::{ipc, println, Message};
use vmm_core::ending::Ending;
use vmm_core::event::{Event, FaultAbi, SEL4_ABI};
use vmm_core::guest::{Guest, Step};

use crate::irq_thread::lower_priority;
use crate::platform::Sel4Platform;
use crate::shared::SHARED;

/// seL4's fault messages on x86-64, from the kernel's own constants.
const ABI: FaultAbi = SEL4_ABI;

// Event::decode looks for requests first.
const _: () = assert!(ABI.labels_below_requests());

/// Serves `guest` until it ends. While this thread waits for the next
/// message the interrupt thread may serve a timer tick of this guest
/// itself ([`SHARED`]).
pub fn serve(guest: &mut Guest<'_, Sel4Platform>) -> Ending {
    SHARED.serve(
        guest,
        || ipc::recv(VMM_ENDPOINT_SLOT),
        |guest, message| {
            Ok(match step(guest, &message) {
                Step::Reply(status, value) => {
                    SHARED.wait(|| ipc::reply_recv(VMM_ENDPOINT_SLOT, status as u64, &[value]))
                }
                // An empty reply restarts a faulting thread with its
                // registers (as the VMM may have changed them).
                Step::Resume => SHARED.wait(|| ipc::reply_recv(VMM_ENDPOINT_SLOT, 0, &[])),
                Step::Wait => SHARED.wait(|| ipc::recv(VMM_ENDPOINT_SLOT)),
                Step::End(ending) => return Err(ending),
            })
        },
    )
}

/// One message: what to do.
#[inline]
fn step(guest: &mut Guest<'_, Sel4Platform>, message: &Message) -> Step {
    // A wake-up from the interrupt thread (the bound notification): a tick
    // it left to this thread, or the end it found.
    if message.badge == TIMER_BADGE {
        let step = guest.wake();
        lower_priority();
        return step;
    }
    if message.badge != guest_badge(guest.number) {
        println!(
            "vmm-server: ignoring a message with badge {:#x} (label {})",
            message.badge,
            message.label()
        );
        return Step::Wait;
    }
    let event = Event::decode(&ABI, message.label(), message.info.length() as usize, |i| {
        message.mr(i)
    });
    guest.handle(event)
}
