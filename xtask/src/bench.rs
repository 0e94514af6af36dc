//! `cargo xtask bench`: the guest's workloads under QEMU `-icount shift=0`,
//! where the TSC counts executed instructions, so the figures are the same
//! on any machine and any load. Results go to a table on the terminal and to
//! `target/bench/results.csv` (`workload,image,platform,iterations,ticks`);
//! the bare / seL4 / trap-and-emulate comparison also to
//! `target/bench/sel4.{txt,csv,svg}`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::images::{self, Image};
use crate::{chart, paths, qemu, setup};

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
        icount: Some(0),
        com2: false,
        settle: None,
        debugcons: &[],
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
    let platforms: Vec<&str> = samples.iter().map(|s| s.platform).collect();
    write_csv_replacing(samples, |_, _, platform| platforms.contains(&platform))
}

/// Adds `samples` to results.csv, replacing the rows of the same workload,
/// image and platform (Linux's, beside `bench --bare`'s bare rows).
fn write_csv_rows(samples: &[Sample]) -> Result<(), String> {
    write_csv_replacing(samples, |workload, image, platform| {
        samples
            .iter()
            .any(|s| s.workload == workload && s.image.name() == image && s.platform == platform)
    })
}

/// Writes results.csv: the old rows `stale` does not reject
/// (workload, image, platform), then `samples`.
fn write_csv_replacing(
    samples: &[Sample],
    stale: impl Fn(&str, &str, &str) -> bool,
) -> Result<(), String> {
    let dir = paths::target().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("results.csv");
    let mut out = String::from("workload,image,platform,iterations,ticks\n");
    if let Ok(old) = std::fs::read_to_string(&path) {
        for line in old.lines().skip(1) {
            let mut fields = line.split(',');
            let (workload, image, platform) = (
                fields.next().unwrap_or(""),
                fields.next().unwrap_or(""),
                fields.next().unwrap_or(""),
            );
            if !stale(workload, image, platform) {
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
pub fn loader(flavour: crate::kernel::Flavour) -> Result<(), String> {
    let tools = setup::ensure()?;
    let kernel = crate::kernel::build(&tools, flavour)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8} {:>8} {:>14} {:>12} {:>14} {:>16}",
        "RAM MiB", "objects", "create ticks", "per object", "load ticks", "VMM starts at"
    );
    for ram in [8u32, 16, 32, 64] {
        let description = crate::generated::description_with_ram(ram)?;
        let bundle = crate::generated::bundle(&format!("bench-{ram}"), &description)?;
        let run = crate::system::boot(&kernel, &bundle, 512, Some(0), qemu::Echo::Quiet)?;
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

/// Guests of this much RAM in the scale bench, as the issue asks.
const SCALE_RAM_MIB: u32 = 64;
/// The workloads each guest runs in the scale bench, one boot each, with
/// enough iterations to outlast many of seL4's 10 ms time slices (at
/// `-icount shift=0` a tick is a nanosecond): `cpu` 100 (41 ms alone),
/// `mixed` 100,000 (178 ms alone).
const SCALE_WORKLOADS: [(&str, &str); 2] = [
    ("cpu", "bench=cpu iterations=100"),
    ("mixed", "bench=mixed iterations=100000"),
];

/// One boot of `n` guests of the scale bench, each with `cmdline`: COM1
/// and each guest's console.
fn scale_boot(
    kernel: &crate::kernel::KernelBuild,
    n: u32,
    cmdline: &str,
) -> Result<(String, Vec<Vec<u8>>), String> {
    if n == 1 {
        let description = crate::generated::description_with_ram(SCALE_RAM_MIB)?;
        let bundle =
            crate::generated::bundle_with("scale-1", &description, Image::Padded, Some(cmdline))?;
        let run = crate::system::boot_for(
            kernel,
            &bundle,
            1024,
            Some(0),
            qemu::Echo::Quiet,
            Duration::from_secs(900),
        )?;
        if run.outcome != qemu::Outcome::Passed {
            return Err(format!(
                "one guest ended with {}:\n{}",
                run.outcome, run.serial
            ));
        }
        return Ok((run.serial.clone(), vec![run.com2.unwrap_or_default()]));
    }
    let guests: Vec<crate::generated::GuestSpec> = (0..n)
        .map(|k| crate::generated::GuestSpec {
            name: format!("guest{k}"),
            image: "guest",
            cmdline: cmdline.to_string(),
            trap: false,
            ram_mib: SCALE_RAM_MIB,
        })
        .collect();
    let several = crate::several::run(
        kernel,
        &format!("scale-{n}"),
        &guests,
        1024,
        Some(0),
        qemu::Echo::Quiet,
        Duration::from_secs(1800),
    )?;
    if several.run.outcome != qemu::Outcome::Passed {
        return Err(format!(
            "{n} guests ended with {}:\n{}",
            several.run.outcome, several.run.serial
        ));
    }
    Ok((several.run.serial, several.consoles))
}

/// Systems of 1, 2, 4 and 8 guests of 64 MiB, each with its own VMM, every
/// guest running `cpu` and `mixed`, under `-icount shift=0` (TSC ticks are
/// instructions, deterministic): the loader's time and untyped memory, and
/// each guest's ticks per iteration against one guest alone. The TSC counts
/// the whole machine's instructions, so N guests sharing the CPU fairly
/// each take about N times as many ticks per iteration.
pub fn scale(flavour: crate::kernel::Flavour) -> Result<(), String> {
    let tools = setup::ensure()?;
    let kernel = crate::kernel::build(&tools, flavour)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6} {:>8} {:>12} {:>14} {:>14} {:>16} {:>16}",
        "guests",
        "objects",
        "untyped KiB",
        "create ticks",
        "ready ticks",
        "cpu ticks/iter",
        "mixed ticks/iter"
    );
    let mut alone = [0.0f64; 2];
    for n in [1u32, 2, 4, 8] {
        let mut per = [0.0f64; 2];
        let mut loader = String::new();
        for (k, (workload, cmdline)) in SCALE_WORKLOADS.iter().enumerate() {
            let (serial, consoles) = scale_boot(&kernel, n, cmdline)?;
            if k == 0 {
                let read = |what: &str| {
                    number_after(&serial, what)
                        .ok_or_else(|| format!("no {what:?} with {n} guests"))
                };
                let summary = serial
                    .lines()
                    .find(|l| l.contains("KiB of untyped memory used"))
                    .ok_or_else(|| format!("no untyped summary with {n} guests"))?;
                let untyped = number_after(summary, "objects, ")
                    .ok_or_else(|| format!("no untyped figure in {summary:?}"))?;
                loader = format!(
                    "{:>8} {untyped:>12} {:>14} {:>14}",
                    read("loader: spec of ")?,
                    read("loader: creating took ")?,
                    read("ready after ")?
                );
            }
            // Each guest's ticks per iteration, averaged over the guests.
            for console in &consoles {
                let samples = parse(&String::from_utf8_lossy(console), Image::Padded, "seL4")?;
                let s = samples
                    .iter()
                    .find(|s| s.workload == *workload)
                    .ok_or_else(|| format!("no {workload} figure from a guest of {n}"))?;
                per[k] += s.per_iteration() / consoles.len() as f64;
            }
            if n == 1 {
                alone[k] = per[k];
            }
        }
        let _ = writeln!(
            out,
            "{n:>6} {loader} {:>9.0} ({:.2}x) {:>9.1} ({:.2}x)",
            per[0],
            per[0] / alone[0],
            per[1],
            per[1] / alone[1]
        );
    }
    print!("{out}");
    let dir = paths::target().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    crate::write_atomically(&dir.join("scale.txt"), out.as_bytes())
}

/// The workloads of the seL4 comparison: the kernel's, then the processes'
/// (docs/guest-processes.md).
const SEL4_WORKLOADS: &str =
    "cpu,irqsave,pio,pagefault,cr3,invlpg,timer,mixed,syscall,int80,ctxsw,fork,ufault";

/// Trap-and-emulate runs no guest processes (docs/trap-and-emulate.md,
/// "Limits"): the kernel's workloads only; the processes' have no trap
/// column.
const TRAP_WORKLOADS: &str = "cpu,irqsave,pio,pagefault,cr3,invlpg,timer,mixed";

/// The padded guest's workloads bare and on seL4 (through the loader, the
/// VMM and the wedge), and the plain guest's under trap-and-emulate on the
/// same VMM, all under icount: seL4/bare, and trap/seL4 (the speed-up of
/// pre-virtualization over trapping).
pub fn sel4(flavour: crate::kernel::Flavour) -> Result<(), String> {
    let tools = setup::ensure()?;
    let kernel = crate::kernel::build(&tools, flavour)?;
    let cmdline = format!("bench={SEL4_WORKLOADS}");
    // Bare, the same image and command line; and the plain image bare, for
    // what padding costs.
    let bare = run_bare(Image::Padded, &cmdline)?;
    let plain = run_bare(Image::Plain, &cmdline)?;
    // On seL4: the generated system with the command line in the VMM's start page.
    let (sel4, serial) = run_system(&kernel, Image::Padded, &cmdline, false)?;
    let trap_cmdline = format!("bench={TRAP_WORKLOADS}");
    let (trap, trap_serial) = run_system(&kernel, Image::Plain, &trap_cmdline, true)?;
    // Linux: boot to /init and /init's workload, plain and padded bare,
    // padded on seL4 (docs/linux.md, "Boot and /init in ticks"). Without
    // them (a failed run) the rest is still written, and the command fails.
    let linux = crate::linux_timing::measure(&kernel);
    let (mut plain_all, mut bare_all, mut sel4_all) = (plain, bare, sel4.clone());
    if let Ok(m) = &linux {
        for s in m.samples() {
            match (s.image, s.platform) {
                (Image::Plain, _) => plain_all.push(s),
                (_, "bare") => bare_all.push(s),
                _ => sel4_all.push(s),
            }
        }
    }
    let rows = compare(&plain_all, &bare_all, &sel4_all, &trap);
    let mut out = comparison_table(&rows);
    match &linux {
        Ok(m) => out.push_str(&m.before_linux()),
        Err(e) => {
            let _ = writeln!(out, "linux: not measured: {e}");
        }
    }
    for (platform, serial) in [("seL4", &serial), ("trap", &trap_serial)] {
        for line in serial.lines().filter(|l| {
            l.starts_with("vmm-server: guest0:")
                && (l.contains("requests")
                    || l.contains("trap-and-emulate: emulated")
                    || l.contains("user views:"))
        }) {
            let _ = writeln!(out, "{platform}: {line}");
        }
    }
    print!("{out}");
    // Keep the bare rows of `bench --bare` (both images); add seL4's and
    // trap's.
    let mut samples = sel4;
    samples.extend(trap);
    write_csv(&samples)?;
    if let Ok(m) = &linux {
        write_csv_rows(&m.samples())?;
    }
    let dir = paths::target().join("bench");
    crate::write_atomically(&dir.join("sel4.txt"), out.as_bytes())?;
    for (name, text) in [
        ("sel4.csv", comparison_csv(&rows)),
        ("sel4.svg", chart::render(CHART_TITLE, &rows)),
    ] {
        let path = dir.join(name);
        crate::write_atomically(&path, text.as_bytes())?;
        eprintln!("xtask: wrote {}", path.display());
    }
    linux.map(|_| ())
}

/// `bench --linux`: Linux's rows alone (the full `bench` has them after
/// the test guest's), in results.csv and in `target/bench/linux.{txt,csv,svg}`.
pub fn linux(flavour: crate::kernel::Flavour) -> Result<(), String> {
    let tools = setup::ensure()?;
    let kernel = crate::kernel::build(&tools, flavour)?;
    let m = crate::linux_timing::measure(&kernel)?;
    let samples = m.samples();
    let pick = |image: Image, platform: &str| -> Vec<Sample> {
        samples
            .iter()
            .filter(|s| s.image == image && s.platform == platform)
            .cloned()
            .collect()
    };
    let rows = compare(
        &pick(Image::Plain, "bare"),
        &pick(Image::Padded, "bare"),
        &pick(Image::Padded, "sel4"),
        &[],
    );
    let mut out = comparison_table(&rows);
    out.push_str(&m.before_linux());
    print!("{out}");
    write_csv_rows(&samples)?;
    let dir = paths::target().join("bench");
    crate::write_atomically(&dir.join("linux.txt"), out.as_bytes())?;
    for (name, text) in [
        ("linux.csv", comparison_csv(&rows)),
        ("linux.svg", chart::render(LINUX_CHART_TITLE, &rows)),
    ] {
        let path = dir.join(name);
        crate::write_atomically(&path, text.as_bytes())?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

const LINUX_CHART_TITLE: &str =
    "Linux 6.1: boot to /init and /init's workload, bare (plain, padded) and on seL4";

/// Boots the generated system with `image` and the guest command line
/// `cmdline` under icount — pre-virtualized, or with `trap` under
/// trap-and-emulate — and returns its samples (platform `sel4` or `trap`)
/// and its serial log.
fn run_system(
    kernel: &crate::kernel::KernelBuild,
    image: Image,
    cmdline: &str,
    trap: bool,
) -> Result<(Vec<Sample>, String), String> {
    let platform = if trap { "trap" } else { "sel4" };
    let description = crate::generated::description_with_ram(64)?;
    let name = format!("bench-{platform}");
    let bundle = crate::generated::bundle_for(&name, &description, image, Some(cmdline), trap)?;
    let run = crate::system::boot(kernel, &bundle, 512, Some(0), qemu::Echo::Quiet)?;
    if run.outcome != qemu::Outcome::Passed {
        return Err(format!(
            "the {platform} run ended with {}:\n{}",
            run.outcome,
            crate::process::tail(&run.serial, 30)
        ));
    }
    // The guest's bench lines are on its console: COM2, where the VMM puts it.
    let console = String::from_utf8_lossy(run.com2.as_deref().unwrap_or_default()).into_owned();
    let samples = parse(&console, image, platform)?;
    if samples.is_empty() {
        return Err(format!(
            "the {platform} run printed no bench lines on the guest's console (COM2):\n{}",
            crate::process::tail(&console, 30)
        ));
    }
    Ok((samples, run.serial))
}

const CHART_TITLE: &str =
    "Guest workloads and Linux: bare, pre-virtualized on seL4, trap-and-emulate on seL4";

/// One workload of `bench`: ticks per iteration bare and on seL4, `None`
/// where that platform has no sample. The terminal table, sel4.csv and
/// sel4.svg are all made from these, so they never disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub workload: String,
    /// The plain image (no padding), bare.
    pub plain: Option<f64>,
    /// The padded image, bare.
    pub bare: Option<f64>,
    /// Pre-virtualized, on seL4.
    pub sel4: Option<f64>,
    /// Trap-and-emulate, on seL4 (the plain image).
    pub trap: Option<f64>,
}

impl Comparison {
    /// Plain, bare, seL4 and trap, in the chart's order.
    pub fn values(&self) -> [Option<f64>; 4] {
        [self.plain, self.bare, self.sel4, self.trap]
    }

    /// bare/plain: what the padding costs on the bare machine; `None`
    /// without both values or with a plain value of 0.
    pub fn padding(&self) -> Option<f64> {
        match (self.plain, self.bare) {
            (Some(p), Some(b)) if p > 0.0 => Some(b / p),
            _ => None,
        }
    }

    /// trap/seL4: how many times faster pre-virtualization is than
    /// trap-and-emulate; `None` without both values or with a seL4 value of 0.
    pub fn speedup(&self) -> Option<f64> {
        match (self.sel4, self.trap) {
            (Some(s), Some(t)) if s > 0.0 => Some(t / s),
            _ => None,
        }
    }

    /// seL4/bare; `None` without both values or with a bare value of 0.
    pub fn ratio(&self) -> Option<f64> {
        match (self.bare, self.sel4) {
            (Some(b), Some(s)) if b > 0.0 => Some(s / b),
            _ => None,
        }
    }

    /// seL4 - bare, ticks per iteration.
    pub fn overhead(&self) -> Option<f64> {
        Some(self.sel4? - self.bare?)
    }
}

/// Ticks per iteration as the table, the CSV and the chart print them.
pub fn per_iteration_text(value: f64) -> String {
    format!("{value:.1}")
}

/// The seL4/bare ratio as the table, the CSV and the chart print it.
pub fn ratio_text(ratio: f64) -> String {
    format!("{ratio:.3}")
}

/// The trap/seL4 speed-up as the table, the CSV and the chart print it.
pub fn speedup_text(speedup: f64) -> String {
    format!("{speedup:.1}")
}

/// Pairs the runs' samples by workload: plain's order first, then any
/// workload only bare (then seL4, then trap) ran. A workload sampled twice
/// keeps its first sample.
pub fn compare(
    plain: &[Sample],
    bare: &[Sample],
    sel4: &[Sample],
    trap: &[Sample],
) -> Vec<Comparison> {
    let mut rows: Vec<Comparison> = Vec::new();
    for (i, samples) in [plain, bare, sel4, trap].into_iter().enumerate() {
        for sample in samples {
            let at = match rows.iter().position(|r| r.workload == sample.workload) {
                Some(at) => at,
                None => {
                    rows.push(Comparison {
                        workload: sample.workload.clone(),
                        plain: None,
                        bare: None,
                        sel4: None,
                        trap: None,
                    });
                    rows.len() - 1
                }
            };
            let slot = match i {
                0 => &mut rows[at].plain,
                1 => &mut rows[at].bare,
                2 => &mut rows[at].sel4,
                _ => &mut rows[at].trap,
            };
            slot.get_or_insert(sample.per_iteration());
        }
    }
    rows
}

fn comparison_table(rows: &[Comparison]) -> String {
    let text = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "-".to_string(), f);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>14} {:>14} {:>12} {:>14} {:>12} {:>16} {:>14} {:>10}",
        "workload",
        "plain t/iter",
        "bare t/iter",
        "bare/plain",
        "seL4 t/iter",
        "seL4/bare",
        "seL4-bare t/iter",
        "trap t/iter",
        "trap/seL4"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<10} {:>14} {:>14} {:>12} {:>14} {:>12} {:>16} {:>14} {:>10}",
            row.workload,
            text(row.plain, per_iteration_text),
            text(row.bare, per_iteration_text),
            text(row.padding(), ratio_text),
            text(row.sel4, per_iteration_text),
            text(row.ratio(), ratio_text),
            text(row.overhead(), per_iteration_text),
            text(row.trap, per_iteration_text),
            text(row.speedup(), speedup_text),
        );
    }
    out
}

