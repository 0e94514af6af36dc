//! Segment descriptors in the guest's virtual GDT and LDT, and the checks
//! `lar`, `lsl`, `verr`, `verw` and far jumps make on them (Intel SDM
//! vol. 2, LAR, LSL, VERR/VERW; vol. 3, 5.8 for far transfers), in 64-bit
//! mode.
//!
//! The tables are guest memory at the virtual GDTR's base (and at the base
//! of the LDT descriptor the virtual LDTR selects), read through
//! [`GuestMemory`] like any operand; a selector past a table's limit has no
//! descriptor, as on hardware.

use crate::memory::{GuestMemory, MemError};
use crate::vcpu::Vcpu;

/// System descriptor types of 64-bit mode that `lar` and `lsl` accept.
const TYPE_LDT: u8 = 0x2;
const TYPE_TSS_AVAILABLE: u8 = 0x9;
const TYPE_TSS_BUSY: u8 = 0xb;
const TYPE_CALL_GATE: u8 = 0xc;

/// An 8-byte segment descriptor (for a system descriptor, its low half).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor(pub u64);

impl Descriptor {
    fn access(&self) -> u8 {
        (self.0 >> 40) as u8
    }
    /// A system descriptor (LDT, TSS, gate), not code or data.
    pub fn system(&self) -> bool {
        self.access() & 0x10 == 0
    }
    /// The 4-bit type field.
    pub fn kind(&self) -> u8 {
        self.access() & 0xf
    }
    /// The descriptor privilege level.
    pub fn dpl(&self) -> u8 {
        (self.access() >> 5) & 3
    }
    /// The present bit.
    pub fn present(&self) -> bool {
        self.access() & 0x80 != 0
    }
    /// A code segment.
    pub fn code(&self) -> bool {
        !self.system() && self.kind() & 8 != 0
    }
    /// A conforming code segment.
    pub fn conforming(&self) -> bool {
        self.code() && self.kind() & 4 != 0
    }
    /// Readable: data, or code with the readable bit.
    pub fn readable(&self) -> bool {
        !self.system() && (!self.code() || self.kind() & 2 != 0)
    }
    /// Writable: data with the writable bit.
    pub fn writable(&self) -> bool {
        !self.system() && !self.code() && self.kind() & 2 != 0
    }
    /// The L bit: 64-bit code.
    pub fn long(&self) -> bool {
        (self.0 >> 53) & 1 != 0
    }
    /// The segment limit in bytes (scaled by 4 KiB with the G bit).
    pub fn limit(&self) -> u32 {
        let raw = (self.0 & 0xffff) as u32 | ((self.0 >> 32) as u32 & 0xf_0000);
        if (self.0 >> 55) & 1 != 0 {
            (raw << 12) | 0xfff
        } else {
            raw
        }
    }
    /// The access rights `lar` returns: the second doubleword masked by
    /// `0x00f0ff00`.
    pub fn access_rights(&self) -> u32 {
        (self.0 >> 32) as u32 & 0x00f0_ff00
    }
    /// The base of a system descriptor whose high half is `high` (16-byte
    /// LDT and TSS descriptors of 64-bit mode).
    fn system_base(&self, high: u64) -> u64 {
        ((self.0 >> 16) & 0xff_ffff)
            | (((self.0 >> 56) & 0xff) << 24)
            | ((high & 0xffff_ffff) << 32)
    }
}

