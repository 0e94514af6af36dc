//! Preparing a guest the way a boot loader would, then handing it to the
//! PV boot protocol (docs/pv-boot.md): its ELF's segments copied into guest
//! RAM by physical address, an identity map of its RAM in page tables of its
//! own (in RAM it does not use), and the boot information.

pub use previrt_protocol::WEDGE_AREA;
use previrt_protocol::{PvBootInfo, BOOT_BLOCK_OFFSET, VCPU_PAGE_OFFSET};

use crate::elf::{Elf, ElfError};
use crate::ram::{OutOfRam, Ram};

const PAGE: u64 = 4096;
/// The top 16 KiB of guest RAM: PML4, PDPT, PD, boot info.
const TABLES: u64 = 4 * PAGE;
/// What the VMM keeps of guest RAM: the tables and, below them, the wedge's
/// memory (its image, data, stack, vCPU page, boot block), mapped at
/// `WEDGE_BASE` in the guest's address space.
pub const RESERVED: u64 = TABLES + WEDGE_AREA;
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
    /// The guest code's range (the image's loadable bytes).
    pub code: (u64, u64),
    /// Guest-physical start of the wedge area.
    pub wedge_area: u64,
    /// How the wedge enters the guest (`previrt_protocol::ENTER_PV` or
    /// `ENTER_LINUX`).
    pub protocol: u64,
    /// The guest's code also runs this far below `code` (the wedge finds a
    /// site's call from there too); 0: only at `code`.
    pub code_alias: u64,
    /// The guest's table of code it copies before it runs it (Linux's
    /// `.altinstructions`: address, size), if it has one.
    pub alternatives: Option<(u64, u64)>,
}

const WEDGE_PAGES: usize = (WEDGE_AREA / PAGE) as usize;

/// The wedge, loaded into the wedge area.
#[derive(Debug, Clone, Copy)]
pub struct WedgeLoaded {
    pub entry: u64,
    /// Its boot block's address in the guest's address space.
    pub boot_block: u64,
    /// Its code in the guest's address space, `[start, end)`: where the
    /// entry it gives for reflections must point.
    pub code: (u64, u64),
    /// Which pages of the wedge area the guest's address space maps
    /// writable: all but those only read-only segments (code, constants)
    /// cover, so that a write to the wedge's code faults instead of
    /// changing it.
    pub writable: [bool; WEDGE_PAGES],
}

pub fn prepare(ram: &Ram, image: &[u8], cmdline: &str) -> Result<Prepared, PrepareError> {
    let elf = Elf::parse(image)?;
    let usable = ram.size() - RESERVED;
    // Segments at their physical addresses, below the VMM's reserved RAM.
    let (code_start, code_end) = load_segments(ram, &elf, Some, usable)?;

    // PML4 -> PDPT -> PD of 2 MiB pages covering guest RAM, identity mapped.
    let tables = usable + WEDGE_AREA;
    let (pml4, pdpt, pd, info) = (tables, tables + PAGE, tables + 2 * PAGE, tables + 3 * PAGE);
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
        afterburn: elf.afterburn_records()?,
        code: (code_start, code_end),
        wedge_area: usable,
        protocol: previrt_protocol::ENTER_PV,
        code_alias: 0,
        alternatives: None,
    })
}

/// Loads the wedge's ELF into the wedge area (its segments at their offset
/// from `WEDGE_BASE`) and writes its boot block at the area's last page.
pub fn load_wedge(ram: &Ram, guest: &Prepared, wedge: &[u8]) -> Result<WedgeLoaded, PrepareError> {
    use previrt_protocol::{WedgeBoot, WEDGE_BASE, WEDGE_BOOT_MAGIC};
    let elf = Elf::parse(wedge)?;
    // Segments at their offset from WEDGE_BASE in the wedge area, below its
    // vCPU page.
    let area = guest.wedge_area;
    load_segments(
        ram,
        &elf,
        |vaddr| vaddr.checked_sub(WEDGE_BASE).map(|o| area + o),
        area + VCPU_PAGE_OFFSET,
    )?;
    let (afterburn, afterburn_len) = guest.afterburn.unwrap_or((0, 0));
    let boot = WedgeBoot {
        magic: WEDGE_BOOT_MAGIC,
        pv_entry: guest.entry,
        boot_info: guest.boot_info,
        cr3: guest.cr3,
        afterburn,
        afterburn_len,
        code_start: guest.code.0,
        code_end: guest.code.1,
        // The wedge fills this in when it starts.
        reflect_entry: 0,
        fast_begin: 0,
        fast_end: 0,
        protocol: guest.protocol,
        code_alias: guest.code_alias,
        alternatives: guest.alternatives.map_or(0, |a| a.0),
        alternatives_len: guest.alternatives.map_or(0, |a| a.1),
    };
    ram.write(guest.wedge_area + BOOT_BLOCK_OFFSET, &boot.to_bytes())?;
    let (mut code, mut read_only, mut writable) =
        ((u64::MAX, 0), [false; WEDGE_PAGES], [false; WEDGE_PAGES]);
    for segment in elf.segments() {
        // Every segment was placed above: its range is inside the area.
        let s = segment?;
        let end = s.paddr.saturating_add(s.mem_size);
        if s.executable() {
            code = (code.0.min(s.paddr), code.1.max(end));
        }
        let first = s.paddr.saturating_sub(WEDGE_BASE) / PAGE;
        let end = end.saturating_sub(WEDGE_BASE).div_ceil(PAGE);
        for page in first as usize..(end as usize).min(WEDGE_PAGES) {
            if s.writable() {
                writable[page] = true;
            } else {
                read_only[page] = true;
            }
        }
    }
    for (w, r) in writable.iter_mut().zip(read_only) {
        *w |= !r;
    }
    Ok(WedgeLoaded {
        entry: elf.entry()?,
        boot_block: WEDGE_BASE + BOOT_BLOCK_OFFSET,
        code,
        writable,
    })
}

/// Copies `elf`'s loadable segments into guest RAM at `place(p_paddr)` (the
/// zeroed rest up to the memory size), refusing any that would end past
/// `limit`; returns the range of guest-physical bytes loaded from the file.
fn load_segments(
    ram: &Ram,
    elf: &Elf,
    place: impl Fn(u64) -> Option<u64>,
    limit: u64,
) -> Result<(u64, u64), PrepareError> {
    let (mut first, mut end) = (u64::MAX, 0);
    for segment in elf.segments() {
        let s = segment?;
        let at = place(s.paddr)
            .filter(|at| {
                at.checked_add(s.mem_size).is_some_and(|e| e <= limit) && s.file_size <= s.mem_size
            })
            .ok_or(PrepareError::SegmentOutsideRam {
                paddr: s.paddr,
                size: s.mem_size,
            })?;
        let data = elf.segment_data(&s)?;
        ram.write(at, data)?;
        ram.zero(at + s.file_size, s.mem_size - s.file_size)?;
        first = first.min(at);
        end = end.max(at + s.file_size);
    }
    Ok((first, end))
}
