//! Why the wedge stopped the guest: the reason a `Shutdown` request
//! carries. The wedge on seL4 (`wedge-l4/sel4`) sends these numbers; the
//! VMM names them when it states the guest's termination.

/// What `Shutdown { reason }` means, for the VMM's log.
pub fn shutdown_reason(reason: u64) -> &'static str {
    match reason {
        1 => "its boot block lacks the magic number",
        2 => "the guest's .afterburn records do not parse",
        3 => "the guest's sites cannot be rewritten",
        4 => "it was entered before it had started",
        5 => "a site call's return address is unreadable",
        6 => "a call into the wedge from outside any rewritten site",
        7 => "a site could not be emulated (a request was refused, or guest memory faulted)",
        8 => "the wedge panicked",
        9 => "triple fault: neither an exception nor the double fault it became could be delivered",
        10 => "a reflected exception could not be delivered into the guest",
        _ => "a reason the wedge does not define",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_the_wedge_sends_has_a_name() {
        let unknown = shutdown_reason(0);
        for reason in 1..=10 {
            assert_ne!(shutdown_reason(reason), unknown, "{reason}");
        }
        assert_eq!(shutdown_reason(11), unknown);
    }
}
