//! Preparing Linux the way its 64-bit boot protocol asks
//! (`Documentation/x86/boot.rst`, "64-bit Boot Protocol"; docs/linux.md,
//! "Loading Linux on seL4"): `vmlinux`'s loadable segments at their physical
//! addresses, the initrd high in RAM, the command line, a zero page
//! (`struct boot_params`) with the setup header's fields a boot loader
//! fills and the e820 map, and initial page tables that identity-map RAM
//! (the protocol's requirement) and map the kernel's own addresses too (the
//! `.afterburn` records name sites there, and the wedge rewrites them
//! before `startup_64` runs). Linux is then entered at `startup_64` (the
//! ELF entry, physical) with `%rsi` = the zero page.
//!
//! The image is `vmlinux`, not a bzImage: there is no setup header to copy,
//! so the header's values a loader reads (`initrd_addr_max`,
//! `cmdline_size`) are those of Linux 6.1's `arch/x86/boot/header.S`, and
//! the zero page states them. Everything here is input the VMM checks:
//! every error names the offending value, and nothing is written to guest
//! RAM until the whole layout is known to fit.

use previrt_protocol::WEDGE_AREA;

use crate::elf::{Elf, ElfError, Segment};
use crate::load::Prepared;
use crate::ram::{OutOfRam, Ram};

const PAGE: u64 = 4096;
const GIB: u64 = 1 << 30;
const LARGE: u64 = 2 << 20;
const PRESENT_WRITABLE: u64 = 0x3;
const LARGE_PAGE: u64 = 0x80;

/// Where x86-64 Linux maps its image: virtual = physical + this
/// (`__START_KERNEL_map`, `arch/x86/include/asm/page_64_types.h`; no KASLR).
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// The highest address the initrd may end at (`initrd_addr_max`, header.S).
pub const INITRD_ADDR_MAX: u64 = 0x7fff_ffff;
/// The longest command line Linux takes, without its NUL (`cmdline_size`:
/// `COMMAND_LINE_SIZE` - 1).
pub const CMDLINE_MAX: usize = 2047;
/// Guest RAM the initial page tables identity-map, at most: four page
/// directories of 2 MiB pages. The zero page and the command line are at
/// the top of RAM and must be mapped, so RAM may not be larger.
pub const MAX_RAM: u64 = 4 * GIB;
/// The boot pages at the top of RAM, in order: PML4, the identity map's
/// PDPT, the kernel map's PDPT, four page directories, the zero page, the
/// command line.
const BOOT_PAGES: u64 = 3 + MAX_RAM / GIB + 2;
/// What the VMM keeps of guest RAM for Linux, at its top: the wedge area
/// (as for any guest, `load::RESERVED`) and above it the boot pages. The
/// e820 map lists it as reserved.
pub const LINUX_RESERVED: u64 = WEDGE_AREA + BOOT_PAGES * PAGE;

/// The PC's legacy hole, never RAM to Linux (video memory, option ROMs,
/// the BIOS): left out of the e820 map.
const LEGACY_HOLE: (u64, u64) = (0xa_0000, 0x10_0000);
/// e820 types.
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
/// `boot_flag`'s value, `header`'s magic ("HdrS") and the protocol version
/// of Linux 6.1's header (2.15).
const BOOT_FLAG: u16 = 0xaa55;
const HEADER_MAGIC: u32 = u32::from_le_bytes(*b"HdrS");
const PROTOCOL_VERSION: u16 = 0x020f;
/// `type_of_loader` 0xff: a loader without an assigned id. Linux ignores
/// the initrd when this is 0.
const TYPE_OF_LOADER: u8 = 0xff;
/// `loadflags`: LOADED_HIGH, the protected-mode code is at 1 MiB or above.
const LOADED_HIGH: u8 = 1;

