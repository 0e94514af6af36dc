//! The Linux loader against a small `vmlinux`-shaped image (two segments
//! linked at `START_KERNEL_MAP` + their physical addresses, a `.notes`
//! section with one `.afterburn` note), every field and every error; a
//! property test that no input panics; and, ignored by default, the real
//! padded `vmlinux` when one has been built.

use super::*;
use crate::ram::host::HostRam;
use crate::walk::walk;

/// Small, so that each case is cheap; Linux itself is at 16 MiB.
const RAM: u64 = 8 << 20;
const USABLE: u64 = RAM - LINUX_RESERVED;
const BOOT: u64 = USABLE + WEDGE_AREA;
const TEXT_P: u64 = 0x20_0000;
const TEXT_V: u64 = START_KERNEL_MAP + TEXT_P;
const DATA_P: u64 = 0x40_0000;
const DATA_V: u64 = START_KERNEL_MAP + DATA_P;
/// The kernel's end: the data segment's memory size is 0x3000.
const KERNEL_END: u64 = DATA_P + 0x3000;
const NOTE_AT: usize = 0x1800;
const SITE: u64 = TEXT_V + 0x10;
const SHOFF: usize = 0x2200;
const CMDLINE: &str = "console=ttyS0 nolapic noapic";

fn put(b: &mut [u8], at: usize, value: u64, n: usize) {
    b[at..at + n].copy_from_slice(&value.to_le_bytes()[..n]);
}

fn get(b: &[u8], at: usize, n: usize) -> u64 {
    let mut w = [0u8; 8];
    w[..n].copy_from_slice(&b[at..at + n]);
    u64::from_le_bytes(w)
}

/// The `.afterburn` note the image carries (one record, at `SITE`).
fn note() -> Vec<u8> {
    let record = afterburn_format::Record {
        address: SITE,
        kind: 1,
        flags: 0,
        site_len: 12,
        insn_len: 1,
        pair_len: 0,
        reserved: 0,
    };
    let mut out = Vec::new();
    afterburn_format::encode_chunk_note(&[record], &mut out);
    out
}

