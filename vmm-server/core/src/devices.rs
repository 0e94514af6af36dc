//! The guest's devices behind one port bus: COM1 (its output goes to a
//! [`TxSink`], the guest console), the 8259A pair, the 8254 PIT with port
//! 0x61 (channel 2's gate and output), the CMOS RTC, the exit port and the
//! keyboard controller's reset line. Accesses happen at guest time (PIT input ticks), which the PIT
//! counts in; the dispatch ([`crate::guest`]) turns the PIT's edges into
//! IRQ 0 at the PIC and the PIC's INTR into interrupts for the guest
//! ([`crate::interrupts`]).

use vmm_devices::cmos_rtc::{CmosRtc, INDEX_PORT};
use vmm_devices::debug_exit::{DebugExit, DEFAULT_PORT};
use vmm_devices::pic8259::Pic8259Pair;
use vmm_devices::pit8254::Pit8254;
use vmm_devices::reset_line::{ResetLine, COMMAND_PORT};
use vmm_devices::system_control_b::SYSTEM_CONTROL_B_PORT;
use vmm_devices::uart16550::{TxSink, Uart16550, COM1_BASE};
use vmm_devices::{AccessSize, Bus, BusError, DeviceId, DeviceSet, Lanes, PortDevice, PortRange};

const UART: DeviceId = DeviceId(0);
const PIC: DeviceId = DeviceId(1);
const PIT: DeviceId = DeviceId(2);
const EXIT: DeviceId = DeviceId(3);
const RESET: DeviceId = DeviceId(4);
const RTC: DeviceId = DeviceId(5);
/// COM1's interrupt line at the PIC.
const COM1_IRQ: u8 = 4;

pub struct Devices<S> {
    bus: Bus<8>,
    set: Set<S>,
}

struct Set<S> {
    uart: Uart16550<S>,
    pic: Pic8259Pair,
    pit: Pit8254,
    exit: DebugExit,
    reset: ResetLine,
    rtc: CmosRtc,
}

impl<S: TxSink> DeviceSet for Set<S> {
    fn device(&mut self, id: DeviceId) -> Option<&mut dyn PortDevice> {
        match id {
            UART => Some(&mut self.uart),
            PIC => Some(&mut self.pic),
            PIT => Some(&mut self.pit),
            EXIT => Some(&mut self.exit),
            RESET => Some(&mut self.reset),
            RTC => Some(&mut self.rtc),
            _ => None,
        }
    }
}

fn size(bytes: u8) -> AccessSize {
    match bytes {
        4 => AccessSize::Dword,
        2 => AccessSize::Word,
        _ => AccessSize::Byte,
    }
}

/// Whether `port` is one of COM1's: an access may change its interrupt.
pub fn uart_port(port: u16) -> bool {
    (COM1_BASE..COM1_BASE + 8).contains(&port)
}

impl<S> core::fmt::Debug for Devices<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Devices")
            .field("pic_irr", &self.set.pic.irr())
            .field("pic_imr", &self.set.pic.imr())
            .field("pit_period", &self.set.pit.period(0))
            .finish_non_exhaustive()
    }
}

impl<S: TxSink> Devices<S> {
    /// The devices, with the UART's output going to `console`.
    pub fn new(console: S) -> Result<Devices<S>, BusError> {
        let mut bus = Bus::new();
        let ranges = [
            (COM1_BASE, 8, UART),
            (0x20, 2, PIC),
            (0xa0, 2, PIC),
            (0x40, 4, PIT),
            (SYSTEM_CONTROL_B_PORT, 1, PIT),
            (INDEX_PORT, 2, RTC),
            (DEFAULT_PORT, 1, EXIT),
            (COMMAND_PORT, 1, RESET),
        ];
        for (base, len, id) in ranges {
            bus.register(PortRange::new(base, len)?, id, Lanes::Bytes)?;
        }
        Ok(Devices {
            bus,
            set: Set {
                uart: Uart16550::new(COM1_BASE, console),
                pic: Pic8259Pair::new(),
                pit: Pit8254::new(),
                exit: DebugExit::new(DEFAULT_PORT),
                reset: ResetLine::new(),
                rtc: CmosRtc::new(),
            },
        })
    }

