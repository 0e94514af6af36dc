//! A real 16550 UART driven through an I/O port capability: output only,
//! polled, no interrupts. Every register access is a kernel invocation (no
//! `in`/`out` at user level on seL4), so a missing or wrong capability is an
//! error the caller sees, never a fault.

use core::fmt;

use crate::{Error, IoPort};

/// Register offsets from the UART's base port.
const THR: u16 = 0; // transmit holding (write); divisor low with DLAB
const IER: u16 = 1; // interrupt enable; divisor high with DLAB
const FCR: u16 = 2; // FIFO control (write)
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const SCR: u16 = 7;

const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;
/// FIFOs on and cleared, receive trigger at 14 bytes.
const FCR_FIFO_ON_CLEARED: u8 = 0xc7;
/// DTR and RTS; OUT2 stays low, so the UART never raises its IRQ line.
const MCR_DTR_RTS: u8 = 0x03;
const LSR_THRE: u8 = 0x20;
/// How long to wait for THRE before sending anyway: a real UART at 115200
/// baud empties a 16-byte FIFO in about 1.4 ms; one poll is a system call.
/// QEMU's UART takes a byte at once, so it never waits.
const THRE_POLLS: u32 = 100_000;
/// Written to the scratch register and read back to see a UART is there.
const PROBE: u8 = 0x5a;

/// Why the UART cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialError {
    /// The kernel refused an access to `port` (a missing capability, or one
    /// for other ports).
    Port { port: u16, error: Error },
    /// Nothing answers at `base`: its scratch register did not read back
    /// what was written, but `read` (an absent ISA port reads 0xff).
    Absent { base: u16, read: u8 },
}

impl fmt::Display for SerialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerialError::Port { port, error } => {
                write!(f, "the kernel refused access to port {port:#x}: {error}")
            }
            SerialError::Absent { base, read } => write!(
                f,
                "no 16550 answers at {base:#x} (its scratch register read back {read:#04x}, not {PROBE:#04x})"
            ),
        }
    }
}

/// A 16550 at `base`, reached through `ports` (which must cover
/// `base..=base + 7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialPort {
    ports: IoPort,
    base: u16,
}

impl SerialPort {
    /// Finds the UART and sets it up: 115200 baud, 8N1, FIFOs on, no
    /// interrupts.
    pub fn init(ports: IoPort, base: u16) -> Result<SerialPort, SerialError> {
        let port = SerialPort { ports, base };
        port.out(SCR, PROBE)?;
        let read = port.input(SCR)?;
        if read != PROBE {
            return Err(SerialError::Absent { base, read });
        }
        port.out(IER, 0)?;
        port.out(LCR, LCR_DLAB)?;
        port.out(THR, 1)?; // divisor 1: 115200 baud
        port.out(IER, 0)?;
        port.out(LCR, LCR_8N1)?;
        port.out(FCR, FCR_FIFO_ON_CLEARED)?;
        port.out(MCR, MCR_DTR_RTS)?;
        Ok(port)
    }

    /// Sends one byte once the transmitter has room.
    pub fn write_byte(&self, byte: u8) -> Result<(), SerialError> {
        for _ in 0..THRE_POLLS {
            if self.input(LSR)? & LSR_THRE != 0 {
                break;
            }
        }
        self.out(THR, byte)
    }

    /// A UART another part of the task already set up with [`Self::init`].
    pub const fn attached(ports: IoPort, base: u16) -> SerialPort {
        SerialPort { ports, base }
    }

    /// The capability the UART is reached through.
    pub const fn ports(&self) -> IoPort {
        self.ports
    }

    /// The UART's base port.
    pub const fn base(&self) -> u16 {
        self.base
    }

    fn out(&self, register: u16, value: u8) -> Result<(), SerialError> {
        let port = self.base.wrapping_add(register);
        self.ports
            .out8(port, value)
            .map_err(|error| SerialError::Port { port, error })
    }

    fn input(&self, register: u16) -> Result<u8, SerialError> {
        let port = self.base.wrapping_add(register);
        self.ports
            .in8(port)
            .map_err(|error| SerialError::Port { port, error })
    }
}

/// What QEMU's one-port console (`isa-debugcon`) reads back: its presence.
const DEBUGCON_READBACK: u8 = 0xe9;

/// QEMU's one-port console (`isa-debugcon`): each byte written to its one
/// port leaves the machine at once on a line of its own; nothing to set up,
/// no status to poll. A system of several guests gives each guest's console
/// and each VMM's lines one, since a machine has at most four 16550s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugCon {
    ports: IoPort,
    port: u16,
}

impl DebugCon {
    /// Finds the console at `port` (reached through `ports`).
    pub fn open(ports: IoPort, port: u16) -> Result<DebugCon, SerialError> {
        let read = ports
            .in8(port)
            .map_err(|error| SerialError::Port { port, error })?;
        if read != DEBUGCON_READBACK {
            return Err(SerialError::Absent { base: port, read });
        }
        Ok(DebugCon { ports, port })
    }

    /// A console another part of the task already opened.
    pub const fn attached(ports: IoPort, port: u16) -> DebugCon {
        DebugCon { ports, port }
    }

    /// Sends one byte.
    pub fn write_byte(&self, byte: u8) -> Result<(), SerialError> {
        self.ports
            .out8(self.port, byte)
            .map_err(|error| SerialError::Port {
                port: self.port,
                error,
            })
    }
}
