//! Embeds the bundle (serialized spec + images) named by PREVIRT_CAPDL_BUNDLE
//! (`cargo xtask` writes it) and links with the root-task script.
use std::path::PathBuf;

fn main() {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-env-changed=PREVIRT_CAPDL_BUNDLE");
    let target = out.join("bundle.bin");
    match std::env::var_os("PREVIRT_CAPDL_BUNDLE") {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            if let Err(e) = std::fs::copy(&path, &target) {
                panic!("PREVIRT_CAPDL_BUNDLE={}: {e}", path.display());
            }
        }
        // Without a bundle (a plain `cargo build`) the loader carries none
        // and says so at run time.
        None => std::fs::write(&target, b"").expect("writing an empty bundle"),
    }
    if std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-none") {
        println!(
            "cargo:rustc-link-arg-bins=-T{}",
            dir.join("../../sel4/root-task.ld").display()
        );
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
    println!("cargo:rerun-if-changed=../../sel4/root-task.ld");
}
