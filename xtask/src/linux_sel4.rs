//! Linux on seL4 (docs/linux.md, "Linux on seL4: how far it gets"): the
//! padded `vmlinux` that `cargo xtask linux` built, with its initramfs and
//! the bare boots' command line, as the one guest of a generated system:
//! the VMM loads it by Linux's 64-bit boot protocol and the wedge enters
//! `startup_64`. `cargo xtask run --linux` boots it; the test compares the
//! guest console's first lines with the same kernel's bare console.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::kernel::KernelBuild;
use crate::linux::{self, Kernels};
use crate::{generated, paths, qemu, system};

/// Guest RAM for Linux: what the bare boots give it.
pub const RAM_MIB: u32 = 128;
/// The machine: seL4, the loader with its bundle (the kernel and the
/// initramfs are in it twice, as files and as copies) and the guest's RAM.
pub const MACHINE_MIB: u32 = 512;
/// A run ends long before this: Linux stops at a site the wedge cannot
/// handle yet, or the VMM ends it.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The system's description: one Linux guest, the bare boots' command
/// line, the devices the test guest's system has.
pub fn description() -> String {
    format!(
        "[vmm]\nimage = \"vmm-server\"\npriority = 200\nstack_pages = 4\nwedge = \"wedge-l4\"\n\n\
         [[guest]]\nname = \"guest0\"\nimage = \"vmlinux\"\nlinux = true\ninitrd = \"initramfs\"\n\
         ram_mib = {RAM_MIB}\npriority = 200\npt_untyped_bits = 24\ncmdline = \"{}\"\n\n\
         [devices]\nserial = true\npit = true\ndebug_exit = true\nguest_console = true\n",
        linux::CMDLINE
    )
}

/// Bundles the system with the padded kernel and the initramfs.
pub fn bundle(k: &Kernels) -> Result<PathBuf, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut images = BTreeMap::new();
    for (name, package) in [("vmm-server", "vmm-server"), ("wedge-l4", "wedge-sel4")] {
        images.insert(name.to_string(), generated::task_image(package)?);
    }
    images.insert("vmlinux".to_string(), read(&k.padded.vmlinux)?);
    images.insert("initramfs".to_string(), read(&k.initramfs)?);
    generated::bundle_images("linux", &description(), &images)
}

/// Boots Linux on seL4 under `-icount` (as the bare boots), the guest's
/// console (COM2) and the VMM's lines (COM1) kept in `target/linux/`.
pub fn boot(kernel: &KernelBuild, k: &Kernels, echo: qemu::Echo) -> Result<qemu::Run, String> {
    let bundle = bundle(k)?;
    let run = system::boot_for(
        kernel,
        &bundle,
        MACHINE_MIB,
        Some(crate::test::GUEST_TEST_ICOUNT_SHIFT),
        echo,
        TIMEOUT,
    )?;
    let dir = paths::target().join("linux");
    let _ = std::fs::write(
        dir.join("console-sel4.txt"),
        run.com2.as_deref().unwrap_or_default(),
    );
    let _ = std::fs::write(dir.join("vmm-sel4.txt"), run.serial.as_bytes());
    Ok(run)
}
