//! What one message to the VMM means: the kernel's fault messages and the
//! wedge's requests, told apart by label and length (docs/protocol.md).
//!
//! The fault labels, lengths and register positions are the kernel's ABI:
//! the seL4 shell passes them in as a [`FaultAbi`], so this decoding is
//! tested on the host with the same numbers the kernel uses.

use previrt_protocol::FIRST_LABEL;

/// Where the kernel puts one kind of fault's fields.
#[derive(Clone, Copy, Debug)]
pub struct FaultLayout {
    /// The message label the kernel gives this fault.
    pub label: u64,
    /// Its length in message registers (for a capability fault: the
    /// fewest registers it has).
    pub length: usize,
}

/// The kernel's fault messages, as the shell knows them.
#[derive(Clone, Copy, Debug)]
pub struct FaultAbi {
    pub vm_fault: FaultLayout,
    /// Message registers of a VM fault: ip, addr, fault status.
    pub vm_fault_ip: usize,
    pub vm_fault_addr: usize,
    pub vm_fault_fsr: usize,
    pub user_exception: FaultLayout,
    pub user_exception_ip: usize,
    pub user_exception_number: usize,
    pub user_exception_code: usize,
    pub user_exception_sp: usize,
    pub user_exception_flags: usize,
    pub unknown_syscall: FaultLayout,
    pub unknown_syscall_ip: usize,
    pub unknown_syscall_number: usize,
    /// A capability fault has at least `length` registers (up to its
    /// lookup failure's type).
    pub cap_fault: FaultLayout,
    pub cap_fault_ip: usize,
    pub cap_fault_addr: usize,
    pub cap_fault_in_recv: usize,
}

impl FaultAbi {
    /// Whether every fault label is below the protocol's first request
    /// label, as [`Event::decode`] assumes (the shell asserts it at compile
    /// time for its ABI).
    pub const fn labels_below_requests(&self) -> bool {
        self.vm_fault.label < FIRST_LABEL
            && self.user_exception.label < FIRST_LABEL
            && self.unknown_syscall.label < FIRST_LABEL
            && self.cap_fault.label < FIRST_LABEL
    }
}

/// One message from the guest's thread (its faults) or its wedge (its
/// requests), decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The guest touched `addr` at `rip`, which its real address space
    /// does not map (with these rights).
    PageFault { rip: u64, addr: u64, write: bool },
    /// A CPU exception at user level: `vector` with error `code`; the
    /// thread's stack pointer and flags then.
    Exception {
        rip: u64,
        vector: u64,
        code: u64,
        sp: u64,
        flags: u64,
    },
    /// A system call the kernel does not know (or an `int $n` through one
    /// of its user-level gates).
    UnknownSyscall { number: u64, rip: u64 },
    /// An invocation of (or a receive on) a slot the guest's CSpace cannot
    /// resolve.
    CapFault {
        slot: u64,
        rip: u64,
        receiving: bool,
    },
    /// A request of the wedge protocol: label and length still to be
    /// checked ([`previrt_protocol::Request::decode`]).
    Request {
        label: u64,
        length: usize,
        mr: [u64; 4],
    },
    /// Neither a fault of the right length nor a request label.
    Unknown { label: u64, length: usize },
}

impl Event {
    /// Decodes a message of `label` and `length` registers, reading its
    /// registers through `mr`. The kernel sends each fault with its fixed
    /// length: a message with a fault's label and another length can only
    /// be the guest's own call, and falls through to the request check,
    /// which refuses it like any invalid request.
    #[inline]
    pub fn decode(abi: &FaultAbi, label: u64, length: usize, mr: impl Fn(usize) -> u64) -> Event {
        // Requests first: they are most messages, and every fault label is
        // below the protocol's ([`FaultAbi::labels_below_requests`]).
        if label >= FIRST_LABEL {
            return Event::Request {
                label,
                length,
                mr: [mr(0), mr(1), mr(2), mr(3)],
            };
        }
        if label == abi.vm_fault.label && length == abi.vm_fault.length {
            return Event::PageFault {
                rip: mr(abi.vm_fault_ip),
                addr: mr(abi.vm_fault_addr),
                write: mr(abi.vm_fault_fsr) & 2 != 0,
            };
        }
        if label == abi.user_exception.label && length == abi.user_exception.length {
            return Event::Exception {
                rip: mr(abi.user_exception_ip),
                vector: mr(abi.user_exception_number),
                code: mr(abi.user_exception_code),
                sp: mr(abi.user_exception_sp),
                flags: mr(abi.user_exception_flags),
            };
        }
        if label == abi.unknown_syscall.label && length == abi.unknown_syscall.length {
            return Event::UnknownSyscall {
                number: mr(abi.unknown_syscall_number),
                rip: mr(abi.unknown_syscall_ip),
            };
        }
        if label == abi.cap_fault.label && length >= abi.cap_fault.length {
            return Event::CapFault {
                slot: mr(abi.cap_fault_addr),
                rip: mr(abi.cap_fault_ip),
                receiving: mr(abi.cap_fault_in_recv) != 0,
            };
        }
        Event::Unknown { label, length }
    }
}

