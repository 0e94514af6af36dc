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

#[derive(Clone, Copy, Debug)]
pub struct Elf<'a> {
    bytes: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
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
            if tail.get(..end) == Some(name.as_bytes()) {
                return Ok(Some((
                    word(b, offset(off, i, size, 16, "sh_addr")?, 8, "sh_addr")?,
                    word(b, offset(off, i, size, 32, "sh_size")?, 8, "sh_size")?,
                )));
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
