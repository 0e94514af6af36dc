//! How a guest's run ends, and how the VMM says so.

use previrt_protocol::vmm_layout::GUEST_ENDPOINT_SLOT;
use previrt_protocol::{shutdown_reason, WEDGE_AREA, WEDGE_BASE};

/// How a guest's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// It pulsed the reset line through the keyboard controller (port
    /// 0x64, command 0xfe) at guest time `at`: a PC reboots, QEMU with
    /// `-no-reboot` exits; the VMM ends the run, as a clean ending.
    Reset { at: u64 },
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
    /// Trap-and-emulate could not go on.
    Trap(crate::trap::TrapError),
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
            Ending::Reset { at } => write!(
                f,
                "reset the machine through the keyboard controller (command 0xfe on port 0x64) at guest time {at}"
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
