//! Untyped retype into frames and paging structures; mapping a frame twice
//! (the second time through a copied capability) and reading through both.

use core::ptr::{read_volatile, write_volatile};

use previrt_sel4::{init, println, CapRights, Page};

use super::{check, Context, Outcome};
use crate::objects::{slot, Objects};

/// Far from the image, so a new page table (and directory) is needed.
const FIRST: u64 = 0x4000_0000;
const ALIAS: u64 = 0x4020_1000;

pub fn run(objects: &mut Objects) -> Outcome {
    let frame = objects.frame().doing("retype a 4K frame")?;
    objects
        .map(frame, FIRST, CapRights::READ_WRITE)
        .doing("map the frame")?;
    let paddr = frame.address().doing("get the frame's address")?;

    // A frame capability maps once: the alias needs a copy of the capability.
    let copy = objects.slot().doing("allocate a slot")?;
    slot(copy)
        .copy(slot(frame.0), CapRights::READ)
        .doing("copy the frame capability")?;
    objects
        .map(Page(copy), ALIAS, CapRights::READ)
        .doing("map the copy read-only")?;

    let pattern = 0x5e14_0000_cafe_f00d_u64;
    // SAFETY: FIRST and ALIAS were just mapped (read-write and read-only) to
    // the same fresh frame; nothing else uses these addresses.
    let (first, alias) = unsafe {
        write_volatile(FIRST as *mut u64, pattern);
        write_volatile((FIRST + 4088) as *mut u64, !pattern);
        (
            read_volatile(FIRST as *const u64),
            read_volatile((ALIAS + 4088) as *const u64),
        )
    };
    println!(
        "memory: frame at paddr {paddr:#x} mapped at {FIRST:#x}; wrote {pattern:#x}, read back {first:#x}; alias {ALIAS:#x} reads {alias:#x}"
    );
    check(first == pattern, "read back differs from what was written")?;
    check(
        alias == !pattern,
        "the alias mapping does not see the write",
    )?;
    check(paddr % 4096 == 0 && paddr != 0, "implausible frame address")?;

    // Unmap before deleting: seL4 5.0.0 unmaps a frame on deleting its
    // capability only when it is the frame's last capability.
    Page(copy).unmap().doing("unmap the copy")?;
    init::CNODE.slot(copy).delete().doing("delete the copy")
}
