//! Linux's boot and `/init`'s workload in TSC ticks, bare and on seL4, for
//! `cargo xtask bench` (docs/linux.md, "Boot and /init in ticks"). Every
//! run is under QEMU `-icount shift=0`: the TSC counts instructions (and
//! idle time skipped to the next timer deadline), so the figures are the
//! same on any host, from run to run.
//!
//! - **boot to /init**: from the moment the platform hands the machine to
//!   Linux's image to `/init`'s first command, `/bin/tsc boot`
//!   (images/linux/tsc.c), reading the TSC as it starts. Bare, the
//!   firmware hands over to the bzImage (its setup code, its decompressor,
//!   then the kernel): the start is the firmware's time, measured by a
//!   stand-in kernel QEMU boots the same way (images/linux/firmware_time.c).
//!   On seL4, the VMM starts the guest's thread in the wedge (which
//!   rewrites the sites, then enters `startup_64`): the start is the TSC
//!   the VMM prints as it does (`vmm-server: guest0: started at TSC N`).
//! - **/init's workload**: from `/bin/tsc begin` to `/bin/tsc end` in
//!   `/init` (images/linux/init): four child processes at once, a
//!   four-process pipeline and a subshell, with their console output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bench::Sample;
use crate::images::Image;
use crate::kernel::KernelBuild;
use crate::linux::{self, Build, Kernels};
use crate::{linux_sel4, paths, qemu, system};

/// What `/bin/tsc NAME` prints before `NAME TICKS`; the console comparisons
/// leave these lines out by it (`linux::FILTER`).
pub const READING: &str = "init: tsc ";

/// The bench's rows: boot to `/init`, and `/init`'s workload.
pub const BOOT: &str = "linux-boot";
pub const WORKLOAD: &str = "linux-init";

/// The stand-in kernel's line: the TSC at its first instruction.
const FIRMWARE: &str = "firmware: tsc ";
/// The VMM's line as it starts the guest's thread.
const ENTERED: &str = "vmm-server: guest0: started at TSC ";

/// Under `-icount shift=0` Linux runs longer in wall time than the tests'
/// shift=3 (its timed waits take eight times the instructions).
const TIMEOUT: Duration = Duration::from_secs(300);

/// One run's readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The TSC as the platform hands the machine to Linux's image.
    pub entry: u64,
    /// `/bin/tsc boot`, `begin` and `end`.
    pub boot: u64,
    pub begin: u64,
    pub end: u64,
}

impl Timing {
    /// Boot to `/init`, in ticks.
    pub fn boot_ticks(&self) -> u64 {
        self.boot - self.entry
    }

    /// `/init`'s workload, in ticks.
    pub fn workload_ticks(&self) -> u64 {
        self.end - self.begin
    }

    /// The readings of `console` after the entry's: each of `boot`,
    /// `begin` and `end` once, in that order, after the entry.
    pub fn from_console(entry: u64, console: &str) -> Result<Timing, String> {
        let mut readings: Vec<(String, u64)> = Vec::new();
        for line in console.lines().map(str::trim_end) {
            let Some(at) = line.find(READING) else {
                continue;
            };
            let rest = &line[at + READING.len()..];
            let reading = rest
                .split_once(' ')
                .and_then(|(name, ticks)| Some((name.to_string(), ticks.parse::<u64>().ok()?)))
                .filter(|_| at == 0)
                .ok_or_else(|| format!("malformed TSC reading {line:?}"))?;
            readings.push(reading);
        }
        let one = |name: &str| -> Result<u64, String> {
            let mut found = readings.iter().filter(|(n, _)| n == name);
            match (found.next(), found.next()) {
                (Some((_, t)), None) => Ok(*t),
                (None, _) => Err(format!("no `{READING}{name}` line on the console")),
                (Some(_), Some(_)) => Err(format!("`{READING}{name}` twice on the console")),
            }
        };
        let t = Timing {
            entry,
            boot: one("boot")?,
            begin: one("begin")?,
            end: one("end")?,
        };
        if !(t.entry < t.boot && t.boot < t.begin && t.begin < t.end) {
            return Err(format!(
                "the TSC readings are out of order: startup_64 {}, boot {}, begin {}, end {}",
                t.entry, t.boot, t.begin, t.end
            ));
        }
        Ok(t)
    }

