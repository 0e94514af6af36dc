//! Creating the spec's objects: retyped from untyped memory largest first
//! (so alignment wastes nothing), IRQ handlers from the IRQ control
//! capability, I/O port ranges minted from the initial I/O port capability.

use core::sync::atomic::{AtomicBool, Ordering};

use capdl::model::{ObjectKind, SpecReader};
use capdl::objects::{FrameSize, ObjectType};
use previrt_sel4::cap::{io_port_data, Polarity, Trigger};
use previrt_sel4::sys::constants as c;
use previrt_sel4::{init, CapRights, Untyped, Word};

use crate::error::{Doing, LoadError};
use crate::slots::{root, Slots};
use crate::untyped::Pool;

/// The most objects one spec may have: eight guests of 64 MiB (16,384
/// frames each) with their VMMs. The table costs about 55 bytes an object
/// of the loader's .bss; each object's cap also takes a slot of the root
/// CNode (2^18 slots, `CONFIG_ROOT_CNODE_SIZE_BITS`).
pub const MAX_OBJECTS: usize = 160 * 1024;

/// What the loader remembers of each object between its passes.
pub struct Table {
    pub count: u32,
    pub names: [&'static str; MAX_OBJECTS],
    pub types: [Option<ObjectType>; MAX_OBJECTS],
    /// log2 of the object's size in bytes (0 for objects not in memory).
    pub size_bits: [u8; MAX_OBJECTS],
    /// A CNode's radix, for addressing its slots.
    pub radix: [u8; MAX_OBJECTS],
    /// Paging structures: the virtual address they map from, and their VSpace.
    pub vbase: [u64; MAX_OBJECTS],
    pub vroot: [u32; MAX_OBJECTS],
    /// Frames: whether the object's own capability is already mapped.
    pub mapped: [bool; MAX_OBJECTS],
    order: [u32; MAX_OBJECTS],
    /// How each object comes into being (kept so creation need not decode
    /// the spec's records again: finding record i walks from the start).
    how: [How; MAX_OBJECTS],
}

/// How an object is created.
#[derive(Clone, Copy, Debug)]
enum How {
    Retype {
        object_type: Word,
        size_arg: u8,
        parent: Option<u32>,
    },
    Irq {
        ioapic: u32,
        pin: u32,
        level: u32,
        polarity: u32,
    },
    Ports {
        first: u16,
        last: u16,
    },
    Unsupported(&'static str),
}

static mut TABLE: Table = Table {
    count: 0,
    names: [""; MAX_OBJECTS],
    types: [None; MAX_OBJECTS],
    size_bits: [0; MAX_OBJECTS],
    radix: [0; MAX_OBJECTS],
    vbase: [0; MAX_OBJECTS],
    vroot: [0; MAX_OBJECTS],
    mapped: [false; MAX_OBJECTS],
    order: [0; MAX_OBJECTS],
    how: [How::Unsupported(""); MAX_OBJECTS],
};
static TAKEN: AtomicBool = AtomicBool::new(false);

fn table() -> &'static mut Table {
    assert!(
        !TAKEN.swap(true, Ordering::Relaxed),
        "the object table is taken once"
    );
    let table = &raw mut TABLE;
    // SAFETY: the flag above hands out the only reference, once; the loader
    // is single-threaded.
    unsafe { &mut *table }
}

/// The seL4 object type and the size argument of Untyped_Retype.
fn retype_args(kind: &ObjectKind) -> Option<(Word, Word)> {
    Some(match kind {
        ObjectKind::Untyped { size_bits, .. } => (c::seL4_UntypedObject, Word::from(*size_bits)),
        ObjectKind::Frame {
            size: FrameSize::Small,
            ..
        } => (c::seL4_X86_4K, 0),
        ObjectKind::Frame {
            size: FrameSize::Large,
            ..
        } => (c::seL4_X86_LargePageObject, 0),
        ObjectKind::PageTable => (c::seL4_X86_PageTableObject, 0),
        ObjectKind::PageDirectory => (c::seL4_X86_PageDirectoryObject, 0),
        ObjectKind::Pdpt => (c::seL4_X86_PDPTObject, 0),
        ObjectKind::Pml4 => (c::seL4_X64_PML4Object, 0),
        ObjectKind::CNode { size_bits } => (c::seL4_CapTableObject, Word::from(*size_bits)),
        ObjectKind::Tcb(_) => (c::seL4_TCBObject, 0),
        ObjectKind::Endpoint => (c::seL4_EndpointObject, 0),
        ObjectKind::Notification => (c::seL4_NotificationObject, 0),
        ObjectKind::AsidPool { .. } | ObjectKind::IoApicIrq(_) | ObjectKind::IoPorts { .. } => {
            return None
        }
    })
}

pub fn create_all(
    spec: &SpecReader<'static>,
    slots: &mut Slots,
    memory: &mut Pool,
) -> Result<&'static mut Table, LoadError> {
    let t = table();
    let mut needed = 0u64;
    for (i, object) in spec.objects().enumerate() {
        if i >= MAX_OBJECTS {
            return Err(LoadError::TooManyObjects {
                objects: spec.header().object_count,
                free_slots: MAX_OBJECTS as u64,
            });
        }
        t.names[i] = object.name;
        t.types[i] = Some(object.kind.object_type());
        if let ObjectKind::CNode { size_bits } = object.kind {
            t.radix[i] = size_bits;
        }
        if let Some(bits) = object.kind.size_bits() {
            t.size_bits[i] = bits;
            if object.untyped.is_none() && retype_args(&object.kind).is_some() {
                needed += 1u64 << bits;
            }
        }
        t.how[i] = match &object.kind {
            ObjectKind::Untyped { paddr: Some(_), .. }
            | ObjectKind::Frame { paddr: Some(_), .. } => {
                How::Unsupported("an object at a fixed physical address")
            }
            ObjectKind::AsidPool { .. } => How::Unsupported(
                "an ASID pool object (every VSpace is assigned to the initial pool)",
            ),
            ObjectKind::IoApicIrq(irq) => How::Irq {
                ioapic: irq.ioapic,
                pin: irq.pin,
                level: irq.level,
                polarity: irq.polarity,
            },
            ObjectKind::IoPorts { first, last } => How::Ports {
                first: *first,
                last: *last,
            },
            kind => match retype_args(kind) {
                Some((object_type, size_arg)) => How::Retype {
                    object_type,
                    size_arg: size_arg as u8,
                    parent: object.untyped,
                },
                None => How::Unsupported("this object type"),
            },
        };
        t.order[i] = i as u32;
        t.count = i as u32 + 1;
    }
    let available = memory.available();
    if needed > available {
        return Err(LoadError::OutOfMemory { needed, available });
    }

