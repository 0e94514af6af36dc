//! Reading the guest's `.afterburn` section: the sites to rewrite and the
//! opted-out regions to leave alone.
//!
//! The section is untrusted input as far as this module is concerned (a
//! corrupt image must not crash the wedge): [`Records::parse`] validates the
//! whole section before anything is yielded, so a caller never rewrites half
//! of a guest and then finds an error.

use afterburn_format::{self as fmt, Kind, Record, WalkError};

/// Opted-out regions the wedge can track. A guest has one (its multiboot
/// trampoline); a fixed bound keeps the wedge free of an allocator.
pub const MAX_REGIONS: usize = 16;
/// Nesting depth of opt-out markers that [`Records::parse`] accepts.
const MAX_NESTING: usize = 4;
/// The longest x86 instruction.
pub const MAX_INSN_LEN: u8 = 15;

/// One recorded site: where it is, how it is laid out, what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// Address of the site's first byte.
    pub address: u64,
    /// What the instruction is.
    pub kind: Kind,
    /// `FLAG_*` bits of the record.
    pub flags: u16,
    /// Bytes of the whole site (instruction, pair, padding).
    pub site_len: u8,
    /// Bytes of the sensitive instruction.
    pub insn_len: u8,
    /// Bytes of the shadowed second instruction (0 if none).
    pub pair_len: u8,
}

impl Site {
    /// The address just past the site: where execution resumes after it.
    pub fn end(&self) -> u64 {
        // Cannot overflow: `Records::parse` refuses sites that wrap.
        self.address.wrapping_add(u64::from(self.site_len))
    }

    /// The address just past the sensitive instruction (its native "next
    /// instruction", the base of RIP-relative operands).
    pub fn insn_end(&self) -> u64 {
        self.address.wrapping_add(u64::from(self.insn_len))
    }

    /// True if the site holds a shadowed pair (`sti; hlt`).
    pub fn has_pair(&self) -> bool {
        self.flags & fmt::FLAG_SHADOW_PAIR != 0
    }

    /// True if the site is 64-bit code (neither `CODE32` nor `CODE16`).
    pub fn is_64bit(&self) -> bool {
        self.flags & (fmt::FLAG_CODE32 | fmt::FLAG_CODE16) == 0
    }
}

/// An opted-out region `[begin, end)`: bare-metal-only code, not rewritten.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub begin: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Region {
    /// True if `address` is inside the region.
    pub fn contains(&self, address: u64) -> bool {
        self.begin <= address && address < self.end
    }
}

/// Why a section was refused. Offsets are byte offsets in the section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The chunk structure is broken (bad magic, version, sizes, truncation).
    Walk(WalkError),
    /// A site record has a kind number this wedge does not know.
    UnknownKind { offset: usize, kind: u16 },
    /// A marker record has a number this wedge does not know.
    UnknownMarker { offset: usize, kind: u16 },
    /// A site's lengths are inconsistent (zero or over-long instruction,
    /// instruction and pair longer than the site, pair length without the
    /// flag or the flag without a pair).
    BadLengths { offset: usize },
    /// The site runs past the end of the address space.
    Wraps { offset: usize },
    /// An opt-out end without a begin, a begin never ended, an end before
    /// its begin, or nesting deeper than this wedge tracks.
    UnbalancedOptOut { offset: usize },
    /// More opted-out regions than [`MAX_REGIONS`].
    TooManyRegions { offset: usize },
}

/// A validated `.afterburn` section.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    section: &'a [u8],
    regions: [Region; MAX_REGIONS],
    region_count: usize,
    site_count: usize,
}

impl<'a> Records<'a> {
    /// Validates every chunk and record of `section` and collects the
    /// opted-out regions.
    pub fn parse(section: &'a [u8]) -> Result<Records<'a>, RecordError> {
        let mut regions = [Region::default(); MAX_REGIONS];
        let mut region_count = 0usize;
        let mut open: [(u64, usize); MAX_NESTING] = [(0, 0); MAX_NESTING];
        let mut depth = 0usize;
        let mut site_count = 0usize;
        // `walk_records` takes a closure that cannot fail, so the first error
        // is kept here and the rest of the walk is ignored.
        let mut error: Option<RecordError> = None;
        fmt::walk_records(section, |offset, record| {
            if error.is_some() {
                return;
            }
            let result = if record.is_site() {
                check_site(offset, &record).map(|_| site_count += 1)
            } else {
                match record.kind {
                    fmt::MARKER_OPT_OUT_BEGIN => {
                        if depth == MAX_NESTING {
                            Err(RecordError::UnbalancedOptOut { offset })
                        } else {
                            open[depth] = (record.address, offset);
                            depth += 1;
                            Ok(())
                        }
                    }
                    fmt::MARKER_OPT_OUT_END => match depth.checked_sub(1) {
                        None => Err(RecordError::UnbalancedOptOut { offset }),
                        Some(d) => {
                            depth = d;
                            let begin = open[d].0;
                            if record.address < begin {
                                Err(RecordError::UnbalancedOptOut { offset })
                            } else if region_count == MAX_REGIONS {
                                Err(RecordError::TooManyRegions { offset })
                            } else {
                                regions[region_count] = Region {
                                    begin,
                                    end: record.address,
                                };
                                region_count += 1;
                                Ok(())
                            }
                        }
                    },
                    fmt::MARKER_CODE_MODE | fmt::MARKER_DATA_BEGIN | fmt::MARKER_DATA_END => Ok(()),
                    kind => Err(RecordError::UnknownMarker { offset, kind }),
                }
            };
            if let Err(e) = result {
                error = Some(e);
            }
        })
        .map_err(RecordError::Walk)?;
        if let Some(e) = error {
            return Err(e);
        }
        if depth != 0 {
            return Err(RecordError::UnbalancedOptOut {
                offset: open[depth - 1].1,
            });
        }
        Ok(Records {
            section,
            regions,
            region_count,
            site_count,
        })
    }

    /// The opted-out regions.
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.region_count]
    }

    /// True if `address` is in an opted-out region.
    pub fn is_opted_out(&self, address: u64) -> bool {
        self.regions().iter().any(|r| r.contains(address))
    }

    /// Number of site records (markers not counted).
    pub fn site_count(&self) -> usize {
        self.site_count
    }

    /// Calls `f` for every site, in section order.
    pub fn for_each_site(&self, mut f: impl FnMut(Site)) {
        // Already validated in `parse`, so neither the walk nor a conversion
        // can fail here; failures are skipped rather than unwrapped anyway.
        let _ = fmt::walk_records(self.section, |offset, record| {
            if record.is_site() {
                if let Ok(site) = check_site(offset, &record) {
                    f(site);
                }
            }
        });
    }
}

