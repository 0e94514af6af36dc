//! The seam between the wedge's core and the world outside the guest's
//! address space.
//!
//! Everything the core cannot do on virtual state alone goes through
//! [`Backend`]: on seL4 each method is an IPC to the VMM server (or, for
//! `set_fs_base` and `cpuid`, a local operation of the seL4 glue); a second
//! backend running the guest as a Linux process implements the same trait
//! with system calls. The core never names seL4.

use crate::vcpu::Vcpu;

/// Why a backend operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The transport to the VMM failed (IPC error, closed pipe, ...).
    Transport,
    /// The VMM refused the request (e.g. a port the guest may not use).
    Refused,
    /// The VMM has stopped the guest (it exited or was shut down).
    Stopped,
}

/// Why the wedge asks the backend to stop the guest: the contract's enum,
/// one for the wedge and the VMM (`previrt_protocol::ShutdownReason`).
pub use previrt_protocol::ShutdownReason;

/// The operations the wedge's core needs from its environment.
pub trait Backend {
    /// `in` of `size` bytes (1, 2, 4) from `port`.
    fn port_in(&mut self, port: u16, size: u8) -> Result<u32, BackendError>;
    /// `out` of `size` bytes (1, 2, 4) to `port`.
    fn port_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), BackendError>;
    /// `outs`: `data.len() / size` elements to `port`, in order. One call per
    /// batch so a `rep outsb` of a string costs one IPC, not one per byte.
    fn port_out_string(&mut self, port: u16, size: u8, data: &[u8]) -> Result<(), BackendError> {
        for chunk in data.chunks(usize::from(size.max(1))) {
            let mut b = [0u8; 4];
            let n = chunk.len().min(4);
            b[..n].copy_from_slice(&chunk[..n]);
            self.port_out(port, size, u32::from_le_bytes(b))?;
        }
        Ok(())
    }
    /// `ins`: fills `buf` with `buf.len() / size` elements from `port`.
    fn port_in_string(&mut self, port: u16, size: u8, buf: &mut [u8]) -> Result<(), BackendError> {
        for chunk in buf.chunks_mut(usize::from(size.max(1))) {
            let v = self.port_in(port, size)?.to_le_bytes();
            let n = chunk.len().min(4);
            chunk.copy_from_slice(&v[..n]);
        }
        Ok(())
    }
    /// The guest loads CR3: switch the guest's address space (and flush the
    /// virtual TLB's non-global entries).
    fn load_cr3(&mut self, value: u64) -> Result<(), BackendError>;
    /// The guest invalidates the TLB entry for `address`.
    fn invlpg(&mut self, address: u64) -> Result<(), BackendError>;
    /// The guest writes CR0 (paging and write-protect policy live in the
    /// VMM's virtual TLB).
    fn write_cr0(&mut self, value: u64) -> Result<(), BackendError>;
    /// The guest writes CR4.
    fn write_cr4(&mut self, value: u64) -> Result<(), BackendError>;
    /// The guest halts. Returns when an interrupt is pending in
    /// `vcpu.pending` (with virtual IF clear, a backend may never return
    /// from this and stop the guest instead: the CPU would stay halted).
    fn halt(&mut self, vcpu: &Vcpu) -> Result<(), BackendError>;
    /// Sets the real FS base (on seL4: the TCB's TLS base register).
    fn set_fs_base(&mut self, base: u64) -> Result<(), BackendError>;
    /// The host CPU's raw `cpuid` for `leaf`/`subleaf` as `[eax, ebx, ecx,
    /// edx]`. `cpuid` is unprivileged, so a backend simply executes it; it is
    /// a method only to keep the core free of `unsafe` and testable.
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// The time-stamp counter (rdtsc sites are normally left native).
    fn rdtsc(&mut self) -> u64;
    /// Stops the guest for good.
    fn shutdown(&mut self, reason: ShutdownReason);
}
