//! The core against Linux: every site of the padded `vmlinux` that `cargo
//! xtask linux` builds decodes with the wedge's decoder, kind by kind, and
//! the whole kernel's code rewrites. Ignored by a plain `cargo test` (the
//! kernel takes 10–20 minutes to build); the Linux test (`cargo xtask test
//! linux:`) runs it on the kernel it built, with `PREVIRT_VMLINUX` naming
//! it: `cargo test -p wedge-l4 --test linux_sites -- --ignored`.

mod common;

use afterburn_format::Kind;
use common::alternatives::{applied, feature_names, has_nop_run, sensitive_outside_sites, Applied};
use common::elf::{afterburn_notes, sections, Section};
use std::collections::BTreeMap;
use std::path::PathBuf;
use wedge_l4::alternatives::{Alternatives, Placement, Placements};
use wedge_l4::backend::{Backend, BackendError, ShutdownReason};
use wedge_l4::decode::decode;
use wedge_l4::emulate::{emulate, pair_supported, EmulateError, Outcome};
use wedge_l4::memory::{GuestMemory, GuestRegs, MemError};
use wedge_l4::records::{Records, Site};
use wedge_l4::rewrite::{rewrite_placed, SiteTable, Summary};
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

/// The kernel's code as the wedge rewrites it at load time (one buffer from
/// the lowest executable section to the end of the highest; the sites in
/// alternatives' replacements placed as the wedge places them): the
/// buffer, its base, the site table and the summary.
fn rewrite_kernel(
    sections: &[Section<'_>],
    records: &Records<'_>,
) -> (Vec<u8>, u64, Box<SiteTable<4096>>, Summary) {
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
    let alt = sections
        .iter()
        .find(|s| s.name == ".altinstructions")
        .expect("the kernel has .altinstructions");
    let alts = Alternatives::new(alt.bytes, alt.addr).expect("whole entries");
    let mut placements = Box::new(Placements::<256>::new());
    placements
        .decide(records, &alts)
        .expect("at most 256 copied sites, as the seL4 wedge holds");
    let mut table = Box::new(SiteTable::<4096>::new());
    let summary = rewrite_placed(
        &mut image,
        base,
        records,
        previrt_protocol::WEDGE_BASE,
        None,
        &mut table,
        &|s| placements.of(s),
    )
    .unwrap_or_else(|e| panic!("the kernel does not rewrite: {e:x?}"));
    (image, base, table, summary)
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
    let (_, _, table, summary) = rewrite_kernel(&sections, &records);
    assert!(table.len() > 1000);
    println!(
        "{} rewritten ({} for where Linux copies them), {} left native, {} opted out, \
         {} copied to no single place; slot at {:#x}",
        summary.rewritten,
        summary.copied,
        summary.native,
        summary.opted_out,
        summary.unplaceable,
        summary.slot
    );
    assert_eq!(
        summary.rewritten + summary.native + summary.opted_out + summary.unplaceable,
        records.site_count()
    );
}

/// The Linux source's `cpufeatures.h`, for the features' names: beside the
/// kernel's build (`target/linux/src-VERSION/`), if it is there.
fn feature_header(vmlinux: &std::path::Path) -> String {
    let linux = vmlinux.ancestors().nth(3).map(std::path::Path::to_path_buf);
    linux
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("src-"))
        .find_map(|e| {
            std::fs::read_to_string(e.path().join("arch/x86/include/asm/cpufeatures.h")).ok()
        })
        .unwrap_or_default()
}

