//! The guest's pre-virtualized sites, read from the `.afterburn` records in
//! guest memory (docs/afterburn-format.md), to name what the guest stopped
//! at. The format is the `afterburn-format` crate the afterburner writes
//! it with.

use afterburn_format::{walk_records, Kind, MARKER_BASE};

const MAX_SITES: usize = 4096;

pub struct Sites {
    /// (address, site length, kind number), in record order.
    sites: [(u64, u8, u16); MAX_SITES],
    pub count: usize,
    /// Sites beyond MAX_SITES, not kept.
    pub dropped: usize,
}

impl core::fmt::Debug for Sites {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sites")
            .field("count", &self.count)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl Sites {
    pub const fn empty() -> Sites {
        Sites {
            sites: [(0, 0, 0); MAX_SITES],
            count: 0,
            dropped: 0,
        }
    }

    /// Sites from `(address, site length, kind)` triples (tests).
    #[cfg(test)]
    pub(crate) fn set(&mut self, sites: &[(u64, u8, Kind)]) {
        for (slot, &(address, len, kind)) in self.sites.iter_mut().zip(sites) {
            *slot = (address, len, kind.number());
        }
        self.count = sites.len().min(MAX_SITES);
    }

    /// Reads the records of a `.afterburn` section (already in guest memory
    /// with linked addresses). A malformed section yields an error message.
    pub fn read(&mut self, section: &[u8]) -> Result<(), &'static str> {
        let (mut count, mut dropped) = (0, 0);
        let sites = &mut self.sites;
        walk_records(section, |_, record| {
            if record.kind >= MARKER_BASE {
                return;
            }
            if count < MAX_SITES {
                sites[count] = (record.address, record.site_len, record.kind);
                count += 1;
            } else {
                dropped += 1;
            }
        })
        .map_err(|_| "the .afterburn section is malformed")?;
        self.count = count;
        self.dropped = dropped;
        Ok(())
    }

    /// The kind of the site that covers `rip`, if any.
    /// Whether a site starts at `rip` (where the wedge put its call) whose
    /// instruction touches no memory but the virtual CPU, so the wedge can
    /// run it with the stack unwritable: those kernels run on a process's
    /// stack on their way in and out (`swapgs`, `sysretq`, CR3 and MSR
    /// moves, `cli`/`sti`). One that pushes or pops (`pushf`, `iretq`, ...)
    /// would fault in the wedge instead: its fault stays the guest's.
    pub fn runs_without_stack_at(&self, rip: u64) -> bool {
        self.sites[..self.count].iter().any(|&(address, _, kind)| {
            address == rip
                && matches!(
                    Kind::from_number(kind),
                    Some(
                        Kind::Swapgs
                            | Kind::Sysret
                            | Kind::MovToCr
                            | Kind::MovFromCr
                            | Kind::Rdmsr
                            | Kind::Wrmsr
                            | Kind::Cli
                            | Kind::Sti
                    )
                )
        })
    }

    pub fn kind_at(&self, rip: u64) -> Option<&'static str> {
        self.sites[..self.count]
            .iter()
            .find(|(address, len, _)| rip >= *address && rip < address + u64::from(*len))
            .and_then(|&(_, _, kind)| Kind::from_number(kind))
            .map(Kind::name)
    }
}

/// The name of `.afterburn` kind `number` (`?` for one this VMM does not
/// know: the counts come from guest memory).
pub fn kind_name(number: u16) -> &'static str {
    Kind::from_number(number).map_or("?", Kind::name)
}
