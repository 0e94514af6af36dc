//! Trap-and-emulate for a guest without a wedge (docs/trap-and-emulate.md):
//! each sensitive instruction that faults at user level arrives as the
//! guest thread's fault, and the VMM emulates it with the wedge's own
//! decoder and emulator ([`crate::trap`] over `wedge_l4`) on a virtual CPU
//! it keeps ([`TrapCpu`]), the guest's registers read from and written back
//! through the [`Platform`]. Interrupts are delivered through the guest's
//! virtual IDT by the VMM itself. The emulator's requests are served by the
//! same dispatch that serves a wedge's.

use afterburn_format::Kind;
use previrt_protocol::{Request, Status, STRING_BYTES};
use wedge_l4::backend::{Backend, BackendError, ShutdownReason};
use wedge_l4::memory::GuestRegs;
use wedge_l4::vcpu::Vcpu;

use crate::ending::Ending;
use crate::guest::{Guest, Step};
use crate::platform::Platform;
use crate::trap::{
    decode_fault, handle_decoded, take_interrupt, Decoded, Fault, GuestPages, Handled, TrapHost,
};
use crate::walk::ADDR;

/// The virtual CPU the VMM keeps for a guest without a wedge, and what it
/// counts.
#[derive(Debug)]
pub struct TrapCpu {
    pub vcpu: Vcpu,
    /// Guest-physical address of the vCPU page's `vif` byte: the VMM's
    /// interrupt code reads virtual IF there, so it mirrors `vcpu.vif`.
    pub vif_gpa: u64,
    /// Instructions emulated, by kind number.
    pub emulated: [u64; 64],
    /// Exceptions delivered into the guest, by vector (< 32).
    pub exceptions: [u64; 32],
    /// External interrupts delivered.
    pub interrupts: u64,
    /// An interrupt was delivered into the guest's registers (at a tick)
    /// since the VMM last read them at a fault: a fault message may be
    /// older than that delivery, so the next fault reads the registers.
    delivered_at_tick: bool,
    /// Faults served with the message's rip, rsp and rflags alone.
    pub frame_only: u64,
}

impl TrapCpu {
    pub fn new(cr3: u64, vif_gpa: u64) -> TrapCpu {
        TrapCpu {
            vcpu: Vcpu::at_pv_entry(cr3),
            vif_gpa,
            emulated: [0; 64],
            exceptions: [0; 32],
            interrupts: 0,
            delivered_at_tick: false,
            frame_only: 0,
        }
    }

    fn count(&mut self, handled: Handled) {
        let kind = match handled {
            Handled::Emulated(kind) => Some(kind),
            Handled::Delivered { vector, emulated } => {
                let software = matches!(emulated, Some(Kind::Int | Kind::Int3 | Kind::Into));
                match self.exceptions.get_mut(usize::from(vector)) {
                    Some(n) => *n += 1,
                    None if software => {}
                    None => self.interrupts += 1,
                }
                emulated
            }
            Handled::Halted => Some(Kind::Hlt),
        };
        if let Some(n) = kind.and_then(|k| self.emulated.get_mut(usize::from(k.number()))) {
            *n += 1;
        }
    }
}

/// The wedge's `Backend` for the emulator running in the VMM: each method
/// is the request the wedge would have sent, served by the same code.
struct Host<'g, 'a, P: Platform> {
    guest: &'g mut Guest<'a, P>,
    /// How the run ends, if a request ended it.
    ending: Option<Ending>,
    /// The emulator asked to stop the guest.
    shutdown: Option<ShutdownReason>,
    /// Serving a timer tick, not a fault.
    at_tick: bool,
}

impl<P: Platform> Host<'_, '_, P> {
    fn request(&mut self, request: Request) -> Result<u64, BackendError> {
        if self.ending.is_some() {
            return Err(BackendError::Stopped);
        }
        match self.guest.request(request) {
            Step::Reply(Status::Ok, value) => Ok(value),
            Step::End(ending) => {
                self.ending = Some(ending);
                Err(BackendError::Stopped)
            }
            _ => Err(BackendError::Refused),
        }
    }
}

