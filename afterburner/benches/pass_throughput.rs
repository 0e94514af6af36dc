//! Benchmarks: the pass's throughput, and `afterburn cc` against plain gcc.
//!
//! - `AFTERBURN_CORPUS=/path/kernel_all.s`: the assembly to run the pass on.
//!   Without it, the bench writes a C file, compiles it with `gcc -S` and
//!   uses that (nothing generated is checked in).
//! - `AFTERBURN_BENCH_C=/path/file.c` and `AFTERBURN_BENCH_CFLAGS="..."`:
//!   the C file for the compile-time comparison (default: the generated one).
//!
//! `cargo bench -p afterburner`; criterion prints bytes/s for the pass and
//! times for both compilers (the overhead is their ratio).

use afterburner::pass;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A C file with many functions, inline assembly with sensitive
/// instructions, and ordinary code around them.
fn generated_c() -> String {
    let mut s = String::from(
        "static inline void outb(unsigned char v, unsigned short p) { asm volatile(\"outb %0,%1\" :: \"a\"(v), \"Nd\"(p)); }\n\
         static inline unsigned long cr2(void) { unsigned long v; asm volatile(\"mov %%cr2,%0\" : \"=r\"(v)); return v; }\n",
    );
    for i in 0..400 {
        s.push_str(&format!(
            "unsigned long work{i}(unsigned long *a, unsigned long n) {{\n\
             \tunsigned long s = {i};\n\
             \tfor (unsigned long k = 0; k < n; k++) {{ s += a[k] * (k ^ {i}); if (s & 1) s ^= a[(k + 3) % n]; }}\n\
             \tif (s == {i}) {{ asm volatile(\"cli\" ::: \"memory\"); outb((unsigned char)s, 0x3f8); s += cr2(); asm volatile(\"sti; hlt\"); }}\n\
             \treturn s;\n}}\n"
        ));
    }
    s
}

struct Inputs {
    _dir: tempfile::TempDir,
    corpus: Vec<u8>,
    c_file: PathBuf,
    cflags: Vec<String>,
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().expect("temporary directory");
    let generated = dir.path().join("bench.c");
    std::fs::write(&generated, generated_c()).expect("write bench.c");
    let default_flags = vec!["-O2".to_string(), "-g".to_string()];
    let corpus = match std::env::var_os("AFTERBURN_CORPUS") {
        Some(p) => std::fs::read(&p).expect("AFTERBURN_CORPUS is readable"),
        None => {
            let s = dir.path().join("bench.s");
            let st = Command::new("gcc")
                .args(&default_flags)
                .arg("-S")
                .arg(&generated)
                .arg("-o")
                .arg(&s)
                .status()
                .expect("gcc runs");
            assert!(st.success());
            std::fs::read(&s).expect("gcc wrote bench.s")
        }
    };
    let (c_file, cflags) = match std::env::var_os("AFTERBURN_BENCH_C") {
        Some(p) => (
            PathBuf::from(p),
            std::env::var("AFTERBURN_BENCH_CFLAGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect(),
        ),
        None => (generated, default_flags),
    };
    Inputs {
        _dir: dir,
        corpus,
        c_file,
        cflags,
    }
}

fn compile(driver: &[&str], c_file: &Path, cflags: &[String], out: &Path) {
    // Flags like `-I.` are relative to the C file's folder.
    let dir = c_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let st = Command::new(driver[0])
        .current_dir(dir)
        .args(&driver[1..])
        .args(cflags)
        .arg("-c")
        .arg(c_file)
        .arg("-o")
        .arg(out)
        .status()
        .expect("compiler runs");
    assert!(st.success());
}

fn benches(c: &mut Criterion) {
    let inputs = inputs();
    let config = pass::Config::default();
    let mut group = c.benchmark_group("pass");
    group.throughput(Throughput::Bytes(inputs.corpus.len() as u64));
    group.sample_size(20);
    group.bench_function("run", |b| {
        b.iter(|| pass::run(std::hint::black_box(&inputs.corpus), &config).expect("corpus passes"))
    });
    group.finish();

    let out_dir = tempfile::tempdir().expect("temporary directory");
    let out = out_dir.path().join("bench.o");
    let afterburn = env!("CARGO_BIN_EXE_afterburn");
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("gcc", |b| {
        b.iter(|| compile(&["gcc"], &inputs.c_file, &inputs.cflags, &out))
    });
    group.bench_function("afterburn_cc", |b| {
        b.iter(|| compile(&[afterburn, "cc"], &inputs.c_file, &inputs.cflags, &out))
    });
    group.finish();
}

criterion_group!(pass_benches, benches);
criterion_main!(pass_benches);
