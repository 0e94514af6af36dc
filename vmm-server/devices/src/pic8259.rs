//! The PC's pair of 8259A programmable interrupt controllers.
//!
//! The master answers on ports 0x20/0x21 and takes IRQs 0–7; the slave on
//! 0xa0/0xa1 takes IRQs 8–15 and its interrupt output is wired to the
//! master's IR2. The VMM drives the input lines ([`Pic8259Pair::raise`],
//! [`Pic8259Pair::lower`], [`Pic8259Pair::pulse`]), asks whether the master
//! asserts INTR ([`Pic8259Pair::pending_vector`]), and, once it commits to
//! delivering, performs the CPU's interrupt-acknowledge cycle
//! ([`Pic8259Pair::acknowledge`]).
//!
//! Modelled: ICW1–ICW4 (edge or level triggering, single or cascade, vector
//! base, auto-EOI, special fully nested mode), OCW1 (IMR), all of OCW2
//! (non-specific and specific EOI, rotate on EOI, rotate in auto-EOI, set
//! priority), OCW3 (read IRR/ISR, poll, special mask mode).
//!
//! Deterministic choices where the datasheet is silent or the chip undefined:
//! - Until a chip completes its first ICW sequence, and between an ICW1 and
//!   the sequence's last ICW, it asserts no interrupt ([`Pic8259Pair::acknowledge`]
//!   returns `None` when the master is in that state).
//! - ICW1 clears IMR, ISR and the edge latches of IRR, resets priority to IR7
//!   lowest, clears special mask, poll and rotate-in-auto-EOI, and selects
//!   IRR for reads; a line already high needs a new rising edge.
//! - MCS-80/85 mode (ICW4 bit 0 clear) delivers vectors as in 8086 mode
//!   (base from ICW2 bits 7–3); buffered-mode bits are stored and ignored.
//! - An OCW2/OCW3 written in the middle of an ICW sequence takes effect and
//!   does not disturb the sequence.
//! - IRQ 2 is the cascade: raising it is ignored (on a PC the ISA bus's IRQ2
//!   pin goes to IRQ 9, which the VMM can raise itself).
//! - A poll with nothing requesting reads 0x00.
//! - If the master acknowledges IR2 while it is programmed with no slave
//!   there (single mode, or ICW3 bit 2 clear) it supplies `base + 2` itself;
//!   if the slave does not answer (not initialized, or its ICW3 id is not 2)
//!   nobody drives the bus and the vector is 0xff.

use crate::{low_byte, widen, AccessSize, PortDevice, Ticks};

/// The master's command port (ICW1, OCW2, OCW3; reads IRR/ISR).
pub const MASTER_COMMAND: u16 = 0x20;
/// The master's data port (ICW2–4, OCW1 = IMR).
pub const MASTER_DATA: u16 = 0x21;
/// The slave's command port.
pub const SLAVE_COMMAND: u16 = 0xa0;
/// The slave's data port.
pub const SLAVE_DATA: u16 = 0xa1;
/// The master input the slave's interrupt output is wired to.
pub const CASCADE_IRQ: u8 = 2;

const CASCADE_BIT: u8 = 1 << CASCADE_IRQ;

/// Where a chip is in its initialization sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Init {
    /// Not initialized since power-on.
    PowerOn,
    /// Normal operation: data-port writes are OCW1.
    Ready,
    /// ICW1 seen; the next data-port writes are ICW2, then 3 and 4 if asked.
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Clone, Debug)]
struct Chip {
    init: Init,
    /// ICW1 SNGL clear: ICW3 follows and cascading is on.
    cascaded: bool,
    /// ICW1 IC4: ICW4 follows.
    wants_icw4: bool,
    /// ICW1 LTIM: level-triggered inputs.
    level_triggered: bool,
    vector_base: u8,
    /// ICW3: on the master, which IRs have slaves; on a slave, its id.
    icw3: u8,
    auto_eoi: bool,
    special_fully_nested: bool,
    /// Input line levels.
    lines: u8,
    /// Edge-triggered request latches (level mode reads `lines` instead).
    irr: u8,
    isr: u8,
    imr: u8,
    /// OCW3 RIS: the command port reads ISR rather than IRR.
    read_isr: bool,
    /// OCW3 P: the next read is a poll.
    poll: bool,
    special_mask: bool,
    rotate_in_auto_eoi: bool,
    /// The IR with the lowest priority; the one after it has the highest.
    lowest: u8,
}

