//! `afterburn cc`: a compiler driver for `CC=` that runs the real compiler
//! to assembly, the pass, and the assembler.
//!
//! - `.c` (and every other language the compiler turns into assembly): the
//!   compiler with `-S`, the pass, then `as` directly (`AFTERBURN_AS`, default
//!   `as`) with the options the compiler driver would have given it.
//! - `.S`/`.sx`: the compiler with `-E` (preprocessing only), the pass, the
//!   assembler step.
//! - `.s`: the pass, the assembler step.
//! - Dependency flags (`-MD`, `-MMD`, ...) go to the first step only, with
//!   `-MQ <real output>` and `-MF <real .d path>` added unless given, so the
//!   rule names the object the user asked for, not a temporary file.
//! - Invocations that produce no assembly (link only, `-E`, `-M`, version
//!   queries) run the real compiler unchanged; a link that also names
//!   sources compiles those through the pipeline first.
//!
//! The driver's own options start with `--afterburn-` (no compiler has
//! such options): `--afterburn-cc=PATH`, `--afterburn-site-size=SPEC`,
//! `--afterburn-keep-temps`, `--afterburn-verbose`, `--afterburn-no-pad`
//! (the compiler's objects, unpadded: a plain build that fills the compile
//! cache) and `--afterburn-cache=DIR` (or env `AFTERBURN_CACHE`): the
//! content-addressed compile cache ([`crate::compile_cache`]) that lets a
//! padded build reuse a plain build's compiler output.

use crate::compile_cache::{CompileCache, DirectKey, Key, Manifest};
use crate::pass::{self, Config};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

