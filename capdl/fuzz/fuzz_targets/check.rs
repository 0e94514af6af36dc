//! Any text: the checker returns (no panic, no hang), and whatever it
//! accepts prints to a canonical form that checks to the same spec, and
//! survives the postcard round trip through the loader's reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = capdl::check(text) {
        let printed = capdl::print::print(&spec);
        let again = capdl::check(&printed).expect("canonical form checks");
        assert_eq!(again, spec);
        let bytes = capdl::encode::encode(&spec).expect("encodes");
        assert_eq!(capdl::encode::decode(&bytes).expect("decodes"), spec);
    }
});
