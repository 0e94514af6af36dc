//! The binary audit: decodes every code section and proves that the
//! `.afterburn` records cover every sensitive instruction.
//!
//! Rules (a violation each):
//! - a sensitive instruction outside every site and opted-out region
//!   (including ones written as `.byte`);
//! - a site that does not start with one sensitive instruction of the
//!   recorded kind and length, or (shadow pair) its second instruction has
//!   another length, or whose remaining bytes are not all NOPs;
//! - a record that points outside code, runs past its section, overlaps
//!   another site, or is malformed; unbalanced opt-out markers.
//!
//! Notes (not violations): `%gs:` memory operands.

use crate::decode;
use crate::elf::{ElfImage, Location, ResolvedRecord};
use crate::format::{self, Kind};
use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter, Instruction};
use object::SectionIndex;
use std::collections::{BTreeMap, HashMap};

/// What rule a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Sensitive instruction outside any site.
    Uncovered,
    /// Sensitive instruction in Linux's `.altinstr_replacement`: not run
    /// where it is, but copied over the original instructions when the CPU
    /// has the feature the alternative names (`clac`/`stac` with SMAP,
    /// `xsaves` with XSAVES, ...). Listed apart: hiding the feature keeps
    /// it out, and the pass cannot see most of them (`.byte`-encoded).
    UncoveredAlternative,
    /// A site's instruction does not match its record.
    BadSite,
    /// A site holds something other than NOPs after its instruction(s).
    BadPadding,
    /// A record points outside code or runs past the section end.
    RecordOutsideCode,
    /// Two sites overlap.
    Overlap,
    /// An instruction that starts before a site runs into it.
    StraddlesSite,
    /// Opt-out markers that do not pair up.
    BadRegion,
    /// A note: `%gs:` memory operand.
    GsOperand,
    /// A note: a section without the executable flag decoded as code.
    NotExecutable,
}

impl Rule {
    /// Notes are reported but do not make the audit fail.
    pub fn is_note(self) -> bool {
        matches!(self, Rule::GsOperand | Rule::NotExecutable)
    }

    /// Short machine-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Uncovered => "uncovered",
            Rule::UncoveredAlternative => "uncovered-alternative",
            Rule::BadSite => "bad-site",
            Rule::BadPadding => "bad-padding",
            Rule::RecordOutsideCode => "record-outside-code",
            Rule::Overlap => "overlap",
            Rule::StraddlesSite => "straddles-site",
            Rule::BadRegion => "bad-region",
            Rule::GsOperand => "gs-operand",
            Rule::NotExecutable => "not-executable",
        }
    }
}

/// One violation or note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    pub address: u64,
    pub section: String,
    pub symbol: String,
    pub disassembly: String,
    pub message: String,
}

/// The audit's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub violations: Vec<Finding>,
    pub notes: Vec<Finding>,
    pub sites: usize,
    pub instructions: usize,
    pub opted_out_bytes: u64,
    /// Bytes of string data in code sections (not decoded).
    pub data_bytes: u64,
    /// Deliberate traps (`int3`, `ud2`, `into`, `int $n`) outside sites:
    /// not violations, they trap and are reflected wherever they are.
    pub traps_without_site: usize,
}

