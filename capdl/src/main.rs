//! `capdl`: check, print and serialize CapDL specs, and generate the spec of
//! a whole system.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Check, print, serialize and generate previrt CapDL specs (x86_64).
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
    /// Print the spec of a whole system (VMM server, guests, devices) from a
    /// TOML description (docs/capdl.md, "Generating a system").
    Generate {
        /// The system description.
        system: PathBuf,
        /// An ELF image the description names: NAME=PATH (repeat for each).
        #[arg(long = "image", value_name = "NAME=PATH", value_parser = parse_image_arg)]
        images: Vec<(String, PathBuf)>,
    },
}

/// `NAME=PATH` of `--image`.
fn parse_image_arg(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("`{arg}` is not NAME=PATH")),
    }
}

/// Reads the description and the images, and generates the spec text.
fn generate(system: &Path, image_args: &[(String, PathBuf)]) -> Result<String, String> {
    let source = fs::read_to_string(system)
        .map_err(|e| format!("{}: cannot read: {e}", system.display()))?;
    let mut images: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (name, path) in image_args {
        let bytes = fs::read(path)
            .map_err(|e| format!("--image {name}={}: cannot read: {e}", path.display()))?;
        if images.insert(name.clone(), bytes).is_some() {
            return Err(format!("--image {name}: given twice"));
        }
    }
    capdl::generate::generate(&source, &images).map_err(|e| match e {
        capdl::generate::GenerateError::Description(d) => match d.at {
            capdl::generate::At::Pos { .. } => format!("{}:{d}", system.display()),
            capdl::generate::At::Key(_) => format!("{}: {d}", system.display()),
        },
        capdl::generate::GenerateError::Image { ref name, .. } => {
            let path = image_args
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.display().to_string())
                .unwrap_or_default();
            format!("{path}: {e}")
        }
        other => format!("{}: {other}", system.display()),
    })
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
        Command::Generate { system, images } => {
            print!("{}", generate(&system, &images)?);
            Ok(())
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
