//! `afterburn`: the pre-virtualization assembler pass, compiler driver and
//! binary audit. See `docs/afterburner.md`.

use afterburner::{audit, cc, elf, format, io, pass, sites};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "afterburn",
    version,
    about = "Pre-virtualize x86-64 assembly and audit the result"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pad every sensitive instruction in an AT&T assembly file and record it.
    Asm {
        /// Input assembly (`-` for standard input).
        input: PathBuf,
        /// Output assembly (written whole or not at all; `-` for standard output).
        #[arg(short, long)]
        output: PathBuf,
        /// Site size: `N` for every kind, or `KIND=N` (repeatable).
        #[arg(long = "site-size", value_name = "[KIND=]N")]
        site_size: Vec<String>,
        /// Print a summary (sites, opted-out regions) to standard error.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Compiler driver for `CC=`: compile, pass, assemble.
    Cc {
        /// Compiler arguments, plus `--afterburn-*` options.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Prove that every sensitive instruction of an ELF file is in a site.
    Audit {
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List the `.afterburn` records of an ELF file.
    Sites {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List the site kinds with their numbers and default sizes.
    Kinds,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Asm {
            input,
            output,
            site_size,
            verbose,
        } => run_asm(&input, &output, &site_size, verbose),
        Command::Cc { args } => match cc::run(args) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => {
                eprintln!("afterburn cc: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Audit { file, json } => {
            let Some(image) = load(&file) else {
                return ExitCode::FAILURE;
            };
            let report = audit::audit(&image);
            let text = if json {
                format!("{}\n", report.to_json())
            } else {
                report.to_text()
            };
            if !emit(&text) {
                return ExitCode::FAILURE;
            }
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Sites { file, json } => {
            let Some(image) = load(&file) else {
                return ExitCode::FAILURE;
            };
            let lines = sites::list(&image);
            let text = if json {
                format!("{}\n", sites::to_json(&lines))
            } else {
                sites::to_text(&lines)
            };
            if emit(&text) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Kinds => {
            let mut text = String::new();
            for k in format::ALL_KINDS {
                text.push_str(&format!(
                    "{:>3} {:<17} {}\n",
                    k.number(),
                    k.name(),
                    k.default_site_size()
                ));
            }
            if emit(&text) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Writes a report to stdout. A reader that stops early (`| head`) is not
/// an error worth a message; any other write error is said. Returns false
/// if the report did not all go out.
fn emit(text: &str) -> bool {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            eprintln!("afterburn: <stdout>: {e}");
            false
        }
    }
}

fn load(file: &Path) -> Option<elf::ElfImage> {
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return None;
        }
    };
    match elf::ElfImage::parse(&data) {
        Ok(i) => Some(i),
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            None
        }
    }
}

fn run_asm(input: &Path, output: &Path, site_size: &[String], verbose: bool) -> ExitCode {
    let mut config = pass::Config::default();
    for s in site_size {
        if let Err(e) = config.apply_option(s) {
            eprintln!("afterburn: --site-size {s}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let text = if input == Path::new("-") {
        let mut buf = Vec::new();
        if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf) {
            eprintln!("<stdin>: {e}");
            return ExitCode::FAILURE;
        }
        buf
    } else {
        match std::fs::read(input) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", input.display());
                return ExitCode::FAILURE;
            }
        }
    };
    let name = if input == Path::new("-") {
        "<stdin>".to_string()
    } else {
        input.display().to_string()
    };
    let out = match pass::run(&text, &config) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{name}:{}: {}", e.line, e.message);
            return ExitCode::FAILURE;
        }
    };
    for w in &out.warnings {
        eprintln!("{name}:{}: warning: {}", w.line, w.message);
    }
    for r in &out.opt_out {
        eprintln!(
            "{name}:{}: note: opted-out region, lines {}-{}",
            r.first_line, r.first_line, r.last_line
        );
    }
    if verbose {
        eprintln!(
            "{name}: {} sites, {} opted-out regions",
            out.sites.len(),
            out.opt_out.len()
        );
    }
    if output == Path::new("-") {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = stdout.write_all(&out.text).and_then(|()| stdout.flush()) {
            eprintln!("<stdout>: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = io::write_atomically(output, &out.text) {
        eprintln!("{}: {e}", output.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
