//! The shape of every seL4 address space on previrt's kernel (seL4 patch
//! 0005, docs/sel4-layout.md): 4-level paging, 48-bit canonical addresses,
//! and one PML4 entry of the 512 that is seL4's own — entry 256, the first
//! of the hypervisor hole an x86-64 Linux leaves free — and every other the
//! user's. Declared once for the tools that lay out address spaces (the
//! CapDL validator, builder and loader) and for the addresses this crate
//! promises ([`WEDGE_BASE`](crate::WEDGE_BASE)).

/// Entries of a PML4 (and of every paging structure): 9 bits of address.
pub const PML4_ENTRIES: u64 = 512;

/// log2 of the span of one PML4 entry (512 GiB).
pub const PML4_ENTRY_BITS: u32 = 39;

/// The PML4 entry seL4 keeps for itself (physical-memory window, image,
/// devices): `0xffff800000000000..0xffff808000000000`, the kernel's
/// `KERNEL_HOLE_BASE..KERNEL_HOLE_TOP`. seL4 refuses a user mapping there.
pub const SEL4_PML4_ENTRY: u64 = 256;

/// Whether a user may map in PML4 entry `index`: every entry but seL4's.
pub const fn pml4_entry_is_users(index: u64) -> bool {
    index < PML4_ENTRIES && index != SEL4_PML4_ENTRY
}

/// Whether `va` is canonical: bits 47 to 63 all equal. The page-table walk
/// ignores bits 48 to 63, so a non-canonical address would alias a
/// canonical one; the CPU refuses it, and so does seL4.
pub const fn is_canonical(va: u64) -> bool {
    matches!(va >> 47, 0 | 0x1_ffff)
}

/// The PML4 entry `va` is in (its bits 39 to 47).
pub const fn pml4_index(va: u64) -> u64 {
    (va >> PML4_ENTRY_BITS) % PML4_ENTRIES
}

/// The first address of PML4 entry `index`, or `None` past the last
/// entry: entries 256 and up are in the upper half, their addresses
/// sign-extended from bit 47 (entry 257 is `0xffff808000000000`, not the
/// non-canonical `0x808000000000`).
pub const fn pml4_entry_address(index: u64) -> Option<u64> {
    if index >= PML4_ENTRIES {
        return None;
    }
    let low = index << PML4_ENTRY_BITS;
    Some(if index >= PML4_ENTRIES / 2 {
        low | !((1 << 48) - 1)
    } else {
        low
    })
}

/// Whether a user may map the page at `va`: canonical and outside seL4's
/// PML4 entry.
pub const fn is_user_address(va: u64) -> bool {
    is_canonical(va) && pml4_entry_is_users(pml4_index(va))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_entry_but_sel4s_is_the_users() {
        assert!(pml4_entry_is_users(0));
        assert!(pml4_entry_is_users(255));
        assert!(!pml4_entry_is_users(256));
        assert!(pml4_entry_is_users(257));
        assert!(pml4_entry_is_users(511));
        assert!(!pml4_entry_is_users(512));
        assert!(!pml4_entry_is_users(u64::MAX));
    }

    #[test]
    fn entries_of_the_upper_half_are_sign_extended() {
        assert_eq!(pml4_entry_address(0), Some(0));
        assert_eq!(pml4_entry_address(255), Some(0x7f80_0000_0000));
        assert_eq!(pml4_entry_address(256), Some(0xffff_8000_0000_0000));
        assert_eq!(pml4_entry_address(257), Some(0xffff_8080_0000_0000));
        assert_eq!(pml4_entry_address(511), Some(0xffff_ff80_0000_0000));
        assert_eq!(pml4_entry_address(512), None);
    }

    #[test]
    fn user_addresses_at_each_boundary() {
        // The last page of entry 255, the top of the lower half.
        assert!(is_user_address(0x7fff_ffff_f000));
        // seL4's entry, first and last page.
        assert!(!is_user_address(0xffff_8000_0000_0000));
        assert!(!is_user_address(0xffff_807f_ffff_f000));
        // Entry 257, the wedge's, and the top of the address space.
        assert!(is_user_address(0xffff_8080_0000_0000));
        assert!(is_user_address(0xffff_ffff_ffff_f000));
        // Non-canonical: above the lower half, and an alias of address 0.
        assert!(!is_user_address(0x8000_0000_0000));
        assert!(!is_user_address(0x1_0000_0000_0000));
        assert!(!is_user_address(0x8000_0000_0000_0000));
    }

    proptest! {
        #[test]
        fn an_entry_holds_exactly_the_canonical_addresses_with_its_index(
            index in 0..PML4_ENTRIES,
            offset in 0..1u64 << PML4_ENTRY_BITS,
        ) {
            let Some(base) = pml4_entry_address(index) else {
                return Err(TestCaseError::fail("an entry below 512 has an address"));
            };
            let va = base + offset;
            prop_assert!(is_canonical(va));
            prop_assert_eq!(pml4_index(va), index);
            prop_assert_eq!(is_user_address(va), index != SEL4_PML4_ENTRY);
        }

        #[test]
        fn a_non_canonical_address_is_never_the_users(va in any::<u64>()) {
            let canonical = (va as i64) << 16 >> 16 == va as i64;
            prop_assert_eq!(is_canonical(va), canonical);
            if !canonical {
                prop_assert!(!is_user_address(va));
            }
        }
    }
}
