//! Output on the kernel's debug console (a debug build's `seL4_DebugPutChar`).

use core::fmt;

/// A `fmt::Write` sink that prints through the kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            crate::sys::syscalls::debug_put_char(b);
        }
        Ok(())
    }
}

/// `print!` on the kernel console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::debug::Console, format_args!($($arg)*));
    }};
}

/// `println!` on the kernel console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{
        $crate::print!($($arg)*);
        $crate::print!("\n");
    }};
}
