//! `cargo xtask experiment mapping --replay`: each workload recorded once
//! under QEMU (the VMM's recorder, docs/vtlb.md "Record and replay"), then
//! replayed on the host under every strategy by `vmm-core`'s replay, and
//! each replay compared with the QEMU run of the same strategy and
//! workload: faults, mappings made and removed, peak mappings, paging
//! structures and violations must agree. Results:
//! `target/experiments/mapping-replay.csv` (the experiment's columns, a
//! `source` column, and the replay's time), the traces beside it.

use std::fmt::Write as _;
use std::time::Instant;

use capdl::generate::VtlbStrategy;
use vmm_core::replay::{replay, Outcome, Trace};

use crate::experiment::{default_iterations, Row};
use crate::images::Image;
use crate::kernel::KernelBuild;
use crate::{generated, qemu, system};

/// One workload's recording.
#[derive(Debug)]
pub struct Recording {
    pub workload: String,
    pub trace: Trace,
    /// The recorded run's wall time under QEMU.
    pub seconds: f64,
    /// The trace's text, as it came from the VMM.
    pub text: String,
}

/// Records `workload` under QEMU with the VMM's recorder.
pub fn record(kernel: &KernelBuild, workload: &str, iterations: u64) -> Result<Recording, String> {
    let started = Instant::now();
    let cmdline = format!("bench={workload} iterations={iterations}");
    let description =
        generated::with_vtlb_recording(&generated::description_with_ram(64)?, "keep", false, true)?;
    let name = format!("experiment-record-{workload}");
    let bundle = generated::bundle_with(&name, &description, Image::Padded, Some(&cmdline))?;
    let run = system::boot(kernel, &bundle, 512, Some(0), qemu::Echo::Quiet)?;
    let trace = Trace::parse(&run.serial).map_err(|e| {
        format!(
            "recording {workload}: {e}; the run ended with {}:\n{}",
            run.outcome,
            crate::process::tail(&run.serial, 20)
        )
    })?;
    let text: String = run
        .serial
        .lines()
        .filter(|l| l.starts_with(vmm_core::trace::PREFIX))
        .flat_map(|l| [l, "\n"])
        .collect();
    Ok(Recording {
        workload: workload.to_string(),
        trace,
        seconds: started.elapsed().as_secs_f64(),
        text,
    })
}

/// One strategy replayed on one recording.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub strategy: VtlbStrategy,
    pub workload: String,
    /// Unchecked (the counts) and checked (the violations).
    pub outcome: Outcome,
    pub violations: u64,
    pub first_violation: Option<String>,
    /// Seconds for the unchecked replay.
    pub seconds: f64,
}

