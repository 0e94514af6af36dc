//! What Linux's `apply_alternatives()` does to the padded kernel once the
//! wedge has rewritten it: which entries of `.altinstructions` it applies
//! on the seL4 virtual CPU, and, for each, whether the bytes it leaves
//! behind are ones the wedge handles. The test that uses it prints the
//! table into `target/linux/alternatives.txt` and fails on any case not
//! handled.

use afterburn_format::Kind;
use iced_x86::{Decoder, DecoderOptions};
use std::collections::BTreeMap;
use wedge_l4::alternatives::AltInstr;
use wedge_l4::cpuid::{Reg, HIDDEN, HYPERVISOR_BIT};

/// `X86_FEATURE_ALWAYS` (3*32+21): set by Linux on every CPU.
pub const ALWAYS: u16 = 3 * 32 + 21;

/// Whether Linux applies an entry on the seL4 virtual CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Certainly: why.
    Yes(String),
    /// Certainly not: why.
    No(String),
    /// It depends on the host CPU or on what Linux derives at boot (its
    /// synthetic bits, its bug bits): checked as if applied and as if not.
    Maybe,
}

/// Linux's feature word for a CPUID register the wedge filters
/// (`arch/x86/include/asm/cpufeatures.h`, `enum cpuid_leafs`).
fn linux_word(leaf: u32, subleaf: Option<u32>, reg: Reg) -> Option<u16> {
    Some(match (leaf, subleaf, reg) {
        (1, None, Reg::Edx) => 0,
        (0x8000_0001, None, Reg::Edx) => 1,
        (1, None, Reg::Ecx) => 4,
        (0x8000_0001, None, Reg::Ecx) => 6,
        (7, Some(0), Reg::Ebx) => 9,
        (0xd, Some(1), Reg::Eax) => 10,
        (7, Some(0), Reg::Ecx) => 16,
        (7, Some(0), Reg::Edx) => 18,
        _ => return None,
    })
}

/// Decides [`Applied`] for an entry's feature from what the wedge's CPUID
/// filter guarantees: a bit it hides is absent (Linux never sets these
/// itself), the hypervisor bit present, `ALWAYS` present. Everything
/// else — other CPUID bits (the host's), Linux's synthetic and bug bits —
/// is `Maybe`.
pub fn applied(a: &AltInstr, names: &BTreeMap<u16, String>) -> Applied {
    let name = names
        .get(&a.feature)
        .cloned()
        .unwrap_or_else(|| format!("{}*32+{}", a.feature / 32, a.feature % 32));
    let present = if a.feature == ALWAYS {
        Some((true, format!("{name} is always set")))
    } else if a.feature == 4 * 32 + HYPERVISOR_BIT as u16 {
        Some((true, format!("{name}: the wedge sets it")))
    } else {
        HIDDEN
            .iter()
            .find(|h| {
                linux_word(h.leaf, h.subleaf, h.reg) == Some(a.feature / 32)
                    && h.bit == u32::from(a.feature % 32)
            })
            .map(|h| (false, format!("{name}: the wedge's CPUID hides {}", h.name)))
    };
    match present {
        Some((p, why)) if p != a.inverted => {
            Applied::Yes(if a.inverted { format!("!{why}") } else { why })
        }
        Some((_, why)) => Applied::No(if a.inverted { format!("!{why}") } else { why }),
        None => Applied::Maybe,
    }
}

/// The feature names of `cpufeatures.h` (`#define X86_FEATURE_X ( w*32+b)`
/// and `#define X86_BUG_X X86_BUG(n)`, bug n being NCAPINTS*32+n).
pub fn feature_names(header: &str) -> BTreeMap<u16, String> {
    let ncapints: u16 = header
        .lines()
        .find_map(|l| l.strip_prefix("#define NCAPINTS"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let mut out = BTreeMap::new();
    for line in header.lines() {
        let mut w = line.split_whitespace();
        if w.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(value)) = (w.next(), w.next()) else {
            continue;
        };
        let rest: String = std::iter::once(value).chain(w).collect::<Vec<_>>().join("");
        // `n`, or `w*32+b`.
        let bit = |e: &str| match e.split_once("*32+") {
            Some((w, b)) => Some(w.parse::<u16>().ok()? * 32 + b.parse::<u16>().ok()?),
            None => e.parse::<u16>().ok(),
        };
        let number = if let Some(n) = rest.strip_prefix("X86_BUG(") {
            n.split(')').next().and_then(bit).map(|n| ncapints * 32 + n)
        } else if let Some(n) = rest.strip_prefix('(') {
            n.split(')').next().and_then(bit)
        } else {
            None
        };
        if let (Some(n), Some(short)) = (
            number,
            name.strip_prefix("X86_FEATURE_")
                .or(name.strip_prefix("X86_BUG_").map(|_| name)),
        ) {
            out.entry(n).or_insert_with(|| short.to_string());
        }
    }
    out
}

/// The sensitive instructions in `bytes` (at `address`) that no site
/// covers, as the audit classifies them. Left out: `rdtsc`/`rdtscp`
/// (unprivileged: they run natively, as the rewrite leaves them) and the
/// deliberate traps `int3` and `ud2`, which are never sites and reach
/// Linux's own handlers natively (docs/linux.md, "Deliberate traps"; the
/// `int3`s here are speculation traps after the RSB-filling calls).
pub fn sensitive_outside_sites(
    bytes: &[u8],
    address: u64,
    in_site: impl Fn(u64) -> bool,
) -> Vec<(u64, Kind)> {
    let mut d = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let i = d.decode();
        if let Some(k) = afterburner::decode::kind_of(&i) {
            let native = matches!(k, Kind::Rdtsc | Kind::Rdtscp | Kind::Int3 | Kind::Ud2);
            if !native && !in_site(i.ip()) {
                out.push((i.ip(), k));
            }
        }
    }
    out
}

/// True if `bytes` hold two `0x90` in a row: what `optimize_nops()` may
/// rewrite (it replaces runs of single-byte NOPs that it meets at an
/// instruction boundary; a site holding none cannot be touched).
pub fn has_nop_run(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == [0x90, 0x90])
}
