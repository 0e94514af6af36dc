//! The dispatch on the host: each kind of message, as the kernel or a wedge
//! (or a hostile guest pretending to be one) would send it, against a model
//! platform, guest page tables in host RAM and the real device models.

use std::boxed::Box;
use std::string::String;
use std::vec::Vec;

use core::mem::offset_of;

use previrt_protocol::vcpu::{PENDING_ANY_OFFSET, VIF_OFFSET};
use previrt_protocol::{
    Label, Reflection, Request, Status, WedgeBoot, BOOT_BLOCK_OFFSET, DEFERRED_EOI_OFFSET,
    NO_VECTOR, REFLECTION_OFFSET, VCPU_OFFSET, VCPU_PAGE_OFFSET, WEDGE_AREA, WEDGE_BASE,
};
use proptest::prelude::*;
use vmm_devices::uart16550::TxSink;
use wedge_l4::memory::GuestRegs;

use crate::devices::Devices;
use crate::ending::Ending;
use crate::event::tests::sel4_abi;
use crate::event::Event;
use crate::guest::{Guest, Reflector, Stats, Step};
use crate::interrupts::Interrupts;
use crate::platform::{Platform, PlatformError};
use crate::ram::host::HostRam;
use crate::ram::Ram;
use crate::sites::Sites;
use crate::trap_guest::TrapCpu;
use crate::views::View;
use crate::vtlb::tests::{boxed_vtlb, ModelSpace, Tables};
use crate::vtlb::Vtlb;

/// The console: what the guest's UART sent.
#[derive(Default)]
pub(crate) struct Capture(Vec<u8>);

impl TxSink for Capture {
    fn transmit(&mut self, byte: u8) {
        self.0.push(byte);
    }
}

/// A machine whose time the test sets.
#[derive(Default)]
pub(crate) struct Model {
    pub(crate) now: u64,
    pub(crate) period: Option<u32>,
    pub(crate) rip: u64,
    /// A reply is saved (the guest halted).
    saved: bool,
    answered: u32,
    fail_registers: bool,
    log: Vec<String>,
    /// The guest thread's registers (trap-and-emulate reads and writes them).
    regs: GuestRegs,
    /// Empty replies to the saved reply.
    resumed: u32,
    /// The view the guest thread is in.
    pub(crate) view: Option<View>,
    /// The registers and FS base of the last process started.
    pub(crate) started: Option<(GuestRegs, u64)>,
}

impl Platform for Model {
    type Mapper = ModelSpace;
    type Console = Capture;
    fn now(&mut self) -> u64 {
        self.now
    }
    fn timer_running(&self) -> bool {
        self.period.is_some()
    }
    fn set_timer_period(&mut self, period: Option<u32>) {
        self.period = period;
    }
    fn cycles(&self) -> u64 {
        self.now * 3
    }
    fn guest_rip(&mut self) -> Result<u64, PlatformError> {
        if self.fail_registers {
            return Err(PlatformError);
        }
        Ok(self.rip)
    }
    fn set_guest_rip(&mut self, rip: u64) -> Result<(), PlatformError> {
        if self.fail_registers {
            return Err(PlatformError);
        }
        self.rip = rip;
        Ok(())
    }
    fn save_reply(&mut self) -> Result<(), PlatformError> {
        self.saved = true;
        Ok(())
    }
    fn answer_saved(&mut self) {
        assert!(self.saved, "answering a reply that was never saved");
        self.saved = false;
        self.answered += 1;
    }
    fn log(&mut self, line: core::fmt::Arguments) {
        self.log.push(std::format!("{line}"));
    }
    fn resume_saved(&mut self) {
        assert!(self.saved, "resuming a reply that was never saved");
        self.saved = false;
        self.resumed += 1;
    }
    fn read_registers(&mut self) -> Result<(GuestRegs, u64), PlatformError> {
        if self.fail_registers {
            return Err(PlatformError);
        }
        Ok((self.regs, 0))
    }
    fn write_registers(&mut self, regs: &GuestRegs, _: u64) -> Result<(), PlatformError> {
        self.regs = *regs;
        self.rip = regs.rip;
        Ok(())
    }
    fn write_frame(&mut self, rip: u64, rsp: u64, rflags: u64) -> Result<(), PlatformError> {
        self.regs.rip = rip;
        self.regs.set_rsp(rsp);
        self.regs.rflags = rflags;
        self.rip = rip;
        Ok(())
    }
    fn cpuid(&mut self, _: u32, _: u32) -> [u32; 4] {
        [0; 4]
    }
    fn set_view(&mut self, view: View) -> Result<(), PlatformError> {
        self.view = Some(view);
        Ok(())
    }
    fn start_user(&mut self, regs: &GuestRegs, fs_base: u64) -> Result<(), PlatformError> {
        self.started = Some((*regs, fs_base));
        self.rip = regs.rip;
        Ok(())
    }
}

