//! The little a spec needs from an ELF file: its entry point and its
//! `PT_LOAD` segments, each checked against the file's bytes. The host's one
//! reader of images' program headers, over the `object` crate: the
//! generator and the spec builder ([`crate::build`]) both read through it.

use object::elf::{FileHeader64, EM_X86_64, PF_W, PF_X, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;

/// Why an image is not one the reader accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Not an ELF file the reader accepts.
    #[error("not an ELF file: {0}")]
    NotElf(String),
    /// ELF, but not ELF64 little-endian x86_64.
    #[error("not an x86_64 ELF64 little-endian file")]
    WrongMachine,
    /// No `PT_LOAD` segment with memory.
    #[error("has no PT_LOAD segment")]
    NoLoadSegment,
    /// A segment whose file bytes are outside the file.
    #[error("segment {index}: file bytes {offset:#x}+{filesz:#x} are past the end of the file ({len:#x} bytes)")]
    SegmentOutOfFile {
        /// Program header index.
        index: usize,
        /// `p_offset`.
        offset: u64,
        /// `p_filesz`.
        filesz: u64,
        /// File size.
        len: usize,
    },
    /// `p_filesz > p_memsz`, or an address range that wraps.
    #[error("segment {0}: bad sizes (p_filesz > p_memsz, or the range wraps)")]
    BadSegmentSize(usize),
}

/// A `PT_LOAD` segment with memory (`p_memsz > 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its program header's index, for messages.
    pub index: usize,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_paddr`.
    pub paddr: u64,
    /// `p_offset`.
    pub offset: u64,
    /// `p_filesz`: bytes from the file; the rest up to `memsz` is zero.
    pub filesz: u64,
    /// `p_memsz`.
    pub memsz: u64,
    /// `PF_W`.
    pub writable: bool,
    /// `PF_X`.
    pub executable: bool,
}

/// What a spec needs of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elf {
    /// `e_entry`.
    pub entry: u64,
    /// The loadable segments, in program header order.
    pub segments: Vec<Segment>,
}

/// Reads `bytes` as an x86_64 ELF64 little-endian file. Every segment's file
/// bytes are inside the file, `p_filesz <= p_memsz`, and no address range
/// wraps; there is at least one segment.
pub fn read(bytes: &[u8]) -> Result<Elf, ElfError> {
    let not_elf = |e: object::read::Error| ElfError::NotElf(e.to_string());
    let header = FileHeader64::<LittleEndian>::parse(bytes).map_err(not_elf)?;
    // `parse` accepts either byte order for the header type; previrt's
    // images are little-endian x86_64 only.
    if !header.is_little_endian() || header.e_machine(LittleEndian) != EM_X86_64 {
        return Err(ElfError::WrongMachine);
    }
    let endian = LittleEndian;
    let mut segments = Vec::new();
    for (index, ph) in header
        .program_headers(endian, bytes)
        .map_err(not_elf)?
        .iter()
        .enumerate()
    {
        if ph.p_type(endian) != PT_LOAD || ph.p_memsz(endian) == 0 {
            continue;
        }
        let segment = Segment {
            index,
            vaddr: ph.p_vaddr(endian),
            paddr: ph.p_paddr(endian),
            offset: ph.p_offset(endian),
            filesz: ph.p_filesz(endian),
            memsz: ph.p_memsz(endian),
            writable: ph.p_flags(endian) & PF_W != 0,
            executable: ph.p_flags(endian) & PF_X != 0,
        };
        let in_file = segment
            .offset
            .checked_add(segment.filesz)
            .is_some_and(|end| end <= bytes.len() as u64);
        if !in_file {
            return Err(ElfError::SegmentOutOfFile {
                index,
                offset: segment.offset,
                filesz: segment.filesz,
                len: bytes.len(),
            });
        }
        if segment.filesz > segment.memsz
            || segment.vaddr.checked_add(segment.memsz).is_none()
            || segment.paddr.checked_add(segment.memsz).is_none()
        {
            return Err(ElfError::BadSegmentSize(index));
        }
        segments.push(segment);
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadSegment);
    }
    Ok(Elf {
        entry: header.e_entry(endian),
        segments,
    })
}
