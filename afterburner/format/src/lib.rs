//! The `.afterburn` records ABI: the note that carries them, chunk header,
//! site record and kind numbers.
//!
//! One `no_std` crate for every side of the contract: the afterburner
//! writes it, the wedge and the VMM server read it.
//! `docs/afterburn-format.md` is the prose version of the same contract;
//! change both together and bump [`VERSION`] on any incompatible change.
//!
//! Each object file that has sites carries one ELF note (name
//! [`NOTE_NAME`], type [`NOTE_TYPE`]) in its section [`SECTION_NAME`]. The
//! note's descriptor is a *chunk*: a [`ChunkHeader`] followed by
//! `record_count` records of `record_size` bytes. Notes, not a section of
//! our own, because every linker script that keeps notes collects
//! `.note.*` into one output section (Linux's `NOTES` puts them in `.notes`
//! and a `PT_NOTE` segment), so a kernel linked by its own script places
//! the records deliberately, with no orphan section. A reader walks the
//! notes of a note section and takes only ours: other notes (a build id,
//! Linux's own) may sit between them.
#![cfg_attr(not(test), no_std)]

/// Name of the ELF section the afterburner writes the records into (in
/// object files; a linked image may have merged it into `.notes`).
pub const SECTION_NAME: &str = ".note.afterburn";
/// The section name of format version 1 (records without notes), which
/// readers no longer accept; the pass still knows it to refuse input that
/// went through an older afterburner.
pub const LEGACY_SECTION_NAME: &str = ".afterburn";
/// The name of the notes that carry chunks (NUL included on disk).
pub const NOTE_NAME: &[u8] = b"Afterburn";
/// The type of the notes that carry chunks (types are per note name).
pub const NOTE_TYPE: u32 = 1;
/// Bytes before a note's descriptor: `namesz`, `descsz`, `type`, then the
/// name with its NUL, padded to 4 bytes.
pub const NOTE_HEADER_SIZE: usize = 12 + (NOTE_NAME.len() + 1).next_multiple_of(4);
/// Alignment of notes (and of their name and descriptor), as GNU tools and
/// Linux lay them out in 64-bit files.
pub const NOTE_ALIGN: usize = 4;
/// `"AFBN"` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"AFBN");
/// Format version; readers reject chunks with another version. Version 2:
/// chunks inside notes.
pub const VERSION: u16 = 2;
/// Size of [`ChunkHeader`] in bytes.
pub const HEADER_SIZE: u16 = 16;
/// Size of one [`Record`] in bytes.
pub const RECORD_SIZE: u16 = 16;

/// Record flag: the site holds a second instruction that sits in the first
/// one's interrupt shadow (`sti; hlt`, `mov ..., %ss; ...`). Its length is
/// [`Record::pair_len`].
pub const FLAG_SHADOW_PAIR: u16 = 1 << 0;
/// Record flag: the site was assembled in `.code32` mode.
pub const FLAG_CODE32: u16 = 1 << 1;
/// Record flag: the site was assembled in `.code16` mode.
pub const FLAG_CODE16: u16 = 1 << 2;
/// Record flag: the instruction carries a `rep`/`repe`/`repne` prefix.
pub const FLAG_REP: u16 = 1 << 3;

/// The header that starts every chunk (16 bytes, little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Always [`MAGIC`].
    pub magic: u32,
    /// Always [`VERSION`] for chunks this module writes.
    pub version: u16,
    /// Size of this header; records start this many bytes after `magic`.
    pub header_size: u16,
    /// Size of each record; readers must step by this, not by their own size.
    pub record_size: u16,
    /// Reserved, zero.
    pub reserved: u16,
    /// Number of records that follow.
    pub record_count: u32,
}

