//! Building a spec in code: the one way previrt's host tools write CapDL.
//! The generator (`capdl generate`) and xtask's test systems both declare
//! objects, caps, fills and IRQs through a [`Builder`], lay out address
//! spaces with a [`VSpace`] and make tasks from ELF images with
//! [`Builder::task`]. What [`Builder::finish`] returns is the same [`Spec`]
//! the validator makes from text, so it prints, encodes and bundles as any
//! other.
//!
//! Mistakes are typed errors ([`BuildError`]) at the call that makes them,
//! never panics: a name used twice, a cap held by or pointing to an object
//! this builder did not make, a slot the holder does not have or that is
//! already filled, two frames mapped at one address. What needs the whole
//! spec (a TCB without its CSpace, a paging structure mapped twice, a cap
//! type a slot does not take) is checked at the end by the validator
//! itself: [`Builder::finish`] prints the spec, parses it back and runs the
//! validator on it, so no rule is written twice.

mod task;
mod vspace;

use std::collections::{BTreeMap, HashSet};

use crate::model::{Cap, IrqRecord, ObjectKind, Rights, Slot};
use crate::objects::{pml4_entry_is_users, FrameSize, PAGING_ENTRIES, SEL4_PML4_ENTRY};
use crate::spec::{Fill, Object, Spec};
use crate::validate::MAX_OBJECTS;

pub use task::{Stack, Task, TaskObjects, Thread, ThreadObjects};
pub use vspace::VSpace;

/// An object of a [`Builder`], by its index in the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(u32);

impl ObjectId {
    /// Its index in the finished [`Spec`]'s objects.
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// The elements of an array `name[len]`, consecutive objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Array {
    first: u32,
    len: u32,
}

impl Array {
    /// Element `k`, if there is one.
    pub fn get(self, k: u32) -> Option<ObjectId> {
        (k < self.len).then_some(ObjectId(self.first + k))
    }

    /// How many elements.
    pub const fn len(self) -> u32 {
        self.len
    }

    /// True for `name[0]`.
    pub const fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The elements in order.
    pub fn iter(self) -> impl Iterator<Item = ObjectId> {
        (self.first..self.first + self.len).map(ObjectId)
    }
}

/// A cap to `target` with `rights` and nothing else (no badge, no guard,
/// cached), as the validator makes a cap whose text gives no other
/// parameter. Change fields with struct update syntax for the rest.
pub fn cap(target: ObjectId, rights: Rights) -> Cap {
    Cap {
        target: target.0,
        rights,
        badge: 0,
        guard: 0,
        guard_size: 0,
        cached: true,
    }
}

/// A CNode cap whose guard makes a 64-bit cap pointer resolve in a CNode of
/// radix `bits` (what a TCB's `cspace` needs, so that slot numbers are cap
/// pointers).
pub fn cspace_cap(cnode: ObjectId, bits: u8) -> Cap {
    Cap {
        guard_size: 64u8.saturating_sub(bits),
        ..cap(cnode, Rights::NONE)
    }
}

