//! Builds seL4 5.0.0: copy the source cargo fetched (the `sel4-sys` 0.0.28
//! package, checksum pinned in Cargo.lock) into the build folder, apply the
//! project's patches (`sel4/kernel/patches/*.patch`), install the project's
//! config (`sel4/kernel/config/autoconf.h`), run the kernel's own Makefile
//! with the system gcc, and wrap the result as a 32-bit ELF for multiboot.
//!
//! Two flavours, each in a folder of its own: the release kernel every
//! command uses by default (no debug system calls: no thread can print on
//! the kernel console or halt the kernel), and the debug kernel
//! (`--debug-kernel`: `sel4/kernel/config/debug.h` in front of the config,
//! `DEBUG=1`), which prints its boot log and faults and gives every thread
//! seL4's debug calls.
//!
//! The build is skipped when a fingerprint of the source package, the
//! patches, the config and this recipe matches the last build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fingerprint::Fingerprint;
use crate::paths;
use crate::process;
use crate::setup::{self, Tools};

/// Bump when the recipe below changes in a way that changes the output.
const RECIPE: &str =
    "3: make [DEBUG=1] x86_64 pc99 KERNEL_CODE_MODEL, .SECONDARY, objcopy elf32-i386";

/// Which kernel to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// What the project ships: no debug system calls, no kernel printing.
    Release,
    /// For development: seL4's debug calls for every thread, a boot log and
    /// fault reports on COM1.
    Debug,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Release => "release",
            Flavour::Debug => "debug",
        }
    }

    /// The build folder's name under `target/sel4/`.
    fn folder(self) -> &'static str {
        match self {
            Flavour::Release => "kernel",
            Flavour::Debug => "kernel-debug",
        }
    }
}

/// gcc 12 warns where seL4 5.0.0 (written for older compilers) is fine, and
/// the kernel builds with -Werror: a packed member's address taken in
/// arch/x86/kernel/vspace.c and a false array-bounds in arch/x86/kernel/cmdline.c.
const EXTRA_CFLAGS: &str = "-Wno-address-of-packed-member -Wno-array-bounds";

/// The kernel's code model (the `KERNEL_CODE_MODEL` of patch 0004). seL4
/// lives in the hypervisor hole (patch 0005, docs/sel4-layout.md), out of
/// reach of `-mcmodel=kernel`'s top 2 GiB: position-independent code, all
/// RIP-relative with direct calls, runs there at the kernel model's cost
/// (`-mcmodel=large` would load every address with movabs and make every
/// call indirect).
const CODE_MODEL: &str = "-fpie -mcmodel=small";

#[derive(Debug)]
pub struct KernelBuild {
    pub flavour: Flavour,
    /// The kernel's build folder (generated headers, kernel_all.c_pp).
    pub dir: PathBuf,
    /// The kernel as a 32-bit ELF, the form QEMU's multiboot loader takes.
    pub multiboot_elf: PathBuf,
}

impl KernelBuild {
    /// The whole kernel as one preprocessed C file: every enum and struct the
    /// kernel was compiled with.
    pub fn preprocessed(&self) -> PathBuf {
        self.dir.join("kernel_all.c_pp")
    }

