//! The guest's legacy PC devices, as the VMM server models them.
//!
//! Every model here is a plain state machine: it owns no thread, reads no
//! clock, allocates nothing and knows nothing of seL4. The VMM server learns of
//! a guest port access (however it does: a fault, a wedge message), hands it
//! to a [`Bus`], and the bus routes it to the [`PortDevice`] that owns the
//! port. Time is an explicit argument: guest time counted in ticks of the
//! 8254's input clock ([`PIT_INPUT_HZ`]), so a model behaves identically under
//! any host load and every test is deterministic.
//!
//! The models ([`Pic8259Pair`], [`Pit8254`] with port 0x61, [`CmosRtc`],
//! [`Uart16550`], [`ResetLine`], [`DebugExit`])
//! never panic on any access; where the hardware leaves a result undefined
//! each documents the deterministic choice it makes (see `docs/devices.md`).

#![no_std]

#[cfg(test)]
extern crate std;

pub mod cmos_rtc;
pub mod debug_exit;
pub mod pic8259;
pub mod pit8254;
pub mod reset_line;
pub mod system_control_b;
pub mod uart16550;

use core::fmt;

pub use cmos_rtc::CmosRtc;
pub use debug_exit::DebugExit;
pub use pic8259::Pic8259Pair;
pub use pit8254::Pit8254;
pub use reset_line::ResetLine;
pub use system_control_b::SystemControlB;
pub use uart16550::Uart16550;

/// Guest time, in ticks of the 8254's input clock (see [`PIT_INPUT_HZ`]).
///
/// The PIT is the device whose arithmetic must be exact, so its input clock is
/// the unit: a tick is one counter decrement, and no conversion can round.
pub type Ticks = u64;

/// Frequency of the 8254's input clock on a PC, in Hz.
pub const PIT_INPUT_HZ: u64 = 1_193_182;

/// Width of one I/O port access (`inb`/`inw`/`inl` and their `out` twins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessSize {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Word,
    /// 32 bits.
    Dword,
}

impl AccessSize {
    /// Number of bytes (and so of consecutive ports) the access covers.
    pub const fn bytes(self) -> u16 {
        match self {
            Self::Byte => 1,
            Self::Word => 2,
            Self::Dword => 4,
        }
    }

    /// The bits of a `u32` the access carries; also what a read of a port
    /// nobody drives returns (the ISA data bus floats high).
    pub const fn mask(self) -> u32 {
        match self {
            Self::Byte => 0xff,
            Self::Word => 0xffff,
            Self::Dword => 0xffff_ffff,
        }
    }
}

/// A device the guest reaches through I/O ports.
///
/// `port` is the absolute port number (a device that answers on two ranges,
/// like the PIC pair, needs it to tell them apart). `now` is the guest time of
/// the access; a model never reads a clock, and treats a `now` earlier than one
/// it has already seen as that later time (its time never runs backwards).
/// Implementations must not panic for any argument.
pub trait PortDevice {
    /// Performs a guest `in`; only the bits of `size` are meaningful.
    fn read(&mut self, port: u16, size: AccessSize, now: Ticks) -> u32;
    /// Performs a guest `out` of `value` (only the bits of `size` count).
    fn write(&mut self, port: u16, size: AccessSize, value: u32, now: Ticks);
}

/// The low byte of an access's value: what an 8-bit register receives.
pub(crate) const fn low_byte(value: u32) -> u8 {
    (value & 0xff) as u8
}

/// Widens an 8-bit register's value to an access of `size` whose upper byte
/// lanes nobody drives (they read as ones, as on the ISA bus).
pub(crate) const fn widen(byte: u8, size: AccessSize) -> u32 {
    (size.mask() & !0xff) | byte as u32
}

/// Names a device for the [`Bus`]: the VMM chooses the numbering, and its
/// [`DeviceSet`] maps each id back to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u8);

/// How the bus hands a device an access wider than a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lanes {
    /// An 8-bit ISA device: the bus splits a word or dword access into byte
    /// accesses at consecutive ports, as the PC chipset does, each routed on
    /// its own (so `inw 0x20` reads 0x20 and 0x21). All the models in this
    /// crate are registered this way.
    Bytes,
    /// The device takes the access whole, routed by its first port.
    Whole,
}