pub(crate) const RAM: u64 = 4 << 20;
pub(crate) const ROOT: u64 = 0x10_0000;
/// The wedge's memory: the top of RAM, as the loader lays it out.
pub(crate) const AREA: u64 = RAM - WEDGE_AREA;
pub(crate) const BOOT_BLOCK: u64 = AREA + BOOT_BLOCK_OFFSET;
pub(crate) const CODE: (u64, u64) = (WEDGE_BASE, WEDGE_BASE + 0x4000);
pub(crate) const ENTRY: u64 = WEDGE_BASE + 0x100;
/// The guest's code and data pages.
const TEXT: u64 = 0x40_0000;
const DATA: u64 = 0x40_1000;
const RO: u64 = 0x40_2000;
const ALIAS: u64 = 0x40_3000;

pub(crate) struct Fixture {
    pub(crate) host: HostRam,
    pub(crate) vtlb: Box<Vtlb<ModelSpace>>,
    pub(crate) sites: Box<Sites>,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let host = HostRam::new(RAM);
        let ram = host.ram();
        let mut t = Tables::new(&ram, ROOT);
        t.set(TEXT, 0x20_0000, 1);
        t.set(DATA, 0x20_1000, 3);
        t.set(RO, 0x20_2000, 1);
        // A page of the wedge's memory through the guest's own tables.
        t.set(ALIAS, AREA + 0x3000, 3);
        let boot = offset_of!(WedgeBoot, reflect_entry) as u64;
        ram.write_u64(BOOT_BLOCK + boot, ENTRY).unwrap();
        Fixture {
            host,
            vtlb: boxed_vtlb(ModelSpace::default()),
            sites: Box::new(Sites::empty()),
        }
    }
}

/// Runs `f` on a guest with a wedge over the fixture; the RAM lives as long
/// as the fixture.
fn with_guest<R>(wedge: bool, f: impl FnOnce(&mut Guest<'_, Model>, &Ram) -> R) -> R {
    let mut fx = Fixture::new();
    let ram = fx.host.ram();
    let mut g = Guest {
        number: 0,
        ram: &ram,
        cr3: ROOT,
        vtlb: &mut fx.vtlb,
        sites: &fx.sites,
        devices: Devices::new(Capture::default()).unwrap(),
        platform: Model::default(),
        stats: Stats::default(),
        reflector: wedge.then_some(Reflector {
            boot_block_gpa: BOOT_BLOCK,
            area_gpa: AREA,
            code: CODE,
        }),
        irq: Interrupts::new(Interrupts::vcpu_page(AREA)),
        ending: None,
        trap: None,
        views: None,
        recorder: None,
    };
    f(&mut g, &ram)
}

pub(crate) fn request(g: &mut Guest<'_, Model>, r: Request) -> Step {
    let (label, mr) = r.encode();
    g.handle(Event::Request {
        label: label as u64,
        length: label.length(),
        mr,
    })
}

pub(crate) fn reflection(ram: &Ram) -> Reflection {
    let mut b = [0u8; 32];
    ram.read(BOOT_BLOCK + REFLECTION_OFFSET, &mut b).unwrap();
    let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    Reflection {
        vector: word(0),
        error: word(1),
        cr2: word(2),
        rip: word(3),
    }
}

pub(crate) fn set_vif(ram: &Ram, on: bool) {
    ram.write(
        AREA + VCPU_PAGE_OFFSET + VCPU_OFFSET + VIF_OFFSET,
        &[u8::from(on)],
    )
    .unwrap();
}

fn pending_any(ram: &Ram) -> u8 {
    let mut b = [0u8];
    ram.read(
        AREA + VCPU_PAGE_OFFSET + VCPU_OFFSET + PENDING_ANY_OFFSET,
        &mut b,
    )
    .unwrap();
    b[0]
}

fn out(g: &mut Guest<'_, Model>, port: u16, value: u8) -> Step {
    request(
        g,
        Request::PortOut {
            port,
            size: 1,
            value: u32::from(value),
        },
    )
}

/// Programs the PIC pair as a PC kernel does (vectors 0x20 and 0x28, only
/// IRQ 0 unmasked) and the PIT's channel 0 as a rate generator of `count`.
pub(crate) fn program_timer(g: &mut Guest<'_, Model>, count: u16) {
    for (port, value) in [
        (0x20, 0x11),
        (0x21, 0x20),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xa0, 0x11),
        (0xa1, 0x28),
        (0xa1, 0x02),
        (0xa1, 0x01),
        (0x21, 0xfe),
        (0xa1, 0xff),
        (0x43, 0x34),
        (0x40, count as u8),
        (0x40, (count >> 8) as u8),
    ] {
        assert_eq!(out(g, port, value), Step::Reply(Status::Ok, 0));
    }
}

