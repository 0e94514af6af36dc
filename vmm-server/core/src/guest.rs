//! The dispatch: one guest's state, and what each message ([`Event`]) does
//! to it — the action to take ([`Step`]) and the effects on the machine
//! through its [`Platform`]. The seL4 shell receives messages, decodes
//! them and carries the steps out; everything in between is here, tested
//! on the host (docs/vmm-core.md, "Dispatch").

use previrt_protocol::{Request, Status, FIRST_LABEL, REFLECT_SITE, WEDGE_AREA};

use crate::devices::{uart_port, Devices};
use crate::ending::{in_wedge, Ending};
use crate::event::Event;
use crate::interrupts::Interrupts;
use crate::platform::Platform;
use crate::ram::Ram;
use crate::record::{Log, Recorder};
use crate::sites::Sites;
use crate::spaces::Spaces;
use crate::trap::Fault;
use crate::trap_guest::TrapCpu;
use crate::views::{UserViews, View};
use crate::vtlb::Vtlb;
use crate::walk::{mark_used, walk, walk_keeping_upper, Translation, ADDR};

/// What the VMM counts about a guest's messages.
#[derive(Default, Clone, Copy, Debug)]
pub struct Stats {
    /// VM faults of the guest thread (each either mapped or reflected).
    pub page_faults: u64,
    /// User exceptions of the guest thread, by vector (reflected).
    pub user_exceptions: [u64; 32],
    /// Requests, by label (from [`FIRST_LABEL`]).
    pub requests: [u64; 12],
    pub invalid_requests: u64,
    /// `int $n` through seL4's user-level gates, which seL4 reports as
    /// unknown system calls (reflected as #GP, also counted there).
    pub software_interrupts: u64,
    pub reflected: u64,
    /// Exceptions reflected, by vector (VM faults the guest's tables do
    /// not allow are #PF, 14).
    pub reflected_by_vector: [u64; 32],
    /// Sites whose call found the stack unwritable (a process's), sent to
    /// the wedge to be emulated without it.
    pub sites_without_stack: u64,
    /// The most mappings live at once in all the guest's address spaces
    /// (the kernel view and the user views), after each message.
    pub peak_mappings: usize,
}

/// Where the wedge takes reflected exceptions: its boot block (with the
/// entry the wedge wrote into it) in guest RAM; and the wedge's memory,
/// which the guest may not write.
#[derive(Clone, Copy, Debug)]
pub struct Reflector {
    /// Guest-physical address of the wedge's boot block.
    pub boot_block_gpa: u64,
    /// Guest-physical start of the wedge's memory (`WEDGE_AREA` bytes).
    pub area_gpa: u64,
    /// The wedge's code in the guest's address space, `[start, end)`.
    pub code: (u64, u64),
}

/// What the shell does after a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Reply to the sender with a status and one value.
    Reply(Status, u64),
    /// Restart the faulting thread (an empty reply), with its registers as
    /// the VMM may have changed them.
    Resume,
    /// No reply now (a halted guest's is saved): receive the next message.
    Wait,
    /// The guest's run is over.
    End(Ending),
}

/// One guest, as the VMM serves it.
pub struct Guest<'a, P: Platform> {
    pub number: u64,
    pub ram: &'a Ram,
    /// The guest's virtual CR3.
    pub cr3: u64,
    pub vtlb: &'a mut Vtlb<P::Mapper>,
    pub sites: &'a Sites,
    pub devices: Devices<P::Console>,
    pub platform: P,
    pub stats: Stats,
    /// With a wedge: how to reflect exceptions into the guest.
    pub reflector: Option<Reflector>,
    /// Its timer and interrupt state.
    pub irq: Interrupts,
    /// An end found while serving a tick, for the next message to report.
    pub ending: Option<Ending>,
    /// Trap-and-emulate: the virtual CPU of a guest run without a wedge,
    /// whose faults the VMM emulates ([`crate::trap_guest`]).
    pub trap: Option<&'a mut TrapCpu>,
    /// With a wedge: the user views its processes run in
    /// ([`crate::views`], `user_mode.rs`).
    pub views: Option<&'a mut UserViews<P::Mapper>>,
    /// Recording a page-table trace ([`crate::record`]): the recorder's
    /// policy replaces the vTLB's strategy.
    pub recorder: Option<&'a mut Recorder>,
}

impl<P: Platform> core::fmt::Debug for Guest<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Guest")
            .field("number", &self.number)
            .field("cr3", &self.cr3)
            .field("stats", &self.stats)
            .field("irq", &self.irq)
            .field("ending", &self.ending)
            .finish_non_exhaustive()
    }
}

