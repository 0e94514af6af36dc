//! The virtual CPU's model-specific registers: what `rdmsr` and `wrmsr`
//! read and write, kept in the [`Vcpu`].
//!
//! The file holds the MSRs a 64-bit kernel writes to run (Linux's list,
//! docs/linux.md "What Linux needs from the wedge next"): EFER, the
//! `syscall` MSRs, the FS/GS bases, TSC_AUX, the SYSENTER MSRs, PAT,
//! MISC_ENABLE and DEBUGCTL. Any other MSR does not exist on the virtual CPU:
//! its access raises #GP(0), as hardware does for an MSR it lacks, which
//! is what Linux's `rdmsr_safe`/`wrmsr_safe` probe for. A value a real CPU
//! would refuse (a non-canonical address, a reserved bit) is #GP(0) too.
//! Nothing here talks to the outside world: the real FS base is the
//! caller's business ([`crate::emulate`] tells the backend).

use crate::vcpu::{Vcpu, EFER_LMA, EFER_LME};
use previrt_protocol::address_space::is_canonical;

/// EFER.SCE: `syscall`/`sysret` enabled.
pub const EFER_SCE: u64 = 1;
/// EFER.NXE: no-execute page protection enabled.
pub const EFER_NXE: u64 = 1 << 11;

/// `MSR_EFER`.
pub const MSR_EFER: u32 = 0xc000_0080;
/// `MSR_STAR`.
pub const MSR_STAR: u32 = 0xc000_0081;
/// `MSR_LSTAR`.
pub const MSR_LSTAR: u32 = 0xc000_0082;
/// `MSR_CSTAR`.
pub const MSR_CSTAR: u32 = 0xc000_0083;
/// `MSR_SYSCALL_MASK` (SFMASK).
pub const MSR_SFMASK: u32 = 0xc000_0084;
/// `MSR_FS_BASE`.
pub const MSR_FS_BASE: u32 = 0xc000_0100;
/// `MSR_GS_BASE`.
pub const MSR_GS_BASE: u32 = 0xc000_0101;
/// `MSR_KERNEL_GS_BASE`.
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// `MSR_TSC_AUX`.
pub const MSR_TSC_AUX: u32 = 0xc000_0103;
/// `MSR_IA32_SYSENTER_CS`.
pub const MSR_SYSENTER_CS: u32 = 0x174;
/// `MSR_IA32_SYSENTER_ESP`.
pub const MSR_SYSENTER_ESP: u32 = 0x175;
/// `MSR_IA32_SYSENTER_EIP`.
pub const MSR_SYSENTER_EIP: u32 = 0x176;
/// `MSR_IA32_MISC_ENABLE`.
pub const MSR_MISC_ENABLE: u32 = 0x1a0;
/// `MSR_IA32_DEBUGCTLMSR`.
pub const MSR_DEBUGCTL: u32 = 0x1d9;
/// `MSR_IA32_CR_PAT`.
pub const MSR_PAT: u32 = 0x277;
/// `MSR_K8_INT_PENDING_MSG`: AMD's interrupt-pending message register,
/// which Linux reads on an AMD CPU (the virtual CPU says AuthenticAMD, as
/// QEMU's default model). QEMU's TCG, which the bare boots run on, reads 0
/// for every MSR it does not model; the virtual CPU answers this one the
/// same way, read-only, so Linux takes the bare boot's path instead of
/// printing `unchecked MSR access error`.
pub const MSR_K8_INT_PENDING_MSG: u32 = 0xc001_0055;

/// EFER bits the guest may set: SCE, LME, NXE (LMA is the CPU's).
const EFER_WRITABLE: u64 = EFER_SCE | EFER_LME | EFER_NXE;
/// DEBUGCTL bits the virtual CPU has: LBR and BTF (stored, never acted on).
const DEBUGCTL_WRITABLE: u64 = 0b11;

