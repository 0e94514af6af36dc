//! Virtual interrupts for a guest: the PIT's edges become IRQ 0 at the
//! virtual PIC, and the PIC's INTR becomes an interrupt the guest takes.
//!
//! An interrupt reaches the guest one of three ways (docs/vmm-server.md,
//! "Interrupts"):
//!
//! - **At a site.** Whenever the PIC asserts INTR the VMM sets the vCPU's
//!   `pending_any` byte. The wedge looks at it after every site it emulates
//!   and in the `sti`/`popf`/`iretq` fast paths; with virtual IF set it asks
//!   for the vector (`InterruptAck`, the acknowledge cycle) and delivers it
//!   through the guest's IDT.
//! - **By redirection.** A tick that finds the guest running its own code
//!   with IF set: the VMM stops the thread, acknowledges at the PIC, and
//!   moves the thread's rip into the wedge with the vector and the old rip
//!   in the reflection block, exactly as for an exception.
//! - **From `hlt`.** The wedge's `Halt` waits in the VMM (its reply saved)
//!   until the PIC asserts INTR.
//!
//! The VMM only looks at the vCPU while the guest thread is not running
//! (one CPU: the VMM runs, so the guest does not).

use core::mem::offset_of;

use previrt_protocol::vcpu::{PENDING_ANY_OFFSET as PENDING_ANY, VIF_OFFSET as VIF};
use previrt_protocol::{
    Reflection, Status, WedgeBoot, DEFERRED_EOI_OFFSET, NO_VECTOR, REFLECTION_OFFSET, VCPU_OFFSET,
    VCPU_PAGE_OFFSET,
};

use crate::ending::{in_wedge, Ending};
use crate::event::Event;
use crate::guest::{Guest, Step};
use crate::platform::Platform;

/// What the VMM counts about interrupts.
#[derive(Default, Clone, Copy, Debug)]
pub struct InterruptStats {
    /// Rising edges of the PIT's IRQ 0 output.
    pub pit_edges: u64,
    /// Edges that came with IRQ 0 masked at the PIC (latched as one
    /// request, as on hardware).
    pub merged: u64,
    /// The most edges ever owed at once (delivered late, not lost).
    pub most_owed: u64,
    /// Acknowledge cycles that gave the guest a vector.
    pub injected: u64,
    /// Of those, delivered by moving a running guest into the wedge.
    pub redirected: u64,
    /// Of those, asked for by the wedge at a site.
    pub at_sites: u64,
    /// `hlt`s that waited.
    pub halts: u64,
    /// EOIs the wedge deferred.
    pub deferred_eois: u64,
    /// TSC ticks the guest spent waiting in `hlt`.
    pub idle_tsc: u64,
    /// Faults the guest thread sent just before a tick redirected it
    /// ([`Guest::stale_fault`]): answered by restarting it in the wedge.
    pub stale_faults: u64,
}

/// One guest's interrupt state.
#[derive(Debug)]
pub struct Interrupts {
    /// The PIT's edges counted so far.
    edges_seen: u64,
    /// Edges counted but not yet pulsed at the PIC.
    owed: u64,
    /// The guest waits in `hlt` (its reply saved by the platform), since
    /// this cycle count.
    halted_since: Option<u64>,
    /// Guest-physical address of the wedge's `Vcpu`.
    vcpu_gpa: u64,
    /// Guest-physical address of the wedge's count of deferred EOIs.
    eoi_gpa: u64,
    /// The last redirection, until the next event: a fault the guest
    /// thread sent just before it is stale ([`Guest::stale_fault`]).
    redirected: Option<Redirection>,
    pub stats: InterruptStats,
}

/// A tick's redirection of the guest thread into the wedge.
#[derive(Clone, Copy, Debug)]
struct Redirection {
    /// The thread's rip when it was redirected (the interrupt returns there).
    rip: u64,
    /// The vector it takes.
    vector: u64,
    /// It was running a guest process (its view left for the kernel's).
    from_user: bool,
}

impl Interrupts {
    /// The interrupt state of a guest whose wedge's vCPU page is at
    /// guest-physical `vcpu_page_gpa`.
    pub const fn new(vcpu_page_gpa: u64) -> Interrupts {
        Interrupts {
            edges_seen: 0,
            owed: 0,
            halted_since: None,
            vcpu_gpa: vcpu_page_gpa + VCPU_OFFSET,
            eoi_gpa: vcpu_page_gpa + DEFERRED_EOI_OFFSET,
            redirected: None,
            stats: InterruptStats {
                pit_edges: 0,
                merged: 0,
                most_owed: 0,
                injected: 0,
                redirected: 0,
                at_sites: 0,
                halts: 0,
                deferred_eois: 0,
                idle_tsc: 0,
                stale_faults: 0,
            },
        }
    }