impl ChunkHeader {
    /// Parses a header from the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Option<ChunkHeader> {
        let b = bytes.get(..usize::from(HEADER_SIZE))?;
        Some(ChunkHeader {
            magic: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            version: u16::from_le_bytes([b[4], b[5]]),
            header_size: u16::from_le_bytes([b[6], b[7]]),
            record_size: u16::from_le_bytes([b[8], b[9]]),
            reserved: u16::from_le_bytes([b[10], b[11]]),
            record_count: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    /// Total length of the chunk (header and records) in bytes.
    pub fn chunk_len(&self) -> u64 {
        u64::from(self.header_size) + u64::from(self.record_size) * u64::from(self.record_count)
    }
}

/// One site (or region marker) record (16 bytes, little-endian).
///
/// Offsets: `address` 0 (u64, relocated), `kind` 8 (u16), `flags` 10 (u16),
/// `site_len` 12, `insn_len` 13, `pair_len` 14, `reserved` 15 (u8 each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Address of the first byte of the site (first prefix of the instruction).
    pub address: u64,
    /// A [`Kind`] number, or a marker number ([`MARKER_OPT_OUT_BEGIN`] ...).
    pub kind: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// Bytes of the whole site: instruction(s) and NOP padding.
    pub site_len: u8,
    /// Bytes of the sensitive instruction, prefixes included.
    pub insn_len: u8,
    /// Bytes of the shadowed second instruction, 0 without [`FLAG_SHADOW_PAIR`].
    pub pair_len: u8,
    /// Reserved, zero.
    pub reserved: u8,
}

/// Byte offset of [`Record::address`] inside a record (the relocated field).
pub const RECORD_ADDRESS_OFFSET: usize = 0;

impl Record {
    /// Parses a record from the start of `bytes` (which must hold at least
    /// [`RECORD_SIZE`] bytes).
    pub fn parse(bytes: &[u8]) -> Option<Record> {
        let b = bytes.get(..usize::from(RECORD_SIZE))?;
        Some(Record {
            address: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            kind: u16::from_le_bytes([b[8], b[9]]),
            flags: u16::from_le_bytes([b[10], b[11]]),
            site_len: b[12],
            insn_len: b[13],
            pair_len: b[14],
            reserved: b[15],
        })
    }

    /// True for records that describe a padded site (as opposed to markers).
    pub fn is_site(&self) -> bool {
        self.kind < MARKER_BASE
    }
}

/// Kind numbers at or above this are region markers, not sites.
pub const MARKER_BASE: u16 = 0x8000;
/// Marker: an opted-out region (bare-metal-only code) starts at `address`.
pub const MARKER_OPT_OUT_BEGIN: u16 = 0x8001;
/// Marker: the opted-out region that began before ends at `address`.
pub const MARKER_OPT_OUT_END: u16 = 0x8002;
/// Marker: from `address` on, this section's code is in the mode given by
/// the `FLAG_CODE32`/`FLAG_CODE16` bits (neither means 64-bit).
pub const MARKER_CODE_MODE: u16 = 0x8003;
/// Marker: string data (`.ascii`, `.string`, ...) in a code section starts
/// at `address`; the audit does not decode it.
pub const MARKER_DATA_BEGIN: u16 = 0x8004;
/// Marker: the string data that began last in the same section ends here.
pub const MARKER_DATA_END: u16 = 0x8005;

/// Errors met while walking a note section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// A chunk header at this offset has the wrong magic.
    BadMagic(usize),
    /// A chunk at this offset has an unknown version.
    BadVersion(usize, u16),
    /// A chunk's header or record size is smaller than this module knows.
    BadSizes(usize),
    /// A chunk at this offset runs past the end of its note.
    Truncated(usize),
    /// A note at this offset runs past the end of the section.
    BadNote(usize),
}

/// One note of a note section: its name (without the NUL), type and
/// descriptor, and where the descriptor starts in the section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note<'a> {
    pub name: &'a [u8],
    pub kind: u32,
    pub desc: &'a [u8],
    pub desc_offset: usize,
}

/// Walks the notes of a note section's bytes and calls `f` for each.
/// Trailing zero fill shorter than a note header ends the walk.
pub fn walk_notes<'a>(
    section: &'a [u8],
    mut f: impl FnMut(Note<'a>) -> Result<(), WalkError>,
) -> Result<(), WalkError> {
    let mut at = 0usize;
    while at < section.len() {
        let rest = &section[at..];
        if rest.len() < 12 {
            if rest.iter().all(|&b| b == 0) {
                return Ok(());
            }
            return Err(WalkError::BadNote(at));
        }
        let word = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let (namesz, descsz, kind) = (word(0) as usize, word(4) as usize, word(8));
        let name_end = 12usize.checked_add(namesz).ok_or(WalkError::BadNote(at))?;
        let desc_at = name_end
            .checked_next_multiple_of(NOTE_ALIGN)
            .ok_or(WalkError::BadNote(at))?;
        let desc_end = desc_at.checked_add(descsz).ok_or(WalkError::BadNote(at))?;
        let next = desc_end
            .checked_next_multiple_of(NOTE_ALIGN)
            .ok_or(WalkError::BadNote(at))?;
        if desc_end > rest.len() {
            return Err(WalkError::BadNote(at));
        }
        // The name's NUL is part of namesz; a name without one is taken whole.
        let name = &rest[12..name_end];
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        f(Note {
            name,
            kind,
            desc: &rest[desc_at..desc_end],
            desc_offset: at + desc_at,
        })?;
        at = at.saturating_add(next.min(rest.len()));
    }
    Ok(())
}

