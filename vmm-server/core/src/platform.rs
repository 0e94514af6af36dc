//! What the dispatch ([`crate::guest`]) needs from the machine it runs on:
//! guest time and the real timer behind it, the guest thread's instruction
//! pointer, a saved reply for a halted guest, the guest's real address
//! space ([`Mapper`]) and its console ([`TxSink`]). On seL4 the shell
//! implements it with a TCB, the real PIT and frame capabilities; the host
//! tests with a model.

use vmm_devices::uart16550::TxSink;

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
    /// Answers the saved reply (status Ok, value 0).
    fn answer_saved(&mut self);

    /// A line for the VMM's log.
    fn log(&mut self, line: core::fmt::Arguments);
}
