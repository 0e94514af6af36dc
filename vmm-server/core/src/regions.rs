//! The virtual TLB's 2 MiB regions: which hold mappings, how many, and
//! whether all of them come from one large guest page — one result of the
//! walk's upper levels. A CR3 load that finds that result unchanged keeps
//! the region's mappings after one walk instead of one per page, which is
//! what makes switching between address spaces that share a kernel's large
//! identity map cheap.

/// Regions with mappings at once (4 GiB of guest-virtual space).
const MAX_REGIONS: usize = 2048;

#[derive(Clone, Copy)]
struct Region {
    /// `va >> 21`.
    key: u64,
    /// Mappings in it (an active region may have none: one whose last
    /// mapping goes, as on every invlpg of a page the guest then faults
    /// back in, stays active until the next CR3 load prunes it).
    count: u32,
    /// It is in `active`.
    in_use: bool,
    /// The packed upper levels ([`crate::walk::Upper::pack`]) every mapping in
    /// it was made or last checked under, if that is one large page; 0 if
    /// not, or if they differ.
    uniform: u64,
    /// Its place in `active`.
    active_pos: u16,
    /// During a CR3 load: all its mappings stay.
    keep: bool,
    /// During a CR3 load: its upper levels under the new tables.
    new_upper: u64,
}

const EMPTY: Region = Region {
    key: 0,
    count: 0,
    in_use: false,
    uniform: 0,
    active_pos: 0,
    keep: false,
    new_upper: 0,
};

pub struct Regions {
    regions: [Region; MAX_REGIONS],
    /// Indices of the regions with mappings, densely.
    active: [u16; MAX_REGIONS],
    active_count: usize,
    /// The region last added to.
    last: u16,
}

impl core::fmt::Debug for Regions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Regions")
            .field("active", &self.active_count)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Default for Regions {
    fn default() -> Self {
        Self::new()
    }
}

impl Regions {
    #[inline]
    pub const fn new() -> Regions {
        Regions {
            regions: [EMPTY; MAX_REGIONS],
            active: [0; MAX_REGIONS],
            active_count: 0,
            last: 0,
        }
    }

    /// No region holds a mapping.
    #[inline]
    pub fn reset(&mut self) {
        for &r in &self.active[..self.active_count] {
            self.regions[usize::from(r)] = EMPTY;
        }
        self.active_count = 0;
    }

    /// Counts a new mapping of `va`, made from the walk's upper levels
    /// `upper` (packed; 0 if unknown) of which `large` says whether they
    /// end in a large page; returns its region, or `None` if every region
    /// is in use.
    #[inline]
    pub fn add(&mut self, va: u64, upper: u64, large: bool) -> Option<u16> {
        let key = va >> 21;
        let uniform = if large { upper } else { 0 };
        // The last region added to first: faults come in runs.
        let last = self.regions[usize::from(self.last)];
        let found = if last.in_use && last.key == key {
            Some(self.last)
        } else {
            self.active[..self.active_count]
                .iter()
                .copied()
                .find(|&r| self.regions[usize::from(r)].key == key)
        };
        if let Some(r) = found {
            let region = &mut self.regions[usize::from(r)];
            if region.count == 0 {
                region.uniform = uniform;
            } else if region.uniform != uniform {
                region.uniform = 0;
            }
            region.count += 1;
            self.last = r;
            return Some(r);
        }
        if self.active_count == MAX_REGIONS {
            self.prune();
        }
        let r = self.free_index()?;
        self.regions[usize::from(r)] = Region {
            key,
            count: 1,
            in_use: true,
            uniform,
            active_pos: self.active_count as u16,
            keep: false,
            new_upper: 0,
        };
        self.active[self.active_count] = r;
        self.active_count += 1;
        self.last = r;
        Some(r)
    }

    /// An index no active region uses.
    #[inline]
    fn free_index(&self) -> Option<u16> {
        if self.active_count == MAX_REGIONS {
            return None;
        }
        (0..MAX_REGIONS as u16).find(|&r| !self.regions[usize::from(r)].in_use)
    }

    /// Drops the active regions without mappings.
    #[inline]
    fn prune(&mut self) {
        let mut pos = 0;
        while pos < self.active_count {
            let r = self.active[pos];
            if self.regions[usize::from(r)].count > 0 {
                pos += 1;
                continue;
            }
            self.regions[usize::from(r)] = EMPTY;
            self.active_count -= 1;
            let last = self.active[self.active_count];
            self.active[pos] = last;
            self.regions[usize::from(last)].active_pos = pos as u16;
        }
    }