impl Report {
    /// True if there is no violation.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// Human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for f in self.violations.iter().chain(&self.notes) {
            let what = if f.rule.is_note() {
                "note"
            } else {
                "violation"
            };
            s.push_str(&format!(
                "{what}: {}: {:#x} {} <{}>: {}: {}\n",
                f.rule.name(),
                f.address,
                f.section,
                f.symbol,
                f.disassembly,
                f.message
            ));
        }
        for (rule, by) in self.summary() {
            let counts: Vec<String> = by.iter().map(|(m, n)| format!("{m} {n}")).collect();
            s.push_str(&format!("summary: {rule}: {}\n", counts.join(", ")));
        }
        s.push_str(&format!(
            "{} sites, {} instructions decoded, {} bytes opted out, {} bytes of string data skipped, {} deliberate traps without a site, {} violations, {} notes\n",
            self.sites,
            self.instructions,
            self.opted_out_bytes,
            self.data_bytes,
            self.traps_without_site,
            self.violations.len(),
            self.notes.len()
        ));
        s
    }

    /// Machine-readable report.
    pub fn to_json(&self) -> serde_json::Value {
        let list = |v: &[Finding]| {
            v.iter()
                .map(|f| {
                    serde_json::json!({
                        "rule": f.rule.name(),
                        "address": f.address,
                        "section": f.section,
                        "symbol": f.symbol,
                        "disassembly": f.disassembly,
                        "message": f.message,
                    })
                })
                .collect::<Vec<_>>()
        };
        serde_json::json!({
            "clean": self.is_clean(),
            "sites": self.sites,
            "instructions": self.instructions,
            "opted_out_bytes": self.opted_out_bytes,
            "data_bytes": self.data_bytes,
            "traps_without_site": self.traps_without_site,
            "summary": self.summary(),
            "violations": list(&self.violations),
            "notes": list(&self.notes),
        })
    }
}

/// Linux's section of alternative instructions (`arch/x86/include/asm/
/// alternative.h`): copied over the original code at boot if the CPU has
/// the feature.
const ALTERNATIVE_REPLACEMENTS: &str = ".altinstr_replacement";

impl Report {
    /// Violations and notes counted by rule and mnemonic: what an image
    /// leaves uncovered at a glance.
    pub fn summary(&self) -> BTreeMap<&'static str, BTreeMap<String, usize>> {
        let mut out: BTreeMap<&'static str, BTreeMap<String, usize>> = BTreeMap::new();
        for f in self.violations.iter().chain(&self.notes) {
            let mnemonic = f
                .disassembly
                .split_whitespace()
                .next()
                .unwrap_or("-")
                .to_string();
            *out.entry(f.rule.name())
                .or_default()
                .entry(mnemonic)
                .or_default() += 1;
        }
        out
    }
}

struct SectionPlan<'r> {
    sites: Vec<&'r ResolvedRecord>,
    /// Opted-out (`false`) and string data (`true`) regions.
    regions: Vec<(u64, u64, bool)>,
    modes: Vec<(u64, u32)>,
}

fn bitness(flags: u16) -> u32 {
    if flags & format::FLAG_CODE16 != 0 {
        16
    } else if flags & format::FLAG_CODE32 != 0 {
        32
    } else {
        64
    }
}

struct Auditor<'a> {
    image: &'a ElfImage,
    report: Report,
    formatter: GasFormatter,
}

impl Auditor<'_> {
    fn finding(&mut self, rule: Rule, loc: Location, instr: Option<&Instruction>, message: String) {
        let mut disassembly = String::new();
        if let Some(i) = instr {
            self.formatter.format(i, &mut disassembly);
        }
        let f = Finding {
            rule,
            address: self.image.address_of(loc),
            section: self.image.section_name(loc.section).to_string(),
            symbol: self.image.describe(loc),
            disassembly,
            message,
        };
        if rule.is_note() {
            self.report.notes.push(f);
        } else {
            self.report.violations.push(f);
        }
    }
}

/// Audits a parsed ELF image.
/// The symbols a kernel image may put around code it runs at user level
/// (docs/afterburner.md, "The binary audit"): the audit skips it.
pub const USER_CODE_START: &str = "afterburn_user_code_start";
pub const USER_CODE_END: &str = "afterburn_user_code_end";