impl<P: Platform> Backend for Host<'_, '_, P> {
    fn port_in(&mut self, port: u16, size: u8) -> Result<u32, BackendError> {
        self.request(Request::PortIn { port, size })
            .map(|v| v as u32)
    }
    fn port_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), BackendError> {
        self.request(Request::PortOut { port, size, value })
            .map(drop)
    }
    fn port_out_string(&mut self, port: u16, size: u8, data: &[u8]) -> Result<(), BackendError> {
        // In batches of whole elements that fit one request.
        let step = STRING_BYTES - STRING_BYTES % usize::from(size.max(1));
        for chunk in data.chunks(step) {
            let mut buf = [0u8; STRING_BYTES];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.request(Request::PortOutString {
                port,
                size,
                len: chunk.len() as u8, // at most STRING_BYTES
                data: buf,
            })?;
        }
        Ok(())
    }
    fn load_cr3(&mut self, value: u64) -> Result<(), BackendError> {
        // As the VMM checks the wedge's request: a root outside guest RAM
        // would fail every walk.
        if !self.guest.ram.contains(value & ADDR, 4096) {
            self.ending = Some(Ending::Failed(
                "it loaded CR3 with a root outside guest RAM",
            ));
            return Err(BackendError::Stopped);
        }
        self.request(Request::LoadCr3 { value }).map(drop)
    }
    fn invlpg(&mut self, address: u64) -> Result<(), BackendError> {
        self.request(Request::Invlpg { address }).map(drop)
    }
    fn write_cr0(&mut self, value: u64) -> Result<(), BackendError> {
        self.request(Request::WriteCr0 { value }).map(drop)
    }
    fn write_cr4(&mut self, value: u64) -> Result<(), BackendError> {
        self.request(Request::WriteCr4 { value }).map(drop)
    }
    fn halt(&mut self, _: &Vcpu) -> Result<(), BackendError> {
        // `vmm_core::trap` never asks: hlt waits in the serving loop.
        Err(BackendError::Refused)
    }
    fn set_fs_base(&mut self, base: u64) -> Result<(), BackendError> {
        self.request(Request::SetFsBase { base }).map(drop)
    }
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        self.guest.platform.cpuid(leaf, subleaf)
    }
    fn rdtsc(&mut self) -> u64 {
        self.guest.platform.cycles()
    }
    fn shutdown(&mut self, reason: ShutdownReason) {
        // The emulator says so only with an error of its own (a triple
        // fault), which states more: the VMM ends the guest with that.
        self.shutdown = Some(reason);
    }
}

impl<P: Platform> TrapHost for Host<'_, '_, P> {
    fn interrupt_waiting(&mut self) -> bool {
        self.guest.catch_up();
        self.guest.devices.interrupt_waiting()
    }
    fn acknowledge(&mut self) -> Option<u8> {
        self.guest.catch_up();
        let vector = self.guest.devices.acknowledge();
        if vector.is_some() {
            let stats = &mut self.guest.irq.stats;
            stats.injected += 1;
            // At a tick into the running guest, as the wedge's redirection;
            // else after an instruction, as the wedge's sites.
            if self.at_tick {
                stats.redirected += 1;
            } else {
                stats.at_sites += 1;
            }
        }
        // The acknowledge cleared the request: an owed edge is pulsed now.
        self.guest.catch_up();
        vector
    }
}

impl<'a, P: Platform> Guest<'a, P> {
    /// A fault of a guest without a wedge: emulated or delivered into the
    /// guest, its registers written back; `Step::Resume` restarts it.
    /// `rip` is where the fault message says the fault happened; `frame`
    /// its rip, rsp and rflags, if it carries them (a `UserException`).
    pub fn trap(&mut self, fault: Fault, rip: u64, frame: Option<[u64; 3]>) -> Step {
        let Some(cpu) = self.trap.take() else {
            return Step::End(Ending::Failed("no virtual CPU for trap-and-emulate"));
        };
        let mut mem = GuestPages::new(self.ram, self.cr3);
        let decoded = decode_fault(fault, &mut mem, rip);
        if let Some([rip, rsp, rflags]) = frame {
            if !cpu.delivered_at_tick && decoded.frame_only() {
                cpu.frame_only += 1;
                return self.trap_frame(cpu, fault, decoded, rip, rsp, rflags);
            }
        }
        self.trap_with(cpu, fault, decoded, rip)
    }

    /// [`Guest::trap`] for a fault that needs no general register but rsp:
    /// no registers read, only rip, rsp and rflags written back.
    fn trap_frame(
        &mut self,
        cpu: &'a mut TrapCpu,
        fault: Fault,
        decoded: Decoded,
        rip: u64,
        rsp: u64,
        rflags: u64,
    ) -> Step {
        let mut regs = GuestRegs {
            rip,
            rflags,
            ..GuestRegs::default()
        };
        regs.set_rsp(rsp);
        let handled = match self.emulate(cpu, fault, decoded, &mut regs) {
            Ok(handled) => handled,
            Err(ending) => return Step::End(ending),
        };
        if self
            .platform
            .write_frame(regs.rip, regs.rsp(), regs.rflags)
            .is_err()
        {
            return Step::End(Ending::Failed("writing the guest's registers failed"));
        }
        self.after_trap(handled)
    }