/// Why an access raises #GP(0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrError {
    /// The virtual CPU has no such MSR.
    Unknown { msr: u32 },
    /// The value is one hardware refuses for this MSR.
    BadValue { msr: u32, value: u64 },
}

/// True if every byte of a PAT value is a memory type that exists (UC 0,
/// WC 1, WT 4, WP 5, WB 6, UC- 7).
fn valid_pat(v: u64) -> bool {
    v.to_le_bytes()
        .iter()
        .all(|t| matches!(t, 0 | 1 | 4 | 5 | 6 | 7))
}

/// `rdmsr`: the value of `msr`.
pub fn read(vcpu: &Vcpu, msr: u32) -> Result<u64, MsrError> {
    Ok(match msr {
        MSR_EFER => vcpu.efer,
        MSR_STAR => vcpu.star,
        MSR_LSTAR => vcpu.lstar,
        MSR_CSTAR => vcpu.cstar,
        MSR_SFMASK => vcpu.sfmask,
        MSR_FS_BASE => vcpu.fs_base,
        MSR_GS_BASE => vcpu.gs_base,
        MSR_KERNEL_GS_BASE => vcpu.kernel_gs_base,
        MSR_TSC_AUX => vcpu.tsc_aux,
        MSR_SYSENTER_CS => vcpu.sysenter_cs,
        MSR_SYSENTER_ESP => vcpu.sysenter_esp,
        MSR_SYSENTER_EIP => vcpu.sysenter_eip,
        MSR_MISC_ENABLE => vcpu.misc_enable,
        MSR_DEBUGCTL => vcpu.debugctl,
        MSR_PAT => vcpu.pat,
        MSR_K8_INT_PENDING_MSG => 0,
        _ => return Err(MsrError::Unknown { msr }),
    })
}