impl Chip {
    const fn new() -> Self {
        Self {
            init: Init::PowerOn,
            cascaded: false,
            wants_icw4: false,
            level_triggered: false,
            vector_base: 0,
            icw3: 0,
            auto_eoi: false,
            special_fully_nested: false,
            lines: 0,
            irr: 0,
            isr: 0,
            imr: 0,
            read_isr: false,
            poll: false,
            special_mask: false,
            rotate_in_auto_eoi: false,
            lowest: 7,
        }
    }

    const fn ready(&self) -> bool {
        matches!(self.init, Init::Ready)
    }

    /// IRR as the chip sees it.
    const fn requests(&self) -> u8 {
        if self.level_triggered {
            self.lines
        } else {
            self.irr
        }
    }

    /// A line change; `latch_survives_fall` is for the master's cascade
    /// input (see [`Pic8259Pair::update_cascade`]).
    fn set_line(&mut self, bit: u8, high: bool, latch_survives_fall: bool) {
        if high {
            if self.lines & bit == 0 {
                self.irr |= bit;
            }
            self.lines |= bit;
        } else {
            self.lines &= !bit;
            // Edge-triggered IRR is the edge latch AND the line: a request
            // that goes away before INTA is gone (and INTA is then spurious).
            if !latch_survives_fall {
                self.irr &= !bit;
            }
        }
    }

    /// IRs in priority order, highest first.
    fn by_priority(&self) -> impl Iterator<Item = u8> {
        let first = (self.lowest + 1) & 7;
        (0..8).map(move |i| (first + i) & 7)
    }

    /// The IR an INTA now would acknowledge, if the chip asserts INT.
    fn highest_request(&self) -> Option<u8> {
        let requests = self.requests() & !self.imr;
        // In special mask mode a masked in-service level stops blocking.
        let blocking = if self.special_mask {
            self.isr & !self.imr
        } else {
            self.isr
        };
        // Special fully nested mode: a slave already in service may still
        // interrupt with a higher-priority request of its own.
        let exempt = if self.special_fully_nested && self.cascaded {
            self.icw3
        } else {
            0
        };
        for irq in self.by_priority() {
            let bit = 1 << irq;
            let in_service = blocking & bit != 0;
            if requests & bit != 0 && (!in_service || exempt & bit != 0) {
                return Some(irq);
            }
            if in_service {
                return None;
            }
        }
        None
    }

    fn int_output(&self) -> bool {
        self.ready() && self.highest_request().is_some()
    }

    /// INTA (or a poll) for `irq`: IRR to ISR.
    fn acknowledge(&mut self, irq: u8) {
        let bit = 1 << irq;
        self.irr &= !bit;
        if self.auto_eoi {
            if self.rotate_in_auto_eoi {
                self.lowest = irq;
            }
        } else {
            self.isr |= bit;
        }
    }

    fn non_specific_eoi(&mut self, rotate: bool) {
        if let Some(irq) = self.by_priority().find(|&irq| self.isr & (1 << irq) != 0) {
            self.isr &= !(1 << irq);
            if rotate {
                self.lowest = irq;
            }
        }
    }

    fn write_command(&mut self, value: u8) {
        if value & 0x10 != 0 {
            self.icw1(value);
        } else if value & 0x08 != 0 {
            // OCW3.
            if value & 0x40 != 0 {
                self.special_mask = value & 0x20 != 0;
            }
            if value & 0x04 != 0 {
                self.poll = true;
            }
            if value & 0x02 != 0 {
                self.read_isr = value & 0x01 != 0;
            }
        } else {
            // OCW2: R, SL, EOI in bits 7-5, the level in 2-0.
            let level = value & 7;
            match value >> 5 {
                0b000 => self.rotate_in_auto_eoi = false,
                0b001 => self.non_specific_eoi(false),
                0b011 => self.isr &= !(1 << level),
                0b100 => self.rotate_in_auto_eoi = true,
                0b101 => self.non_specific_eoi(true),
                0b110 => self.lowest = level,
                0b111 => {
                    self.isr &= !(1 << level);
                    self.lowest = level;
                }
                // 0b010: no operation.
                _ => {}
            }
        }
    }

