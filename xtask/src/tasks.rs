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
    "supervisor",
    "vmm-server",
    "wedge-sel4",
];
/// no_std libraries that must also build for seL4.
pub const NO_STD_LIBS: &[&str] = &[
    "afterburn-format",
    "previrt-sel4-sys",
    "previrt-sel4",
    "wedge-l4",
    "vmm-core",
    "vmm-devices",
    "previrt-protocol",
];

/// Builds `package`'s binary of the same name for seL4 (release), with
/// `env` set for its build script; returns the ELF's path.
pub fn build_sel4_binary(
    package: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<PathBuf, String> {
    let mut cmd = Command::new(paths::cargo());
    cmd.args([
        "build",
        "--quiet",
        "--release",
        "--target",
        TARGET,
        "-p",
        package,
    ])
    .current_dir(paths::root());
    for (key, value) in env {
        cmd.env(key, value);
    }
    process::run_visible(&mut cmd, &format!("building {package}"))?;
    Ok(paths::target().join(TARGET).join("release").join(package))
}

/// Builds the root task (today: the kernel-feature selftest).
pub fn build_root_task() -> Result<PathBuf, String> {
    build_sel4_binary("sel4-selftest", &[])
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
