//! The tools the build needs, installed from Debian's packages when missing.
//!
//! | tool | Debian package | why |
//! |---|---|---|
//! | qemu-system-x86_64 | qemu-system-x86 | boots seL4 and the tasks |
//! | python3 + ply, six, tempita | python3-ply python3-six python3-tempita | the kernel's code generators |
//! | xmllint | libxml2-utils | the kernel build validates its interface XML |
//! | gcc, make | gcc make | the kernel build |
//! | objcopy | binutils | wraps the kernel as a 32-bit multiboot ELF |
//! | patch | patch | applies the project's kernel patches |

use std::path::PathBuf;
use std::process::Command;

use crate::paths;

/// What later steps need from the host.
#[derive(Debug, Clone)]
pub struct Tools {
    /// A folder to put first on PATH: its `python` is a python3 with the
    /// kernel generators' modules (they start with `#!/usr/bin/env python`).
    pub python_shim: PathBuf,
}

struct Need {
    /// How to tell it is there.
    present: fn() -> bool,
    what: &'static str,
    packages: &'static [&'static str],
}

const PYTHON_CANDIDATES: &[&str] = &["/usr/bin/python3", "python3"];
const PYTHON_MODULES: &str = "import ply, six, tempita";

fn has(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn python() -> Option<&'static str> {
    PYTHON_CANDIDATES.iter().copied().find(|p| {
        Command::new(p)
            .args(["-c", PYTHON_MODULES])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

const NEEDS: &[Need] = &[
    Need {
        present: || has("qemu-system-x86_64", "--version"),
        what: "qemu-system-x86_64",
        packages: &["qemu-system-x86"],
    },
    Need {
        present: || python().is_some(),
        what: "python3 with ply, six and tempita",
        packages: &["python3", "python3-ply", "python3-six", "python3-tempita"],
    },
    Need {
        present: || has("xmllint", "--version"),
        what: "xmllint",
        packages: &["libxml2-utils"],
    },
    Need {
        present: || has("gcc", "--version"),
        what: "gcc",
        packages: &["gcc"],
    },
    Need {
        present: || has("make", "--version"),
        what: "make",
        packages: &["make"],
    },
    Need {
        present: || has("objcopy", "--version"),
        what: "objcopy",
        packages: &["binutils"],
    },
    Need {
        present: || has("patch", "--version"),
        what: "patch",
        packages: &["patch"],
    },
];

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `rustup KIND list --installed --toolchain TOOLCHAIN`.
fn rustup_installed(kind: &str, toolchain: &str) -> Result<String, String> {
    let out = Command::new("rustup")
        .args([kind, "list", "--installed", "--toolchain", toolchain])
        .output()
        .map_err(|e| format!("rustup {kind} list: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rustup {kind} list --installed --toolchain {toolchain}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Which of `wanted` `installed` (rustup's list) lacks; components are
/// listed with the host's triple (`clippy-x86_64-unknown-linux-gnu`).
fn lacking<'a>(wanted: &[&'a str], installed: &str) -> Vec<&'a str> {
    wanted
        .iter()
        .copied()
        .filter(|w| {
            !installed
                .lines()
                .any(|l| l.trim() == *w || l.trim().starts_with(&format!("{w}-")))
        })
        .collect()
}

/// `rustup KIND add --toolchain TOOLCHAIN WHAT...`, said in one line.
fn rustup_add(kind: &str, toolchain: &str, what: &[&str]) -> Result<(), String> {
    eprintln!(
        "xtask: adding Rust {kind} {} to toolchain {toolchain} (rustup {kind} add)",
        what.join(", ")
    );
    let ok = Command::new("rustup")
        .args([kind, "add", "--toolchain", toolchain])
        .args(what)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "rustup {kind} add --toolchain {toolchain} {} failed",
            what.join(" ")
        ))
    }
}

/// The Rust target every seL4 task is built for, and the components the
/// lints use (the same lists as `rust-toolchain.toml`).
const RUST_TARGETS: &[&str] = &["x86_64-unknown-none"];
const RUST_COMPONENTS: &[&str] = &["rustfmt", "clippy"];

