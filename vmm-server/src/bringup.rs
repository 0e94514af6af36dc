//! The bring-up check: everything the VMM will rely on, tried once.

use previrt_protocol::vmm_layout::{
    guest_image_window, guest_ram_window, guest_tcb_slot, StartInfo, DEBUG_EXIT_PORT_SLOT,
    DEVICE_DEBUG_EXIT, DEVICE_SUPERVISOR, SUPERVISOR_ENDED_LABEL, SUPERVISOR_ENDPOINT_SLOT,
    VMM_IRQ_TCB_SLOT, VMM_TCB_SLOT,
};
use previrt_sel4::{println, Endpoint, IoPort, Page, Tcb, Word};

const PAGE: u64 = 4096;

/// Reads one word of the VMM's address space.
fn read(addr: u64) -> u64 {
    // SAFETY: callers pass addresses inside windows the generated spec maps
    // into the VMM's VSpace (checked against the start information).
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn write(addr: u64, value: u64) {
    // SAFETY: as in `read`; the RAM window is mapped read-write.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
}

/// `first_index`: the system's number of this VMM's first guest (its
/// lines name the guests by it).
pub fn check(info: &StartInfo, first_index: u32) -> bool {
    let mut ok = true;
    for g in 0..usize::from(info.guest_count) {
        let id = first_index as usize + g;
        let guest = info.guests[g];
        let Some(first) = info.ram_first_slot(g) else {
            return false;
        };
        let frames = Word::from(guest.ram_frames);
        // The frame caps are the guest's physical memory: real frames.
        let (low, high) = (Page(first).address(), Page(first + frames - 1).address());
        // The RAM window shows the same frames: write through the window at
        // both ends of guest-physical memory and read back.
        let window = guest_ram_window(g as u64);
        let last = window + (frames - 1) * PAGE;
        write(window, 0x7e57_0000 + g as u64);
        write(last + 8, 0x7e57_ffff);
        let seen = (read(window), read(last + 8));
        // The image window holds the guest's ELF file.
        let image = guest_image_window(g as u64);
        let magic = read(image) & 0xffff_ffff;
        let tcb_present = Tcb(guest_tcb_slot(g as u64)).read_registers(false).is_ok();
        println!(
            "vmm-server: guest{id}: {} RAM frames ({} KiB), first frame at {:#x}, last at {:#x}",
            frames,
            frames * 4,
            low.unwrap_or(0),
            high.unwrap_or(0)
        );
        println!(
            "vmm-server: guest{id}: RAM window read back {}, image window {} bytes starting {}, TCB {}",
            if seen == (0x7e57_0000 + g as u64, 0x7e57_ffff) { "ok" } else { "WRONG" },
            guest.image_bytes,
            if magic == 0x464c_457f { "with an ELF header" } else { "WITHOUT an ELF header" },
            if tcb_present { "reachable" } else { "NOT reachable" }
        );
        ok &= low.is_ok() && high.is_ok() && seen == (0x7e57_0000 + g as u64, 0x7e57_ffff);
        ok &= magic == 0x464c_457f && tcb_present;
    }
    ok
}

/// Ends the run with exit value `v` on the exit port, if the system has one
/// (QEMU exits with 2v+1: 0 pass, 1 fail). In a system of several guests
/// the VMM tells the supervisor instead, which ends the machine when every
/// guest has ended, and stops both its threads: the other guests run on.
pub fn exit_with(info: &StartInfo, v: u8) -> ! {
    if info.devices & DEVICE_SUPERVISOR != 0 {
        Endpoint(SUPERVISOR_ENDPOINT_SLOT).send(SUPERVISOR_ENDED_LABEL, &[Word::from(v)]);
        let _ = Tcb(VMM_IRQ_TCB_SLOT).suspend();
        let _ = Tcb(VMM_TCB_SLOT).suspend();
    }
    if info.devices & DEVICE_DEBUG_EXIT != 0 {
        let _ = IoPort(DEBUG_EXIT_PORT_SLOT).out8(0xf4, v);
    }
    loop {
        previrt_sel4::sys::syscalls::yield_now();
    }
}
