//! The pass on arbitrary bytes: it must return (Ok or a located error),
//! never panic or loop, and only ever add to its input.
#![no_main]

use afterburner::pass::{run, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = run(data, &Config::default()) {
        assert!(out.text.len() >= data.len());
        if out.sites.is_empty() && out.opt_out.is_empty() {
            // Without sites or markers the text is left alone (mode
            // markers may still be added for .code16/.code32).
            assert!(out.text == data || out.text.len() > data.len());
        }
    }
});