#[test]
fn a_fault_the_guest_tables_allow_is_mapped_with_their_rights() {
    with_guest(true, |g, _| {
        let fault = |addr, write| Event::PageFault {
            rip: TEXT,
            addr,
            write,
        };
        assert_eq!(g.handle(fault(DATA + 8, true)), Step::Resume);
        assert_eq!(g.handle(fault(RO + 8, false)), Step::Resume);
        assert_eq!(
            g.vtlb.mapper.pages.get(&DATA).map(|p| (p.1, p.2)),
            Some((0x20_1000, true))
        );
        assert_eq!(
            g.vtlb.mapper.pages.get(&RO).map(|p| (p.1, p.2)),
            Some((0x20_2000, false))
        );
        assert_eq!(g.stats.page_faults, 2);
        assert_eq!(g.stats.reflected, 0);
    });
}

#[test]
fn a_write_to_a_read_only_page_is_reflected_as_a_page_fault() {
    with_guest(true, |g, ram| {
        let step = g.handle(Event::PageFault {
            rip: TEXT + 4,
            addr: RO + 16,
            write: true,
        });
        assert_eq!(step, Step::Resume);
        assert_eq!(g.platform.rip, ENTRY);
        assert_eq!(
            reflection(ram),
            Reflection {
                vector: 14,
                error: 3,
                cr2: RO + 16,
                rip: TEXT + 4
            }
        );
        assert_eq!(g.stats.reflected_by_vector[14], 1);
        assert!(g.vtlb.mapper.pages.is_empty());
    });
}

#[test]
fn an_unmapped_address_is_a_not_present_page_fault() {
    with_guest(true, |g, ram| {
        g.handle(Event::PageFault {
            rip: TEXT,
            addr: 0x7000_0000,
            write: false,
        });
        assert_eq!(reflection(ram).error, 0);
        assert_eq!(reflection(ram).vector, 14);
    });
}

#[test]
fn without_a_wedge_an_unmapped_access_ends_the_guest() {
    with_guest(false, |g, _| {
        assert_eq!(
            g.handle(Event::PageFault {
                rip: TEXT,
                addr: 0x7000_0000,
                write: false
            }),
            Step::End(Ending::UnmappedAccess {
                rip: TEXT,
                addr: 0x7000_0000
            })
        );
    });
}

#[test]
fn the_wedge_is_read_only_to_the_guest_by_either_address() {
    with_guest(true, |g, _| {
        assert_eq!(
            g.handle(Event::PageFault {
                rip: TEXT,
                addr: WEDGE_BASE + 0x10,
                write: true
            }),
            Step::End(Ending::WedgeCodeWrite {
                addr: WEDGE_BASE + 0x10,
                rip: TEXT
            })
        );
        // Through the guest's identity map: readable, never writable.
        let read = Event::PageFault {
            rip: TEXT,
            addr: ALIAS,
            write: false,
        };
        assert_eq!(g.handle(read), Step::Resume);
        assert_eq!(
            g.vtlb.mapper.pages.get(&ALIAS).map(|p| p.2),
            Some(false),
            "mapped read-only although the guest's entry is writable"
        );
        assert_eq!(
            g.handle(Event::PageFault {
                rip: TEXT,
                addr: ALIAS,
                write: true
            }),
            Step::End(Ending::WedgeAliasWrite {
                addr: ALIAS,
                gpa: AREA + 0x3000,
                rip: TEXT
            })
        );
    });
}

#[test]
fn an_overwritten_reflect_entry_ends_the_guest_instead_of_looping() {
    with_guest(true, |g, ram| {
        let at = BOOT_BLOCK + offset_of!(WedgeBoot, reflect_entry) as u64;
        ram.write_u64(at, TEXT).unwrap();
        assert_eq!(
            g.handle(Event::Exception {
                rip: TEXT,
                vector: 6,
                code: 0,
                sp: 0x9000,
                flags: 0x202,
            }),
            Step::End(Ending::ReflectEntry(TEXT))
        );
    });
}