/// A run of consecutive ports: `base ..= base + len - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    base: u16,
    last: u16,
}

impl PortRange {
    /// The `len` ports from `base`; refused when empty or past port 0xffff.
    pub const fn new(base: u16, len: u16) -> Result<Self, BusError> {
        if len == 0 {
            return Err(BusError::EmptyRange { base });
        }
        match base.checked_add(len - 1) {
            Some(last) => Ok(Self { base, last }),
            None => Err(BusError::PastLastPort { base, len }),
        }
    }

    /// First port.
    pub const fn base(self) -> u16 {
        self.base
    }

    /// Last port (inclusive).
    pub const fn last(self) -> u16 {
        self.last
    }

    /// Whether `port` is in the range.
    pub const fn contains(self, port: u16) -> bool {
        self.base <= port && port <= self.last
    }

    const fn overlaps(self, other: Self) -> bool {
        self.base <= other.last && other.base <= self.last
    }
}

/// Why the bus refused to register a range. Registration happens once when
/// the VMM builds its machine, so these are the VMM's bugs, not the guest's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// A range of zero ports.
    EmptyRange {
        /// Its base.
        base: u16,
    },
    /// A range that would run past port 0xffff.
    PastLastPort {
        /// Its base.
        base: u16,
        /// Its length.
        len: u16,
    },
    /// Every slot of the fixed-capacity bus is in use.
    Full {
        /// How many ranges the bus holds.
        capacity: usize,
    },
    /// The range shares ports with one already registered.
    Overlap {
        /// The range being registered.
        range: PortRange,
        /// The range already there.
        existing: PortRange,
        /// Who owns the range already there.
        owner: DeviceId,
    },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::EmptyRange { base } => write!(f, "empty port range at {base:#x}"),
            Self::PastLastPort { base, len } => {
                write!(f, "port range {base:#x}+{len} runs past port 0xffff")
            }
            Self::Full { capacity } => write!(f, "port bus full ({capacity} ranges)"),
            Self::Overlap {
                range,
                existing,
                owner,
            } => write!(
                f,
                "ports {:#x}..={:#x} overlap {:#x}..={:#x} of device {}",
                range.base, range.last, existing.base, existing.last, owner.0
            ),
        }
    }
}

/// The VMM's devices, as the bus reaches them: maps a [`DeviceId`] to the
/// device. The VMM keeps its devices as ordinary fields (it needs them between
/// accesses: to raise IRQs, drain the console, ask the PIT for the next tick)
/// and implements this with a `match`; the bus borrows them only for one
/// access.
pub trait DeviceSet {
    /// The device named `id`, or `None` if there is none (the access is then
    /// treated as reaching no device).
    fn device(&mut self, id: DeviceId) -> Option<&mut dyn PortDevice>;
}

/// A slice of devices indexed by [`DeviceId`]: handy for tests and small
/// machines.
impl DeviceSet for [&mut dyn PortDevice] {
    fn device(&mut self, id: DeviceId) -> Option<&mut dyn PortDevice> {
        match self.get_mut(usize::from(id.0)) {
            Some(device) => Some(&mut **device),
            None => None,
        }
    }
}

/// What the bus has seen of ports nobody owns: a guest probing for hardware,
/// or a device the VMM does not model yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Byte lanes read from ports no device owns (each read as 0xff).
    pub unclaimed_reads: u64,
    /// Byte lanes written to ports no device owns (each ignored).
    pub unclaimed_writes: u64,
    /// The most recent such port.
    pub last_unclaimed: Option<u16>,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    range: PortRange,
    id: DeviceId,
    lanes: Lanes,
}

/// Routes port accesses to devices: a fixed table of up to `N` port ranges
/// (no allocator), each owned by one device.
///
/// A port no range covers reads as all ones and swallows writes, as on a PC
/// where nothing decodes it; the bus counts such accesses ([`BusStats`]).
#[derive(Clone, Debug)]
pub struct Bus<const N: usize = 8> {
    slots: [Option<Slot>; N],
    stats: BusStats,
}

impl<const N: usize> Default for Bus<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Bus<N> {
    /// An empty bus.
    pub const fn new() -> Self {
        Self {
            slots: [None; N],
            stats: BusStats {
                unclaimed_reads: 0,
                unclaimed_writes: 0,
                last_unclaimed: None,
            },
        }
    }

