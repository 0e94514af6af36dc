//! Thread control blocks: configuration, registers, scheduling.

use crate::cap::{CNode, Endpoint, Notification, Page, Tcb, VSpace};
use crate::ipc::{self, get_mr};
use crate::sys::bitfield::{seL4_PrioProps_mcp as MCP, seL4_PrioProps_prio as PRIO};
use crate::sys::invocation as label;
use crate::{CPtr, Error, Word};

/// A thread's priority and the maximum it may give others (seL4 5.0.0 packs
/// both into one `seL4_PrioProps` word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priority {
    pub prio: u8,
    pub mcp: u8,
}

impl Priority {
    fn word(self) -> Word {
        PRIO.set(MCP.set(0, Word::from(self.mcp)), Word::from(self.prio))
    }
}

/// The registers of an x86_64 thread, in the kernel's transfer order
/// (`seL4_UserContext`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct UserContext {
    pub rip: Word,
    pub rsp: Word,
    pub rflags: Word,
    pub rax: Word,
    pub rbx: Word,
    pub rcx: Word,
    pub rdx: Word,
    pub rsi: Word,
    pub rdi: Word,
    pub rbp: Word,
    pub r8: Word,
    pub r9: Word,
    pub r10: Word,
    pub r11: Word,
    pub r12: Word,
    pub r13: Word,
    pub r14: Word,
    pub r15: Word,
    pub tls_base: Word,
}

impl UserContext {
    pub const WORDS: usize = size_of::<UserContext>() / size_of::<Word>();

    fn as_words(&self) -> [Word; Self::WORDS] {
        let r = self;
        [
            r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9,
            r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.tls_base,
        ]
    }

    fn from_words(w: &[Word; Self::WORDS]) -> Self {
        UserContext {
            rip: w[0],
            rsp: w[1],
            rflags: w[2],
            rax: w[3],
            rbx: w[4],
            rcx: w[5],
            rdx: w[6],
            rsi: w[7],
            rdi: w[8],
            rbp: w[9],
            r8: w[10],
            r9: w[11],
            r10: w[12],
            r11: w[13],
            r12: w[14],
            r13: w[15],
            r14: w[16],
            r15: w[17],
            tls_base: w[18],
        }
    }
}

/// Everything `Tcb::configure` sets.
#[derive(Clone, Copy, Debug)]
pub struct TcbConfig {
    /// Where faults are sent, as a capability address in the thread's CSpace
    /// (0: none).
    pub fault_endpoint: CPtr,
    pub priority: Priority,
    pub cspace: CNode,
    /// Guard for the CSpace root (a `seL4_CapData` word; 0: unchanged).
    pub cspace_data: Word,
    pub vspace: VSpace,
    pub ipc_buffer_addr: Word,
    pub ipc_buffer_frame: Page,
}

impl Tcb {
    pub fn configure(self, c: TcbConfig) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::TCBConfigure,
            &[c.cspace.0, c.vspace.0, c.ipc_buffer_frame.0],
            &[
                c.fault_endpoint,
                c.priority.word(),
                c.cspace_data,
                0,
                c.ipc_buffer_addr,
            ],
        )
        .map(drop)
    }

    pub fn set_space(
        self,
        fault_endpoint: CPtr,
        cspace: CNode,
        cspace_data: Word,
        vspace: VSpace,
    ) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::TCBSetSpace,
            &[cspace.0, vspace.0],
            &[fault_endpoint, cspace_data, 0],
        )
        .map(drop)
    }

    /// Sets the priority; `authority`'s maximum controlled priority must be
    /// at least `priority`.
    pub fn set_priority(self, authority: Tcb, priority: u8) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::TCBSetPriority,
            &[authority.0],
            &[Word::from(priority)],
        )
        .map(drop)
    }

    pub fn set_ipc_buffer(self, addr: Word, frame: Page) -> Result<(), Error> {
        ipc::invoke(self.0, label::TCBSetIPCBuffer, &[frame.0], &[addr]).map(drop)
    }

    pub fn bind_notification(self, notification: Notification) -> Result<(), Error> {
        ipc::invoke(self.0, label::TCBBindNotification, &[notification.0], &[]).map(drop)
    }

    pub fn suspend(self) -> Result<(), Error> {
        ipc::invoke(self.0, label::TCBSuspend, &[], &[]).map(drop)
    }

    pub fn resume(self) -> Result<(), Error> {
        ipc::invoke(self.0, label::TCBResume, &[], &[]).map(drop)
    }

    /// Reads all registers; `suspend` stops the thread first.
    pub fn read_registers(self, suspend: bool) -> Result<UserContext, Error> {
        let reply = ipc::invoke(
            self.0,
            label::TCBReadRegisters,
            &[],
            &[Word::from(suspend), UserContext::WORDS as Word],
        )?;
        let mut words = [0; UserContext::WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = if i < 4 { reply.mr[i] } else { get_mr(i) };
        }
        Ok(UserContext::from_words(&words))
    }

    /// Writes only rip (the first register of the kernel's order): all a
    /// redirection needs, in one message that fits the syscall registers.
    /// `resume` starts the thread afterwards (one stopped by
    /// [`Tcb::read_registers`]; a thread blocked on a fault is restarted by
    /// the fault's reply instead).
    pub fn write_rip(self, rip: Word, resume: bool) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::TCBWriteRegisters,
            &[],
            &[Word::from(resume), 1, rip],
        )
        .map(drop)
    }

    /// Writes rip, rsp and rflags (the first three registers of the
    /// kernel's order), the thread not resumed: what delivering an
    /// exception or an interrupt changes besides memory.
    pub fn write_frame(self, rip: Word, rsp: Word, rflags: Word) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::TCBWriteRegisters,
            &[],
            &[0, 3, rip, rsp, rflags],
        )
        .map(drop)
    }

    /// Reads only rip (the first register of the kernel's order), in one
    /// message that fits the syscall registers; the thread is not stopped.
    pub fn read_rip(self) -> Result<Word, Error> {
        ipc::invoke(self.0, label::TCBReadRegisters, &[], &[0, 1]).map(|reply| reply.mr[0])
    }

    /// Writes all registers; `resume` starts the thread afterwards.
    pub fn write_registers(self, resume: bool, regs: &UserContext) -> Result<(), Error> {
        let mut words = [0; 2 + UserContext::WORDS];
        words[0] = Word::from(resume);
        words[1] = UserContext::WORDS as Word;
        words[2..].copy_from_slice(&regs.as_words());
        ipc::invoke(self.0, label::TCBWriteRegisters, &[], &words).map(drop)
    }
}

/// A fault endpoint is named by its address in the faulting thread's CSpace.
impl From<Endpoint> for CPtr {
    fn from(e: Endpoint) -> CPtr {
        e.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_context_words_round_trip_in_kernel_order() {
        let mut words = [0; UserContext::WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = i as Word + 100;
        }
        let regs = UserContext::from_words(&words);
        assert_eq!(
            (regs.rip, regs.rsp, regs.rflags, regs.tls_base),
            (100, 101, 102, 118)
        );
        assert_eq!(regs.as_words(), words);
    }

    #[test]
    fn priority_packs_prio_low_and_mcp_above() {
        assert_eq!(
            Priority {
                prio: 0x12,
                mcp: 0x34
            }
            .word(),
            0x3412
        );
    }
}
