//! Which guests have ended, and with what: the supervisor's bookkeeping of
//! the VMMs' reports, free of seL4 so it is tested on the host.

use core::fmt;

use previrt_protocol::vmm_layout::{MAX_SYSTEM_GUESTS, SUPERVISOR_ENDED_LABEL};

/// What a report changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// Guest `guest` ended with `value`; `left` guests still run.
    Ended {
        guest: usize,
        value: u8,
        left: usize,
    },
    /// The last guest ended: the machine ends with `value` (the first
    /// failure's, in guest order, or 0).
    AllEnded { value: u8 },
}

/// A message that is no valid report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportError {
    /// The badge names no guest of this system.
    Badge(u64),
    /// Not the "ended" label with one word.
    Message { label: u64, length: usize },
    /// The guest had already reported.
    Twice(usize),
    /// The exit value does not fit the exit port.
    Value(u64),
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Badge(b) => write!(f, "badge {b:#x} names no guest"),
            ReportError::Message { label, length } => {
                write!(f, "label {label} with {length} words is no report")
            }
            ReportError::Twice(g) => write!(f, "guest {g} reported its end twice"),
            ReportError::Value(v) => write!(f, "exit value {v:#x} is over 255"),
        }
    }
}

/// The guests' ends so far.
#[derive(Debug)]
pub struct Ledger {
    count: usize,
    ended: [Option<u8>; MAX_SYSTEM_GUESTS],
}

impl Ledger {
    pub const fn new(count: usize) -> Ledger {
        Ledger {
            count,
            ended: [None; MAX_SYSTEM_GUESTS],
        }
    }

    /// A VMM's message: `badge` (guest number + 1), label, length and
    /// first word.
    pub fn report(
        &mut self,
        badge: u64,
        label: u64,
        length: usize,
        word: u64,
    ) -> Result<Report, ReportError> {
        let guest = match badge {
            b if b >= 1 && b <= self.count as u64 => (b - 1) as usize,
            b => return Err(ReportError::Badge(b)),
        };
        if label != SUPERVISOR_ENDED_LABEL || length != 1 {
            return Err(ReportError::Message { label, length });
        }
        let value = u8::try_from(word).map_err(|_| ReportError::Value(word))?;
        let slot = &mut self.ended[guest];
        if slot.is_some() {
            return Err(ReportError::Twice(guest));
        }
        *slot = Some(value);
        let ended = &self.ended[..self.count];
        let left = ended.iter().filter(|e| e.is_none()).count();
        if left > 0 {
            return Ok(Report::Ended { guest, value, left });
        }
        let value = ended
            .iter()
            .flatten()
            .copied()
            .find(|&v| v != 0)
            .unwrap_or(0);
        Ok(Report::AllEnded { value })
    }
}