    /// Gives `range` to device `id`.
    pub fn register(
        &mut self,
        range: PortRange,
        id: DeviceId,
        lanes: Lanes,
    ) -> Result<(), BusError> {
        for slot in self.slots.iter().flatten() {
            if slot.range.overlaps(range) {
                return Err(BusError::Overlap {
                    range,
                    existing: slot.range,
                    owner: slot.id,
                });
            }
        }
        match self.slots.iter_mut().find(|slot| slot.is_none()) {
            Some(free) => {
                *free = Some(Slot { range, id, lanes });
                Ok(())
            }
            None => Err(BusError::Full { capacity: N }),
        }
    }

    /// Who owns `port`, and how it takes wide accesses.
    pub fn route(&self, port: u16) -> Option<(DeviceId, Lanes)> {
        self.slot(port).map(|slot| (slot.id, slot.lanes))
    }

    /// What the bus has seen of unowned ports.
    pub const fn stats(&self) -> BusStats {
        self.stats
    }

    fn slot(&self, port: u16) -> Option<Slot> {
        self.slots
            .iter()
            .flatten()
            .find(|slot| slot.range.contains(port))
            .copied()
    }

    /// A guest `in` of `size` at `port`.
    pub fn read<S: DeviceSet + ?Sized>(
        &mut self,
        devices: &mut S,
        port: u16,
        size: AccessSize,
        now: Ticks,
    ) -> u32 {
        if let Some(slot) = self.slot(port) {
            if slot.lanes == Lanes::Whole || size == AccessSize::Byte {
                if let Some(device) = devices.device(slot.id) {
                    return device.read(port, size, now) & size.mask();
                }
            }
        }
        let mut value = 0;
        for lane in 0..size.bytes() {
            let byte = match port.checked_add(lane) {
                Some(lane_port) => self.read_byte(devices, lane_port, now),
                // Past port 0xffff nothing decodes the lane.
                None => self.unclaimed_read(port),
            };
            value |= u32::from(byte) << (8 * lane);
        }
        value
    }

    /// A guest `out` of `value` (its `size` low bits) at `port`.
    pub fn write<S: DeviceSet + ?Sized>(
        &mut self,
        devices: &mut S,
        port: u16,
        size: AccessSize,
        value: u32,
        now: Ticks,
    ) {
        if let Some(slot) = self.slot(port) {
            if slot.lanes == Lanes::Whole || size == AccessSize::Byte {
                if let Some(device) = devices.device(slot.id) {
                    device.write(port, size, value & size.mask(), now);
                    return;
                }
            }
        }
        for lane in 0..size.bytes() {
            let byte = low_byte(value >> (8 * lane));
            match port.checked_add(lane) {
                Some(lane_port) => self.write_byte(devices, lane_port, byte, now),
                None => self.unclaimed_write(port),
            }
        }
    }

    fn read_byte<S: DeviceSet + ?Sized>(&mut self, devices: &mut S, port: u16, now: Ticks) -> u8 {
        if let Some(slot) = self.slot(port) {
            if let Some(device) = devices.device(slot.id) {
                return low_byte(device.read(port, AccessSize::Byte, now));
            }
        }
        self.unclaimed_read(port)
    }

    fn write_byte<S: DeviceSet + ?Sized>(
        &mut self,
        devices: &mut S,
        port: u16,
        byte: u8,
        now: Ticks,
    ) {
        if let Some(slot) = self.slot(port) {
            if let Some(device) = devices.device(slot.id) {
                device.write(port, AccessSize::Byte, u32::from(byte), now);
                return;
            }
        }
        self.unclaimed_write(port);
    }

    fn unclaimed_read(&mut self, port: u16) -> u8 {
        self.stats.unclaimed_reads = self.stats.unclaimed_reads.saturating_add(1);
        self.stats.last_unclaimed = Some(port);
        0xff
    }