/// A `vmlinux`-shaped ELF: text (r-x, file 0x1000..0x2000, the note at
/// 0x1800) and data (rw-, 0x100 file bytes, 0x3000 in memory), entry at the
/// text's physical start, sections null, `.notes`, `.shstrtab`.
fn vmlinux() -> Vec<u8> {
    let mut b = vec![0u8; SHOFF + 3 * 64];
    b[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    put(&mut b, 0x10, 2, 2);
    put(&mut b, 0x12, 62, 2);
    put(&mut b, 0x18, TEXT_P, 8);
    put(&mut b, 0x20, 64, 8);
    put(&mut b, 0x28, SHOFF as u64, 8);
    put(&mut b, 0x36, 56, 2);
    put(&mut b, 0x38, 2, 2);
    put(&mut b, 0x3a, 64, 2);
    put(&mut b, 0x3c, 3, 2);
    put(&mut b, 0x3e, 2, 2);
    // (flags, offset, vaddr, paddr, filesz, memsz)
    let phdrs = [
        (5, 0x1000, TEXT_V, TEXT_P, 0x1000, 0x1000),
        (6, 0x2000, DATA_V, DATA_P, 0x100, 0x3000),
    ];
    for (i, (flags, offset, vaddr, paddr, filesz, memsz)) in phdrs.into_iter().enumerate() {
        let ph = 64 + 56 * i;
        put(&mut b, ph, 1, 4);
        put(&mut b, ph + 4, flags, 4);
        put(&mut b, ph + 8, offset, 8);
        put(&mut b, ph + 16, vaddr, 8);
        put(&mut b, ph + 24, paddr, 8);
        put(&mut b, ph + 32, filesz, 8);
        put(&mut b, ph + 40, memsz, 8);
    }
    b[0x1000..0x2000].fill(0x90);
    b[0x2000..0x2100].fill(0xdd);
    let note = note();
    b[NOTE_AT..NOTE_AT + note.len()].copy_from_slice(&note);
    let names = b"\0.notes\0.shstrtab\0";
    b[0x2100..0x2100 + names.len()].copy_from_slice(names);
    let notes = SHOFF + 64;
    put(&mut b, notes, 1, 4);
    put(&mut b, notes + 4, 7, 4); // SHT_NOTE
    put(&mut b, notes + 8, 2, 8); // SHF_ALLOC
    put(&mut b, notes + 16, TEXT_V + 0x800, 8);
    put(&mut b, notes + 24, NOTE_AT as u64, 8);
    put(&mut b, notes + 32, note.len() as u64, 8);
    let strtab = SHOFF + 128;
    put(&mut b, strtab, 8, 4);
    put(&mut b, strtab + 4, 3, 4);
    put(&mut b, strtab + 24, 0x2100, 8);
    put(&mut b, strtab + 32, names.len() as u64, 8);
    b
}

/// Program header `i`'s field at `field` (8 bytes).
fn set_phdr(b: &mut [u8], i: usize, field: usize, value: u64) {
    put(b, 64 + 56 * i + field, value, 8);
}

fn zero_page(h: &HostRam, p: &LinuxPrepared) -> Vec<u8> {
    h.ram().slice(p.zero_page, PAGE).unwrap().to_vec()
}

#[test]
fn segments_go_to_their_physical_addresses_with_memory_zeroed() {
    let h = HostRam::new(RAM);
    // Garbage where the data segment's zeroed tail goes.
    h.all()[(DATA_P + 0x100) as usize..KERNEL_END as usize].fill(0xee);
    let image = vmlinux();
    prepare_linux(&h.ram(), &image, &[], CMDLINE).unwrap();
    let ram = h.ram();
    assert_eq!(ram.slice(TEXT_P, 0x1000).unwrap(), &image[0x1000..0x2000]);
    assert_eq!(ram.slice(DATA_P, 0x100).unwrap(), &image[0x2000..0x2100]);
    assert!(ram
        .slice(DATA_P + 0x100, 0x2f00)
        .unwrap()
        .iter()
        .all(|&b| b == 0));
}

#[test]
fn the_entry_is_startup_64_physical_and_rsi_the_zero_page() {
    let h = HostRam::new(RAM);
    let p = prepare_linux(&h.ram(), &vmlinux(), &[], CMDLINE).unwrap();
    assert_eq!(p.entry, TEXT_P);
    assert_eq!(p.wedge_area, USABLE);
    assert_eq!(p.cr3, BOOT);
    assert_eq!(p.zero_page, BOOT + 7 * PAGE);
    assert_eq!(p.cmdline, BOOT + 8 * PAGE);
    assert_eq!(BOOT + 9 * PAGE, RAM);
    assert_eq!(p.code, (TEXT_V, DATA_V + 0x100));
    let q = p.as_prepared();
    assert_eq!((q.entry, q.boot_info, q.cr3), (TEXT_P, p.zero_page, BOOT));
    assert_eq!(
        (q.code, q.afterburn, q.wedge_area),
        (p.code, p.afterburn, USABLE)
    );
    // Linux's protocol, and its code also at its physical addresses.
    assert_eq!(q.protocol, previrt_protocol::ENTER_LINUX);
    assert_eq!(q.code_alias, START_KERNEL_MAP);
    assert_eq!(q.code.0 - q.code_alias, TEXT_P);
}

#[test]
fn the_zero_page_holds_the_setup_header_fields_and_nothing_else() {
    let h = HostRam::new(RAM);
    let initrd = vec![0x5a; 10_000];
    let p = prepare_linux(&h.ram(), &vmlinux(), &initrd, CMDLINE).unwrap();
    let (image, size) = p.initrd.unwrap();
    let mut z = zero_page(&h, &p);
    use zero_page as at;
    let fields: [(usize, usize, u64); 15] = [
        (at::BOOT_FLAG, 2, 0xaa55),
        (at::HEADER, 4, 0x5372_6448),
        (at::VERSION, 2, 0x020f),
        (at::TYPE_OF_LOADER, 1, 0xff),
        (at::LOADFLAGS, 1, 1),
        (at::INITRD_ADDR_MAX, 4, 0x7fff_ffff),
        (at::CMDLINE_SIZE, 4, 2047),
        (at::CMD_LINE_PTR, 4, p.cmdline),
        (at::EXT_CMD_LINE_PTR, 4, 0),
        (at::RAMDISK_IMAGE, 4, image),
        (at::EXT_RAMDISK_IMAGE, 4, 0),
        (at::RAMDISK_SIZE, 4, 10_000),
        (at::EXT_RAMDISK_SIZE, 4, 0),
        (at::E820_ENTRIES, 1, 3),
        (0x1ef, 1, 0), // sentinel: 0, or Linux clears the fields above
    ];
    for (offset, n, value) in fields {
        assert_eq!(get(&z, offset, n), value, "the field at {offset:#x}");
        z[offset..offset + n].fill(0);
    }
    assert_eq!(size, 10_000);
    // The e820 map: RAM below 640 KiB, RAM from 1 MiB to the reserved top,
    // the reserved top.
    let e820 = [
        (0, 0xa_0000, 1),
        (0x10_0000, USABLE - 0x10_0000, 1),
        (USABLE, LINUX_RESERVED, 2),
    ];
    for (i, (addr, len, kind)) in e820.into_iter().enumerate() {
        let e = at::E820_TABLE + i * at::E820_ENTRY;
        assert_eq!(
            (get(&z, e, 8), get(&z, e + 8, 8), get(&z, e + 16, 4)),
            (addr, len, kind),
            "e820 entry {i}"
        );
        z[e..e + at::E820_ENTRY].fill(0);
    }
    assert!(z.iter().all(|&b| b == 0), "only the fields above are set");
}

#[test]
fn the_command_line_is_there_and_ends_in_nul() {
    let h = HostRam::new(RAM);
    h.all()[(RAM - PAGE) as usize..RAM as usize].fill(0xee);
    let p = prepare_linux(&h.ram(), &vmlinux(), &[], CMDLINE).unwrap();
    let ram = h.ram();
    let line = ram.slice(p.cmdline, CMDLINE.len() as u64 + 1).unwrap();
    assert_eq!(&line[..CMDLINE.len()], CMDLINE.as_bytes());
    assert_eq!(line[CMDLINE.len()], 0);
    // The longest line fits, NUL included, in its page.
    let long = "x".repeat(CMDLINE_MAX);
    let p = prepare_linux(&h.ram(), &vmlinux(), &[], &long).unwrap();
    assert_eq!(h.ram().read_u64(p.cmdline + 2040), Ok(0x78_7878_7878_7878));
    assert_eq!(
        get(&zero_page(&h, &p), zero_page::CMD_LINE_PTR, 4),
        p.cmdline
    );
}

#[test]
fn the_initrd_goes_high_page_aligned_above_the_kernel() {
    let h = HostRam::new(RAM);
    let initrd: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let p = prepare_linux(&h.ram(), &vmlinux(), &initrd, CMDLINE).unwrap();
    let (at, size) = p.initrd.unwrap();
    assert_eq!(size, 10_000);
    assert_eq!(at % PAGE, 0);
    assert!(at >= KERNEL_END && at + size <= USABLE);
    // As high as it goes: the next page up would cross the reserved top.
    assert!(at + PAGE + size > USABLE);
    assert_eq!(h.ram().slice(at, size).unwrap(), &initrd[..]);
    // None: the fields say so.
    let p = prepare_linux(&h.ram(), &vmlinux(), &[], CMDLINE).unwrap();
    assert_eq!(p.initrd, None);
    let z = zero_page(&h, &p);
    assert_eq!(get(&z, zero_page::RAMDISK_IMAGE, 4), 0);
    assert_eq!(get(&z, zero_page::RAMDISK_SIZE, 4), 0);
}

#[test]
fn the_initrd_stays_below_initrd_addr_max_and_fills_the_room_exactly() {
    // 3 GiB of usable RAM: the initrd ends at 2 GiB, not at the top.
    let usable = 3 << 30;
    assert_eq!(
        place_initrd(0x1800, KERNEL_END, usable),
        Ok(Some((0x8000_0000 - 0x2000, 0x1800)))
    );
    // All the room between the kernel's end (page aligned) and the top.
    let floor = KERNEL_END.next_multiple_of(PAGE);
    let room = USABLE - floor;
    assert_eq!(
        place_initrd(room, KERNEL_END, USABLE),
        Ok(Some((floor, room)))
    );
    assert_eq!(
        place_initrd(room + 1, KERNEL_END, USABLE),
        Err(LinuxBootError::InitrdDoesNotFit {
            size: room + 1,
            room
        })
    );
    // A kernel ending above initrd_addr_max leaves no room at all.
    assert_eq!(
        place_initrd(1, 0x8000_1000, usable),
        Err(LinuxBootError::InitrdDoesNotFit { size: 1, room: 0 })
    );
    assert_eq!(
        place_initrd(u64::MAX, KERNEL_END, USABLE),
        Err(LinuxBootError::InitrdDoesNotFit {
            size: u64::MAX,
            room
        })
    );
}

#[test]
fn the_page_tables_map_ram_identically_and_the_kernel_at_its_link_address() {
    let h = HostRam::new(RAM);
    let p = prepare_linux(&h.ram(), &vmlinux(), &[], CMDLINE).unwrap();
    let ram = h.ram();
    for (va, gpa) in [
        (TEXT_P, TEXT_P),
        (TEXT_V, TEXT_P),
        (DATA_V + 0x2fff, DATA_P + 0x2000),
        (SITE, TEXT_P),
        (p.zero_page, p.zero_page),
        (p.cmdline + 100, p.cmdline),
        (0, 0),
        (RAM - 1, RAM - PAGE),
        (START_KERNEL_MAP + RAM - 1, RAM - PAGE),
    ] {
        let t = walk(&ram, p.cr3, va).unwrap_or_else(|e| panic!("{va:#x}: {e:?}"));
        assert_eq!(t.gpa, gpa, "{va:#x}");
        assert!(t.writable, "{va:#x}");
    }
    // Nothing past RAM, nothing elsewhere (the wedge's region included:
    // the VMM maps the wedge itself).
    for va in [RAM, START_KERNEL_MAP - 1, previrt_protocol::WEDGE_BASE] {
        assert!(walk(&ram, p.cr3, va).is_err(), "{va:#x}");
    }
}

#[test]
fn ram_past_1_gib_gets_a_page_directory_per_gib_and_the_kernel_map_its_top_2_gib() {
    // 2 GiB + 4 MiB: three page directories. The host buffer is allocated
    // lazily; the loader touches only its top and the kernel.
    let size = (2 << 30) + (4 << 20);
    let h = HostRam::new(size);
    let ram = h.ram();
    let p = prepare_linux(&ram, &vmlinux(), &[], CMDLINE).unwrap();
    assert_eq!(p.zero_page, size - 2 * PAGE);
    for (va, gpa) in [
        (0x6000_1234, 0x6000_1000),
        (GIB + 0x20_0000, GIB + 0x20_0000),
        (size - 1, size - PAGE),
        (p.zero_page, p.zero_page),
        (p.cmdline, p.cmdline),
        // PDPT entry 511 of the kernel map: the second GiB.
        (START_KERNEL_MAP + GIB + 0x5000, GIB + 0x5000),
        (u64::MAX, 2 * GIB - PAGE),
    ] {
        let t = walk(&ram, p.cr3, va).unwrap_or_else(|e| panic!("{va:#x}: {e:?}"));
        assert_eq!(t.gpa, gpa, "{va:#x}");
    }
    // The third GiB is identity mapped only; past RAM nothing.
    for va in [size, 3 * GIB, 4 * GIB - 1] {
        assert!(walk(&ram, p.cr3, va).is_err(), "{va:#x}");
    }
    let z = zero_page(&h, &p);
    let e = zero_page::E820_TABLE + 2 * zero_page::E820_ENTRY;
    assert_eq!(
        (get(&z, e, 8), get(&z, e + 16, 4)),
        (size - LINUX_RESERVED, 2)
    );
}

#[test]
fn the_records_are_found_at_their_physical_address() {
    let h = HostRam::new(RAM);
    let p = prepare_linux(&h.ram(), &vmlinux(), &[], CMDLINE).unwrap();
    let note = note();
    assert_eq!(p.afterburn, Some((TEXT_P + 0x800, note.len() as u64)));
    let (at, len) = p.afterburn.unwrap();
    let ram = h.ram();
    let bytes = ram.slice(at, len).unwrap();
    assert_eq!(bytes, &note[..]);
    let records = wedge_l4::records::Records::parse(bytes).unwrap();
    let mut sites = Vec::new();
    records.for_each_site(|s| sites.push(s.address));
    assert_eq!(sites, [SITE]);
    assert!((p.code.0..p.code.1).contains(&SITE));
    // An identity-linked image: the same address.
    let mut b = vmlinux();
    set_phdr(&mut b, 0, 16, TEXT_P);
    put(&mut b, SHOFF + 64 + 16, TEXT_P + 0x800, 8);
    let p = prepare_linux(&h.ram(), &b, &[], CMDLINE).unwrap();
    assert_eq!(p.afterburn, Some((TEXT_P + 0x800, note.len() as u64)));
    assert_eq!(p.code, (TEXT_P, DATA_V + 0x100));
}

/// Prepares `image` in RAM filled with a pattern; the error, and that RAM
/// is untouched.
fn refused(ram_size: u64, image: &[u8], initrd: &[u8], cmdline: &str) -> LinuxBootError {
    let h = HostRam::new(ram_size);
    h.all().fill(0xa5);
    let e = prepare_linux(&h.ram(), image, initrd, cmdline).unwrap_err();
    assert!(h.all().iter().all(|&b| b == 0xa5), "{e}: RAM was written");
    e
}

#[test]
fn bad_images_are_refused_before_anything_is_written() {
    // Truncated: the header, then the data segment's bytes.
    let image = vmlinux();
    assert_eq!(
        refused(RAM, &image[..0x30], &[], ""),
        LinuxBootError::Elf(ElfError::NotElf64)
    );
    assert_eq!(
        refused(RAM, &image[..0x2080], &[], ""),
        LinuxBootError::Elf(ElfError::Truncated {
            what: "a segment",
            offset: 0x2000
        })
    );
    // A segment past the reserved top.
    let mut b = vmlinux();
    set_phdr(&mut b, 1, 24, USABLE - 0x2000);
    set_phdr(&mut b, 1, 16, START_KERNEL_MAP + USABLE - 0x2000);
    assert_eq!(
        refused(RAM, &b, &[], ""),
        LinuxBootError::SegmentOutsideRam {
            paddr: USABLE - 0x2000,
            size: 0x3000,
            limit: USABLE
        }
    );
    // One whose end wraps.
    set_phdr(&mut b, 1, 24, u64::MAX - 0x1000);
    assert_eq!(
        refused(RAM, &b, &[], ""),
        LinuxBootError::SegmentOutsideRam {
            paddr: u64::MAX - 0x1000,
            size: 0x3000,
            limit: USABLE
        }
    );
    // Linked somewhere the tables do not map it.
    let mut b = vmlinux();
    set_phdr(&mut b, 1, 16, DATA_V + 0x10_0000);
    assert_eq!(
        refused(RAM, &b, &[], ""),
        LinuxBootError::SegmentNotMapped {
            vaddr: DATA_V + 0x10_0000,
            paddr: DATA_P
        }
    );
    // More file bytes than memory.
    let mut b = vmlinux();
    set_phdr(&mut b, 1, 32, 0x3001);
    assert_eq!(
        refused(RAM, &b, &[], ""),
        LinuxBootError::SegmentFileLargerThanMemory {
            paddr: DATA_P,
            file_size: 0x3001,
            mem_size: 0x3000
        }
    );
    // No loadable segment.
    let mut b = vmlinux();
    put(&mut b, 0x38, 0, 2);
    assert_eq!(refused(RAM, &b, &[], ""), LinuxBootError::NoSegments);
}

#[test]
fn an_entry_or_records_outside_the_loaded_image_are_refused() {
    // The entry at startup_64's virtual address, not its physical one.
    let mut b = vmlinux();
    put(&mut b, 0x18, TEXT_V, 8);
    assert_eq!(
        refused(RAM, &b, &[], ""),
        LinuxBootError::EntryOutsideImage { entry: TEXT_V }
    );
    // In the data segment: not executable.
    put(&mut b, 0x18, DATA_P, 8);
    assert_eq!(
        refused(RAM, &b, &[], ""),
        LinuxBootError::EntryOutsideImage { entry: DATA_P }
    );
    // Records whose section runs past the text's file bytes.
    let mut b = vmlinux();
    put(&mut b, SHOFF + 64 + 16, TEXT_V + 0xff0, 8);
    let len = note().len() as u64;
    assert_eq!(
        refused(RAM, &b, &[], ""),
        LinuxBootError::RecordsNotLoaded {
            vaddr: TEXT_V + 0xff0,
            size: len
        }
    );
    // At the physical address while the segments are linked high.
    put(&mut b, SHOFF + 64 + 16, TEXT_P + 0x800, 8);
    assert_eq!(
        refused(RAM, &b, &[], ""),
        LinuxBootError::RecordsNotLoaded {
            vaddr: TEXT_P + 0x800,
            size: len
        }
    );
}

#[test]
fn bad_ram_sizes_initrds_and_command_lines_are_refused() {
    let image = vmlinux();
    assert_eq!(
        refused(LINUX_RESERVED - 1, &image, &[], ""),
        LinuxBootError::RamTooSmall {
            size: LINUX_RESERVED - 1,
            min: LINUX_RESERVED
        }
    );
    // RAM the tables cannot map: refused by its size alone.
    let elf = Elf::parse(&image).unwrap();
    assert!(matches!(
        plan(MAX_RAM + PAGE, &elf, 0, ""),
        Err(LinuxBootError::RamTooLarge {
            size,
            max: MAX_RAM
        }) if size == MAX_RAM + PAGE
    ));
    assert!(plan(MAX_RAM, &elf, 0, "").is_ok());
    // RAM that ends inside the kernel.
    assert_eq!(
        refused(LINUX_RESERVED + DATA_P, &image, &[], ""),
        LinuxBootError::SegmentOutsideRam {
            paddr: DATA_P,
            size: 0x3000,
            limit: DATA_P
        }
    );
    let room = USABLE - KERNEL_END.next_multiple_of(PAGE);
    let big = vec![0; room as usize + 1];
    assert_eq!(
        refused(RAM, &image, &big, ""),
        LinuxBootError::InitrdDoesNotFit {
            size: room + 1,
            room
        }
    );
    assert_eq!(
        refused(RAM, &image, &[], &"x".repeat(CMDLINE_MAX + 1)),
        LinuxBootError::CmdlineTooLong {
            len: 2048,
            max: 2047
        }
    );
    assert_eq!(
        refused(RAM, &image, &[], "console=ttyS0\0init=/bin/sh"),
        LinuxBootError::CmdlineHasNul { at: 13 }
    );
}

#[test]
fn errors_say_what_and_where() {
    let cases = [
        (
            LinuxBootError::InitrdDoesNotFit {
                size: 0x10_0000,
                room: 0x8000,
            },
            "the initrd of 0x100000 bytes does not fit in the 0x8000 bytes between the kernel \
             and the end of RAM or initrd_addr_max",
        ),
        (
            LinuxBootError::CmdlineTooLong {
                len: 3000,
                max: 2047,
            },
            "the command line of 3000 bytes is longer than Linux's 2047",
        ),
        (
            LinuxBootError::SegmentNotMapped {
                vaddr: 0xffff_ffff_8200_0000,
                paddr: 0x100_0000,
            },
            "the segment at 0x1000000 is linked at 0xffffffff82000000, neither there nor at \
             0x1000000 + 0xffffffff80000000",
        ),
        (
            LinuxBootError::RecordsNotLoaded {
                vaddr: 0xffff_ffff_8164_bcd8,
                size: 58_172,
            },
            "the .afterburn records at 0xffffffff8164bcd8 (0xe33c bytes) are not in a loaded \
             segment",
        ),
        (
            LinuxBootError::Elf(ElfError::NotElf64),
            "vmlinux: not a little-endian x86-64 ELF64 file",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A valid image with fields changed and maybe cut, any initrd size
        /// and command line: an error or a loaded kernel, never a panic; and
        /// what loads keeps its promises.
        #[test]
        fn no_input_panics(
            words in proptest::collection::vec(
                (prop::sample::select(vec![0x18usize, 0x20, 0x28, 0x36, 0x38,
                    64 + 16, 64 + 24, 64 + 32, 64 + 40, 120 + 8, 120 + 16, 120 + 24,
                    120 + 32, 120 + 40, SHOFF + 64 + 16, SHOFF + 64 + 32]),
                 prop_oneof![any::<u64>(), Just(u64::MAX), 0u64..0x80_0000,
                    (0u64..0x80_0000).prop_map(|p| p + START_KERNEL_MAP)]),
                0..4),
            bytes in proptest::collection::vec((0usize..SHOFF + 192, any::<u8>()), 0..4),
            cut in prop_oneof![Just(usize::MAX), 0usize..SHOFF + 192],
            initrd in prop_oneof![Just(0usize), 1usize..0x1000, Just(0x40_0000)],
            cmdline in "[ -~]{0,2100}",
        ) {
            let mut b = vmlinux();
            for (at, value) in words {
                let n = if matches!(at, 0x36..=0x3e) { 2 } else { 8 };
                put(&mut b, at, value, n);
            }
            for (at, value) in bytes {
                b[at] = value;
            }
            b.truncate(cut);
            let h = HostRam::new(RAM);
            let initrd = vec![0x11; initrd];
            if let Ok(p) = prepare_linux(&h.ram(), &b, &initrd, &cmdline) {
                let z = zero_page(&h, &p);
                prop_assert_eq!(get(&z, zero_page::BOOT_FLAG, 2), 0xaa55);
                prop_assert!(p.entry < USABLE);
                prop_assert!(cmdline.len() <= CMDLINE_MAX);
                if let Some((at, size)) = p.initrd {
                    prop_assert!(at % PAGE == 0 && at + size <= USABLE);
                }
                if let Some((at, size)) = p.afterburn {
                    prop_assert!(at + size <= USABLE);
                }
            }
        }
    }
}

/// A `vmlinux` that `cargo xtask linux` built (`target/linux/VARIANT-KEY/`),
/// or the file the environment variable `var` names.
fn built_vmlinux(var: &str, variant: &str) -> std::path::PathBuf {
    std::env::var_os(var)
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/linux");
            std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
                let v = e.path().join("obj/vmlinux");
                let name = e.file_name().to_string_lossy().into_owned();
                (name.starts_with(&format!("{variant}-")) && v.exists()).then_some(v)
            })
        })
        .unwrap_or_else(|| panic!("no {variant} vmlinux: run `cargo xtask linux` or set {var}"))
}