/// Errors of the driver itself (a failing compiler is not one: its exit
/// code is passed on).
#[derive(Debug, Error)]
pub enum CcError {
    #[error("cannot run `{compiler}`: {source}")]
    Spawn {
        compiler: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Pass(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("bad afterburn option: {0}")]
    Option(String),
    #[error("{0}")]
    Unsupported(String),
}

/// How the driver was asked to behave (from `--afterburn-*` and env).
#[derive(Clone, Debug)]
pub struct DriverOptions {
    pub compiler: String,
    pub config: Config,
    pub keep_temps: bool,
    pub verbose: bool,
    /// Objects as the compiler makes them, without the pass.
    pub no_pad: bool,
    /// The compile cache's directory.
    pub cache: Option<PathBuf>,
}

impl DriverOptions {
    /// Reads `AFTERBURN_CC` (default `gcc`) and `AFTERBURN_SITE_SIZE`.
    pub fn from_env() -> Result<Self, CcError> {
        let mut o = DriverOptions {
            compiler: std::env::var("AFTERBURN_CC").unwrap_or_else(|_| "gcc".into()),
            config: Config::default(),
            keep_temps: false,
            verbose: false,
            no_pad: false,
            cache: std::env::var_os("AFTERBURN_CACHE")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        };
        if let Ok(spec) = std::env::var("AFTERBURN_SITE_SIZE") {
            for s in spec.split(',').filter(|s| !s.is_empty()) {
                o.config
                    .apply_option(s)
                    .map_err(|e| CcError::Option(e.to_string()))?;
            }
        }
        Ok(o)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    /// Anything the compiler turns into assembly with `-S`.
    Compiled,
    AsmCpp,
    Asm,
    /// Object files, libraries: only the linker wants them.
    Linker,
}

#[derive(Clone, Debug)]
struct Input {
    path: OsString,
    lang: Lang,
    /// The `-x` language in force for this input, if any.
    x: Option<OsString>,
    /// Index in the argument list.
    arg_index: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Compile,
    Assembly,
    Link,
    PassThrough,
}

/// Options whose value is the next argument.
const TAKES_VALUE: &[&str] = &[
    "-o",
    "-x",
    "-MF",
    "-MT",
    "-MQ",
    "-I",
    "-D",
    "-U",
    "-include",
    "-imacros",
    "-isystem",
    "-iquote",
    "-idirafter",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-isysroot",
    "-imultilib",
    "-L",
    "-T",
    "-u",
    "-Xlinker",
    "-Xassembler",
    "-Xpreprocessor",
    "-aux-info",
    "--param",
    "-z",
    "-e",
    "-wrapper",
    "-dumpbase",
    "-dumpdir",
    "-specs",
];

fn lang_of(path: &Path, x: Option<&OsStr>) -> Lang {
    if let Some(x) = x.and_then(OsStr::to_str) {
        return match x {
            "assembler" => Lang::Asm,
            "assembler-with-cpp" => Lang::AsmCpp,
            "none" => lang_of(path, None),
            _ => Lang::Compiled,
        };
    }
    match path.extension().and_then(OsStr::to_str) {
        Some("c" | "i" | "cc" | "cp" | "cxx" | "cpp" | "c++" | "C" | "ii" | "m" | "mi") => {
            Lang::Compiled
        }
        Some("S" | "sx") => Lang::AsmCpp,
        Some("s") => Lang::Asm,
        _ => Lang::Linker,
    }
}

/// The parsed command line.
#[derive(Debug)]
struct Invocation {
    args: Vec<OsString>,
    inputs: Vec<Input>,
    output: Option<OsString>,
    mode: Mode,
    dep_file_flag: bool,
    has_mf: bool,
    has_mt: bool,
    lto: bool,
    /// The last of `-fpic`/`-fPIC`/`-fpie`/`-fPIE` and their `-fno-` forms
    /// asked for position-independent code.
    pic: bool,
    /// `-m16` is the last of `-m16`/`-m32`/`-mx32`/`-m64`.
    m16: bool,
    /// Indices of arguments the later steps must not see (inputs, `-o`,
    /// `-c`/`-S`, `-x`, dependency flags).
    step_only: Vec<bool>,
    dep_flag: Vec<bool>,
}

fn parse_args(args: Vec<OsString>) -> Invocation {
    let n = args.len();
    let mut inv = Invocation {
        inputs: Vec::new(),
        output: None,
        mode: Mode::Link,
        dep_file_flag: false,
        has_mf: false,
        has_mt: false,
        lto: false,
        pic: false,
        m16: false,
        step_only: vec![false; n],
        dep_flag: vec![false; n],
        args: Vec::new(),
    };
    let mut x: Option<OsString> = None;
    let mut compile = false;
    let mut assembly = false;
    let mut pass_through = false;
    let mut only_deps = false;
    let mut i = 0;
    while i < n {
        let a = args[i].to_string_lossy().into_owned();
        let next = args.get(i + 1).cloned();
        match a.as_str() {
            "-c" => {
                compile = true;
                inv.step_only[i] = true;
            }
            "-S" => {
                assembly = true;
                inv.step_only[i] = true;
            }
            "-E" | "-fsyntax-only" | "--version" | "-dumpversion" | "-dumpmachine"
            | "-dumpspecs" | "-###" | "--help" => pass_through = true,
            "-M" | "-MM" => only_deps = true,
            "-fpic" | "-fPIC" | "-fpie" | "-fPIE" => inv.pic = true,
            "-fno-pic" | "-fno-PIC" | "-fno-pie" | "-fno-PIE" => inv.pic = false,
            "-m16" => inv.m16 = true,
            "-m32" | "-mx32" | "-m64" => inv.m16 = false,
            "-MD" | "-MMD" => {
                inv.dep_file_flag = true;
                inv.dep_flag[i] = true;
            }
            "-MP" | "-MG" => inv.dep_flag[i] = true,
            "-MF" | "-MT" | "-MQ" => {
                if a == "-MF" {
                    inv.has_mf = true;
                } else {
                    inv.has_mt = true;
                }
                inv.dep_flag[i] = true;
                if i + 1 < n {
                    inv.dep_flag[i + 1] = true;
                }
                i += 1;
            }
            "-o" => {
                inv.output = next;
                inv.step_only[i] = true;
                if i + 1 < n {
                    inv.step_only[i + 1] = true;
                }
                i += 1;
            }
            "-x" => {
                x = next.filter(|v| v != "none");
                inv.step_only[i] = true;
                if i + 1 < n {
                    inv.step_only[i + 1] = true;
                }
                i += 1;
            }
            "-" => {
                inv.inputs.push(Input {
                    path: args[i].clone(),
                    lang: lang_of(Path::new("-"), x.as_deref()),
                    x: x.clone(),
                    arg_index: i,
                });
                inv.step_only[i] = true;
            }
            _ if a.starts_with("-print-") => pass_through = true,
            _ if a.starts_with("-flto") && a != "-flto=none" && !a.starts_with("-flto-") => {
                inv.lto = true
            }
            _ if a.starts_with("-MF") || a.starts_with("-MT") || a.starts_with("-MQ") => {
                inv.has_mf |= a.starts_with("-MF");
                inv.has_mt |= !a.starts_with("-MF");
                inv.dep_flag[i] = true;
            }
            _ if a.starts_with("-x") && a.len() > 2 => {
                x = Some(OsString::from(&a[2..])).filter(|v| v != "none");
                inv.step_only[i] = true;
            }
            _ if a.starts_with("-o") && a.len() > 2 => {
                inv.output = Some(OsString::from(&a[2..]));
                inv.step_only[i] = true;
            }
            _ if TAKES_VALUE.contains(&a.as_str()) => i += 1,
            _ if a.starts_with('-') => {}
            _ => {
                inv.inputs.push(Input {
                    path: args[i].clone(),
                    lang: lang_of(Path::new(&args[i]), x.as_deref()),
                    x: x.clone(),
                    arg_index: i,
                });
                inv.step_only[i] = true;
            }
        }
        i += 1;
    }
    inv.mode = if pass_through || (only_deps && !inv.dep_file_flag) {
        Mode::PassThrough
    } else if assembly {
        Mode::Assembly
    } else if compile {
        Mode::Compile
    } else {
        Mode::Link
    };
    if inv.inputs.iter().all(|i| i.lang == Lang::Linker) {
        inv.mode = Mode::PassThrough;
    }
    inv.args = args;
    inv
}

/// Runs the driver on compiler arguments; returns the exit code to use.
pub fn run(raw_args: Vec<OsString>) -> Result<i32, CcError> {
    let mut opts = DriverOptions::from_env()?;
    let mut args = Vec::with_capacity(raw_args.len());
    for a in raw_args {
        let s = a.to_string_lossy();
        if let Some(rest) = s.strip_prefix("--afterburn-") {
            match rest.split_once('=') {
                Some(("cc", v)) => opts.compiler = v.into(),
                Some(("site-size", v)) => {
                    for spec in v.split(',') {
                        opts.config
                            .apply_option(spec)
                            .map_err(|e| CcError::Option(e.to_string()))?;
                    }
                }
                Some(("cache", v)) => opts.cache = Some(PathBuf::from(v)),
                None if rest == "keep-temps" => opts.keep_temps = true,
                None if rest == "verbose" => opts.verbose = true,
                None if rest == "no-pad" => opts.no_pad = true,
                _ => return Err(CcError::Option(s.into_owned())),
            }
        } else {
            args.push(a);
        }
    }
    run_with(args, &opts)
}

/// Runs the driver with explicit options.
pub fn run_with(args: Vec<OsString>, opts: &DriverOptions) -> Result<i32, CcError> {
    let inv = parse_args(args);
    if let Some(why) = inv.not_padded() {
        if opts.verbose && inv.mode != Mode::PassThrough {
            eprintln!("afterburn cc: not padded: {why}");
        }
        return spawn(opts, &inv.args);
    }
    if opts.no_pad {
        return run_unpadded(&inv, opts);
    }
    if inv.lto {
        return Err(CcError::Unsupported(
            "-flto objects hold compiler IR, not machine code the pass can see; build without LTO"
                .into(),
        ));
    }
    let compiled: Vec<&Input> = inv
        .inputs
        .iter()
        .filter(|i| i.lang != Lang::Linker)
        .collect();
    if inv.mode != Mode::Link && compiled.len() > 1 && inv.output.is_some() {
        // The compiler's own message is the right one.
        return spawn(opts, &inv.args);
    }
    let tmp = temp_dir()?;
    let mut link_replacements: Vec<(usize, PathBuf)> = Vec::new();
    let mut result = Ok(0);
    for (n, input) in compiled.iter().enumerate() {
        let out_path = match (inv.mode, &inv.output) {
            (Mode::Link, _) => tmp.path().join(format!("input{n}.o")),
            (_, Some(o)) => PathBuf::from(o),
            (_, None) => default_output(&input.path, "o"),
        };
        match compile_one(&inv, input, &out_path, tmp.path(), n, opts) {
            Ok(0) => link_replacements.push((input.arg_index, out_path)),
            other => {
                result = other;
                break;
            }
        }
    }
    if inv.mode == Mode::Link && matches!(result, Ok(0)) {
        let mut args = inv.args.clone();
        for (idx, path) in &link_replacements {
            args[*idx] = path.clone().into_os_string();
        }
        // Objects carry no language: drop `-x` so the linker sees them as
        // objects, and dependency flags (already honoured at compile time).
        let args: Vec<OsString> = args
            .into_iter()
            .enumerate()
            .filter(|(i, a)| !inv.dep_flag[*i] && !is_x_flag(&inv.args, *i, a))
            .map(|(_, a)| a)
            .collect();
        result = spawn(opts, &args);
    }
    if opts.keep_temps || matches!(result, Err(CcError::Pass(_))) {
        let kept = tmp.keep();
        if opts.verbose || opts.keep_temps {
            eprintln!("afterburn cc: temporary files kept in {}", kept.display());
        }
    }
    result
}

impl Invocation {
    /// Debug info was asked for (a `-g` option other than `-g0`).
    fn debug(&self) -> bool {
        self.args.iter().any(|a| {
            let a = a.to_string_lossy();
            a.starts_with("-g") && a != "-g0"
        })
    }

