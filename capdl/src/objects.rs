//! Kernel object types of the x86_64 subset and their sizes.
//!
//! This module is `no_std` and allocation-free: the loader uses the same
//! numbers as the validator, so the two cannot disagree about what fits.
//!
//! Sizes are those of seL4 5.0.0 for x86_64 (`libsel4/sel4_arch_include/
//! x86_64/sel4/sel4_arch/constants.h` and `libsel4/arch_include/x86/sel4/
//! arch/constants.h`): `seL4_TCBBits` 11, `seL4_EndpointBits` 4,
//! `seL4_NotificationBits` 5, `seL4_SlotBits` 5, `seL4_PageBits` 12,
//! `seL4_LargePageBits` 21, `seL4_PageTableBits` = `seL4_PageDirBits` =
//! `seL4_PDPTBits` = `seL4_PML4Bits` 12, `seL4_ASIDPoolBits` 12,
//! `seL4_MinUntypedBits` 4, `seL4_MaxUntypedBits` 47.

use serde::{Deserialize, Serialize};

/// `seL4_TCBBits` on x86_64.
pub const TCB_BITS: u8 = 11;
/// `seL4_EndpointBits`.
pub const ENDPOINT_BITS: u8 = 4;
/// `seL4_NotificationBits` on 64-bit.
pub const NOTIFICATION_BITS: u8 = 5;
/// `seL4_SlotBits` on 64-bit: one CNode slot is 32 bytes.
pub const SLOT_BITS: u8 = 5;
/// `seL4_PageBits`.
pub const PAGE_BITS: u8 = 12;
/// `seL4_LargePageBits` on x86_64.
pub const LARGE_PAGE_BITS: u8 = 21;
/// `seL4_PageTableBits`, `seL4_PageDirBits`, `seL4_PDPTBits`, `seL4_PML4Bits`.
pub const PAGING_STRUCTURE_BITS: u8 = 12;
/// `seL4_ASIDPoolBits`.
pub const ASID_POOL_BITS: u8 = 12;
/// `seL4_MinUntypedBits`.
pub const MIN_UNTYPED_BITS: u8 = 4;
/// `seL4_MaxUntypedBits` on x86_64.
pub const MAX_UNTYPED_BITS: u8 = 47;
/// Every x86_64 paging structure has 512 entries (9 bits of the address).
pub const PAGING_ENTRIES: u64 = 512;
/// seL4 keeps one PML4 entry (256) for itself: user mappings live in every
/// other (patch 0005; the rule is `previrt_protocol::address_space`'s).
pub use previrt_protocol::address_space::{
    is_canonical, is_user_address, pml4_entry_address, pml4_entry_is_users, SEL4_PML4_ENTRY,
};
/// `seL4_IPCBufferSizeBits`: the IPC buffer must be aligned to its size.
pub const IPC_BUFFER_BITS: u8 = 10;
/// `CONFIG_NUM_PRIORITIES` of previrt's kernel config is 256.
pub const MAX_PRIORITY: u64 = 255;
/// `CONFIG_MAX_NUM_NODES` of previrt's kernel config is 1.
pub const NUM_NODES: u64 = 1;
/// A CNode's radix: at least 1 (the kernel refuses 0 for retype) and at most
/// what fits in the largest untyped (`47 - seL4_SlotBits`).
pub const MIN_CNODE_BITS: u8 = 1;
/// See [`MIN_CNODE_BITS`].
pub const MAX_CNODE_BITS: u8 = MAX_UNTYPED_BITS - SLOT_BITS;
/// The highest x86 I/O port.
pub const MAX_IO_PORT: u64 = 0xffff;
/// Argument registers a TCB's `init` list can fill (System V: rdi, rsi,
/// rdx, rcx, r8, r9).
pub const MAX_INIT_ARGS: usize = 6;

