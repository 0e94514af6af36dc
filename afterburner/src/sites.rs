//! `afterburn sites`: lists the `.afterburn` records of an ELF file.

use crate::elf::ElfImage;
use crate::format::{self, Kind};

/// One listed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteLine {
    pub address: u64,
    pub section: String,
    pub kind: String,
    pub site_len: u8,
    pub insn_len: u8,
    pub pair_len: u8,
    pub flags: u16,
    pub symbol: String,
}

fn kind_name(kind: u16) -> String {
    match kind {
        format::MARKER_OPT_OUT_BEGIN => "opt-out-begin".into(),
        format::MARKER_OPT_OUT_END => "opt-out-end".into(),
        format::MARKER_CODE_MODE => "code-mode".into(),
        format::MARKER_DATA_BEGIN => "data-begin".into(),
        format::MARKER_DATA_END => "data-end".into(),
        k => Kind::from_number(k).map_or_else(|| format!("unknown({k})"), |k| k.name().into()),
    }
}

/// The records of `image`, in section order.
pub fn list(image: &ElfImage) -> Vec<SiteLine> {
    image
        .records
        .iter()
        .map(|r| SiteLine {
            address: r.address,
            section: r
                .location
                .map_or_else(|| "?".into(), |l| image.section_name(l.section).to_string()),
            kind: kind_name(r.record.kind),
            site_len: r.record.site_len,
            insn_len: r.record.insn_len,
            pair_len: r.record.pair_len,
            flags: r.record.flags,
            symbol: r.location.map_or_else(|| "?".into(), |l| image.describe(l)),
        })
        .collect()
}

/// Renders the listing as a table.
pub fn to_text(lines: &[SiteLine]) -> String {
    let mut s = String::from(
        "address            section      kind              site insn pair flags  symbol\n",
    );
    for l in lines {
        s.push_str(&format!(
            "{:#018x} {:<12} {:<17} {:>4} {:>4} {:>4} {:#06x} {}\n",
            l.address, l.section, l.kind, l.site_len, l.insn_len, l.pair_len, l.flags, l.symbol
        ));
    }
    s
}

/// Renders the listing as JSON.
pub fn to_json(lines: &[SiteLine]) -> serde_json::Value {
    serde_json::Value::Array(
        lines
            .iter()
            .map(|l| {
                serde_json::json!({
                    "address": l.address, "section": l.section, "kind": l.kind,
                    "site_len": l.site_len, "insn_len": l.insn_len, "pair_len": l.pair_len,
                    "flags": l.flags, "symbol": l.symbol,
                })
            })
            .collect(),
    )
}
