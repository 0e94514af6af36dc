//! A root task that proves, on real seL4 under QEMU, each kernel feature the
//! VMM server relies on. Each test prints what it saw; `cargo xtask test`
//! checks those lines, and the exit status (through `isa-debug-exit`) says
//! whether every test passed.
#![no_std]
#![no_main]

mod exit;
mod objects;
mod tests;
mod threads;

use previrt_sel4::{println, BootInfo};

previrt_sel4::root_task!(root_main, 64 * 1024);

fn root_main(bootinfo: &'static BootInfo) -> ! {
    println!("selftest: root task started");
    let mut objects = objects::Objects::new(bootinfo);
    let tests: [(&str, &tests::Test); 7] = [
        ("bootinfo", &|_| tests::bootinfo::run(bootinfo)),
        ("memory", &tests::memory::run),
        ("fault", &tests::fault::run),
        ("irq", &tests::irq::run),
        ("registers", &tests::registers::run),
        ("no-syscalls", &tests::no_syscalls::run),
        ("layout", &tests::layout::run),
    ];
    let mut failed = 0;
    // Each verdict is printed as soon as it is known, so a later test that
    // hangs does not hide the earlier ones.
    for (name, test) in tests {
        match test(&mut objects) {
            Ok(()) => println!("selftest: {name} ok"),
            Err(why) => {
                failed += 1;
                println!("selftest: {name} FAILED: {why}");
            }
        }
    }
    println!(
        "selftest: {} passed, {} failed",
        tests.len() - failed,
        failed
    );
    exit::exit(failed == 0)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("selftest: panic: {info}");
    exit::exit(false)
}
