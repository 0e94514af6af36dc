//! The virtual TLB: a guest page fault is answered by walking the guest's
//! own page tables (from its virtual CR3) in guest RAM and, if the guest's
//! entries allow the access, mapping the backing RAM frame into the guest's
//! seL4 VSpace with no more rights than they grant. Every seL4 mapping is
//! recorded, so each one can be justified by (and invalidated with) the
//! guest entry it came from.

use capdl::generate::VMM_CNODE_SLOT;
use previrt_sel4::vspace::map_creating_tables;
use previrt_sel4::{CNode, CapRights, Error, Page, Untyped, VSpace, VmAttributes};

use crate::ram::{OutOfRam, Ram};

pub const ADDR: u64 = 0x000f_ffff_ffff_f000;
const PRESENT: u64 = 1;
const WRITABLE: u64 = 2;
const LARGE: u64 = 0x80;

/// Where a guest-virtual page lives in guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub gpa: u64,
    pub writable: bool,
}

/// Why a walk found no translation: the #PF the guest should see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    /// The entry at `level` (4 = PML4 … 1 = PT) is not present.
    NotPresent {
        level: u8,
    },
    /// The guest's tables point outside its RAM.
    OutsideRam(OutOfRam),
    NonCanonical,
}

/// Walks the 4-level tables rooted at `cr3` for `va`.
pub fn walk(ram: &Ram, cr3: u64, va: u64) -> Result<Translation, WalkFault> {
    let top = va >> 47;
    if top != 0 && top != 0x1ffff {
        return Err(WalkFault::NonCanonical);
    }
    let mut table = cr3 & ADDR;
    let mut writable = true;
    for level in (1..=4u8).rev() {
        let shift = 12 + 9 * u32::from(level - 1);
        let entry = ram
            .read_u64(table + ((va >> shift) & 511) * 8)
            .map_err(WalkFault::OutsideRam)?;
        if entry & PRESENT == 0 {
            return Err(WalkFault::NotPresent { level });
        }
        writable &= entry & WRITABLE != 0;
        if level == 1 || (level <= 3 && entry & LARGE != 0) {
            let span = 1u64 << shift;
            let gpa = ((entry & ADDR) & !(span - 1)) + (va & (span - 1) & !0xfff);
            if gpa >= ram.size() {
                return Err(WalkFault::OutsideRam(OutOfRam { gpa, len: 4096 }));
            }
            return Ok(Translation { gpa, writable });
        }
        table = entry & ADDR;
    }
    Err(WalkFault::NotPresent { level: 1 })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The VMM's CNode or mapping table is full.
    NoSlots,
    Kernel(Error),
}

impl From<Error> for MapError {
    fn from(e: Error) -> Self {
        MapError::Kernel(e)
    }
}

const MAX_MAPPINGS: usize = 8192;

/// One guest's seL4 VSpace and the mappings the VMM made in it.
pub struct Vtlb {
    vspace: VSpace,
    untyped: Untyped,
    ram_first_slot: u64,
    next_slot: u64,
    end_slot: u64,
    /// (guest-virtual page, the slot of the frame capability mapped there,
    /// whether it was mapped writable).
    mappings: [(u64, u64, bool); MAX_MAPPINGS],
    pub count: usize,
    pub tables_created: u32,
    /// Frame-capability slots freed by invalidations, for reuse.
    free: [u64; MAX_MAPPINGS],
    free_count: usize,
    pub removed: u64,
}

fn own(slot: u64) -> previrt_sel4::Slot {
    CNode(VMM_CNODE_SLOT).slot(slot)
}

impl Vtlb {
    pub const fn new(
        vspace: VSpace,
        untyped: Untyped,
        ram_first_slot: u64,
        free: (u64, u64),
    ) -> Vtlb {
        Vtlb {
            vspace,
            untyped,
            ram_first_slot,
            next_slot: free.0,
            end_slot: free.1,
            mappings: [(0, 0, false); MAX_MAPPINGS],
            count: 0,
            tables_created: 0,
            free: [0; MAX_MAPPINGS],
            free_count: 0,
            removed: 0,
        }
    }

