//! Message passing: the IPC buffer of the current thread, invocations, and
//! the endpoint and notification system calls.
//!
//! The kernel points the GS base at the current thread's IPC buffer on every
//! return to user level, so the buffer is reached through `%gs` as libsel4
//! does; no thread needs to know its buffer's address.

use core::mem::offset_of;

use crate::sys::syscall::{SysCall, SysNBRecv, SysRecv, SysReply, SysReplyRecv, SysSend};
use crate::sys::syscalls::{raw, Registers};
use crate::sys::{IpcBuffer, MessageInfo, Word};
use crate::{CPtr, Error};

/// Message registers that travel in CPU registers; the rest are in the buffer.
const REGISTER_MRS: usize = 4;
const MSG: usize = offset_of!(IpcBuffer, msg);
const CAPS: usize = offset_of!(IpcBuffer, caps_or_badges);
const MAX_LENGTH: usize = crate::sys::constants::seL4_MsgMaxLength as usize;
const MAX_EXTRA_CAPS: usize = crate::sys::constants::seL4_MsgMaxExtraCaps as usize;

/// The badge of a received message (the sender's capability's badge).
pub type Badge = Word;

/// Writes word `index` of the current thread's IPC buffer (counted in words).
fn buffer_write(byte_offset: usize, value: Word) {
    // SAFETY: seL4 keeps GS based at the current thread's IPC buffer, which is
    // mapped read-write for the whole life of the thread; callers pass
    // offsets inside the 1 KiB buffer (checked against the layout constants).
    unsafe {
        core::arch::asm!("mov qword ptr gs:[{o}], {v}", o = in(reg) byte_offset, v = in(reg) value,
            options(nostack, preserves_flags));
    }
}

fn buffer_read(byte_offset: usize) -> Word {
    let value: Word;
    // SAFETY: as in `buffer_write`; reading the buffer has no side effects.
    unsafe {
        core::arch::asm!("mov {v}, qword ptr gs:[{o}]", o = in(reg) byte_offset, v = out(reg) value,
            options(nostack, preserves_flags, readonly));
    }
    value
}

/// Sets message register `i` that lives in the IPC buffer.
pub fn set_mr(i: usize, value: Word) {
    if i < MAX_LENGTH {
        buffer_write(MSG + 8 * i, value);
    }
}

/// Reads message register `i` from the IPC buffer.
pub fn get_mr(i: usize) -> Word {
    if i < MAX_LENGTH {
        buffer_read(MSG + 8 * i)
    } else {
        0
    }
}

fn set_cap(i: usize, cap: CPtr) {
    if i < MAX_EXTRA_CAPS {
        buffer_write(CAPS + 8 * i, cap);
    }
}

/// A received or to-be-sent message: label, length, the first message
/// registers and the badge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub info: MessageInfo,
    pub badge: Badge,
    /// Message registers 0–3 (from CPU registers); the rest: [`get_mr`].
    pub mr: [Word; REGISTER_MRS],
}

impl Message {
    pub fn label(&self) -> u64 {
        self.info.label()
    }

    /// Message register `i`, wherever it travelled.
    pub fn mr(&self, i: usize) -> Word {
        if i < REGISTER_MRS {
            self.mr[i]
        } else {
            get_mr(i)
        }
    }
}

/// Lays out `words` as message registers and `caps` as extra capabilities,
/// returning the CPU-register part.
fn marshal(label: u64, caps: &[CPtr], words: &[Word]) -> Registers {
    let mut regs = Registers::default();
    for (i, &cap) in caps.iter().enumerate() {
        set_cap(i, cap);
    }
    for (i, &w) in words.iter().enumerate() {
        if i < REGISTER_MRS {
            regs.mr[i] = w;
        } else {
            set_mr(i, w);
        }
    }
    regs.info = MessageInfo::new(label, 0, caps.len() as u64, words.len() as u64);
    regs
}

fn unmarshal(regs: Registers) -> Message {
    Message {
        info: regs.info,
        badge: regs.cap_or_badge,
        mr: regs.mr,
    }
}

/// Invokes kernel object `cap` with `label`, extra capabilities and message
/// words; returns the reply, or the kernel's error.
pub fn invoke(cap: CPtr, label: u64, caps: &[CPtr], words: &[Word]) -> Result<Message, Error> {
    let mut regs = marshal(label, caps, words);
    regs.cap_or_badge = cap;
    // SAFETY: Call on a capability is always a valid system call; the kernel
    // only touches this thread's IPC buffer, which the thread owns.
    let reply = unmarshal(unsafe { raw(SysCall, regs) });
    match Error::from_label(reply.label()) {
        None => Ok(reply),
        Some(e) => Err(e),
    }
}

/// `seL4_Call` on an endpoint: send and wait for the reply.
pub fn call(endpoint: CPtr, label: u64, words: &[Word]) -> Message {
    let mut regs = marshal(label, &[], words);
    regs.cap_or_badge = endpoint;
    // SAFETY: see `invoke`.
    unmarshal(unsafe { raw(SysCall, regs) })
}

/// `seL4_Send`: send without waiting for a reply.
pub fn send(endpoint: CPtr, label: u64, words: &[Word]) {
    let mut regs = marshal(label, &[], words);
    regs.cap_or_badge = endpoint;
    // SAFETY: see `invoke`.
    unsafe {
        raw(SysSend, regs);
    }
}

/// `seL4_Recv`: wait for a message (or a notification's signal).
pub fn recv(source: CPtr) -> Message {
    let regs = Registers {
        cap_or_badge: source,
        ..Registers::default()
    };
    // SAFETY: see `invoke`.
    unmarshal(unsafe { raw(SysRecv, regs) })
}

/// `seL4_NBRecv`: receive if something is waiting; `badge` 0 and label 0 if not.
pub fn poll(source: CPtr) -> Message {
    let regs = Registers {
        cap_or_badge: source,
        ..Registers::default()
    };
    // SAFETY: see `invoke`.
    unmarshal(unsafe { raw(SysNBRecv, regs) })
}

/// `seL4_Reply`: answer the last caller (or fault) this thread received.
pub fn reply(label: u64, words: &[Word]) {
    let regs = marshal(label, &[], words);
    // SAFETY: see `invoke`.
    unsafe {
        raw(SysReply, regs);
    }
}

/// `seL4_ReplyRecv`: reply, then wait on `source`, in one system call.
pub fn reply_recv(source: CPtr, label: u64, words: &[Word]) -> Message {
    let mut regs = marshal(label, &[], words);
    regs.cap_or_badge = source;
    // SAFETY: see `invoke`.
    unmarshal(unsafe { raw(SysReplyRecv, regs) })
}
