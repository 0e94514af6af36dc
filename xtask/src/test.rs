//! `cargo xtask test`: every test of the project, in order of cost, with one
//! summary line at the end.

use std::ffi::OsString;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{self, tail};
use crate::tasks::{NO_STD_LIBS, SEL4_CRATES, TARGET};
use crate::{
    background, bindings_check, capdl_tests, cpu, experiment, hostile_tests, images,
    interrupt_tests, kernel, linux, linux_sel4, paths, qemu, selftest_checks, setup, several,
    tasks, trap_tests,
};

pub const QEMU_TIMEOUT: Duration = Duration::from_secs(60);
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
/// A cargo command the suite runs as one test: its name, its arguments,
/// and what it is, for error messages.
struct CargoStep {
    name: &'static str,
    args: Vec<&'static str>,
    what: &'static str,
}

impl CargoStep {
    fn run(&self, report: &mut Report) {
        report.record(self.name, step(&self.args, self.what));
    }

    fn entry(self, group: Group) -> Entry {
        entry(self.name, group, move |_, r| self.run(r))
    }
}

/// `-p` for every crate that runs on seL4 or must build for it.
fn sel4_packages() -> Vec<&'static str> {
    SEL4_CRATES
        .iter()
        .chain(NO_STD_LIBS)
        .flat_map(|p| ["-p", *p])
        .collect()
}

/// rustfmt, then clippy for the host crates and for the seL4 target.
fn lint_steps() -> [CargoStep; 3] {
    let mut sel4 = vec!["clippy", "--quiet", "--target", TARGET];
    sel4.extend(sel4_packages());
    sel4.extend(["--", "-D", "warnings"]);
    [
        CargoStep {
            name: "rustfmt",
            args: vec!["fmt", "--all", "--check"],
            what: "cargo fmt --check",
        },
        CargoStep {
            name: "clippy (host)",
            args: vec!["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"],
            what: "cargo clippy",
        },
        CargoStep {
            name: "clippy (seL4 target)",
            args: sel4,
            what: "cargo clippy for seL4",
        },
    ]
}

/// `cargo xtask lint`: the suite's lint steps alone.
pub fn lint() -> Result<(), String> {
    setup::ensure_rust()?;
    let mut report = Report {
        passed: 0,
        failed: Vec::new(),
    };
    for lint in lint_steps() {
        lint.run(&mut report);
    }
    finish(report)
}

pub fn capdl_only() -> Result<(), String> {
    run(&Selection::Pattern("capdl:".into()), true)
        .and_then(|()| run(&Selection::Pattern("guest on seL4".into()), true))
        .and_then(|()| run(&Selection::Pattern("hostile".into()), true))
}

/// What a test is about, for `--list` and the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Lints, host tests, builds: no QEMU.
    Static,
    /// The system does what it should.
    Functional,
    /// An untrusted guest cannot get past the VMM or the kernel.
    Security,
    /// Interrupt delivery under load, judged under icount.
    Performance,
    /// Too long for the full run's 20-minute cold budget: runs only when a
    /// pattern names it. No test is today: the Linux test was, until its
    /// builds moved to the background (docs/testing.md).
    #[allow(dead_code)]
    ByName,
}

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Static => "static",
            Group::Functional => "functional",
            Group::Security => "security",
            Group::Performance => "performance",
            Group::ByName => "by-name",
        }
    }
}

/// What the tests share: the host tools and the kernels, built on first use;
/// and the Linux builds, when they run in the background.
struct Ctx {
    tools: setup::Tools,
    kernels: [Option<Result<kernel::KernelBuild, String>>; 2],
    linux: LinuxBuilds,
}

/// Where the Linux builds (docs/linux.md) stand in this run.
enum LinuxBuilds {
    /// Not started: the `linux:` tests build them themselves (when they are
    /// all that runs: nothing to overlap with).
    Inline,
    /// Building in the background (`cargo xtask linux --build-only`).
    Background(background::Job),
    /// Built in the background: what the job said of each build, or why
    /// it failed.
    Done(Result<String, String>),
}

/// The tests that need the Linux builds: they wait for a background build.
const LINUX_PREFIX: &str = "linux:";

fn needs_linux(e: &Entry) -> bool {
    e.names.iter().any(|n| n.starts_with(LINUX_PREFIX))
}

