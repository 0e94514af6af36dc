//! The task's console: text lines on COM1, written through a 16550 driver
//! over an I/O-port capability the task holds ([`crate::serial`]).
//!
//! The shipped kernel is a release build with no debug system calls (a
//! thread that could call `seL4_DebugPutChar` without a capability could
//! forge any task's output, and `seL4_DebugHalt` would stop the machine), so
//! a task prints only when it holds the ports: a root task takes them from
//! its all-ports capability, other tasks from the slot their spec gives
//! them. Until [`init`] succeeds, output is dropped.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::serial::{DebugCon, SerialError, SerialPort};
use crate::IoPort;

/// The console's capability slot, kind and base port, packed as
/// `slot << 17 | debugcon << 16 | base`; 0 while there is none. One word,
/// so a second thread of the task (the VMM's interrupt thread) sees either
/// no console or a whole one.
static CONSOLE: AtomicU64 = AtomicU64::new(0);
const DEBUGCON_BIT: u64 = 1 << 16;

/// COM1's base port: where every task's console goes.
pub const COM1_BASE: u16 = 0x3f8;

/// Sets up the 16550 at `base` (reached through `ports`) as this task's
/// console. On failure the console stays silent and the error says why.
pub fn init(ports: IoPort, base: u16) -> Result<(), SerialError> {
    let port = SerialPort::init(ports, base)?;
    let packed = (port.ports().0 << 17) | u64::from(base);
    CONSOLE.store(packed, Ordering::Release);
    Ok(())
}

/// Sets up QEMU's one-port console at `port` as this task's console
/// ([`DebugCon`]).
pub fn init_debugcon(ports: IoPort, port: u16) -> Result<(), SerialError> {
    DebugCon::open(ports, port)?;
    CONSOLE.store(
        (ports.0 << 17) | DEBUGCON_BIT | u64::from(port),
        Ordering::Release,
    );
    Ok(())
}

/// Where the console's bytes go.
enum Sink {
    Uart(SerialPort),
    DebugCon(DebugCon),
}

impl Sink {
    fn write_byte(&self, byte: u8) -> Result<(), SerialError> {
        match self {
            Sink::Uart(port) => port.write_byte(byte),
            Sink::DebugCon(port) => port.write_byte(byte),
        }
    }
}

fn console() -> Option<Sink> {
    let packed = CONSOLE.load(Ordering::Acquire);
    if packed == 0 {
        return None;
    }
    let (ports, base) = (IoPort(packed >> 17), packed as u16);
    Some(if packed & DEBUGCON_BIT != 0 {
        Sink::DebugCon(DebugCon::attached(ports, base))
    } else {
        Sink::Uart(SerialPort::attached(ports, base))
    })
}

/// Sends `bytes` to the console, each `\n` as `\r\n` if `crlf`; nothing
/// without a console.
fn send(bytes: &[u8], crlf: bool) -> Result<(), SerialError> {
    let Some(port) = console() else {
        return Ok(());
    };
    for &b in bytes {
        if crlf && b == b'\n' {
            port.write_byte(b'\r')?;
        }
        port.write_byte(b)?;
    }
    Ok(())
}

/// Writes `bytes` to the console exactly as they are (no line-end
/// translation); dropped without a console.
pub fn write_bytes(bytes: &[u8]) {
    let _ = send(bytes, false);
}

/// A `fmt::Write` sink for the console. A line ends `\r\n` on the wire, as
/// a terminal expects.
#[derive(Debug, Default, Clone, Copy)]
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        send(s.as_bytes(), true).map_err(|_| fmt::Error)
    }
}

/// `print!` on the task's console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::debug::Console, format_args!($($arg)*));
    }};
}

/// `println!` on the task's console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{
        $crate::print!($($arg)*);
        $crate::print!("\n");
    }};
}
