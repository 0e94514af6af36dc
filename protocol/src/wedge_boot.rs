//! What the VMM server hands the wedge when it starts the guest thread in it
//! (the address of one of these is in rdi).

use crate::address_space::{pml4_entry_address, SEL4_PML4_ENTRY};

/// "WEDGBOOT" as the first word.
pub const WEDGE_BOOT_MAGIC: u64 = u64::from_le_bytes(*b"WEDGBOOT");

/// The start of the wedge's region in every guest address space: PML4
/// entry 257, the first a user may map after seL4's own (256), in the
/// hypervisor hole that Linux leaves free whatever its configuration
/// (docs/pv-boot.md, docs/linux.md).
pub const WEDGE_BASE: u64 = 0xffff_8080_0000_0000;

// The wedge's whole area is in one PML4 entry a user may map.
const _: () = {
    use crate::address_space::{is_user_address, pml4_index};
    let last = WEDGE_BASE + crate::WEDGE_AREA - 1;
    assert!(is_user_address(WEDGE_BASE) && is_user_address(last));
    assert!(pml4_index(WEDGE_BASE) == pml4_index(last));
};

/// seL4's own PML4 entry (256), `[start, end)`: its physical-memory
/// window, image and devices (docs/sel4-layout.md). No guest mapping can be
/// there, and nothing the wedge does for a guest may reach into it.
pub const SEL4_REGION: (u64, u64) = match (
    pml4_entry_address(SEL4_PML4_ENTRY),
    pml4_entry_address(SEL4_PML4_ENTRY + 1),
) {
    (Some(start), Some(end)) => (start, end),
    _ => panic!("seL4's PML4 entry is not the last"),
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct WedgeBoot {
    pub magic: u64,
    /// The guest's 64-bit PV entry.
    pub pv_entry: u64,
    /// The `PvBootInfo` the guest gets in rdi.
    pub boot_info: u64,
    /// The guest's CR3 at entry (the VMM's identity map).
    pub cr3: u64,
    /// The `.afterburn` records in guest memory.
    pub afterburn: u64,
    pub afterburn_len: u64,
    /// The guest code the records point into: `[code_start, code_end)`.
    pub code_start: u64,
    pub code_end: u64,
    /// Written by the wedge at start: where the VMM sends the guest thread
    /// to have an exception delivered into the guest (with a `Reflection`
    /// at `REFLECTION_OFFSET` from this block).
    pub reflect_entry: u64,
    /// Written by the wedge at start: its fast paths' code, `[fast_begin,
    /// fast_end)`. They run on the guest's stack and keep no wedge state, so
    /// the VMM may move a guest stopped there into `reflect_entry` to take
    /// an interrupt, as it may a guest stopped in its own code; never one
    /// stopped elsewhere in the wedge.
    pub fast_begin: u64,
    pub fast_end: u64,
    /// How the wedge enters the guest: [`ENTER_PV`] (docs/pv-boot.md) or
    /// [`ENTER_LINUX`] (Linux's 64-bit boot protocol).
    pub protocol: u64,
    /// The guest's code also runs at its address minus this, before the
    /// guest switches to the addresses it is linked at (Linux enters
    /// `startup_64` at its physical address, `__START_KERNEL_map` below
    /// the one its records name); 0 if it runs only where it is linked.
    pub code_alias: u64,
    /// The guest's table of code it copies over its own before running it
    /// (Linux's `.altinstructions`, 6.1's `struct alt_instr`), at the
    /// addresses its records use; 0 and 0: none. The wedge rewrites a site
    /// inside a replacement for the place it is copied to
    /// (`wedge_l4::alternatives`).
    pub alternatives: u64,
    pub alternatives_len: u64,
}

/// [`WedgeBoot::protocol`]: the PV boot protocol (docs/pv-boot.md):
/// `rdi` = `boot_info`, the flat selectors 0x08 and 0x10.
pub const ENTER_PV: u64 = 0;
/// [`WedgeBoot::protocol`]: Linux's 64-bit boot protocol
/// (`Documentation/x86/boot.rst`): `rsi` = the zero page (`boot_info`; the
/// wedge sets `rdi` to it too), `__BOOT_CS` 0x10 and `__BOOT_DS` 0x18.
pub const ENTER_LINUX: u64 = 1;

/// Where, from the boot block, the VMM writes a `Reflection`.
pub const REFLECTION_OFFSET: u64 = 512;

/// [`Reflection::vector`] for a guest process's `syscall` (no exception
/// has this number): the wedge enters the guest kernel as the instruction
/// would (rcx, r11, SFMASK, STAR's selectors, LSTAR), with
/// [`Reflection::rip`] the instruction after it.
pub const REFLECT_SYSCALL: u64 = 0x100;

/// [`Reflection::vector`] `REFLECT_SOFTWARE_INTERRUPT + n` for a guest
/// process's `int $n` (`cd n` at [`Reflection::rip`]) that seL4's IDT did
/// not let through: the wedge checks the guest's gate as the CPU would
/// (DPL 3: vector n, returning past the instruction; else #GP(8n+2) at it).
pub const REFLECT_SOFTWARE_INTERRUPT: u64 = 0x200;

/// [`Reflection::vector`] for a site at [`Reflection::rip`] whose call
/// could not push its return address (the stack was a guest process's,
/// not writable): the wedge emulates the site as if called, with nothing
/// pushed, and goes on after it.
pub const REFLECT_SITE: u64 = 0x300;

/// An exception the guest must see. The VMM writes it, then moves the
/// faulting guest thread's rip (only rip) to the wedge's `reflect_entry`:
/// every other register still holds the guest's value at the fault, and the
/// wedge saves them itself, as at a site.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Reflection {
    pub vector: u64,
    /// The error code the kernel reported; the wedge pushes it only for
    /// vectors whose frame has one.
    pub error: u64,
    /// The faulting address, for #PF.
    pub cr2: u64,
    /// Where the guest faulted (the fault message's instruction pointer).
    pub rip: u64,
}

