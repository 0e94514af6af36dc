//! `cargo xtask experiment mapping`: every vTLB strategy × every
//! mapping-consistency workload (docs/vtlb.md) on seL4 under QEMU
//! `-icount shift=0`, so ticks count instructions and every run is the same
//! on any machine. Each pair runs twice: once as it is (ticks, faults,
//! mappings) and once with the VMM checking the invariant at every
//! invalidation point (violations; the check's own walks would inflate the
//! ticks). Results: `target/experiments/mapping.csv`, `mapping.txt` (the
//! summary table), `mapping-ticks.svg` and `mapping-faults.svg`.

use std::fmt::Write as _;
use std::time::Instant;

use capdl::generate::VtlbStrategy;

use crate::images::Image;
use crate::kernel::KernelBuild;
use crate::{generated, paths, qemu, system};

/// The guest's mapping workloads (images/guest/src/mapping.c).
pub const WORKLOADS: [&str; 4] = ["ptmut", "largepage", "aschurn", "forkchurn"];

/// Operations per run unless given: `largepage`'s split and merge reload
/// CR3 with 512 pages to walk, and a `forkchurn` operation is a fork, a
/// wait or a yield among processes (~3 million ticks each on seL4), so
/// fewer of them keep the whole experiment within minutes.
pub fn default_iterations(workload: &str) -> u64 {
    match workload {
        "largepage" | "forkchurn" => 300,
        _ => 1000,
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub strategies: Vec<VtlbStrategy>,
    pub workloads: Vec<String>,
    /// Operations per workload run ([`default_iterations`] if `None`).
    pub iterations: Option<u64>,
    /// Also time each pair without the checker (the full experiment);
    /// without, only the checked run (the test's small version).
    pub timed: bool,
    /// Also record each workload once and replay every strategy on the
    /// host, comparing each replay with its QEMU run
    /// ([`crate::experiment_replay`]).
    pub replay: bool,
}

/// One strategy on one workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub strategy: String,
    pub workload: String,
    /// The unchecked run (the checked one if the plan is not timed): its
    /// ticks are the strategy's cost.
    pub run: Figures,
    /// Found by the checked run.
    pub violations: u64,
    /// The checker's first violation, as the VMM said it.
    pub first_violation: Option<String>,
    /// Reads the guest found wrong in either run (a stale mapping it saw).
    pub wrong_reads: u64,
    /// The QEMU run's wall time, in milliseconds (the unchecked one's if
    /// the plan is timed).
    pub qemu_ms: u64,
    /// Whether the guest finished the workload in every run of the pair. A
    /// broken strategy may not let it: in `forkchurn` a process that runs
    /// on another's stale mappings corrupts that one's stack or a page
    /// table, and the guest fails (its ticks are then unknown, and the
    /// guest did not do what the recording did: docs/vtlb.md).
    pub finished: bool,
}

/// What one run's serial output says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    pub ops: u64,
    pub ticks: u64,
    pub faults: u64,
    pub maps: u64,
    pub unmaps: u64,
    pub paging_objects: u64,
    pub peak_mappings: u64,
    pub violations: Option<u64>,
    pub first_violation: Option<String>,
    pub wrong_reads: u64,
    /// The guest printed the workload's `bench` and `mapping` lines.
    pub finished: bool,
}