/// The table as CSV, a missing value as an empty field.
fn comparison_csv(rows: &[Comparison]) -> String {
    let text = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(String::new, f);
    let mut out = String::from(
        "workload,plain_ticks_per_iter,bare_ticks_per_iter,padding_ratio,sel4_ticks_per_iter,ratio,overhead_ticks_per_iter,trap_ticks_per_iter,speedup\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            csv_field(&row.workload),
            text(row.plain, per_iteration_text),
            text(row.bare, per_iteration_text),
            text(row.padding(), ratio_text),
            text(row.sel4, per_iteration_text),
            text(row.ratio(), ratio_text),
            text(row.overhead(), per_iteration_text),
            text(row.trap, per_iteration_text),
            text(row.speedup(), speedup_text),
        );
    }
    out
}

/// RFC 4180 quoting, for a workload name with a comma or a quote in it.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
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

    fn sample(workload: &str, platform: &'static str, iterations: u64, ticks: u64) -> Sample {
        Sample {
            workload: workload.to_string(),
            image: Image::Padded,
            platform,
            iterations,
            ticks,
        }
    }

    /// The two runs of `bench`: `timer` bare only, `extra` on seL4 only.
    fn runs() -> (Vec<Sample>, Vec<Sample>) {
        let bare = vec![
            sample("cpu", "bare", 10, 4_096_060),
            sample("irqsave", "bare", 1000, 11_000),
            sample("pagefault", "bare", 3, 600),
            sample("timer", "bare", 1, 5),
        ];
        let sel4 = vec![
            sample("irqsave", "sel4", 1000, 28_000),
            sample("cpu", "sel4", 10, 4_098_400),
            sample("pagefault", "sel4", 3, 30_000),
            sample("extra", "sel4", 4, 10),
        ];
        (bare, sel4)
    }

    #[test]
    fn compare_pairs_workloads_and_keeps_those_of_one_platform() {
        let (bare, sel4) = runs();
        let rows = compare(&[], &bare, &sel4, &[]);
        let names: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
        assert_eq!(names, ["cpu", "irqsave", "pagefault", "timer", "extra"]);
        assert_eq!((rows[1].bare, rows[1].sel4), (Some(11.0), Some(28.0)));
        assert_eq!(rows[3].sel4, None);
        assert_eq!(rows[4].bare, None);
        assert_eq!(rows[2].ratio(), Some(50.0));
        assert_eq!(rows[2].overhead(), Some(9800.0));
        assert_eq!(rows[3].ratio(), None);
        // A bare value of 0 has no ratio, but an overhead.
        let zero = compare(
            &[],
            &[sample("z", "bare", 0, 0)],
            &[sample("z", "sel4", 1, 5)],
            &[],
        );
        assert_eq!((zero[0].ratio(), zero[0].overhead()), (None, Some(5.0)));
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_workload() {
        let (bare, sel4) = runs();
        let trap = [sample("irqsave", "trap", 1000, 3_500_000)];
        let plain = [sample("irqsave", "bare", 1000, 10_000)];
        let csv = comparison_csv(&compare(&plain, &bare, &sel4, &trap));
        assert_eq!(
            csv,
            "workload,plain_ticks_per_iter,bare_ticks_per_iter,padding_ratio,sel4_ticks_per_iter,ratio,overhead_ticks_per_iter,trap_ticks_per_iter,speedup\n\
             irqsave,10.0,11.0,1.100,28.0,2.545,17.0,3500.0,125.0\n\
             cpu,,409606.0,,409840.0,1.001,234.0,,\n\
             pagefault,,200.0,,10000.0,50.000,9800.0,,\n\
             timer,,5.0,,,,,,\n\
             extra,,,,2.5,,,,\n"
        );
        assert_eq!(csv_field("a,\"b"), "\"a,\"\"b\"");
    }

    #[test]
    fn table_csv_and_chart_print_the_same_numbers() {
        let (bare, sel4) = runs();
        let trap = [sample("irqsave", "trap", 1000, 3_500_000)];
        let plain = [sample("irqsave", "bare", 1000, 10_000)];
        let rows = compare(&plain, &bare, &sel4, &trap);
        let table = comparison_table(&rows);
        assert_eq!(table.lines().count(), 1 + rows.len());
        let fields: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            fields[1],
            ["irqsave", "10.0", "11.0", "1.100", "28.0", "2.545", "17.0", "3500.0", "125.0"]
        );
        assert_eq!(
            fields[4],
            ["timer", "-", "5.0", "-", "-", "-", "-", "-", "-"]
        );
        let svg = chart::render(CHART_TITLE, &rows);
        for number in [
            "409840.0",
            "10.0",
            "padded 1.100×",
            "2.545×",
            "10000.0",
            "2.5",
            "3500.0",
            "125.0× faster",
        ] {
            assert!(
                svg.contains(&format!(">{number}<")),
                "{number} not in the chart"
            );
        }
    }
}