    /// Why this invocation runs the real compiler unchanged, if it does.
    /// Besides what produces no machine code, three kinds of code a kernel
    /// build compiles never run in the kernel proper, where the wedge runs
    /// (docs/afterburner.md, "What is not padded"):
    fn not_padded(&self) -> Option<&'static str> {
        match self.mode {
            Mode::PassThrough => Some("no machine code is produced"),
            // Build systems parse `-S` output (Kbuild's asm-offsets): it must
            // be the compiler's. Assembling it (`-c x.s`) runs the pass.
            Mode::Assembly => Some("-S output is the compiler's assembly, padded when assembled"),
            // Real-mode code runs before the kernel proper (setup, wake-up,
            // the AP trampoline), never under the wedge.
            _ if self.m16 => Some("16-bit code (-m16) runs in real mode, never under the wedge"),
            // A kernel proper is never position-independent on x86-64
            // (-mcmodel=kernel); PIC code in a kernel build is user space
            // (the vDSO, where every instruction runs natively at user level)
            // or runs before the kernel proper (the bzImage decompressor).
            _ if self.pic => {
                Some("position-independent code (-fpic/-fpie) is user space or a pre-kernel stage")
            }
            _ => None,
        }
    }
}

fn is_x_flag(args: &[OsString], i: usize, a: &OsStr) -> bool {
    let s = a.to_string_lossy();
    s == "-x" || (s.starts_with("-x") && s.len() > 2) || (i > 0 && args[i - 1] == "-x")
}

/// `dir/foo.c` -> `foo.EXT` in the working directory, as the compiler does.
fn default_output(input: &OsStr, ext: &str) -> PathBuf {
    let p = Path::new(input);
    let stem = p.file_stem().unwrap_or(OsStr::new("a"));
    PathBuf::from(stem).with_extension(ext)
}

/// Where the compiler would write the `.d` file for `-MD`.
fn default_dep_file(inv: &Invocation, input: &OsStr, output: &Path) -> PathBuf {
    match &inv.output {
        Some(_) => output.with_extension("d"),
        None => default_output(input, "d"),
    }
}

fn common_args(inv: &Invocation, keep_deps: bool, drop_debug: bool) -> Vec<OsString> {
    inv.args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            let step_only = inv.step_only[*i];
            let dep = !keep_deps && inv.dep_flag[*i];
            let debug = drop_debug && a.to_string_lossy().starts_with("-g");
            !(step_only || dep || debug)
        })
        .map(|(_, a)| a.clone())
        .collect()
}

