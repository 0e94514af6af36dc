//! All the seL4 address spaces the vTLB fills for one guest: the kernel
//! view's and, with a wedge, the user views' (docs/vtlb.md, "Processes:
//! the user views"). Every event that changes what they may hold goes
//! through here, for the VMM (`guest.rs`, `user_mode.rs`) and the replay
//! ([`crate::replay`]) alike, so both run the same code:
//!
//! - a fault in any of them is served under the run's strategy. The
//!   write-protect strategy's protection is one for all of them: a page
//!   table is read-only in every space or in none, so a write to it traps
//!   in whichever space makes it, and the mappings made from it go in
//!   every space (a view's mapping of a table the guest kernel writes in
//!   the kernel view would otherwise outlive the write);
//! - an invlpg reaches the kernel view and the view of the current CR3;
//! - a CR3 load reloads the kernel view and makes every user view stale;
//! - entering user mode re-validates a stale view under the strategy (its
//!   CR3 load, deferred to the entry) and maps the page of the process's
//!   last #PF as a fault would.

use core::ops::Range;

use crate::ram::Ram;
use crate::views::{user_fault, UserFault, UserViews, View};
use crate::vtlb::{MapError, Mapper, Protection, Vtlb};
use crate::walk::{mark_used, walk_keeping_upper, Translation};

/// One guest's address spaces, borrowed for one event.
pub struct Spaces<'a, M> {
    pub kernel: &'a mut Vtlb<M>,
    /// `None` for a guest without a wedge (no processes).
    pub views: Option<&'a mut UserViews<M>>,
}

impl<M> core::fmt::Debug for Spaces<'_, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Spaces")
            .field("kernel", &self.kernel)
            .field("views", &self.views)
            .finish()
    }
}

/// Why entering user mode failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnterError<E> {
    /// The guest has no user views.
    NoViews,
    /// Re-validating the view failed (its mapper).
    Mapper(E),
}

