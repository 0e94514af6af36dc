//! The PC's CMOS real-time clock (an MC146818): an index port, `0x70`, and
//! a data port, `0x71`, in front of 128 bytes of which the first fourteen
//! are the clock's registers.
//!
//! The clock reads a fixed, documented date, [`EPOCH`], at guest time 0,
//! and advances with guest time only: a guest reads the same date at the
//! same point of every run, whatever the host's clock says. The bare boots
//! give QEMU's RTC the same start (`-rtc base=EPOCH,clock=vm`).
//!
//! Modelled: seconds, minutes, hours, day of week, day, month, year and
//! century (register `0x32`, as PC firmware keeps it); status A's
//! update-in-progress bit, set during the last [`UIP_TICKS`] of every
//! second while the divider runs as a PC sets it (A bits 6–4 = `010`) and
//! status B's SET bit is clear; status B's data mode (BCD or binary, bit 2)
//! and hour format (12 or 24 hours, bit 1) for every time register; status
//! C's update-ended flag (bit 4, cleared by the read); status D's valid-RAM
//! bit; the rest of the 128 bytes as plain storage.
//!
//! Choices: the time registers are read-only (a write is dropped: the date
//! follows guest time only, so every run reads the same dates); the alarm
//! registers are storage and never fire; periodic, alarm and update
//! interrupts are not raised (IRQ 8 is not wired), so status C's IRQF,
//! PF and AF read 0. The index port reads all ones, as on a PC, where it is
//! write-only; its bit 7 (the NMI mask) is kept and has no other effect.

use crate::{low_byte, widen, AccessSize, PortDevice, Ticks, PIT_INPUT_HZ};

/// The index port; the data port follows it.
pub const INDEX_PORT: u16 = 0x70;
/// The data port.
pub const DATA_PORT: u16 = 0x71;

/// The date the clock shows at guest time 0, in UTC.
pub const EPOCH: DateTime = DateTime {
    year: 2026,
    month: 1,
    day: 1,
    hour: 0,
    minute: 0,
    second: 0,
};

/// How long before each second's update the update-in-progress bit is set:
/// the MC146818's 244 µs, in PIT input ticks (291.1, rounded up).
pub const UIP_TICKS: Ticks = 292;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const DAY_OF_WEEK: u8 = 0x06;
const DAY_OF_MONTH: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;

/// Status A: the update-in-progress bit (read-only).
const A_UIP: u8 = 0x80;
/// Status A: the divider bits, and the value that makes the clock run at
/// 32.768 kHz (what firmware programs).
const A_DIVIDER: u8 = 0x70;
const A_DIVIDER_RUNNING: u8 = 0x20;
/// Status B: updates stopped while the guest sets the time.
const B_SET: u8 = 0x80;
/// Status B: binary (not BCD) data.
const B_BINARY: u8 = 0x04;
/// Status B: 24-hour (not 12-hour) hours.
const B_24_HOUR: u8 = 0x02;
/// Status C: an update ended since the last read.
const C_UPDATE_ENDED: u8 = 0x10;
/// Status D: the RAM and time are valid (the battery is good).
const D_VALID: u8 = 0x80;
/// 12-hour mode: the hour register's PM bit.
const HOUR_PM: u8 = 0x80;

/// A calendar date and time of day (UTC, proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: u32,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl DateTime {
    /// Days from 1970-01-01 to this date (the epoch must not precede it).
    const fn days_since_1970(&self) -> u64 {
        // Counting years from March, so that February's leap day ends one.
        let (year, month) = if self.month <= 2 {
            (self.year as u64 - 1, self.month as u64 + 9)
        } else {
            (self.year as u64, self.month as u64 - 3)
        };
        let era = year / 400;
        let year_of_era = year % 400;
        let day_of_year = (153 * month + 2) / 5 + self.day as u64 - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        // 719,468 days from 0000-03-01 to 1970-01-01.
        era * 146_097 + day_of_era - 719_468
    }

    /// Seconds from 1970-01-01 00:00:00 to this date.
    pub const fn unix_seconds(&self) -> u64 {
        self.days_since_1970() * 86_400
            + self.hour as u64 * 3_600
            + self.minute as u64 * 60
            + self.second as u64
    }

    /// The date `seconds` after 1970-01-01 00:00:00.
    pub const fn from_unix_seconds(seconds: u64) -> Self {
        let days = seconds / 86_400;
        let of_day = seconds % 86_400;
        let shifted = days + 719_468;
        let era = shifted / 146_097;
        let day_of_era = shifted % 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month + 2) / 5 + 1;
        let month = if month < 10 { month + 3 } else { month - 9 };
        let year = era * 400 + year_of_era + if month <= 2 { 1 } else { 0 };
        Self {
            // Guest time in u64 PIT ticks spans under 500,000 years.
            year: if year > u32::MAX as u64 {
                u32::MAX
            } else {
                year as u32
            },
            month: month as u8,
            day: day as u8,
            hour: (of_day / 3_600) as u8,
            minute: (of_day / 60 % 60) as u8,
            second: (of_day % 60) as u8,
        }
    }

    /// The day of the week as the RTC counts it (1 is Sunday) of the date
    /// `seconds` after 1970-01-01.
    const fn day_of_week(seconds: u64) -> u8 {
        // 1970-01-01 was a Thursday (5).
        ((seconds / 86_400 + 4) % 7 + 1) as u8
    }
}

