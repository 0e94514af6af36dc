//! Code a guest copies before it runs it: Linux's alternatives.
//!
//! At boot Linux's `apply_alternatives()` copies, for every entry of its
//! `.altinstructions` whose CPU feature is present (or absent, for an
//! inverted one), the replacement's bytes from `.altinstr_replacement` over
//! the original instruction, pads with `0x90` and fixes up only a leading
//! `call rel32` or `jmp`. A site inside a replacement therefore runs at
//! its *destination*, never where its record names it, and a site call
//! rewritten in place (`call *disp32(%rip)`, relative) would reach the
//! wrong slot there. The rewrite instead writes such a site for the
//! address it will run at ([`Placement`]): once copied, its call reaches
//! the slot and its table entry ends its call at the return address.
//!
//! The table is 6.1's `struct alt_instr` (`arch/x86/include/asm/
//! alternative.h`), 12 bytes, packed: `s32 instr_offset`, `s32
//! repl_offset` (each relative to its own field), `u16 cpuid` (the feature
//! bit, bit 15 inverting it), `u8 instrlen`, `u8 replacementlen`. The
//! entries are the guest's: read, bounds-checked, never trusted to be
//! consistent.

use crate::records::{Records, Site};

/// The size of one `struct alt_instr`.
pub const ENTRY_LEN: usize = 12;
/// `cpuid` bit 15: the replacement is applied when the feature is absent.
pub const FLAG_INV: u16 = 1 << 15;

/// One entry of `.altinstructions`, its offsets resolved to addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AltInstr {
    /// The original instruction(s): what the replacement is copied over.
    pub instr: u64,
    /// The replacement's bytes.
    pub repl: u64,
    /// The feature bit (word * 32 + bit), without [`FLAG_INV`].
    pub feature: u16,
    /// Applied when the feature is absent rather than present.
    pub inverted: bool,
    pub instrlen: u8,
    pub replacementlen: u8,
}

impl AltInstr {
    /// True if `[address, address + len)` lies inside the replacement.
    pub fn replacement_holds(&self, address: u64, len: u8) -> bool {
        let end = self.repl.saturating_add(u64::from(self.replacementlen));
        address >= self.repl && address.saturating_add(u64::from(len)) <= end
    }

    /// True if `[address, address + len)` overlaps the replacement.
    pub fn replacement_overlaps(&self, address: u64, len: u8) -> bool {
        let end = self.repl.saturating_add(u64::from(self.replacementlen));
        address < end && address.saturating_add(u64::from(len)) > self.repl
    }
}

/// A guest's `.altinstructions`, in its memory at `address`.
#[derive(Clone, Copy, Debug)]
pub struct Alternatives<'a> {
    bytes: &'a [u8],
    address: u64,
}

/// Why a table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AltError {
    /// The length is not a whole number of entries.
    Length { len: usize },
}

impl<'a> Alternatives<'a> {
    /// The table `bytes`, which the guest has at `address`.
    pub fn new(bytes: &'a [u8], address: u64) -> Result<Alternatives<'a>, AltError> {
        if bytes.len() % ENTRY_LEN != 0 {
            return Err(AltError::Length { len: bytes.len() });
        }
        Ok(Alternatives { bytes, address })
    }

    /// No table: nothing is copied.
    pub const fn none() -> Alternatives<'static> {
        Alternatives {
            bytes: &[],
            address: 0,
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.bytes.len() / ENTRY_LEN
    }

    /// True for an empty table.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The entries, in table order (the order Linux applies them).
    pub fn entries(&self) -> impl Iterator<Item = AltInstr> + '_ {
        self.bytes
            .chunks_exact(ENTRY_LEN)
            .enumerate()
            .map(move |(i, e)| {
                let field = self.address.wrapping_add((i * ENTRY_LEN) as u64);
                let s32 = |at: usize| i32::from_le_bytes([e[at], e[at + 1], e[at + 2], e[at + 3]]);
                let cpuid = u16::from_le_bytes([e[8], e[9]]);
                AltInstr {
                    instr: field.wrapping_add(s32(0) as i64 as u64),
                    repl: field.wrapping_add(4).wrapping_add(s32(4) as i64 as u64),
                    feature: cpuid & !FLAG_INV,
                    inverted: cpuid & FLAG_INV != 0,
                    instrlen: e[10],
                    replacementlen: e[11],
                }
            })
    }

