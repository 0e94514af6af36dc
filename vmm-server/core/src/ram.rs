//! Guest RAM as the VMM sees it: the RAM window the generated spec maps into
//! the VMM's address space (guest-physical 0 at the window's base). Every
//! access is bounds-checked against the guest's RAM size, and a 64-bit
//! access at an address that is not 8-byte aligned goes byte by byte (the
//! guest's tables are aligned, but other callers' addresses need not be).

#[derive(Clone, Copy, Debug)]
pub struct Ram {
    base: u64,
    size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRam {
    pub gpa: u64,
    pub len: u64,
}

impl Ram {
    /// Guest RAM of `size` bytes at `base` in this address space (guest
    /// physical 0 at `base`).
    ///
    /// # Safety
    /// `[base, base + size)` must be mapped read-write in this address space
    /// for as long as the `Ram` is used, and used by nothing else.
    pub const unsafe fn new(base: u64, size: u64) -> Ram {
        Ram { base, size }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn check(&self, gpa: u64, len: u64) -> Result<u64, OutOfRam> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(self.base + gpa),
            _ => Err(OutOfRam { gpa, len }),
        }
    }

    /// Whether `[gpa, gpa + len)` is guest RAM.
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        self.check(gpa, len).is_ok()
    }

    pub fn read_u64(&self, gpa: u64) -> Result<u64, OutOfRam> {
        let at = self.check(gpa, 8)?;
        if at % 8 != 0 {
            // A volatile access must be aligned: an odd address goes bytewise.
            let mut bytes = [0; 8];
            self.read(gpa, &mut bytes)?;
            return Ok(u64::from_le_bytes(bytes));
        }
        // SAFETY: the window is mapped (constructor contract), the range was
        // checked to lie inside it, and `at` is 8-byte aligned.
        Ok(unsafe { core::ptr::read_volatile(at as *const u64) })
    }

    pub fn write_u64(&self, gpa: u64, value: u64) -> Result<(), OutOfRam> {
        let at = self.check(gpa, 8)?;
        if at % 8 != 0 {
            return self.write(gpa, &value.to_le_bytes());
        }
        // SAFETY: as in `read_u64` (mapped, in range, aligned); the window
        // is writable.
        unsafe { core::ptr::write_volatile(at as *mut u64, value) };
        Ok(())
    }

    pub fn read(&self, gpa: u64, out: &mut [u8]) -> Result<(), OutOfRam> {
        let at = self.check(gpa, out.len() as u64)?;
        // SAFETY: as in `read_u64`; `out` is the VMM's own memory, never
        // inside the window.
        unsafe { core::ptr::copy_nonoverlapping(at as *const u8, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    pub fn write(&self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfRam> {
        let at = self.check(gpa, bytes.len() as u64)?;
        // SAFETY: as in `write_u64`; source and window never overlap (the
        // source is the image window or the VMM's own memory).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len()) };
        Ok(())
    }

    pub fn zero(&self, gpa: u64, len: u64) -> Result<(), OutOfRam> {
        let at = self.check(gpa, len)?;
        // SAFETY: as in `write`.
        unsafe { core::ptr::write_bytes(at as *mut u8, 0, len as usize) };
        Ok(())
    }

    /// The bytes at `[gpa, gpa + len)`, for reading (e.g. the guest's
    /// `.afterburn` records).
    pub fn slice(&self, gpa: u64, len: u64) -> Result<&[u8], OutOfRam> {
        let at = self.check(gpa, len)?;
        // SAFETY: as in `read_u64`; the slice lives no longer than `self`,
        // and the guest is not running while the VMM reads it.
        Ok(unsafe { core::slice::from_raw_parts(at as *const u8, len as usize) })
    }
}
