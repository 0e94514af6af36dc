//! `afterburn cc` with the real gcc: C, .S and .s inputs, -c/-o/-S, -MD,
//! several inputs, links, failures.

mod common;

use afterburner::{audit, elf};
use std::path::Path;
use std::process::Command;

const C_FILE: &str = r#"
#include "io.h"
void poke(unsigned short port) { outb(0x41, port); asm volatile("cli; sti; hlt"); }
int main(void) { return 0; }
"#;
const HEADER: &str = "static inline void outb(unsigned char v, unsigned short p) { asm volatile(\"outb %0,%1\" :: \"a\"(v), \"Nd\"(p)); }\n";
const S_UPPER: &str = "#define PORT 0x80\n\t.macro io\n\toutb %al, $PORT\n\t.endm\n\t.text\n\t.globl asmfn\nasmfn:\n\tio\n\tio\n\tmovq %rax, %cr3\n\tret\n";
const S_LOWER: &str = "\t.text\n\t.globl plain\nplain:\n\tcpuid\n\tret\n";

fn cc(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(common::afterburn_bin())
        .arg("cc")
        .args(args)
        .current_dir(dir)
        .env_remove("AFTERBURN_CC")
        .output()
        .expect("afterburn runs")
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("poke.c"), C_FILE).unwrap();
    std::fs::write(dir.path().join("io.h"), HEADER).unwrap();
    std::fs::write(dir.path().join("boot.S"), S_UPPER).unwrap();
    std::fs::write(dir.path().join("plain.s"), S_LOWER).unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    dir
}

