//! `cargo xtask bench`: the guest's workloads under QEMU `-icount shift=0`,
//! where the TSC counts executed instructions, so the figures are the same
//! on any machine and any load. Results go to a table on the terminal and to
//! `target/bench/results.csv` (`workload,image,platform,iterations,ticks`).

use std::fmt::Write as _;
use std::time::Duration;

use crate::images::{self, Image};
use crate::{paths, qemu, setup};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub workload: String,
    pub image: Image,
    pub platform: &'static str,
    pub iterations: u64,
    pub ticks: u64,
}

impl Sample {
    pub fn per_iteration(&self) -> f64 {
        self.ticks as f64 / self.iterations.max(1) as f64
    }
}

/// Reads the guest's `bench NAME iterations ticks` lines.
pub fn parse(serial: &str, image: Image, platform: &'static str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for line in serial.lines().filter(|l| l.starts_with("bench ")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, workload, iterations, ticks] = fields[..] else {
            return Err(format!("malformed bench line {line:?}"));
        };
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("bad number {s:?} in {line:?}"))
        };
        samples.push(Sample {
            workload: workload.to_string(),
            image,
            platform,
            iterations: number(iterations)?,
            ticks: number(ticks)?,
        });
    }
    Ok(samples)
}

/// Boots `image` bare with `cmdline` (a `bench=` selection) under icount
/// and returns its samples.
fn run_bare(image: Image, cmdline: &str) -> Result<Vec<Sample>, String> {
    let elf = images::build(image)?;
    let machine = qemu::Machine {
        kernel: &elf,
        module: None,
        append: Some(cmdline),
        memory_mib: 128,
        accel: "tcg",
        icount: true,
        com2: false,
    };
    let run = machine.boot(Duration::from_secs(600), qemu::Echo::Quiet)?;
    if run.outcome != qemu::Outcome::Passed {
        return Err(format!(
            "the {} image's benchmark run ended with {}:\n{}",
            image.name(),
            run.outcome,
            run.serial
        ));
    }
    let samples = parse(&run.serial, image, "bare")?;
    if samples.is_empty() {
        return Err(format!("the {} image printed no bench lines", image.name()));
    }
    Ok(samples)
}

pub fn bare() -> Result<(), String> {
    setup::ensure()?;
    let mut samples = run_bare(Image::Plain, "bench=all")?;
    samples.extend(run_bare(Image::Padded, "bench=all")?);
    print!("{}", table(&samples));
    write_csv(&samples)
}

fn table(samples: &[Sample]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>14} {:>14} {:>14}",
        "workload", "plain t/iter", "padded t/iter", "padded/plain"
    );
    for plain in samples.iter().filter(|s| s.image == Image::Plain) {
        let padded = samples
            .iter()
            .find(|s| s.image == Image::Padded && s.workload == plain.workload);
        let (p, ratio) = match padded {
            Some(p) => (
                format!("{:.1}", p.per_iteration()),
                format!("{:.4}", p.per_iteration() / plain.per_iteration()),
            ),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{:<10} {:>14.1} {:>14} {:>14}",
            plain.workload,
            plain.per_iteration(),
            p,
            ratio
        );
    }
    out
}

