//! CapDL systems on seL4: bundling a spec with its images, building the
//! loader around the bundle, and booting it. The specs themselves are built
//! with `capdl::build` (the test systems, `capdl_tests`) or generated
//! (`generated`); only a user's spec file (`cargo xtask run --spec`) comes
//! as text.

use std::path::{Path, PathBuf};
use std::time::Duration;

use capdl::Spec;

use crate::kernel::KernelBuild;
use crate::{paths, qemu, tasks};

/// Encodes `spec` and bundles it with `files`; returns the bundle's path.
/// The spec's text is written next to the bundle (`system.cdl`), to read.
pub fn bundle(name: &str, spec: &Spec, files: &[(&str, &[u8])]) -> Result<PathBuf, String> {
    let dir = paths::target().join("capdl").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let spec_path = dir.join("system.cdl");
    crate::write_atomically(&spec_path, capdl::print::print(spec).as_bytes())?;
    bundle_spec(&dir, &spec_path, spec, files)
}

/// As [`bundle`], for a spec that lives in the file `spec_path` (its text,
/// `text`): checked first, every error as file:line:col.
pub fn bundle_file(
    name: &str,
    spec_path: &Path,
    text: &str,
    files: &[(&str, &[u8])],
) -> Result<PathBuf, String> {
    let dir = paths::target().join("capdl").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let checked = capdl::check(text).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|d| format!("{}:{d}", spec_path.display()))
            .collect();
        lines.join("\n")
    })?;
    bundle_spec(&dir, spec_path, &checked, files)
}

/// Encodes `spec` (from `spec_path`, for messages) into `dir/bundle.bin`
/// with `files`, after checking that every file a frame fill names is
/// among them.
fn bundle_spec(
    dir: &Path,
    spec_path: &Path,
    spec: &Spec,
    files: &[(&str, &[u8])],
) -> Result<PathBuf, String> {
    let encoded =
        capdl::encode::encode(spec).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    let reader = capdl::model::SpecReader::new(&encoded)
        .map_err(|e| format!("{}: {e}", spec_path.display()))?;
    for fill in reader.fills() {
        if !files.iter().any(|(n, _)| *n == fill.file) {
            return Err(format!(
                "{}: frame `{}` is filled from `{}`: give it with --image {}=PATH",
                spec_path.display(),
                reader.object(fill.frame).map_or("?", |o| o.name),
                fill.file,
                fill.file
            ));
        }
    }
    let mut entries: Vec<(&str, &[u8])> = vec![(capdl::bundle::SPEC, &encoded)];
    entries.extend_from_slice(files);
    let path = dir.join("bundle.bin");
    crate::write_atomically(&path, &capdl::bundle::write(&entries))?;
    Ok(path)
}

/// Builds the loader around `bundle` and returns its ELF.
pub fn build_loader(bundle: &Path) -> Result<PathBuf, String> {
    tasks::build_sel4_binary(
        "capdl-loader",
        &[("PREVIRT_CAPDL_BUNDLE", bundle.as_os_str())],
    )
}

/// Boots seL4 with the loader carrying `bundle`.
pub fn boot(
    kernel: &KernelBuild,
    bundle: &Path,
    memory_mib: u32,
    icount: Option<u32>,
    echo: qemu::Echo,
) -> Result<qemu::Run, String> {
    boot_for(
        kernel,
        bundle,
        memory_mib,
        icount,
        echo,
        Duration::from_secs(120),
    )
}

/// [`boot`] with a timeout of its own, for long runs.
pub fn boot_for(
    kernel: &KernelBuild,
    bundle: &Path,
    memory_mib: u32,
    icount: Option<u32>,
    echo: qemu::Echo,
    timeout: Duration,
) -> Result<qemu::Run, String> {
    boot_several(kernel, bundle, memory_mib, icount, &[], echo, timeout)
}

/// [`boot`] of a system expected to stop the machine: the run ends `grace`
/// after a COM1 line containing `marker` (the kernel's last words), with
/// [`qemu::Outcome::Settled`], so how long the machine stays silent is
/// measured from its halt, not from QEMU's start (any host speed).
pub fn boot_until_settled(
    kernel: &KernelBuild,
    bundle: &Path,
    marker: &str,
    grace: Duration,
) -> Result<qemu::Run, String> {
    let machine = Settings {
        memory_mib: 512,
        icount: None,
        settle: Some((marker, grace)),
        debugcons: &[],
    };
    boot_with(
        kernel,
        bundle,
        machine,
        qemu::Echo::Quiet,
        Duration::from_secs(120),
    )
}

/// Boots a system of several guests: each guest's console and each VMM's
/// lines on one-port consoles of their own (`debugcons`), under `-icount`
/// if `icount` is given.
pub fn boot_several(
    kernel: &KernelBuild,
    bundle: &Path,
    memory_mib: u32,
    icount: Option<u32>,
    debugcons: &[qemu::Debugcon],
    echo: qemu::Echo,
    timeout: Duration,
) -> Result<qemu::Run, String> {
    let settings = Settings {
        memory_mib,
        icount,
        settle: None,
        debugcons,
    };
    boot_with(kernel, bundle, settings, echo, timeout)
}

/// What differs between the system boots.
struct Settings<'a> {
    memory_mib: u32,
    icount: Option<u32>,
    settle: Option<(&'a str, Duration)>,
    debugcons: &'a [qemu::Debugcon<'a>],
}

fn boot_with(
    kernel: &KernelBuild,
    bundle: &Path,
    settings: Settings,
    echo: qemu::Echo,
    timeout: Duration,
) -> Result<qemu::Run, String> {
    let loader = build_loader(bundle)?;
    qemu::Machine {
        kernel: &kernel.multiboot_elf,
        module: Some(&loader),
        append: None,
        memory_mib: settings.memory_mib,
        accel: "tcg",
        icount: settings.icount,
        // A system's guest console (`guest_console`): the VMM writes it there.
        com2: true,
        settle: settings.settle,
        debugcons: settings.debugcons,
    }
    .boot(timeout, echo)
}