/// Starts the Linux builds in the background if the selection holds a
/// Linux test and something else to run meanwhile (the Linux test is last).
fn start_linux(chosen: &[Entry]) -> LinuxBuilds {
    if !chosen.iter().any(needs_linux) || chosen.iter().all(needs_linux) {
        return LinuxBuilds::Inline;
    }
    // The packages and `afterburn` here, before the suite's first cargo
    // command: the job must not wait on cargo's lock nor hold dpkg's.
    let started = linux::prepare().and_then(|afterburn| {
        let args = [
            OsString::from("linux"),
            OsString::from("--build-only"),
            OsString::from("--afterburn"),
            afterburn.into_os_string(),
        ];
        background::Job::start(
            "the Linux builds (cargo xtask linux --build-only)",
            &args,
            &paths::target().join("linux").join("background.log"),
        )
    });
    match started {
        Ok(job) => LinuxBuilds::Background(job),
        Err(e) => LinuxBuilds::Done(Err(format!("the Linux builds did not start: {e}"))),
    }
}

impl Ctx {
    /// Shows what a background job has printed since last asked.
    fn show_progress(&mut self) {
        if let LinuxBuilds::Background(job) = &mut self.linux {
            job.show_progress();
        }
    }

    /// Waits for the background Linux builds, if they run: their result
    /// (each build's cost, for the test's report) or their failure.
    fn linux_built(&mut self) -> Result<String, String> {
        self.linux = match std::mem::replace(&mut self.linux, LinuxBuilds::Inline) {
            LinuxBuilds::Background(job) => {
                LinuxBuilds::Done(job.wait().map(|log| built_in_background(&log)))
            }
            other => other,
        };
        match &self.linux {
            LinuxBuilds::Done(result) => result.clone(),
            _ => Ok(String::new()),
        }
    }

    fn kernel(&mut self, flavour: kernel::Flavour) -> Result<&kernel::KernelBuild, String> {
        let i = usize::from(flavour == kernel::Flavour::Debug);
        let tools = &self.tools;
        self.kernels[i]
            .get_or_insert_with(|| kernel::build(tools, flavour))
            .as_ref()
            .map_err(|e| format!("the {} kernel does not build: {e}", flavour.name()))
    }
}

type Run = Box<dyn FnOnce(&mut Ctx, &mut Report)>;

/// One entry of the suite: the names of the results it records (a boot
/// that checks several things records several), its group, and how to run
/// it. Entries run in order; a pattern selects an entry if any of its
/// names contains it, and the entry then runs whole.
struct Entry {
    names: Vec<String>,
    group: Group,
    run: Run,
}

fn entry(name: &str, group: Group, run: impl FnOnce(&mut Ctx, &mut Report) + 'static) -> Entry {
    Entry {
        names: vec![name.to_string()],
        group,
        run: Box::new(run),
    }
}

/// A test that needs the `flavour` kernel and records one result.
fn on_kernel(
    name: &str,
    group: Group,
    flavour: kernel::Flavour,
    test: impl FnOnce(&kernel::KernelBuild) -> Result<String, String> + 'static,
) -> Entry {
    let owned = name.to_string();
    entry(name, group, move |ctx, report| {
        let result = ctx.kernel(flavour).and_then(test);
        report.record(&owned, result);
    })
}

