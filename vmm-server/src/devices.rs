//! The guest's devices behind one port bus: COM1 (its output goes to the
//! guest console, see [`Console`]), the 8259A pair, the 8254 PIT and the
//! exit port. Accesses happen at guest time (`timer::Clock`), which the PIT
//! counts in; the VMM's serving loop turns the PIT's edges into IRQ 0 at the
//! PIC and the PIC's INTR into interrupts for the guest (`run.rs`).

use previrt_protocol::vmm_layout::{
    StartInfo, DEVICE_GUEST_CONSOLE, GUEST_CONSOLE_PORTS, GUEST_CONSOLE_PORTS_SLOT,
};
use previrt_sel4::serial::{SerialError, SerialPort};
use previrt_sel4::{println, IoPort};
use vmm_devices::debug_exit::{DebugExit, DEFAULT_PORT};
use vmm_devices::pic8259::Pic8259Pair;
use vmm_devices::pit8254::Pit8254;
use vmm_devices::uart16550::{TxSink, Uart16550, COM1_BASE};
use vmm_devices::{AccessSize, Bus, DeviceId, DeviceSet, Lanes, PortDevice, PortRange};

/// Where the guest's UART bytes go: the real COM2, which the VMM owns
/// (the system's `guest_console`), so the guest's console leaves the machine
/// on a line of its own, byte for byte, apart from the kernel's and the VMM's
/// lines on COM1. Without COM2 (not in the system, or not usable: said once)
/// they go to the VMM's own console (COM1), mixed with its lines.
pub struct Console {
    com2: Option<SerialPort>,
}

impl Console {
    /// Sets up COM2 if the system gives it to the VMM.
    pub fn open(info: &StartInfo) -> Console {
        if info.devices & DEVICE_GUEST_CONSOLE == 0 {
            println!("vmm-server: no guest console port in this system: the guest's console goes to the VMM's console (COM1)");
            return Console { com2: None };
        }
        match SerialPort::init(IoPort(GUEST_CONSOLE_PORTS_SLOT), GUEST_CONSOLE_PORTS.0) {
            Ok(port) => {
                println!(
                    "vmm-server: the guest's console goes to COM2 (ports {:#x}..={:#x})",
                    GUEST_CONSOLE_PORTS.0, GUEST_CONSOLE_PORTS.1
                );
                Console { com2: Some(port) }
            }
            Err(e) => {
                Console::unusable(e);
                Console { com2: None }
            }
        }
    }

    fn unusable(e: SerialError) {
        println!(
            "vmm-server: error: the guest console port (COM2, CSpace slot {GUEST_CONSOLE_PORTS_SLOT}): {e}; the guest's console goes to the VMM's console (COM1) from here on"
        );
    }
}

impl TxSink for Console {
    fn transmit(&mut self, byte: u8) {
        if let Some(port) = self.com2 {
            match port.write_byte(byte) {
                Ok(()) => return,
                Err(e) => {
                    Console::unusable(e);
                    self.com2 = None;
                }
            }
        }
        previrt_sel4::debug::write_bytes(&[byte]);
    }
}

const UART: DeviceId = DeviceId(0);
const PIC: DeviceId = DeviceId(1);
const PIT: DeviceId = DeviceId(2);
const EXIT: DeviceId = DeviceId(3);

pub struct Devices {
    bus: Bus<8>,
    set: Set,
}

struct Set {
    uart: Uart16550<Console>,
    pic: Pic8259Pair,
    pit: Pit8254,
    exit: DebugExit,
}

impl DeviceSet for Set {
    fn device(&mut self, id: DeviceId) -> Option<&mut dyn PortDevice> {
        match id {
            UART => Some(&mut self.uart),
            PIC => Some(&mut self.pic),
            PIT => Some(&mut self.pit),
            EXIT => Some(&mut self.exit),
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

impl Devices {
    pub fn new(console: Console) -> Devices {
        let mut bus = Bus::new();
        let ranges = [
            (COM1_BASE, 8, UART),
            (0x20, 2, PIC),
            (0xa0, 2, PIC),
            (0x40, 4, PIT),
            (DEFAULT_PORT, 1, EXIT),
        ];
        for (base, len, id) in ranges {
            let registered =
                PortRange::new(base, len).and_then(|r| bus.register(r, id, Lanes::Bytes));
            if let Err(e) = registered {
                println!("vmm-server: device ports {base:#x}+{len}: {e}");
            }
        }
        Devices {
            bus,
            set: Set {
                uart: Uart16550::new(COM1_BASE, console),
                pic: Pic8259Pair::new(),
                pit: Pit8254::new(),
                exit: DebugExit::new(DEFAULT_PORT),
            },
        }
    }

    /// A guest's port read at guest time `now` (PIT input ticks).
    pub fn read(&mut self, port: u16, bytes: u8, now: u64) -> u32 {
        self.bus.read(&mut self.set, port, size(bytes), now)
    }

    /// A guest's port write at guest time `now`.
    pub fn write(&mut self, port: u16, bytes: u8, value: u32, now: u64) {
        self.bus.write(&mut self.set, port, size(bytes), value, now);
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
}
