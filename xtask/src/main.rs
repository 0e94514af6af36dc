//! `cargo xtask`: builds the seL4 kernel and the tasks, boots them in QEMU,
//! and runs the project's whole test suite.

mod bindings_check;
mod fingerprint;
mod kernel;
mod paths;
mod process;
mod qemu;
mod selftest_checks;
mod setup;
mod tasks;
mod test;

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
    Kernel,
    /// Build everything and boot the system in QEMU; serial goes to the terminal.
    Run {
        /// QEMU accelerator. KVM here is a software virtualizer seL4 cannot run on.
        #[arg(long, default_value = "tcg")]
        accel: String,
        /// Give up (an error) after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 512)]
        memory: u32,
    },
    /// Run every test: lints, host tests, no_std builds, the kernel bindings
    /// cross-check and the QEMU integration tests.
    Test {
        /// Skip rustfmt and clippy.
        #[arg(long)]
        no_lint: bool,
    },
    /// rustfmt and clippy over every crate, for its own target.
    Lint,
    /// Check the generated seL4 bindings against the compiled kernel.
    CheckBindings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::ensure().map(|_| ()),
        Command::Kernel => setup::ensure().and_then(|tools| kernel::build(&tools).map(drop)),
        Command::Run {
            accel,
            timeout,
            memory,
        } => run(&accel, Duration::from_secs(timeout), memory),
        Command::Test { no_lint } => test::all(!no_lint),
        Command::Lint => test::lint(),
        Command::CheckBindings => setup::ensure().and_then(|tools| {
            let kernel = kernel::build(&tools)?;
            let n = bindings_check::check(&kernel, &tools)?;
            println!("xtask: {n} generated values agree with the compiled kernel");
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

fn run(accel: &str, timeout: Duration, memory: u32) -> Result<(), String> {
    let tools = setup::ensure()?;
    let kernel = kernel::build(&tools)?;
    let root_task = tasks::build_root_task()?;
    eprintln!(
        "xtask: booting seL4 with {} in QEMU ({accel})",
        root_task.display()
    );
    let machine = qemu::Machine {
        kernel: &kernel.multiboot_elf,
        root_task: &root_task,
        memory_mib: memory,
        accel,
    };
    let run = machine.boot(timeout, qemu::Echo::Terminal)?;
    match run.outcome {
        qemu::Outcome::Passed => Ok(()),
        other => Err(format!(
            "the system ended with {other} after {:.2} s",
            run.elapsed.as_secs_f64()
        )),
    }
}