fn read_u64(mem: &mut dyn GuestMemory, address: u64) -> Result<u64, MemError> {
    let mut b = [0u8; 8];
    mem.read(address, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// The descriptor `selector` names: in the GDT (TI clear) or in the LDT
/// the LDTR selects (TI set). `None` for the null selector, a selector
/// past its table's limit, or an LDT selector while the LDTR names no
/// usable LDT.
pub fn lookup(
    vcpu: &Vcpu,
    mem: &mut dyn GuestMemory,
    selector: u16,
) -> Result<Option<Descriptor>, MemError> {
    let offset = u64::from(selector & !7);
    let (base, limit) = if selector & 4 == 0 {
        if offset == 0 {
            return Ok(None);
        }
        (vcpu.gdtr_base, u64::from(vcpu.gdtr_limit))
    } else {
        // The LDTR's selector names a 16-byte LDT descriptor in the GDT.
        let ldt_at = u64::from(vcpu.ldtr & !7);
        if vcpu.ldtr & 4 != 0 || ldt_at == 0 || ldt_at + 15 > u64::from(vcpu.gdtr_limit) {
            return Ok(None);
        }
        let at = vcpu.gdtr_base.wrapping_add(ldt_at);
        let ldt = Descriptor(read_u64(mem, at)?);
        if !ldt.system() || ldt.kind() != TYPE_LDT || !ldt.present() {
            return Ok(None);
        }
        let high = read_u64(mem, at.wrapping_add(8))?;
        (ldt.system_base(high), u64::from(ldt.limit()))
    };
    if offset + 7 > limit {
        return Ok(None);
    }
    Ok(Some(Descriptor(read_u64(mem, base.wrapping_add(offset))?)))
}

/// Whether code at `cpl` may see a segment through a selector with `rpl`:
/// conforming code always, anything else only at or above both levels.
fn visible(d: &Descriptor, cpl: u8, rpl: u8) -> bool {
    d.conforming() || (d.dpl() >= cpl && d.dpl() >= rpl)
}

/// `lar`: the access rights if the descriptor is one `lar` reports
/// (ZF set), `None` otherwise (ZF clear, the destination unchanged).
/// The present bit is not checked.
pub fn lar(d: Option<Descriptor>, cpl: u8, rpl: u8) -> Option<u32> {
    let d = d?;
    let valid = !d.system()
        || matches!(
            d.kind(),
            TYPE_LDT | TYPE_TSS_AVAILABLE | TYPE_TSS_BUSY | TYPE_CALL_GATE
        );
    (valid && visible(&d, cpl, rpl)).then(|| d.access_rights())
}

/// `lsl`: the limit in bytes if the descriptor has one `lsl` reports.
pub fn lsl(d: Option<Descriptor>, cpl: u8, rpl: u8) -> Option<u32> {
    let d = d?;
    let valid = !d.system() || matches!(d.kind(), TYPE_LDT | TYPE_TSS_AVAILABLE | TYPE_TSS_BUSY);
    (valid && visible(&d, cpl, rpl)).then(|| d.limit())
}

/// `verr`: the segment is readable at this level.
pub fn verr(d: Option<Descriptor>, cpl: u8, rpl: u8) -> bool {
    d.is_some_and(|d| d.readable() && visible(&d, cpl, rpl))
}

/// `verw`: the segment is writable at this level.
pub fn verw(d: Option<Descriptor>, cpl: u8, rpl: u8) -> bool {
    d.is_some_and(|d| d.writable() && visible(&d, cpl, rpl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ByteMem;

    /// Linux's boot GDT entries (`arch/x86/kernel/head_64.S`,
    /// `GDT_ENTRY_INIT`): kernel code 64-bit, kernel data, user code 64-bit
    /// (DPL 3), user data (DPL 3), 32-bit kernel code.
    const KERNEL_CS: u64 = 0x00af_9b00_0000_ffff;
    const KERNEL_DS: u64 = 0x00cf_9300_0000_ffff;
    const USER_CS: u64 = 0x00af_fb00_0000_ffff;
    const USER_DS: u64 = 0x00cf_f300_0000_ffff;
    const KERNEL32_CS: u64 = 0x00cf_9b00_0000_ffff;

    #[test]
    fn the_fields_of_linuxs_descriptors() {
        let cs = Descriptor(KERNEL_CS);
        assert!(cs.code() && cs.readable() && !cs.writable() && cs.long() && cs.present());
        assert_eq!((cs.dpl(), cs.limit()), (0, 0xffff_ffff));
        assert_eq!(cs.access_rights(), 0x00a0_9b00);
        let ds = Descriptor(KERNEL_DS);
        assert!(!ds.code() && ds.readable() && ds.writable() && !ds.long());
        assert_eq!(Descriptor(USER_DS).dpl(), 3);
        assert!(!Descriptor(KERNEL32_CS).long());
        // A byte-granular limit.
        assert_eq!(Descriptor(0x0000_8900_0000_0067).limit(), 0x67);
    }

    #[test]
    fn the_checks_follow_privilege_and_type() {
        let (kcs, kds, uds) = (
            Some(Descriptor(KERNEL_CS)),
            Some(Descriptor(KERNEL_DS)),
            Some(Descriptor(USER_DS)),
        );
        // At CPL 0 everything is visible; at CPL 3 only DPL 3.
        assert_eq!(lar(kds, 0, 0), Some(0x00c0_9300));
        assert_eq!(lar(kds, 3, 3), None);
        assert_eq!(lar(uds, 3, 3), Some(0x00c0_f300));
        assert_eq!(lar(Some(Descriptor(USER_CS)), 3, 3), Some(0x00a0_fb00));
        // An RPL above the DPL hides it too.
        assert_eq!(lar(kds, 0, 3), None);
        assert_eq!(lsl(kcs, 0, 0), Some(0xffff_ffff));
        assert!(verr(kcs, 0, 0) && !verw(kcs, 0, 0), "code is not writable");
        assert!(verr(kds, 0, 0) && verw(kds, 0, 0));
        assert!(!verw(kds, 3, 3) && verw(uds, 3, 3));
        // Execute-only code is not readable.
        assert!(!verr(Some(Descriptor(0x00af_9900_0000_ffff)), 0, 0));
        // Nothing for the null selector.
        assert_eq!((lar(None, 0, 0), lsl(None, 0, 0)), (None, None));
        assert!(!verr(None, 0, 0) && !verw(None, 0, 0));
        // System descriptors: a TSS for lar and lsl, never for verr/verw;
        // an interrupt gate (0xe) for neither; a call gate for lar only.
        let tss = Some(Descriptor(0x0000_8900_0000_0067));
        assert_eq!(lsl(tss, 0, 0), Some(0x67));
        assert_eq!(lar(tss, 0, 0), Some(0x8900));
        assert!(!verr(tss, 0, 0) && !verw(tss, 0, 0));
        let gate = Some(Descriptor(0x0000_8e00_0000_0000));
        assert_eq!((lar(gate, 0, 0), lsl(gate, 0, 0)), (None, None));
        let call = Some(Descriptor(0x0000_8c00_0000_0000));
        assert!(lar(call, 0, 0).is_some() && lsl(call, 0, 0).is_none());
    }

    fn put(ram: &mut ByteMem, at: u64, v: u64) {
        ram.bytes_mut(at, 8).copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn lookup_reads_the_gdt_and_the_ldt_within_their_limits() {
        let mut ram = ByteMem(vec![0; 0x2000]);
        let mut vcpu = Vcpu::at_pv_entry(0);
        vcpu.gdtr_base = 0x1100;
        vcpu.gdtr_limit = 0x3f; // 8 entries
        put(&mut ram, 0x1110, KERNEL_CS);
        put(&mut ram, 0x1118, KERNEL_DS);
        // Entries 4 and 5: an LDT descriptor, base 0x1800, limit 0xf.
        put(&mut ram, 0x1120, 0x0000_8200_1800_000f);
        put(&mut ram, 0x1128, 0);
        put(&mut ram, 0x1808, USER_DS);
        let mut get = |vcpu: &Vcpu, sel| lookup(vcpu, &mut ram, sel).unwrap();
        assert_eq!(get(&vcpu, 0x10), Some(Descriptor(KERNEL_CS)));
        assert_eq!(get(&vcpu, 0x1b), Some(Descriptor(KERNEL_DS)), "RPL ignored");
        assert_eq!(get(&vcpu, 0), None, "null");
        assert_eq!(get(&vcpu, 0x40), None, "past the limit");
        assert_eq!(get(&vcpu, 0x0f), None, "no LDT loaded");
        vcpu.ldtr = 0x20;
        assert_eq!(get(&vcpu, 0x0f), Some(Descriptor(USER_DS)));
        assert_eq!(get(&vcpu, 0x17), None, "past the LDT's limit");
        // A GDT that is not there is a memory error, not a panic.
        vcpu.gdtr_base = 0x10_0000; // past the 8 KiB
        assert!(lookup(&vcpu, &mut ram, 0x10).is_err());
    }
}
