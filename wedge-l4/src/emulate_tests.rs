//! Emulation of every form the guest uses, against a recording backend and
//! a byte-array memory.

use super::*;
use crate::testutil::{guest, handler, ByteMem, Call, Mock};
use crate::vcpu::{FLAG_CF, FLAG_IF};
use afterburn_format::{FLAG_REP, FLAG_SHADOW_PAIR};
use proptest::prelude::*;

const AT: u64 = 0x40_0000;

fn site(kind: Kind, insn: &[u8]) -> Site {
    Site {
        address: AT,
        kind,
        flags: 0,
        site_len: kind.default_site_size(),
        insn_len: insn.len() as u8,
        pair_len: 0,
    }
}

struct T {
    vcpu: Vcpu,
    regs: GuestRegs,
    mem: ByteMem,
    be: Mock,
}

fn t() -> T {
    let (vcpu, regs, mem) = guest();
    T {
        vcpu,
        regs,
        mem,
        be: Mock::default(),
    }
}

impl T {
    fn run_site(&mut self, s: &Site, bytes: &[u8]) -> Result<Outcome, EmulateError> {
        self.regs.rip = s.address;
        emulate(
            s,
            bytes,
            &mut self.vcpu,
            &mut self.regs,
            &mut self.mem,
            &mut self.be,
        )
    }
    fn run(&mut self, kind: Kind, bytes: &[u8]) -> Outcome {
        let s = site(kind, bytes);
        self.run_site(&s, bytes).unwrap()
    }
}

#[test]
fn pushf_pushes_virtual_if_and_skips_the_whole_site() {
    let mut t = t();
    t.regs.rflags = 0x202 | FLAG_CF; // real IF set, as at user level
    assert_eq!(t.run(Kind::Pushf, &[0x9c]), Outcome::Resume);
    assert_eq!(t.regs.rip, AT + 12);
    assert_eq!(t.regs.rsp(), 0x8000 - 8);
    assert_eq!(
        t.mem.qwords(0x8000 - 8, 1),
        vec![0x2 | FLAG_CF],
        "virtual IF is 0"
    );
    t.vcpu.set_interrupts_enabled(true);
    t.run(Kind::Pushf, &[0x9c]);
    assert_eq!(t.mem.qwords(0x8000 - 16, 1), vec![0x2 | FLAG_CF | FLAG_IF]);
    assert!(t.be.calls.is_empty());
}

#[test]
fn popf_clearing_if_leaves_real_if_and_sets_other_flags() {
    let mut t = t();
    t.vcpu.set_interrupts_enabled(true);
    t.regs.set_rsp(0x7ff8);
    t.mem
        .bytes_mut(0x7ff8, 8)
        .copy_from_slice(&(0x2 | FLAG_CF).to_le_bytes());
    assert_eq!(t.run(Kind::Popf, &[0x9d]), Outcome::Resume);
    assert!(!t.vcpu.interrupts_enabled());
    assert_eq!(t.regs.rflags & FLAG_IF, FLAG_IF, "real IF untouched");
    assert_eq!(t.regs.rflags & FLAG_CF, FLAG_CF);
    assert_eq!(t.regs.rsp(), 0x8000);
    assert_eq!(t.regs.rip, AT + 12);
}

#[test]
fn popf_setting_if_delivers_a_pending_interrupt() {
    let mut t = t();
    t.vcpu.raise(0x21);
    t.regs.set_rsp(0x7ff8);
    t.mem
        .bytes_mut(0x7ff8, 8)
        .copy_from_slice(&(0x2 | FLAG_IF).to_le_bytes());
    assert_eq!(t.run(Kind::Popf, &[0x9d]), Outcome::Delivered(0x21));
    assert_eq!(t.regs.rip, handler(0x21));
    // The frame returns past the popf site, with IF set in its flags.
    assert_eq!(
        t.mem.qwords(t.regs.rsp(), 5),
        vec![AT + 12, 8, 0x202, 0x8000, 0x10]
    );
}

