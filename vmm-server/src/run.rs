//! The VMM's serving loop for one guest: the guest thread's faults and the
//! wedge's requests arrive on the VMM's endpoint with the guest's badge,
//! told apart by label (docs/protocol.md).

use capdl::generate::{guest_badge, VMM_ENDPOINT_SLOT};
use previrt_protocol::{Request, Status, FIRST_LABEL};
use previrt_sel4::sys::bitfield::{seL4_Fault_UserException, seL4_Fault_VMFault};
use previrt_sel4::sys::constants::{
    seL4_UserException_Code, seL4_UserException_FaultIP, seL4_UserException_Number,
    seL4_VMFault_Addr, seL4_VMFault_FSR, seL4_VMFault_IP,
};
use previrt_sel4::{ipc, println, Word};

use crate::devices::Devices;
use crate::ram::Ram;
use crate::sites::Sites;
use crate::vtlb::{walk, Vtlb};

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
}

#[derive(Default)]
pub struct Stats {
    pub page_faults: u64,
    pub requests: [u64; 10],
    pub invalid_requests: u64,
    pub reflected: u64,
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
}

/// A reply to send, or the end of the run.
enum Step {
    Reply(Status, Word),
    Resume,
    End(Ending),
}

/// Where the wedge takes reflected exceptions: its boot block (with the
/// entry the wedge wrote into it) in guest RAM.
#[derive(Clone, Copy)]
pub struct Reflector {
    /// Guest-physical address of the wedge's boot block.
    pub boot_block_gpa: u64,
}

impl Guest<'_> {
    #[allow(non_upper_case_globals)] // the fault labels keep the kernel's names
    pub fn serve(&mut self) -> Ending {
        let badge = guest_badge(self.number);
        let mut message = ipc::recv(VMM_ENDPOINT_SLOT);
        loop {
            if message.badge != badge {
                println!(
                    "vmm-server: ignoring a message with badge {:#x} (label {})",
                    message.badge,
                    message.label()
                );
                message = ipc::recv(VMM_ENDPOINT_SLOT);
                continue;
            }
            let step = match message.label() {
                seL4_Fault_VMFault => self.page_fault(
                    message.mr(seL4_VMFault_IP as usize),
                    message.mr(seL4_VMFault_Addr as usize),
                    message.mr(seL4_VMFault_FSR as usize) & 2 != 0,
                ),
                seL4_Fault_UserException => {
                    let rip = message.mr(seL4_UserException_FaultIP as usize);
                    let vector = message.mr(seL4_UserException_Number as usize);
                    match self.reflector {
                        // The guest's own exception (#UD, #DE, ...): into
                        // the guest, through the wedge.
                        Some(_) if rip < previrt_protocol::WEDGE_BASE && vector < 32 => {
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
                label if label >= FIRST_LABEL => {
                    let length = message.info.length() as usize;
                    let mr = [message.mr(0), message.mr(1), message.mr(2), message.mr(3)];
                    match Request::decode(label, length, mr) {
                        Ok(request) => self.request(request),
                        Err(e) => {
                            self.stats.invalid_requests += 1;
                            println!("vmm-server: guest{}: invalid request: {e}", self.number);
                            Step::Reply(Status::Invalid, 0)
                        }
                    }
                }
                other => {
                    println!(
                        "vmm-server: guest{}: fault with label {other}, not served yet",
                        self.number
                    );
                    Step::End(Ending::Failed("an unexpected fault"))
                }
            };
            match step {
                Step::Reply(status, value) => {
                    message = ipc::reply_recv(VMM_ENDPOINT_SLOT, status as u64, &[value]);
                }
                // An empty reply restarts a faulting thread with its
                // registers (as the VMM may have changed them).
                Step::Resume => message = ipc::reply_recv(VMM_ENDPOINT_SLOT, 0, &[]),
                Step::End(ending) => return ending,
            }
        }
    }

    fn page_fault(&mut self, rip: u64, addr: u64, write: bool) -> Step {
        self.stats.page_faults += 1;
        match walk(self.ram, self.cr3, addr) {
            Ok(t) if t.writable || !write => match self.vtlb.map(addr, t) {
                // Resume the guest (or the wedge) where it faulted.
                Ok(()) => Step::Resume,
                Err(e) => {
                    println!("vmm-server: mapping {addr:#x} for the guest failed: {e:?}");
                    Step::End(Ending::Failed("a mapping failed"))
                }
            },
            // The guest's own page fault: a #PF with the error code its page
            // tables imply (present, write; supervisor: the guest kernel).
            walked if self.reflector.is_some() && rip < previrt_protocol::WEDGE_BASE => {
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
        let Some(reflector) = self.reflector else {
            return Step::End(Ending::Failed("no wedge to reflect into"));
        };
        let tcb = previrt_sel4::Tcb(capdl::generate::guest_tcb_slot(self.number));
        let reflection = previrt_protocol::Reflection {
            vector,
            error,
            cr2,
            rip,
        };
        let at = reflector.boot_block_gpa + previrt_protocol::REFLECTION_OFFSET;
        let entry = self.ram.read_u64(reflector.boot_block_gpa + 64);
        let (Ok(()), Ok(entry)) = (self.ram.write(at, &reflection.to_bytes()), entry) else {
            return Step::End(Ending::Failed(
                "the wedge's reflection block is out of guest RAM",
            ));
        };
        self.stats.reflected += 1;
        match tcb.write_rip(entry) {
            Ok(()) => Step::Resume,
            Err(_) => Step::End(Ending::Failed("redirecting the guest thread failed")),
        }
    }

    fn request(&mut self, request: Request) -> Step {
        let index = (request.label() as u64 - FIRST_LABEL) as usize;
        if let Some(count) = self.stats.requests.get_mut(index) {
            *count += 1;
        }
        match request {
            Request::PortIn { port, size } => {
                Step::Reply(Status::Ok, u64::from(self.devices.read(port, size)))
            }
            Request::PortOut { port, size, value } => {
                self.devices.write(port, size, value);
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
                for element in data[..usize::from(len)].chunks(usize::from(size)) {
                    let mut b = [0u8; 4];
                    b[..element.len()].copy_from_slice(element);
                    self.devices.write(port, size, u32::from_le_bytes(b));
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
            Request::Halt => Step::End(Ending::Failed(
                "the guest halted, and interrupts are not built yet",
            )),
            Request::Shutdown { reason } => Step::End(Ending::Shutdown(reason)),
        }
    }
}

fn result(r: Result<(), &'static str>) -> Step {
    match r {
        Ok(()) => Step::Reply(Status::Ok, 0),
        Err(why) => Step::End(Ending::Failed(why)),
    }
}
