//! The 8254 programmable interval timer: three 16-bit down-counters clocked
//! at [`crate::PIT_INPUT_HZ`].
//!
//! Nothing is simulated tick by tick. A channel remembers when its count was
//! loaded and computes everything else — the count a read returns, the
//! output level, how many IRQ 0 edges fall in an interval, when the next one
//! is due — with O(1) arithmetic on the guest time `now`. The VMM counts
//! timer interrupts with [`Pit8254::irq_edges_between`] or
//! [`Pit8254::irq_edges_total`] and arms its real timer with
//! [`Pit8254::next_irq_at`]; the edges fall at exact multiples of the
//! period, so the guest's timer cannot drift.
//!
//! # Timing model
//!
//! The input clock ticks at every integer time `t`. An access at `now` happens
//! just after tick `now`. A count written at `w` is loaded into the counting
//! element at tick `w + 1` and decremented at each later tick (the 8254's
//! "loaded on the next CLK pulse"). For a count `N` (a written 0 means
//! 65536), with `L` the load tick:
//!
//! - mode 0 (interrupt on terminal count): output low from the count write,
//!   high from tick `L + N` on: one rising edge, at `L + N`.
//! - mode 2 (rate generator): output low during the tick at which the count
//!   is 1, and high again at the reload: rising edges at `L + kN`, `k >= 1`.
//! - mode 3 (square wave): high for `ceil(N/2)` ticks, low for `floor(N/2)`;
//!   rising edges at `L + kN`, `k >= 1`. The count reads decrease by two
//!   (from N, or N - 1 when N is odd).
//! - mode 4 (software strobe): output low during the tick at which the count
//!   reaches 0: one rising edge, at `L + N + 1`.
//! - modes 1 and 5 wait for a rising edge on the channel's gate, then count
//!   as modes 0 and 4 do from the next tick (mode 1's output low until
//!   terminal count); a later rising edge starts them again. A PC ties the
//!   gates of channels 0 and 1 high, so for them that edge never comes: the
//!   output stays high and the count is never loaded.
//!
//! Channel 2's gate is port 0x61's bit 0 (low at reset). While it is low,
//! modes 0 and 4 stand still (a count written meanwhile is loaded and
//! waits) and go on from where they stopped when it rises; modes 2 and 3
//! stop with their output high and reload their count on the rising edge.
//!
//! A new count written in mode 0 or 4 is loaded at the next tick (in mode 0
//! the output goes low at once; writing the first byte of a two-byte count in
//! mode 0 stops the counter). In modes 2 and 3 it waits for the end of the
//! current period (mode 2) or half-period (mode 3), as on the chip.
//!
//! Deterministic choices: BCD counting (control word bit 0) is not modelled:
//! counts are binary, and the BCD bit only reads back in the status byte. A
//! count of 1 in modes 2 and 3 (illegal on the chip) keeps the output high with
//! no edges and reads as 1. A read in the same tick as the count write (before
//! the load tick) returns the counter's previous value; before any count has
//! been loaded the counter reads 0. Port 0x43 reads as 0xff. A latch command
//! on a channel whose previous latch has not been read is ignored, as on the
//! chip.

use crate::system_control_b::{SystemControlB, SYSTEM_CONTROL_B_PORT};
use crate::{low_byte, widen, AccessSize, PortDevice, Ticks};

/// Channel 0's data port; channels 1 and 2 follow.
pub const CHANNEL0_PORT: u16 = 0x40;
/// The control-word port.
pub const CONTROL_PORT: u16 = 0x43;
/// The IRQ line channel 0's output drives.
pub const PIT_IRQ: u8 = 0;
/// The channel whose gate and output port 0x61 carries.
pub const SPEAKER_CHANNEL: usize = 2;

/// A channel's counting mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Mode 0: interrupt on terminal count.
    InterruptOnTerminalCount,
    /// Mode 1: hardware-retriggerable one-shot (never triggers; see module).
    OneShot,
    /// Mode 2: rate generator.
    RateGenerator,
    /// Mode 3: square wave generator.
    SquareWave,
    /// Mode 4: software-triggered strobe.
    SoftwareStrobe,
    /// Mode 5: hardware-triggered strobe (never triggers; see module).
    HardwareStrobe,
}

impl Mode {
    /// From control word bits 3–1 (6 and 7 are aliases of 2 and 3).
    const fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => Self::InterruptOnTerminalCount,
            1 => Self::OneShot,
            2 | 6 => Self::RateGenerator,
            3 | 7 => Self::SquareWave,
            4 => Self::SoftwareStrobe,
            _ => Self::HardwareStrobe,
        }
    }

    const fn bits(self) -> u8 {
        match self {
            Self::InterruptOnTerminalCount => 0,
            Self::OneShot => 1,
            Self::RateGenerator => 2,
            Self::SquareWave => 3,
            Self::SoftwareStrobe => 4,
            Self::HardwareStrobe => 5,
        }
    }

    const fn periodic(self) -> bool {
        matches!(self, Self::RateGenerator | Self::SquareWave)
    }
}

/// Which bytes of the count a data-port access carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Low byte only.
    LowByte,
    /// High byte only.
    HighByte,
    /// Low byte, then high byte.
    LowHigh,
}

impl Access {
    const fn bits(self) -> u8 {
        match self {
            Self::LowByte => 1,
            Self::HighByte => 2,
            Self::LowHigh => 3,
        }
    }
}

/// One stretch of counting with a fixed count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    /// The tick at which the count entered the counting element.
    start: Ticks,
    /// N, 1..=65536.
    count: u32,
    /// The first rising edge of the output (periodic modes: edges follow
    /// every `count` ticks); `None` when the run makes no edge.
    first_edge: Option<Ticks>,
}

impl Run {
    /// A run loaded at `start` (a fresh load, or a mode-2 reload, or a
    /// mode-3 reload at the start of a high half).
    fn loaded(mode: Mode, start: Ticks, count: u32) -> Self {
        let n = u64::from(count);
        let first_edge = match mode {
            Mode::InterruptOnTerminalCount => Some(start.saturating_add(n)),
            Mode::SoftwareStrobe => Some(start.saturating_add(n).saturating_add(1)),
            Mode::RateGenerator | Mode::SquareWave if count > 1 => Some(start.saturating_add(n)),
            _ => None,
        };
        Self {
            start,
            count,
            first_edge,
        }
    }

    /// A mode-3 run whose count is loaded at `start`, the beginning of a
    /// low half: its first rising edge ends that low half.
    fn square_low_half(start: Ticks, count: u32) -> Self {
        let first_edge = if count > 1 {
            Some(start.saturating_add(u64::from(count / 2)))
        } else {
            None
        };
        Self {
            start,
            count,
            first_edge,
        }
    }

