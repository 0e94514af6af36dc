//! The virtual CPU: the privileged state the guest believes it has.
//!
//! [`Vcpu`] lives in a page shared by the wedge and the VMM server, so its
//! layout is ABI: `#[repr(C)]`, fixed offsets (checked when the crate
//! compiles and listed in `docs/wedge.md`), bump [`VCPU_VERSION`] on any
//! change. The wedge (`wedge-l4`) re-exports this module; the VMM reaches
//! the fields it touches through [`VIF_OFFSET`] and [`PENDING_ANY_OFFSET`]. The VMM server
//! sets bits in [`Vcpu::pending`] while the guest runs, so the bitmap is
//! atomic; everything else is written only by the wedge (or by the VMM
//! server while the guest thread is stopped).

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// `"VCPU"` read as a little-endian `u32`.
pub const VCPU_MAGIC: u32 = u32::from_le_bytes(*b"VCPU");
/// Layout version of [`Vcpu`].
pub const VCPU_VERSION: u32 = 4;

/// RFLAGS.CF.
pub const FLAG_CF: u64 = 1 << 0;
/// RFLAGS bit 1, always set.
pub const FLAG_FIXED: u64 = 1 << 1;
/// RFLAGS.TF.
pub const FLAG_TF: u64 = 1 << 8;
/// RFLAGS.IF.
pub const FLAG_IF: u64 = 1 << 9;
/// RFLAGS.OF.
pub const FLAG_OF: u64 = 1 << 11;
/// RFLAGS.IOPL (two bits).
pub const FLAG_IOPL: u64 = 3 << 12;
/// RFLAGS.NT.
pub const FLAG_NT: u64 = 1 << 14;
/// RFLAGS.RF.
pub const FLAG_RF: u64 = 1 << 16;
/// RFLAGS.VM.
pub const FLAG_VM: u64 = 1 << 17;

/// Flags that exist only virtually: a CPL 3 `popf` silently ignores them, so
/// the wedge keeps the guest's view in [`Vcpu::rflags`].
pub const VIRTUAL_FLAGS: u64 = FLAG_IF | FLAG_IOPL;
/// Flags a CPL 3 `popf` really changes (CF PF AF ZF SF TF DF OF NT AC ID):
/// the wedge writes these into the real RFLAGS.
pub const REAL_POPF_FLAGS: u64 = 0x0024_4dd5;

/// CR0.PE.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.TS.
pub const CR0_TS: u64 = 1 << 3;
/// CR0.WP.
pub const CR0_WP: u64 = 1 << 16;
/// CR0.PG.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// EFER.SCE, LME, LMA, NXE.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA.
pub const EFER_LMA: u64 = 1 << 10;

/// MSR_IA32_CR_PAT after reset: WB, WT, UC-, UC, twice.
pub const PAT_AT_RESET: u64 = 0x0007_0406_0007_0406;
/// MSR_IA32_MISC_ENABLE as QEMU starts it: fast strings on, branch trace
/// and PEBS unavailable.
pub const MISC_ENABLE_AT_RESET: u64 = (1 << 0) | (1 << 11) | (1 << 12);
/// DR6 after reset: no condition hit, reserved bits read as 1.
pub const DR6_AT_RESET: u64 = 0xffff_0ff0;
/// DR7 after reset: no breakpoint enabled, bit 10 reads as 1.
pub const DR7_AT_RESET: u64 = 0x400;

/// The flat 64-bit code selector the PV boot protocol promises.
pub const BOOT_CS: u16 = 0x08;
/// The flat data selector the PV boot protocol promises.
pub const BOOT_DS: u16 = 0x10;

/// Linux's `__BOOT_CS`: the flat 64-bit code selector its 64-bit boot
/// protocol enters with (`arch/x86/include/asm/segment.h`, GDT entry 2).
pub const LINUX_BOOT_CS: u16 = 0x10;
/// Linux's `__BOOT_DS` (GDT entry 3).
pub const LINUX_BOOT_DS: u16 = 0x18;

/// Segment registers, in the x86 encoding order (the ModRM `reg` field of
/// `mov` to/from a segment register).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegReg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
}

impl SegReg {
    /// The segment register with encoding `n`.
    pub fn from_encoding(n: u8) -> Option<SegReg> {
        match n {
            0 => Some(SegReg::Es),
            1 => Some(SegReg::Cs),
            2 => Some(SegReg::Ss),
            3 => Some(SegReg::Ds),
            4 => Some(SegReg::Fs),
            5 => Some(SegReg::Gs),
            _ => None,
        }
    }
}

