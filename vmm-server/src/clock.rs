//! Guest time from the real PIT (docs/vmm-server.md, "Interrupts").
//!
//! The VMM drives the machine's 8254 at the rate the guest programmed into
//! its virtual one (channel 0, modes 2 and 3), so each real IRQ 0 is one
//! period of guest time: guest time counts real PIT periods and cannot
//! drift from them. Between two IRQs the TSC interpolates (never reaching
//! the next period), so a guest that polls its PIT's count sees it run
//! down and reload. The interrupt thread ([`crate::irq_thread`]) counts the
//! real IRQs with [`record_tick`].

use core::sync::atomic::{AtomicU64, Ordering};

use previrt_protocol::vmm_layout::{PIT_PORTS_SLOT, SHARED_TICK_PERIOD};
use previrt_sel4::cpu::rdtsc;
use previrt_sel4::{println, IoPort};

/// Real IRQs counted since the VMM started.
static TICKS: AtomicU64 = AtomicU64::new(0);
/// The TSC at the last real IRQ.
static TICK_TSC: AtomicU64 = AtomicU64::new(0);
/// TSC ticks between the last two real IRQs (0: not known yet).
static PERIOD_TSC: AtomicU64 = AtomicU64::new(0);

/// Counts one real IRQ of the PIT, at the TSC now.
pub fn record_tick() {
    let now = rdtsc();
    let last = TICK_TSC.swap(now, Ordering::AcqRel);
    if last != 0 {
        PERIOD_TSC.store(now.wrapping_sub(last), Ordering::Release);
    }
    TICKS.fetch_add(1, Ordering::AcqRel);
}

/// Guest time, in PIT input ticks (1,193,182 Hz), and the real PIT that
/// keeps it.
pub struct Clock {
    ports: IoPort,
    /// The real PIT's period in input ticks; 0 when it is stopped.
    period: u64,
    /// Guest time when the real PIT was last (re)programmed or stopped.
    base: u64,
    /// `TICKS` then.
    ticks_at_base: u64,
    /// The TSC then.
    tsc_at_base: u64,
    /// The latest time handed out (time never runs backwards).
    last: u64,
    /// Real ticks counted, for the statistics.
    pub real_ticks: u64,
    /// While shared: whether the guest's PIT runs in a periodic mode.
    guest_running: bool,
    /// The supervisor runs the real PIT at [`SHARED_TICK_PERIOD`] for every
    /// VMM ([`Clock::share_ticks`]); the guest's period is only recorded.
    shared: bool,
}

impl Clock {
    pub const fn new() -> Clock {
        Clock {
            ports: IoPort(PIT_PORTS_SLOT),
            period: 0,
            base: 0,
            ticks_at_base: 0,
            tsc_at_base: 0,
            last: 0,
            real_ticks: 0,
            guest_running: false,
            shared: false,
        }
    }

    /// The real PIT is the supervisor's (several guests): it runs at
    /// [`SHARED_TICK_PERIOD`] from now on, whatever the guest programs, and
    /// guest time counts its ticks. A guest's own period then only decides
    /// when its virtual PIT's edges fall; they are seen at the next real
    /// tick or request, so a guest at the shared rate (1 kHz, as the test
    /// guest's) gets every edge within one period.
    pub fn share_ticks(&mut self) {
        self.shared = true;
        self.base = 0;
        self.ticks_at_base = TICKS.load(Ordering::Acquire);
        self.tsc_at_base = rdtsc();
        self.period = u64::from(SHARED_TICK_PERIOD);
    }

    /// Stops the real PIT the firmware left running (at 18.2 Hz): guest
    /// time starts when the guest programs its PIT.
    pub fn stop_real_timer(&mut self) {
        if let Err(e) = self.ports.out8(0x43, 0x30) {
            println!("vmm-server: stopping the real PIT failed: {e}");
        }
    }

    /// True while the real PIT runs (shared: while the guest's PIT runs).
    pub fn running(&self) -> bool {
        if self.shared {
            return self.guest_running;
        }
        self.period != 0
    }

    /// Guest time now.
    pub fn now(&mut self) -> u64 {
        if self.period == 0 {
            return self.last;
        }
        let ticks = TICKS.load(Ordering::Acquire);
        let whole = ticks.wrapping_sub(self.ticks_at_base);
        self.real_ticks = whole;
        let at = self.base + whole * self.period;
        // Within the period: the TSC since the later of the last IRQ and
        // the programming, scaled by the last period's length.
        let since = rdtsc().wrapping_sub(TICK_TSC.load(Ordering::Acquire).max(self.tsc_at_base));
        // Within u64 for any interval under 2^47 TSC ticks (the period is at
        // most 2^16); a longer one is past the period anyway.
        let part = match PERIOD_TSC.load(Ordering::Acquire) {
            0 => 0,
            p => since
                .checked_mul(self.period)
                .map_or(self.period, |x| x / p),
        };
        let now = at + part.min(self.period - 1);
        self.last = self.last.max(now);
        self.last
    }

    /// Runs the real PIT with `period` input ticks (the guest's channel 0
    /// in a periodic mode), or stops it (`None`). Guest time carries on
    /// from where it is.
    pub fn set_period(&mut self, period: Option<u32>) {
        if self.shared {
            self.guest_running = period.is_some();
            return;
        }
        let period = u64::from(period.unwrap_or(0));
        if period == self.period {
            return;
        }
        self.base = self.now();
        if self.period == 0 && period != 0 {
            // The PIT model loads a count written at `w` at the next input
            // tick, so its edges fall at `w + 1 + kN`, and it counts an edge
            // once guest time is past it (`irq_edges_total`): at
            // `w + 2 + kN`. The real PIT starts counting now; guest time
            // starts two ticks on, so real IRQ k brings it exactly to where
            // edge k counts (and never before). Without this, a tick served
            // within 2 input ticks (1.7 µs of TSC) of its IRQ found no edge
            // — always the first one, whose period the TSC cannot
            // interpolate yet — and waited for the VMM's next look at the
            // PIC: the guest's next request, or the next real tick, one
            // period late.
            self.base += 2;
            self.last = self.base;
        }
        self.ticks_at_base = TICKS.load(Ordering::Acquire);
        self.tsc_at_base = rdtsc();
        self.period = period;
        let ports = self.ports;
        let programmed = if period == 0 {
            // Mode 0 without a count: the output stays low, no IRQ.
            ports.out8(0x43, 0x30)
        } else {
            // Channel 0, low then high byte, mode 2 (rate generator); a
            // count of 65536 is written as 0.
            let [low, high, ..] = (period as u32 & 0xffff).to_le_bytes();
            ports
                .out8(0x43, 0x34)
                .and_then(|()| ports.out8(0x40, low))
                .and_then(|()| ports.out8(0x40, high))
        };
        if let Err(e) = programmed {
            println!("vmm-server: programming the real PIT failed: {e}");
        }
    }
}
