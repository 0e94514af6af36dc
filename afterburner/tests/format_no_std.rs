//! `src/format.rs` is the ABI module the wedge (a `no_std` crate) includes
//! by path: it must build without `std` for the bare-metal target.

#[test]
fn format_module_builds_without_std() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lib.rs");
    let format = concat!(env!("CARGO_MANIFEST_DIR"), "/src/format.rs");
    std::fs::write(
        &root,
        format!("#![no_std]\n#[path = {format:?}]\npub mod format;\n"),
    )
    .unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "lib",
            "--target",
            "x86_64-unknown-none",
            "-o",
        ])
        .arg(dir.path().join("libformat.rlib"))
        .arg(&root)
        .output()
        .expect("rustc runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
