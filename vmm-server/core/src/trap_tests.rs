//! Trap-and-emulate's host tests (`crate::trap`).

use crate::ram::host::HostRam;
use crate::trap::*;
use afterburn_format::Kind;
use wedge_l4::backend::Backend;
use wedge_l4::backend::{BackendError, ShutdownReason};
use wedge_l4::memory::GuestRegs;
use wedge_l4::vcpu::Vcpu;

/// Guest layout: the first 2 MiB identity-mapped writable (one large
/// page), 2 MiB..+4 KiB mapped read-only to [`RO_FRAME`], the rest unmapped.
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
const PT: u64 = 0x4000;
const RO_FRAME: u64 = 0x5000;
const IDT: u64 = 0x8000;
const CODE: u64 = 0x10000;
const STACK: u64 = 0x70000;
const UNMAPPED: u64 = 0x20_1000;
const READ_ONLY: u64 = 0x20_0000;
const RAM: u64 = 4 << 20;
/// Bytes past RAM that must stay as they are.
const GUARD: u64 = 4096;

fn handler(vector: u8) -> u64 {
    0x10_0000 + u64::from(vector) * 16
}

struct Guest {
    ram: HostRam,
    vcpu: Vcpu,
    regs: GuestRegs,
}

fn guest() -> Guest {
    let ram = HostRam::with_guard(RAM, GUARD, 0xa5);
    ram.set(PML4, PDPT | 3);
    ram.set(PDPT, PD | 3);
    ram.set(PD, 0x83);
    ram.set(PD + 8, PT | 3);
    ram.set(PT, RO_FRAME | 1);
    for v in 0..=255u8 {
        let h = handler(v);
        let mut gate = [0u8; 16];
        gate[0..2].copy_from_slice(&(h as u16).to_le_bytes());
        gate[2..4].copy_from_slice(&8u16.to_le_bytes());
        gate[5] = 0x8e;
        gate[6..8].copy_from_slice(&((h >> 16) as u16).to_le_bytes());
        gate[8..12].copy_from_slice(&((h >> 32) as u32).to_le_bytes());
        ram.ram().write(IDT + u64::from(v) * 16, &gate).unwrap();
    }
    let mut vcpu = Vcpu::at_pv_entry(PML4);
    vcpu.idtr_base = IDT;
    vcpu.idtr_limit = 256 * 16 - 1;
    let mut regs = GuestRegs {
        rip: CODE,
        rflags: 0x202,
        ..GuestRegs::default()
    };
    regs.set_rsp(STACK);
    Guest { ram, vcpu, regs }
}

#[derive(Default)]
struct Host {
    outs: Vec<(u16, u8, u32)>,
    /// Vectors the PIC will give, last first.
    waiting: Vec<u8>,
    shutdown: Option<ShutdownReason>,
}

impl Backend for Host {
    fn port_in(&mut self, port: u16, _: u8) -> Result<u32, BackendError> {
        Ok(u32::from(port) ^ 0xff)
    }
    fn port_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), BackendError> {
        self.outs.push((port, size, value));
        Ok(())
    }
    fn load_cr3(&mut self, _: u64) -> Result<(), BackendError> {
        Ok(())
    }
    fn invlpg(&mut self, _: u64) -> Result<(), BackendError> {
        Ok(())
    }
    fn write_cr0(&mut self, _: u64) -> Result<(), BackendError> {
        Ok(())
    }
    fn write_cr4(&mut self, _: u64) -> Result<(), BackendError> {
        Ok(())
    }
    fn halt(&mut self, _: &Vcpu) -> Result<(), BackendError> {
        Err(BackendError::Refused)
    }
    fn set_fs_base(&mut self, _: u64) -> Result<(), BackendError> {
        Ok(())
    }
    fn cpuid(&mut self, _: u32, _: u32) -> [u32; 4] {
        [0; 4]
    }
    fn rdtsc(&mut self) -> u64 {
        0
    }
    fn shutdown(&mut self, reason: ShutdownReason) {
        self.shutdown = Some(reason);
    }
}

impl TrapHost for Host {
    fn interrupt_waiting(&mut self) -> bool {
        !self.waiting.is_empty()
    }
    fn acknowledge(&mut self) -> Option<u8> {
        self.waiting.pop()
    }
}

