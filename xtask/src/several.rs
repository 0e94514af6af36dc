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

/// The suite's test of several guests.
pub const NAME: &str =
    "several: three guests, two self-testing beside a hostile one, each with its own VMM";

/// The hostile guest's attacks: the spin first (the others must run while
/// it spins), then attacks on its own VMM, then `halt`, for which its VMM
/// ends it.
const HOSTILE_ATTACKS: &str = "attack=spin,ipc,jumps,ptloop,syscalls,ints,halt";

/// Guest RAM in the test: three guests of 32 MiB stay under the loader's
/// object limit (docs/capdl-loader.md).
const RAM_MIB: u32 = 32;

/// The timer ticks the supervisor had passed on when guest `n` ended (its
/// line on COM1).
fn ended_at(serial: &str, n: usize) -> Option<u64> {
    let last = serial
        .lines()
        .find(|l| l.starts_with("supervisor: every guest has ended"));
    let line = serial
        .lines()
        .find(|l| l.starts_with(&format!("supervisor: guest {n} ended")))
        .or(last)?;
    let before = line.split(" timer ticks passed on").next()?;
    before
        .rsplit(' ')
        .next()?
        .trim_start_matches('(')
        .parse()
        .ok()
}

/// Three guests, each with its own VMM, under `-icount`: two run every
/// self-test and one attacks. Each self-testing guest's console is the same,
/// byte for byte, as the same guest's alone on seL4; the hostile guest's
/// spin with interrupts off does not stop them (they end while it spins);
/// its VMM ends it for its last attack and the run ends when all three
/// have, with a failure status because one failed.
pub fn test(kernel: &KernelBuild) -> Result<String, String> {
    let shift = crate::test::GUEST_TEST_ICOUNT_SHIFT;
    let cmdline = crate::capdl_tests::SEL4_GUEST_TESTS;
    let solo = generated::description_with_ram(RAM_MIB)
        .and_then(|d| {
            generated::bundle_with(
                "several-solo",
                &d,
                crate::images::Image::Padded,
                Some(cmdline),
            )
        })
        .and_then(|b| system::boot(kernel, &b, 512, Some(shift), qemu::Echo::Quiet))?;
    if solo.outcome != qemu::Outcome::Passed {
        return Err(format!(
            "the guest alone ended with {}:\n{}",
            solo.outcome,
            crate::process::tail(&solo.serial, 20)
        ));
    }
    let alone = solo.com2.clone().unwrap_or_default();
    let guest = |name: &str, image, cmdline: &str| GuestSpec {
        name: name.to_string(),
        image,
        cmdline: cmdline.to_string(),
        trap: false,
        ram_mib: RAM_MIB,
    };
    let guests = [
        guest("guest0", "guest", cmdline),
        guest("guest1", "guest", cmdline),
        guest("hostile", "hostile", HOSTILE_ATTACKS),
    ];
    let several = run(
        kernel,
        "several-3",
        &guests,
        512,
        Some(shift),
        qemu::Echo::Quiet,
        Duration::from_secs(120),
    )?;
    let serial = &several.run.serial;
    let context = || {
        let mut text = crate::process::tail(serial, 12);
        for (g, log) in guests.iter().zip(&several.logs) {
            text.push_str(&format!(
                "\n[vmm {}]\n{}",
                g.name,
                crate::process::tail(log, 6)
            ));
        }
        text
    };
    // The run ends when all have, failing because the hostile guest did.
    if several.run.outcome != qemu::Outcome::Failed
        || !serial.contains("supervisor: every guest has ended; exit value 1")
    {
        return Err(format!(
            "the run ended with {}, not with the hostile guest's failure after all three ended:\n{}",
            several.run.outcome,
            context()
        ));
    }
    for n in 0..2 {
        if several.consoles[n] != alone {
            let diff = crate::test::first_difference(
                &several.consoles[n],
                &alone,
                [&format!("guest{n} beside the others"), "alone"],
            )
            .unwrap_or_else(|| "they differ in line ends".into());
            return Err(format!(
                "guest{n}'s console is not the one it has alone: {diff}"
            ));
        }
        let exited = format!("vmm-server: guest{n}: exited with status 1");
        if !several.logs[n].contains(&exited) {
            return Err(format!("no line {exited:?} from its VMM:\n{}", context()));
        }
    }
    let hostile = String::from_utf8_lossy(&several.consoles[2]);
    for attack in ["spin", "ipc", "jumps", "ptloop", "syscalls", "ints"] {
        let line = format!("hostile: {attack}: ");
        let ok = hostile
            .lines()
            .any(|l| l.starts_with(&line) && l.ends_with("as expected, 0 unexpected"));
        if !ok {
            return Err(format!(
                "the hostile guest's {attack} attack did not report 0 unexpected answers:\n{}",
                crate::process::tail(&hostile, 12)
            ));
        }
    }
    let ended = "vmm-server: guest2: terminated: it halted with interrupts disabled";
    if !several.logs[2].contains(ended) {
        return Err(format!("no line {ended:?}:\n{}", context()));
    }
    // Each guest ended; the self-testing ones while the hostile one still
    // spun: its spin alone is over 4,000 ticks of guest time.
    let ticks: Vec<Option<u64>> = (0..3).map(|n| ended_at(serial, n)).collect();
    let [Some(a), Some(b), Some(h)] = ticks[..] else {
        return Err(format!("not every guest's end is on COM1:\n{}", context()));
    };
    if h < 4000 || a.max(b) * 2 > h {
        return Err(format!(
            "the guests ended at ticks {a}, {b} and (hostile) {h}: the self-testing ones should end while the hostile one spins, in its first 4,000:\n{}",
            context()
        ));
    }
    Ok(format!(
        "consoles identical to the guest's alone ({} bytes); ended at ticks {a} and {b}, the hostile guest at {h}; {:.1} s",
        alone.len(),
        several.run.elapsed.as_secs_f64()
    ))
}

