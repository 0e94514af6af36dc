//! The ELF reader and the audit on arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = afterburner::elf::ElfImage::parse(data) {
        let _ = afterburner::audit::audit(&image);
        let _ = afterburner::sites::list(&image);
    }
});