    /// Where the UART's bytes go.
    pub fn console(&mut self) -> &mut S {
        self.set.uart.sink_mut()
    }

    /// A guest's port read at guest time `now` (PIT input ticks).
    pub fn read(&mut self, port: u16, bytes: u8, now: u64) -> u32 {
        let value = self.bus.read(&mut self.set, port, size(bytes), now);
        self.uart_line();
        value
    }

    /// A guest's port write at guest time `now`.
    pub fn write(&mut self, port: u16, bytes: u8, value: u32, now: u64) {
        self.bus.write(&mut self.set, port, size(bytes), value, now);
        self.uart_line();
    }

    /// The UART's interrupt output drives the PIC's IRQ 4, as a PC wires
    /// COM1: only port accesses change it (reading IIR or writing THR or
    /// IER), so it is brought up to date after each.
    fn uart_line(&mut self) {
        let high = self.set.uart.irq_level();
        self.set.pic.set_level(COM1_IRQ, high);
    }

    /// The PIT's channel 0 period while it counts periodically: the rate
    /// the real timer must run at.
    pub fn pit_period(&self) -> Option<u32> {
        self.set.pit.period(0)
    }

    /// Rising edges of the PIT's IRQ 0 output before `now`, since power-on.
    pub fn pit_edges(&self, now: u64) -> u64 {
        self.set.pit.irq_edges_total(now)
    }

    /// A request is latched at the PIC that its mask lets through (it may
    /// wait behind one in service).
    pub fn request_latched(&self) -> bool {
        self.set.pic.irr() & !self.set.pic.imr() != 0
    }

    /// The guest masked IRQ 0 at the PIC.
    pub fn irq0_masked(&self) -> bool {
        self.set.pic.imr() & 1 != 0
    }

    /// IRQ 0's request is latched at the PIC, not yet acknowledged.
    pub fn irq0_requested(&self) -> bool {
        self.set.pic.irr() & 1 != 0
    }

    /// One rising edge on the PIC's IRQ 0 line.
    pub fn pulse_irq0(&mut self) {
        self.set.pic.pulse(0);
    }

    /// The PIC asserts INTR: an interrupt waits for the CPU.
    pub fn interrupt_waiting(&self) -> bool {
        self.set.pic.int_output()
    }

    /// The interrupt-acknowledge cycle: the vector the CPU takes.
    pub fn acknowledge(&mut self) -> Option<u8> {
        self.set.pic.acknowledge()
    }

    /// The status the guest asked QEMU to exit with, once it has.
    pub fn exit_status(&self) -> Option<u64> {
        self.set.exit.exit_status()
    }

    /// The guest time at which the guest pulsed the reset line, once it
    /// has: a PC resets there.
    pub fn reset_requested(&self) -> Option<u64> {
        self.set.reset.reset_requested()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_devices::uart16550::ByteRing;
    use vmm_devices::PIT_INPUT_HZ;

    fn devices() -> Devices<ByteRing<16>> {
        Devices::new(ByteRing::new()).unwrap()
    }

    #[test]
    fn the_rtc_answers_at_0x70_and_0x71() {
        let mut d = devices();
        d.write(0x70, 1, 0x09, 0);
        assert_eq!(d.read(0x71, 1, 0), 0x26, "the epoch's year, in BCD");
        d.write(0x70, 1, 0x00, 0);
        let later = 61 * PIT_INPUT_HZ;
        assert_eq!(d.read(0x71, 1, later), 0x01, "a minute and a second later");
        d.write(0x70, 1, 0x02, later);
        assert_eq!(d.read(0x71, 1, later), 0x01);
    }

    #[test]
    fn port_0x61_gates_pit_channel_2_and_shows_its_output() {
        let mut d = devices();
        d.write(0x61, 1, 0x01, 100);
        d.write(0x43, 1, 0xb0, 100);
        d.write(0x42, 1, 10, 100);
        d.write(0x42, 1, 0, 100);
        assert_eq!(d.read(0x61, 1, 110) & 0x21, 0x01, "counting, gate high");
        assert_eq!(d.read(0x61, 1, 111) & 0x21, 0x21, "terminal count");
        assert_eq!(d.pit_edges(1_000), 0, "channel 2 makes no IRQ 0 edges");
    }
}
