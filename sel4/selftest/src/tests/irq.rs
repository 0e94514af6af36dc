//! Interrupts: an IOAPIC IRQ handler for the PIT, the PIT programmed through
//! the I/O port capability, and 100 timer interrupts received on a
//! notification and acknowledged.

use previrt_sel4::cap::{Polarity, Trigger};
use previrt_sel4::{init, println, IrqHandler, Word};

use super::{check, Context, Outcome};
use crate::objects::{slot, Objects};

/// QEMU's MADT routes ISA IRQ 0 (the PIT) to IOAPIC pin 2.
const PIT_PIN: Word = 2;
const PIT_HZ: u32 = 1_193_182;
const RATE_HZ: u32 = 1000;
const TICKS: u32 = 100;
const PIT_COMMAND: u16 = 0x43;
const PIT_CHANNEL0: u16 = 0x40;

pub fn run(objects: &mut Objects) -> Outcome {
    let ports = init::IO_PORTS;
    let notification = objects.notification().doing("create the notification")?;
    let handler_slot = objects.slot().doing("allocate a slot")?;
    init::IRQ_CONTROL
        .get_ioapic(
            slot(handler_slot),
            0,
            PIT_PIN,
            Trigger::Edge,
            Polarity::ActiveHigh,
            0,
        )
        .doing("get the IOAPIC IRQ handler")?;
    let handler = IrqHandler(handler_slot);
    handler
        .set_notification(notification)
        .doing("bind the handler to the notification")?;

    // Channel 0, low then high byte, mode 2 (rate generator).
    let divisor = PIT_HZ / RATE_HZ;
    ports
        .out8(PIT_COMMAND, 0x34)
        .doing("program the PIT mode")?;
    ports
        .out8(PIT_CHANNEL0, divisor as u8)
        .doing("program the PIT divisor")?;
    ports
        .out8(PIT_CHANNEL0, (divisor >> 8) as u8)
        .doing("program the PIT divisor")?;

    let mut received = 0;
    while received < TICKS {
        notification.wait();
        received += 1;
        handler.ack().doing("acknowledge the interrupt")?;
    }

    // Latch channel 0 and read the running count back through the port cap.
    ports.out8(PIT_COMMAND, 0x00).doing("latch the PIT count")?;
    let low = ports.in8(PIT_CHANNEL0).doing("read the PIT count")?;
    let high = ports.in8(PIT_CHANNEL0).doing("read the PIT count")?;
    let count = u32::from(low) | u32::from(high) << 8;
    // Stop the timer: mode 0 with no count loaded never fires again. The
    // handler stays bound, so a tick that was already in flight lands on the
    // notification instead of being reported by the kernel as undelivered.
    ports.out8(PIT_COMMAND, 0x30).doing("stop the PIT")?;

    println!("irq: {received} PIT interrupts at {RATE_HZ} Hz received on a notification and acknowledged");
    println!("irq: PIT count read back through the I/O port capability: {count} of {divisor}");
    check(count <= divisor, "PIT count above its reload value")
}
