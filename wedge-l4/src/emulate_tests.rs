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

/// The exception frame at rsp: the error code and the rip it returns to.
fn error_and_rip(t: &T) -> Vec<u64> {
    t.mem.qwords(t.regs.rsp(), 2)
}

#[test]
fn debug_registers_are_a_register_file() {
    let mut t = t();
    // mov %rdx,%dr7; mov %dr7,%rax; mov %dr2,%r8 (Linux's forms)
    t.regs.set(reg::RDX, 0x000d_0001);
    assert_eq!(t.run(Kind::MovToDr, &[0x0f, 0x23, 0xfa]), Outcome::Resume);
    assert_eq!(t.vcpu.dr7, 0x000d_0401);
    t.run(Kind::MovFromDr, &[0x0f, 0x21, 0xf8]);
    assert_eq!(t.regs.get(reg::RAX), 0x000d_0401);
    t.vcpu.dr[2] = 0xffff_ffff_8100_1000;
    t.run(Kind::MovFromDr, &[0x41, 0x0f, 0x21, 0xd0]);
    assert_eq!(t.regs.get(8), 0xffff_ffff_8100_1000);
    // mov %dr6,%rax after reset: the fixed ones.
    t.run(Kind::MovFromDr, &[0x0f, 0x21, 0xf0]);
    assert_eq!(t.regs.get(reg::RAX), 0xffff_0ff0);
    assert_eq!(t.regs.rip, AT + 16);
    assert!(t.be.calls.is_empty(), "no request: they live in the vCPU");
    // A 1 in DR7's upper half is #GP(0) at the site, nothing changed.
    t.regs.set(reg::RDX, 1 << 32);
    assert_eq!(
        t.run(Kind::MovToDr, &[0x0f, 0x23, 0xfa]),
        Outcome::Delivered(13)
    );
    assert_eq!(error_and_rip(&t), vec![0, AT]);
    assert_eq!(t.vcpu.dr7, 0x000d_0401);
    // DR4 with CR4.DE, and DR8 (REX.R), are #UD.
    t.vcpu.cr4 |= debug_registers::CR4_DE;
    assert_eq!(
        t.run(Kind::MovFromDr, &[0x0f, 0x21, 0xe0]),
        Outcome::Delivered(6)
    );
    assert_eq!(
        t.run(Kind::MovToDr, &[0x44, 0x0f, 0x23, 0xc0]),
        Outcome::Delivered(6)
    );
}

#[test]
fn linuxs_msrs_live_in_the_vcpu_and_rdtscp_returns_tsc_aux() {
    let mut t = t();
    let values = [
        (msr::MSR_CSTAR, 0xffff_ffff_8120_1380),
        (msr::MSR_TSC_AUX, 0x1003),
        (msr::MSR_SYSENTER_CS, 0x10),
        (msr::MSR_SYSENTER_ESP, 0xffff_fe00_0000_6000),
        (msr::MSR_SYSENTER_EIP, 0xffff_ffff_8120_1500),
        (msr::MSR_PAT, 0x0407_0506_0007_0406),
        (msr::MSR_MISC_ENABLE, 0x0085_0089),
        (msr::MSR_DEBUGCTL, 0x2),
    ];
    for (m, v) in values {
        assert_eq!(wrmsr(&mut t, m, v), Outcome::Resume, "MSR {m:#x}");
    }
    for (m, v) in values {
        assert_eq!(rdmsr(&mut t, m), v, "MSR {m:#x}");
    }
    assert!(t.be.calls.is_empty());
    t.regs.set(reg::RCX, u64::MAX);
    assert_eq!(t.run(Kind::Rdtscp, &[0x0f, 0x01, 0xf9]), Outcome::Resume);
    assert_eq!(t.be.calls, vec![Call::Rdtsc]);
    assert_eq!(
        (
            t.regs.get(reg::RDX),
            t.regs.get(reg::RAX),
            t.regs.get(reg::RCX)
        ),
        (0x1234_5678, 0x9abc_def0, 0x1003)
    );
}