pub fn audit(image: &ElfImage) -> Report {
    let mut a = Auditor {
        image,
        report: Report::default(),
        formatter: GasFormatter::new(),
    };
    let mut plans: HashMap<SectionIndex, SectionPlan<'_>> = HashMap::new();
    for c in &image.code {
        plans.insert(
            c.index,
            SectionPlan {
                sites: Vec::new(),
                regions: Vec::new(),
                modes: Vec::new(),
            },
        );
    }
    let mut open_regions: HashMap<SectionIndex, u64> = HashMap::new();
    let mut open_data: HashMap<SectionIndex, u64> = HashMap::new();
    for r in &image.records {
        let kind = r.record.kind;
        let plan = r
            .location
            .and_then(|l| plans.get_mut(&l.section).map(|p| (l, p)));
        if kind == format::MARKER_CODE_MODE {
            // Mode markers also land in data sections (mode is global in as).
            if let Some((loc, plan)) = plan {
                plan.modes.push((loc.offset, bitness(r.record.flags)));
            }
            continue;
        }
        let Some((loc, plan)) = plan else {
            let loc = r.location.unwrap_or(Location {
                section: SectionIndex(0),
                offset: r.address,
            });
            let what = if r.record.is_site() { "site" } else { "marker" };
            a.finding(
                Rule::RecordOutsideCode,
                loc,
                None,
                format!(
                    "{what} record at {:#x} in the records' note section points outside code",
                    r.record_offset
                ),
            );
            continue;
        };
        match kind {
            format::MARKER_OPT_OUT_BEGIN => {
                if open_regions.insert(loc.section, loc.offset).is_some() {
                    a.finding(Rule::BadRegion, loc, None, "nested opt-out region".into());
                }
            }
            format::MARKER_OPT_OUT_END => match open_regions.remove(&loc.section) {
                Some(start) if start <= loc.offset => plan.regions.push((start, loc.offset, false)),
                _ => a.finding(
                    Rule::BadRegion,
                    loc,
                    None,
                    "opt-out region end without a start".into(),
                ),
            },
            format::MARKER_DATA_BEGIN => {
                if open_data.insert(loc.section, loc.offset).is_some() {
                    a.finding(Rule::BadRegion, loc, None, "nested data region".into());
                }
            }
            format::MARKER_DATA_END => match open_data.remove(&loc.section) {
                Some(start) if start <= loc.offset => plan.regions.push((start, loc.offset, true)),
                _ => a.finding(
                    Rule::BadRegion,
                    loc,
                    None,
                    "data region end without a start".into(),
                ),
            },
            k if k < format::MARKER_BASE => plan.sites.push(r),
            _ => a.finding(
                Rule::BadSite,
                loc,
                None,
                format!("unknown record kind {kind:#x}"),
            ),
        }
    }
    for (section, start) in open_regions.into_iter().chain(open_data) {
        a.finding(
            Rule::BadRegion,
            Location {
                section,
                offset: start,
            },
            None,
            "region start without an end in the same section".into(),
        );
    }
    // Code the image runs at user level (a test kernel's processes):
    // never under the wedge, so not audited, as an opted-out region.
    if let (Some((section, start)), Some((end_section, end))) =
        (image.symbol(USER_CODE_START), image.symbol(USER_CODE_END))
    {
        match plans.get_mut(&section) {
            Some(plan) if section == end_section && start <= end => {
                plan.regions.push((start, end, false));
            }
            _ => a.finding(
                Rule::BadRegion,
                Location {
                    section,
                    offset: start,
                },
                None,
                format!("{USER_CODE_START} and {USER_CODE_END} do not bound one stretch of code"),
            ),
        }
    }
    for code in &image.code {
        let Some(mut plan) = plans.remove(&code.index) else {
            continue;
        };
        if !code.executable {
            a.finding(
                Rule::NotExecutable,
                Location {
                    section: code.index,
                    offset: 0,
                },
                None,
                format!(
                    "{} is not marked executable; decoded as code because records point into it",
                    code.name
                ),
            );
        }
        plan.sites.sort_by_key(|r| r.location.map(|l| l.offset));
        plan.regions.sort_unstable();
        plan.modes.sort_unstable();
        audit_section(&mut a, code.index, &code.data, &plan);
    }
    a.report
}

