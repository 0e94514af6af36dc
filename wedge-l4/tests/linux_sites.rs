//! The core against Linux: every site of the padded `vmlinux` that `cargo
//! xtask linux` builds decodes with the wedge's decoder, kind by kind, and
//! the whole kernel's code rewrites. Ignored by a plain `cargo test` (the
//! kernel takes 10–20 minutes to build); the Linux test (`cargo xtask test
//! linux:`) runs it on the kernel it built, with `PREVIRT_VMLINUX` naming
//! it: `cargo test -p wedge-l4 --test linux_sites -- --ignored`.

mod common;

use afterburn_format::Kind;
use common::elf::{afterburn_notes, sections, Section};
use std::collections::BTreeMap;
use std::path::PathBuf;
use wedge_l4::decode::decode;
use wedge_l4::records::{Records, Site};
use wedge_l4::rewrite::{rewrite, SiteTable};

/// The padded `vmlinux`: `PREVIRT_VMLINUX`, else the one `cargo xtask linux`
/// left in `target/linux/padded-KEY/obj`.
fn padded_vmlinux() -> PathBuf {
    std::env::var_os("PREVIRT_VMLINUX")
        .map(PathBuf::from)
        .or_else(|| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/linux");
            std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
                let v = e.path().join("obj/vmlinux");
                let name = e.file_name().to_string_lossy().into_owned();
                (name.starts_with("padded-") && v.exists()).then_some(v)
            })
        })
        .expect("no padded vmlinux: run `cargo xtask linux` or set PREVIRT_VMLINUX")
}

/// The instruction bytes of `site`, from the executable section that holds
/// the whole site.
fn insn<'a>(sections: &[Section<'a>], site: &Site) -> &'a [u8] {
    let s = sections
        .iter()
        .find(|s| s.executable && s.holds(site.address, u64::from(site.site_len)))
        .unwrap_or_else(|| panic!("site {:#x} is in no code section", site.address));
    let at = (site.address - s.addr) as usize;
    &s.bytes[at..at + usize::from(site.insn_len)]
}

/// Decodes every site of the kernel and prints, by kind, how many decode;
/// fails naming each kind with a site that does not, with an example.
#[test]
#[ignore = "needs a built vmlinux (cargo xtask linux, or PREVIRT_VMLINUX)"]
fn real_linux_sites_decode() {
    let path = padded_vmlinux();
    let elf = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let sections = sections(&elf);
    let notes = afterburn_notes(&sections).expect("the padded vmlinux carries .afterburn notes");
    let records = Records::parse(notes).expect("its records parse");
    let mut sites = Vec::new();
    records.for_each_site(|s| sites.push(s));
    assert!(sites.len() > 1000, "only {} sites", sites.len());

    // By kind: (sites, decoded, the first failure).
    let mut by_kind: BTreeMap<u16, (Kind, usize, usize, Option<String>)> = BTreeMap::new();
    for s in &sites {
        let bytes = insn(&sections, s);
        let e = by_kind
            .entry(s.kind.number())
            .or_insert((s.kind, 0, 0, None));
        e.1 += 1;
        match decode(s.kind, bytes) {
            Ok(_) => e.2 += 1,
            Err(err) if e.3.is_none() => {
                e.3 = Some(format!("at {:#x}: {bytes:02x?}: {err:?}", s.address));
            }
            Err(_) => {}
        }
    }
    println!("{}: {} sites of {} kinds", path.display(), sites.len(), by_kind.len());
    println!("| kind | sites | decoded |");
    println!("|---|---|---|");
    for (kind, n, ok, _) in by_kind.values() {
        println!("| {} | {n} | {ok} |", kind.name());
    }
    let failed: Vec<String> = by_kind
        .values()
        .filter_map(|(kind, n, ok, first)| {
            first
                .as_ref()
                .map(|f| format!("{}: {} of {n} do not decode, first {f}", kind.name(), n - ok))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "kinds the wedge cannot decode:\n{}",
        failed.join("\n")
    );
}

/// Rewrites the whole kernel's code as the wedge does at load time (one
/// buffer from the lowest executable section to the end of the highest):
/// every site checked, the entry slot within reach of all, the table large
/// enough.
#[test]
#[ignore = "needs a built vmlinux (cargo xtask linux, or PREVIRT_VMLINUX)"]
fn real_linux_rewrites() {
    let path = padded_vmlinux();
    let elf = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let sections = sections(&elf);
    let notes = afterburn_notes(&sections).expect("the padded vmlinux carries .afterburn notes");
    let records = Records::parse(notes).expect("its records parse");
    let code: Vec<&Section<'_>> = sections.iter().filter(|s| s.executable).collect();
    let base = code.iter().map(|s| s.addr).min().unwrap();
    let end = code
        .iter()
        .map(|s| s.addr + s.bytes.len() as u64)
        .max()
        .unwrap();
    assert!(end - base < 1 << 30, "the kernel's code spans {:#x} bytes", end - base);
    let mut image = vec![0xccu8; (end - base) as usize];
    for s in &code {
        let at = (s.addr - base) as usize;
        image[at..at + s.bytes.len()].copy_from_slice(s.bytes);
    }
    let mut table = Box::new(SiteTable::<4096>::new());
    let summary = rewrite(
        &mut image,
        base,
        &records,
        previrt_protocol::WEDGE_BASE,
        None,
        &mut table,
    )
    .unwrap_or_else(|e| panic!("the kernel does not rewrite: {e:x?}"));
    println!(
        "{} rewritten, {} left native, {} opted out; slot at {:#x}",
        summary.rewritten, summary.native, summary.opted_out, summary.slot
    );
    assert_eq!(
        summary.rewritten + summary.native + summary.opted_out,
        records.site_count()
    );
}
