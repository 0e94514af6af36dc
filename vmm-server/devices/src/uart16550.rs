//! COM1 as the guest sees it: a 16550A UART.
//!
//! Transmission is instantaneous: a byte written to THR goes straight to the
//! caller's [`TxSink`], in order, and the line status always reports the
//! transmitter empty (THRE and TEMT), so a guest never waits on output and the
//! VMM can forward the console byte for byte. Received bytes, which the VMM
//! feeds with [`Uart16550::receive`], wait in a 16-byte FIFO (one byte when the
//! guest runs the chip as a 16450, FIFOs off).
//!
//! Registers (offsets from the base, 0x3f8 for COM1):
//!
//! | off | read                  | write              |
//! |-----|-----------------------|--------------------|
//! | 0   | RBR (DLL if DLAB)     | THR (DLL if DLAB)  |
//! | 1   | IER (DLM if DLAB)     | IER (DLM if DLAB)  |
//! | 2   | IIR                   | FCR                |
//! | 3   | LCR                   | LCR                |
//! | 4   | MCR                   | MCR                |
//! | 5   | LSR                   | ignored            |
//! | 6   | MSR                   | ignored            |
//! | 7   | SCR                   | SCR                |
//!
//! Choices where the chip is undefined or timing-dependent, all deterministic:
//! reading RBR with nothing received returns 0; the character-timeout
//! interrupt (IIR 0x0c) is raised as soon as the FIFO holds data below its
//! trigger level (a timeout of zero character times, since the model has no
//! baud-rate clock); parity, framing and break errors never happen; outside
//! loopback the modem inputs read as carrier, DSR and CTS present (MSR 0xb0)
//! and never change; writes to LSR and MSR (factory test on real chips) are
//! ignored; a byte received while the FIFO is full is dropped and flags an
//! overrun.

use crate::{low_byte, widen, AccessSize, PortDevice, Ticks};

/// COM1's base port.
pub const COM1_BASE: u16 = 0x3f8;
/// The ISA IRQ line COM1 drives (through MCR's OUT2 gate).
pub const COM1_IRQ: u8 = 4;

/// Capacity of the 16550's receive FIFO.
pub const RX_FIFO_LEN: usize = 16;

/// Where the UART puts the bytes the guest transmits.
pub trait TxSink {
    /// One transmitted byte, in the order the guest wrote them.
    fn transmit(&mut self, byte: u8);
}

/// Lending a sink: the VMM can keep its console writer and hand the UART a
/// reference.
impl<T: TxSink + ?Sized> TxSink for &mut T {
    fn transmit(&mut self, byte: u8) {
        (**self).transmit(byte);
    }
}

/// A fixed-capacity byte FIFO (no allocator): the UART's receive FIFO, and a
/// [`TxSink`] the VMM drains after each exit.
///
/// When full, a push is refused and counted ([`ByteRing::dropped`]): the
/// bytes already queued keep their order, and the loss is visible.
#[derive(Clone, Debug)]
pub struct ByteRing<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
    dropped: u64,
}

impl<const N: usize> Default for ByteRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ByteRing<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            head: 0,
            len: 0,
            dropped: 0,
        }
    }

    /// Appends `byte`; `false` (and counted as dropped) when full.
    pub fn push(&mut self, byte: u8) -> bool {
        if self.len >= N {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        // N > 0 here, since len < N.
        self.buf[(self.head + self.len) % N] = byte;
        self.len += 1;
        true
    }

    /// Takes the oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.buf[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(byte)
    }

    /// Bytes queued.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many bytes it can hold.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Bytes refused because the ring was full, since it was made.
    pub const fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Empties the ring (the dropped count stays).
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

impl<const N: usize> TxSink for ByteRing<N> {
    fn transmit(&mut self, byte: u8) {
        self.push(byte);
    }
}

/// Register offsets from the base port.
mod reg {
    pub const DATA: u16 = 0;
    pub const IER: u16 = 1;
    pub const IIR_FCR: u16 = 2;
    pub const LCR: u16 = 3;
    pub const MCR: u16 = 4;
    pub const LSR: u16 = 5;
    pub const MSR: u16 = 6;
    pub const SCR: u16 = 7;
}

/// IER bits.
const IER_RX_DATA: u8 = 0x01;
const IER_THRE: u8 = 0x02;
const IER_LINE_STATUS: u8 = 0x04;
const IER_MODEM_STATUS: u8 = 0x08;

/// LCR's divisor-latch access bit.
const LCR_DLAB: u8 = 0x80;

/// MCR bits.
const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOPBACK: u8 = 0x10;

