//! The vTLB's mappings made real in a guest's seL4 VSpace
//! (`vmm_core::vtlb::Mapper`).
//!
//! A frame capability maps once, so each mapping needs its own copy of the
//! guest frame's capability. Each frame keeps one copy for good (its
//! *primary*), mapped and unmapped as the guest's tables come and go; only
//! a frame mapped at two addresses at once costs a copy that is deleted
//! with the mapping. Paging structures are retyped from the guest's untyped
//! memory as mappings need them, and stay.

use previrt_protocol::vmm_layout::VMM_CNODE_SLOT;
use previrt_sel4::vspace::map_creating_tables;
use previrt_sel4::{CNode, CapRights, Error, Page, Untyped, VSpace, VmAttributes};
use vmm_core::vtlb::{MapError, Mapper};
use vmm_core::walk::Translation;

/// Guest frames with a primary copy (CNode slots fit in 16 bits); frames
/// beyond (RAM over 256 MiB) get a copy per mapping.
const MAX_FRAMES: usize = 1 << 16;
/// Slots freed by unmapping copies, for reuse (at most one per mapping).
const MAX_FREE: usize = vmm_core::vtlb::MAX_MAPPINGS;

/// Why seL4 would not map or unmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sel4MapError {
    /// The VMM's CNode has no free slot left.
    NoSlots,
    Kernel(Error),
}

impl From<Error> for Sel4MapError {
    fn from(e: Error) -> Self {
        Sel4MapError::Kernel(e)
    }
}

/// One guest's VSpace and the capability slots the VMM spends on it.
pub struct Sel4Mapper {
    vspace: VSpace,
    untyped: Untyped,
    ram_first_slot: u64,
    next_slot: u64,
    end_slot: u64,
    /// Per guest frame: the slot of its primary copy (0: none yet).
    primary: [u16; MAX_FRAMES],
    /// Per guest frame: its primary copy is mapped.
    primary_mapped: [u64; MAX_FRAMES / 64],
    /// Frame-capability slots freed by unmapping, for reuse.
    free: [u64; MAX_FREE],
    free_count: usize,
    pub tables_created: u32,
}

fn own(slot: u64) -> previrt_sel4::Slot {
    CNode(VMM_CNODE_SLOT).slot(slot)
}

impl Sel4Mapper {
    pub const fn new() -> Sel4Mapper {
        Sel4Mapper {
            vspace: VSpace(0),
            untyped: Untyped(0),
            ram_first_slot: 0,
            next_slot: 0,
            end_slot: 0,
            primary: [0; MAX_FRAMES],
            primary_mapped: [0; MAX_FRAMES / 64],
            free: [0; MAX_FREE],
            free_count: 0,
            tables_created: 0,
        }
    }

    /// Points the mapper at a guest, in place: its VSpace, the untyped
    /// memory for paging structures, the first of its RAM frames' slots and
    /// the VMM's free slots `[free.0, free.1)`.
    pub fn reset(
        &mut self,
        vspace: VSpace,
        untyped: Untyped,
        ram_first_slot: u64,
        free: (u64, u64),
    ) {
        self.vspace = vspace;
        self.untyped = untyped;
        self.ram_first_slot = ram_first_slot;
        self.next_slot = free.0;
        self.end_slot = free.1;
        self.free_count = 0;
        self.tables_created = 0;
        self.primary.fill(0);
        self.primary_mapped.fill(0);
    }

    fn slot(&mut self) -> Result<u64, Sel4MapError> {
        if self.free_count > 0 {
            self.free_count -= 1;
            return Ok(self.free[self.free_count]);
        }
        if self.next_slot >= self.end_slot {
            return Err(Sel4MapError::NoSlots);
        }
        self.next_slot += 1;
        Ok(self.next_slot - 1)
    }

