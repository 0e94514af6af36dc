//! Access to guest memory and the guest's general registers.
//!
//! On seL4 the wedge shares the guest's address space, so its
//! [`GuestMemory`] is a plain load/store (a fault on an unmapped page goes to
//! the VMM server like any guest fault). Tests use a byte array. The trait
//! keeps the emulator free of raw pointers and of `unsafe`.

use previrt_protocol::address_space::is_canonical;
use previrt_protocol::{SEL4_REGION, WEDGE_AREA, WEDGE_BASE};

/// A guest memory access that failed (outside the memory the implementation
/// can reach).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemError {
    /// The first address of the failed access.
    pub address: u64,
}

/// Guest-virtual memory as the wedge sees it.
pub trait GuestMemory {
    /// Fills `buf` from guest-virtual `address`.
    fn read(&mut self, address: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Stores `data` at guest-virtual `address`.
    fn write(&mut self, address: u64, data: &[u8]) -> Result<(), MemError>;
}

/// May an instruction the wedge emulates for the guest touch `[address,
/// address + len)`? Only if the whole range is canonical (one half of the
/// address space, no wrap), outside the wedge's own area (`WEDGE_BASE`,
/// `WEDGE_AREA` bytes: its code, stack and vCPU page) and outside seL4's
/// PML4 entry ([`SEL4_REGION`]). Everything else is the guest's: the test
/// guest's identity map below the wedge, and Linux's kernel addresses in
/// the upper half (its direct map, vmalloc, image, fixmap). Defined from
/// the protocol's constants, so it follows the wedge when it moves.
pub fn guest_may_access(address: u64, len: usize) -> bool {
    let Some(last) = address.checked_add((len as u64).saturating_sub(1)) else {
        return false;
    };
    let end = last.saturating_add(1);
    // Both ends canonical and in the same half: no access spans the gap.
    let one_half = is_canonical(address) && is_canonical(last) && (address >> 63) == (last >> 63);
    let overlaps = |(start, stop): (u64, u64)| address < stop && end > start;
    one_half && !overlaps((WEDGE_BASE, WEDGE_BASE + WEDGE_AREA)) && !overlaps(SEL4_REGION)
}

/// Reads a little-endian value of `size` (1..8) bytes.
pub(crate) fn read_sized(
    mem: &mut dyn GuestMemory,
    address: u64,
    size: u8,
) -> Result<u64, MemError> {
    let mut b = [0u8; 8];
    let n = usize::from(size.min(8));
    mem.read(address, &mut b[..n])?;
    Ok(u64::from_le_bytes(b))
}

/// Writes the low `size` (1..8) bytes of `value`, little-endian.
pub(crate) fn write_sized(
    mem: &mut dyn GuestMemory,
    address: u64,
    value: u64,
    size: u8,
) -> Result<(), MemError> {
    let n = usize::from(size.min(8));
    mem.write(address, &value.to_le_bytes()[..n])
}

/// The guest's general registers, RIP and the real RFLAGS, as saved by the
/// wedge's entry stub.
///
/// `gpr` is indexed by the x86 register number (the ModRM/REX encoding:
/// 0 = rax, 1 = rcx, 2 = rdx, 3 = rbx, 4 = rsp, 5 = rbp, 6 = rsi, 7 = rdi,
/// 8..15 = r8..r15), which is what the decoder produces. `rsp` is the guest's
/// stack pointer *as at the site* (the entry stub removes the return address
/// its `call` pushed). `#[repr(C)]` because the seL4 entry stub saves into it
/// from assembly.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegs {
    /// General registers by encoding number.
    pub gpr: [u64; 16],
    /// Instruction pointer; on entry, the site's address.
    pub rip: u64,
    /// The real RFLAGS (arithmetic flags, TF, DF, ...). IF and IOPL here are
    /// the real ones, which the guest never sees; the virtual ones are in
    /// [`crate::vcpu::Vcpu::rflags`].
    pub rflags: u64,
}

/// Register numbers, for readability.
pub mod reg {
    pub const RAX: u8 = 0;
    pub const RCX: u8 = 1;
    pub const RDX: u8 = 2;
    pub const RBX: u8 = 3;
    pub const RSP: u8 = 4;
    pub const RBP: u8 = 5;
    pub const RSI: u8 = 6;
    pub const RDI: u8 = 7;
    pub const R11: u8 = 11;
}

