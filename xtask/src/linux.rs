//! `cargo xtask linux`: Debian's Linux 6.1 built twice, plain (gcc) and
//! pre-virtualized (`CC="afterburn cc"`), from the same source and config,
//! both booted bare under QEMU with the same initramfs, and their consoles
//! compared after a short, named filter (docs/linux.md).
//!
//! Everything comes from Debian packages (apt-get, as `setup` does): the
//! source tarball, a static busybox, the kernel build's host tools. Builds
//! are cached under `target/linux/`, keyed by the source package's version,
//! the config fragment and (padded) the site sizes and the afterburner
//! sources that shape what `afterburn cc` writes.
//!
//! Both builds go through `afterburn cc` and one compile cache: the plain
//! one with `--afterburn-no-pad` (the compiler's own objects, the cache
//! filled), the padded one reusing the compiler's assembly for every
//! translation unit the two share and the plain object for every one the
//! pass leaves unchanged (docs/linux.md, "The test's cost").

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fingerprint::Fingerprint;
use crate::{paths, qemu, setup, tasks};

/// Debian's source package and the tarball it installs.
const SOURCE_PACKAGE: &str = "linux-source-6.1";
const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
/// The folder the tarball unpacks to.
const SOURCE_TOP: &str = "linux-source-6.1";
const BUSYBOX: &str = "/bin/busybox";

/// Debian packages the build and the initramfs need, with what for.
const PACKAGES: &[(&str, &str)] = &[
    (SOURCE_PACKAGE, "the kernel source"),
    ("busybox-static", "the initramfs's static busybox"),
    ("gcc", "the compiler"),
    ("make", "Kbuild"),
    ("flex", "Kconfig's lexer"),
    ("bison", "Kconfig's parser"),
    ("bc", "Kbuild's generated timer constants"),
    ("libelf-dev", "objtool"),
    (
        "libssl-dev",
        "the kernel's host tools (sign-file, extract-cert)",
    ),
    ("xz-utils", "unpacking the source tarball"),
    ("lz4", "compressing the bzImage's payload"),
];

/// The kernel's command line for both boots: the console on COM1
/// (earlyprintk for crashes before the 8250 driver), no APICs (the PIT
/// through the 8259 is the timer, as on seL4 next), no HPET, and a panic
/// ends the run at once. The rest keeps the console's order deterministic:
/// the initramfs unpacked synchronously, and no PS/2 mouse, whose probe
/// prints from a work queue at any time.
pub const CMDLINE: &str = "console=ttyS0 earlyprintk=serial nolapic noapic hpet=disable \
                           mitigations=off printk.time=0 panic=-1 initramfs_async=0 i8042.noaux";

/// The last line `/init` prints before `reboot -f`.
pub const DONE: &str = "init: done";

const QEMU_TIMEOUT: Duration = Duration::from_secs(120);
pub const MEMORY_MIB: u32 = 128;

/// Which of the two kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Plain,
    Padded,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Padded => "padded",
        }
    }
}

/// One built kernel.
#[derive(Debug, Clone)]
pub struct Build {
    pub variant: Variant,
    pub bzimage: PathBuf,
    pub vmlinux: PathBuf,
    /// The final `.config`.
    pub config: PathBuf,
    /// The compile cache both builds go through (the plain build's).
    pub cache: PathBuf,
    /// What this run's build cost, when it built it (not cached).
    pub cost: Option<Cost>,
    /// The build's make output (kept with the cached build).
    pub log: PathBuf,
}

/// What one build cost: every make step's wall and CPU time, and how its
/// translation units went through the compile cache.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    pub wall: f64,
    /// User + system time of make and everything it ran.
    pub cpu: f64,
    pub cache: CacheUse,
}

/// How the C translation units of one build used the compile cache (from
/// its `events` log, docs/afterburner.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheUse {
    /// The compiler ran (`-S`): the cache did not have the unit.
    pub compiled: usize,
    /// The compiler's assembly was reused (and padded).
    pub reused_assembly: usize,
    /// The plain object was reused (the pass changed nothing).
    pub reused_object: usize,
    /// Of the reused units, those not preprocessed either (the direct
    /// mode: every file the unit read was as it had been).
    pub direct: usize,
}

impl CacheUse {
    /// Counts one variant's events (`plain compiled foo.c`, ...).
    fn of(events: &str, variant: Variant) -> CacheUse {
        let mut u = CacheUse::default();
        for line in events.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some(variant.name()) {
                continue;
            }
            let kind = words.next().unwrap_or_default();
            let (kind, direct) = match kind.strip_suffix("+direct") {
                Some(k) => (k, true),
                None => (kind, false),
            };
            u.direct += usize::from(direct);
            match Some(kind) {
                Some("compiled") => u.compiled += 1,
                Some("reused-assembly") => u.reused_assembly += 1,
                Some("reused-object") => u.reused_object += 1,
                _ => {}
            }
        }
        u
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.cache;
        write!(
            f,
            "{:.0} s wall, {:.0} s CPU; C units: {} compiled, {} assembly reused, {} object reused, {} of them not preprocessed",
            self.wall, self.cpu, c.compiled, c.reused_assembly, c.reused_object, c.direct
        )
    }
}

/// Both kernels and the initramfs.
pub struct Kernels {
    pub plain: Build,
    pub padded: Build,
    pub initramfs: PathBuf,
}

