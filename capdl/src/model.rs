//! The serialized spec: what the loader decodes. `no_std`, no allocator.
//!
//! # Layout
//!
//! The bytes are a sequence of postcard values, one after the other:
//!
//! 1. a [`Header`] (magic, format version, and how many records follow of
//!    each kind),
//! 2. `object_count` × [`ObjectRecord`] — object *i* is the *i*-th record;
//!    every other record names objects by this index,
//! 3. `cap_count` × [`CapRecord`], sorted by holder, then slot,
//! 4. `fill_count` × [`FillRecord`], sorted by frame,
//! 5. `irq_count` × [`IrqRecord`], sorted by IRQ number.
//!
//! Records are decoded one at a time, as the loader walks them
//! ([`SpecReader::objects`] and friends), so the number of objects, caps,
//! fills and IRQs is bounded only by the bytes: nothing is collected into a
//! fixed-capacity container. Strings (object names, ELF and file names)
//! borrow from the bytes. The one bounded list is a TCB's `init` arguments:
//! at most [`MAX_INIT_ARGS`] (6, the System V argument registers).
//!
//! [`SpecReader::new`] walks every record once: after it succeeds, every
//! record decodes and every object index in a record is in range, so the
//! iterators cannot fail.

use serde::{Deserialize, Serialize};

pub use crate::objects::{FrameSize, ObjectType, Rights, MAX_INIT_ARGS};

/// The first bytes of every serialized spec.
pub const MAGIC: [u8; 4] = *b"pvCD";
/// Bumped on every change to the records below.
pub const FORMAT_VERSION: u16 = 1;

/// The first value of the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 4],
    /// [`FORMAT_VERSION`].
    pub version: u16,
    /// Number of [`ObjectRecord`]s.
    pub object_count: u32,
    /// Number of [`CapRecord`]s.
    pub cap_count: u32,
    /// Number of [`FillRecord`]s.
    pub fill_count: u32,
    /// Number of [`IrqRecord`]s.
    pub irq_count: u32,
}

/// Initial state of a thread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tcb {
    /// Virtual address of the IPC buffer (`addr:`), 0 if none.
    pub ipc_buffer_addr: u64,
    /// Initial instruction pointer (`ip:`).
    pub ip: u64,
    /// Initial stack pointer (`sp:`).
    pub sp: u64,
    /// Priority (`prio:`).
    pub prio: u8,
    /// Maximum controlled priority (`max_prio:`).
    pub max_prio: u8,
    /// CPU (`affinity:`); previrt's kernel has one.
    pub affinity: u8,
    /// The fault endpoint as a cap pointer in the thread's own CSpace
    /// (`fault_ep:`; seL4 5.0 without MCS looks it up there on each fault).
    pub fault_ep: Option<u64>,
    /// Initial argument registers (`init:`), rdi, rsi, rdx, rcx, r8, r9.
    pub init: heapless::Vec<u64, MAX_INIT_ARGS>,
}

/// An IRQ routed through the IOAPIC (`IRQControl_GetIOAPIC` arguments; the
/// vector comes from the `irq maps` entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoApicIrq {
    /// IOAPIC number (`ioapic_num:`).
    pub ioapic: u32,
    /// Pin on it (`ioapic_pin:`).
    pub pin: u32,
    /// 1 for level-triggered (`ioapic_level:`).
    pub level: u32,
    /// 1 for active-low (`ioapic_polarity:`).
    pub polarity: u32,
}

/// An object and its parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectKind {
    /// Untyped memory of `2^size_bits` bytes, at `paddr` if it must be
    /// device memory at a fixed address.
    Untyped {
        /// log2 of the size.
        size_bits: u8,
        /// Physical address, if fixed.
        paddr: Option<u64>,
    },
    /// A frame.
    Frame {
        /// 4 KiB or 2 MiB.
        size: FrameSize,
        /// Physical address, if fixed (device memory).
        paddr: Option<u64>,
    },
    /// A page table.
    PageTable,
    /// A page directory.
    PageDirectory,
    /// A PDPT.
    Pdpt,
    /// A PML4 (a VSpace root).
    Pml4,
    /// An ASID pool.
    AsidPool {
        /// The high bits of its ASIDs, if fixed.
        asid_high: Option<u64>,
    },
    /// A CNode of `2^size_bits` slots.
    CNode {
        /// The radix.
        size_bits: u8,
    },
    /// A thread.
    Tcb(Tcb),
    /// An endpoint.
    Endpoint,
    /// A notification.
    Notification,
    /// An IOAPIC IRQ.
    IoApicIrq(IoApicIrq),
    /// The I/O ports `first..=last`.
    IoPorts {
        /// First port.
        first: u16,
        /// Last port (inclusive).
        last: u16,
    },
}