impl Reflection {
    pub fn to_bytes(&self) -> [u8; size_of::<Reflection>()] {
        let mut out = [0u8; size_of::<Reflection>()];
        for (i, w) in [self.vector, self.error, self.cr2, self.rip]
            .iter()
            .enumerate()
        {
            out[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

impl WedgeBoot {
    pub fn to_bytes(&self) -> [u8; size_of::<WedgeBoot>()] {
        let words = [
            self.magic,
            self.pv_entry,
            self.boot_info,
            self.cr3,
            self.afterburn,
            self.afterburn_len,
            self.code_start,
            self.code_end,
            self.reflect_entry,
            self.fast_begin,
            self.fast_end,
            self.protocol,
            self.code_alias,
            self.alternatives,
            self.alternatives_len,
        ];
        let mut out = [0u8; size_of::<WedgeBoot>()];
        for (i, w) in words.iter().enumerate() {
            out[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_the_repr_c_layout() {
        let b = WedgeBoot {
            magic: WEDGE_BOOT_MAGIC,
            pv_entry: 0x200144,
            code_end: 7,
            ..WedgeBoot::default()
        }
        .to_bytes();
        assert_eq!(&b[..8], b"WEDGBOOT");
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 0x200144);
        assert_eq!(u64::from_le_bytes(b[56..64].try_into().unwrap()), 7);
        assert_eq!(core::mem::offset_of!(WedgeBoot, code_end), 56);
        assert_eq!(core::mem::offset_of!(WedgeBoot, reflect_entry), 64);
        assert_eq!(core::mem::offset_of!(WedgeBoot, fast_end), 80);
        assert_eq!(core::mem::offset_of!(WedgeBoot, protocol), 88);
        assert_eq!(core::mem::offset_of!(WedgeBoot, code_alias), 96);
        assert_eq!(core::mem::offset_of!(WedgeBoot, alternatives), 104);
        let alt = WedgeBoot {
            alternatives: 0xffff_ffff_8193_8bb0,
            alternatives_len: 0x2e20,
            ..WedgeBoot::default()
        }
        .to_bytes();
        assert_eq!(
            u64::from_le_bytes(alt[104..112].try_into().unwrap()),
            0xffff_ffff_8193_8bb0
        );
        assert_eq!(
            u64::from_le_bytes(alt[112..120].try_into().unwrap()),
            0x2e20
        );
        let linux = WedgeBoot {
            protocol: ENTER_LINUX,
            code_alias: 0xffff_ffff_8000_0000,
            ..WedgeBoot::default()
        }
        .to_bytes();
        assert_eq!(u64::from_le_bytes(linux[88..96].try_into().unwrap()), 1);
        assert_eq!(
            u64::from_le_bytes(linux[96..104].try_into().unwrap()),
            0xffff_ffff_8000_0000
        );
        let r = Reflection {
            vector: 14,
            rip: 9,
            ..Reflection::default()
        }
        .to_bytes();
        assert_eq!(u64::from_le_bytes(r[..8].try_into().unwrap()), 14);
        assert_eq!(u64::from_le_bytes(r[8 * 3..8 * 4].try_into().unwrap()), 9);
        assert_eq!(core::mem::offset_of!(Reflection, rip), 8 * 3);
    }
}
