//! Preparing a guest the way a boot loader would, then handing it to the
//! PV boot protocol (docs/pv-boot.md): its ELF's segments copied into guest
//! RAM by physical address, an identity map of its RAM in page tables of its
//! own (in RAM it does not use), and the boot information.

use previrt_protocol::PvBootInfo;

use crate::elf::{Elf, ElfError};
use crate::ram::{OutOfRam, Ram};

const PAGE: u64 = 4096;
/// The VMM keeps the top 16 KiB of guest RAM: PML4, PDPT, PD, boot info.
pub const RESERVED: u64 = 4 * PAGE;
const LARGE: u64 = 2 << 20;
const PRESENT_WRITABLE: u64 = 0x3;
const LARGE_PAGE: u64 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrepareError {
    Elf(ElfError),
    /// A segment does not fit in guest RAM below the VMM's reserved pages.
    SegmentOutsideRam {
        paddr: u64,
        size: u64,
    },
    Ram(OutOfRam),
}

impl From<ElfError> for PrepareError {
    fn from(e: ElfError) -> Self {
        PrepareError::Elf(e)
    }
}

impl From<OutOfRam> for PrepareError {
    fn from(e: OutOfRam) -> Self {
        PrepareError::Ram(e)
    }
}

impl core::fmt::Display for PrepareError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PrepareError::Elf(e) => write!(f, "guest image: {e}"),
            PrepareError::SegmentOutsideRam { paddr, size } => {
                write!(
                    f,
                    "a segment at {paddr:#x} ({size} bytes) does not fit in guest RAM"
                )
            }
            PrepareError::Ram(e) => write!(
                f,
                "guest RAM access at {:#x} ({} bytes) out of range",
                e.gpa, e.len
            ),
        }
    }
}

/// What the guest is started with.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    pub entry: u64,
    pub cr3: u64,
    pub boot_info: u64,
    /// Where the `.afterburn` records are in guest memory (address, size).
    pub afterburn: Option<(u64, u64)>,
}

pub fn prepare(ram: &Ram, image: &[u8], cmdline: &str) -> Result<Prepared, PrepareError> {
    let elf = Elf::parse(image)?;
    let usable = ram.size() - RESERVED;
    for segment in elf.segments() {
        let s = segment?;
        let fits = s
            .paddr
            .checked_add(s.mem_size)
            .is_some_and(|end| end <= usable)
            && s.file_size <= s.mem_size;
        if !fits {
            return Err(PrepareError::SegmentOutsideRam {
                paddr: s.paddr,
                size: s.mem_size,
            });
        }
        let from = usize::try_from(s.file_offset).unwrap_or(usize::MAX);
        let data = from
            .checked_add(s.file_size as usize)
            .and_then(|end| elf.bytes().get(from..end))
            .ok_or(ElfError::Truncated {
                what: "a segment",
                offset: s.file_offset,
            })?;
        ram.write(s.paddr, data)?;
        ram.zero(s.paddr + s.file_size, s.mem_size - s.file_size)?;
    }

    // PML4 -> PDPT -> PD of 2 MiB pages covering guest RAM, identity mapped.
    let (pml4, pdpt, pd, info) = (usable, usable + PAGE, usable + 2 * PAGE, usable + 3 * PAGE);
    ram.zero(usable, RESERVED)?;
    ram.write_u64(pml4, pdpt | PRESENT_WRITABLE)?;
    ram.write_u64(pdpt, pd | PRESENT_WRITABLE)?;
    for i in 0..ram.size().div_ceil(LARGE).min(512) {
        ram.write_u64(pd + 8 * i, (i * LARGE) | LARGE_PAGE | PRESENT_WRITABLE)?;
    }

    // struct pv_boot_info (docs/pv-boot.md), the command line after it.
    let cmdline_at = info + 512;
    let line = cmdline.as_bytes();
    ram.write(cmdline_at, &line[..line.len().min(1024)])?;
    ram.write(cmdline_at + line.len().min(1024) as u64, &[0])?;
    ram.write(info, &PvBootInfo::new(0, usable, cmdline_at).to_bytes())?;

    Ok(Prepared {
        entry: elf.pv_entry()?,
        cr3: pml4,
        boot_info: info,
        afterburn: elf.section(".afterburn")?,
    })
}
