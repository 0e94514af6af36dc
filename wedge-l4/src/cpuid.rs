//! What `cpuid` shows the guest: the host CPU's answer with every feature
//! the wedge does not support hidden, so that a guest kernel (Linux picks
//! its code paths, and the alternatives it patches in, from these bits)
//! stays on paths made of instructions the wedge emulates or that run
//! natively at user level. One table lists each hidden bit and why.

/// The registers of a `cpuid` answer, in the order the instruction
/// returns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    Eax = 0,
    Ebx = 1,
    Ecx = 2,
    Edx = 3,
}

/// A feature bit the guest does not see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hidden {
    pub leaf: u32,
    /// The subleaf (`ecx`), for leaves that have them.
    pub subleaf: Option<u32>,
    pub reg: Reg,
    pub bit: u32,
    /// The feature's name, as Linux's `/proc/cpuinfo` spells it.
    pub name: &'static str,
}

const fn hide(leaf: u32, subleaf: Option<u32>, reg: Reg, bit: u32, name: &'static str) -> Hidden {
    Hidden {
        leaf,
        subleaf,
        reg,
        bit,
        name,
    }
}

/// Every feature bit the wedge hides, and why:
///
/// - `monitor` (1.ECX.3): `monitor`/`mwait` are CPL 0; Linux's idle and
///   delay loops use them when they exist, written as `.byte` (no site).
/// - `vmx` (1.ECX.5): there is no virtual VMX.
/// - `pcid` (1.ECX.17), `invpcid` (7.EBX.10): the virtual CR3 carries no
///   PCID and `invpcid` is not emulated; without them Linux flushes with
///   CR3 writes and `invlpg`, which the VMM serves.
/// - `x2apic` (1.ECX.21), `apic` (1.EDX.9), `tsc_deadline_timer`
///   (1.ECX.24): there is no virtual local APIC (the timer is the PIT
///   through the 8259); its MSRs would #GP.
/// - `xsave` (1.ECX.26), `osxsave` (1.ECX.27): `xsetbv` (XCR0) is not
///   emulated and the virtual CR4 has no OSXSAVE; Linux then saves the FPU
///   with `fxsave` (unprivileged) and drops what depends on XSAVE (AVX
///   and its kin) by itself. XSAVES (13.1.EAX.3) needs XSAVE: hidden with
///   it.
/// - `fsgsbase` (7.EBX.0): `wrfsbase`/`wrgsbase` would change the real FS
///   and GS bases behind the wedge (seL4 owns GS: the vCPU page); the
///   guest uses the MSRs, which the wedge emulates.
/// - `smep` (7.EBX.7), `smap` (7.EBX.20), `umip` (7.ECX.2): CR4 bits with
///   no meaning for a kernel running at user level; SMAP's `stac`/`clac`
///   are `.byte` replacements the pass cannot see.
/// - `pku` (7.ECX.3), `ospke` (7.ECX.4): `wrpkru` and CR4.PKE are not
///   modelled.
/// - `la57` (7.ECX.16): 5-level paging; the vTLB walks four levels.
/// - `mwaitx` (0x80000001.ECX.29): AMD's `monitorx`/`mwaitx`, as `monitor`.
///
/// The hypervisor bit (1.ECX.31) is set instead: the guest runs under one,
/// as under QEMU bare.
pub const HIDDEN: [Hidden; 18] = [
    hide(1, None, Reg::Ecx, 3, "monitor"),
    hide(1, None, Reg::Ecx, 5, "vmx"),
    hide(1, None, Reg::Ecx, 17, "pcid"),
    hide(1, None, Reg::Ecx, 21, "x2apic"),
    hide(1, None, Reg::Ecx, 24, "tsc_deadline_timer"),
    hide(1, None, Reg::Ecx, 26, "xsave"),
    hide(1, None, Reg::Ecx, 27, "osxsave"),
    hide(1, None, Reg::Edx, 9, "apic"),
    hide(7, Some(0), Reg::Ebx, 0, "fsgsbase"),
    hide(7, Some(0), Reg::Ebx, 7, "smep"),
    hide(7, Some(0), Reg::Ebx, 10, "invpcid"),
    hide(7, Some(0), Reg::Ebx, 20, "smap"),
    hide(7, Some(0), Reg::Ecx, 2, "umip"),
    hide(7, Some(0), Reg::Ecx, 3, "pku"),
    hide(7, Some(0), Reg::Ecx, 4, "ospke"),
    hide(7, Some(0), Reg::Ecx, 16, "la57"),
    hide(0xd, Some(1), Reg::Eax, 3, "xsaves"),
    hide(0x8000_0001, None, Reg::Ecx, 29, "mwaitx"),
];

