//! Registers: suspend a running thread, read its registers, point its
//! instruction pointer at other code, resume it, and see that code run.

use core::sync::atomic::{AtomicU64, Ordering};

use previrt_sel4::sys::syscalls::yield_now;
use previrt_sel4::{println, Word};

use super::{check, Context, Outcome};
use crate::objects::Objects;
use crate::threads;

#[no_mangle]
static SPIN_A_COUNT: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static SPIN_B_COUNT: AtomicU64 = AtomicU64::new(0);

// Two counting loops with known bounds, so the test can tell exactly which
// one the thread is executing.
core::arch::global_asm!(
    ".section .text.spinners, \"ax\"",
    ".global spin_a",
    ".global spin_a_end",
    ".global spin_b",
    ".global spin_b_end",
    "spin_a:",
    "lock inc qword ptr [rip + SPIN_A_COUNT]",
    "jmp spin_a",
    "spin_a_end:",
    "spin_b:",
    "lock inc qword ptr [rip + SPIN_B_COUNT]",
    "jmp spin_b",
    "spin_b_end:",
);

// SAFETY: the loops touch only their own counters and never return, so
// running them as a thread's entry is safe; the `_end` labels are only used
// as addresses.
unsafe extern "C" {
    safe fn spin_a(_: Word) -> !;
    safe fn spin_a_end();
    safe fn spin_b(_: Word) -> !;
    safe fn spin_b_end();
}

/// Yields until `counter` passes `above`. The spinner shares our priority, so
/// each yield lends it up to a time slice (10 ms): give up after ~5 s.
fn wait_for(counter: &AtomicU64, above: u64) -> bool {
    for _ in 0..500 {
        if counter.load(Ordering::Relaxed) > above {
            return true;
        }
        yield_now();
    }
    false
}

pub fn run(objects: &mut Objects) -> Outcome {
    let (a, a_end) = (spin_a as *const () as Word, spin_a_end as *const () as Word);
    let (b, b_end) = (spin_b as *const () as Word, spin_b_end as *const () as Word);
    // Our own priority, so that yielding lets it run.
    let tcb = threads::spawn(objects, spin_a, 0, 255, 0).doing("start the spinning thread")?;
    check(wait_for(&SPIN_A_COUNT, 0), "the thread never ran spin_a")?;

    let regs = tcb
        .read_registers(true)
        .doing("suspend and read the registers")?;
    let frozen = SPIN_A_COUNT.load(Ordering::Relaxed);
    for _ in 0..10 {
        yield_now();
    }
    let still = SPIN_A_COUNT.load(Ordering::Relaxed);
    println!("registers: suspended the thread at rip {:#x} (spin_a is {a:#x}..{b:#x}); count {frozen} then {still}", regs.rip);
    check(
        regs.rip >= a && regs.rip < a_end,
        "rip is not inside spin_a",
    )?;
    check(frozen == still, "the thread kept running after suspend")?;

    let mut moved = regs;
    moved.rip = b;
    tcb.write_registers(true, &moved)
        .doing("write rip and resume")?;
    check(wait_for(&SPIN_B_COUNT, 1000), "the thread never ran spin_b")?;
    let after = tcb.read_registers(true).doing("suspend and read again")?;
    let a_after = SPIN_A_COUNT.load(Ordering::Relaxed);
    println!(
        "registers: set rip to spin_b and resumed; it counted {} in spin_b, now at rip {:#x}; spin_a count stayed {a_after}",
        SPIN_B_COUNT.load(Ordering::Relaxed),
        after.rip
    );
    check(
        after.rip >= b && after.rip < b_end,
        "rip is not inside spin_b",
    )?;
    check(a_after == still, "spin_a ran again after the move")
}
