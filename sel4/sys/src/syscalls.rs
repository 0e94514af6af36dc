//! The x86_64 `syscall` convention of seL4 5.0.0.
//!
//! rdx holds the syscall number, rdi the capability (or badge on return), rsi
//! the message info, r10/r8/r9/r15 message registers 0–3. The kernel clobbers
//! rcx and r11 and does not preserve rsp: libsel4 parks rsp in rbx, which
//! Rust's `asm!` may not name, so r12 is used.

use crate::syscall::SysYield;
use crate::{MessageInfo, Word};

/// Registers in and out of one system call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    /// rdi: the capability invoked, or on return the sender's badge.
    pub cap_or_badge: Word,
    /// rsi: the message info.
    pub info: MessageInfo,
    /// r10, r8, r9, r15: message registers 0–3.
    pub mr: [Word; 4],
}

/// Issues system call `number` with `regs`, returning what the kernel left in
/// the same registers.
///
/// # Safety
/// The call must be a valid seL4 system call for the current thread; the
/// kernel may read and write the thread's IPC buffer.
#[inline(always)]
pub unsafe fn raw(number: i64, regs: Registers) -> Registers {
    let mut out = regs;
    let mut info = regs.info.0;
    // SAFETY: the caller guarantees a valid syscall; every register the kernel
    // may change is declared as an output or clobber, and rsp is restored from
    // r12 before Rust code runs again.
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "syscall",
            "mov rsp, r12",
            inout("rdx") number => _,
            inout("rdi") regs.cap_or_badge => out.cap_or_badge,
            inout("rsi") info,
            inout("r10") regs.mr[0] => out.mr[0],
            inout("r8") regs.mr[1] => out.mr[1],
            inout("r9") regs.mr[2] => out.mr[2],
            inout("r15") regs.mr[3] => out.mr[3],
            out("rcx") _,
            out("r11") _,
            out("r12") _,
        );
    }
    out.info = MessageInfo(info);
    out
}

/// Gives up the rest of the current time slice.
pub fn yield_now() {
    // SAFETY: Yield takes no arguments and touches no memory of the caller.
    unsafe {
        raw(SysYield, Registers::default());
    }
}
