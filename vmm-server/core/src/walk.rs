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
/// The user/supervisor bit of an entry: set, user mode may use it.
pub const USER: u64 = 4;
/// Entry bit 5: accessed, set by the CPU in every entry a translation
/// uses.
pub const ACCESSED: u64 = 0x20;
/// Entry bit 6 of the entry that maps a page: dirty, set by the CPU at the
/// first write through it.
pub const DIRTY: u64 = 0x40;

/// Where a guest-virtual page lives in guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The guest-physical address of the 4 KiB page (page-aligned).
    pub gpa: u64,
    pub writable: bool,
    /// Every level allows user mode (U=1): a guest process may touch it
    /// (`views.rs`).
    pub user: bool,
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
#[inline]
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
#[inline]
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
    Table { at: u64, writable: bool, user: bool },
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
    /// Packed flag: every upper level allows user mode.
    pub const USER: u64 = 8;

    /// One word: the (page-aligned) address and three flags. A fault packs
    /// as 0 and unpacks as a not-present entry: all a CR3 load needs of it.
    #[inline]
    pub fn pack(u: Result<Upper, WalkFault>) -> u64 {
        match u {
            Ok(Upper::Table { at, writable, user }) => {
                (at & ADDR) | Self::VALID | (u64::from(writable) << 1) | (u64::from(user) << 3)
            }
            Ok(Upper::Large(t)) => {
                (t.gpa & ADDR)
                    | Self::VALID
                    | Self::LARGE
                    | (u64::from(t.writable) << 1)
                    | (u64::from(t.user) << 3)
            }
            Err(_) => 0,
        }
    }

    /// The inverse of [`Upper::pack`] for every result of [`upper_levels`]
    /// (their addresses are page-aligned and below 2^52).
    #[inline]
    pub fn unpack(w: u64) -> Result<Upper, WalkFault> {
        let (at, writable, user) = (w & ADDR, w & Self::WRITABLE != 0, w & Self::USER != 0);
        if w & Self::VALID == 0 {
            Err(WalkFault::NotPresent { level: 2 })
        } else if w & Self::LARGE != 0 {
            Ok(Upper::Large(Translation {
                gpa: at,
                writable,
                user,
            }))
        } else {
            Ok(Upper::Table { at, writable, user })
        }
    }
}

/// The PML4, PDPT and PD levels of a walk for `va`.
#[inline]
pub fn upper_levels(ram: &Ram, cr3: u64, va: u64) -> Result<Upper, WalkFault> {
    let top = va >> 47;
    if top != 0 && top != 0x1ffff {
        return Err(WalkFault::NonCanonical);
    }
    let mut table = cr3 & ADDR;
    let mut writable = true;
    let mut user = true;
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
        user &= entry & USER != 0;
        // PS at the PML4 (level 4) is reserved: ignored (see the module).
        if level <= 3 && entry & LARGE != 0 {
            let span = 1u64 << shift;
            let gpa = ((entry & ADDR) & !(span - 1)) + (va & (span - 1) & !0x1f_ffff);
            return Ok(Upper::Large(Translation {
                gpa,
                writable,
                user,
            }));
        }
        table = entry & ADDR;
    }
    Ok(Upper::Table {
        at: table,
        writable,
        user,
    })
}

/// The rest of a walk for `va` after its upper levels: the page-table
/// level, or the 4 KiB page inside a large page. The page found must lie
/// wholly in guest RAM.
#[inline]
pub fn finish_walk(
    ram: &Ram,
    upper: Result<Upper, WalkFault>,
    va: u64,
) -> Result<Translation, WalkFault> {
    let (gpa, writable, user) = match upper? {
        // A large page's base < 2^52, its offset < 2^30: no overflow.
        Upper::Large(t) => (t.gpa + (va & 0x1f_f000), t.writable, t.user),
        Upper::Table { at, writable, user } => {
            let entry = ram
                .read_u64(at + ((va >> 12) & 511) * 8)
                .map_err(WalkFault::OutsideRam)?;
            if entry & PRESENT == 0 {
                return Err(WalkFault::NotPresent { level: 1 });
            }
            (
                entry & ADDR,
                writable && entry & WRITABLE != 0,
                user && entry & USER != 0,
            )
        }
    };
    if !ram.contains(gpa, 4096) {
        return Err(WalkFault::OutsideRam(OutOfRam { gpa, len: 4096 }));
    }
    Ok(Translation {
        gpa,
        writable,
        user,
    })
}