/// Loads the `vmlinux` at `path`: its entry is `startup_64` (by `nm`, a
/// reader other than ours), mapped at both its addresses; the zero page is
/// well formed; and the records, if `padded`, are where the kernel map
/// says and parse, every site inside the loaded image.
fn check_vmlinux(path: &std::path::Path, padded: bool) {
    let image = std::fs::read(path).unwrap();
    let nm = std::process::Command::new("nm")
        .arg(path)
        .output()
        .expect("nm runs");
    let symbols = String::from_utf8_lossy(&nm.stdout);
    let startup_64 = symbols
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, _, name) = (f.next()?, f.next()?, f.next()?);
            (name == "startup_64").then(|| u64::from_str_radix(addr, 16).unwrap())
        })
        .expect("vmlinux has startup_64");

    let ram_size = 128 << 20;
    let h = HostRam::new(ram_size);
    let initrd = vec![0x42; 1 << 20];
    let p = prepare_linux(&h.ram(), &image, &initrd, CMDLINE).unwrap();
    let ram = h.ram();
    assert_eq!(p.entry, startup_64 - START_KERNEL_MAP);
    assert_eq!(walk(&ram, p.cr3, startup_64).unwrap().gpa, p.entry);
    assert_eq!(walk(&ram, p.cr3, p.entry).unwrap().gpa, p.entry);
    let z = zero_page(&h, &p);
    assert_eq!(get(&z, zero_page::BOOT_FLAG, 2), 0xaa55);
    assert_eq!(get(&z, zero_page::HEADER, 4), 0x5372_6448);
    assert_eq!(get(&z, zero_page::E820_ENTRIES, 1), 3);
    assert_eq!(get(&z, zero_page::CMD_LINE_PTR, 4), p.cmdline);
    let (at, size) = p.initrd.unwrap();
    assert_eq!(get(&z, zero_page::RAMDISK_IMAGE, 4), at);
    assert_eq!(get(&z, zero_page::RAMDISK_SIZE, 4), size);
    assert!(at > p.code.1 - START_KERNEL_MAP);
    // Both kernels have alternatives; the wedge reads their table from the
    // loaded code, so it must lie there, in whole entries.
    let (alt, alt_len) = p.alternatives.expect("vmlinux has .altinstructions");
    assert!(p.code.0 <= alt && alt + alt_len <= p.code.1);
    assert_eq!(alt_len % wedge_l4::alternatives::ENTRY_LEN as u64, 0);
    assert_eq!(p.as_prepared().alternatives, p.alternatives);
    println!(
        "{}: entry {:#x}, image {:#x}..{:#x}, initrd at {at:#x}, zero page {:#x}",
        path.display(),
        p.entry,
        p.code.0,
        p.code.1,
        p.zero_page,
    );
    if !padded {
        assert_eq!(p.afterburn, None);
        return;
    }
    let (records_at, len) = p
        .afterburn
        .expect("a padded vmlinux has .afterburn records");
    let records = wedge_l4::records::Records::parse(ram.slice(records_at, len).unwrap())
        .expect("the records parse where the kernel map puts them");
    let mut outside = 0;
    records.for_each_site(|s| outside += usize::from(!(p.code.0..p.code.1).contains(&s.address)));
    println!(
        "{} sites, records at {records_at:#x} ({len} bytes)",
        records.site_count()
    );
    assert!(records.site_count() > 1000);
    assert_eq!(outside, 0, "sites outside the loaded image");
}