/// Offsets in `struct boot_params` (`arch/x86/include/uapi/asm/bootparam.h`;
/// the setup header starts at 0x1f1).
mod zero_page {
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const BOOT_FLAG: usize = 0x1fe;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const E820_TABLE: usize = 0x2d0;
    /// `struct boot_e820_entry`: u64 addr, u64 size, u32 type, packed.
    pub const E820_ENTRY: usize = 20;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinuxBootError {
    Elf(ElfError),
    /// Guest RAM larger than the initial page tables map.
    RamTooLarge {
        size: u64,
        max: u64,
    },
    /// Guest RAM smaller than what the VMM keeps at its top.
    RamTooSmall {
        size: u64,
        min: u64,
    },
    /// The image has no loadable segment.
    NoSegments,
    /// A segment whose `p_filesz` exceeds its `p_memsz`.
    SegmentFileLargerThanMemory {
        paddr: u64,
        file_size: u64,
        mem_size: u64,
    },
    /// A segment that does not end below `limit` (the VMM's reserved top
    /// of RAM).
    SegmentOutsideRam {
        paddr: u64,
        size: u64,
        limit: u64,
    },
    /// A segment linked neither at its physical address nor at it plus
    /// `START_KERNEL_MAP`, or reaching past the top of the address space.
    SegmentNotMapped {
        vaddr: u64,
        paddr: u64,
    },
    /// `e_entry` is not in the file bytes of an executable segment (it
    /// must be `startup_64`'s physical address).
    EntryOutsideImage {
        entry: u64,
    },
    /// The `.afterburn` records' section is not inside a segment's file
    /// bytes, so it is not loaded.
    RecordsNotLoaded {
        vaddr: u64,
        size: u64,
    },
    /// The initrd does not fit between the kernel's end and the lower of
    /// the reserved RAM and `initrd_addr_max`.
    InitrdDoesNotFit {
        size: u64,
        room: u64,
    },
    CmdlineTooLong {
        len: usize,
        max: usize,
    },
    /// A NUL inside the command line would end it early.
    CmdlineHasNul {
        at: usize,
    },
    Ram(OutOfRam),
}

impl From<ElfError> for LinuxBootError {
    fn from(e: ElfError) -> Self {
        LinuxBootError::Elf(e)
    }
}

impl From<OutOfRam> for LinuxBootError {
    fn from(e: OutOfRam) -> Self {
        LinuxBootError::Ram(e)
    }
}

impl core::fmt::Display for LinuxBootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use LinuxBootError as E;
        match *self {
            E::Elf(e) => write!(f, "vmlinux: {e}"),
            E::RamTooLarge { size, max } => write!(
                f,
                "guest RAM of {size:#x} bytes is more than the {max:#x} the boot page tables map"
            ),
            E::RamTooSmall { size, min } => write!(
                f,
                "guest RAM of {size:#x} bytes is less than the {min:#x} the VMM keeps"
            ),
            E::NoSegments => f.write_str("vmlinux has no loadable segment"),
            E::SegmentFileLargerThanMemory {
                paddr,
                file_size,
                mem_size,
            } => write!(
                f,
                "the segment at {paddr:#x} has {file_size:#x} file bytes, more than its \
                 memory size {mem_size:#x}"
            ),
            E::SegmentOutsideRam { paddr, size, limit } => write!(
                f,
                "the segment at {paddr:#x} ({size:#x} bytes) does not end below {limit:#x}, \
                 the RAM Linux gets"
            ),
            E::SegmentNotMapped { vaddr, paddr } => write!(
                f,
                "the segment at {paddr:#x} is linked at {vaddr:#x}, neither there nor at \
                 {paddr:#x} + {START_KERNEL_MAP:#x}"
            ),
            E::EntryOutsideImage { entry } => write!(
                f,
                "the entry {entry:#x} is not in an executable segment (startup_64, physical)"
            ),
            E::RecordsNotLoaded { vaddr, size } => write!(
                f,
                "the .afterburn records at {vaddr:#x} ({size:#x} bytes) are not in a \
                 loaded segment"
            ),
            E::InitrdDoesNotFit { size, room } => write!(
                f,
                "the initrd of {size:#x} bytes does not fit in the {room:#x} bytes between \
                 the kernel and the end of RAM or initrd_addr_max"
            ),
            E::CmdlineTooLong { len, max } => write!(
                f,
                "the command line of {len} bytes is longer than Linux's {max}"
            ),
            E::CmdlineHasNul { at } => {
                write!(f, "the command line has a NUL at byte {at}")
            }
            E::Ram(e) => write!(
                f,
                "guest RAM access at {:#x} ({} bytes) out of range",
                e.gpa, e.len
            ),
        }
    }
}

