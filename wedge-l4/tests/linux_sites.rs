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
use wedge_l4::backend::{Backend, BackendError, ShutdownReason};
use wedge_l4::decode::decode;
use wedge_l4::emulate::{emulate, pair_supported, EmulateError, Outcome};
use wedge_l4::memory::{GuestMemory, GuestRegs, MemError};
use wedge_l4::records::{Records, Site};
use wedge_l4::rewrite::{rewrite, SiteTable};
use wedge_l4::vcpu::Vcpu;

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

/// Guest memory for running one site out of context: a present interrupt
/// gate at every vector of the IDT at [`IDT`], zeros everywhere else;
/// writes are dropped.
struct Scratch;

const IDT: u64 = 0x10_0000;

impl GuestMemory for Scratch {
    fn read(&mut self, address: u64, buf: &mut [u8]) -> Result<(), MemError> {
        // Handler 0x1000, selector 0x10, a present 64-bit interrupt gate.
        const GATE: [u8; 16] = [0, 0x10, 0x10, 0, 0, 0x8e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for (i, b) in buf.iter_mut().enumerate() {
            let a = address.wrapping_add(i as u64);
            *b = if (IDT..IDT + 4096).contains(&a) {
                GATE[(a - IDT) as usize % 16]
            } else {
                0
            };
        }
        Ok(())
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), MemError> {
        Ok(())
    }
}

/// A backend that serves everything: what the site does with the answers
/// is not the question here, only whether the wedge has semantics for it.
struct Serves;

impl Backend for Serves {
    fn port_in(&mut self, _: u16, _: u8) -> Result<u32, BackendError> {
        Ok(0)
    }
    fn port_out(&mut self, _: u16, _: u8, _: u32) -> Result<(), BackendError> {
        Ok(())
    }
    fn load_cr3(&mut self, _: u64) -> Result<(), BackendError> {
        Ok(())
    }
    fn invlpg(&mut self, _: u64) -> Result<(), BackendError> {
        Ok(())
    }
    fn write_cr0(&mut self, _: u64) -> Result<(), BackendError> {
        Ok(())
    }
    fn write_cr4(&mut self, _: u64) -> Result<(), BackendError> {
        Ok(())
    }
    fn halt(&mut self, _: &Vcpu) -> Result<(), BackendError> {
        Ok(())
    }
    fn set_fs_base(&mut self, _: u64) -> Result<(), BackendError> {
        Ok(())
    }
    fn cpuid(&mut self, _: u32, _: u32) -> [u32; 4] {
        [0; 4]
    }
    fn rdtsc(&mut self) -> u64 {
        0
    }
    fn shutdown(&mut self, _: ShutdownReason) {}
}

/// Runs `site` once on a fresh vCPU at the PV entry (registers zero but
/// rsp, memory [`Scratch`]).
fn run_once(site: &Site, bytes: &[u8]) -> Result<Outcome, EmulateError> {
    let mut vcpu = Vcpu::at_pv_entry(0x1000);
    vcpu.idtr_base = IDT;
    vcpu.idtr_limit = 4095;
    let mut regs = GuestRegs::default();
    regs.set_rsp(0x8000);
    regs.rip = site.address;
    emulate(site, bytes, &mut vcpu, &mut regs, &mut Scratch, &mut Serves)
}

/// What the wedge makes of one site.
struct Checked {
    decoded: bool,
    emulated: bool,
    paired: bool,
    pair_runs: bool,
    /// Why the wedge would stop the guest at this site, if it would.
    failure: Option<String>,
}

/// Decodes `site` (its bytes `bytes`: instruction, pair, padding) under its
/// kind and runs it once. A site that does not decode, has no emulation, or
/// whose shadowed pair the wedge cannot run (the guest would stop there
/// with `UnsupportedPair`) is a failure.
fn check_site(site: &Site, bytes: &[u8]) -> Checked {
    let insn_len = usize::from(site.insn_len);
    let insn = &bytes[..insn_len];
    let pair = &bytes[insn_len..insn_len + usize::from(site.pair_len)];
    let mut c = Checked {
        decoded: false,
        emulated: false,
        paired: !pair.is_empty(),
        pair_runs: false,
        failure: None,
    };
    match decode(site.kind, insn) {
        Ok(decoded) => {
            c.decoded = true;
            c.pair_runs = c.paired && pair_supported(decoded, pair);
            match run_once(site, &bytes[..insn_len + pair.len()]) {
                Ok(_) => c.emulated = true,
                Err(EmulateError::UnsupportedPair) => {
                    c.failure = Some(format!("a shadowed pair the wedge cannot run: {pair:02x?}"));
                }
                Err(e) => c.failure = Some(format!("{e:?}")),
            }
        }
        Err(err) => c.failure = Some(format!("{err:?}")),
    }
    c
}

/// The check itself, on sites made up here: an `sti` pair the wedge runs
/// passes, one it cannot run (an `sti; ret` as the afterburner once made)
/// fails, and so does a site that does not decode.
#[test]
fn a_pair_the_wedge_cannot_run_fails_the_check() {
    let site = |pair_len| Site {
        address: 0x40_0000,
        kind: Kind::Sti,
        flags: if pair_len == 0 {
            0
        } else {
            afterburn_format::FLAG_SHADOW_PAIR
        },
        site_len: 12,
        insn_len: 1,
        pair_len,
    };
    let padded = |head: &[u8]| {
        let mut b = [0x90u8; 12];
        b[..head.len()].copy_from_slice(head);
        b
    };
    let hlt = check_site(&site(1), &padded(&[0xfb, 0xf4]));
    assert!(
        hlt.failure.is_none() && hlt.emulated && hlt.pair_runs,
        "{:?}",
        hlt.failure
    );
    let alone = check_site(&site(0), &padded(&[0xfb]));
    assert!(alone.failure.is_none() && alone.emulated && !alone.paired);
    let ret = check_site(&site(1), &padded(&[0xfb, 0xc3]));
    assert!(ret.decoded && ret.paired && !ret.pair_runs && !ret.emulated);
    assert!(
        ret.failure.as_deref().is_some_and(|f| f.contains("[c3]")),
        "{:?}",
        ret.failure
    );
    let garbage = check_site(&site(0), &padded(&[0x90]));
    assert!(!garbage.decoded && garbage.failure.is_some());
}

/// Decodes every site of the kernel and runs it once through `emulate`;
/// prints, by kind, how many decode, how many the wedge emulates, and how
/// many carry a shadowed pair and how many of those it runs. Fails naming
/// each kind with a site that does not decode, that decodes but has no
/// emulation, or whose shadowed pair the wedge cannot run (the guest would
/// stop there), with an example.
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
        emulated: usize,
        pairs: usize,
        pairs_run: usize,
        first_failure: Option<String>,
    }
    let mut by_kind: BTreeMap<u16, (Kind, Tally)> = BTreeMap::new();
    for s in &sites {
        let (bytes, section) = site_bytes(&sections, s);
        let c = check_site(s, bytes);
        let (_, t) = by_kind
            .entry(s.kind.number())
            .or_insert((s.kind, Tally::default()));
        t.sites += 1;
        t.decoded += usize::from(c.decoded);
        t.emulated += usize::from(c.emulated);
        t.pairs += usize::from(c.paired);
        t.pairs_run += usize::from(c.pair_runs);
        if let (Some(f), None) = (c.failure, &t.first_failure) {
            let insn = &bytes[..usize::from(s.insn_len)];
            t.first_failure = Some(format!("at {:#x} ({section}): {insn:02x?}: {f}", s.address));
        }
    }
    println!(
        "{}: {} sites of {} kinds",
        path.display(),
        sites.len(),
        by_kind.len()
    );
    println!("| kind | sites | decoded | emulated | with a pair | pairs the wedge runs |");
    println!("|---|---|---|---|---|---|");
    for (kind, t) in by_kind.values() {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            kind.name(),
            t.sites,
            t.decoded,
            t.emulated,
            t.pairs,
            t.pairs_run
        );
    }
    let failed: Vec<String> = by_kind
        .values()
        .filter_map(|(kind, t)| {
            t.first_failure.as_ref().map(|f| {
                format!(
                    "{}: {} of {} do not decode, {} more do not run (no emulation, or \
                     a pair the wedge cannot run); first {f}",
                    kind.name(),
                    t.sites - t.decoded,
                    t.sites,
                    t.decoded - t.emulated,
                )
            })
        })
        .collect();
    assert!(
        failed.is_empty(),
        "kinds with sites the wedge cannot decode or run:\n{}",
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