fn mode_at(modes: &[(u64, u32)], offset: u64) -> u32 {
    let i = modes.partition_point(|(o, _)| *o <= offset);
    if i == 0 {
        64
    } else {
        modes[i - 1].1
    }
}

fn decode_at(data: &[u8], offset: u64, bitness: u32) -> Option<Instruction> {
    let bytes = data.get(usize::try_from(offset).ok()?..)?;
    let mut d = Decoder::with_ip(bitness, bytes, offset, DecoderOptions::NONE);
    if !d.can_decode() {
        return None;
    }
    let i = d.decode();
    (!i.is_invalid()).then_some(i)
}

fn audit_section(a: &mut Auditor<'_>, section: SectionIndex, data: &[u8], plan: &SectionPlan<'_>) {
    let size = data.len() as u64;
    let loc = |offset| Location { section, offset };
    let mut pos = 0u64;
    let mut site_i = 0;
    let mut region_i = 0;
    let mut covered_to = 0u64;
    while pos < size || site_i < plan.sites.len() {
        // Skip opted-out regions.
        while region_i < plan.regions.len() && plan.regions[region_i].1 <= pos {
            region_i += 1;
        }
        if let Some(&(start, end, is_data)) = plan.regions.get(region_i) {
            if start <= pos {
                let skipped = end.min(size) - pos.min(end.min(size));
                let counter = if is_data {
                    &mut a.report.data_bytes
                } else {
                    &mut a.report.opted_out_bytes
                };
                *counter = counter.saturating_add(skipped);
                pos = end;
                continue;
            }
        }
        let next_site = plan
            .sites
            .get(site_i)
            .and_then(|r| r.location)
            .map(|l| l.offset);
        if let Some(site_off) = next_site {
            if site_off <= pos || pos >= size {
                let r = plan.sites[site_i];
                site_i += 1;
                if site_off < covered_to {
                    a.finding(
                        Rule::Overlap,
                        loc(site_off),
                        None,
                        "site overlaps the previous site".into(),
                    );
                    continue;
                }
                let end = check_site(a, section, data, r);
                covered_to = end;
                pos = pos.max(end);
                continue;
            }
        }
        if pos >= size {
            break;
        }
        let bits = mode_at(&plan.modes, pos);
        let Some(instr) = decode_at(data, pos, bits) else {
            // Data or padding that is not code: step a byte, as a disassembler
            // resynchronises.
            pos += 1;
            continue;
        };
        let end = pos + instr.len() as u64;
        // A code-mode marker sits on a statement boundary of the source: an
        // instruction running over it is data decoded as code (a multiboot
        // header before 32-bit code, say). Resynchronise there.
        let next_mode = plan
            .modes
            .get(plan.modes.partition_point(|(o, _)| *o <= pos))
            .map(|m| m.0);
        if let Some(boundary) = next_mode.filter(|b| end > *b && next_site.is_none_or(|s| *b <= s))
        {
            pos = boundary;
            continue;
        }
        a.report.instructions += 1;
        if let Some(site_off) = next_site {
            if end > site_off {
                a.finding(
                    Rule::StraddlesSite,
                    loc(pos),
                    Some(&instr),
                    format!(
                        "instruction runs into the site at {:#x} (data in code, or a broken site)",
                        site_off
                    ),
                );
                pos = site_off;
                continue;
            }
        }
        if let Some(kind) = decode::kind_of(&instr).filter(|k| {
            let trap = k.is_deliberate_trap();
            a.report.traps_without_site += usize::from(trap);
            !trap
        }) {
            let rule = if a.image.section_name(section) == ALTERNATIVE_REPLACEMENTS {
                Rule::UncoveredAlternative
            } else {
                Rule::Uncovered
            };
            a.finding(
                rule,
                loc(pos),
                Some(&instr),
                format!("sensitive instruction ({}) outside any site", kind.name()),
            );
        }
        if decode::uses_gs_memory(&instr) {
            a.finding(
                Rule::GsOperand,
                loc(pos),
                Some(&instr),
                "%gs: memory operand (seL4 owns GS base)".into(),
            );
        }
        pos = end;
    }
}