/// Replaces this platform's rows in results.csv, keeping other platforms'.
fn write_csv(samples: &[Sample]) -> Result<(), String> {
    let dir = paths::target().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("results.csv");
    let platforms: Vec<&str> = samples.iter().map(|s| s.platform).collect();
    let mut out = String::from("workload,image,platform,iterations,ticks\n");
    if let Ok(old) = std::fs::read_to_string(&path) {
        for line in old.lines().skip(1) {
            let platform = line.split(',').nth(2).unwrap_or("");
            if !platforms.contains(&platform) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for s in samples {
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            s.workload,
            s.image.name(),
            s.platform,
            s.iterations,
            s.ticks
        );
    }
    crate::write_atomically(&path, out.as_bytes())?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// Numbers of `name` in `line` after `before` (up to the next non-digit).
fn number_after(serial: &str, before: &str) -> Option<u64> {
    let at = serial.find(before)? + before.len();
    let digits: String = serial[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The loader on generated systems of growing guest RAM, under icount: how
/// creation scales with the number of objects.
pub fn loader() -> Result<(), String> {
    let tools = setup::ensure()?;
    let kernel = crate::kernel::build(&tools)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8} {:>8} {:>14} {:>12} {:>14} {:>16}",
        "RAM MiB", "objects", "create ticks", "per object", "load ticks", "VMM starts at"
    );
    for ram in [8u32, 16, 32, 64] {
        let description = crate::generated::description_with_ram(ram)?;
        let bundle = crate::generated::bundle(&format!("bench-{ram}"), &description)?;
        let run = crate::system::boot(&kernel, &bundle, 512, true, qemu::Echo::Quiet)?;
        if run.outcome != qemu::Outcome::Passed {
            return Err(format!(
                "the {ram} MiB system ended with {}:\n{}",
                run.outcome, run.serial
            ));
        }
        let read = |what: &str| {
            number_after(&run.serial, what)
                .ok_or_else(|| format!("no {what:?} in the {ram} MiB run"))
        };
        let objects = read("loader: spec of ")?;
        let create = read("loader: creating took ")?;
        let ready = read("ready after ")?;
        let vmm = read("vmm-server: started at TSC ")?;
        let _ = writeln!(
            out,
            "{ram:>8} {objects:>8} {create:>14} {:>12} {ready:>14} {vmm:>16}",
            create / objects.max(1)
        );
    }
    print!("{out}");
    let dir = paths::target().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    crate::write_atomically(&dir.join("loader.txt"), out.as_bytes())
}

/// The workloads that run on seL4 today (not `timer`: no virtual interrupts).
const SEL4_WORKLOADS: &str = "cpu,irqsave,pio,pagefault,cr3,invlpg,mixed";

/// The padded guest's workloads bare and on seL4 (through the loader, the
/// VMM and the wedge), both under icount, with the seL4/bare ratio.
pub fn sel4() -> Result<(), String> {
    let tools = setup::ensure()?;
    let kernel = crate::kernel::build(&tools)?;
    let cmdline = format!("bench={SEL4_WORKLOADS}");
    // Bare, the same image and command line.
    let bare = run_bare(Image::Padded, &cmdline)?;
    // On seL4: the generated system with the command line built into the VMM.
    let description = crate::generated::description_with_ram(64)?;
    let bundle =
        crate::generated::bundle_with("bench-sel4", &description, Image::Padded, Some(&cmdline))?;
    let run = crate::system::boot(&kernel, &bundle, 512, true, qemu::Echo::Quiet)?;
    if run.outcome != qemu::Outcome::Passed {
        return Err(format!(
            "the seL4 run ended with {}:\n{}",
            run.outcome,
            crate::process::tail(&run.serial, 30)
        ));
    }
    // The guest's bench lines are on its console: COM2, where the VMM puts it.
    let console = String::from_utf8_lossy(run.com2.as_deref().unwrap_or_default()).into_owned();
    let sel4 = parse(&console, Image::Padded, "sel4")?;
    if sel4.is_empty() {
        return Err(format!(
            "the seL4 run printed no bench lines on the guest's console (COM2):\n{}",
            crate::process::tail(&console, 30)
        ));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>14} {:>14} {:>12} {:>16}",
        "workload", "bare t/iter", "seL4 t/iter", "seL4/bare", "seL4-bare t/iter"
    );
    for b in &bare {
        let Some(s) = sel4.iter().find(|s| s.workload == b.workload) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{:<10} {:>14.1} {:>14.1} {:>12.3} {:>16.1}",
            b.workload,
            b.per_iteration(),
            s.per_iteration(),
            s.per_iteration() / b.per_iteration(),
            s.per_iteration() - b.per_iteration()
        );
    }
    for line in run
        .serial
        .lines()
        .filter(|l| l.starts_with("vmm-server: guest0:") && l.contains("requests"))
    {
        let _ = writeln!(out, "{line}");
    }
    print!("{out}");
    let mut samples = sel4;
    // Keep the bare rows of `bench --bare` (both images); add seL4's.
    samples.retain(|s| s.platform == "sel4");
    write_csv(&samples)?;
    let dir = paths::target().join("bench");
    crate::write_atomically(&dir.join("sel4.txt"), out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_lines_and_rejects_malformed_ones() {
        let serial = "guest: x\nbench cpu 20 4000\nselftest\nbench pio 10 50\n";
        let s = parse(serial, Image::Plain, "bare").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].workload.as_str(), s[0].iterations, s[0].ticks),
            ("cpu", 20, 4000)
        );
        assert_eq!(s[1].per_iteration(), 5.0);
        assert!(parse("bench cpu 20\n", Image::Plain, "bare").is_err());
        assert!(parse("bench cpu x 1\n", Image::Plain, "bare").is_err());
    }
}