/// The first step's arguments for one input: the common arguments, the
/// dependency options that name the real output, the language, `step`
/// (`-E` or `-S`), the input and `-o out`.
fn step_args(
    inv: &Invocation,
    input: &Input,
    out_path: &Path,
    step: &str,
    out: &Path,
) -> Vec<OsString> {
    let mut args = common_args(inv, true, false);
    if inv.dep_file_flag {
        if !inv.has_mt {
            args.push("-MQ".into());
            args.push(out_path.as_os_str().into());
        }
        if !inv.has_mf {
            args.push("-MF".into());
            args.push(default_dep_file(inv, &input.path, out_path).into_os_string());
        }
    }
    let x = match (input.lang, &input.x) {
        (Lang::AsmCpp, _) => Some(OsString::from("assembler-with-cpp")),
        (_, x) => x.clone(),
    };
    if let Some(x) = x {
        args.push("-x".into());
        args.push(x);
    }
    args.push(step.into());
    args.push(input.path.clone());
    args.push("-o".into());
    args.push(out.as_os_str().into());
    args
}

/// The compiler's assembly for a compiled input.
struct Assembly {
    path: PathBuf,
    /// The cache entry it came from (`reused`) or was stored as.
    cached: Option<(CompileCache, Key)>,
    reused: bool,
    /// Reused without preprocessing (the direct mode).
    direct: bool,
    /// The unpadded object the cache holds for it.
    object: Option<PathBuf>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CcError + '_ {
    move |source| CcError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Runs the compiler's `-S` for a compiled input, or, with a compile cache,
/// preprocesses it (`-E`, which also writes the dependency file), looks the
/// result up and runs `-S` only when the cache does not have it. A reused
/// entry's diagnostics are printed as the compiler printed them. `Err(code)`
/// is the compiler's failure, its messages already shown.
fn compiler_assembly(
    inv: &Invocation,
    input: &Input,
    out_path: &Path,
    tmp: &Path,
    n: usize,
    opts: &DriverOptions,
) -> Result<Result<Assembly, i32>, CcError> {
    let raw_asm = tmp.join(format!("input{n}.s"));
    // Standard input can be read once only: not through the cache.
    let cache_dir = opts.cache.as_ref().filter(|_| input.path != "-");
    let Some(dir) = cache_dir else {
        let code = spawn(opts, &step_args(inv, input, out_path, "-S", &raw_asm))?;
        return Ok(if code == 0 {
            Ok(Assembly {
                path: raw_asm,
                cached: None,
                reused: false,
                direct: false,
                object: None,
            })
        } else {
            Err(code)
        });
    };
    let cache = CompileCache::open(dir).map_err(io_error(dir))?;
    let preprocessed_path = tmp.join(format!("input{n}.i"));
    let preprocess_args = step_args(inv, input, out_path, "-E", &preprocessed_path);
    let compiler_identity = identity(&opts.compiler, "-v")?;
    let assembler_identity = identity(&assembler(), "--version")?;
    let direct = direct_mode(&preprocess_args, &compiler_identity, &assembler_identity);
    if let Some((direct_key, depfile)) = &direct {
        if let Some(hit) = direct_hit(&cache, direct_key, depfile.as_deref())? {
            return Ok(Ok(hit));
        }
    }
    let (code, preprocessor_messages) = spawn_captured(opts, &opts.compiler, &preprocess_args)?;
    if code != 0 {
        show(&preprocessor_messages);
        return Ok(Err(code));
    }
    let preprocessed = std::fs::read(&preprocessed_path).map_err(io_error(&preprocessed_path))?;
    let key = Key::new(
        &preprocessed,
        &key_args(inv),
        &compiler_identity,
        &assembler_identity,
    );
    if let Some((direct_key, depfile)) = &direct {
        // What this preprocessing read and wrote, for the next build that
        // has the same files. Without one, that build preprocesses: the
        // manifest only saves time, so failing to make one is no error.
        let depfile_text = match depfile {
            Some(path) => std::fs::read(path).ok(),
            None => Some(Vec::new()),
        };
        let manifest = depfile_text.and_then(|text| {
            Manifest::of_unit(&key, &preprocessed, depfile.as_ref().map(|_| text))
        });
        if let Some(m) = manifest {
            let _ = cache.store_manifest(direct_key, &m);
        }
    }
    if let Some(entry) = cache.lookup(&key) {
        show(&entry.diagnostics);
        return Ok(Ok(Assembly {
            path: entry.assembly,
            cached: Some((cache, key)),
            reused: true,
            direct: false,
            object: entry.object,
        }));
    }
    // A miss: the compiler on the preprocessed text it just wrote, which
    // spares preprocessing the unit a second time (the same code: the text
    // is what the compiler would have parsed). Its diagnostics are another
    // matter: on the preprocessed text a warning points into the expanded
    // macro, without the "in expansion of macro" notes. So a unit whose
    // compile prints anything, or fails, is compiled again from the source,
    // and that compile's code and messages are the ones kept and shown:
    // exactly an ordinary compile's. So is one whose preprocessing printed
    // anything (`#warning`, `-Wundef`): only a compile of the source shows
    // those again. Most units print nothing.
    let from_preprocessed = preprocessor_messages
        .is_empty()
        .then(|| preprocessed_step_args(inv, input, &preprocessed_path, &raw_asm))
        .flatten();
    let (mut code, mut messages) = (1, Vec::new());
    if let Some(args) = &from_preprocessed {
        (code, messages) = spawn_captured(opts, &opts.compiler, args)?;
    }
    if code != 0 || !messages.is_empty() {
        (code, messages) = spawn_captured(
            opts,
            &opts.compiler,
            &step_args(inv, input, out_path, "-S", &raw_asm),
        )?;
    }
    show(&messages);
    if code != 0 {
        return Ok(Err(code));
    }
    let assembly = std::fs::read(&raw_asm).map_err(io_error(&raw_asm))?;
    cache
        .store_assembly(&key, &assembly, &messages)
        .map_err(io_error(dir))?;
    Ok(Ok(Assembly {
        path: raw_asm,
        cached: Some((cache, key)),
        reused: false,
        direct: false,
        object: None,
    }))
}

/// The direct mode's key for a preprocessing command (its arguments but
/// the temporary output) and the dependency file it writes, if any; None
/// when the dependency file cannot be told from the arguments (a direct
/// hit must write it as the preprocessor would have).
fn direct_mode(
    preprocess_args: &[OsString],
    compiler_identity: &[u8],
    assembler_identity: &[u8],
) -> Option<(DirectKey, Option<PathBuf>)> {
    let (output, args) = preprocess_args.split_last()?;
    debug_assert!(output.to_string_lossy().ends_with(".i"));
    let depfile = dependency_file(args).ok()?;
    Some((
        DirectKey::new(args, compiler_identity, assembler_identity),
        depfile,
    ))
}

/// The dependency file a preprocessing command writes: `-MF FILE` (which
/// [`step_args`] adds for `-MD`/`-MMD`) or Kbuild's `-Wp,-MD,FILE`. Err
/// for what is not followed here: other `-Wp,`/`-Xpreprocessor` options,
/// several files, or a dependency flag without a file.
fn dependency_file(args: &[OsString]) -> Result<Option<PathBuf>, ()> {
    let mut files = Vec::new();
    let mut wants = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        match a.as_ref() {
            "-MF" => files.push(PathBuf::from(args.get(i + 1).ok_or(())?)),
            "-MD" | "-MMD" => wants = true,
            "-Xpreprocessor" => return Err(()),
            _ if a.starts_with("-MF") => files.push(PathBuf::from(&a[3..])),
            _ if is_wp_dep_file(&a) => {
                files.push(PathBuf::from(a.splitn(3, ',').nth(2).ok_or(())?));
                wants = true;
            }
            _ if a.starts_with("-Wp,") => return Err(()),
            _ if TAKES_VALUE.contains(&a.as_ref()) => i += 1,
            _ => {}
        }
        i += 1;
    }
    match files.as_slice() {
        [] if !wants => Ok(None),
        [file] if wants => Ok(Some(file.clone())),
        _ => Err(()),
    }
}

