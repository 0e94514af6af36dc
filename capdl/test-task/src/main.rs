//! A task for the loader's tests. Its CSpace is what the spec gives it:
//! slot 1 an endpoint, slot 2 (when given) the exit port, slot 3 (when
//! given) COM1's ports, its console. The first init
//! argument (rdi) picks its role:
//!
//! 1. `pong`: answers every call with the value plus one, for ever;
//! 2. `ping`: calls 1,000 times, checks every answer, exits QEMU;
//! 3. `lacking`: invokes the exit port it was not given, and reports the
//!    kernel's answer over its endpoint;
//! 4. `judge`: receives that report and exits QEMU with pass only if the
//!    kernel refused the invocation.
#![no_std]
#![no_main]

use previrt_sel4::{ipc, println, Error, IoPort, Word};

const ENDPOINT: Word = 1;
const EXIT_PORT: IoPort = IoPort(2);
const CONSOLE_PORTS: IoPort = IoPort(3);
const ROUNDS: u64 = 1000;

#[repr(C, align(16))]
struct Stack([u8; 16 * 1024]);
static mut STACK: Stack = Stack([0; 16 * 1024]);

// The loader passes the role in rdi and no usable stack.
core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "lea rsp, [rip + {stack} + {size}]",
    "and rsp, -16",
    "call {main}",
    "ud2",
    stack = sym STACK,
    size = const 16 * 1024,
    main = sym task_main,
);

fn exit(passed: bool) -> ! {
    if let Err(e) = EXIT_PORT.out8(0xf4, if passed { 0 } else { 1 }) {
        println!("task: cannot exit: {e}");
    }
    loop {
        previrt_sel4::sys::syscalls::yield_now();
    }
}

extern "C" fn task_main(role: Word) -> ! {
    // Without the console capability the task runs silent.
    let _ = previrt_sel4::debug::init(CONSOLE_PORTS, previrt_sel4::debug::COM1_BASE);
    match role {
        1 => pong(),
        2 => ping(),
        3 => lacking(),
        4 => judge(),
        other => {
            println!("task: unknown role {other}");
            loop {
                previrt_sel4::sys::syscalls::yield_now();
            }
        }
    }
}

fn pong() -> ! {
    let mut message = ipc::recv(ENDPOINT);
    loop {
        message = ipc::reply_recv(ENDPOINT, 0, &[message.mr(0) + 1]);
    }
}

fn ping() -> ! {
    let mut wrong = 0;
    for i in 0..ROUNDS {
        let reply = ipc::call(ENDPOINT, 0, &[i]);
        if reply.mr(0) != i + 1 {
            wrong += 1;
        }
    }
    println!("ping: {ROUNDS} calls answered, {wrong} wrong");
    exit(wrong == 0)
}

fn lacking() -> ! {
    let answer = match EXIT_PORT.out8(0xf4, 0) {
        Ok(()) => 0,
        Err(e) => {
            println!("lacking: writing the exit port without its capability: {e}");
            e.code()
        }
    };
    ipc::send(ENDPOINT, 0, &[answer]);
    loop {
        previrt_sel4::sys::syscalls::yield_now();
    }
}

fn judge() -> ! {
    let report = ipc::recv(ENDPOINT);
    let refused = report.mr(0) == Error::InvalidCapability.code();
    println!(
        "judge: the kernel {} the invocation",
        if refused { "refused" } else { "allowed" }
    );
    exit(refused)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("task: panic: {info}");
    loop {
        previrt_sel4::sys::syscalls::yield_now();
    }
}
