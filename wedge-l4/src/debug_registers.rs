//! The virtual CPU's debug registers: `mov` to and from `%dr0`–`%dr7`
//! (Intel SDM vol. 3, 18.2).
//!
//! They are a register file only: the guest reads back what it wrote, with
//! DR6's and DR7's reserved bits as hardware reads them, but no breakpoint
//! or watchpoint it sets ever fires (nor does DR7.GD's general detect).
//! Linux writes DR7 (and DR0–DR3 for hardware breakpoints, which a
//! kernel without them never arms) and reads DR6 in its #DB handler.

use crate::vcpu::Vcpu;

/// CR4.DE: debugging extensions (DR4/DR5 are #UD instead of aliases).
pub const CR4_DE: u64 = 1 << 3;
/// DR6 bits that read as 1 whatever was written.
const DR6_FIXED_ONES: u64 = 0xffff_0ff0;
/// DR6 bits the guest may write: B0–B3, BD, BS, BT.
const DR6_WRITABLE: u64 = 0xe00f;
/// DR7 bits that read as 1.
const DR7_FIXED_ONES: u64 = 0x400;
/// DR7 bits the guest may write: L0–G3, LE, GE, GD, the R/W and LEN
/// fields.
const DR7_WRITABLE: u64 = 0xffff_23ff;

/// Why the access faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugRegisterFault {
    /// #UD: no such register (DR8 and up), or DR4/DR5 with CR4.DE set.
    Undefined,
    /// #GP(0): a 1 in bits 63:32 of DR6 or DR7.
    Reserved,
}

/// The register `dr` means: DR4 and DR5 are DR6 and DR7 unless CR4.DE.
fn resolve(dr: u8, cr4: u64) -> Result<u8, DebugRegisterFault> {
    match dr {
        0..=3 | 6 | 7 => Ok(dr),
        4 | 5 if cr4 & CR4_DE == 0 => Ok(dr + 2),
        _ => Err(DebugRegisterFault::Undefined),
    }
}

/// `mov %drN, %reg`.
pub fn read(vcpu: &Vcpu, dr: u8) -> Result<u64, DebugRegisterFault> {
    Ok(match resolve(dr, vcpu.cr4)? {
        6 => vcpu.dr6,
        7 => vcpu.dr7,
        n => vcpu.dr[usize::from(n & 3)],
    })
}

/// `mov %reg, %drN`. On a fault nothing changed.
pub fn write(vcpu: &mut Vcpu, dr: u8, value: u64) -> Result<(), DebugRegisterFault> {
    match resolve(dr, vcpu.cr4)? {
        6 | 7 if value >> 32 != 0 => return Err(DebugRegisterFault::Reserved),
        6 => vcpu.dr6 = (value & DR6_WRITABLE) | DR6_FIXED_ONES,
        7 => vcpu.dr7 = (value & DR7_WRITABLE) | DR7_FIXED_ONES,
        n => vcpu.dr[usize::from(n & 3)] = value,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::{DR6_AT_RESET, DR7_AT_RESET};

    #[test]
    fn addresses_read_back_and_status_and_control_keep_their_fixed_bits() {
        let mut v = Vcpu::at_pv_entry(0);
        assert_eq!(read(&v, 6), Ok(DR6_AT_RESET));
        assert_eq!(read(&v, 7), Ok(DR7_AT_RESET));
        for n in 0..4u8 {
            let a = 0xffff_ffff_8100_0000 + u64::from(n) * 0x10;
            write(&mut v, n, a).unwrap();
            assert_eq!(read(&v, n), Ok(a));
        }
        // Linux clears DR6 with 0 and reads back the fixed ones; a B0 hit
        // and BS survive.
        write(&mut v, 6, 0).unwrap();
        assert_eq!(read(&v, 6), Ok(0xffff_0ff0));
        write(&mut v, 6, 0x4001).unwrap();
        assert_eq!(read(&v, 6), Ok(0xffff_4ff1));
        // DR7: L0 and a 4-byte write watch; bit 10 always reads 1; reserved
        // bits 11, 12, 14, 15 read 0.
        write(&mut v, 7, 0x000d_0001 | 0xd800).unwrap();
        assert_eq!(read(&v, 7), Ok(0x000d_0401));
        write(&mut v, 7, 0).unwrap();
        assert_eq!(read(&v, 7), Ok(0x400));
    }

    #[test]
    fn dr4_and_dr5_alias_unless_cr4_de_and_the_rest_do_not_exist() {
        let mut v = Vcpu::at_pv_entry(0);
        write(&mut v, 5, 0x1).unwrap();
        assert_eq!(read(&v, 7), Ok(0x401));
        assert_eq!(read(&v, 4), read(&v, 6));
        v.cr4 |= CR4_DE;
        assert_eq!(read(&v, 4), Err(DebugRegisterFault::Undefined));
        assert_eq!(write(&mut v, 5, 0), Err(DebugRegisterFault::Undefined));
        for n in 8..16 {
            assert_eq!(read(&v, n), Err(DebugRegisterFault::Undefined));
        }
        // A 1 in the upper half of DR6 or DR7 is #GP and changes nothing.
        assert_eq!(write(&mut v, 7, 1 << 32), Err(DebugRegisterFault::Reserved));
        assert_eq!(write(&mut v, 6, 1 << 40), Err(DebugRegisterFault::Reserved));
        assert_eq!(read(&v, 7), Ok(0x401));
        // DR0-DR3 hold any 64-bit value.
        write(&mut v, 3, u64::MAX).unwrap();
        assert_eq!(read(&v, 3), Ok(u64::MAX));
    }
}
