//! Delivering exceptions and virtual interrupts through the guest's virtual
//! IDT, the way a CPU does in 64-bit mode: read the gate, push the 64-bit
//! interrupt frame on the (16-byte aligned) guest stack, load CS:RIP, clear
//! virtual IF for interrupt gates.
//!
//! From virtual CPL 3 (a guest process, its CPL the RPL of the virtual CS)
//! the CPU switches to the stack in the TSS's RSP0 and loads SS with the
//! null selector; from CPL 0 the stack and SS are kept. A gate with an IST
//! index switches to that stack either way. Both stacks are read from the
//! TSS the virtual TR selects in the virtual GDT. `int $n` from CPL 3 must
//! also pass the gate's DPL ([`software_interrupt_allowed`]). (On seL4 the
//! wedge never delivers at CPL 3 yet: a return to CPL 3 stops the guest
//! until the VMM has guest-user views, docs/guest-processes.md.)

use crate::memory::{GuestMemory, GuestRegs, MemError};
use crate::vcpu::{SegReg, Vcpu, FLAG_NT, FLAG_RF, FLAG_TF, FLAG_VM};

/// Why a vector could not be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliverError {
    /// The gate lies beyond the IDT limit.
    OutsideIdt { vector: u8 },
    /// The gate's present bit is clear.
    NotPresent { vector: u8 },
    /// The gate is neither a 64-bit interrupt nor trap gate.
    BadGateType { vector: u8, type_byte: u8 },
    /// The gate asks for an IST stack but TR does not select a TSS
    /// descriptor inside the GDT.
    NoTss { vector: u8 },
    /// Reading the gate or writing the frame failed.
    Memory(MemError),
}

impl From<MemError> for DeliverError {
    fn from(e: MemError) -> Self {
        DeliverError::Memory(e)
    }
}

/// A decoded 64-bit IDT gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gate {
    offset: u64,
    selector: u16,
    /// Interrupt gate (clears IF) rather than trap gate.
    interrupt: bool,
    /// IST index (0: none).
    ist: u8,
    /// The privilege level `int $n` needs (DPL).
    dpl: u8,
}

fn read_gate(vector: u8, vcpu: &Vcpu, mem: &mut dyn GuestMemory) -> Result<Gate, DeliverError> {
    let at = u64::from(vector) * 16;
    if at + 15 > u64::from(vcpu.idtr_limit) {
        return Err(DeliverError::OutsideIdt { vector });
    }
    let mut g = [0u8; 16];
    mem.read(vcpu.idtr_base.wrapping_add(at), &mut g)?;
    let type_byte = g[5];
    if type_byte & 0x80 == 0 {
        return Err(DeliverError::NotPresent { vector });
    }
    let interrupt = match type_byte & 0x1f {
        0x0e => true,
        0x0f => false,
        _ => return Err(DeliverError::BadGateType { vector, type_byte }),
    };
    let offset = u64::from(u16::from_le_bytes([g[0], g[1]]))
        | u64::from(u16::from_le_bytes([g[6], g[7]])) << 16
        | u64::from(u32::from_le_bytes([g[8], g[9], g[10], g[11]])) << 32;
    Ok(Gate {
        offset,
        selector: u16::from_le_bytes([g[2], g[3]]),
        interrupt,
        ist: g[4] & 7,
        dpl: (type_byte >> 5) & 3,
    })
}