impl<M: Mapper> Spaces<'_, M> {
    /// The vTLB of `space`, if the guest has it.
    pub fn vtlb(&mut self, space: View) -> Option<&mut Vtlb<M>> {
        match space {
            View::Kernel => Some(self.kernel),
            View::User(n) => self.views.as_deref_mut()?.vtlbs.get_mut(n),
        }
    }

    /// A fault in `space` the guest's tables allow (`t`, from a walk with
    /// upper levels `upper`): mapped as the strategy says, every other
    /// space following what it changed in the protection.
    pub fn fault(
        &mut self,
        ram: &Ram,
        space: View,
        va: u64,
        t: Translation,
        upper: u64,
        write: bool,
    ) -> Result<(), MapError<M::Error>> {
        let Some(vtlb) = self.vtlb(space) else {
            return Err(MapError::Full);
        };
        let changed = vtlb.fault(ram, va, t, upper, write)?;
        follow(ram, self.kernel, self.views.as_deref_mut(), space, changed)?;
        Ok(())
    }

    /// A CR3 load of `cr3`.
    pub fn cr3_load(&mut self, ram: &Ram, cr3: u64) -> Result<(), M::Error> {
        if let Some(views) = self.views.as_deref_mut() {
            views.cr3_loaded();
        }
        self.kernel.reload(ram, cr3).map(drop)
    }

    /// An invlpg of `va` with the tables at `cr3`.
    pub fn invlpg(&mut self, ram: &Ram, cr3: u64, va: u64) -> Result<(), M::Error> {
        if let Some(view) = self.views.as_deref_mut().and_then(|v| v.holding(cr3)) {
            view.invlpg(ram, cr3, va)?;
        }
        self.kernel.invlpg(ram, cr3, va)
    }

    /// Entering user mode with CR3 `cr3`: the view of `cr3` (taken over if
    /// none holds it), re-validated if a CR3 load made it stale; the page
    /// of the process's last #PF, which its kernel has usually just made
    /// present or writable and the process touches again at once, mapped
    /// now if the tables allow user mode the access (a mapping a TLB could
    /// hold now: the invariant holds). `wedge_area` is the guest-physical
    /// range of the wedge's memory. Returns the view.
    pub fn enter_user(
        &mut self,
        ram: &Ram,
        cr3: u64,
        wedge_area: &Range<u64>,
    ) -> Result<usize, EnterError<M::Error>> {
        let views = self.views.as_deref_mut().ok_or(EnterError::NoViews)?;
        let (n, stale) = views.select(cr3);
        if stale {
            views.vtlbs[n]
                .reload(ram, cr3)
                .map_err(EnterError::Mapper)?;
        }
        let Some((addr, write)) = views.reflected_fault.take() else {
            return Ok(n);
        };
        let walked = walk_keeping_upper(ram, cr3, addr);
        if let (Ok(t), UserFault::Map { writable }) = (
            walked.result,
            user_fault(addr, walked.result, write, wedge_area),
        ) {
            if writable || !write {
                let t = mark_used(ram, cr3, addr, write, Translation { writable, ..t });
                // A failure only leaves the page to fault.
                if let Ok(changed) = views.vtlbs[n].fault(ram, addr, t, walked.upper, write) {
                    views.stats.faults_premapped += 1;
                    follow(ram, self.kernel, Some(views), View::User(n), changed)
                        .map_err(EnterError::Mapper)?;
                }
            }
        }
        Ok(n)
    }

    /// Mappings live in all the spaces.
    pub fn live(&self) -> usize {
        self.kernel.count + self.views.as_deref().map_or(0, |v| v.live())
    }

    /// Removes every mapping of guest frame `gpa` in every space (the
    /// recorder: a frame that is a page table).
    pub fn remove_frame(&mut self, gpa: u64) -> Result<(), M::Error> {
        self.each_mut(|v| v.remove_frame(gpa))
    }

    /// Removes every mapping made from the last-level table at `table` in
    /// every space (the recorder: what write-protect drops at a write).
    pub fn remove_made_from(&mut self, table: u64) -> Result<(), M::Error> {
        self.each_mut(|v| v.remove_made_from(table))
    }

    /// Removes the mapping of `va`'s page in every space.
    pub fn invalidate(&mut self, va: u64) -> Result<(), M::Error> {
        self.each_mut(|v| v.invalidate(va))
    }

    fn each_mut(
        &mut self,
        mut f: impl FnMut(&mut Vtlb<M>) -> Result<(), M::Error>,
    ) -> Result<(), M::Error> {
        f(self.kernel)?;
        if let Some(views) = self.views.as_deref_mut() {
            for v in &mut views.vtlbs {
                f(v)?;
            }
        }
        Ok(())
    }
}

