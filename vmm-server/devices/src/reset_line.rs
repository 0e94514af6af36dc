//! The PC's reset line as the keyboard controller (8042) drives it: the
//! command `0xfe` written to its command port `0x64` pulses the CPU's
//! reset. Linux reboots this way when the firmware gives it no other
//! (`reboot=k`, the first method it tries without ACPI).
//!
//! Only the reset is modelled, not the controller: its ports read as all
//! ones, as an absent device's do, so a guest probing for a keyboard
//! controller still finds none (Linux: `i8042: No controller found`).

use crate::{widen, AccessSize, PortDevice, Ticks};

/// The 8042's command (write) and status (read) port.
pub const COMMAND_PORT: u16 = 0x64;
/// The command that pulses the reset line (the output port's bit 0 low).
pub const PULSE_RESET: u8 = 0xfe;

/// The reset line, seen through the keyboard controller's command port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetLine {
    /// Guest time of the first reset pulse.
    pulsed_at: Option<Ticks>,
}

impl ResetLine {
    pub const fn new() -> Self {
        Self { pulsed_at: None }
    }

    /// When the guest first asked for a reset, if it has: the machine
    /// resets there, so later writes cannot happen on real hardware.
    pub const fn reset_requested(&self) -> Option<Ticks> {
        self.pulsed_at
    }
}

impl PortDevice for ResetLine {
    /// No controller: reads float high.
    fn read(&mut self, _port: u16, size: AccessSize, _now: Ticks) -> u32 {
        widen(0xff, size)
    }

    /// Only a byte `0xfe` on the command port pulses reset; any other
    /// command goes to a controller that is not there.
    fn write(&mut self, port: u16, size: AccessSize, value: u32, now: Ticks) {
        let byte = (value & size.mask() & 0xff) as u8;
        if port == COMMAND_PORT && byte == PULSE_RESET && self.pulsed_at.is_none() {
            self.pulsed_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_pulse_command_requests_a_reset_once() {
        let mut line = ResetLine::new();
        assert_eq!(line.reset_requested(), None);
        line.write(COMMAND_PORT, AccessSize::Byte, 0xad, 5);
        assert_eq!(line.reset_requested(), None, "another command");
        line.write(0x60, AccessSize::Byte, 0xfe, 6);
        assert_eq!(line.reset_requested(), None, "the data port");
        line.write(COMMAND_PORT, AccessSize::Byte, 0x1fe, 7);
        assert_eq!(line.reset_requested(), Some(7), "the low byte counts");
        line.write(COMMAND_PORT, AccessSize::Byte, 0xfe, 9);
        assert_eq!(line.reset_requested(), Some(7), "the first pulse wins");
    }

    #[test]
    fn the_absent_controller_reads_as_ones() {
        let mut line = ResetLine::new();
        assert_eq!(line.read(COMMAND_PORT, AccessSize::Byte, 0), 0xff);
        assert_eq!(line.read(0x60, AccessSize::Word, 0), 0xffff);
    }

    proptest! {
        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((any::<bool>(), any::<u16>(), any::<u32>()), 0..50)) {
            let mut line = ResetLine::new();
            for (is_read, port, value) in ops {
                if is_read {
                    prop_assert_eq!(line.read(port, AccessSize::Byte, 0), 0xff);
                } else {
                    line.write(port, AccessSize::Byte, value, 0);
                    let pulsed = port == COMMAND_PORT && value & 0xff == 0xfe;
                    prop_assert!(!pulsed || line.reset_requested().is_some());
                }
            }
        }
    }
}