    /// Where the `len` bytes at `address` run.
    pub fn placement(&self, address: u64, len: u8) -> Placement {
        let mut found = None;
        for a in self.entries() {
            if !a.replacement_overlaps(address, len) {
                continue;
            }
            // Partly inside a replacement, or copied by two entries, or
            // to an original too short for it (Linux would refuse to
            // patch): no single address to rewrite it for.
            if !a.replacement_holds(address, len)
                || found.is_some()
                || a.replacementlen > a.instrlen
            {
                return Placement::Unplaceable;
            }
            found = Some(a.instr.wrapping_add(address - a.repl));
        }
        found.map_or(Placement::InPlace, Placement::CopiedTo)
    }
}

/// Where a site runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Where its record names it.
    InPlace,
    /// Only at this address, once the guest has copied it there.
    CopiedTo(u64),
    /// Copied, but to no single place the rewrite can write it for: it is
    /// left as written.
    Unplaceable,
}

/// The placement of every site of a guest that does not run where its
/// record names it, decided once before the rewrite (the table is read
/// from the code the rewrite then writes): at most `N`, in a fixed array
/// (the wedge has no allocator).
#[derive(Clone, Copy, Debug)]
pub struct Placements<const N: usize> {
    moved: [(u64, Placement); N],
    len: usize,
}

/// More sites are copied than [`Placements`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyCopied {
    pub capacity: usize,
}

impl<const N: usize> Placements<N> {
    /// No site is copied.
    pub const fn new() -> Placements<N> {
        Placements {
            moved: [(0, Placement::InPlace); N],
            len: 0,
        }
    }

    /// Decides where each site of `records` runs under `alts`. Only sites
    /// between the lowest and the highest replacement byte are compared
    /// with the entries, so the cost is the table's size plus the sites
    /// there times the entries.
    pub fn decide(
        &mut self,
        records: &Records<'_>,
        alts: &Alternatives<'_>,
    ) -> Result<(), TooManyCopied> {
        self.len = 0;
        let span = alts.entries().fold((u64::MAX, 0u64), |(lo, hi), a| {
            (
                lo.min(a.repl),
                hi.max(a.repl.saturating_add(u64::from(a.replacementlen))),
            )
        });
        let mut full = false;
        records.for_each_site(|site| {
            if site.address.saturating_add(u64::from(site.site_len)) <= span.0
                || site.address >= span.1
            {
                return;
            }
            let p = alts.placement(site.address, site.site_len);
            if p == Placement::InPlace {
                return;
            }
            match self.moved.get_mut(self.len) {
                Some(slot) => {
                    *slot = (site.address, p);
                    self.len += 1;
                }
                None => full = true,
            }
        });
        if full {
            return Err(TooManyCopied { capacity: N });
        }
        Ok(())
    }

    /// Where `site` runs.
    pub fn of(&self, site: &Site) -> Placement {
        self.moved[..self.len]
            .iter()
            .find(|(at, _)| *at == site.address)
            .map_or(Placement::InPlace, |&(_, p)| p)
    }

    /// The sites that do not run where their records name them.
    pub fn moved(&self) -> &[(u64, Placement)] {
        &self.moved[..self.len]
    }
}

