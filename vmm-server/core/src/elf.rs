//! Reading the guest's ELF64 file (as carried in the image window): its
//! loadable segments by physical address, its sections by name, and the PV
//! entry header (docs/pv-boot.md). Every offset is checked, and every sum
//! of offsets: a malformed image is an error, never a fault or a panic in
//! the VMM.

use previrt_protocol::PV_HEADER_MAGIC;

/// The size of an ELF64 file header.
const EHDR_SIZE: usize = 64;
/// The size of an ELF64 program header: `e_phentsize` may not be smaller.
const PHDR_SIZE: u64 = 56;
/// The size of an ELF64 section header: `e_shentsize` may not be smaller.
const SHDR_SIZE: u64 = 64;
/// How far into the file the PV entry header may start.
const PV_HEADER_WINDOW: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not a little-endian x86-64 ELF64 file (or shorter than its header).
    NotElf64,
    /// `what` at file offset `offset` runs past the file (or its offset
    /// does not fit in 64 bits).
    Truncated {
        what: &'static str,
        offset: u64,
    },
    /// A program or section header size (`e_phentsize`, `e_shentsize`)
    /// smaller than an ELF64 header of that kind.
    BadEntrySize {
        what: &'static str,
        size: u64,
    },
    NoPvHeader,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::NotElf64 => f.write_str("not a little-endian x86-64 ELF64 file"),
            ElfError::Truncated { what, offset } => {
                write!(f, "{what} at file offset {offset:#x} runs past the file")
            }
            ElfError::BadEntrySize { what, size } => {
                write!(f, "{what} of {size} bytes is too small for ELF64")
            }
            ElfError::NoPvHeader => f.write_str("no PV entry header (\"PVE1\") in the first 8 KiB"),
        }
    }
}

/// `sh_type` of a note section.
const SHT_NOTE: u64 = 7;
/// `sh_flags`: the section is loaded.
const SHF_ALLOC: u64 = 2;

/// The fields of a section header the loader reads.
#[derive(Clone, Copy, Debug)]
struct SectionHeader<'a> {
    name: &'a [u8],
    kind: u64,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct Elf<'a> {
    bytes: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    /// `p_vaddr`: where the image is linked to run (Linux: its kernel
    /// mapping, `p_paddr` + `0xffffffff80000000`; the test guest: `p_paddr`).
    pub vaddr: u64,
    pub file_offset: u64,
    pub file_size: u64,
    pub mem_size: u64,
    /// `p_flags`: PF_X = 1, PF_W = 2, PF_R = 4.
    pub flags: u64,
}

impl Segment {
    pub fn writable(&self) -> bool {
        self.flags & 2 != 0
    }