    fn icw1(&mut self, value: u8) {
        self.init = Init::Icw2;
        self.level_triggered = value & 0x08 != 0;
        self.cascaded = value & 0x02 == 0;
        self.wants_icw4 = value & 0x01 != 0;
        if !self.wants_icw4 {
            self.auto_eoi = false;
            self.special_fully_nested = false;
        }
        self.irr = 0;
        self.isr = 0;
        self.imr = 0;
        self.read_isr = false;
        self.poll = false;
        self.special_mask = false;
        self.rotate_in_auto_eoi = false;
        self.lowest = 7;
    }

    fn write_data(&mut self, value: u8) {
        match self.init {
            Init::Icw2 => {
                self.vector_base = value & 0xf8;
                self.init = if self.cascaded {
                    Init::Icw3
                } else if self.wants_icw4 {
                    Init::Icw4
                } else {
                    Init::Ready
                };
            }
            Init::Icw3 => {
                self.icw3 = value;
                self.init = if self.wants_icw4 {
                    Init::Icw4
                } else {
                    Init::Ready
                };
            }
            Init::Icw4 => {
                self.auto_eoi = value & 0x02 != 0;
                self.special_fully_nested = value & 0x10 != 0;
                self.init = Init::Ready;
            }
            Init::Ready | Init::PowerOn => self.imr = value,
        }
    }

    /// A read of the command (`data == false`) or data port.
    fn read(&mut self, data: bool) -> u8 {
        if self.poll {
            self.poll = false;
            return match self.highest_request() {
                Some(irq) => {
                    self.acknowledge(irq);
                    0x80 | irq
                }
                None => 0,
            };
        }
        if data {
            self.imr
        } else if self.read_isr {
            self.isr
        } else {
            self.requests()
        }
    }
}

/// Where an acknowledged interrupt came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptSource {
    /// A real request on this IRQ (0–15); its ISR bit is now set (unless in
    /// auto-EOI mode).
    Irq(u8),
    /// No request was there at INTA: IRQ 7 (master) or 15 (slave) is
    /// reported with no ISR bit set on the chip that gave the vector (a slave
    /// spurious interrupt does set the master's ISR bit 2).
    Spurious(u8),
    /// The master acknowledged its cascade input but no slave answered; the
    /// vector is the floating bus's 0xff.
    NoSlave,
}

/// The result of an interrupt-acknowledge cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inta {
    /// The vector the CPU receives.
    pub vector: u8,
    /// Where it came from.
    pub source: InterruptSource,
}

/// The master/slave 8259A pair of a PC.
#[derive(Clone, Debug)]
pub struct Pic8259Pair {
    master: Chip,
    slave: Chip,
    /// The slave's INT output as the master last saw it.
    slave_int: bool,
}

impl Default for Pic8259Pair {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic8259Pair {
    /// The pair at power-on: uninitialized, all lines low.
    pub const fn new() -> Self {
        Self {
            master: Chip::new(),
            slave: Chip::new(),
            slave_int: false,
        }
    }

    /// Drives IRQ line `irq` (0–15) high: a rising edge latches a request.
    /// Lines past 15 and the cascade line 2 are ignored.
    pub fn raise(&mut self, irq: u8) {
        self.set_level(irq, true);
    }

    /// Drives IRQ line `irq` low: a request not yet acknowledged goes away.
    pub fn lower(&mut self, irq: u8) {
        self.set_level(irq, false);
    }

    /// A low-then-high transition that leaves the line high: what the PIT's
    /// output does at each mode-2 (or mode-3) period. A request still
    /// pending from the previous edge stays one request, as on hardware.
    pub fn pulse(&mut self, irq: u8) {
        self.lower(irq);
        self.raise(irq);
    }

    /// Sets line `irq` to `high`.
    pub fn set_level(&mut self, irq: u8, high: bool) {
        match irq {
            CASCADE_IRQ => {}
            0..=7 => self.master.set_line(1 << irq, high, false),
            8..=15 => self.slave.set_line(1 << (irq - 8), high, false),
            _ => {}
        }
        self.update_cascade();
    }

    /// Whether the master asserts INTR.
    pub fn int_output(&self) -> bool {
        self.master.int_output()
    }

