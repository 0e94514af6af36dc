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
//! That is the default strategy, `keep`; the others ([`VtlbStrategy`],
//! docs/vtlb.md) flush on every CR3 load, prefetch a fault's neighbours, or
//! write-protect the guest's page tables. In checking mode the vTLB verifies
//! the invariant at every invalidation point (CR3 load, invlpg, trapped
//! page-table write) and records the first [`Violation`].
//!
//! How a mapping is made is not this module's business: a [`Mapper`] does
//! it (on seL4, with frame capabilities and paging objects; in tests, with
//! a model of an address space). This module decides *what* is mapped.

pub use previrt_protocol::VtlbStrategy;

use crate::ram::Ram;
use crate::regions::Regions;
use crate::walk::{
    finish_walk, upper_levels, walk, Translation, Upper, WalkFault, ACCESSED, ADDR, DIRTY,
};

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
    /// The guest-physical address of the last-level page table it was
    /// made from (0: a large page, or not known).
    pub table: u64,
    /// Its 2 MiB region's index in `Vtlb::regions`.
    region: u16,
}

const NO_MAPPING: Mapping = Mapping {
    va: 0,
    gpa: 0,
    handle: 0,
    writable: false,
    table: 0,
    // Meaningful only for live mappings; zero keeps the whole table in
    // .bss (all zero), not in the image's data.
    region: 0,
};

/// Guest frames the write-protect strategy can track as page tables (1 GiB
/// of guest RAM); a table beyond is never protected, so the strategy reads
/// its entries on a CR3 load as `keep` does.
const TRACKED_FRAMES: usize = 1 << 18;

/// The size of a prefetch block, in pages (aligned).
pub const PREFETCH_PAGES: u64 = 8;

/// Where the invariant was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidationPoint {
    /// A CR3 load of this value: every mapping must be justified by the
    /// tables it names (x86 flushes every non-global translation).
    Cr3Load(u64),
    /// An invlpg of this address: its page's mapping, if any, must be
    /// justified now.
    Invlpg(u64),
    /// A trapped write to the page table at this guest-physical address:
    /// every mapping made from it must be justified up to the write.
    TableWrite(u64),
}

/// A mapping the guest's page tables did not justify at an invalidation
/// point, and what the guest's tables said instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    pub at: InvalidationPoint,
    /// The mapping.
    pub va: u64,
    pub gpa: u64,
    pub writable: bool,
    /// What the guest's tables translate `va` to.
    pub guest: Result<Translation, WalkFault>,
}

impl core::fmt::Display for Violation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.at {
            InvalidationPoint::Cr3Load(cr3) => write!(f, "at a CR3 load of {cr3:#x}")?,
            InvalidationPoint::Invlpg(va) => write!(f, "at an invlpg of {va:#x}")?,
            InvalidationPoint::TableWrite(gpa) => {
                write!(f, "at a write to the page table at {gpa:#x}")?
            }
        }
        write!(
            f,
            ": {:#x} is mapped to guest frame {:#x} {}, but the guest's tables ",
            self.va,
            self.gpa,
            if self.writable {
                "writable"
            } else {
                "read-only"
            }
        )?;
        match self.guest {
            Ok(t) => write!(
                f,
                "map it to {:#x} {}",
                t.gpa,
                if t.writable { "writable" } else { "read-only" }
            ),
            Err(WalkFault::NotPresent { level }) => {
                write!(f, "have no present entry for it (level {level})")
            }
            Err(WalkFault::OutsideRam(_)) => f.write_str("lead outside guest RAM"),
            Err(WalkFault::NonCanonical) => f.write_str("cannot map it (non-canonical)"),
        }
    }
}

/// What a fault changed in the write-protect strategy's protection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protection {
    /// A write to this protected page table was trapped: it is no longer
    /// protected, and the mappings made from it went.
    pub written: Option<u64>,
    /// This page table is protected from now on.
    pub protected: Option<u64>,
}