    pub fn executable(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// The little-endian `n`-byte word at `at`.
fn word(bytes: &[u8], at: u64, n: usize, what: &'static str) -> Result<u64, ElfError> {
    let start = usize::try_from(at).map_err(|_| ElfError::Truncated { what, offset: at })?;
    let raw = start
        .checked_add(n)
        .and_then(|end| bytes.get(start..end))
        .ok_or(ElfError::Truncated { what, offset: at })?;
    Ok(raw
        .iter()
        .rev()
        .fold(0, |acc, &b| (acc << 8) | u64::from(b)))
}

/// `base + index * size + field`, or `Truncated` at `base` if that does
/// not fit in 64 bits (it could not be in the file either).
fn offset(
    base: u64,
    index: u64,
    size: u64,
    field: u64,
    what: &'static str,
) -> Result<u64, ElfError> {
    index
        .checked_mul(size)
        .and_then(|o| o.checked_add(field))
        .and_then(|o| base.checked_add(o))
        .ok_or(ElfError::Truncated { what, offset: base })
}

impl<'a> Elf<'a> {
    /// Checks the identification (ELF64, little-endian, x86-64) and that
    /// the whole file header is there.
    pub fn parse(bytes: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        if bytes.len() < EHDR_SIZE
            || bytes.get(..6) != Some(b"\x7fELF\x02\x01")
            || word(bytes, 0x12, 2, "e_machine")? != 62
        {
            return Err(ElfError::NotElf64);
        }
        Ok(Elf { bytes })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Where the program headers are and how many: `(e_phoff, e_phentsize,
    /// e_phnum)`, the size checked.
    fn program_headers(&self) -> Result<(u64, u64, u64), ElfError> {
        let b = self.bytes;
        let (off, size, count) = (
            word(b, 0x20, 8, "e_phoff")?,
            word(b, 0x36, 2, "e_phentsize")?,
            word(b, 0x38, 2, "e_phnum")?,
        );
        if count > 0 && size < PHDR_SIZE {
            return Err(ElfError::BadEntrySize {
                what: "e_phentsize",
                size,
            });
        }
        Ok((off, size, count))
    }

    /// The PT_LOAD segments, by physical address, in file order. A bad
    /// program header table is one error and the end; a program header
    /// that runs past the file is an error for that header.
    pub fn segments(&self) -> impl Iterator<Item = Result<Segment, ElfError>> + '_ {
        let b = self.bytes;
        let (table, headers) = match self.program_headers() {
            Ok((off, size, count)) => (Ok((off, size)), 0..count),
            Err(e) => (Err(e), 0..1),
        };
        headers.filter_map(move |i| {
            let (off, size) = match table {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            let header =
                |field, n, what| word(b, offset(off, i, size, field, "a program header")?, n, what);
            match header(0, 4, "a program header") {
                Ok(1) => {}
                Ok(_) => return None,
                Err(e) => return Some(Err(e)),
            }
            Some((|| {
                Ok(Segment {
                    flags: header(4, 4, "p_flags")?,
                    file_offset: header(8, 8, "p_offset")?,
                    vaddr: header(16, 8, "p_vaddr")?,
                    paddr: header(24, 8, "p_paddr")?,
                    file_size: header(32, 8, "p_filesz")?,
                    mem_size: header(40, 8, "p_memsz")?,
                })
            })())
        })
    }

    /// The file's bytes of segment `s`: `[p_offset, p_offset + p_filesz)`.
    pub fn segment_data(&self, s: &Segment) -> Result<&'a [u8], ElfError> {
        let truncated = ElfError::Truncated {
            what: "a segment",
            offset: s.file_offset,
        };
        let from = usize::try_from(s.file_offset).map_err(|_| truncated)?;
        let len = usize::try_from(s.file_size).map_err(|_| truncated)?;
        from.checked_add(len)
            .and_then(|end| self.bytes.get(from..end))
            .ok_or(truncated)
    }

    /// The address and size of the section named `name`.
    pub fn section(&self, name: &str) -> Result<Option<(u64, u64)>, ElfError> {
        Ok(self
            .find_section(|s| s.name == name.as_bytes())?
            .map(|s| (s.addr, s.size)))
    }

    /// The address and size of the loaded note section that holds the
    /// `.afterburn` records (docs/afterburn-format.md): `.notes` in a kernel
    /// linked by Linux's script, `.note.afterburn` or another name in
    /// others. The first such section: a linker keeps `.note.*` together.
    pub fn afterburn_records(&self) -> Result<Option<(u64, u64)>, ElfError> {
        let bytes = self.bytes;
        Ok(self
            .find_section(|s| {
                s.kind == SHT_NOTE
                    && s.flags & SHF_ALLOC != 0
                    && usize::try_from(s.offset)
                        .ok()
                        .zip(usize::try_from(s.size).ok())
                        .and_then(|(at, len)| bytes.get(at..at.checked_add(len)?))
                        .is_some_and(afterburn_format::has_afterburn_notes)
            })?
            .map(|s| (s.addr, s.size)))
    }

    /// The first section header `pick` accepts.
    fn find_section(
        &self,
        mut pick: impl FnMut(&SectionHeader<'a>) -> bool,
    ) -> Result<Option<SectionHeader<'a>>, ElfError> {
        let b = self.bytes;
        let (off, size, count) = (
            word(b, 0x28, 8, "e_shoff")?,
            word(b, 0x3a, 2, "e_shentsize")?,
            word(b, 0x3c, 2, "e_shnum")?,
        );
        if count == 0 {
            return Ok(None);
        }
        if size < SHDR_SIZE {
            return Err(ElfError::BadEntrySize {
                what: "e_shentsize",
                size,
            });
        }
        let names_index = word(b, 0x3e, 2, "e_shstrndx")?;
        let names = word(
            b,
            offset(off, names_index, size, 24, "the section-name table")?,
            8,
            "the section-name table",
        )?;
        for i in 0..count {
            let sh_name = word(b, offset(off, i, size, 0, "sh_name")?, 4, "sh_name")?;
            let name_at = names.checked_add(sh_name).ok_or(ElfError::Truncated {
                what: "a section name",
                offset: names,
            })?;
            let truncated = ElfError::Truncated {
                what: "a section name",
                offset: name_at,
            };
            let start = usize::try_from(name_at).map_err(|_| truncated)?;
            let tail = b.get(start..).ok_or(truncated)?;
            let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
            let header = SectionHeader {
                name: &tail[..end],
                kind: word(b, offset(off, i, size, 4, "sh_type")?, 4, "sh_type")?,
                flags: word(b, offset(off, i, size, 8, "sh_flags")?, 8, "sh_flags")?,
                addr: word(b, offset(off, i, size, 16, "sh_addr")?, 8, "sh_addr")?,
                offset: word(b, offset(off, i, size, 24, "sh_offset")?, 8, "sh_offset")?,
                size: word(b, offset(off, i, size, 32, "sh_size")?, 8, "sh_size")?,
            };
            if pick(&header) {
                return Ok(Some(header));
            }
        }
        Ok(None)
    }

    /// The ELF entry point.
    pub fn entry(&self) -> Result<u64, ElfError> {
        word(self.bytes, 0x18, 8, "e_entry")
    }

    /// The PV entry address from the "PVE1" header: at an 8-byte aligned
    /// file offset in the first 8 KiB, the magic, version 1 (both 32-bit),
    /// then the 64-bit entry address, all 16 bytes inside the window.
    pub fn pv_entry(&self) -> Result<u64, ElfError> {
        let window = &self.bytes[..self.bytes.len().min(PV_HEADER_WINDOW)];
        window
            .chunks_exact(8)
            .zip(window.chunks_exact(8).skip(1))
            .find_map(|(head, entry)| {
                let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
                let version = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
                (magic == PV_HEADER_MAGIC && version == 1).then(|| {
                    entry
                        .iter()
                        .rev()
                        .fold(0, |acc, &b| (acc << 8) | u64::from(b))
                })
            })
            .ok_or(ElfError::NoPvHeader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOFF: usize = 0x180;
    const STRTAB: usize = 0x140;

    fn put(b: &mut [u8], at: usize, value: u64, n: usize) {
        b[at..at + n].copy_from_slice(&value.to_le_bytes()[..n]);
    }

    /// A small valid guest image: PT_LOAD (r-x), PT_NOTE, PT_LOAD (rw-), a
    /// PV header, `.afterburn` and `.shstrtab`.
    pub(super) fn image() -> Vec<u8> {
        let mut b = vec![0u8; SHOFF + 3 * 64];
        b[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        put(&mut b, 0x10, 2, 2);
        put(&mut b, 0x12, 62, 2);
        put(&mut b, 0x14, 1, 4);
        put(&mut b, 0x18, 0x10_0000, 8);
        put(&mut b, 0x20, 64, 8);
        put(&mut b, 0x28, SHOFF as u64, 8);
        put(&mut b, 0x34, 64, 2);
        put(&mut b, 0x36, 56, 2);
        put(&mut b, 0x38, 3, 2);
        put(&mut b, 0x3a, 64, 2);
        put(&mut b, 0x3c, 3, 2);
        put(&mut b, 0x3e, 2, 2);
        // (type, flags, offset, paddr, filesz, memsz)
        let phdrs = [
            (1, 5, 0x100, 0x10_0000, 0x20, 0x1000),
            (4, 4, 0x120, 0, 0x10, 0x10),
            (1, 6, 0x120, 0x20_0000, 0x10, 0x2000),
        ];
        for (i, (kind, flags, offset, paddr, filesz, memsz)) in phdrs.into_iter().enumerate() {
            let ph = 64 + 56 * i;
            put(&mut b, ph, kind, 4);
            put(&mut b, ph + 4, flags, 4);
            put(&mut b, ph + 8, offset, 8);
            put(&mut b, ph + 16, paddr, 8);
            put(&mut b, ph + 24, paddr, 8);
            put(&mut b, ph + 32, filesz, 8);
            put(&mut b, ph + 40, memsz, 8);
        }
        // The PV header: magic, version 1, entry.
        put(&mut b, 0x100, u64::from(PV_HEADER_MAGIC), 4);
        put(&mut b, 0x104, 1, 4);
        put(&mut b, 0x108, 0x10_0040, 8);
        let names = b"\0.afterburn\0.shstrtab\0";
        b[STRTAB..STRTAB + names.len()].copy_from_slice(names);
        // Section 1: .afterburn; section 2: .shstrtab.
        put(&mut b, SHOFF + 64, 1, 4);
        put(&mut b, SHOFF + 64 + 16, 0x20_0000, 8);
        put(&mut b, SHOFF + 64 + 32, 0x10, 8);
        put(&mut b, SHOFF + 128, 12, 4);
        put(&mut b, SHOFF + 128 + 24, STRTAB as u64, 8);
        put(&mut b, SHOFF + 128 + 32, names.len() as u64, 8);
        b
    }

    fn truncated(what: &'static str, offset: u64) -> ElfError {
        ElfError::Truncated { what, offset }
    }

    const TEXT: Segment = Segment {
        paddr: 0x10_0000,
        vaddr: 0x10_0000,
        file_offset: 0x100,
        file_size: 0x20,
        mem_size: 0x1000,
        flags: 5,
    };
    const DATA: Segment = Segment {
        paddr: 0x20_0000,
        vaddr: 0x20_0000,
        file_offset: 0x120,
        file_size: 0x10,
        mem_size: 0x2000,
        flags: 6,
    };

    #[test]
    fn a_valid_image_reads_whole() {
        let b = image();
        let elf = Elf::parse(&b).unwrap();
        let segments: Vec<_> = elf.segments().collect();
        assert_eq!(segments, [Ok(TEXT), Ok(DATA)]);
        assert!(TEXT.executable() && !TEXT.writable());
        assert!(DATA.writable() && !DATA.executable());
        assert_eq!(elf.segment_data(&TEXT), Ok(&b[0x100..0x120]));
        assert_eq!(elf.segment_data(&DATA), Ok(&b[0x120..0x130]));
        assert_eq!(elf.entry(), Ok(0x10_0000));
        assert_eq!(elf.pv_entry(), Ok(0x10_0040));
        assert_eq!(elf.section(".afterburn"), Ok(Some((0x20_0000, 0x10))));
        assert_eq!(elf.section(".text"), Ok(None));
        assert_eq!(elf.section(".after"), Ok(None));
    }

    #[test]
    fn the_records_are_found_in_a_loaded_note_section_by_content() {
        let mut b = image();
        assert_eq!(Elf::parse(&b).unwrap().afterburn_records(), Ok(None));
        // Section 1 becomes a loaded note section holding one of our notes.
        let at = b.len();
        let record = afterburn_format::Record {
            address: 0x10_0000,
            kind: 1,
            flags: 0,
            site_len: 12,
            insn_len: 1,
            pair_len: 0,
            reserved: 0,
        };
        afterburn_format::encode_chunk_note(&[record], &mut b);
        let len = b.len() - at;
        put(&mut b, SHOFF + 64 + 4, SHT_NOTE, 4);
        put(&mut b, SHOFF + 64 + 8, SHF_ALLOC, 8);
        put(&mut b, SHOFF + 64 + 24, at as u64, 8);
        put(&mut b, SHOFF + 64 + 32, len as u64, 8);
        let found = Elf::parse(&b).unwrap().afterburn_records();
        assert_eq!(found, Ok(Some((0x20_0000, len as u64))));
        // Not loaded, or not a note, or holding only foreign notes: absent.
        let mut unloaded = b.clone();
        put(&mut unloaded, SHOFF + 64 + 8, 0, 8);
        assert_eq!(Elf::parse(&unloaded).unwrap().afterburn_records(), Ok(None));
        let mut progbits = b.clone();
        put(&mut progbits, SHOFF + 64 + 4, 1, 4);
        assert_eq!(Elf::parse(&progbits).unwrap().afterburn_records(), Ok(None));
        let mut foreign = b.clone();
        foreign[at + 12] = b'X';
        assert_eq!(Elf::parse(&foreign).unwrap().afterburn_records(), Ok(None));
        // Section bytes past the file: absent, not a panic.
        let mut past = b;
        put(&mut past, SHOFF + 64 + 32, u64::MAX, 8);
        assert_eq!(Elf::parse(&past).unwrap().afterburn_records(), Ok(None));
    }

    #[test]
    fn truncated_file_headers_are_not_elf() {
        let b = image();
        for len in [0, 4, 5, 6, 0x13, 63] {
            assert_eq!(
                Elf::parse(&b[..len]).err(),
                Some(ElfError::NotElf64),
                "{len}"
            );
        }
        assert!(Elf::parse(&b[..64]).is_ok());
    }

    #[test]
    fn wrong_magic_class_endianness_or_machine_is_not_elf() {
        for (at, value) in [(0, 0x7e), (3, b'f'), (4, 1), (5, 2), (0x12, 3), (0x13, 1)] {
            let mut b = image();
            b[at] = value;
            assert_eq!(Elf::parse(&b).err(), Some(ElfError::NotElf64), "byte {at}");
        }
    }

    #[test]
    fn program_headers_past_the_end_of_the_file() {
        let b = image();
        // Cut in the middle of the first program header (at 64): its
        // p_memsz (at 104) is gone, and the two after it.
        let elf = Elf::parse(&b[..104]).unwrap();
        let segments: Vec<_> = elf.segments().collect();
        assert_eq!(
            segments,
            [
                Err(truncated("p_memsz", 104)),
                Err(truncated("a program header", 120)),
                Err(truncated("a program header", 176)),
            ]
        );
        // The table placed past the end.
        let mut b = image();
        let near_end = b.len() as u64 - 2;
        put(&mut b, 0x20, near_end, 8);
        let elf = Elf::parse(&b).unwrap();
        assert_eq!(
            elf.segments().next(),
            Some(Err(truncated("a program header", near_end)))
        );
    }

    #[test]
    fn a_program_header_offset_that_overflows() {
        let mut b = image();
        let far = u64::MAX - 8;
        put(&mut b, 0x20, far, 8);
        let elf = Elf::parse(&b).unwrap();
        let segments: Vec<_> = elf.segments().collect();
        // Header 0 starts at `far`, headers 1 and 2 past 2^64.
        assert_eq!(
            segments,
            [
                Err(truncated("a program header", far)),
                Err(truncated("a program header", far)),
                Err(truncated("a program header", far)),
            ]
        );
    }

    #[test]
    fn segment_bytes_past_the_file_or_past_2_to_the_64() {
        let elf_bytes = image();
        let elf = Elf::parse(&elf_bytes).unwrap();
        let overflow = Segment {
            file_offset: u64::MAX - 0x10,
            file_size: 0x20,
            ..TEXT
        };
        assert_eq!(
            elf.segment_data(&overflow),
            Err(truncated("a segment", u64::MAX - 0x10))
        );
        let past = Segment {
            file_offset: 0x200,
            file_size: 0x41,
            ..TEXT
        };
        assert_eq!(elf.segment_data(&past), Err(truncated("a segment", 0x200)));
        let to_the_end = Segment {
            file_offset: 0x200,
            file_size: 0x40,
            ..TEXT
        };
        assert_eq!(elf.segment_data(&to_the_end), Ok(&elf_bytes[0x200..]));
        // The same through the program header itself.
        let mut b = image();
        put(&mut b, 64 + 8, u64::MAX - 0x10, 8);
        let elf = Elf::parse(&b).unwrap();
        let s = elf.segments().next().unwrap().unwrap();
        assert_eq!(s.file_offset, u64::MAX - 0x10);
        assert_eq!(
            elf.segment_data(&s),
            Err(truncated("a segment", u64::MAX - 0x10))
        );
    }

    #[test]
    fn a_huge_e_phnum_ends_in_errors_not_a_panic() {
        let mut b = image();
        put(&mut b, 0x38, 0xffff, 2);
        let elf = Elf::parse(&b).unwrap();
        let segments: Vec<_> = elf.segments().collect();
        assert_eq!(segments[..2], [Ok(TEXT), Ok(DATA)]);
        assert!(segments.len() <= 0xffff);
        assert_eq!(
            segments.last(),
            Some(&Err(truncated("a program header", 64 + 56 * 0xfffe)))
        );
    }

    #[test]
    fn entry_sizes_smaller_than_elf64_headers() {
        let mut b = image();
        put(&mut b, 0x36, 8, 2);
        let elf = Elf::parse(&b).unwrap();
        let segments: Vec<_> = elf.segments().collect();
        assert_eq!(
            segments,
            [Err(ElfError::BadEntrySize {
                what: "e_phentsize",
                size: 8
            })]
        );
        // No program headers: any size will do.
        put(&mut b, 0x38, 0, 2);
        assert_eq!(Elf::parse(&b).unwrap().segments().count(), 0);
        let mut b = image();
        put(&mut b, 0x3a, 0, 2);
        assert_eq!(
            Elf::parse(&b).unwrap().section(".afterburn"),
            Err(ElfError::BadEntrySize {
                what: "e_shentsize",
                size: 0
            })
        );
    }

    #[test]
    fn bad_section_tables() {
        // e_shoff near 2^64.
        let mut b = image();
        put(&mut b, 0x28, u64::MAX - 100, 8);
        assert_eq!(
            Elf::parse(&b).unwrap().section(".afterburn"),
            Err(truncated("the section-name table", u64::MAX - 100))
        );
        // e_shstrndx past the table (and the file).
        let mut b = image();
        put(&mut b, 0x3e, 40, 2);
        assert_eq!(
            Elf::parse(&b).unwrap().section(".afterburn"),
            Err(truncated(
                "the section-name table",
                (SHOFF + 40 * 64 + 24) as u64
            ))
        );
        // A name past the end of the file.
        let mut b = image();
        put(&mut b, SHOFF + 64, 0x1000, 4);
        assert_eq!(
            Elf::parse(&b).unwrap().section(".afterburn"),
            Err(truncated("a section name", (STRTAB + 0x1000) as u64))
        );
        // The name table's offset plus a name offset past 2^64.
        let mut b = image();
        put(&mut b, SHOFF + 128 + 24, u64::MAX - 2, 8);
        put(&mut b, SHOFF, 3, 4);
        assert_eq!(
            Elf::parse(&b).unwrap().section(".afterburn"),
            Err(truncated("a section name", u64::MAX - 2))
        );
        // No sections at all.
        let mut b = image();
        put(&mut b, 0x3c, 0, 2);
        assert_eq!(Elf::parse(&b).unwrap().section(".afterburn"), Ok(None));
    }

    #[test]
    fn the_pv_header_must_be_there_in_the_first_8_kib() {
        let mut b = image();
        b[0x100] = 0;
        assert_eq!(
            Elf::parse(&b).unwrap().pv_entry(),
            Err(ElfError::NoPvHeader)
        );
        // Version 2 is not the header.
        let mut b = image();
        put(&mut b, 0x104, 2, 4);
        assert_eq!(
            Elf::parse(&b).unwrap().pv_entry(),
            Err(ElfError::NoPvHeader)
        );
        // Not at an 8-byte boundary.
        let mut b = image();
        b.copy_within(0x100..0x110, 0x134);
        b[0x100..0x110].fill(0);
        assert_eq!(
            Elf::parse(&b).unwrap().pv_entry(),
            Err(ElfError::NoPvHeader)
        );
        // Ending exactly at 8 KiB: found; a byte later, or cut short: not.
        let mut b = image();
        b.resize(8192 + 64, 0);
        b.copy_within(0x100..0x110, 8192 - 16);
        b[0x100..0x110].fill(0);
        assert_eq!(Elf::parse(&b).unwrap().pv_entry(), Ok(0x10_0040));
        assert_eq!(
            Elf::parse(&b[..8192 - 1]).unwrap().pv_entry(),
            Err(ElfError::NoPvHeader)
        );
        b.copy_within(8192 - 16..8192, 8192 - 8);
        b[8192 - 16..8192 - 8].fill(0);
        assert_eq!(
            Elf::parse(&b).unwrap().pv_entry(),
            Err(ElfError::NoPvHeader)
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            truncated("p_memsz", 0x68).to_string(),
            "p_memsz at file offset 0x68 runs past the file"
        );
        assert_eq!(
            ElfError::BadEntrySize {
                what: "e_phentsize",
                size: 8
            }
            .to_string(),
            "e_phentsize of 8 bytes is too small for ELF64"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Everything the VMM asks of an image, with what must hold of it.
    fn read_all(bytes: &[u8]) -> Result<(), TestCaseError> {
        let Ok(elf) = Elf::parse(bytes) else {
            return Ok(());
        };
        let mut count = 0;
        for s in elf.segments() {
            count += 1;
            if let Ok(s) = s {
                if let Ok(data) = elf.segment_data(&s) {
                    prop_assert_eq!(data.len() as u64, s.file_size);
                }
            }
        }
        prop_assert!(count <= 0xffff);
        let _ = elf.section(".afterburn");
        let _ = elf.entry();
        let _ = elf.pv_entry();
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            read_all(&bytes)?;
        }

        /// A valid image with a few bytes or words changed, and maybe cut.
        #[test]
        fn mutated_images_never_panic(
            bytes in proptest::collection::vec((0usize..0x240, any::<u8>()), 1..8),
            words in proptest::collection::vec(
                (prop::sample::select(vec![0x20usize, 0x28, 0x36, 0x38, 0x3a, 0x3c, 0x3e,
                    64 + 8, 64 + 32, 176 + 8, 176 + 32, 0x180 + 128 + 24, 0x180 + 64]),
                 prop_oneof![any::<u64>(), Just(u64::MAX), 0u64..0x300]),
                0..4),
            cut in prop_oneof![Just(usize::MAX), 0usize..0x240],
        ) {
            let mut b = tests::image();
            for (at, value) in bytes {
                b[at] = value;
            }
            for (at, value) in words {
                let n = if matches!(at, 0x36..=0x3e) { 2 } else { 8 };
                b[at..at + n].copy_from_slice(&value.to_le_bytes()[..n]);
            }
            b.truncate(cut);
            read_all(&b)?;
        }
    }
}
