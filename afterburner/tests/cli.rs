//! The `afterburn` command line: exit codes, error messages, output files.

mod common;

use common::afterburn_bin;
use std::process::Command;

fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(afterburn_bin())
        .args(args)
        .output()
        .expect("afterburn runs")
}

#[test]
fn asm_writes_padded_output_and_bad_input_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.s");
    let out = dir.path().join("good.out.s");
    std::fs::write(&good, "\tcli\n\tret\n").unwrap();
    let r = run(&[
        "asm".as_ref(),
        good.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--site-size".as_ref(),
        "cli=20".as_ref(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("(20-(740000002b-740000001b))"), "{text}");

    let cases: &[(&str, &str)] = &[
        ("\tnop\n\tcli %eax\n", "bad.s:2: `cli` with 1 operand"),
        ("\tnop\n\n\t.ascii \"open\n", "bad.s:3: unterminated string"),
        (
            "# afterburn: off\n\tcli\n",
            "bad.s:1: `afterburn: off` without a matching",
        ),
        (
            "\tnop\n# afterburn: on\n",
            "bad.s:2: `afterburn: on` without",
        ),
        ("\t.intel_syntax noprefix\n\tcli\n", "bad.s:1: Intel syntax"),
        ("\tint foo\n", "bad.s:1: `int` needs one immediate"),
        ("\tmov %cr3\n", "bad.s:1: `mov` of a control"),
        ("\tnop\n\x7fELF\0\0\0\n", "bad.s:2: NUL byte"),
    ];
    for (src, want) in cases {
        let bad = dir.path().join("bad.s");
        let bad_out = dir.path().join("bad.out.s");
        std::fs::write(&bad, src).unwrap();
        let r = run(&[
            "asm".as_ref(),
            bad.as_os_str(),
            "-o".as_ref(),
            bad_out.as_os_str(),
        ]);
        assert!(!r.status.success(), "{src}");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(err.contains(want), "{src}: stderr was {err}");
        assert!(!bad_out.exists(), "{src}: output file was written");
    }
    // A second pass over afterburnt output is refused.
    let r = run(&[
        "asm".as_ref(),
        out.as_os_str(),
        "-o".as_ref(),
        dir.path().join("twice.s").as_os_str(),
    ]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("already"));
    // Bad option values.
    let r = run(&[
        "asm".as_ref(),
        good.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--site-size".as_ref(),
        "cli=3".as_ref(),
    ]);
    assert!(!r.status.success());
    // Only temp files of ours would be left behind: none.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".afterburn-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn audit_and_sites_commands() {
    let dir = tempfile::tempdir().unwrap();
    let padded = common::afterburn("\t.globl f\nf:\n\tcli\n\tmovq %rax,%cr3\n\tret\n");
    let good = dir.path().join("good.o");
    std::fs::write(&good, common::assemble(&padded.text).unwrap()).unwrap();
    let bad = dir.path().join("bad.o");
    std::fs::write(
        &bad,
        common::assemble(b"\t.globl g\ng:\n\tnop\n\thlt\n").unwrap(),
    )
    .unwrap();

    let r = run(&["audit".as_ref(), good.as_os_str()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stdout));

    let r = run(&["audit".as_ref(), bad.as_os_str()]);
    assert!(!r.status.success());
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(text.contains("0x1 .text <g+0x1>: hlt"), "{text}");

    let r = run(&["audit".as_ref(), "--json".as_ref(), bad.as_os_str()]);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["clean"], false);
    assert_eq!(v["violations"][0]["rule"], "uncovered");
    assert_eq!(v["violations"][0]["symbol"], "g+0x1");

    let r = run(&["sites".as_ref(), good.as_os_str()]);
    assert!(r.status.success());
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(
        text.contains("cli") && text.contains("mov-to-cr") && text.contains("f+0xc"),
        "{text}"
    );

    let junk = dir.path().join("junk.o");
    std::fs::write(&junk, b"not an elf").unwrap();
    let r = run(&["audit".as_ref(), junk.as_os_str()]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("junk.o"));
}

#[test]
fn asm_reads_stdin_and_writes_stdout() {
    use std::io::Write as _;
    let mut child = Command::new(afterburn_bin())
        .args(["asm", "-", "-o", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\tnop\n\thlt %eax\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("<stdin>:2:"));
    let mut child = Command::new(afterburn_bin())
        .args(["asm", "-", "-o", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"\thlt\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("740000001: hlt;"));
}