    /// The vector an interrupt-acknowledge now would deliver, if the master
    /// asserts INTR; nothing changes.
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.master.int_output() {
            return None;
        }
        let irq = self.master.highest_request()?;
        if irq != CASCADE_IRQ || !self.has_slave() {
            return Some(self.master.vector_base | irq);
        }
        if !self.slave_answers() {
            return Some(0xff);
        }
        Some(match self.slave.highest_request() {
            Some(irq) => self.slave.vector_base | irq,
            None => self.slave.vector_base | 7,
        })
    }

    /// The CPU's interrupt-acknowledge cycle: the vector it receives.
    ///
    /// Call it once the VMM has committed to delivering an interrupt it saw
    /// with [`Pic8259Pair::pending_vector`]. If the request has gone since,
    /// the answer is spurious, as on hardware: `base + 7` and no ISR bit on
    /// the master, or, when the slave's request went, the slave's `base + 7`
    /// with the master's ISR bit 2 set (the guest must EOI the master).
    /// `None` while the master is not initialized (see the module's notes).
    pub fn acknowledge(&mut self) -> Option<u8> {
        self.inta().map(|inta| inta.vector)
    }

    /// [`Pic8259Pair::acknowledge`], saying where the vector came from.
    pub fn inta(&mut self) -> Option<Inta> {
        if !self.master.ready() {
            return None;
        }
        let result = match self.master.highest_request() {
            None => Inta {
                vector: self.master.vector_base | 7,
                source: InterruptSource::Spurious(7),
            },
            Some(irq) => {
                self.master.acknowledge(irq);
                if irq != CASCADE_IRQ || !self.has_slave() {
                    Inta {
                        vector: self.master.vector_base | irq,
                        source: InterruptSource::Irq(irq),
                    }
                } else if !self.slave_answers() {
                    Inta {
                        vector: 0xff,
                        source: InterruptSource::NoSlave,
                    }
                } else {
                    match self.slave.highest_request() {
                        Some(irq) => {
                            self.slave.acknowledge(irq);
                            Inta {
                                vector: self.slave.vector_base | irq,
                                source: InterruptSource::Irq(irq + 8),
                            }
                        }
                        None => Inta {
                            vector: self.slave.vector_base | 7,
                            source: InterruptSource::Spurious(15),
                        },
                    }
                }
            }
        };
        // INT drops during the INTA cycle; if the slave still requests, the
        // master sees a fresh edge on IR2.
        self.master.set_line(CASCADE_BIT, false, true);
        self.slave_int = false;
        self.update_cascade();
        Some(result)
    }

    /// Requests pending: the slave's IRR in bits 15–8, the master's in 7–0.
    pub fn irr(&self) -> u16 {
        u16::from_le_bytes([self.master.requests(), self.slave.requests()])
    }

    /// In-service bits, slave in 15–8.
    pub fn isr(&self) -> u16 {
        u16::from_le_bytes([self.master.isr, self.slave.isr])
    }

    /// Interrupt masks, slave in 15–8.
    pub fn imr(&self) -> u16 {
        u16::from_le_bytes([self.master.imr, self.slave.imr])
    }

    /// Whether both chips have completed an initialization sequence and are
    /// not in the middle of another.
    pub fn is_initialized(&self) -> bool {
        self.master.ready() && self.slave.ready()
    }

    /// The vector bases programmed by ICW2 (master, slave).
    pub fn vector_bases(&self) -> (u8, u8) {
        (self.master.vector_base, self.slave.vector_base)
    }

    fn has_slave(&self) -> bool {
        self.master.cascaded && self.master.icw3 & CASCADE_BIT != 0
    }

    fn slave_answers(&self) -> bool {
        self.slave.ready() && self.slave.icw3 & 7 == CASCADE_IRQ
    }

    /// Feeds the slave's INT output to the master's IR2.
    ///
    /// Unlike the master's own inputs, the cascade request stays latched in
    /// the master's IRR when the slave's INT falls again: that is how a
    /// slave request that vanishes before INTA turns into the slave's
    /// spurious IRQ 15, with the master's ISR bit 2 set.
    fn update_cascade(&mut self) {
        let int = self.slave.int_output();
        if int != self.slave_int {
            self.master.set_line(CASCADE_BIT, int, true);
            self.slave_int = int;
        }
    }
}

