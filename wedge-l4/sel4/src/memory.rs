//! Guest memory as the wedge sees it: the guest's own address space, which
//! the wedge shares. A page the VMM has not mapped yet faults to the VMM,
//! which maps it (or stops the guest) and resumes the wedge.

use wedge_l4::memory::{guest_may_access, GuestMemory, MemError};

pub struct DirectMemory;

/// The guest may not reach into the wedge's area or seL4's entry through
/// an emulated instruction, nor use a non-canonical address
/// (`guest_may_access`).
fn check(address: u64, len: usize) -> Result<(), MemError> {
    if guest_may_access(address, len) {
        Ok(())
    } else {
        Err(MemError { address })
    }
}

impl GuestMemory for DirectMemory {
    fn read(&mut self, address: u64, buf: &mut [u8]) -> Result<(), MemError> {
        check(address, buf.len())?;
        // SAFETY: the range is canonical and outside the wedge's area and
        // seL4's entry: the guest's part of this address space; an
        // unmapped page faults to the VMM, which maps it from the guest's
        // page tables or stops the guest.
        unsafe {
            core::ptr::copy_nonoverlapping(address as *const u8, buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    fn write(&mut self, address: u64, data: &[u8]) -> Result<(), MemError> {
        check(address, data.len())?;
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), address as *mut u8, data.len()) };
        Ok(())
    }
}
