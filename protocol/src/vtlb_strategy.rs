//! How the VMM's virtual TLB keeps the guest's seL4 mappings consistent
//! with the guest's page tables: chosen per run (`system.toml`'s
//! `[vmm] vtlb`, `cargo xtask run --vtlb`), passed to the VMM in its start
//! registers (docs/vtlb.md has each strategy's consistency argument).

/// A vTLB strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum VtlbStrategy {
    /// A CR3 load removes every mapping.
    Flush = 0,
    /// A CR3 load keeps exactly the mappings the new tables justify.
    #[default]
    Keep = 1,
    /// As `Keep`, and a fault also maps the present neighbours of the
    /// faulting page in the same page table (an aligned block of eight).
    Prefetch = 2,
    /// As `Keep`, with the guest's last-level page tables mapped read-only:
    /// a write to one is trapped and drops the mappings made from it, and a
    /// CR3 load keeps the mappings of tables written since without reading
    /// a single entry.
    WriteProtect = 3,
    /// Deliberately wrong, for the checker: a CR3 load keeps every
    /// mapping, justified or not.
    BrokenKeepAll = 4,
}

impl VtlbStrategy {
    pub const ALL: [VtlbStrategy; 5] = [
        VtlbStrategy::Flush,
        VtlbStrategy::Keep,
        VtlbStrategy::Prefetch,
        VtlbStrategy::WriteProtect,
        VtlbStrategy::BrokenKeepAll,
    ];

    /// Its name in `system.toml`, on the command line and in results.
    pub const fn name(self) -> &'static str {
        match self {
            VtlbStrategy::Flush => "flush",
            VtlbStrategy::Keep => "keep",
            VtlbStrategy::Prefetch => "prefetch",
            VtlbStrategy::WriteProtect => "write-protect",
            VtlbStrategy::BrokenKeepAll => "broken-keep-all",
        }
    }

    pub fn from_name(name: &str) -> Option<VtlbStrategy> {
        VtlbStrategy::ALL.into_iter().find(|s| s.name() == name)
    }

    pub const fn code(self) -> u8 {
        self as u8
    }

    pub const fn from_code(code: u8) -> Option<VtlbStrategy> {
        match code {
            0 => Some(VtlbStrategy::Flush),
            1 => Some(VtlbStrategy::Keep),
            2 => Some(VtlbStrategy::Prefetch),
            3 => Some(VtlbStrategy::WriteProtect),
            4 => Some(VtlbStrategy::BrokenKeepAll),
            _ => None,
        }
    }

    /// Whether it is meant to keep the invariant (the broken one is not).
    pub const fn is_correct(self) -> bool {
        !matches!(self, VtlbStrategy::BrokenKeepAll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip_and_are_unique() {
        for s in VtlbStrategy::ALL {
            assert_eq!(VtlbStrategy::from_name(s.name()), Some(s));
            assert_eq!(VtlbStrategy::from_code(s.code()), Some(s));
        }
        assert_eq!(VtlbStrategy::from_code(5), None);
        assert_eq!(VtlbStrategy::from_name("Keep"), None);
        assert_eq!(VtlbStrategy::default(), VtlbStrategy::Keep);
    }
}