/// Every test of `cargo xtask test`, in the order they run (cheapest first).
fn suite(with_lint: bool) -> Vec<Entry> {
    use kernel::Flavour::{Debug, Release};
    let mut entries = Vec::new();
    if with_lint {
        entries.extend(lint_steps().map(|l| l.entry(Group::Static)));
    }
    entries.push(
        CargoStep {
            name: "host tests",
            args: vec!["test", "--quiet"],
            what: "cargo test",
        }
        .entry(Group::Static),
    );
    // The supervisor is an seL4 task (not a default member); its ledger is
    // host-tested on its own.
    entries.push(
        CargoStep {
            name: "host tests: the supervisor's ledger",
            args: vec!["test", "--quiet", "-p", "supervisor", "--lib"],
            what: "cargo test",
        }
        .entry(Group::Static),
    );
    const MIRI: &str =
        "Miri: the wedge core's and the contract crate's host tests have no undefined behaviour";
    entries.push(entry(MIRI, Group::Static, |_, r| r.record(MIRI, miri())));
    let mut build = vec!["build", "--quiet", "--release", "--target", TARGET];
    build.extend(sel4_packages());
    entries.push(
        CargoStep {
            name: "no_std crates build for seL4",
            args: build,
            what: "cargo build for seL4",
        }
        .entry(Group::Static),
    );
    entries.push(
        CargoStep {
            name: "capdl's loader model builds for seL4 without std or alloc",
            args: vec![
                "build",
                "--quiet",
                "--release",
                "--target",
                TARGET,
                "-p",
                "capdl",
                "--no-default-features",
            ],
            what: "cargo build -p capdl --no-default-features",
        }
        .entry(Group::Static),
    );
    entries.push(Entry {
        names: GUEST_TEST_NAMES.iter().map(|n| n.to_string()).collect(),
        group: Group::Functional,
        run: Box::new(|_, r| guest_tests(r)),
    });
    for flavour in [Debug, Release] {
        let name = format!("bindings agree with the compiled {} kernel", flavour.name());
        entries.push(entry(&name.clone(), Group::Static, move |ctx, r| {
            let tools = ctx.tools.clone();
            let result = ctx.kernel(flavour).and_then(|k| {
                bindings_check::check(k, &tools)
                    .map(|n| format!("{n} values; {}", k.multiboot_elf.display()))
            });
            r.record(&name, result);
        }));
    }
    entries.push(on_kernel(
        "afterburner: the seL4 kernel's gcc output passes, assembles and audits clean",
        Group::Static,
        Release,
        afterburner_corpus,
    ));
    entries.push(Entry {
        names: std::iter::once(SELFTEST_BOOT.to_string())
            .chain(
                selftest_checks::CHECKS
                    .iter()
                    .map(|c| format!("qemu: {}", c.name)),
            )
            .collect(),
        group: Group::Functional,
        run: Box::new(|ctx, r| match ctx.kernel(Release) {
            Ok(k) => qemu_tests(k, r),
            Err(e) => r.record(SELFTEST_BOOT, Err(e)),
        }),
    });
    entries.push(Entry {
        names: capdl_tests::NAMES.iter().map(|n| n.to_string()).collect(),
        group: Group::Functional,
        run: Box::new(|ctx, r| match ctx.kernel(Release) {
            Ok(k) => capdl_tests::all(k, &mut |n, res| r.record(n, res)),
            Err(e) => r.record(capdl_tests::NAMES[0], Err(e)),
        }),
    });
    entries.push(Entry {
        names: capdl_tests::GENERATED_NAMES
            .iter()
            .map(|n| n.to_string())
            .collect(),
        group: Group::Functional,
        run: Box::new(|ctx, r| match ctx.kernel(Release) {
            Ok(k) => capdl_tests::generated_system(k, &mut |n, res| r.record(n, res)),
            Err(e) => r.record(capdl_tests::GENERATED_NAMES[0], Err(e)),
        }),
    });
    for (name, case) in hostile_tests::named(Release, false) {
        entries.push(on_kernel(&name, Group::Security, Release, move |k| {
            hostile_tests::run_named(k, case.as_ref())
        }));
    }
    // Several guests, each with its own VMM (docs/vmm-server.md).
    entries.push(on_kernel(
        several::NAME,
        Group::Security,
        Release,
        several::test,
    ));
    entries.push(on_kernel(
        several::ENDED_NAME,
        Group::Security,
        Release,
        several::ended_early,
    ));
    // Trap-and-emulate, the baseline pre-virtualization is measured against.
    entries.push(on_kernel(
        trap_tests::NAME,
        Group::Functional,
        Release,
        trap_tests::run,
    ));
    entries.push(on_kernel(
        trap_tests::HOSTILE_NAME,
        Group::Security,
        Release,
        trap_tests::hostile,
    ));
    entries.push(on_kernel(
        &interrupt_tests::stress_name(),
        Group::Performance,
        Release,
        interrupt_tests::stress_result,
    ));
    entries.push(on_kernel(
        experiment::SMALL_NAME,
        Group::Functional,
        Release,
        experiment::small,
    ));
    // What the debug kernel exposes to a guest, shown rather than hidden.
    for (name, case) in hostile_tests::named(Debug, true) {
        entries.push(on_kernel(&name, Group::Security, Debug, move |k| {
            hostile_tests::run_named(k, case.as_ref())
        }));
    }
    // Linux 6.1 plain and padded (docs/linux.md), last: cold, its two
    // kernel builds run in the background from the suite's start
    // (`start_linux`), and this waits for them.
    entries.push(entry(linux::TEST_NAME, Group::Functional, |ctx, r| {
        let result = ctx
            .linux_built()
            .and_then(|built| linux::test().map(|summary| summary + &built));
        r.record(linux::TEST_NAME, result)
    }));
    // The same padded Linux on seL4 (docs/linux.md, "Linux on seL4: how far
    // it gets"): the builds above, and one bare boot to compare with.
    entries.push(entry(linux_sel4::TEST_NAME, Group::Functional, |ctx, r| {
        let result = ctx
            .linux_built()
            .and_then(|_| ctx.kernel(Release).and_then(linux_sel4::test));
        r.record(linux_sel4::TEST_NAME, result)
    }));
    entries
}

