//! The allocated sections of a 64-bit little-endian ELF file, for the tests
//! that run the wedge's core on a real image (the test guest, Linux's
//! `vmlinux`). Enough of ELF for that, and no more: a malformed file makes
//! the test fail with a message.

const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// An allocated section with bytes in the file.
#[derive(Debug)]
pub struct Section<'a> {
    pub name: String,
    pub addr: u64,
    pub executable: bool,
    pub bytes: &'a [u8],
}

impl Section<'_> {
    /// True if `[address, address + len)` lies inside the section.
    pub fn holds(&self, address: u64, len: u64) -> bool {
        address >= self.addr
            && address
                .checked_add(len)
                .is_some_and(|end| end <= self.addr + self.bytes.len() as u64)
    }
}

/// The allocated sections of `elf` that have file bytes (not `.bss`).
pub fn sections(elf: &[u8]) -> Vec<Section<'_>> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!((elf[4], elf[5]), (2, 1), "not a 64-bit little-endian ELF");
    let shoff = u64_at(elf, 0x28) as usize;
    let shentsize = usize::from(u16_at(elf, 0x3a));
    let shnum = usize::from(u16_at(elf, 0x3c));
    let shstrndx = usize::from(u16_at(elf, 0x3e));
    let sh = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(elf, sh(shstrndx) + 24) as usize;
    let mut out = Vec::new();
    for i in 0..shnum {
        let h = sh(i);
        let name_off = strtab + u32_at(elf, h) as usize;
        let name_end = name_off + elf[name_off..].iter().position(|&c| c == 0).unwrap();
        let name = String::from_utf8_lossy(&elf[name_off..name_end]).into_owned();
        let (ty, flags) = (u32_at(elf, h + 4), u64_at(elf, h + 8));
        let (addr, off, size) = (
            u64_at(elf, h + 16),
            u64_at(elf, h + 24),
            u64_at(elf, h + 32),
        );
        if flags & SHF_ALLOC != 0 && ty != SHT_NOBITS {
            out.push(Section {
                name,
                addr,
                executable: flags & SHF_EXECINSTR != 0,
                bytes: &elf[off as usize..(off + size) as usize],
            });
        }
    }
    out
}

/// The bytes of the first section that holds `.afterburn` notes.
pub fn afterburn_notes<'a>(sections: &[Section<'a>]) -> Option<&'a [u8]> {
    sections
        .iter()
        .find(|s| afterburn_format::has_afterburn_notes(s.bytes))
        .map(|s| s.bytes)
}
