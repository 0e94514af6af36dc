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

core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    // The kernel passes the boot info address in rdi and no stack.
    "lea rsp, [rip + {stack} + {size}]",
    "and rsp, -16",
    "call {main}",
    "ud2",
    stack = sym threads::ROOT_STACK,
    size = const threads::STACK_SIZE,
    main = sym root_main,
);

extern "C" fn root_main(bootinfo: *const BootInfo) -> ! {
    // SAFETY: the kernel maps the boot info frame read-only into the root
    // task and passes its address in rdi; it stays mapped for ever.
    let bootinfo = unsafe { &*bootinfo };
    println!("selftest: root task started");
    let mut objects = objects::Objects::new(bootinfo);
    let tests: [(&str, &tests::Test); 5] = [
        ("bootinfo", &|_| tests::bootinfo::run(bootinfo)),
        ("memory", &tests::memory::run),
        ("fault", &tests::fault::run),
        ("irq", &tests::irq::run),
        ("registers", &tests::registers::run),
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
