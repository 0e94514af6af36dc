//! Frame fills: each frame with fill records is mapped (through a copy of its
//! capability) at a scratch address in the loader's own VSpace, written from
//! the bundle's file, and unmapped.

use capdl::bundle::Bundle;
use capdl::model::SpecReader;
use capdl::objects::ObjectType;
use previrt_sel4::vspace::map_creating_tables;
use previrt_sel4::{init, CapRights, Page, VmAttributes, Word};

use crate::create::Table;
use crate::error::{Doing, LoadError};
use crate::slots::{root, Slots};
use crate::untyped::Pool;

/// Where the loader maps a frame while it fills it: far from its own image.
const SCRATCH_VA: Word = 0x7000_0000_0000;
const PAGE: u64 = 4096;

pub fn fill_all(
    spec: &SpecReader<'static>,
    bundle: &Bundle<'static>,
    t: &Table,
    slots: &mut Slots,
    memory: &mut Pool,
) -> Result<(), LoadError> {
    let scratch = slots.scratch()?;
    let mut current: Option<u32> = None;
    for fill in spec.fills() {
        let name = t.names[fill.frame as usize];
        if t.types[fill.frame as usize] != Some(ObjectType::Frame)
            || t.size_bits[fill.frame as usize] != 12
        {
            return Err(LoadError::Unsupported {
                object: name,
                what: "a fill of anything but a 4 KiB frame",
            });
        }
        if current != Some(fill.frame) {
            if let Some(done) = current {
                release(scratch, t.names[done as usize])?;
            }
            root(scratch)
                .copy(root(slots.object(fill.frame)), CapRights::READ_WRITE)
                .doing("copying the capability of", name)?;
            map_creating_tables(
                Page(scratch),
                init::VSPACE,
                SCRATCH_VA,
                CapRights::READ_WRITE,
                VmAttributes::DEFAULT,
                &mut |level| {
                    let slot = slots.scratch()?;
                    let untyped = memory.reserve(12).ok_or(LoadError::NoRoomFor {
                        object: name,
                        bytes: PAGE,
                    })?;
                    untyped
                        .retype(level.object_type(), 0, init::CNODE.itself(), slot, 1)
                        .doing("creating a scratch page table for", name)?;
                    Ok::<_, LoadError>(slot)
                },
            )?;
            current = Some(fill.frame);
        }
        let data = bundle.get(fill.file).ok_or(LoadError::MissingFile {
            object: name,
            file: fill.file,
        })?;
        let end = fill
            .file_offset
            .checked_add(fill.length)
            .filter(|&e| e <= data.len() as u64);
        let fits = fill
            .dest_offset
            .checked_add(fill.length)
            .is_some_and(|e| e <= PAGE);
        let (Some(end), true) = (end, fits) else {
            return Err(LoadError::MissingFile {
                object: name,
                file: fill.file,
            });
        };
        let source = &data[fill.file_offset as usize..end as usize];
        // SAFETY: SCRATCH_VA maps this 4 KiB frame read-write right now, the
        // destination range was checked to lie inside it, and nothing else
        // in the loader uses that address.
        unsafe {
            core::ptr::copy_nonoverlapping(
                source.as_ptr(),
                (SCRATCH_VA + fill.dest_offset) as *mut u8,
                source.len(),
            );
        }
    }
    if let Some(done) = current {
        release(scratch, t.names[done as usize])?;
    }
    Ok(())
}

/// Unmaps the frame just filled and frees the scratch slot for the next.
fn release(scratch: Word, name: &'static str) -> Result<(), LoadError> {
    Page(scratch)
        .unmap()
        .doing("unmapping the filled frame", name)?;
    root(scratch)
        .delete()
        .doing("deleting the scratch capability for", name)
}

impl From<previrt_sel4::Error> for LoadError {
    fn from(error: previrt_sel4::Error) -> Self {
        LoadError::Kernel {
            step: "mapping a frame to fill",
            object: "",
            error,
        }
    }
}