#[test]
fn cli_and_sti() {
    let mut t = t();
    t.run(Kind::Sti, &[0xfb]);
    assert!(t.vcpu.interrupts_enabled());
    t.run(Kind::Cli, &[0xfa]);
    assert!(!t.vcpu.interrupts_enabled());
    assert_eq!(t.regs.rip, AT + 12);
    assert!(t.be.calls.is_empty());
}

#[test]
fn sti_hlt_delivers_after_the_hlt() {
    let mut t = t();
    t.be.wake_vector = Some(0x20);
    let s = Site {
        flags: FLAG_SHADOW_PAIR,
        pair_len: 1,
        ..site(Kind::Sti, &[0xfb])
    };
    assert_eq!(
        t.run_site(&s, &[0xfb, 0xf4]).unwrap(),
        Outcome::Delivered(0x20)
    );
    assert_eq!(t.be.calls, vec![Call::Halt]);
    assert_eq!(t.regs.rip, handler(0x20));
    let frame = t.mem.qwords(t.regs.rsp(), 3);
    assert_eq!(frame[0], AT + 12, "returns after the hlt");
    assert_eq!(frame[2] & FLAG_IF, FLAG_IF);
    assert!(!t.vcpu.interrupts_enabled());
    assert!(!t.vcpu.has_pending());
}

#[test]
fn sti_hlt_with_an_interrupt_already_pending_does_not_block() {
    let mut t = t();
    t.vcpu.raise(0x28);
    let s = Site {
        flags: FLAG_SHADOW_PAIR,
        pair_len: 1,
        ..site(Kind::Sti, &[0xfb])
    };
    assert_eq!(
        t.run_site(&s, &[0xfb, 0xf4]).unwrap(),
        Outcome::Delivered(0x28)
    );
    assert!(t.be.calls.is_empty());
}

#[test]
fn hlt_with_interrupts_off_blocks_and_resumes_after_the_site() {
    let mut t = t();
    assert_eq!(t.run(Kind::Hlt, &[0xf4]), Outcome::Resume);
    assert_eq!(t.be.calls, vec![Call::Halt]);
    assert_eq!(t.regs.rip, AT + 16);
}

#[test]
fn other_pairs_are_refused() {
    let mut t = t();
    let s = Site {
        flags: FLAG_SHADOW_PAIR,
        pair_len: 1,
        ..site(Kind::MovToSeg, &[0x8e, 0xd0])
    };
    assert_eq!(
        t.run_site(&s, &[0x8e, 0xd0, 0x90]),
        Err(EmulateError::UnsupportedPair)
    );
}

#[test]
fn port_io_forms() {
    let mut t = t();
    t.regs.set(reg::RAX, 0xffff_ff42);
    t.run(Kind::PortOut, &[0xe6, 0xf4]); // outb %al,$0xf4
    t.regs.set(reg::RDX, 0x3f8);
    t.run(Kind::PortOut, &[0xee]); // outb %al,%dx
    t.run(Kind::PortOut, &[0x66, 0xef]); // outw %ax,%dx
    t.be.in_value = 0x99;
    t.regs.set(reg::RAX, 0x1111_2222_3333_4444);
    t.run(Kind::PortIn, &[0xec]); // inb %dx,%al
    assert_eq!(
        t.regs.get(reg::RAX),
        0x1111_2222_3333_4499,
        "inb keeps the upper bits"
    );
    assert_eq!(
        t.be.calls,
        vec![
            Call::PortOut(0xf4, 1, 0x42),
            Call::PortOut(0x3f8, 1, 0x42),
            Call::PortOut(0x3f8, 2, 0xff42),
            Call::PortIn(0x3f8, 1),
        ]
    );
    assert_eq!(t.regs.rip, AT + 16);
}

#[test]
fn rep_outsb_batches_and_updates_rsi_rcx() {
    let mut t = t();
    t.mem.bytes_mut(0x3000, 70).copy_from_slice(&[b'x'; 70]);
    t.regs.set(reg::RSI, 0x3000);
    t.regs.set(reg::RCX, 70);
    t.regs.set(reg::RDX, 0x3f8);
    let s = Site {
        flags: FLAG_REP,
        ..site(Kind::PortOut, &[0xf3, 0x6e])
    };
    t.run_site(&s, &[0xf3, 0x6e]).unwrap();
    assert_eq!(
        t.be.calls,
        vec![
            Call::PortOutString(0x3f8, 1, vec![b'x'; 64]),
            Call::PortOutString(0x3f8, 1, vec![b'x'; 6]),
        ]
    );
    assert_eq!(t.regs.get(reg::RSI), 0x3000 + 70);
    assert_eq!(t.regs.get(reg::RCX), 0);
}

