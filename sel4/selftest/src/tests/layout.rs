//! Kernel patch 0005: seL4 lives in the hypervisor hole (PML4 entries
//! 256..271), so a user thread can map and use a page where an x86-64 Linux
//! links its image and at the first address above the hole, while seL4
//! refuses a mapping in the hole or at a non-canonical address
//! (docs/sel4-layout.md).

use core::ptr::{read_volatile, write_volatile};

use previrt_sel4::vspace::PagingLevel;
use previrt_sel4::{init, println, CapRights, Error, Pdpt, VmAttributes, Word};

use super::{check, Context, Outcome};
use crate::objects::Objects;

/// Where Linux 6.1 links its image (`-mcmodel=kernel`): PML4 entry 511,
/// where seL4 5.0.0 kept its own.
const LINUX_IMAGE: Word = 0xffff_ffff_8100_0000;
/// The first address above the hole (Linux's LDT remap, just below its
/// direct map).
const ABOVE_HOLE: Word = 0xffff_8800_0000_0000;

/// Addresses a frame must not be mapped at, and why.
const REFUSED: [(Word, &str); 5] = [
    (
        0xffff_8000_0000_0000,
        "the hole's first page, seL4's physical window",
    ),
    (0xffff_807f_8000_0000, "seL4's image"),
    (0xffff_87ff_ffff_f000, "the hole's last page"),
    (0x0000_8000_0000_0000, "the first non-canonical address"),
    // PML4 entry 0 once the top 16 bits are dropped: the walk would alias it.
    (0x0001_0000_0000_0000, "a non-canonical alias of address 0"),
];

/// Writes a pattern at both ends of the page at `vaddr`, reads it back.
fn write_and_read(vaddr: Word, pattern: u64) -> (u64, u64) {
    // SAFETY: the caller has just mapped a fresh 4 KiB frame read-write at
    // `vaddr` (page-aligned); nothing else uses that page.
    unsafe {
        write_volatile(vaddr as *mut u64, pattern);
        write_volatile((vaddr + 4088) as *mut u64, !pattern);
        (
            read_volatile(vaddr as *const u64),
            read_volatile((vaddr + 4088) as *const u64),
        )
    }
}

pub fn run(objects: &mut Objects) -> Outcome {
    for (vaddr, pattern) in [
        (LINUX_IMAGE, 0x1105_0000_8100_0000_u64),
        (ABOVE_HOLE, 0xab0e_0000_8800_0000_u64),
    ] {
        let frame = objects.frame().doing("retype a 4K frame")?;
        objects
            .map(frame, vaddr, CapRights::READ_WRITE)
            .doing("map a frame outside the hole")?;
        let (first, last) = write_and_read(vaddr, pattern);
        println!("layout: a frame mapped at {vaddr:#x}: wrote {pattern:#x}, read back {first:#x}");
        check(
            first == pattern && last == !pattern,
            "read back differs from what was written",
        )?;
    }

    // The frame check comes before the page-table lookup, so no tables are
    // needed to be refused.
    let frame = objects.frame().doing("retype a 4K frame")?;
    for (vaddr, what) in REFUSED {
        let result = frame.map(
            init::VSPACE,
            vaddr,
            CapRights::READ_WRITE,
            VmAttributes::DEFAULT,
        );
        report("a frame", vaddr, what, result)?;
    }
    // A PDPT covers a whole PML4 entry: one in the hole would give the user
    // the kernel's entry.
    let pdpt = Pdpt(
        objects
            .create(PagingLevel::Pdpt.object_type(), 0)
            .doing("retype a PDPT")?,
    );
    for (vaddr, what) in [
        (0xffff_8000_0000_0000, "the hole's first PML4 entry"),
        (0xffff_8780_0000_0000, "the hole's last PML4 entry"),
        (0x8000_0000_0000_0000, "a non-canonical address"),
    ] {
        report(
            "a PDPT",
            vaddr,
            what,
            pdpt.map(init::VSPACE, vaddr, VmAttributes::DEFAULT),
        )?;
    }
    Ok(())
}

/// Prints what seL4 answered to a mapping that must be refused, and checks
/// it is the refusal of the address (argument 0).
fn report(object: &str, vaddr: Word, what: &str, result: Result<(), Error>) -> Outcome {
    match result {
        Ok(()) => {
            println!("layout: {object} at {vaddr:#x} ({what}): mapped");
            check(false, "seL4 mapped an address in the hole or non-canonical")
        }
        Err(e) => {
            println!(
                "layout: {object} at {vaddr:#x} ({what}): refused with {}",
                e.name()
            );
            check(
                e == Error::InvalidArgument,
                "a mapping in the hole or non-canonical was refused for another reason",
            )
        }
    }
}
