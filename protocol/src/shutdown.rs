//! Why the wedge stopped the guest: the reason a `Shutdown` request
//! carries. The wedge on seL4 (`wedge-l4/sel4`) sends these codes; the VMM
//! names them when it states the guest's termination. One enum for both
//! sides, so no reason is sent that the VMM cannot name.

/// Every reason the wedge can stop the guest for, with its wire code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ShutdownReason {
    BadBootMagic = 1,
    RecordsUnparsable = 2,
    SitesNotRewritable = 3,
    EnteredBeforeStart = 4,
    ReturnAddressUnreadable = 5,
    CallFromOutsideSite = 6,
    SiteNotEmulated = 7,
    WedgePanicked = 8,
    TripleFault = 9,
    ReflectionUndeliverable = 10,
    InterruptUndeliverable = 11,
    UserModeRefused = 12,
}

impl ShutdownReason {
    /// Every reason, in code order.
    pub const ALL: [ShutdownReason; 12] = [
        ShutdownReason::BadBootMagic,
        ShutdownReason::RecordsUnparsable,
        ShutdownReason::SitesNotRewritable,
        ShutdownReason::EnteredBeforeStart,
        ShutdownReason::ReturnAddressUnreadable,
        ShutdownReason::CallFromOutsideSite,
        ShutdownReason::SiteNotEmulated,
        ShutdownReason::WedgePanicked,
        ShutdownReason::TripleFault,
        ShutdownReason::ReflectionUndeliverable,
        ShutdownReason::InterruptUndeliverable,
        ShutdownReason::UserModeRefused,
    ];

    /// The code a `Shutdown` request carries.
    pub const fn code(self) -> u64 {
        self as u64
    }

    /// The reason with this code, if the wedge defines one.
    pub fn from_code(code: u64) -> Option<ShutdownReason> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// What it means, for the VMM's log.
    pub const fn text(self) -> &'static str {
        match self {
            ShutdownReason::BadBootMagic => "its boot block lacks the magic number",
            ShutdownReason::RecordsUnparsable => "the guest's .afterburn records do not parse",
            ShutdownReason::SitesNotRewritable => "the guest's sites cannot be rewritten",
            ShutdownReason::EnteredBeforeStart => "it was entered before it had started",
            ShutdownReason::ReturnAddressUnreadable => "a site call's return address is unreadable",
            ShutdownReason::CallFromOutsideSite => {
                "a call into the wedge from outside any rewritten site"
            }
            ShutdownReason::SiteNotEmulated => {
                "a site could not be emulated (a request was refused, or guest memory faulted)"
            }
            ShutdownReason::WedgePanicked => "the wedge panicked",
            ShutdownReason::TripleFault => {
                "triple fault: neither an exception nor the double fault it became could be delivered"
            }
            ShutdownReason::ReflectionUndeliverable => {
                "a reflected exception could not be delivered into the guest"
            }
            ShutdownReason::InterruptUndeliverable => {
                "a virtual interrupt could not be delivered through the guest's IDT (an absent or malformed gate, or an unwritable stack)"
            }
            ShutdownReason::UserModeRefused => {
                "the guest kernel returned to user mode (iretq to CPL 3, or sysret), and the VMM answered instead of starting the process in a user view"
            }
        }
    }
}

/// What `Shutdown { reason }` means, for the VMM's log; a code the wedge
/// does not define says so.
pub fn shutdown_reason(code: u64) -> &'static str {
    ShutdownReason::from_code(code)
        .map_or("a reason the wedge does not define", ShutdownReason::text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_and_has_its_own_text() {
        let unknown = shutdown_reason(0);
        for (i, r) in ShutdownReason::ALL.iter().enumerate() {
            assert_eq!(r.code(), i as u64 + 1, "codes are dense from 1");
            assert_eq!(ShutdownReason::from_code(r.code()), Some(*r));
            assert_ne!(shutdown_reason(r.code()), unknown);
            for other in &ShutdownReason::ALL[..i] {
                assert_ne!(r.text(), other.text());
            }
        }
        assert_eq!(ShutdownReason::from_code(0), None);
        assert_eq!(ShutdownReason::from_code(13), None);
        assert_eq!(shutdown_reason(u64::MAX), unknown);
    }
}
