//! The boot untyped memory, handed out first-fit with the same alignment
//! rule the kernel applies when it retypes (each object aligned to its own
//! size), so the loader knows in advance where each object fits.

use previrt_sel4::{BootInfo, Untyped, Word};

/// At most this many boot untypeds (the config's bootinfo limit).
const MAX_UNTYPEDS: usize =
    previrt_sel4::sys::config::CONFIG_MAX_NUM_BOOTINFO_UNTYPED_CAPS as usize;

pub struct Pool {
    first_cap: Word,
    size_bits: [u8; MAX_UNTYPEDS],
    is_ram: [bool; MAX_UNTYPEDS],
    /// Bytes handed out of each untyped (its watermark).
    used: [u64; MAX_UNTYPEDS],
    count: usize,
}

impl Pool {
    pub fn new(bootinfo: &BootInfo) -> Pool {
        let mut pool = Pool {
            first_cap: bootinfo.untyped.start,
            size_bits: [0; MAX_UNTYPEDS],
            is_ram: [false; MAX_UNTYPEDS],
            used: [0; MAX_UNTYPEDS],
            count: 0,
        };
        for (i, desc) in bootinfo.untypeds().iter().enumerate().take(MAX_UNTYPEDS) {
            pool.size_bits[i] = desc.size_bits;
            pool.is_ram[i] = desc.is_device == 0;
            pool.count = i + 1;
        }
        pool
    }

    /// Bytes of RAM untyped still free.
    pub fn available(&self) -> u64 {
        (0..self.count)
            .filter(|&i| self.is_ram[i])
            .map(|i| (1u64 << self.size_bits[i]) - self.used[i])
            .sum()
    }

    /// Bytes handed out so far.
    pub fn used(&self) -> u64 {
        self.used[..self.count].iter().sum()
    }

    /// Finds room for an object of 2^`bits` bytes and reserves it; returns
    /// the untyped to retype from, or None when no RAM untyped has room.
    pub fn reserve(&mut self, bits: u8) -> Option<Untyped> {
        let size = 1u64 << bits;
        for i in 0..self.count {
            if !self.is_ram[i] || self.size_bits[i] < bits {
                continue;
            }
            let start = self.used[i].next_multiple_of(size);
            if start + size <= 1u64 << self.size_bits[i] {
                self.used[i] = start + size;
                return Some(Untyped(self.first_cap + i as Word));
            }
        }
        None
    }
}