/// The virtual CPU state (the shared vCPU page's header). Offsets in bytes:
///
/// | off | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `"VCPU"` |
/// | 4 | 4 | version (3) |
/// | 8 | 8 | rflags (virtual IOPL; IF is `vif`; other bits unused) |
/// | 16 | 8 | cr0 |
/// | 24 | 8 | cr2 |
/// | 32 | 8 | cr3 |
/// | 40 | 8 | cr4 |
/// | 48 | 8 | efer |
/// | 56 | 8 | fs_base |
/// | 64 | 8 | gdtr_base |
/// | 72 | 8 | idtr_base |
/// | 80 | 2 | gdtr_limit |
/// | 82 | 2 | idtr_limit |
/// | 84 | 2 | tr |
/// | 86 | 2 | ldtr |
/// | 88 | 12 | segment selectors es cs ss ds fs gs (u16 each, encoding order) |
/// | 100 | 1 | in_wedge (nonzero while the guest thread runs wedge code) |
/// | 101 | 1 | vif: virtual RFLAGS.IF, 0 or 1 |
/// | 102 | 1 | pending_any: nonzero if a bit of `pending` may be set |
/// | 103 | 1 | reserved |
/// | 104 | 32 | pending: 256-bit interrupt bitmap, vector v is bit v%64 of word v/64 |
/// | 136 | 8 | gs_base (the guest's; the real GS base is the vCPU page) |
/// | 144 | 8 | kernel_gs_base (what `swapgs` exchanges with gs_base) |
/// | 152 | 8 | star |
/// | 160 | 8 | lstar |
/// | 168 | 8 | sfmask |
/// | 176 | 8 | cstar |
/// | 184 | 8 | tsc_aux (what `rdtscp` returns in ecx) |
/// | 192 | 24 | sysenter_cs, sysenter_esp, sysenter_eip |
/// | 216 | 8 | pat |
/// | 224 | 8 | misc_enable |
/// | 232 | 8 | debugctl |
/// | 240 | 32 | dr: debug registers 0 to 3 |
/// | 272 | 8 | dr6 |
/// | 280 | 8 | dr7 |
/// | 288 | | end |
#[repr(C)]
#[derive(Debug, Default)]
pub struct Vcpu {
    /// [`VCPU_MAGIC`].
    pub magic: u32,
    /// [`VCPU_VERSION`].
    pub version: u32,
    /// The guest-visible virtual IOPL (the IF bit lives in [`Vcpu::vif`]).
    pub rflags: u64,
    /// Virtual CR0.
    pub cr0: u64,
    /// Virtual CR2 (the VMM server writes it when it reflects a #PF).
    pub cr2: u64,
    /// Virtual CR3: the guest's page-table root (guest-physical).
    pub cr3: u64,
    /// Virtual CR4.
    pub cr4: u64,
    /// Virtual EFER.
    pub efer: u64,
    /// FS base (the real one is the TCB's TLS base, set by the backend).
    pub fs_base: u64,
    /// GDTR base.
    pub gdtr_base: u64,
    /// IDTR base.
    pub idtr_base: u64,
    /// GDTR limit.
    pub gdtr_limit: u16,
    /// IDTR limit.
    pub idtr_limit: u16,
    /// Task register selector.
    pub tr: u16,
    /// LDT register selector.
    pub ldtr: u16,
    /// Segment selectors, indexed by [`SegReg`] encoding.
    pub segs: [u16; 6],
    /// Nonzero while the guest thread is inside the wedge: the VMM server
    /// must not redirect it to the delivery path then.
    pub in_wedge: u8,
    /// Virtual RFLAGS.IF as one byte (0 or 1): the rewritten `cli` is a
    /// single byte store to it, and the `pushf`/`popf`/`sti` fast paths read
    /// and write it without touching the real flags.
    pub vif: u8,
    /// Nonzero if a bit of [`Vcpu::pending`] may be set: one byte the fast
    /// paths test instead of the 256-bit map. Set after a bit is raised;
    /// cleared before the map is found empty, so it is never clear while a
    /// bit is set.
    pub pending_any: AtomicU8,
    /// Reserved, zero.
    pub reserved: u8,
    /// Pending virtual interrupt vectors, set by the VMM server.
    pub pending: [AtomicU64; 4],
    /// MSR_GS_BASE as the guest wrote it. The real GS base is the vCPU
    /// page (seL4 loads it from the IPC buffer address), so the guest's is
    /// virtual: it may write, read and `swapgs` it, never use it through
    /// `%gs:` (the afterburner's audit reports any such use).
    pub gs_base: u64,
    /// MSR_KERNEL_GS_BASE: `swapgs` exchanges it with [`Vcpu::gs_base`].
    pub kernel_gs_base: u64,
    /// MSR_STAR: the selectors `syscall` and `sysret` load.
    pub star: u64,
    /// MSR_LSTAR: where a guest process's `syscall` enters its kernel.
    pub lstar: u64,
    /// MSR_SFMASK: the RFLAGS bits `syscall` clears.
    pub sfmask: u64,
    /// MSR_CSTAR: the compatibility-mode `syscall` entry (kept, never
    /// entered: guest processes run 64-bit code).
    pub cstar: u64,
    /// MSR_TSC_AUX: what `rdtscp` returns in ecx (Linux: the CPU number).
    pub tsc_aux: u64,
    /// MSR_IA32_SYSENTER_CS (kept, never entered: `sysenter` is #UD in
    /// 64-bit mode on the CPU guests see).
    pub sysenter_cs: u64,
    /// MSR_IA32_SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// MSR_IA32_SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// MSR_IA32_CR_PAT (kept: the virtual TLB maps guest RAM write-back
    /// whatever the guest's memory types say).
    pub pat: u64,
    /// MSR_IA32_MISC_ENABLE.
    pub misc_enable: u64,
    /// MSR_IA32_DEBUGCTL (kept: no branch tracing happens).
    pub debugctl: u64,
    /// Debug registers 0 to 3: breakpoint addresses. Virtual only: no
    /// hardware breakpoint the guest sets ever fires.
    pub dr: [u64; 4],
    /// Debug status (DR6), reserved bits as hardware reads them.
    pub dr6: u64,
    /// Debug control (DR7), reserved bits as hardware reads them.
    pub dr7: u64,
}

