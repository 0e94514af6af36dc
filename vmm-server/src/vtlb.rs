//! The virtual TLB: a guest page fault is answered by walking the guest's
//! own page tables (from its virtual CR3) in guest RAM and, if the guest's
//! entries allow the access, mapping the backing RAM frame into the guest's
//! seL4 VSpace with no more rights than they grant. Every seL4 mapping is
//! recorded, so each one can be justified by (and invalidated with) the
//! guest entry it came from.
//!
//! A CR3 load flushes the guest's (non-global) TLB entries. Rather than
//! unmapping everything and taking a fault for every page touched again,
//! [`Vtlb::reload`] walks the new tables for each recorded mapping and keeps
//! exactly those the new tables translate the same way: a TLB may load any
//! translation the current tables allow at any time, so keeping them is
//! indistinguishable from flushing and refilling. A guest that changed an
//! entry and relied on the CR3 load to flush it sees the change.
//!
//! A frame capability maps once, so each mapping needs its own copy of the
//! guest frame's capability. Each frame keeps one copy for good (its
//! *primary*), mapped and unmapped as the guest's tables come and go; only
//! a frame mapped at two addresses at once costs a copy that is deleted
//! with the mapping.

use previrt_protocol::vmm_layout::VMM_CNODE_SLOT;
use previrt_sel4::vspace::map_creating_tables;
use previrt_sel4::{CNode, CapRights, Error, Page, Untyped, VSpace, VmAttributes};

use vmm_core::ram::Ram;
use vmm_core::regions::Regions;
use vmm_core::walk::{finish_walk, upper_levels, walk, Upper};
pub use vmm_core::walk::{walk_keeping_upper, Translation, ADDR};

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
/// Guest frames with a primary copy (CNode slots fit in 16 bits); frames
/// beyond (RAM over 256 MiB) get a copy per mapping.
const MAX_FRAMES: usize = 1 << 16;

/// One seL4 mapping the VMM made for the guest.
#[derive(Clone, Copy)]
struct Mapping {
    /// Guest-virtual page.
    va: u64,
    /// The guest frame it maps.
    gpa: u64,
    /// The slot of the frame capability mapped there.
    slot: u64,
    writable: bool,
    /// Its 2 MiB region's index in `Vtlb::regions`.
    region: u16,
}

const NO_MAPPING: Mapping = Mapping {
    va: 0,
    gpa: 0,
    slot: 0,
    writable: false,
    // Meaningful only for live mappings; zero keeps the whole table in
    // .bss (all zero), not in the image's data.
    region: 0,
};

/// One guest's seL4 VSpace and the mappings the VMM made in it.
pub struct Vtlb {
    vspace: VSpace,
    untyped: Untyped,
    ram_first_slot: u64,
    next_slot: u64,
    end_slot: u64,
    mappings: [Mapping; MAX_MAPPINGS],
    /// The mappings' 2 MiB regions, for CR3 loads.
    regions: Regions,
    /// Per guest frame: the slot of its primary copy (0: none yet).
    primary: [u16; MAX_FRAMES],
    /// Per guest frame: its primary copy is mapped.
    primary_mapped: [u64; MAX_FRAMES / 64],
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
            mappings: [NO_MAPPING; MAX_MAPPINGS],
            regions: Regions::new(),
            primary: [0; MAX_FRAMES],
            primary_mapped: [0; MAX_FRAMES / 64],
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
        self.primary.fill(0);
        self.primary_mapped.fill(0);
        self.regions.reset();
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
    /// see it); `upper` is the walk's upper levels ([`vmm_core::walk::Walk::upper`], 0 if
    /// unknown).
    pub fn map(&mut self, va: u64, t: Translation, upper: u64) -> Result<(), MapError> {
        if self.count == MAX_MAPPINGS {
            return Err(MapError::NoSlots);
        }
        let region = self
            .regions
            .add(va, upper, upper & Upper::LARGE != 0)
            .ok_or(MapError::NoSlots)?;
        let mapped = match self.map_page(va, t) {
            // Mapped here already, with rights or a frame the guest's tables
            // have changed since without an invlpg (a write to a page once
            // read-only): hardware re-walks on such a fault and replaces
            // the TLB entry; so does the VMM.
            Err(MapError::Kernel(Error::DeleteFirst)) => {
                self.invalidate(va).and_then(|()| self.map_page(va, t))
            }
            other => other,
        };
        let slot = match mapped {
            Ok(slot) => slot,
            Err(e) => {
                self.regions.remove(region);
                return Err(e);
            }
        };
        self.mappings[self.count] = Mapping {
            va: va & !0xfff,
            gpa: t.gpa,
            slot,
            writable: t.writable,
            region,
        };
        self.count += 1;
        Ok(())
    }

    /// Maps a page the guest's page tables know nothing of (the wedge's
    /// region): not recorded, never invalidated.
    pub fn map_fixed(&mut self, va: u64, t: Translation) -> Result<(), MapError> {
        self.map_page(va, t).map(drop)
    }

