//! Objects and caps of a spec under construction, by index, as the
//! validator would build them from text.

use std::collections::{BTreeMap, HashSet};

use crate::model::{Cap, IrqRecord, ObjectKind, Rights, Slot};
use crate::spec::{Fill, Object, Spec};

/// A spec being built. Mistakes of the generator itself (a name or a slot
/// used twice) are recorded, not panicked on, and turn into
/// [`super::GenerateError::Invalid`] at the end.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    objects: Vec<Object>,
    names: HashSet<String>,
    irqs: Vec<IrqRecord>,
    bugs: Vec<String>,
}

/// A cap to `target` with `rights` and nothing else, as the validator
/// builds a cap whose text gives no other parameter.
pub(crate) fn cap(target: u32, rights: Rights) -> Cap {
    Cap {
        target,
        rights,
        badge: 0,
        guard: 0,
        guard_size: 0,
        cached: true,
    }
}

impl Builder {
    fn push(&mut self, name: &str, index: Option<u32>, kind: ObjectKind) -> u32 {
        let at = self.objects.len() as u32;
        self.objects.push(Object {
            name: name.to_string(),
            index,
            kind,
            untyped: None,
            elf: None,
            fills: Vec::new(),
            slots: BTreeMap::new(),
        });
        at
    }

    fn claim(&mut self, name: &str) {
        if !self.names.insert(name.to_string()) {
            self.bugs.push(format!("object name `{name}` used twice"));
        }
    }

    /// Declares one object; returns its index.
    pub(crate) fn object(&mut self, name: &str, kind: ObjectKind) -> u32 {
        self.claim(name);
        self.push(name, None, kind)
    }

    /// Declares `name[len]`; returns the index of `name[0]` (the others
    /// follow it).
    pub(crate) fn array(&mut self, name: &str, len: u32, kind: ObjectKind) -> u32 {
        self.claim(name);
        let first = self.objects.len() as u32;
        for i in 0..len {
            self.push(name, Some(i), kind.clone());
        }
        first
    }

    /// Names the ELF image a TCB runs.
    pub(crate) fn set_elf(&mut self, object: u32, elf: &str) {
        if let Some(o) = self.objects.get_mut(object as usize) {
            o.elf = Some(elf.to_string());
        }
    }

    /// Adds bytes of an image to a frame.
    pub(crate) fn add_fill(&mut self, frame: u32, fill: Fill) {
        if let Some(o) = self.objects.get_mut(frame as usize) {
            o.fills.push(fill);
        }
    }

    /// Puts `cap` in `slot` of `holder`.
    pub(crate) fn cap(&mut self, holder: u32, slot: Slot, cap: Cap) {
        let Some(o) = self.objects.get_mut(holder as usize) else {
            self.bugs
                .push(format!("cap holder {holder} does not exist"));
            return;
        };
        if o.slots.insert(slot, cap).is_some() {
            let name = o.display_name();
            self.bugs
                .push(format!("slot {slot:?} of `{name}` filled twice"));
        }
    }

    /// Gives an IRQ object its number.
    pub(crate) fn irq(&mut self, irq: u32, object: u32) {
        self.irqs.push(IrqRecord { irq, object });
    }

    /// The spec, or what the generator did wrong.
    pub(crate) fn finish(mut self) -> Result<Spec, Vec<String>> {
        if !self.bugs.is_empty() {
            return Err(self.bugs);
        }
        self.irqs.sort_by_key(|r| r.irq);
        Ok(Spec {
            objects: self.objects,
            irqs: self.irqs,
        })
    }
}