/// True if `note` is one of ours (carries a chunk).
pub fn is_afterburn_note(note: &Note<'_>) -> bool {
    note.name == NOTE_NAME && note.kind == NOTE_TYPE
}

/// True if the note section holds at least one of our notes (whatever its
/// chunk says: [`walk_records`] judges that).
pub fn has_afterburn_notes(section: &[u8]) -> bool {
    let mut found = false;
    let _ = walk_notes(section, |n| {
        found |= is_afterburn_note(&n);
        Ok(())
    });
    found
}

/// Walks the chunks of a note section's bytes (skipping notes that are not
/// ours) and calls `f(offset, record)` for each record, `offset` being the
/// record's byte offset in the section (so callers can look up the
/// relocation of its address field).
pub fn walk_records(section: &[u8], mut f: impl FnMut(usize, Record)) -> Result<(), WalkError> {
    walk_notes(section, |note| {
        if !is_afterburn_note(&note) {
            return Ok(());
        }
        let at = note.desc_offset;
        let header = ChunkHeader::parse(note.desc).ok_or(WalkError::Truncated(at))?;
        if header.magic != MAGIC {
            return Err(WalkError::BadMagic(at));
        }
        if header.version != VERSION {
            return Err(WalkError::BadVersion(at, header.version));
        }
        if header.header_size < HEADER_SIZE || header.record_size < RECORD_SIZE {
            return Err(WalkError::BadSizes(at));
        }
        let len = usize::try_from(header.chunk_len()).map_err(|_| WalkError::Truncated(at))?;
        if len > note.desc.len() {
            return Err(WalkError::Truncated(at));
        }
        let mut rec = usize::from(header.header_size);
        while rec < len {
            if let Some(record) = Record::parse(&note.desc[rec..len]) {
                f(at + rec, record);
            }
            rec += usize::from(header.record_size);
        }
        Ok(())
    })
}

/// The bytes of one of our notes before its descriptor, for a chunk of
/// `chunk_len` bytes (used by tests and tools that write sections directly;
/// the pass writes the same with assembler directives).
pub fn encode_note_header(chunk_len: u32) -> [u8; NOTE_HEADER_SIZE] {
    let mut out = [0u8; NOTE_HEADER_SIZE];
    out[0..4].copy_from_slice(&(NOTE_NAME.len() as u32 + 1).to_le_bytes());
    out[4..8].copy_from_slice(&chunk_len.to_le_bytes());
    out[8..12].copy_from_slice(&NOTE_TYPE.to_le_bytes());
    out[12..12 + NOTE_NAME.len()].copy_from_slice(NOTE_NAME);
    out
}