    const fn period(&self) -> u64 {
        self.count as u64
    }

    /// The same run `delta` ticks later: a count that stood still while
    /// the gate was low goes on from where it stopped.
    fn shifted(&self, delta: u64) -> Self {
        Self {
            start: self.start.saturating_add(delta),
            count: self.count,
            first_edge: self.first_edge.map(|e| e.saturating_add(delta)),
        }
    }

    /// Ticks since the last rising edge (or the load), within a period:
    /// 0..N. Only for periodic runs with edges and `t >= start`.
    fn phase(&self, first: Ticks, t: Ticks) -> u64 {
        let p = self.period();
        if t >= first {
            (t - first) % p
        } else {
            // first - t <= p for t >= start, by construction of `first`.
            p.saturating_sub(first - t)
        }
    }

    /// Number of rising edges at ticks before `x`.
    fn edges_before(&self, mode: Mode, x: Ticks) -> u64 {
        let Some(first) = self.first_edge else {
            return 0;
        };
        if x <= first {
            0
        } else if mode.periodic() {
            (x - first - 1) / self.period() + 1
        } else {
            1
        }
    }

    /// The first rising edge at or after `t`.
    fn next_edge(&self, mode: Mode, t: Ticks) -> Option<Ticks> {
        let first = self.first_edge?;
        if t <= first {
            Some(first)
        } else if mode.periodic() {
            let p = self.period();
            let periods = (t - first).div_ceil(p);
            first.checked_add(periods.checked_mul(p)?)
        } else {
            None
        }
    }

    /// The counting element at tick `t >= start`.
    fn value(&self, mode: Mode, t: Ticks) -> u16 {
        let elapsed = t - self.start;
        let n = u64::from(self.count);
        let value = match (mode, self.first_edge) {
            (Mode::RateGenerator, Some(first)) => n - self.phase(first, t),
            (Mode::SquareWave, Some(first)) => {
                let high = n.div_ceil(2);
                let phase = self.phase(first, t);
                let into_half = if phase < high { phase } else { phase - high };
                n - (n & 1) - 2 * into_half
            }
            (Mode::RateGenerator | Mode::SquareWave, None) => n,
            // Modes 0 and 4 keep counting down past 0, wrapping.
            _ => n.wrapping_sub(elapsed),
        };
        (value & 0xffff) as u16
    }

    /// The output at tick `t >= start`.
    fn output(&self, mode: Mode, t: Ticks) -> bool {
        let Some(first) = self.first_edge else {
            // Periodic modes with a count of 1.
            return true;
        };
        match mode {
            Mode::InterruptOnTerminalCount => t >= first,
            Mode::SoftwareStrobe => t.saturating_add(1) != first,
            Mode::RateGenerator => self.phase(first, t) != self.period() - 1,
            _ => self.phase(first, t) < self.period().div_ceil(2),
        }
    }
}

/// What a channel's counting element is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counter {
    /// No count since the control word (or power-on).
    Idle,
    /// Mode 0 with the first byte of a two-byte count written: stopped.
    Stopped,
    /// Modes 1 and 5: a count written, waiting for a rising gate edge.
    WaitingForGate { count: u32 },
    /// The gate is low in modes 0, 2, 3 or 4: counting stands still with
    /// `run` (modes 0 and 4 resume it where it stopped, modes 2 and 3
    /// reload its count) and the output holds `output` (high in modes 2
    /// and 3). `at` is when the gate fell or the count was written.
    GateLow { run: Run, at: Ticks, output: bool },
    /// Counting `run`; in modes 2 and 3 a count written meanwhile takes
    /// over as `next` from tick `next.start`.
    Counting { run: Run, next: Option<Run> },
}

/// One of the three counters.
#[derive(Clone, Debug)]
struct Channel {
    mode: Mode,
    access: Access,
    bcd: bool,
    counter: Counter,
    /// The gate input: tied high for channels 0 and 1, port 0x61's bit 0
    /// for channel 2.
    gate: bool,
    /// The counting element's value while it is not counting.
    held: u16,
    /// Two-byte writes: the low byte is in, the high byte is next.
    low_written: Option<u8>,
    /// Two-byte reads: the high byte is next.
    read_high_next: bool,
    latched_count: Option<u16>,
    latched_status: Option<u8>,
    /// Ticks before `since` belong to earlier programming, whose edges are
    /// summed in `edges_before_since`.
    since: Ticks,
    edges_before_since: u64,
    /// The latest time an access was made at (time never runs backwards).
    clock: Ticks,
}

impl Channel {
    const fn new(gate: bool) -> Self {
        Self {
            mode: Mode::InterruptOnTerminalCount,
            access: Access::LowHigh,
            bcd: false,
            counter: Counter::Idle,
            gate,
            held: 0,
            low_written: None,
            read_high_next: false,
            latched_count: None,
            latched_status: None,
            since: 0,
            edges_before_since: 0,
            clock: 0,
        }
    }

    /// The mode whose counting a run follows: a triggered mode 1 counts as
    /// mode 0 does (output low until terminal count), a triggered mode 5 as
    /// mode 4.
    fn run_mode(&self) -> Mode {
        match self.mode {
            Mode::OneShot => Mode::InterruptOnTerminalCount,
            Mode::HardwareStrobe => Mode::SoftwareStrobe,
            mode => mode,
        }
    }

    fn advance(&mut self, now: Ticks) -> Ticks {
        self.clock = self.clock.max(now);
        self.clock
    }

    /// The run in force at tick `t`, if counting and loaded.
    fn run_at(&self, t: Ticks) -> Option<Run> {
        match self.counter {
            Counter::Counting {
                next: Some(next), ..
            } if t >= next.start => Some(next),
            Counter::Counting { run, .. } if t >= run.start => Some(run),
            _ => None,
        }
    }

    /// The counting element at tick `t`.
    fn value(&self, t: Ticks) -> u16 {
        match self.run_at(t) {
            Some(run) => run.value(self.run_mode(), t),
            None => self.held,
        }
    }

    /// The output pin at tick `t`.
    fn output(&self, t: Ticks) -> bool {
        if let Some(run) = self.run_at(t) {
            return run.output(self.run_mode(), t);
        }
        match self.counter {
            // Mode 0: low from the control word until terminal count.
            Counter::Idle | Counter::Stopped | Counter::Counting { .. } => {
                self.mode != Mode::InterruptOnTerminalCount
            }
            Counter::WaitingForGate { .. } => true,
            Counter::GateLow { output, .. } => output,
        }
    }

