//! Kernel patch 0005: seL4 lives in the first PML4 entry of the hypervisor
//! hole (256) and nowhere else, so a user thread can map and use a page
//! where an x86-64 Linux links its image, in the hole's next entry (257,
//! where the wedge lives) and at the hole's last page, while seL4 refuses a
//! mapping in its own entry or at a non-canonical address
//! (docs/sel4-layout.md).

use core::ptr::{read_volatile, write_volatile};

use previrt_sel4::vspace::PagingLevel;
use previrt_sel4::{init, println, CapRights, Error, Pdpt, VmAttributes, Word};

use super::{check, Context, Outcome};
use crate::objects::Objects;

/// Pages a user thread maps, writes and reads back, with the pattern it
/// writes.
const MAPPED: [(Word, u64); 3] = [
    // Where Linux 6.1 links its image (`-mcmodel=kernel`): PML4 entry 511,
    // where seL4 5.0.0 kept its own.
    (0xffff_ffff_8100_0000, 0x1105_0000_8100_0000),
    // The first page after seL4's entry: the hole's entry 257, the wedge's
    // (previrt_protocol::WEDGE_BASE).
    (0xffff_8080_0000_0000, 0x3ed9_e000_8080_0000),
    // The hole's last page (entry 271), refused while seL4 kept all 16.
    (0xffff_87ff_ffff_f000, 0x1a57_0000_87ff_f000),
];

/// Addresses a frame must not be mapped at, and why.
const REFUSED: [(Word, &str); 5] = [
    (
        0xffff_8000_0000_0000,
        "seL4's entry's first page, its physical window",
    ),
    (0xffff_807f_8000_0000, "seL4's image"),
    (0xffff_807f_ffff_f000, "seL4's entry's last page"),
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
    for (vaddr, pattern) in MAPPED {
        let frame = objects.frame().doing("retype a 4K frame")?;
        objects
            .map(frame, vaddr, CapRights::READ_WRITE)
            .doing("map a frame outside seL4's entry")?;
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
    // A PDPT covers a whole PML4 entry: one in seL4's would give the user
    // the kernel's entry.
    let pdpt = Pdpt(
        objects
            .create(PagingLevel::Pdpt.object_type(), 0)
            .doing("retype a PDPT")?,
    );
    for (vaddr, what) in [
        (0xffff_8000_0000_0000, "seL4's PML4 entry"),
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
            check(
                false,
                "seL4 mapped an address in its entry or non-canonical",
            )
        }
        Err(e) => {
            println!(
                "layout: {object} at {vaddr:#x} ({what}): refused with {}",
                e.name()
            );
            check(
                e == Error::InvalidArgument,
                "a mapping in seL4's entry or non-canonical was refused for another reason",
            )
        }
    }
}