    /// A CR3 load: keeps the mappings the tables at `cr3` translate the same
    /// way (frame and rights), removes the others. Returns how many it kept.
    pub fn reload(&mut self, ram: &Ram, cr3: u64) -> Result<usize, MapError> {
        // The upper levels of each 2 MiB region are read once per reload
        // (the tables cannot change meanwhile: the guest waits for the VMM).
        // A region whose mappings all came from one large page that the new
        // tables still map the same way keeps them all after one walk.
        if self
            .regions
            .judge(|va| Upper::pack(upper_levels(ram, cr3, va)))
        {
            self.regions.settle(|packed| packed & Upper::LARGE != 0);
            return Ok(self.count);
        }
        let mut i = 0;
        while i < self.count {
            let Mapping {
                va,
                gpa,
                writable,
                region,
                ..
            } = self.mappings[i];
            if self.regions.keeps(region) {
                i += 1;
                continue;
            }
            let upper = Upper::unpack(self.regions.new_upper(region));
            if finish_walk(ram, upper, va).is_ok_and(|t| t.gpa == gpa && t.writable == writable) {
                i += 1;
            } else {
                self.remove(i)?;
            }
        }
        self.regions.settle(|packed| packed & Upper::LARGE != 0);
        Ok(self.count)
    }

    /// Removes the mappings of `va`'s page (invlpg).
    pub fn invalidate(&mut self, va: u64) -> Result<(), MapError> {
        let page = va & !0xfff;
        // A VSpace maps a page at most once, so one mapping at most; the
        // newest first, as a page just mapped is the likeliest to go.
        match self.mappings[..self.count]
            .iter()
            .rposition(|m| m.va == page)
        {
            Some(i) => self.remove(i),
            None => Ok(()),
        }
    }

    fn remove(&mut self, i: usize) -> Result<(), MapError> {
        let Mapping {
            gpa, slot, region, ..
        } = self.mappings[i];
        self.regions.remove(region);
        // Unmap explicitly: seL4 5.0.0 unmaps a frame on deleting its
        // capability only if that is the last capability to the frame, and
        // the VMM keeps the original of every RAM frame capability.
        Page(slot).unmap()?;
        self.release(gpa, slot)?;
        self.mappings[i] = self.mappings[self.count - 1];
        self.count -= 1;
        self.removed += 1;
        Ok(())
    }

    /// Gives back an unmapped copy of `gpa`'s frame capability: the frame's
    /// primary is kept for its next mapping, any other copy deleted.
    fn release(&mut self, gpa: u64, slot: u64) -> Result<(), MapError> {
        let frame = (gpa >> 12) as usize;
        if self
            .primary
            .get(frame)
            .is_some_and(|&p| u64::from(p) == slot)
        {
            self.primary_mapped[frame / 64] &= !(1 << (frame % 64));
        } else {
            own(slot).delete()?;
            self.free[self.free_count] = slot;
            self.free_count += 1;
        }
        Ok(())
    }

    /// A capability for `gpa`'s frame that is not mapped anywhere: the
    /// frame's primary copy if it is free, else a new copy.
    fn unmapped_copy(&mut self, gpa: u64) -> Result<u64, MapError> {
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
                let Ok(short) = u16::try_from(slot) else {
                    // Beyond 16-bit slots: an ordinary per-mapping copy.
                    own(slot).copy(original, all)?;
                    return Ok(slot);
                };
                own(slot).copy(original, all)?;
                self.primary[frame] = short;
            }
            self.primary_mapped[frame / 64] |= 1 << (frame % 64);
            return Ok(u64::from(self.primary[frame]));
        }
        let slot = self.slot()?;
        own(slot).copy(original, all)?;
        Ok(slot)
    }

    fn map_page(&mut self, va: u64, t: Translation) -> Result<u64, MapError> {
        let rights = CapRights {
            read: true,
            write: t.writable,
            grant: false,
        };
        // A frame capability maps once: each mapping needs a copy of its
        // own; the mapping's rights limit what the guest gets.
        let copy = self.unmapped_copy(t.gpa)?;
        let (untyped, vspace) = (self.untyped, self.vspace);
        let mut created = 0;
        let mut next = self.next_slot;
        let end = self.end_slot;
        let mapped = map_creating_tables(
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
        );
        // Tables made before a failure stay (they are in use by now).
        self.next_slot = next;
        self.tables_created += created;
        match mapped {
            Ok(()) => Ok(copy),
            Err(e) => {
                self.release(t.gpa, copy)?;
                Err(e)
            }
        }
    }

    /// The mapping-consistency invariant: every mapping the VMM made in the
    /// guest's seL4 VSpace is justified by a present guest page-table entry
    /// for the same frame, granting at least the rights given. Returns how
    /// many mappings were checked, or the first that is not justified.
    pub fn check_consistency(&self, ram: &Ram, cr3: u64) -> Result<usize, Unjustified> {
        for &Mapping {
            va, slot, writable, ..
        } in &self.mappings[..self.count]
        {
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