    /// The two rows of `bench`, for this image and platform.
    pub fn samples(&self, image: Image, platform: &'static str) -> [Sample; 2] {
        let sample = |workload: &str, ticks| Sample {
            workload: workload.to_string(),
            image,
            platform,
            iterations: 1,
            ticks,
        };
        [
            sample(BOOT, self.boot_ticks()),
            sample(WORKLOAD, self.workload_ticks()),
        ]
    }
}

/// The number after `prefix` on the first line that starts with it.
fn number_on_line(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim_end().strip_prefix(prefix))
        .and_then(|n| n.trim().parse().ok())
}

/// The stand-in kernel (images/linux/firmware_time.c), built with the
/// host's gcc as a 32-bit multiboot ELF.
fn build_firmware_probe() -> Result<PathBuf, String> {
    let dir = paths::target().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = dir.join("firmware-time");
    let mut cmd = Command::new("gcc");
    cmd.args([
        "-m32",
        "-ffreestanding",
        "-nostdlib",
        "-static",
        "-O2",
        "-Wall",
        "-Werror",
        "-fno-pie",
        "-no-pie",
        "-fno-stack-protector",
        "-fcf-protection=none",
        "-Wl,--build-id=none",
        "-Wl,-Ttext=0x100000",
        "-Wl,-e,_start",
        "-o",
    ])
    .arg(&out)
    .arg(paths::root().join("images/linux/firmware_time.c"));
    crate::process::run(&mut cmd, "building images/linux/firmware_time.c")?;
    Ok(out)
}

/// The firmware's time: the TSC at the first instruction of a kernel QEMU
/// boots with `-kernel`, on the bare boots' machine (memory, CPU, icount).
/// SeaBIOS hands a multiboot kernel over through one option ROM and a
/// bzImage through another; both ROMs are a few hundred instructions.
fn firmware_ticks() -> Result<u64, String> {
    let probe = build_firmware_probe()?;
    let run = qemu::Machine {
        kernel: &probe,
        module: None,
        append: None,
        memory_mib: linux::MEMORY_MIB,
        accel: "tcg",
        icount: Some(0),
        com2: false,
        settle: None,
        debugcons: &[],
    }
    .boot(Duration::from_secs(60), qemu::Echo::Quiet)?;
    match number_on_line(&run.serial, FIRMWARE) {
        Some(ticks) if run.outcome == qemu::Outcome::Passed => Ok(ticks),
        _ => Err(format!(
            "the firmware probe printed no `{FIRMWARE}N` line or ended with {}:\n{}",
            run.outcome,
            crate::process::tail(&run.serial, 10)
        )),
    }
}

/// One kernel booted bare under `-icount shift=0`, from the firmware's
/// hand-over at `firmware`.
fn bare(build: &Build, initramfs: &Path, firmware: u64) -> Result<Timing, String> {
    let console = linux::boot_under(build, initramfs, 0, "bench", TIMEOUT)?;
    Timing::from_console(firmware, &console.text)
        .map_err(|e| format!("the bare {} kernel: {e}", build.variant.name()))
}

/// The padded kernel on seL4 under `-icount shift=0`: it must end as the
/// test's run does, by resetting the machine.
fn sel4(kernel: &KernelBuild, k: &Kernels) -> Result<Timing, String> {
    let bundle = linux_sel4::bundle(k)?;
    let run = system::boot_for(
        kernel,
        &bundle,
        linux_sel4::MACHINE_MIB,
        Some(0),
        qemu::Echo::Quiet,
        TIMEOUT,
    )?;
    let dir = paths::target().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let console = String::from_utf8_lossy(run.com2.as_deref().unwrap_or_default()).into_owned();
    let _ = std::fs::write(dir.join("linux-console-sel4.txt"), &console);
    let _ = std::fs::write(dir.join("linux-vmm-sel4.txt"), &run.serial);
    if run.outcome != qemu::Outcome::Passed
        || !run.serial.lines().any(|l| l.starts_with(linux_sel4::RESET))
    {
        return Err(format!(
            "Linux on seL4 did not end by resetting the machine: {} (console: {}):\n{}",
            run.outcome,
            dir.join("linux-console-sel4.txt").display(),
            crate::process::tail(&run.serial, 10)
        ));
    }
    let entry = number_on_line(&run.serial, ENTERED)
        .ok_or_else(|| format!("Linux on seL4: the VMM printed no `{ENTERED}N` line"))?;
    Timing::from_console(entry, &console).map_err(|e| format!("Linux on seL4: {e}"))
}

