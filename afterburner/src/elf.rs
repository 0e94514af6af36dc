//! Reading what the audit and `afterburn sites` need from an ELF file
//! (relocatable or linked): code sections, the `.afterburn` records with
//! their addresses resolved (through relocations in `.o` files), symbols.

use crate::format::{self, Record};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionIndex, SectionKind};
use std::collections::HashMap;
use thiserror::Error;

/// Why a file could not be read.
#[derive(Debug, Error)]
pub enum ElfError {
    #[error("not an ELF file this tool can read: {0}")]
    Parse(#[from] object::Error),
    #[error("the .afterburn section is malformed: {0}")]
    Format(String),
    #[error("not an x86 ELF file (architecture {0:?})")]
    Architecture(object::Architecture),
}

/// A code section's contents.
#[derive(Clone, Debug)]
pub struct CodeSection {
    pub index: SectionIndex,
    pub name: String,
    /// Link-time address; 0 in relocatable objects.
    pub address: u64,
    pub data: Vec<u8>,
    /// False for a section without the executable flag that is decoded
    /// because records point into it (see [`ElfImage::parse`]).
    pub executable: bool,
}

/// Non-executable sections that may still hold code: with contents (not
/// `.bss`, not debug info, not the records themselves).
fn is_code_candidate(s: &object::Section<'_, '_>, name: &str) -> bool {
    matches!(
        s.kind(),
        SectionKind::Data | SectionKind::ReadOnlyData | SectionKind::Unknown | SectionKind::Other
    ) && name != format::SECTION_NAME
        && s.size() > 0
}

/// A position in a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub section: SectionIndex,
    pub offset: u64,
}

/// A record with its target resolved.
#[derive(Clone, Copy, Debug)]
pub struct ResolvedRecord {
    pub record: Record,
    /// Offset of the record in its note section (for messages).
    pub record_offset: usize,
    /// Where the record points, or `None` if outside every section.
    pub location: Option<Location>,
    /// The address the record names (section base + offset for `.o`).
    pub address: u64,
}

/// What the tools read from one ELF file.
#[derive(Debug)]
pub struct ElfImage {
    pub relocatable: bool,
    pub code: Vec<CodeSection>,
    /// Section names of all sections by index (for messages).
    pub section_names: HashMap<SectionIndex, String>,
    pub records: Vec<ResolvedRecord>,
    /// Symbols by section, sorted by offset.
    symbols: HashMap<SectionIndex, Vec<(u64, String)>>,
    section_addresses: HashMap<SectionIndex, (u64, u64)>,
}

impl ElfImage {
    /// The section and offset of the symbol `name`, if the image has it.
    pub fn symbol(&self, name: &str) -> Option<(SectionIndex, u64)> {
        self.symbols.iter().find_map(|(&section, syms)| {
            syms.iter()
                .find(|(_, n)| n == name)
                .map(|&(offset, _)| (section, offset))
        })
    }

    /// Parses an ELF file's bytes.
    pub fn parse(data: &[u8]) -> Result<ElfImage, ElfError> {
        let file = object::File::parse(data)?;
        if !matches!(
            file.architecture(),
            object::Architecture::X86_64 | object::Architecture::I386
        ) {
            return Err(ElfError::Architecture(file.architecture()));
        }
        let relocatable = file.kind() == object::ObjectKind::Relocatable;
        let mut code = Vec::new();
        let mut candidates = Vec::new();
        let mut section_names = HashMap::new();
        let mut section_addresses = HashMap::new();
        for s in file.sections() {
            let name = s.name().unwrap_or("?").to_string();
            section_names.insert(s.index(), name.clone());
            section_addresses.insert(s.index(), (s.address(), s.size()));
            if s.kind() == SectionKind::Text {
                code.push(CodeSection {
                    index: s.index(),
                    name,
                    address: s.address(),
                    data: s.data()?.to_vec(),
                    executable: true,
                });
            } else if is_code_candidate(&s, &name) {
                candidates.push(CodeSection {
                    index: s.index(),
                    name,
                    address: s.address(),
                    data: s.data()?.to_vec(),
                    executable: false,
                });
            }
        }
        let mut symbols: HashMap<SectionIndex, Vec<(u64, String)>> = HashMap::new();
        for sym in file.symbols() {
            if matches!(
                sym.kind(),
                object::SymbolKind::Section | object::SymbolKind::File
            ) {
                continue;
            }
            let (Some(idx), Ok(name)) = (sym.section_index(), sym.name()) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            let base = if relocatable {
                0
            } else {
                section_addresses.get(&idx).map_or(0, |a| a.0)
            };
            symbols
                .entry(idx)
                .or_default()
                .push((sym.address().wrapping_sub(base), name.to_string()));
        }
        for v in symbols.values_mut() {
            v.sort();
        }
        let mut image = ElfImage {
            relocatable,
            code,
            section_names,
            records: Vec::new(),
            symbols,
            section_addresses,
        };
        // Hand-written code often lives in sections declared without the
        // `x` flag (seL4's `.section .phys.text`, linked into `.phys`), made
        // executable only by the linker script's segments. A section with
        // contents that records point into is decoded as code too (its sites
        // must still check out); the audit notes it.
        image.code.extend(candidates.iter().cloned());
        image.records = image.read_records(&file)?;
        let used: Vec<SectionIndex> = image
            .records
            .iter()
            .filter_map(|r| r.location.map(|l| l.section))
            .collect();
        image
            .code
            .retain(|c| c.executable || used.contains(&c.index));
        Ok(image)
    }