    /// Gives back an unmapped copy of `gpa`'s frame capability: the frame's
    /// primary is kept for its next mapping, any other copy deleted.
    fn release(&mut self, gpa: u64, slot: u64) -> Result<(), Sel4MapError> {
        let frame = (gpa >> 12) as usize;
        if self
            .primary
            .get(frame)
            .is_some_and(|&p| u64::from(p) == slot)
        {
            self.primary_mapped[frame / 64] &= !(1 << (frame % 64));
        } else {
            own(slot).delete()?;
            if self.free_count < MAX_FREE {
                self.free[self.free_count] = slot;
                self.free_count += 1;
            }
        }
        Ok(())
    }

    /// A capability for `gpa`'s frame that is not mapped anywhere: the
    /// frame's primary copy if it is free, else a new copy.
    fn unmapped_copy(&mut self, gpa: u64) -> Result<u64, Sel4MapError> {
        let frame = (gpa >> 12) as usize;
        let original = own(self.ram_first_slot + (gpa >> 12));
        let all = CapRights {
            read: true,
            write: true,
            grant: false,
        };
        if frame < MAX_FRAMES && self.primary_mapped[frame / 64] & (1 << (frame % 64)) == 0 {
            if self.primary[frame] == 0 {
                let slot = self.slot()?;
                own(slot).copy(original, all)?;
                let Ok(short) = u16::try_from(slot) else {
                    // Beyond 16-bit slots: an ordinary per-mapping copy.
                    return Ok(slot);
                };
                self.primary[frame] = short;
            }
            self.primary_mapped[frame / 64] |= 1 << (frame % 64);
            return Ok(u64::from(self.primary[frame]));
        }
        let slot = self.slot()?;
        own(slot).copy(original, all)?;
        Ok(slot)
    }
}

impl Mapper for Sel4Mapper {
    type Error = Sel4MapError;

    #[inline]
    fn map(&mut self, va: u64, t: Translation) -> Result<u64, MapError<Sel4MapError>> {
        let rights = CapRights {
            read: true,
            write: t.writable,
            grant: false,
        };
        // A frame capability maps once: each mapping needs a copy of its
        // own; the mapping's rights limit what the guest gets.
        let copy = self.unmapped_copy(t.gpa).map_err(full_or)?;
        let (untyped, vspace) = (self.untyped, self.vspace);
        let mut created = 0;
        let mut next = self.next_slot;
        let end = self.end_slot;
        let mapped = map_creating_tables(
            Page(copy),
            vspace,
            va,
            rights,
            VmAttributes::DEFAULT,
            &mut |level| {
                if next >= end {
                    return Err(Sel4MapError::NoSlots);
                }
                untyped.retype(
                    level.object_type(),
                    0,
                    CNode(VMM_CNODE_SLOT).itself(),
                    next,
                    1,
                )?;
                next += 1;
                created += 1;
                Ok(next - 1)
            },
        );
        // Tables made before a failure stay (they are in use by now).
        self.next_slot = next;
        self.tables_created += created;
        match mapped {
            Ok(()) => Ok(copy),
            Err(e) => {
                self.release(t.gpa, copy)?;
                Err(match e {
                    Sel4MapError::Kernel(Error::DeleteFirst) => MapError::Occupied,
                    other => full_or(other),
                })
            }
        }
    }

    fn unmap(&mut self, handle: u64, gpa: u64) -> Result<(), Sel4MapError> {
        // Unmap explicitly: seL4 5.0.0 unmaps a frame on deleting its
        // capability only if that is the last capability to the frame, and
        // the VMM keeps the original of every RAM frame capability.
        Page(handle).unmap()?;
        self.release(gpa, handle)
    }

    fn verify(&self, handle: u64, gpa: u64) -> Result<(), &'static str> {
        let mapped = Page(handle)
            .address()
            .map_err(|_| "its frame has no address")?;
        let backing = Page(self.ram_first_slot + (gpa >> 12))
            .address()
            .map_err(|_| "the guest frame has no address")?;
        if mapped == backing {
            Ok(())
        } else {
            Err("mapped to another frame than the guest's entry says")
        }
    }
}

fn full_or(e: Sel4MapError) -> MapError<Sel4MapError> {
    match e {
        Sel4MapError::NoSlots => MapError::Full,
        other => MapError::Mapper(other),
    }
}
