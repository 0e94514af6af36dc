//! What the dispatch ([`crate::guest`]) needs from the machine it runs on:
//! guest time and the real timer behind it, the guest thread's instruction
//! pointer, a saved reply for a halted guest, the guest's real address
//! space ([`Mapper`]) and its console ([`TxSink`]). On seL4 the shell
//! implements it with a TCB, the real PIT and frame capabilities; the host
//! tests with a model.

use vmm_devices::uart16550::TxSink;
use wedge_l4::memory::GuestRegs;

use crate::views::View;
use crate::vtlb::Mapper;

/// An operation on the machine failed (the dispatch ends the guest with a
/// stated reason; the platform may log more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformError;

pub trait Platform {
    /// Makes the vTLB's mappings real.
    type Mapper: Mapper;
    /// Where the guest's UART bytes go.
    type Console: TxSink;

    /// Guest time now, in PIT input ticks (1,193,182 Hz); never runs
    /// backwards.
    fn now(&mut self) -> u64;
    /// Whether the timer behind guest time runs (the guest programmed its
    /// PIT to count periodically).
    fn timer_running(&self) -> bool;
    /// Runs the timer with `period` input ticks, or stops it (`None`).
    fn set_timer_period(&mut self, period: Option<u32>);
    /// A free-running cycle counter, for statistics only.
    fn cycles(&self) -> u64;

    /// The guest thread's instruction pointer (it is not running: the VMM
    /// has the CPU).
    fn guest_rip(&mut self) -> Result<u64, PlatformError>;
    /// Moves the guest thread's next instruction to `rip`, without
    /// restarting it: a thread waiting for the VMM's reply starts there when
    /// the reply comes.
    fn set_guest_rip(&mut self, rip: u64) -> Result<(), PlatformError>;
    /// Keeps the reply to the message being served, to answer later
    /// ([`Platform::answer_saved`]).
    fn save_reply(&mut self) -> Result<(), PlatformError>;
    /// Answers the saved reply (status Ok, value 0): a halted wedge goes on.
    fn answer_saved(&mut self);
    /// Answers the saved reply with an empty message: a thread halted at a
    /// fault restarts with the registers written meanwhile.
    fn resume_saved(&mut self);

    /// Trap-and-emulate: the guest thread's registers and its TLS base.
    fn read_registers(&mut self) -> Result<(GuestRegs, u64), PlatformError>;
    /// Trap-and-emulate: writes them back.
    fn write_registers(&mut self, regs: &GuestRegs, tls_base: u64) -> Result<(), PlatformError>;
    /// Trap-and-emulate: writes only rip, rsp and rflags.
    fn write_frame(&mut self, rip: u64, rsp: u64, rflags: u64) -> Result<(), PlatformError>;
    /// Moves the guest thread into `view` (its VSpace and CSpace, and the
    /// fault endpoint's address there); the thread is not running.
    fn set_view(&mut self, view: View) -> Result<(), PlatformError>;
    /// Starts the guest thread (waiting for the VMM's answer to a call)
    /// with these registers and TLS base (FS base), cancelling the call.
    fn start_user(&mut self, regs: &GuestRegs, fs_base: u64) -> Result<(), PlatformError>;
    /// What `cpuid` says on the real CPU (the emulator filters it).
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4];

    /// A line for the VMM's log.
    fn log(&mut self, line: core::fmt::Arguments);
}
