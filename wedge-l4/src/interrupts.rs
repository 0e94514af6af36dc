//! Delivering exceptions and virtual interrupts through the guest's virtual
//! IDT, the way a CPU does in 64-bit mode: read the gate, push the 64-bit
//! interrupt frame on the (16-byte aligned) guest stack, load CS:RIP, clear
//! virtual IF for interrupt gates.
//!
//! The guest runs as virtual CPL 0 only (guest user mode is a later step),
//! so there is no privilege stack switch, no gate DPL check and SS is kept.
//! A gate with an IST index switches to that stack, read from the TSS the
//! virtual TR selects in the virtual GDT.

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
    })
}

/// The stack pointer IST entry `ist` (1..7) of the TSS that TR selects.
fn ist_stack(
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
    // IST1 is at offset 0x24 of the 64-bit TSS.
    let mut b = [0u8; 8];
    mem.read(base.wrapping_add(0x24 + 8 * u64::from(ist - 1)), &mut b)?;
    Ok(u64::from_le_bytes(b))
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
    let stack = if gate.ist != 0 {
        ist_stack(vector, gate.ist, vcpu, mem)?
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
