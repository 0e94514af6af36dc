//! Guest privilege on seL4 (docs/guest-processes.md): seL4 mappings have no
//! supervisor bit, so a guest process runs in a *user view*, an seL4 VSpace
//! of its own that holds only what the guest's page tables give user mode.
//! This module holds the views ([`UserViews`]: one vTLB per seL4 VSpace,
//! cached by the guest's CR3) and a user view's fault policy: what may be
//! mapped and with which rights, or the #PF the guest kernel must see, or
//! why the guest must end. (The kernel view's policy is the dispatch's,
//! guest.rs; the switching is `user_mode.rs`.)

use core::ops::Range;

pub use previrt_protocol::vmm_layout::USER_VIEWS;
use previrt_protocol::{WEDGE_AREA, WEDGE_BASE};

use crate::vtlb::{Mapper, Vtlb, VtlbStrategy};
use crate::walk::{Translation, WalkFault};

/// Which seL4 VSpace and CSpace the guest thread runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The guest's own: its whole address space, the wedge, its endpoint.
    Kernel,
    /// User view `n` (< [`USER_VIEWS`]): only what the guest's tables give
    /// user mode, and no capability but the fault endpoint.
    User(usize),
}

/// What the views count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewStats {
    /// Entries into user mode (the wedge's `EnterUser`).
    pub entries: u64,
    /// Of those, into a view that held the CR3 already.
    pub hits: u64,
    /// Into a view taken over from another CR3 (or never used).
    pub misses: u64,
    /// Entries that re-validated the view's mappings (a CR3 load since it
    /// was last entered).
    pub revalidations: u64,
    /// Exits from user mode, by cause.
    pub syscalls: u64,
    pub software_interrupts: u64,
    pub exceptions: u64,
    pub page_faults: u64,
    pub interrupts: u64,
    /// Faults a process sent just before an interrupt took it out of its
    /// view: answered by restarting the thread (into the wedge, which
    /// takes the interrupt; the process repeats the instruction later).
    pub stale_faults: u64,
    /// Pages mapped at entry: the page of the process's last #PF, which
    /// its kernel made present (demand-zero) or writable (copy-on-write).
    pub faults_premapped: u64,
}

/// A guest's user views: a vTLB per seL4 VSpace, each holding the
/// translations of one guest CR3 (its *key*), reused least recently used
/// first.
///
/// The mapping-consistency invariant holds in every view: while the guest
/// kernel runs with CR3 = a view's key it invalidates (`invlpg`, applied
/// to that view too) what it changes; a CR3 load makes every view *stale*
/// (the guest may change tables that are not current without invalidating
/// anything, relying on the next CR3 load), and a stale view is
/// re-validated against its key's tables (the vTLB's reload: kept only what
/// they still translate the same way, for user mode) before the guest
/// thread enters it.
pub struct UserViews<M> {
    pub vtlbs: [Vtlb<M>; USER_VIEWS],
    keys: [Option<u64>; USER_VIEWS],
    fresh: [bool; USER_VIEWS],
    last_used: [u64; USER_VIEWS],
    clock: u64,
    /// The view the guest thread is in (`None`: the kernel view).
    pub current: Option<usize>,
    /// The last page fault of a process its kernel was given (address,
    /// write): mapped at the next entry if the kernel made it allowed.
    pub reflected_fault: Option<(u64, bool)>,
    pub stats: ViewStats,
}