#[test]
fn the_guests_exceptions_are_reflected_and_the_wedges_end_the_run() {
    with_guest(true, |g, ram| {
        let step = g.handle(Event::Exception {
            rip: TEXT + 2,
            vector: 13,
            code: 0x18,
            sp: 0x9000,
            flags: 0x202,
        });
        assert_eq!(step, Step::Resume);
        assert_eq!((reflection(ram).vector, reflection(ram).error), (13, 0x18));
        assert_eq!(g.stats.user_exceptions[13], 1);
        // In the wedge: not the guest's exception.
        assert!(matches!(
            g.handle(Event::Exception {
                rip: WEDGE_BASE + 8,
                vector: 13,
                code: 0,
                sp: 0x9000,
                flags: 0x202,
            }),
            Step::End(Ending::SensitiveInstruction { .. })
        ));
        // A vector past the exceptions cannot be the guest's.
        assert!(matches!(
            g.handle(Event::Exception {
                rip: TEXT,
                vector: 40,
                code: 0,
                sp: 0x9000,
                flags: 0x202,
            }),
            Step::End(Ending::SensitiveInstruction { .. })
        ));
        // A thread whose registers cannot be written is not left looping.
        g.platform.fail_registers = true;
        assert!(matches!(
            g.handle(Event::Exception {
                rip: TEXT,
                vector: 6,
                code: 0,
                sp: 0x9000,
                flags: 0x202,
            }),
            Step::End(Ending::Failed(_))
        ));
    });
}

#[test]
fn int_n_through_a_user_gate_becomes_the_gp_hardware_gives() {
    with_guest(true, |g, ram| {
        // `int $0x80` at TEXT, `syscall` at TEXT + 2 (the guest's frame 0x20_0000).
        ram.write(0x20_0000, &[0xcd, 0x80, 0x0f, 0x05]).unwrap();
        let number = (0x80u64 << 24 | 0x12_3456) as u32 as i32 as i64 as u64;
        let step = g.handle(Event::UnknownSyscall { number, rip: TEXT });
        assert_eq!(step, Step::Resume);
        assert_eq!(
            (reflection(ram).vector, reflection(ram).error),
            (13, 0x80 << 3 | 2)
        );
        assert_eq!(g.stats.software_interrupts, 1);
        // The same number at a `syscall`: a system call seL4 does not know.
        assert_eq!(
            g.handle(Event::UnknownSyscall {
                number,
                rip: TEXT + 2
            }),
            Step::End(Ending::UnknownSyscall {
                number,
                rip: TEXT + 2
            })
        );
        // Not the sign-extended form the kernel reports: not an `int`.
        assert!(matches!(
            g.handle(Event::UnknownSyscall {
                number: 0x80 << 24,
                rip: TEXT
            }),
            Step::End(Ending::UnknownSyscall { .. })
        ));
    });
}

#[test]
fn a_capability_fault_ends_the_guest() {
    with_guest(true, |g, _| {
        let ending = Ending::CapFault {
            slot: 77,
            rip: TEXT,
            receiving: true,
        };
        assert_eq!(
            g.handle(Event::CapFault {
                slot: 77,
                rip: TEXT,
                receiving: true
            }),
            Step::End(ending)
        );
        assert!(std::format!("{ending}").contains("receive on slot 77"));
    });
}

#[test]
fn every_label_with_a_wrong_length_is_refused_and_the_vmm_serves_on() {
    with_guest(true, |g, _| {
        let mut refused = 0;
        for label in Label::ALL {
            for length in 0..=8 {
                if length == label.length() {
                    continue;
                }
                let step = g.handle(Event::Request {
                    label: label as u64,
                    length,
                    mr: [0x3f8, 1, 0x41, 0],
                });
                assert_eq!(
                    step,
                    Step::Reply(Status::Invalid, 0),
                    "{label:?} at {length}"
                );
                refused += 1;
            }
        }
        for event in [
            Event::Unknown {
                label: 3,
                length: 1,
            },
            Event::Request {
                label: 0x100 + 11,
                length: 0,
                mr: [0; 4],
            },
            Event::Request {
                label: u64::MAX,
                length: 4,
                mr: [u64::MAX; 4],
            },
        ] {
            assert_eq!(g.handle(event), Step::Reply(Status::Invalid, 0));
            refused += 1;
        }
        assert_eq!(g.stats.invalid_requests, refused);
        assert_eq!(g.platform.log.len() as u64, refused);
        assert!(g.platform.log[0].contains("invalid request"));
        // And it still serves a good one.
        assert_eq!(out(g, 0x3f8, b'A'), Step::Reply(Status::Ok, 0));
        assert_eq!(g.devices.read(0x3f8 + 5, 1, 0) & 0x40, 0x40);
    });
}