/// The number right after `key` in `line`.
fn after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The number right before ` key` in `line`.
fn before(line: &str, key: &str) -> Option<u64> {
    let head = &line[..line.find(key)?];
    let digits: String = head
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

/// Reads a run: the guest's `bench` and `mapping` lines (its console; if
/// either is missing, the guest did not finish: `finished` is false) and
/// the VMM's report (the kernel's serial, always there).
pub fn parse(workload: &str, console: &str, serial: &str) -> Result<Figures, String> {
    let mut f = Figures::default();
    let bench = console
        .lines()
        .find(|l| l.starts_with(&format!("bench {workload} ")));
    let mapping = console
        .lines()
        .find(|l| l.starts_with(&format!("mapping {workload}: ")));
    if let (Some(bench), Some(mapping)) = (bench, mapping) {
        let fields: Vec<&str> = bench.split_whitespace().collect();
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("bad number {s:?} in {bench:?}"))
        };
        let [_, _, ops, ticks] = fields[..] else {
            return Err(format!("malformed bench line {bench:?}"));
        };
        f.ops = number(ops)?;
        f.ticks = number(ticks)?;
        f.wrong_reads =
            before(mapping, "wrong").ok_or_else(|| format!("no count in {mapping:?}"))?;
        f.finished = true;
    }
    let vmm = |what: &str| {
        serial
            .lines()
            .find(|l| l.starts_with("vmm-server: guest0: ") && l.contains(what))
            .ok_or_else(|| format!("no VMM line with {what:?} in the run"))
    };
    let served = vmm("page faults served")?;
    let missing = |l: &str| format!("unexpected VMM line {l:?}");
    f.faults = before(served, "page faults served").ok_or_else(|| missing(served))?;
    f.unmaps = before(served, "removed").ok_or_else(|| missing(served))?;
    f.paging_objects = before(served, "seL4 paging structures").ok_or_else(|| missing(served))?;
    let vtlb = vmm("mappings made (")?;
    f.maps = before(vtlb, "mappings made (").ok_or_else(|| missing(vtlb))?;
    f.peak_mappings = after(vtlb, "at most ").ok_or_else(|| missing(vtlb))?;
    if let Ok(check) = vmm("vtlb check: ") {
        if let Some(v) = before(check, "violations") {
            f.violations = Some(v);
        }
    }
    f.first_violation = serial
        .lines()
        .find_map(|l| l.split_once("vtlb check: first violation "))
        .map(|(_, v)| v.trim().to_string());
    Ok(f)
}

/// Boots the system with `strategy` on `workload` and reads it.
fn run_one(
    kernel: &KernelBuild,
    workload: &str,
    iterations: u64,
    strategy: VtlbStrategy,
    check: bool,
) -> Result<Figures, String> {
    let cmdline = format!("bench={workload} iterations={iterations}");
    let description = generated::with_vtlb(
        &generated::description_with_ram(64)?,
        strategy.name(),
        check,
    )?;
    let name = format!(
        "experiment-{}-{workload}{}",
        strategy.name(),
        if check { "-checked" } else { "" }
    );
    let bundle = generated::bundle_with(&name, &description, Image::Padded, Some(&cmdline))?;
    let run = system::boot(kernel, &bundle, 512, Some(0), qemu::Echo::Quiet)?;
    let console = String::from_utf8_lossy(run.com2.as_deref().unwrap_or_default()).into_owned();
    let ended = |e: &str| {
        format!(
            "{} × {workload}: {e}; it ended with {}:\n{}",
            strategy.name(),
            run.outcome,
            crate::process::tail(&run.serial, 20)
        )
    };
    let mut f = parse(workload, &console, &run.serial).map_err(|e| ended(&e))?;
    if !f.finished {
        // Under a correct strategy the guest must finish; a broken one
        // may make it fail (its mappings are counted all the same).
        if strategy.is_correct() {
            return Err(ended(&format!(
                "no `bench {workload}` and `mapping {workload}:` lines on the guest's console"
            )));
        }
        f.ops = iterations;
    }
    Ok(f)
}