/// Where [`Vcpu::vif`] is in the `Vcpu` (the VMM reads it to decide whether
/// it may redirect the running guest).
pub const VIF_OFFSET: u64 = core::mem::offset_of!(Vcpu, vif) as u64;
/// Where [`Vcpu::pending_any`] is in the `Vcpu` (the VMM sets it).
pub const PENDING_ANY_OFFSET: u64 = core::mem::offset_of!(Vcpu, pending_any) as u64;

// The documented layout, checked when the crate compiles.
const _: () = {
    assert!(size_of::<Vcpu>() == 288);
    assert!(core::mem::offset_of!(Vcpu, gs_base) == 136);
    assert!(core::mem::offset_of!(Vcpu, sfmask) == 168);
    assert!(core::mem::offset_of!(Vcpu, tsc_aux) == 184);
    assert!(core::mem::offset_of!(Vcpu, dr) == 240);
    assert!(core::mem::offset_of!(Vcpu, dr7) == 280);
    assert!(core::mem::offset_of!(Vcpu, rflags) == 8);
    assert!(core::mem::offset_of!(Vcpu, cr3) == 32);
    assert!(core::mem::offset_of!(Vcpu, segs) == 88);
    assert!(core::mem::offset_of!(Vcpu, in_wedge) == 100);
    assert!(VIF_OFFSET == 101);
    assert!(PENDING_ANY_OFFSET == 102);
    assert!(core::mem::offset_of!(Vcpu, pending) == 104);
};

impl Vcpu {
    /// The state at the PV entry (docs/pv-boot.md): 64-bit paging mode with
    /// WP, flat selectors, virtual interrupts off, nothing pending.
    pub fn at_pv_entry(cr3: u64) -> Vcpu {
        let mut v = Vcpu {
            magic: VCPU_MAGIC,
            version: VCPU_VERSION,
            rflags: FLAG_FIXED,
            vif: 0,
            cr0: CR0_PE | CR0_WP | CR0_PG | (1 << 4), // ET is hard-wired to 1
            cr3,
            cr4: CR4_PAE,
            efer: EFER_LME | EFER_LMA,
            pat: PAT_AT_RESET,
            misc_enable: MISC_ENABLE_AT_RESET,
            dr6: DR6_AT_RESET,
            dr7: DR7_AT_RESET,
            ..Vcpu::default()
        };
        v.segs = [BOOT_DS, BOOT_CS, BOOT_DS, BOOT_DS, BOOT_DS, BOOT_DS];
        v
    }

