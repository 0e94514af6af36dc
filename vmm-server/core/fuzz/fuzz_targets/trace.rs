//! Any text as a recorded run's serial: the trace reader refuses it or
//! returns a whole trace (never panics); a trace it takes replays under
//! every strategy, checked, without a panic, and a trace cut before its
//! end record is never taken.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::replay::{replay, Trace};
use vmm_core::vtlb::VtlbStrategy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(trace) = Trace::parse(text) else {
        return;
    };
    // The end record is the last trace line: without it, refused.
    let last_line = text
        .rmatch_indices(vmm_core::trace::PREFIX)
        .map(|(at, _)| at)
        .find(|&at| at == 0 || text.as_bytes()[at - 1] == b'\n');
    if let Some(end) = last_line {
        assert!(Trace::parse(&text[..end]).is_err());
    }
    // Small RAM only: each replay allocates the guest's RAM.
    if trace.ram <= 4 << 20 {
        for strategy in VtlbStrategy::ALL {
            let _ = replay(&trace, strategy, true);
        }
    }
});