#[test]
fn msr_values_hardware_refuses_and_unknown_msrs_are_gp_at_the_site() {
    for (m, v) in [
        (msr::MSR_PAT, 0x0007_0406_0007_0402u64),
        (msr::MSR_TSC_AUX, 1 << 32),
        (msr::MSR_DEBUGCTL, 1 << 2),
        (MSR_EFER, EFER_SCE),
        // Performance counters, APIC base, TSC_DEADLINE: not on this CPU.
        (0xc1, 0),
        (0x1b, 0xfee0_0900),
        (0x6e0, 1),
    ] {
        let mut t = t();
        let before = (t.vcpu.pat, t.vcpu.tsc_aux, t.vcpu.debugctl, t.vcpu.efer);
        assert_eq!(wrmsr(&mut t, m, v), Outcome::Delivered(13), "MSR {m:#x}");
        assert_eq!(error_and_rip(&t), vec![0, AT]);
        let after = (t.vcpu.pat, t.vcpu.tsc_aux, t.vcpu.debugctl, t.vcpu.efer);
        assert_eq!(before, after, "MSR {m:#x}");
    }
}

#[test]
fn rdpmc_is_gp_and_xsetbv_mwait_and_fs_gs_base_are_ud() {
    let mut t = t();
    assert_eq!(t.run(Kind::Rdpmc, &[0x0f, 0x33]), Outcome::Delivered(13));
    assert_eq!(error_and_rip(&t), vec![0, AT]);
    let ud: [(Kind, &[u8]); 5] = [
        (Kind::Xsetbv, &[0x0f, 0x01, 0xd1]),
        (Kind::Mwait, &[0x0f, 0x01, 0xc9]),
        (Kind::WrSegBase, &[0xf3, 0x48, 0x0f, 0xae, 0xd8]), // wrgsbase %rax
        (Kind::RdSegBase, &[0xf3, 0x48, 0x0f, 0xae, 0xc0]), // rdfsbase %rax
        (Kind::RdSegBase, &[0xf3, 0x0f, 0xae, 0xcb]),       // rdgsbase %ebx
    ];
    for (kind, bytes) in ud {
        let mut t = self::t();
        let fs = t.vcpu.fs_base;
        assert_eq!(t.run(kind, bytes), Outcome::Delivered(6), "{bytes:02x?}");
        assert_eq!(
            t.mem.qwords(t.regs.rsp(), 1),
            vec![AT],
            "a fault: at the site"
        );
        assert_eq!(t.vcpu.fs_base, fs);
    }
}

#[test]
fn invpcid_flushes_as_a_cr3_load_or_invlpg_does() {
    // invpcid (%rsp),%rax
    let insn = [0x66, 0x0f, 0x38, 0x82, 0x04, 0x24];
    let run = |kind: u64, pcid: u64, address: u64| {
        let mut t = t();
        t.regs.set_rsp(0x7000);
        t.mem
            .bytes_mut(0x7000, 8)
            .copy_from_slice(&pcid.to_le_bytes());
        t.mem
            .bytes_mut(0x7008, 8)
            .copy_from_slice(&address.to_le_bytes());
        t.regs.set(reg::RAX, kind);
        let out = t.run(Kind::Invpcid, &insn);
        (out, t.be.calls)
    };
    let a = 0xffff_ffff_8100_0000;
    assert_eq!(run(0, 0, a), (Outcome::Resume, vec![Call::Invlpg(a)]));
    for kind in 1..=3 {
        assert_eq!(
            run(kind, 0, a),
            (Outcome::Resume, vec![Call::LoadCr3(0x5000)])
        );
    }
    // PCIDs are off: only PCID 0 names a context; types 2 and 3 ignore it.
    assert_eq!(run(2, 5, 0), (Outcome::Resume, vec![Call::LoadCr3(0x5000)]));
    for (kind, pcid, address) in [
        (4, 0, a),
        (0, 1, a),
        (1, 1, a),
        (0, 0, 1 << 47),
        (2, 1 << 12, 0),
    ] {
        assert_eq!(
            run(kind, pcid, address),
            (Outcome::Delivered(13), vec![]),
            "{kind} {pcid:#x} {address:#x}"
        );
    }
}