    fn unclaimed_write(&mut self, port: u16) {
        self.stats.unclaimed_writes = self.stats.unclaimed_writes.saturating_add(1);
        self.stats.last_unclaimed = Some(port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// A device that records what reaches it and reads back `port`'s low byte.
    #[derive(Debug, Default)]
    struct Probe {
        writes: Vec<(u16, AccessSize, u32)>,
    }

    impl PortDevice for Probe {
        fn read(&mut self, port: u16, _size: AccessSize, _now: Ticks) -> u32 {
            // Garbage in the upper bits: the bus must mask it off.
            0xdead_0000 | u32::from(port & 0xff)
        }
        fn write(&mut self, port: u16, size: AccessSize, value: u32, _now: Ticks) {
            self.writes.push((port, size, value));
        }
    }

    fn range(base: u16, len: u16) -> PortRange {
        PortRange::new(base, len).unwrap()
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(
            PortRange::new(0x10, 0),
            Err(BusError::EmptyRange { base: 0x10 })
        );
        assert!(matches!(
            PortRange::new(0xfffe, 3),
            Err(BusError::PastLastPort { .. })
        ));
        assert_eq!(range(0xffff, 1).last(), 0xffff);
        let mut bus: Bus<2> = Bus::new();
        bus.register(range(0x20, 2), DeviceId(0), Lanes::Bytes)
            .unwrap();
        let err = bus
            .register(range(0x21, 4), DeviceId(1), Lanes::Bytes)
            .unwrap_err();
        assert!(matches!(
            err,
            BusError::Overlap {
                owner: DeviceId(0),
                ..
            }
        ));
        bus.register(range(0x40, 4), DeviceId(1), Lanes::Bytes)
            .unwrap();
        assert_eq!(
            bus.register(range(0x60, 1), DeviceId(2), Lanes::Bytes),
            Err(BusError::Full { capacity: 2 })
        );
        assert_eq!(bus.route(0x43), Some((DeviceId(1), Lanes::Bytes)));
        assert_eq!(bus.route(0x44), None);
    }

    #[test]
    fn routes_and_counts_unclaimed() {
        let mut a = Probe::default();
        let mut b = Probe::default();
        let mut bus: Bus = Bus::new();
        bus.register(range(0x20, 2), DeviceId(0), Lanes::Bytes)
            .unwrap();
        bus.register(range(0xa0, 2), DeviceId(0), Lanes::Bytes)
            .unwrap();
        bus.register(range(0xcf8, 8), DeviceId(1), Lanes::Whole)
            .unwrap();
        {
            let devices: &mut [&mut dyn PortDevice] = &mut [&mut a, &mut b];
            assert_eq!(bus.read(devices, 0x21, AccessSize::Byte, 0), 0x21);
            // Split into 0x21 (owned) and 0x22 (nobody): 0xff in the high lane.
            assert_eq!(bus.read(devices, 0x21, AccessSize::Word, 0), 0xff21);
            assert_eq!(bus.read(devices, 0x80, AccessSize::Dword, 0), 0xffff_ffff);
            bus.write(devices, 0xa0, AccessSize::Word, 0x1234, 0);
            bus.write(devices, 0xcfc, AccessSize::Dword, 0x8000_0001, 0);
            assert_eq!(bus.read(devices, 0xcfc, AccessSize::Word, 0), 0xfc);
            bus.write(devices, 0x99, AccessSize::Byte, 1, 0);
            assert_eq!(bus.read(devices, 0xffff, AccessSize::Word, 0), 0xffff);
        }
        assert_eq!(
            a.writes,
            [
                (0xa0, AccessSize::Byte, 0x34),
                (0xa1, AccessSize::Byte, 0x12)
            ]
        );
        assert_eq!(b.writes, [(0xcfc, AccessSize::Dword, 0x8000_0001)]);
        let stats = bus.stats();
        assert_eq!(stats.unclaimed_reads, 1 + 4 + 2);
        assert_eq!(stats.unclaimed_writes, 1);
        assert_eq!(stats.last_unclaimed, Some(0xffff));
    }

    #[test]
    fn an_id_without_a_device_is_unclaimed() {
        let mut bus: Bus<1> = Bus::new();
        bus.register(range(0x70, 2), DeviceId(5), Lanes::Bytes)
            .unwrap();
        let devices: &mut [&mut dyn PortDevice] = &mut [];
        assert_eq!(bus.read(devices, 0x70, AccessSize::Byte, 0), 0xff);
        bus.write(devices, 0x71, AccessSize::Byte, 0, 0);
        assert_eq!(bus.stats().unclaimed_reads, 1);
        assert_eq!(bus.stats().unclaimed_writes, 1);
    }

    /// The VMM's intended drive loop: run the guest until the PIT's next
    /// edge, pulse IRQ 0 once per edge, deliver through the PIC. Over ten
    /// seconds of guest time at 1 kHz every edge becomes one vector 0x20.
    #[test]
    fn pit_through_pic_delivers_every_tick_for_ten_seconds() {
        let mut pic = Pic8259Pair::new();
        let mut pit = Pit8254::new();
        let mut bus: Bus = Bus::new();
        bus.register(range(0x20, 2), DeviceId(0), Lanes::Bytes)
            .unwrap();
        bus.register(range(0xa0, 2), DeviceId(0), Lanes::Bytes)
            .unwrap();
        bus.register(range(0x40, 4), DeviceId(1), Lanes::Bytes)
            .unwrap();
        let guest_writes: [(u16, u8); 13] = [
            (0x20, 0x11),
            (0xa0, 0x11),
            (0x21, 0x20),
            (0xa1, 0x28),
            (0x21, 0x04),
            (0xa1, 0x02),
            (0x21, 0x01),
            (0xa1, 0x01),
            (0x21, 0xfe),
            (0xa1, 0xff),
            (0x43, 0x34),
            (0x40, 0xa9),
            (0x40, 0x04), // divisor 1193
        ];
        {
            let devices: &mut [&mut dyn PortDevice] = &mut [&mut pic, &mut pit];
            for (port, value) in guest_writes {
                bus.write(devices, port, AccessSize::Byte, u32::from(value), 0);
            }
        }
        let end = 10 * PIT_INPUT_HZ;
        let mut accounted = 0;
        let mut delivered = 0u64;
        let mut now = 0;
        while let Some(edge) = pit.next_irq_at(now) {
            if edge >= end {
                break;
            }
            now = edge + 1;
            let total = pit.irq_edges_total(now);
            for _ in accounted..total {
                pic.pulse(0);
            }
            accounted = total;
            if pic.pending_vector().is_some() {
                assert_eq!(pic.acknowledge(), Some(0x20));
                delivered += 1;
                let devices: &mut [&mut dyn PortDevice] = &mut [&mut pic, &mut pit];
                bus.write(devices, 0x20, AccessSize::Byte, 0x20, now);
            }
        }
        // Edges at 1 + 1193k for k >= 1, below ten seconds.
        assert_eq!(delivered, (end - 2) / 1193);
        assert_eq!(pit.irq_edges_total(end), delivered);
        assert_eq!(bus.stats(), BusStats::default());
    }

    fn size_strategy() -> impl Strategy<Value = AccessSize> {
        prop_oneof![
            Just(AccessSize::Byte),
            Just(AccessSize::Word),
            Just(AccessSize::Dword)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The whole legacy machine behind one bus: random accesses anywhere
        /// in the low port space never panic, and reads fit their size.
        #[test]
        fn random_accesses_on_the_bus_never_panic(
            ops in proptest::collection::vec(
                (any::<bool>(), 0u16..0x400, size_strategy(), any::<u32>(), 0u64..5_000),
                0..300,
            )
        ) {
            let mut pic = Pic8259Pair::new();
            let mut pit = Pit8254::new();
            let mut uart = Uart16550::new(uart16550::COM1_BASE, uart16550::ByteRing::<64>::new());
            let mut exit = DebugExit::new(debug_exit::DEFAULT_PORT);
            let mut bus: Bus = Bus::new();
            bus.register(range(0x20, 2), DeviceId(0), Lanes::Bytes).unwrap();
            bus.register(range(0xa0, 2), DeviceId(0), Lanes::Bytes).unwrap();
            bus.register(range(0x40, 4), DeviceId(1), Lanes::Bytes).unwrap();
            bus.register(range(0x3f8, 8), DeviceId(2), Lanes::Bytes).unwrap();
            bus.register(range(0xf4, 1), DeviceId(3), Lanes::Whole).unwrap();
            let devices: &mut [&mut dyn PortDevice] = &mut [&mut pic, &mut pit, &mut uart, &mut exit];
            let mut now = 0u64;
            for (is_read, port, size, value, dt) in ops {
                now += dt;
                if is_read {
                    let v = bus.read(devices, port, size, now);
                    prop_assert_eq!(v & !size.mask(), 0);
                } else {
                    bus.write(devices, port, size, value, now);
                }
            }
        }
    }
}