/// The CMOS RTC and its RAM.
#[derive(Clone, Debug)]
pub struct CmosRtc {
    /// The register the data port reaches (index port bits 6–0).
    index: u8,
    /// The index port's bit 7.
    nmi_masked: bool,
    /// The 128 bytes; the time registers here are unused (they are computed
    /// from guest time).
    ram: [u8; 128],
    /// The second (since guest time 0) at the last status C read.
    c_read_second: u64,
    /// The latest time an access was made at (time never runs backwards).
    clock: Ticks,
}

impl Default for CmosRtc {
    fn default() -> Self {
        Self::new()
    }
}

impl CmosRtc {
    /// The clock as firmware leaves it: divider running, 24-hour BCD.
    pub const fn new() -> Self {
        let mut ram = [0; 128];
        ram[STATUS_A as usize] = A_DIVIDER_RUNNING | 0x06;
        ram[STATUS_B as usize] = B_24_HOUR;
        Self {
            index: 0,
            nmi_masked: false,
            ram,
            c_read_second: 0,
            clock: 0,
        }
    }

    /// Whether the guest masked NMIs through the index port's bit 7.
    pub const fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }

    /// Seconds since 1970-01-01 the clock shows at guest time `now`.
    const fn unix_seconds_at(now: Ticks) -> u64 {
        EPOCH.unix_seconds() + now / PIT_INPUT_HZ
    }

    /// The date and time the clock shows at guest time `now`.
    pub const fn date_at(now: Ticks) -> DateTime {
        DateTime::from_unix_seconds(Self::unix_seconds_at(now))
    }

    fn update_in_progress(&self, now: Ticks) -> bool {
        let a = self.ram[STATUS_A as usize];
        let b = self.ram[STATUS_B as usize];
        a & A_DIVIDER == A_DIVIDER_RUNNING
            && b & B_SET == 0
            && now % PIT_INPUT_HZ >= PIT_INPUT_HZ - UIP_TICKS
    }

    /// A time register's value in the data mode and hour format status B
    /// selects.
    fn encode(&self, value: u8, hours: bool) -> u8 {
        let b = self.ram[STATUS_B as usize];
        let (value, pm) = if hours && b & B_24_HOUR == 0 {
            // 12-hour: 12, 1, ..., 11, with the PM bit from noon.
            let twelve = match value % 12 {
                0 => 12,
                h => h,
            };
            (twelve, value >= 12)
        } else {
            (value, false)
        };
        let value = if b & B_BINARY != 0 {
            value
        } else {
            ((value / 10 % 10) << 4) | (value % 10)
        };
        if pm {
            value | HOUR_PM
        } else {
            value
        }
    }

    fn register(&mut self, index: u8, now: Ticks) -> u8 {
        let date = Self::date_at(now);
        match index {
            SECONDS => self.encode(date.second, false),
            MINUTES => self.encode(date.minute, false),
            HOURS => self.encode(date.hour, true),
            DAY_OF_WEEK => self.encode(DateTime::day_of_week(Self::unix_seconds_at(now)), false),
            DAY_OF_MONTH => self.encode(date.day, false),
            MONTH => self.encode(date.month, false),
            YEAR => self.encode((date.year % 100) as u8, false),
            CENTURY => self.encode((date.year / 100 % 100) as u8, false),
            STATUS_A => {
                let uip = if self.update_in_progress(now) {
                    A_UIP
                } else {
                    0
                };
                self.ram[STATUS_A as usize] & !A_UIP | uip
            }
            STATUS_C => {
                let second = now / PIT_INPUT_HZ;
                let ended = second > self.c_read_second;
                self.c_read_second = second;
                if ended {
                    C_UPDATE_ENDED
                } else {
                    0
                }
            }
            STATUS_D => D_VALID,
            _ => self.ram.get(usize::from(index)).copied().unwrap_or(0xff),
        }
    }

    fn set_register(&mut self, index: u8, value: u8) {
        match index {
            SECONDS | MINUTES | HOURS | DAY_OF_WEEK | DAY_OF_MONTH | MONTH | YEAR | CENTURY => {}
            STATUS_C | STATUS_D => {}
            STATUS_A => self.ram[STATUS_A as usize] = value & !A_UIP,
            _ => {
                if let Some(byte) = self.ram.get_mut(usize::from(index)) {
                    *byte = value;
                }
            }
        }
    }
}