    /// The status byte of the read-back command at tick `t`.
    fn status(&self, t: Ticks) -> u8 {
        let null_count = match self.counter {
            Counter::Counting { run, next } => {
                t < run.start || next.is_some_and(|next| t < next.start)
            }
            Counter::GateLow { .. } => false,
            _ => true,
        };
        (u8::from(self.output(t)) << 7)
            | (u8::from(null_count) << 6)
            | (self.access.bits() << 4)
            | (self.mode.bits() << 1)
            | u8::from(self.bcd)
    }

    /// Rising edges of the current programming at ticks in `[a, b)`.
    fn edges_between(&self, a: Ticks, b: Ticks) -> u64 {
        let a = a.max(self.since);
        if a >= b {
            return 0;
        }
        let Counter::Counting { run, next } = self.counter else {
            return 0;
        };
        let mode = self.run_mode();
        match next {
            None => run.edges_before(mode, b) - run.edges_before(mode, a),
            Some(next) => {
                // The old run owns the ticks up to and including the switch.
                let cut = next.start.saturating_add(1);
                let old = run.edges_before(mode, b.min(cut)) - run.edges_before(mode, a.min(cut));
                old + next.edges_before(mode, b) - next.edges_before(mode, a)
            }
        }
    }

    fn next_edge(&self, now: Ticks) -> Option<Ticks> {
        let t = now.max(self.since);
        let Counter::Counting { run, next } = self.counter else {
            return None;
        };
        match next {
            None => run.next_edge(self.run_mode(), t),
            Some(next) => match run.next_edge(self.run_mode(), t) {
                Some(edge) if edge <= next.start => Some(edge),
                _ => next.next_edge(self.run_mode(), t),
            },
        }
    }

    fn edges_total(&self, now: Ticks) -> u64 {
        self.edges_before_since
            .saturating_add(self.edges_between(self.since, now))
    }

    /// Closes the books on ticks up to `w` before the programming changes:
    /// their edges are summed, the counter value kept, and a pending
    /// mode-2/3 switch that already happened folded in.
    fn settle(&mut self, w: Ticks) {
        let end = w.saturating_add(1);
        self.edges_before_since = self.edges_total(end);
        self.held = self.value(w);
        if let Counter::Counting {
            next: Some(next), ..
        } = self.counter
        {
            if next.start <= w {
                self.counter = Counter::Counting {
                    run: next,
                    next: None,
                };
            }
        }
        self.since = end;
    }

    fn control_word(&mut self, mode: Mode, access: Access, bcd: bool, w: Ticks) {
        self.settle(w);
        self.mode = mode;
        self.access = access;
        self.bcd = bcd;
        self.counter = Counter::Idle;
        self.low_written = None;
        self.read_high_next = false;
        self.latched_count = None;
        self.latched_status = None;
    }

    fn latch_count(&mut self, t: Ticks) {
        if self.latched_count.is_none() {
            self.latched_count = Some(self.value(t));
        }
    }

    fn latch_status(&mut self, t: Ticks) {
        if self.latched_status.is_none() {
            self.latched_status = Some(self.status(t));
        }
    }

    fn write(&mut self, byte: u8, w: Ticks) {
        match self.access {
            Access::LowByte => self.load(u32::from(byte), w),
            Access::HighByte => self.load(u32::from(byte) << 8, w),
            Access::LowHigh => match self.low_written.take() {
                None => {
                    self.low_written = Some(byte);
                    if self.mode == Mode::InterruptOnTerminalCount {
                        // Writing the first byte stops a mode-0 count.
                        self.settle(w);
                        self.counter = Counter::Stopped;
                    }
                }
                Some(low) => self.load(u32::from(low) | (u32::from(byte) << 8), w),
            },
        }
    }

    /// A complete count written at `w`.
    fn load(&mut self, raw: u32, w: Ticks) {
        let count = if raw == 0 { 0x1_0000 } else { raw };
        let load_tick = w.saturating_add(1);
        match self.mode {
            Mode::OneShot | Mode::HardwareStrobe => {
                self.settle(w);
                self.counter = Counter::WaitingForGate { count };
            }
            _ if !self.gate => {
                // Loaded, but standing still until the gate rises.
                self.settle(w);
                self.held = (count & 0xffff) as u16;
                self.counter = Counter::GateLow {
                    run: Run::loaded(self.mode, load_tick, count),
                    at: w,
                    output: self.mode != Mode::InterruptOnTerminalCount,
                };
            }
            Mode::InterruptOnTerminalCount | Mode::SoftwareStrobe => {
                self.settle(w);
                self.counter = Counter::Counting {
                    run: Run::loaded(self.mode, load_tick, count),
                    next: None,
                };
            }
            Mode::RateGenerator | Mode::SquareWave => {
                if let Counter::Counting {
                    next: Some(next), ..
                } = self.counter
                {
                    if next.start <= w {
                        self.settle(w);
                    }
                }
                self.counter = match self.counter {
                    Counter::Counting { run, .. } if run.start <= w => Counter::Counting {
                        run,
                        next: Some(self.switch(run, count, w)),
                    },
                    // Not counting yet, or loaded this very tick: start afresh.
                    _ => {
                        self.settle(w);
                        Counter::Counting {
                            run: Run::loaded(self.mode, load_tick, count),
                            next: None,
                        }
                    }
                };
            }
        }
    }

    /// The run that takes over from `run` when a count is written at `w` in
    /// mode 2 or 3: at the end of the current period (mode 2) or half-period
    /// (mode 3).
    fn switch(&self, run: Run, count: u32, w: Ticks) -> Run {
        let after = w.saturating_add(1);
        let Some(first) = run.first_edge else {
            // A count of 1 reloads at every tick.
            return Run::loaded(self.mode, after, count);
        };
        let rising = run.next_edge(self.mode, after).unwrap_or(Ticks::MAX);
        if self.mode == Mode::SquareWave {
            // Falling edges come floor(N/2) ticks before each rising one.
            let low = u64::from(run.count / 2);
            let falling_first = first - low;
            let falling = if after <= falling_first {
                falling_first
            } else {
                let p = run.period();
                falling_first.saturating_add((after - falling_first).div_ceil(p).saturating_mul(p))
            };
            if falling < rising {
                return Run::square_low_half(falling, count);
            }
        }
        Run::loaded(self.mode, rising, count)
    }