/// A GDT at 0x3000 with Linux's boot descriptors: 0x10 kernel code
/// (64-bit), 0x18 kernel data, 0x20 32-bit kernel code, 0x28 a 64-bit
/// code segment not present, 0x33 user code (DPL 3).
fn linux_gdt(t: &mut T) {
    t.vcpu.gdtr_base = 0x3000;
    t.vcpu.gdtr_limit = 0x3f;
    for (sel, d) in [
        (0x10u64, 0x00af_9b00_0000_ffffu64),
        (0x18, 0x00cf_9300_0000_ffff),
        (0x20, 0x00cf_9b00_0000_ffff),
        (0x28, 0x00af_1b00_0000_ffff),
        (0x30, 0x00af_fb00_0000_ffff),
    ] {
        t.mem
            .bytes_mut(0x3000 + sel, 8)
            .copy_from_slice(&d.to_le_bytes());
    }
}

const FLAG_ZF: u64 = 1 << 6;

#[test]
fn lar_lsl_verr_verw_read_the_virtual_gdt() {
    let mut t = t();
    linux_gdt(&mut t);
    // lar 0xa0(%rdi),%eax (Linux's force_valid_ss)
    t.regs.set(reg::RDI, 0x6000);
    t.mem
        .bytes_mut(0x60a0, 2)
        .copy_from_slice(&0x18u16.to_le_bytes());
    t.regs.set(reg::RAX, u64::MAX);
    t.run(Kind::Lar, &[0x0f, 0x02, 0x87, 0xa0, 0, 0, 0]);
    assert_eq!(t.regs.get(reg::RAX), 0x00c0_9300);
    assert_ne!(t.regs.rflags & FLAG_ZF, 0);
    // The null selector: ZF clear, the destination kept.
    t.mem
        .bytes_mut(0x60a0, 2)
        .copy_from_slice(&0u16.to_le_bytes());
    t.run(Kind::Lar, &[0x0f, 0x02, 0x87, 0xa0, 0, 0, 0]);
    assert_eq!(
        (t.regs.get(reg::RAX), t.regs.rflags & FLAG_ZF),
        (0x00c0_9300, 0)
    );
    // lsl %eax,%ecx with 0x10: 4 GiB - 1.
    t.regs.set(reg::RAX, 0x10);
    t.run(Kind::Lsl, &[0x0f, 0x03, 0xc8]);
    assert_eq!(t.regs.get(reg::RCX), 0xffff_ffff);
    assert_ne!(t.regs.rflags & FLAG_ZF, 0);
    // verw of __KERNEL_DS in memory, RIP-relative (the MDS clear): ZF set.
    let verw = [0x0f, 0x00, 0x2d, 0x00, 0x10, 0, 0];
    let s = Site {
        address: 0x2000,
        ..site(Kind::Verw, &verw)
    };
    t.mem
        .bytes_mut(0x2007 + 0x1000, 2)
        .copy_from_slice(&0x18u16.to_le_bytes());
    t.regs.rflags &= !FLAG_ZF;
    assert_eq!(t.run_site(&s, &verw), Ok(Outcome::Resume));
    assert_ne!(t.regs.rflags & FLAG_ZF, 0);
    assert_eq!(t.regs.rip, 0x2010);
    // verw of code, verr of code and of data: ZF says.
    for (kind, bytes, sel, zf) in [
        (Kind::Verw, [0x0f, 0x00, 0xe8], 0x10u64, false), // verw %ax
        (Kind::Verr, [0x0f, 0x00, 0xe0], 0x10, true),     // verr %ax
        (Kind::Verr, [0x0f, 0x00, 0xe0], 0x18, true),
        (Kind::Verr, [0x0f, 0x00, 0xe0], 0x40, false), // past the limit
    ] {
        t.regs.set(reg::RAX, sel);
        t.regs.rflags ^= FLAG_ZF;
        t.run(kind, &bytes);
        assert_eq!(t.regs.rflags & FLAG_ZF != 0, zf, "{kind:?} {sel:#x}");
    }
    assert!(t.be.calls.is_empty());
}

