//! Classifies decoded machine instructions (iced-x86) into site kinds: the
//! binary-side twin of [`crate::sensitive`], used by the audit.

use crate::format::Kind;
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

fn register_operand(instr: &Instruction, i: u32) -> Option<Register> {
    (instr.op_kind(i) == OpKind::Register).then(|| instr.op_register(i))
}

/// The kind of a sensitive instruction, `None` for an innocuous one.
pub fn kind_of(instr: &Instruction) -> Option<Kind> {
    use Mnemonic as M;
    let kind = match instr.mnemonic() {
        M::Cli => Kind::Cli,
        M::Sti => Kind::Sti,
        M::Pushf | M::Pushfd | M::Pushfq => Kind::Pushf,
        M::Popf | M::Popfd | M::Popfq => Kind::Popf,
        M::Iret | M::Iretd | M::Iretq => Kind::Iret,
        M::Hlt => Kind::Hlt,
        M::In | M::Insb | M::Insw | M::Insd => Kind::PortIn,
        M::Out | M::Outsb | M::Outsw | M::Outsd => Kind::PortOut,
        M::Clts => Kind::Clts,
        M::Lmsw => Kind::Lmsw,
        M::Smsw => Kind::Smsw,
        M::Lgdt => Kind::Lgdt,
        M::Lidt => Kind::Lidt,
        M::Lldt => Kind::Lldt,
        M::Ltr => Kind::Ltr,
        M::Sgdt => Kind::Sgdt,
        M::Sidt => Kind::Sidt,
        M::Sldt => Kind::Sldt,
        M::Str => Kind::Str,
        M::Invlpg => Kind::Invlpg,
        M::Invpcid => Kind::Invpcid,
        M::Invd => Kind::Invd,
        M::Wbinvd => Kind::Wbinvd,
        M::Rdmsr => Kind::Rdmsr,
        M::Wrmsr => Kind::Wrmsr,
        M::Swapgs => Kind::Swapgs,
        M::Sysret | M::Sysretq => Kind::Sysret,
        M::Sysexit | M::Sysexitq => Kind::Sysexit,
        M::Rdpmc => Kind::Rdpmc,
        M::Xsetbv => Kind::Xsetbv,
        M::Monitor | M::Monitorx => Kind::Monitor,
        M::Mwait | M::Mwaitx => Kind::Mwait,
        M::Rsm => Kind::Rsm,
        M::Lar => Kind::Lar,
        M::Lsl => Kind::Lsl,
        M::Verr => Kind::Verr,
        M::Verw => Kind::Verw,
        M::Cpuid => Kind::Cpuid,
        M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => Kind::LoadFarPointer,
        M::Retf => Kind::FarRet,
        M::Int => Kind::Int,
        M::Int3 => Kind::Int3,
        M::Into => Kind::Into,
        M::Ud2 => Kind::Ud2,
        M::Wrfsbase | M::Wrgsbase => Kind::WrSegBase,
        M::Rdfsbase | M::Rdgsbase => Kind::RdSegBase,
        M::Rdtsc => Kind::Rdtsc,
        M::Rdtscp => Kind::Rdtscp,
        M::Stac | M::Clac => Kind::AlignmentCheck,
        M::Xsaves | M::Xsaves64 | M::Xrstors | M::Xrstors64 => Kind::SupervisorState,
        M::Push => return is_segment(register_operand(instr, 0)).then_some(Kind::PushSeg),
        M::Pop => return is_segment(register_operand(instr, 0)).then_some(Kind::PopSeg),
        M::Mov => {
            let dst = register_operand(instr, 0);
            let src = register_operand(instr, 1);
            return if dst.is_some_and(Register::is_cr) {
                Some(Kind::MovToCr)
            } else if src.is_some_and(Register::is_cr) {
                Some(Kind::MovFromCr)
            } else if dst.is_some_and(Register::is_dr) {
                Some(Kind::MovToDr)
            } else if src.is_some_and(Register::is_dr) {
                Some(Kind::MovFromDr)
            } else if is_segment(dst) {
                Some(Kind::MovToSeg)
            } else if is_segment(src) {
                Some(Kind::MovFromSeg)
            } else {
                None
            };
        }
        M::Jmp if instr.is_jmp_far() || instr.is_jmp_far_indirect() => Kind::FarJmp,
        M::Call if instr.is_call_far() || instr.is_call_far_indirect() => Kind::FarCall,
        _ => return None,
    };
    Some(kind)
}