/// Validates one site record and converts it.
fn check_site(offset: usize, r: &Record) -> Result<Site, RecordError> {
    let kind = Kind::from_number(r.kind).ok_or(RecordError::UnknownKind {
        offset,
        kind: r.kind,
    })?;
    let has_pair = r.flags & fmt::FLAG_SHADOW_PAIR != 0;
    let used = u16::from(r.insn_len) + u16::from(r.pair_len);
    if r.insn_len == 0
        || r.insn_len > MAX_INSN_LEN
        || r.pair_len > MAX_INSN_LEN
        || used > u16::from(r.site_len)
        || has_pair != (r.pair_len != 0)
    {
        return Err(RecordError::BadLengths { offset });
    }
    if r.address.checked_add(u64::from(r.site_len)).is_none() {
        return Err(RecordError::Wraps { offset });
    }
    Ok(Site {
        address: r.address,
        kind,
        flags: r.flags,
        site_len: r.site_len,
        insn_len: r.insn_len,
        pair_len: r.pair_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::section;

    fn rec(address: u64, kind: u16, site_len: u8, insn_len: u8) -> Record {
        Record {
            address,
            kind,
            flags: 0,
            site_len,
            insn_len,
            pair_len: 0,
            reserved: 0,
        }
    }

    #[test]
    fn sites_and_regions_are_read() {
        let sti_hlt = Record {
            flags: fmt::FLAG_SHADOW_PAIR,
            pair_len: 1,
            ..rec(0x2000, Kind::Sti.number(), 12, 1)
        };
        let sec = section(&[
            &[rec(0x1000, fmt::MARKER_OPT_OUT_BEGIN, 0, 0)],
            &[
                rec(0x1010, Kind::Lgdt.number(), 16, 7),
                rec(0x1100, fmt::MARKER_OPT_OUT_END, 0, 0),
                sti_hlt,
            ],
        ]);
        let records = Records::parse(&sec).unwrap();
        assert_eq!(
            records.regions(),
            &[Region {
                begin: 0x1000,
                end: 0x1100
            }]
        );
        assert!(records.is_opted_out(0x1010));
        assert!(!records.is_opted_out(0x2000));
        let mut sites = Vec::new();
        records.for_each_site(|s| sites.push(s));
        assert_eq!(sites.len(), 2);
        assert_eq!(records.site_count(), 2);
        assert_eq!(sites[1].kind, Kind::Sti);
        assert!(sites[1].has_pair());
        assert_eq!(sites[1].end(), 0x200c);
        assert_eq!(sites[0].insn_end(), 0x1017);
    }

    #[test]
    fn bad_records_are_refused_with_their_offset() {
        // The first record of the first note: after the note's header and
        // the chunk's.
        const FIRST: usize = fmt::NOTE_HEADER_SIZE + 16;
        let cases: [(Record, RecordError); 5] = [
            (
                rec(0x1000, 999, 16, 1),
                RecordError::UnknownKind {
                    offset: FIRST,
                    kind: 999,
                },
            ),
            (
                rec(0x1000, 0x8999, 0, 0),
                RecordError::UnknownMarker {
                    offset: FIRST,
                    kind: 0x8999,
                },
            ),
            (
                rec(0x1000, Kind::Cli.number(), 4, 5),
                RecordError::BadLengths { offset: FIRST },
            ),
            (
                rec(u64::MAX - 3, Kind::Cli.number(), 12, 1),
                RecordError::Wraps { offset: FIRST },
            ),
            (
                rec(0x1000, fmt::MARKER_OPT_OUT_END, 0, 0),
                RecordError::UnbalancedOptOut { offset: FIRST },
            ),
        ];
        for (r, want) in cases {
            assert_eq!(Records::parse(&section(&[&[r]])).unwrap_err(), want);
        }
        let pair_without_flag = Record {
            pair_len: 1,
            ..rec(0x1000, Kind::Sti.number(), 12, 1)
        };
        assert_eq!(
            Records::parse(&section(&[&[pair_without_flag]])).unwrap_err(),
            RecordError::BadLengths { offset: FIRST }
        );
        let unended = section(&[&[rec(0x1000, fmt::MARKER_OPT_OUT_BEGIN, 0, 0)]]);
        assert_eq!(
            Records::parse(&unended).unwrap_err(),
            RecordError::UnbalancedOptOut { offset: FIRST }
        );
        assert!(matches!(
            Records::parse(&[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Err(RecordError::Walk(_))
        ));
    }

    #[test]
    fn empty_section_has_no_sites() {
        let records = Records::parse(&[]).unwrap();
        assert_eq!(records.site_count(), 0);
        assert!(records.regions().is_empty());
    }
}