    // Largest first: each object then starts where the previous one ended.
    let n = t.count as usize;
    let sizes = &t.size_bits;
    t.order[..n].sort_unstable_by_key(|&i| core::cmp::Reverse(sizes[i as usize]));
    // Objects inside an untyped of the spec come after their parent exists.
    for pass in [false, true] {
        for k in 0..n {
            let i = t.order[k];
            let inside = matches!(
                t.how[i as usize],
                How::Retype {
                    parent: Some(_),
                    ..
                }
            );
            if inside == pass {
                create_one(t, i, spec, slots, memory)?;
            }
        }
    }
    Ok(t)
}

fn create_one(
    t: &Table,
    i: u32,
    spec: &SpecReader<'static>,
    slots: &mut Slots,
    memory: &mut Pool,
) -> Result<(), LoadError> {
    let name = t.names[i as usize];
    let dest = slots.object(i);
    match t.how[i as usize] {
        How::Unsupported(what) => return Err(LoadError::Unsupported { object: name, what }),
        How::Irq {
            ioapic,
            pin,
            level,
            polarity,
        } => {
            let number = spec.irqs().find(|r| r.object == i).map(|r| r.irq).ok_or(
                LoadError::Unsupported {
                    object: name,
                    what: "an IRQ handler without an `irq maps` entry",
                },
            )?;
            let trigger = if level != 0 {
                Trigger::Level
            } else {
                Trigger::Edge
            };
            let polarity = if polarity != 0 {
                Polarity::ActiveLow
            } else {
                Polarity::ActiveHigh
            };
            init::IRQ_CONTROL
                .get_ioapic(
                    root(dest),
                    Word::from(ioapic),
                    Word::from(pin),
                    trigger,
                    polarity,
                    Word::from(number),
                )
                .doing("creating the IRQ handler", name)?;
        }
        How::Ports { first, last } => {
            root(dest)
                .mint_data(
                    root(init::IO_PORTS.0),
                    CapRights::ALL,
                    io_port_data(first, last),
                )
                .doing("minting the I/O port range", name)?;
        }
        How::Retype {
            object_type,
            size_arg,
            parent,
        } => {
            let bits = t.size_bits[i as usize];
            let untyped = match parent {
                Some(p) => Untyped(slots.object(p)),
                None => memory.reserve(bits).ok_or(LoadError::NoRoomFor {
                    object: name,
                    bytes: 1 << bits,
                })?,
            };
            untyped
                .retype(
                    object_type,
                    Word::from(size_arg),
                    init::CNODE.itself(),
                    dest,
                    1,
                )
                .doing("creating", name)?;
        }
    }
    Ok(())
}