/// Checks one site; returns its end offset.
fn check_site(a: &mut Auditor<'_>, section: SectionIndex, data: &[u8], r: &ResolvedRecord) -> u64 {
    let start = r.location.map_or(0, |l| l.offset);
    let loc = |offset| Location { section, offset };
    let rec = r.record;
    let site_end = start.saturating_add(u64::from(rec.site_len));
    a.report.sites += 1;
    if site_end > data.len() as u64 {
        a.finding(
            Rule::RecordOutsideCode,
            loc(start),
            None,
            "site runs past the end of its section".into(),
        );
        return data.len() as u64;
    }
    let bits = bitness(rec.flags);
    let Some(kind) = Kind::from_number(rec.kind) else {
        a.finding(
            Rule::BadSite,
            loc(start),
            None,
            format!("unknown kind {}", rec.kind),
        );
        return site_end;
    };
    let paired = rec.flags & format::FLAG_SHADOW_PAIR != 0;
    let body_len = u64::from(rec.insn_len) + if paired { u64::from(rec.pair_len) } else { 0 };
    if rec.insn_len == 0 || body_len > u64::from(rec.site_len) {
        a.finding(
            Rule::BadSite,
            loc(start),
            None,
            "record lengths are inconsistent".into(),
        );
        return site_end;
    }
    let Some(first) = decode_at(data, start, bits) else {
        a.finding(
            Rule::BadSite,
            loc(start),
            None,
            "site does not start with a valid instruction".into(),
        );
        return site_end;
    };
    a.report.instructions += 1;
    match decode::kind_of(&first) {
        Some(k) if k == kind => {}
        // `as` encodes `int $3` as the one-byte `int3`.
        Some(Kind::Int3) if kind == Kind::Int => {}
        Some(k) => a.finding(
            Rule::BadSite,
            loc(start),
            Some(&first),
            format!("record says {}, the site holds {}", kind.name(), k.name()),
        ),
        None => a.finding(
            Rule::BadSite,
            loc(start),
            Some(&first),
            format!(
                "record says {}, the site holds no sensitive instruction",
                kind.name()
            ),
        ),
    }
    if first.len() != usize::from(rec.insn_len) {
        a.finding(
            Rule::BadSite,
            loc(start),
            Some(&first),
            format!(
                "instruction is {} bytes, the record says {}",
                first.len(),
                rec.insn_len
            ),
        );
        return site_end;
    }
    let mut pos = start + first.len() as u64;
    if decode::uses_gs_memory(&first) {
        a.finding(
            Rule::GsOperand,
            loc(start),
            Some(&first),
            "%gs: memory operand (seL4 owns GS base)".into(),
        );
    }
    if paired {
        match decode_at(data, pos, bits) {
            Some(second) if second.len() == usize::from(rec.pair_len) => {
                a.report.instructions += 1;
                pos += second.len() as u64;
            }
            other => {
                a.finding(
                    Rule::BadSite,
                    loc(pos),
                    other.as_ref(),
                    format!(
                        "shadowed instruction does not match the record's length {}",
                        rec.pair_len
                    ),
                );
                return site_end;
            }
        }
    }
    while pos < site_end {
        match decode_at(data, pos, bits) {
            Some(i) if decode::is_padding(&i) && pos + i.len() as u64 <= site_end => {
                a.report.instructions += 1;
                pos += i.len() as u64;
            }
            other => {
                a.finding(
                    Rule::BadPadding,
                    loc(pos),
                    other.as_ref(),
                    "site padding is not NOPs".into(),
                );
                break;
            }
        }
    }
    site_end
}