/// `cargo xtask linux`: build (or reuse) both, boot both, compare.
pub fn linux() -> Result<(), String> {
    let kernels = build_all()?;
    for b in [&kernels.plain, &kernels.padded] {
        match &b.cost {
            Some(c) => println!("xtask: linux ({}): {BUILT} {c}", b.variant.name()),
            None => println!("xtask: linux ({}): cached", b.variant.name()),
        }
    }
    let audit = audit(&kernels)?;
    print!("{}", audit.text);
    println!(
        "xtask: linux: the audit is {}",
        if audit.clean { "clean" } else { "not clean" }
    );
    if !audit.sites_sound {
        return Err("the padded vmlinux has broken sites (above)".into());
    }
    if !audit.records_placed {
        return Err("the linker placed the .afterburn records as an orphan section (above)".into());
    }
    let (plain, padded) = boot_both(&kernels)?;
    let summary = compare(&plain, &padded)?;
    println!("xtask: linux: {summary}");
    Ok(())
}

/// What `afterburn audit` finds in the padded vmlinux, and the numbers
/// docs/linux.md reports.
pub struct Audit {
    pub clean: bool,
    /// Every violation is an uncovered instruction (hidden from the text
    /// pass): no site is broken, overlaps or points outside code.
    pub sites_sound: bool,
    /// The linker placed the records by the kernel's own script (no orphan
    /// warning names them).
    pub records_placed: bool,
    pub sites: usize,
    /// A readable summary, a line per fact.
    pub text: String,
}

