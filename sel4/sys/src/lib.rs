//! Raw seL4 5.0.0 bindings for x86_64, generated for previrt's kernel config.
//!
//! * [`invocation`], [`syscall`], [`constants`], [`config`] and [`bitfield`]
//!   are generated at build time from the kernel's interface XML, libsel4's
//!   headers and `.bf` files (see `build/main.rs`); no number here is typed
//!   by hand.
//! * [`syscalls`] issues the `syscall` instruction with the kernel's register
//!   convention; [`IpcBuffer`], [`MessageInfo`] and [`BootInfo`] are the
//!   shared memory structures.
//!
//! The safe layer on top is the `previrt-sel4` crate.
#![no_std]
#![allow(non_upper_case_globals, non_snake_case)]

mod bootinfo;
mod ipc_buffer;
mod message_info;
pub mod syscalls;

pub use bootinfo::{BootInfo, SlotRegion, UntypedDesc};
pub use ipc_buffer::IpcBuffer;
pub use message_info::MessageInfo;

/// A machine word, as the kernel sees it.
pub type Word = u64;
/// A capability address in the caller's CSpace.
pub type CPtr = u64;

/// A field of a packed kernel word: `bits` wide, starting at bit `shift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitField {
    pub shift: u32,
    pub bits: u32,
}

impl BitField {
    pub const fn mask(self) -> u64 {
        if self.bits >= 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        }
    }

    pub const fn get(self, word: u64) -> u64 {
        (word >> self.shift) & self.mask()
    }

    /// Returns `word` with the field set to `value`, truncated to the field.
    pub const fn set(self, word: u64, value: u64) -> u64 {
        (word & !(self.mask() << self.shift)) | ((value & self.mask()) << self.shift)
    }
}

mod generated {
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}
pub use generated::{bitfield, config, constants, invocation, syscall, C_ENUMERATORS};

/// The seL4 source folder these bindings were generated from (a host path,
/// for build tools; nothing on seL4 uses it).
pub const KERNEL_SOURCE_DIR: &str = env!("PREVIRT_SEL4_SOURCE_DIR");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_dense_and_start_at_invalid_invocation() {
        assert_eq!(invocation::InvalidInvocation, 0);
        assert_eq!(invocation::UntypedRetype, 1);
        // Our config has no VTX: the I/O port labels sit where the field notes
        // measured them for this config.
        assert_eq!(invocation::X86IOPortOut8, 47);
    }

    #[test]
    fn the_shipped_kernel_has_no_debug_syscalls() {
        // Generated from the release config: the system calls end at
        // NBRecv; a debug kernel's DebugPutChar (-9) and the rest exist only
        // with CONFIG_DEBUG_BUILD (sel4/kernel/config/debug.h).
        assert_eq!(syscall::SysCall, -1);
        assert_eq!(syscall::SysNBRecv, -8);
        assert!(!C_ENUMERATORS
            .iter()
            .any(|(name, _)| name.starts_with("SysDebug")));
    }

    #[test]
    fn huge_pages_are_off_in_our_config() {
        // seL4_X64_HugePageObject is a #define fallback, not an object type.
        assert_eq!(constants::seL4_X86_4K, constants::seL4_X64_PML4Object + 1);
        assert_eq!(constants::seL4_X64_HugePageObject, 0xffff_fffe);
    }

    #[test]
    fn bitfield_round_trip() {
        let f = BitField {
            shift: 12,
            bits: 20,
        };
        let w = f.set(0xfff, 0xabcde);
        assert_eq!(f.get(w), 0xabcde);
        assert_eq!(w & 0xfff, 0xfff);
        assert_eq!(f.get(f.set(0, u64::MAX)), 0xfffff);
    }
}