/// Replays every strategy on `recording`, checked and unchecked.
pub fn replay_all(
    recording: &Recording,
    strategies: &[VtlbStrategy],
) -> Result<Vec<Replayed>, String> {
    let mut out = Vec::new();
    for &strategy in strategies {
        let started = Instant::now();
        let outcome = replay(&recording.trace, strategy, false).map_err(|e| {
            format!(
                "replaying {} × {}: {e}",
                strategy.name(),
                recording.workload
            )
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let checked = replay(&recording.trace, strategy, true).map_err(|e| {
            format!(
                "replaying {} × {}: {e}",
                strategy.name(),
                recording.workload
            )
        })?;
        out.push(Replayed {
            strategy,
            workload: recording.workload.clone(),
            outcome,
            violations: checked.violations,
            first_violation: checked.first_violation,
            seconds,
        });
    }
    Ok(out)
}

/// Where a replay and the QEMU run of the same pair differ: empty if they
/// agree on every count both have.
pub fn disagreements(replayed: &Replayed, qemu: &Row) -> Vec<String> {
    let o = &replayed.outcome;
    let q = &qemu.run;
    let mut out = Vec::new();
    for (what, r, q) in [
        ("faults", o.faults, q.faults),
        ("maps", o.maps, q.maps),
        ("unmaps", o.unmaps, q.unmaps),
        ("peak_mappings", o.peak_mappings, q.peak_mappings),
        ("paging_objects", o.paging_objects, q.paging_objects),
        ("violations", replayed.violations, qemu.violations),
    ] {
        if r != q {
            out.push(format!("{what} {r} (replay) against {q} (QEMU)"));
        }
    }
    out
}

/// The agreement of every replay with its QEMU row, one line each; an
/// error naming each pair that differs.
pub fn agreement(replays: &[Replayed], rows: &[Row]) -> Result<String, String> {
    let mut lines = String::new();
    let mut problems = Vec::new();
    for r in replays {
        let Some(row) = rows
            .iter()
            .find(|row| row.strategy == r.strategy.name() && row.workload == r.workload)
        else {
            continue;
        };
        // A guest that did not finish under the strategy (a broken one)
        // did not do what the recording did: its counts cannot be
        // compared, but the replay must catch the strategy too.
        let differ = if row.finished {
            disagreements(r, row)
        } else if r.violations == 0 {
            vec!["no violation in replay".to_string()]
        } else {
            Vec::new()
        };
        let _ = writeln!(
            lines,
            "replay: {} × {}: {} faults, {} maps, {} unmaps, peak {}, {} paging structures, {} violations in {:.3} s: {}",
            r.strategy.name(),
            r.workload,
            r.outcome.faults,
            r.outcome.maps,
            r.outcome.unmaps,
            r.outcome.peak_mappings,
            r.outcome.paging_objects,
            r.violations,
            r.seconds,
            if !row.finished && differ.is_empty() {
                "caught; not comparable with QEMU, where the guest did not finish".to_string()
            } else if differ.is_empty() {
                "agrees with QEMU".to_string()
            } else {
                format!("DIFFERS: {}", differ.join(", "))
            }
        );
        if let Some(first) = &r.first_violation {
            let _ = writeln!(
                lines,
                "replay: {} × {}: first violation {first}",
                r.strategy.name(),
                r.workload
            );
        }
        if !differ.is_empty() {
            problems.push(format!(
                "{} × {}: {}",
                r.strategy.name(),
                r.workload,
                differ.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(lines)
    } else {
        Err(format!(
            "{lines}replays that differ from QEMU: {}",
            problems.join("; ")
        ))
    }
}

/// `mapping-replay.csv`: the experiment's columns for every QEMU row and
/// every replay, with their source and wall time.
pub fn csv(rows: &[Row], replays: &[Replayed]) -> String {
    let mut out = String::from(
        "source,strategy,workload,ops,ticks,faults,maps,unmaps,paging_objects,peak_mappings,violations,seconds\n",
    );
    for r in rows {
        let seconds = r.qemu_ms as f64 / 1000.0;
        let _ = writeln!(out, "qemu,{},{seconds:.3}", r.csv_fields());
    }
    for r in replays {
        let ops = rows
            .iter()
            .find(|row| row.workload == r.workload)
            .map_or(0, |row| row.run.ops);
        let o = &r.outcome;
        // A replay has no ticks: the host's time is not the guest's.
        let _ = writeln!(
            out,
            "replay,{},{},{ops},,{},{},{},{},{},{},{:.3}",
            r.strategy.name(),
            r.workload,
            o.faults,
            o.maps,
            o.unmaps,
            o.paging_objects,
            o.peak_mappings,
            r.violations,
            r.seconds
        );
    }
    out
}

/// Records each workload of the plan and replays every strategy on it.
pub fn record_and_replay(
    kernel: &KernelBuild,
    workloads: &[String],
    iterations: Option<u64>,
    strategies: &[VtlbStrategy],
) -> Result<(Vec<Recording>, Vec<Replayed>), String> {
    let mut recordings = Vec::new();
    let mut replays = Vec::new();
    for workload in workloads {
        let n = iterations.unwrap_or_else(|| default_iterations(workload));
        let rec = record(kernel, workload, n)?;
        eprintln!(
            "experiment: recorded {workload}: {} records ({} faults), {} bytes ({:.1} s)",
            rec.trace.records.len(),
            rec.trace.faults(),
            rec.trace.bytes,
            rec.seconds
        );
        replays.extend(replay_all(&rec, strategies)?);
        recordings.push(rec);
    }
    Ok((recordings, replays))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Figures;

    fn row(strategy: &str, faults: u64) -> Row {
        Row {
            strategy: strategy.into(),
            workload: "ptmut".into(),
            run: Figures {
                ops: 10,
                faults,
                maps: 5,
                ..Figures::default()
            },
            finished: true,
            ..Row::default()
        }
    }

    fn replayed(strategy: VtlbStrategy, faults: u64) -> Replayed {
        Replayed {
            strategy,
            workload: "ptmut".into(),
            outcome: Outcome {
                faults,
                maps: 5,
                ..Outcome::default()
            },
            violations: 0,
            first_violation: None,
            seconds: 0.01,
        }
    }

    #[test]
    fn a_replay_agrees_only_on_equal_counts() {
        let rows = [row("keep", 7), row("flush", 9)];
        assert!(agreement(&[replayed(VtlbStrategy::Keep, 7)], &rows).is_ok());
        let e = agreement(&[replayed(VtlbStrategy::Flush, 8)], &rows).unwrap_err();
        assert!(
            e.contains("flush × ptmut: faults 8 (replay) against 9 (QEMU)"),
            "{e}"
        );
        // A run the guest did not finish is not compared; its replay must
        // still catch the broken strategy.
        let unfinished = [Row {
            strategy: "broken-keep-all".into(),
            finished: false,
            ..row("x", 1)
        }];
        let mut caught = replayed(VtlbStrategy::BrokenKeepAll, 8);
        assert!(agreement(&[caught.clone()], &unfinished).is_err());
        caught.violations = 3;
        assert!(agreement(&[caught], &unfinished).is_ok());
        let text = csv(&rows, &[replayed(VtlbStrategy::Keep, 7)]);
        assert!(text.starts_with("source,strategy,workload,ops,ticks,faults,maps,unmaps,paging_objects,peak_mappings,violations,seconds\n"));
        assert!(
            text.contains("\nreplay,keep,ptmut,10,,7,5,0,0,0,0,0.010\n"),
            "{text}"
        );
    }
}
