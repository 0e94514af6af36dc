//! VSpaces: each PML4 gets an ASID, then the paging structures and frames the
//! spec puts in page-table slots are mapped, level by level from the top, so
//! each structure knows its virtual address when its own slots are filled.

use capdl::model::{Cap, Slot as SpecSlot, SpecReader};
use capdl::objects::{ObjectType, Rights};
use previrt_sel4::sys::constants::{seL4_X86_CacheDisabled, seL4_X86_Default_VMAttributes};
use previrt_sel4::{init, CapRights, Page, PageDirectory, PageTable, Pdpt, VSpace, VmAttributes};

use crate::create::Table;
use crate::error::{Doing, LoadError};
use crate::slots::{root, Slots};

pub fn frame_rights(rights: Rights) -> CapRights {
    CapRights {
        read: rights.contains(Rights::READ),
        write: rights.contains(Rights::WRITE),
        grant: false,
    }
}

fn attributes(cap: &Cap) -> VmAttributes {
    VmAttributes(if cap.cached {
        seL4_X86_Default_VMAttributes
    } else {
        seL4_X86_CacheDisabled
    })
}

pub fn map_all(
    spec: &SpecReader<'static>,
    t: &mut Table,
    slots: &mut Slots,
) -> Result<(), LoadError> {
    for i in 0..t.count {
        if t.types[i as usize] == Some(ObjectType::Pml4) {
            init::ASID_POOL
                .assign(VSpace(slots.object(i)))
                .doing("assigning an ASID to", t.names[i as usize])?;
            t.vroot[i as usize] = i;
        }
    }
    for level in [
        ObjectType::Pml4,
        ObjectType::Pdpt,
        ObjectType::PageDirectory,
        ObjectType::PageTable,
    ] {
        for record in spec.caps() {
            let holder = record.holder as usize;
            if t.types[holder] != Some(level) {
                continue;
            }
            let SpecSlot::Index(index) = record.slot else {
                continue;
            };
            let target = record.cap.target as usize;
            let name = t.names[target];
            // A PML4's entries 256 and up are upper-half addresses.
            let vaddr =
                level
                    .slot_address(t.vbase[holder], index)
                    .ok_or(LoadError::Unsupported {
                        object: name,
                        what: "a slot past the end of its paging structure",
                    })?;
            let vspace = VSpace(slots.object(t.vroot[holder]));
            let cptr = slots.object(record.cap.target);
            let attr = attributes(&record.cap);
            match t.types[target] {
                Some(ObjectType::Pdpt) => {
                    Pdpt(cptr).map(vspace, vaddr, attr).doing("mapping", name)?
                }
                Some(ObjectType::PageDirectory) => PageDirectory(cptr)
                    .map(vspace, vaddr, attr)
                    .doing("mapping", name)?,
                Some(ObjectType::PageTable) => PageTable(cptr)
                    .map(vspace, vaddr, attr)
                    .doing("mapping", name)?,
                Some(ObjectType::Frame) => {
                    // A frame capability maps once: further mappings use copies.
                    let page = if t.mapped[target] {
                        let copy = slots.scratch()?;
                        root(copy)
                            .copy(root(cptr), CapRights::ALL)
                            .doing("copying the capability of", name)?;
                        copy
                    } else {
                        t.mapped[target] = true;
                        cptr
                    };
                    Page(page)
                        .map(vspace, vaddr, frame_rights(record.cap.rights), attr)
                        .doing("mapping", name)?;
                    continue;
                }
                _ => {
                    return Err(LoadError::Unsupported {
                        object: name,
                        what: "this object in a paging structure",
                    })
                }
            }
            t.vbase[target] = vaddr;
            t.vroot[target] = t.vroot[holder];
        }
    }
    Ok(())
}