impl ObjectKind {
    /// The type without parameters.
    pub const fn object_type(&self) -> ObjectType {
        match self {
            ObjectKind::Untyped { .. } => ObjectType::Untyped,
            ObjectKind::Frame { .. } => ObjectType::Frame,
            ObjectKind::PageTable => ObjectType::PageTable,
            ObjectKind::PageDirectory => ObjectType::PageDirectory,
            ObjectKind::Pdpt => ObjectType::Pdpt,
            ObjectKind::Pml4 => ObjectType::Pml4,
            ObjectKind::AsidPool { .. } => ObjectType::AsidPool,
            ObjectKind::CNode { .. } => ObjectType::CNode,
            ObjectKind::Tcb(_) => ObjectType::Tcb,
            ObjectKind::Endpoint => ObjectType::Endpoint,
            ObjectKind::Notification => ObjectType::Notification,
            ObjectKind::IoApicIrq(_) => ObjectType::IoApicIrq,
            ObjectKind::IoPorts { .. } => ObjectType::IoPorts,
        }
    }

    /// log2 of the untyped memory the object takes, `None` if it takes none.
    pub const fn size_bits(&self) -> Option<u8> {
        let (size_bits, frame) = match self {
            ObjectKind::Untyped { size_bits, .. } | ObjectKind::CNode { size_bits } => {
                (*size_bits, FrameSize::Small)
            }
            ObjectKind::Frame { size, .. } => (0, *size),
            _ => (0, FrameSize::Small),
        };
        crate::objects::object_size_bits(self.object_type(), size_bits, frame)
    }
}

/// Where a cap sits in the object that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Slot {
    /// A TCB's CSpace root (`cspace`).
    CSpace,
    /// A TCB's VSpace root (`vspace`).
    VSpace,
    /// A TCB's IPC buffer frame (`ipc_buffer_slot`).
    IpcBuffer,
    /// A numbered slot: a CNode slot, a paging-structure entry, an ASID
    /// pool entry, or slot 0 of an IRQ (its notification).
    Index(u64),
}

/// A capability, without where it sits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cap {
    /// Index of the object it points to.
    pub target: u32,
    /// Rights (endpoint, notification and frame caps; others: none given).
    pub rights: Rights,
    /// Badge (endpoint and notification caps; 0 is no badge).
    pub badge: u64,
    /// CNode caps: the guard.
    pub guard: u64,
    /// CNode caps: the guard's size in bits.
    pub guard_size: u8,
    /// Frame caps: mapped uncached if false.
    pub cached: bool,
}

/// An object, as serialized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord<'a> {
    /// Its name (an array element shares its array's name).
    pub name: &'a str,
    /// Its index, if it is an element of an array.
    pub index: Option<u32>,
    /// What it is.
    pub kind: ObjectKind,
    /// The untyped it is made from, if the spec says; otherwise the loader
    /// takes it from any boot untyped.
    pub untyped: Option<u32>,
    /// TCBs: the ELF image it runs, if the spec names one.
    pub elf: Option<&'a str>,
}

/// A cap in a slot of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapRecord {
    /// Index of the object that holds the cap.
    pub holder: u32,
    /// Where in it.
    pub slot: Slot,
    /// The cap.
    pub cap: Cap,
}

/// Bytes of a file to copy into a frame before it is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillRecord<'a> {
    /// Index of the frame.
    pub frame: u32,
    /// Where in the frame the bytes go.
    pub dest_offset: u64,
    /// How many bytes.
    pub length: u64,
    /// Which file (an image the loader carries, by name).
    pub file: &'a str,
    /// Where in the file the bytes come from.
    pub file_offset: u64,
}

/// An IRQ number and its IRQ object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IrqRecord {
    /// The IRQ number (the loader asks for vector `IRQ_INT_OFFSET + irq`).
    pub irq: u32,
    /// Index of the IRQ object.
    pub object: u32,
}

/// Why bytes are not a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// A record did not decode.
    Decode {
        /// Byte offset of the record.
        offset: usize,
    },
    /// The bytes do not start with [`MAGIC`].
    BadMagic,
    /// A format version this reader does not know.
    UnsupportedVersion(u16),
    /// A record names an object index past the last object.
    BadObjectIndex {
        /// Byte offset of the record.
        offset: usize,
        /// The index.
        index: u32,
    },
    /// Bytes are left after the last record.
    TrailingBytes {
        /// Byte offset of the first extra byte.
        offset: usize,
    },
}