/// LSR bits.
const LSR_DATA_READY: u8 = 0x01;
const LSR_OVERRUN: u8 = 0x02;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_TX_EMPTY: u8 = 0x40;

/// MSR input bits (upper nibble); the lower nibble holds their deltas.
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;

/// Interrupt identifications (IIR bits 3:0), highest priority first.
const IIR_NONE: u8 = 0x01;
const IIR_LINE_STATUS: u8 = 0x06;
const IIR_RX_DATA: u8 = 0x04;
const IIR_RX_TIMEOUT: u8 = 0x0c;
const IIR_THRE: u8 = 0x02;
const IIR_MODEM_STATUS: u8 = 0x00;
/// IIR bits 7:6 when the FIFOs are on.
const IIR_FIFO_ON: u8 = 0xc0;

/// A 16550A UART whose transmitter feeds `S`.
#[derive(Clone, Debug)]
pub struct Uart16550<S> {
    base: u16,
    sink: S,
    rx: ByteRing<RX_FIFO_LEN>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    dll: u8,
    dlm: u8,
    scr: u8,
    fifo_on: bool,
    /// Receive FIFO trigger level in bytes (1, 4, 8 or 14).
    rx_trigger: usize,
    overrun: bool,
    /// The THR-empty interrupt condition: set when THR empties (at once after
    /// each write, since transmission is instantaneous) or when the guest
    /// enables it; cleared by reading IIR while it is the reported cause.
    thre_pending: bool,
    /// MSR delta bits (3:0), cleared by reading MSR.
    msr_delta: u8,
}

impl<S: TxSink> Uart16550<S> {
    /// A UART at `base` in its reset state, transmitting into `sink`.
    pub fn new(base: u16, sink: S) -> Self {
        Self {
            base,
            sink,
            rx: ByteRing::new(),
            ier: 0,
            lcr: 0,
            mcr: 0,
            dll: 0,
            dlm: 0,
            scr: 0,
            fifo_on: false,
            rx_trigger: 1,
            overrun: false,
            thre_pending: false,
            msr_delta: 0,
        }
    }

    /// The sink (to drain a [`ByteRing`]).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// The sink, read-only.
    pub const fn sink(&self) -> &S {
        &self.sink
    }

    /// A byte arriving on the serial line (the VMM's console input).
    ///
    /// Returns `false` if it was not taken: the receive FIFO was full (the
    /// byte is lost and LSR reports an overrun: a VMM that wants no loss waits
    /// for [`Uart16550::rx_space`]), or the UART is in loopback, where the
    /// serial input is disconnected.
    pub fn receive(&mut self, byte: u8) -> bool {
        if self.mcr & MCR_LOOPBACK != 0 {
            return false;
        }
        self.push_rx(byte)
    }

    /// How many bytes [`Uart16550::receive`] can take without an overrun.
    pub fn rx_space(&self) -> usize {
        self.rx_capacity().saturating_sub(self.rx.len())
    }

    /// Whether the chip asserts its interrupt output: some interrupt the
    /// guest enabled in IER has its condition true (what IIR would report).
    pub fn interrupt_pending(&self) -> bool {
        self.interrupt_id().is_some()
    }

    /// What the PC's IRQ 4 line sees: the chip's interrupt gated by MCR's
    /// OUT2, as PC serial cards wire it; in loopback the OUT pins are
    /// disconnected, so the line is low.
    pub fn irq_level(&self) -> bool {
        self.interrupt_pending() && self.mcr & (MCR_OUT2 | MCR_LOOPBACK) == MCR_OUT2
    }

    /// The divisor latch (DLM:DLL); 115200 / divisor is the baud rate.
    pub const fn divisor(&self) -> u16 {
        u16::from_le_bytes([self.dll, self.dlm])
    }

    /// The line control register (word length, stop bits, parity, DLAB).
    pub const fn line_control(&self) -> u8 {
        self.lcr
    }

    /// The modem control register.
    pub const fn modem_control(&self) -> u8 {
        self.mcr
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_on {
            RX_FIFO_LEN
        } else {
            1
        }
    }

    fn push_rx(&mut self, byte: u8) -> bool {
        if self.rx.len() >= self.rx_capacity() {
            self.overrun = true;
            return false;
        }
        self.rx.push(byte)
    }