#[test]
fn rep_insb_fills_memory() {
    let mut t = t();
    t.regs.set(reg::RDI, 0x3000);
    t.regs.set(reg::RCX, 3);
    t.regs.set(reg::RDX, 0x60);
    t.run(Kind::PortIn, &[0xf3, 0x6c]);
    assert_eq!(t.be.calls, vec![Call::PortInString(0x60, 1, 3)]);
    assert_eq!(t.mem.bytes_mut(0x3000, 3), &[0, 1, 2]);
    assert_eq!(t.regs.get(reg::RDI), 0x3003);
}

#[test]
fn control_registers() {
    let mut t = t();
    t.regs.set(reg::RAX, 0x9000);
    t.run(Kind::MovToCr, &[0x0f, 0x22, 0xd8]); // mov %rax,%cr3
    assert_eq!(t.be.calls, vec![Call::LoadCr3(0x9000)]);
    assert_eq!(t.vcpu.cr3, 0x9000);
    t.run(Kind::MovFromCr, &[0x0f, 0x20, 0xda]); // mov %cr3,%rdx
    assert_eq!(t.regs.get(reg::RDX), 0x9000);
    t.vcpu.cr2 = 0xdead;
    t.run(Kind::MovFromCr, &[0x41, 0x0f, 0x20, 0xd1]); // mov %cr2,%r9
    assert_eq!(t.regs.get(9), 0xdead);
    t.run(Kind::MovFromCr, &[0x0f, 0x20, 0xc0]); // mov %cr0,%rax
    assert_eq!(t.regs.get(reg::RAX), t.vcpu.cr0);
    t.regs.set(reg::RAX, t.vcpu.cr4 | 0x80);
    t.run(Kind::MovToCr, &[0x0f, 0x22, 0xe0]); // mov %rax,%cr4
    assert_eq!(t.be.calls[1], Call::WriteCr4(0x20 | 0x80));
    assert_eq!(t.regs.rip, AT + 16);
}

#[test]
fn invlpg_uses_the_effective_address() {
    let mut t = t();
    t.regs.set(reg::RDI, 0x8000_3000);
    t.run(Kind::Invlpg, &[0x0f, 0x01, 0x3f]); // invlpg (%rdi)
    assert_eq!(t.be.calls, vec![Call::Invlpg(0x8000_3000)]);
}

#[test]
fn descriptor_tables_round_trip_through_memory() {
    let mut t = t();
    let mut p = [0u8; 10];
    p[..2].copy_from_slice(&63u16.to_le_bytes());
    p[2..].copy_from_slice(&0x1234_5678u64.to_le_bytes());
    t.mem.bytes_mut(0x7000, 10).copy_from_slice(&p);
    t.regs.set(reg::RBX, 0x6ff0);
    t.run(Kind::Lgdt, &[0x0f, 0x01, 0x53, 0x10]); // lgdt 0x10(%rbx)
    assert_eq!((t.vcpu.gdtr_base, t.vcpu.gdtr_limit), (0x1234_5678, 63));
    t.run(Kind::Sgdt, &[0x0f, 0x01, 0x43, 0x20]); // sgdt 0x20(%rbx)
    assert_eq!(t.mem.bytes_mut(0x7010, 10), &p);
    // sidt through RIP: relative to the native end of the instruction.
    let s = Site {
        address: 0x2000,
        ..site(Kind::Sidt, &[0x0f, 0x01, 0x0d, 0x00, 0x10, 0, 0])
    };
    t.run_site(&s, &[0x0f, 0x01, 0x0d, 0x00, 0x10, 0, 0])
        .unwrap();
    let mut want = [0u8; 10];
    want[..2].copy_from_slice(&t.vcpu.idtr_limit.to_le_bytes());
    want[2..].copy_from_slice(&t.vcpu.idtr_base.to_le_bytes());
    assert_eq!(t.mem.bytes_mut(0x2007 + 0x1000, 10), &want);
    assert_eq!(t.regs.rip, 0x2010);
    // lidt loads the IDTR.
    t.regs.set(reg::RBX, 0x7000);
    t.run(Kind::Lidt, &[0x0f, 0x01, 0x1b]); // lidt (%rbx)
    assert_eq!((t.vcpu.idtr_base, t.vcpu.idtr_limit), (0x1234_5678, 63));
    assert!(t.be.calls.is_empty());
}