#[test]
fn a_cr3_outside_ram_is_refused_and_one_inside_reloads() {
    with_guest(true, |g, _| {
        assert_eq!(
            request(g, Request::LoadCr3 { value: RAM }),
            Step::Reply(Status::Invalid, 0)
        );
        assert_eq!(g.cr3, ROOT);
        g.handle(Event::PageFault {
            rip: TEXT,
            addr: DATA,
            write: true,
        });
        // An empty PML4 elsewhere in RAM: the mapping goes.
        let empty = 0x2f_0000;
        assert_eq!(
            request(g, Request::LoadCr3 { value: empty }),
            Step::Reply(Status::Ok, 0)
        );
        assert_eq!(g.cr3, empty);
        assert!(g.vtlb.mapper.pages.is_empty());
        assert_eq!(g.vtlb.check_consistency(g.ram, g.cr3), Ok(0));
    });
}

#[test]
fn a_cr4_write_flushes_what_the_guests_tables_no_longer_allow() {
    with_guest(true, |g, ram| {
        let write = Event::PageFault {
            rip: TEXT,
            addr: DATA,
            write: true,
        };
        assert_eq!(g.handle(write), Step::Resume);
        assert_eq!(g.vtlb.mapper.pages.get(&DATA).map(|p| p.2), Some(true));
        // The guest makes the page read-only, as Linux does with part of
        // its image, and flushes by toggling CR4.PGE: no invlpg.
        Tables::new(ram, ROOT).set(DATA, 0x20_1000, 1);
        assert!(g.vtlb.check_consistency(g.ram, g.cr3).is_err(), "stale");
        for cr4 in [0x20, 0xa0] {
            assert_eq!(
                request(g, Request::WriteCr4 { value: cr4 }),
                Step::Reply(Status::Ok, 0)
            );
        }
        assert_eq!(g.cr3, ROOT);
        assert!(g.vtlb.mapper.pages.get(&DATA).is_none_or(|p| !p.2));
        assert!(g.vtlb.check_consistency(g.ram, g.cr3).is_ok());
    });
}

#[test]
fn the_console_and_the_exit_port() {
    with_guest(true, |g, _| {
        for &b in b"hi\n" {
            out(g, 0x3f8, b);
        }
        let string = Request::PortOutString {
            port: 0x3f8,
            size: 1,
            len: 3,
            data: *b"ok\n\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        assert_eq!(request(g, string), Step::Reply(Status::Ok, 0));
        assert_eq!(g.devices.console().0, b"hi\nok\n");
        assert_eq!(
            request(
                g,
                Request::PortOut {
                    port: 0xf4,
                    size: 1,
                    value: 3
                }
            ),
            Step::End(Ending::Exited(7))
        );
    });
}

#[test]
fn the_uarts_transmitter_empty_interrupt_reaches_the_guest_as_irq_4() {
    with_guest(true, |g, ram| {
        program_timer(g, 0x1000);
        // IRQ 0 and IRQ 4 unmasked, as Linux's 8250 driver leaves them.
        assert_eq!(out(g, 0x21, 0xee), Step::Reply(Status::Ok, 0));
        let iir = |g: &mut Guest<'_, Model>| {
            request(
                g,
                Request::PortIn {
                    port: 0x3fa,
                    size: 1,
                },
            )
        };
        // THR-empty enabled without OUT2: the chip's output is not wired.
        assert_eq!(out(g, 0x3f9, 0x02), Step::Reply(Status::Ok, 0));
        assert_eq!(pending_any(ram), 0);
        assert!(!g.devices.interrupt_waiting());
        // OUT2 connects it: the PIC asserts INTR, the wedge is told.
        assert_eq!(out(g, 0x3fc, 0x08), Step::Reply(Status::Ok, 0));
        assert_eq!(pending_any(ram), 1);
        assert_eq!(
            request(g, Request::InterruptAck),
            Step::Reply(Status::Ok, 0x24)
        );
        // The handler reads IIR: THR empty, which acknowledges it at the
        // chip; the line falls, nothing more is pending after the EOI.
        assert_eq!(iir(g), Step::Reply(Status::Ok, 0x02));
        assert_eq!(iir(g), Step::Reply(Status::Ok, 0x01));
        assert_eq!(out(g, 0x20, 0x20), Step::Reply(Status::Ok, 0));
        assert_eq!(pending_any(ram), 0);
        // The next byte written empties THR again: a new interrupt.
        assert_eq!(out(g, 0x3f8, b'x'), Step::Reply(Status::Ok, 0));
        assert_eq!(pending_any(ram), 1);
        assert_eq!(
            request(g, Request::InterruptAck),
            Step::Reply(Status::Ok, 0x24)
        );
        // Masked at the PIC, the chip's interrupt waits there.
        assert_eq!(iir(g), Step::Reply(Status::Ok, 0x02));
        assert_eq!(out(g, 0x20, 0x20), Step::Reply(Status::Ok, 0));
        assert_eq!(out(g, 0x21, 0xfe), Step::Reply(Status::Ok, 0));
        assert_eq!(out(g, 0x3f8, b'y'), Step::Reply(Status::Ok, 0));
        assert!(!g.devices.interrupt_waiting());
        assert_eq!(g.devices.console().0, b"xy");
    });
}

