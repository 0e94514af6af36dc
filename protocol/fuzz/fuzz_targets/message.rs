//! Any label, length and message registers, as a guest that bypasses the
//! wedge can send them: the VMM's decoder returns a typed error, never
//! panics, and whatever it accepts encodes back to the same registers (so
//! nothing the guest sent is silently dropped or reinterpreted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use previrt_protocol::{Reply, Request};

fuzz_target!(|data: &[u8]| {
    let word = |i: usize| -> u64 {
        let mut b = [0u8; 8];
        for (k, byte) in b.iter_mut().enumerate() {
            *byte = data.get(i * 8 + k).copied().unwrap_or(0);
        }
        u64::from_le_bytes(b)
    };
    let label = word(0);
    let length = (word(1) % 8) as usize;
    let mr = [word(2), word(3), word(4), word(5)];
    if let Ok(request) = Request::decode(label, length, mr) {
        let (l, encoded) = request.encode();
        assert_eq!(l as u64, label);
        assert_eq!(Request::decode(label, length, encoded), Ok(request));
    }
    let _ = Reply::decode(label, mr[0]);
});