impl<P: Platform> Guest<'_, P> {
    /// One message from the guest's thread or its wedge: what to do.
    #[inline]
    pub fn handle(&mut self, event: Event) -> Step {
        let step = self.dispatch(event);
        // Counted after each message (the replay counts after each record:
        // the same events).
        let live = self.spaces().live();
        self.stats.peak_mappings = self.stats.peak_mappings.max(live);
        step
    }

    /// The guest's address spaces, for one event.
    pub(crate) fn spaces(&mut self) -> Spaces<'_, P::Mapper> {
        Spaces {
            kernel: &mut *self.vtlb,
            views: self.views.as_deref_mut(),
        }
    }

    #[inline]
    fn dispatch(&mut self, event: Event) -> Step {
        if self.stale_fault(&event) {
            return Step::Resume;
        }
        let ram = self.ram;
        if let Some(Err(_)) = self.with_recorder(|r, spaces, log| r.enter(ram, spaces, log)) {
            return Step::End(Ending::Failed("unmapping a recorded page table failed"));
        }
        match event {
            Event::PageFault { rip, addr, write } if self.in_user_mode() => {
                self.user_page_fault(rip, addr, write)
            }
            Event::Exception {
                rip, vector, code, ..
            } if self.in_user_mode() => self.user_exception(rip, vector, code),
            Event::UnknownSyscall { number, rip } if self.in_user_mode() => {
                self.user_syscall(number, rip)
            }
            Event::PageFault { rip, addr, write } => {
                // Every page of the wedge is mapped: a fault there is a
                // write to its read-only code.
                if write && self.reflector.is_some() && in_wedge(addr) {
                    Step::End(Ending::WedgeCodeWrite { addr, rip })
                } else {
                    self.page_fault(rip, addr, write)
                }
            }
            Event::Exception {
                rip,
                vector,
                code,
                sp,
                flags,
            } => match self.reflector {
                // Trap-and-emulate: emulated or delivered.
                None if self.trap.is_some() && vector < 32 => {
                    self.stats.user_exceptions[vector as usize] += 1;
                    let fault = Fault::Exception {
                        vector: vector as u8, // < 32
                        error: code,
                    };
                    self.trap(fault, rip, Some([rip, sp, flags]))
                }
                // The guest's own exception (#UD, #DE, ...): into the guest,
                // through the wedge.
                Some(_) if !in_wedge(rip) && vector < 32 => {
                    self.stats.user_exceptions[vector as usize] += 1;
                    self.reflect(rip, vector, code, 0)
                }
                _ => Step::End(Ending::SensitiveInstruction {
                    rip,
                    vector,
                    site_kind: self.sites.kind_at(rip),
                }),
            },
            // An unknown system call from the guest kernel ends it: at CPL 0
            // the guest has no business executing `syscall` (seL4 is the
            // wedge's business), and no #UD would match hardware, which
            // would enter the guest's own LSTAR. But an `int $n` through a gate seL4
            // leaves open to user level comes as one too, with the whole
            // frame saved: it gets the #GP every other `int $n` gets.
            Event::UnknownSyscall { number, rip } => match self.software_interrupt(number, rip) {
                // Trap-and-emulate: the #GP decodes `int $n`.
                Some(n) if self.trap.is_some() => {
                    self.stats.user_exceptions[13] += 1;
                    self.stats.software_interrupts += 1;
                    let fault = Fault::Exception {
                        vector: 13,
                        error: n << 3 | 2,
                    };
                    self.trap(fault, rip, None)
                }
                Some(n) if self.reflector.is_some() && !in_wedge(rip) => {
                    self.stats.user_exceptions[13] += 1;
                    self.stats.software_interrupts += 1;
                    self.reflect(rip, 13, n << 3 | 2, 0)
                }
                _ => Step::End(Ending::UnknownSyscall { number, rip }),
            },
            // The guest's only capability is its endpoint; a call on any
            // other slot cannot be answered, and restarting the thread
            // would repeat it.
            Event::CapFault {
                slot,
                rip,
                receiving,
            } => Step::End(Ending::CapFault {
                slot,
                rip,
                receiving,
            }),
            Event::Request { label, length, mr } => match Request::decode(label, length, mr) {
                // The protocol cannot know the size of guest RAM; a root
                // outside it would fail every walk.
                Ok(Request::LoadCr3 { value }) if !self.ram.contains(value & ADDR, 4096) => self
                    .refuse(format_args!(
                        "LoadCr3 {value:#x} is outside guest RAM ({:#x} bytes)",
                        self.ram.size()
                    )),
                Ok(request) => self.request(request),
                Err(e) => self.refuse(format_args!("{e}")),
            },
            Event::Unknown { label, length } => self.refuse(format_args!(
                "label {label:#x} with {length} message registers is neither a request nor a fault"
            )),
        }
    }

    /// The VMM was woken for this guest (a timer tick the interrupt thread
    /// left to the main thread, or an end it found): what to do.
    pub fn wake(&mut self) -> Step {
        match self.ending.take().or_else(|| self.on_tick()) {
            Some(ending) => Step::End(ending),
            None => Step::Wait,
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
            let t = walk(self.ram, self.cr3, va).ok()?;
            let mut b = [0u8];
            self.ram.read(t.gpa + (va & 0xfff), &mut b).ok()?;
            Some(b[0])
        };
        (byte(rip)? == 0xcd && u64::from(byte(rip.wrapping_add(1))?) == n).then_some(n)
    }

    /// When recording, tells the recorder of a page fault at `addr` in
    /// `space` before it is served (the recorder may unmap a page table it
    /// watches); the step that ends the guest if that fails.
    pub(crate) fn record_fault(&mut self, addr: u64, write: bool, space: View) -> Result<(), Step> {
        let (ram, cr3) = (self.ram, self.cr3);
        match self
            .with_recorder(|r, spaces, log| r.fault(ram, spaces, cr3, addr, write, space, log))
        {
            Some(Err(_)) => Err(Step::End(Ending::Failed(
                "unmapping a recorded page table failed",
            ))),
            _ => Ok(()),
        }
    }

    /// When recording, runs `f` with the recorder, the guest's address
    /// spaces and the VMM's log (what each of the recorder's hooks takes);
    /// `None` when not recording.
    pub(crate) fn with_recorder<R>(
        &mut self,
        f: impl FnOnce(&mut Recorder, &mut Spaces<'_, P::Mapper>, Log<'_>) -> R,
    ) -> Option<R> {
        let recorder = self.recorder.as_deref_mut()?;
        let platform = &mut self.platform;
        let log = &mut |line: core::fmt::Arguments<'_>| platform.log(line);
        let mut spaces = Spaces {
            kernel: &mut *self.vtlb,
            views: self.views.as_deref_mut(),
        };
        Some(f(recorder, &mut spaces, log))
    }

    #[inline]
    /// After a port write: the guest may have ended its run, by the exit
    /// port or by a reset (which ends a run as QEMU's `-no-reboot` does).
    fn after_port_write(&self) -> Step {
        if let Some(status) = self.devices.exit_status() {
            Step::End(Ending::Exited(status))
        } else if let Some(at) = self.devices.reset_requested() {
            Step::End(Ending::Reset { at })
        } else {
            Step::Reply(Status::Ok, 0)
        }
    }

    fn page_fault(&mut self, rip: u64, addr: u64, write: bool) -> Step {
        self.stats.page_faults += 1;
        let walked = walk_keeping_upper(self.ram, self.cr3, addr);
        if let Err(end) = self.record_fault(addr, write, View::Kernel) {
            return end;
        }
        match walked.result {
            Ok(t) if self.wedge_memory(t.gpa) => self.wedge_alias(rip, addr, t, write),
            Ok(t) if t.writable || !write => {
                let (ram, upper) = (self.ram, walked.upper);
                // The accessed and dirty bits, as the CPU's walk sets them.
                let t = mark_used(ram, self.cr3, addr, write, t);
                let mapped = self
                    .with_recorder(|r, spaces, _| {
                        r.map(ram, spaces, View::Kernel, addr, t, upper, write)
                    })
                    .unwrap_or_else(|| {
                        self.spaces()
                            .fault(ram, View::Kernel, addr, t, upper, write)
                    });
                match mapped {
                    // Resume the guest (or the wedge) where it faulted.
                    Ok(()) => Step::Resume,
                    Err(e) => {
                        self.platform.log(format_args!(
                            "vmm-server: guest{}: mapping {addr:#x} for the guest failed: {e:?}",
                            self.number
                        ));
                        Step::End(Ending::Failed("a mapping failed"))
                    }
                }
            }
            // Trap-and-emulate: delivered by the VMM.
            walked if self.trap.is_some() => {
                let error = u64::from(walked.is_ok()) | (u64::from(write) << 1);
                self.stats.reflected_by_vector[14] += 1;
                let fault = Fault::PageFault {
                    address: addr,
                    error,
                };
                self.trap(fault, rip, None)
            }
            // A site's call could not push its return address: the stack
            // is a process's (a `swapgs` or `sysretq` after the kernel
            // loaded the process's rsp), read-only for copy-on-write or
            // not there at all. Hardware pushes nothing there: the wedge
            // emulates the site without its call.
            _ if write && self.reflector.is_some() && self.sites.runs_without_stack_at(rip) => {
                self.stats.sites_without_stack += 1;
                self.reflect(rip, REFLECT_SITE, 0, addr)
            }
            // The guest's own page fault: a #PF with the error code its page
            // tables imply (present, write; supervisor: the guest kernel).
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
    pub(crate) fn reflect(&mut self, rip: u64, vector: u64, error: u64, cr2: u64) -> Step {
        let entry = match self.reflection(rip, vector, error, cr2) {
            Ok(entry) => entry,
            Err(ending) => return Step::End(ending),
        };
        self.stats.reflected += 1;
        if let Some(n) = self.stats.reflected_by_vector.get_mut(vector as usize) {
            *n += 1;
        }
        match self.platform.set_guest_rip(entry) {
            Ok(()) => Step::Resume,
            Err(_) => Step::End(Ending::Failed("redirecting the guest thread failed")),
        }
    }

    /// Refuses a message that is not a valid request, saying why; the VMM
    /// keeps serving.
    pub(crate) fn refuse(&mut self, why: core::fmt::Arguments) -> Step {
        self.stats.invalid_requests += 1;
        self.platform.log(format_args!(
            "vmm-server: guest{}: invalid request: {why}",
            self.number
        ));
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
        let ram = self.ram;
        let mapped = self
            .with_recorder(|r, spaces, _| {
                r.map(ram, spaces, View::Kernel, addr, read_only, 0, false)
            })
            .unwrap_or_else(|| self.vtlb.map(addr, read_only, 0));
        match mapped {
            Ok(()) => Step::Resume,
            Err(_) => Step::End(Ending::Failed("a mapping failed")),
        }
    }

    #[inline]
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
                let now = self.platform.now();
                self.apply_deferred_eois(now);
            }
        }
        let step = match request {
            Request::PortIn { port, size } => {
                let now = self.platform.now();
                Step::Reply(Status::Ok, u64::from(self.devices.read(port, size, now)))
            }
            Request::PortOut { port, size, value } => {
                let now = self.platform.now();
                self.devices.write(port, size, value, now);
                self.after_port_write()
            }
            Request::PortOutString {
                port,
                size,
                len,
                data,
            } => {
                let now = self.platform.now();
                for element in data[..usize::from(len)].chunks(usize::from(size)) {
                    let mut b = [0u8; 4];
                    b[..element.len()].copy_from_slice(element);
                    self.devices.write(port, size, u32::from_le_bytes(b), now);
                }
                self.after_port_write()
            }
            Request::LoadCr3 { value } => {
                self.cr3 = value;
                let ram = self.ram;
                let r = self
                    .with_recorder(|r, spaces, log| r.cr3_load(ram, spaces, value, log))
                    .unwrap_or_else(|| self.spaces().cr3_load(ram, value));
                result(r.map_err(|_| "reloading the virtual TLB failed"))
            }
            Request::Invlpg { address } => {
                // In the kernel view, and in the user view of this CR3.
                let (ram, cr3) = (self.ram, self.cr3);
                let r = self
                    .with_recorder(|r, spaces, log| r.invlpg(ram, spaces, cr3, address, log))
                    .unwrap_or_else(|| self.spaces().invlpg(ram, cr3, address));
                result(r.map_err(|_| "invalidating a mapping failed"))
            }
            Request::EnterUser { regs, fs_base } => self.enter_user(regs, fs_base),
            // Paging is always on for the guest; its WP and PAE bits do not
            // change what the virtual TLB maps yet.
            Request::WriteCr0 { .. } => Step::Reply(Status::Ok, 0),
            // A CR4 write that changes PGE flushes the whole TLB, global
            // entries included: Linux's `__flush_tlb_all` toggles it after
            // changing kernel mappings (without PCID, which CPUID hides).
            // The VMM does not see the old value, so it takes every CR4
            // write (rare: boot, CPU set-up) as that flush: the same
            // revalidation as a CR3 load of the current tables.
            Request::WriteCr4 { .. } => {
                let (ram, cr3) = (self.ram, self.cr3);
                let r = self
                    .with_recorder(|r, spaces, log| r.cr3_load(ram, spaces, cr3, log))
                    .unwrap_or_else(|| self.spaces().cr3_load(ram, cr3));
                result(r.map_err(|_| "flushing the virtual TLB failed"))
            }
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
        let interrupt_ports = |port: u16| pit(port) || pic(port) || uart_port(port);
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
