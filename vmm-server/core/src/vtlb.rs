//! The virtual TLB's policy: a guest page fault is answered by walking the
//! guest's own page tables (from its virtual CR3) in guest RAM and, if the
//! guest's entries allow the access, mapping the backing RAM frame into the
//! guest's real address space with no more rights than they grant. Every
//! mapping is recorded, so each one can be justified by (and invalidated
//! with) the guest entry it came from.
//!
//! A CR3 load flushes the guest's (non-global) TLB entries. Rather than
//! unmapping everything and taking a fault for every page touched again,
//! [`Vtlb::reload`] walks the new tables for each recorded mapping and keeps
//! exactly those the new tables translate the same way: a TLB may load any
//! translation the current tables allow at any time, so keeping them is
//! indistinguishable from flushing and refilling. A guest that changed an
//! entry and relied on the CR3 load to flush it sees the change.
//!
//! How a mapping is made is not this module's business: a [`Mapper`] does
//! it (on seL4, with frame capabilities and paging objects; in tests, with
//! a model of an address space). This module decides *what* is mapped.

use crate::ram::Ram;
use crate::regions::Regions;
use crate::walk::{finish_walk, upper_levels, walk, Translation, Upper};

/// Makes and removes the real mappings the vTLB decides on.
pub trait Mapper {
    /// Why the mapper could not map or unmap.
    type Error: Copy + core::fmt::Debug;

    /// Maps the guest frame `t.gpa` at guest-virtual page `va` (aligned),
    /// writable only if `t.writable`. Returns a handle naming the mapping,
    /// given back to [`Mapper::unmap`]. [`MapError::Occupied`] if `va` is
    /// mapped already (by a mapping the vTLB does not know of, or made
    /// before the guest changed its tables).
    fn map(&mut self, va: u64, t: Translation) -> Result<u64, MapError<Self::Error>>;

    /// Removes the mapping `handle` of frame `gpa` made by [`Mapper::map`].
    fn unmap(&mut self, handle: u64, gpa: u64) -> Result<(), Self::Error>;

    /// Checks that mapping `handle` maps guest frame `gpa` (for the
    /// consistency check: the mapper's own record of what it mapped).
    fn verify(&self, handle: u64, gpa: u64) -> Result<(), &'static str>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError<E> {
    /// The vTLB's table of mappings, or the mapper's resources, are full.
    Full,
    /// Something is mapped at that page already.
    Occupied,
    /// The mapper failed.
    Mapper(E),
}

impl<E> From<E> for MapError<E> {
    fn from(e: E) -> Self {
        MapError::Mapper(e)
    }
}

/// The most mappings one guest has at once.
pub const MAX_MAPPINGS: usize = 8192;

/// One mapping the VMM made for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Guest-virtual page.
    pub va: u64,
    /// The guest frame it maps.
    pub gpa: u64,
    /// The mapper's handle for it.
    pub handle: u64,
    pub writable: bool,
    /// Its 2 MiB region's index in `Vtlb::regions`.
    region: u16,
}

const NO_MAPPING: Mapping = Mapping {
    va: 0,
    gpa: 0,
    handle: 0,
    writable: false,
    // Meaningful only for live mappings; zero keeps the whole table in
    // .bss (all zero), not in the image's data.
    region: 0,
};

/// One guest's mappings, and the mapper that makes them.
pub struct Vtlb<M> {
    pub mapper: M,
    mappings: [Mapping; MAX_MAPPINGS],
    /// The mappings' 2 MiB regions, for CR3 loads.
    regions: Regions,
    /// Live mappings.
    pub count: usize,
    /// Mappings removed so far.
    pub removed: u64,
}

impl<M> core::fmt::Debug for Vtlb<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vtlb")
            .field("count", &self.count)
            .field("removed", &self.removed)
            .finish_non_exhaustive()
    }
}

impl<M: Mapper> Vtlb<M> {
    pub const fn new(mapper: M) -> Vtlb<M> {
        Vtlb {
            mapper,
            mappings: [NO_MAPPING; MAX_MAPPINGS],
            regions: Regions::new(),
            count: 0,
            removed: 0,
        }
    }

    /// Forgets every mapping, in place (a `Vtlb` is too big to build on the
    /// VMM's stack), for a new guest; the mapper is reset by its owner.
    pub fn clear(&mut self) {
        self.count = 0;
        self.removed = 0;
        self.regions.reset();
    }

