//! What the kernel handed the root task: untyped memory and free slots.

use previrt_sel4::{println, BootInfo};

use super::{check, Outcome};

pub fn run(bi: &BootInfo) -> Outcome {
    let untypeds = bi.untypeds();
    let (mut ram, mut ram_caps, mut device_caps, mut largest) = (0u64, 0, 0, 0u8);
    for u in untypeds {
        if u.is_device == 0 {
            ram += 1u64 << u.size_bits;
            ram_caps += 1;
            largest = largest.max(u.size_bits);
        } else {
            device_caps += 1;
        }
    }
    let (empty_start, empty_end) = (bi.empty.start, bi.empty.end);
    println!(
        "bootinfo: {} untyped caps: {} RAM totalling {} KiB (largest 2^{} bytes), {} device",
        untypeds.len(),
        ram_caps,
        ram >> 10,
        largest,
        device_caps
    );
    println!(
        "bootinfo: free slots {:#x}..{:#x} ({} slots) in a root CNode of 2^{} slots",
        empty_start,
        empty_end,
        bi.empty.len(),
        bi.init_thread_cnode_size_bits
    );
    println!(
        "bootinfo: ipc buffer at {:#x}, {} image frames",
        bi.ipc_buffer as usize,
        bi.user_image_frames.len()
    );
    check(ram_caps > 0, "no RAM untyped")?;
    check(!bi.empty.is_empty(), "no free slots")?;
    check(
        empty_end <= 1 << bi.init_thread_cnode_size_bits,
        "free slots beyond the CNode",
    )
}
