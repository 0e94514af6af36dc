//! The VMM's serving loop for one guest: the guest thread's faults and the
//! wedge's requests arrive on the VMM's endpoint with the guest's badge,
//! told apart by label (docs/protocol.md).

use previrt_protocol::vmm_layout::{
    guest_badge, GUEST_ENDPOINT_SLOT, TIMER_BADGE, VMM_ENDPOINT_SLOT,
};
use previrt_protocol::{shutdown_reason, Request, Status, FIRST_LABEL, WEDGE_BASE};
use previrt_sel4::sys::bitfield::{
    seL4_Fault_CapFault, seL4_Fault_UnknownSyscall, seL4_Fault_UserException, seL4_Fault_VMFault,
};
use previrt_sel4::sys::constants::{
    seL4_CapFault_Addr, seL4_CapFault_IP, seL4_CapFault_InRecvPhase,
    seL4_CapFault_LookupFailureType, seL4_UnknownSyscall_FaultIP, seL4_UnknownSyscall_Length,
    seL4_UnknownSyscall_Syscall, seL4_UserException_Code, seL4_UserException_FLAGS,
    seL4_UserException_FaultIP, seL4_UserException_Length, seL4_UserException_Number,
    seL4_UserException_SP, seL4_VMFault_Addr, seL4_VMFault_FSR, seL4_VMFault_IP,
    seL4_VMFault_Length,
};
use previrt_sel4::{ipc, println, Word};

use crate::devices::Devices;
use crate::guest::WEDGE_AREA;
use crate::interrupts::{lower_priority, receive, Interrupts};
use crate::ram::Ram;
use crate::shared::SHARED;
use crate::sites::Sites;
use crate::vtlb::{walk_keeping_upper, Translation, Vtlb, ADDR};

/// How a guest's run ended.
pub enum Ending {
    /// It wrote the exit port: QEMU's exit status 2V+1.
    Exited(u64),
    /// It reached an instruction only the wedge can run, without a wedge.
    SensitiveInstruction {
        rip: u64,
        vector: u64,
        site_kind: Option<&'static str>,
    },
    /// Its page tables do not map an address it used (the wedge will
    /// reflect this #PF into the guest).
    UnmappedAccess { rip: u64, addr: u64 },
    /// The wedge asked to stop the guest.
    Shutdown(u64),
    /// The VMM could not serve it.
    Failed(&'static str),
    /// It invoked (or received on) a capability slot its CSpace cannot
    /// resolve: seL4 reported a capability fault.
    CapFault {
        slot: u64,
        rip: u64,
        receiving: bool,
    },
    /// It made a system call seL4 does not know.
    UnknownSyscall { number: u64, rip: u64 },
    /// It wrote to the wedge's read-only pages at `WEDGE_BASE`.
    WedgeCodeWrite { addr: u64, rip: u64 },
    /// It wrote to the wedge's memory through its own page tables.
    WedgeAliasWrite { addr: u64, gpa: u64, rip: u64 },
    /// The entry the wedge gave for reflections no longer points into its
    /// code: its boot block was overwritten.
    ReflectEntry(u64),
    /// Trap-and-emulate (trap.rs) could not go on.
    Trap(vmm_core::trap::TrapError),
}

/// Whether `va` is in the wedge's memory in the guest's address space:
/// the wedge's own code faulting, not the guest's.
pub fn in_wedge(va: u64) -> bool {
    (WEDGE_BASE..WEDGE_BASE + WEDGE_AREA).contains(&va)
}

/// The reason a run ended, as the VMM states it.
impl core::fmt::Display for Ending {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Ending::Exited(status) => write!(f, "exited with status {status}"),
            Ending::SensitiveInstruction {
                rip,
                vector,
                site_kind,
            } => {
                write!(f, "exception {vector} at {rip:#x}")?;
                match site_kind {
                    Some(kind) => write!(f, ", a `{kind}` site"),
                    None if in_wedge(rip) => f.write_str(", in the wedge"),
                    None => Ok(()),
                }
            }
            Ending::UnmappedAccess { rip, addr } => write!(
                f,
                "touched {addr:#x} at {rip:#x}, which its page tables do not map"
            ),
            Ending::Shutdown(reason) => write!(
                f,
                "the wedge stopped the guest: {} (reason {reason})",
                shutdown_reason(reason)
            ),
            Ending::Failed(why) => f.write_str(why),
            Ending::CapFault {
                slot,
                rip,
                receiving: false,
            } => write!(
                f,
                "capability fault: it invoked slot {slot} at {rip:#x}; its CSpace holds only its endpoint (slot {GUEST_ENDPOINT_SLOT})"
            ),
            Ending::CapFault {
                slot,
                rip,
                receiving: true,
            } => write!(
                f,
                "capability fault: it tried to receive on slot {slot} at {rip:#x}; its only capability, the endpoint in slot {GUEST_ENDPOINT_SLOT}, may not receive"
            ),
            Ending::UnknownSyscall { number, rip } => write!(
                f,
                "unknown seL4 system call {} at {rip:#x}",
                number as i64
            ),
            Ending::WedgeCodeWrite { addr, rip } => write!(
                f,
                "it wrote to the wedge's read-only code at {addr:#x}, from {rip:#x}"
            ),
            Ending::WedgeAliasWrite { addr, gpa, rip } => write!(
                f,
                "it wrote to the wedge's memory (guest-physical {gpa:#x}) through its own page tables at {addr:#x}, from {rip:#x}"
            ),
            Ending::Trap(e) => write!(f, "{e}"),
            Ending::ReflectEntry(entry) => write!(
                f,
                "the wedge's reflect entry {entry:#x} is outside its code: its boot block was overwritten"
            ),
        }
    }
}