/// The largest badge seL4 5.0.0 can mint: badges travel in a `seL4_CapData`
/// word whose badge field is 28 bits wide (libsel4's `types_64.bf`); the
/// kernel would silently drop higher bits.
pub const MAX_BADGE: u64 = (1 << 28) - 1;

/// The size of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FrameSize {
    /// 4 KiB, mapped by a page table entry.
    Small,
    /// 2 MiB, mapped by a page directory entry.
    Large,
}

impl FrameSize {
    /// log2 of the size in bytes.
    pub const fn bits(self) -> u8 {
        match self {
            FrameSize::Small => PAGE_BITS,
            FrameSize::Large => LARGE_PAGE_BITS,
        }
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.bits()
    }

    /// The frame size of `bytes`, if it is one x86_64 supports here (1 GiB
    /// pages are off in previrt's kernel config).
    pub const fn from_bytes(bytes: u64) -> Option<FrameSize> {
        match bytes {
            0x1000 => Some(FrameSize::Small),
            0x20_0000 => Some(FrameSize::Large),
            _ => None,
        }
    }
}

/// The kind of a kernel object, without its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjectType {
    /// Untyped memory.
    Untyped,
    /// A frame of memory.
    Frame,
    /// Page table (level 1: maps 4 KiB frames).
    PageTable,
    /// Page directory (level 2: maps page tables and 2 MiB frames).
    PageDirectory,
    /// Page directory pointer table (level 3: maps page directories).
    Pdpt,
    /// PML4, the VSpace root (level 4: maps PDPTs).
    Pml4,
    /// ASID pool.
    AsidPool,
    /// CNode.
    CNode,
    /// Thread control block.
    Tcb,
    /// Endpoint.
    Endpoint,
    /// Notification.
    Notification,
    /// An IRQ routed through the IOAPIC (its handler cap is issued with
    /// `IRQControl_GetIOAPIC`).
    IoApicIrq,
    /// A range of x86 I/O ports.
    IoPorts,
}

impl ObjectType {
    /// The keyword of this type in the CapDL text.
    pub const fn keyword(self) -> &'static str {
        match self {
            ObjectType::Untyped => "ut",
            ObjectType::Frame => "frame",
            ObjectType::PageTable => "pt",
            ObjectType::PageDirectory => "pd",
            ObjectType::Pdpt => "pdpt",
            ObjectType::Pml4 => "pml4",
            ObjectType::AsidPool => "asid_pool",
            ObjectType::CNode => "cnode",
            ObjectType::Tcb => "tcb",
            ObjectType::Endpoint => "ep",
            ObjectType::Notification => "notification",
            ObjectType::IoApicIrq => "ioapic_irq",
            ObjectType::IoPorts => "io_ports",
        }
    }

    /// The type named by `keyword`, if it is in the subset.
    pub fn from_keyword(keyword: &str) -> Option<ObjectType> {
        ALL_OBJECT_TYPES
            .iter()
            .copied()
            .find(|t| t.keyword() == keyword)
    }

    /// The human name with its article, for messages ("an endpoint").
    pub const fn with_article(self) -> &'static str {
        match self {
            ObjectType::Untyped => "an untyped",
            ObjectType::Frame => "a frame",
            ObjectType::PageTable => "a page table",
            ObjectType::PageDirectory => "a page directory",
            ObjectType::Pdpt => "a PDPT",
            ObjectType::Pml4 => "a PML4",
            ObjectType::AsidPool => "an ASID pool",
            ObjectType::CNode => "a CNode",
            ObjectType::Tcb => "a TCB",
            ObjectType::Endpoint => "an endpoint",
            ObjectType::Notification => "a notification",
            ObjectType::IoApicIrq => "an IRQ",
            ObjectType::IoPorts => "an I/O port range",
        }
    }

    /// The first virtual address that slot `index` of a paging structure
    /// of this type maps, the structure mapping from `base` (a PML4's is
    /// 0): a PML4's entries 256 and up are in the upper half, sign-extended
    /// from bit 47. `None` for a slot past the structure or a type that is
    /// no paging structure.
    pub const fn slot_address(self, base: u64, index: u64) -> Option<u64> {
        let shift = match self {
            ObjectType::Pml4 => return pml4_entry_address(index),
            ObjectType::Pdpt => 30,
            ObjectType::PageDirectory => 21,
            ObjectType::PageTable => 12,
            _ => return None,
        };
        if index >= PAGING_ENTRIES {
            return None;
        }
        Some(base | index << shift)
    }

    /// A human name for messages.
    pub const fn description(self) -> &'static str {
        match self {
            ObjectType::Untyped => "untyped",
            ObjectType::Frame => "frame",
            ObjectType::PageTable => "page table",
            ObjectType::PageDirectory => "page directory",
            ObjectType::Pdpt => "PDPT",
            ObjectType::Pml4 => "PML4",
            ObjectType::AsidPool => "ASID pool",
            ObjectType::CNode => "CNode",
            ObjectType::Tcb => "TCB",
            ObjectType::Endpoint => "endpoint",
            ObjectType::Notification => "notification",
            ObjectType::IoApicIrq => "IRQ",
            ObjectType::IoPorts => "I/O port range",
        }
    }
}

