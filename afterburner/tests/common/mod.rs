//! Helpers shared by the integration tests: run `as`, decode code.
#![allow(dead_code)]

use afterburner::{audit, elf, pass};
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};
use std::path::Path;
use std::process::Command;

/// Assembles `text` with the system `as --64`; `Err` holds its messages.
pub fn assemble(text: &[u8]) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let src = dir.path().join("in.s");
    let obj = dir.path().join("out.o");
    std::fs::write(&src, text).map_err(|e| e.to_string())?;
    let out = Command::new("as")
        .arg("--64")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .map_err(|e| format!("cannot run as: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    std::fs::read(&obj).map_err(|e| e.to_string())
}

/// Runs the pass with default sizes; panics with the message on error.
pub fn afterburn(text: &str) -> pass::Output {
    pass::run(text.as_bytes(), &pass::Config::default())
        .unwrap_or_else(|e| panic!("pass failed: {e}\n{text}"))
}

/// Pass, assemble, audit: returns the image and report.
pub fn burn_and_audit(text: &str) -> (pass::Output, elf::ElfImage, audit::Report) {
    let out = afterburn(text);
    let obj = assemble(&out.text).unwrap_or_else(|e| {
        panic!(
            "as rejected the padded output: {e}\n{}",
            String::from_utf8_lossy(&out.text)
        )
    });
    let image = elf::ElfImage::parse(&obj).expect("as wrote an ELF file");
    let report = audit::audit(&image);
    (out, image, report)
}

/// The `.text` bytes of an object file.
pub fn text_of(obj: &[u8]) -> Vec<u8> {
    let image = elf::ElfImage::parse(obj).expect("ELF");
    image
        .code
        .iter()
        .find(|c| c.name == ".text")
        .map(|c| c.data.clone())
        .unwrap_or_default()
}

/// Decodes 64-bit code linearly.
pub fn decode_all(code: &[u8]) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut v = Vec::new();
    while d.can_decode() {
        v.push(d.decode());
    }
    v
}

/// Decoded instructions without NOPs.
pub fn without_nops(v: &[Instruction]) -> Vec<Instruction> {
    v.iter()
        .copied()
        .filter(|i| i.mnemonic() != Mnemonic::Nop)
        .collect()
}

/// Path of the `afterburn` binary under test.
pub fn afterburn_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_afterburn"))
}
