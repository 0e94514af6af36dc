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

/// The suite's test (in the `linux:` group, by name only, as the Linux
/// builds it needs).
pub const TEST_NAME: &str =
    "linux: seL4 banner: the padded Linux on seL4 prints the bare boot's first lines, runs /init and ends by resetting the machine";

/// Compared lines that must match the bare console, at least: as far as
/// Linux got on seL4 when the test was written (the banner, the command
/// line, the e820 map, the early console, NX, `last_pfn`, the PAT line),
/// up to the first line that describes another machine (no BIOS MP
/// table): a change that stops it earlier fails.
pub const MIN_MATCHED: usize = 10;

/// Where the VMM's report says the wedge stopped the guest.
const STOPPED: &str = "the wedge stopped at the";
/// The VMM's line when the guest reset the machine (Linux's reboot, by the
/// keyboard controller, as the bare boot's under QEMU `-no-reboot`).
pub const RESET: &str = "vmm-server: guest0: reset the machine through the keyboard controller";
/// Linux's line as it starts user space: on seL4 as on the bare machine.
pub const RUN_INIT: &str = "Run /init as init process";
/// Linux's warning when an MSR access raised #GP.
const MSR_WARNING: &str = "unchecked MSR access error";
/// Linux's last line before it resets the machine.
pub const RESTART: &str = "reboot: machine restart";

/// `/init`'s own lines (normalised): from its first (`init: kernel ...`)
/// to its last ([`linux::DONE`]), with whatever the kernel printed between
/// them; empty if either is missing.
pub fn init_lines(console: &str) -> Vec<String> {
    let (lines, _) = linux::normalise(console);
    let first = lines.iter().position(|l| l.starts_with("init: kernel"));
    let last = lines.iter().position(|l| l == linux::DONE);
    match (first, last) {
        (Some(a), Some(b)) if a <= b => lines[a..=b].to_vec(),
        _ => Vec::new(),
    }
}

/// How the seL4 console compares with the bare one.
#[derive(Debug, PartialEq, Eq)]
pub struct Comparison {
    /// Compared (unfiltered) lines equal to the bare console's, in order,
    /// from the first.
    pub matched: usize,
    /// The first seL4 line that differs from the bare one, and the bare
    /// line there (None: one console ended).
    pub first_difference: Option<(String, String)>,
}

/// The e820 map's lines Linux prints for the VMM's map (linux_boot's
/// zero page): low RAM, RAM from 1 MiB to the VMM's reserved top, the top.
fn expected_e820(ram: u64) -> [String; 3] {
    let usable = ram - vmm_core::linux_boot::LINUX_RESERVED;
    let line = |from: u64, to: u64, what: &str| {
        format!("BIOS-e820: [mem {from:#018x}-{:#018x}] {what}", to - 1)
    };
    [
        line(0, 0xa_0000, "usable"),
        line(0x10_0000, usable, "usable"),
        line(usable, ram, "reserved"),
    ]
}

/// Compares the seL4 console with the bare one (both through the bare
/// comparison's filter), line by line from the first. Two things are the
/// machine's, not Linux's, and are checked against the VMM's layout
/// instead: the e820 map (the VMM's three entries for SeaBIOS's) and
/// `last_pfn` (the end of the RAM that map gives).
pub fn compare(bare: &str, sel4: &str, ram: u64) -> Comparison {
    let (b, _) = linux::normalise(bare);
    let (s, _) = linux::normalise(sel4);
    let is_e820 = |l: &String| l.starts_with("BIOS-e820:");
    let usable_pages = (ram - vmm_core::linux_boot::LINUX_RESERVED) >> 12;
    let (mut i, mut j, mut matched) = (0, 0, 0);
    while let (Some(x), Some(y)) = (b.get(i), s.get(j)) {
        if is_e820(x) {
            let bare_map = b[i..].iter().take_while(|l| is_e820(l)).count();
            let ours = s[j..].iter().take_while(|l| is_e820(l)).count();
            if s[j..j + ours] != expected_e820(ram) {
                break;
            }
            (i, j, matched) = (i + bare_map, j + ours, matched + ours);
            continue;
        }
        let expected = match x.strip_prefix("last_pfn = ") {
            Some(rest) => format!(
                "last_pfn = {usable_pages:#x} {}",
                rest.split_once(' ').map_or("", |(_, tail)| tail)
            ),
            None => x.clone(),
        };
        if *y != expected {
            break;
        }
        (i, j, matched) = (i + 1, j + 1, matched + 1);
    }
    Comparison {
        matched,
        first_difference: s
            .get(j)
            .map(|y| (y.clone(), b.get(i).cloned().unwrap_or_default())),
    }
}

