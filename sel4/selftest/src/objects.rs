//! Kernel objects for the tests: a slot allocator over the root CNode's empty
//! region, objects retyped from the boot untypeds, and frames mapped into the
//! root VSpace with the paging structures they need.

use previrt_sel4::sys::constants as c;
use previrt_sel4::vspace::map_creating_tables;
use previrt_sel4::{
    init, BootInfo, CapRights, Endpoint, Error, Notification, Page, Slot, Tcb, Untyped,
    VmAttributes, Word,
};

pub struct Objects<'a> {
    bootinfo: &'a BootInfo,
    next_slot: Word,
    end_slot: Word,
    /// Index into the untyped list of the one retyped from last.
    current: usize,
}

impl<'a> Objects<'a> {
    pub fn new(bootinfo: &'a BootInfo) -> Self {
        Objects {
            bootinfo,
            next_slot: bootinfo.empty.start,
            end_slot: bootinfo.empty.end,
            current: 0,
        }
    }

    /// An empty slot of the root CNode.
    pub fn slot(&mut self) -> Result<Word, Error> {
        if self.next_slot >= self.end_slot {
            return Err(Error::NotEnoughMemory);
        }
        self.next_slot += 1;
        Ok(self.next_slot - 1)
    }

    /// Retypes one object of `object_type` from the first RAM untyped that
    /// still has room, and returns its slot.
    pub fn create(&mut self, object_type: Word, size_bits: Word) -> Result<Word, Error> {
        let slot = self.slot()?;
        let untypeds = self.bootinfo.untypeds();
        while self.current < untypeds.len() {
            let desc = untypeds[self.current];
            if desc.is_device == 0 {
                let untyped = Untyped(self.bootinfo.untyped.start + self.current as Word);
                match untyped.retype(object_type, size_bits, init::CNODE.itself(), slot, 1) {
                    Ok(()) => return Ok(slot),
                    Err(Error::NotEnoughMemory) => {}
                    Err(e) => return Err(e),
                }
            }
            self.current += 1;
        }
        Err(Error::NotEnoughMemory)
    }

    pub fn frame(&mut self) -> Result<Page, Error> {
        self.create(c::seL4_X86_4K, 0).map(Page)
    }

    pub fn endpoint(&mut self) -> Result<Endpoint, Error> {
        self.create(c::seL4_EndpointObject, 0).map(Endpoint)
    }

    pub fn notification(&mut self) -> Result<Notification, Error> {
        self.create(c::seL4_NotificationObject, 0).map(Notification)
    }

    pub fn tcb(&mut self) -> Result<Tcb, Error> {
        self.create(c::seL4_TCBObject, 0).map(Tcb)
    }

    /// Copies the capability in `src` to a new slot with `rights` and `badge`.
    pub fn mint(&mut self, src: Word, rights: CapRights, badge: Word) -> Result<Word, Error> {
        let dest = self.slot()?;
        init::CNODE
            .slot(dest)
            .mint(init::CNODE.slot(src), rights, badge)?;
        Ok(dest)
    }

    /// Maps `page` at `vaddr` in the root VSpace, creating the page table,
    /// page directory and PDPT that are missing.
    pub fn map(&mut self, page: Page, vaddr: Word, rights: CapRights) -> Result<(), Error> {
        map_creating_tables(
            page,
            init::VSPACE,
            vaddr,
            rights,
            VmAttributes::DEFAULT,
            &mut |level| self.create(level.object_type(), 0),
        )
    }
}

/// Slot of a capability, for invocations that name slots.
pub fn slot(cptr: Word) -> Slot {
    init::CNODE.slot(cptr)
}
