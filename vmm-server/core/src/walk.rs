//! The walk of the guest's own 4-level page tables, in guest RAM, from its
//! virtual CR3: what the virtual TLB answers a guest page fault with.
//!
//! Everything the walk reads is the guest's and untrusted. The walk has
//! exactly four levels and never loops: a table that names itself or
//! another table above it (a recursive "self-map") is simply read again as
//! the next level, as on hardware, and the walk ends at whatever page that
//! yields. Every read is bounds-checked against guest RAM; a table or a
//! final page outside RAM is a fault, never a read outside it.
//!
//! Rights are the AND of all levels: a page is writable only if every
//! entry on the way to it is. Large pages: the PS bit (7) ends the walk at
//! the PDPT (a 1 GiB page) or at the PD (a 2 MiB page). At the PML4, where
//! the PS bit is reserved (hardware raises #PF with the RSVD bit), the walk
//! ignores it and follows the entry as a PDPT pointer: the entry's other
//! bits decide, and the result is still a page in guest RAM. The other
//! reserved and ignored bits (NX, PAT, global, accessed, dirty, user) are
//! not looked at: guest code and guest kernel alike run at user level on
//! seL4, which maps everything the VMM maps executable.

use crate::ram::{OutOfRam, Ram};

/// The physical-address bits of an entry (and of CR3): 12..=51.
pub const ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Entry bit 0: present.
pub const PRESENT: u64 = 1;
/// Entry bit 1: writable.
pub const WRITABLE: u64 = 2;
/// Entry bit 7: a large page (PS) at the PDPT and the PD.
pub const LARGE: u64 = 0x80;

/// Where a guest-virtual page lives in guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The guest-physical address of the 4 KiB page (page-aligned).
    pub gpa: u64,
    pub writable: bool,
}

/// Why a walk found no translation: the #PF the guest should see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    /// The entry at `level` (4 = PML4 … 1 = PT) is not present.
    NotPresent {
        level: u8,
    },
    /// The guest's tables, or the page they lead to, are outside its RAM.
    OutsideRam(OutOfRam),
    NonCanonical,
}

/// Walks the 4-level tables rooted at `cr3` for `va`.
pub fn walk(ram: &Ram, cr3: u64, va: u64) -> Result<Translation, WalkFault> {
    finish_walk(ram, upper_levels(ram, cr3, va), va)
}

/// A walk and its upper levels, packed ([`Upper::pack`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    pub result: Result<Translation, WalkFault>,
    pub upper: u64,
}

/// [`walk`], keeping the upper levels.
pub fn walk_keeping_upper(ram: &Ram, cr3: u64, va: u64) -> Walk {
    let upper = upper_levels(ram, cr3, va);
    Walk {
        result: finish_walk(ram, upper, va),
        upper: Upper::pack(upper),
    }
}

/// Where the upper levels of a walk lead for a 2 MiB region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upper {
    /// A page table at this guest-physical address (page-aligned).
    Table { at: u64, writable: bool },
    /// A large page: the translation of the region's first byte (checked
    /// against RAM per 4 KiB page by [`finish_walk`]).
    Large(Translation),
}

impl Upper {
    /// Packed flag: a result (0 packs a fault).
    pub const VALID: u64 = 1;
    /// Packed flag: every upper level is writable.
    pub const WRITABLE: u64 = 2;
    /// Packed flag: the result is a large page.
    pub const LARGE: u64 = 4;

    /// One word: the (page-aligned) address and three flags. A fault packs
    /// as 0 and unpacks as a not-present entry: all a CR3 load needs of it.
    pub fn pack(u: Result<Upper, WalkFault>) -> u64 {
        match u {
            Ok(Upper::Table { at, writable }) => {
                (at & ADDR) | Self::VALID | (u64::from(writable) << 1)
            }
            Ok(Upper::Large(t)) => {
                (t.gpa & ADDR) | Self::VALID | Self::LARGE | (u64::from(t.writable) << 1)
            }
            Err(_) => 0,
        }
    }

    /// The inverse of [`Upper::pack`] for every result of [`upper_levels`]
    /// (their addresses are page-aligned and below 2^52).
    pub fn unpack(w: u64) -> Result<Upper, WalkFault> {
        let (at, writable) = (w & ADDR, w & Self::WRITABLE != 0);
        if w & Self::VALID == 0 {
            Err(WalkFault::NotPresent { level: 2 })
        } else if w & Self::LARGE != 0 {
            Ok(Upper::Large(Translation { gpa: at, writable }))
        } else {
            Ok(Upper::Table { at, writable })
        }
    }
}

/// The PML4, PDPT and PD levels of a walk for `va`.
pub fn upper_levels(ram: &Ram, cr3: u64, va: u64) -> Result<Upper, WalkFault> {
    let top = va >> 47;
    if top != 0 && top != 0x1ffff {
        return Err(WalkFault::NonCanonical);
    }
    let mut table = cr3 & ADDR;
    let mut writable = true;
    for level in (2..=4u8).rev() {
        let shift = 12 + 9 * u32::from(level - 1);
        // `table` < 2^52 and the index < 4096: no overflow.
        let entry = ram
            .read_u64(table + ((va >> shift) & 511) * 8)
            .map_err(WalkFault::OutsideRam)?;
        if entry & PRESENT == 0 {
            return Err(WalkFault::NotPresent { level });
        }
        writable &= entry & WRITABLE != 0;
        // PS at the PML4 (level 4) is reserved: ignored (see the module).
        if level <= 3 && entry & LARGE != 0 {
            let span = 1u64 << shift;
            let gpa = ((entry & ADDR) & !(span - 1)) + (va & (span - 1) & !0x1f_ffff);
            return Ok(Upper::Large(Translation { gpa, writable }));
        }
        table = entry & ADDR;
    }
    Ok(Upper::Table {
        at: table,
        writable,
    })
}

/// The rest of a walk for `va` after its upper levels: the page-table
/// level, or the 4 KiB page inside a large page. The page found must lie
/// wholly in guest RAM.
pub fn finish_walk(
    ram: &Ram,
    upper: Result<Upper, WalkFault>,
    va: u64,
) -> Result<Translation, WalkFault> {
    let (gpa, writable) = match upper? {
        // A large page's base < 2^52, its offset < 2^30: no overflow.
        Upper::Large(t) => (t.gpa + (va & 0x1f_f000), t.writable),
        Upper::Table { at, writable } => {
            let entry = ram
                .read_u64(at + ((va >> 12) & 511) * 8)
                .map_err(WalkFault::OutsideRam)?;
            if entry & PRESENT == 0 {
                return Err(WalkFault::NotPresent { level: 1 });
            }
            (entry & ADDR, writable && entry & WRITABLE != 0)
        }
    };
    if !ram.contains(gpa, 4096) {
        return Err(WalkFault::OutsideRam(OutOfRam { gpa, len: 4096 }));
    }
    Ok(Translation { gpa, writable })
}
