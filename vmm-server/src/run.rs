//! The VMM's serving loop for one guest: faults of the guest thread arrive
//! on the VMM's endpoint with the guest's badge.

use capdl::generate::{guest_badge, VMM_ENDPOINT_SLOT};
use previrt_sel4::sys::bitfield::{seL4_Fault_UserException, seL4_Fault_VMFault};
use previrt_sel4::sys::constants::{
    seL4_UserException_Code, seL4_UserException_FaultIP, seL4_UserException_Number,
    seL4_VMFault_Addr, seL4_VMFault_FSR, seL4_VMFault_IP,
};
use previrt_sel4::{ipc, println};

use crate::ram::Ram;
use crate::sites::Sites;
use crate::vtlb::{walk, Vtlb};

/// How a guest's run ended.
pub enum Ending {
    /// It reached an instruction only the wedge can run (none is built yet).
    SensitiveInstruction {
        rip: u64,
        vector: u64,
        site_kind: Option<&'static str>,
    },
    /// Its page tables do not map an address it used (the wedge would
    /// reflect this #PF into the guest).
    UnmappedAccess { rip: u64, addr: u64 },
    /// The VMM could not serve it.
    Failed(&'static str),
}

pub struct Stats {
    pub page_faults: u64,
}

#[allow(non_upper_case_globals)] // the fault labels keep the kernel's names
pub fn serve(
    guest: u64,
    ram: &Ram,
    cr3: u64,
    vtlb: &mut Vtlb,
    sites: &Sites,
    stats: &mut Stats,
) -> Ending {
    let badge = guest_badge(guest);
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
        match message.label() {
            seL4_Fault_VMFault => {
                let addr = message.mr(seL4_VMFault_Addr as usize);
                let rip = message.mr(seL4_VMFault_IP as usize);
                let write = message.mr(seL4_VMFault_FSR as usize) & 2 != 0;
                stats.page_faults += 1;
                match walk(ram, cr3, addr) {
                    Ok(t) if t.writable || !write => {
                        if let Err(e) = vtlb.map(addr, t) {
                            println!("vmm-server: mapping {addr:#x} for the guest failed: {e:?}");
                            return Ending::Failed("a mapping failed");
                        }
                    }
                    _ => return Ending::UnmappedAccess { rip, addr },
                }
                // Resume the guest where it faulted.
                message = ipc::reply_recv(VMM_ENDPOINT_SLOT, 0, &[]);
            }
            seL4_Fault_UserException => {
                let rip = message.mr(seL4_UserException_FaultIP as usize);
                let _code = message.mr(seL4_UserException_Code as usize);
                return Ending::SensitiveInstruction {
                    rip,
                    vector: message.mr(seL4_UserException_Number as usize),
                    site_kind: sites.kind_at(rip),
                };
            }
            other => {
                println!(
                    "vmm-server: guest fault with label {other} that the VMM does not serve yet"
                );
                return Ending::Failed("an unexpected fault");
            }
        }
    }
}