/// Runs the plan, one progress line per run.
pub fn run(kernel: &KernelBuild, plan: &Plan) -> Result<Vec<Row>, String> {
    let total = plan.strategies.len() * plan.workloads.len() * if plan.timed { 2 } else { 1 };
    let mut done = 0;
    let mut rows = Vec::new();
    for workload in &plan.workloads {
        for &strategy in &plan.strategies {
            let mut row = Row {
                strategy: strategy.name().to_string(),
                workload: workload.clone(),
                finished: true,
                ..Row::default()
            };
            for check in [false, true] {
                if !check && !plan.timed {
                    continue;
                }
                let started = Instant::now();
                let iterations = plan
                    .iterations
                    .unwrap_or_else(|| default_iterations(workload));
                let f = run_one(kernel, workload, iterations, strategy, check)?;
                done += 1;
                eprintln!(
                    "experiment: {done}/{total} {} × {workload}{}: {}, {} faults, {} mappings made{} ({:.1} s)",
                    strategy.name(),
                    if check { ", checked" } else { "" },
                    if f.finished {
                        format!("{:.0} ticks/op", f.ticks as f64 / f.ops.max(1) as f64)
                    } else {
                        "the guest did not finish".to_string()
                    },
                    f.faults,
                    f.maps,
                    f.violations
                        .map(|v| format!(", {v} violations"))
                        .unwrap_or_default(),
                    started.elapsed().as_secs_f64()
                );
                if check {
                    row.violations = f.violations.ok_or_else(|| {
                        format!(
                            "{} × {workload}: the checked run reported no check line",
                            strategy.name()
                        )
                    })?;
                    row.first_violation = f.first_violation.clone();
                }
                row.wrong_reads = row.wrong_reads.max(f.wrong_reads);
                row.finished &= f.finished;
                if !check || !plan.timed {
                    row.run = f;
                    row.qemu_ms = started.elapsed().as_millis() as u64;
                }
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The CSV, header first.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "strategy,workload,ops,ticks,faults,maps,unmaps,paging_objects,peak_mappings,violations\n",
    );
    for r in rows {
        let _ = writeln!(out, "{}", r.csv_fields());
    }
    out
}

impl Row {
    /// The row's fields in the CSV's column order (the replay's CSV puts
    /// the same after its `source` column); ticks are empty for a run the
    /// guest did not finish.
    pub fn csv_fields(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{}",
            self.strategy,
            self.workload,
            self.run.ops,
            if self.run.finished {
                self.run.ticks.to_string()
            } else {
                String::new()
            },
            self.run.faults,
            self.run.maps,
            self.run.unmaps,
            self.run.paging_objects,
            self.run.peak_mappings,
            self.violations
        )
    }
}

/// The summary: per workload, each strategy's ticks per op against
/// `keep`'s, faults, mappings and violations.
pub fn summary(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<16} {:>12} {:>9} {:>8} {:>8} {:>8} {:>6} {:>10} {:>6}",
        "workload",
        "strategy",
        "ticks/op",
        "vs keep",
        "faults",
        "maps",
        "unmaps",
        "peak",
        "violations",
        "wrong"
    );
    for r in rows {
        let per_op = r.run.ticks as f64 / r.run.ops.max(1) as f64;
        let keep = rows
            .iter()
            .find(|k| k.workload == r.workload && k.strategy == "keep" && k.run.finished)
            .map(|k| k.run.ticks as f64 / k.run.ops.max(1) as f64);
        let (per_op, against_keep) = if r.run.finished {
            (
                format!("{per_op:.0}"),
                keep.map_or("-".to_string(), |k| format!("{:.2}x", per_op / k)),
            )
        } else {
            ("-".to_string(), "-".to_string())
        };
        let _ = writeln!(
            out,
            "{:<10} {:<16} {:>12} {:>9} {:>8} {:>8} {:>8} {:>6} {:>10} {:>6}",
            r.workload,
            r.strategy,
            per_op,
            against_keep,
            r.run.faults,
            r.run.maps,
            r.run.unmaps,
            r.run.peak_mappings,
            r.violations,
            if r.finished {
                r.wrong_reads.to_string()
            } else {
                "-".to_string()
            }
        );
    }
    for r in rows.iter().filter(|r| !r.finished) {
        let _ = writeln!(
            out,
            "{} × {}: the guest did not finish (it ran on mappings its tables no longer justified)",
            r.strategy, r.workload
        );
    }
    for r in rows.iter().filter(|r| r.first_violation.is_some()) {
        let _ = writeln!(
            out,
            "first violation, {} × {}: {}",
            r.strategy,
            r.workload,
            r.first_violation.as_deref().unwrap_or_default()
        );
    }
    out
}