#[test]
fn push_and_pop_of_fs_and_gs() {
    let mut t = t();
    t.vcpu.set_seg(SegReg::Fs, 0x2b);
    t.run(Kind::PushSeg, &[0x0f, 0xa0]); // push %fs
    assert_eq!(
        (t.regs.rsp(), t.mem.qwords(0x7ff8, 1)),
        (0x7ff8, vec![0x2b])
    );
    t.run(Kind::PopSeg, &[0x0f, 0xa9]); // pop %gs
    assert_eq!((t.regs.rsp(), t.vcpu.seg(SegReg::Gs)), (0x8000, 0x2b));
    t.vcpu.set_seg(SegReg::Gs, 0x18);
    t.run(Kind::PushSeg, &[0x66, 0x0f, 0xa8]); // pushw %gs
    assert_eq!(t.regs.rsp(), 0x7ffe);
    t.run(Kind::PopSeg, &[0x66, 0x0f, 0xa1]); // popw %fs
    assert_eq!((t.regs.rsp(), t.vcpu.seg(SegReg::Fs)), (0x8000, 0x18));
}

#[test]
fn far_jumps_and_calls_enter_64_bit_code_only() {
    // ljmp *0x18(%rax): a 4-byte offset and a selector at rax + 0x18.
    let ljmp = [0xff, 0x68, 0x18];
    let jump = |sel: u16| {
        let mut t = t();
        linux_gdt(&mut t);
        t.regs.set(reg::RAX, 0x6000);
        t.mem
            .bytes_mut(0x6018, 4)
            .copy_from_slice(&0x1234_5678u32.to_le_bytes());
        t.mem
            .bytes_mut(0x601c, 2)
            .copy_from_slice(&sel.to_le_bytes());
        let out = t.run_site(&site(Kind::FarJmp, &ljmp), &ljmp);
        (out, t)
    };
    let (out, j) = jump(0x10);
    assert_eq!(out, Ok(Outcome::Resume));
    assert_eq!((j.regs.rip, j.vcpu.seg(SegReg::Cs)), (0x1234_5678, 0x10));
    // 32-bit code (Linux's real-mode reboot trampoline): the wedge stops.
    assert_eq!(
        jump(0x20).0,
        Err(EmulateError::LeavesLongMode { selector: 0x20 })
    );
    // Data, user code from CPL 0, past the limit: #GP(sel); not present:
    // #NP(sel); null: #GP(0).
    for (sel, vector, error) in [
        (0x18, 13, 0x18),
        (0x33, 13, 0x30),
        (0x40, 13, 0x40),
        (0x28, 11, 0x28),
        (0, 13, 0),
    ] {
        let (out, j) = jump(sel);
        assert_eq!(out, Ok(Outcome::Delivered(vector)), "{sel:#x}");
        assert_eq!(error_and_rip(&j), vec![error, AT], "{sel:#x}");
    }
    // lcall *(%rsp) with REX.W: an 8-byte offset; CS and the return
    // address (the site's end) pushed as 8 bytes each.
    let mut t = t();
    linux_gdt(&mut t);
    t.regs.set_rsp(0x7000);
    t.mem
        .bytes_mut(0x7000, 8)
        .copy_from_slice(&0xffff_ffff_8100_0200u64.to_le_bytes());
    t.mem
        .bytes_mut(0x7008, 2)
        .copy_from_slice(&0x10u16.to_le_bytes());
    let lcall = [0x48, 0xff, 0x1c, 0x24];
    assert_eq!(t.run(Kind::FarCall, &lcall), Outcome::Resume);
    assert_eq!(t.regs.rip, 0xffff_ffff_8100_0200);
    assert_eq!(t.regs.rsp(), 0x7000 - 16);
    assert_eq!(t.mem.qwords(0x7000 - 16, 2), vec![AT + 16, 0x08]);
}