/// The suite's test of a guest ended early.
pub const ENDED_NAME: &str =
    "several: a guest its VMM ends at once leaves the other running to its end";

/// Two guests: the hostile one halts with interrupts off at once, and its
/// VMM ends it; the other, running the timer self-test, goes on to pass it
/// (its console as alone), and only then does the run end, with the
/// hostile guest's failure.
pub fn ended_early(kernel: &KernelBuild) -> Result<String, String> {
    let guests = [
        GuestSpec {
            name: "hostile".to_string(),
            image: "hostile",
            cmdline: "attack=halt".to_string(),
            trap: false,
            ram_mib: RAM_MIB,
        },
        GuestSpec {
            name: "guest1".to_string(),
            image: "guest",
            cmdline: "tests=timer".to_string(),
            trap: false,
            ram_mib: RAM_MIB,
        },
    ];
    let several = run(
        kernel,
        "several-ended",
        &guests,
        512,
        Some(crate::test::GUEST_TEST_ICOUNT_SHIFT),
        qemu::Echo::Quiet,
        Duration::from_secs(120),
    )?;
    let serial = &several.run.serial;
    let context = || {
        let mut text = crate::process::tail(serial, 8);
        for (g, log) in guests.iter().zip(&several.logs) {
            text.push_str(&format!(
                "\n[vmm {}]\n{}",
                g.name,
                crate::process::tail(log, 4)
            ));
        }
        text
    };
    let first = "supervisor: guest 0 ended with exit value 1 (1 still running";
    let Some(at) = serial.find(first) else {
        return Err(format!(
            "the hostile guest's end is not first:\n{}",
            context()
        ));
    };
    let last = "supervisor: every guest has ended; exit value 1";
    if !serial[at..].contains(last) || several.run.outcome != qemu::Outcome::Failed {
        return Err(format!(
            "the run did not end after both, with the hostile guest's failure ({}):\n{}",
            several.run.outcome,
            context()
        ));
    }
    let ended = "vmm-server: guest0: terminated: it halted with interrupts disabled";
    if !several.logs[0].contains(ended) {
        return Err(format!("no line {ended:?}:\n{}", context()));
    }
    let console = String::from_utf8_lossy(&several.consoles[1]);
    let expected = "guest: previrt test kernel; tests=timer bench=\ntimer: passed (5 checks)\nselftest: 1 passed, 0 failed\n";
    if console != expected {
        return Err(format!(
            "the other guest's console is not the timer test's alone:\n{console}"
        ));
    }
    if !several.logs[1].contains("vmm-server: guest1: exited with status 1") {
        return Err(format!(
            "the other guest's VMM did not report its exit:\n{}",
            context()
        ));
    }
    Ok(format!(
        "the hostile guest ended first; the other passed its timer test after; {:.1} s",
        several.run.elapsed.as_secs_f64()
    ))
}