    /// Counts a mapping of region `r` gone.
    #[inline]
    pub fn remove(&mut self, r: u16) {
        if let Some(region) = self.regions.get_mut(usize::from(r)) {
            region.count = region.count.saturating_sub(1);
        }
    }

    /// A CR3 load, first step: `upper(va)` gives a region's upper levels
    /// under the new tables (packed); a region whose mappings all came from
    /// the same large page it still maps keeps them all. Returns whether
    /// every region does (then no mapping needs a look of its own).
    #[inline]
    pub fn judge(&mut self, mut upper: impl FnMut(u64) -> u64) -> bool {
        self.prune();
        let mut all = true;
        for &r in &self.active[..self.active_count] {
            let region = &mut self.regions[usize::from(r)];
            let new = upper(region.key << 21);
            region.new_upper = new;
            region.keep = region.uniform != 0 && region.uniform == new;
            all &= region.keep;
        }
        all
    }

    /// Region `r`'s upper levels under the new tables (packed), during a CR3
    /// load after [`Regions::judge`].
    #[inline]
    pub fn new_upper(&self, r: u16) -> u64 {
        self.regions
            .get(usize::from(r))
            .map_or(0, |region| region.new_upper)
    }

    /// Whether region `r` keeps all its mappings in this CR3 load.
    #[inline]
    pub fn keeps(&self, r: u16) -> bool {
        self.regions
            .get(usize::from(r))
            .is_some_and(|region| region.keep)
    }

    /// A CR3 load, last step: every mapping left in a region that was
    /// checked page by page now agrees with its new upper levels; `large`
    /// says whether a packed result is a large page.
    #[inline]
    pub fn settle(&mut self, large: impl Fn(u64) -> bool) {
        for &r in &self.active[..self.active_count] {
            let region = &mut self.regions[usize::from(r)];
            if !region.keep {
                region.uniform = if large(region.new_upper) {
                    region.new_upper
                } else {
                    0
                };
            }
            region.keep = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packed large-page result (`Upper::pack` of a 2 MiB page).
    const LARGE_AT_2M: u64 = 0x20_0000 | 7;

    #[test]
    fn a_region_of_one_large_page_is_kept_whole_while_it_is_unchanged() {
        let mut r = Regions::new();
        let a = r.add(0x20_0000, LARGE_AT_2M, true).unwrap();
        assert_eq!(r.add(0x20_1000, LARGE_AT_2M, true), Some(a));
        // Unchanged: every region keeps its mappings.
        assert!(r.judge(|_| LARGE_AT_2M));
        assert!(r.keeps(a));
        r.settle(|p| p & 4 != 0);
        // Changed: checked page by page, with the new result at hand.
        assert!(!r.judge(|_| 0x40_0000 | 7));
        assert!(!r.keeps(a));
        assert_eq!(r.new_upper(a), 0x40_0000 | 7);
    }

    #[test]
    fn a_region_of_mixed_or_small_pages_is_checked_page_by_page() {
        let mut r = Regions::new();
        let a = r.add(0x20_0000, LARGE_AT_2M, true).unwrap();
        r.add(0x20_1000, 0x4003, false).unwrap();
        assert!(!r.judge(|_| LARGE_AT_2M));
        assert!(!r.keeps(a));
        // Unknown indices answer "nothing", not a panic.
        assert!(!r.keeps(u16::MAX));
        assert_eq!(r.new_upper(u16::MAX), 0);
        r.remove(u16::MAX);
    }

    #[test]
    fn regions_without_mappings_are_pruned_and_capacity_is_bounded() {
        let mut r = Regions::new();
        for i in 0..MAX_REGIONS as u64 {
            assert!(r.add(i << 21, 0, false).is_some());
        }
        assert_eq!(r.add((MAX_REGIONS as u64) << 21, 0, false), None);
        // One region's last mapping goes: its index is free again.
        r.remove(7);
        let again = r.add((MAX_REGIONS as u64) << 21, 0, false).unwrap();
        assert_eq!(again, 7);
        r.reset();
        assert!(r.judge(|_| 0));
    }
}