impl<M> core::fmt::Debug for UserViews<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UserViews")
            .field("keys", &self.keys)
            .field("current", &self.current)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<M: Mapper> UserViews<M> {
    pub const fn new(vtlbs: [Vtlb<M>; USER_VIEWS]) -> UserViews<M> {
        UserViews {
            vtlbs,
            keys: [None; USER_VIEWS],
            fresh: [false; USER_VIEWS],
            last_used: [0; USER_VIEWS],
            clock: 0,
            current: None,
            reflected_fault: None,
            stats: ViewStats {
                entries: 0,
                hits: 0,
                misses: 0,
                revalidations: 0,
                syscalls: 0,
                software_interrupts: 0,
                exceptions: 0,
                page_faults: 0,
                interrupts: 0,
                stale_faults: 0,
                faults_premapped: 0,
            },
        }
    }

    /// Forgets every view, in place, for a new guest whose run uses
    /// `strategy`, checking every invalidation point or not, with the
    /// wedge's frames `reserved` (as the kernel view's vTLB: every space
    /// of the guest runs the same strategy; the mappers are reset by their
    /// owner).
    pub fn clear(&mut self, strategy: VtlbStrategy, check: bool, reserved: (u64, u64)) {
        for v in &mut self.vtlbs {
            v.clear(strategy, check, reserved);
            v.user_only = true;
        }
        self.keys = [None; USER_VIEWS];
        self.fresh = [false; USER_VIEWS];
        self.last_used = [0; USER_VIEWS];
        self.clock = 0;
        self.current = None;
        self.reflected_fault = None;
        self.stats = ViewStats::default();
    }

    /// The view for `cr3`: the one holding it, else the least recently
    /// used, taken over. Returns it and whether it must be re-validated
    /// (its mappings walked against `cr3`'s tables) before use.
    pub fn select(&mut self, cr3: u64) -> (usize, bool) {
        self.clock += 1;
        self.stats.entries += 1;
        let found = self.keys.iter().position(|&k| k == Some(cr3));
        let n = match found {
            Some(n) => {
                self.stats.hits += 1;
                n
            }
            None => {
                self.stats.misses += 1;
                let mut victim = 0;
                for n in 1..USER_VIEWS {
                    if self.last_used[n] < self.last_used[victim] {
                        victim = n;
                    }
                }
                self.keys[victim] = Some(cr3);
                self.fresh[victim] = false;
                victim
            }
        };
        self.last_used[n] = self.clock;
        let stale = !self.fresh[n];
        if stale {
            self.stats.revalidations += 1;
        }
        self.fresh[n] = true;
        (n, stale)
    }

    /// A CR3 load: every view may be out of date now.
    pub fn cr3_loaded(&mut self) {
        self.fresh = [false; USER_VIEWS];
    }

    /// The view holding `cr3`'s translations, if any.
    pub fn holding(&mut self, cr3: u64) -> Option<&mut Vtlb<M>> {
        let n = self.keys.iter().position(|&k| k == Some(cr3))?;
        Some(&mut self.vtlbs[n])
    }

    /// Whether view `n` was entered since the last CR3 load.
    pub fn is_fresh(&self, n: usize) -> bool {
        self.fresh.get(n).copied().unwrap_or(false)
    }

    /// Mappings live in all the views.
    pub fn live(&self) -> usize {
        self.vtlbs.iter().map(|v| v.count).sum()
    }

    /// Each view with the CR3 it holds, for the end-of-run consistency
    /// check.
    pub fn each(&self) -> impl Iterator<Item = (usize, u64, &Vtlb<M>)> {
        self.keys
            .iter()
            .zip(&self.vtlbs)
            .enumerate()
            .filter_map(|(n, (k, v))| k.map(|k| (n, k, v)))
    }
}

/// #PF error code bits (Intel SDM vol. 3, 4.7).
pub const PF_PRESENT: u64 = 1;
pub const PF_WRITE: u64 = 2;
pub const PF_USER: u64 = 4;

/// What to do with a fault of a guest process (a fault in the user view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserFault {
    /// Map the page, writable or not, and resume the process.
    Map { writable: bool },
    /// Deliver #PF with this error code (CR2 the address) to the guest
    /// kernel, as hardware would at CPL 3.
    Reflect { error: u64 },
    /// The guest kernel let its process write the wedge's memory (its
    /// tables give a user page on the wedge area's frames): the guest ends,
    /// as when the kernel itself writes there.
    WedgeAliasWrite,
}

/// Judges a fault at `va` of a guest process: `walk` is the guest's tables'
/// translation of `va`, `write` whether the access wrote, `wedge_area` the
/// guest-physical range of the wedge's memory.
pub fn user_fault(
    va: u64,
    walk: Result<Translation, WalkFault>,
    write: bool,
    wedge_area: &Range<u64>,
) -> UserFault {
    let w = if write { PF_WRITE } else { 0 };
    // The wedge is in no user view, whatever the guest's tables say there
    // (they never map it: the VMM does, in the kernel view only).
    if (WEDGE_BASE..WEDGE_BASE + WEDGE_AREA).contains(&va) {
        return UserFault::Reflect {
            error: PF_USER | w | present(&walk),
        };
    }
    match walk {
        Ok(t) if !t.user => UserFault::Reflect {
            error: PF_PRESENT | PF_USER | w,
        },
        Ok(t) if write && !t.writable => UserFault::Reflect {
            error: PF_PRESENT | PF_USER | PF_WRITE,
        },
        Ok(t) if wedge_area.contains(&t.gpa) => {
            if write {
                UserFault::WedgeAliasWrite
            } else {
                UserFault::Map { writable: false }
            }
        }
        Ok(t) => UserFault::Map {
            writable: t.writable,
        },
        // A non-canonical address is #GP on hardware, not #PF; seL4 reports
        // it as a user exception, never as a VM fault, so it cannot come
        // here. Tables outside RAM read as not present (docs/vmm-core.md).
        Err(_) => UserFault::Reflect { error: PF_USER | w },
    }
}

fn present(walk: &Result<Translation, WalkFault>) -> u64 {
    if walk.is_ok() {
        PF_PRESENT
    } else {
        0
    }
}

