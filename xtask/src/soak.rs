//! `cargo xtask soak --minutes N`: the release system under a long mix of
//! work, until the time is up — the interrupt stress run (a mix of work
//! with the timer at 1 kHz, under icount: every run must give the same
//! counts), the guest's whole self-test on seL4 (its console compared with
//! the bare run's), and every attack of the hostile guest — then one line of
//! counts. Any surprise (a
//! boot that does not end as its test expects, a tick lost or duplicated)
//! fails the soak; the failures are listed before the count line.

use std::time::{Duration, Instant};

use crate::kernel::{self, KernelBuild};
use crate::{capdl_tests, hostile_tests, interrupt_tests, setup};

/// What the soak saw.
#[derive(Debug, Default)]
struct Tally {
    rounds: u64,
    boots: u64,
    stress_runs: u64,
    selftest_runs: u64,
    attacks_contained: u64,
    ticks_delivered: u64,
    /// The first stress run's counts: every later run must repeat them.
    first_counts: Option<interrupt_tests::Counts>,
    /// Each a test name and what went wrong.
    surprises: Vec<String>,
}

impl Tally {
    /// Records one test's result (each test is one boot).
    fn record(&mut self, name: &str, result: &Result<String, String>) {
        self.boots += 1;
        if let Err(why) = result {
            let first = why.lines().next().unwrap_or_default();
            eprintln!(
                "xtask: soak: SURPRISE in round {}: {name}: {first}",
                self.rounds
            );
            self.surprises
                .push(format!("round {}: {name}: {why}", self.rounds));
        }
    }

    fn line(&self, minutes: f64) -> String {
        format!(
            "soak: {minutes:.1} min, {} rounds, {} boots: {} stress runs ({} ticks delivered, each once), {} self-test runs, {} attacks contained; {} lost or unexplained",
            self.rounds,
            self.boots,
            self.stress_runs,
            self.ticks_delivered,
            self.selftest_runs,
            self.attacks_contained,
            self.surprises.len()
        )
    }
}

/// One round: the stress run, the self-test, every hostile case.
fn round(kernel: &KernelBuild, tally: &mut Tally, deadline: Instant) {
    tally.rounds += 1;
    let seconds = interrupt_tests::STRESS_SECONDS;
    let stress = interrupt_tests::run_stress(kernel, seconds, interrupt_tests::STRESS_SHIFT)
        .and_then(|run| {
            let verdict = interrupt_tests::judge(&run.counts, seconds)?;
            // Every run under icount is the same run: a different count
            // is a surprise even when each passes on its own.
            match &tally.first_counts {
                Some(first) if *first != run.counts => Err(format!(
                    "counts differ from the first run's: {:?} then {:?}",
                    first, run.counts
                )),
                _ => {
                    tally.first_counts.get_or_insert(run.counts.clone());
                    tally.stress_runs += 1;
                    tally.ticks_delivered += run.counts.injected;
                    Ok(verdict)
                }
            }
        });
    tally.record("interrupts: the stress run", &stress);
    if Instant::now() >= deadline {
        return;
    }
    capdl_tests::generated_system(kernel, &mut |name, result| {
        // The seL4 run and, to compare its console, the bare one.
        if name.contains("self-tests pass") && result.is_ok() {
            tally.selftest_runs += 1;
        }
        tally.record(name, &result);
    });
    if Instant::now() >= deadline {
        return;
    }
    hostile_tests::all_for(
        kernel,
        hostile_tests::Kernel::Release,
        &mut |name, result| {
            if result.is_ok() && name.starts_with("hostile: ") {
                tally.attacks_contained += 1;
            }
            tally.record(name, &result);
        },
    );
}

pub fn soak(minutes: f64) -> Result<(), String> {
    if !(minutes > 0.0 && minutes.is_finite()) {
        return Err(format!("--minutes {minutes}: expected a positive number"));
    }
    let tools = setup::ensure()?;
    let kernel = kernel::build(&tools, kernel::Flavour::Release)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(minutes * 60.0);
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        round(&kernel, &mut tally, deadline);
        eprintln!(
            "xtask: {}",
            tally.line(started.elapsed().as_secs_f64() / 60.0)
        );
    }
    for surprise in &tally.surprises {
        println!("xtask: soak: {surprise}");
    }
    println!("{}", tally.line(started.elapsed().as_secs_f64() / 60.0));
    if tally.surprises.is_empty() {
        Ok(())
    } else {
        Err(format!("{} surprises in the soak", tally.surprises.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_test_is_a_surprise_and_counts_in_the_line() {
        let mut t = Tally::default();
        t.record("a", &Ok(String::new()));
        assert!(t.surprises.is_empty());
        t.record("b", &Err("lost a tick\nmore".into()));
        assert_eq!(t.boots, 2);
        assert_eq!(t.surprises.len(), 1);
        assert!(t.line(1.0).ends_with("; 1 lost or unexplained"));
    }
}