/// A direct hit: the manifest stored under `key` still holds (every file
/// it names has the contents it had) and the cache has the assembly of
/// the preprocessed text it names. The dependency file is written as that
/// preprocessing wrote it.
fn direct_hit(
    cache: &CompileCache,
    key: &DirectKey,
    depfile: Option<&Path>,
) -> Result<Option<Assembly>, CcError> {
    let Some(manifest) = cache.manifest(key).filter(Manifest::still_holds) else {
        return Ok(None);
    };
    if depfile.is_some() != manifest.depfile.is_some() {
        return Ok(None);
    }
    let Some(entry) = cache.lookup(&manifest.key) else {
        return Ok(None);
    };
    if let (Some(path), Some(text)) = (depfile, &manifest.depfile) {
        std::fs::write(path, text).map_err(io_error(path))?;
    }
    show(&entry.diagnostics);
    Ok(Some(Assembly {
        path: entry.assembly,
        cached: Some((cache.clone(), manifest.key)),
        reused: true,
        direct: true,
        object: entry.object,
    }))
}

/// The arguments that compile `preprocessed` (the `-E` output of a C
/// input) to assembly in `out`: the common ones without the dependency
/// options (the `-E` step wrote the dependency file; a second writer would
/// list the `.i` alone), then `-x cpp-output` (`-fpreprocessed`: no second
/// preprocessing; `-D`, `-I` and `-include` have nothing left to do). None
/// for other languages and for debug info, which are compiled from the
/// source as before (with `-g3` the debug info records the macros, which
/// the `.i` no longer has).
fn preprocessed_step_args(
    inv: &Invocation,
    input: &Input,
    preprocessed: &Path,
    out: &Path,
) -> Option<Vec<OsString>> {
    let c = match input.x.as_ref().and_then(|x| x.to_str()) {
        Some(x) => x == "c",
        None => Path::new(&input.path).extension() == Some(OsStr::new("c")),
    };
    if !c || inv.debug() {
        return None;
    }
    let mut args: Vec<OsString> = common_args(inv, false, false)
        .into_iter()
        .filter(|a| !is_wp_dep_file(&a.to_string_lossy()))
        .collect();
    args.extend(["-x", "cpp-output", "-S"].map(OsString::from));
    args.push(preprocessed.as_os_str().into());
    args.push("-o".into());
    args.push(out.as_os_str().into());
    Some(args)
}