impl GuestRegs {
    /// Register `n` (0..15; higher numbers wrap, the decoder never makes them).
    pub fn get(&self, n: u8) -> u64 {
        self.gpr[usize::from(n & 15)]
    }

    /// Sets register `n` to `v`.
    pub fn set(&mut self, n: u8, v: u64) {
        self.gpr[usize::from(n & 15)] = v;
    }

    /// The stack pointer.
    pub fn rsp(&self) -> u64 {
        self.get(reg::RSP)
    }

    /// Sets the stack pointer.
    pub fn set_rsp(&mut self, v: u64) {
        self.set(reg::RSP, v);
    }

    /// Writes a result of `size` bytes to register `n` with x86 rules: 8 and
    /// 4 byte writes replace the register (a 32-bit write zero-extends),
    /// 2 and 1 byte writes keep the upper bits.
    pub fn write_sized(&mut self, n: u8, value: u64, size: u8) {
        let old = self.get(n);
        let new = match size {
            1 => (old & !0xff) | (value & 0xff),
            2 => (old & !0xffff) | (value & 0xffff),
            4 => value & 0xffff_ffff,
            _ => value,
        };
        self.set(n, new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOWER_END: u64 = 1 << 47;
    const UPPER_START: u64 = 0xffff_8000_0000_0000;

    #[test]
    fn the_lower_half_is_the_guests_up_to_its_end() {
        assert!(guest_may_access(0, 8));
        assert!(guest_may_access(0x1000, 4096));
        assert!(guest_may_access(LOWER_END - 8, 8), "the last 8 bytes");
        assert!(!guest_may_access(LOWER_END - 4, 8), "across the end");
        assert!(
            !guest_may_access(LOWER_END, 1),
            "the first non-canonical byte"
        );
    }

    #[test]
    fn the_wedge_area_is_refused_to_its_last_byte() {
        // Just below the wedge is seL4's entry's last bytes (the wedge opens
        // entry 257), refused either way; a reach in from there too.
        assert_eq!(WEDGE_BASE, SEL4_REGION.1, "the wedge follows seL4's entry");
        assert!(!guest_may_access(WEDGE_BASE - 8, 8), "just below");
        assert!(!guest_may_access(WEDGE_BASE - 4, 8), "reaching in");
        assert!(!guest_may_access(WEDGE_BASE, 1));
        assert!(!guest_may_access(WEDGE_BASE + WEDGE_AREA - 1, 1));
        assert!(guest_may_access(WEDGE_BASE + WEDGE_AREA, 8), "just above");
        assert!(
            !guest_may_access(WEDGE_BASE - 8, WEDGE_AREA as usize + 16),
            "across it"
        );
    }

    #[test]
    fn non_canonical_addresses_are_refused() {
        assert!(!guest_may_access(0x0001_0000_0000_0000, 1));
        assert!(!guest_may_access(UPPER_START - 1, 1));
        assert!(!guest_may_access(0x8000_0000_0000_0000, 8));
    }

    #[test]
    fn sel4s_entry_is_refused_and_the_rest_of_the_upper_half_is_the_guests() {
        assert_eq!(SEL4_REGION.0, UPPER_START, "seL4 is PML4 entry 256");
        assert_eq!(SEL4_REGION.1 - SEL4_REGION.0, 1 << 39, "one entry");
        assert!(!guest_may_access(SEL4_REGION.0, 1));
        assert!(!guest_may_access(SEL4_REGION.1 - 1, 1));
        assert!(
            !guest_may_access(SEL4_REGION.1 - 4, 8),
            "reaching out of it"
        );
        assert!(
            !guest_may_access(SEL4_REGION.1, 8),
            "entry 257 opens with the wedge"
        );
        assert!(
            guest_may_access(SEL4_REGION.1 + WEDGE_AREA, 8),
            "entry 257 past the wedge"
        );
        // Linux's kernel addresses: direct map, image, fixmap, the top.
        assert!(guest_may_access(0xffff_8880_0000_0000, 4096));
        assert!(guest_may_access(0xffff_ffff_8100_0000, 8));
        assert!(guest_may_access(0xffff_ffff_ff60_0000, 8));
        assert!(guest_may_access(u64::MAX - 7, 8), "the last 8 bytes");
    }

    #[test]
    fn a_range_that_wraps_is_refused() {
        assert!(!guest_may_access(u64::MAX - 3, 8));
        assert!(!guest_may_access(u64::MAX, 2));
    }
}