#[test]
fn task_and_ldt_registers_and_smsw() {
    let mut t = t();
    // A GDT at 0x3000 with an available TSS descriptor at 0x18.
    t.vcpu.gdtr_base = 0x3000;
    t.vcpu.gdtr_limit = 0x3f;
    t.mem.bytes_mut(0x3018 + 5, 1)[0] = 0x89;
    t.regs.set(reg::RAX, 0x18);
    assert_eq!(t.run(Kind::Ltr, &[0x0f, 0x00, 0xd8]), Outcome::Resume); // ltr %ax
    assert_eq!(t.mem.bytes_mut(0x3018 + 5, 1)[0], 0x8b, "TSS marked busy");
    let rsp = t.regs.rsp();
    assert_eq!(
        t.run(Kind::Ltr, &[0x0f, 0x00, 0xd8]),
        Outcome::Delivered(13),
        "busy TSS"
    );
    assert_eq!(t.mem.qwords(t.regs.rsp(), 2), vec![0x18, AT]);
    t.regs.set_rsp(rsp);
    t.regs.set(reg::RDX, 0x28);
    t.run(Kind::Lldt, &[0x0f, 0x00, 0xd2]); // lldt %dx
    t.regs.set(reg::RCX, u64::MAX);
    t.run(Kind::Str, &[0x66, 0x0f, 0x00, 0xc9]); // str %cx
    assert_eq!(t.regs.get(reg::RCX), 0xffff_ffff_ffff_0018);
    t.run(Kind::Sldt, &[0x0f, 0x00, 0xc1]); // sldt %ecx
    assert_eq!(t.regs.get(reg::RCX), 0x28);
    t.run(Kind::Smsw, &[0x66, 0x0f, 0x01, 0xe0]); // smsw %ax
    assert_eq!(t.regs.get(reg::RAX) & 0xffff, t.vcpu.cr0 & 0xffff);
    t.regs.set(reg::RAX, 0x8);
    t.run(Kind::Lmsw, &[0x0f, 0x01, 0xf0]); // lmsw %ax: sets TS, keeps PE
    assert_eq!(t.vcpu.cr0 & 0xf, 0x9);
    assert_eq!(t.be.calls, vec![Call::WriteCr0(t.vcpu.cr0)]);
}

