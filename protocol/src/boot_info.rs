//! The PV boot information (docs/pv-boot.md), as the VMM writes it into
//! guest memory and the guest's PV entry reads it. `#[repr(C)]` with a
//! layout the tests pin; the guest's C declaration
//! (`images/guest/include/guest.h`, `struct pv_boot_info`) must match.

/// "PVBI", the first word of [`PvBootInfo`].
pub const BOOT_INFO_MAGIC: u32 = u32::from_le_bytes(*b"PVBI");
pub const BOOT_INFO_VERSION: u32 = 1;
/// "PVE1", the magic of the PV entry header in the image's first 8 KiB.
pub const PV_HEADER_MAGIC: u32 = u32::from_le_bytes(*b"PVE1");
pub const MAX_MEMORY_RANGES: usize = 16;

/// One range of guest-physical memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MemoryRange {
    pub base: u64,
    pub length: u64,
    /// 1 = RAM.
    pub kind: u32,
    pub reserved: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct PvBootInfo {
    pub magic: u32,
    pub version: u32,
    /// Guest address of a NUL-terminated command line, or 0.
    pub cmdline: u64,
    pub memory_count: u32,
    pub reserved: u32,
    pub memory: [MemoryRange; MAX_MEMORY_RANGES],
}

impl PvBootInfo {
    /// A boot information with one RAM range and a command line address.
    pub const fn new(ram_base: u64, ram_length: u64, cmdline: u64) -> PvBootInfo {
        let mut memory = [MemoryRange {
            base: 0,
            length: 0,
            kind: 0,
            reserved: 0,
        }; MAX_MEMORY_RANGES];
        memory[0] = MemoryRange {
            base: ram_base,
            length: ram_length,
            kind: 1,
            reserved: 0,
        };
        PvBootInfo {
            magic: BOOT_INFO_MAGIC,
            version: BOOT_INFO_VERSION,
            cmdline,
            memory_count: 1,
            reserved: 0,
            memory,
        }
    }

    /// The bytes the guest reads (little-endian, the `repr(C)` layout).
    pub fn to_bytes(&self) -> [u8; size_of::<PvBootInfo>()] {
        let mut out = [0u8; size_of::<PvBootInfo>()];
        out[0..4].copy_from_slice(&self.magic.to_le_bytes());
        out[4..8].copy_from_slice(&self.version.to_le_bytes());
        out[8..16].copy_from_slice(&self.cmdline.to_le_bytes());
        out[16..20].copy_from_slice(&self.memory_count.to_le_bytes());
        out[20..24].copy_from_slice(&self.reserved.to_le_bytes());
        for (i, m) in self.memory.iter().enumerate() {
            let at = 24 + i * 24;
            out[at..at + 8].copy_from_slice(&m.base.to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&m.length.to_le_bytes());
            out[at + 16..at + 20].copy_from_slice(&m.kind.to_le_bytes());
            out[at + 20..at + 24].copy_from_slice(&m.reserved.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layout_matches_the_documented_abi() {
        assert_eq!(offset_of!(PvBootInfo, cmdline), 8);
        assert_eq!(offset_of!(PvBootInfo, memory_count), 16);
        assert_eq!(offset_of!(PvBootInfo, memory), 24);
        assert_eq!(size_of::<MemoryRange>(), 24);
        assert_eq!(size_of::<PvBootInfo>(), 24 + 16 * 24);
        assert_eq!(BOOT_INFO_MAGIC, 0x4942_5650);
        assert_eq!(PV_HEADER_MAGIC, 0x3145_5650);
    }

    #[test]
    fn bytes_follow_the_layout() {
        let b = PvBootInfo::new(0, 0x3ffc000, 0x3fff200).to_bytes();
        assert_eq!(&b[0..4], b"PVBI");
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 0x3fff200);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(b[32..40].try_into().unwrap()), 0x3ffc000);
        assert_eq!(u32::from_le_bytes(b[40..44].try_into().unwrap()), 1);
    }
}
