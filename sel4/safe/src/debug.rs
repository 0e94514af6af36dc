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

use crate::serial::{SerialError, SerialPort};
use crate::IoPort;

/// The console's capability slot and base port, packed as
/// `slot << 16 | base`; 0 while there is none. One word, so a second thread
/// of the task (the VMM's interrupt thread) sees either no console or a
/// whole one.
static CONSOLE: AtomicU64 = AtomicU64::new(0);

/// COM1's base port: where every task's console goes.
pub const COM1_BASE: u16 = 0x3f8;

/// Sets up the 16550 at `base` (reached through `ports`) as this task's
/// console. On failure the console stays silent and the error says why.
pub fn init(ports: IoPort, base: u16) -> Result<(), SerialError> {
    let port = SerialPort::init(ports, base)?;
    let packed = (port.ports().0 << 16) | u64::from(base);
    CONSOLE.store(packed, Ordering::Release);
    Ok(())
}

fn console() -> Option<SerialPort> {
    let packed = CONSOLE.load(Ordering::Acquire);
    if packed == 0 {
        return None;
    }
    Some(SerialPort::attached(IoPort(packed >> 16), packed as u16))
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