/// What the CPU does to the guest's tables when it loads a translation of
/// `va` for an access (a write or not) into its TLB, done when the VMM
/// maps a page it walked from `cr3` and found `t`: the accessed bit set in
/// every entry of the walk, and on a write the dirty bit in the entry that
/// maps the page. Returns the rights to map it with: writable only once
/// the page is dirty, so that the first write through a page mapped at a
/// read faults again and sets the bit (a writable mapping would let the
/// guest write without the VMM seeing it, leaving a written page clean).
///
/// The entries are re-read (the walk that found `t` read them a moment
/// ago, and the guest waits for the VMM meanwhile); a bit already set is
/// not written again. An entry that cannot be read or is no longer
/// present ends the marking, and the page is mapped read-only.
pub fn mark_used(ram: &Ram, cr3: u64, va: u64, write: bool, t: Translation) -> Translation {
    let mut table = cr3 & ADDR;
    for level in (1..=4u8).rev() {
        let shift = 12 + 9 * u32::from(level - 1);
        let at = table + ((va >> shift) & 511) * 8;
        let Ok(entry) = ram.read_u64(at) else {
            break;
        };
        if entry & PRESENT == 0 {
            break;
        }
        // PS at the PML4 is ignored, as in `upper_levels`.
        let leaf = level == 1 || (level <= 3 && entry & LARGE != 0);
        let dirty = leaf && (entry & DIRTY != 0 || (write && t.writable));
        let marked = entry | ACCESSED | if dirty { DIRTY } else { 0 };
        if marked != entry && ram.write_u64(at, marked).is_err() {
            break;
        }
        if leaf {
            return Translation {
                writable: t.writable && dirty,
                ..t
            };
        }
        table = entry & ADDR;
    }
    Translation {
        writable: false,
        ..t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ram::host::HostRam;

    const P: u64 = PRESENT;
    const PW: u64 = PRESENT | WRITABLE;
    const PML4: u64 = 0x1000;
    const PDPT: u64 = 0x2000;
    const PD: u64 = 0x3000;
    const PT: u64 = 0x4000;
    const FRAME: u64 = 0x9000;
    /// PML4 0, PDPT 0, PD 1, PT 5, offset 0x123.
    const VA: u64 = 0x0020_5123;
    const MIB: u64 = 1 << 20;

    /// The va of table indices (PML4, PDPT, PD, PT), sign-extended.
    fn va(i4: u64, i3: u64, i2: u64, i1: u64) -> u64 {
        let raw = (i4 << 39) | (i3 << 30) | (i2 << 21) | (i1 << 12);
        if i4 >= 256 {
            raw | 0xffff_0000_0000_0000
        } else {
            raw
        }
    }

    /// 4 MiB of RAM with `VA` mapped to `FRAME` through four writable
    /// levels.
    fn four_levels() -> HostRam {
        let h = HostRam::new(4 * MIB);
        h.set(PML4, PDPT | PW);
        h.set(PDPT, PD | PW);
        h.set(PD + 8, PT | PW);
        h.set(PT + 5 * 8, FRAME | PW);
        h
    }

    /// The entry at each level on the way to `VA`, PML4 first.
    const PATH: [u64; 4] = [PML4, PDPT, PD + 8, PT + 5 * 8];

    /// A translation the tests' tables give (U clear at every level, unless
    /// a test sets it).
    fn ok(gpa: u64, writable: bool) -> Result<Translation, WalkFault> {
        Ok(Translation {
            gpa,
            writable,
            user: false,
        })
    }

    #[test]
    fn user_mode_needs_u_at_every_level() {
        let h = four_levels();
        for &at in &PATH {
            h.set(at, h.ram().read_u64(at).unwrap() | USER);
        }
        let user = |gpa| {
            Ok(Translation {
                gpa,
                writable: true,
                user: true,
            })
        };
        assert_eq!(walk(&h.ram(), PML4, VA), user(FRAME));
        // Through the packed upper levels (a CR3 load's route) the same.
        let w = walk_keeping_upper(&h.ram(), PML4, VA);
        assert_eq!(w.result, user(FRAME));
        assert_eq!(
            finish_walk(&h.ram(), Upper::unpack(w.upper), VA),
            user(FRAME)
        );
        for &at in &PATH {
            let entry = h.ram().read_u64(at).unwrap();
            h.set(at, entry & !USER);
            assert_eq!(
                walk(&h.ram(), PML4, VA),
                ok(FRAME, true),
                "U clear at {at:#x}"
            );
            let w = walk_keeping_upper(&h.ram(), PML4, VA);
            assert_eq!(
                finish_walk(&h.ram(), Upper::unpack(w.upper), VA),
                ok(FRAME, true)
            );
            h.set(at, entry);
        }
        // A large page: U of the levels down to it.
        h.set(PD + 8, 0x20_0000 | LARGE | PW | USER);
        assert_eq!(walk(&h.ram(), PML4, 0x2f_5123), user(0x2f_5000));
        h.set(PDPT, PD | PW);
        assert_eq!(walk(&h.ram(), PML4, 0x2f_5123), ok(0x2f_5000, true));
    }

    #[test]
    fn a_4k_page_through_four_levels() {
        let h = four_levels();
        assert_eq!(walk(&h.ram(), PML4, VA), ok(FRAME, true));
        // CR3's low bits (PCD, PWT, a PCID) are not part of the address.
        assert_eq!(walk(&h.ram(), PML4 | 0x18, VA), ok(FRAME, true));
        // The offset does not change the page.
        assert_eq!(walk(&h.ram(), PML4, VA | 0xfff), ok(FRAME, true));
    }

    #[test]
    fn not_present_at_each_level() {
        for (i, &at) in PATH.iter().enumerate() {
            let h = four_levels();
            let entry = h.ram().read_u64(at).unwrap();
            h.set(at, entry & !PRESENT);
            let level = 4 - i as u8;
            assert_eq!(
                walk(&h.ram(), PML4, VA),
                Err(WalkFault::NotPresent { level }),
                "level {level}"
            );
        }
    }

    #[test]
    fn read_only_at_any_level_makes_the_page_read_only() {
        for &at in &PATH {
            let h = four_levels();
            let entry = h.ram().read_u64(at).unwrap();
            h.set(at, entry & !WRITABLE);
            assert_eq!(
                walk(&h.ram(), PML4, VA),
                ok(FRAME, false),
                "entry at {at:#x}"
            );
        }
    }

    #[test]
    fn non_canonical_addresses_fault_before_any_read() {
        // CR3 outside RAM: a read would say so; non-canonical comes first.
        let h = HostRam::new(0x1000);
        for va in [
            0x0000_8000_0000_0000,
            0xffff_7fff_ffff_ffff,
            0x8000_0000_0000_0000,
            0x0001_0000_0000_0000,
        ] {
            assert_eq!(
                walk(&h.ram(), 0x10_0000, va),
                Err(WalkFault::NonCanonical),
                "{va:#x}"
            );
        }
        // The lowest upper-half address is canonical: PML4 index 256.
        assert_eq!(
            walk(&h.ram(), 0, 0xffff_8000_0000_0000),
            Err(WalkFault::NotPresent { level: 4 })
        );
        assert_eq!(
            walk(&h.ram(), 0x10_0000, 0xffff_8000_0000_0000),
            Err(WalkFault::OutsideRam(OutOfRam {
                gpa: 0x10_0000 + 256 * 8,
                len: 8
            }))
        );
    }

    #[test]
    fn a_pml4_entry_naming_the_pml4_is_read_as_every_level() {
        let h = HostRam::new(0x10_000);
        h.set(PML4, PML4 | PW);
        // Every index 0: PML4[0] serves as PDPTE, PDE and PTE: the page is
        // the PML4 itself.
        assert_eq!(walk(&h.ram(), PML4, 0x42), ok(PML4, true));
        // The last-level index elsewhere: not present there.
        assert_eq!(
            walk(&h.ram(), PML4, va(0, 0, 0, 1)),
            Err(WalkFault::NotPresent { level: 1 })
        );
    }

    #[test]
    fn a_recursive_self_map_reaches_the_tables_as_pages() {
        let h = four_levels();
        h.set(PML4 + 511 * 8, PML4 | PW);
        // 511 four times: the PML4 as a page.
        assert_eq!(walk(&h.ram(), PML4, va(511, 511, 511, 511)), ok(PML4, true));
        // 511, 511, 511, 0: PML4[0] as the PTE: the PDPT as a page.
        assert_eq!(walk(&h.ram(), PML4, va(511, 511, 511, 0)), ok(PDPT, true));
        // 511, 511, 0, 0: the PD; 511, 0, 0, 1: the PT.
        assert_eq!(walk(&h.ram(), PML4, va(511, 511, 0, 0)), ok(PD, true));
        assert_eq!(walk(&h.ram(), PML4, va(511, 0, 0, 1)), ok(PT, true));
        // 511, 511, 0, 1: the PDPT read as the last level: its entry 1 is
        // not present.
        assert_eq!(
            walk(&h.ram(), PML4, va(511, 511, 0, 1)),
            Err(WalkFault::NotPresent { level: 1 })
        );
    }

    #[test]
    fn two_tables_naming_each_other_end_after_four_levels() {
        let (a, b) = (0x1000, 0x6000);
        let h = HostRam::new(0x10_000);
        h.set(a, b | PW);
        h.set(b, a | P);
        // a -> b -> a -> b -> page a; b's entry is read-only.
        assert_eq!(walk(&h.ram(), a, 0), ok(a, false));
        // Started from b: b -> a -> b -> a -> page b.
        assert_eq!(walk(&h.ram(), b, 0), ok(b, false));
    }

    #[test]
    fn cr3_outside_ram() {
        let h = HostRam::new(0x10_000);
        assert_eq!(
            walk(&h.ram(), 0x10_000, VA),
            Err(WalkFault::OutsideRam(OutOfRam {
                gpa: 0x10_000,
                len: 8
            }))
        );
        // CR3's address bits only: bit 63 and up are not an address.
        assert_eq!(
            walk(&h.ram(), 0xfff0_0000_0000_0000, 0),
            Err(WalkFault::NotPresent { level: 4 })
        );
    }

    #[test]
    fn a_table_outside_ram_at_each_level() {
        let far = 0x40_0000_0000;
        for (i, &at) in PATH.iter().enumerate() {
            let h = four_levels();
            h.set(at, far | PW);
            let index = if i == 3 {
                // The PTE names the page itself: the page is checked.
                assert_eq!(
                    walk(&h.ram(), PML4, VA),
                    Err(WalkFault::OutsideRam(OutOfRam {
                        gpa: far,
                        len: 4096
                    }))
                );
                continue;
            } else {
                // The next level's index into the table at `far`.
                [0, 1, 5][i]
            };
            assert_eq!(
                walk(&h.ram(), PML4, VA),
                Err(WalkFault::OutsideRam(OutOfRam {
                    gpa: far + index * 8,
                    len: 8
                })),
                "entry at {at:#x}"
            );
        }
    }

    #[test]
    fn a_table_and_a_page_straddling_the_end_of_ram() {
        // RAM ends half-way through the page at 0x8000.
        let h = HostRam::new(0x8800);
        h.set(PML4, PDPT | PW);
        h.set(PDPT, PD | PW);
        h.set(PD, 0x8000 | PW);
        h.set(0x8000 + 255 * 8, 0x5000 | PW);
        h.set(0x8000 + 254 * 8, 0x8000 | PW);
        // The PT's entries below the end of RAM are read...
        assert_eq!(walk(&h.ram(), PML4, va(0, 0, 0, 255)), ok(0x5000, true));
        // ... the ones past it are not.
        assert_eq!(
            walk(&h.ram(), PML4, va(0, 0, 0, 256)),
            Err(WalkFault::OutsideRam(OutOfRam {
                gpa: 0x8800,
                len: 8
            }))
        );
        // A page that is only half RAM is outside RAM.
        assert_eq!(
            walk(&h.ram(), PML4, va(0, 0, 0, 254)),
            Err(WalkFault::OutsideRam(OutOfRam {
                gpa: 0x8000,
                len: 4096
            }))
        );
    }

    #[test]
    fn a_2mib_page_at_the_pd() {
        let h = four_levels();
        // PD[1]: the 2 MiB page at 2 MiB; bit 12 (PAT) and the other
        // low address bits of a large PDE are not part of its address.
        h.set(PD + 8, 0x20_0000 | 0x1000 | LARGE | PW);
        assert_eq!(walk(&h.ram(), PML4, 0x2f_5123), ok(0x2f_5000, true));
        assert_eq!(walk(&h.ram(), PML4, 0x20_0000), ok(0x20_0000, true));
        assert_eq!(walk(&h.ram(), PML4, 0x3f_ffff), ok(0x3f_f000, true));
        // Read-only at the PD, or above it.
        h.set(PD + 8, 0x20_0000 | LARGE | P);
        assert_eq!(walk(&h.ram(), PML4, 0x2f_5123), ok(0x2f_5000, false));
        h.set(PD + 8, 0x20_0000 | LARGE | PW);
        h.set(PDPT, PD | P);
        assert_eq!(walk(&h.ram(), PML4, 0x2f_5123), ok(0x2f_5000, false));
        // A large page past the end of RAM, page by page.
        h.set(PD + 16, 0x40_0000 | LARGE | PW);
        assert_eq!(
            walk(&h.ram(), PML4, 0x40_1000),
            Err(WalkFault::OutsideRam(OutOfRam {
                gpa: 0x40_1000,
                len: 4096
            }))
        );
    }

    #[test]
    fn a_1gib_page_at_the_pdpt() {
        let h = four_levels();
        // PDPT[0]: the 1 GiB page at 0; address bits below 1 GiB ignored.
        h.set(PDPT, 0x20_0000 | LARGE | PW);
        assert_eq!(walk(&h.ram(), PML4, 0x31_2345), ok(0x31_2000, true));
        assert_eq!(walk(&h.ram(), PML4, 0x1234), ok(0x1000, true));
        // Its part past 4 MiB of RAM is outside RAM.
        assert_eq!(
            walk(&h.ram(), PML4, 0x3fff_f000),
            Err(WalkFault::OutsideRam(OutOfRam {
                gpa: 0x3fff_f000,
                len: 4096
            }))
        );
        // Rights: the AND with the PML4 entry.
        h.set(PML4, PDPT | P);
        assert_eq!(walk(&h.ram(), PML4, 0x31_2345), ok(0x31_2000, false));
        // PDPT[1]: the 1 GiB page at 1 GiB: all of it outside RAM.
        h.set(PDPT + 8, 0x4000_0000 | LARGE | PW);
        assert_eq!(
            walk(&h.ram(), PML4, 0x4000_0000),
            Err(WalkFault::OutsideRam(OutOfRam {
                gpa: 0x4000_0000,
                len: 4096
            }))
        );
    }

    #[test]
    fn ps_at_the_pml4_is_ignored_and_the_entry_followed_as_a_table() {
        let h = four_levels();
        h.set(PML4, PDPT | LARGE | PW);
        assert_eq!(walk(&h.ram(), PML4, VA), ok(FRAME, true));
        assert_eq!(
            walk_keeping_upper(&h.ram(), PML4, VA).upper,
            PT | Upper::VALID | Upper::WRITABLE
        );
    }

    #[test]
    fn the_upper_levels_pack_into_one_word() {
        let h = four_levels();
        let w = walk_keeping_upper(&h.ram(), PML4, VA);
        assert_eq!(w.result, ok(FRAME, true));
        assert_eq!(w.upper, PT | Upper::VALID | Upper::WRITABLE);
        assert_eq!(
            Upper::unpack(w.upper),
            Ok(Upper::Table {
                at: PT,
                writable: true,
                user: false,
            })
        );
        h.set(PD + 8, 0x20_0000 | LARGE | P);
        let w = walk_keeping_upper(&h.ram(), PML4, 0x2f_5123);
        assert_eq!(w.result, ok(0x2f_5000, false));
        assert_eq!(w.upper, 0x20_0000 | Upper::VALID | Upper::LARGE);
        assert_eq!(
            Upper::unpack(w.upper),
            Ok(Upper::Large(Translation {
                gpa: 0x20_0000,
                writable: false,
                user: false,
            }))
        );
        h.set(PD + 8, 0);
        let w = walk_keeping_upper(&h.ram(), PML4, VA);
        assert_eq!(w.result, Err(WalkFault::NotPresent { level: 2 }));
        assert_eq!(w.upper, 0);
        assert_eq!(Upper::unpack(0), Err(WalkFault::NotPresent { level: 2 }));
    }

    /// The A and D bits of each entry on the way to `VA`, PML4 first.
    fn ad(h: &HostRam) -> [u64; 4] {
        PATH.map(|at| h.ram().read_u64(at).unwrap() & (ACCESSED | DIRTY))
    }

    #[test]
    fn a_read_sets_accessed_everywhere_and_maps_a_clean_page_read_only() {
        let h = four_levels();
        let t = walk(&h.ram(), PML4, VA).unwrap();
        let mapped = mark_used(&h.ram(), PML4, VA, false, t);
        assert_eq!(ad(&h), [ACCESSED; 4], "no dirty bit without a write");
        assert_eq!(
            mapped,
            Translation {
                writable: false,
                ..t
            }
        );
        // The write that follows faults and dirties the page: writable now.
        let mapped = mark_used(&h.ram(), PML4, VA, true, t);
        assert_eq!(ad(&h), [ACCESSED, ACCESSED, ACCESSED, ACCESSED | DIRTY]);
        assert_eq!(mapped, t);
        // A dirty page is mapped writable at a read: nothing left to record.
        assert_eq!(mark_used(&h.ram(), PML4, VA, false, t), t);
    }

    #[test]
    fn a_write_sets_dirty_only_in_the_entry_that_maps_the_page() {
        let h = four_levels();
        let t = walk(&h.ram(), PML4, VA).unwrap();
        assert_eq!(mark_used(&h.ram(), PML4, VA, true, t), t);
        assert_eq!(ad(&h), [ACCESSED, ACCESSED, ACCESSED, ACCESSED | DIRTY]);
        // Only the walk's entries: the neighbour's is untouched.
        assert_eq!(h.ram().read_u64(PT + 6 * 8).unwrap(), 0);
    }

    #[test]
    fn a_read_only_page_is_never_dirtied() {
        let h = four_levels();
        h.set(PT + 5 * 8, FRAME | P);
        let t = walk(&h.ram(), PML4, VA).unwrap();
        assert!(!t.writable);
        assert_eq!(mark_used(&h.ram(), PML4, VA, true, t), t);
        assert_eq!(ad(&h), [ACCESSED; 4]);
    }

    #[test]
    fn a_large_page_is_dirtied_in_its_directory_entry() {
        let h = four_levels();
        h.set(PD + 8, 0x20_0000 | PW | LARGE);
        let t = walk(&h.ram(), PML4, VA).unwrap();
        assert_eq!(mark_used(&h.ram(), PML4, VA, true, t), t);
        let pde = h.ram().read_u64(PD + 8).unwrap();
        assert_eq!(pde & (ACCESSED | DIRTY), ACCESSED | DIRTY);
        assert_eq!(pde & !(ACCESSED | DIRTY), 0x20_0000 | PW | LARGE);
        // The page table the PDE no longer points to is not touched.
        assert_eq!(h.ram().read_u64(PT + 5 * 8).unwrap(), FRAME | PW);
    }

    #[test]
    fn tables_changed_under_the_walk_map_the_page_read_only() {
        let h = four_levels();
        let t = walk(&h.ram(), PML4, VA).unwrap();
        h.set(PD + 8, 0);
        assert_eq!(
            mark_used(&h.ram(), PML4, VA, true, t),
            Translation {
                writable: false,
                ..t
            }
        );
        assert_eq!(h.ram().read_u64(PT + 5 * 8).unwrap(), FRAME | PW);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::ram::host::HostRam;
    use proptest::prelude::*;

    /// RAM of 1..=8 pages and a few bytes (not always a page multiple),
    /// filled with entries that mostly point inside it (or just past it),
    /// with random flags: walks that go somewhere.
    fn ram_contents() -> impl Strategy<Value = (u64, Vec<u64>)> {
        (1u64..=8, prop_oneof![Just(0u64), 1u64..4096]).prop_flat_map(|(pages, extra)| {
            let size = pages * 4096 + (extra & !7);
            let entry = prop_oneof![
                // An entry naming a page in RAM or just past it, any flags.
                (0..pages + 2, any::<u16>())
                    .prop_map(|(page, flags)| { (page << 12) | u64::from(flags & 0x0fff) }),
                // Anything.
                any::<u64>(),
            ];
            (
                Just(size),
                proptest::collection::vec(entry, (size / 8) as usize),
            )
        })
    }

    /// A canonical or non-canonical address, often the low or high half.
    fn address() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..0x80_0000_0000,
            any::<u64>().prop_map(|v| v | 0xffff_8000_0000_0000),
            any::<u64>(),
        ]
    }

    /// The RAM with `words` in it and `fill` in a page of guard past it.
    fn build(size: u64, words: &[u64], fill: u8) -> HostRam {
        let h = HostRam::with_guard(size, 4096, fill);
        for (bytes, w) in h.all().chunks_exact_mut(8).zip(words) {
            bytes.copy_from_slice(&w.to_le_bytes());
        }
        h
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// On any RAM contents, CR3 and address the walk returns, reads no
        /// byte past RAM (its result does not depend on what is there), and
        /// a translation it finds is a whole page in RAM.
        #[test]
        fn the_walk_stays_in_ram(
            (size, words) in ram_contents(),
            cr3_page in 0u64..10,
            cr3_low in any::<u64>(),
            va in address(),
        ) {
            let cr3 = (cr3_page << 12) | (cr3_low & !ADDR);
            let zeros = build(size, &words, 0);
            let ones = build(size, &words, 0xff);
            let result = walk(&zeros.ram(), cr3, va);
            prop_assert_eq!(result, walk(&ones.ram(), cr3, va));
            prop_assert_eq!(
                walk_keeping_upper(&zeros.ram(), cr3, va),
                walk_keeping_upper(&ones.ram(), cr3, va)
            );
            if let Ok(t) = result {
                prop_assert_eq!(t.gpa % 4096, 0);
                prop_assert!(zeros.ram().contains(t.gpa, 4096));
                // Every address in the page translates the same way.
                prop_assert_eq!(walk(&zeros.ram(), cr3, va & !0xfff), result);
                prop_assert_eq!(walk(&zeros.ram(), cr3, va | 0xfff), result);
            }
        }

        /// The route a CR3 load takes — the upper levels packed, unpacked
        /// and finished — finds exactly the translations a walk finds.
        #[test]
        fn the_packed_upper_levels_finish_like_a_walk(
            (size, words) in ram_contents(),
            cr3_page in 0u64..10,
            va in address(),
        ) {
            let h = build(size, &words, 0);
            let ram = h.ram();
            let cr3 = cr3_page << 12;
            let upper = upper_levels(&ram, cr3, va);
            let packed = Upper::pack(upper);
            prop_assert_eq!(packed, walk_keeping_upper(&ram, cr3, va).upper);
            if let Ok(u) = upper {
                prop_assert_eq!(Upper::unpack(packed), Ok(u));
            }
            prop_assert_eq!(
                finish_walk(&ram, Upper::unpack(packed), va).ok(),
                walk(&ram, cr3, va).ok()
            );
        }

        /// Every address of a 2 MiB region shares its upper levels.
        #[test]
        fn a_region_has_one_upper_result(
            (size, words) in ram_contents(),
            cr3_page in 0u64..10,
            va in address(),
            offset in 0u64..0x20_0000,
        ) {
            let h = build(size, &words, 0);
            let ram = h.ram();
            let cr3 = cr3_page << 12;
            let region = va & !0x1f_ffff;
            prop_assert_eq!(
                upper_levels(&ram, cr3, region),
                upper_levels(&ram, cr3, region | offset)
            );
        }
    }
}
