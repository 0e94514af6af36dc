//! Any bytes as the loader's input: the bundle reader and the spec reader
//! (both no_std, what the root task runs) return errors, never panic, and
//! everything they accept can be walked to the end.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = capdl::bundle::Bundle::parse(data) {
        for (_, bytes) in bundle.entries() {
            let _ = bytes.len();
        }
    }
    if let Ok(spec) = capdl::model::SpecReader::new(data) {
        let header = spec.header();
        assert_eq!(spec.objects().count() as u32, header.object_count);
        assert_eq!(spec.caps().count() as u32, header.cap_count);
        assert_eq!(spec.fills().count() as u32, header.fill_count);
        assert_eq!(spec.irqs().count() as u32, header.irq_count);
    }
});
