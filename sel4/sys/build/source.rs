//! Finds the seL4 5.0.0 source that cargo fetched as part of the `sel4-sys`
//! 0.0.28 package (checksum pinned in Cargo.lock).

use std::path::{Path, PathBuf};

pub const PACKAGE: &str = "sel4-sys-0.0.28";

/// The kernel source tree (the package's `seL4/` folder).
pub struct KernelSource {
    pub root: PathBuf,
}

impl KernelSource {
    pub fn libsel4(&self) -> PathBuf {
        self.root.join("libsel4")
    }

    /// Every file whose change must regenerate the bindings.
    pub fn inputs(&self) -> Vec<PathBuf> {
        let l = self.libsel4();
        vec![
            l.join("include/interfaces/sel4.xml"),
            l.join("sel4_arch_include/x86_64/interfaces/sel4arch.xml"),
            l.join("arch_include/x86/interfaces/sel4arch.xml"),
            l.join("include/api/syscall.xml"),
            l.join("include/sel4/shared_types_64.bf"),
            l.join("arch_include/x86/sel4/arch/shared_types.bf"),
            self.root
                .join("include/arch/x86/arch/64/mode/object/structures.bf"),
        ]
    }
}

/// `PREVIRT_SEL4_SOURCE` (set by `cargo xtask`) wins; otherwise the package is
/// looked up in cargo's registry source cache.
pub fn locate() -> Result<KernelSource, String> {
    println!("cargo:rerun-if-env-changed=PREVIRT_SEL4_SOURCE");
    if let Some(dir) = std::env::var_os("PREVIRT_SEL4_SOURCE") {
        return check(PathBuf::from(dir));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let registry = cargo_home.join("registry/src");
    if let Some(root) = search(&registry) {
        return check(root);
    }
    // Cargo downloads only what a build compiles, and this package is never
    // compiled: fetch the workspace's locked packages, then look again.
    fetch()?;
    match search(&registry) {
        Some(root) => check(root),
        None => Err(format!(
            "the seL4 kernel source ({PACKAGE}) is not in {} even after `cargo fetch`; \
             set PREVIRT_SEL4_SOURCE to its seL4/ folder",
            registry.display()
        )),
    }
}

fn search(registry: &Path) -> Option<PathBuf> {
    let mut found = Vec::new();
    if let Ok(indexes) = std::fs::read_dir(registry) {
        for index in indexes.flatten() {
            let candidate = index.path().join(PACKAGE).join("seL4");
            if candidate.join("VERSION").is_file() {
                found.push(candidate);
            }
        }
    }
    found.sort();
    found.into_iter().next()
}

fn fetch() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(&std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?)
        .join("../../Cargo.toml");
    let status = std::process::Command::new(cargo)
        .args(["fetch", "--locked", "--manifest-path"])
        .arg(&manifest)
        .status()
        .map_err(|e| format!("running cargo fetch: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo fetch --locked --manifest-path {} failed ({status})",
            manifest.display()
        ))
    }
}

fn check(root: PathBuf) -> Result<KernelSource, String> {
    let version = std::fs::read_to_string(root.join("VERSION"))
        .map_err(|e| format!("{}: not an seL4 source tree ({e})", root.display()))?;
    if version.trim() != "5.0.0" {
        return Err(format!(
            "{}: seL4 version {} found, previrt is built for 5.0.0",
            root.display(),
            version.trim()
        ));
    }
    Ok(KernelSource { root })
}
