//! The page-table trace's format (docs/vtlb.md, "Record and replay"): one
//! record per line of text, written by the recorder ([`crate::record`]) on
//! the VMM's serial after the prefix [`PREFIX`] and read back on the host
//! ([`crate::replay`]). One definition of the text serves both sides, so
//! what the recorder writes is what the reader parses.
//!
//! The last record, `E`, counts the records before it and carries an
//! FNV-1a checksum of their text: a trace cut short or altered is refused,
//! never replayed.

use core::fmt;

/// What starts each trace line on the VMM's serial.
pub const PREFIX: &str = "vtlb-trace: ";

/// The format's version, in the header (2: a guest's processes, `U` and
/// `P`).
pub const VERSION: u64 = 2;

/// One record. Numbers are written in lower-case hex without `0x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// `H version ram cr3 wedge`: guest RAM in bytes, the first CR3, the
    /// guest-physical start of the wedge's memory (`-` for none).
    Header {
        version: u64,
        ram: u64,
        cr3: u64,
        wedge: Option<u64>,
    },
    /// `F va w`: a VM fault of the guest at `va`, writing (1) or not (0).
    Fault { va: u64, write: bool },
    /// `P va w`: a VM fault of a guest process (in the user view the
    /// thread entered at the last `U`) at `va`, writing or not.
    UserFault { va: u64, write: bool },
    /// `U`: the guest enters user mode (the wedge's `EnterUser`) in the
    /// user view of the current CR3.
    EnterUser,
    /// `C cr3`: a CR3 load.
    Cr3 { cr3: u64 },
    /// `I va`: an invlpg.
    Invlpg { va: u64 },
    /// `W gpa value`: the 64-bit word of a page table at `gpa` holds
    /// `value` from here on (a table's contents when it became known, or
    /// an entry the guest changed since the last record).
    Write { gpa: u64, value: u64 },
    /// `E records checksum`: the end; how many records came before it and
    /// the FNV-1a (64-bit) of their text, each followed by a newline.
    End { records: u64, checksum: u64 },
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Record::Header {
                version,
                ram,
                cr3,
                wedge,
            } => {
                write!(f, "H {version:x} {ram:x} {cr3:x} ")?;
                match wedge {
                    Some(w) => write!(f, "{w:x}"),
                    None => f.write_str("-"),
                }
            }
            Record::Fault { va, write } => write!(f, "F {va:x} {}", u8::from(write)),
            Record::UserFault { va, write } => write!(f, "P {va:x} {}", u8::from(write)),
            Record::EnterUser => f.write_str("U"),
            Record::Cr3 { cr3 } => write!(f, "C {cr3:x}"),
            Record::Invlpg { va } => write!(f, "I {va:x}"),
            Record::Write { gpa, value } => write!(f, "W {gpa:x} {value:x}"),
            Record::End { records, checksum } => write!(f, "E {records:x} {checksum:x}"),
        }
    }
}

/// Why a trace line is not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceError {
    /// The line's kind letter is none of `HFPUCIWE`.
    UnknownKind(char),
    /// The line is empty.
    Empty,
    /// Field `field` (from 1) is missing.
    Missing { field: usize },
    /// Field `field` is not a hex number (or 0/1 for a fault's access).
    BadNumber { field: usize },
    /// More fields than the kind has.
    Extra,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::UnknownKind(c) => write!(f, "unknown record kind {c:?}"),
            TraceError::Empty => f.write_str("empty record"),
            TraceError::Missing { field } => write!(f, "field {field} is missing"),
            TraceError::BadNumber { field } => write!(f, "field {field} is not a hex number"),
            TraceError::Extra => f.write_str("more fields than the record has"),
        }
    }
}

impl Record {
    /// Parses one record (the text after [`PREFIX`]).
    pub fn parse(line: &str) -> Result<Record, TraceError> {
        let mut all = line.split(' ');
        let kind = all
            .next()
            .filter(|k| !k.is_empty())
            .ok_or(TraceError::Empty)?;
        // Up to four fields; a fifth is one too many for every kind.
        let mut fields = [None::<&str>; 5];
        for slot in &mut fields {
            *slot = all.next();
        }
        let mut used = 0;
        let mut next = |_: &mut ()| -> Result<&str, TraceError> {
            let field = used + 1;
            let f = fields[used].ok_or(TraceError::Missing { field })?;
            used += 1;
            Ok(f)
        };
        let hex = |s: &str, field: usize| -> Result<u64, TraceError> {
            // from_str_radix takes a sign; the format has none.
            if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(TraceError::BadNumber { field });
            }
            u64::from_str_radix(s, 16).map_err(|_| TraceError::BadNumber { field })
        };
        let record = match kind {
            "H" => Record::Header {
                version: hex(next(&mut ())?, 1)?,
                ram: hex(next(&mut ())?, 2)?,
                cr3: hex(next(&mut ())?, 3)?,
                wedge: match next(&mut ())? {
                    "-" => None,
                    w => Some(hex(w, 4)?),
                },
            },
            "F" | "P" => {
                let va = hex(next(&mut ())?, 1)?;
                let write = match next(&mut ())? {
                    "0" => false,
                    "1" => true,
                    _ => return Err(TraceError::BadNumber { field: 2 }),
                };
                if kind == "F" {
                    Record::Fault { va, write }
                } else {
                    Record::UserFault { va, write }
                }
            }
            "U" => Record::EnterUser,
            "C" => Record::Cr3 {
                cr3: hex(next(&mut ())?, 1)?,
            },
            "I" => Record::Invlpg {
                va: hex(next(&mut ())?, 1)?,
            },
            "W" => Record::Write {
                gpa: hex(next(&mut ())?, 1)?,
                value: hex(next(&mut ())?, 2)?,
            },
            "E" => Record::End {
                records: hex(next(&mut ())?, 1)?,
                checksum: hex(next(&mut ())?, 2)?,
            },
            other => return Err(TraceError::UnknownKind(other.chars().next().unwrap_or(' '))),
        };
        if fields.get(used).copied().flatten().is_some() || all.next().is_some() {
            return Err(TraceError::Extra);
        }
        Ok(record)
    }
}