    /// The highest-priority pending interrupt's IIR code, if any.
    fn interrupt_id(&self) -> Option<u8> {
        if self.ier & IER_LINE_STATUS != 0 && self.overrun {
            return Some(IIR_LINE_STATUS);
        }
        if self.ier & IER_RX_DATA != 0 && !self.rx.is_empty() {
            if !self.fifo_on || self.rx.len() >= self.rx_trigger {
                return Some(IIR_RX_DATA);
            }
            return Some(IIR_RX_TIMEOUT);
        }
        if self.ier & IER_THRE != 0 && self.thre_pending {
            return Some(IIR_THRE);
        }
        if self.ier & IER_MODEM_STATUS != 0 && self.msr_delta != 0 {
            return Some(IIR_MODEM_STATUS);
        }
        None
    }

    /// The modem input bits of MSR (upper nibble).
    fn modem_inputs(&self) -> u8 {
        if self.mcr & MCR_LOOPBACK == 0 {
            return MSR_DCD | MSR_DSR | MSR_CTS;
        }
        // Loopback wires RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD.
        let mut bits = 0;
        if self.mcr & MCR_RTS != 0 {
            bits |= MSR_CTS;
        }
        if self.mcr & MCR_DTR != 0 {
            bits |= MSR_DSR;
        }
        if self.mcr & MCR_OUT1 != 0 {
            bits |= MSR_RI;
        }
        if self.mcr & MCR_OUT2 != 0 {
            bits |= MSR_DCD;
        }
        bits
    }

    fn write_mcr(&mut self, value: u8) {
        let before = self.modem_inputs();
        self.mcr = value & 0x1f;
        let after = self.modem_inputs();
        let changed = before ^ after;
        // DCTS, DDSR, DDCD on any change; TERI only on RI's trailing edge.
        let mut delta = (changed & (MSR_CTS | MSR_DSR | MSR_DCD)) >> 4;
        if before & MSR_RI != 0 && after & MSR_RI == 0 {
            delta |= MSR_RI >> 4;
        }
        self.msr_delta |= delta;
    }

    fn write_fcr(&mut self, value: u8) {
        let on = value & 0x01 != 0;
        if on != self.fifo_on {
            // Switching the FIFOs on or off resets them.
            self.rx.clear();
        }
        self.fifo_on = on;
        if !on {
            // With FIFOs off the other FCR bits are not written.
            return;
        }
        if value & 0x02 != 0 {
            self.rx.clear();
        }
        // Bit 2 clears the transmit FIFO, always empty here; bit 3 (DMA mode)
        // has no effect without a DMA controller.
        self.rx_trigger = match value >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        };
    }

    fn read_reg(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            reg::DATA if dlab => self.dll,
            reg::DATA => self.rx.pop().unwrap_or(0),
            reg::IER if dlab => self.dlm,
            reg::IER => self.ier,
            reg::IIR_FCR => {
                let id = self.interrupt_id();
                if id == Some(IIR_THRE) {
                    // Reading IIR while it reports THRE acknowledges it.
                    self.thre_pending = false;
                }
                id.unwrap_or(IIR_NONE) | if self.fifo_on { IIR_FIFO_ON } else { 0 }
            }
            reg::LCR => self.lcr,
            reg::MCR => self.mcr,
            reg::LSR => {
                let mut lsr = LSR_THR_EMPTY | LSR_TX_EMPTY;
                if !self.rx.is_empty() {
                    lsr |= LSR_DATA_READY;
                }
                if self.overrun {
                    lsr |= LSR_OVERRUN;
                    // Error bits clear when LSR is read.
                    self.overrun = false;
                }
                lsr
            }
            reg::MSR => {
                let msr = self.modem_inputs() | self.msr_delta;
                self.msr_delta = 0;
                msr
            }
            reg::SCR => self.scr,
            _ => 0xff,
        }
    }

    fn write_reg(&mut self, offset: u16, value: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            reg::DATA if dlab => self.dll = value,
            reg::DATA => {
                if self.mcr & MCR_LOOPBACK != 0 {
                    self.push_rx(value);
                } else {
                    self.sink.transmit(value);
                }
                // The byte left THR at once: THR is empty again.
                self.thre_pending = true;
            }
            reg::IER if dlab => self.dlm = value,
            reg::IER => {
                let enabling_thre = value & IER_THRE != 0 && self.ier & IER_THRE == 0;
                self.ier = value & 0x0f;
                if enabling_thre {
                    // THR is always empty, so enabling its interrupt raises it
                    // at once, as on the chip.
                    self.thre_pending = true;
                }
            }
            reg::IIR_FCR => self.write_fcr(value),
            reg::LCR => self.lcr = value,
            reg::MCR => self.write_mcr(value),
            reg::SCR => self.scr = value,
            // LSR and MSR writes (factory test) and anything else: ignored.
            _ => {}
        }
    }
}