/// The padded `vmlinux` (or `PREVIRT_VMLINUX`). Ignored by default: the
/// kernel takes 10–20 minutes to build.
/// `cargo test -p vmm-core real_ -- --ignored`.
#[test]
#[ignore = "needs a built vmlinux (cargo xtask linux, or PREVIRT_VMLINUX)"]
fn real_padded_vmlinux() {
    check_vmlinux(&built_vmlinux("PREVIRT_VMLINUX", "padded"), true);
}

/// The plain `vmlinux` (or `PREVIRT_PLAIN_VMLINUX`): the same, with no
/// records.
#[test]
#[ignore = "needs a built vmlinux (cargo xtask linux, or PREVIRT_PLAIN_VMLINUX)"]
fn real_plain_vmlinux() {
    check_vmlinux(&built_vmlinux("PREVIRT_PLAIN_VMLINUX", "plain"), false);
}

/// A wedge-shaped ELF: one read-execute segment of 0x100 bytes linked at
/// `WEDGE_BASE`, its entry at the start, no sections.
fn wedge() -> Vec<u8> {
    use previrt_protocol::WEDGE_BASE;
    let mut b = vec![0u8; 0x1100];
    b[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    put(&mut b, 0x10, 2, 2);
    put(&mut b, 0x12, 62, 2);
    put(&mut b, 0x18, WEDGE_BASE, 8);
    put(&mut b, 0x20, 64, 8);
    put(&mut b, 0x36, 56, 2);
    put(&mut b, 0x38, 1, 2);
    put(&mut b, 0x3a, 64, 2);
    put(&mut b, 64, 1, 4);
    put(&mut b, 64 + 4, 5, 4);
    for (field, value) in [
        (8, 0x1000),
        (16, WEDGE_BASE),
        (24, WEDGE_BASE),
        (32, 0x100),
        (40, 0x100),
    ] {
        put(&mut b, 64 + field, value, 8);
    }
    b[0x1000..0x1100].fill(0xcc);
    b
}

#[test]
fn the_wedge_learns_linuxs_protocol_and_the_code_alias_from_its_boot_block() {
    use previrt_protocol::{WedgeBoot, BOOT_BLOCK_OFFSET, ENTER_LINUX, WEDGE_BOOT_MAGIC};
    let h = HostRam::new(RAM);
    let p = prepare_linux(&h.ram(), &vmlinux(), &[], CMDLINE).unwrap();
    let loaded = crate::load::load_wedge(&h.ram(), &p.as_prepared(), &wedge()).unwrap();
    let block = h
        .ram()
        .slice(
            p.wedge_area + BOOT_BLOCK_OFFSET,
            size_of::<WedgeBoot>() as u64,
        )
        .unwrap()
        .to_vec();
    let word = |field: usize| get(&block, field, 8);
    assert_eq!(word(0), WEDGE_BOOT_MAGIC);
    assert_eq!(word(core::mem::offset_of!(WedgeBoot, pv_entry)), TEXT_P);
    assert_eq!(
        word(core::mem::offset_of!(WedgeBoot, boot_info)),
        p.zero_page
    );
    assert_eq!(word(core::mem::offset_of!(WedgeBoot, cr3)), BOOT);
    assert_eq!(word(core::mem::offset_of!(WedgeBoot, code_start)), TEXT_V);
    assert_eq!(
        word(core::mem::offset_of!(WedgeBoot, protocol)),
        ENTER_LINUX
    );
    assert_eq!(
        word(core::mem::offset_of!(WedgeBoot, code_alias)),
        START_KERNEL_MAP
    );
    // The wedge's code landed in the wedge area, its entry where it was linked.
    assert_eq!(loaded.entry, previrt_protocol::WEDGE_BASE);
    assert_eq!(h.ram().slice(p.wedge_area, 4).unwrap(), &[0xcc; 4]);
}
