//! Any bytes as guest RAM (the first 16 bytes: CR3 and the address): the
//! walk returns, and a translation it finds is a whole page inside RAM
//! that every address of the page shares; the packed upper levels a CR3
//! load keeps finish to the same translation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::ram::Ram;
use vmm_core::walk::{finish_walk, upper_levels, walk, Upper};

fuzz_target!(|data: &[u8]| {
    let Some((head, contents)) = data.split_first_chunk::<16>() else {
        return;
    };
    let cr3 = u64::from_le_bytes(head[..8].try_into().unwrap());
    let va = u64::from_le_bytes(head[8..].try_into().unwrap());
    // CR3 mostly inside the RAM, so that walks go somewhere.
    let cr3 = cr3 % 0x10_000;
    // An 8-byte aligned copy of the contents: RAM the walk reads.
    let mut words = vec![0u64; contents.len().div_ceil(8)];
    for (word, bytes) in words.iter_mut().zip(contents.chunks(8)) {
        let mut w = [0; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        *word = u64::from_le_bytes(w);
    }
    // SAFETY: `words` is this function's, read-write, at least
    // `contents.len()` bytes long, and outlives `ram`.
    let ram = unsafe { Ram::new(words.as_mut_ptr() as u64, contents.len() as u64) };
    let result = walk(&ram, cr3, va);
    if let Ok(t) = result {
        assert_eq!(t.gpa % 4096, 0);
        assert!(ram.contains(t.gpa, 4096));
        assert_eq!(walk(&ram, cr3, va & !0xfff), result);
        assert_eq!(walk(&ram, cr3, va | 0xfff), result);
    }
    let packed = Upper::pack(upper_levels(&ram, cr3, va));
    assert_eq!(
        finish_walk(&ram, Upper::unpack(packed), va).ok(),
        result.ok()
    );
});