fn audit_file(path: &Path) -> (elf::ElfImage, audit::Report) {
    let image = elf::ElfImage::parse(&std::fs::read(path).unwrap()).unwrap();
    let report = audit::audit(&image);
    (image, report)
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn compiles_c_with_dependencies_naming_the_real_object() {
    let dir = setup();
    ok(&cc(
        dir.path(),
        &[
            "-O2",
            "-g",
            "-MD",
            "-MP",
            "-c",
            "poke.c",
            "-o",
            "out/poke.o",
        ],
    ));
    let (image, report) = audit_file(&dir.path().join("out/poke.o"));
    assert!(report.is_clean(), "{}", report.to_text());
    // outb, cli, sti;hlt pair.
    assert_eq!(
        image.records.iter().filter(|r| r.record.is_site()).count(),
        3
    );
    let deps = std::fs::read_to_string(dir.path().join("out/poke.d")).unwrap();
    assert!(deps.starts_with("out/poke.o:"), "{deps}");
    assert!(deps.contains("io.h"), "{deps}");
    assert!(!deps.contains("/tmp/afterburn-"), "{deps}");
    // -MF and -MT given by the user are kept.
    ok(&cc(
        dir.path(),
        &["-MMD", "-MF", "custom.d", "-MT", "tgt", "-c", "poke.c"],
    ));
    assert!(std::fs::read_to_string(dir.path().join("custom.d"))
        .unwrap()
        .starts_with("tgt:"));
    assert!(dir.path().join("poke.o").exists());
}

#[test]
fn assembles_preprocessed_and_plain_assembly() {
    let dir = setup();
    ok(&cc(dir.path(), &["-c", "boot.S", "-o", "out/boot.o"]));
    let (image, report) = audit_file(&dir.path().join("out/boot.o"));
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(
        image.records.iter().filter(|r| r.record.is_site()).count(),
        3
    );
    ok(&cc(dir.path(), &["-c", "plain.s"]));
    let (image, report) = audit_file(&dir.path().join("plain.o"));
    assert!(report.is_clean());
    assert_eq!(image.records.len(), 1);
}

#[test]
fn several_inputs_and_assembly_output() {
    let dir = setup();
    ok(&cc(dir.path(), &["-c", "poke.c", "boot.S", "plain.s"]));
    for o in ["poke.o", "boot.o", "plain.o"] {
        let (_, report) = audit_file(&dir.path().join(o));
        assert!(report.is_clean(), "{o}");
    }
    // `-S` writes the compiler's own assembly (Kbuild parses it), byte for
    // byte what gcc writes.
    ok(&cc(dir.path(), &["-S", "poke.c", "-o", "out/poke.s"]));
    let ours = std::fs::read(dir.path().join("out/poke.s")).unwrap();
    let gcc = Command::new("gcc")
        .args(["-S", "poke.c", "-o", "out/gcc.s"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(gcc.success());
    assert_eq!(ours, std::fs::read(dir.path().join("out/gcc.s")).unwrap());
    // A build that compiles with -S and then assembles through the driver
    // (seL4's Makefile does) gets the sites when it assembles.
    ok(&cc(dir.path(), &["-c", "out/poke.s", "-o", "out/poke2.o"]));
    let (image, report) = audit_file(&dir.path().join("out/poke2.o"));
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(
        image.records.iter().filter(|r| r.record.is_site()).count(),
        3
    );
}

#[test]
fn links_and_passes_link_only_invocations_through() {
    let dir = setup();
    ok(&cc(dir.path(), &["-c", "plain.s", "-o", "out/plain.o"]));
    ok(&cc(
        dir.path(),
        &["poke.c", "out/plain.o", "-o", "out/prog"],
    ));
    let (image, _) = audit_file(&dir.path().join("out/prog"));
    // poke's three sites and plain's one, linked at real addresses.
    assert_eq!(
        image.records.iter().filter(|r| r.record.is_site()).count(),
        4
    );
    assert!(image
        .records
        .iter()
        .all(|r| r.location.is_some() && r.address > 0x1000));
    ok(&cc(
        dir.path(),
        &[
            "out/plain.o",
            "-nostartfiles",
            "-Wl,-e,plain",
            "-o",
            "out/linked",
        ],
    ));
    assert!(dir.path().join("out/linked").exists());
    let out = cc(dir.path(), &["--version"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("gcc"));
}

#[test]
fn failures_are_passed_on() {
    let dir = setup();
    std::fs::write(dir.path().join("broken.c"), "int f( {").unwrap();
    let out = cc(dir.path(), &["-c", "broken.c"]);
    assert!(!out.status.success());
    assert!(!dir.path().join("broken.o").exists());
    std::fs::write(dir.path().join("bad.s"), "\tnop\n\tcli %eax\n").unwrap();
    let out = cc(dir.path(), &["-c", "bad.s"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.s:2:"));
    let out = Command::new(common::afterburn_bin())
        .args(["cc", "-c", "poke.c"])
        .current_dir(dir.path())
        .env("AFTERBURN_CC", "/nonexistent/compiler")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/compiler"));
    let out = cc(
        dir.path(),
        &[
            "--afterburn-cc=gcc",
            "--afterburn-site-size=cli=24",
            "-c",
            "poke.c",
        ],
    );
    ok(&out);
    let (image, report) = audit_file(&dir.path().join("poke.o"));
    assert!(report.is_clean(), "{}", report.to_text());
    let cli = image
        .records
        .iter()
        .find(|r| r.record.is_site() && r.record.kind == 1)
        .expect("a cli site");
    assert_eq!(cli.record.site_len, 24);
}

#[test]
fn position_independent_and_16_bit_code_is_compiled_as_the_compiler_would() {
    let dir = setup();
    // The vDSO's and the decompressor's kind of code: the compiler's object,
    // no sites.
    for (flag, obj) in [("-fPIC", "pic.o"), ("-fpie", "pie.o"), ("-m16", "m16.o")] {
        ok(&cc(dir.path(), &[flag, "-c", "poke.c", "-o", obj]));
        let bytes = std::fs::read(dir.path().join(obj)).unwrap();
        assert!(
            !bytes.windows(10).any(|w| w == b".afterburn"),
            "{flag}: no .afterburn section"
        );
    }
    // -m16 objects are what gcc makes: 32-bit ELF.
    let m16 = std::fs::read(dir.path().join("m16.o")).unwrap();
    assert_eq!(m16[4], 1, "ELFCLASS32");
    // The last flag wins: -fno-pie after -fPIE is kernel code again.
    ok(&cc(
        dir.path(),
        &["-fPIE", "-fno-pie", "-c", "poke.c", "-o", "nopie.o"],
    ));
    let (image, _) = audit_file(&dir.path().join("nopie.o"));
    assert!(!image.records.is_empty());
}

/// Kernel-like flags: the compiler's object must not depend on how it was
/// made (`gcc -c`, or `afterburn cc` through the cache).
const KERNEL_FLAGS: &[&str] = &["-O2", "-Wall", "-mcmodel=kernel", "-fno-PIE", "-DX=1"];
const NO_SITES: &str = "int h(int x) { int unused; return x << 2; }\n";

fn cached(dir: &Path, extra: &[&str], src: &str, obj: &str) -> std::process::Output {
    let dep = format!("-Wp,-MMD,{obj}.d");
    let mut args: Vec<&str> = vec!["--afterburn-cache=cache"];
    args.extend(extra);
    args.extend(KERNEL_FLAGS);
    args.extend([dep.as_str(), "-c", src, "-o", obj]);
    cc(dir, &args)
}

#[test]
fn the_compile_cache_gives_plain_objects_and_pads_its_assembly() {
    let dir = setup();
    let d = dir.path();
    std::fs::write(d.join("nosites.c"), NO_SITES).unwrap();
    for src in ["poke.c", "nosites.c"] {
        // The reference: gcc itself.
        let mut gcc = Command::new("gcc");
        gcc.args(KERNEL_FLAGS)
            .args(["-c", src, "-o", &format!("out/{src}.gcc.o")]);
        assert!(gcc.current_dir(d).status().unwrap().success());
        // The plain build: the cache filled, the object gcc's, byte for byte.
        let plain = format!("out/{src}.plain.o");
        ok(&cached(d, &["--afterburn-no-pad"], src, &plain));
        assert_eq!(
            std::fs::read(d.join(&plain)).unwrap(),
            std::fs::read(d.join(format!("out/{src}.gcc.o"))).unwrap(),
            "{src}: the plain object through the cache is gcc's"
        );
        // The padded build without the cache, for comparison.
        ok(&cc(
            d,
            &[
                KERNEL_FLAGS,
                &["-c", src, "-o", &format!("out/{src}.padded.o")],
            ]
            .concat(),
        ));
    }
    // The padded build through the cache: the dependency file is written
    // although the compiler's -S does not run, and its warnings are shown.
    for src in ["poke.c", "nosites.c"] {
        let obj = format!("out/{src}.cached.o");
        let out = cached(d, &[], src, &obj);
        ok(&out);
        let deps = std::fs::read_to_string(d.join(format!("{obj}.d"))).unwrap();
        assert!(deps.contains(src), "{deps}");
        assert_eq!(
            std::fs::read(d.join(&obj)).unwrap(),
            std::fs::read(d.join(format!("out/{src}.padded.o"))).unwrap(),
            "{src}: padded from the cache = padded from the compiler"
        );
        if src == "nosites.c" {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("unused variable"), "{stderr}");
        }
    }
    // No sites: the padded object is the plain one (no note, nothing else).
    assert_eq!(
        std::fs::read(d.join("out/nosites.c.padded.o")).unwrap(),
        std::fs::read(d.join("out/nosites.c.gcc.o")).unwrap()
    );
    let events = std::fs::read_to_string(d.join("cache/events")).unwrap();
    assert_eq!(
        events,
        "plain compiled poke.c\nplain compiled nosites.c\n\
         padded reused-assembly poke.c\npadded reused-object nosites.c\n"
    );
    // A header's change that leaves the preprocessed unit as it was (an
    // unused macro) reuses; one that changes it compiles again.
    std::fs::write(d.join("io.h"), format!("{HEADER}#define Y 2\n")).unwrap();
    ok(&cached(d, &[], "poke.c", "out/poke.again.o"));
    std::fs::write(d.join("io.h"), format!("{HEADER}int y;\n")).unwrap();
    ok(&cached(d, &[], "poke.c", "out/poke.again.o"));
    // A code-generating flag too.
    ok(&cached(d, &["-O1"], "nosites.c", "out/nosites.o1.o"));
    let events = std::fs::read_to_string(d.join("cache/events")).unwrap();
    assert!(
        events.ends_with(
            "padded reused-assembly poke.c\npadded compiled poke.c\npadded compiled nosites.c\n"
        ),
        "{events}"
    );
}

/// A miss compiles the preprocessed text the key was made of (one
/// preprocessing, not two), with the same object as gcc's and the
/// dependency file the preprocessor wrote; a unit whose compile or
/// preprocessing prints anything is compiled again from the source, so its
/// messages are the compiler's own (a macro's warning with its expansion).
#[test]
fn a_cache_miss_compiles_the_preprocessed_unit_and_keeps_the_compilers_messages() {
    let dir = setup();
    let d = dir.path();
    std::fs::write(d.join("twice.h"), "#define TWICE(x) ((x) + (x))\n").unwrap();
    let sources = [
        ("quiet.c", "int q(int a) { return TWICE(a); }\n"),
        (
            "macro.c",
            "#define CMP(a, b) ((a) == (b) == 1)\nint m(int x) { return CMP(x, 2); }\n",
        ),
        ("pp.c", "#warning from the preprocessor\nint p;\n"),
    ];
    for (src, text) in sources {
        std::fs::write(d.join(src), text).unwrap();
        let obj = format!("out/{src}.o");
        let dep = format!("-Wp,-MMD,{obj}.d");
        let flags = ["-O2", "-Wall", "-include", "twice.h"];
        let mut args = vec!["--afterburn-no-pad", "--afterburn-cache=cache"];
        args.push("--afterburn-verbose");
        args.extend(flags);
        args.extend([dep.as_str(), "-c", src, "-o", obj.as_str()]);
        let out = cc(d, &args);
        ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut gcc = Command::new("gcc");
        gcc.args(flags)
            .args(["-c", src, "-o", &format!("out/{src}.gcc.o")]);
        assert!(gcc.current_dir(d).status().unwrap().success());
        assert_eq!(
            std::fs::read(d.join(&obj)).unwrap(),
            std::fs::read(d.join(format!("out/{src}.gcc.o"))).unwrap(),
            "{src}: the object is gcc's\n{stderr}"
        );
        let deps = std::fs::read_to_string(d.join(format!("{obj}.d"))).unwrap();
        assert!(deps.contains("twice.h") && deps.contains(src), "{deps}");
        let from_source = stderr.contains(&format!("-S {src} -o"));
        assert!(
            stderr.contains("-x cpp-output -S") || src == "pp.c",
            "{stderr}"
        );
        match src {
            "quiet.c" => assert!(!from_source, "{stderr}"),
            "macro.c" => {
                assert!(from_source, "{stderr}");
                assert!(stderr.contains("in expansion of macro"), "{stderr}");
            }
            _ => {
                assert!(from_source, "{stderr}");
                assert!(stderr.contains("from the preprocessor"), "{stderr}");
            }
        }
    }
    // The stored messages are the source compile's, shown on a reuse.
    let out = cc(
        d,
        &[
            "--afterburn-cache=cache",
            "-O2",
            "-Wall",
            "-include",
            "twice.h",
            "-c",
            "macro.c",
            "-o",
            "out/macro.padded.o",
        ],
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("in expansion of macro"));
}

/// The direct mode (docs/afterburner.md): a unit seen before, whose files
/// all have the contents they had, is not preprocessed again. Two build
/// trees with the same relative layout, as Linux's plain and padded
/// folders, share the manifests; a changed header misses.
#[test]
fn the_direct_mode_skips_preprocessing_until_a_header_changes() {
    let dir = setup();
    let d = dir.path();
    let src = d.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(
        src.join("unit.c"),
        "#include \"io.h\"\n#include \"gen.h\"\nvoid u(void) { outb(GEN, 0x80); }\n",
    )
    .unwrap();
    std::fs::write(src.join("io.h"), HEADER).unwrap();
    std::fs::write(src.join("dated.c"), "const char *built = __DATE__;\n").unwrap();
    for tree in ["plain", "padded", "reference"] {
        std::fs::create_dir_all(d.join(tree).join("include")).unwrap();
        std::fs::create_dir_all(d.join(tree).join("obj")).unwrap();
        std::fs::write(d.join(tree).join("include/gen.h"), "#define GEN 1\n").unwrap();
    }
    let cache = format!("--afterburn-cache={}", d.join("cache").display());
    let src_include = format!("-I{}", src.display());
    // Kbuild's form: relative include folder, dependency file and object,
    // the source by its absolute path.
    let build = |tree: &str, extra: &[&str], unit: &str| {
        let source = src.join(unit).display().to_string();
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(KERNEL_FLAGS);
        args.extend(["-Iinclude", &src_include, "-Wp,-MMD,obj/.unit.o.d"]);
        args.extend(["-c", &source, "-o", "obj/unit.o"]);
        let out = cc(&d.join(tree), &args);
        ok(&out);
        (
            std::fs::read(d.join(tree).join("obj/unit.o")).unwrap(),
            std::fs::read(d.join(tree).join("obj/.unit.o.d")).unwrap(),
        )
    };
    let last_event = || {
        let events = std::fs::read_to_string(d.join("cache/events")).unwrap();
        let line = events.lines().last().unwrap().to_string();
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (_, plain_deps) = build("plain", &["--afterburn-no-pad", &cache], "unit.c");
    assert_eq!(last_event(), "plain compiled");
    let (padded, padded_deps) = build("padded", &[&cache], "unit.c");
    assert_eq!(last_event(), "padded reused-assembly+direct");
    // What the preprocessor would have written, and the object the padded
    // driver makes without any cache.
    assert_eq!(
        String::from_utf8_lossy(&padded_deps),
        String::from_utf8_lossy(&plain_deps)
    );
    let deps = String::from_utf8_lossy(&padded_deps).into_owned();
    assert!(
        deps.contains("include/gen.h") && deps.contains("io.h"),
        "{deps}"
    );
    let (reference, reference_deps) = build("reference", &[], "unit.c");
    assert_eq!(padded, reference, "padded through the direct mode = padded");
    assert_eq!(padded_deps, reference_deps);
    // A changed header (its value) misses and compiles: the new code.
    std::fs::write(d.join("padded/include/gen.h"), "#define GEN 2\n").unwrap();
    std::fs::write(d.join("reference/include/gen.h"), "#define GEN 2\n").unwrap();
    let (padded, _) = build("padded", &[&cache], "unit.c");
    assert_eq!(last_event(), "padded compiled");
    assert_eq!(padded, build("reference", &[], "unit.c").0);
    // A change that leaves the preprocessed text as it was (an unused
    // macro) is a direct miss but reuses the assembly; the manifest is
    // then the new header's, and the next build is direct again.
    std::fs::write(
        d.join("padded/include/gen.h"),
        "#define GEN 2\n#define UNUSED 3\n",
    )
    .unwrap();
    build("padded", &[&cache], "unit.c");
    assert_eq!(last_event(), "padded reused-assembly");
    build("padded", &[&cache], "unit.c");
    assert_eq!(last_event(), "padded reused-assembly+direct");
    // A header that is gone misses too (the compiler's error is shown).
    std::fs::remove_file(d.join("padded/include/gen.h")).unwrap();
    let source = src.join("unit.c").display().to_string();
    let out = cc(
        &d.join("padded"),
        &[
            &cache,
            "-Iinclude",
            &src_include,
            "-c",
            &source,
            "-o",
            "obj/unit.o",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("gen.h"));
    // A unit that names the date is always preprocessed.
    build("plain", &["--afterburn-no-pad", &cache], "dated.c");
    build("padded", &[&cache], "dated.c");
    assert_eq!(last_event(), "padded reused-object");
}