impl<const N: usize> Default for Placements<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: u64 = 0xffff_ffff_8193_8bb0;

    fn entry(at: u64, instr: u64, repl: u64, cpuid: u16, lens: (u8, u8)) -> [u8; ENTRY_LEN] {
        let mut e = [0u8; ENTRY_LEN];
        e[0..4].copy_from_slice(&(instr.wrapping_sub(at) as i32).to_le_bytes());
        e[4..8].copy_from_slice(&(repl.wrapping_sub(at + 4) as i32).to_le_bytes());
        e[8..10].copy_from_slice(&cpuid.to_le_bytes());
        e[10] = lens.0;
        e[11] = lens.1;
        e
    }

    fn table(entries: &[(u64, u64, u16, (u8, u8))]) -> Vec<u8> {
        entries
            .iter()
            .enumerate()
            .flat_map(|(i, &(instr, repl, cpuid, lens))| {
                entry(TABLE + (i * ENTRY_LEN) as u64, instr, repl, cpuid, lens)
            })
            .collect()
    }

    #[test]
    fn entries_resolve_their_offsets_from_their_own_fields() {
        let bytes = table(&[
            (
                0xffff_ffff_8120_0e04,
                0xffff_ffff_8193_bb22,
                (22 * 32 + 10),
                (21, 21),
            ),
            (
                0xffff_ffff_8101_a26c,
                0xffff_ffff_8193_bf47,
                FLAG_INV | (3 * 32 + 16),
                (16, 0),
            ),
        ]);
        let alts = Alternatives::new(&bytes, TABLE).unwrap();
        let e: Vec<AltInstr> = alts.entries().collect();
        assert_eq!(alts.len(), 2);
        assert_eq!(e[0].instr, 0xffff_ffff_8120_0e04);
        assert_eq!(e[0].repl, 0xffff_ffff_8193_bb22);
        assert_eq!((e[0].feature, e[0].inverted), (22 * 32 + 10, false));
        assert_eq!((e[0].instrlen, e[0].replacementlen), (21, 21));
        assert_eq!(e[1].instr, 0xffff_ffff_8101_a26c);
        assert_eq!((e[1].feature, e[1].inverted), (3 * 32 + 16, true));
    }

    #[test]
    fn a_table_of_a_partial_entry_is_refused() {
        assert_eq!(
            Alternatives::new(&[0; 13], TABLE).err(),
            Some(AltError::Length { len: 13 })
        );
        assert!(Alternatives::none().is_empty());
    }

    #[test]
    fn a_site_in_a_replacement_runs_at_the_same_offset_in_the_original() {
        let (instr, repl) = (0xffff_ffff_8120_0e04, 0xffff_ffff_8193_bb22);
        let bytes = table(&[(instr, repl, 1, (21, 21))]);
        let alts = Alternatives::new(&bytes, TABLE).unwrap();
        assert_eq!(alts.placement(repl + 5, 16), Placement::CopiedTo(instr + 5));
        assert_eq!(alts.placement(repl, 21), Placement::CopiedTo(instr));
        // Not in any replacement: where it is.
        assert_eq!(alts.placement(instr + 5, 16), Placement::InPlace);
        assert_eq!(alts.placement(repl + 21, 8), Placement::InPlace);
    }

    #[test]
    fn a_site_that_straddles_a_replacement_or_is_copied_twice_has_no_place() {
        let (repl, other) = (0xffff_ffff_8193_c000, 0xffff_ffff_8100_1000);
        let once = table(&[(other, repl, 1, (16, 16))]);
        let alts = Alternatives::new(&once, TABLE).unwrap();
        assert_eq!(alts.placement(repl + 8, 12), Placement::Unplaceable);
        assert_eq!(alts.placement(repl - 2, 8), Placement::Unplaceable);
        let twice = table(&[(other, repl, 1, (16, 16)), (other + 64, repl, 2, (16, 16))]);
        let alts = Alternatives::new(&twice, TABLE).unwrap();
        assert_eq!(alts.placement(repl, 16), Placement::Unplaceable);
        // A replacement longer than its original: Linux would not copy it.
        let long = table(&[(other, repl, 1, (8, 16))]);
        let alts = Alternatives::new(&long, TABLE).unwrap();
        assert_eq!(alts.placement(repl, 16), Placement::Unplaceable);
    }

    #[test]
    fn placements_are_decided_for_the_sites_in_replacements_only() {
        use crate::testutil::section;
        use afterburn_format::{Kind, Record};
        let (instr, repl) = (0xffff_ffff_8101_a26c_u64, 0xffff_ffff_8193_bf47_u64);
        let rec = |address: u64| Record {
            address,
            kind: Kind::Wrmsr.number(),
            flags: 0,
            site_len: 16,
            insn_len: 2,
            pair_len: 0,
            reserved: 0,
        };
        let sec = section(&[&[rec(instr), rec(repl), rec(repl + 0x100)]]);
        let records = Records::parse(&sec).unwrap();
        let bytes = table(&[(instr, repl, 7 * 32 + 21, (16, 16))]);
        let alts = Alternatives::new(&bytes, TABLE).unwrap();
        let mut p = Placements::<4>::new();
        p.decide(&records, &alts).unwrap();
        assert_eq!(p.moved(), &[(repl, Placement::CopiedTo(instr))]);
        let site = |address| Site {
            address,
            kind: Kind::Wrmsr,
            flags: 0,
            site_len: 16,
            insn_len: 2,
            pair_len: 0,
        };
        assert_eq!(p.of(&site(repl)), Placement::CopiedTo(instr));
        assert_eq!(p.of(&site(instr)), Placement::InPlace);
        let mut none = Placements::<0>::new();
        assert_eq!(
            none.decide(&records, &alts),
            Err(TooManyCopied { capacity: 0 })
        );
    }
}