/// seL4 5.0.0's x86-64 fault ABI, from the kernel's generated constants.
#[cfg(any(test, feature = "sel4-abi"))]
pub const SEL4_ABI: FaultAbi = {
    use previrt_sel4_sys::bitfield::{
        seL4_Fault_CapFault, seL4_Fault_UnknownSyscall, seL4_Fault_UserException,
        seL4_Fault_VMFault,
    };
    use previrt_sel4_sys::constants::{
        seL4_CapFault_Addr, seL4_CapFault_IP, seL4_CapFault_InRecvPhase,
        seL4_CapFault_LookupFailureType, seL4_UnknownSyscall_FaultIP, seL4_UnknownSyscall_Length,
        seL4_UnknownSyscall_Syscall, seL4_UserException_Code, seL4_UserException_FLAGS,
        seL4_UserException_FaultIP, seL4_UserException_Length, seL4_UserException_Number,
        seL4_UserException_SP, seL4_VMFault_Addr, seL4_VMFault_FSR, seL4_VMFault_IP,
        seL4_VMFault_Length,
    };
    FaultAbi {
        vm_fault: FaultLayout {
            label: seL4_Fault_VMFault,
            length: seL4_VMFault_Length as usize,
        },
        vm_fault_ip: seL4_VMFault_IP as usize,
        vm_fault_addr: seL4_VMFault_Addr as usize,
        vm_fault_fsr: seL4_VMFault_FSR as usize,
        user_exception: FaultLayout {
            label: seL4_Fault_UserException,
            length: seL4_UserException_Length as usize,
        },
        user_exception_ip: seL4_UserException_FaultIP as usize,
        user_exception_number: seL4_UserException_Number as usize,
        user_exception_code: seL4_UserException_Code as usize,
        user_exception_sp: seL4_UserException_SP as usize,
        user_exception_flags: seL4_UserException_FLAGS as usize,
        unknown_syscall: FaultLayout {
            label: seL4_Fault_UnknownSyscall,
            length: seL4_UnknownSyscall_Length as usize,
        },
        unknown_syscall_ip: seL4_UnknownSyscall_FaultIP as usize,
        unknown_syscall_number: seL4_UnknownSyscall_Syscall as usize,
        // At least up to the lookup failure's type.
        cap_fault: FaultLayout {
            label: seL4_Fault_CapFault,
            length: seL4_CapFault_LookupFailureType as usize + 1,
        },
        cap_fault_ip: seL4_CapFault_IP as usize,
        cap_fault_addr: seL4_CapFault_Addr as usize,
        cap_fault_in_recv: seL4_CapFault_InRecvPhase as usize,
    }
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The kernel's ABI (the one the shell uses).
    pub(crate) fn sel4_abi() -> FaultAbi {
        SEL4_ABI
    }

    #[test]
    fn the_kernels_fault_labels_are_below_the_protocols() {
        assert!(sel4_abi().labels_below_requests());
    }

    #[test]
    fn each_fault_is_decoded_only_at_its_own_length() {
        let abi = sel4_abi();
        let mr = |i: usize| 0x100 + i as u64;
        let cases = [
            (abi.vm_fault, "page fault"),
            (abi.user_exception, "exception"),
            (abi.unknown_syscall, "unknown syscall"),
        ];
        for (layout, name) in cases {
            for length in 0..=64 {
                let e = Event::decode(&abi, layout.label, length, mr);
                let is_fault = !matches!(e, Event::Unknown { .. } | Event::Request { .. });
                assert_eq!(
                    is_fault,
                    length == layout.length,
                    "{name} at length {length}"
                );
            }
        }
        for length in 0..=64 {
            let e = Event::decode(&abi, abi.cap_fault.label, length, mr);
            assert_eq!(
                matches!(e, Event::CapFault { .. }),
                length >= abi.cap_fault.length,
                "capability fault at length {length}"
            );
        }
    }

    #[test]
    fn a_page_fault_reads_its_registers() {
        let abi = sel4_abi();
        let regs = |i: usize| {
            if i == abi.vm_fault_ip {
                0x1000
            } else if i == abi.vm_fault_addr {
                0xdead_b000
            } else if i == abi.vm_fault_fsr {
                6
            } else {
                0
            }
        };
        assert_eq!(
            Event::decode(&abi, abi.vm_fault.label, abi.vm_fault.length, regs),
            Event::PageFault {
                rip: 0x1000,
                addr: 0xdead_b000,
                write: true
            }
        );
    }

    #[test]
    fn labels_below_the_protocol_are_unknown_and_above_are_requests() {
        let abi = sel4_abi();
        let faults = [
            abi.vm_fault.label,
            abi.user_exception.label,
            abi.unknown_syscall.label,
            abi.cap_fault.label,
        ];
        for label in 0..FIRST_LABEL + 20 {
            if faults.contains(&label) {
                continue;
            }
            let e = Event::decode(&abi, label, 2, |i| i as u64);
            if label >= FIRST_LABEL {
                assert_eq!(
                    e,
                    Event::Request {
                        label,
                        length: 2,
                        mr: [0, 1, 2, 3]
                    }
                );
            } else {
                assert_eq!(e, Event::Unknown { label, length: 2 });
            }
        }
    }
}