/// `wrmsr`: checks `value` as hardware does, then stores it. On an error
/// nothing changed.
pub fn write(vcpu: &mut Vcpu, msr: u32, value: u64) -> Result<(), MsrError> {
    let bad = MsrError::BadValue { msr, value };
    let address = |v: u64| if is_canonical(v) { Ok(v) } else { Err(bad) };
    let low_half = |v: u64| if v >> 32 == 0 { Ok(v) } else { Err(bad) };
    match msr {
        MSR_EFER => {
            // LMA is read-only, and the guest is in long mode with paging
            // on: LME cannot be cleared there.
            if value & !(EFER_WRITABLE | EFER_LMA) != 0 || value & EFER_LME == 0 {
                return Err(bad);
            }
            vcpu.efer = (value & EFER_WRITABLE) | (vcpu.efer & EFER_LMA);
        }
        MSR_STAR => vcpu.star = value,
        MSR_LSTAR => vcpu.lstar = address(value)?,
        MSR_CSTAR => vcpu.cstar = address(value)?,
        MSR_SFMASK => vcpu.sfmask = low_half(value)?,
        MSR_FS_BASE => vcpu.fs_base = address(value)?,
        MSR_GS_BASE => vcpu.gs_base = address(value)?,
        MSR_KERNEL_GS_BASE => vcpu.kernel_gs_base = address(value)?,
        MSR_TSC_AUX => vcpu.tsc_aux = low_half(value)?,
        MSR_SYSENTER_CS => vcpu.sysenter_cs = value & 0xffff,
        MSR_SYSENTER_ESP => vcpu.sysenter_esp = address(value)?,
        MSR_SYSENTER_EIP => vcpu.sysenter_eip = address(value)?,
        MSR_MISC_ENABLE => vcpu.misc_enable = value,
        MSR_DEBUGCTL if value & !DEBUGCTL_WRITABLE != 0 => return Err(bad),
        MSR_DEBUGCTL => vcpu.debugctl = value,
        MSR_PAT if !valid_pat(value) => return Err(bad),
        MSR_PAT => vcpu.pat = value,
        _ => return Err(MsrError::Unknown { msr }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::PAT_AT_RESET;

    /// Every MSR of the file, with a value Linux writes to it.
    const LINUX_WRITES: [(u32, u64); 15] = [
        (MSR_EFER, EFER_SCE | EFER_LME | EFER_NXE),
        (MSR_STAR, 0x0023_0010_0000_0000),
        (MSR_LSTAR, 0xffff_ffff_8120_0040),
        (MSR_CSTAR, 0xffff_ffff_8120_1380),
        (MSR_SFMASK, 0x4_7700),
        (MSR_FS_BASE, 0),
        (MSR_GS_BASE, 0xffff_ffff_8200_0000),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_TSC_AUX, 0),
        (MSR_SYSENTER_CS, 0x10),
        (MSR_SYSENTER_ESP, 0xffff_fe00_0000_6000),
        (MSR_SYSENTER_EIP, 0xffff_ffff_8120_1500),
        (MSR_MISC_ENABLE, 0x0085_0089),
        (MSR_DEBUGCTL, 0),
        (MSR_PAT, 0x0407_0506_0007_0406),
    ];

    #[test]
    fn every_msr_of_the_file_reads_back_what_was_written() {
        let mut vcpu = Vcpu::at_pv_entry(0);
        for (msr, value) in LINUX_WRITES {
            write(&mut vcpu, msr, value).unwrap_or_else(|e| panic!("{msr:#x}: {e:?}"));
        }
        for (msr, value) in LINUX_WRITES {
            let expect = if msr == MSR_EFER {
                value | EFER_LMA
            } else {
                value
            };
            assert_eq!(read(&vcpu, msr), Ok(expect), "{msr:#x}");
        }
    }

    #[test]
    fn values_hardware_refuses_change_nothing() {
        let mut vcpu = Vcpu::at_pv_entry(0);
        let bad: [(u32, u64); 12] = [
            (MSR_EFER, EFER_LME | (1 << 1)),
            (MSR_EFER, EFER_SCE),
            (MSR_LSTAR, 0x0000_8000_0000_0000),
            (MSR_CSTAR, 0x1234_0000_0000_0000),
            (MSR_SFMASK, 1 << 32),
            (MSR_FS_BASE, 0x0000_8000_0000_0000),
            (MSR_GS_BASE, 0x0001_0000_0000_0000),
            (MSR_TSC_AUX, 1 << 40),
            (MSR_SYSENTER_EIP, 0x0000_8000_0000_0000),
            (MSR_DEBUGCTL, 1 << 2),
            (MSR_PAT, 0x0007_0406_0007_0402),
            (MSR_PAT, 0x0807_0406_0007_0406),
        ];
        for (msr, value) in bad {
            let before = read(&vcpu, msr).unwrap();
            assert_eq!(
                write(&mut vcpu, msr, value),
                Err(MsrError::BadValue { msr, value })
            );
            assert_eq!(read(&vcpu, msr).unwrap(), before, "{msr:#x}");
        }
        assert_eq!(read(&vcpu, MSR_PAT), Ok(PAT_AT_RESET));
    }

    #[test]
    fn amds_pending_message_register_reads_zero_and_is_not_writable() {
        let mut vcpu = Vcpu::at_pv_entry(0);
        let msr = MSR_K8_INT_PENDING_MSG;
        assert_eq!(read(&vcpu, msr), Ok(0));
        assert_eq!(write(&mut vcpu, msr, 1), Err(MsrError::Unknown { msr }));
        assert_eq!(read(&vcpu, msr), Ok(0));
    }

    #[test]
    fn an_msr_the_cpu_lacks_is_unknown_both_ways() {
        let mut vcpu = Vcpu::at_pv_entry(0);
        // APIC base (no local APIC), a performance counter, PRED_CMD,
        // TSC_DEADLINE, a vendor's quirk MSR.
        for msr in [0x1b, 0xc1, 0x49, 0x6e0, 0xc001_1020] {
            assert_eq!(read(&vcpu, msr), Err(MsrError::Unknown { msr }));
            assert_eq!(write(&mut vcpu, msr, 0), Err(MsrError::Unknown { msr }));
        }
    }
}