/// Linux, loaded and ready to enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinuxPrepared {
    /// `startup_64`, physical (identity mapped).
    pub entry: u64,
    /// The zero page: `%rsi` at the entry.
    pub zero_page: u64,
    pub cmdline: u64,
    /// The initial page tables.
    pub cr3: u64,
    /// The initrd in guest RAM (address, size), if there is one.
    pub initrd: Option<(u64, u64)>,
    /// The `.afterburn` records in guest RAM (physical address, size).
    pub afterburn: Option<(u64, u64)>,
    /// The image's loaded bytes at the addresses it is linked at (where
    /// the records' sites are), `[start, end)`: mapped by `cr3`.
    pub code: (u64, u64),
    /// Guest-physical start of the wedge area.
    pub wedge_area: u64,
    /// `.altinstructions` at its link address (address, size), if the
    /// image has one: the wedge rewrites the sites of the code Linux
    /// copies for the place it copies them to.
    pub alternatives: Option<(u64, u64)>,
}

impl LinuxPrepared {
    /// The same, as the PV loader's result, for loading the wedge
    /// ([`crate::load::load_wedge`]): `boot_info` is the zero page, which
    /// the wedge passes in `%rsi` (and `%rdi`) for Linux's protocol; the
    /// code runs at its physical addresses, `START_KERNEL_MAP` below its
    /// link addresses, until Linux switches to its own page tables.
    pub fn as_prepared(&self) -> Prepared {
        Prepared {
            entry: self.entry,
            cr3: self.cr3,
            boot_info: self.zero_page,
            afterburn: self.afterburn,
            code: self.code,
            wedge_area: self.wedge_area,
            protocol: previrt_protocol::ENTER_LINUX,
            code_alias: START_KERNEL_MAP,
            alternatives: self.alternatives,
        }
    }
}

/// Where each thing goes: decided and checked before anything is written.
struct Layout {
    usable: u64,
    pml4: u64,
    pdpt_low: u64,
    pdpt_high: u64,
    pd: u64,
    zero_page: u64,
    cmdline: u64,
    code: (u64, u64),
    initrd: Option<(u64, u64)>,
}

/// Loads `vmlinux` with `initrd` (empty: none) and `cmdline` into `ram`.
pub fn prepare_linux(
    ram: &Ram,
    vmlinux: &[u8],
    initrd: &[u8],
    cmdline: &str,
) -> Result<LinuxPrepared, LinuxBootError> {
    let elf = Elf::parse(vmlinux)?;
    let layout = plan(ram.size(), &elf, initrd.len() as u64, cmdline)?;
    let entry = check_entry(&elf)?;
    let afterburn = records(&elf)?;
    let alternatives = elf.section(".altinstructions")?;

    // Only now write: the reserved top, the segments, the initrd.
    ram.zero(layout.usable, ram.size() - layout.usable)?;
    for segment in elf.segments() {
        let s = segment?;
        ram.write(s.paddr, elf.segment_data(&s)?)?;
        ram.zero(s.paddr + s.file_size, s.mem_size - s.file_size)?;
    }
    if let Some((at, _)) = layout.initrd {
        ram.write(at, initrd)?;
    }
    write_tables(ram, &layout)?;
    ram.write(layout.cmdline, cmdline.as_bytes())?;
    ram.write(layout.zero_page, &zero_page_bytes(ram.size(), &layout))?;
    Ok(LinuxPrepared {
        entry,
        zero_page: layout.zero_page,
        cmdline: layout.cmdline,
        cr3: layout.pml4,
        initrd: layout.initrd,
        afterburn,
        code: layout.code,
        wedge_area: layout.usable,
        alternatives,
    })
}