#[test]
fn the_keyboard_controllers_reset_command_ends_the_run_as_a_reboot() {
    with_guest(true, |g, _| {
        // A probe for the controller finds none; other commands are ignored.
        assert_eq!(
            request(
                g,
                Request::PortIn {
                    port: 0x64,
                    size: 1
                }
            ),
            Step::Reply(Status::Ok, 0xff)
        );
        assert_eq!(out(g, 0x64, 0xad), Step::Reply(Status::Ok, 0));
        assert_eq!(out(g, 0x60, 0xfe), Step::Reply(Status::Ok, 0));
        g.platform.now = 1234;
        assert_eq!(out(g, 0x64, 0xfe), Step::End(Ending::Reset { at: 1234 }));
        let text = std::format!("{}", Ending::Reset { at: 1234 });
        assert!(
            text.contains("keyboard controller") && text.contains("1234"),
            "{text}"
        );
    });
    // The same command as a string write (`outsb`) resets as well.
    with_guest(true, |g, _| {
        let mut data = [0u8; 24];
        data[0] = 0xfe;
        let string = Request::PortOutString {
            port: 0x64,
            size: 1,
            len: 1,
            data,
        };
        assert!(matches!(
            request(g, string),
            Step::End(Ending::Reset { .. })
        ));
    });
}

#[test]
fn a_halt_no_interrupt_can_end_ends_the_guest() {
    with_guest(true, |g, ram| {
        assert_eq!(
            request(g, Request::Halt),
            Step::End(Ending::Failed(
                "it halted with interrupts disabled: nothing can wake it"
            ))
        );
        set_vif(ram, true);
        assert_eq!(
            request(g, Request::Halt),
            Step::End(Ending::Failed(
                "it halted with no interrupt source running: nothing can wake it"
            ))
        );
        assert!(!g.platform.saved);
    });
}

#[test]
fn a_timer_tick_wakes_a_halted_guest_and_is_acknowledged_once() {
    with_guest(true, |g, ram| {
        program_timer(g, 1193);
        assert_eq!(g.platform.period, Some(1193));
        set_vif(ram, true);
        assert_eq!(request(g, Request::Halt), Step::Wait);
        assert!(g.platform.saved);
        // Before the first edge a tick finds nothing.
        g.platform.now = 100;
        assert_eq!(g.wake(), Step::Wait);
        assert_eq!(g.platform.answered, 0);
        // After it: the saved reply wakes the wedge, which acknowledges.
        g.platform.now = 1193 + 10;
        assert_eq!(g.wake(), Step::Wait);
        assert_eq!(g.platform.answered, 1);
        assert_eq!(pending_any(ram), 1);
        assert_eq!(
            request(g, Request::InterruptAck),
            Step::Reply(Status::Ok, 0x20)
        );
        assert_eq!(
            request(g, Request::InterruptAck),
            Step::Reply(Status::Ok, NO_VECTOR)
        );
        assert_eq!(g.irq.stats.injected, 1);
        assert_eq!(g.irq.stats.halts, 1);
        assert!(g.irq.stats.idle_tsc > 0);
    });
}

#[test]
fn edges_behind_an_unacknowledged_one_are_owed_not_lost() {
    with_guest(true, |g, ram| {
        program_timer(g, 1000);
        // Three periods pass with the guest's IF off: one request latches,
        // the others are owed.
        g.platform.now = 3 * 1000 + 10;
        assert_eq!(g.wake(), Step::Wait);
        assert_eq!(g.irq.stats.pit_edges, 3);
        assert_eq!(g.irq.stats.most_owed, 2);
        let eoi_at = AREA + VCPU_PAGE_OFFSET + DEFERRED_EOI_OFFSET;
        for _ in 0..3 {
            assert_eq!(
                request(g, Request::InterruptAck),
                Step::Reply(Status::Ok, 0x20)
            );
            // The wedge defers the EOI; the VMM applies it at its next look.
            ram.write(eoi_at, &1u32.to_le_bytes()).unwrap();
        }
        assert_eq!(
            request(g, Request::InterruptAck),
            Step::Reply(Status::Ok, NO_VECTOR)
        );
        assert_eq!(g.irq.stats.injected, 3);
        assert_eq!(g.irq.stats.merged, 0);
        let _ = set_vif;
    });
}

