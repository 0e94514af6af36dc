//! Property: the pass terminates without panicking on arbitrary input, and
//! whatever it accepts it either leaves alone or only adds to.

use proptest::prelude::*;

/// Fragments that steer random text towards the parser's corners.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("cli".to_string()),
        Just("sti".to_string()),
        Just("rep".to_string()),
        Just("mov %ax,%ss".to_string()),
        Just("movq %rax,%cr3".to_string()),
        Just("# afterburn: off".to_string()),
        Just("# afterburn: on".to_string()),
        Just(".macro m".to_string()),
        Just(".endm".to_string()),
        Just(".code32".to_string()),
        Just(".end".to_string()),
        Just(".section .text".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("/*".to_string()),
        Just("*/".to_string()),
        Just(";".to_string()),
        Just(":".to_string()),
        Just("\n".to_string()),
        Just("\\".to_string()),
        "[ -~]{0,12}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(parts in proptest::collection::vec(fragment(), 0..40), seps in proptest::collection::vec(0u8..3, 40)) {
        let mut text = String::new();
        for (p, s) in parts.iter().zip(seps.iter()) {
            text.push_str(p);
            text.push_str(match s { 0 => " ", 1 => "\n", _ => "; " });
        }
        if let Ok(out) = afterburner::pass::run(text.as_bytes(), &afterburner::pass::Config::default()) {
            // Output holds the input's bytes, in order, with insertions only.
            let mut it = out.text.iter();
            for b in text.as_bytes() {
                prop_assert!(it.any(|o| o == b), "input byte lost");
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = afterburner::pass::run(&bytes, &afterburner::pass::Config::default());
        // The audit's ELF reader must reject junk, not crash.
        let _ = afterburner::elf::ElfImage::parse(&bytes).map(|i| afterburner::audit::audit(&i));
    }
}

/// Regression: an ELF file found by `cargo fuzz run audit` whose records
/// point at offsets that overflowed address arithmetic in the audit (its
/// machine field set to x86-64, which the reader now requires).
#[test]
fn fuzz_found_elf_does_not_panic_the_audit() {
    let bytes = include_bytes!("data/fuzz-audit-overflow.bin");
    let image = afterburner::elf::ElfImage::parse(bytes).expect("the reproducer parses");
    let report = afterburner::audit::audit(&image);
    assert!(!report.is_clean(), "its records point outside code");
}