/// One whole note holding a chunk of `records` (tests and tools).
pub fn encode_chunk_note(records: &[Record], out: &mut impl Extend<u8>) {
    let count = records.len() as u32;
    let chunk_len = u32::from(HEADER_SIZE) + u32::from(RECORD_SIZE) * count;
    out.extend(encode_note_header(chunk_len));
    out.extend(MAGIC.to_le_bytes());
    out.extend(VERSION.to_le_bytes());
    out.extend(HEADER_SIZE.to_le_bytes());
    out.extend(RECORD_SIZE.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend(count.to_le_bytes());
    for r in records {
        out.extend(encode_record(r));
    }
}

/// What a site holds. The numbers are ABI: never renumber, only append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum Kind {
    Cli = 1,
    Sti = 2,
    Pushf = 3,
    Popf = 4,
    Iret = 5,
    Hlt = 6,
    /// `in`, `ins*`.
    PortIn = 7,
    /// `out`, `outs*`.
    PortOut = 8,
    MovToCr = 9,
    MovFromCr = 10,
    MovToDr = 11,
    MovFromDr = 12,
    Clts = 13,
    Lmsw = 14,
    Smsw = 15,
    Lgdt = 16,
    Lidt = 17,
    Lldt = 18,
    Ltr = 19,
    Sgdt = 20,
    Sidt = 21,
    Sldt = 22,
    Str = 23,
    Invlpg = 24,
    Invpcid = 25,
    Invd = 26,
    Wbinvd = 27,
    Rdmsr = 28,
    Wrmsr = 29,
    Swapgs = 30,
    Sysret = 31,
    Sysexit = 32,
    Rdpmc = 33,
    Xsetbv = 34,
    Monitor = 35,
    Mwait = 36,
    Rsm = 37,
    Lar = 38,
    Lsl = 39,
    Verr = 40,
    Verw = 41,
    Cpuid = 42,
    PushSeg = 43,
    PopSeg = 44,
    MovToSeg = 45,
    MovFromSeg = 46,
    /// `lds`, `les`, `lfs`, `lgs`, `lss`.
    LoadFarPointer = 47,
    FarJmp = 48,
    FarCall = 49,
    FarRet = 50,
    /// `int $n`.
    Int = 51,
    Int3 = 52,
    Into = 53,
    Ud2 = 54,
    /// `wrfsbase`, `wrgsbase`.
    WrSegBase = 55,
    /// `rdfsbase`, `rdgsbase`.
    RdSegBase = 56,
    /// Unprivileged unless CR4.TSD; the wedge may leave it native.
    Rdtsc = 57,
    Rdtscp = 58,
    /// `stac`, `clac` (CPL 0 only).
    AlignmentCheck = 59,
    /// `xsaves`, `xrstors` and their 64-bit forms (CPL 0 only).
    SupervisorState = 60,
}

/// Every kind, in number order.
pub const ALL_KINDS: [Kind; 60] = [
    Kind::Cli,
    Kind::Sti,
    Kind::Pushf,
    Kind::Popf,
    Kind::Iret,
    Kind::Hlt,
    Kind::PortIn,
    Kind::PortOut,
    Kind::MovToCr,
    Kind::MovFromCr,
    Kind::MovToDr,
    Kind::MovFromDr,
    Kind::Clts,
    Kind::Lmsw,
    Kind::Smsw,
    Kind::Lgdt,
    Kind::Lidt,
    Kind::Lldt,
    Kind::Ltr,
    Kind::Sgdt,
    Kind::Sidt,
    Kind::Sldt,
    Kind::Str,
    Kind::Invlpg,
    Kind::Invpcid,
    Kind::Invd,
    Kind::Wbinvd,
    Kind::Rdmsr,
    Kind::Wrmsr,
    Kind::Swapgs,
    Kind::Sysret,
    Kind::Sysexit,
    Kind::Rdpmc,
    Kind::Xsetbv,
    Kind::Monitor,
    Kind::Mwait,
    Kind::Rsm,
    Kind::Lar,
    Kind::Lsl,
    Kind::Verr,
    Kind::Verw,
    Kind::Cpuid,
    Kind::PushSeg,
    Kind::PopSeg,
    Kind::MovToSeg,
    Kind::MovFromSeg,
    Kind::LoadFarPointer,
    Kind::FarJmp,
    Kind::FarCall,
    Kind::FarRet,
    Kind::Int,
    Kind::Int3,
    Kind::Into,
    Kind::Ud2,
    Kind::WrSegBase,
    Kind::RdSegBase,
    Kind::Rdtsc,
    Kind::Rdtscp,
    Kind::AlignmentCheck,
    Kind::SupervisorState,
];

impl Kind {
    /// The ABI number.
    pub fn number(self) -> u16 {
        self as u16
    }

    /// The kind with ABI number `n`.
    pub fn from_number(n: u16) -> Option<Kind> {
        let index = usize::from(n).checked_sub(1)?;
        ALL_KINDS.get(index).copied()
    }