#[derive(Default, Clone, Copy)]
pub struct Stats {
    /// VM faults of the guest thread (each either mapped or reflected).
    pub page_faults: u64,
    /// User exceptions of the guest thread, by vector (reflected).
    pub user_exceptions: [u64; 32],
    pub requests: [u64; 11],
    pub invalid_requests: u64,
    /// `int $n` through seL4's user-level gates, which seL4 reports as
    /// unknown system calls (reflected as #GP, also counted there).
    pub software_interrupts: u64,
    pub reflected: u64,
    /// Exceptions reflected, by vector (VM faults the guest's tables do
    /// not allow are #PF, 14).
    pub reflected_by_vector: [u64; 32],
}

pub struct Guest<'a> {
    pub number: u64,
    pub ram: &'a Ram,
    pub cr3: u64,
    pub vtlb: &'a mut Vtlb,
    pub sites: &'a Sites,
    pub devices: &'a mut Devices,
    pub stats: Stats,
    /// With a wedge: how to reflect exceptions into the guest.
    pub reflector: Option<Reflector>,
    /// Its timer and interrupt state.
    pub irq: Interrupts,
    /// An end the interrupt thread found while serving a tick.
    pub ending: Option<Ending>,
    /// Trap-and-emulate (trap.rs): the virtual CPU of a guest run without
    /// a wedge, whose faults the VMM emulates.
    pub trap: Option<&'a mut crate::trap::TrapCpu>,
}

/// A reply to send, or none yet, or the end of the run.
pub enum Step {
    Reply(Status, Word),
    Resume,
    /// No reply now (a halted guest's is saved): receive the next message.
    Wait,
    End(Ending),
}

/// Where the wedge takes reflected exceptions: its boot block (with the
/// entry the wedge wrote into it) in guest RAM; and the wedge's memory,
/// which the guest may not write.
#[derive(Clone, Copy)]
pub struct Reflector {
    /// Guest-physical address of the wedge's boot block.
    pub boot_block_gpa: u64,
    /// Guest-physical start of the wedge's memory (`WEDGE_AREA` bytes).
    pub area_gpa: u64,
    /// The wedge's code in the guest's address space, `[start, end)`.
    pub code: (u64, u64),
}

