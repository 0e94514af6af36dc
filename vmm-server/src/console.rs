//! The guest's console: where the bytes the guest writes to its UART
//! (`vmm_core::devices`) leave the machine.

use previrt_protocol::vmm_layout::{
    guest_console_port, StartInfo, DEVICE_DEBUGCON, DEVICE_GUEST_CONSOLE, GUEST_CONSOLE_PORTS,
    GUEST_CONSOLE_PORTS_SLOT,
};
use previrt_sel4::serial::{DebugCon, SerialError, SerialPort};
use previrt_sel4::{println, IoPort};
use vmm_devices::uart16550::TxSink;

/// Where the guest's UART bytes go: the real COM2, which the VMM owns
/// (the system's `guest_console`), so the guest's console leaves the machine
/// on a line of its own, byte for byte, apart from the kernel's and the VMM's
/// lines on COM1. Without COM2 (not in the system, or not usable: said once)
/// they go to the VMM's own console (COM1), mixed with its lines.
/// In a system of several guests the console is a one-port `isa-debugcon`
/// of the guest's own instead ([`guest_console_port`]).
pub struct Console {
    com2: Option<SerialPort>,
    debugcon: Option<DebugCon>,
}

impl Console {
    /// Sets up COM2 (or guest `index`'s own port) if the system gives it to
    /// the VMM.
    pub fn open(info: &StartInfo, index: u32) -> Console {
        let none = Console {
            com2: None,
            debugcon: None,
        };
        if info.devices & DEVICE_GUEST_CONSOLE == 0 {
            println!("vmm-server: no guest console port in this system: the guest's console goes to the VMM's console (COM1)");
            return none;
        }
        if info.devices & DEVICE_DEBUGCON != 0 {
            let port = guest_console_port(u64::from(index));
            return match DebugCon::open(IoPort(GUEST_CONSOLE_PORTS_SLOT), port) {
                Ok(con) => {
                    println!("vmm-server: guest{index}'s console goes to its own port {port:#x}");
                    Console {
                        debugcon: Some(con),
                        ..none
                    }
                }
                Err(e) => {
                    Console::unusable(e);
                    none
                }
            };
        }
        match SerialPort::init(IoPort(GUEST_CONSOLE_PORTS_SLOT), GUEST_CONSOLE_PORTS.0) {
            Ok(port) => {
                println!(
                    "vmm-server: the guest's console goes to COM2 (ports {:#x}..={:#x})",
                    GUEST_CONSOLE_PORTS.0, GUEST_CONSOLE_PORTS.1
                );
                Console {
                    com2: Some(port),
                    ..none
                }
            }
            Err(e) => {
                Console::unusable(e);
                none
            }
        }
    }

    fn unusable(e: SerialError) {
        println!(
            "vmm-server: error: the guest console port (COM2 or its own, CSpace slot {GUEST_CONSOLE_PORTS_SLOT}): {e}; the guest's console goes to the VMM's console from here on"
        );
    }
}

impl TxSink for Console {
    fn transmit(&mut self, byte: u8) {
        if let Some(port) = self.debugcon {
            match port.write_byte(byte) {
                Ok(()) => return,
                Err(e) => {
                    Console::unusable(e);
                    self.debugcon = None;
                }
            }
        }
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
