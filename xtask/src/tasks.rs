//! Building the tasks that run on seL4.

use std::path::PathBuf;
use std::process::Command;

use crate::paths;
use crate::process;

pub const TARGET: &str = "x86_64-unknown-none";

/// Crates built only for seL4 (not host default members).
pub const SEL4_CRATES: &[&str] = &[
    "sel4-selftest",
    "capdl-loader",
    "capdl-test-task",
    "vmm-server",
];
/// no_std libraries that must also build for seL4.
pub const NO_STD_LIBS: &[&str] = &["previrt-sel4-sys", "previrt-sel4", "wedge-l4"];

/// Builds the root task (today: the kernel-feature selftest) in release mode.
pub fn build_root_task() -> Result<PathBuf, String> {
    process::run_visible(
        Command::new(paths::cargo())
            .args([
                "build",
                "--quiet",
                "--release",
                "--target",
                TARGET,
                "-p",
                "sel4-selftest",
            ])
            .current_dir(paths::root()),
        "building the root task",
    )?;
    Ok(paths::target()
        .join(TARGET)
        .join("release")
        .join("sel4-selftest"))
}

/// Builds the `afterburn` tool (release: the pass runs over every guest file).
pub fn build_afterburn() -> Result<PathBuf, String> {
    process::run_visible(
        Command::new(paths::cargo())
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "afterburner",
                "--bin",
                "afterburn",
            ])
            .current_dir(paths::root()),
        "building afterburn",
    )?;
    Ok(paths::target().join("release").join("afterburn"))
}