    /// The gate input changes to `high` at `w`.
    fn set_gate(&mut self, high: bool, w: Ticks) {
        if high == self.gate {
            return;
        }
        self.gate = high;
        let retrigger = |count: u32, channel: &Self| Counter::Counting {
            run: Run::loaded(channel.run_mode(), w.saturating_add(1), count),
            next: None,
        };
        match (self.mode, self.counter, high) {
            // Modes 1 and 5 start (again) on a rising edge; a low gate does
            // not stop them.
            (Mode::OneShot | Mode::HardwareStrobe, Counter::WaitingForGate { count }, true) => {
                self.settle(w);
                self.counter = retrigger(count, self);
            }
            (Mode::OneShot | Mode::HardwareStrobe, Counter::Counting { run, .. }, true) => {
                self.settle(w);
                self.counter = retrigger(run.count, self);
            }
            (Mode::OneShot | Mode::HardwareStrobe, _, _) => {}
            // Modes 0 and 4 stand still while the gate is low and go on
            // from there; modes 2 and 3 stop with their output high and
            // reload on the rising edge.
            (mode, Counter::Counting { run, next }, false) => {
                let output = mode.periodic() || self.output(w);
                self.settle(w);
                let run = match next {
                    Some(next) if mode.periodic() => next,
                    _ => run,
                };
                self.counter = Counter::GateLow { run, at: w, output };
            }
            (mode, Counter::GateLow { run, at, .. }, true) => {
                self.settle(w);
                self.counter = if mode.periodic() {
                    retrigger(run.count, self)
                } else {
                    Counter::Counting {
                        run: run.shifted(w.saturating_sub(at)),
                        next: None,
                    }
                };
            }
            _ => {}
        }
    }

    fn read(&mut self, t: Ticks) -> u8 {
        if let Some(status) = self.latched_status.take() {
            return status;
        }
        let value = self.latched_count.unwrap_or_else(|| self.value(t));
        let [low, high] = value.to_le_bytes();
        let (byte, done) = match self.access {
            Access::LowByte => (low, true),
            Access::HighByte => (high, true),
            Access::LowHigh if !self.read_high_next => (low, false),
            Access::LowHigh => (high, true),
        };
        self.read_high_next = !done;
        if done {
            self.latched_count = None;
        }
        byte
    }
}

/// The 8254 of a PC: channel 0 drives IRQ 0, channel 1 was DRAM refresh,
/// channel 2 the speaker. Channel 2's gate and output are wired to the
/// chipset's port 0x61 ([`SystemControlB`]), which the PIT answers too.
#[derive(Clone, Debug)]
pub struct Pit8254 {
    channels: [Channel; 3],
    port_b: SystemControlB,
}

impl Default for Pit8254 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit8254 {
    /// The PIT at power-on: every channel in mode 0 with no count, output
    /// low, no edges; the gates of channels 0 and 1 tied high, channel 2's
    /// low (port 0x61 at reset).
    pub const fn new() -> Self {
        Self {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port_b: SystemControlB::new(),
        }
    }

    /// Channel `channel`'s gate input changes to `high` at `now` (ignored
    /// for a channel past 2). On a PC only channel 2's can change, through
    /// port 0x61.
    pub fn set_gate(&mut self, channel: usize, high: bool, now: Ticks) {
        if let Some(c) = self.channels.get_mut(channel) {
            let t = c.advance(now);
            c.set_gate(high, t);
        }
    }

    /// Rising edges of channel 0's output (IRQ 0 requests) at ticks in
    /// `[then, now)`, under its current programming: edges before the last
    /// control word or count write that changed the counting are not
    /// included (use [`Pit8254::irq_edges_total`] across reprogramming).
    pub fn irq_edges_between(&self, then: Ticks, now: Ticks) -> u64 {
        self.channels[0].edges_between(then, now)
    }

    /// Rising edges of channel 0's output at ticks before `now`, since
    /// power-on, across any reprogramming (edges up to the time of each
    /// reprogramming are kept). Never decreases; the VMM delivers the
    /// difference from its last look.
    pub fn irq_edges_total(&self, now: Ticks) -> u64 {
        self.channels[0].edges_total(now)
    }

    /// The tick of channel 0's next rising edge at or after `now`, if any.
    pub fn next_irq_at(&self, now: Ticks) -> Option<Ticks> {
        self.channels[0].next_edge(now)
    }

    /// Channel `channel`'s output level at `now` (`false` for a channel
    /// past 2).
    pub fn output(&self, channel: usize, now: Ticks) -> bool {
        self.channels.get(channel).is_some_and(|c| c.output(now))
    }

    /// Channel `channel`'s counting element at `now`, as a read would see
    /// it unlatched (0 for a channel past 2).
    pub fn count(&self, channel: usize, now: Ticks) -> u16 {
        self.channels.get(channel).map_or(0, |c| c.value(now))
    }

    /// Channel `channel`'s mode (`None` for a channel past 2).
    pub fn mode(&self, channel: usize) -> Option<Mode> {
        self.channels.get(channel).map(|c| c.mode)
    }

    /// Channel `channel`'s period in ticks while it counts periodically
    /// (modes 2 and 3): the count its coming periods use (a count written
    /// during a period takes over at the next one). `None` when it is not
    /// counting periodically — what a VMM needs to drive a real timer at
    /// the guest's rate.
    pub fn period(&self, channel: usize) -> Option<u32> {
        let c = self.channels.get(channel)?;
        match c.counter {
            Counter::Counting { run, next } if c.mode.periodic() => {
                Some(next.map_or(run.count, |n| n.count))
            }
            _ => None,
        }
    }

    fn control_word(&mut self, value: u8, now: Ticks) {
        let select = usize::from(value >> 6);
        if select == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear statuses,
            // bits 3-1 select channels 2-0.
            for (i, channel) in self.channels.iter_mut().enumerate() {
                if value & (2 << i) == 0 {
                    continue;
                }
                let t = channel.advance(now);
                if value & 0x10 == 0 {
                    channel.latch_status(t);
                }
                if value & 0x20 == 0 {
                    channel.latch_count(t);
                }
            }
            return;
        }
        let channel = &mut self.channels[select];
        let t = channel.advance(now);
        let access = match (value >> 4) & 3 {
            0 => {
                channel.latch_count(t);
                return;
            }
            1 => Access::LowByte,
            2 => Access::HighByte,
            _ => Access::LowHigh,
        };
        channel.control_word(Mode::from_bits(value >> 1), access, value & 1 != 0, t);
    }
}