#[test]
fn a_tick_redirects_a_guest_running_its_own_code_with_if_set() {
    with_guest(true, |g, ram| {
        program_timer(g, 1000);
        set_vif(ram, true);
        g.platform.rip = TEXT + 0x40;
        g.platform.now = 1000 + 5;
        assert_eq!(g.wake(), Step::Wait);
        assert_eq!(g.platform.rip, ENTRY);
        assert_eq!(
            reflection(ram),
            Reflection {
                vector: 0x20,
                error: 0,
                cr2: 0,
                rip: TEXT + 0x40
            }
        );
        assert_eq!(g.irq.stats.redirected, 1);
        // Inside the wedge's general path, it is left to the wedge.
        g.platform.rip = WEDGE_BASE + 0x200;
        g.platform.now = 2 * 1000 + 5;
        assert_eq!(g.wake(), Step::Wait);
        assert_eq!(g.platform.rip, WEDGE_BASE + 0x200);
        assert_eq!(pending_any(ram), 1);
    });
}

/// The interrupt thread redirects the guest thread (rip `at`) while the
/// main thread holds a fault it sent just before (docs/vmm-server.md,
/// "Interrupts").
fn redirect_at(g: &mut Guest<'_, Model>, ram: &Ram, at: u64) {
    program_timer(g, 1000);
    set_vif(ram, true);
    g.platform.rip = at;
    g.platform.now = 1000 + 5;
    assert_eq!(g.wake(), Step::Wait);
    assert_eq!(g.platform.rip, ENTRY);
}

#[test]
fn a_kernel_fault_sent_just_before_an_interrupt_is_stale_and_the_interrupt_stays() {
    with_guest(true, |g, ram| {
        redirect_at(g, ram, TEXT + 4);
        // A write to a read-only page: on its own, reflected as a #PF. Here
        // the thread was moved into the wedge to take IRQ 0 first: the
        // fault is answered by restarting it there, and the instruction
        // faults again when the interrupt handler returns to it. Reflecting
        // it instead overwrote the interrupt's reflection block: IRQ 0 stayed
        // in service at the PIC with no handler to end it, and the guest
        // never had another timer interrupt.
        let fault = Event::PageFault {
            rip: TEXT + 4,
            addr: RO + 16,
            write: true,
        };
        assert_eq!(g.handle(fault), Step::Resume);
        assert_eq!(g.platform.rip, ENTRY);
        assert_eq!(
            (reflection(ram).vector, reflection(ram).rip),
            (0x20, TEXT + 4)
        );
        assert_eq!(g.irq.stats.stale_faults, 1);
        assert_eq!(g.stats.reflected_by_vector[14], 0);
        // Only the first event after the redirection can be stale: the
        // instruction's own fault, met again, is the guest's #PF.
        assert_eq!(g.handle(fault), Step::Resume);
        assert_eq!(reflection(ram).vector, 14);
        assert_eq!(g.irq.stats.stale_faults, 1);
    });
}

#[test]
fn a_stale_int3_is_met_again_after_the_interrupt() {
    with_guest(true, |g, ram| {
        // `int3` at TEXT + 8 (guest-physical 0x20_0008): seL4 reports its
        // #BP, a trap, with rip after it.
        ram.write(0x20_0008, &[0xcc]).unwrap();
        redirect_at(g, ram, TEXT + 9);
        let step = g.handle(Event::Exception {
            rip: TEXT + 9,
            vector: 3,
            code: 0,
            sp: 0x9000,
            flags: 0x202,
        });
        assert_eq!(step, Step::Resume);
        // The interrupt came just before the `int3`, which runs again when
        // the handler returns.
        assert_eq!(
            (reflection(ram).vector, reflection(ram).rip),
            (0x20, TEXT + 8)
        );
        assert_eq!(g.irq.stats.stale_faults, 1);
    });
}

#[test]
fn a_fault_elsewhere_after_a_redirection_is_not_stale() {
    with_guest(true, |g, ram| {
        redirect_at(g, ram, TEXT + 4);
        // The handler ran and faulted somewhere else: the guest's own.
        let step = g.handle(Event::PageFault {
            rip: TEXT + 0x20,
            addr: RO + 16,
            write: true,
        });
        assert_eq!(step, Step::Resume);
        assert_eq!(reflection(ram).vector, 14);
        assert_eq!(g.irq.stats.stale_faults, 0);
    });
}

#[test]
fn a_shutdown_request_ends_the_run_with_its_reason() {
    with_guest(true, |g, _| {
        assert_eq!(
            request(g, Request::Shutdown { reason: 11 }),
            Step::End(Ending::Shutdown(11))
        );
        let text = std::format!("{}", Ending::Shutdown(11));
        assert!(!text.contains("does not define"), "{text}");
        let unknown = std::format!("{}", Ending::Shutdown(999));
        assert!(unknown.contains("999"), "{unknown}");
    });
}