fn plan(ram_size: u64, elf: &Elf, initrd: u64, cmdline: &str) -> Result<Layout, LinuxBootError> {
    if ram_size > MAX_RAM {
        return Err(LinuxBootError::RamTooLarge {
            size: ram_size,
            max: MAX_RAM,
        });
    }
    let usable = ram_size
        .checked_sub(LINUX_RESERVED)
        .ok_or(LinuxBootError::RamTooSmall {
            size: ram_size,
            min: LINUX_RESERVED,
        })?;
    if cmdline.len() > CMDLINE_MAX {
        return Err(LinuxBootError::CmdlineTooLong {
            len: cmdline.len(),
            max: CMDLINE_MAX,
        });
    }
    if let Some(at) = cmdline.bytes().position(|b| b == 0) {
        return Err(LinuxBootError::CmdlineHasNul { at });
    }
    let (mut kernel_end, mut code, mut any) = (0, (u64::MAX, 0), false);
    for segment in elf.segments() {
        let s = segment?;
        check_segment(&s, usable)?;
        // The bytes are in the file (read again when written).
        elf.segment_data(&s)?;
        any = true;
        kernel_end = kernel_end.max(s.paddr + s.mem_size);
        code = (code.0.min(s.vaddr), code.1.max(s.vaddr + s.file_size));
    }
    if !any {
        return Err(LinuxBootError::NoSegments);
    }
    let boot = usable + WEDGE_AREA;
    Ok(Layout {
        usable,
        pml4: boot,
        pdpt_low: boot + PAGE,
        pdpt_high: boot + 2 * PAGE,
        pd: boot + 3 * PAGE,
        zero_page: boot + (BOOT_PAGES - 2) * PAGE,
        cmdline: boot + (BOOT_PAGES - 1) * PAGE,
        code,
        initrd: place_initrd(initrd, kernel_end, usable)?,
    })
}

/// A segment must fit below the reserved RAM and be linked where the
/// initial page tables map it: at its physical address, or at it plus
/// `START_KERNEL_MAP` (the kernel map covers the top 2 GiB).
fn check_segment(s: &Segment, usable: u64) -> Result<(), LinuxBootError> {
    if s.file_size > s.mem_size {
        return Err(LinuxBootError::SegmentFileLargerThanMemory {
            paddr: s.paddr,
            file_size: s.file_size,
            mem_size: s.mem_size,
        });
    }
    if s.paddr.checked_add(s.mem_size).is_none_or(|e| e > usable) {
        return Err(LinuxBootError::SegmentOutsideRam {
            paddr: s.paddr,
            size: s.mem_size,
            limit: usable,
        });
    }
    // The physical end fits (below 4 GiB); the virtual one must not wrap.
    let mapped = s.vaddr == s.paddr
        || (s.paddr.checked_add(START_KERNEL_MAP) == Some(s.vaddr)
            && s.vaddr.checked_add(s.mem_size).is_some());
    if !mapped {
        return Err(LinuxBootError::SegmentNotMapped {
            vaddr: s.vaddr,
            paddr: s.paddr,
        });
    }
    Ok(())
}

/// The initrd as high as it can go, page aligned, below the reserved RAM
/// and `initrd_addr_max`, above the kernel (as QEMU and GRUB place it):
/// out of the way of Linux's early allocations, which start low.
fn place_initrd(
    size: u64,
    kernel_end: u64,
    usable: u64,
) -> Result<Option<(u64, u64)>, LinuxBootError> {
    if size == 0 {
        return Ok(None);
    }
    let top = usable.min(INITRD_ADDR_MAX + 1);
    let floor = kernel_end.next_multiple_of(PAGE);
    let room = top.saturating_sub(floor);
    match top.checked_sub(size).map(|s| s & !(PAGE - 1)) {
        Some(start) if start >= floor => Ok(Some((start, size))),
        _ => Err(LinuxBootError::InitrdDoesNotFit { size, room }),
    }
}

/// `e_entry` must be in an executable segment's file bytes, by physical
/// address: `startup_64` is entered identity mapped.
fn check_entry(elf: &Elf) -> Result<u64, LinuxBootError> {
    let entry = elf.entry()?;
    for segment in elf.segments() {
        let s = segment?;
        if s.executable() && entry >= s.paddr && entry - s.paddr < s.file_size {
            return Ok(entry);
        }
    }
    Err(LinuxBootError::EntryOutsideImage { entry })
}

/// The `.afterburn` records' physical address: their section's address is
/// a kernel address, translated through the segment whose file bytes hold
/// it (for an identity-linked image, the same address).
fn records(elf: &Elf) -> Result<Option<(u64, u64)>, LinuxBootError> {
    let Some((vaddr, size)) = elf.afterburn_records()? else {
        return Ok(None);
    };
    for segment in elf.segments() {
        let s = segment?;
        let inside = vaddr
            .checked_sub(s.vaddr)
            .is_some_and(|o| o.checked_add(size).is_some_and(|e| e <= s.file_size));
        if inside {
            return Ok(Some((s.paddr + (vaddr - s.vaddr), size)));
        }
    }
    Err(LinuxBootError::RecordsNotLoaded { vaddr, size })
}