impl PortDevice for Pic8259Pair {
    /// Byte registers: a wider access reaches the register at `port` and its
    /// upper lanes read as ones (the [`crate::Bus`] splits wide accesses
    /// before they get here). Ports other than the four read 0xff.
    fn read(&mut self, port: u16, size: AccessSize, _now: Ticks) -> u32 {
        let polled = match port {
            MASTER_COMMAND | MASTER_DATA => self.master.poll,
            SLAVE_COMMAND | SLAVE_DATA => self.slave.poll,
            _ => false,
        };
        let byte = match port {
            MASTER_COMMAND | MASTER_DATA => self.master.read(port == MASTER_DATA),
            SLAVE_COMMAND | SLAVE_DATA => self.slave.read(port == SLAVE_DATA),
            _ => 0xff,
        };
        if polled {
            // A poll read acknowledges like INTA, and INT drops for it too.
            self.master.set_line(CASCADE_BIT, false, true);
            self.slave_int = false;
        }
        self.update_cascade();
        widen(byte, size)
    }

    fn write(&mut self, port: u16, _size: AccessSize, value: u32, _now: Ticks) {
        let value = low_byte(value);
        match port {
            MASTER_COMMAND => self.master.write_command(value),
            MASTER_DATA => self.master.write_data(value),
            SLAVE_COMMAND => self.slave.write_command(value),
            SLAVE_DATA => self.slave.write_data(value),
            _ => {}
        }
        self.update_cascade();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn outb(pic: &mut Pic8259Pair, port: u16, value: u8) {
        pic.write(port, AccessSize::Byte, u32::from(value), 0);
    }

    fn inb(pic: &mut Pic8259Pair, port: u16) -> u8 {
        low_byte(pic.read(port, AccessSize::Byte, 0))
    }

    /// The guest's pic_init, byte for byte (IRQ_BASE = 0x20).
    fn pic_init(pic: &mut Pic8259Pair) {
        outb(pic, 0x20, 0x11);
        outb(pic, 0xa0, 0x11);
        outb(pic, 0x21, 0x20);
        outb(pic, 0xa1, 0x28);
        outb(pic, 0x21, 0x04);
        outb(pic, 0xa1, 0x02);
        outb(pic, 0x21, 0x01);
        outb(pic, 0xa1, 0x01);
        outb(pic, 0x21, 0xff);
        outb(pic, 0xa1, 0xff);
    }

    /// The guest's pic_unmask.
    fn unmask(pic: &mut Pic8259Pair, irq: u8) {
        let port = if irq < 8 { 0x21 } else { 0xa1 };
        let mask = inb(pic, port) & !(1 << (irq & 7));
        outb(pic, port, mask);
    }

    fn initialized() -> Pic8259Pair {
        let mut pic = Pic8259Pair::new();
        pic_init(&mut pic);
        pic
    }

    #[test]
    fn uninitialized_pic_delivers_nothing() {
        let mut pic = Pic8259Pair::new();
        pic.raise(0);
        assert_eq!(pic.pending_vector(), None);
        assert_eq!(pic.acknowledge(), None);
        outb(&mut pic, 0x20, 0x11);
        outb(&mut pic, 0x21, 0x20);
        assert_eq!(pic.acknowledge(), None, "mid-sequence");
    }

    #[test]
    fn guest_init_timer_tick_and_eoi() {
        let mut pic = initialized();
        assert!(pic.is_initialized());
        assert_eq!(pic.vector_bases(), (0x20, 0x28));
        assert_eq!(inb(&mut pic, 0x21), 0xff);
        pic.raise(0);
        assert_eq!(pic.pending_vector(), None, "masked");
        unmask(&mut pic, 0);
        assert_eq!(inb(&mut pic, 0x21), 0xfe);
        assert_eq!(
            pic.pending_vector(),
            Some(0x20),
            "the latched edge survives masking"
        );
        assert_eq!(pic.acknowledge(), Some(0x20));
        assert_eq!(pic.isr(), 1);
        assert_eq!(pic.pending_vector(), None);
        pic.pulse(0);
        assert_eq!(pic.pending_vector(), None, "IRQ 0 in service blocks itself");
        outb(&mut pic, 0x20, 0x20); // non-specific EOI
        assert_eq!(pic.isr(), 0);
        assert_eq!(pic.acknowledge(), Some(0x20));
        outb(&mut pic, 0x20, 0x60); // specific EOI for IRQ 0, as tests/timer.c
        assert_eq!(pic.isr(), 0);
        assert_eq!(
            pic.pending_vector(),
            None,
            "the line stayed high: no new edge"
        );
    }

    #[test]
    fn priorities_and_nesting() {
        let mut pic = initialized();
        outb(&mut pic, 0x21, 0x00);
        pic.raise(5);
        pic.raise(1);
        assert_eq!(pic.acknowledge(), Some(0x21));
        assert_eq!(
            pic.acknowledge(),
            Some(0x27),
            "IRQ 5 is blocked by 1: spurious"
        );
        assert_eq!(pic.isr(), 0b10, "the spurious INTA set nothing");
        pic.raise(0);
        assert_eq!(pic.pending_vector(), Some(0x20), "higher priority nests");
        pic.acknowledge();
        outb(&mut pic, 0x20, 0x20);
        outb(&mut pic, 0x20, 0x20);
        assert_eq!(pic.isr(), 0);
        assert_eq!(pic.acknowledge(), Some(0x25));
    }

    #[test]
    fn spurious_master_irq7() {
        let mut pic = initialized();
        unmask(&mut pic, 3);
        pic.raise(3);
        assert_eq!(pic.pending_vector(), Some(0x23));
        pic.lower(3);
        let inta = pic.inta().unwrap();
        assert_eq!(inta.vector, 0x27);
        assert_eq!(inta.source, InterruptSource::Spurious(7));
        assert_eq!(pic.isr(), 0, "no ISR bit for a spurious IRQ 7");
    }

    #[test]
    fn slave_interrupt_and_spurious_irq15() {
        let mut pic = initialized();
        unmask(&mut pic, 2);
        unmask(&mut pic, 10);
        pic.raise(10);
        assert_eq!(pic.pending_vector(), Some(0x2a));
        let inta = pic.inta().unwrap();
        assert_eq!(
            inta,
            Inta {
                vector: 0x2a,
                source: InterruptSource::Irq(10)
            }
        );
        assert_eq!(pic.isr(), (1 << 10) | 0b100);
        outb(&mut pic, 0xa0, 0x20);
        outb(&mut pic, 0x20, 0x20);
        assert_eq!(pic.isr(), 0);

        pic.lower(10);
        pic.raise(10);
        assert_eq!(pic.pending_vector(), Some(0x2a));
        pic.lower(10);
        let inta = pic.inta().unwrap();
        assert_eq!(
            inta,
            Inta {
                vector: 0x2f,
                source: InterruptSource::Spurious(15)
            }
        );
        assert_eq!(
            pic.isr(),
            0b100,
            "slave spurious sets the master's ISR bit 2 only"
        );
        outb(&mut pic, 0x20, 0x20);
        assert_eq!(pic.isr(), 0);
        assert_eq!(pic.pending_vector(), None);
    }

    #[test]
    fn polling_through_the_cascade() {
        let mut pic = initialized();
        outb(&mut pic, 0x21, 0x00);
        outb(&mut pic, 0xa1, 0x00);
        pic.raise(9);
        outb(&mut pic, 0x20, 0x0c);
        assert_eq!(inb(&mut pic, 0x20), 0x82, "the master reports its IR2");
        outb(&mut pic, 0xa0, 0x0c);
        assert_eq!(inb(&mut pic, 0xa0), 0x81, "the slave reports IRQ 9");
        assert_eq!(pic.isr(), (1 << 9) | 0b100);
        outb(&mut pic, 0xa0, 0x20);
        outb(&mut pic, 0x20, 0x20);
        pic.pulse(9);
        assert_eq!(
            pic.pending_vector(),
            Some(0x29),
            "a new edge after the poll"
        );
    }

    #[test]
    fn level_triggered_mode() {
        let mut pic = Pic8259Pair::new();
        outb(&mut pic, 0x20, 0x19); // LTIM
        outb(&mut pic, 0x21, 0x40);
        outb(&mut pic, 0x21, 0x04);
        outb(&mut pic, 0x21, 0x01);
        outb(&mut pic, 0x21, 0x00);
        pic.raise(4);
        assert_eq!(pic.acknowledge(), Some(0x44));
        outb(&mut pic, 0x20, 0x20);
        assert_eq!(
            pic.acknowledge(),
            Some(0x44),
            "still high: interrupts again"
        );
        outb(&mut pic, 0x20, 0x20);
        pic.lower(4);
        assert_eq!(pic.pending_vector(), None);
    }

    #[test]
    fn ocw3_reads_poll_and_auto_eoi() {
        let mut pic = initialized();
        outb(&mut pic, 0x21, 0xf0);
        pic.raise(1);
        pic.raise(3);
        assert_eq!(inb(&mut pic, 0x20), 0b1010, "IRR by default");
        outb(&mut pic, 0x20, 0x0b); // read ISR
        assert_eq!(inb(&mut pic, 0x20), 0);
        outb(&mut pic, 0x20, 0x0c); // poll
        assert_eq!(inb(&mut pic, 0x20), 0x81);
        assert_eq!(
            inb(&mut pic, 0x20),
            0b10,
            "the poll acknowledged IRQ 1; ISR still selected"
        );
        outb(&mut pic, 0x20, 0x0a); // read IRR
        assert_eq!(inb(&mut pic, 0x20), 0b1000);
        outb(&mut pic, 0x20, 0x61);
        outb(&mut pic, 0x20, 0x0c);
        assert_eq!(inb(&mut pic, 0x21), 0x83, "a poll answers on either port");
        outb(&mut pic, 0x20, 0x0c);
        assert_eq!(inb(&mut pic, 0x20), 0x00, "nothing to poll");

        // Auto-EOI: ICW4 = 0x03.
        let mut pic = Pic8259Pair::new();
        for (port, value) in [
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, 0x03),
            (0x21, 0x00),
        ] {
            outb(&mut pic, port, value);
        }
        pic.raise(6);
        assert_eq!(pic.acknowledge(), Some(0x36));
        assert_eq!(pic.isr(), 0);
    }

