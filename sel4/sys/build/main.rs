//! Generates the seL4 bindings from the kernel's own interface files.
//!
//! Nothing numeric is typed by hand: invocation labels and syscall numbers
//! come from the interface XML, object types, error codes, fault-message
//! layouts and initial capability slots from libsel4's C headers, and the
//! message-info and fault-tag layouts from its bitfield (`.bf`) files — all
//! evaluated for previrt's kernel config (`sel4/kernel/config/autoconf.h`) by
//! the C preprocessor, exactly as the kernel build evaluates them.
//!
//! `cargo xtask test` cross-checks every generated number against the values
//! the compiled kernel itself uses (`xtask/src/bindings_check.rs`).

mod bitfield;
mod c_enums;
mod emit;
mod interface;
mod preprocess;
mod source;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: previrt-sel4-sys: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let config = manifest_dir.join("../kernel/config/autoconf.h");
    let config = config
        .canonicalize()
        .map_err(|e| format!("kernel config {}: {e}", config.display()))?;
    let kernel = source::locate()?;
    println!("cargo:rerun-if-changed={}", config.display());
    println!("cargo:rerun-if-changed=build");

    let cpp = preprocess::Preprocessor::new(&kernel, &config, &out_dir)?;
    let labels = interface::invocation_labels(&kernel, &cpp)?;
    let syscalls = interface::syscalls(&kernel, &cpp)?;
    let enums = c_enums::libsel4_enums(&cpp)?;
    let config_values = c_enums::config_values(&cpp)?;
    let layouts = bitfield::layouts(&kernel, &cpp)?;

    let code = emit::rust(&labels, &syscalls, &enums, &config_values, &layouts);
    let target = out_dir.join("generated.rs");
    std::fs::write(&target, code).map_err(|e| format!("writing {}: {e}", target.display()))?;
    // Host build tools (`cargo xtask`) build the kernel from the very source
    // these bindings were generated from.
    println!(
        "cargo:rustc-env=PREVIRT_SEL4_SOURCE_DIR={}",
        kernel.root.display()
    );
    for file in kernel.inputs() {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}