/// What Linux's `apply_alternatives()` makes of the rewritten kernel on the
/// seL4 virtual CPU. Linux patches its text here only through
/// alternatives (the other patchers' tables must be absent: no paravirt,
/// retpoline, return-thunk, jump-label or static-call sites, no SMP lock
/// prefixes). For every entry: is it applied ([`applied`]); for one that
/// may be, every site its copy overwrites must lie wholly inside the
/// original, the entry slot must not, every site of the replacement must
/// be rewritten for the place it is copied to (its call reaches the slot
/// from there), and the replacement must bring in no sensitive instruction
/// outside a site; for every entry, applied or not, `optimize_nops()` must
/// find no run of `0x90` inside a rewritten site it walks. Prints the
/// table (lines starting `alt `), fails on any case not handled.
#[test]
#[ignore = "needs a built vmlinux (cargo xtask linux, or PREVIRT_VMLINUX)"]
fn real_linux_alternatives() {
    let path = padded_vmlinux();
    let elf = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let sections = sections(&elf);
    for other in [
        ".parainstructions",
        ".retpoline_sites",
        ".return_sites",
        "__jump_table",
        ".static_call_sites",
        ".smp_locks",
    ] {
        assert!(
            sections
                .iter()
                .all(|s| s.name != other || s.bytes.is_empty()),
            "the kernel patches its text through {other} too, which this check does not analyse"
        );
    }
    let notes = afterburn_notes(&sections).expect("the padded vmlinux carries .afterburn notes");
    let records = Records::parse(notes).expect("its records parse");
    let mut sites = Vec::new();
    records.for_each_site(|s| sites.push(s));
    let (image, base, table, summary) = rewrite_kernel(&sections, &records);
    let at = |a: u64, n: usize| &image[(a - base) as usize..(a - base) as usize + n];
    let alt = sections
        .iter()
        .find(|s| s.name == ".altinstructions")
        .unwrap();
    let alts = Alternatives::new(alt.bytes, alt.addr).unwrap();
    let names = feature_names(&feature_header(&path));
    let name = |f: u16| {
        names
            .get(&f)
            .cloned()
            .unwrap_or_else(|| format!("{}*32+{}", f / 32, f % 32))
    };
    // The original bytes (before the rewrite) of a replacement.
    let original = |a: u64, n: usize| {
        let s = sections
            .iter()
            .find(|s| s.holds(a, n as u64))
            .unwrap_or_else(|| panic!("{a:#x} is in no section"));
        &s.bytes[(a - s.addr) as usize..(a - s.addr) as usize + n]
    };
    let rewritten = |s: &Site| table.at(s.address).is_some();
    let overlapping = |from: u64, len: u8| -> Vec<Site> {
        let end = from + u64::from(len);
        sites
            .iter()
            .filter(|s| s.address < end && s.end() > from)
            .copied()
            .collect()
    };

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for a in alts.entries() {
        let decision = applied(&a, &names);
        *counts
            .entry(match decision {
                Applied::Yes(_) => "applied",
                Applied::No(_) => "not applied",
                Applied::Maybe => "maybe applied",
            })
            .or_default() += 1;
        let feature = format!("{}{}", if a.inverted { "!" } else { "" }, name(a.feature));
        let in_orig = overlapping(a.instr, a.instrlen);
        let in_repl = overlapping(a.repl, a.replacementlen);
        let repl_bytes = original(a.repl, usize::from(a.replacementlen));
        let loose = sensitive_outside_sites(repl_bytes, a.repl, |ip| {
            in_repl.iter().any(|s| s.address <= ip && ip < s.end())
        });
        let mut fail = |what: String| failures.push(format!("{:#x} ({feature}): {what}", a.instr));
        // optimize_nops() walks the original whether or not it is applied.
        for s in in_orig.iter().filter(|s| rewritten(s)) {
            if has_nop_run(at(s.address, usize::from(s.site_len))) {
                fail(format!(
                    "optimize_nops() may rewrite bytes of the site at {:#x}",
                    s.address
                ));
            }
        }
        let may_apply = !matches!(decision, Applied::No(_));
        let mut handled = Vec::new();
        if may_apply {
            for s in &in_orig {
                if s.address < a.instr || s.end() > a.instr + u64::from(a.instrlen) {
                    fail(format!(
                        "the {} site at {:#x} straddles the original's end: the copy leaves part of it",
                        s.kind.name(),
                        s.address
                    ));
                }
            }
            if !in_orig.is_empty() {
                handled.push(format!("{} site(s) overwritten whole", in_orig.len()));
            }
            if (a.instr..a.instr + u64::from(a.instrlen)).contains(&summary.slot) {
                fail("the copy overwrites the wedge's entry slot".into());
            }
            for s in &in_repl {
                let dest = a.instr + (s.address - a.repl);
                match alts.placement(s.address, s.site_len) {
                    Placement::CopiedTo(d) if d == dest => {}
                    p => fail(format!(
                        "the site at {:#x} is placed {p:?}, not at {dest:#x}",
                        s.address
                    )),
                }
                if wedge_l4::rewrite::stays_native(s.kind) {
                    handled.push(format!("{} native, as everywhere", s.kind.name()));
                    continue;
                }
                let Some(e) = table.at(dest) else {
                    fail(format!(
                        "the {} site at {:#x} is not rewritten for {dest:#x}",
                        s.kind.name(),
                        s.address
                    ));
                    continue;
                };
                let bytes = at(s.address, usize::from(s.site_len));
                // `call *disp32(%rip)` from the destination reaches the slot.
                if bytes[..2] == [0xff, 0x15] {
                    let disp = i32::from_le_bytes(bytes[2..6].try_into().unwrap());
                    if (dest as i64 + 6 + i64::from(disp)) as u64 != summary.slot {
                        fail(format!(
                            "the site copied to {dest:#x} does not call the slot from there"
                        ));
                    }
                }
                if e.site.kind != s.kind || has_nop_run(bytes) {
                    fail(format!("the table entry at {dest:#x} is not the site's, or optimize_nops() may touch it"));
                }
                handled.push(format!("{} rewritten for {dest:#x}", s.kind.name()));
            }
            for (ip, kind) in &loose {
                fail(format!(
                    "the replacement brings in a native {} at {ip:#x}",
                    kind.name()
                ));
            }
        }
        if !in_orig.is_empty() || !in_repl.is_empty() || !loose.is_empty() {
            let kinds = |v: &[Site]| {
                v.iter()
                    .map(|s| s.kind.name())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            rows.push(format!(
                "| {:#x} | {feature} | {} | {} | {} | {} | {} |",
                a.instr,
                match &decision {
                    Applied::Yes(why) => format!("yes: {why}"),
                    Applied::No(why) => format!("no: {why}"),
                    Applied::Maybe => "maybe".into(),
                },
                kinds(&in_orig),
                kinds(&in_repl),
                loose
                    .iter()
                    .map(|(_, k)| k.name())
                    .collect::<Vec<_>>()
                    .join(" "),
                if may_apply {
                    handled.join("; ")
                } else {
                    "never copied; optimize_nops() leaves its sites".into()
                },
            ));
        }
    }
    println!(
        "alt {}: {} entries: {}; {} copied sites rewritten for their destination, {} copied to no single place",
        path.display(),
        alts.len(),
        counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        summary.copied,
        summary.unplaceable
    );
    println!("alt | original | feature | applied on seL4 | sites in the original | sites in the replacement | sensitive outside sites | how it is handled |");
    println!("alt |---|---|---|---|---|---|---|");
    for r in &rows {
        println!("alt {r}");
    }
    assert!(
        failures.is_empty(),
        "alternatives the wedge does not handle:\n{}",
        failures.join("\n")
    );
}