/// What is wrong with what a [`Builder`] was asked to build.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A name that is not a CapDL identifier.
    #[error("`{0}` is not a CapDL name (a letter, then letters, digits, `_`, `@`, `.`, `-`; no `--` or `..`)")]
    BadName(String),
    /// A name declared twice.
    #[error("object name `{0}` is used twice")]
    DuplicateName(String),
    /// More objects than a spec may hold.
    #[error("more than {max} objects", max = MAX_OBJECTS)]
    TooManyObjects,
    /// An [`ObjectId`] this builder did not make.
    #[error("object {0} does not exist in this spec")]
    UnknownObject(u32),
    /// A slot the holder does not have.
    #[error("`{holder}` has no slot {slot}: {why}")]
    NoSuchSlot {
        /// The holder's name.
        holder: String,
        /// The slot.
        slot: String,
        /// What slots it has.
        why: String,
    },
    /// A slot given two caps.
    #[error("slot {slot} of `{holder}` is filled twice")]
    SlotFilled {
        /// The holder's name.
        holder: String,
        /// The slot.
        slot: String,
    },
    /// An object of the wrong type for what was asked of it.
    #[error("`{object}` is {is}, not {expected}")]
    WrongType {
        /// Its name.
        object: String,
        /// What it is.
        is: &'static str,
        /// What the call needs.
        expected: &'static str,
    },
    /// A fill that does not fit in its frame.
    #[error("fill of {length:#x} bytes at {offset:#x} does not fit in `{frame}`")]
    FillOutside {
        /// The frame's name.
        frame: String,
        /// Where in the frame.
        offset: u64,
        /// How many bytes.
        length: u64,
    },
    /// An IRQ number given twice, or an IRQ object given two numbers.
    #[error("IRQ {irq}: {why}")]
    Irq {
        /// The number.
        irq: u32,
        /// What is wrong.
        why: String,
    },
    /// A page address that is not page-aligned, not canonical or in seL4's
    /// own PML4 entry.
    #[error("{name}: cannot map a page at {vaddr:#x}: {why}")]
    BadPageAddress {
        /// The VSpace.
        name: String,
        /// The address.
        vaddr: u64,
        /// Why not.
        why: &'static str,
    },
    /// Two frames mapped at one address.
    #[error("{name}: two frames are mapped at {vaddr:#x}")]
    Overlap {
        /// The VSpace.
        name: String,
        /// The address.
        vaddr: u64,
    },
    /// A task's image that does not fit where its layout puts it.
    #[error("image `{image}`: segment {index} at {start:#x}..{end:#x} is outside {first:#x}..{limit:#x}, where task `{task}` may load it")]
    SegmentOutside {
        /// The task.
        task: String,
        /// The image.
        image: String,
        /// Program header index.
        index: usize,
        /// First byte.
        start: u64,
        /// Past the last byte.
        end: u64,
        /// Lowest address allowed.
        first: u64,
        /// Past the highest address allowed.
        limit: u64,
    },
    /// A thread whose start state is out of range (an `init` too long, a
    /// priority above its maximum).
    #[error("thread `{thread}`: {why}")]
    BadThread {
        /// The thread.
        thread: String,
        /// What is wrong.
        why: String,
    },
    /// The finished spec does not validate: what the validator says (its
    /// first errors), with the printed line each is about.
    #[error("the spec does not validate: {0}")]
    Invalid(String),
}

/// A spec under construction. Objects are numbered in the order they are
/// declared, which is the order the loader creates them in (and starts
/// TCBs in).
#[derive(Debug, Default)]
pub struct Builder {
    objects: Vec<Object>,
    names: HashSet<String>,
    /// IRQ number → IRQ object.
    irqs: BTreeMap<u32, u32>,
}

/// Whether the lexer takes `name` as one name.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '.' | '-'))
        && !name.contains("--")
        && !name.contains("..")
}

/// How a slot is written in CapDL, for messages.
fn slot_text(slot: Slot) -> String {
    match slot {
        Slot::CSpace => "cspace".into(),
        Slot::VSpace => "vspace".into(),
        Slot::IpcBuffer => "ipc_buffer_slot".into(),
        Slot::Index(i) => i.to_string(),
    }
}

impl Builder {
    /// An empty spec.
    pub fn new() -> Builder {
        Builder::default()
    }

    fn claim(&mut self, name: &str, count: u64) -> Result<u32, BuildError> {
        if !is_name(name) {
            return Err(BuildError::BadName(name.into()));
        }
        if self.names.contains(name) {
            return Err(BuildError::DuplicateName(name.into()));
        }
        if self.objects.len() as u128 + u128::from(count) > MAX_OBJECTS {
            return Err(BuildError::TooManyObjects);
        }
        self.names.insert(name.into());
        Ok(self.objects.len() as u32)
    }

