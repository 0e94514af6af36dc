//! Test fixtures: a byte-array guest memory, a recording mock backend, a
//! guest with an IDT, and a section builder.

use crate::backend::{Backend, BackendError, ShutdownReason};
use crate::memory::{GuestMemory, GuestRegs, MemError};
use crate::vcpu::Vcpu;
use afterburn_format::{self as fmt, Record};

/// Guest memory: 64 KiB from address 0.
pub struct ByteMem(pub Vec<u8>);

impl ByteMem {
    fn range(&self, address: u64, n: usize) -> Result<core::ops::Range<usize>, MemError> {
        let start = usize::try_from(address).map_err(|_| MemError { address })?;
        let end = start.checked_add(n).ok_or(MemError { address })?;
        if end > self.0.len() {
            return Err(MemError { address });
        }
        Ok(start..end)
    }

    pub fn qwords(&self, address: u64, n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| {
                let a = address as usize + i * 8;
                u64::from_le_bytes(self.0[a..a + 8].try_into().unwrap())
            })
            .collect()
    }

    pub fn bytes_mut(&mut self, address: u64, n: usize) -> &mut [u8] {
        &mut self.0[address as usize..address as usize + n]
    }
}

impl GuestMemory for ByteMem {
    fn read(&mut self, address: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let r = self.range(address, buf.len())?;
        buf.copy_from_slice(&self.0[r]);
        Ok(())
    }
    fn write(&mut self, address: u64, data: &[u8]) -> Result<(), MemError> {
        let r = self.range(address, data.len())?;
        self.0[r].copy_from_slice(data);
        Ok(())
    }
}

/// One backend call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    PortIn(u16, u8),
    PortOut(u16, u8, u32),
    PortOutString(u16, u8, Vec<u8>),
    PortInString(u16, u8, usize),
    LoadCr3(u64),
    Invlpg(u64),
    WriteCr0(u64),
    WriteCr4(u64),
    Halt,
    SetFsBase(u64),
    Cpuid(u32, u32),
    Rdtsc,
    Shutdown(ShutdownReason),
}

/// Records every call; `port_in` returns `in_value`, `halt` raises
/// `wake_vector` (if any) the way the VMM server's timer would.
#[derive(Default)]
pub struct Mock {
    pub calls: Vec<Call>,
    pub in_value: u32,
    pub wake_vector: Option<u8>,
}

impl Backend for Mock {
    fn port_in(&mut self, port: u16, size: u8) -> Result<u32, BackendError> {
        self.calls.push(Call::PortIn(port, size));
        Ok(self.in_value)
    }
    fn port_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), BackendError> {
        self.calls.push(Call::PortOut(port, size, value));
        Ok(())
    }
    fn port_out_string(&mut self, port: u16, size: u8, data: &[u8]) -> Result<(), BackendError> {
        self.calls
            .push(Call::PortOutString(port, size, data.to_vec()));
        Ok(())
    }
    fn port_in_string(&mut self, port: u16, size: u8, buf: &mut [u8]) -> Result<(), BackendError> {
        self.calls.push(Call::PortInString(port, size, buf.len()));
        for (i, b) in buf.iter_mut().enumerate() {
            *b = i as u8;
        }
        Ok(())
    }
    fn load_cr3(&mut self, value: u64) -> Result<(), BackendError> {
        self.calls.push(Call::LoadCr3(value));
        Ok(())
    }
    fn invlpg(&mut self, address: u64) -> Result<(), BackendError> {
        self.calls.push(Call::Invlpg(address));
        Ok(())
    }
    fn write_cr0(&mut self, value: u64) -> Result<(), BackendError> {
        self.calls.push(Call::WriteCr0(value));
        Ok(())
    }
    fn write_cr4(&mut self, value: u64) -> Result<(), BackendError> {
        self.calls.push(Call::WriteCr4(value));
        Ok(())
    }
    fn halt(&mut self, vcpu: &Vcpu) -> Result<(), BackendError> {
        self.calls.push(Call::Halt);
        if let Some(v) = self.wake_vector {
            vcpu.raise(v);
        }
        Ok(())
    }
    fn set_fs_base(&mut self, base: u64) -> Result<(), BackendError> {
        self.calls.push(Call::SetFsBase(base));
        Ok(())
    }
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        self.calls.push(Call::Cpuid(leaf, subleaf));
        [leaf, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]
    }
    fn rdtsc(&mut self) -> u64 {
        self.calls.push(Call::Rdtsc);
        0x1234_5678_9abc_def0
    }
    fn shutdown(&mut self, reason: ShutdownReason) {
        self.calls.push(Call::Shutdown(reason));
    }
}

/// Where the test guest's IDT is.
pub const IDT: u64 = 0x1000;

/// The handler address the test IDT gives `vector`.
pub fn handler(vector: u8) -> u64 {
    0x1_2345_0000 + u64::from(vector) * 0x10
}

/// A vCPU at the PV entry with a full IDT of present interrupt gates
/// (trap gate for vector 3), 64 KiB of memory, rsp at 0x8000.
pub fn guest() -> (Vcpu, GuestRegs, ByteMem) {
    let mut mem = ByteMem(vec![0; 0x10000]);
    for v in 0..=255u8 {
        let h = handler(v);
        let g = IDT as usize + usize::from(v) * 16;
        let b = &mut mem.0[g..g + 16];
        b[0..2].copy_from_slice(&(h as u16).to_le_bytes());
        b[2..4].copy_from_slice(&0x08u16.to_le_bytes());
        b[5] = if v == 3 { 0xef } else { 0x8e };
        b[6..8].copy_from_slice(&((h >> 16) as u16).to_le_bytes());
        b[8..12].copy_from_slice(&((h >> 32) as u32).to_le_bytes());
    }
    let mut vcpu = Vcpu::at_pv_entry(0x5000);
    vcpu.idtr_base = IDT;
    vcpu.idtr_limit = 256 * 16 - 1;
    let mut regs = GuestRegs::default();
    regs.set_rsp(0x8000);
    regs.rflags = 0x202; // the real flags: seL4 runs user code with IF set
    (vcpu, regs, mem)
}

/// Builds a note section of one chunk (one note) per slice of records.
pub fn section(chunks: &[&[Record]]) -> Vec<u8> {
    let mut sec = Vec::new();
    for records in chunks {
        fmt::encode_chunk_note(records, &mut sec);
    }
    sec
}