/// The invocation's arguments as the cache key sees them: all but the
/// output path and the dependency-file options (`-MD`, `-MMD`, `-MF`,
/// `-MT`, `-MQ`, `-MP`, and Kbuild's `-Wp,-MMD,FILE`). Neither changes the
/// generated code: where the object goes, and which file the preprocessor
/// lists the headers in (the preprocessed text they produced is in the key).
fn key_args(inv: &Invocation) -> Vec<OsString> {
    let mut out = Vec::with_capacity(inv.args.len());
    let mut skip = false;
    for (i, a) in inv.args.iter().enumerate() {
        let text = a.to_string_lossy();
        if std::mem::take(&mut skip) || inv.dep_flag[i] || is_wp_dep_file(&text) {
            continue;
        }
        if text == "-o" {
            skip = true;
        } else if !(text.starts_with("-o") && text.len() > 2) {
            out.push(a.clone());
        }
    }
    out
}

/// `-Wp,-MD,FILE` or `-Wp,-MMD,FILE` and nothing else.
fn is_wp_dep_file(arg: &str) -> bool {
    let mut parts = arg.split(',');
    parts.next() == Some("-Wp")
        && matches!(parts.next(), Some("-MD" | "-MMD"))
        && parts.next().is_some()
        && parts.next().is_none()
}

/// What a tool says of itself (`gcc -v`: version, target, configuration;
/// `as --version`), for the cache key.
fn identity(tool: &str, flag: &str) -> Result<Vec<u8>, CcError> {
    let out = Command::new(tool)
        .arg(flag)
        .output()
        .map_err(|e| CcError::Spawn {
            compiler: tool.into(),
            source: e,
        })?;
    let mut id = tool.as_bytes().to_vec();
    id.extend_from_slice(&out.stdout);
    id.extend_from_slice(&out.stderr);
    Ok(id)
}

fn assembler() -> String {
    std::env::var("AFTERBURN_AS").unwrap_or_else(|_| "as".into())
}

/// Prints the compiler's messages on our standard error.
fn show(messages: &[u8]) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(messages);
}

/// `--afterburn-no-pad`: the compiler's own objects. With a compile cache,
/// a single C-like input compiled to an object without debug info goes
/// through it (the object is then `as` of the cached assembly, which is
/// what the compiler driver itself does); everything else runs the
/// compiler unchanged.
fn run_unpadded(inv: &Invocation, opts: &DriverOptions) -> Result<i32, CcError> {
    let cacheable = opts.cache.is_some()
        && inv.mode == Mode::Compile
        && !inv.lto
        && !inv.debug()
        && inv.inputs.len() == 1
        && inv.inputs[0].lang == Lang::Compiled
        && inv.inputs[0].path != "-";
    if !cacheable {
        return spawn(opts, &inv.args);
    }
    let input = &inv.inputs[0];
    let out_path = match &inv.output {
        Some(o) => PathBuf::from(o),
        None => default_output(&input.path, "o"),
    };
    let tmp = temp_dir()?;
    let asm = match compiler_assembly(inv, input, &out_path, tmp.path(), 0, opts)? {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    let Some((cache, key)) = asm.cached else {
        return Err(CcError::Unsupported(
            "the compile cache gave no entry".into(),
        ));
    };
    let input_path = Path::new(&input.path);
    if let Some(object) = &asm.object {
        copy_into_place(object, &out_path)?;
        cache.log(&event("plain reused-object", asm.direct), input_path);
        return Ok(0);
    }
    let mut args = assembler_args(inv, false);
    args.push(asm.path.into_os_string());
    args.push("-o".into());
    args.push(out_path.as_os_str().into());
    let code = spawn_assembler(opts, &args)?;
    if code == 0 {
        cache
            .store_object(&key, &out_path)
            .map_err(io_error(&out_path))?;
        let what = if asm.reused {
            "plain reused-assembly"
        } else {
            "plain compiled"
        };
        cache.log(&event(what, asm.direct), input_path);
    }
    Ok(code)
}

/// A cache event's name (`padded reused-object`), with `+direct` when
/// the unit was not preprocessed (the direct mode).
fn event(what: &str, direct: bool) -> String {
    if direct {
        format!("{what}+direct")
    } else {
        what.to_string()
    }
}

/// Copies a stored object to the output under a temporary name and renames
/// it into place, as `as` does not: a build interrupted mid-copy leaves no
/// truncated object that `make` would take for a fresh one.
fn copy_into_place(from: &Path, to: &Path) -> Result<(), CcError> {
    let dir = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_error(to))?;
    let mut source = std::fs::File::open(from).map_err(io_error(from))?;
    std::io::copy(&mut source, &mut tmp).map_err(io_error(to))?;
    tmp.persist(to).map_err(|e| io_error(to)(e.error))?;
    Ok(())
}

fn temp_dir() -> Result<tempfile::TempDir, CcError> {
    tempfile::Builder::new()
        .prefix("afterburn-")
        .tempdir()
        .map_err(|e| CcError::Io {
            path: "temporary directory".into(),
            source: e,
        })
}