    /// The records of every note section that holds our notes (an object
    /// has `.note.afterburn`; a linked image may have merged it into `.notes`
    /// with other notes).
    fn read_records(&self, file: &object::File<'_>) -> Result<Vec<ResolvedRecord>, ElfError> {
        let mut out = Vec::new();
        for section in file.sections() {
            if section.kind() != SectionKind::Note {
                continue;
            }
            let data = section.data()?;
            if !format::has_afterburn_notes(data) {
                continue;
            }
            let name = section.name().unwrap_or("?").to_string();
            self.read_section_records(file, &section, data, &name, &mut out)?;
        }
        Ok(out)
    }

    fn read_section_records(
        &self,
        file: &object::File<'_>,
        section: &object::Section<'_, '_>,
        data: &[u8],
        section_name: &str,
        out: &mut Vec<ResolvedRecord>,
    ) -> Result<(), ElfError> {
        // Relocations of the address fields, by offset in the section.
        let mut relocs: HashMap<u64, (RelocationTarget, i64)> = HashMap::new();
        for (offset, r) in section.relocations() {
            relocs.insert(offset, (r.target(), r.addend()));
        }
        let mut raw = Vec::new();
        format::walk_records(data, |off, rec| raw.push((off, rec)))
            .map_err(|e| ElfError::Format(format!("{section_name}: {e:?}")))?;
        for (off, record) in raw {
            let field = (off + format::RECORD_ADDRESS_OFFSET) as u64;
            let (location, address) = match relocs.get(&field) {
                Some((target, addend)) => {
                    let base = match *target {
                        RelocationTarget::Section(idx) => Some((idx, 0u64)),
                        RelocationTarget::Symbol(sidx) => file
                            .symbol_by_index(sidx)
                            .ok()
                            .and_then(|s| s.section_index().map(|i| (i, s.address()))),
                        _ => None,
                    };
                    match base {
                        Some((idx, value)) => {
                            let offset = value.wrapping_add(*addend as u64);
                            let sec_base = if self.relocatable {
                                0
                            } else {
                                self.section_addresses.get(&idx).map_or(0, |a| a.0)
                            };
                            let loc = Location {
                                section: idx,
                                offset: offset.wrapping_sub(sec_base),
                            };
                            (Some(loc), offset)
                        }
                        None => (None, *addend as u64),
                    }
                }
                None if self.relocatable => (None, record.address),
                None => (self.locate(record.address), record.address),
            };
            out.push(ResolvedRecord {
                record,
                record_offset: off,
                location,
                address,
            });
        }
        Ok(())
    }

    /// The code section location of a link-time address.
    pub fn locate(&self, address: u64) -> Option<Location> {
        self.code.iter().find_map(|c| {
            let off = address.checked_sub(c.address)?;
            (off < c.data.len() as u64 || (off == c.data.len() as u64)).then_some(Location {
                section: c.index,
                offset: off,
            })
        })
    }

    /// `symbol+0xoff` for a location, or `section+0xoff` without a symbol.
    pub fn describe(&self, loc: Location) -> String {
        if let Some(syms) = self.symbols.get(&loc.section) {
            let i = syms.partition_point(|(o, _)| *o <= loc.offset);
            if i > 0 {
                let (o, name) = &syms[i - 1];
                return format!("{name}+{:#x}", loc.offset - o);
            }
        }
        format!("{}+{:#x}", self.section_name(loc.section), loc.offset)
    }

    /// The name of a section.
    pub fn section_name(&self, idx: SectionIndex) -> &str {
        self.section_names.get(&idx).map_or("?", String::as_str)
    }

    /// The address of a location (section offset in `.o` files).
    pub fn address_of(&self, loc: Location) -> u64 {
        if self.relocatable {
            loc.offset
        } else {
            // Offsets come from the file: never trust them not to overflow.
            self.section_addresses
                .get(&loc.section)
                .map_or(0, |a| a.0)
                .wrapping_add(loc.offset)
        }
    }

    /// The code section with this index.
    pub fn code_section(&self, idx: SectionIndex) -> Option<&CodeSection> {
        self.code.iter().find(|c| c.index == idx)
    }
}