/// `cpuid` leaf 1 ECX bit 31: a hypervisor is present.
pub const HYPERVISOR_BIT: u32 = 31;

/// The guest's view of `cpuid(leaf, subleaf)`, given the host's `raw`
/// answer: the [`HIDDEN`] bits cleared, the hypervisor bit set.
pub fn filter(leaf: u32, subleaf: u32, raw: [u32; 4]) -> [u32; 4] {
    let mut out = raw;
    for h in HIDDEN
        .iter()
        .filter(|h| h.leaf == leaf && h.subleaf.is_none_or(|s| s == subleaf))
    {
        out[h.reg as usize] &= !(1 << h.bit);
    }
    if leaf == 1 {
        out[Reg::Ecx as usize] |= 1 << HYPERVISOR_BIT;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [u32; 4] = [u32::MAX; 4];

    fn hidden_in(leaf: u32, subleaf: u32, reg: Reg) -> u32 {
        !filter(leaf, subleaf, ALL)[reg as usize]
    }

    #[test]
    fn leaf_1_hides_the_apic_mwait_xsave_and_pcid() {
        let ecx = (1 << 3) | (1 << 5) | (1 << 17) | (1 << 21) | (1 << 24) | (1 << 26) | (1 << 27);
        assert_eq!(hidden_in(1, 0, Reg::Ecx), ecx);
        assert_eq!(hidden_in(1, 0, Reg::Edx), 1 << 9);
        assert_eq!(hidden_in(1, 0, Reg::Eax), 0);
        assert_eq!(hidden_in(1, 0, Reg::Ebx), 0);
        // Leaf 1 has no subleaves: the same whatever ecx held.
        assert_eq!(filter(1, 7, ALL), filter(1, 0, ALL));
    }

    #[test]
    fn the_hypervisor_bit_is_set_even_when_the_host_clears_it() {
        assert_eq!(filter(1, 0, [0; 4])[2], 1 << HYPERVISOR_BIT);
        assert_eq!(filter(0, 0, [0; 4]), [0; 4], "only leaf 1");
    }

    #[test]
    fn leaf_7_hides_only_in_subleaf_0() {
        let ebx = 1 | (1 << 7) | (1 << 10) | (1 << 20);
        assert_eq!(hidden_in(7, 0, Reg::Ebx), ebx);
        let ecx = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 16);
        assert_eq!(hidden_in(7, 0, Reg::Ecx), ecx);
        assert_eq!(hidden_in(7, 0, Reg::Edx), 0);
        assert_eq!(filter(7, 1, ALL), ALL, "subleaf 1 untouched");
    }

    #[test]
    fn xsaves_is_hidden_in_leaf_0xd_subleaf_1_and_mwaitx_in_the_amd_leaf() {
        assert_eq!(hidden_in(0xd, 1, Reg::Eax), 1 << 3);
        assert_eq!(filter(0xd, 0, ALL), ALL);
        assert_eq!(hidden_in(0x8000_0001, 0, Reg::Ecx), 1 << 29);
        assert_eq!(hidden_in(0x8000_0001, 0, Reg::Edx), 0);
    }

    #[test]
    fn other_leaves_and_bits_pass_through() {
        for leaf in [0, 2, 4, 6, 0xb, 0x8000_0000, 0x8000_0008, 0x4000_0000] {
            assert_eq!(filter(leaf, 0, ALL), ALL, "leaf {leaf:#x}");
        }
        let raw = [0x12, 0x34, 0x56, 0x78];
        assert_eq!(filter(1, 0, raw), [0x12, 0x34, 0x56 | 1 << 31, 0x78]);
    }

    #[test]
    fn every_hidden_bit_is_named_once() {
        for (i, a) in HIDDEN.iter().enumerate() {
            assert!(a.bit < 32 && !a.name.is_empty());
            for b in &HIDDEN[i + 1..] {
                assert!(
                    (a.leaf, a.subleaf, a.reg, a.bit) != (b.leaf, b.subleaf, b.reg, b.bit),
                    "{} and {}",
                    a.name,
                    b.name
                );
            }
        }
    }
}