impl<S: TxSink> PortDevice for Uart16550<S> {
    /// An access wider than a byte reaches the register at `port` (its low
    /// byte) and its upper lanes read as ones; the [`crate::Bus`] splits wide
    /// accesses before they get here. Ports outside the 8 registers read 0xff.
    fn read(&mut self, port: u16, size: AccessSize, _now: Ticks) -> u32 {
        let byte = match port.checked_sub(self.base) {
            Some(offset) if offset < 8 => self.read_reg(offset),
            _ => 0xff,
        };
        widen(byte, size)
    }

    fn write(&mut self, port: u16, _size: AccessSize, value: u32, _now: Ticks) {
        if let Some(offset) = port.checked_sub(self.base) {
            if offset < 8 {
                self.write_reg(offset, low_byte(value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    type Com1 = Uart16550<ByteRing<256>>;

    fn com1() -> Com1 {
        Uart16550::new(COM1_BASE, ByteRing::new())
    }

    fn out(uart: &mut Com1, offset: u16, value: u8) {
        uart.write(COM1_BASE + offset, AccessSize::Byte, u32::from(value), 0);
    }

    fn inb(uart: &mut Com1, offset: u16) -> u8 {
        low_byte(uart.read(COM1_BASE + offset, AccessSize::Byte, 0))
    }

    fn drain(uart: &mut Com1) -> Vec<u8> {
        core::iter::from_fn(|| uart.sink_mut().pop()).collect()
    }

    /// The guest's console_init, byte for byte.
    fn console_init(uart: &mut Com1) {
        out(uart, 1, 0x00);
        out(uart, 3, 0x80);
        out(uart, 0, 0x01);
        out(uart, 1, 0x00);
        out(uart, 3, 0x03);
        out(uart, 2, 0xc7);
        out(uart, 4, 0x03);
    }

    #[test]
    fn guest_console_init_then_output_in_order() {
        let mut uart = com1();
        console_init(&mut uart);
        assert_eq!(uart.divisor(), 1, "115200 baud");
        assert_eq!(inb(&mut uart, 3), 0x03, "8N1 reads back");
        assert_eq!(inb(&mut uart, 2), 0xc1, "FIFOs on, nothing pending");
        assert_eq!(inb(&mut uart, 5) & 0x60, 0x60, "THRE and TEMT");
        for &b in b"console: written with outb\n" {
            assert_ne!(inb(&mut uart, 5) & LSR_THR_EMPTY, 0);
            out(&mut uart, 0, b);
        }
        assert_eq!(drain(&mut uart), b"console: written with outb\n");
        out(&mut uart, 7, 0x5a);
        assert_eq!(inb(&mut uart, 7), 0x5a, "scratch register");
        assert!(!uart.interrupt_pending());
    }

    #[test]
    fn divisor_latch_shadows_data_and_ier() {
        let mut uart = com1();
        out(&mut uart, 3, 0x83);
        out(&mut uart, 0, 0x0c);
        out(&mut uart, 1, 0x00);
        assert_eq!(uart.divisor(), 12, "9600 baud");
        assert_eq!(inb(&mut uart, 0), 0x0c);
        assert_eq!(inb(&mut uart, 1), 0x00);
        assert!(
            drain(&mut uart).is_empty(),
            "DLL writes are not transmitted"
        );
        out(&mut uart, 3, 0x03);
        out(&mut uart, 1, 0x0f);
        assert_eq!(inb(&mut uart, 1), 0x0f, "IER, not DLM");
        assert_eq!(uart.divisor(), 12);
        out(&mut uart, 1, 0xff);
        assert_eq!(inb(&mut uart, 1), 0x0f, "IER's upper bits read 0");
    }

    #[test]
    fn receive_fifo_data_ready_and_overrun() {
        let mut uart = com1();
        console_init(&mut uart);
        assert_eq!(inb(&mut uart, 5) & LSR_DATA_READY, 0);
        assert!(uart.receive(b'h'));
        assert!(uart.receive(b'i'));
        assert_eq!(inb(&mut uart, 5) & LSR_DATA_READY, 1);
        assert_eq!(inb(&mut uart, 0), b'h');
        assert_eq!(inb(&mut uart, 0), b'i');
        assert_eq!(inb(&mut uart, 5) & LSR_DATA_READY, 0);
        assert_eq!(inb(&mut uart, 0), 0, "empty RBR reads 0");
        for i in 0..16 {
            assert!(uart.receive(i));
        }
        assert_eq!(uart.rx_space(), 0);
        assert!(!uart.receive(99));
        assert_eq!(inb(&mut uart, 5) & (LSR_OVERRUN | LSR_DATA_READY), 0x03);
        assert_eq!(inb(&mut uart, 5) & LSR_OVERRUN, 0, "overrun clears on read");
        assert_eq!(inb(&mut uart, 0), 0, "the oldest byte is kept");
        // FIFOs off: a one-byte holding register.
        out(&mut uart, 2, 0x00);
        assert_eq!(uart.rx_space(), 1);
        assert!(uart.receive(1));
        assert!(!uart.receive(2));
    }

    #[test]
    fn interrupt_identification_and_irq_gating() {
        let mut uart = com1();
        console_init(&mut uart);
        out(&mut uart, 1, IER_RX_DATA);
        assert!(!uart.interrupt_pending());
        uart.receive(b'x');
        // One byte below the trigger level of 14: character timeout.
        assert_eq!(inb(&mut uart, 2), 0xc0 | IIR_RX_TIMEOUT);
        assert!(uart.interrupt_pending());
        assert!(!uart.irq_level(), "OUT2 is off: IRQ 4 stays low");
        out(&mut uart, 4, 0x0b);
        assert!(uart.irq_level());
        out(&mut uart, 2, 0x01); // trigger level 1
        uart.receive(b'y');
        assert_eq!(inb(&mut uart, 2), 0xc0 | IIR_RX_DATA);
        inb(&mut uart, 0);
        inb(&mut uart, 0);
        assert!(!uart.interrupt_pending());

        out(&mut uart, 1, IER_THRE);
        assert_eq!(
            inb(&mut uart, 2),
            0xc0 | IIR_THRE,
            "enabling THRE raises it"
        );
        assert_eq!(inb(&mut uart, 2), 0xc1, "reading IIR acknowledged it");
        out(&mut uart, 0, b'!');
        assert!(
            uart.interrupt_pending(),
            "THR empties at once after a write"
        );

        out(&mut uart, 1, IER_LINE_STATUS | IER_RX_DATA | IER_THRE);
        for i in 0..17 {
            uart.receive(i);
        }
        assert_eq!(
            inb(&mut uart, 2),
            0xc0 | IIR_LINE_STATUS,
            "line status outranks data"
        );
        inb(&mut uart, 5);
        assert_eq!(inb(&mut uart, 2), 0xc0 | IIR_RX_DATA);
    }

    #[test]
    fn loopback_and_modem_status() {
        let mut uart = com1();
        console_init(&mut uart);
        assert_eq!(inb(&mut uart, 6), 0xb0, "carrier, DSR, CTS");
        out(&mut uart, 1, IER_MODEM_STATUS);
        out(&mut uart, 4, MCR_LOOPBACK);
        // RTS/DTR dropped (CTS, DSR change) and OUT2 off (DCD changes).
        assert_eq!(inb(&mut uart, 2) & 0x0f, IIR_MODEM_STATUS);
        assert_eq!(inb(&mut uart, 6), 0x0b);
        assert_eq!(inb(&mut uart, 6), 0x00, "deltas clear on read");
        out(&mut uart, 4, MCR_LOOPBACK | MCR_OUT1);
        out(&mut uart, 4, MCR_LOOPBACK);
        assert_eq!(inb(&mut uart, 6), 0x04, "RI's trailing edge");
        out(&mut uart, 0, b'L');
        assert!(
            drain(&mut uart).is_empty(),
            "loopback does not reach the line"
        );
        assert_eq!(inb(&mut uart, 0), b'L');
        assert!(!uart.receive(b'z'), "the line is disconnected in loopback");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn random_accesses_never_panic_and_output_is_exact(
            ops in proptest::collection::vec((0u8..4, 0u16..10, any::<u8>()), 0..200)
        ) {
            let mut uart = com1();
            let mut sent = Vec::new();
            for (kind, offset, value) in ops {
                match kind {
                    0 => { inb(&mut uart, offset); }
                    1 => {
                        let lcr = uart.line_control();
                        let mcr = uart.modem_control();
                        if offset == 0 && lcr & LCR_DLAB == 0 && mcr & MCR_LOOPBACK == 0 {
                            sent.push(value);
                        }
                        out(&mut uart, offset, value);
                    }
                    2 => { uart.receive(value); }
                    _ => {
                        prop_assert_eq!(uart.read(COM1_BASE + offset, AccessSize::Dword, 0) >> 8, 0x00ff_ffff);
                    }
                }
                prop_assert!(uart.rx_space() <= RX_FIFO_LEN);
                prop_assert_eq!(inb(&mut uart, 5) & 0x60, 0x60);
            }
            prop_assert_eq!(drain(&mut uart), sent);
        }
    }
}