/// rustup does not add a toolchain file's `targets` and `components` to a
/// toolchain that is already installed without them, so a machine whose
/// image ships the pinned toolchain bare fails with "can't find crate for
/// core". Ask rustup what the toolchain in use has and add what is missing.
pub fn ensure_rust() -> Result<(), String> {
    // Set by rustup's proxy for the cargo that runs us; otherwise ask rustup
    // which toolchain this folder uses. Without rustup (a distribution's
    // cargo) there is nothing we can add.
    let toolchain = match std::env::var("RUSTUP_TOOLCHAIN") {
        Ok(t) if !t.is_empty() => t,
        _ => match Command::new("rustup")
            .args(["show", "active-toolchain"])
            .current_dir(paths::root())
            .output()
        {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
            _ => return Ok(()),
        },
    };
    let missing_targets = lacking(RUST_TARGETS, &rustup_installed("target", &toolchain)?);
    let missing_components = lacking(RUST_COMPONENTS, &rustup_installed("component", &toolchain)?);
    for (kind, missing) in [
        ("target", &missing_targets),
        ("component", &missing_components),
    ] {
        if !missing.is_empty() {
            rustup_add(kind, &toolchain, missing)?;
        }
    }
    Ok(())
}

/// Miri (nightly) for the wedge core's host tests: the toolchain must be
/// there (this machine's image ships one); its `miri` and `rust-src`
/// components are added when missing.
pub fn ensure_miri() -> Result<(), String> {
    let installed = rustup_installed("component", "nightly")
        .map_err(|e| format!("no nightly toolchain for Miri: {e}"))?;
    let missing = lacking(&["miri", "rust-src"], &installed);
    if missing.is_empty() {
        return Ok(());
    }
    rustup_add("component", "nightly", &missing)
}

/// Installs Debian `packages` (for the tools `names`) with apt-get when we
/// are root, or says the command to run; `still_missing` checks afterwards.
pub fn install(
    names: &[&str],
    packages: &[&str],
    still_missing: impl Fn() -> Vec<&'static str>,
) -> Result<(), String> {
    let command = format!(
        "apt-get update && apt-get install -y {}",
        packages.join(" ")
    );
    if !(is_root() && has("apt-get", "--version")) {
        return Err(format!(
            "missing: {}. Install them with:\n    sudo {command}",
            names.join(", ")
        ));
    }
    eprintln!(
        "xtask: installing {} ({})",
        names.join(", "),
        packages.join(" ")
    );
    let ok = Command::new("sh")
        .args(["-c", &command])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    let still = still_missing();
    if !ok || !still.is_empty() {
        return Err(format!(
            "installing packages failed; still missing: {}. Tried:\n    {command}",
            still.join(", ")
        ));
    }
    Ok(())
}

/// Makes sure every tool is there, installing what is missing when we can.
pub fn ensure() -> Result<Tools, String> {
    ensure_rust()?;
    let missing: Vec<&Need> = NEEDS.iter().filter(|n| !(n.present)()).collect();
    if !missing.is_empty() {
        let mut packages: Vec<&str> = missing
            .iter()
            .flat_map(|n| n.packages.iter().copied())
            .collect();
        packages.dedup();
        let names: Vec<&str> = missing.iter().map(|n| n.what).collect();
        install(&names, &packages, || {
            NEEDS
                .iter()
                .filter(|n| !(n.present)())
                .map(|n| n.what)
                .collect()
        })?;
    }
    let python = python().ok_or("no python3 with ply, six and tempita")?;
    let python = which(python).ok_or_else(|| format!("{python} is not on PATH"))?;
    let shim = paths::kernel_build().join("bin");
    std::fs::create_dir_all(&shim).map_err(|e| format!("{}: {e}", shim.display()))?;
    let link = shim.join("python");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&python, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    Ok(Tools { python_shim: shim })
}

fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// PATH with `tools`' shim first.
pub fn path_with_shim(tools: &Tools) -> std::ffi::OsString {
    let mut dirs = vec![tools.python_shim.clone()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_rustup_lists_is_matched_by_name_with_or_without_the_host_triple() {
        let targets = "x86_64-unknown-linux-gnu\n";
        assert_eq!(lacking(RUST_TARGETS, targets), ["x86_64-unknown-none"]);
        assert!(lacking(
            RUST_TARGETS,
            "x86_64-unknown-none\nx86_64-unknown-linux-gnu\n"
        )
        .is_empty());
        let components =
            "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\nrust-src\n";
        assert_eq!(lacking(RUST_COMPONENTS, components), ["rustfmt"]);
        assert!(lacking(&["rust-src"], components).is_empty());
        assert_eq!(lacking(&["miri"], components), ["miri"]);
    }
}
