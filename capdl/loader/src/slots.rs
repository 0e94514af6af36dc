//! The loader's own CSpace: object i's capability lives in slot `first + i`
//! of the root CNode; slots after the objects are scratch space (capability
//! copies for second mappings and for filling frames).

use previrt_sel4::{init, BootInfo, Slot, Word};

use crate::error::LoadError;

pub struct Slots {
    first: Word,
    objects: u32,
    next_scratch: Word,
    end: Word,
}

impl Slots {
    pub fn new(bootinfo: &BootInfo, objects: u32) -> Result<Slots, LoadError> {
        let (start, end) = (bootinfo.empty.start, bootinfo.empty.end);
        // Room for the objects and at least a few scratch slots.
        if Word::from(objects) + 16 > end - start {
            return Err(LoadError::TooManyObjects {
                objects,
                free_slots: end - start,
            });
        }
        Ok(Slots {
            first: start,
            objects,
            next_scratch: start + Word::from(objects),
            end,
        })
    }

    /// The slot (and capability address) of object `index`.
    pub fn object(&self, index: u32) -> Word {
        debug_assert!(index < self.objects);
        self.first + Word::from(index)
    }

    /// A free scratch slot.
    pub fn scratch(&mut self) -> Result<Word, LoadError> {
        if self.next_scratch >= self.end {
            return Err(LoadError::TooManyObjects {
                objects: self.objects,
                free_slots: self.end - self.first,
            });
        }
        self.next_scratch += 1;
        Ok(self.next_scratch - 1)
    }
}

/// A slot of the root CNode, for invocations that name one.
pub fn root(slot: Word) -> Slot {
    init::CNODE.slot(slot)
}
