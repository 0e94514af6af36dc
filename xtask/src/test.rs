//! `cargo xtask test`: every test of the project, in order of cost, with one
//! summary line at the end.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{self, tail};
use crate::tasks::{NO_STD_LIBS, SEL4_CRATES, TARGET};
use crate::{bindings_check, kernel, paths, qemu, selftest_checks, setup, tasks};

const QEMU_TIMEOUT: Duration = Duration::from_secs(60);
const QEMU_MEMORY_MIB: u32 = 512;

struct Report {
    passed: usize,
    failed: Vec<String>,
}

impl Report {
    fn record(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => {
                self.passed += 1;
                println!(
                    "xtask: PASS {name}{}",
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(" ({detail})")
                    }
                );
            }
            Err(why) => {
                println!("xtask: FAIL {name}: {why}");
                self.failed.push(name.to_string());
            }
        }
    }
}

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(paths::cargo());
    cmd.args(args).current_dir(paths::root());
    cmd
}

fn step(args: &[&str], what: &str) -> Result<String, String> {
    process::run_visible(&mut cargo(args), what).map(|()| String::new())
}

/// rustfmt, then clippy for the host crates and for the seL4 target.
pub fn lint() -> Result<(), String> {
    let mut report = Report {
        passed: 0,
        failed: Vec::new(),
    };
    lint_into(&mut report);
    finish(report)
}

fn lint_into(report: &mut Report) {
    report.record(
        "rustfmt",
        step(&["fmt", "--all", "--check"], "cargo fmt --check"),
    );
    report.record(
        "clippy (host)",
        step(
            &["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"],
            "cargo clippy",
        ),
    );
    let mut args = vec!["clippy", "--quiet", "--target", TARGET];
    for p in SEL4_CRATES.iter().chain(NO_STD_LIBS) {
        args.extend(["-p", p]);
    }
    args.extend(["--", "-D", "warnings"]);
    report.record("clippy (seL4 target)", step(&args, "cargo clippy for seL4"));
}

pub fn all(with_lint: bool) -> Result<(), String> {
    let started = Instant::now();
    let mut report = Report {
        passed: 0,
        failed: Vec::new(),
    };
    let tools = setup::ensure()?;
    if with_lint {
        lint_into(&mut report);
    }
    report.record("host tests", step(&["test", "--quiet"], "cargo test"));
    let mut args = vec!["build", "--quiet", "--release", "--target", TARGET];
    for p in SEL4_CRATES.iter().chain(NO_STD_LIBS) {
        args.extend(["-p", p]);
    }
    report.record(
        "no_std crates build for seL4",
        step(&args, "cargo build for seL4"),
    );

    match kernel::build(&tools) {
        Err(e) => report.record("seL4 kernel build", Err(e)),
        Ok(kernel) => {
            report.record(
                "seL4 kernel build",
                Ok(kernel.multiboot_elf.display().to_string()),
            );
            report.record(
                "bindings agree with the compiled kernel",
                bindings_check::check(&kernel, &tools).map(|n| format!("{n} values")),
            );
            qemu_tests(&kernel, &mut report);
        }
    }
    println!(
        "xtask: finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    finish(report)
}

fn qemu_tests(kernel: &kernel::KernelBuild, report: &mut Report) {
    let root_task = match tasks::build_root_task() {
        Ok(path) => path,
        Err(e) => return report.record("qemu: build the selftest root task", Err(e)),
    };
    let machine = qemu::Machine {
        kernel: &kernel.multiboot_elf,
        module: Some(&root_task),
        append: None,
        memory_mib: QEMU_MEMORY_MIB,
        accel: "tcg",
        icount: false,
    };
    let run = match machine.boot(QEMU_TIMEOUT, qemu::Echo::Quiet) {
        Ok(run) => run,
        Err(e) => return report.record("qemu: boot", Err(e)),
    };
    let first_line = run.time_to("selftest: root task started");
    let boot = match (&run.outcome, first_line) {
        (qemu::Outcome::Passed, Some(t)) => Ok(format!(
            "root task's first line after {:.2} s, run {:.2} s",
            t.as_secs_f64(),
            run.elapsed.as_secs_f64()
        )),
        (outcome, _) => Err(format!("the selftest ended with {outcome}")),
    };
    let boot_failed = boot.is_err();
    report.record(
        "qemu: seL4 boots the root task and it exits with a pass status",
        boot,
    );
    let mut any_failed = boot_failed;
    for check in selftest_checks::CHECKS {
        let result = (check.verify)(&run.serial, QEMU_MEMORY_MIB).map(|()| String::new());
        any_failed |= result.is_err();
        report.record(&format!("qemu: {}", check.name), result);
    }
    if any_failed {
        println!(
            "xtask: last lines of the serial log:\n{}",
            tail(&run.serial, 40)
        );
    }
}

fn finish(report: Report) -> Result<(), String> {
    println!(
        "xtask: {} passed, {} failed",
        report.passed,
        report.failed.len()
    );
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", report.failed.join(", ")))
    }
}