    /// The patched and configured source the kernel was built from.
    pub fn source(&self) -> PathBuf {
        self.dir.with_file_name("src")
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn patches() -> Result<Vec<PathBuf>, String> {
    let dir = paths::root().join("sel4/kernel/patches");
    let mut list: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    list.sort();
    Ok(list)
}

/// The checksum cargo verified for the kernel source package.
fn source_checksum() -> Result<String, String> {
    let lock = paths::root().join("Cargo.lock");
    let text = fs::read_to_string(&lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let mut in_package = false;
    for line in text.lines() {
        if line == "name = \"sel4-sys\"" {
            in_package = true;
        } else if line.starts_with("[[package]]") {
            in_package = false;
        } else if in_package {
            if let Some(sum) = line.strip_prefix("checksum = ") {
                return Ok(sum.trim_matches('"').to_string());
            }
        }
    }
    Err(format!(
        "{}: no checksum for package sel4-sys",
        lock.display()
    ))
}

/// A number the kernel's config defines (`#define NAME N`).
fn config_number(flavour: Flavour, name: &str) -> Result<u64, String> {
    let text = config_text(flavour)?;
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("#define ")?.strip_prefix(name)?;
            rest.trim().parse().ok()
        })
        .ok_or_else(|| format!("the kernel's config defines no number {name}"))
}

/// seL4's time slice, in ns: a thread runs at most `CONFIG_TIME_SLICE`
/// timer ticks of `CONFIG_TIMER_TICK_MS` before another of its priority
/// gets the CPU.
pub fn time_slice_ns(flavour: Flavour) -> Result<u64, String> {
    let ticks = config_number(flavour, "CONFIG_TIME_SLICE")?;
    let tick_ms = config_number(flavour, "CONFIG_TIMER_TICK_MS")?;
    Ok(ticks * tick_ms * 1_000_000)
}

/// The config the kernel is built with: the release config, with the debug
/// lines in front for the debug kernel.
fn config_text(flavour: Flavour) -> Result<Vec<u8>, String> {
    let dir = paths::root().join("sel4/kernel/config");
    let release = read(&dir.join("autoconf.h"))?;
    Ok(match flavour {
        Flavour::Release => release,
        Flavour::Debug => [read(&dir.join("debug.h"))?, b"\n".to_vec(), release].concat(),
    })
}

pub fn build(tools: &Tools, flavour: Flavour) -> Result<KernelBuild, String> {
    let source = PathBuf::from(previrt_sel4_sys::KERNEL_SOURCE_DIR);
    let config = config_text(flavour)?;
    let patch_files = patches()?;

    let mut fp = Fingerprint::new();
    fp.add("recipe", RECIPE.as_bytes());
    fp.add("flavour", flavour.name().as_bytes());
    fp.add("cflags", EXTRA_CFLAGS.as_bytes());
    fp.add("code model", CODE_MODEL.as_bytes());
    fp.add("source", source_checksum()?.as_bytes());
    fp.add("config", &config);
    for p in &patch_files {
        fp.add(&p.display().to_string(), &read(p)?);
    }

    let out = paths::kernel_build().join(flavour.folder());
    let result = KernelBuild {
        flavour,
        dir: out.join("build"),
        multiboot_elf: out.join("kernel32.elf"),
    };
    let stamp = out.join("fingerprint");
    if result.multiboot_elf.is_file() && fs::read_to_string(&stamp).is_ok_and(|s| s == fp.hex()) {
        return Ok(result);
    }

    eprintln!(
        "xtask: building seL4 5.0.0 ({} kernel) from {}",
        flavour.name(),
        source.display()
    );
    let started = std::time::Instant::now();
    let _ = fs::remove_dir_all(&out);
    let src = out.join("src");
    fs::create_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    copy_tree(&source, &src)?;
    for p in &patch_files {
        let file = fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
        process::run(
            Command::new("patch")
                .args(["-p1", "--forward", "--batch", "--quiet"])
                .current_dir(&src)
                .stdin(file),
            &format!("applying {}", p.display()),
        )?;
    }
    // The standalone Makefile takes its config from the platform's autoconf.h.
    let platform_config = src.join("include/plat/pc99/autoconf.h");
    fs::write(&platform_config, &config)
        .map_err(|e| format!("{}: {e}", platform_config.display()))?;
    // Keep the generated intermediate headers (make would delete them).
    let keep = out.join("keep-intermediates.mk");
    fs::write(&keep, ".SECONDARY:\n").map_err(|e| format!("{}: {e}", keep.display()))?;

    fs::create_dir_all(&result.dir).map_err(|e| format!("{}: {e}", result.dir.display()))?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let make = |jobs: usize, target: Option<&str>, what: &str| {
        process::run(
            Command::new("make")
                .arg("-f")
                .arg(src.join("Makefile"))
                .arg("-f")
                .arg(&keep)
                .arg(format!("SOURCE_ROOT={}", src.display()))
                .args(["ARCH=x86", "SEL4_ARCH=x86_64", "PLAT=pc99"])
                .arg(format!("KERNEL_CODE_MODEL={CODE_MODEL}"))
                .args((flavour == Flavour::Debug).then_some("DEBUG=1"))
                .arg(format!("-j{jobs}"))
                .args(target)
                .env("CFLAGS", EXTRA_CFLAGS)
                .env("PATH", setup::path_with_shim(tools))
                .current_dir(&result.dir),
            what,
        )
    };
    // One bitfield header first, alone: the kernel's bitfield generator
    // (ply) writes its parser table next to itself on first use, and
    // generators run in parallel race on it — one reads the table while
    // another writes it ("module 'parsetab' has no attribute
    // '_tabversion'"). Once it exists, they only read it.
    let first = make(
        1,
        Some("arch/object/structures_gen.h"),
        "generating the seL4 kernel's first bitfield header",
    )?;
    let make = make(jobs, None, "building the seL4 kernel")?;
    let log = out.join("build.log");
    let _ = fs::write(
        &log,
        [first.stdout, first.stderr, make.stdout, make.stderr].concat(),
    );

    let wrapped = out.join("kernel32.elf.tmp");
    process::run(
        Command::new("objcopy")
            .args(["-O", "elf32-i386"])
            .arg(result.dir.join("kernel.elf"))
            .arg(&wrapped),
        "wrapping the kernel for multiboot",
    )?;
    fs::rename(&wrapped, &result.multiboot_elf)
        .map_err(|e| format!("{}: {e}", result.multiboot_elf.display()))?;
    fs::write(&stamp, fp.hex()).map_err(|e| format!("{}: {e}", stamp.display()))?;
    eprintln!(
        "xtask: kernel built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(result)
}

/// Copies a folder tree, leaving the copies writable (cargo's registry copy
/// may be read-only).
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    for entry in fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target).map_err(|e| format!("{}: {e}", target.display()))?;
            let mut perms = fs::metadata(&target)
                .map_err(|e| e.to_string())?
                .permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            fs::set_permissions(&target, perms)
                .map_err(|e| format!("{}: {e}", target.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_slice_comes_from_the_config() {
        // 5 ticks of 2 ms (sel4/kernel/config/autoconf.h); docs/testing.md
        // derives the bounds of a shared CPU from it.
        assert_eq!(time_slice_ns(Flavour::Release), Ok(10_000_000));
        assert!(config_number(Flavour::Release, "CONFIG_NO_SUCH_NUMBER").is_err());
    }
}
