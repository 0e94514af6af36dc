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

    #[inline]
    pub fn size(&self) -> u64 {
        self.size
    }

    #[inline]
    fn check(&self, gpa: u64, len: u64) -> Result<u64, OutOfRam> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(self.base + gpa),
            _ => Err(OutOfRam { gpa, len }),
        }
    }

    /// Whether `[gpa, gpa + len)` is guest RAM.
    #[inline]
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        self.check(gpa, len).is_ok()
    }

    #[inline]
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

    #[inline]
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

    #[inline]
    pub fn read(&self, gpa: u64, out: &mut [u8]) -> Result<(), OutOfRam> {
        let at = self.check(gpa, out.len() as u64)?;
        // SAFETY: as in `read_u64`; `out` is the VMM's own memory, never
        // inside the window.
        unsafe { core::ptr::copy_nonoverlapping(at as *const u8, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    #[inline]
    pub fn write(&self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfRam> {
        let at = self.check(gpa, bytes.len() as u64)?;
        // SAFETY: as in `write_u64`; source and window never overlap (the
        // source is the image window or the VMM's own memory).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len()) };
        Ok(())
    }

    #[inline]
    pub fn zero(&self, gpa: u64, len: u64) -> Result<(), OutOfRam> {
        let at = self.check(gpa, len)?;
        // SAFETY: as in `write`.
        unsafe { core::ptr::write_bytes(at as *mut u8, 0, len as usize) };
        Ok(())
    }

    /// The bytes at `[gpa, gpa + len)`, for reading (e.g. the guest's
    /// `.afterburn` records).
    #[inline]
    pub fn slice(&self, gpa: u64, len: u64) -> Result<&[u8], OutOfRam> {
        let at = self.check(gpa, len)?;
        // SAFETY: as in `read_u64`; the slice lives no longer than `self`,
        // and the guest is not running while the VMM reads it.
        Ok(unsafe { core::slice::from_raw_parts(at as *const u8, len as usize) })
    }
}

/// Guest RAM over a host buffer, for tests and the replay: `size` bytes,
/// then `guard` bytes past the end of RAM that a correct caller never
/// reads.
#[cfg(any(test, feature = "replay"))]
pub mod host {
    use super::Ram;

    #[derive(Debug)]
    pub struct HostRam {
        /// The buffer, leaked from a `Box<[u64]>` (8-byte aligned) and
        /// reached only through this pointer until `drop`.
        buf: *mut u64,
        words: usize,
        size: u64,
    }

    impl HostRam {
        pub fn new(size: u64) -> HostRam {
            HostRam::with_guard(size, 0, 0)
        }

        /// RAM of `size` bytes (zero), followed by `guard` bytes of `fill`.
        pub(crate) fn with_guard(size: u64, guard: u64, fill: u8) -> HostRam {
            let bytes = usize::try_from(size + guard).expect("a test RAM fits in memory");
            let words = bytes.div_ceil(8).max(1);
            let buf = Box::into_raw(vec![0u64; words].into_boxed_slice()).cast::<u64>();
            let ram = HostRam { buf, words, size };
            // RAM is zero already (the vector's); only the guard is filled.
            ram.all()[size as usize..].fill(fill);
            ram
        }

        /// The whole buffer, guard included.
        #[allow(clippy::mut_from_ref)]
        pub(crate) fn all(&self) -> &mut [u8] {
            // SAFETY: `buf` holds `words` u64s, owned by `self` and reached
            // only through it; tests use the slice and `ram()` in turn.
            unsafe { core::slice::from_raw_parts_mut(self.buf.cast::<u8>(), self.words * 8) }
        }

        pub fn ram(&self) -> Ram {
            // SAFETY: `[buf, buf + size)` is this buffer's, mapped read-write
            // for as long as `self` lives, which outlives each test's use.
            unsafe { Ram::new(self.buf as u64, self.size) }
        }

        /// Writes a 64-bit entry at `gpa` (in RAM).
        #[cfg(test)]
        pub(crate) fn set(&self, gpa: u64, value: u64) {
            self.ram()
                .write_u64(gpa, value)
                .expect("a test entry in RAM");
        }
    }

    impl Drop for HostRam {
        fn drop(&mut self) {
            // SAFETY: `buf` came from `Box::into_raw` of a `[u64]` of
            // `words` elements and is freed once.
            drop(unsafe {
                Box::from_raw(core::ptr::slice_from_raw_parts_mut(self.buf, self.words))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host::HostRam;
    use super::OutOfRam;

    #[test]
    fn accesses_inside_ram_work_and_read_back() {
        let h = HostRam::new(0x2000);
        let ram = h.ram();
        assert_eq!(ram.size(), 0x2000);
        assert_eq!(ram.write_u64(0x1ff8, 0x1122_3344_5566_7788), Ok(()));
        assert_eq!(ram.read_u64(0x1ff8), Ok(0x1122_3344_5566_7788));
        assert_eq!(ram.write(0x10, b"abc"), Ok(()));
        let mut out = [0; 3];
        assert_eq!(ram.read(0x10, &mut out), Ok(()));
        assert_eq!(&out, b"abc");
        assert_eq!(ram.slice(0x10, 3), Ok(&b"abc"[..]));
        assert_eq!(ram.zero(0x10, 2), Ok(()));
        assert_eq!(ram.slice(0x10, 3), Ok(&b"\0\0c"[..]));
    }

    #[test]
    fn accesses_past_the_end_are_refused_and_touch_nothing() {
        let h = HostRam::with_guard(0x1000, 16, 0xaa);
        let ram = h.ram();
        assert_eq!(ram.read_u64(0xffc), Err(OutOfRam { gpa: 0xffc, len: 8 }));
        assert_eq!(
            ram.write_u64(0x1000, 0),
            Err(OutOfRam {
                gpa: 0x1000,
                len: 8
            })
        );
        assert_eq!(ram.zero(0xfff, 2), Err(OutOfRam { gpa: 0xfff, len: 2 }));
        assert_eq!(
            ram.write(0xfff, b"xy"),
            Err(OutOfRam { gpa: 0xfff, len: 2 })
        );
        assert!(h.all()[0x1000..].iter().all(|&b| b == 0xaa));
        assert!(ram.contains(0, 0x1000));
        assert!(ram.contains(0x1000, 0));
        assert!(!ram.contains(0x1000, 1));
    }

    #[test]
    fn an_address_plus_length_that_overflows_is_out_of_ram() {
        let h = HostRam::new(0x1000);
        let ram = h.ram();
        assert_eq!(
            ram.read_u64(u64::MAX - 3),
            Err(OutOfRam {
                gpa: u64::MAX - 3,
                len: 8
            })
        );
        assert_eq!(
            ram.slice(1, u64::MAX),
            Err(OutOfRam {
                gpa: 1,
                len: u64::MAX
            })
        );
        assert!(!ram.contains(u64::MAX, 1));
    }

    #[test]
    fn unaligned_64_bit_accesses_go_bytewise() {
        let h = HostRam::new(0x100);
        let ram = h.ram();
        assert_eq!(ram.write_u64(3, 0x0807_0605_0403_0201), Ok(()));
        assert_eq!(ram.slice(3, 8), Ok(&[1, 2, 3, 4, 5, 6, 7, 8][..]));
        assert_eq!(ram.read_u64(3), Ok(0x0807_0605_0403_0201));
        assert_eq!(ram.read_u64(0), Ok(0x0504_0302_0100_0000));
    }
}