#[test]
fn cr4_takes_the_bits_linux_sets_and_refuses_missing_features() {
    let mut t = t();
    // PAE | PGE | OSFXSR | OSXMMEXCPT (and PSE, DE, TSD, MCE, PCE).
    let linux = 0x20 | 0x80 | 0x200 | 0x400 | 0x10 | 0x8 | 0x4 | 0x40 | 0x100;
    t.regs.set(reg::RAX, linux);
    assert_eq!(t.run(Kind::MovToCr, &[0x0f, 0x22, 0xe0]), Outcome::Resume);
    assert_eq!(
        (t.vcpu.cr4, t.be.calls.clone()),
        (linux, vec![Call::WriteCr4(linux)])
    );
    // FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP, LA57, UMIP; and PAE cleared.
    for bad in [
        1 << 16,
        1 << 17,
        1 << 18,
        1 << 20,
        1 << 21,
        1 << 12,
        1 << 11,
    ] {
        t.regs.set(reg::RAX, linux | bad);
        assert_eq!(
            t.run(Kind::MovToCr, &[0x0f, 0x22, 0xe0]),
            Outcome::Delivered(13),
            "{bad:#x}"
        );
    }
    t.regs.set(reg::RAX, linux & !0x20);
    assert_eq!(
        t.run(Kind::MovToCr, &[0x0f, 0x22, 0xe0]),
        Outcome::Delivered(13)
    );
    assert_eq!(
        (t.vcpu.cr4, t.be.calls.len()),
        (linux, 1),
        "nothing changed"
    );
}

#[test]
fn sti_cli_and_ss_loads_are_pairs_the_wedge_runs() {
    let mut t = t();
    t.vcpu.raise(0x30);
    let s = Site {
        flags: FLAG_SHADOW_PAIR,
        pair_len: 1,
        ..site(Kind::Sti, &[0xfb])
    };
    // Nothing is delivered in the shadow: the pair is a cli.
    assert_eq!(t.run_site(&s, &[0xfb, 0xfa]), Ok(Outcome::Resume));
    assert!(!t.vcpu.interrupts_enabled());
    assert_eq!(t.regs.rip, AT + 12);
    // mov %eax,%ss; mov %eax,%es (Linux's startup_64).
    let s = Site {
        flags: FLAG_SHADOW_PAIR,
        pair_len: 2,
        ..site(Kind::MovToSeg, &[0x8e, 0xd0])
    };
    t.regs.set(reg::RAX, 0x18);
    assert_eq!(
        t.run_site(&s, &[0x8e, 0xd0, 0x8e, 0xc0]),
        Ok(Outcome::Resume)
    );
    assert_eq!(
        (t.vcpu.seg(SegReg::Ss), t.vcpu.seg(SegReg::Es)),
        (0x18, 0x18)
    );
    assert_eq!(t.regs.rip, AT + 16);
    // What the wedge cannot run in a shadow is refused: an ordinary
    // instruction after sti (Linux's `sti; ret`), a non-segment load
    // after SS.
    assert!(!pair_supported(Insn::Sti, &[0xc3]));
    let ss = Insn::MovToSeg(SegReg::Ss, Operand::Reg(0));
    assert!(!pair_supported(ss, &[0x0f, 0x22, 0xd8]));
    assert!(
        !pair_supported(ss, &[0x8e, 0x05, 0, 0, 0, 0]),
        "mov 0(%rip),%es"
    );
    assert!(
        !pair_supported(ss, &[0x8e, 0xc0, 0x90]),
        "longer than the instruction"
    );
    assert!(pair_supported(ss, &[0x8e, 0xc0]));
    assert!(pair_supported(Insn::Sti, &[0xf4]));
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