#[test]
fn a_return_to_user_mode_ends_trap_and_emulate_which_has_no_user_views() {
    let mut g = guest();
    let mut host = Host::default();
    // An iretq frame to CPL 3: rip, cs 0x4b, rflags, rsp, ss 0x43.
    let frame = [0x1_0000_0000u64, 0x4b, 0x202, 0x7000, 0x43];
    for (i, q) in frame.iter().enumerate() {
        g.ram.ram().write_u64(STACK + 8 * i as u64, *q).unwrap();
    }
    g.regs.set_rsp(STACK);
    g.code(CODE, &[0x48, 0xcf]);
    assert_eq!(g.gp(&mut host), Err(TrapError::UserMode { rip: CODE }));
    // And sysretq.
    g.code(CODE, &[0x48, 0x0f, 0x07]);
    assert_eq!(g.gp(&mut host), Err(TrapError::UserMode { rip: CODE }));
}

impl Guest {
    fn code(&mut self, at: u64, bytes: &[u8]) {
        self.ram.ram().write(at, bytes).unwrap();
        self.regs.rip = at;
    }

    fn fault(&mut self, fault: Fault, host: &mut Host) -> Result<Handled, TrapError> {
        let ram = self.ram.ram();
        let mut mem = GuestPages::new(&ram, PML4);
        handle(fault, &mut self.vcpu, &mut self.regs, &mut mem, host)
    }

    fn gp(&mut self, host: &mut Host) -> Result<Handled, TrapError> {
        self.fault(
            Fault::Exception {
                vector: 13,
                error: 0,
            },
            host,
        )
    }

    /// The interrupt frame's (rip, error code if `with_error`) at rsp.
    fn frame(&self, with_error: bool) -> (u64, Option<u64>) {
        let ram = self.ram.ram();
        let rsp = self.regs.rsp();
        if with_error {
            (
                ram.read_u64(rsp + 8).unwrap(),
                Some(ram.read_u64(rsp).unwrap()),
            )
        } else {
            (ram.read_u64(rsp).unwrap(), None)
        }
    }
}

#[test]
fn a_faulting_cli_and_out_are_emulated_and_the_guest_continues_after_them() {
    let mut g = guest();
    let mut host = Host::default();
    g.vcpu.set_interrupts_enabled(true);
    g.code(CODE, &[0xfa]);
    assert_eq!(g.gp(&mut host), Ok(Handled::Emulated(Kind::Cli)));
    assert!(!g.vcpu.interrupts_enabled());
    assert_eq!(g.regs.rip, CODE + 1);
    g.regs.set(0, 0x1234_5678);
    g.code(CODE + 1, &[0xe6, 0x80]); // out %al, $0x80
    assert_eq!(g.gp(&mut host), Ok(Handled::Emulated(Kind::PortOut)));
    assert_eq!(host.outs, vec![(0x80, 1, 0x78)]);
    assert_eq!(g.regs.rip, CODE + 3);
}

#[test]
fn a_gp_of_an_instruction_that_is_not_sensitive_is_the_guests_own() {
    let mut g = guest();
    let mut host = Host::default();
    // A prefix storm: 15 operand-size prefixes, then a nop (16 bytes: the
    // CPU raises #GP), and an ordinary load.
    let mut storm = [0x66u8; 16];
    storm[15] = 0x90;
    for bytes in [&storm[..], &[0x48, 0x8b, 0x18][..]] {
        g.code(CODE, bytes);
        g.regs.set_rsp(STACK);
        let r = g.fault(
            Fault::Exception {
                vector: 13,
                error: 0x18,
            },
            &mut host,
        );
        assert_eq!(
            r,
            Ok(Handled::Delivered {
                vector: 13,
                emulated: None
            })
        );
        assert_eq!(g.regs.rip, handler(13));
        assert_eq!(g.frame(true), (CODE, Some(0x18)));
    }
}