fn compile_one(
    inv: &Invocation,
    input: &Input,
    out_path: &Path,
    tmp: &Path,
    n: usize,
    opts: &DriverOptions,
) -> Result<i32, CcError> {
    let padded = tmp.join(format!("input{n}.afterburn.s"));
    let mut from_cache = None;
    let asm_source: PathBuf = match input.lang {
        Lang::Compiled => match compiler_assembly(inv, input, out_path, tmp, n, opts)? {
            Ok(asm) => {
                from_cache = asm.cached.map(|c| (c, asm.reused, asm.direct, asm.object));
                asm.path
            }
            Err(code) => return Ok(code),
        },
        Lang::AsmCpp => {
            let raw_asm = tmp.join(format!("input{n}.s"));
            let code = spawn(opts, &step_args(inv, input, out_path, "-E", &raw_asm))?;
            if code != 0 {
                return Ok(code);
            }
            raw_asm
        }
        Lang::Asm => PathBuf::from(&input.path),
        Lang::Linker => return Ok(0),
    };
    let text = std::fs::read(&asm_source).map_err(|e| CcError::Io {
        path: asm_source.display().to_string(),
        source: e,
    })?;
    // Whether the pass left the assembly as it was (no records at all).
    let mut unchanged = true;
    let output = match pass::run(&text, &opts.config) {
        Ok(o) => {
            unchanged = o.text == text;
            o
        }
        // `-S` through the driver, then `-c` of its output: padded once.
        Err(e) if e.is_already_processed() => pass::Output {
            text,
            ..pass::Output::default()
        },
        Err(e) => {
            let origin = if asm_source.as_os_str() == input.path.as_os_str() {
                String::new()
            } else {
                format!(
                    " (assembly generated from {})",
                    Path::new(&input.path).display()
                )
            };
            return Err(CcError::Pass(format!(
                "{}:{}: {}{origin}",
                asm_source.display(),
                e.line,
                e.message
            )));
        }
    };
    for w in &output.warnings {
        eprintln!(
            "{}:{}: warning: {}",
            asm_source.display(),
            w.line,
            w.message
        );
    }
    if opts.verbose {
        eprintln!(
            "afterburn cc: {}: {} sites, {} opted-out regions",
            Path::new(&input.path).display(),
            output.sites.len(),
            output.opt_out.len()
        );
    }
    if let Some(((cache, _), reused, direct, object)) = from_cache {
        let input_path = Path::new(&input.path);
        // The pass changed nothing (no sites, no records): the padded object
        // is `as` of the same assembly with the same options, which the
        // cache already holds from the plain build.
        if let (true, Some(object)) = (unchanged, object) {
            copy_into_place(&object, out_path)?;
            cache.log(&event("padded reused-object", direct), input_path);
            return Ok(0);
        }
        let what = if reused {
            "padded reused-assembly"
        } else {
            "padded compiled"
        };
        cache.log(&event(what, direct), input_path);
    }
    std::fs::write(&padded, &output.text).map_err(|e| CcError::Io {
        path: padded.display().to_string(),
        source: e,
    })?;
    // The assembler runs directly, not through the compiler driver: one
    // process fewer per file, which is most of what the driver adds to a
    // small file's compile time.
    let mut args = assembler_args(inv, input.lang != Lang::Compiled);
    args.push(padded.into_os_string());
    args.push("-o".into());
    args.push(out_path.as_os_str().into());
    spawn_assembler(opts, &args)
}

/// What the compiler driver would hand `as` for this invocation: the mode
/// (`--64`, `--32`, `--x32`), the `-Wa,` and `-Xassembler` options, and `-g`
/// for hand-written assembly compiled with debug info (the compiler's own
/// assembly already carries its debug directives: a `-g` would make `as`
/// add a second, conflicting line table).
fn assembler_args(inv: &Invocation, hand_written: bool) -> Vec<OsString> {
    let mut mode = "--64";
    let mut extra = Vec::new();
    let mut debug = false;
    let mut args = inv.args.iter();
    while let Some(a) = args.next() {
        let text = a.to_string_lossy();
        match text.as_ref() {
            "-m32" => mode = "--32",
            "-mx32" => mode = "--x32",
            "-m64" => mode = "--64",
            "-Xassembler" => extra.extend(args.next().cloned()),
            t if t.starts_with("-Wa,") => extra.extend(
                t["-Wa,".len()..]
                    .split(',')
                    .filter(|o| !o.is_empty())
                    .map(OsString::from),
            ),
            t if t.starts_with("-g") && t != "-g0" => debug = true,
            "-g0" => debug = false,
            _ => {}
        }
    }
    let mut out = vec![OsString::from(mode)];
    if debug && hand_written {
        out.push("-g".into());
    }
    out.extend(extra);
    out
}

fn spawn_assembler(opts: &DriverOptions, args: &[OsString]) -> Result<i32, CcError> {
    let assembler = assembler();
    if opts.verbose {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        eprintln!("afterburn cc: {assembler} {}", shown.join(" "));
    }
    let status = Command::new(&assembler)
        .args(args)
        .status()
        .map_err(|e| CcError::Spawn {
            compiler: assembler.clone(),
            source: e,
        })?;
    Ok(status.code().unwrap_or(1))
}

