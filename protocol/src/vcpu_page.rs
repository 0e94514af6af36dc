//! The wedge area's layout, and the vCPU page the wedge and the VMM server
//! share (docs/protocol.md).
//!
//! The wedge area is the top [`WEDGE_AREA`] bytes of the guest's RAM, mapped
//! at [`WEDGE_BASE`](crate::WEDGE_BASE) in the guest's address space: the
//! wedge's ELF from its start, then the vCPU page, then the boot block page.
//!
//! The vCPU page is the guest thread's seL4 IPC buffer, so the kernel points
//! the thread's GS base at it on every return to user level. That gives the
//! guest's rewritten sites an address for the virtual CPU that needs no
//! register and no reach from the guest's code: `movb $0, %gs:VIF` is a
//! whole `cli`. The guest kernel never uses `%gs:` (the afterburner's audit
//! checks it).
//!
//! | offset | what |
//! |---|---|
//! | 0 | the seL4 IPC buffer (1 KiB; the protocol uses registers only) |
//! | [`DEFERRED_EOI_OFFSET`] | EOIs to the master 8259 not passed on yet (`u32`) |
//! | [`VCPU_OFFSET`] | the [`Vcpu`](crate::vcpu::Vcpu) (this crate's `vcpu` module) |
//! | [`FAST_SLOTS_OFFSET`] | entries of the `sti`/`pushf`/`popf`/`iretq`/`outb $0x20` fast paths, one `u64` each |
//! | [`STATS_OFFSET`] | [`WedgeStats`] |

use crate::WEDGE_BASE;

const PAGE: u64 = 4096;

/// Bytes of guest RAM (at its top) the VMM server reserves for the wedge.
pub const WEDGE_AREA: u64 = 1 << 20;
/// The boot block page's offset in the wedge area (its last page).
pub const BOOT_BLOCK_OFFSET: u64 = WEDGE_AREA - PAGE;
/// The vCPU page's offset in the wedge area (the page before the boot
/// block); the wedge's ELF must end below it.
pub const VCPU_PAGE_OFFSET: u64 = WEDGE_AREA - 2 * PAGE;
/// The vCPU page in the guest's address space (the guest thread's IPC
/// buffer and GS base).
pub const VCPU_PAGE: u64 = WEDGE_BASE + VCPU_PAGE_OFFSET;
/// Where in the vCPU page the wedge counts the guest's non-specific EOIs to
/// the master 8259 (`outb $0x20, $0x20`) it has not passed on yet: a `u32`
/// the VMM applies to its PIC, and clears, before it next looks at the
/// PIC. An EOI changes nothing the guest can see until the PIC's next
/// decision, which only the VMM makes, so the IPC can wait until then.
pub const DEFERRED_EOI_OFFSET: u64 = 1024;
/// Where in the vCPU page the `Vcpu` starts.
pub const VCPU_OFFSET: u64 = 2048;
/// Where in the vCPU page the fast-path entries start: [`FAST_STI`],
/// [`FAST_PUSHF`], [`FAST_POPF`], [`FAST_IRET`], [`FAST_PIC_COMMAND`] (each
/// an `u64` address in the wedge).
pub const FAST_SLOTS_OFFSET: u64 = 3072;
/// Index of the `sti` fast path's entry.
pub const FAST_STI: u64 = 0;
/// Index of the `pushf` fast path's entry.
pub const FAST_PUSHF: u64 = 1;
/// Index of the `popf` fast path's entry.
pub const FAST_POPF: u64 = 2;
/// Index of the `iretq` fast path's entry.
pub const FAST_IRET: u64 = 3;
/// Index of the entry of the fast path for `outb %al, $0x20`.
pub const FAST_PIC_COMMAND: u64 = 4;
/// Where in the vCPU page the wedge keeps its [`WedgeStats`].
pub const STATS_OFFSET: u64 = 3200;

/// Kind numbers of the `.afterburn` format fit below this.
pub const KIND_SLOTS: usize = 64;

/// "WSTATS01" as the first word: the wedge has filled the statistics.
pub const WEDGE_STATS_MAGIC: u64 = u64::from_le_bytes(*b"WSTATS01");

/// What the wedge counts, for the VMM server to report at the guest's end.
/// Fast paths are not counted (a counter would double their cost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct WedgeStats {
    /// [`WEDGE_STATS_MAGIC`] once the wedge has rewritten the guest.
    pub magic: u64,
    /// Sites rewritten, by `.afterburn` kind number.
    pub rewritten: [u32; KIND_SLOTS],
    /// Of those, sites rewritten into an inline or fast-path form.
    pub fast: u32,
    /// Sites left native (rdtsc, ud2) and in opted-out regions.
    pub native: u32,
    /// Site calls the wedge emulated in its general path, by kind number.
    pub emulated: [u64; KIND_SLOTS],
    /// Exceptions the VMM reflected that the wedge delivered.
    pub reflected: u64,
    /// External interrupts the wedge took after a site (asking the VMM's
    /// acknowledge cycle).
    pub interrupts_at_sites: u64,
    /// External interrupts the VMM sent the running guest into the wedge
    /// with.
    pub interrupts_redirected: u64,
    /// Returns to a guest process the wedge asked the VMM for (`iretq` to
    /// CPL 3, `sysretq`).
    pub user_entries: u64,
    /// Guest processes' `syscall`s the wedge entered the guest kernel with.
    pub user_syscalls: u64,
    /// Sites left native because their instruction does not decode (a
    /// kind or form the wedge does not emulate yet), and the first one's
    /// address (0: none).
    pub undecodable: u64,
    pub first_undecodable: u64,
    /// Where the wedge stopped the guest because a site could not be
    /// emulated: the site's address as it ran (0: it did not), its kind
    /// number, why ([`STOP_MEMORY`], ...) and a value that says more (the
    /// address for [`STOP_MEMORY`]).
    pub stopped_at: u64,
    pub stopped_kind: u64,
    pub stopped_error: u64,
    pub stopped_value: u64,
}