/// What the vTLB counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtlbStats {
    /// Mappings made (prefetched ones included).
    pub maps: u64,
    /// Of those, made ahead of a fault.
    pub prefetched: u64,
    /// The most mappings live at once.
    pub peak: usize,
    /// Trapped writes to write-protected page tables.
    pub table_writes: u64,
    /// Invalidation points checked, and mappings found unjustified there.
    pub checks: u64,
    pub violations: u64,
    pub first_violation: Option<Violation>,
}

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
    pub strategy: VtlbStrategy,
    /// Check the invariant at every invalidation point.
    pub check: bool,
    pub stats: VtlbStats,
    /// Guest frames no strategy may map writable ahead of a fault (the
    /// wedge's memory): `[start, end)`.
    reserved: (u64, u64),
    /// Write-protect: the guest frames protected as last-level tables.
    protected: [u64; TRACKED_FRAMES / 64],
    /// A user view's vTLB (docs/guest-processes.md): a mapping is
    /// justified only by a translation user mode may use (U=1 at every
    /// level).
    pub user_only: bool,
}

impl<M> core::fmt::Debug for Vtlb<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vtlb")
            .field("count", &self.count)
            .field("removed", &self.removed)
            .finish_non_exhaustive()
    }
}

#[cfg(any(test, feature = "replay"))]
impl<M> Vtlb<M> {
    /// A `Vtlb` built in place on the heap (it is too large for a host
    /// thread's stack, where `Vtlb::new` would build it first).
    // Host only, built with the pinned toolchain (rust-toolchain.toml),
    // which has `Box::new_zeroed`.
    #[allow(clippy::incompatible_msrv)]
    pub fn boxed(mapper: M) -> Box<Vtlb<M>> {
        let mut v: Box<core::mem::MaybeUninit<Vtlb<M>>> = Box::new_zeroed();
        let p = v.as_mut_ptr();
        // SAFETY: `p` points to the box's memory, zeroed: every field but
        // these three is integers, bools and arrays of them, for which zero
        // is valid (and what `Vtlb::new` gives them); these three are
        // written before the box is read.
        unsafe {
            core::ptr::addr_of_mut!((*p).mapper).write(mapper);
            core::ptr::addr_of_mut!((*p).stats).write(VtlbStats::default());
            core::ptr::addr_of_mut!((*p).strategy).write(VtlbStrategy::Keep);
            v.assume_init()
        }
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
            strategy: VtlbStrategy::Keep,
            check: false,
            stats: VtlbStats {
                maps: 0,
                prefetched: 0,
                peak: 0,
                table_writes: 0,
                checks: 0,
                violations: 0,
                first_violation: None,
            },
            reserved: (0, 0),
            protected: [0; TRACKED_FRAMES / 64],
            user_only: false,
        }
    }

    /// Forgets every mapping, in place (a `Vtlb` is too big to build on the
    /// VMM's stack), for a new guest with this strategy, checking or not,
    /// whose frames `reserved` no prefetch may map; the mapper is reset by
    /// its owner.
    pub fn clear(&mut self, strategy: VtlbStrategy, check: bool, reserved: (u64, u64)) {
        self.count = 0;
        self.removed = 0;
        self.regions.reset();
        self.strategy = strategy;
        self.check = check;
        self.reserved = reserved;
        self.stats = VtlbStats::default();
        self.protected.fill(0);
    }

    pub(crate) fn is_protected(&self, gpa: u64) -> bool {
        let frame = (gpa >> 12) as usize;
        frame < TRACKED_FRAMES && self.protected[frame / 64] & (1 << (frame % 64)) != 0
    }

    fn set_protected(&mut self, gpa: u64, on: bool) {
        let frame = (gpa >> 12) as usize;
        if frame < TRACKED_FRAMES {
            if on {
                self.protected[frame / 64] |= 1 << (frame % 64);
            } else {
                self.protected[frame / 64] &= !(1 << (frame % 64));
            }
        }
    }

    /// A page fault the guest's tables allow (`t`, from a walk with upper
    /// levels `upper`), for an access that writes or not: maps it as the
    /// strategy says. Returns what the write-protect strategy changed in
    /// its protection, which the guest's other address spaces must follow
    /// (`crate::spaces`: one protection for all of them).
    #[inline]
    pub fn fault(
        &mut self,
        ram: &Ram,
        va: u64,
        t: Translation,
        upper: u64,
        write: bool,
    ) -> Result<Protection, MapError<M::Error>> {
        let table = last_level_table(upper);
        let mut changed = Protection::default();
        if self.strategy == VtlbStrategy::WriteProtect {
            if write && self.is_protected(t.gpa) {
                // The guest writes one of its page tables: the mappings
                // made from it go (they would go stale), and the table
                // stays writable until a walk through it protects it again.
                self.table_write(ram, t.gpa, true)?;
                changed.written = Some(t.gpa & ADDR);
            }
            // A table that maps itself, written through that mapping, is
            // left unprotected: protecting it again at once would trap the
            // same write forever.
            if let Some(table) = table.filter(|&table| table != t.gpa) {
                if !self.is_protected(table) && ((table >> 12) as usize) < TRACKED_FRAMES {
                    self.protect(table)?;
                    changed.protected = Some(table);
                }
            }
        }
        let rights = Translation {
            writable: t.writable && !self.is_protected(t.gpa),
            ..t
        };
        self.map(va, rights, upper)?;
        if self.strategy == VtlbStrategy::Prefetch && table.is_some() {
            self.prefetch(ram, va, upper);
        }
        Ok(changed)
    }

    /// Follows a change of protection made by another address space of the
    /// same guest (write-protect: a table is protected in all of them or in
    /// none, so a write to it traps in whichever space makes it).
    pub fn follow(&mut self, ram: &Ram, changed: Protection) -> Result<(), M::Error> {
        if let Some(table) = changed.written {
            self.table_write(ram, table, false)?;
        }
        if let Some(table) = changed.protected {
            self.protect(table)?;
        }
        Ok(())
    }

    /// Maps the present neighbours of `va`'s page in its aligned block,
    /// from the same page table; failures only end the prefetch.
    fn prefetch(&mut self, ram: &Ram, va: u64, upper: u64) {
        let block = va & !(PREFETCH_PAGES * 4096 - 1);
        let unpacked = Upper::unpack(upper);
        let Some(table) = last_level_table(upper) else {
            return;
        };
        for i in 0..PREFETCH_PAGES {
            let page = block + i * 4096;
            if page == va & !0xfff || self.mappings().iter().any(|m| m.va == page) {
                continue;
            }
            let Ok(t) = finish_walk(ram, unpacked, page) else {
                continue;
            };
            // A user view prefetches only what user mode may touch (its
            // block never reaches the wedge's addresses: the fault's page
            // is a user page, in the same 32 KiB-aligned block).
            if (self.reserved.0..self.reserved.1).contains(&t.gpa) || (self.user_only && !t.user) {
                continue;
            }
            // A speculative TLB fill: the page's entry accessed (the upper
            // levels were, by the fault's walk), writable only if dirty.
            let Some(t) = mark_prefetched(ram, table, page, t) else {
                continue;
            };
            if self.map(page, t, upper).is_err() {
                return;
            }
            self.stats.prefetched += 1;
        }
    }

    /// Write-protect: starts protecting the page table at `table`; a
    /// writable mapping of its frame goes (it faults back read-only).
    fn protect(&mut self, table: u64) -> Result<(), M::Error> {
        self.set_protected(table, true);
        let mut i = 0;
        while i < self.count {
            let m = self.mappings[i];
            if m.gpa == table & ADDR && m.writable {
                self.remove(i)?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Write-protect: the guest writes the page table at `table` (trapped
    /// here if `trapped`, else in another of its address spaces).
    pub(crate) fn table_write(
        &mut self,
        ram: &Ram,
        table: u64,
        trapped: bool,
    ) -> Result<(), M::Error> {
        if trapped {
            self.stats.table_writes += 1;
        }
        self.set_protected(table, false);
        let mut i = 0;
        while i < self.count {
            let m = self.mappings[i];
            if m.table == table {
                if self.check {
                    // Up to the write, the mapping must be justified by
                    // the entry about to change.
                    let upper = Upper::Table {
                        at: table,
                        writable: true,
                        user: true,
                    };
                    let now = finish_walk(ram, Ok(upper), m.va);
                    if !now.is_ok_and(|t| t.gpa == m.gpa && (t.writable || !m.writable)) {
                        self.violation(InvalidationPoint::TableWrite(table), &m, now);
                    }
                }
                self.remove(i)?;
            } else {
                i += 1;
            }
        }
        if self.check {
            self.stats.checks += 1;
        }
        Ok(())
    }

    fn violation(
        &mut self,
        at: InvalidationPoint,
        m: &Mapping,
        guest: Result<Translation, WalkFault>,
    ) {
        self.stats.violations += 1;
        if self.stats.first_violation.is_none() {
            self.stats.first_violation = Some(Violation {
                at,
                va: m.va,
                gpa: m.gpa,
                writable: m.writable,
                guest,
            });
        }
    }

    /// Checks every mapping against the tables at `cr3` (checking mode).
    fn check_all(&mut self, ram: &Ram, cr3: u64, at: InvalidationPoint) {
        self.stats.checks += 1;
        for i in 0..self.count {
            let m = self.mappings[i];
            let guest = walk(ram, cr3, m.va);
            if !justified(&m, guest, self.user_only) {
                self.violation(at, &m, guest);
            }
        }
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
            table: last_level_table(upper).unwrap_or(0),
            region,
        };
        self.count += 1;
        self.stats.maps += 1;
        self.stats.peak = self.stats.peak.max(self.count);
        Ok(())
    }

    /// Maps a page the guest's page tables know nothing of (the wedge's
    /// region): not recorded, never invalidated.
    pub fn map_fixed(&mut self, va: u64, t: Translation) -> Result<(), MapError<M::Error>> {
        self.mapper.map(va & !0xfff, t).map(drop)
    }

    /// A CR3 load, as the strategy says; in checking mode, then checks
    /// every mapping left. Returns how many it kept.
    pub fn reload(&mut self, ram: &Ram, cr3: u64) -> Result<usize, M::Error> {
        let kept = match self.strategy {
            VtlbStrategy::Flush => {
                while self.count > 0 {
                    self.remove(self.count - 1)?;
                }
                self.regions.reset();
                0
            }
            VtlbStrategy::BrokenKeepAll => self.count,
            VtlbStrategy::Keep | VtlbStrategy::Prefetch | VtlbStrategy::WriteProtect => {
                self.keep_justified(ram, cr3)?
            }
        };
        if self.check {
            self.check_all(ram, cr3, InvalidationPoint::Cr3Load(cr3));
        }
        Ok(kept)
    }

    /// Keeps the mappings the tables at `cr3` translate the same way (frame
    /// and rights), removes the others.
    fn keep_justified(&mut self, ram: &Ram, cr3: u64) -> Result<usize, M::Error> {
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
        // Decided once, not per mapping: the loop is every CR3 load's cost.
        let write_protect = self.strategy == VtlbStrategy::WriteProtect;
        let mut i = 0;
        while i < self.count {
            let Mapping {
                va,
                gpa,
                writable,
                table,
                region,
                ..
            } = self.mappings[i];
            if self.regions.keeps(region) {
                i += 1;
                continue;
            }
            let upper = Upper::unpack(self.regions.new_upper(region));
            // Write-protect: a table no write reached since the mapping was
            // made from it, reached the same way, still says the same.
            if write_protect {
                if let Ok(Upper::Table {
                    at, writable: w, ..
                }) = upper
                {
                    if at == table && (w || !writable) && self.is_protected(table) {
                        i += 1;
                        continue;
                    }
                }
            }
            let user_only = self.user_only;
            // At most the rights the tables give: a page mapped read-only
            // until its first write (it was clean, `walk::mark_used`) stays
            // so where the tables allow writing.
            if finish_walk(ram, upper, va)
                .is_ok_and(|t| t.gpa == gpa && (t.writable || !writable) && (t.user || !user_only))
            {
                i += 1;
            } else {
                self.remove(i)?;
            }
        }
        self.regions.settle(|packed| packed & Upper::LARGE != 0);
        Ok(self.count)
    }

    /// An invlpg of `va` with the tables at `cr3`: removes its page's
    /// mapping; in checking mode, then checks that page.
    pub fn invlpg(&mut self, ram: &Ram, cr3: u64, va: u64) -> Result<(), M::Error> {
        self.invalidate(va)?;
        if self.check {
            self.stats.checks += 1;
            let page = va & !0xfff;
            if let Some(m) = self.mappings().iter().find(|m| m.va == page).copied() {
                let guest = walk(ram, cr3, page);
                if !justified(&m, guest, self.user_only) {
                    self.violation(InvalidationPoint::Invlpg(va), &m, guest);
                }
            }
        }
        Ok(())
    }

    /// Removes the mapping of `va`'s page.
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

    /// Removes every mapping (the recorder's set at a CR3 load).
    pub fn remove_all(&mut self) -> Result<(), M::Error> {
        while self.count > 0 {
            self.remove(self.count - 1)?;
        }
        self.regions.reset();
        Ok(())
    }

    /// Removes every mapping of guest frame `gpa` (the recorder: a frame
    /// that is a page table).
    pub fn remove_frame(&mut self, gpa: u64) -> Result<(), M::Error> {
        self.remove_where(|m| m.gpa == gpa & ADDR)
    }

    /// Removes every mapping made from the last-level page table at
    /// `table` (the recorder: what the write-protect strategy drops at a
    /// write to it).
    pub fn remove_made_from(&mut self, table: u64) -> Result<(), M::Error> {
        self.remove_where(|m| m.table == table & ADDR)
    }

    fn remove_where(&mut self, doomed: impl Fn(&Mapping) -> bool) -> Result<(), M::Error> {
        let mut i = 0;
        while i < self.count {
            if doomed(&self.mappings[i]) {
                self.remove(i)?;
            } else {
                i += 1;
            }
        }
        Ok(())
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
            if self.user_only && !t.user {
                return Err(Unjustified {
                    va: m.va,
                    why: "in a user view, but the guest's tables give it to the kernel only",
                });
            }
        }
        Ok(self.count)
    }
}

/// The last-level table of a walk's packed upper levels (`None` for a
/// large page or a fault).
fn last_level_table(upper: u64) -> Option<u64> {
    match Upper::unpack(upper) {
        Ok(Upper::Table { at, .. }) if upper != 0 => Some(at),
        _ => None,
    }
}

/// The accessed bit set in the entry of `table` (a last-level page table)
/// that maps `va` to `t`; `t` with the rights to map it with (writable only
/// if the page is dirty). `None` if the entry cannot be read or written.
fn mark_prefetched(ram: &Ram, table: u64, va: u64, t: Translation) -> Option<Translation> {
    let at = table + ((va >> 12) & 511) * 8;
    let entry = ram.read_u64(at).ok()?;
    if entry & ACCESSED == 0 {
        ram.write_u64(at, entry | ACCESSED).ok()?;
    }
    Some(Translation {
        writable: t.writable && entry & DIRTY != 0,
        ..t
    })
}

/// Whether the guest's translation justifies mapping `m`: the same frame,
/// with at least the rights given.
fn justified(m: &Mapping, guest: Result<Translation, WalkFault>, user_only: bool) -> bool {
    guest.is_ok_and(|t| t.gpa == m.gpa && (t.writable || !m.writable) && (t.user || !user_only))
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

    pub(crate) use crate::replay::ModelSpace;

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

        /// Tables over the root at `root` as it is, adding new tables above
        /// everything in `ram` below `root + 1 MiB` (tests that build more
        /// after a fixture did).
        pub(crate) fn new_keeping(ram: &'a Ram, root: u64) -> Tables<'a> {
            Tables {
                ram,
                root,
                next: root + 0x80000,
            }
        }

        /// Maps 4 KiB page `va` to `gpa` (`flags`: bit 1 writable; 0 for
        /// not present), creating tables on the way (present, writable).
        pub(crate) fn set(&mut self, va: u64, gpa: u64, flags: u64) {
            self.set_with(va, gpa, flags, 0);
        }

        /// [`Tables::set`] for user mode: U=1 at every level on the way.
        pub(crate) fn set_user(&mut self, va: u64, gpa: u64, flags: u64) {
            self.set_with(va, gpa, if flags == 0 { 0 } else { flags | 4 }, 4);
        }

        fn set_with(&mut self, va: u64, gpa: u64, flags: u64, user: u64) {
            let mut table = self.root;
            for level in (1..4).rev() {
                let index = (va >> (12 + 9 * level)) & 0x1ff;
                let at = table + index * 8;
                let entry = self.ram.read_u64(at).unwrap();
                table = if entry & 1 == 0 {
                    let t = self.table();
                    self.ram.write_u64(at, t | 3 | user).unwrap();
                    t
                } else {
                    self.ram.write_u64(at, entry | user).unwrap();
                    entry & ADDR
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

    pub(crate) fn boxed_vtlb<M>(mapper: M) -> Box<Vtlb<M>> {
        Vtlb::boxed(mapper)
    }

    fn boxed() -> Box<Vtlb<ModelSpace>> {
        boxed_vtlb(ModelSpace::default())
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

    /// Runs `ops` under `strategy` with the checker on; returns the vTLB.
    fn run(strategy: VtlbStrategy, ops: &[Op]) -> Result<Box<Vtlb<ModelSpace>>, TestCaseError> {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut tables = Tables::new(&ram, ROOT);
        let mut vtlb = boxed();
        vtlb.clear(strategy, true, (0x3f_0000, 0x40_0000));
        for op in ops {
            match *op {
                Op::Set { page, frame, flags } => {
                    // The guest writes its table through its own mapping:
                    // under write-protect a protected table traps first.
                    let table = crate::walk::walk_keeping_upper(&ram, ROOT, page).upper & ADDR;
                    if vtlb.is_protected(table) {
                        vtlb.table_write(&ram, table, true).unwrap();
                    }
                    tables.set(page, frame, flags);
                }
                Op::Touch { page } => {
                    let w = crate::walk::walk_keeping_upper(&ram, ROOT, page);
                    if let Ok(t) = w.result {
                        // As the VMM does: the walk's bits set first.
                        let t = crate::walk::mark_used(&ram, ROOT, page, t.writable, t);
                        vtlb.fault(&ram, page, t, w.upper, t.writable).unwrap();
                    }
                }
                Op::Invlpg { page } => {
                    vtlb.invlpg(&ram, ROOT, page).unwrap();
                    prop_assert!(!vtlb.mapper.pages.contains_key(&page));
                }
                Op::LoadCr3 => {
                    vtlb.reload(&ram, ROOT).unwrap();
                    if strategy.is_correct() {
                        prop_assert_eq!(vtlb.check_consistency(&ram, ROOT), Ok(vtlb.count));
                    }
                }
            }
            consistent_with_model(&vtlb);
        }
        Ok(vtlb)
    }

    proptest! {
        /// Whatever the guest does to its tables, under every correct
        /// strategy the vTLB's record always equals the real space, the
        /// checker finds nothing at any invalidation point, and right after
        /// every CR3 load every mapping is justified (x86 lets stale
        /// entries live until then).
        #[test]
        fn correct_strategies_keep_the_invariant_at_every_invalidation_point(
            ops in proptest::collection::vec(op(), 1..60)
        ) {
            for strategy in VtlbStrategy::ALL.into_iter().filter(|s| s.is_correct()) {
                let vtlb = run(strategy, &ops)?;
                prop_assert_eq!(vtlb.stats.violations, 0, "{:?}: {:?}", strategy, vtlb.stats.first_violation);
            }
        }
    }

    #[test]
    fn the_broken_strategy_is_caught_at_the_next_cr3_load() {
        let ops = [
            Op::Set {
                page: VA,
                frame: 0x20_0000,
                flags: 3,
            },
            Op::Touch { page: VA },
            // Remapped without invlpg, relying on the CR3 load.
            Op::Set {
                page: VA,
                frame: 0x20_1000,
                flags: 3,
            },
            Op::LoadCr3,
        ];
        let vtlb = run(VtlbStrategy::BrokenKeepAll, &ops).unwrap();
        assert_eq!(vtlb.stats.violations, 1);
        let v = vtlb.stats.first_violation.unwrap();
        assert_eq!(v.at, InvalidationPoint::Cr3Load(ROOT));
        assert_eq!((v.va, v.gpa, v.writable), (VA, 0x20_0000, true));
        assert_eq!(v.guest.map(|t| t.gpa), Ok(0x20_1000));
        let text = std::format!("{v}");
        assert!(
            text.contains("at a CR3 load") && text.contains("0x201000"),
            "{text}"
        );
        // The same run under `keep` is clean.
        assert_eq!(run(VtlbStrategy::Keep, &ops).unwrap().stats.violations, 0);
    }

    #[test]
    fn flush_empties_the_space_on_a_cr3_load() {
        let ops = [
            Op::Set {
                page: VA,
                frame: 0x20_0000,
                flags: 3,
            },
            Op::Touch { page: VA },
            Op::LoadCr3,
        ];
        let vtlb = run(VtlbStrategy::Flush, &ops).unwrap();
        assert_eq!(vtlb.count, 0);
        assert!(vtlb.mapper.pages.is_empty());
        assert_eq!(run(VtlbStrategy::Keep, &ops).unwrap().count, 1);
    }

    #[test]
    fn prefetch_maps_present_neighbours_but_not_reserved_frames() {
        let mut ops = Vec::new();
        for i in 0..PREFETCH_PAGES {
            if i == 5 {
                continue; // not present
            }
            // Page 6 maps a reserved frame (the wedge's, say).
            let frame = if i == 6 {
                0x3f_0000
            } else {
                0x20_0000 + i * 4096
            };
            ops.push(Op::Set {
                page: VA + i * 4096,
                frame,
                flags: 3,
            });
        }
        ops.push(Op::Touch {
            page: VA + 2 * 4096,
        });
        let vtlb = run(VtlbStrategy::Prefetch, &ops).unwrap();
        assert_eq!(vtlb.stats.prefetched, 5);
        assert_eq!(vtlb.count, 6);
        assert!(!vtlb.mapper.pages.contains_key(&(VA + 5 * 4096)));
        assert!(!vtlb.mapper.pages.contains_key(&(VA + 6 * 4096)));
    }

    /// Prefetching is a speculative TLB fill: the neighbours' entries get
    /// their accessed bit, and a clean neighbour is mapped read-only so that
    /// its first write faults and dirties it; a dirty one is writable.
    #[test]
    fn prefetch_sets_accessed_and_maps_clean_neighbours_read_only() {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut tables = Tables::new(&ram, ROOT);
        for i in 0..4 {
            let dirty = if i == 3 { DIRTY } else { 0 };
            tables.set(VA + i * 4096, 0x20_0000 + i * 4096, 3 | dirty);
        }
        let mut vtlb = boxed();
        vtlb.clear(VtlbStrategy::Prefetch, true, (0, 0));
        let w = crate::walk::walk_keeping_upper(&ram, ROOT, VA);
        let t = crate::walk::mark_used(&ram, ROOT, VA, true, w.result.unwrap());
        vtlb.fault(&ram, VA, t, w.upper, true).unwrap();
        let table = w.upper & ADDR;
        let entry = |i: u64| {
            ram.read_u64(table + ((VA >> 12) & 511) * 8 + i * 8)
                .unwrap()
        };
        let writable = |vtlb: &Vtlb<ModelSpace>, i: u64| {
            vtlb.mappings()
                .iter()
                .find(|m| m.va == VA + i * 4096)
                .map(|m| m.writable)
        };
        assert_eq!(entry(0) & (ACCESSED | DIRTY), ACCESSED | DIRTY, "the write");
        assert_eq!(writable(&vtlb, 0), Some(true));
        for i in 1..3 {
            assert_eq!(entry(i) & (ACCESSED | DIRTY), ACCESSED, "neighbour {i}");
            assert_eq!(writable(&vtlb, i), Some(false), "neighbour {i}");
        }
        assert_eq!(entry(3) & (ACCESSED | DIRTY), ACCESSED | DIRTY);
        assert_eq!(writable(&vtlb, 3), Some(true));
        // A CR3 load keeps the read-only mappings of writable pages: they
        // give no more than the tables allow.
        assert_eq!(vtlb.reload(&ram, ROOT).unwrap(), 4);
        assert_eq!(writable(&vtlb, 1), Some(false));
    }

    #[test]
    fn write_protect_traps_table_writes_and_a_self_mapping_table_does_not_loop() {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut tables = Tables::new(&ram, ROOT);
        tables.set(VA, 0x20_0000, 3);
        let table = crate::walk::walk_keeping_upper(&ram, ROOT, VA).upper & ADDR;
        // The table is also mapped, writable, at VA + 4096 (a self-map).
        tables.set(VA + 4096, table, 3);
        let mut vtlb = boxed();
        vtlb.clear(VtlbStrategy::WriteProtect, true, (0, 0));
        let touch = |vtlb: &mut Vtlb<ModelSpace>, va: u64, write: bool| {
            let w = crate::walk::walk_keeping_upper(&ram, ROOT, va);
            vtlb.fault(&ram, va, w.result.unwrap(), w.upper, write)
                .unwrap();
        };
        touch(&mut vtlb, VA, false);
        assert!(vtlb.is_protected(table));
        // Reading the table through its mapping: mapped read-only.
        touch(&mut vtlb, VA + 4096, false);
        assert_eq!(
            vtlb.mapper.pages.get(&(VA + 4096)).map(|p| p.2),
            Some(false)
        );
        // Writing it: the write is trapped, the mappings made from the
        // table go, and the page is mapped writable: no second trap.
        touch(&mut vtlb, VA + 4096, true);
        assert_eq!(vtlb.stats.table_writes, 1);
        assert!(!vtlb.is_protected(table));
        assert_eq!(vtlb.mapper.pages.get(&(VA + 4096)).map(|p| p.2), Some(true));
        assert!(!vtlb.mapper.pages.contains_key(&VA));
        assert_eq!(vtlb.stats.violations, 0);
    }
}
