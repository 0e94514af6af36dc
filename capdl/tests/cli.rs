//! The `capdl` binary: exit codes, `file:line:col` messages, atomic output.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn capdl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capdl"))
        .args(args)
        .output()
        .expect("capdl runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capdl-cli-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn check_reports_every_error_with_file_line_col_and_fails() {
    let dir = temp_dir("check");
    let file = dir.join("bad.cdl");
    fs::write(
        &file,
        "arch x86_64\nobjects {\n  e = ep\n  f = frame (3k)\n}\ncaps {\n  e { 0: f }\n}\n",
    )
    .unwrap();
    let out = capdl(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let f = file.display();
    assert_eq!(
        stderr,
        format!(
            "{f}:4:14: a frame is 4k or 2M, not 0xc00 bytes\n\
             {f}: 1 error\n"
        )
    );
    fs::write(
        &file,
        "arch x86_64\nobjects {\n  e = ep\n  x = nothing\n}\ncaps {\n  e { 0: e }\n}\n",
    )
    .unwrap();
    let stderr = String::from_utf8(capdl(&["check", file.to_str().unwrap()]).stderr).unwrap();
    assert!(
        stderr.contains(&format!("{f}:4:7: unknown object type `nothing`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{f}:7:7: `e` is an endpoint, which holds no caps")),
        "{stderr}"
    );
    assert!(stderr.ends_with(&format!("{f}: 2 errors\n")), "{stderr}");
}

#[test]
fn check_accepts_a_valid_spec() {
    let out = capdl(&["check", &example("two-threads.cdl")]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(": ok: 19 objects, 20 caps, 0xf410 bytes"),
        "{stdout}"
    );
}

#[test]
fn print_writes_the_canonical_form() {
    let out = capdl(&["print", &example("devices.cdl")]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.starts_with("arch x86_64\n\nobjects {\n"));
    assert!(printed.contains("  pit_ports = io_ports (ports: [0x40..0x43])\n"));
    let source = fs::read_to_string(example("devices.cdl")).unwrap();
    assert_eq!(capdl::check(&printed), capdl::check(&source));
}

#[test]
fn encode_writes_whole_files_or_nothing() {
    let dir = temp_dir("encode");
    let output = dir.join("spec.bin");
    let out = capdl(&[
        "encode",
        &example("vspace.cdl"),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = fs::read(&output).unwrap();
    let source = fs::read_to_string(example("vspace.cdl")).unwrap();
    assert_eq!(
        capdl::encode::decode(&bytes).unwrap(),
        capdl::check(&source).unwrap()
    );

    // A bad spec leaves the old output as it was, and no temporary file.
    let bad = dir.join("bad.cdl");
    fs::write(&bad, "arch x86_64 objects { e = ep (1 bits) }").unwrap();
    let out = capdl(&[
        "encode",
        bad.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(fs::read(&output).unwrap(), bytes);
    // An output in a folder that does not exist fails cleanly.
    let nowhere = dir.join("missing").join("spec.bin");
    let out = capdl(&[
        "encode",
        &example("vspace.cdl"),
        "-o",
        nowhere.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, vec!["bad.cdl", "spec.bin"]);
}

#[test]
fn unreadable_file_is_an_error() {
    let out = capdl(&["check", "/nonexistent/spec.cdl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .starts_with("/nonexistent/spec.cdl: cannot read:"));
}