impl core::fmt::Display for ModelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ModelError::Decode { offset } => write!(f, "record at byte {offset} does not decode"),
            ModelError::BadMagic => f.write_str("not a serialized previrt CapDL spec"),
            ModelError::UnsupportedVersion(v) => {
                write!(f, "format version {v}, this reader knows {FORMAT_VERSION}")
            }
            ModelError::BadObjectIndex { offset, index } => {
                write!(
                    f,
                    "record at byte {offset} names object {index}, which does not exist"
                )
            }
            ModelError::TrailingBytes { offset } => {
                write!(
                    f,
                    "{offset} bytes of records, then bytes that belong to none"
                )
            }
        }
    }
}

/// Reads a serialized spec in place.
#[derive(Clone, Copy, Debug)]
pub struct SpecReader<'a> {
    header: Header,
    objects: &'a [u8],
    caps: &'a [u8],
    fills: &'a [u8],
    irqs: &'a [u8],
}

/// Decodes `count` records of `T` from the front of `bytes`, checks each,
/// and returns the remaining bytes.
fn walk<'a, T: Deserialize<'a>>(
    all: &'a [u8],
    mut bytes: &'a [u8],
    count: u32,
    mut check: impl FnMut(&T, usize) -> Result<(), ModelError>,
) -> Result<&'a [u8], ModelError> {
    for _ in 0..count {
        let offset = all.len() - bytes.len();
        let (record, rest) =
            postcard::take_from_bytes::<T>(bytes).map_err(|_| ModelError::Decode { offset })?;
        check(&record, offset)?;
        bytes = rest;
    }
    Ok(bytes)
}

impl<'a> SpecReader<'a> {
    /// Checks every record of `bytes` and returns a reader over them.
    pub fn new(bytes: &'a [u8]) -> Result<SpecReader<'a>, ModelError> {
        let (header, rest) = postcard::take_from_bytes::<Header>(bytes)
            .map_err(|_| ModelError::Decode { offset: 0 })?;
        if header.magic != MAGIC {
            return Err(ModelError::BadMagic);
        }
        if header.version != FORMAT_VERSION {
            return Err(ModelError::UnsupportedVersion(header.version));
        }
        let count = header.object_count;
        let index_ok = |index: u32, offset: usize| {
            if index < count {
                Ok(())
            } else {
                Err(ModelError::BadObjectIndex { offset, index })
            }
        };
        let objects = rest;
        let rest = walk::<ObjectRecord<'a>>(bytes, rest, count, |r, offset| {
            r.untyped.map_or(Ok(()), |u| index_ok(u, offset))
        })?;
        let caps = rest;
        let rest = walk::<CapRecord>(bytes, rest, header.cap_count, |r, offset| {
            index_ok(r.holder, offset)?;
            index_ok(r.cap.target, offset)
        })?;
        let fills = rest;
        let rest = walk::<FillRecord<'a>>(bytes, rest, header.fill_count, |r, offset| {
            index_ok(r.frame, offset)
        })?;
        let irqs = rest;
        let rest = walk::<IrqRecord>(bytes, rest, header.irq_count, |r, offset| {
            index_ok(r.object, offset)
        })?;
        if !rest.is_empty() {
            return Err(ModelError::TrailingBytes {
                offset: bytes.len() - rest.len(),
            });
        }
        Ok(SpecReader {
            header,
            objects,
            caps,
            fills,
            irqs,
        })
    }

    /// The header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The objects, in index order.
    pub fn objects(&self) -> Records<'a, ObjectRecord<'a>> {
        Records::new(self.objects, self.header.object_count)
    }

    /// The caps, by holder, then slot.
    pub fn caps(&self) -> Records<'a, CapRecord> {
        Records::new(self.caps, self.header.cap_count)
    }

    /// The frame fills, by frame.
    pub fn fills(&self) -> Records<'a, FillRecord<'a>> {
        Records::new(self.fills, self.header.fill_count)
    }

    /// The IRQ numbers, in order.
    pub fn irqs(&self) -> Records<'a, IrqRecord> {
        Records::new(self.irqs, self.header.irq_count)
    }

    /// Object `index` (a walk over the objects before it).
    pub fn object(&self, index: u32) -> Option<ObjectRecord<'a>> {
        self.objects().nth(usize::try_from(index).ok()?)
    }
}

/// An iterator that decodes records one at a time.
#[derive(Clone, Debug)]
pub struct Records<'a, T> {
    bytes: &'a [u8],
    left: u32,
    _record: core::marker::PhantomData<T>,
}

impl<'a, T> Records<'a, T> {
    fn new(bytes: &'a [u8], left: u32) -> Self {
        Records {
            bytes,
            left,
            _record: core::marker::PhantomData,
        }
    }
}

impl<'a, T: Deserialize<'a>> Iterator for Records<'a, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            return None;
        }
        // `SpecReader::new` decoded these same bytes, so this succeeds.
        let (record, rest) = postcard::take_from_bytes::<T>(self.bytes).ok()?;
        self.bytes = rest;
        self.left -= 1;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.left).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}