    /// A stable lower-case name (used on the command line and in reports).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cli => "cli",
            Kind::Sti => "sti",
            Kind::Pushf => "pushf",
            Kind::Popf => "popf",
            Kind::Iret => "iret",
            Kind::Hlt => "hlt",
            Kind::PortIn => "port-in",
            Kind::PortOut => "port-out",
            Kind::MovToCr => "mov-to-cr",
            Kind::MovFromCr => "mov-from-cr",
            Kind::MovToDr => "mov-to-dr",
            Kind::MovFromDr => "mov-from-dr",
            Kind::Clts => "clts",
            Kind::Lmsw => "lmsw",
            Kind::Smsw => "smsw",
            Kind::Lgdt => "lgdt",
            Kind::Lidt => "lidt",
            Kind::Lldt => "lldt",
            Kind::Ltr => "ltr",
            Kind::Sgdt => "sgdt",
            Kind::Sidt => "sidt",
            Kind::Sldt => "sldt",
            Kind::Str => "str",
            Kind::Invlpg => "invlpg",
            Kind::Invpcid => "invpcid",
            Kind::Invd => "invd",
            Kind::Wbinvd => "wbinvd",
            Kind::Rdmsr => "rdmsr",
            Kind::Wrmsr => "wrmsr",
            Kind::Swapgs => "swapgs",
            Kind::Sysret => "sysret",
            Kind::Sysexit => "sysexit",
            Kind::Rdpmc => "rdpmc",
            Kind::Xsetbv => "xsetbv",
            Kind::Monitor => "monitor",
            Kind::Mwait => "mwait",
            Kind::Rsm => "rsm",
            Kind::Lar => "lar",
            Kind::Lsl => "lsl",
            Kind::Verr => "verr",
            Kind::Verw => "verw",
            Kind::Cpuid => "cpuid",
            Kind::PushSeg => "push-seg",
            Kind::PopSeg => "pop-seg",
            Kind::MovToSeg => "mov-to-seg",
            Kind::MovFromSeg => "mov-from-seg",
            Kind::LoadFarPointer => "load-far-pointer",
            Kind::FarJmp => "far-jmp",
            Kind::FarCall => "far-call",
            Kind::FarRet => "far-ret",
            Kind::Int => "int",
            Kind::Int3 => "int3",
            Kind::Into => "into",
            Kind::Ud2 => "ud2",
            Kind::WrSegBase => "wr-seg-base",
            Kind::RdSegBase => "rd-seg-base",
            Kind::Rdtsc => "rdtsc",
            Kind::Rdtscp => "rdtscp",
            Kind::AlignmentCheck => "stac-clac",
            Kind::SupervisorState => "xsaves-xrstors",
        }
    }

    /// The kind called `name` (see [`Kind::name`]).
    pub fn from_name(name: &str) -> Option<Kind> {
        ALL_KINDS.iter().copied().find(|k| k.name() == name)
    }

    /// True for the instructions that exist to trap (`int3`, `into`, `ud2`,
    /// `int $n`): reflected to the guest wherever they are, so a site is an
    /// option for them, not a need. The pass can leave them unpadded
    /// (`KIND=none`) and the audit does not count them as uncovered.
    pub fn is_deliberate_trap(self) -> bool {
        matches!(self, Kind::Int3 | Kind::Into | Kind::Ud2 | Kind::Int)
    }

    /// True if loading the target leaves an interrupt shadow over the next
    /// instruction (which must then stay in the same site).
    pub fn has_interrupt_shadow(self) -> bool {
        matches!(
            self,
            Kind::Sti | Kind::MovToSeg | Kind::PopSeg | Kind::LoadFarPointer
        )
    }

    /// Default site size in bytes (instruction plus padding); see
    /// `docs/afterburner.md` for the reasoning per group.
    pub fn default_site_size(self) -> u8 {
        match self {
            // Virtual-IF updates: room for a RIP-relative byte store or
            // `pushq disp32(%rip)`, or a call.
            Kind::Cli | Kind::Sti | Kind::Pushf | Kind::Popf => 12,
            // Left native by default; only a call must fit.
            Kind::Rdtsc | Kind::Rdtscp => 5,
            // Traps the guest raises on purpose: a call is all they need.
            Kind::Int3 | Kind::Ud2 | Kind::Into | Kind::Int => 8,
            // Everything with operands: room to materialise an operand into
            // a register (up to 8 bytes) plus a `call rel32`.
            _ => 16,
        }
    }
}