#[test]
fn without_a_wedge_a_trapped_cli_is_emulated_on_the_vmms_virtual_cpu() {
    let mut fx = Fixture::new();
    let ram = fx.host.ram();
    // `cli; sti` at TEXT (frame 0x20_0000).
    ram.write(0x20_0000, &[0xfa, 0xfb]).unwrap();
    let vif_gpa = Interrupts::vcpu_page(AREA) + VCPU_OFFSET + VIF_OFFSET;
    let mut cpu = TrapCpu::new(ROOT, vif_gpa);
    cpu.vcpu.vif = 1;
    let mut g = Guest {
        number: 0,
        ram: &ram,
        cr3: ROOT,
        vtlb: &mut fx.vtlb,
        sites: &fx.sites,
        devices: Devices::new(Capture::default()).unwrap(),
        platform: Model::default(),
        stats: Stats::default(),
        reflector: None,
        irq: Interrupts::new(Interrupts::vcpu_page(AREA)),
        ending: None,
        trap: Some(&mut cpu),
        views: None,
        recorder: None,
    };
    g.platform.regs.rip = TEXT;
    let step = g.handle(Event::Exception {
        rip: TEXT,
        vector: 13,
        code: 0,
        sp: 0x9000,
        flags: 0x202,
    });
    assert_eq!(step, Step::Resume);
    // Past the one-byte `cli`, with the virtual IF clear in the vCPU and
    // in the page the VMM's interrupt code reads.
    assert_eq!(g.platform.rip, TEXT + 1);
    assert_eq!(g.trap.as_ref().map(|c| c.vcpu.vif), Some(0));
    let mut vif = [1u8];
    ram.read(vif_gpa, &mut vif).unwrap();
    assert_eq!(vif[0], 0);
    assert_eq!(g.stats.user_exceptions[13], 1);
}

fn any_event() -> impl Strategy<Value = Event> {
    let addr = prop_oneof![
        Just(TEXT),
        Just(DATA),
        Just(RO),
        Just(ALIAS),
        Just(WEDGE_BASE),
        Just(ENTRY),
        any::<u64>(),
        (0u64..RAM),
    ];
    prop_oneof![
        (addr.clone(), addr.clone(), any::<bool>())
            .prop_map(|(rip, addr, write)| Event::PageFault { rip, addr, write }),
        (addr.clone(), 0u64..300, any::<u64>()).prop_map(|(rip, vector, code)| Event::Exception {
            sp: 0x9000,
            flags: 0x202,
            rip,
            vector,
            code
        }),
        (any::<u64>(), addr.clone())
            .prop_map(|(number, rip)| Event::UnknownSyscall { number, rip }),
        (
            0x100u64..0x10c,
            0usize..6,
            proptest::array::uniform4(prop_oneof![
                any::<u64>(),
                0u64..0x100,
                Just(0x3f8),
                Just(0x20),
                Just(0x40),
                Just(0xf4),
                (0u64..RAM)
            ])
        )
            .prop_map(|(label, length, mr)| Event::Request { label, length, mr }),
        (any::<u64>(), any::<usize>()).prop_map(|(label, length)| Event::Unknown { label, length }),
    ]
}

proptest! {
    /// No sequence of messages makes the dispatch panic, and every mapping
    /// it made is one the guest's tables justify, read-only over the wedge.
    #[test]
    fn any_messages_leave_the_vmm_serving_and_consistent(
        events in proptest::collection::vec(any_event(), 1..40),
        vif in any::<bool>(),
    ) {
        with_guest(true, |g, ram| {
            set_vif(ram, vif);
            for event in events {
                g.platform.now += 997;
                if let Step::End(_) = g.handle(event) {
                    break;
                }
            }
            let cr3 = g.cr3;
            prop_assert!(g.vtlb.check_consistency(ram, cr3).is_ok());
            for (&va, &(_, gpa, writable)) in &g.vtlb.mapper.pages {
                let over_wedge = (AREA..RAM).contains(&gpa);
                prop_assert!(!(over_wedge && writable), "{va:#x} maps the wedge writable");
            }
            Ok(())
        })?;
    }

    /// The decoder meets any label, length and registers without a panic.
    #[test]
    fn any_message_decodes(label in any::<u64>(), length in any::<usize>(), mr in any::<[u64; 8]>()) {
        let abi = sel4_abi();
        let _ = Event::decode(&abi, label, length, |i| mr[i % 8]);
    }
}