/// Every object type of the subset, in the order the docs list them.
pub const ALL_OBJECT_TYPES: [ObjectType; 13] = [
    ObjectType::Untyped,
    ObjectType::Frame,
    ObjectType::PageTable,
    ObjectType::PageDirectory,
    ObjectType::Pdpt,
    ObjectType::Pml4,
    ObjectType::AsidPool,
    ObjectType::CNode,
    ObjectType::Tcb,
    ObjectType::Endpoint,
    ObjectType::Notification,
    ObjectType::IoApicIrq,
    ObjectType::IoPorts,
];

/// log2 of the bytes of untyped memory an object of this type takes, given
/// its size parameter (`size_bits` of an untyped, the radix of a CNode, the
/// frame size). `None` for objects that take no untyped memory (IRQ handlers
/// and I/O port ranges are issued by the kernel from control caps).
pub const fn object_size_bits(
    object_type: ObjectType,
    size_bits: u8,
    frame: FrameSize,
) -> Option<u8> {
    match object_type {
        ObjectType::Untyped => Some(size_bits),
        ObjectType::Frame => Some(frame.bits()),
        ObjectType::PageTable | ObjectType::PageDirectory | ObjectType::Pdpt | ObjectType::Pml4 => {
            Some(PAGING_STRUCTURE_BITS)
        }
        ObjectType::AsidPool => Some(ASID_POOL_BITS),
        ObjectType::CNode => Some(size_bits + SLOT_BITS),
        ObjectType::Tcb => Some(TCB_BITS),
        ObjectType::Endpoint => Some(ENDPOINT_BITS),
        ObjectType::Notification => Some(NOTIFICATION_BITS),
        ObjectType::IoApicIrq | ObjectType::IoPorts => None,
    }
}

/// Capability rights, as the bits of `seL4_CapRights` (write, read, grant,
/// grant-reply), so the loader can pass them on unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rights(pub u8);

impl Rights {
    /// `W`.
    pub const WRITE: Rights = Rights(1);
    /// `R`.
    pub const READ: Rights = Rights(2);
    /// `G`.
    pub const GRANT: Rights = Rights(4);
    /// `P`: grant-reply (seL4 >= 10 calls it AllowGrantReply).
    pub const GRANT_REPLY: Rights = Rights(8);
    /// `X`: executable. Not an seL4 right; CapDL writes it on frames and
    /// seL4 x86_64 maps user frames executable anyway, so it is kept only to
    /// print back what was written.
    pub const EXECUTE: Rights = Rights(16);
    /// No rights at all.
    pub const NONE: Rights = Rights(0);