/// A stack pointer of the TSS that TR selects: RSP0 (`ist` 0) or IST entry
/// `ist` (1..7).
fn tss_stack(
    vector: u8,
    ist: u8,
    vcpu: &Vcpu,
    mem: &mut dyn GuestMemory,
) -> Result<u64, DeliverError> {
    let no_tss = DeliverError::NoTss { vector };
    let index = u64::from(vcpu.tr & !7);
    // A 64-bit TSS descriptor is 16 bytes; the null selector is no TSS.
    if index == 0 || index + 15 > u64::from(vcpu.gdtr_limit) {
        return Err(no_tss);
    }
    let mut d = [0u8; 16];
    mem.read(vcpu.gdtr_base.wrapping_add(index), &mut d)?;
    // Type 9 (available) or 0xB (busy) 64-bit TSS, present.
    if d[5] & 0x80 == 0 || d[5] & 0x1d != 0x09 {
        return Err(no_tss);
    }
    let base = u64::from(d[2])
        | u64::from(d[3]) << 8
        | u64::from(d[4]) << 16
        | u64::from(d[7]) << 24
        | u64::from(u32::from_le_bytes([d[8], d[9], d[10], d[11]])) << 32;
    // RSP0 is at offset 4 of the 64-bit TSS, IST1 at 0x24.
    let offset = if ist == 0 {
        4
    } else {
        0x24 + 8 * u64::from(ist - 1)
    };
    let mut b = [0u8; 8];
    mem.read(base.wrapping_add(offset), &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Whether `int $vector` at the current virtual CPL may use its gate: the
/// gate's DPL must be at least the CPL (else the CPU raises #GP with
/// error code `vector * 8 + 2`, which the caller delivers instead).
pub fn software_interrupt_allowed(
    vector: u8,
    vcpu: &Vcpu,
    mem: &mut dyn GuestMemory,
) -> Result<bool, DeliverError> {
    let gate = read_gate(vector, vcpu, mem)?;
    Ok(gate.dpl >= cpl(vcpu))
}

/// The virtual CPL: the RPL of the virtual CS.
fn cpl(vcpu: &Vcpu) -> u8 {
    (vcpu.seg(SegReg::Cs) & 3) as u8
}

/// Delivers `vector` to the guest: `regs.rip` must already be the address
/// the frame returns to (the faulting instruction for faults, the next one
/// for traps and interrupts). On error nothing has changed.
pub fn deliver(
    vector: u8,
    error_code: Option<u64>,
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut dyn GuestMemory,
) -> Result<(), DeliverError> {
    let gate = read_gate(vector, vcpu, mem)?;
    let old_rsp = regs.rsp();
    let from_user = cpl(vcpu) != 0;
    let stack = if gate.ist != 0 || from_user {
        tss_stack(vector, gate.ist, vcpu, mem)?
    } else {
        old_rsp
    };
    // Frame, from the lowest address: [error], rip, cs, rflags, rsp, ss.
    let mut frame = [0u64; 6];
    let mut n = 0;
    if let Some(e) = error_code {
        frame[n] = e;
        n += 1;
    }
    for v in [
        regs.rip,
        u64::from(vcpu.seg(SegReg::Cs)),
        vcpu.visible_rflags(regs.rflags),
        old_rsp,
        u64::from(vcpu.seg(SegReg::Ss)),
    ] {
        frame[n] = v;
        n += 1;
    }
    let mut bytes = [0u8; 48];
    for (i, v) in frame[..n].iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    // The CPU aligns the stack to 16 bytes before pushing in 64-bit mode.
    let new_rsp = (stack & !0xf).wrapping_sub(8 * n as u64);
    mem.write(new_rsp, &bytes[..n * 8])?;
    regs.set_rsp(new_rsp);
    regs.rip = gate.offset;
    regs.rflags &= !(FLAG_TF | FLAG_NT | FLAG_RF | FLAG_VM);
    vcpu.set_seg(SegReg::Cs, gate.selector);
    if from_user {
        // A privilege change in 64-bit mode loads SS with the null selector.
        vcpu.set_seg(SegReg::Ss, 0);
    }
    if gate.interrupt {
        vcpu.set_interrupts_enabled(false);
    }
    Ok(())
}

/// Delivers the highest pending virtual interrupt if virtual IF is set;
/// returns its vector. `regs.rip` is where the interrupted code resumes.
pub fn deliver_pending(
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut dyn GuestMemory,
) -> Result<Option<u8>, DeliverError> {
    if !vcpu.interrupts_enabled() {
        return Ok(None);
    }
    let Some(vector) = vcpu.highest_pending() else {
        return Ok(None);
    };
    deliver(vector, None, vcpu, regs, mem)?;
    // Cleared only once delivered, so a failed delivery leaves it pending.
    vcpu.take(vector);
    Ok(Some(vector))
}

/// True for the exceptions that push an error code.
pub fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{guest, IDT};
    use crate::vcpu::FLAG_IF;

    #[test]
    fn frame_layout_with_error_code() {
        let (mut vcpu, mut regs, mut mem) = guest();
        regs.rip = 0x4242;
        regs.set_rsp(0x8008); // not 16-aligned: the frame starts at 0x8000
        regs.rflags = 0x2 | FLAG_TF | 0x1;
        vcpu.set_interrupts_enabled(true);
        deliver(14, Some(0x6), &mut vcpu, &mut regs, &mut mem).unwrap();
        assert_eq!(regs.rsp(), 0x8000 - 48);
        assert_eq!(
            mem.qwords(regs.rsp(), 6),
            vec![
                0x6,
                0x4242,
                0x08,
                0x2 | FLAG_TF | 0x1 | FLAG_IF,
                0x8008,
                0x10
            ]
        );
        assert_eq!(regs.rip, crate::testutil::handler(14));
        assert_eq!(regs.rflags & FLAG_TF, 0);
        assert!(!vcpu.interrupts_enabled(), "interrupt gate clears IF");
    }

    #[test]
    fn bad_gates_are_errors_and_change_nothing() {
        let (mut vcpu, mut regs, mut mem) = guest();
        regs.set_rsp(0x8000);
        let before = regs;
        mem.bytes_mut(IDT + 16 * 5 + 5, 1)[0] = 0x0e; // not present
        assert_eq!(
            deliver(5, None, &mut vcpu, &mut regs, &mut mem),
            Err(DeliverError::NotPresent { vector: 5 })
        );
        mem.bytes_mut(IDT + 16 * 5 + 5, 1)[0] = 0x8c; // call gate
        assert!(matches!(
            deliver(5, None, &mut vcpu, &mut regs, &mut mem),
            Err(DeliverError::BadGateType { vector: 5, .. })
        ));
        vcpu.idtr_limit = 16 * 5 - 1;
        assert_eq!(
            deliver(5, None, &mut vcpu, &mut regs, &mut mem),
            Err(DeliverError::OutsideIdt { vector: 5 })
        );
        assert_eq!(regs, before);
    }

    #[test]
    fn ist_gates_switch_to_the_tss_stack() {
        let (mut vcpu, mut regs, mut mem) = guest();
        regs.set_rsp(0x8000);
        regs.rip = 0x4242;
        // GDT at 0x3000 with a TSS descriptor at 0x18 for a TSS at 0x3100
        // whose IST2 is 0x6000.
        vcpu.gdtr_base = 0x3000;
        vcpu.gdtr_limit = 0x3f;
        vcpu.tr = 0x18;
        let d = mem.bytes_mut(0x3018, 16);
        d[0] = 0x67;
        d[2] = 0x00;
        d[3] = 0x31;
        d[5] = 0x89;
        mem.bytes_mut(0x3100 + 0x24 + 8, 8)
            .copy_from_slice(&0x6000u64.to_le_bytes());
        mem.bytes_mut(IDT + 16 * 8 + 4, 1)[0] = 2;
        deliver(8, Some(0), &mut vcpu, &mut regs, &mut mem).unwrap();
        assert_eq!(regs.rsp(), 0x6000 - 48);
        assert_eq!(mem.qwords(regs.rsp(), 5), vec![0, 0x4242, 8, 0x2, 0x8000]);
        // Without a TSS the IST gate cannot be used.
        vcpu.tr = 0;
        assert_eq!(
            deliver(8, Some(0), &mut vcpu, &mut regs, &mut mem),
            Err(DeliverError::NoTss { vector: 8 })
        );
    }

    /// A GDT at 0x3000 with a TSS descriptor at 0x18 for a TSS at 0x3100
    /// whose RSP0 is 0x9000 and IST2 0x6000.
    fn with_tss(vcpu: &mut Vcpu, mem: &mut crate::testutil::ByteMem) {
        vcpu.gdtr_base = 0x3000;
        vcpu.gdtr_limit = 0x3f;
        vcpu.tr = 0x18;
        let d = mem.bytes_mut(0x3018, 16);
        d[0] = 0x67;
        d[3] = 0x31;
        d[5] = 0x89;
        mem.bytes_mut(0x3100 + 4, 8)
            .copy_from_slice(&0x9000u64.to_le_bytes());
        mem.bytes_mut(0x3100 + 0x24 + 8, 8)
            .copy_from_slice(&0x6000u64.to_le_bytes());
    }

    #[test]
    fn from_cpl_3_the_stack_is_rsp0_and_the_frame_keeps_the_user_s_ss_rsp() {
        let (mut vcpu, mut regs, mut mem) = guest();
        with_tss(&mut vcpu, &mut mem);
        vcpu.set_seg(SegReg::Cs, 0x4b);
        vcpu.set_seg(SegReg::Ss, 0x43);
        vcpu.set_interrupts_enabled(true);
        regs.rip = 0x1_0000_1234;
        regs.set_rsp(0x7ff8);
        deliver(13, Some(0), &mut vcpu, &mut regs, &mut mem).unwrap();
        assert_eq!(regs.rsp(), 0x9000 - 48);
        assert_eq!(
            mem.qwords(regs.rsp(), 6),
            vec![0, 0x1_0000_1234, 0x4b, 0x2 | FLAG_IF, 0x7ff8, 0x43]
        );
        assert_eq!(vcpu.seg(SegReg::Cs), 0x08);
        assert_eq!(vcpu.seg(SegReg::Ss), 0, "null SS after a privilege change");
        assert_eq!(regs.rip, crate::testutil::handler(13));
        // An IST gate wins over RSP0.
        let (mut vcpu, mut regs, mut mem) = guest();
        with_tss(&mut vcpu, &mut mem);
        vcpu.set_seg(SegReg::Cs, 0x4b);
        regs.set_rsp(0x7ff8);
        mem.bytes_mut(IDT + 16 * 8 + 4, 1)[0] = 2;
        deliver(8, Some(0), &mut vcpu, &mut regs, &mut mem).unwrap();
        assert_eq!(regs.rsp(), 0x6000 - 48);
    }

    #[test]
    fn from_cpl_3_without_a_tss_nothing_changes() {
        let (mut vcpu, mut regs, mut mem) = guest();
        vcpu.set_seg(SegReg::Cs, 0x4b);
        regs.set_rsp(0x7ff8);
        let before = regs;
        assert_eq!(
            deliver(0x20, None, &mut vcpu, &mut regs, &mut mem),
            Err(DeliverError::NoTss { vector: 0x20 })
        );
        assert_eq!(regs, before);
        assert_eq!(vcpu.seg(SegReg::Cs), 0x4b);
    }

    #[test]
    fn int_n_from_cpl_3_needs_a_dpl_3_gate() {
        let (mut vcpu, _, mut mem) = guest();
        // Gate 0x80 with DPL 3, gate 0x40 with DPL 0.
        mem.bytes_mut(IDT + 16 * 0x80 + 5, 1)[0] = 0xee;
        mem.bytes_mut(IDT + 16 * 0x40 + 5, 1)[0] = 0x8e;
        assert_eq!(software_interrupt_allowed(0x40, &vcpu, &mut mem), Ok(true));
        vcpu.set_seg(SegReg::Cs, 0x4b);
        assert_eq!(software_interrupt_allowed(0x80, &vcpu, &mut mem), Ok(true));
        assert_eq!(software_interrupt_allowed(0x40, &vcpu, &mut mem), Ok(false));
    }

    #[test]
    fn pending_waits_for_virtual_if() {
        let (mut vcpu, mut regs, mut mem) = guest();
        regs.set_rsp(0x8000);
        vcpu.raise(0x20);
        assert_eq!(deliver_pending(&mut vcpu, &mut regs, &mut mem), Ok(None));
        vcpu.set_interrupts_enabled(true);
        assert_eq!(
            deliver_pending(&mut vcpu, &mut regs, &mut mem),
            Ok(Some(0x20))
        );
        assert!(!vcpu.has_pending());
        assert_eq!(regs.rip, crate::testutil::handler(0x20));
    }
}