/// Every space but `origin` follows `changed`.
fn follow<M: Mapper>(
    ram: &Ram,
    kernel: &mut Vtlb<M>,
    views: Option<&mut UserViews<M>>,
    origin: View,
    changed: Protection,
) -> Result<(), M::Error> {
    if changed == Protection::default() {
        return Ok(());
    }
    if origin != View::Kernel {
        kernel.follow(ram, changed)?;
    }
    if let Some(views) = views {
        for (n, v) in views.vtlbs.iter_mut().enumerate() {
            if origin != View::User(n) {
                v.follow(ram, changed)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ram::host::HostRam;
    use crate::replay::ModelSpace;
    use crate::views::tests::boxed_views;
    use crate::vtlb::tests::Tables;
    use crate::vtlb::VtlbStrategy;
    use crate::walk::ADDR;

    const ROOT: u64 = 0x10_0000;
    /// A process's page, in the user slot.
    const HEAP: u64 = 0x100_4000_0000;

    /// Under write-protect, a view's mapping made from a table the guest
    /// kernel then writes (copy-on-write at a fork) goes at the write,
    /// trapped in the kernel view: the view re-validated after the next
    /// CR3 load cannot keep it on the strength of its own protection.
    #[test]
    fn a_table_write_trapped_in_the_kernel_view_reaches_every_view() {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut tables = Tables::new(&ram, ROOT);
        tables.set_user(HEAP, 0x20_0000, 3);
        let table = walk_keeping_upper(&ram, ROOT, HEAP).upper & ADDR;
        // The kernel's identity map of the table's frame.
        tables.set(table, table, 3);
        let mut kernel = Vtlb::boxed(ModelSpace::default());
        kernel.clear(VtlbStrategy::WriteProtect, true, (0, 0));
        let mut views = boxed_views::<ModelSpace>();
        views.clear(VtlbStrategy::WriteProtect, true, (0, 0));
        let mut spaces = Spaces {
            kernel: &mut kernel,
            views: Some(&mut views),
        };
        let area = 0x3f_0000..0x40_0000;
        let n = spaces.enter_user(&ram, ROOT, &area).unwrap();
        let w = walk_keeping_upper(&ram, ROOT, HEAP);
        spaces
            .fault(&ram, View::User(n), HEAP, w.result.unwrap(), w.upper, true)
            .unwrap();
        // The table is protected everywhere: the kernel's first write to
        // it traps (mapped read-only, then written).
        let w = walk_keeping_upper(&ram, ROOT, table);
        spaces
            .fault(&ram, View::Kernel, table, w.result.unwrap(), w.upper, false)
            .unwrap();
        assert!(!spaces.kernel.mapper.allows(table, true));
        spaces
            .fault(&ram, View::Kernel, table, w.result.unwrap(), w.upper, true)
            .unwrap();
        assert_eq!(spaces.kernel.stats.table_writes, 1);
        // The view's mapping made from that table went with the write.
        let views = spaces.views.as_deref().unwrap();
        assert!(!views.vtlbs[n].mapper.allows(HEAP, false));
        // The kernel makes the page read-only (copy-on-write), and loads
        // CR3: the view, entered again, holds nothing stale.
        tables.set_user(HEAP, 0x20_0000, 1);
        spaces.cr3_load(&ram, ROOT).unwrap();
        assert_eq!(spaces.enter_user(&ram, ROOT, &area), Ok(n));
        let views = spaces.views.as_deref().unwrap();
        assert_eq!(views.vtlbs[n].stats.violations, 0);
        assert!(views.vtlbs[n].check_consistency(&ram, ROOT).is_ok());
    }

    /// Every strategy reaches the views: `flush` empties a view at its
    /// re-validation, `broken-keep-all` keeps what the tables no longer
    /// justify and the checker catches it there.
    #[test]
    fn the_views_follow_the_run_s_strategy_and_checker() {
        for (strategy, kept, violations) in [
            (VtlbStrategy::Keep, 0, 0),
            (VtlbStrategy::Flush, 0, 0),
            (VtlbStrategy::BrokenKeepAll, 1, 1),
        ] {
            let host = HostRam::new(4 << 20);
            let ram = host.ram();
            let mut tables = Tables::new(&ram, ROOT);
            tables.set_user(HEAP, 0x20_0000, 3);
            let mut kernel = Vtlb::boxed(ModelSpace::default());
            kernel.clear(strategy, true, (0, 0));
            let mut views = boxed_views::<ModelSpace>();
            views.clear(strategy, true, (0, 0));
            let mut spaces = Spaces {
                kernel: &mut kernel,
                views: Some(&mut views),
            };
            let area = 0x3f_0000..0x40_0000;
            let n = spaces.enter_user(&ram, ROOT, &area).unwrap();
            let w = walk_keeping_upper(&ram, ROOT, HEAP);
            spaces
                .fault(&ram, View::User(n), HEAP, w.result.unwrap(), w.upper, false)
                .unwrap();
            // Another frame, relying on the CR3 load to flush the old one.
            tables.set_user(HEAP, 0x20_1000, 3);
            spaces.cr3_load(&ram, ROOT).unwrap();
            spaces.enter_user(&ram, ROOT, &area).unwrap();
            let view = &spaces.views.as_deref().unwrap().vtlbs[n];
            assert_eq!(view.count, kept, "{strategy:?}");
            assert_eq!(view.stats.violations, violations, "{strategy:?}");
        }
    }
}