#[test]
fn segment_loads_stores_and_far_return() {
    let mut t = t();
    t.regs.set(reg::RAX, 0x23);
    t.run(Kind::MovToSeg, &[0x8e, 0xd8]); // mov %eax,%ds
    assert_eq!(t.vcpu.seg(SegReg::Ds), 0x23);
    t.regs.set(reg::RBX, u64::MAX);
    t.run(Kind::MovFromSeg, &[0x8c, 0xdb]); // mov %ds,%ebx
    assert_eq!(t.regs.get(reg::RBX), 0x23, "32-bit store zero-extends");
    // pushq $0x08; pushq $target; lretq
    t.regs.set_rsp(0x7ff0);
    t.mem
        .bytes_mut(0x7ff0, 16)
        .copy_from_slice(&[0x34, 0x12, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
    t.vcpu.set_seg(SegReg::Cs, 0x33);
    t.run(Kind::FarRet, &[0x48, 0xcb]);
    assert_eq!(t.regs.rip, 0x1234);
    assert_eq!(t.vcpu.seg(SegReg::Cs), 8);
    assert_eq!(t.regs.rsp(), 0x8000);
}

#[test]
fn iretq_restores_the_frame_and_virtual_if() {
    let mut t = t();
    t.regs.set_rsp(0x7000);
    for (i, v) in [0x4444u64, 8, 0x202 | FLAG_CF, 0x7800, 0x10]
        .iter()
        .enumerate()
    {
        t.mem
            .bytes_mut(0x7000 + 8 * i as u64, 8)
            .copy_from_slice(&v.to_le_bytes());
    }
    assert_eq!(t.run(Kind::Iret, &[0x48, 0xcf]), Outcome::Resume);
    assert_eq!(t.regs.rip, 0x4444);
    assert_eq!(t.regs.rsp(), 0x7800);
    assert!(t.vcpu.interrupts_enabled());
    assert_eq!(t.regs.rflags & FLAG_CF, FLAG_CF);
}

#[test]
fn iretq_enabling_if_delivers_pending() {
    let mut t = t();
    t.vcpu.raise(0x30);
    t.regs.set_rsp(0x7000);
    for (i, v) in [0x4444u64, 8, 0x202, 0x7800, 0x10].iter().enumerate() {
        t.mem
            .bytes_mut(0x7000 + 8 * i as u64, 8)
            .copy_from_slice(&v.to_le_bytes());
    }
    assert_eq!(t.run(Kind::Iret, &[0x48, 0xcf]), Outcome::Delivered(0x30));
    assert_eq!(t.mem.qwords(t.regs.rsp(), 2), vec![0x4444, 8]);
}

#[test]
fn msrs() {
    let mut t = t();
    t.regs.set(reg::RCX, u64::from(MSR_EFER));
    t.run(Kind::Rdmsr, &[0x0f, 0x32]);
    assert_eq!(t.regs.get(reg::RAX) & 0x500, 0x500);
    t.regs.set(reg::RCX, u64::from(MSR_FS_BASE));
    t.regs.set(reg::RAX, 0x5678_9000);
    t.regs.set(reg::RDX, 0x1234);
    t.run(Kind::Wrmsr, &[0x0f, 0x30]);
    assert_eq!(t.be.calls, vec![Call::SetFsBase(0x1234_5678_9000)]);
    t.regs.set(reg::RAX, 0);
    t.regs.set(reg::RDX, 0);
    t.run(Kind::Rdmsr, &[0x0f, 0x32]);
    assert_eq!(
        (t.regs.get(reg::RDX), t.regs.get(reg::RAX)),
        (0x1234, 0x5678_9000)
    );
    // An unknown MSR is #GP(0) at the site itself.
    t.regs.set(reg::RCX, 0x1b);
    assert_eq!(t.run(Kind::Rdmsr, &[0x0f, 0x32]), Outcome::Delivered(13));
    assert_eq!(t.mem.qwords(t.regs.rsp(), 2), vec![0, AT]);
}

/// Writes MSR `msr` through the emulator.
fn wrmsr(t: &mut T, msr: u32, v: u64) -> Outcome {
    t.regs.set(reg::RCX, u64::from(msr));
    t.regs.set(reg::RAX, v & 0xffff_ffff);
    t.regs.set(reg::RDX, v >> 32);
    t.run(Kind::Wrmsr, &[0x0f, 0x30])
}

/// Reads MSR `msr` through the emulator.
fn rdmsr(t: &mut T, msr: u32) -> u64 {
    t.regs.set(reg::RCX, u64::from(msr));
    t.run(Kind::Rdmsr, &[0x0f, 0x32]);
    t.regs.get(reg::RDX) << 32 | t.regs.get(reg::RAX)
}

#[test]
fn system_call_msrs_and_gs_bases_round_trip_and_swapgs_swaps() {
    let mut t = t();
    let values = [
        (MSR_STAR, 0x0038_0008_0000_0000),
        (MSR_LSTAR, 0xffff_8000_0020_1000),
        (MSR_SFMASK, 0x4_4700),
        (MSR_GS_BASE, 0xffff_8000_0000_1000),
        (MSR_KERNEL_GS_BASE, 0x7000_0000),
    ];
    for (msr, v) in values {
        assert_eq!(wrmsr(&mut t, msr, v), Outcome::Resume);
    }
    for (msr, v) in values {
        assert_eq!(rdmsr(&mut t, msr), v, "MSR {msr:#x}");
    }
    // None of them is a request: they live in the vCPU.
    assert!(t.be.calls.is_empty());
    assert_eq!(t.run(Kind::Swapgs, &[0x0f, 0x01, 0xf8]), Outcome::Resume);
    assert_eq!(rdmsr(&mut t, MSR_GS_BASE), 0x7000_0000);
    assert_eq!(rdmsr(&mut t, MSR_KERNEL_GS_BASE), 0xffff_8000_0000_1000);
    assert_eq!(t.regs.rip, AT + u64::from(Kind::Swapgs.default_site_size()));
}

#[test]
fn non_canonical_bases_and_reserved_sfmask_bits_are_gp() {
    for (msr, v) in [
        (MSR_LSTAR, 0x0000_8000_0000_0000u64),
        (MSR_GS_BASE, 0x1234_0000_0000_0000),
        (MSR_KERNEL_GS_BASE, 0x0000_8000_0000_0000),
        (MSR_SFMASK, 1 << 32),
    ] {
        let mut t = t();
        let before = (
            t.vcpu.lstar,
            t.vcpu.gs_base,
            t.vcpu.kernel_gs_base,
            t.vcpu.sfmask,
        );
        assert_eq!(
            wrmsr(&mut t, msr, v),
            Outcome::Delivered(13),
            "MSR {msr:#x}"
        );
        let after = (
            t.vcpu.lstar,
            t.vcpu.gs_base,
            t.vcpu.kernel_gs_base,
            t.vcpu.sfmask,
        );
        assert_eq!(before, after, "MSR {msr:#x} unchanged");
    }
}

#[test]
fn iretq_to_cpl_3_enters_user_mode_with_the_frame_s_state() {
    let mut t = t();
    t.regs.set_rsp(0x7000);
    // An iretq frame to CPL 3: rip, cs 0x4b, rflags, rsp, ss 0x43.
    for (i, v) in [0x1_0000_0000u64, 0x4b, 0x202, 0x7800, 0x43]
        .iter()
        .enumerate()
    {
        t.mem
            .bytes_mut(0x7000 + 8 * i as u64, 8)
            .copy_from_slice(&v.to_le_bytes());
    }
    let s = site(Kind::Iret, &[0x48, 0xcf]);
    assert_eq!(t.run_site(&s, &[0x48, 0xcf]), Ok(Outcome::EnterUser));
    assert_eq!((t.regs.rip, t.regs.rsp()), (0x1_0000_0000, 0x7800));
    assert!(t.vcpu.interrupts_enabled());
    assert_eq!(
        (t.vcpu.seg(SegReg::Cs), t.vcpu.seg(SegReg::Ss)),
        (0x4b, 0x43)
    );
    assert!(
        t.be.calls.is_empty(),
        "the caller switches views, not the emulator"
    );
}

#[test]
fn iretq_to_cpl_3_with_an_interrupt_pending_delivers_it_from_cpl_3() {
    let mut t = t();
    // A TSS whose RSP0 is 0x9000 (GDT at 0x3000, TR 0x18, TSS at 0x3100).
    t.vcpu.gdtr_base = 0x3000;
    t.vcpu.gdtr_limit = 0x3f;
    t.vcpu.tr = 0x18;
    let d = t.mem.bytes_mut(0x3018, 16);
    d[0] = 0x67;
    d[3] = 0x31;
    d[5] = 0x89;
    t.mem
        .bytes_mut(0x3100 + 4, 8)
        .copy_from_slice(&0x9000u64.to_le_bytes());
    t.regs.set_rsp(0x7000);
    for (i, v) in [0x1_0000_0000u64, 0x4b, 0x202, 0x7800, 0x43]
        .iter()
        .enumerate()
    {
        t.mem
            .bytes_mut(0x7000 + 8 * i as u64, 8)
            .copy_from_slice(&v.to_le_bytes());
    }
    t.vcpu.raise(0x20);
    let s = site(Kind::Iret, &[0x48, 0xcf]);
    assert_eq!(t.run_site(&s, &[0x48, 0xcf]), Ok(Outcome::Delivered(0x20)));
    // The frame on RSP0's stack returns to the process.
    assert_eq!(
        t.mem.qwords(t.regs.rsp(), 5),
        vec![0x1_0000_0000, 0x4b, 0x202, 0x7800, 0x43]
    );
    assert_eq!(t.regs.rsp(), 0x9000 - 40);
    assert_eq!(t.vcpu.seg(SegReg::Cs) & 3, 0);
}

#[test]
fn sysretq_enters_user_mode_with_star_s_selectors() {
    let mut t = t();
    t.vcpu.star = 0x0038_0008u64 << 32;
    t.regs.set(reg::RCX, 0x1_0000_0042);
    t.regs.set(reg::R11, 0x202 | FLAG_CF);
    t.regs.set_rsp(0x7800);
    let s = site(Kind::Sysret, &[0x48, 0x0f, 0x07]);
    assert_eq!(t.run_site(&s, &[0x48, 0x0f, 0x07]), Ok(Outcome::EnterUser));
    assert_eq!(t.regs.rip, 0x1_0000_0042);
    assert_eq!(t.regs.rsp(), 0x7800, "sysret keeps rsp");
    assert_eq!(t.regs.rflags & FLAG_CF, FLAG_CF);
    assert!(t.vcpu.interrupts_enabled());
    assert_eq!(
        (t.vcpu.seg(SegReg::Cs), t.vcpu.seg(SegReg::Ss)),
        (0x4b, 0x43)
    );
}

#[test]
fn a_process_s_syscall_enters_lstar_as_the_instruction_does() {
    let mut t = t();
    t.vcpu.star = 0x0038_0008u64 << 32;
    t.vcpu.lstar = 0xffff_8000_0010_0000;
    // IF TF DF NT AC, as the test kernel's SFMASK.
    t.vcpu.sfmask = 0x4_7700;
    t.vcpu.efer |= EFER_SCE;
    t.vcpu.set_seg(SegReg::Cs, 0x4b);
    t.vcpu.set_seg(SegReg::Ss, 0x43);
    t.vcpu.set_interrupts_enabled(true);
    t.regs.rflags = 0x202 | FLAG_CF | (1 << 10);
    t.regs.set_rsp(0x7800);
    let out = enter_syscall(0x1_0000_0044, &mut t.vcpu, &mut t.regs, &mut t.mem);
    assert_eq!(out, Ok(Outcome::Resume));
    assert_eq!(t.regs.rip, 0xffff_8000_0010_0000);
    assert_eq!(t.regs.get(reg::RCX), 0x1_0000_0044);
    assert_eq!(t.regs.get(reg::R11), 0x202 | FLAG_CF | (1 << 10));
    assert!(!t.vcpu.interrupts_enabled(), "SFMASK clears IF");
    assert_eq!(t.regs.rflags & (1 << 10), 0, "and DF");
    assert_eq!(t.regs.rflags & FLAG_CF, FLAG_CF);
    assert_eq!(t.regs.rsp(), 0x7800, "syscall keeps rsp");
    assert_eq!(
        (t.vcpu.seg(SegReg::Cs), t.vcpu.seg(SegReg::Ss)),
        (0x08, 0x10)
    );
}

#[test]
fn a_syscall_without_efer_sce_is_ud_at_the_instruction() {
    let mut t = t();
    t.vcpu.efer &= !EFER_SCE;
    let out = enter_syscall(0x4_0002, &mut t.vcpu, &mut t.regs, &mut t.mem);
    assert_eq!(out, Ok(Outcome::Delivered(6)));
    assert_eq!(t.mem.qwords(t.regs.rsp(), 1), vec![0x4_0000]);
}

#[test]
fn cpuid_is_masked() {
    let mut t = t();
    t.regs.set(reg::RAX, 1);
    t.regs.set(reg::RCX, 0);
    t.run(Kind::Cpuid, &[0x0f, 0xa2]);
    assert_eq!(t.be.calls, vec![Call::Cpuid(1, 0)]);
    let ecx = t.regs.get(reg::RCX);
    assert_eq!(ecx & (1 << 21), 0, "no x2APIC");
    assert_eq!(ecx & (1 << 31), 1 << 31, "hypervisor bit");
    assert_eq!(t.regs.get(reg::RAX), 1);
}

#[test]
fn int_0x80_builds_a_trap_frame() {
    let mut t = t();
    t.vcpu.set_interrupts_enabled(true);
    assert_eq!(t.run(Kind::Int, &[0xcd, 0x80]), Outcome::Delivered(0x80));
    assert_eq!(t.regs.rip, handler(0x80));
    assert_eq!(t.regs.rsp(), 0x8000 - 40);
    assert_eq!(
        t.mem.qwords(t.regs.rsp(), 5),
        vec![AT + 8, 8, 0x202, 0x8000, 0x10]
    );
    assert!(!t.vcpu.interrupts_enabled());
}

#[test]
fn int3_returns_past_the_site_and_ud2_to_it() {
    let mut t = t();
    t.vcpu.set_interrupts_enabled(true);
    assert_eq!(t.run(Kind::Int3, &[0xcc]), Outcome::Delivered(3));
    assert_eq!(t.mem.qwords(t.regs.rsp(), 1), vec![AT + 8]);
    assert!(t.vcpu.interrupts_enabled(), "vector 3 is a trap gate");
    assert_eq!(t.run(Kind::Ud2, &[0x0f, 0x0b]), Outcome::Delivered(6));
    assert_eq!(t.mem.qwords(t.regs.rsp(), 1), vec![AT]);
}

#[test]
fn undeliverable_exception_escalates_to_double_fault_then_shutdown() {
    let mut t = t();
    t.mem.bytes_mut(crate::testutil::IDT + 16 * 0x80 + 5, 1)[0] = 0;
    assert_eq!(t.run(Kind::Int, &[0xcd, 0x80]), Outcome::Delivered(8));
    t.vcpu.idtr_limit = 0;
    assert!(matches!(
        t.run_site(&site(Kind::Int, &[0xcd, 0x80]), &[0xcd, 0x80]),
        Err(EmulateError::TripleFault(_))
    ));
    assert_eq!(
        t.be.calls,
        vec![Call::Shutdown(ShutdownReason::TripleFault)]
    );
}

#[test]
fn rdtsc_and_bad_input() {
    let mut t = t();
    t.run(Kind::Rdtsc, &[0x0f, 0x31]);
    assert_eq!(t.regs.get(reg::RDX), 0x1234_5678);
    let s = site(Kind::Cli, &[0xfa]);
    assert_eq!(
        t.run_site(&s, &[]),
        Err(EmulateError::BytesTooShort { have: 0, need: 1 })
    );
    assert!(matches!(
        t.run_site(&s, &[0xfb]),
        Err(EmulateError::Decode(_))
    ));
    let s32 = Site {
        flags: afterburn_format::FLAG_CODE32,
        ..s
    };
    assert_eq!(t.run_site(&s32, &[0xfa]), Err(EmulateError::Not64Bit));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes at a site of a random kind never panic the decoder or
    /// the emulator (whatever they return).
    #[test]
    fn random_sites_never_panic(
        kind in 1u16..=60,
        bytes in proptest::collection::vec(any::<u8>(), 0..20),
        insn_len in 0u8..20,
        pair_len in 0u8..3,
        site_len in 0u8..40,
        flags in 0u16..16,
        gprs in proptest::array::uniform16(any::<u64>()),
        idtr_limit in any::<u16>(),
    ) {
        let kind = Kind::from_number(kind).unwrap();
        let _ = decode(kind, &bytes);
        let mut t = t();
        t.regs.gpr = gprs;
        // Keep string counts small: a huge rcx is correct but slow.
        t.regs.set(reg::RCX, gprs[1] & 0xff);
        t.regs.set_rsp(gprs[4] & 0xffff);
        t.vcpu.idtr_limit = idtr_limit;
        t.vcpu.set_interrupts_enabled(gprs[0] & 1 == 1);
        t.vcpu.raise(gprs[2] as u8);
        let s = Site { address: gprs[3], kind, flags, site_len, insn_len, pair_len };
        let _ = emulate(&s, &bytes, &mut t.vcpu, &mut t.regs, &mut t.mem, &mut t.be);
    }
}
