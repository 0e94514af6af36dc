//! A validated spec: every name resolved to an object index, every cap in
//! its slot. Positions are gone, so two specs that say the same thing are
//! equal however they were written.

use std::collections::BTreeMap;

use crate::model::{Cap, IrqRecord, ObjectKind, Slot};

/// A whole validated spec (`arch x86_64` is implied: it is the only one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    /// Objects by index; array elements are consecutive.
    pub objects: Vec<Object>,
    /// IRQ numbers, sorted.
    pub irqs: Vec<IrqRecord>,
}

impl Spec {
    /// Bytes of untyped memory the objects no spec untyped covers take, each
    /// rounded to its alignment (its size): what the loader must find in the
    /// kernel's boot untypeds, besides the spec's own untypeds.
    pub fn bytes_from_boot_untypeds(&self) -> u128 {
        self.objects
            .iter()
            .filter(|o| o.untyped.is_none())
            .filter_map(|o| o.kind.size_bits())
            .map(|bits| 1u128 << bits)
            .sum()
    }

    /// How many caps the objects hold.
    pub fn cap_count(&self) -> usize {
        self.objects.iter().map(|o| o.slots.len()).sum()
    }
}

/// One object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Its name (an array's name for each element).
    pub name: String,
    /// Its index in its array, if it is an element of one.
    pub index: Option<u32>,
    /// What it is.
    pub kind: ObjectKind,
    /// The untyped that covers it, if any.
    pub untyped: Option<u32>,
    /// TCBs: the ELF image it runs.
    pub elf: Option<String>,
    /// Frames: what to copy into them.
    pub fills: Vec<Fill>,
    /// The caps it holds.
    pub slots: BTreeMap<Slot, Cap>,
}

impl Object {
    /// `name` or `name[i]`.
    pub fn display_name(&self) -> String {
        match self.index {
            Some(i) => format!("{}[{i}]", self.name),
            None => self.name.clone(),
        }
    }
}

/// Bytes of a file copied into a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    /// Offset in the frame.
    pub dest_offset: u64,
    /// Bytes.
    pub length: u64,
    /// The file.
    pub file: String,
    /// Offset in the file.
    pub file_offset: u64,
}