#[test]
fn an_instruction_running_into_an_unmapped_page_is_a_page_fault_there() {
    let mut g = guest();
    let mut host = Host::default();
    // invlpg (%rax) = 0f 01 38, its last byte on the unmapped page.
    let at = UNMAPPED - 2;
    g.regs.rip = at;
    // 0x20_0ffe is in the read-only page: write it through its frame.
    g.ram.ram().write(RO_FRAME + 0xffe, &[0x0f, 0x01]).unwrap();
    let r = g.gp(&mut host);
    assert_eq!(
        r,
        Ok(Handled::Delivered {
            vector: 14,
            emulated: None
        })
    );
    assert_eq!(g.vcpu.cr2, UNMAPPED);
    assert_eq!(g.frame(true), (at, Some(PF_FETCH)));
}

#[test]
fn an_operand_the_tables_do_not_map_writable_is_a_page_fault_with_its_address() {
    let mut g = guest();
    let mut host = Host::default();
    // sgdt 0x200000 (absolute disp32 through a SIB): a write to a
    // read-only page.
    g.code(CODE, &[0x0f, 0x01, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00]);
    let r = g.gp(&mut host);
    assert_eq!(
        r,
        Ok(Handled::Delivered {
            vector: 14,
            emulated: None
        })
    );
    assert_eq!(g.vcpu.cr2, READ_ONLY);
    assert_eq!(g.frame(true), (CODE, Some(PF_PRESENT | PF_WRITE)));
}

#[test]
fn a_fault_inside_a_fault_escalates_to_a_double_then_a_triple_fault() {
    let mut g = guest();
    let mut host = Host::default();
    // #UD's gate not present: a #DF.
    g.ram.ram().write(IDT + 6 * 16 + 5, &[0x0e]).unwrap();
    let r = g.fault(
        Fault::Exception {
            vector: 6,
            error: 0,
        },
        &mut host,
    );
    assert_eq!(
        r,
        Ok(Handled::Delivered {
            vector: 8,
            emulated: None
        })
    );
    assert_eq!(g.regs.rip, handler(8));
    // And with the stack unmapped, nothing can be delivered.
    g.regs.set_rsp(UNMAPPED + 0x100);
    g.regs.rip = CODE;
    let r = g.fault(
        Fault::Exception {
            vector: 6,
            error: 0,
        },
        &mut host,
    );
    assert!(
        matches!(r, Err(TrapError::TripleFault { vector: 6, .. })),
        "{r:?}"
    );
    assert_eq!(host.shutdown, Some(ShutdownReason::TripleFault));
    assert_eq!(
        r.unwrap_err().to_string(),
        "triple fault: exception 6 at 0x10000 could not be delivered, nor a double fault: the IDT, TSS or stack at 0x2010d0 is not mapped by its page tables"
    );
}

#[test]
fn sti_hlt_keeps_the_shadow_and_hlt_waits_when_nothing_is_pending() {
    let mut g = guest();
    let mut host = Host::default();
    g.code(CODE, &[0xfb, 0xf4]);
    assert_eq!(g.gp(&mut host), Ok(Handled::Halted));
    assert!(g.vcpu.interrupts_enabled());
    assert_eq!(g.regs.rip, CODE + 2);
    // With an interrupt waiting it is taken after the hlt.
    g.vcpu.set_interrupts_enabled(false);
    g.code(CODE, &[0xfb, 0xf4]);
    host.waiting.push(0x20);
    assert_eq!(
        g.gp(&mut host),
        Ok(Handled::Delivered {
            vector: 0x20,
            emulated: Some(Kind::Sti)
        })
    );
    assert_eq!(g.frame(false), (CODE + 2, None));
    assert!(!g.vcpu.interrupts_enabled(), "an interrupt gate clears IF");
}

#[test]
fn iretq_restores_if_and_lets_a_waiting_interrupt_in() {
    let mut g = guest();
    let mut host = Host::default();
    // A frame: rip, cs, rflags (IF), rsp, ss.
    let frame = [0x4242u64, 8, 0x202, STACK - 0x200, 0x10];
    for (i, q) in frame.iter().enumerate() {
        g.ram.ram().write_u64(STACK + 8 * i as u64, *q).unwrap();
    }
    g.code(CODE, &[0x48, 0xcf]);
    assert_eq!(g.gp(&mut host), Ok(Handled::Emulated(Kind::Iret)));
    assert_eq!((g.regs.rip, g.regs.rsp()), (0x4242, STACK - 0x200));
    assert!(g.vcpu.interrupts_enabled());
    // Again, with an interrupt waiting: delivered where the iretq returns.
    g.regs.set_rsp(STACK);
    g.code(CODE, &[0x48, 0xcf]);
    host.waiting.push(0x21);
    assert_eq!(
        g.gp(&mut host),
        Ok(Handled::Delivered {
            vector: 0x21,
            emulated: Some(Kind::Iret)
        })
    );
    assert_eq!(g.regs.rip, handler(0x21));
    assert_eq!(g.frame(false), (0x4242, None));
}