/// What a background Linux build job said of each build it made
/// (`linux::build_only`), for the test's summary.
fn built_in_background(log: &str) -> String {
    log.lines()
        .filter_map(|l| {
            let (variant, cost) = l
                .strip_prefix("xtask: linux (")?
                .split_once(&format!("): {}", linux::BUILT))?;
            Some(format!("; {variant} build (in the background):{cost}"))
        })
        .collect()
}

/// Which tests to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    /// Entries with a test name containing this.
    Pattern(String),
}

/// `cargo xtask test --list`: every test's group and name, in run order.
pub fn list() -> Result<(), String> {
    for e in suite(true) {
        for name in &e.names {
            println!("{:<12} {name}", e.group.name());
        }
    }
    Ok(())
}

pub fn all(with_lint: bool) -> Result<(), String> {
    run(&Selection::All, with_lint)
}

pub fn run(selection: &Selection, with_lint: bool) -> Result<(), String> {
    let started = Instant::now();
    let mut report = Report {
        passed: 0,
        failed: Vec::new(),
    };
    let (chosen, by_name): (Vec<Entry>, Vec<Entry>) = suite(with_lint)
        .into_iter()
        .filter(|e| match selection {
            Selection::All => true,
            Selection::Pattern(p) => e.names.iter().any(|n| n.contains(p.as_str())),
        })
        .partition(|e| e.group != Group::ByName || *selection != Selection::All);
    if chosen.is_empty() {
        return Err(format!(
            "no test matches {selection:?} (cargo xtask test --list shows them)"
        ));
    }
    let whole = cpu::Meter::start();
    let meter = cpu::Meter::start();
    let tools = setup::ensure()?;
    let linux = start_linux(&chosen);
    cost_line("setup (packages, tools, afterburn)", &meter);
    let mut ctx = Ctx {
        tools,
        kernels: [None, None],
        linux,
    };
    for e in chosen {
        ctx.show_progress();
        if needs_linux(&e) && matches!(ctx.linux, LinuxBuilds::Background(_)) {
            // Never two builds of Linux at once; the test reports the
            // result (`linux_built` again). The job's CPU is counted when
            // it is waited for: here, on a line of its own.
            let meter = cpu::Meter::start();
            let _ = ctx.linux_built();
            cost_line("the Linux builds (background job, waited for)", &meter);
        }
        let meter = cpu::Meter::start();
        (e.run)(&mut ctx, &mut report);
        cost_line(&e.names.join("; "), &meter);
    }
    println!(
        "xtask: finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    cost_line("the whole run", &whole);
    for e in &by_name {
        println!(
            "xtask: not run (by name only, too long for the full run's cold budget): {}",
            e.names.join("; ")
        );
    }
    finish(report)
}

/// One line of the run's cost table: a step's CPU (this process and every
/// child it waited for meanwhile) and wall time. CPU, not wall, is what a
/// change to the suite moves on a shared machine (docs/testing.md, "What
/// the full run costs").
fn cost_line(step: &str, meter: &cpu::Meter) {
    println!("xtask: cost: {step}: {}", meter.report());
}

const SELFTEST_BOOT: &str = "qemu: seL4 boots the root task and it exits with a pass status";

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
        icount: None,
        com2: false,
        settle: None,
        debugcons: &[],
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
    report.record(SELFTEST_BOOT, boot);
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

/// The guest's self-tests, every one, on bare QEMU.
pub(crate) const GUEST_TESTS: &[&str] = &[
    "console",
    "cpu",
    "flags",
    "desc",
    "paging",
    "exceptions",
    "timer",
    "user",
];

/// The guest's self-tests include `timer`, which counts PIT periods and
/// ticks: under `-icount` (8 ns of guest time per instruction, as the
/// interrupt stress test) guest time is instruction count, so a busy host
/// cannot stretch a period or merge ticks, bare or on seL4.
pub const GUEST_TEST_ICOUNT_SHIFT: u32 = 3;

pub fn boot_guest(elf: &std::path::Path, cmdline: &str) -> Result<qemu::Run, String> {
    qemu::Machine {
        kernel: elf,
        module: None,
        append: Some(cmdline),
        memory_mib: 128,
        accel: "tcg",
        icount: Some(GUEST_TEST_ICOUNT_SHIFT),
        com2: false,
        settle: None,
        debugcons: &[],
    }
    .boot(QEMU_TIMEOUT, qemu::Echo::Quiet)
}

/// Every self-test passed and the run ended with a pass status.
fn guest_passed(run: &qemu::Run) -> Result<String, String> {
    let summary = format!("selftest: {} passed, 0 failed", GUEST_TESTS.len());
    for test in GUEST_TESTS {
        let line = format!("{test}: passed");
        if !run.serial.lines().any(|l| l.starts_with(&line)) {
            return Err(format!("no line {line:?}:\n{}", tail(&run.serial, 20)));
        }
    }
    if run.outcome != qemu::Outcome::Passed || !run.serial.contains(&summary) {
        return Err(format!(
            "ended with {}:\n{}",
            run.outcome,
            tail(&run.serial, 20)
        ));
    }
    Ok(format!("{:.2} s", run.elapsed.as_secs_f64()))
}

/// The first line where two consoles differ, byte for byte, bench figures
/// aside (`bench NAME iterations ticks`: ticks differ from run to run
/// outside `-icount`); `names` say which console is which.
pub fn first_difference(a: &[u8], b: &[u8], names: [&str; 2]) -> Option<String> {
    let keep = |l: &&[u8]| !l.starts_with(b"bench ");
    let (mut x, mut y) = (
        a.split(|&c| c == b'\n').filter(keep),
        b.split(|&c| c == b'\n').filter(keep),
    );
    let show = |l: Option<&[u8]>| l.map(|l| String::from_utf8_lossy(l).into_owned());
    for n in 1.. {
        match (x.next(), y.next()) {
            (None, None) => return None,
            (l, r) if l == r => {}
            (l, r) => {
                return Some(format!(
                    "line {n}: {} {:?}, {} {:?}",
                    names[0],
                    show(l),
                    names[1],
                    show(r)
                ))
            }
        }
    }
    None
}

/// The bare guest's tests ([`guest_tests`]), in the order they record.
const GUEST_TEST_NAMES: [&str; 6] = [
    "guest: the padded image boots bare and passes every self-test",
    "guest: the plain image boots bare and passes every self-test",
    "guest: padded and plain consoles are identical line for line",
    "guest: afterburn audit of the padded image is clean",
    "wedge: every site of the padded image decodes and rewrites",
    "guest: an unknown test name is refused with the valid names",
];

fn guest_tests(report: &mut Report) {
    let mut runs = Vec::new();
    for (image, name) in [images::Image::Padded, images::Image::Plain]
        .into_iter()
        .zip(GUEST_TEST_NAMES)
    {
        let result = images::build(image).and_then(|elf| {
            let run = boot_guest(&elf, "tests=all")?;
            let verdict = guest_passed(&run);
            runs.push((image, elf, run));
            verdict
        });
        report.record(name, result);
    }
    let [(_, padded, p), (_, _, q)] = &runs[..] else {
        // Nothing to compare: each test that needed both boots fails.
        for name in &GUEST_TEST_NAMES[2..] {
            report.record(name, Err("not run: a bare boot above failed".into()));
        }
        return;
    };
    {
        report.record(
            GUEST_TEST_NAMES[2],
            match first_difference(&p.bytes, &q.bytes, ["padded", "plain"]) {
                None => Ok(format!("{} lines", p.serial.lines().count())),
                Some(d) => Err(d),
            },
        );
        report.record(GUEST_TEST_NAMES[3], audit(padded));
        report.record(
            GUEST_TEST_NAMES[4],
            process::run(
                cargo(&[
                    "test",
                    "--quiet",
                    "-p",
                    "wedge-l4",
                    "--test",
                    "guest_image",
                    "--",
                    "--ignored",
                ])
                .env("WEDGE_GUEST_IMAGE", padded),
                "the wedge's guest-image test",
            )
            .map(|_| String::new()),
        );
        report.record(
            GUEST_TEST_NAMES[5],
            boot_guest(padded, "tests=bogus").and_then(|run| {
                let expected = format!(
                    "unknown test 'bogus'; valid tests: all, {}",
                    GUEST_TESTS.join(", ")
                );
                if run.outcome == qemu::Outcome::Failed && run.serial.contains(&expected) {
                    Ok(String::new())
                } else {
                    Err(format!(
                        "ended with {}:\n{}",
                        run.outcome,
                        tail(&run.serial, 10)
                    ))
                }
            }),
        );
    }
}

/// The wedge core's unit tests (and the contract crate's: the vCPU type)
/// under Miri. Property tests run 4 cases each there (Miri is ~1000x
/// slower than native); proptest needs the file system (isolation off).
fn miri() -> Result<String, String> {
    setup::ensure_miri()?;
    process::run_visible(
        Command::new("cargo")
            .args([
                "+nightly",
                "miri",
                "test",
                "--quiet",
                "-p",
                "wedge-l4",
                "-p",
                "previrt-protocol",
                "--lib",
            ])
            // Not the pinned toolchain's cargo: rustup picks nightly by `+nightly`.
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .env_remove("RUSTC")
            .env("MIRIFLAGS", "-Zmiri-disable-isolation")
            .env("PROPTEST_CASES", "4")
            .current_dir(paths::root()),
        "cargo +nightly miri test",
    )
    .map(|()| String::new())
}

/// The real-world corpus: gcc's assembly of the whole seL4 kernel
/// (`kernel_final.s`, the kernel's own flags) through the pass, `as` and
/// the audit (afterburner/tests/corpus.rs).
fn afterburner_corpus(kernel: &kernel::KernelBuild) -> Result<String, String> {
    let corpus = kernel.dir.join("kernel_final.s");
    let output = process::run(
        cargo(&[
            "test",
            "--quiet",
            "-p",
            "afterburner",
            "--test",
            "corpus",
            "--",
            "--nocapture",
        ])
        .env("AFTERBURN_CORPUS", &corpus),
        "the afterburner corpus test",
    )?;
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let line = text.lines().find(|l| l.contains("sites")).unwrap_or("");
    // The test harness prints its progress dots on the same line.
    Ok(line.trim().trim_start_matches('.').to_string())
}

/// `afterburn audit` must pass, and report no `%gs:` use (the seL4 backend
/// cannot honour the GS base: docs/pv-boot.md).
fn audit(elf: &std::path::Path) -> Result<String, String> {
    let afterburn = tasks::build_afterburn()?;
    let output = process::run(
        Command::new(afterburn).arg("audit").arg(elf),
        "afterburn audit",
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().last().unwrap_or("").to_string();
    if !summary.contains(" 0 violations") || !summary.ends_with(" 0 notes") {
        return Err(format!("audit summary: {summary}\n{}", tail(&stdout, 20)));
    }
    Ok(summary)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_build_reports_each_build_it_made() {
        let log = "xtask: linux: unpacking x\n\
                   xtask: linux (plain): make -j2 bzImage: 300 s, 280 s of CPU\n\
                   xtask: linux (plain): built: 310 s wall, 290 s CPU; C units: 656 compiled\n\
                   xtask: linux (padded): cached\n";
        assert_eq!(
            built_in_background(log),
            "; plain build (in the background): 310 s wall, 290 s CPU; C units: 656 compiled"
        );
        assert_eq!(built_in_background("xtask: linux (padded): cached\n"), "");
    }

    #[test]
    fn first_difference_ignores_bench_lines_and_names_the_line() {
        let names = ["padded", "plain"];
        assert_eq!(
            first_difference(b"a\nbench x 1 2\nb\n", b"a\nbench x 1 3\nb\n", names),
            None
        );
        assert_eq!(
            first_difference(b"a\nb\n", b"a\nc\n", names).as_deref(),
            Some("line 2: padded Some(\"b\"), plain Some(\"c\")")
        );
        assert!(first_difference(b"a\n", b"a\nb\n", names).is_some());
        // Exact bytes: a carriage return or a missing last newline counts.
        assert!(first_difference(b"a\r\n", b"a\n", names).is_some());
        assert!(first_difference(b"a\nb", b"a\nb\n", names).is_some());
        assert!(first_difference(b"ab\n", b"a\n", names).is_some());
    }
}
