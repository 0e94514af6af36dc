//! `capdl`: check, print and serialize CapDL specs.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Check, print and serialize previrt CapDL specs (x86_64).
#[derive(Debug, Parser)]
#[command(name = "capdl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Report every error of a spec as FILE:LINE:COL; exit 1 if there is any.
    Check {
        /// The spec.
        file: PathBuf,
    },
    /// Print a spec in canonical form.
    Print {
        /// The spec.
        file: PathBuf,
    },
    /// Serialize a spec to the postcard form the loader reads.
    Encode {
        /// The spec.
        file: PathBuf,
        /// Where to write the bytes (replaced atomically).
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn load(file: &Path) -> Result<capdl::Spec, String> {
    let source =
        fs::read_to_string(file).map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    capdl::check(&source).map_err(|diagnostics| {
        let mut text = String::new();
        for d in &diagnostics {
            text.push_str(&format!("{}:{d}\n", file.display()));
        }
        let n = diagnostics.len();
        text.push_str(&format!(
            "{}: {n} error{}",
            file.display(),
            if n == 1 { "" } else { "s" }
        ));
        text
    })
}

/// Writes `bytes` to a temporary file next to `output`, then renames it over
/// `output`: a reader sees the old file or the whole new one, never half.
fn write_atomically(output: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let temp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, output)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Check { file } => {
            let spec = load(&file)?;
            println!(
                "{}: ok: {} objects, {} caps, {:#x} bytes from boot untypeds",
                file.display(),
                spec.objects.len(),
                spec.cap_count(),
                spec.bytes_from_boot_untypeds()
            );
            Ok(())
        }
        Command::Print { file } => {
            print!("{}", capdl::print::print(&load(&file)?));
            Ok(())
        }
        Command::Encode { file, output } => {
            let spec = load(&file)?;
            let bytes = capdl::encode::encode(&spec).map_err(|e| e.to_string())?;
            write_atomically(&output, &bytes)
                .map_err(|e| format!("{}: cannot write: {e}", output.display()))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