    /// The state at Linux's `startup_64` (its 64-bit boot protocol): as at
    /// the PV entry, with Linux's boot selectors.
    pub fn at_linux_entry(cr3: u64) -> Vcpu {
        let mut v = Vcpu::at_pv_entry(cr3);
        let (cs, ds) = (LINUX_BOOT_CS, LINUX_BOOT_DS);
        v.segs = [ds, cs, ds, ds, ds, ds];
        v
    }

    /// Virtual RFLAGS.IF.
    pub fn interrupts_enabled(&self) -> bool {
        self.vif != 0
    }

    /// Sets or clears virtual RFLAGS.IF.
    pub fn set_interrupts_enabled(&mut self, on: bool) {
        self.vif = u8::from(on);
    }

    /// The virtual flags (IF and IOPL) as RFLAGS bits.
    pub fn virtual_flags(&self) -> u64 {
        (self.rflags & FLAG_IOPL)
            | if self.interrupts_enabled() {
                FLAG_IF
            } else {
                0
            }
    }

    /// The RFLAGS image the guest sees (`pushf`, interrupt frames): the real
    /// flags with the virtual IF/IOPL, bit 1 set, RF and VM clear.
    pub fn visible_rflags(&self, real: u64) -> u64 {
        ((real & !VIRTUAL_FLAGS) | self.virtual_flags() | FLAG_FIXED) & !(FLAG_RF | FLAG_VM)
    }

    /// Applies a flags image the guest loads (`popf`, `iret`): virtual bits
    /// into the vCPU, the CPL 3 writable bits into `real`, the rest of
    /// `real` kept.
    pub fn load_rflags(&mut self, real: &mut u64, image: u64) {
        self.rflags = (self.rflags & !FLAG_IOPL) | (image & FLAG_IOPL);
        self.set_interrupts_enabled(image & FLAG_IF != 0);
        *real = (*real & !REAL_POPF_FLAGS) | (image & REAL_POPF_FLAGS);
    }

    /// A selector.
    pub fn seg(&self, s: SegReg) -> u16 {
        self.segs[s as usize]
    }

    /// Sets a selector.
    pub fn set_seg(&mut self, s: SegReg, v: u16) {
        self.segs[s as usize] = v;
    }

    /// Marks `vector` pending (the VMM server's side, and tests).
    pub fn raise(&self, vector: u8) {
        let word = &self.pending[usize::from(vector / 64)];
        word.fetch_or(1 << (vector % 64), Ordering::AcqRel);
        self.pending_any.store(1, Ordering::Release);
    }