fn is_segment(r: Option<Register>) -> bool {
    r.is_some_and(Register::is_segment_register)
}

/// True for the NOP forms `.nops` emits (and any other NOP).
pub fn is_padding(instr: &Instruction) -> bool {
    match instr.mnemonic() {
        Mnemonic::Nop => true,
        // 16-bit code pads with `lea 0(%si),%si`-style no-ops.
        Mnemonic::Lea => {
            instr.op_count() == 2
                && instr.op_kind(1) == OpKind::Memory
                && instr.memory_index() == Register::None
                && instr.memory_displacement64() == 0
                && instr.memory_base() == instr.op0_register()
        }
        _ => false,
    }
}

/// True if the instruction reads or writes memory through an explicit `%gs:`
/// override, which the seL4 backend cannot honour (seL4 owns GS base).
pub fn uses_gs_memory(instr: &Instruction) -> bool {
    instr.segment_prefix() == Register::GS
        && (0..instr.op_count()).any(|i| {
            matches!(
                instr.op_kind(i),
                OpKind::Memory
                    | OpKind::MemorySegSI
                    | OpKind::MemorySegESI
                    | OpKind::MemorySegRSI
                    | OpKind::MemorySegDI
                    | OpKind::MemorySegEDI
                    | OpKind::MemorySegRDI
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn first(bytes: &[u8], bitness: u32) -> Instruction {
        Decoder::with_ip(bitness, bytes, 0, DecoderOptions::NONE).decode()
    }

    #[test]
    fn classifies_machine_code() {
        let cases: &[(&[u8], u32, Option<Kind>)] = &[
            (&[0xfa], 64, Some(Kind::Cli)),
            (&[0x0f, 0x22, 0xd8], 64, Some(Kind::MovToCr)),
            (&[0x0f, 0x20, 0xd8], 64, Some(Kind::MovFromCr)),
            (&[0x0f, 0x23, 0xf8], 64, Some(Kind::MovToDr)),
            (&[0x8e, 0xd8], 64, Some(Kind::MovToSeg)),
            (&[0x8c, 0xc8], 64, Some(Kind::MovFromSeg)),
            (&[0x0f, 0xa0], 64, Some(Kind::PushSeg)),
            (&[0x1f], 32, Some(Kind::PopSeg)),
            (&[0xea, 0, 0, 0, 0, 8, 0], 32, Some(Kind::FarJmp)),
            (&[0xff, 0x28], 64, Some(Kind::FarJmp)),
            (&[0xff, 0x18], 64, Some(Kind::FarCall)),
            (&[0x48, 0xcb], 64, Some(Kind::FarRet)),
            (&[0xcd, 0x80], 64, Some(Kind::Int)),
            (&[0x0f, 0x31], 64, Some(Kind::Rdtsc)),
            (&[0xf3, 0x6e], 64, Some(Kind::PortOut)),
            (&[0x48, 0x89, 0xc3], 64, None),
            (&[0xff, 0xe0], 64, None),
            (&[0x50], 64, None),
        ];
        for (bytes, bits, kind) in cases {
            assert_eq!(kind_of(&first(bytes, *bits)), *kind, "{bytes:x?}");
        }
    }

    #[test]
    fn padding_and_gs() {
        assert!(is_padding(&first(
            &[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0],
            64
        )));
        assert!(is_padding(&first(&[0x90], 64)));
        assert!(!is_padding(&first(&[0xfa], 64)));
        assert!(uses_gs_memory(&first(
            &[0x65, 0x48, 0x8b, 0x04, 0x25, 0x10, 0, 0, 0],
            64
        )));
        assert!(!uses_gs_memory(&first(
            &[0x64, 0x48, 0x8b, 0x04, 0x25, 0x10, 0, 0, 0],
            64
        )));
    }
}
