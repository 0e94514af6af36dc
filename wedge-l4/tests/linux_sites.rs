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
use wedge_l4::emulate::pair_supported;
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

/// The bytes of `site` (instruction, pair and padding) and the name of the
/// executable section that holds the whole site.
fn site_bytes<'a>(sections: &'a [Section<'a>], site: &Site) -> (&'a [u8], &'a str) {
    let s = sections
        .iter()
        .find(|s| s.executable && s.holds(site.address, u64::from(site.site_len)))
        .unwrap_or_else(|| panic!("site {:#x} is in no code section", site.address));
    let at = (site.address - s.addr) as usize;
    (&s.bytes[at..at + usize::from(site.site_len)], &s.name)
}

/// Decodes every site of the kernel and prints, by kind, how many decode
/// and how many carry a shadowed pair the wedge cannot run yet; fails
/// naming each kind with a site that does not decode, with an example.
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

    #[derive(Default)]
    struct Tally {
        sites: usize,
        decoded: usize,
        pairs: usize,
        pairs_run: usize,
        first_failure: Option<String>,
    }
    let mut by_kind: BTreeMap<u16, (Kind, Tally)> = BTreeMap::new();
    for s in &sites {
        let (bytes, section) = site_bytes(&sections, s);
        let insn_len = usize::from(s.insn_len);
        let insn = &bytes[..insn_len];
        let pair = &bytes[insn_len..insn_len + usize::from(s.pair_len)];
        let (_, t) = by_kind
            .entry(s.kind.number())
            .or_insert((s.kind, Tally::default()));
        t.sites += 1;
        t.pairs += usize::from(!pair.is_empty());
        match decode(s.kind, insn) {
            Ok(decoded) => {
                t.decoded += 1;
                t.pairs_run += usize::from(!pair.is_empty() && pair_supported(decoded, pair));
            }
            Err(err) if t.first_failure.is_none() => {
                t.first_failure = Some(format!(
                    "at {:#x} ({section}): {insn:02x?}: {err:?}",
                    s.address
                ));
            }
            Err(_) => {}
        }
    }
    println!(
        "{}: {} sites of {} kinds",
        path.display(),
        sites.len(),
        by_kind.len()
    );
    println!("| kind | sites | decoded | with a pair | pairs the wedge runs |");
    println!("|---|---|---|---|---|");
    for (kind, t) in by_kind.values() {
        println!(
            "| {} | {} | {} | {} | {} |",
            kind.name(),
            t.sites,
            t.decoded,
            t.pairs,
            t.pairs_run
        );
    }
    let failed: Vec<String> = by_kind
        .values()
        .filter_map(|(kind, t)| {
            t.first_failure.as_ref().map(|f| {
                format!(
                    "{}: {} of {} do not decode, first {f}",
                    kind.name(),
                    t.sites - t.decoded,
                    t.sites
                )
            })
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
    assert!(
        end - base < 1 << 30,
        "the kernel's code spans {:#x} bytes",
        end - base
    );
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
