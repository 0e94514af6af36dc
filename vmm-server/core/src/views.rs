//! Guest privilege on seL4 (docs/guest-processes.md): seL4 mappings have no
//! supervisor bit, so a guest process runs in a *user view*, an seL4 VSpace
//! of its own that holds only what the guest's page tables give user mode.
//! This module is that view's policy: for a fault there, what may be mapped
//! and with which rights, or the #PF the guest kernel must see, or why the
//! guest must end. (The kernel view's policy is the dispatch's, guest.rs.)
//! The views themselves — the second VSpace, the switch — are not built yet;
//! the policy is here to be tested first.

use core::ops::Range;

use previrt_protocol::{WEDGE_AREA, WEDGE_BASE};

use crate::walk::{Translation, WalkFault};

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

#[cfg(test)]
mod tests {
    use super::*;

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