    #[test]
    fn rotation_and_special_mask() {
        let mut pic = initialized();
        outb(&mut pic, 0x21, 0x00);
        outb(&mut pic, 0x20, 0xc3); // IR3 lowest: IR4 highest
        pic.raise(1);
        pic.raise(4);
        assert_eq!(pic.acknowledge(), Some(0x24));
        outb(&mut pic, 0x20, 0xa0); // rotate on non-specific EOI: IR4 lowest
        assert_eq!(pic.acknowledge(), Some(0x21));
        outb(&mut pic, 0x20, 0xe1); // rotate on specific EOI 1
        assert_eq!(pic.isr(), 0);
        pic.raise(3);
        assert_eq!(pic.acknowledge(), Some(0x23));
        // IRQ 3 in service blocks IRQ 5 unless special mask mode masks it out.
        pic.raise(5);
        assert_eq!(pic.pending_vector(), None);
        outb(&mut pic, 0x21, 0x08);
        outb(&mut pic, 0x20, 0x68); // OCW3: set special mask mode
        assert_eq!(pic.pending_vector(), Some(0x25));
    }

    #[test]
    fn masked_slave_and_icw1_reset() {
        let mut pic = initialized();
        unmask(&mut pic, 12);
        pic.raise(12);
        assert_eq!(pic.pending_vector(), None, "the cascade line 2 is masked");
        pic.raise(2);
        assert_eq!(pic.irr() & 0b100, 0b100, "the cascade input, not raise(2)");
        pic_init(&mut pic);
        assert_eq!(pic.irr(), 0, "ICW1 resets the edge latches");
        assert_eq!(pic.isr(), 0);
    }