    /// Runs `vmm_core::trap::handle_decoded` on `regs`; the ending if the
    /// run cannot go on. Puts `cpu` back.
    fn emulate(
        &mut self,
        cpu: &'a mut TrapCpu,
        fault: Fault,
        decoded: Decoded,
        regs: &mut GuestRegs,
    ) -> Result<Handled, Ending> {
        let (ram, cr3) = (self.ram, self.cr3);
        let mut mem = GuestPages::new(ram, cr3);
        let mut host = Host {
            guest: self,
            ending: None,
            shutdown: None,
            at_tick: false,
        };
        let result = handle_decoded(fault, decoded, &mut cpu.vcpu, regs, &mut mem, &mut host);
        let (ending, shutdown) = (host.ending.take(), host.shutdown);
        let _ = self.ram.write(cpu.vif_gpa, &[cpu.vcpu.vif]);
        let outcome = match (ending, result, shutdown) {
            // A request ended the run (the exit port, a failed mapping).
            (Some(ending), _, _) => Err(ending),
            (None, Err(e), _) => Err(Ending::Trap(e)),
            (None, Ok(_), Some(reason)) => Err(Ending::Shutdown(reason as u64)),
            (None, Ok(handled), None) => Ok(handled),
        };
        if let Ok(handled) = outcome {
            cpu.count(handled);
        }
        self.trap = Some(cpu);
        outcome
    }

    /// What follows a fault served: the guest restarts, or waits in `hlt`.
    fn after_trap(&mut self, handled: Handled) -> Step {
        match handled {
            // Waits (its reply saved) until an interrupt comes, unless one
            // came meanwhile: then it goes on after the hlt (virtual IF is
            // clear, or `handle` would have delivered it).
            Handled::Halted => match self.halt() {
                Step::Reply(..) => Step::Resume,
                other => other,
            },
            _ => Step::Resume,
        }
    }

    fn trap_with(
        &mut self,
        cpu: &'a mut TrapCpu,
        fault: Fault,
        decoded: Decoded,
        rip: u64,
    ) -> Step {
        cpu.delivered_at_tick = false;
        let Ok((mut regs, tls_base)) = self.platform.read_registers() else {
            self.trap = Some(cpu);
            return Step::End(Ending::Failed("reading the guest's registers failed"));
        };
        if regs.rip != rip {
            // The interrupt thread delivered an interrupt while this fault
            // waited to be received: the guest now starts its handler, whose
            // frame returns to the faulting instruction, which faults again.
            self.trap = Some(cpu);
            return Step::Resume;
        }
        let handled = match self.emulate(cpu, fault, decoded, &mut regs) {
            Ok(handled) => handled,
            Err(ending) => return Step::End(ending),
        };
        if self.platform.write_registers(&regs, tls_base).is_err() {
            return Step::End(Ending::Failed("writing the guest's registers failed"));
        }
        self.after_trap(handled)
    }

    /// A timer tick for a guest without a wedge, with an interrupt
    /// waiting: delivered now through the guest's IDT if virtual IF is set
    /// (a halted guest is woken into its handler), else when the guest sets
    /// IF again (its `sti` or `iretq` faults).
    pub fn trap_tick(&mut self) -> Option<Ending> {
        let cpu = self.trap.take()?;
        self.trap_tick_with(cpu)
    }

    fn trap_tick_with(&mut self, cpu: &'a mut TrapCpu) -> Option<Ending> {
        if !cpu.vcpu.interrupts_enabled() {
            self.trap = Some(cpu);
            return None;
        }
        let halted = self.take_halted();
        // Not stopped: the thread is preempted (the VMM has the only CPU),
        // or waits for a reply (to its hlt, or to a fault this VMM has
        // written its registers for already); the reply restarts it with
        // what is written here.
        let Ok((mut regs, _)) = self.platform.read_registers() else {
            self.trap = Some(cpu);
            return Some(Ending::Failed("reading the guest's registers failed"));
        };
        let (ram, cr3) = (self.ram, self.cr3);
        let mut mem = GuestPages::new(ram, cr3);
        let mut host = Host {
            guest: self,
            ending: None,
            shutdown: None,
            at_tick: true,
        };
        let taken = take_interrupt(&mut cpu.vcpu, &mut regs, &mut mem, &mut host);
        let ending = host.ending.take();
        let _ = self.ram.write(cpu.vif_gpa, &[cpu.vcpu.vif]);
        if taken.is_ok_and(|v| v.is_some()) {
            cpu.delivered_at_tick = true;
            cpu.interrupts += 1;
        }
        self.trap = Some(cpu);
        if let Some(ending) = ending {
            return Some(ending);
        }
        match taken {
            Err(e) => return Some(Ending::Trap(e)),
            Ok(Some(_)) => {
                // Delivery changes no other register.
                if self
                    .platform
                    .write_frame(regs.rip, regs.rsp(), regs.rflags)
                    .is_err()
                {
                    return Some(Ending::Failed("writing the guest's registers failed"));
                }
            }
            Ok(None) => {}
        }
        if halted {
            // An empty reply: a fault's reply restarts the thread with the
            // registers written above (a longer one would overwrite them).
            self.platform.resume_saved();
        }
        None
    }
}
