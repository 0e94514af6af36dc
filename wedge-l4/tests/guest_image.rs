//! The core against the real guest: every recorded site of the padded guest
//! image decodes, the rewrite succeeds, and each rewritten site leads back
//! to its table entry. It needs the image, which `cargo xtask` builds: the
//! test is ignored by a plain `cargo test`, and `cargo xtask test` runs it
//! with `WEDGE_GUEST_IMAGE` naming the image (a missing image is a failure).

use wedge_l4::decode::decode;
use wedge_l4::memory::{GuestMemory, MemError};
use wedge_l4::records::Records;
use wedge_l4::rewrite::{rewrite, stays_native, SiteTable, CALL_LEN};

mod common;

use common::elf::{afterburn_notes, sections, u64_at};

/// The loaded image (allocated sections at their addresses, from the
/// lowest) and the bytes of the note section that holds the `.afterburn`
/// records.
fn load(elf: &[u8]) -> (u64, Vec<u8>, Vec<u8>) {
    let sections = sections(elf);
    let base = sections.iter().map(|s| s.addr).min().unwrap();
    let end = sections
        .iter()
        .map(|s| s.addr + s.bytes.len() as u64)
        .max()
        .unwrap();
    let mut image = vec![0u8; (end - base) as usize];
    for s in &sections {
        let at = (s.addr - base) as usize;
        image[at..at + s.bytes.len()].copy_from_slice(s.bytes);
    }
    let afterburn = afterburn_notes(&sections).unwrap_or_default().to_vec();
    (base, image, afterburn)
}

struct Image<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl GuestMemory for Image<'_> {
    fn read(&mut self, address: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let at = address
            .checked_sub(self.base)
            .map(|a| a as usize)
            .filter(|a| a + buf.len() <= self.bytes.len())
            .ok_or(MemError { address })?;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
        Ok(())
    }
    fn write(&mut self, address: u64, _: &[u8]) -> Result<(), MemError> {
        Err(MemError { address })
    }
}

#[test]
#[ignore = "needs the padded guest image: cargo xtask test runs it"]
fn the_padded_guest_decodes_and_rewrites() {
    let path =
        std::env::var("WEDGE_GUEST_IMAGE").expect("WEDGE_GUEST_IMAGE names the padded guest image");
    let elf = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (base, mut image, afterburn) = load(&elf);
    assert!(
        !afterburn.is_empty(),
        "the padded guest has a note section with .afterburn records"
    );
    let records = Records::parse(&afterburn).unwrap();
    assert!(records.site_count() > 0);

    let mut sites = Vec::new();
    records.for_each_site(|s| sites.push(s));
    for s in &sites {
        let at = (s.address - base) as usize;
        let insn = &image[at..at + usize::from(s.insn_len)];
        assert!(decode(s.kind, insn).is_ok(), "{s:x?}: {insn:02x?}");
    }

    let mut table = Box::new(SiteTable::<4096>::default());
    let summary = rewrite(
        &mut image,
        base,
        &records,
        0x7f80_0000_0000,
        None,
        &mut table,
    )
    .unwrap();
    assert_eq!(
        summary.rewritten + summary.native + summary.opted_out,
        sites.len()
    );
    let mut mem = Image {
        base,
        bytes: &image,
    };
    for s in sites
        .iter()
        .filter(|s| !stays_native(s.kind) && !records.is_opted_out(s.address))
    {
        let e = table
            .by_return_address(s.address + u64::from(CALL_LEN), &mut mem)
            .unwrap();
        assert_eq!(e.site, *s);
    }
    let slot = (summary.slot - base) as usize;
    assert_eq!(u64_at(&image, slot), 0x7f80_0000_0000);
}
