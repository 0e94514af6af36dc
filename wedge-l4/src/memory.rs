//! Access to guest memory and the guest's general registers.
//!
//! On seL4 the wedge shares the guest's address space, so its
//! [`GuestMemory`] is a plain load/store (a fault on an unmapped page goes to
//! the VMM server like any guest fault). Tests use a byte array. The trait
//! keeps the emulator free of raw pointers and of `unsafe`.

/// A guest memory access that failed (outside the memory the implementation
/// can reach).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemError {
    /// The first address of the failed access.
    pub address: u64,
}

/// Guest-virtual memory as the wedge sees it.
pub trait GuestMemory {
    /// Fills `buf` from guest-virtual `address`.
    fn read(&mut self, address: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Stores `data` at guest-virtual `address`.
    fn write(&mut self, address: u64, data: &[u8]) -> Result<(), MemError>;
}

/// Reads a little-endian value of `size` (1..8) bytes.
pub(crate) fn read_sized(
    mem: &mut dyn GuestMemory,
    address: u64,
    size: u8,
) -> Result<u64, MemError> {
    let mut b = [0u8; 8];
    let n = usize::from(size.min(8));
    mem.read(address, &mut b[..n])?;
    Ok(u64::from_le_bytes(b))
}

/// Writes the low `size` (1..8) bytes of `value`, little-endian.
pub(crate) fn write_sized(
    mem: &mut dyn GuestMemory,
    address: u64,
    value: u64,
    size: u8,
) -> Result<(), MemError> {
    let n = usize::from(size.min(8));
    mem.write(address, &value.to_le_bytes()[..n])
}

/// The guest's general registers, RIP and the real RFLAGS, as saved by the
/// wedge's entry stub.
///
/// `gpr` is indexed by the x86 register number (the ModRM/REX encoding:
/// 0 = rax, 1 = rcx, 2 = rdx, 3 = rbx, 4 = rsp, 5 = rbp, 6 = rsi, 7 = rdi,
/// 8..15 = r8..r15), which is what the decoder produces. `rsp` is the guest's
/// stack pointer *as at the site* (the entry stub removes the return address
/// its `call` pushed). `#[repr(C)]` because the seL4 entry stub saves into it
/// from assembly.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegs {
    /// General registers by encoding number.
    pub gpr: [u64; 16],
    /// Instruction pointer; on entry, the site's address.
    pub rip: u64,
    /// The real RFLAGS (arithmetic flags, TF, DF, ...). IF and IOPL here are
    /// the real ones, which the guest never sees; the virtual ones are in
    /// [`crate::vcpu::Vcpu::rflags`].
    pub rflags: u64,
}

/// Register numbers, for readability.
pub mod reg {
    pub const RAX: u8 = 0;
    pub const RCX: u8 = 1;
    pub const RDX: u8 = 2;
    pub const RBX: u8 = 3;
    pub const RSP: u8 = 4;
    pub const RBP: u8 = 5;
    pub const RSI: u8 = 6;
    pub const RDI: u8 = 7;
    pub const R11: u8 = 11;
}

impl GuestRegs {
    /// Register `n` (0..15; higher numbers wrap, the decoder never makes them).
    pub fn get(&self, n: u8) -> u64 {
        self.gpr[usize::from(n & 15)]
    }

    /// Sets register `n` to `v`.
    pub fn set(&mut self, n: u8, v: u64) {
        self.gpr[usize::from(n & 15)] = v;
    }

    /// The stack pointer.
    pub fn rsp(&self) -> u64 {
        self.get(reg::RSP)
    }

    /// Sets the stack pointer.
    pub fn set_rsp(&mut self, v: u64) {
        self.set(reg::RSP, v);
    }

    /// Writes a result of `size` bytes to register `n` with x86 rules: 8 and
    /// 4 byte writes replace the register (a 32-bit write zero-extends),
    /// 2 and 1 byte writes keep the upper bits.
    pub fn write_sized(&mut self, n: u8, value: u64, size: u8) {
        let old = self.get(n);
        let new = match size {
            1 => (old & !0xff) | (value & 0xff),
            2 => (old & !0xffff) | (value & 0xffff),
            4 => value & 0xffff_ffff,
            _ => value,
        };
        self.set(n, new);
    }
}
