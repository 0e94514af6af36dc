//! Any bytes as the guest's image: the ELF reader returns errors, never
//! panics, and every segment it accepts has exactly its file bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::elf::Elf;

fuzz_target!(|data: &[u8]| {
    let Ok(elf) = Elf::parse(data) else {
        return;
    };
    for s in elf.segments().flatten() {
        if let Ok(bytes) = elf.segment_data(&s) {
            assert_eq!(bytes.len() as u64, s.file_size);
        }
    }
    let _ = elf.section(".afterburn");
    let _ = elf.entry();
    let _ = elf.pv_entry();
});