#[cfg(any(test, feature = "replay"))]
impl<M: Mapper + Default> UserViews<M> {
    /// `UserViews` built in place on the heap (too large for a host
    /// thread's stack), with default mappers, cleared for `keep`.
    // Host only, built with the pinned toolchain (rust-toolchain.toml),
    // which has `Box::new_zeroed`.
    #[allow(clippy::incompatible_msrv)]
    pub fn boxed() -> Box<UserViews<M>> {
        let mut v: Box<core::mem::MaybeUninit<UserViews<M>>> = Box::new_zeroed();
        let p = v.as_mut_ptr();
        // SAFETY: `p` points to the box's memory, zeroed: every field is
        // integers, bools and arrays of them (zero is valid, and what
        // `UserViews::new` gives them) except those written here before
        // the box is read: each vTLB's mapper, statistics and strategy, the
        // keys and the current view.
        let mut views = unsafe {
            for n in 0..USER_VIEWS {
                let vtlb = core::ptr::addr_of_mut!((*p).vtlbs[n]);
                core::ptr::addr_of_mut!((*vtlb).mapper).write(M::default());
                core::ptr::addr_of_mut!((*vtlb).stats).write(Default::default());
                core::ptr::addr_of_mut!((*vtlb).strategy).write(VtlbStrategy::Keep);
            }
            core::ptr::addr_of_mut!((*p).keys).write([None; USER_VIEWS]);
            core::ptr::addr_of_mut!((*p).current).write(None);
            core::ptr::addr_of_mut!((*p).reflected_fault).write(None);
            core::ptr::addr_of_mut!((*p).stats).write(ViewStats::default());
            v.assume_init()
        };
        views.clear(VtlbStrategy::Keep, false, (0, 0));
        views
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::boxed::Box;

    pub(crate) fn boxed_views<M: Mapper + Default>() -> Box<UserViews<M>> {
        UserViews::boxed()
    }

    const WEDGE_GPA: Range<u64> = 0x3f0_0000..0x400_0000;

    fn t(gpa: u64, writable: bool, user: bool) -> Result<Translation, WalkFault> {
        Ok(Translation {
            gpa,
            writable,
            user,
        })
    }

    fn judge(va: u64, walk: Result<Translation, WalkFault>, write: bool) -> UserFault {
        user_fault(va, walk, write, &WEDGE_GPA)
    }

    #[test]
    fn user_pages_map_with_the_tables_rights() {
        let va = 0x100_0000_0000;
        assert_eq!(
            judge(va, t(0x9000, true, true), true),
            UserFault::Map { writable: true }
        );
        assert_eq!(
            judge(va, t(0x9000, true, true), false),
            UserFault::Map { writable: true }
        );
        assert_eq!(
            judge(va, t(0x9000, false, true), false),
            UserFault::Map { writable: false }
        );
    }

    #[test]
    fn supervisor_pages_and_read_only_writes_are_the_process_s_pf() {
        let va = 0x20_0000;
        // The guest kernel's own pages (U clear somewhere on the way).
        assert_eq!(
            judge(va, t(0x20_0000, true, false), false),
            UserFault::Reflect { error: 5 }
        );
        assert_eq!(
            judge(va, t(0x20_0000, true, false), true),
            UserFault::Reflect { error: 7 }
        );
        // Copy-on-write: a user page the tables keep read-only.
        assert_eq!(
            judge(0x100_0000_0000, t(0x9000, false, true), true),
            UserFault::Reflect { error: 7 }
        );
        // Not present: demand paging in the guest kernel.
        let missing = Err(WalkFault::NotPresent { level: 1 });
        assert_eq!(
            judge(0x100_4000_0000, missing, false),
            UserFault::Reflect { error: 4 }
        );
        assert_eq!(
            judge(0x100_4000_0000, missing, true),
            UserFault::Reflect { error: 6 }
        );
    }

    #[test]
    fn the_wedge_is_in_no_user_view() {
        // Even if the guest's tables gave its process a user page there.
        for va in [WEDGE_BASE, WEDGE_BASE + 0x1234, WEDGE_BASE + WEDGE_AREA - 1] {
            assert_eq!(
                judge(va, t(WEDGE_GPA.start, true, true), false),
                UserFault::Reflect { error: 5 }
            );
            assert_eq!(
                judge(va, Err(WalkFault::NotPresent { level: 4 }), true),
                UserFault::Reflect { error: 6 }
            );
        }
        // Just past it, an ordinary user page.
        assert_eq!(
            judge(WEDGE_BASE + WEDGE_AREA, t(0x9000, true, true), true),
            UserFault::Map { writable: true }
        );
    }

    #[test]
    fn the_wedge_s_memory_given_to_a_process_is_read_only_and_a_write_ends_the_guest() {
        let va = 0x100_0000_0000;
        let alias = t(WEDGE_GPA.start + 0x5000, true, true);
        assert_eq!(judge(va, alias, false), UserFault::Map { writable: false });
        assert_eq!(judge(va, alias, true), UserFault::WedgeAliasWrite);
        // The page below the wedge's memory is the guest's own.
        let below = t(WEDGE_GPA.start - 0x1000, true, true);
        assert_eq!(judge(va, below, true), UserFault::Map { writable: true });
    }
}