/// Checks what every experiment must show: no violation and no wrong read
/// under a correct strategy; at least one violation under a broken one.
pub fn judge(rows: &[Row]) -> Result<String, String> {
    let mut problems = Vec::new();
    let (mut correct, mut broken) = (0, 0);
    for r in rows {
        let strategy = VtlbStrategy::from_name(&r.strategy)
            .ok_or_else(|| format!("unknown strategy {}", r.strategy))?;
        if strategy.is_correct() {
            correct += 1;
            if r.violations > 0 || r.wrong_reads > 0 {
                problems.push(format!(
                    "{} × {}: {} violations, {} wrong reads ({})",
                    r.strategy,
                    r.workload,
                    r.violations,
                    r.wrong_reads,
                    r.first_violation
                        .as_deref()
                        .unwrap_or("no violation recorded")
                ));
            }
        } else {
            broken += 1;
            if r.violations == 0 {
                problems.push(format!(
                    "{} × {}: the broken strategy went uncaught (0 violations)",
                    r.strategy, r.workload
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{correct} correct runs with 0 violations, {broken} broken runs caught"
        ))
    } else {
        Err(problems.join("; "))
    }
}

/// The full experiment: runs, writes the results and the plots, judges.
pub fn mapping(kernel: &KernelBuild, plan: &Plan) -> Result<(), String> {
    let started = Instant::now();
    let rows = run(kernel, plan)?;
    let text = summary(&rows);
    print!("{text}");
    let dir = paths::target().join("experiments");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, bytes) in [
        ("mapping.csv", csv(&rows)),
        ("mapping.txt", text),
        (
            "mapping-ticks.svg",
            crate::experiment_plot::ticks_per_op(&rows),
        ),
        (
            "mapping-faults.svg",
            crate::experiment_plot::faults_vs_ticks(&rows),
        ),
    ] {
        let path = dir.join(name);
        crate::write_atomically(&path, bytes.as_bytes())?;
        eprintln!("xtask: wrote {}", path.display());
    }
    let mut verdict = judge(&rows);
    if plan.replay {
        let (recordings, replays) = crate::experiment_replay::record_and_replay(
            kernel,
            &plan.workloads,
            plan.iterations,
            &plan.strategies,
        )?;
        for rec in &recordings {
            let path = dir.join(format!("trace-{}.txt", rec.workload));
            crate::write_atomically(&path, rec.text.as_bytes())?;
            eprintln!("xtask: wrote {}", path.display());
        }
        let path = dir.join("mapping-replay.csv");
        crate::write_atomically(
            &path,
            crate::experiment_replay::csv(&rows, &replays).as_bytes(),
        )?;
        eprintln!("xtask: wrote {}", path.display());
        let agreed = crate::experiment_replay::agreement(&replays, &rows);
        match &agreed {
            Ok(lines) | Err(lines) => eprint!("{lines}"),
        }
        verdict = match (verdict, agreed) {
            (Ok(v), Ok(_)) => Ok(format!("{v}; every replay agrees with its QEMU run")),
            (Err(e), _) => Err(e),
            (Ok(_), Err(_)) => Err("a replay differs from its QEMU run (above)".into()),
        };
    }
    eprintln!(
        "xtask: experiment finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    verdict.map(|v| eprintln!("xtask: {v}"))
}

/// The suite's small version of the experiment.
pub const SMALL_NAME: &str = "experiment: mapping, small: every correct vTLB strategy keeps the invariant at every invalidation point (0 violations, 0 wrong reads on ptmut and on forkchurn's processes); broken-keep-all is caught; a trace recorded twice (the same both times) replays every strategy on the host as QEMU ran it, processes included";

/// `forkchurn`'s operations in the small experiment: about 25 forks, with
/// up to four processes live.
const SMALL_FORKCHURN: u64 = 100;

/// `cargo xtask test`'s small mapping experiment: every strategy, checked,
/// on 300 operations of `ptmut` (remaps, protection changes, unmaps with
/// and without invlpg, CR3 loads) and 100 of `forkchurn` (processes: the
/// user views under every strategy).
pub fn small(kernel: &KernelBuild) -> Result<String, String> {
    let plan = Plan {
        strategies: VtlbStrategy::ALL.to_vec(),
        workloads: vec!["ptmut".into()],
        iterations: Some(300),
        timed: false,
        replay: false,
    };
    let rows = run(kernel, &plan)?;
    let verdict = judge(&rows)?;
    let churn_plan = Plan {
        workloads: vec!["forkchurn".into()],
        iterations: Some(SMALL_FORKCHURN),
        ..plan.clone()
    };
    let churn_rows = run(kernel, &churn_plan)?;
    let churn_verdict = judge(&churn_rows)?;
    // Recorded (twice: the trace must be the same), replayed under every
    // strategy: each replay must agree with the QEMU run above, the broken
    // strategy caught in replay too.
    let recording = crate::experiment_replay::record(kernel, "ptmut", 300)?;
    let again = crate::experiment_replay::record(kernel, "ptmut", 300)?;
    if again.text != recording.text {
        return Err(format!(
            "recording ptmut twice gave two traces ({} and {} bytes)",
            recording.trace.bytes, again.trace.bytes
        ));
    }
    let replays = crate::experiment_replay::replay_all(&recording, &plan.strategies)?;
    crate::experiment_replay::agreement(&replays, &rows)?;
    // Processes: recorded once, every strategy's user views replayed.
    let churn = crate::experiment_replay::record(kernel, "forkchurn", SMALL_FORKCHURN)?;
    let churn_replays = crate::experiment_replay::replay_all(&churn, &plan.strategies)?;
    crate::experiment_replay::agreement(&churn_replays, &churn_rows)?;
    let caught = replays
        .iter()
        .chain(&churn_replays)
        .filter(|r| !r.strategy.is_correct())
        .all(|r| r.violations > 0);
    if !caught {
        return Err("the broken strategy went uncaught in replay".into());
    }
    let compared = churn_rows.iter().filter(|r| r.finished).count();
    Ok(format!(
        "ptmut: {verdict}; recorded twice, the same trace ({} records); its {} replays agree with QEMU on faults, mappings and violations. forkchurn: {churn_verdict}; {} records, {compared} replays agree with QEMU (the others' guest did not finish)",
        recording.trace.records.len(),
        replays.len(),
        churn.trace.records.len(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "guest: previrt test kernel; tests= bench=ptmut\n\
        mapping ptmut: 497 reads checked, 39 wrong\n\
        bench ptmut 2000 234721441\n";
    const SERIAL: &str = "vmm-server: guest0: exited with status 3\n\
        vmm-server: guest0: 1200 page faults served, 247 mappings made, 196 removed, 12 seL4 paging structures created\n\
        vmm-server: guest0: vtlb broken-keep-all: 247 mappings made (0 prefetched), at most 93 at once, 0 page-table writes trapped; checking every invalidation point\n\
        vmm-server: guest0: vtlb check: 685 invalidation points checked, 3148 violations\n\
        vmm-server: guest0: vtlb check: first violation at a CR3 load of 0x3ffc000: 0x8100a000 is mapped\n";

    #[test]
    fn a_run_is_read_from_the_guest_and_the_vmm() {
        let f = parse("ptmut", CONSOLE, SERIAL).unwrap();
        assert_eq!(
            f,
            Figures {
                ops: 2000,
                ticks: 234_721_441,
                faults: 1200,
                maps: 247,
                unmaps: 196,
                paging_objects: 12,
                peak_mappings: 93,
                violations: Some(3148),
                first_violation: Some(
                    "at a CR3 load of 0x3ffc000: 0x8100a000 is mapped".to_string()
                ),
                wrong_reads: 39,
                finished: true,
            }
        );
        // A guest that did not finish: the VMM's figures, unfinished.
        let unfinished = parse("aschurn", CONSOLE, SERIAL).unwrap();
        assert!(!unfinished.finished);
        assert_eq!((unfinished.ops, unfinished.faults), (0, 1200));
        assert!(parse("ptmut", CONSOLE, "")
            .unwrap_err()
            .contains("page faults served"));
    }

    fn row(strategy: &str, violations: u64, wrong: u64) -> Row {
        Row {
            strategy: strategy.into(),
            workload: "ptmut".into(),
            run: Figures {
                ops: 10,
                ticks: 1000,
                finished: true,
                ..Figures::default()
            },
            violations,
            wrong_reads: wrong,
            finished: true,
            ..Row::default()
        }
    }

    #[test]
    fn the_verdict_wants_clean_correct_runs_and_a_caught_broken_one() {
        assert!(judge(&[row("keep", 0, 0), row("broken-keep-all", 5, 2)]).is_ok());
        assert!(judge(&[row("keep", 1, 0)])
            .unwrap_err()
            .contains("keep × ptmut"));
        assert!(judge(&[row("flush", 0, 3)]).is_err());
        assert!(judge(&[row("broken-keep-all", 0, 0)])
            .unwrap_err()
            .contains("uncaught"));
    }

    #[test]
    fn the_csv_has_the_promised_columns() {
        let text = csv(&[row("keep", 0, 0)]);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("strategy,workload,ops,ticks,faults,maps,unmaps,paging_objects,peak_mappings,violations")
        );
        assert_eq!(lines.next(), Some("keep,ptmut,10,1000,0,0,0,0,0,0"));
        let table = summary(&[row("keep", 0, 0), row("flush", 0, 0)]);
        assert!(table.contains("1.00x"), "{table}");
    }
}
