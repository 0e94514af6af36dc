//! The guest's devices behind one port bus: COM1 (its output goes to the
//! console), the 8259A pair, the 8254 PIT and the exit port. Guest time for
//! the PIT is not kept yet (interrupts are the next step): accesses see time 0.

use previrt_sel4::println;
use vmm_devices::debug_exit::{DebugExit, DEFAULT_PORT};
use vmm_devices::pic8259::Pic8259Pair;
use vmm_devices::pit8254::Pit8254;
use vmm_devices::uart16550::{TxSink, Uart16550, COM1_BASE};
use vmm_devices::{AccessSize, Bus, DeviceId, DeviceSet, Lanes, PortDevice, PortRange};

/// The guest's console: its bytes go to the kernel's debug console.
pub struct Console;

impl TxSink for Console {
    fn transmit(&mut self, byte: u8) {
        previrt_sel4::sys::syscalls::debug_put_char(byte);
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
    pub fn new() -> Devices {
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
                uart: Uart16550::new(COM1_BASE, Console),
                pic: Pic8259Pair::new(),
                pit: Pit8254::new(),
                exit: DebugExit::new(DEFAULT_PORT),
            },
        }
    }

    pub fn read(&mut self, port: u16, bytes: u8) -> u32 {
        self.bus.read(&mut self.set, port, size(bytes), 0)
    }

    pub fn write(&mut self, port: u16, bytes: u8, value: u32) {
        self.bus.write(&mut self.set, port, size(bytes), value, 0);
    }

    /// The status the guest asked QEMU to exit with, once it has.
    pub fn exit_status(&self) -> Option<u64> {
        self.set.exit.exit_status()
    }
}