impl Guest<'_> {
    /// Serves the guest until it ends. While this thread waits for the
    /// next message the interrupt thread may serve a timer tick of this
    /// guest itself ([`SHARED`]).
    pub fn serve(&mut self) -> Ending {
        SHARED.serve(
            self,
            || ipc::recv(VMM_ENDPOINT_SLOT),
            |this, message| {
                Ok(match this.handle(message) {
                    Step::Reply(status, value) => {
                        SHARED.wait(|| ipc::reply_recv(VMM_ENDPOINT_SLOT, status as u64, &[value]))
                    }
                    // An empty reply restarts a faulting thread with its
                    // registers (as the VMM may have changed them).
                    Step::Resume => SHARED.wait(|| ipc::reply_recv(VMM_ENDPOINT_SLOT, 0, &[])),
                    Step::Wait => SHARED.wait(receive),
                    Step::End(ending) => return Err(ending),
                })
            },
        )
    }

    /// One message: what to answer.
    #[allow(non_upper_case_globals)] // the fault labels keep the kernel's names
    fn handle(&mut self, message: previrt_sel4::Message) -> Step {
        let badge = guest_badge(self.number);
        {
            // A wake-up from the interrupt thread (the bound notification):
            // a tick it left to this thread, or the end it found.
            if message.badge == TIMER_BADGE {
                let ending = self.ending.take().or_else(|| self.on_tick());
                lower_priority();
                return match ending {
                    Some(ending) => Step::End(ending),
                    None => Step::Wait,
                };
            }
            if message.badge != badge {
                println!(
                    "vmm-server: ignoring a message with badge {:#x} (label {})",
                    message.badge,
                    message.label()
                );
                return Step::Wait;
            }
            // The kernel sends each fault with its fixed length (a capability
            // fault: at least up to the lookup failure's type). A message
            // with a fault's label and another length can only be the
            // guest's own call: it is refused like any invalid request.
            let length = message.info.length();
            let step = match message.label() {
                seL4_Fault_VMFault if length == seL4_VMFault_Length => {
                    let rip = message.mr(seL4_VMFault_IP as usize);
                    let addr = message.mr(seL4_VMFault_Addr as usize);
                    let write = message.mr(seL4_VMFault_FSR as usize) & 2 != 0;
                    // Every page of the wedge is mapped: a fault there is
                    // a write to its read-only code.
                    if write && self.reflector.is_some() && in_wedge(addr) {
                        Step::End(Ending::WedgeCodeWrite { addr, rip })
                    } else {
                        self.page_fault(rip, addr, write)
                    }
                }
                seL4_Fault_UserException if length == seL4_UserException_Length => {
                    let rip = message.mr(seL4_UserException_FaultIP as usize);
                    let vector = message.mr(seL4_UserException_Number as usize);
                    match self.reflector {
                        // Trap-and-emulate (trap.rs): emulated or delivered.
                        None if self.trap.is_some() && vector < 32 => {
                            self.stats.user_exceptions[vector as usize] += 1;
                            let error = message.mr(seL4_UserException_Code as usize);
                            let vector = vector as u8; // < 32
                            let frame = [
                                rip,
                                message.mr(seL4_UserException_SP as usize),
                                message.mr(seL4_UserException_FLAGS as usize),
                            ];
                            let fault = vmm_core::trap::Fault::Exception { vector, error };
                            self.trap(fault, rip, Some(frame))
                        }
                        // The guest's own exception (#UD, #DE, ...): into
                        // the guest, through the wedge.
                        Some(_) if !in_wedge(rip) && vector < 32 => {
                            self.stats.user_exceptions[vector as usize] += 1;
                            let code = message.mr(seL4_UserException_Code as usize);
                            self.reflect(rip, vector, code, 0)
                        }
                        _ => Step::End(Ending::SensitiveInstruction {
                            rip,
                            vector,
                            site_kind: self.sites.kind_at(rip),
                        }),
                    }
                }
                // No #UD can be reflected for an unknown system call: seL4
                // keeps no stack pointer across `syscall`, so the guest's
                // stack is unknown. (The guest kernel never needs the
                // instruction: seL4 is the wedge's business.) But an
                // `int $n` through a gate seL4 leaves open to user level
                // comes as one too, with the whole frame saved: it gets
                // the #GP every other `int $n` gets.
                seL4_Fault_UnknownSyscall if length == seL4_UnknownSyscall_Length => {
                    let number = message.mr(seL4_UnknownSyscall_Syscall as usize);
                    let rip = message.mr(seL4_UnknownSyscall_FaultIP as usize);
                    match self.software_interrupt(number, rip) {
                        // Trap-and-emulate (trap.rs): the #GP decodes `int $n`.
                        Some(n) if self.trap.is_some() => {
                            self.stats.user_exceptions[13] += 1;
                            self.stats.software_interrupts += 1;
                            let error = n << 3 | 2;
                            let fault = vmm_core::trap::Fault::Exception { vector: 13, error };
                            self.trap(fault, rip, None)
                        }
                        Some(n) if self.reflector.is_some() && !in_wedge(rip) => {
                            self.stats.user_exceptions[13] += 1;
                            self.stats.software_interrupts += 1;
                            self.reflect(rip, 13, n << 3 | 2, 0)
                        }
                        _ => Step::End(Ending::UnknownSyscall { number, rip }),
                    }
                }
                // The guest's only capability is its endpoint; a call on
                // any other slot cannot be answered, and restarting the
                // thread would repeat it.
                seL4_Fault_CapFault if length > seL4_CapFault_LookupFailureType => {
                    Step::End(Ending::CapFault {
                        slot: message.mr(seL4_CapFault_Addr as usize),
                        rip: message.mr(seL4_CapFault_IP as usize),
                        receiving: message.mr(seL4_CapFault_InRecvPhase as usize) != 0,
                    })
                }
                label if label >= FIRST_LABEL => {
                    let mr = [message.mr(0), message.mr(1), message.mr(2), message.mr(3)];
                    match Request::decode(label, length as usize, mr) {
                        // The protocol cannot know the size of guest RAM;
                        // a root outside it would fail every walk.
                        Ok(Request::LoadCr3 { value }) if !self.ram.contains(value & ADDR, 4096) => {
                            self.refuse(format_args!(
                                "LoadCr3 {value:#x} is outside guest RAM ({:#x} bytes)",
                                self.ram.size()
                            ))
                        }
                        Ok(request) => self.request(request),
                        Err(e) => self.refuse(format_args!("{e}")),
                    }
                }
                other => self.refuse(format_args!(
                    "label {other:#x} with {length} message registers is neither a request nor a fault"
                )),
            };
            step
        }
    }

    /// Whether an unknown system call `number` at `rip` is in fact an
    /// `int $n` (`cd n`) through one of seL4's user-level gates (vectors
    /// 158..=254 on pc99): seL4 then reports the number `n << 24` with
    /// eax's low 24 bits, as a sign-extended 32-bit value, at the `int`.
    /// Returns n. A `syscall` is told apart by its bytes (`0f 05`).
    fn software_interrupt(&self, number: u64, rip: u64) -> Option<u64> {
        let n = (number >> 24) & 0xff;
        if number as u32 as i32 as i64 as u64 != number || n < 0x80 {
            return None;
        }
        let byte = |va: u64| -> Option<u8> {
            let t = vmm_core::walk::walk(self.ram, self.cr3, va).ok()?;
            let mut b = [0u8];
            self.ram.read(t.gpa + (va & 0xfff), &mut b).ok()?;
            Some(b[0])
        };
        (byte(rip)? == 0xcd && u64::from(byte(rip.wrapping_add(1))?) == n).then_some(n)
    }

    fn page_fault(&mut self, rip: u64, addr: u64, write: bool) -> Step {
        self.stats.page_faults += 1;
        let walked = walk_keeping_upper(self.ram, self.cr3, addr);
        match walked.result {
            Ok(t) if self.wedge_memory(t.gpa) => self.wedge_alias(rip, addr, t, write),
            Ok(t) if t.writable || !write => match self.vtlb.map(addr, t, walked.upper) {
                // Resume the guest (or the wedge) where it faulted.
                Ok(()) => Step::Resume,
                Err(e) => {
                    println!("vmm-server: mapping {addr:#x} for the guest failed: {e:?}");
                    Step::End(Ending::Failed("a mapping failed"))
                }
            },
            // The guest's own page fault: a #PF with the error code its page
            // tables imply (present, write; supervisor: the guest kernel).
            // Trap-and-emulate (trap.rs): delivered by the VMM.
            walked if self.trap.is_some() => {
                let error = u64::from(walked.is_ok()) | (u64::from(write) << 1);
                self.stats.reflected_by_vector[14] += 1;
                let fault = vmm_core::trap::Fault::PageFault {
                    address: addr,
                    error,
                };
                self.trap(fault, rip, None)
            }
            walked if self.reflector.is_some() && !in_wedge(rip) => {
                let present = u64::from(walked.is_ok());
                self.reflect(rip, 14, present | (u64::from(write) << 1), addr)
            }
            _ => Step::End(Ending::UnmappedAccess { rip, addr }),
        }
    }

    /// Sends the guest thread (blocked on a fault at `rip`) into the wedge,
    /// which delivers `vector` through the guest's virtual IDT. Only rip
    /// changes: the wedge saves the guest's other registers itself.
    fn reflect(&mut self, rip: u64, vector: u64, error: u64, cr2: u64) -> Step {
        let entry = match self.reflection(rip, vector, error, cr2) {
            Ok(entry) => entry,
            Err(ending) => return Step::End(ending),
        };
        self.stats.reflected += 1;
        if let Some(n) = self.stats.reflected_by_vector.get_mut(vector as usize) {
            *n += 1;
        }
        let tcb = previrt_sel4::Tcb(previrt_protocol::vmm_layout::guest_tcb_slot(self.number));
        match tcb.write_rip(entry, false) {
            Ok(()) => Step::Resume,
            Err(_) => Step::End(Ending::Failed("redirecting the guest thread failed")),
        }
    }

    /// Refuses a message that is not a valid request, saying why; the VMM
    /// keeps serving.
    fn refuse(&mut self, why: core::fmt::Arguments) -> Step {
        self.stats.invalid_requests += 1;
        println!("vmm-server: guest{}: invalid request: {why}", self.number);
        Step::Reply(Status::Invalid, 0)
    }

    /// Whether guest-physical `gpa` is the wedge's memory.
    fn wedge_memory(&self, gpa: u64) -> bool {
        self.reflector
            .is_some_and(|w| (w.area_gpa..w.area_gpa + WEDGE_AREA).contains(&gpa))
    }

    /// The guest's page tables reach the wedge's memory (its identity map
    /// covers all of guest RAM): it may read it, as it may at `WEDGE_BASE`,
    /// but never write it.
    fn wedge_alias(&mut self, rip: u64, addr: u64, t: Translation, write: bool) -> Step {
        if write {
            return Step::End(Ending::WedgeAliasWrite {
                addr,
                gpa: t.gpa,
                rip,
            });
        }
        let read_only = Translation {
            writable: false,
            ..t
        };
        // Not the guest's rights: the region is checked page by page.
        match self.vtlb.map(addr, read_only, 0) {
            Ok(()) => Step::Resume,
            Err(_) => Step::End(Ending::Failed("a mapping failed")),
        }
    }

    pub(crate) fn request(&mut self, request: Request) -> Step {
        let index = (request.label() as u64 - FIRST_LABEL) as usize;
        if let Some(count) = self.stats.requests.get_mut(index) {
            *count += 1;
        }
        let pit = |port: u16| (0x40..=0x43).contains(&port);
        let pic = |port: u16| matches!(port, 0x20 | 0x21 | 0xa0 | 0xa1);
        // EOIs the wedge deferred come first: they were written before.
        if let Request::PortIn { port, .. }
        | Request::PortOut { port, .. }
        | Request::PortOutString { port, .. } = request
        {
            if pic(port) {
                let now = self.irq.clock.now();
                self.apply_deferred_eois(now);
            }
        }
        let step = match request {
            Request::PortIn { port, size } => {
                let now = self.irq.clock.now();
                Step::Reply(Status::Ok, u64::from(self.devices.read(port, size, now)))
            }
            Request::PortOut { port, size, value } => {
                let now = self.irq.clock.now();
                self.devices.write(port, size, value, now);
                match self.devices.exit_status() {
                    Some(status) => Step::End(Ending::Exited(status)),
                    None => Step::Reply(Status::Ok, 0),
                }
            }
            Request::PortOutString {
                port,
                size,
                len,
                data,
            } => {
                let now = self.irq.clock.now();
                for element in data[..usize::from(len)].chunks(usize::from(size)) {
                    let mut b = [0u8; 4];
                    b[..element.len()].copy_from_slice(element);
                    self.devices.write(port, size, u32::from_le_bytes(b), now);
                }
                Step::Reply(Status::Ok, 0)
            }
            Request::LoadCr3 { value } => {
                self.cr3 = value;
                let r = self
                    .vtlb
                    .reload(self.ram, value)
                    .map(drop)
                    .map_err(|_| "reloading the virtual TLB failed");
                result(r)
            }
            Request::Invlpg { address } => {
                let r = self
                    .vtlb
                    .invalidate(address)
                    .map_err(|_| "invalidating a mapping failed");
                result(r)
            }
            // Paging is always on for the guest; its WP and PAE bits do not
            // change what the virtual TLB maps yet.
            Request::WriteCr0 { .. } | Request::WriteCr4 { .. } => Step::Reply(Status::Ok, 0),
            // The guest's FS base lives in the wedge's virtual CPU; the real
            // one (the TCB's TLS base) is not needed by the kernel code the
            // guest runs today.
            Request::SetFsBase { .. } => Step::Reply(Status::Ok, 0),
            Request::Halt => self.halt(),
            Request::InterruptAck => self.interrupt_ack(),
            Request::Shutdown { reason } => Step::End(Ending::Shutdown(reason)),
        };
        // Only these change what the PIC asserts (a read too: the PIC's
        // poll mode acknowledges), or the PIT's programming.
        let interrupt_ports = |port: u16| pit(port) || pic(port);
        let (pit_written, touched) = match request {
            Request::PortOut { port, .. } | Request::PortOutString { port, .. } => {
                (pit(port), interrupt_ports(port))
            }
            Request::PortIn { port, .. } => (false, interrupt_ports(port)),
            Request::InterruptAck => (false, true),
            _ => (false, false),
        };
        if matches!(step, Step::Reply(..)) {
            self.after_request(pit_written, touched);
        }
        step
    }
}

fn result(r: Result<(), &'static str>) -> Step {
    match r {
        Ok(()) => Step::Reply(Status::Ok, 0),
        Err(why) => Step::End(Ending::Failed(why)),
    }
}