pub fn test(kernel: &KernelBuild) -> Result<String, String> {
    let k = linux::build_all()?;
    let bare = linux::boot(&k.padded, &k.initramfs, qemu::Echo::Quiet)?;
    let run = boot(kernel, &k, qemu::Echo::Quiet)?;
    let console = String::from_utf8_lossy(run.com2.as_deref().unwrap_or_default()).into_owned();
    let saved = paths::target().join("linux");
    let ending = || {
        format!(
            "{} (console: {}, VMM: {}):\n{}",
            run.outcome,
            saved.join("console-sel4.txt").display(),
            saved.join("vmm-sel4.txt").display(),
            crate::process::tail(&run.serial, 20)
        )
    };
    // The run ends as the bare one does: Linux reboots, the VMM ends the
    // run on the reset with its pass status.
    if let Some(stopped) = run.serial.lines().find(|l| l.contains(STOPPED)) {
        return Err(format!(
            "the wedge stopped Linux on seL4 (`{}`), it did not reboot; {}",
            stopped.trim(),
            ending()
        ));
    }
    if !run.serial.lines().any(|l| l.starts_with(RESET)) || run.outcome != qemu::Outcome::Passed {
        return Err(format!(
            "Linux on seL4 did not end by resetting the machine: {}",
            ending()
        ));
    }
    // The virtual CPU answers the MSRs Linux reads as QEMU does: Linux
    // warns about none (the bare boot does not).
    if let Some(l) = console.lines().find(|l| l.starts_with(MSR_WARNING)) {
        return Err(format!(
            "Linux on seL4 warned `{}`; {}",
            l.trim_end(),
            ending()
        ));
    }
    for line in [RUN_INIT, RESTART] {
        if !console.lines().any(|l| l.trim_end() == line) {
            return Err(format!("the seL4 console has no `{line}`; {}", ending()));
        }
    }
    // User space's output goes through the 8250's interrupt-driven
    // transmit path: `/init` prints the same lines as on the bare machine.
    let (ours, theirs) = (init_lines(&console), init_lines(&bare.text));
    if ours.is_empty() || ours != theirs {
        return Err(format!(
            "/init's lines on seL4 are not the bare boot's: {} lines, the bare boot {}; ours:\n{}\n(console: {})",
            ours.len(),
            theirs.len(),
            ours.join("\n"),
            saved.join("console-sel4.txt").display()
        ));
    }
    let c = compare(&bare.text, &console, u64::from(RAM_MIB) << 20);
    let first = match &c.first_difference {
        Some((ours, theirs)) => format!("first difference: `{ours}` where bare has `{theirs}`"),
        None => "no difference before the console ends".into(),
    };
    if c.matched < MIN_MATCHED {
        return Err(format!(
            "only {} compared lines as the bare boot's, not {MIN_MATCHED}; {first} (console: {})",
            c.matched,
            saved.join("console-sel4.txt").display()
        ));
    }
    let lines = console.lines().count();
    let last = console.lines().last().unwrap_or_default().trim_end();
    Ok(format!(
        "{} compared lines as the bare boot's ({first}); {lines} console lines in all, the last `{last}`; /init's {} lines as the bare boot's; the run ended by a reset",
        c.matched,
        ours.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: u64 = 128 << 20;
    const BARE: &str = "Linux version 6.1\nCommand line: x\nBIOS-provided physical RAM map:\n\
        BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable\n\
        BIOS-e820: [mem 0x0000000000100000-0x0000000007fdffff] usable\n\
        printk: bootconsole [earlyser0] enabled\ntsc: Fast TSC calibration using PIT\n\
        last_pfn = 0x7fe0 max_arch_pfn = 0x400000000\nx86/PAT: Configuration\n";

    fn ours(e820: &[String], tail: &str) -> String {
        format!(
            "Linux version 6.1\r\nCommand line: x\r\nBIOS-provided physical RAM map:\r\n{}\nprintk: bootconsole [earlyser0] enabled\r\ntsc: Fast TSC calibration failed\r\n{tail}",
            e820.join("\n")
        )
    }

    #[test]
    fn the_vmms_map_and_last_pfn_stand_for_the_firmwares() {
        let e820 = expected_e820(RAM);
        assert_eq!(
            e820[1],
            "BIOS-e820: [mem 0x0000000000100000-0x0000000007ef6fff] usable"
        );
        let sel4 = ours(
            &e820,
            "last_pfn = 0x7ef7 max_arch_pfn = 0x400000000\nunchecked MSR access error\n",
        );
        let c = compare(BARE, &sel4, RAM);
        assert_eq!(c.matched, 8, "{c:?}");
        assert_eq!(
            c.first_difference,
            Some((
                "unchecked MSR access error".into(),
                "x86/PAT: Configuration".into()
            ))
        );
    }

    #[test]
    fn a_wrong_map_or_last_pfn_is_a_difference() {
        let mut e820 = expected_e820(RAM);
        e820[2] = e820[2].replace("reserved", "usable");
        let c = compare(BARE, &ours(&e820, ""), RAM);
        assert_eq!(c.matched, 3);
        let sel4 = ours(
            &expected_e820(RAM),
            "last_pfn = 0x7fe0 max_arch_pfn = 0x400000000\n",
        );
        let c = compare(BARE, &sel4, RAM);
        assert_eq!(c.matched, 7);
        assert!(c
            .first_difference
            .unwrap()
            .0
            .starts_with("last_pfn = 0x7fe0"));
    }

    #[test]
    fn init_lines_run_from_its_first_line_to_done() {
        let console = "Run /init as init process\r\ninit: kernel 6.1\r\nchild 1: 1\r\ninit: done\r\nreboot: machine restart\r\n";
        assert_eq!(
            init_lines(console),
            ["init: kernel 6.1", "child 1: 1", "init: done"]
        );
        assert!(init_lines("init: kernel 6.1\nchild 1: 1\n").is_empty());
        assert!(init_lines("init: done\ninit: kernel 6.1\n").is_empty());
    }

    #[test]
    fn the_first_lines_must_be_the_bare_ones() {
        let c = compare(BARE, "Linux version 6.2\nCommand line: x\n", RAM);
        assert_eq!(c.matched, 0);
        let c = compare(BARE, "Linux version 6.1\nCommand line: x\n", RAM);
        assert_eq!((c.matched, c.first_difference), (2, None));
    }
}
