//! Reading the guest's ELF64 file (as carried in the image window): its
//! loadable segments by physical address, its sections by name, and the PV
//! entry header (docs/pv-boot.md). Every offset is checked: a malformed
//! image is an error, never a fault in the VMM.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    NotElf64,
    Truncated { what: &'static str, offset: u64 },
    NoPvHeader,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::NotElf64 => f.write_str("not a little-endian x86-64 ELF64 file"),
            ElfError::Truncated { what, offset } => {
                write!(f, "{what} at file offset {offset:#x} runs past the file")
            }
            ElfError::NoPvHeader => f.write_str("no PV entry header (\"PVE1\") in the first 8 KiB"),
        }
    }
}

pub struct Elf<'a> {
    bytes: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
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

impl<'a> Elf<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        // ELF64, little-endian, x86-64.
        if bytes.get(..6) != Some(b"\x7fELF\x02\x01") || word(bytes, 0x12, 2, "e_machine")? != 62 {
            return Err(ElfError::NotElf64);
        }
        Ok(Elf { bytes })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The PT_LOAD segments, by physical address.
    pub fn segments(&self) -> impl Iterator<Item = Result<Segment, ElfError>> + '_ {
        let b = self.bytes;
        let table = (|| -> Result<(u64, u64, u64), ElfError> {
            Ok((
                word(b, 0x20, 8, "e_phoff")?,
                word(b, 0x36, 2, "e_phentsize")?,
                word(b, 0x38, 2, "e_phnum")?,
            ))
        })();
        let (off, size, count) = table.unwrap_or((0, 0, 0));
        (0..count).filter_map(move |i| {
            let ph = off + i * size;
            let kind = match word(b, ph, 4, "a program header") {
                Ok(k) => k,
                Err(e) => return Some(Err(e)),
            };
            if kind != 1 {
                return None;
            }
            Some((|| {
                Ok(Segment {
                    flags: word(b, ph + 4, 4, "p_flags")?,
                    file_offset: word(b, ph + 8, 8, "p_offset")?,
                    paddr: word(b, ph + 24, 8, "p_paddr")?,
                    file_size: word(b, ph + 32, 8, "p_filesz")?,
                    mem_size: word(b, ph + 40, 8, "p_memsz")?,
                })
            })())
        })
    }

    /// The address and size of the section named `name`.
    pub fn section(&self, name: &str) -> Result<Option<(u64, u64)>, ElfError> {
        let b = self.bytes;
        let (off, size, count) = (
            word(b, 0x28, 8, "e_shoff")?,
            word(b, 0x3a, 2, "e_shentsize")?,
            word(b, 0x3c, 2, "e_shnum")?,
        );
        let names_header = off + word(b, 0x3e, 2, "e_shstrndx")? * size;
        let names = word(b, names_header + 24, 8, "the section-name table")?;
        for i in 0..count {
            let sh = off + i * size;
            let name_at = names + word(b, sh, 4, "sh_name")?;
            let start = usize::try_from(name_at).map_err(|_| ElfError::Truncated {
                what: "a section name",
                offset: name_at,
            })?;
            let tail = b.get(start..).ok_or(ElfError::Truncated {
                what: "a section name",
                offset: name_at,
            })?;
            let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
            if &tail[..end] == name.as_bytes() {
                return Ok(Some((
                    word(b, sh + 16, 8, "sh_addr")?,
                    word(b, sh + 32, 8, "sh_size")?,
                )));
            }
        }
        Ok(None)
    }

    /// The ELF entry point.
    pub fn entry(&self) -> Result<u64, ElfError> {
        word(self.bytes, 0x18, 8, "e_entry")
    }

    /// The PV entry address from the "PVE1" header.
    pub fn pv_entry(&self) -> Result<u64, ElfError> {
        let limit = self.bytes.len().min(8192) as u64;
        for at in (0..limit.saturating_sub(16)).step_by(8) {
            if word(self.bytes, at, 4, "the PV header")?
                == u64::from(previrt_protocol::PV_HEADER_MAGIC)
                && word(self.bytes, at + 4, 4, "the PV header")? == 1
            {
                return word(self.bytes, at + 8, 8, "the PV entry");
            }
        }
        Err(ElfError::NoPvHeader)
    }
}