    /// Whether every right of `other` is in `self`.
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both.
    pub const fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    /// Whether no right is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The letters of the rights in canonical order, with their bits.
pub const RIGHT_LETTERS: [(char, Rights); 5] = [
    ('R', Rights::READ),
    ('W', Rights::WRITE),
    ('X', Rights::EXECUTE),
    ('G', Rights::GRANT),
    ('P', Rights::GRANT_REPLY),
];

/// The rights a cap to an object of this type may carry. Caps to other
/// objects carry all rights implicitly and the text may not name any.
pub const fn allowed_rights(object_type: ObjectType) -> Rights {
    match object_type {
        ObjectType::Endpoint => {
            Rights(Rights::READ.0 | Rights::WRITE.0 | Rights::GRANT.0 | Rights::GRANT_REPLY.0)
        }
        ObjectType::Notification => Rights(Rights::READ.0 | Rights::WRITE.0),
        ObjectType::Frame => Rights(Rights::READ.0 | Rights::WRITE.0 | Rights::EXECUTE.0),
        _ => Rights::NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_sizes_match_sel4_5_0_x86_64() {
        let small = FrameSize::Small;
        assert_eq!(object_size_bits(ObjectType::Tcb, 0, small), Some(11));
        assert_eq!(object_size_bits(ObjectType::Endpoint, 0, small), Some(4));
        assert_eq!(
            object_size_bits(ObjectType::Notification, 0, small),
            Some(5)
        );
        assert_eq!(object_size_bits(ObjectType::CNode, 10, small), Some(15));
        assert_eq!(object_size_bits(ObjectType::Frame, 0, small), Some(12));
        assert_eq!(
            object_size_bits(ObjectType::Frame, 0, FrameSize::Large),
            Some(21)
        );
        assert_eq!(object_size_bits(ObjectType::Pml4, 0, small), Some(12));
        assert_eq!(object_size_bits(ObjectType::Untyped, 20, small), Some(20));
        assert_eq!(object_size_bits(ObjectType::IoPorts, 0, small), None);
    }

    #[test]
    fn slot_addresses_of_a_pml4_are_canonical_at_each_boundary() {
        let pml4 = |i| ObjectType::Pml4.slot_address(0, i);
        assert_eq!(pml4(0), Some(0));
        assert_eq!(pml4(255), Some(0x7f80_0000_0000));
        // seL4's own entry has an address; whether a slot may be filled is
        // `pml4_entry_is_users`'s to say.
        assert_eq!(pml4(256), Some(0xffff_8000_0000_0000));
        assert_eq!(pml4(257), Some(0xffff_8080_0000_0000));
        assert_eq!(pml4(511), Some(0xffff_ff80_0000_0000));
        assert_eq!(pml4(512), None);
        assert!(pml4_entry_is_users(255) && pml4_entry_is_users(257) && pml4_entry_is_users(511));
        assert!(!pml4_entry_is_users(SEL4_PML4_ENTRY) && !pml4_entry_is_users(512));
    }

    #[test]
    fn slot_addresses_below_a_pml4_entry_add_to_its_base() {
        let entry_257 = 0xffff_8080_0000_0000;
        let pdpt = ObjectType::Pdpt.slot_address(entry_257, 3);
        assert_eq!(pdpt, Some(0xffff_8080_c000_0000));
        let pd = ObjectType::PageDirectory.slot_address(0xffff_8080_c000_0000, 511);
        assert_eq!(pd, Some(0xffff_8080_ffe0_0000));
        let pt = ObjectType::PageTable.slot_address(0xffff_8080_ffe0_0000, 1);
        assert_eq!(pt, Some(0xffff_8080_ffe0_1000));
        assert_eq!(ObjectType::PageTable.slot_address(0, 512), None);
        assert_eq!(ObjectType::Frame.slot_address(0, 0), None);
    }

    #[test]
    fn keywords_round_trip() {
        for t in ALL_OBJECT_TYPES {
            assert_eq!(ObjectType::from_keyword(t.keyword()), Some(t));
        }
        assert_eq!(ObjectType::from_keyword("irq"), None);
    }
}