impl PortDevice for CmosRtc {
    fn read(&mut self, port: u16, size: AccessSize, now: Ticks) -> u32 {
        self.clock = self.clock.max(now);
        let byte = match port {
            DATA_PORT => self.register(self.index, self.clock),
            _ => 0xff,
        };
        widen(byte, size)
    }

    fn write(&mut self, port: u16, _size: AccessSize, value: u32, now: Ticks) {
        self.clock = self.clock.max(now);
        let byte = low_byte(value);
        match port {
            INDEX_PORT => {
                self.index = byte & 0x7f;
                self.nmi_masked = byte & 0x80 != 0;
            }
            DATA_PORT => self.set_register(self.index, byte),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(rtc: &mut CmosRtc, index: u8, now: Ticks) -> u8 {
        rtc.write(INDEX_PORT, AccessSize::Byte, u32::from(index), now);
        low_byte(rtc.read(DATA_PORT, AccessSize::Byte, now))
    }

    fn write(rtc: &mut CmosRtc, index: u8, value: u8) {
        rtc.write(INDEX_PORT, AccessSize::Byte, u32::from(index), 0);
        rtc.write(DATA_PORT, AccessSize::Byte, u32::from(value), 0);
    }

    /// Seconds of guest time, in ticks.
    const fn s(seconds: u64) -> Ticks {
        seconds * PIT_INPUT_HZ
    }

    #[test]
    fn the_epoch_converts_both_ways() {
        assert_eq!(EPOCH.unix_seconds(), 1_767_225_600);
        assert_eq!(DateTime::from_unix_seconds(1_767_225_600), EPOCH);
        assert_eq!(
            DateTime::from_unix_seconds(0),
            DateTime {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0
            }
        );
        // A leap day and the day after.
        let leap = DateTime::from_unix_seconds(951_782_400);
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        let next = DateTime::from_unix_seconds(951_782_400 + 86_400);
        assert_eq!((next.year, next.month, next.day), (2000, 3, 1));
        // 2026-01-01 is a Thursday: 5 counting Sunday as 1.
        assert_eq!(DateTime::day_of_week(EPOCH.unix_seconds()), 5);
    }

    #[test]
    fn the_epoch_in_bcd_24_hour_mode() {
        let mut rtc = CmosRtc::new();
        let t = s(3_600 * 13 + 60 * 45 + 9);
        assert_eq!(read(&mut rtc, SECONDS, t), 0x09);
        assert_eq!(read(&mut rtc, MINUTES, t), 0x45);
        assert_eq!(read(&mut rtc, HOURS, t), 0x13);
        assert_eq!(read(&mut rtc, DAY_OF_WEEK, t), 0x05);
        assert_eq!(read(&mut rtc, DAY_OF_MONTH, t), 0x01);
        assert_eq!(read(&mut rtc, MONTH, t), 0x01);
        assert_eq!(read(&mut rtc, YEAR, t), 0x26);
        assert_eq!(read(&mut rtc, CENTURY, t), 0x20);
        assert_eq!(read(&mut rtc, STATUS_D, t), D_VALID);
    }

    /// The hour register at `seconds` of guest time with status B = `b`.
    fn hours(b: u8, seconds: u64) -> u8 {
        let mut rtc = CmosRtc::new();
        write(&mut rtc, STATUS_B, b);
        read(&mut rtc, HOURS, s(seconds))
    }

    #[test]
    fn binary_and_12_hour_modes_follow_status_b() {
        let mut rtc = CmosRtc::new();
        let t = s(3_600 * 13 + 60 * 45 + 9);
        write(&mut rtc, STATUS_B, B_BINARY | B_24_HOUR);
        assert_eq!(read(&mut rtc, MINUTES, t), 45);
        assert_eq!(read(&mut rtc, HOURS, t), 13);
        assert_eq!(read(&mut rtc, YEAR, t), 26);
        assert_eq!(read(&mut rtc, STATUS_B, t), B_BINARY | B_24_HOUR);
        assert_eq!(hours(B_BINARY, 3_600 * 13), HOUR_PM | 1, "1 PM");
        assert_eq!(hours(B_BINARY, 0), 12, "midnight is 12 AM");
        assert_eq!(hours(B_BINARY, 3_600 * 11), 11, "11 AM");
        assert_eq!(hours(0, 3_600 * 23), HOUR_PM | 0x11, "BCD 11 PM");
        assert_eq!(hours(0, 3_600 * 12), HOUR_PM | 0x12, "noon");
    }

    #[test]
    fn time_advances_with_guest_time_only() {
        let mut rtc = CmosRtc::new();
        assert_eq!(read(&mut rtc, SECONDS, s(1) - 1), 0x00);
        assert_eq!(read(&mut rtc, SECONDS, s(1)), 0x01);
        // A day and a year later.
        assert_eq!(read(&mut rtc, DAY_OF_MONTH, s(86_400)), 0x02);
        assert_eq!(read(&mut rtc, DAY_OF_WEEK, s(86_400)), 0x06);
        assert_eq!(read(&mut rtc, YEAR, s(365 * 86_400)), 0x27);
        // Time never runs backwards.
        assert_eq!(read(&mut rtc, YEAR, 0), 0x27);
    }

    #[test]
    fn the_time_registers_ignore_writes() {
        let mut rtc = CmosRtc::new();
        write(&mut rtc, SECONDS, 0x30);
        write(&mut rtc, YEAR, 0x99);
        assert_eq!(read(&mut rtc, SECONDS, 0), 0);
        assert_eq!(read(&mut rtc, YEAR, 0), 0x26);
    }

    #[test]
    fn update_in_progress_precedes_each_update() {
        let mut rtc = CmosRtc::new();
        let before = s(5) - UIP_TICKS;
        assert_eq!(read(&mut rtc, STATUS_A, before - 1) & A_UIP, 0);
        assert_eq!(read(&mut rtc, STATUS_A, before) & A_UIP, A_UIP);
        assert_eq!(read(&mut rtc, STATUS_A, s(5) - 1) & A_UIP, A_UIP);
        assert_eq!(read(&mut rtc, STATUS_A, s(5)), 0x26, "clear again");
        // Not while the time is being set, nor with the divider stopped.
        write(&mut rtc, STATUS_B, B_SET | B_24_HOUR);
        assert_eq!(read(&mut rtc, STATUS_A, s(6) - 1) & A_UIP, 0);
        write(&mut rtc, STATUS_B, B_24_HOUR);
        write(&mut rtc, STATUS_A, 0xf6);
        assert_eq!(read(&mut rtc, STATUS_A, s(7) - 1), 0x76, "UIP is read-only");
    }

    #[test]
    fn status_c_reports_an_update_once() {
        let mut rtc = CmosRtc::new();
        assert_eq!(read(&mut rtc, STATUS_C, 10), 0);
        assert_eq!(read(&mut rtc, STATUS_C, s(2)), C_UPDATE_ENDED);
        assert_eq!(read(&mut rtc, STATUS_C, s(2) + 1), 0, "the read cleared it");
    }

    #[test]
    fn ram_and_the_index_port() {
        let mut rtc = CmosRtc::new();
        write(&mut rtc, 0x40, 0xa5);
        assert_eq!(read(&mut rtc, 0x40, 0), 0xa5);
        // Bit 7 of the index masks NMIs and does not select a register.
        rtc.write(INDEX_PORT, AccessSize::Byte, 0xc0, 0);
        assert!(rtc.nmi_masked());
        assert_eq!(low_byte(rtc.read(DATA_PORT, AccessSize::Byte, 0)), 0xa5);
        assert_eq!(rtc.read(INDEX_PORT, AccessSize::Word, 0), 0xffff);
    }

    proptest! {
        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((any::<bool>(), 0x6fu16..0x73, any::<u8>(), any::<u64>()), 0..100)) {
            let mut rtc = CmosRtc::new();
            for (is_read, port, value, now) in ops {
                if is_read {
                    let _ = rtc.read(port, AccessSize::Byte, now);
                } else {
                    rtc.write(port, AccessSize::Byte, u32::from(value), now);
                }
            }
        }

        #[test]
        fn dates_round_trip(seconds in 0u64..(1u64 << 40)) {
            let date = DateTime::from_unix_seconds(seconds);
            prop_assert_eq!(date.unix_seconds(), seconds);
            prop_assert!((1..=12).contains(&date.month) && (1..=31).contains(&date.day));
        }
    }
}