/// The running FNV-1a (64-bit) of a trace's record text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksum(pub u64);

impl Default for Checksum {
    fn default() -> Self {
        Checksum(0xcbf2_9ce4_8422_2325)
    }
}

impl Checksum {
    pub fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Adds one record's line: its text and a newline.
    pub fn add_line(&mut self, text: &str) {
        self.add(text.as_bytes());
        self.add(b"\n");
    }
}

/// A record's text in a fixed buffer (the longest, a header, is 69
/// bytes), for the recorder: no allocator.
#[derive(Clone, Copy, Debug)]
pub struct Line {
    buf: [u8; 80],
    len: usize,
}

impl Line {
    pub fn of(record: &Record) -> Line {
        let mut line = Line {
            buf: [0; 80],
            len: 0,
        };
        // Every record fits: a longer one would be cut, and refused by its
        // checksum on the host.
        let _ = fmt::write(&mut line, format_args!("{record}"));
        line
    }

    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in, within `buf`.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<Option<u64>>()
            )
                .prop_map(|(version, ram, cr3, wedge)| Record::Header {
                    version,
                    ram,
                    cr3,
                    wedge
                }),
            (any::<u64>(), any::<bool>()).prop_map(|(va, write)| Record::Fault { va, write }),
            (any::<u64>(), any::<bool>()).prop_map(|(va, write)| Record::UserFault { va, write }),
            Just(Record::EnterUser),
            any::<u64>().prop_map(|cr3| Record::Cr3 { cr3 }),
            any::<u64>().prop_map(|va| Record::Invlpg { va }),
            (any::<u64>(), any::<u64>()).prop_map(|(gpa, value)| Record::Write { gpa, value }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(records, checksum)| Record::End { records, checksum }),
        ]
    }

    proptest! {
        /// What the recorder writes, the reader reads back the same.
        #[test]
        fn every_record_round_trips_through_its_line(r in record()) {
            let line = Line::of(&r);
            prop_assert_eq!(Record::parse(line.as_str()), Ok(r));
            prop_assert_eq!(line.as_str(), std::format!("{r}"));
        }

        /// Any text is a record or an error, never a panic.
        #[test]
        fn any_text_parses_or_is_refused(s in "\\PC{0,40}") {
            let _ = Record::parse(&s);
        }

        /// A record with one character changed or cut is refused or reads
        /// as another record: never silently as itself.
        #[test]
        fn a_damaged_record_is_not_taken_for_itself(r in record(), at in 0usize..64, cut in any::<bool>()) {
            let line = Line::of(&r);
            let text = line.as_str();
            let at = at % text.len();
            let damaged: String = if cut {
                text[..at].into()
            } else {
                let mut b = text.as_bytes().to_vec();
                b[at] = if b[at] == b'z' { b'y' } else { b'z' };
                String::from_utf8(b).unwrap()
            };
            prop_assert_ne!(Record::parse(&damaged), Ok(r));
        }
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert_eq!(Record::parse(""), Err(TraceError::Empty));
        assert_eq!(Record::parse("X 1"), Err(TraceError::UnknownKind('X')));
        assert_eq!(
            Record::parse("F 1000"),
            Err(TraceError::Missing { field: 2 })
        );
        assert_eq!(
            Record::parse("F 1000 2"),
            Err(TraceError::BadNumber { field: 2 })
        );
        assert_eq!(
            Record::parse("W +10 0"),
            Err(TraceError::BadNumber { field: 1 })
        );
        assert_eq!(
            Record::parse("C 10000000000000000"),
            Err(TraceError::BadNumber { field: 1 })
        );
        assert_eq!(Record::parse("I 10 20"), Err(TraceError::Extra));
        assert_eq!(Record::parse("U 1"), Err(TraceError::Extra));
        assert_eq!(
            Record::parse("P 10000 1"),
            Ok(Record::UserFault {
                va: 0x10000,
                write: true
            })
        );
        assert_eq!(
            Record::parse("H 1 4000000 3ffc000 -"),
            Ok(Record::Header {
                version: 1,
                ram: 0x400_0000,
                cr3: 0x3ff_c000,
                wedge: None
            })
        );
    }

    #[test]
    fn the_checksum_is_fnv1a() {
        // FNV-1a 64 of "a" (a published test vector).
        let mut c = Checksum::default();
        c.add(b"a");
        assert_eq!(c.0, 0xaf63_dc4c_8601_ec8c);
    }
}