/// The identity map of RAM (PML4 entry 0: one page directory of 2 MiB
/// pages per GiB) and the kernel map (PML4 entry 511, PDPT entries 510 and
/// 511: the top 2 GiB onto the first 2 GiB of RAM, through the same page
/// directories).
fn write_tables(ram: &Ram, l: &Layout) -> Result<(), LinuxBootError> {
    ram.write_u64(l.pml4, l.pdpt_low | PRESENT_WRITABLE)?;
    ram.write_u64(l.pml4 + 8 * 511, l.pdpt_high | PRESENT_WRITABLE)?;
    let directories = ram.size().div_ceil(GIB);
    for i in 0..directories {
        let pd = l.pd + i * PAGE;
        ram.write_u64(l.pdpt_low + 8 * i, pd | PRESENT_WRITABLE)?;
        if i < 2 {
            ram.write_u64(l.pdpt_high + 8 * (510 + i), pd | PRESENT_WRITABLE)?;
        }
        let first = i * GIB / LARGE;
        let last = ram.size().div_ceil(LARGE).min(first + 512);
        for page in first..last {
            ram.write_u64(
                pd + 8 * (page - first),
                (page * LARGE) | LARGE_PAGE | PRESENT_WRITABLE,
            )?;
        }
    }
    Ok(())
}

/// `struct boot_params`, zero but for what a boot loader fills.
fn zero_page_bytes(ram_size: u64, l: &Layout) -> [u8; PAGE as usize] {
    use zero_page as at;
    let mut page = [0u8; PAGE as usize];
    let mut put = |at: usize, value: u64, n: usize| {
        page[at..at + n].copy_from_slice(&value.to_le_bytes()[..n]);
    };
    put(at::BOOT_FLAG, u64::from(BOOT_FLAG), 2);
    put(at::HEADER, u64::from(HEADER_MAGIC), 4);
    put(at::VERSION, u64::from(PROTOCOL_VERSION), 2);
    put(at::TYPE_OF_LOADER, u64::from(TYPE_OF_LOADER), 1);
    put(at::LOADFLAGS, u64::from(LOADED_HIGH), 1);
    put(at::INITRD_ADDR_MAX, INITRD_ADDR_MAX, 4);
    put(at::CMDLINE_SIZE, CMDLINE_MAX as u64, 4);
    // 64-bit addresses: the header's low half, the zero page's `ext_` high
    // half.
    put(at::CMD_LINE_PTR, l.cmdline & 0xffff_ffff, 4);
    put(at::EXT_CMD_LINE_PTR, l.cmdline >> 32, 4);
    let (image, size) = l.initrd.unwrap_or((0, 0));
    put(at::RAMDISK_IMAGE, image & 0xffff_ffff, 4);
    put(at::EXT_RAMDISK_IMAGE, image >> 32, 4);
    put(at::RAMDISK_SIZE, size & 0xffff_ffff, 4);
    put(at::EXT_RAMDISK_SIZE, size >> 32, 4);
    let mut count = 0;
    for (addr, len, kind) in e820(ram_size, l.usable).into_iter().flatten() {
        let entry = at::E820_TABLE + count * at::E820_ENTRY;
        put(entry, addr, 8);
        put(entry + 8, len, 8);
        put(entry + 16, u64::from(kind), 4);
        count += 1;
    }
    put(at::E820_ENTRIES, count as u64, 1);
    page
}

/// The e820 map: RAM below the legacy hole, RAM from 1 MiB up to the
/// VMM's reserved top, and that top as reserved.
fn e820(ram_size: u64, usable: u64) -> [Option<(u64, u64, u32)>; 3] {
    let low = usable.min(LEGACY_HOLE.0);
    [
        (low > 0).then_some((0, low, E820_RAM)),
        (usable > LEGACY_HOLE.1).then(|| (LEGACY_HOLE.1, usable - LEGACY_HOLE.1, E820_RAM)),
        Some((usable, ram_size - usable, E820_RESERVED)),
    ]
}

#[cfg(test)]
#[path = "linux_boot_tests.rs"]
mod tests;
