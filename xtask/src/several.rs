//! Systems of several guests (docs/vmm-server.md, "Several guests"): each
//! guest with a VMM of its own, the supervisor owning the timer and the
//! exit. Each guest's console and each VMM's lines leave the machine on a
//! one-port console of their own, into a file each, so they are separable
//! byte for byte; the terminal shows them live, each line after its name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use capdl::generate::{guest_console_port, vmm_log_port};

use crate::generated::{self, GuestSpec};
use crate::kernel::KernelBuild;
use crate::{paths, qemu, system};

/// What a run of several guests left.
pub struct Several {
    pub run: qemu::Run,
    /// Each guest's console bytes, in guest order.
    pub consoles: Vec<Vec<u8>>,
    /// Each guest's VMM's lines, in guest order.
    pub logs: Vec<String>,
}

/// A fresh folder under `target/qemu/` for one run's console files.
fn run_dir() -> Result<PathBuf, String> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = paths::target()
        .join("qemu")
        .join(format!("several-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Generates, bundles and boots `guests`, each with its own VMM; returns
/// every console.
pub fn run(
    kernel: &KernelBuild,
    name: &str,
    guests: &[GuestSpec],
    memory_mib: u32,
    icount: Option<u32>,
    echo: qemu::Echo,
    timeout: Duration,
) -> Result<Several, String> {
    let images = generated::images_several()?;
    let description = generated::several_description(guests);
    let bundle = generated::bundle_images(name, &description, &images)?;
    let dir = run_dir()?;
    let console_files: Vec<PathBuf> = guests
        .iter()
        .map(|g| dir.join(format!("{}.log", g.name)))
        .collect();
    let log_files: Vec<PathBuf> = guests
        .iter()
        .map(|g| dir.join(format!("vmm_{}.log", g.name)))
        .collect();
    let vmm_names: Vec<String> = guests.iter().map(|g| format!("vmm {}", g.name)).collect();
    let mut debugcons = Vec::new();
    for (n, g) in guests.iter().enumerate() {
        debugcons.push(qemu::Debugcon {
            port: guest_console_port(n as u64),
            file: &console_files[n],
            name: &g.name,
        });
        debugcons.push(qemu::Debugcon {
            port: vmm_log_port(n as u64),
            file: &log_files[n],
            name: &vmm_names[n],
        });
    }
    let run = system::boot_several(
        kernel, &bundle, memory_mib, icount, &debugcons, echo, timeout,
    );
    let read = |p: &Path| std::fs::read(p).unwrap_or_default();
    let consoles = console_files.iter().map(|p| read(p)).collect();
    let logs = log_files
        .iter()
        .map(|p| String::from_utf8_lossy(&read(p)).replace('\r', ""))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Several {
        run: run?,
        consoles,
        logs,
    })
}

/// Writes each guest's console to `dir/NAME.log`.
pub fn save_consoles(dir: &Path, guests: &[GuestSpec], several: &Several) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (g, bytes) in guests.iter().zip(&several.consoles) {
        crate::write_atomically(&dir.join(format!("{}.log", g.name)), bytes)?;
    }
    Ok(())
}
