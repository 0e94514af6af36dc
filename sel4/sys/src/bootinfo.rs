//! The boot information frame the kernel hands the root task
//! (`seL4_BootInfo`, packed as in libsel4).

use crate::config::CONFIG_MAX_NUM_BOOTINFO_UNTYPED_CAPS;
use crate::{IpcBuffer, Word};

/// A range of capability slots `[start, end)` in the root CNode.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct SlotRegion {
    pub start: Word,
    pub end: Word,
}

impl SlotRegion {
    pub fn len(&self) -> u64 {
        let (start, end) = (self.start, self.end);
        end.saturating_sub(start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct UntypedDesc {
    pub paddr: Word,
    pub padding1: u8,
    pub padding2: u8,
    pub size_bits: u8,
    pub is_device: u8,
}

#[repr(C, packed)]
#[derive(Debug)]
pub struct BootInfo {
    pub extra_len: Word,
    pub node_id: Word,
    pub num_nodes: Word,
    pub num_io_pt_levels: Word,
    pub ipc_buffer: *mut IpcBuffer,
    pub empty: SlotRegion,
    pub shared_frames: SlotRegion,
    pub user_image_frames: SlotRegion,
    pub user_image_paging: SlotRegion,
    pub io_space_caps: SlotRegion,
    pub extra_bi_pages: SlotRegion,
    pub init_thread_cnode_size_bits: u8,
    pub init_thread_domain: Word,
    pub arch_info: Word,
    pub untyped: SlotRegion,
    pub untyped_list: [UntypedDesc; CONFIG_MAX_NUM_BOOTINFO_UNTYPED_CAPS as usize],
}

impl BootInfo {
    /// The descriptors of the untyped capabilities the kernel handed over, in
    /// slot order starting at `untyped.start`.
    pub fn untypeds(&self) -> &[UntypedDesc] {
        let n = (self.untyped.len() as usize).min(self.untyped_list.len());
        &self.untyped_list[..n]
    }
}