    /// Points an (empty) table at a guest, in place: a `Vtlb` is too big to
    /// build on the VMM's stack.
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
        self.count = 0;
        self.tables_created = 0;
        self.free_count = 0;
        self.removed = 0;
    }

    fn slot(&mut self) -> Result<u64, MapError> {
        if self.free_count > 0 {
            self.free_count -= 1;
            return Ok(self.free[self.free_count]);
        }
        if self.next_slot >= self.end_slot {
            return Err(MapError::NoSlots);
        }
        self.next_slot += 1;
        Ok(self.next_slot - 1)
    }

    /// Maps the guest-virtual page of `va` to `t`'s frame, as the guest's
    /// page tables say (recorded: invalidations and the consistency check
    /// see it).
    pub fn map(&mut self, va: u64, t: Translation) -> Result<(), MapError> {
        if self.count == MAX_MAPPINGS {
            return Err(MapError::NoSlots);
        }
        let copy = self.map_page(va, t)?;
        self.mappings[self.count] = (va & !0xfff, copy, t.writable);
        self.count += 1;
        Ok(())
    }

    /// Maps a page the guest's page tables know nothing of (the wedge's
    /// region): not recorded, never invalidated.
    pub fn map_fixed(&mut self, va: u64, t: Translation) -> Result<(), MapError> {
        self.map_page(va, t).map(drop)
    }

    /// Removes every recorded mapping (a CR3 load).
    pub fn flush(&mut self) -> Result<(), MapError> {
        while self.count > 0 {
            self.remove(self.count - 1)?;
        }
        Ok(())
    }

    /// Removes the mappings of `va`'s page (invlpg).
    pub fn invalidate(&mut self, va: u64) -> Result<(), MapError> {
        let page = va & !0xfff;
        let mut i = 0;
        while i < self.count {
            if self.mappings[i].0 == page {
                self.remove(i)?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    fn remove(&mut self, i: usize) -> Result<(), MapError> {
        let (_, slot, _) = self.mappings[i];
        // Unmap explicitly: seL4 5.0.0 unmaps a frame on deleting its
        // capability only if that is the last capability to the frame, and
        // the VMM keeps the original of every RAM frame capability.
        Page(slot).unmap()?;
        own(slot).delete()?;
        self.mappings[i] = self.mappings[self.count - 1];
        self.count -= 1;
        self.free[self.free_count] = slot;
        self.free_count += 1;
        self.removed += 1;
        Ok(())
    }

    fn map_page(&mut self, va: u64, t: Translation) -> Result<u64, MapError> {
        let rights = CapRights {
            read: true,
            write: t.writable,
            grant: false,
        };
        // A frame capability maps once: each mapping gets its own copy.
        let copy = self.slot()?;
        own(copy).copy(own(self.ram_first_slot + (t.gpa >> 12)), rights)?;
        let (untyped, vspace) = (self.untyped, self.vspace);
        let mut created = 0;
        let mut next = self.next_slot;
        let end = self.end_slot;
        map_creating_tables(
            Page(copy),
            vspace,
            va & !0xfff,
            rights,
            VmAttributes::DEFAULT,
            &mut |level| {
                if next >= end {
                    return Err(MapError::NoSlots);
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
        )?;
        self.next_slot = next;
        self.tables_created += created;
        Ok(copy)
    }

    /// The mapping-consistency invariant: every mapping the VMM made in the
    /// guest's seL4 VSpace is justified by a present guest page-table entry
    /// for the same frame, granting at least the rights given. Returns how
    /// many mappings were checked, or the first that is not justified.
    pub fn check_consistency(&self, ram: &Ram, cr3: u64) -> Result<usize, Unjustified> {
        for &(va, slot, writable) in &self.mappings[..self.count] {
            let t = walk(ram, cr3, va).map_err(|_| Unjustified {
                va,
                why: "no present guest entry",
            })?;
            let mapped = Page(slot).address().map_err(|_| Unjustified {
                va,
                why: "its frame has no address",
            })?;
            let backing = Page(self.ram_first_slot + (t.gpa >> 12))
                .address()
                .map_err(|_| Unjustified {
                    va,
                    why: "the guest frame has no address",
                })?;
            if mapped != backing {
                return Err(Unjustified {
                    va,
                    why: "mapped to another frame than the guest's entry says",
                });
            }
            if writable && !t.writable {
                return Err(Unjustified {
                    va,
                    why: "writable, but the guest's entry is read-only",
                });
            }
        }
        Ok(self.count)
    }
}

/// A mapping the guest's page tables do not justify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unjustified {
    pub va: u64,
    pub why: &'static str,
}