    #[test]
    fn wide_and_foreign_accesses() {
        let mut pic = initialized();
        assert_eq!(pic.read(0x21, AccessSize::Word, 0), 0xffff);
        assert_eq!(pic.read(0x22, AccessSize::Byte, 0), 0xff);
        pic.write(0x22, AccessSize::Byte, 0, 0);
        pic.raise(200);
        pic.lower(16);
        assert_eq!(pic.imr(), 0xffff);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Raise(u8),
        Lower(u8),
        Pulse(u8),
        Mask(u16),
        Eoi(bool),
        SpecificEoi(bool, u8),
        Ack,
        Read(u16),
        Ocw3(bool, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..16).prop_map(Op::Raise),
            (0u8..16).prop_map(Op::Lower),
            (0u8..16).prop_map(Op::Pulse),
            any::<u16>().prop_map(Op::Mask),
            any::<bool>().prop_map(Op::Eoi),
            (any::<bool>(), 0u8..8).prop_map(|(s, l)| Op::SpecificEoi(s, l)),
            Just(Op::Ack),
            Just(Op::Ack),
            prop_oneof![Just(0x20u16), Just(0x21), Just(0xa0), Just(0xa1)].prop_map(Op::Read),
            (any::<bool>(), 0u8..0x80).prop_map(|(s, v)| Op::Ocw3(s, (v & 0x67) | 0x08)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_port_accesses_never_panic(
            ops in proptest::collection::vec((any::<bool>(), 0u16..0x100, any::<u8>(), 0u8..20), 0..200)
        ) {
            let mut pic = Pic8259Pair::new();
            for (is_read, port, value, line) in ops {
                let port = if port & 0x80 != 0 { 0xa0 | (port & 1) } else { 0x20 | (port & 1) };
                if is_read {
                    inb(&mut pic, port);
                } else {
                    outb(&mut pic, port, value);
                }
                pic.set_level(line, value & 1 != 0);
                if value & 6 == 6 {
                    let pending = pic.pending_vector();
                    let inta = pic.inta();
                    if pending.is_some() {
                        prop_assert_eq!(inta.map(|i| i.vector), pending);
                    }
                }
            }
        }

        /// After the guest's own initialization: a masked IRQ is never
        /// delivered, every delivered vector is what pending_vector said,
        /// and each rising edge is acknowledged at most once.
        #[test]
        fn masking_and_edges_are_respected(ops in proptest::collection::vec(op(), 0..300)) {
            let mut pic = initialized();
            let mut high = [false; 16];
            // An edge latched and not yet acknowledged (or withdrawn).
            let mut fresh = [false; 16];
            for op in ops {
                match op {
                    Op::Raise(irq) => {
                        if !high[usize::from(irq)] { fresh[usize::from(irq)] = true; }
                        high[usize::from(irq)] = true;
                        pic.raise(irq);
                    }
                    Op::Lower(irq) => {
                        high[usize::from(irq)] = false;
                        fresh[usize::from(irq)] = false;
                        pic.lower(irq);
                    }
                    Op::Pulse(irq) => {
                        high[usize::from(irq)] = true;
                        fresh[usize::from(irq)] = true;
                        pic.pulse(irq);
                    }
                    Op::Mask(mask) => {
                        outb(&mut pic, 0x21, low_byte(u32::from(mask)));
                        outb(&mut pic, 0xa1, low_byte(u32::from(mask >> 8)));
                    }
                    Op::Eoi(slave) => outb(&mut pic, if slave { 0xa0 } else { 0x20 }, 0x20),
                    Op::SpecificEoi(slave, level) => {
                        outb(&mut pic, if slave { 0xa0 } else { 0x20 }, 0x60 | level);
                    }
                    Op::Read(port) => { inb(&mut pic, port); }
                    Op::Ocw3(slave, value) => {
                        // Poll reads would acknowledge behind the model's
                        // back; drop the poll bit.
                        outb(&mut pic, if slave { 0xa0 } else { 0x20 }, value & !0x04);
                    }
                    Op::Ack => {
                        let pending = pic.pending_vector();
                        let imr = pic.imr();
                        let inta = pic.inta().unwrap();
                        if let Some(vector) = pending {
                            prop_assert_eq!(inta.vector, vector);
                        } else {
                            prop_assert!(!matches!(inta.source, InterruptSource::Irq(_)));
                        }
                        if let InterruptSource::Irq(irq) = inta.source {
                            prop_assert!(irq != CASCADE_IRQ);
                            prop_assert_eq!(imr & (1 << irq), 0, "masked IRQ {} delivered", irq);
                            if irq >= 8 {
                                prop_assert_eq!(imr & 0b100, 0, "slave delivered through a masked cascade");
                            }
                            prop_assert!(fresh[usize::from(irq)], "IRQ {} acknowledged twice for one edge", irq);
                            fresh[usize::from(irq)] = false;
                        }
                    }
                }
                if let Some(vector) = pic.pending_vector() {
                    let irq = if vector & 0xf8 == 0x20 { vector & 7 } else { (vector & 7) + 8 };
                    let spurious = vector == 0x2f;
                    prop_assert!(spurious || pic.imr() & (1 << irq) == 0);
                }
            }
        }
    }
}