    fn push(&mut self, name: &str, index: Option<u32>, kind: ObjectKind) {
        self.objects.push(Object {
            name: name.to_string(),
            index,
            kind,
            untyped: None,
            elf: None,
            fills: Vec::new(),
            slots: BTreeMap::new(),
        });
    }

    /// Forgets every object declared since there were `len`: what a
    /// composite call ([`Builder::task`], [`Builder::thread`]) declared
    /// before it failed, so that a failed call declares nothing. Those calls
    /// put caps and fills only in objects they declared themselves.
    fn forget_since(&mut self, len: usize) {
        for o in self.objects.drain(len..) {
            self.names.remove(&o.name);
        }
    }

    /// Declares the object `name`.
    pub fn object(&mut self, name: &str, kind: ObjectKind) -> Result<ObjectId, BuildError> {
        let at = self.claim(name, 1)?;
        self.push(name, None, kind);
        Ok(ObjectId(at))
    }

    /// Declares the array `name[len]`, every element of `kind`.
    pub fn array(&mut self, name: &str, len: u32, kind: ObjectKind) -> Result<Array, BuildError> {
        let first = self.claim(name, u64::from(len))?;
        for i in 0..len {
            self.push(name, Some(i), kind.clone());
        }
        Ok(Array { first, len })
    }

    fn get(&self, id: ObjectId) -> Result<&Object, BuildError> {
        self.objects
            .get(id.0 as usize)
            .ok_or(BuildError::UnknownObject(id.0))
    }

    fn get_mut(&mut self, id: ObjectId) -> Result<&mut Object, BuildError> {
        self.objects
            .get_mut(id.0 as usize)
            .ok_or(BuildError::UnknownObject(id.0))
    }

    /// What `id` is, if this builder made it.
    pub fn kind(&self, id: ObjectId) -> Result<&ObjectKind, BuildError> {
        self.get(id).map(|o| &o.kind)
    }

    /// `name` or `name[i]` of `id`.
    pub fn name(&self, id: ObjectId) -> Result<String, BuildError> {
        self.get(id).map(Object::display_name)
    }

    fn wrong_type(o: &Object, expected: &'static str) -> BuildError {
        BuildError::WrongType {
            object: o.display_name(),
            is: o.kind.object_type().with_article(),
            expected,
        }
    }

    /// Names the ELF image (a bundle file) the TCB `tcb` runs.
    pub fn set_elf(&mut self, tcb: ObjectId, image: &str) -> Result<(), BuildError> {
        if !is_name(image) {
            return Err(BuildError::BadName(image.into()));
        }
        let o = self.get_mut(tcb)?;
        if !matches!(o.kind, ObjectKind::Tcb(_)) {
            return Err(Self::wrong_type(o, "a TCB"));
        }
        o.elf = Some(image.into());
        Ok(())
    }

    /// Copies bytes of a file into `frame` before it is mapped.
    pub fn fill(&mut self, frame: ObjectId, fill: Fill) -> Result<(), BuildError> {
        if !is_name(&fill.file) {
            return Err(BuildError::BadName(fill.file));
        }
        let o = self.get_mut(frame)?;
        let ObjectKind::Frame { size, .. } = o.kind else {
            return Err(Self::wrong_type(o, "a frame"));
        };
        let fits = fill
            .dest_offset
            .checked_add(fill.length)
            .is_some_and(|end| end <= size.bytes());
        if !fits || fill.length == 0 {
            return Err(BuildError::FillOutside {
                frame: o.display_name(),
                offset: fill.dest_offset,
                length: fill.length,
            });
        }
        o.fills.push(fill);
        Ok(())
    }

