//! The PC chipset's system control port B, port `0x61`: the speaker's
//! enable bits and a view of the 8254's channel 2, which the PC uses as a
//! one-shot timer for calibration (Linux's `pit_calibrate_tsc` and
//! `quick_pit_calibrate` gate channel 2 on here, run it in mode 0 and poll
//! its output in bit 5).
//!
//! | bit | read | write |
//! |-----|------|-------|
//! | 0 | channel 2's gate | channel 2's gate |
//! | 1 | speaker data enable | speaker data enable |
//! | 2, 3 | parity and I/O-check NMI enables (kept) | kept |
//! | 4 | the refresh toggle: flips every [`REFRESH_TOGGLE_TICKS`] | ignored |
//! | 5 | channel 2's output | ignored |
//! | 6, 7 | I/O-check and parity error: 0 (never happen) | ignored |
//!
//! The port is answered by the [`crate::Pit8254`], which owns channel 2;
//! this is the register's own state.

use crate::Ticks;

/// The port.
pub const SYSTEM_CONTROL_B_PORT: u16 = 0x61;
/// The refresh request toggle's half period: 15.085 µs on a PC (what QEMU
/// models too), 18 ticks of the PIT's input clock (17.999).
pub const REFRESH_TOGGLE_TICKS: Ticks = 18;

/// The bits a write keeps: the gate, the speaker and the two NMI enables.
const WRITABLE: u8 = 0x0f;
const GATE: u8 = 0x01;
const REFRESH: u8 = 0x10;
const OUT2: u8 = 0x20;

/// Port 0x61's writable bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemControlB {
    bits: u8,
}

impl SystemControlB {
    /// At reset: everything off, channel 2's gate low.
    pub const fn new() -> Self {
        Self { bits: 0 }
    }

    /// The port's value at `now`, with channel 2's output `out2`.
    pub const fn read(&self, out2: bool, now: Ticks) -> u8 {
        let refresh = if (now / REFRESH_TOGGLE_TICKS) & 1 == 1 {
            REFRESH
        } else {
            0
        };
        let out = if out2 { OUT2 } else { 0 };
        self.bits | refresh | out
    }

    /// A guest write of `value`; returns channel 2's gate level.
    pub fn write(&mut self, value: u8) -> bool {
        self.bits = value & WRITABLE;
        self.gate()
    }

    /// Channel 2's gate level.
    pub const fn gate(&self) -> bool {
        self.bits & GATE != 0
    }

    /// Whether the speaker is driven from channel 2 (bits 0 and 1): what a
    /// guest beeping sets; kept, not sounded.
    pub const fn speaker_on(&self) -> bool {
        self.bits & 0x03 == 0x03
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_bits_read_back_with_the_timer_bits() {
        let mut port = SystemControlB::new();
        assert_eq!(port.read(false, 0), 0);
        assert!(port.write(0xff), "the gate is bit 0");
        assert!(port.speaker_on());
        assert_eq!(port.read(false, 0), 0x0f, "bits 4-7 are read-only");
        assert_eq!(port.read(true, 0), 0x2f, "channel 2's output");
        assert!(!port.write(0x02));
        assert!(!port.speaker_on());
        assert_eq!(port.read(false, 0), 0x02);
    }

    #[test]
    fn the_refresh_bit_toggles_every_15_microseconds() {
        let port = SystemControlB::new();
        let bit = |t| port.read(false, t) & REFRESH;
        assert_eq!(bit(0), 0);
        assert_eq!(bit(17), 0);
        assert_eq!(bit(18), REFRESH);
        assert_eq!(bit(35), REFRESH);
        assert_eq!(bit(36), 0);
        // About 66,288 toggles a second (15.085 µs half periods).
        let per_second = (0..crate::PIT_INPUT_HZ)
            .step_by(REFRESH_TOGGLE_TICKS as usize)
            .count();
        assert_eq!(per_second, 66_288);
    }
}
