//! Links like a root task (same simple layout), at the same address: each
//! task has its own VSpace.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    if std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/../../sel4/root-task.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
    println!("cargo:rerun-if-changed=../../sel4/root-task.ld");
}