    /// Puts `cap` in `slot` of `holder`. The slot must be one the holder
    /// has (a TCB's `cspace`, `vspace`, `ipc_buffer_slot`; a CNode's
    /// `0..2^radix`; a paging structure's entries, a PML4's but seL4's
    /// own; an IRQ's 0) and still empty; the cap must point to an object
    /// of this builder.
    pub fn cap(&mut self, holder: ObjectId, slot: Slot, cap: Cap) -> Result<(), BuildError> {
        self.get(ObjectId(cap.target))?;
        let o = self.get_mut(holder)?;
        let index_below = |limit: u64| matches!(slot, Slot::Index(i) if i < limit);
        let (ok, why) = match &o.kind {
            ObjectKind::Tcb(_) => (
                !matches!(slot, Slot::Index(_)),
                "a TCB has cspace, vspace and ipc_buffer_slot".to_string(),
            ),
            ObjectKind::CNode { size_bits } => (
                index_below(1u64 << size_bits),
                format!(
                    "a CNode of radix {size_bits} has slots 0..{}",
                    1u64 << size_bits
                ),
            ),
            ObjectKind::Pml4 => (
                matches!(slot, Slot::Index(i) if pml4_entry_is_users(i)),
                format!(
                    "a PML4 has user entries 0..{PAGING_ENTRIES} but {SEL4_PML4_ENTRY}, seL4's own"
                ),
            ),
            ObjectKind::Pdpt
            | ObjectKind::PageDirectory
            | ObjectKind::PageTable
            | ObjectKind::AsidPool { .. } => (
                index_below(PAGING_ENTRIES),
                format!("it has entries 0..{PAGING_ENTRIES}"),
            ),
            ObjectKind::IoApicIrq(_) => (
                slot == Slot::Index(0),
                "an IRQ has slot 0, its notification".to_string(),
            ),
            other => (
                false,
                format!("{} holds no caps", other.object_type().with_article()),
            ),
        };
        if !ok {
            return Err(BuildError::NoSuchSlot {
                holder: o.display_name(),
                slot: slot_text(slot),
                why,
            });
        }
        if o.slots.contains_key(&slot) {
            return Err(BuildError::SlotFilled {
                holder: o.display_name(),
                slot: slot_text(slot),
            });
        }
        o.slots.insert(slot, cap);
        Ok(())
    }

    /// Gives the IRQ object `object` the ISA IRQ number `irq` (an
    /// `irq maps` entry).
    pub fn irq(&mut self, irq: u32, object: ObjectId) -> Result<(), BuildError> {
        let o = self.get(object)?;
        if !matches!(o.kind, ObjectKind::IoApicIrq(_)) {
            return Err(Self::wrong_type(o, "an IRQ"));
        }
        let why = if self.irqs.contains_key(&irq) {
            "given twice"
        } else if self.irqs.values().any(|&at| at == object.0) {
            "its object already has a number"
        } else {
            self.irqs.insert(irq, object.0);
            return Ok(());
        };
        Err(BuildError::Irq {
            irq,
            why: format!("`{}` {why}", o.display_name()),
        })
    }

    /// The spec, after the validator has accepted it: it is printed, parsed
    /// back and validated, and must come back as built.
    pub fn finish(self) -> Result<Spec, BuildError> {
        let spec = Spec {
            objects: self.objects,
            irqs: self
                .irqs
                .into_iter()
                .map(|(irq, object)| IrqRecord { irq, object })
                .collect(),
        };
        let text = crate::print::print(&spec);
        match crate::check(&text) {
            Ok(back) if back == spec => Ok(spec),
            Ok(_) => Err(BuildError::Invalid(
                "its text does not parse back to the same spec".into(),
            )),
            Err(diagnostics) => {
                let lines: Vec<&str> = text.lines().collect();
                let first: Vec<String> = diagnostics
                    .iter()
                    .take(5)
                    .map(|d| {
                        let line = lines
                            .get((d.pos.line as usize).saturating_sub(1))
                            .map_or("", |l| l.trim());
                        format!("{} (at `{line}`)", d.error)
                    })
                    .collect();
                Err(BuildError::Invalid(first.join("; ")))
            }
        }
    }
}

/// A 4 KiB frame, to be filled or mapped.
pub fn small_frame() -> ObjectKind {
    ObjectKind::Frame {
        size: FrameSize::Small,
        paddr: None,
    }
}

#[cfg(test)]
mod tests;