impl PortDevice for Pit8254 {
    /// Byte registers: a wider access reaches the register at `port` and its
    /// upper lanes read as ones (the [`crate::Bus`] splits wide accesses).
    fn read(&mut self, port: u16, size: AccessSize, now: Ticks) -> u32 {
        let byte = match port.checked_sub(CHANNEL0_PORT) {
            Some(i @ 0..=2) => {
                let channel = &mut self.channels[usize::from(i)];
                let t = channel.advance(now);
                channel.read(t)
            }
            _ if port == SYSTEM_CONTROL_B_PORT => {
                let channel = &mut self.channels[SPEAKER_CHANNEL];
                let t = channel.advance(now);
                let out2 = channel.output(t);
                self.port_b.read(out2, t)
            }
            _ => 0xff,
        };
        widen(byte, size)
    }

    fn write(&mut self, port: u16, _size: AccessSize, value: u32, now: Ticks) {
        let byte = low_byte(value);
        match port.checked_sub(CHANNEL0_PORT) {
            Some(i @ 0..=2) => {
                let channel = &mut self.channels[usize::from(i)];
                let t = channel.advance(now);
                channel.write(byte, t);
            }
            Some(3) => self.control_word(byte, now),
            _ if port == SYSTEM_CONTROL_B_PORT => {
                let gate = self.port_b.write(byte);
                self.set_gate(SPEAKER_CHANNEL, gate, now);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn outb(pit: &mut Pit8254, port: u16, value: u8, now: Ticks) {
        pit.write(port, AccessSize::Byte, u32::from(value), now);
    }

    fn inb(pit: &mut Pit8254, port: u16, now: Ticks) -> u8 {
        low_byte(pit.read(port, AccessSize::Byte, now))
    }

    /// The guest's pit_start(hz) at `now`.
    fn pit_start(pit: &mut Pit8254, hz: u32, now: Ticks) {
        let divisor = 1_193_182 / hz;
        outb(pit, 0x43, 0x34, now);
        outb(pit, 0x40, low_byte(divisor), now);
        outb(pit, 0x40, low_byte(divisor >> 8), now);
    }

    /// The guest's pit_read_count at `now`.
    fn read_count(pit: &mut Pit8254, now: Ticks) -> u16 {
        outb(pit, 0x43, 0x00, now);
        let low = inb(pit, 0x40, now);
        let high = inb(pit, 0x40, now);
        u16::from_le_bytes([low, high])
    }

    #[test]
    fn one_khz_is_exact() {
        let mut pit = Pit8254::new();
        let w = 5_000;
        pit_start(&mut pit, 1000, w);
        let load = w + 1;
        assert_eq!(pit.next_irq_at(w), Some(load + 1193));
        for start in [load + 1, load + 7, load + 1193, load + 123_456] {
            assert_eq!(pit.irq_edges_between(start, start + 1_193_000), 1000);
            assert_eq!(pit.irq_edges_between(start, start + 11_930_000), 10_000);
        }
        // Ten seconds of guest time: 11,931,820 ticks at 1193 per period.
        let ten_s = load + 10 * crate::PIT_INPUT_HZ;
        assert_eq!(
            pit.irq_edges_between(0, ten_s + 1),
            10 * crate::PIT_INPUT_HZ / 1193
        );
        assert_eq!(
            pit.irq_edges_total(ten_s + 1),
            10 * crate::PIT_INPUT_HZ / 1193
        );
        // Summing the VMM's irregular looks loses and adds nothing.
        let mut sum = 0;
        let mut last = 0;
        let mut now = 0;
        while now < ten_s {
            now += 7_777 + now % 1_000;
            sum += pit.irq_edges_between(last, now);
            last = now;
        }
        assert_eq!(sum, pit.irq_edges_between(0, now));
    }

    #[test]
    fn mode2_count_output_and_edges() {
        let mut pit = Pit8254::new();
        pit_start(&mut pit, 1000, 0);
        assert_eq!(pit.mode(0), Some(Mode::RateGenerator));
        assert_eq!(pit.count(0, 1), 1193, "loaded at the next tick");
        assert_eq!(pit.count(0, 2), 1192);
        assert_eq!(pit.count(0, 1193), 1, "one tick before the reload");
        assert!(!pit.output(0, 1193), "low while the count is 1");
        assert_eq!(pit.count(0, 1194), 1193, "reloaded");
        assert!(pit.output(0, 1194));
        assert_eq!(pit.irq_edges_between(0, 1194), 0);
        assert_eq!(pit.irq_edges_between(1194, 1195), 1);
        assert_eq!(pit.next_irq_at(1195), Some(1194 + 1193));
    }

    #[test]
    fn latch_then_read_low_high() {
        let mut pit = Pit8254::new();
        pit_start(&mut pit, 1000, 0);
        outb(&mut pit, 0x43, 0x00, 101); // latch: value 1193 - 100 = 1093
        assert_eq!(inb(&mut pit, 0x40, 500), low_byte(1093));
        assert_eq!(
            inb(&mut pit, 0x40, 900),
            low_byte(1093 >> 8),
            "the latch holds"
        );
        assert_eq!(read_count(&mut pit, 1000), 1193 - 999);
        // A second latch before reading is ignored.
        outb(&mut pit, 0x43, 0x00, 1010);
        outb(&mut pit, 0x43, 0x00, 1020);
        let low = inb(&mut pit, 0x40, 1030);
        let high = inb(&mut pit, 0x40, 1030);
        assert_eq!(u16::from_le_bytes([low, high]), 1193 - 1009);
        // Unlatched reads are live, byte by byte.
        let low = inb(&mut pit, 0x40, 1100);
        let high = inb(&mut pit, 0x40, 1100);
        assert_eq!(u16::from_le_bytes([low, high]), 1193 - 1099);
    }

    #[test]
    fn guest_wait_periods_sees_reloads() {
        let mut pit = Pit8254::new();
        pit_start(&mut pit, 1000, 0);
        let mut now = 10;
        let mut last = read_count(&mut pit, now);
        let mut seen = 0;
        while seen < 20 {
            now += 97;
            let count = read_count(&mut pit, now);
            if count > last {
                seen += 1;
            }
            last = count;
        }
        // 20 reloads happen at 1194, 2387, ...: the 20th at 1 + 20 * 1193.
        assert!((1 + 20 * 1193..1 + 20 * 1193 + 97).contains(&now));
    }

    #[test]
    fn pit_stop_never_fires() {
        let mut pit = Pit8254::new();
        pit_start(&mut pit, 1000, 0);
        outb(&mut pit, 0x43, 0x30, 5_000);
        assert_eq!(pit.next_irq_at(5_000), None);
        assert!(!pit.output(0, 1_000_000));
        assert_eq!(pit.irq_edges_between(5_001, 100_000_000), 0);
        // The edges before the stop are still accounted for.
        assert_eq!(pit.irq_edges_total(100_000), 4);
        assert_eq!(
            pit.count(0, 9_999),
            pit.count(0, 5_000),
            "the counter holds"
        );
    }

    #[test]
    fn mode0_terminal_count() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0x30, 0);
        assert!(!pit.output(0, 0));
        outb(&mut pit, 0x40, 100, 10);
        assert!(!pit.output(0, 20), "stopped after the low byte");
        outb(&mut pit, 0x40, 0, 20);
        // Loaded at 21 with 100: high from 121 on.
        assert_eq!(pit.count(0, 21), 100);
        assert!(!pit.output(0, 120));
        assert!(pit.output(0, 121));
        assert_eq!(pit.next_irq_at(0), Some(121));
        assert_eq!(pit.irq_edges_between(0, u64::MAX), 1);
        assert_eq!(pit.count(0, 122), 0xffff, "counts on past zero");
        // Rewriting restarts: output low again at once.
        outb(&mut pit, 0x40, 10, 200);
        assert!(!pit.output(0, 200));
        outb(&mut pit, 0x40, 0, 200);
        assert_eq!(pit.next_irq_at(200), Some(211));
        assert_eq!(pit.irq_edges_total(1000), 2);
    }

    #[test]
    fn mode3_square_wave() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0x36, 0);
        outb(&mut pit, 0x40, 5, 0);
        outb(&mut pit, 0x40, 0, 0);
        // N = 5: high for 3 ticks, low for 2; count reads 4, 2, 0 then 4, 2.
        let outputs: [bool; 10] = core::array::from_fn(|i| pit.output(0, 1 + i as u64));
        assert_eq!(
            outputs,
            [true, true, true, false, false, true, true, true, false, false]
        );
        let counts: [u16; 5] = core::array::from_fn(|i| pit.count(0, 1 + i as u64));
        assert_eq!(counts, [4, 2, 0, 4, 2]);
        assert_eq!(pit.irq_edges_between(0, 1 + 5 * 100), 99);
        assert_eq!(pit.next_irq_at(2), Some(6));