    /// The wedge area's vCPU page for a guest whose wedge area starts at
    /// `area_gpa`.
    pub const fn vcpu_page(area_gpa: u64) -> u64 {
        area_gpa + VCPU_PAGE_OFFSET
    }
}

impl<P: Platform> Guest<'_, P> {
    /// Brings the PIC up to guest time: one IRQ 0 pulse per PIT edge.
    ///
    /// An edge that finds the last one's request still latched at the PIC
    /// would merge with it on hardware. Under a VMM that happens far more
    /// often than on hardware — every emulated instruction stretches the
    /// guest's interrupts-off stretches, and the host can hold the whole
    /// machine back until its timer catches up — so such an edge is owed
    /// instead and pulsed once the PIC has passed the previous request to
    /// the CPU (the "delay" policy for lost ticks): a guest that counts
    /// ticks counts every one. Only with IRQ 0 masked at the PIC does an
    /// edge merge, as the guest asked.
    pub fn catch_up(&mut self) {
        let now = self.platform.now();
        self.apply_deferred_eois(now);
        let total = self.devices.pit_edges(now);
        let new = total.saturating_sub(self.irq.edges_seen);
        self.irq.edges_seen = total;
        self.irq.stats.pit_edges += new;
        for _ in 0..new {
            if self.devices.irq0_masked() {
                self.irq.stats.merged += 1;
            } else if !self.devices.irq0_requested() {
                self.devices.pulse_irq0();
            } else {
                self.irq.owed += 1;
            }
        }
        if self.irq.owed > 0 && !self.devices.irq0_requested() {
            self.irq.owed -= 1;
            self.devices.pulse_irq0();
        }
        self.irq.stats.most_owed = self.irq.stats.most_owed.max(self.irq.owed);
    }

    /// Applies the EOIs the wedge counted instead of sending (docs/protocol.md,
    /// "Interrupts"), at guest time `now`, before anything looks at the PIC.
    pub fn apply_deferred_eois(&mut self, now: u64) {
        let at = self.irq.eoi_gpa;
        let mut word = [0u8; 4];
        if self.ram.read(at, &mut word).is_err() {
            return;
        }
        let count = u32::from_le_bytes(word);
        if count == 0 {
            return;
        }
        let _ = self.ram.write(at, &0u32.to_le_bytes());
        self.irq.stats.deferred_eois += u64::from(count);
        // More than the in-service bits could clear does nothing (and a
        // guest may have written any number there).
        for _ in 0..count.min(16) {
            self.devices.write(0x20, 1, 0x20, now);
        }
    }

    /// After a guest request: the PIT follows the guest's programming, and
    /// the wedge learns whether an interrupt waits. Nothing to do unless
    /// time runs or the request `touched` the PIC or the PIT (most do not:
    /// the check would cost every port access).
    pub fn after_request(&mut self, pit_written: bool, touched: bool) {
        if pit_written {
            let period = self.devices.pit_period();
            self.platform.set_timer_period(period);
        }
        if self.platform.timer_running() || touched {
            self.catch_up();
            self.signal_waiting();
        }
    }

    /// Sets (or clears) the vCPU's `pending_any` as the PIC says: set while
    /// it asserts INTR, and while an unmasked request is latched behind one
    /// in service, which an EOI the wedge defers may release.
    fn signal_waiting(&mut self) {
        let waiting = u8::from(self.devices.interrupt_waiting() || self.devices.request_latched());
        // The wedge's memory is guest RAM the VMM checked at load.
        let _ = self.ram.write(self.irq.vcpu_gpa + PENDING_ANY, &[waiting]);
    }

    fn virtual_if(&self) -> bool {
        let mut b = [0u8];
        self.ram.read(self.irq.vcpu_gpa + VIF, &mut b).is_ok() && b[0] != 0
    }

    /// Trap-and-emulate: whether the guest was waiting in `hlt` (no longer:
    /// the caller wakes it), counting the time it waited.
    pub(crate) fn take_halted(&mut self) -> bool {
        let since = self.irq.halted_since.take();
        if let Some(since) = since {
            self.irq.stats.idle_tsc += self.platform.cycles().wrapping_sub(since);
        }
        since.is_some()
    }

    /// `InterruptAck`: the acknowledge cycle, the vector as the reply.
    pub fn interrupt_ack(&mut self) -> Step {
        self.catch_up();
        let vector = if self.devices.interrupt_waiting() {
            self.devices.acknowledge()
        } else {
            None
        };
        match vector {
            Some(v) => {
                self.irq.stats.injected += 1;
                self.irq.stats.at_sites += 1;
                Step::Reply(Status::Ok, u64::from(v))
            }
            None => Step::Reply(Status::Ok, NO_VECTOR),
        }
    }

    /// `Halt`: returns at once if an interrupt waits; otherwise the guest
    /// waits (its reply saved) until one does.
    pub fn halt(&mut self) -> Step {
        self.catch_up();
        if self.devices.interrupt_waiting() {
            return Step::Reply(Status::Ok, 0);
        }
        if !self.virtual_if() {
            return Step::End(Ending::Failed(
                "it halted with interrupts disabled: nothing can wake it",
            ));
        }
        if !self.platform.timer_running() {
            return Step::End(Ending::Failed(
                "it halted with no interrupt source running: nothing can wake it",
            ));
        }
        if self.platform.save_reply().is_err() {
            return Step::End(Ending::Failed("saving the halted guest's reply failed"));
        }
        self.irq.stats.halts += 1;
        self.irq.halted_since = Some(self.platform.cycles());
        Step::Wait
    }

    /// A real timer tick (the interrupt thread woke the VMM): the guest
    /// gets what is due.
    pub fn on_tick(&mut self) -> Option<Ending> {
        self.catch_up();
        // Always, not only when the PIC asserts INTR: a tick that comes
        // while the guest's handler of the last one runs is latched behind
        // it, and the wedge must see it at the handler's `iretq` (its EOI is
        // deferred, so only the VMM's next look at the PIC releases it).
        // Without this the tick waited for the guest's next request, or the
        // next real tick — up to a period late, then two back to back.
        self.signal_waiting();
        if !self.devices.interrupt_waiting() {
            return None;
        }
        // Trap-and-emulate: no wedge; the VMM delivers it.
        if self.trap.is_some() {
            return self.trap_tick();
        }
        if let Some(since) = self.irq.halted_since.take() {
            self.irq.stats.idle_tsc += self.platform.cycles().wrapping_sub(since);
            // The saved reply restarts the wedge, which takes the interrupt.
            self.platform.answer_saved();
            return None;
        }
        if !self.virtual_if() || self.reflector.is_none() {
            // Taken when the guest sets IF again (the wedge sees pending_any).
            return None;
        }
        self.redirect()
    }

    /// Moves the running guest into the wedge to take the interrupt the PIC
    /// asserts, unless it is inside the wedge (which takes it at its next
    /// look at `pending_any`).
    fn redirect(&mut self) -> Option<Ending> {
        // Not stopped: stopping and restarting a thread whose last kernel
        // entry was a system call makes it repeat the call. The guest
        // cannot run meanwhile (the VMM has the only CPU).
        let Ok(rip) = self.platform.guest_rip() else {
            return Some(Ending::Failed("reading the guest's registers failed"));
        };
        let reflector = self.reflector?;
        // The fast paths' range, as the wedge wrote it into its boot block
        // (guest memory: a guest that changes it only hurts itself).
        let begin = self
            .ram
            .read_u64(reflector.boot_block_gpa + offset_of!(WedgeBoot, fast_begin) as u64)
            .unwrap_or(0);
        let end = self
            .ram
            .read_u64(reflector.boot_block_gpa + offset_of!(WedgeBoot, fast_end) as u64)
            .unwrap_or(0);
        let in_fast_path = (begin..end).contains(&rip);
        if in_wedge(rip) && !in_fast_path {
            // In the wedge's general path, which looks at pending_any before
            // it returns to the guest.
            return None;
        }
        let vector = self.devices.acknowledge()?;
        // The acknowledge cleared the request: an owed edge is pulsed now,
        // latched behind this one, and `pending_any` tells the wedge, which
        // takes it right after the guest's handler (as on the InterruptAck
        // path, where `after_request` does the same).
        self.catch_up();
        self.signal_waiting();
        self.irq.stats.injected += 1;
        self.irq.stats.redirected += 1;
        let entry = match self.reflection(rip, u64::from(vector), 0, 0) {
            Ok(entry) => entry,
            Err(ending) => return Some(ending),
        };
        // A guest process: back into the kernel view first (the wedge is
        // in no user view), to enter the guest kernel from CPL 3.
        let from_user = self.in_user_mode();
        if from_user {
            if let Some(v) = self.views.as_deref_mut() {
                v.stats.interrupts += 1;
            }
            if let Err(ending) = self.leave_user() {
                return Some(ending);
            }
        }
        // The interrupt thread may serve this tick while the main thread
        // holds a fault the guest sent just before; it is stale once the
        // thread is redirected.
        self.irq.redirected = Some(Redirection {
            rip,
            vector: u64::from(vector),
            from_user,
        });
        // Writing rip moves a running (or restarting) thread's next
        // instruction, no stop needed; a thread still waiting for the
        // VMM's reply to a fault (the interrupt thread may serve a tick
        // just before the main thread replies) restarts there when the
        // reply comes. Never `resume`: that would cancel the waiting.
        match self.platform.set_guest_rip(entry) {
            Ok(()) => None,
            Err(_) => Some(Ending::Failed("redirecting the guest thread failed")),
        }
    }

    /// Whether `event` is a fault the guest thread sent just before a tick
    /// redirected it into the wedge (the interrupt thread served the tick
    /// while the main thread held the fault, unread): the thread now takes
    /// the interrupt first, and meets the instruction again when the
    /// interrupt handler returns to it. Answering the fault instead (a #PF
    /// reflected, say) would overwrite the interrupt's reflection block:
    /// the vector acknowledged at the PIC would never reach the guest, and
    /// with no handler to end it, its line would stay in service for good.
    ///
    /// Only the first event after a redirection can be stale, and only a
    /// fault at the rip the thread was redirected from. A fault at that rip
    /// met afresh (the handler came back to the instruction with no event
    /// between) is taken for stale once: restarted, it faults again.
    /// A trap (`int3`'s #BP) reports the rip after its instruction: the
    /// interrupt is then made to return to the `int3`, which runs again (as
    /// if the tick had come just before it). A trap with no `int3` there
    /// (a single step's #DB) is answered as the guest's, and the redirected
    /// interrupt is then lost, as before this check: no guest we run
    /// single-steps (docs/vmm-server.md, "Interrupts").
    pub(crate) fn stale_fault(&mut self, event: &Event) -> bool {
        let Some(redirected) = self.irq.redirected.take() else {
            return false;
        };
        let (rip, trap) = match *event {
            Event::PageFault { rip, .. } | Event::UnknownSyscall { rip, .. } => (rip, false),
            Event::Exception { rip, vector, .. } => (rip, matches!(vector, 1 | 3 | 4)),
            _ => return false,
        };
        if rip != redirected.rip {
            return false;
        }
        if trap {
            let Some(int3) = self.int3_before(rip) else {
                return false;
            };
            if self.reflection(int3, redirected.vector, 0, 0).is_err() {
                return false;
            }
        }
        self.irq.stats.stale_faults += 1;
        if redirected.from_user {
            if let Some(v) = self.views.as_deref_mut() {
                v.stats.stale_faults += 1;
            }
        }
        true
    }

    /// Where the `int3` (`cc`, or `cd 03`) that ends just before `rip` is,
    /// if one does, read through the guest's tables.
    fn int3_before(&self, rip: u64) -> Option<u64> {
        let byte = |va: u64| self.guest_byte(va);
        let one = rip.wrapping_sub(1);
        let two = rip.wrapping_sub(2);
        if byte(one) == Some(0xcc) {
            Some(one)
        } else if byte(two) == Some(0xcd) && byte(one) == Some(0x03) {
            Some(two)
        } else {
            None
        }
    }

    /// Writes the reflection block (docs/protocol.md) and returns the
    /// wedge's entry for it, checked to lie in the wedge's code.
    pub fn reflection(
        &mut self,
        rip: u64,
        vector: u64,
        error: u64,
        cr2: u64,
    ) -> Result<u64, Ending> {
        let Some(reflector) = self.reflector else {
            return Err(Ending::Failed("no wedge to reflect into"));
        };
        let block = Reflection {
            vector,
            error,
            cr2,
            rip,
        };
        let at = reflector.boot_block_gpa + REFLECTION_OFFSET;
        let entry = self
            .ram
            .read_u64(reflector.boot_block_gpa + offset_of!(WedgeBoot, reflect_entry) as u64);
        let (Ok(()), Ok(entry)) = (self.ram.write(at, &block.to_bytes()), entry) else {
            return Err(Ending::Failed(
                "the wedge's reflection block is out of guest RAM",
            ));
        };
        // The boot block is writable wedge memory, so the guest can change
        // the entry: anywhere but the wedge's code, the thread would fault
        // again at once, and be reflected again, forever.
        if !(reflector.code.0..reflector.code.1).contains(&entry) {
            return Err(Ending::ReflectEntry(entry));
        }
        Ok(entry)
    }
}