/// Runs `tool` with its standard error captured: its exit code and what it
/// printed there.
fn spawn_captured(
    opts: &DriverOptions,
    tool: &str,
    args: &[OsString],
) -> Result<(i32, Vec<u8>), CcError> {
    if opts.verbose {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        eprintln!("afterburn cc: {tool} {}", shown.join(" "));
    }
    let out = Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| CcError::Spawn {
            compiler: tool.into(),
            source: e,
        })?;
    // Compilers write nothing on standard output with `-o`; pass on
    // anything that is there.
    {
        use std::io::Write;
        let _ = std::io::stdout().write_all(&out.stdout);
    }
    Ok((out.status.code().unwrap_or(1), out.stderr))
}

fn spawn(opts: &DriverOptions, args: &[OsString]) -> Result<i32, CcError> {
    if opts.verbose {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        eprintln!("afterburn cc: {} {}", opts.compiler, shown.join(" "));
    }
    let status = Command::new(&opts.compiler)
        .args(args)
        .status()
        .map_err(|e| CcError::Spawn {
            compiler: opts.compiler.clone(),
            source: e,
        })?;
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assembler_gets_what_the_driver_would_give_it() {
        let args = |a: &[&str], hand_written| {
            assembler_args(&inv(a), hand_written)
                .into_iter()
                .map(|o| o.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(args(&["-c", "a.c", "-O2"], false), ["--64"]);
        assert_eq!(args(&["-m32", "-c", "a.c"], false), ["--32"]);
        assert_eq!(
            args(
                &[
                    "-Wa,--noexecstack,-al",
                    "-Xassembler",
                    "--gdwarf-5",
                    "-c",
                    "a.c"
                ],
                false
            ),
            ["--64", "--noexecstack", "-al", "--gdwarf-5"]
        );
        // Debug info: the compiler's assembly has it; hand-written needs -g.
        assert_eq!(args(&["-g", "-c", "a.c"], false), ["--64"]);
        assert_eq!(args(&["-g", "-c", "a.S"], true), ["--64", "-g"]);
        assert_eq!(args(&["-g", "-g0", "-c", "a.S"], true), ["--64"]);
    }

    fn inv(args: &[&str]) -> Invocation {
        parse_args(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn modes() {
        assert_eq!(inv(&["-c", "a.c"]).mode, Mode::Compile);
        assert_eq!(inv(&["-S", "a.c", "-o", "a.s"]).mode, Mode::Assembly);
        assert_eq!(inv(&["a.o", "b.o", "-o", "prog"]).mode, Mode::PassThrough);
        assert_eq!(inv(&["a.c", "b.o", "-o", "prog"]).mode, Mode::Link);
        assert_eq!(inv(&["-E", "a.c"]).mode, Mode::PassThrough);
        assert_eq!(inv(&["-M", "a.c"]).mode, Mode::PassThrough);
        assert_eq!(inv(&["--version"]).mode, Mode::PassThrough);
    }

    #[test]
    fn inputs_and_languages() {
        let i = inv(&[
            "-c", "-I", "inc.c", "-o", "x.o", "-x", "c", "foo.txt", "-x", "none", "b.S", "-DX=1",
        ]);
        let langs: Vec<_> = i
            .inputs
            .iter()
            .map(|i| (i.path.to_string_lossy().into_owned(), i.lang))
            .collect();
        assert_eq!(
            langs,
            vec![
                ("foo.txt".into(), Lang::Compiled),
                ("b.S".into(), Lang::AsmCpp)
            ]
        );
        assert_eq!(i.output, Some(OsString::from("x.o")));
        let common = common_args(&i, true, false);
        assert_eq!(
            common,
            vec![OsString::from("-I"), "inc.c".into(), "-DX=1".into()]
        );
    }

    #[test]
    fn the_cache_key_leaves_out_the_output_and_dependency_files_only() {
        let key = |a: &[&str]| {
            key_args(&inv(a))
                .into_iter()
                .map(|o| o.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            key(&["-O2", "-Wp,-MMD,k/.a.o.d", "-c", "a.c", "-o", "k/a.o"]),
            ["-O2", "-c", "a.c"]
        );
        assert_eq!(
            key(&["-MD", "-MF", "x.d", "-MQ", "t", "-c", "a.c", "-oa.o"]),
            ["-c", "a.c"]
        );
        // -Wp with more than the dependency file stays.
        assert_eq!(
            key(&["-Wp,-MMD,x.d,-DY", "-c", "a.c"]),
            ["-Wp,-MMD,x.d,-DY", "-c", "a.c"]
        );
        assert!(!is_wp_dep_file("-Wp,-MMD"));
        assert!(is_wp_dep_file("-Wp,-MD,a.d"));
    }

    #[test]
    fn dependency_flags_are_separated() {
        let i = inv(&["-c", "-MD", "-MF", "x.d", "-MP", "a.c", "-O2", "-g"]);
        assert!(i.dep_file_flag && i.has_mf && !i.has_mt);
        assert_eq!(common_args(&i, false, true), vec![OsString::from("-O2")]);
        assert_eq!(
            default_dep_file(
                &inv(&["-c", "-MD", "a.c", "-o", "out/a.o"]),
                OsStr::new("a.c"),
                Path::new("out/a.o")
            ),
            PathBuf::from("out/a.d")
        );
        assert_eq!(
            default_output(OsStr::new("src/a.c"), "o"),
            PathBuf::from("a.o")
        );
    }
}