        // A new count waits for the end of the half-period: written at 7
        // (high half 6..9), it loads at the falling edge at 9, low for 2.
        outb(&mut pit, 0x40, 4, 7);
        outb(&mut pit, 0x40, 0, 7);
        let status = {
            outb(&mut pit, 0x43, 0xe2, 7);
            inb(&mut pit, 0x40, 7)
        };
        assert_eq!(status & 0x40, 0x40, "null count until the reload");
        assert_eq!(pit.next_irq_at(7), Some(11));
        assert_eq!(pit.next_irq_at(12), Some(15));
        assert_eq!(pit.irq_edges_between(0, 16), 3);
    }

    #[test]
    fn mode2_new_count_waits_for_the_period() {
        let mut pit = Pit8254::new();
        pit_start(&mut pit, 1000, 0);
        outb(&mut pit, 0x40, low_byte(100), 500);
        outb(&mut pit, 0x40, 0, 500);
        assert_eq!(
            pit.next_irq_at(501),
            Some(1194),
            "the current period ends first"
        );
        assert_eq!(pit.next_irq_at(1195), Some(1294));
        assert_eq!(pit.count(0, 1194), 100);
        assert_eq!(pit.irq_edges_between(0, 1194 + 1000), 10);
        // A further write after the switch settles it and counts on.
        outb(&mut pit, 0x40, low_byte(200), 1300);
        outb(&mut pit, 0x40, 0, 1300);
        assert_eq!(pit.irq_edges_total(1394), 2);
        assert_eq!(pit.irq_edges_total(1395), 3);
        assert_eq!(pit.next_irq_at(1395), Some(1594));
    }

    #[test]
    fn read_back_status_and_count() {
        let mut pit = Pit8254::new();
        pit_start(&mut pit, 1000, 0);
        outb(&mut pit, 0x43, 0x34 | 0x40, 0); // channel 1, mode 2
        outb(&mut pit, 0x41, 10, 0);
        outb(&mut pit, 0x41, 0, 0);
        // Read back status and count of channels 0 and 1 at tick 5.
        outb(&mut pit, 0x43, 0xc6, 5);
        assert_eq!(
            inb(&mut pit, 0x40, 6),
            0x80 | 0x34,
            "output high, count loaded, lohi, mode 2"
        );
        assert_eq!(inb(&mut pit, 0x40, 50), low_byte(1193 - 4));
        assert_eq!(inb(&mut pit, 0x40, 50), low_byte((1193 - 4) >> 8));
        assert_eq!(inb(&mut pit, 0x41, 50), 0x80 | 0x34);
        assert_eq!(inb(&mut pit, 0x41, 50), 10 - 4);
        assert_eq!(inb(&mut pit, 0x41, 50), 0);
        // Status only (bit 5 set: no count latch).
        outb(&mut pit, 0x43, 0xe8, 60); // channel 2: idle since power-on
        assert_eq!(
            inb(&mut pit, 0x42, 60),
            0x40 | 0x30,
            "mode 0 low, null count"
        );
        assert_eq!(inb(&mut pit, 0x43, 60), 0xff);
    }

    #[test]
    fn byte_access_modes_and_bcd() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0x15, 0); // channel 0, low byte only, mode 2, BCD
        outb(&mut pit, 0x40, 50, 0);
        assert_eq!(pit.next_irq_at(0), Some(51), "binary despite the BCD bit");
        assert_eq!(inb(&mut pit, 0x40, 11), 40);
        outb(&mut pit, 0x43, 0x24, 100); // high byte only, mode 2
        outb(&mut pit, 0x40, 1, 100);
        assert_eq!(pit.next_irq_at(100), Some(101 + 256));
        assert_eq!(inb(&mut pit, 0x40, 101 + 16), 0, "high byte of 240");
        // Count 0 is 65536; a count of 1 in mode 2 makes no edges.
        outb(&mut pit, 0x43, 0x34, 1000);
        outb(&mut pit, 0x40, 0, 1000);
        outb(&mut pit, 0x40, 0, 1000);
        assert_eq!(pit.next_irq_at(1000), Some(1001 + 65536));
        outb(&mut pit, 0x43, 0x14, 2000);
        outb(&mut pit, 0x40, 1, 2000);
        assert_eq!(pit.next_irq_at(2000), None);
        assert_eq!(pit.count(0, 3000), 1);
    }

    #[test]
    fn gated_modes_never_start() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0x32, 0); // mode 1
        outb(&mut pit, 0x40, 10, 0);
        outb(&mut pit, 0x40, 0, 0);
        assert!(pit.output(0, 100));
        assert_eq!(pit.next_irq_at(0), None);
        // Mode 4: one strobe, low during the tick at count 0.
        outb(&mut pit, 0x43, 0x38, 200);
        outb(&mut pit, 0x40, 10, 200);
        outb(&mut pit, 0x40, 0, 200);
        assert!(pit.output(0, 210));
        assert!(!pit.output(0, 211));
        assert!(pit.output(0, 212));
        assert_eq!(pit.next_irq_at(0), Some(212));
    }

    /// Port 0x61's gate bit (Linux raises it so), speaker off.
    fn gate2(pit: &mut Pit8254, high: bool, now: Ticks) {
        let value = (inb(pit, 0x61, now) & !0x03) | u8::from(high);
        outb(pit, 0x61, value, now);
    }

    /// Channel 2 in mode 0 with `count` (two bytes).
    fn mode0_on_2(pit: &mut Pit8254, count: u16, now: Ticks) {
        outb(pit, 0x43, 0xb0, now);
        outb(pit, 0x42, low_byte(u32::from(count)), now);
        outb(pit, 0x42, low_byte(u32::from(count >> 8)), now);
    }

    fn out2(pit: &mut Pit8254, now: Ticks) -> bool {
        inb(pit, 0x61, now) & 0x20 != 0
    }

    #[test]
    fn channel_2_calibrates_as_linux_runs_it() {
        // quick_pit_calibrate: gate high, mode 0 from 0xffff, MSB polled.
        let mut pit = Pit8254::new();
        gate2(&mut pit, true, 100);
        assert_eq!(inb(&mut pit, 0x61, 100) & 0x03, 0x01);
        mode0_on_2(&mut pit, 0xffff, 100);
        let count = |pit: &mut Pit8254, t| {
            let low = inb(pit, 0x42, t);
            u16::from_le_bytes([low, inb(pit, 0x42, t)])
        };
        assert_eq!(count(&mut pit, 101 + 1000), 0xffff - 1000);
        assert_eq!(count(&mut pit, 101 + 0x1234), 0xffff - 0x1234);
        // pit_calibrate_tsc: the output (bit 5) rises at terminal count.
        assert!(!out2(&mut pit, 101 + 0xffff - 1));
        assert!(out2(&mut pit, 101 + 0xffff));
        // Channel 0 is untouched: no IRQ 0 edges.
        assert_eq!(pit.irq_edges_total(1_000_000), 0);
    }

    #[test]
    fn a_low_gate_holds_mode_0_and_it_goes_on_from_there() {
        let mut pit = Pit8254::new();
        gate2(&mut pit, true, 0);
        mode0_on_2(&mut pit, 1000, 0);
        gate2(&mut pit, false, 500);
        assert_eq!(pit.count(2, 500), 501);
        assert_eq!(pit.count(2, 700), 501, "standing still");
        assert!(!out2(&mut pit, 700));
        gate2(&mut pit, true, 700);
        assert_eq!(pit.count(2, 701), 500);
        assert!(!out2(&mut pit, 1200));
        assert!(out2(&mut pit, 1201), "terminal count 200 ticks late");
    }

    #[test]
    fn a_count_written_while_the_gate_is_low_waits_for_it() {
        let mut pit = Pit8254::new();
        mode0_on_2(&mut pit, 10, 0);
        assert_eq!(pit.count(2, 50), 10);
        assert!(!out2(&mut pit, 50));
        gate2(&mut pit, true, 50);
        assert!(!out2(&mut pit, 60));
        assert!(out2(&mut pit, 61));
    }

    #[test]
    fn a_low_gate_stops_mode_2_high_and_the_rising_edge_reloads() {
        let mut pit = Pit8254::new();
        gate2(&mut pit, true, 0);
        outb(&mut pit, 0x43, 0xb4, 0);
        outb(&mut pit, 0x42, 100, 0);
        outb(&mut pit, 0x42, 0, 0);
        assert!(!pit.output(2, 100), "low at count 1");
        gate2(&mut pit, false, 150);
        assert!(pit.output(2, 199), "high while the gate is low");
        gate2(&mut pit, true, 180);
        assert_eq!(pit.count(2, 181), 100, "reloaded at the next tick");
        assert!(!pit.output(2, 280));
        assert!(pit.output(2, 281));
    }

    #[test]
    fn mode_1_on_channel_2_starts_at_the_gates_rising_edge() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0xb2, 0);
        outb(&mut pit, 0x42, 10, 0);
        outb(&mut pit, 0x42, 0, 0);
        assert!(out2(&mut pit, 15), "waiting for the gate");
        gate2(&mut pit, true, 20);
        assert!(!out2(&mut pit, 21));
        assert_eq!(pit.count(2, 25), 6);
        assert!(out2(&mut pit, 31));
        // Retriggered by the next rising edge; a low gate does not stop it.
        gate2(&mut pit, false, 40);
        gate2(&mut pit, true, 41);
        assert!(!out2(&mut pit, 42));
        gate2(&mut pit, false, 43);
        assert!(out2(&mut pit, 52));
    }

    #[test]
    fn time_never_runs_backwards() {
        let mut pit = Pit8254::new();
        pit_start(&mut pit, 1000, 10_000);
        // A read "at" an earlier time is taken as the latest time seen.
        assert_eq!(read_count(&mut pit, 0), pit.count(0, 10_000));
    }

    fn port_op() -> impl Strategy<Value = (bool, u16, u8, u64)> {
        (
            any::<bool>(),
            prop_oneof![0x40u16..0x45, Just(SYSTEM_CONTROL_B_PORT)],
            any::<u8>(),
            0u64..3_000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec(port_op(), 0..100)) {
            let mut pit = Pit8254::new();
            let mut now = 0;
            let mut total = 0;
            for (is_read, port, value, dt) in ops {
                now += dt;
                if is_read {
                    inb(&mut pit, port, now);
                } else {
                    outb(&mut pit, port, value, now);
                }
                let t = pit.irq_edges_total(now);
                prop_assert!(t >= total, "the edge total went back");
                total = t;
                if let Some(next) = pit.next_irq_at(now) {
                    prop_assert!(next >= now);
                    prop_assert_eq!(pit.irq_edges_between(now, next), 0);
                    prop_assert_eq!(pit.irq_edges_between(now, next + 1), 1);
                }
                for c in 0..3 {
                    pit.output(c, now);
                    pit.count(c, now);
                }
            }
        }

        /// Times anywhere in the u64 range (near its end too) never overflow.
        #[test]
        fn extreme_times_never_panic(
            ops in proptest::collection::vec((any::<bool>(), 0x40u16..0x44, any::<u8>(), any::<u64>()), 0..40)
        ) {
            let mut pit = Pit8254::new();
            for (is_read, port, value, now) in ops {
                if is_read {
                    inb(&mut pit, port, now);
                } else {
                    outb(&mut pit, port, value, now);
                }
                pit.next_irq_at(now);
                pit.irq_edges_total(now);
                pit.irq_edges_between(now / 2, now);
                pit.output(0, now);
                pit.count(0, u64::MAX);
            }
        }

        /// Edge counts are additive in any mode and with a pending count
        /// change: [a, b) = [a, m) + [m, b).
        #[test]
        fn edge_counts_are_additive(
            mode in 0u8..6,
            count in 1u16..3000,
            second in proptest::option::of((1u16..3000, 0u64..10_000)),
            a in 0u64..100_000,
            m in 0u64..100_000,
            b in 0u64..100_000,
        ) {
            let mut pit = Pit8254::new();
            outb(&mut pit, 0x43, 0x30 | (mode << 1), 0);
            outb(&mut pit, 0x40, low_byte(u32::from(count)), 0);
            outb(&mut pit, 0x40, low_byte(u32::from(count >> 8)), 0);
            if let Some((count, at)) = second {
                outb(&mut pit, 0x40, low_byte(u32::from(count)), at);
                outb(&mut pit, 0x40, low_byte(u32::from(count >> 8)), at);
            }
            let mut points = [a, m, b];
            points.sort_unstable();
            let [a, m, b] = points;
            prop_assert_eq!(
                pit.irq_edges_between(a, b),
                pit.irq_edges_between(a, m) + pit.irq_edges_between(m, b)
            );
            // After the last reprogramming both counts agree.
            let settled = second.map_or(0, |(_, at)| at + 1);
            if a >= settled {
                prop_assert_eq!(
                    pit.irq_edges_total(b) - pit.irq_edges_total(a),
                    pit.irq_edges_between(a, b)
                );
            }
        }

        /// The edge arithmetic agrees with the output pin, tick by tick:
        /// an edge is counted at `t` exactly when the output rises at `t`.
        #[test]
        fn edges_match_the_output_pin(
            mode in prop_oneof![Just(0u8), Just(2), Just(3), Just(4)],
            count in 1u32..40,
            second in proptest::option::of((1u32..40, 1u64..100)),
        ) {
            let mut pit = Pit8254::new();
            outb(&mut pit, 0x43, 0x30 | (mode << 1), 0);
            outb(&mut pit, 0x40, low_byte(count), 0);
            outb(&mut pit, 0x40, 0, 0);
            let mut from = 1;
            if let Some((count, at)) = second {
                outb(&mut pit, 0x40, low_byte(count), at);
                outb(&mut pit, 0x40, 0, at);
                if mode == 0 || mode == 4 {
                    from = at + 1;
                }
            }
            for t in from + 1..from + 300 {
                let rose = !pit.output(0, t - 1) && pit.output(0, t);
                prop_assert_eq!(pit.irq_edges_between(t, t + 1), u64::from(rose), "tick {}", t);
            }
        }

        /// Mode 0 on channel 2 under a gate that goes up and down: the count
        /// drops by one at each tick while the gate is high (a gate written
        /// at `w` governs the ticks after `w`), and the output rises when it
        /// has dropped by the whole count.
        #[test]
        fn mode0_counts_only_the_ticks_its_gate_is_high(
            count in 1u16..200,
            toggles in proptest::collection::vec(1u64..40, 0..12),
        ) {
            let mut pit = Pit8254::new();
            gate2(&mut pit, true, 0);
            mode0_on_2(&mut pit, count, 0);
            let mut at = std::vec::Vec::new();
            let mut w = 0;
            for d in toggles {
                w += d;
                at.push(w);
            }
            let mut high = true;
            let mut next = 0;
            let mut counted = 0u64;
            for t in 1..w + 300 {
                // Ticks up to and including `t - 1` are settled; apply the
                // gate writes made at `t - 1` before tick `t`.
                while next < at.len() && at[next] == t - 1 {
                    high = !high;
                    gate2(&mut pit, high, t - 1);
                    next += 1;
                }
                if t > 1 && high {
                    counted += 1;
                }
                let expected = u64::from(count).wrapping_sub(counted) as u16;
                prop_assert_eq!(pit.count(2, t), expected, "tick {}", t);
                prop_assert_eq!(pit.output(2, t), counted >= u64::from(count), "tick {}", t);
            }
        }

        /// Mode 2 with any divisor: every window of k periods holds exactly k
        /// edges, wherever it starts after the load.
        #[test]
        fn mode2_has_no_drift(divisor in 2u32..=65536, start in 2u64..1_000_000, periods in 0u64..2_000) {
            let mut pit = Pit8254::new();
            outb(&mut pit, 0x43, 0x34, 0);
            outb(&mut pit, 0x40, low_byte(divisor), 0);
            outb(&mut pit, 0x40, low_byte(divisor >> 8), 0);
            let len = periods * u64::from(divisor);
            prop_assert_eq!(pit.irq_edges_between(start, start + len), periods);
        }
    }
    #[test]
    fn period_follows_the_programming() {
        let mut pit = Pit8254::new();
        assert_eq!(pit.period(0), None, "power-on: not counting");
        let w = |pit: &mut Pit8254, port, v, t| pit.write(port, AccessSize::Byte, v, t);
        w(&mut pit, CONTROL_PORT, 0x34, 0); // channel 0, lo/hi, mode 2
        assert_eq!(pit.period(0), None, "no count yet");
        w(&mut pit, CHANNEL0_PORT, 0xa9, 1);
        w(&mut pit, CHANNEL0_PORT, 0x04, 2); // 1193
        assert_eq!(pit.period(0), Some(1193));
        // A new count in mode 2 takes over at the next period.
        w(&mut pit, CHANNEL0_PORT, 0x00, 10);
        w(&mut pit, CHANNEL0_PORT, 0x01, 11); // 256
        assert_eq!(pit.period(0), Some(256));
        w(&mut pit, CONTROL_PORT, 0x30, 20); // mode 0, no count: stops
        assert_eq!(pit.period(0), None);
        w(&mut pit, CONTROL_PORT, 0x36, 30); // mode 3
        w(&mut pit, CHANNEL0_PORT, 0x00, 31);
        w(&mut pit, CHANNEL0_PORT, 0x00, 32); // 0 means 65536
        assert_eq!(pit.period(0), Some(65536));
        assert_eq!(pit.period(3), None);
    }
}