/// Encodes a record as the 16 bytes the section holds (used by tests and
/// tools that write records directly).
pub fn encode_record(r: &Record) -> [u8; RECORD_SIZE as usize] {
    let mut out = [0u8; RECORD_SIZE as usize];
    out[0..8].copy_from_slice(&r.address.to_le_bytes());
    out[8..10].copy_from_slice(&r.kind.to_le_bytes());
    out[10..12].copy_from_slice(&r.flags.to_le_bytes());
    out[12] = r.site_len;
    out[13] = r.insn_len;
    out[14] = r.pair_len;
    out[15] = r.reserved;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_numbers_round_trip_and_are_dense() {
        for (i, k) in ALL_KINDS.iter().enumerate() {
            assert_eq!(usize::from(k.number()), i + 1);
            assert_eq!(Kind::from_number(k.number()), Some(*k));
            assert_eq!(Kind::from_name(k.name()), Some(*k));
            assert!(k.default_site_size() >= 5);
        }
        assert_eq!(Kind::from_number(0), None);
        assert_eq!(Kind::from_number(61), None);
    }

    fn cli(address: u64) -> Record {
        Record {
            address,
            kind: Kind::Cli.number(),
            flags: 0,
            site_len: 12,
            insn_len: 1,
            pair_len: 0,
            reserved: 0,
        }
    }

    /// A foreign note (name "GNU", 3-byte name padded, odd descriptor).
    fn foreign_note(out: &mut Vec<u8>) {
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&5u32.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(b"GNU\0");
        out.extend_from_slice(&[0xaa; 5]);
        out.extend_from_slice(&[0; 3]);
    }

    #[test]
    fn walk_two_chunks_among_foreign_notes() {
        let mut sec = Vec::new();
        foreign_note(&mut sec);
        encode_chunk_note(&[cli(0x1000)], &mut sec);
        foreign_note(&mut sec);
        encode_chunk_note(&[cli(0x2000), cli(0x2001)], &mut sec);
        sec.extend_from_slice(&[0; 4]);
        let mut seen = Vec::new();
        walk_records(&sec, |off, r| seen.push((off, r.address))).unwrap();
        let first = 24 + NOTE_HEADER_SIZE + 16;
        let second = first + 16 + 24 + NOTE_HEADER_SIZE + 16;
        assert_eq!(
            seen,
            vec![(first, 0x1000), (second, 0x2000), (second + 16, 0x2001)]
        );
        // The offsets point at the records' bytes.
        assert_eq!(Record::parse(&sec[second + 16..]).unwrap().address, 0x2001);
        assert!(has_afterburn_notes(&sec));
        let mut only_foreign = Vec::new();
        foreign_note(&mut only_foreign);
        assert!(!has_afterburn_notes(&only_foreign));
    }

    #[test]
    fn walk_rejects_bad_chunks_and_notes() {
        let mut sec = Vec::new();
        encode_chunk_note(&[cli(1)], &mut sec);
        let desc = NOTE_HEADER_SIZE;
        let mut bad = sec.clone();
        bad[desc] ^= 1;
        assert_eq!(
            walk_records(&bad, |_, _| {}),
            Err(WalkError::BadMagic(desc))
        );
        let mut bad = sec.clone();
        bad[desc + 4] = 1;
        assert_eq!(
            walk_records(&bad, |_, _| {}),
            Err(WalkError::BadVersion(desc, 1))
        );
        // A chunk claiming more records than its note holds.
        let mut bad = sec.clone();
        bad[desc + 12] = 2;
        assert_eq!(
            walk_records(&bad, |_, _| {}),
            Err(WalkError::Truncated(desc))
        );
        // A note running past the section.
        assert_eq!(
            walk_records(&sec[..sec.len() - 1], |_, _| {}),
            Err(WalkError::BadNote(0))
        );
        assert_eq!(
            walk_records(&[1, 0, 0], |_, _| {}),
            Err(WalkError::BadNote(0))
        );
        // A huge descsz does not overflow.
        let mut bad = sec.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(walk_records(&bad, |_, _| {}), Err(WalkError::BadNote(0)));
    }

    proptest::proptest! {
        #[test]
        fn walk_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = walk_records(&bytes, |_, _| {});
        }
    }
}