#[test]
fn an_unmapped_rip_is_a_page_fault_at_it() {
    let mut g = guest();
    let mut host = Host::default();
    g.regs.rip = UNMAPPED + 0x10;
    let r = g.gp(&mut host);
    assert_eq!(
        r,
        Ok(Handled::Delivered {
            vector: 14,
            emulated: None
        })
    );
    assert_eq!(g.vcpu.cr2, UNMAPPED + 0x10);
    // A #GP at a non-canonical rip (a jump there) is the guest's #GP.
    g.regs.rip = 0x8000_0000_0000;
    g.regs.set_rsp(STACK);
    let r = g.fault(
        Fault::Exception {
            vector: 13,
            error: 0,
        },
        &mut host,
    );
    assert_eq!(
        r,
        Ok(Handled::Delivered {
            vector: 13,
            emulated: None
        })
    );
    assert_eq!(g.frame(true), (0x8000_0000_0000, Some(0)));
}

#[test]
fn frame_only_is_true_exactly_where_no_general_register_is_used() {
    let mut g = guest();
    let ram = g.ram.ram();
    let gp = Fault::Exception {
        vector: 13,
        error: 0,
    };
    let cases: [(&[u8], bool); 7] = [
        (&[0xfa], true),              // cli
        (&[0xfb, 0xf4], true),        // sti; hlt
        (&[0x48, 0xcf], true),        // iretq
        (&[0xcd, 0x80], true),        // int $0x80
        (&[0xe6, 0x80], false),       // out %al: reads rax
        (&[0x0f, 0x22, 0xd8], false), // mov %rax, %cr3
        (&[0x48, 0x8b, 0x18], true),  // not sensitive: the guest's #GP, a delivery
    ];
    for (bytes, expected) in cases {
        g.code(CODE, bytes);
        let mut mem = GuestPages::new(&ram, PML4);
        assert_eq!(
            decode_fault(gp, &mut mem, CODE).frame_only(),
            expected,
            "{bytes:x?}"
        );
    }
    let mut mem = GuestPages::new(&ram, PML4);
    let ud = Fault::Exception {
        vector: 6,
        error: 0,
    };
    assert!(decode_fault(ud, &mut mem, CODE).frame_only());
    let pf = Fault::PageFault {
        address: 0,
        error: 0,
    };
    // A page fault's delivery needs only the frame too, but its message has
    // no stack pointer: the VMM reads the registers for it.
    assert!(decode_fault(pf, &mut mem, CODE).frame_only());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any bytes at rip, any registers, any fault: `handle` answers (an
    /// emulation, a delivery, a halt or a typed error), never a panic, and
    /// never touches memory outside guest RAM.
    #[test]
    fn any_fault_at_any_bytes_is_answered(
        code in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..20),
        rip_offset in 0u64..0x20_2000,
        gpr in proptest::array::uniform16(proptest::prelude::any::<u64>()),
        vector in 0u8..32,
        error in proptest::prelude::any::<u64>(),
        waiting in proptest::option::of(32u8..=255),
    ) {
        let mut g = guest();
        let at = rip_offset.min(0x1f_ff00);
        g.ram.ram().write(at, &code).unwrap();
        g.regs.gpr = gpr;
        g.regs.rip = rip_offset;
        let mut host = Host::default();
        host.waiting.extend(waiting);
        let fault = if vector == 14 {
            Fault::PageFault { address: error, error: error & 3 }
        } else {
            Fault::Exception { vector, error }
        };
        let _ = g.fault(fault, &mut host);
        let _ = g.fault(Fault::Exception { vector: 13, error: 0 }, &mut host);
        proptest::prop_assert!(g.ram.all()[RAM as usize..].iter().all(|&b| b == 0xa5));
    }
}