    /// The live mappings.
    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings[..self.count]
    }

    /// Maps the guest-virtual page of `va` to `t`'s frame, as the guest's
    /// page tables say (recorded: invalidations and the consistency check
    /// see it); `upper` is the walk's upper levels
    /// ([`crate::walk::Walk::upper`], 0 if unknown).
    #[inline]
    pub fn map(&mut self, va: u64, t: Translation, upper: u64) -> Result<(), MapError<M::Error>> {
        if self.count == MAX_MAPPINGS {
            return Err(MapError::Full);
        }
        let page = va & !0xfff;
        let region = self
            .regions
            .add(page, upper, upper & Upper::LARGE != 0)
            .ok_or(MapError::Full)?;
        let mapped = match self.mapper.map(page, t) {
            // Mapped here already, with rights or a frame the guest's tables
            // have changed since without an invlpg (a write to a page once
            // read-only): hardware re-walks on such a fault and replaces
            // the TLB entry; so does the VMM.
            Err(MapError::Occupied) => self
                .invalidate(page)
                .map_err(MapError::Mapper)
                .and_then(|()| self.mapper.map(page, t)),
            other => other,
        };
        let handle = match mapped {
            Ok(handle) => handle,
            Err(e) => {
                self.regions.remove(region);
                return Err(e);
            }
        };
        self.mappings[self.count] = Mapping {
            va: page,
            gpa: t.gpa,
            handle,
            writable: t.writable,
            region,
        };
        self.count += 1;
        Ok(())
    }

    /// Maps a page the guest's page tables know nothing of (the wedge's
    /// region): not recorded, never invalidated.
    pub fn map_fixed(&mut self, va: u64, t: Translation) -> Result<(), MapError<M::Error>> {
        self.mapper.map(va & !0xfff, t).map(drop)
    }

    /// A CR3 load: keeps the mappings the tables at `cr3` translate the same
    /// way (frame and rights), removes the others. Returns how many it kept.
    pub fn reload(&mut self, ram: &Ram, cr3: u64) -> Result<usize, M::Error> {
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

    /// Removes the mapping of `va`'s page (invlpg).
    pub fn invalidate(&mut self, va: u64) -> Result<(), M::Error> {
        let page = va & !0xfff;
        // A page is mapped at most once, so one mapping at most; the
        // newest first, as a page just mapped is the likeliest to go.
        match self.mappings[..self.count]
            .iter()
            .rposition(|m| m.va == page)
        {
            Some(i) => self.remove(i),
            None => Ok(()),
        }
    }

    fn remove(&mut self, i: usize) -> Result<(), M::Error> {
        let Mapping {
            gpa,
            handle,
            region,
            ..
        } = self.mappings[i];
        self.mapper.unmap(handle, gpa)?;
        self.regions.remove(region);
        self.mappings[i] = self.mappings[self.count - 1];
        self.count -= 1;
        self.removed += 1;
        Ok(())
    }

    /// The mapping-consistency invariant: every mapping the VMM made in the
    /// guest's address space is justified by a present guest page-table
    /// entry for the same frame, granting at least the rights given.
    /// Returns how many mappings were checked, or the first that is not
    /// justified.
    pub fn check_consistency(&self, ram: &Ram, cr3: u64) -> Result<usize, Unjustified> {
        for m in self.mappings() {
            let t = walk(ram, cr3, m.va).map_err(|_| Unjustified {
                va: m.va,
                why: "no present guest entry",
            })?;
            if t.gpa != m.gpa {
                return Err(Unjustified {
                    va: m.va,
                    why: "mapped to another frame than the guest's entry says",
                });
            }
            self.mapper
                .verify(m.handle, t.gpa)
                .map_err(|why| Unjustified { va: m.va, why })?;
            if m.writable && !t.writable {
                return Err(Unjustified {
                    va: m.va,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ram::host::HostRam;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A model of a real address space: what is mapped where, with the
    /// rules a kernel enforces (one mapping per page; unmapping a handle
    /// that is not mapped is an error).
    #[derive(Default)]
    pub(crate) struct ModelSpace {
        /// va → (handle, gpa, writable)
        pub pages: BTreeMap<u64, (u64, u64, bool)>,
        next: u64,
        /// Mappings it may still make (resources), if limited.
        pub budget: Option<usize>,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum ModelError {
        NotMapped(u64),
    }

    impl Mapper for ModelSpace {
        type Error = ModelError;
        fn map(&mut self, va: u64, t: Translation) -> Result<u64, MapError<ModelError>> {
            assert_eq!(va & 0xfff, 0, "the vTLB maps pages");
            if self.pages.contains_key(&va) {
                return Err(MapError::Occupied);
            }
            if let Some(b) = &mut self.budget {
                if *b == 0 {
                    return Err(MapError::Full);
                }
                *b -= 1;
            }
            self.next += 1;
            self.pages.insert(va, (self.next, t.gpa, t.writable));
            Ok(self.next)
        }
        fn unmap(&mut self, handle: u64, gpa: u64) -> Result<(), ModelError> {
            let va = self
                .pages
                .iter()
                .find(|(_, &(h, g, _))| h == handle && g == gpa)
                .map(|(&va, _)| va)
                .ok_or(ModelError::NotMapped(handle))?;
            self.pages.remove(&va);
            Ok(())
        }
        fn verify(&self, handle: u64, gpa: u64) -> Result<(), &'static str> {
            match self.pages.values().find(|(h, ..)| *h == handle) {
                Some(&(_, g, _)) if g == gpa => Ok(()),
                Some(_) => Err("the handle maps another frame"),
                None => Err("the handle maps nothing"),
            }
        }
    }

    /// Guest page tables built in host RAM: a PML4 at `root`, tables
    /// allocated from `next` upwards.
    pub(crate) struct Tables<'a> {
        pub ram: &'a Ram,
        pub root: u64,
        next: u64,
    }

    impl<'a> Tables<'a> {
        pub(crate) fn new(ram: &'a Ram, root: u64) -> Tables<'a> {
            ram.zero(root, 4096).unwrap();
            Tables {
                ram,
                root,
                next: root + 4096,
            }
        }

        fn table(&mut self) -> u64 {
            let t = self.next;
            self.next += 4096;
            self.ram.zero(t, 4096).unwrap();
            t
        }

        /// Maps 4 KiB page `va` to `gpa` (`flags`: bit 1 writable; 0 for
        /// not present), creating tables on the way (present, writable).
        pub(crate) fn set(&mut self, va: u64, gpa: u64, flags: u64) {
            let mut table = self.root;
            for level in (1..4).rev() {
                let index = (va >> (12 + 9 * level)) & 0x1ff;
                let at = table + index * 8;
                let entry = self.ram.read_u64(at).unwrap();
                table = if entry & 1 == 0 {
                    let t = self.table();
                    self.ram.write_u64(at, t | 3).unwrap();
                    t
                } else {
                    entry & crate::walk::ADDR
                };
            }
            let at = table + ((va >> 12) & 0x1ff) * 8;
            self.ram.write_u64(at, gpa | flags).unwrap();
        }
    }

    fn consistent_with_model(vtlb: &Vtlb<ModelSpace>) {
        // The record and the real space agree exactly.
        assert_eq!(vtlb.count, vtlb.mapper.pages.len());
        for m in vtlb.mappings() {
            assert_eq!(
                vtlb.mapper.pages.get(&m.va),
                Some(&(m.handle, m.gpa, m.writable))
            );
        }
    }

    fn boxed() -> Box<Vtlb<ModelSpace>> {
        // A Vtlb is large: build it on the heap.
        let mut v: Box<core::mem::MaybeUninit<Vtlb<ModelSpace>>> = Box::new_uninit();
        v.write(Vtlb::new(ModelSpace::default()));
        // SAFETY: initialised by the write just above.
        unsafe { v.assume_init() }
    }

    const ROOT: u64 = 0x10_0000;
    const VA: u64 = 0x40_0000;

    #[test]
    fn a_mapping_is_recorded_and_justified() {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut tables = Tables::new(&ram, ROOT);
        tables.set(VA, 0x2000, 3);
        let mut vtlb = boxed();
        let t = walk(&ram, ROOT, VA).unwrap();
        vtlb.map(VA + 0x123, t, 0).unwrap();
        assert_eq!(vtlb.count, 1);
        assert_eq!(vtlb.mappings()[0].va, VA);
        assert_eq!(vtlb.check_consistency(&ram, ROOT), Ok(1));
        consistent_with_model(&vtlb);
    }

    #[test]
    fn remapping_an_occupied_page_replaces_the_old_mapping() {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut tables = Tables::new(&ram, ROOT);
        tables.set(VA, 0x2000, 1);
        let mut vtlb = boxed();
        vtlb.map(VA, walk(&ram, ROOT, VA).unwrap(), 0).unwrap();
        // The guest makes it writable without an invlpg, then writes.
        tables.set(VA, 0x2000, 3);
        vtlb.map(VA, walk(&ram, ROOT, VA).unwrap(), 0).unwrap();
        assert_eq!(vtlb.count, 1);
        assert!(vtlb.mappings()[0].writable);
        assert_eq!(vtlb.removed, 1);
        consistent_with_model(&vtlb);
    }

    #[test]
    fn a_cr3_load_keeps_only_what_the_new_tables_justify() {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut tables = Tables::new(&ram, ROOT);
        for i in 0..4 {
            tables.set(VA + i * 4096, 0x2000 + i * 4096, 3);
        }
        let mut vtlb = boxed();
        for i in 0..4 {
            let w = crate::walk::walk_keeping_upper(&ram, ROOT, VA + i * 4096);
            vtlb.map(VA + i * 4096, w.result.unwrap(), w.upper).unwrap();
        }
        // Page 1 now maps elsewhere, page 2 is read-only, page 3 is gone.
        tables.set(VA + 4096, 0x9000, 3);
        tables.set(VA + 2 * 4096, 0x4000, 1);
        tables.set(VA + 3 * 4096, 0, 0);
        assert_eq!(vtlb.reload(&ram, ROOT), Ok(1));
        assert_eq!(vtlb.mappings()[0].va, VA);
        assert_eq!(vtlb.check_consistency(&ram, ROOT), Ok(1));
        consistent_with_model(&vtlb);
    }

    #[test]
    fn a_stale_mapping_is_reported_as_unjustified() {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut tables = Tables::new(&ram, ROOT);
        tables.set(VA, 0x2000, 3);
        let mut vtlb = boxed();
        vtlb.map(VA, walk(&ram, ROOT, VA).unwrap(), 0).unwrap();
        tables.set(VA, 0x2000, 1);
        assert_eq!(
            vtlb.check_consistency(&ram, ROOT).unwrap_err().why,
            "writable, but the guest's entry is read-only"
        );
        tables.set(VA, 0x3000, 3);
        assert_eq!(
            vtlb.check_consistency(&ram, ROOT).unwrap_err().why,
            "mapped to another frame than the guest's entry says"
        );
        tables.set(VA, 0, 0);
        assert_eq!(
            vtlb.check_consistency(&ram, ROOT).unwrap_err().why,
            "no present guest entry"
        );
        // invlpg, as the guest should have done, makes it consistent.
        vtlb.invalidate(VA + 0x800).unwrap();
        assert_eq!(vtlb.check_consistency(&ram, ROOT), Ok(0));
        consistent_with_model(&vtlb);
    }

    #[test]
    fn a_full_mapper_fails_cleanly() {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut tables = Tables::new(&ram, ROOT);
        tables.set(VA, 0x2000, 3);
        tables.set(VA + 4096, 0x3000, 3);
        let mut vtlb = boxed();
        vtlb.mapper.budget = Some(1);
        vtlb.map(VA, walk(&ram, ROOT, VA).unwrap(), 0).unwrap();
        assert_eq!(
            vtlb.map(VA + 4096, walk(&ram, ROOT, VA + 4096).unwrap(), 0),
            Err(MapError::Full)
        );
        assert_eq!(vtlb.count, 1);
        consistent_with_model(&vtlb);
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// The guest sets page `page` to frame `frame` with `flags`.
        Set {
            page: u64,
            frame: u64,
            flags: u64,
        },
        /// The guest touches `page` (a fault the vTLB serves if it can).
        Touch {
            page: u64,
        },
        Invlpg {
            page: u64,
        },
        LoadCr3,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Pages over two 2 MiB regions, so regions' bookkeeping is used.
        let page = (0u64..8).prop_map(|p| VA + (p % 4) * 4096 + (p / 4) * (2 << 20));
        prop_oneof![
            (
                page.clone(),
                0u64..6,
                prop_oneof![Just(0u64), Just(1), Just(3)]
            )
                .prop_map(|(page, frame, flags)| Op::Set {
                    page,
                    frame: 0x20_0000 + frame * 4096,
                    flags
                }),
            page.clone().prop_map(|page| Op::Touch { page }),
            page.prop_map(|page| Op::Invlpg { page }),
            Just(Op::LoadCr3),
        ]
    }

    proptest! {
        /// Whatever the guest does to its tables, the vTLB's record always
        /// equals the real space, and right after every CR3 load every
        /// mapping is justified (x86 lets stale entries live until then).
        #[test]
        fn the_record_matches_the_space_and_cr3_loads_restore_consistency(
            ops in proptest::collection::vec(op(), 1..60)
        ) {
            let host = HostRam::new(4 << 20);
            let ram = host.ram();
            let mut tables = Tables::new(&ram, ROOT);
            let mut vtlb = boxed();
            for op in ops {
                match op {
                    Op::Set { page, frame, flags } => tables.set(page, frame, flags),
                    Op::Touch { page } => {
                        let w = crate::walk::walk_keeping_upper(&ram, ROOT, page);
                        if let Ok(t) = w.result {
                            vtlb.map(page, t, w.upper).unwrap();
                        }
                    }
                    Op::Invlpg { page } => {
                        vtlb.invalidate(page).unwrap();
                        prop_assert!(!vtlb.mapper.pages.contains_key(&page));
                    }
                    Op::LoadCr3 => {
                        vtlb.reload(&ram, ROOT).unwrap();
                        prop_assert_eq!(vtlb.check_consistency(&ram, ROOT), Ok(vtlb.count));
                    }
                }
                consistent_with_model(&vtlb);
            }
        }
    }
}
