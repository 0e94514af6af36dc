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
    /// The last guest, `guest`, ended with `value`: the machine ends with
    /// `machine` (the first failure's, in guest order, or 0).
    AllEnded {
        guest: usize,
        value: u8,
        machine: u8,
    },
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
        let machine = ended
            .iter()
            .flatten()
            .copied()
            .find(|&v| v != 0)
            .unwrap_or(0);
        Ok(Report::AllEnded {
            guest,
            value,
            machine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_report_ends_the_run_with_the_first_failure() {
        let mut ledger = Ledger::new(3);
        let ended = |ledger: &mut Ledger, badge, value| {
            ledger.report(badge, SUPERVISOR_ENDED_LABEL, 1, value)
        };
        assert_eq!(
            ended(&mut ledger, 2, 0),
            Ok(Report::Ended {
                guest: 1,
                value: 0,
                left: 2
            })
        );
        assert_eq!(
            ended(&mut ledger, 3, 1),
            Ok(Report::Ended {
                guest: 2,
                value: 1,
                left: 1
            })
        );
        assert_eq!(ended(&mut ledger, 3, 0), Err(ReportError::Twice(2)));
        assert_eq!(
            ended(&mut ledger, 1, 0),
            Ok(Report::AllEnded {
                guest: 0,
                value: 0,
                machine: 1
            })
        );
    }

    #[test]
    fn bad_reports_are_refused_and_change_nothing() {
        let mut ledger = Ledger::new(2);
        assert_eq!(
            ledger.report(0, SUPERVISOR_ENDED_LABEL, 1, 0),
            Err(ReportError::Badge(0))
        );
        assert_eq!(
            ledger.report(3, SUPERVISOR_ENDED_LABEL, 1, 0),
            Err(ReportError::Badge(3))
        );
        assert_eq!(
            ledger.report(1, 7, 1, 0),
            Err(ReportError::Message {
                label: 7,
                length: 1
            })
        );
        assert_eq!(
            ledger.report(1, SUPERVISOR_ENDED_LABEL, 2, 0),
            Err(ReportError::Message {
                label: SUPERVISOR_ENDED_LABEL,
                length: 2
            })
        );
        assert_eq!(
            ledger.report(1, SUPERVISOR_ENDED_LABEL, 1, 256),
            Err(ReportError::Value(256))
        );
        assert_eq!(
            ledger.report(1, SUPERVISOR_ENDED_LABEL, 1, 0),
            Ok(Report::Ended {
                guest: 0,
                value: 0,
                left: 1
            })
        );
        assert_eq!(
            ledger.report(2, SUPERVISOR_ENDED_LABEL, 1, 0),
            Ok(Report::AllEnded {
                guest: 1,
                value: 0,
                machine: 0
            })
        );
    }
}
