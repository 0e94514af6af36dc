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
#[derive(Debug)]
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
    let installed = |kind: &str| -> Result<String, String> {
        let out = Command::new("rustup")
            .args([kind, "list", "--installed", "--toolchain", &toolchain])
            .output()
            .map_err(|e| format!("rustup {kind} list: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "rustup {kind} list --installed --toolchain {toolchain}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let targets = installed("target")?;
    let missing_targets: Vec<&str> = RUST_TARGETS
        .iter()
        .copied()
        .filter(|t| !targets.lines().any(|l| l.trim() == *t))
        .collect();
    // Components are listed with the host's triple: `clippy-x86_64-unknown-linux-gnu`.
    let components = installed("component")?;
    let missing_components: Vec<&str> = RUST_COMPONENTS
        .iter()
        .copied()
        .filter(|c| {
            !components
                .lines()
                .any(|l| l.trim() == *c || l.trim().starts_with(&format!("{c}-")))
        })
        .collect();
    for (kind, missing) in [
        ("target", &missing_targets),
        ("component", &missing_components),
    ] {
        if missing.is_empty() {
            continue;
        }
        eprintln!(
            "xtask: adding Rust {kind} {} to toolchain {toolchain} (rustup {kind} add)",
            missing.join(", ")
        );
        let status = Command::new("rustup")
            .args([kind, "add", "--toolchain", &toolchain])
            .args(missing.iter())
            .status()
            .map_err(|e| format!("rustup {kind} add: {e}"))?;
        if !status.success() {
            return Err(format!(
                "rustup {kind} add --toolchain {toolchain} {} failed",
                missing.join(" ")
            ));
        }
    }
    Ok(())
}

/// Miri (nightly) for the wedge core's host tests: the toolchain must be
/// there (this machine's image ships one); its `miri` and `rust-src`
/// components are added when missing.
pub fn ensure_miri() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .map_err(|e| format!("rustup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "no nightly toolchain for Miri (rustup component list --toolchain nightly: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let installed = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = ["miri", "rust-src"]
        .into_iter()
        .filter(|c| {
            !installed
                .lines()
                .any(|l| l.trim() == *c || l.trim().starts_with(&format!("{c}-")))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: adding {} to the nightly toolchain (for Miri)",
        missing.join(", ")
    );
    let ok = Command::new("rustup")
        .args(["component", "add", "--toolchain", "nightly"])
        .args(&missing)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "rustup component add --toolchain nightly {} failed",
            missing.join(" ")
        ))
    }
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
        let still: Vec<&str> = NEEDS
            .iter()
            .filter(|n| !(n.present)())
            .map(|n| n.what)
            .collect();
        if !ok || !still.is_empty() {
            return Err(format!(
                "installing packages failed; still missing: {}. Tried:\n    {command}",
                still.join(", ")
            ));
        }
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
