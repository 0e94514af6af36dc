//! `cargo xtask`: builds the seL4 kernel and the tasks, boots them in QEMU,
//! and runs the project's whole test suite.

mod background;
mod bench;
mod bindings_check;
mod capdl_tests;
mod chart;
mod cpu;
mod experiment;
mod experiment_plot;
mod experiment_replay;
mod fingerprint;
mod generated;
mod hostile_tests;
mod images;
mod interrupt_tests;
mod kernel;
mod linux;
mod linux_sel4;
mod linux_timing;
mod paths;
mod process;
mod qemu;
mod selftest_checks;
mod setup;
mod several;
mod soak;
mod system;
mod tasks;
mod test;
mod trap_tests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run and test previrt")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check (and on Debian, as root, install) the tools the build needs.
    Setup,
    /// Build the seL4 kernel (only when its source, patches or config changed).
    Kernel {
        /// The debug kernel (debug system calls for every thread).
        #[arg(long)]
        debug_kernel: bool,
    },
    /// Build everything and boot the system in QEMU; serial goes to the terminal.
    Run(RunArgs),
    /// Run every test: lints, host tests, no_std builds, the kernel bindings
    /// cross-check and the QEMU integration tests.
    Test {
        /// Skip rustfmt and clippy.
        #[arg(long)]
        no_lint: bool,
        /// List every test (group and name) in run order, and run none.
        #[arg(long)]
        list: bool,
        /// Run only the tests whose name contains this (see --list); a boot
        /// that checks several things runs whole if any of them matches.
        pattern: Option<String>,
    },
    /// rustfmt and clippy over every crate, for its own target.
    Lint,
    /// The release system under the stress run, the self-test and every
    /// hostile attack, over and over for N minutes; one line of counts.
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
    },
    /// Linux 6.1 built plain and through `afterburn cc`, both booted bare
    /// and their consoles compared (docs/linux.md).
    Linux {
        /// Only build both kernels (or find them built), as the full test
        /// run does in the background.
        #[arg(long)]
        build_only: bool,
        /// The `afterburn` to build with, already built (the test run's).
        #[arg(long, requires = "build_only", hide = true)]
        afterburn: Option<PathBuf>,
    },
    /// Check the generated seL4 bindings against the compiled kernel.
    CheckBindings,
    /// Only the CapDL loader's QEMU tests.
    TestCapdl,
    /// Print the CapDL spec generated from capdl/examples/system.toml (or
    /// DESCRIPTION) with the VMM server and the padded guest image.
    Capdl { description: Option<PathBuf> },
    /// Only the interrupt stress test (docs/testing.md, "Interrupts"): the
    /// padded guest on seL4 under QEMU -icount, judged exactly.
    Stress {
        /// Seconds of guest time at 1 kHz.
        #[arg(long, default_value_t = interrupt_tests::STRESS_SECONDS)]
        seconds: u64,
        /// QEMU's -icount shift: 2^SHIFT ns of guest time per instruction.
        #[arg(long, default_value_t = interrupt_tests::STRESS_SHIFT)]
        shift: u32,
        /// Run it this many times; every run must give the same counts.
        #[arg(long, default_value_t = 1)]
        runs: u32,
    },
    /// Run the guest's workloads under QEMU -icount and tabulate them: by
    /// default bare and on seL4 side by side (all but `timer`).
    Bench {
        /// On bare QEMU (no seL4), padded and plain images side by side.
        #[arg(long)]
        bare: bool,
        /// The CapDL loader on generated systems of 8 to 64 MiB guest RAM.
        #[arg(long, conflicts_with = "bare")]
        loader: bool,
        /// Systems of 1, 2, 4 and 8 guests of 64 MiB, each with its own VMM:
        /// the loader's time and untyped memory, and each guest's `cpu` and
        /// `mixed` figures against one guest alone (target/bench/scale.txt).
        #[arg(long, conflicts_with_all = ["bare", "loader"])]
        guests: bool,
        /// Only Linux: boot to /init and /init's workload, plain and
        /// padded bare and padded on seL4 (docs/linux.md); its rows in
        /// results.csv, the comparison in target/bench/linux.{txt,csv,svg}.
        #[arg(long, conflicts_with_all = ["bare", "loader", "guests"])]
        linux: bool,
        /// On the debug kernel instead of the release kernel.
        #[arg(long, conflicts_with = "bare")]
        debug_kernel: bool,
    },
    /// Experiments on seL4 under QEMU -icount (docs/vtlb.md): `mapping` runs
    /// every vTLB strategy on every mapping workload, checked and unchecked
    Experiment {
        /// Which experiment: `mapping`.
        name: String,
        /// Operations per workload run [default: 1000; largepage 300].
        #[arg(long)]
        iterations: Option<u64>,
        /// Strategies, comma-separated [default: all].
        #[arg(long, value_delimiter = ',')]
        strategies: Vec<String>,
        /// Workloads, comma-separated [default: ptmut,largepage,aschurn,forkchurn].
        #[arg(long, value_delimiter = ',')]
        workloads: Vec<String>,
        /// Also record each workload once and replay every strategy on the
        /// host, checking each replay against its QEMU run
        /// (`mapping-replay.csv`).
        #[arg(long)]
        replay: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// QEMU accelerator. KVM here is a software virtualizer seL4 cannot run on.
    #[arg(long, default_value = "tcg")]
    accel: String,
    /// Give up (an error) after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Machine memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// Boot the guest kernel directly on QEMU, without seL4.
    #[arg(long)]
    bare: bool,
    /// Boot the debug kernel instead of the release kernel: every thread,
    /// the guest's included, gets seL4's debug system calls (it can print
    /// on the kernel console and halt the machine). For development only.
    #[arg(long, conflicts_with = "bare")]
    debug_kernel: bool,
    /// Boot the kernel-feature selftest as the root task instead of the system.
    #[arg(long, conflicts_with = "bare")]
    selftest: bool,
    /// Boot the plain (unpadded) guest image instead of the padded one.
    #[arg(long)]
    plain: bool,
    /// Trap-and-emulate: the plain guest on seL4 with no wedge, the VMM
    /// emulating each sensitive instruction that faults
    /// (docs/trap-and-emulate.md).
    /// With --hostile, the hostile guest runs so instead of through the wedge.
    #[arg(long, conflicts_with_all = ["bare", "selftest", "plain"])]
    trap: bool,
    /// Boot the hostile test guest (images/hostile) on seL4; choose its
    /// attacks with --guest-cmdline "attack=ipc,jumps" (docs/testing.md).
    #[arg(long, conflicts_with_all = ["bare", "selftest", "plain"])]
    hostile: bool,
    /// The guest's command line, e.g. "tests=paging bench=cpu" [default:
    /// every self-test but timer, on seL4 and bare alike].
    #[arg(long)]
    guest_cmdline: Option<String>,
    /// The VMM's vTLB strategy (docs/vtlb.md): flush, keep, prefetch,
    /// write-protect, broken-keep-all [default: the description's, keep].
    #[arg(long, conflicts_with_all = ["bare", "selftest"])]
    vtlb: Option<String>,
    /// Check the mapping invariant at every invalidation point and report
    /// the first violation.
    #[arg(long, conflicts_with_all = ["bare", "selftest"])]
    vtlb_check: bool,
    /// Record the guest's page-table trace on the VMM's serial, for replay
    /// on the host (docs/vtlb.md, "Record and replay").
    #[arg(long, conflicts_with_all = ["bare", "selftest"])]
    vtlb_record: bool,
    /// Write exactly the guest's console bytes to this file (on seL4: what
    /// the VMM wrote to COM2). With --guests N, a folder: each guest's
    /// console goes to DIR/guest0.log, DIR/guest1.log, ...
    #[arg(long, conflicts_with = "selftest")]
    console_out: Option<PathBuf>,
    /// Run N copies of the guest on seL4, each with a VMM of its own
    /// (docs/vmm-server.md, "Several guests"); the run fails if any guest
    /// fails.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8), conflicts_with_all = ["bare", "selftest"])]
    guests: u32,
    /// Boot Linux on seL4: the padded Linux 6.1 that `cargo xtask linux`
    /// builds (cached), with its initramfs and the bare boots' command
    /// line, under `-icount` (docs/linux.md, "Linux on seL4").
    #[arg(long, conflicts_with_all = ["bare", "selftest", "plain", "hostile", "trap", "guest_cmdline", "guests", "vtlb", "vtlb_check", "vtlb_record"])]
    linux: bool,
    /// Boot your own CapDL spec: the loader instantiates exactly this file.
    #[arg(long, conflicts_with_all = ["bare", "selftest", "plain", "hostile", "trap", "guest_cmdline", "console_out"])]
    spec: Option<PathBuf>,
    /// An image the spec's frames are filled from, as NAME=PATH (repeatable).
    #[arg(long = "image", requires = "spec")]
    images: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::ensure().map(|_| ()),
        Command::Kernel { debug_kernel } => {
            setup::ensure().and_then(|tools| kernel::build(&tools, flavour(debug_kernel)).map(drop))
        }
        Command::Run(args) => run(&args),
        Command::Test { list: true, .. } => test::list(),
        Command::Test {
            no_lint,
            pattern: Some(p),
            ..
        } => test::run(&test::Selection::Pattern(p), !no_lint),
        Command::Test { no_lint, .. } => test::all(!no_lint),
        Command::Lint => test::lint(),
        Command::Bench { bare: true, .. } => bench::bare(),
        Command::Bench {
            loader: true,
            debug_kernel,
            ..
        } => bench::loader(flavour(debug_kernel)),
        Command::Bench {
            guests: true,
            debug_kernel,
            ..
        } => bench::scale(flavour(debug_kernel)),
        Command::Bench {
            linux: true,
            debug_kernel,
            ..
        } => bench::linux(flavour(debug_kernel)),
        Command::Bench { debug_kernel, .. } => bench::sel4(flavour(debug_kernel)),
        Command::Experiment {
            name,
            iterations,
            strategies,
            workloads,
            replay,
        } => experiment(&name, iterations, &strategies, &workloads, replay),
        Command::TestCapdl => test::capdl_only(),
        Command::Linux {
            build_only: true,
            afterburn,
        } => linux::build_only(afterburn.as_deref()),
        Command::Linux { .. } => linux::linux(),
        Command::Soak { minutes } => soak::soak(minutes),
        Command::Stress {
            seconds,
            shift,
            runs,
        } => stress(seconds, shift, runs),
        Command::Capdl { description } => print_generated(description),
        Command::CheckBindings => setup::ensure().and_then(|tools| {
            for f in [kernel::Flavour::Release, kernel::Flavour::Debug] {
                let kernel = kernel::build(&tools, f)?;
                let n = bindings_check::check(&kernel, &tools)?;
                println!(
                    "xtask: {n} generated values agree with the compiled {} kernel",
                    f.name()
                );
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn flavour(debug_kernel: bool) -> kernel::Flavour {
    if debug_kernel {
        kernel::Flavour::Debug
    } else {
        kernel::Flavour::Release
    }
}

fn run(args: &RunArgs) -> Result<(), String> {
    let timeout = Duration::from_secs(args.timeout);
    if let Some(spec) = &args.spec {
        return run_spec(spec, &args.images, args, timeout);
    }
    if args.linux {
        return run_linux(args);
    }
    let image = if args.hostile {
        images::Image::Hostile
    } else if args.plain || args.trap {
        images::Image::Plain
    } else {
        images::Image::Padded
    };
    if args.guests > 1 {
        return run_several(args, image, timeout);
    }
    if !args.bare {
        let tools = setup::ensure()?;
        let kernel = kernel::build(&tools, flavour(args.debug_kernel))?;
        let root_task = if args.selftest {
            tasks::build_root_task()?
        } else {
            // The system: the loader instantiating the spec generated from
            // capdl/examples/system.toml (VMM server + padded guest).
            let path = generated::example_description();
            let mut text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if args.vtlb.is_some() || args.vtlb_check || args.vtlb_record {
                let strategy = args.vtlb.as_deref().unwrap_or("keep");
                text = generated::with_vtlb_recording(
                    &text,
                    strategy,
                    args.vtlb_check,
                    args.vtlb_record,
                )?;
            }
            let cmdline = args.guest_cmdline.as_deref();
            let bundle = generated::bundle_for("system", &text, image, cmdline, args.trap)?;
            system::build_loader(&bundle)?
        };
        eprintln!(
            "xtask: booting the {} seL4 kernel with {} in QEMU ({})",
            kernel.flavour.name(),
            root_task.display(),
            args.accel
        );
        let machine = qemu::Machine {
            kernel: &kernel.multiboot_elf,
            module: Some(&root_task),
            append: None,
            memory_mib: args.memory,
            accel: &args.accel,
            icount: None,
            // The VMM writes the guest's console to COM2.
            com2: !args.selftest,
            settle: None,
            debugcons: &[],
        };
        let run = machine.boot(timeout, qemu::Echo::Terminal)?;
        let console = run.com2.as_deref().unwrap_or_default();
        return finish_run(&run, args.console_out.as_deref().map(|p| (p, console)));
    }
    setup::ensure()?;
    let elf = images::build(image)?;
    eprintln!(
        "xtask: booting the {} guest image bare in QEMU ({})",
        image.name(),
        args.accel
    );
    let machine = qemu::Machine {
        kernel: &elf,
        module: None,
        // The seL4 system's default (the VMM's), so both consoles compare.
        append: Some(
            args.guest_cmdline
                .as_deref()
                .unwrap_or(capdl_tests::SEL4_GUEST_TESTS),
        ),
        memory_mib: args.memory,
        accel: &args.accel,
        icount: None,
        com2: false,
        settle: None,
        debugcons: &[],
    };
    // A bare guest's console is COM1, and nothing else writes there.
    let run = machine.boot(timeout, qemu::Echo::Terminal)?;
    finish_run(
        &run,
        args.console_out.as_deref().map(|p| (p, &run.bytes[..])),
    )
}

/// `cargo xtask run --linux`: Linux on seL4, the guest's console on the
/// terminal (COM2 is echoed after the run) and in target/linux/.
fn run_linux(args: &RunArgs) -> Result<(), String> {
    let tools = setup::ensure()?;
    let kernels = linux::build_all()?;
    let kernel = kernel::build(&tools, flavour(args.debug_kernel))?;
    eprintln!(
        "xtask: booting the {} seL4 kernel with Linux ({}) as its guest, {} MiB of guest RAM, under -icount",
        kernel.flavour.name(),
        kernels.padded.vmlinux.display(),
        linux_sel4::RAM_MIB
    );
    let run = linux_sel4::boot(&kernel, &kernels, qemu::Echo::Terminal)?;
    let console = run.com2.as_deref().unwrap_or_default();
    println!("xtask: the guest's console:");
    print!("{}", String::from_utf8_lossy(console));
    finish_run(&run, args.console_out.as_deref().map(|p| (p, console)))
}

/// `cargo xtask run --guests N`: N copies of the guest, each with its own
/// VMM, consoles in DIR/guestN.log.
fn run_several(args: &RunArgs, image: images::Image, timeout: Duration) -> Result<(), String> {
    let tools = setup::ensure()?;
    let kernel = kernel::build(&tools, flavour(args.debug_kernel))?;
    let image_name = match image {
        images::Image::Hostile => "hostile",
        images::Image::Plain => "plain",
        _ => "guest",
    };
    let guests: Vec<generated::GuestSpec> = (0..args.guests)
        .map(|n| generated::GuestSpec {
            name: format!("guest{n}"),
            image: image_name,
            cmdline: args
                .guest_cmdline
                .clone()
                .unwrap_or_else(|| capdl_tests::SEL4_GUEST_TESTS.to_string()),
            trap: args.trap,
            ram_mib: 32,
        })
        .collect();
    eprintln!(
        "xtask: booting the {} seL4 kernel with {} guests of 32 MiB, each with a VMM of its own, in QEMU ({})",
        kernel.flavour.name(),
        args.guests,
        args.accel
    );
    let several = several::run(
        &kernel,
        "several",
        &guests,
        args.memory,
        None,
        qemu::Echo::Terminal,
        timeout,
    )?;
    if let Some(dir) = &args.console_out {
        several::save_consoles(dir, &guests, &several)?;
    }
    finish_run(&several.run, None)
}

/// `cargo xtask experiment NAME`.
fn experiment(
    name: &str,
    iterations: Option<u64>,
    strategies: &[String],
    workloads: &[String],
    replay: bool,
) -> Result<(), String> {
    if name != "mapping" {
        return Err(format!(
            "unknown experiment `{name}`: the one there is is `mapping`"
        ));
    }
    let strategies = if strategies.is_empty() {
        capdl::generate::VtlbStrategy::ALL.to_vec()
    } else {
        strategies
            .iter()
            .map(|s| {
                capdl::generate::VtlbStrategy::from_name(s)
                    .ok_or_else(|| format!("unknown vTLB strategy `{s}`"))
            })
            .collect::<Result<_, _>>()?
    };
    let workloads: Vec<String> = if workloads.is_empty() {
        experiment::WORKLOADS
            .iter()
            .map(|w| w.to_string())
            .collect()
    } else {
        for w in workloads {
            if !experiment::WORKLOADS.contains(&w.as_str()) {
                return Err(format!(
                    "unknown mapping workload `{w}`: one of {}",
                    experiment::WORKLOADS.join(", ")
                ));
            }
        }
        workloads.to_vec()
    };
    let tools = setup::ensure()?;
    let kernel = kernel::build(&tools, kernel::Flavour::Release)?;
    let plan = experiment::Plan {
        strategies,
        workloads,
        iterations,
        timed: true,
        replay,
    };
    experiment::mapping(&kernel, &plan)
}

/// `cargo xtask stress`: judged runs, which must all count the same.
fn stress(seconds: u64, shift: u32, runs: u32) -> Result<(), String> {
    let tools = setup::ensure()?;
    let kernel = kernel::build(&tools, kernel::Flavour::Release)?;
    let mut first: Option<interrupt_tests::Counts> = None;
    for n in 1..=runs {
        let run = interrupt_tests::run_stress(&kernel, seconds, shift)?;
        for line in &run.lines {
            println!("{line}");
        }
        let counts = run.counts;
        println!("xtask: stress run {n}: {counts:?}");
        println!(
            "xtask: stress run {n}: QEMU ran {:.1} s",
            run.wall.as_secs_f64()
        );
        let verdict = interrupt_tests::judge(&counts, seconds);
        match &verdict {
            Ok(text) => println!("xtask: stress run {n}: PASS {text}"),
            Err(why) => println!("xtask: stress run {n}: FAIL {why}"),
        }
        if let Some(first) = &first {
            if *first != counts {
                return Err(format!("run {n} counted otherwise than run 1"));
            }
        }
        verdict?;
        first.get_or_insert(counts);
    }
    Ok(())
}

fn print_generated(description: Option<PathBuf>) -> Result<(), String> {
    let path = description.unwrap_or_else(generated::example_description);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let images = generated::images()?;
    let spec = capdl::generate::generate(&text, &images)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    print!("{spec}");
    Ok(())
}

/// Boots a user's CapDL spec with the images it names.
fn run_spec(
    spec: &Path,
    images: &[String],
    args: &RunArgs,
    timeout: Duration,
) -> Result<(), String> {
    let text = std::fs::read_to_string(spec).map_err(|e| format!("{}: {e}", spec.display()))?;
    let mut files = Vec::new();
    for image in images {
        let (name, path) = image
            .split_once('=')
            .ok_or_else(|| format!("--image {image:?}: expected NAME=PATH"))?;
        let bytes = std::fs::read(path).map_err(|e| format!("--image {name}={path}: {e}"))?;
        files.push((name.to_string(), bytes));
    }
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let name = spec.file_stem().and_then(|s| s.to_str()).unwrap_or("spec");
    let bundle = system::bundle_file(name, spec, &text, &entries)?;
    let tools = setup::ensure()?;
    let kernel = kernel::build(&tools, flavour(args.debug_kernel))?;
    let loader = system::build_loader(&bundle)?;
    eprintln!(
        "xtask: booting seL4 with the loader carrying {}",
        spec.display()
    );
    let machine = qemu::Machine {
        kernel: &kernel.multiboot_elf,
        module: Some(&loader),
        append: None,
        memory_mib: args.memory,
        accel: &args.accel,
        icount: None,
        // A spec may give a task COM2, as the generated system gives the VMM.
        com2: true,
        settle: None,
        debugcons: &[],
    };
    finish_run(&machine.boot(timeout, qemu::Echo::Terminal)?, None)
}

/// Saves the guest's console (`FILE`, its bytes) if asked, and turns the
/// run's outcome into ours.
fn finish_run(run: &qemu::Run, console_out: Option<(&Path, &[u8])>) -> Result<(), String> {
    if let Some((path, bytes)) = console_out {
        write_atomically(path, bytes)?;
    }
    match &run.outcome {
        qemu::Outcome::Passed => Ok(()),
        other => Err(format!(
            "the system ended with {other} after {:.2} s",
            run.elapsed.as_secs_f64()
        )),
    }
}

/// Writes a file whole or not at all: a temporary file next to it (named
/// after this process, so two commands never share one), renamed into place;
/// on failure the temporary file is removed and `path` is left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::write(&tmp, bytes)
        .map_err(|e| format!("{}: {e}", tmp.display()))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display())));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