/// The three runs, side by side: the plain and the padded kernel bare, the
/// padded kernel on seL4.
pub struct Measured {
    pub plain: Timing,
    pub padded: Timing,
    pub sel4: Timing,
}

impl Measured {
    /// The rows for results.csv and the comparison: bare plain, bare
    /// padded, seL4 padded.
    pub fn samples(&self) -> Vec<Sample> {
        let mut v = Vec::new();
        v.extend(self.plain.samples(Image::Plain, "bare"));
        v.extend(self.padded.samples(Image::Padded, "bare"));
        v.extend(self.sel4.samples(Image::Padded, "sel4"));
        v
    }

    /// What came before Linux on each, for the bench's text.
    pub fn before_linux(&self) -> String {
        format!(
            "linux: TSC as Linux's image starts (bare: the firmware's time; on seL4: seL4's boot, the CapDL loader and the VMM's loading): bare {}, on seL4 {}\n",
            self.padded.entry, self.sel4.entry
        )
    }
}

/// Boots both kernels bare and the padded one on seL4, under `-icount
/// shift=0`, and reads their timings.
pub fn measure(kernel: &KernelBuild) -> Result<Measured, String> {
    let k = linux::build_all()?;
    eprintln!("xtask: bench: Linux bare (plain, padded) and on seL4, under -icount shift=0");
    let firmware = firmware_ticks()?;
    Ok(Measured {
        plain: bare(&k.plain, &k.initramfs, firmware)?,
        padded: bare(&k.padded, &k.initramfs, firmware)?,
        sel4: sel4(kernel, &k)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "Run /init as init process\r\ninit: tsc boot 900\r\ninit: kernel 6.1\r\n\
                           init: tsc begin 2000\r\nchild 1: 1\r\ninit: tsc end 2500\r\ninit: done\r\n";

    #[test]
    fn readings_give_boot_and_workload() {
        let t = Timing::from_console(100, CONSOLE).unwrap();
        assert_eq!((t.boot_ticks(), t.workload_ticks()), (800, 500));
        let [boot, workload] = t.samples(Image::Padded, "sel4");
        assert_eq!(
            (boot.workload.as_str(), boot.ticks, boot.iterations),
            (BOOT, 800, 1)
        );
        assert_eq!(
            (workload.workload.as_str(), workload.ticks),
            (WORKLOAD, 500)
        );
    }

    #[test]
    fn missing_doubled_malformed_or_disordered_readings_are_errors() {
        let e = Timing::from_console(100, "init: tsc boot 900\ninit: tsc end 1000\n").unwrap_err();
        assert!(e.contains("no `init: tsc begin`"), "{e}");
        let twice = format!("{CONSOLE}init: tsc end 3000\n");
        assert!(Timing::from_console(100, &twice)
            .unwrap_err()
            .contains("twice"));
        let bad = CONSOLE.replace("begin 2000", "begin 2x");
        assert!(Timing::from_console(100, &bad)
            .unwrap_err()
            .contains("malformed"));
        // A kernel line glued in front of ours is not a reading.
        let glued = CONSOLE.replace("init: tsc begin", "clocksource: xinit: tsc begin");
        assert!(Timing::from_console(100, &glued)
            .unwrap_err()
            .contains("malformed"));
        // startup_64 after /init's start: not a boot.
        assert!(Timing::from_console(1000, CONSOLE)
            .unwrap_err()
            .contains("out of order"));
    }

    #[test]
    fn the_comparisons_leave_the_readings_out() {
        let (kept, _) = linux::normalise(CONSOLE);
        assert!(kept.iter().all(|l| !l.contains(READING)), "{kept:?}");
        assert_eq!(kept.len(), 4);
    }

    #[test]
    fn the_starts_are_read_from_their_lines() {
        let vmm = "vmm-server: guest0: loaded; PV entry 0x1000000\nvmm-server: guest0: started at TSC 1086061314\r\n";
        assert_eq!(number_on_line(vmm, ENTERED), Some(1_086_061_314));
        assert_eq!(
            number_on_line("firmware: tsc 8123703\n", FIRMWARE),
            Some(8_123_703)
        );
        assert_eq!(number_on_line("firmware: tsc x\n", FIRMWARE), None);
        assert_eq!(number_on_line("a firmware: tsc 5\n", FIRMWARE), None);
    }
}