    /// True if any vector is pending.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|w| w.load(Ordering::Acquire) != 0)
    }

    /// The highest pending vector (x86 gives higher vectors priority),
    /// without clearing it.
    pub fn highest_pending(&self) -> Option<u8> {
        for (i, w) in self.pending.iter().enumerate().rev() {
            let bits = w.load(Ordering::Acquire);
            if bits != 0 {
                // i < 4 and the bit index < 64, so this is below 256.
                return u8::try_from(i * 64 + 63 - bits.leading_zeros() as usize).ok();
            }
        }
        None
    }

    /// Clears `vector`'s pending bit; returns whether it was set.
    pub fn take(&self, vector: u8) -> bool {
        let bit = 1u64 << (vector % 64);
        let old = self.pending[usize::from(vector / 64)].fetch_and(!bit, Ordering::AcqRel);
        // Clear the summary first, then look: a vector raised meanwhile sets
        // it again, so it is never left clear with a bit set.
        self.pending_any.store(0, Ordering::Release);
        if self.has_pending() {
            self.pending_any.store(1, Ordering::Release);
        }
        old & bit != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layout_matches_the_documented_offsets() {
        assert_eq!(offset_of!(Vcpu, rflags), 8);
        assert_eq!(offset_of!(Vcpu, cr0), 16);
        assert_eq!(offset_of!(Vcpu, cr2), 24);
        assert_eq!(offset_of!(Vcpu, cr3), 32);
        assert_eq!(offset_of!(Vcpu, cr4), 40);
        assert_eq!(offset_of!(Vcpu, efer), 48);
        assert_eq!(offset_of!(Vcpu, fs_base), 56);
        assert_eq!(offset_of!(Vcpu, gdtr_base), 64);
        assert_eq!(offset_of!(Vcpu, idtr_base), 72);
        assert_eq!(offset_of!(Vcpu, gdtr_limit), 80);
        assert_eq!(offset_of!(Vcpu, idtr_limit), 82);
        assert_eq!(offset_of!(Vcpu, tr), 84);
        assert_eq!(offset_of!(Vcpu, ldtr), 86);
        assert_eq!(offset_of!(Vcpu, segs), 88);
        assert_eq!(offset_of!(Vcpu, in_wedge), 100);
        assert_eq!(offset_of!(Vcpu, vif), 101);
        assert_eq!(offset_of!(Vcpu, pending_any), 102);
        assert_eq!(offset_of!(Vcpu, pending), 104);
        assert_eq!(offset_of!(Vcpu, gs_base), 136);
        assert_eq!(offset_of!(Vcpu, kernel_gs_base), 144);
        assert_eq!(offset_of!(Vcpu, star), 152);
        assert_eq!(offset_of!(Vcpu, lstar), 160);
        assert_eq!(offset_of!(Vcpu, sfmask), 168);
        assert_eq!(offset_of!(Vcpu, cstar), 176);
        assert_eq!(offset_of!(Vcpu, tsc_aux), 184);
        assert_eq!(offset_of!(Vcpu, sysenter_cs), 192);
        assert_eq!(offset_of!(Vcpu, sysenter_esp), 200);
        assert_eq!(offset_of!(Vcpu, sysenter_eip), 208);
        assert_eq!(offset_of!(Vcpu, pat), 216);
        assert_eq!(offset_of!(Vcpu, misc_enable), 224);
        assert_eq!(offset_of!(Vcpu, debugctl), 232);
        assert_eq!(offset_of!(Vcpu, dr), 240);
        assert_eq!(offset_of!(Vcpu, dr6), 272);
        assert_eq!(offset_of!(Vcpu, dr7), 280);
        assert_eq!(size_of::<Vcpu>(), 288);
    }

    #[test]
    fn pending_bitmap_priority_and_take() {
        let v = Vcpu::at_pv_entry(0x1000);
        assert_eq!(v.highest_pending(), None);
        assert_eq!(v.pending_any.load(Ordering::Relaxed), 0);
        v.raise(0x20);
        assert_eq!(v.pending_any.load(Ordering::Relaxed), 1);
        v.raise(0xff);
        v.raise(3);
        assert_eq!(v.highest_pending(), Some(0xff));
        assert!(v.take(0xff));
        assert!(!v.take(0xff));
        assert_eq!(v.highest_pending(), Some(0x20));
        v.take(0x20);
        assert_eq!(v.highest_pending(), Some(3));
        assert_eq!(
            v.pending_any.load(Ordering::Relaxed),
            1,
            "3 is still pending"
        );
        v.take(3);
        assert_eq!(
            v.pending_any.load(Ordering::Relaxed),
            0,
            "nothing is pending"
        );
    }

    #[test]
    fn linux_enters_with_its_boot_selectors() {
        let v = Vcpu::at_linux_entry(0x7ff_5000);
        assert_eq!(v.seg(SegReg::Cs), 0x10);
        for s in [SegReg::Ds, SegReg::Es, SegReg::Ss, SegReg::Fs, SegReg::Gs] {
            assert_eq!(v.seg(s), 0x18);
        }
        assert_eq!(v.cr3, 0x7ff_5000);
        assert!(!v.interrupts_enabled(), "IF clear at startup_64");
        let pv = Vcpu::at_pv_entry(0x7ff_5000);
        assert_eq!((v.cr0, v.cr4, v.efer), (pv.cr0, pv.cr4, pv.efer));
    }

    #[test]
    fn flags_split_between_virtual_and_real() {
        let mut v = Vcpu::at_pv_entry(0);
        let mut real = FLAG_IF | FLAG_FIXED; // seL4 runs user code with IF set
        v.load_rflags(&mut real, FLAG_CF | FLAG_IOPL);
        assert_eq!(real & FLAG_IF, FLAG_IF, "real IF untouched");
        assert_eq!(real & FLAG_CF, FLAG_CF);
        assert_eq!(real & FLAG_IOPL, 0, "IOPL never reaches the real flags");
        assert_eq!(v.rflags & FLAG_IOPL, FLAG_IOPL);
        assert!(!v.interrupts_enabled());
        assert_eq!(v.visible_rflags(real) & (FLAG_IF | FLAG_CF), FLAG_CF);
    }
}