/// [`WedgeStats::stopped_error`]: the instruction did not decode.
pub const STOP_DECODE: u64 = 1;
/// A form the wedge does not emulate (yet), or a pair other than `sti; hlt`.
pub const STOP_UNSUPPORTED: u64 = 2;
/// A guest memory access the wedge refused (the value: its address).
pub const STOP_MEMORY: u64 = 3;
/// The VMM refused a request, or the IPC failed.
pub const STOP_BACKEND: u64 = 4;
/// An exception or interrupt could not be delivered.
pub const STOP_DELIVERY: u64 = 5;

impl Default for WedgeStats {
    fn default() -> Self {
        WedgeStats {
            magic: 0,
            rewritten: [0; KIND_SLOTS],
            fast: 0,
            native: 0,
            emulated: [0; KIND_SLOTS],
            reflected: 0,
            interrupts_at_sites: 0,
            interrupts_redirected: 0,
            user_entries: 0,
            user_syscalls: 0,
            undecodable: 0,
            first_undecodable: 0,
            stopped_at: 0,
            stopped_kind: 0,
            stopped_error: 0,
            stopped_value: 0,
        }
    }
}

impl WedgeStats {
    /// Size in bytes.
    pub const SIZE: usize = size_of::<WedgeStats>();

    /// Reads the statistics from their bytes in the vCPU page (the VMM
    /// server's copy of guest RAM). Any bytes are a valid value: the guest
    /// can write them, so the VMM only ever prints them.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> WedgeStats {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(w)
        };
        let mut s = WedgeStats {
            magic: u64_at(0),
            ..WedgeStats::default()
        };
        for (i, n) in s.rewritten.iter_mut().enumerate() {
            *n = u32_at(8 + 4 * i);
        }
        let after = 8 + 4 * KIND_SLOTS;
        s.fast = u32_at(after);
        s.native = u32_at(after + 4);
        for (i, n) in s.emulated.iter_mut().enumerate() {
            *n = u64_at(after + 8 + 8 * i);
        }
        let tail = after + 8 + 8 * KIND_SLOTS;
        s.reflected = u64_at(tail);
        s.interrupts_at_sites = u64_at(tail + 8);
        s.interrupts_redirected = u64_at(tail + 16);
        s.user_entries = u64_at(tail + 24);
        s.user_syscalls = u64_at(tail + 32);
        s.undecodable = u64_at(tail + 40);
        s.first_undecodable = u64_at(tail + 48);
        s.stopped_at = u64_at(tail + 56);
        s.stopped_kind = u64_at(tail + 64);
        s.stopped_error = u64_at(tail + 72);
        s.stopped_value = u64_at(tail + 80);
        s
    }
}

// The page's parts must not overlap, and the statistics must fit.
const _: () = assert!(VCPU_OFFSET + size_of::<crate::vcpu::Vcpu>() as u64 <= FAST_SLOTS_OFFSET);
const _: () = assert!(FAST_SLOTS_OFFSET + 5 * 8 <= STATS_OFFSET);
const _: () = assert!(STATS_OFFSET + WedgeStats::SIZE as u64 <= PAGE);
const _: () = assert!(VCPU_PAGE % PAGE == 0);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn from_bytes_reads_the_repr_c_layout() {
        let mut want = WedgeStats {
            magic: WEDGE_STATS_MAGIC,
            fast: 7,
            native: 3,
            reflected: 11,
            ..WedgeStats::default()
        };
        want.rewritten[5] = 42;
        want.emulated[63] = 1 << 40;
        want.interrupts_redirected = 77;
        want.user_syscalls = 5;
        want.undecodable = 74;
        want.first_undecodable = 0xffff_ffff_8120_015d;
        want.stopped_at = 0x100_0040;
        want.stopped_error = STOP_MEMORY;
        want.stopped_value = 0xffff_8000_0000_0000;
        // SAFETY: WedgeStats is repr(C) of integers with no padding (checked
        // below), so its bytes are initialised.
        let bytes: [u8; WedgeStats::SIZE] = unsafe { core::mem::transmute(want) };
        assert_eq!(WedgeStats::from_bytes(&bytes), want);
        assert_eq!(offset_of!(WedgeStats, fast), 8 + 4 * KIND_SLOTS);
        assert_eq!(offset_of!(WedgeStats, emulated), 16 + 4 * KIND_SLOTS);
        assert_eq!(
            WedgeStats::SIZE,
            16 + 4 * KIND_SLOTS + 8 * KIND_SLOTS + 88,
            "no padding"
        );
    }
}