fn parse_elf(path: &Path) -> Result<afterburner::elf::ElfImage, String> {
    afterburner::elf::ElfImage::parse(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

/// Counts `items` by key, most frequent first.
fn tally<K: Ord + Clone>(items: impl Iterator<Item = K>) -> Vec<(K, usize)> {
    let mut map = std::collections::BTreeMap::new();
    for k in items {
        *map.entry(k).or_insert(0usize) += 1;
    }
    let mut v: Vec<(K, usize)> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn joined<K: std::fmt::Display>(v: &[(K, usize)]) -> String {
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Audits the padded vmlinux (in process, the library `afterburn audit`
/// runs) and compares its `.text` with the plain one's.
pub fn audit(k: &Kernels) -> Result<Audit, String> {
    use afterburner::format::Kind;
    let started = Instant::now();
    let padded = parse_elf(&k.padded.vmlinux)?;
    let report = afterburner::audit::audit(&padded);
    let seconds = started.elapsed().as_secs_f64();
    let plain = parse_elf(&k.plain.vmlinux)?;
    // Linux's `.text` is a fixed 2 MiB multiple, the gaps between
    // functions and up to its end filled with int3 (and a few sections
    // placed at its end): the code is its bytes other than int3.
    let text_size = |image: &afterburner::elf::ElfImage| {
        image
            .code
            .iter()
            .find(|c| c.name == ".text")
            .map_or(0, |c| c.data.iter().filter(|b| **b != 0xcc).count())
    };
    let (a, b) = (text_size(&plain), text_size(&padded));
    let kinds = tally(
        padded
            .records
            .iter()
            .filter(|r| r.record.is_site())
            .map(|r| Kind::from_number(r.record.kind).map_or("?", Kind::name)),
    );
    let sites: usize = kinds.iter().map(|(_, n)| n).sum();
    let padding: u64 = padded
        .records
        .iter()
        .filter(|r| r.record.is_site())
        .map(|r| {
            let rec = r.record;
            let body = u64::from(rec.insn_len)
                + if rec.flags & afterburner::format::FLAG_SHADOW_PAIR != 0 {
                    u64::from(rec.pair_len)
                } else {
                    0
                };
            u64::from(rec.site_len).saturating_sub(body)
        })
        .sum();
    let mut text = format!(
        "xtask: linux: {sites} sites in vmlinux by kind: {}\n",
        joined(&kinds)
    );
    text.push_str(&format!(
        "xtask: linux: .text code (bytes other than int3) {a} plain, {b} padded (+{:.2}%); {padding} bytes of NOPs in sites, {} records\n",
        (b as f64 - a as f64) * 100.0 / a.max(1) as f64,
        padded.records.len()
    ));
    text.push_str(&format!(
        "xtask: linux: afterburn audit of the padded vmlinux: {:.1} s, {} instructions, {} deliberate traps without a site, {} violations\n",
        seconds,
        report.instructions,
        report.traps_without_site,
        report.violations.len()
    ));
    let rules = tally(report.violations.iter().map(|v| v.rule.name()));
    if !rules.is_empty() {
        text.push_str(&format!(
            "xtask: linux: violations by rule: {}\n",
            joined(&rules)
        ));
        let uncovered = tally(
            report
                .violations
                .iter()
                .filter(|v| v.rule == afterburner::audit::Rule::Uncovered)
                .map(|v| {
                    format!(
                        "{} in {}",
                        v.disassembly.split_whitespace().next().unwrap_or("?"),
                        v.section
                    )
                }),
        );
        text.push_str(&format!(
            "xtask: linux: uncovered: {}\n",
            joined(&uncovered)
        ));
        let log = linux_dir().join("audit.txt");
        write(&log, report.to_text().as_bytes())?;
        text.push_str(&format!(
            "xtask: linux: the whole report: {}\n",
            log.display()
        ));
    }
    let orphans = orphan_warnings(&k.padded)?;
    let records_orphaned = orphans.iter().filter(|l| l.contains("afterburn")).count();
    text.push_str(&format!(
        "xtask: linux: orphan-section warnings in the padded build: {} ({records_orphaned} about the records)\n",
        orphans.len()
    ));
    let sites_sound = report.violations.iter().all(|v| {
        matches!(
            v.rule,
            afterburner::audit::Rule::Uncovered | afterburner::audit::Rule::UncoveredAlternative
        )
    });
    Ok(Audit {
        clean: report.is_clean(),
        sites_sound,
        records_placed: records_orphaned == 0,
        sites,
        text,
    })
}

/// The linker's orphan-section warnings in a build's log (Linux links with
/// `--orphan-handling=warn`): one line each.
fn orphan_warnings(build: &Build) -> Result<Vec<String>, String> {
    let log = String::from_utf8_lossy(&read(&build.log)?).into_owned();
    Ok(log
        .lines()
        .filter(|l| l.contains("orphan section"))
        .map(str::to_string)
        .collect())
}

/// The suite's test: what `cargo xtask linux` does, as one result.
pub const TEST_NAME: &str =
    "linux: Linux 6.1 plain and through afterburn cc boot bare to the end of /init, consoles equal, every site sound; the VMM's Linux loader prepares both; the wedge decodes and rewrites every site";

pub fn test() -> Result<String, String> {
    let kernels = build_all()?;
    let audit = audit(&kernels)?;
    if !audit.sites_sound {
        return Err(format!(
            "the audit of the padded vmlinux finds broken sites:\n{}",
            audit.text
        ));
    }
    if !audit.records_placed {
        return Err(format!(
            "the linker placed the .afterburn records as an orphan section:\n{}",
            audit.text
        ));
    }
    let (plain, padded) = boot_both(&kernels)?;
    let mut summary = compare(&plain, &padded)?;
    summary.push_str(&loader_check(&kernels)?);
    summary.push_str(&wedge_check(&kernels)?);
    summary.push_str(&format!(
        "; {} sites, every one sound, placed among the kernel's notes",
        audit.sites
    ));
    for b in [&kernels.plain, &kernels.padded] {
        if let Some(c) = &b.cost {
            summary.push_str(&format!("; {} build: {c}", b.variant.name()));
        }
    }
    Ok(summary)
}

/// The VMM's Linux loader (`vmm_core::linux_boot`, docs/linux.md) on the
/// two kernels just built: its tests that need a real vmlinux, which the
/// host tests leave out (they would need these builds), run on them. They
/// check the entry against `startup_64`, the zero page, the initrd and the
/// padded kernel's records at their physical address.
fn loader_check(k: &Kernels) -> Result<String, String> {
    let mut cmd = Command::new(paths::cargo());
    cmd.args([
        "test",
        "-q",
        "-p",
        "vmm-core",
        "--lib",
        "real_",
        "--",
        "--ignored",
    ])
    .env("PREVIRT_VMLINUX", &k.padded.vmlinux)
    .env("PREVIRT_PLAIN_VMLINUX", &k.plain.vmlinux)
    .current_dir(paths::root());
    let out = crate::process::run(&mut cmd, "the VMM's Linux loader on the built kernels")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains("2 passed") {
        return Err(format!(
            "the VMM's Linux loader tests did not both run on the built kernels:\n{}",
            crate::process::tail(&stdout, 20)
        ));
    }
    Ok("; the VMM's Linux loader prepares both (vmm-core's real_ tests)".into())
}

/// The wedge's core on the padded kernel (`wedge-l4/tests/linux_sites.rs`,
/// ignored in the host tests for want of a build): every site decodes with
/// the wedge's decoder, by kind (a kind it cannot decode fails the test,
/// naming it), the whole kernel's code rewrites, and what Linux's
/// alternatives copy over the rewritten code is handled. The table of
/// sites by kind goes to `target/linux/wedge-sites.txt`, the alternatives'
/// to `target/linux/alternatives.txt`.
fn wedge_check(k: &Kernels) -> Result<String, String> {
    let mut cmd = Command::new(paths::cargo());
    cmd.args([
        "test",
        "-q",
        "-p",
        "wedge-l4",
        "--test",
        "linux_sites",
        "--",
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env("PREVIRT_VMLINUX", &k.padded.vmlinux)
    .current_dir(paths::root());
    let out = crate::process::run(&mut cmd, "the wedge on the padded kernel's sites")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains("3 passed") {
        return Err(format!(
            "the wedge's three Linux tests did not all run and pass on the padded kernel:\n{}",
            crate::process::tail(&stdout, 20)
        ));
    }
    // `-q` prints a dot per test, which can start a printed line.
    let table: String = stdout
        .lines()
        .map(|l| l.trim_start_matches('.'))
        .filter(|l| l.starts_with('|') || l.contains(" sites of "))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = paths::target().join("linux/wedge-sites.txt");
    std::fs::write(&path, &table).map_err(|e| format!("{}: {e}", path.display()))?;
    let alternatives: String = stdout
        .lines()
        .filter_map(|l| l.trim_start_matches('.').strip_prefix("alt "))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = paths::target().join("linux/alternatives.txt");
    std::fs::write(&path, &alternatives).map_err(|e| format!("{}: {e}", path.display()))?;
    let copied = alternatives
        .lines()
        .next()
        .and_then(|l| l.split_once(": "))
        .map_or("", |(_, r)| r);
    let counted = stdout
        .lines()
        .find_map(|l| {
            l.split_once(": ")
                .map(|(_, r)| r)
                .filter(|r| r.contains(" sites of "))
        })
        .unwrap_or("its sites");
    Ok(format!(
        "; the wedge decodes and rewrites {counted}; alternatives: {copied}"
    ))
}

/// Installs what is missing, unpacks the source, builds both kernels and
/// the initramfs (each only when its inputs changed).
pub fn build_all() -> Result<Kernels, String> {
    build_with(&prepare()?)
}

/// What a build needs before it starts, and what must not run beside the
/// suite's own steps: the Debian packages (apt-get holds dpkg's lock) and
/// `afterburn` (cargo holds the target folder's lock). Returns `afterburn`.
pub fn prepare() -> Result<PathBuf, String> {
    ensure_packages()?;
    tasks::build_afterburn()
}

/// `cargo xtask linux --build-only`: both kernels and the initramfs, built
/// or found built, with what each build cost; what the suite runs in the
/// background (test.rs), its output in a log.
pub fn build_only(afterburn: Option<&Path>) -> Result<(), String> {
    crate::background::watch_parent();
    let afterburn = match afterburn {
        Some(a) => a.to_path_buf(),
        None => prepare()?,
    };
    let kernels = build_with(&afterburn)?;
    for b in [&kernels.plain, &kernels.padded] {
        match &b.cost {
            Some(c) => println!("xtask: linux ({}): {BUILT} {c}", b.variant.name()),
            None => println!("xtask: linux ({}): cached", b.variant.name()),
        }
    }
    Ok(())
}

/// What `build_only` prints before a build's cost.
pub const BUILT: &str = "built:";

/// [`build_all`] with `afterburn` already built.
pub fn build_with(afterburn: &Path) -> Result<Kernels, String> {
    let afterburn = afterburn.to_path_buf();
    let (version, source) = unpack_source()?;
    let fragment_path = paths::root().join("images/linux/config.fragment");
    let fragment = read(&fragment_path)?;
    let plain = build(
        Variant::Plain,
        &version,
        &source,
        &fragment,
        &afterburn,
        None,
    )?;
    let padded = build(
        Variant::Padded,
        &version,
        &source,
        &fragment,
        &afterburn,
        Some(&plain),
    )?;
    // The padded build took the plain one's config; Kconfig, which probes
    // the compiler through `afterburn cc`, must have kept it as it was.
    if read(&plain.config)? != read(&padded.config)? {
        return Err(format!(
            "linux: the two kernels' configs differ ({} and {})",
            plain.config.display(),
            padded.config.display()
        ));
    }
    let initramfs = build_initramfs()?;
    Ok(Kernels {
        plain,
        padded,
        initramfs,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .filter(|(p, _)| !dpkg_installed(p))
        .map(|(p, _)| *p)
        .collect()
}

fn ensure_packages() -> Result<(), String> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = PACKAGES
        .iter()
        .filter(|(p, _)| missing.contains(p))
        .map(|(_, what)| *what)
        .collect();
    setup::install(&names, &missing, missing_packages)
}

/// The source package's version, e.g. `6.1.192-3`.
fn source_version() -> Result<String, String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", SOURCE_PACKAGE])
        .output()
        .map_err(|e| format!("dpkg-query: {e}"))?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if v.is_empty() {
        return Err(format!("{SOURCE_PACKAGE} is not installed"));
    }
    Ok(v)
}

fn linux_dir() -> PathBuf {
    paths::target().join("linux")
}

/// Unpacks the tarball once per package version under `target/linux/`.
fn unpack_source() -> Result<(String, PathBuf), String> {
    let version = source_version()?;
    let dest = linux_dir().join(format!("src-{version}"));
    if dest.join("Makefile").is_file() {
        return Ok((version, dest));
    }
    let partial = linux_dir().join(format!("src-{version}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    println!("xtask: linux: unpacking {SOURCE_TARBALL} ({version})");
    let status = Command::new("tar")
        .args(["-xf", SOURCE_TARBALL, "-C"])
        .arg(&partial)
        .status()
        .map_err(|e| format!("tar: {e}"))?;
    if !status.success() {
        return Err(format!("unpacking {SOURCE_TARBALL} failed ({status})"));
    }
    std::fs::rename(partial.join(SOURCE_TOP), &dest)
        .map_err(|e| format!("{} -> {}: {e}", partial.display(), dest.display()))?;
    let _ = std::fs::remove_dir_all(&partial);
    Ok((version, dest))
}

/// The driver's sources, through which both builds go: part of both
/// builds' keys.
const DRIVER_SOURCES: &[&str] = &[
    "afterburner/src/cc.rs",
    "afterburner/src/compile_cache.rs",
    "afterburner/src/sha256.rs",
];

/// The rest of the afterburner's sources that decide what `afterburn cc`
/// makes of a file (the pass and what it reads, the record format): part
/// of the padded build's key. The audit and the CLI's other commands are
/// left out, so changing them does not rebuild Linux.
const AFTERBURN_SOURCES: &[&str] = &[
    "afterburner/src/pass.rs",
    "afterburner/src/lexer.rs",
    "afterburner/src/sensitive.rs",
    "afterburner/src/io.rs",
    "afterburner/format/src/lib.rs",
];

/// The cache key of one build: what its result depends on.
fn build_key(variant: Variant, version: &str, fragment: &[u8]) -> Result<String, String> {
    let mut f = Fingerprint::new();
    f.add("variant", variant.name().as_bytes());
    f.add("source", version.as_bytes());
    f.add("fragment", fragment);
    f.add("make", MAKE_ENV.concat().as_bytes());
    for file in DRIVER_SOURCES {
        f.add(file, &read(&paths::root().join(file))?);
    }
    if variant == Variant::Padded {
        f.add("site sizes", SITE_SIZES.as_bytes());
        for file in AFTERBURN_SOURCES {
            f.add(file, &read(&paths::root().join(file))?);
        }
    }
    Ok(f.hex())
}

/// The afterburner's per-kind choice for Linux (docs/linux.md): `int3`
/// without a site. Linux emulates a 5-byte call from an `int3` (text
/// poking, static calls, its boot self-test) and returns to int3 + 5, which
/// padding would move into a NOP; a deliberate trap is reflected wherever
/// it is, so it needs no site.
pub const SITE_SIZES: &str = "int3=none";

/// Fixed build identity, so both kernels print the same `Linux version`.
const MAKE_ENV: &[&str] = &[
    "KBUILD_BUILD_TIMESTAMP=2026-01-01",
    "KBUILD_BUILD_USER=previrt",
    "KBUILD_BUILD_HOST=previrt",
    "KBUILD_BUILD_VERSION=1",
];

/// Builds one kernel (or finds it built). The plain build configures
/// (tinyconfig, the fragment, olddefconfig) and fills the compile cache;
/// the padded one takes the plain build's `.config` and cache.
fn build(
    variant: Variant,
    version: &str,
    source: &Path,
    fragment: &[u8],
    afterburn: &Path,
    plain: Option<&Build>,
) -> Result<Build, String> {
    let key = build_key(variant, version, fragment)?;
    let dir = linux_dir().join(format!("{}-{key}", variant.name()));
    let obj = dir.join("obj");
    let result = Build {
        variant,
        bzimage: obj.join("arch/x86/boot/bzImage"),
        vmlinux: obj.join("vmlinux"),
        config: obj.join(".config"),
        cache: plain.map_or_else(|| dir.join("cc-cache"), |p| p.cache.clone()),
        cost: None,
        log: dir.join("build.log"),
    };
    let stamp = dir.join("built");
    if stamp.is_file() && result.bzimage.is_file() {
        return Ok(result);
    }
    // Older builds of this variant are stale: they take a few hundred MB.
    remove_others(variant, &dir);
    std::fs::create_dir_all(&obj).map_err(|e| format!("{}: {e}", obj.display()))?;
    std::fs::create_dir_all(&result.cache)
        .map_err(|e| format!("{}: {e}", result.cache.display()))?;
    let log = result.log.clone();
    // A log of one build only: its warnings are judged.
    let _ = std::fs::remove_file(&log);
    let cc = match variant {
        Variant::Plain => format!("{} cc --afterburn-no-pad", afterburn.display()),
        Variant::Padded => format!("{} cc", afterburn.display()),
    };
    let events = result.cache.join("events");
    let events_before = std::fs::metadata(&events).map_or(0, |m| m.len() as usize);
    let mut cost = Cost::default();
    let mut make = |targets: &[&str], what: &str| -> Result<(), String> {
        println!(
            "xtask: linux ({}): {what} (log: {})",
            variant.name(),
            log.display()
        );
        let started = Instant::now();
        let cpu_before = crate::cpu::children_seconds();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err_file = log_file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new("make");
        if variant == Variant::Padded {
            cmd.env("AFTERBURN_SITE_SIZE", SITE_SIZES);
        }
        let mut child = cmd
            .env("AFTERBURN_CACHE", &result.cache)
            .arg("-C")
            .arg(source)
            .arg(format!("O={}", obj.display()))
            .arg(format!("CC={cc}"))
            .args(MAKE_ENV)
            .arg(format!("-j{}", make_jobs()))
            .args(targets)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("make: {e}"))?;
        // A line a minute on a long step, from the cache's events log: how
        // far the compile has got, for whoever waits for it.
        let mut next_report = PROGRESS_EVERY;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| format!("make: {e}"))? {
                break status;
            }
            std::thread::sleep(Duration::from_millis(500));
            if started.elapsed() >= next_report {
                next_report += PROGRESS_EVERY;
                let units = std::fs::read(&events)
                    .ok()
                    .and_then(|e| {
                        e.get(events_before..)
                            .map(|e| e.split(|&b| b == b'\n').count() - 1)
                    })
                    .unwrap_or(0);
                println!(
                    "xtask: linux ({}): {what}: {:.0} s, {units} C units through the compile cache so far",
                    variant.name(),
                    started.elapsed().as_secs_f64()
                );
            }
        };
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "linux ({}): {what} failed ({status}); the end of {}:\n{}",
                variant.name(),
                log.display(),
                crate::process::tail(&text, 25)
            ));
        }
        let secs = started.elapsed().as_secs_f64();
        // CPU time says what the build costs whatever else the machine runs.
        let cpu = match (cpu_before, crate::cpu::children_seconds()) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        };
        cost.wall += secs;
        cost.cpu += cpu;
        println!(
            "xtask: linux ({}): {what}: {secs:.0} s, {cpu:.0} s of CPU",
            variant.name()
        );
        Ok(())
    };
    let fragment_text = String::from_utf8_lossy(fragment);
    match plain {
        None => {
            make(&["tinyconfig"], "make tinyconfig")?;
            let config = String::from_utf8_lossy(&read(&result.config)?).into_owned();
            write(
                &result.config,
                merge_config(&config, &fragment_text).as_bytes(),
            )?;
            make(
                &["olddefconfig"],
                "make olddefconfig (the fragment over tinyconfig)",
            )?;
        }
        // The same source, fragment and compiler: the same config, which
        // `make bzImage` syncs (and the caller checks it kept).
        Some(p) => {
            std::fs::copy(&p.config, &result.config).map_err(|e| {
                format!("{} -> {}: {e}", p.config.display(), result.config.display())
            })?;
        }
    }
    let config = String::from_utf8_lossy(&read(&result.config)?).into_owned();
    let unmet = unmet_settings(&config, &fragment_text);
    if !unmet.is_empty() {
        return Err(format!(
            "linux ({}): Kconfig did not take these fragment settings (a dependency is missing): {}",
            variant.name(),
            unmet.join(", ")
        ));
    }
    make(&["bzImage"], &format!("make -j{} bzImage", make_jobs()))?;
    let all_events = std::fs::read(&events).unwrap_or_default();
    cost.cache = CacheUse::of(
        &String::from_utf8_lossy(all_events.get(events_before..).unwrap_or_default()),
        variant,
    );
    write(&stamp, format!("{cost}\n").as_bytes())?;
    Ok(Build {
        cost: Some(cost),
        ..result
    })
}

/// How often a long make step says how far it has got.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// `make -j`: a job per core (Kbuild's jobs are compilers, CPU-bound).
fn make_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn remove_others(variant: Variant, keep: &Path) {
    let prefix = format!("{}-", variant.name());
    let Ok(entries) = std::fs::read_dir(linux_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && e.path() != keep {
            println!(
                "xtask: linux: removing the stale build {}",
                e.path().display()
            );
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A config line's setting: (`CONFIG_X`, `Some(value)` or `None` for "is
/// not set"); other lines give nothing.
fn setting(line: &str) -> Option<(&str, Option<&str>)> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("# ") {
        let name = rest.strip_suffix(" is not set")?;
        return name.starts_with("CONFIG_").then_some((name, None));
    }
    let (name, value) = line.split_once('=')?;
    name.starts_with("CONFIG_").then_some((name, Some(value)))
}

/// `config` with every setting of `fragment` replacing its own.
fn merge_config(config: &str, fragment: &str) -> String {
    let ours: Vec<(&str, Option<&str>)> = fragment.lines().filter_map(setting).collect();
    let mut out = String::new();
    for line in config.lines() {
        let overridden = setting(line).is_some_and(|(n, _)| ours.iter().any(|(o, _)| *o == n));
        if !overridden {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (name, value) in ours {
        match value {
            Some(v) => out.push_str(&format!("{name}={v}\n")),
            None => out.push_str(&format!("# {name} is not set\n")),
        }
    }
    out
}

/// The fragment's settings the final config does not have.
fn unmet_settings(config: &str, fragment: &str) -> Vec<String> {
    let have: Vec<(&str, Option<&str>)> = config.lines().filter_map(setting).collect();
    fragment
        .lines()
        .filter_map(setting)
        .filter(|(name, want)| {
            let got = have.iter().find(|(n, _)| n == name).and_then(|(_, v)| *v);
            // "is not set" and absent are the same to Kconfig.
            got != *want
        })
        .map(|(name, want)| format!("{name}={}", want.unwrap_or("n")))
        .collect()
}

/// One file of a newc cpio archive.
struct CpioEntry<'a> {
    name: &'a str,
    mode: u32,
    /// For device nodes: (major, minor).
    rdev: (u32, u32),
    data: &'a [u8],
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An uncompressed `newc` cpio archive (what the kernel unpacks as an
/// initramfs): a header of 13 eight-digit hex fields per entry, the name
/// and the data each padded to 4 bytes, and a `TRAILER!!!` entry.
fn cpio(entries: &[CpioEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let pad = |out: &mut Vec<u8>| {
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    let trailer = CpioEntry {
        name: "TRAILER!!!",
        mode: 0,
        rdev: (0, 0),
        data: &[],
    };
    for (ino, e) in entries.iter().chain([&trailer]).enumerate() {
        let fields = [
            ino as u32 + 1,
            e.mode,
            0,
            0,
            if e.mode & S_IFDIR == S_IFDIR { 2 } else { 1 },
            0,
            e.data.len() as u32,
            0,
            0,
            e.rdev.0,
            e.rdev.1,
            e.name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(e.name.as_bytes());
        out.push(0);
        pad(&mut out);
        out.extend_from_slice(e.data);
        pad(&mut out);
    }
    out
}

/// `/bin/tsc` (images/linux/tsc.c), built with the host's gcc: static, no C
/// library, so it runs in the initramfs with nothing else.
fn build_tsc() -> Result<Vec<u8>, String> {
    let source = paths::root().join("images/linux/tsc.c");
    // This process's own output file: the background build and a test may
    // build the initramfs at once.
    let out = linux_dir().join(format!("tsc.{}", std::process::id()));
    std::fs::create_dir_all(linux_dir()).map_err(|e| format!("{}: {e}", linux_dir().display()))?;
    let mut cmd = Command::new("gcc");
    cmd.args([
        "-static",
        "-nostdlib",
        "-O2",
        "-Wall",
        "-Werror",
        "-fno-pie",
        "-no-pie",
        "-fno-stack-protector",
        "-fcf-protection=none",
        "-Wl,--build-id=none",
        "-o",
    ])
    .arg(&out)
    .arg(&source);
    crate::process::run(&mut cmd, "building /bin/tsc (images/linux/tsc.c)")?;
    let program = read(&out);
    let _ = std::fs::remove_file(&out);
    program
}

/// The initramfs: busybox, `/init` (images/linux/init), `/bin/tsc` and
/// `/dev/console`.
fn build_initramfs() -> Result<PathBuf, String> {
    let busybox = read(Path::new(BUSYBOX))?;
    let init = read(&paths::root().join("images/linux/init"))?;
    let tsc = build_tsc()?;
    let archive = cpio(&[
        CpioEntry {
            name: "dev",
            mode: S_IFDIR | 0o755,
            rdev: (0, 0),
            data: &[],
        },
        CpioEntry {
            name: "dev/console",
            mode: S_IFCHR | 0o600,
            rdev: (5, 1),
            data: &[],
        },
        // A shell's background jobs read /dev/null.
        CpioEntry {
            name: "dev/null",
            mode: S_IFCHR | 0o666,
            rdev: (1, 3),
            data: &[],
        },
        CpioEntry {
            name: "proc",
            mode: S_IFDIR | 0o755,
            rdev: (0, 0),
            data: &[],
        },
        CpioEntry {
            name: "bin",
            mode: S_IFDIR | 0o755,
            rdev: (0, 0),
            data: &[],
        },
        CpioEntry {
            name: "bin/busybox",
            mode: S_IFREG | 0o755,
            rdev: (0, 0),
            data: &busybox,
        },
        CpioEntry {
            name: "bin/sh",
            mode: S_IFLNK | 0o777,
            rdev: (0, 0),
            data: b"busybox",
        },
        CpioEntry {
            name: "bin/tsc",
            mode: S_IFREG | 0o755,
            rdev: (0, 0),
            data: &tsc,
        },
        CpioEntry {
            name: "init",
            mode: S_IFREG | 0o755,
            rdev: (0, 0),
            data: &init,
        },
    ]);
    let path = linux_dir().join("initramfs.cpio");
    if read(&path).ok().as_deref() != Some(&archive[..]) {
        std::fs::create_dir_all(linux_dir())
            .map_err(|e| format!("{}: {e}", linux_dir().display()))?;
        write(&path, &archive)?;
    }
    Ok(path)
}

/// One boot's console.
pub struct Console {
    pub text: String,
    pub seconds: f64,
}

/// Boots one kernel bare; it must reach the end of `/init` and reboot.
pub fn boot(build: &Build, initramfs: &Path, echo: qemu::Echo) -> Result<Console, String> {
    let machine = qemu::Machine {
        kernel: &build.bzimage,
        module: Some(initramfs),
        append: Some(CMDLINE),
        memory_mib: MEMORY_MIB,
        accel: "tcg",
        icount: Some(crate::test::GUEST_TEST_ICOUNT_SHIFT),
        com2: false,
        settle: None,
        debugcons: &[],
    };
    finish_boot(build, machine.boot(QEMU_TIMEOUT, echo)?, "console")
}

/// [`boot`] under `-icount shift=shift`, the CMOS clock on guest time from
/// a fixed date, as every `-icount` machine (the bench: every boot the same), its console kept as
/// `target/linux/LOG-VARIANT.txt`.
pub fn boot_under(
    build: &Build,
    initramfs: &Path,
    shift: u32,
    log: &str,
    timeout: Duration,
) -> Result<Console, String> {
    let machine = qemu::Machine {
        kernel: &build.bzimage,
        module: Some(initramfs),
        append: Some(CMDLINE),
        memory_mib: MEMORY_MIB,
        accel: "tcg",
        icount: Some(shift),
        com2: false,
        settle: None,
        debugcons: &[],
    };
    finish_boot(build, machine.boot(timeout, qemu::Echo::Quiet)?, log)
}

/// The run must have reached the end of `/init` and rebooted; its console
/// is kept as `target/linux/LOG-VARIANT.txt`.
fn finish_boot(build: &Build, run: qemu::Run, log: &str) -> Result<Console, String> {
    let name = build.variant.name();
    let log = linux_dir().join(format!("{log}-{name}.txt"));
    let _ = write(&log, run.serial.as_bytes());
    if !run.serial.lines().any(|l| l.trim_end() == DONE) {
        return Err(format!(
            "the {name} kernel did not reach `{DONE}` ({}); its console: {}\n{}",
            run.outcome,
            log.display(),
            crate::process::tail(&run.serial, 20)
        ));
    }
    // `reboot -f` under `-no-reboot`: QEMU exits with status 0.
    if run.outcome != qemu::Outcome::Exited(Some(0)) {
        return Err(format!(
            "the {name} kernel reached `{DONE}` but then ended with {} (console: {})",
            run.outcome,
            log.display()
        ));
    }
    Ok(Console {
        text: run.serial,
        seconds: run.elapsed.as_secs_f64(),
    })
}

fn boot_both(k: &Kernels) -> Result<(Console, Console), String> {
    let mut consoles = Vec::new();
    for b in [&k.plain, &k.padded] {
        println!(
            "xtask: linux ({}): booting bare under QEMU",
            b.variant.name()
        );
        let c = boot(b, &k.initramfs, qemu::Echo::Quiet)?;
        println!(
            "xtask: linux ({}): reached `{DONE}` and rebooted in {:.1} s",
            b.variant.name(),
            c.seconds
        );
        consoles.push(c);
    }
    let padded = consoles.pop().ok_or("no padded console")?;
    let plain = consoles.pop().ok_or("no plain console")?;
    Ok((plain, padded))
}

/// Lines that legitimately differ between the two kernels, by name. They
/// are left out of the comparison; how many there are may differ too.
pub const FILTER: &[(&str, &[&str])] = &[
    // The padded image is larger: the sizes it prints of itself.
    (
        "memory sizes",
        &[
            "Memory: ",
            "Freeing unused kernel image",
            "Write protecting the kernel read-only data",
        ],
    ),
    // Measured against the PIT: under `-icount` every boot of one kernel
    // prints the same figures, but the padded kernel's calibration loops
    // run other instructions (padding) and so measure slightly other
    // frequencies (`tsc: `, `clocksource: `, `sched_clock: `, the delay
    // loop). Without `-icount`, a loaded host also made the clocksource
    // watchdog mark the TSC unstable (the last line of that event, from
    // kernel/sched/clock.c).
    (
        "clock calibration",
        &[
            "tsc: ",
            "Calibrating delay",
            "clocksource: ",
            "sched_clock: ",
            "TSC found unstable after boot",
        ],
    ),
    // `/init`'s own readings of the TSC (images/linux/tsc.c), for `cargo
    // xtask bench`: they differ between kernels and between the bare
    // machine and seL4 (docs/linux.md, "Boot and /init in ticks").
    ("the guest's TSC readings", &[crate::linux_timing::READING]),
];

/// The filter's name for `line`, if it removes it.
pub fn filtered(line: &str) -> Option<&'static str> {
    FILTER
        .iter()
        .find(|(_, needles)| needles.iter().any(|n| line.contains(n)))
        .map(|(name, _)| *name)
}

/// The console as compared: without the filtered lines; and how many
/// lines each filter removed.
pub fn normalise(text: &str) -> (Vec<String>, Vec<usize>) {
    let mut removed = vec![0; FILTER.len()];
    let kept = text
        .lines()
        .filter(|l| match filtered(l) {
            Some(name) => {
                if let Some(i) = FILTER.iter().position(|(n, _)| *n == name) {
                    removed[i] += 1;
                }
                false
            }
            None => true,
        })
        .map(|l| l.trim_end().to_string())
        .collect();
    (kept, removed)
}

/// The two consoles must be equal once the filtered lines are left out.
pub fn compare(plain: &Console, padded: &Console) -> Result<String, String> {
    let (a, removed_a) = normalise(&plain.text);
    let (b, removed_b) = normalise(&padded.text);
    if a != b {
        let at = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        let show = |v: &[String]| {
            v.iter()
                .skip(at)
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n    ")
        };
        return Err(format!(
            "the consoles differ at compared line {} ({} plain lines, {} padded, filtered lines left out):\n  plain:\n    {}\n  padded:\n    {}",
            at + 1,
            a.len(),
            b.len(),
            show(&a),
            show(&b)
        ));
    }
    let filters: Vec<String> = FILTER
        .iter()
        .zip(removed_a.iter().zip(&removed_b))
        .map(|((name, _), (x, y))| format!("{name} {x}/{y}"))
        .collect();
    Ok(format!(
        "both kernels reached `{DONE}`; consoles equal ({} lines compared; filtered out, plain/padded: {})",
        a.len(),
        filters.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fragment_replaces_settings_and_unmet_ones_are_named() {
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n# comment\n";
        let fragment = "# why\nCONFIG_B=y\n# CONFIG_A is not set\n";
        let merged = merge_config(config, fragment);
        assert_eq!(
            merged,
            "CONFIG_C=\"x\"\n# comment\nCONFIG_B=y\n# CONFIG_A is not set\n"
        );
        assert!(unmet_settings(&merged, fragment).is_empty());
        // Absent is "not set"; a different value is unmet.
        assert!(unmet_settings("CONFIG_B=y\n", fragment).is_empty());
        assert_eq!(
            unmet_settings("CONFIG_A=y\nCONFIG_B=m\n", fragment),
            ["CONFIG_B=y", "CONFIG_A=n"]
        );
    }

    #[test]
    fn cache_use_is_counted_per_variant() {
        let events = "plain compiled a.c\nplain compiled b.c\npadded reused-object a.c\n\
                      padded reused-assembly b.c\npadded compiled c.c\nplain reused-object d.c\n\
                      padded reused-object+direct e.c\npadded reused-assembly+direct f.c\n";
        assert_eq!(
            CacheUse::of(events, Variant::Plain),
            CacheUse {
                compiled: 2,
                reused_assembly: 0,
                reused_object: 1,
                direct: 0
            }
        );
        assert_eq!(
            CacheUse::of(events, Variant::Padded),
            CacheUse {
                compiled: 1,
                reused_assembly: 2,
                reused_object: 2,
                direct: 2
            }
        );
    }

    #[test]
    fn cpio_entries_are_newc_with_4_byte_alignment_and_a_trailer() {
        let a = cpio(&[CpioEntry {
            name: "init",
            mode: S_IFREG | 0o755,
            rdev: (0, 0),
            data: b"hello",
        }]);
        assert!(a.starts_with(b"070701"));
        // Header 110 bytes, "init\0" -> 115, padded to 116, data 5 -> 121, padded to 124.
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..121], b"hello");
        assert_eq!(&a[124..130], b"070701");
        assert_eq!(a.len() % 4, 0);
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
        // The mode and file size fields.
        assert_eq!(&a[14..22], b"000081ed");
        assert_eq!(&a[54..62], b"00000005");
    }

    #[test]
    fn the_filter_names_lines_and_keeps_the_rest() {
        let plain = Console {
            text: "Linux version 6.1\nMemory: 100K\ninit: done\n".into(),
            seconds: 0.0,
        };
        let mut padded = Console {
            text: "Linux version 6.1\nMemory: 104K\ninit: done\n".into(),
            seconds: 0.0,
        };
        let ok = compare(&plain, &padded).unwrap();
        assert!(ok.contains("memory sizes 1/1"), "{ok}");
        padded.text = "Linux version 6.1\nMemory: 104K\nOops\ninit: done\n".into();
        let e = compare(&plain, &padded).unwrap_err();
        assert!(e.contains("compared line 2"), "{e}");
        // Filtered lines may come and go (a failed fast TSC calibration).
        padded.text = "Linux version 6.1\ntsc: Fast TSC calibration failed\ninit: done\n".into();
        let ok = compare(&plain, &padded).unwrap();
        assert!(
            ok.contains("memory sizes 1/0, clock calibration 0/1"),
            "{ok}"
        );
        // The clocksource watchdog's verdict on a loaded host, in full.
        padded.text = "Linux version 6.1\nclocksource: timekeeping watchdog on CPU0: Marking clocksource 'tsc-early' as unstable\n\
                       tsc: Marking TSC unstable due to clocksource watchdog\n\
                       TSC found unstable after boot, most likely due to broken BIOS. Use 'tsc=unstable'.\n\
                       Memory: 104K\ninit: done\n"
            .into();
        let ok = compare(&plain, &padded).unwrap();
        assert!(
            ok.contains("memory sizes 1/1, clock calibration 0/3"),
            "{ok}"
        );
        // A line of the kernel's own missing is a difference.
        padded.text = "Memory: 104K\ninit: done\n".into();
        assert!(compare(&plain, &padded).is_err());
    }
}
