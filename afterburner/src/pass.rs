//! The afterburner pass: pads every sensitive instruction with NOPs up to
//! its kind's site size and records the site in `.afterburn`.
//!
//! The output is the input with text *inserted*, never rewritten: a label
//! before each site, and after it (on the same line, `;`-separated) the
//! padding, an end label and the record. Labels are GAS numeric local labels
//! (`740000001:` ... `740000001b`), which are unique per definition by
//! construction and so also work inside `.macro`, `.rept` and `.irp` bodies.
//! The padding is `.nops` with a size expression of the site's own labels,
//! so it adapts to the instruction's encoded length (never negative: GAS
//! comparisons yield -1 for true, which masks the difference).
//!
//! Besides sites, the pass writes marker records: opted-out regions
//! (`# afterburn: off` ... `on`), code-mode switches (`.code16/32/64`) and
//! string data in code sections, so the audit can decode the binary the way
//! the source meant it. Design: `docs/afterburner.md`.

use crate::format::{self, Kind};
use crate::lexer::{self, Item, Statement};
use crate::sensitive;
use std::fmt::Write as _;
use thiserror::Error;

/// Site sizes per kind (bytes, instruction plus padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    site_size: [u8; format::ALL_KINDS.len() + 1],
}

impl Default for Config {
    fn default() -> Self {
        let mut site_size = [0u8; format::ALL_KINDS.len() + 1];
        for k in format::ALL_KINDS {
            site_size[usize::from(k.number())] = k.default_site_size();
        }
        Config { site_size }
    }
}

/// The smallest site size: room for a `call rel32`.
pub const MIN_SITE_SIZE: u8 = 5;

/// Invalid configuration.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("site size {0} is below the minimum of {MIN_SITE_SIZE} (a call rel32)")]
    TooSmall(u32),
    #[error("site size {0} is above the maximum of 255")]
    TooLarge(u32),
    #[error("unknown kind `{0}` (see `afterburn kinds`)")]
    UnknownKind(String),
    #[error("expected SIZE, KIND=SIZE or TRAP-KIND=none, got `{0}`")]
    Syntax(String),
    #[error("`{0}=none`: only deliberate traps (int3, into, ud2, int) can go without a site")]
    NoneForNonTrap(String),
}

impl Config {
    /// The site size for `kind`; 0: no site (a deliberate trap left as it
    /// is, `KIND=none`).
    pub fn site_size(&self, kind: Kind) -> u8 {
        self.site_size[usize::from(kind.number())]
    }

    /// Sets the site size of one kind, or of all kinds.
    pub fn set_site_size(&mut self, kind: Option<Kind>, size: u32) -> Result<(), ConfigError> {
        if size < u32::from(MIN_SITE_SIZE) {
            return Err(ConfigError::TooSmall(size));
        }
        let size = u8::try_from(size).map_err(|_| ConfigError::TooLarge(size))?;
        match kind {
            Some(k) => self.site_size[usize::from(k.number())] = size,
            None => {
                for k in format::ALL_KINDS {
                    self.site_size[usize::from(k.number())] = size;
                }
            }
        }
        Ok(())
    }

    /// Applies a `SIZE`, `KIND=SIZE` or `KIND=none` option. `none` (no
    /// site at all) is for deliberate traps only: Linux relies on the byte
    /// after an `int3` being the next instruction (text poking emulates a
    /// 5-byte call from it), which padding would break.
    pub fn apply_option(&mut self, opt: &str) -> Result<(), ConfigError> {
        let (kind, size) = match opt.split_once('=') {
            Some((k, s)) => {
                let kind =
                    Kind::from_name(k.trim()).ok_or_else(|| ConfigError::UnknownKind(k.into()))?;
                (Some(kind), s)
            }
            None => (None, opt),
        };
        if size.trim() == "none" {
            return match kind {
                Some(k) if k.is_deliberate_trap() => {
                    self.site_size[usize::from(k.number())] = 0;
                    Ok(())
                }
                Some(k) => Err(ConfigError::NoneForNonTrap(k.name().into())),
                None => Err(ConfigError::Syntax(opt.into())),
            };
        }
        let size: u32 = size
            .trim()
            .parse()
            .map_err(|_| ConfigError::Syntax(opt.into()))?;
        self.set_site_size(kind, size)
    }
}

/// Why the pass refused an input.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{line}: {message}")]
pub struct PassError {
    pub line: u32,
    pub message: String,
}

/// The message of the error for input that already went through the pass.
const ALREADY_PROCESSED: &str =
    "input already has an .afterburn section (did it go through afterburn already?)";

impl PassError {
    /// True if the input already went through the pass (it has an
    /// `.afterburn` section): the compiler driver then assembles it as is.
    pub fn is_already_processed(&self) -> bool {
        self.message == ALREADY_PROCESSED
    }
}

impl From<lexer::LexError> for PassError {
    fn from(e: lexer::LexError) -> Self {
        let (line, message) = match e {
            lexer::LexError::UnterminatedString { line } => (line, "unterminated string"),
            lexer::LexError::UnterminatedComment { line } => (line, "unterminated /* comment"),
            lexer::LexError::NulByte { line } => (line, "NUL byte: this is not assembly text"),
        };
        PassError {
            line,
            message: message.into(),
        }
    }
}

/// A region of source lines the author opted out of the pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptOutRegion {
    pub first_line: u32,
    pub last_line: u32,
}

/// A site the pass created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteInfo {
    pub line: u32,
    pub kind: Kind,
    pub paired: bool,
}

/// Something worth telling the user that does not stop the pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub line: u32,
    pub message: String,
}

/// The pass's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub text: Vec<u8>,
    pub sites: Vec<SiteInfo>,
    pub opt_out: Vec<OptOutRegion>,
    pub warnings: Vec<Warning>,
}

/// Numeric local labels used by inserted code. Large and odd so they do not
/// collide with hand-written `1:`-style labels.
const L_START: &str = "740000001";
const L_INSN_END: &str = "740000002";
const L_PAIR_END: &str = "740000003";
const L_SITE_END: &str = "740000004";
const L_MARKER: &str = "740000005";
/// Label of this object's chunk header.
const CHUNK_BEGIN: &str = ".Lafterburn_chunk_begin";
const CHUNK_END: &str = ".Lafterburn_chunk_end";
const SECTION_DIRECTIVE: &str = ".pushsection .note.afterburn,\"a\",@note";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Code16,
    Code32,
    Code64,
}

impl Mode {
    fn flags(self) -> u16 {
        match self {
            Mode::Code16 => format::FLAG_CODE16,
            Mode::Code32 => format::FLAG_CODE32,
            Mode::Code64 => 0,
        }
    }
}

/// One insertion into the output: `text` goes before input byte `at`.
struct Insert {
    at: usize,
    text: String,
}

/// The lexer's items with one item of look-ahead (items come a line at a
/// time; a line's items are handed out before the next line is lexed).
struct Items<'a> {
    lexer: lexer::Lexer<'a>,
    line: Vec<Item>,
    next: usize,
}

impl<'a> Items<'a> {
    fn new(input: &'a [u8]) -> Self {
        Items {
            lexer: lexer::Lexer::new(input),
            line: Vec::with_capacity(8),
            next: 0,
        }
    }

    #[inline]
    fn peek(&mut self) -> Result<Option<Item>, PassError> {
        while self.next >= self.line.len() {
            self.line.clear();
            self.next = 0;
            if !self.lexer.next_line(&mut self.line)? {
                return Ok(None);
            }
        }
        Ok(Some(self.line[self.next]))
    }

    #[inline]
    fn next(&mut self) -> Result<Option<Item>, PassError> {
        let item = self.peek()?;
        self.next += usize::from(item.is_some());
        Ok(item)
    }
}

/// Runs the pass over one assembly source.
pub fn run(input: &[u8], config: &Config) -> Result<Output, PassError> {
    let mut items = Items::new(input);

    let mut out = Output::default();
    let mut inserts: Vec<Insert> = Vec::new();
    let mut mode = Mode::Code64;
    let mut opt_out_start: Option<u32> = None;
    let mut end_directive: Option<usize> = None;
    let mut macro_depth = 0u32;
    let mut sections = Sections::default();
    let mut records = 0usize;

    while let Some(item) = items.next()? {
        let stmt = match item {
            Item::Label { .. } => continue,
            Item::Marker { line, offset, on } => {
                match (on, opt_out_start) {
                    (false, None) => opt_out_start = Some(line),
                    (true, Some(first)) => {
                        out.opt_out.push(OptOutRegion {
                            first_line: first,
                            last_line: line,
                        });
                        opt_out_start = None;
                    }
                    (false, Some(first)) => {
                        return Err(PassError {
                            line,
                            message: format!(
                                "`afterburn: off` inside the region opted out at line {first}"
                            ),
                        })
                    }
                    (true, None) => {
                        return Err(PassError {
                            line,
                            message: "`afterburn: on` without a preceding `afterburn: off`".into(),
                        })
                    }
                }
                let marker = if on {
                    format::MARKER_OPT_OUT_END
                } else {
                    format::MARKER_OPT_OUT_BEGIN
                };
                inserts.push(Insert {
                    at: offset,
                    text: format!("; {}", marker_record(marker, 0)),
                });
                records += 1;
                continue;
            }
            Item::Statement(s) => s,
        };
        let body = stmt.clean_body(input);
        let body = &*body;
        if body.first() == Some(&b'.') {
            match directive(body, stmt.line, &mut mode, &mut macro_depth, &mut sections)? {
                DirectiveEffect::None => {}
                // Strings in a code section decode as junk instructions
                // (`outs`, `ins`, ...): mark them as data for the audit.
                DirectiveEffect::StringData
                    if sections.current_is_code && opt_out_start.is_none() =>
                {
                    inserts.push(Insert {
                        at: stmt.body_start,
                        text: marker_record(format::MARKER_DATA_BEGIN, 0),
                    });
                    inserts.push(Insert {
                        at: stmt.end,
                        text: format!("; {}", marker_record(format::MARKER_DATA_END, 0)),
                    });
                    records += 2;
                }
                DirectiveEffect::StringData => {}
                // The audit decodes by mode; a section entered in 16/32-bit
                // mode gets its own marker too.
                DirectiveEffect::ModeChange | DirectiveEffect::SectionChange(false) => {
                    inserts.push(Insert {
                        at: stmt.end,
                        text: format!(";{}", marker_record(format::MARKER_CODE_MODE, mode.flags())),
                    });
                    records += 1;
                }
                DirectiveEffect::SectionChange(true) => {}
                DirectiveEffect::End => {
                    // `as` stops reading at the first top-level `.end`.
                    if macro_depth == 0 && end_directive.is_none() {
                        end_directive = Some(stmt.body_start);
                    }
                }
            }
            continue;
        }
        if opt_out_start.is_some() {
            continue;
        }
        let Some(parsed) = sensitive::parse(body) else {
            continue;
        };
        let site_start = stmt.body_start;
        let mut rep = parsed.rep;
        let next_body;
        let (mnemonic, operands, line, insn_end) = if parsed.mnemonic.is_empty() {
            // A prefix on its own (`rep; insb`): the site starts at the
            // prefix if the next statement is a sensitive instruction.
            let Some(Item::Statement(next)) = items.peek()? else {
                continue;
            };
            if next.has_label {
                continue;
            }
            next_body = next.clean_body(input);
            let Some(np) = sensitive::parse(&next_body) else {
                continue;
            };
            if np.mnemonic.is_empty() {
                continue;
            }
            match classify(np.mnemonic, np.operands, next.line)? {
                Some(_) => {
                    items.next()?;
                    rep |= np.rep;
                    (np.mnemonic, np.operands, next.line, next.end)
                }
                None => continue,
            }
        } else {
            (parsed.mnemonic, parsed.operands, stmt.line, stmt.end)
        };
        let Some(sens) = classify(mnemonic, operands, line)? else {
            continue;
        };
        let size = config.site_size(sens.kind);
        if size == 0 {
            // A deliberate trap configured to go without a site.
            continue;
        }
        // The instruction in the shadow joins the site where its place there
        // matters: after an SS load always (the stack pointer's load), after
        // `sti` only what `relies_on_sti_shadow` names. If the next statement
        // is no instruction the pass can read (a label, data such as
        // `.byte` for `mwait`, a directive), whether it matters is unknown:
        // the shadow covers padding, and the pass says so.
        let mut pair_end = None;
        if sens.shadow {
            match items.peek()? {
                Some(Item::Statement(next)) if !next.has_label && is_plain_instruction(next, input) => {
                    if sens.kind != Kind::Sti || follower_relies_on_sti_shadow(next, input) {
                        pair_end = Some(next.end);
                        items.next()?;
                    }
                }
                _ => out.warnings.push(Warning {
                    line,
                    message: format!(
                        "`{}` is not directly followed by an instruction; its interrupt shadow covers padding",
                        String::from_utf8_lossy(mnemonic)
                    ),
                }),
            }
        }
        let mut flags = mode.flags();
        if rep {
            flags |= format::FLAG_REP;
        }
        if pair_end.is_some() {
            flags |= format::FLAG_SHADOW_PAIR;
        }
        inserts.push(Insert {
            at: site_start,
            text: format!("{L_START}: "),
        });
        let mut tail = String::with_capacity(320);
        let _ = write!(tail, "; {L_INSN_END}:");
        let last_end = match pair_end {
            Some(end) => {
                inserts.push(Insert {
                    at: insn_end,
                    text: std::mem::take(&mut tail),
                });
                let _ = write!(tail, "; {L_PAIR_END}:");
                end
            }
            None => insn_end,
        };
        let body_end = if pair_end.is_some() {
            L_PAIR_END
        } else {
            L_INSN_END
        };
        let pad = format!("({size}-({body_end}b-{L_START}b))");
        // `.nops` emits 32-bit NOP forms even under `.code16` (binutils
        // 2.40), which would decode as other instructions there: 16-bit code
        // is padded with one-byte NOPs.
        let (padding, fill) = if mode == Mode::Code16 {
            (".skip", ", 0x90")
        } else {
            (".nops", "")
        };
        let pair_len = if pair_end.is_some() {
            format!("{L_PAIR_END}b-{L_INSN_END}b")
        } else {
            "0".into()
        };
        let _ = write!(
            tail,
            " {padding} {pad}&({pad}>0){fill}; {L_SITE_END}:; {SECTION_DIRECTIVE}; .quad {L_START}b; .short {}, {flags}; \
             .byte {L_SITE_END}b-{L_START}b, {L_INSN_END}b-{L_START}b, {pair_len}, 0; .popsection",
            sens.kind.number()
        );
        inserts.push(Insert {
            at: last_end,
            text: tail,
        });
        records += 1;
        out.sites.push(SiteInfo {
            line,
            kind: sens.kind,
            paired: pair_end.is_some(),
        });
    }
    if let Some(first) = opt_out_start {
        return Err(PassError {
            line: first,
            message: "`afterburn: off` without a matching `afterburn: on`".into(),
        });
    }
    if records == 0 {
        out.text = input.to_vec();
        return Ok(out);
    }
    inserts.sort_by_key(|ins| ins.at);
    out.text = render(input, &inserts, end_directive, &out.opt_out);
    Ok(out)
}

fn classify(
    mnemonic: &[u8],
    operands: &[u8],
    line: u32,
) -> Result<Option<sensitive::Sensitive>, PassError> {
    sensitive::classify(mnemonic, operands).map_err(|e| PassError {
        line,
        message: e.message,
    })
}

/// True if the statement is an instruction (not a directive, prefix-only
/// statement or assignment).
fn is_plain_instruction(stmt: Statement, input: &[u8]) -> bool {
    sensitive::parse(&stmt.clean_body(input)).is_some_and(|p| !p.mnemonic.is_empty())
}

/// Whether `stmt`, right after an `sti`, is an instruction that relies on
/// its interrupt shadow (operands the pass rejects are reported when the
/// statement is classified as a site of its own).
fn follower_relies_on_sti_shadow(stmt: Statement, input: &[u8]) -> bool {
    sensitive::parse(&stmt.clean_body(input)).is_some_and(|p| {
        matches!(sensitive::classify(p.mnemonic, p.operands), Ok(Some(s)) if sensitive::relies_on_sti_shadow(s.kind))
    })
}

fn marker_record(kind: u16, flags: u16) -> String {
    format!(
        "{L_MARKER}:; {SECTION_DIRECTIVE}; .quad {L_MARKER}b; .short {kind}, {flags}; .byte 0, 0, 0, 0; .popsection;"
    )
}

enum DirectiveEffect {
    None,
    /// `.ascii`, `.asciz`, `.string*`.
    StringData,
    ModeChange,
    /// A section switch; `true` if the mode is the default 64-bit one.
    SectionChange(bool),
    End,
}

fn directive(
    body: &[u8],
    line: u32,
    mode: &mut Mode,
    macro_depth: &mut u32,
    sections: &mut Sections,
) -> Result<DirectiveEffect, PassError> {
    let end = body
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b',')
        .unwrap_or(body.len());
    let name = &body[..end];
    // Most directives in compiler output (.uleb128, .long, .loc, .quad,
    // .value) can be rejected by their second byte alone.
    if !matches!(
        name.get(1).map(u8::to_ascii_lowercase),
        Some(b'a' | b'c' | b't' | b'd' | b'b' | b's' | b'p' | b'i' | b'm' | b'e')
    ) {
        return Ok(DirectiveEffect::None);
    }
    // Directive names that matter are short; longer ones never do.
    let mut buf = [0u8; 16];
    if name.len() > buf.len() {
        return Ok(DirectiveEffect::None);
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    Ok(match &buf[..name.len()] {
        b".code16" | b".code16gcc" => {
            *mode = Mode::Code16;
            DirectiveEffect::ModeChange
        }
        b".code32" => {
            *mode = Mode::Code32;
            DirectiveEffect::ModeChange
        }
        b".code64" => {
            *mode = Mode::Code64;
            DirectiveEffect::ModeChange
        }
        b".section" | b".pushsection" if is_afterburn_section(&body[end..]) => {
            return Err(PassError {
                line,
                message: ALREADY_PROCESSED.into(),
            })
        }
        b".text" | b".data" | b".bss" | b".section" | b".pushsection" | b".popsection"
        | b".previous" => {
            sections.apply(&buf[..name.len()], &body[end..]);
            DirectiveEffect::SectionChange(*mode == Mode::Code64)
        }
        b".ascii" | b".asciz" | b".string" | b".string8" | b".string16" | b".string32"
        | b".string64" => DirectiveEffect::StringData,
        b".intel_syntax" => {
            return Err(PassError {
                line,
                message: "Intel syntax is not supported; the pass reads AT&T syntax".into(),
            })
        }
        b".macro" => {
            *macro_depth += 1;
            DirectiveEffect::None
        }
        b".endm" => {
            *macro_depth = macro_depth.saturating_sub(1);
            DirectiveEffect::None
        }
        b".end" => DirectiveEffect::End,
        _ => DirectiveEffect::None,
    })
}

/// Whether the current section holds code, following `as`'s section stack.
#[derive(Debug)]
struct Sections {
    current_is_code: bool,
    previous_is_code: bool,
    stack: Vec<(bool, bool)>,
}

impl Default for Sections {
    /// `as` starts in `.text`.
    fn default() -> Self {
        Sections {
            current_is_code: true,
            previous_is_code: true,
            stack: Vec::new(),
        }
    }
}

impl Sections {
    fn apply(&mut self, directive: &[u8], args: &[u8]) {
        let switch = |s: &mut Sections, code: bool| {
            s.previous_is_code = s.current_is_code;
            s.current_is_code = code;
        };
        match directive {
            b".text" => switch(self, true),
            b".data" | b".bss" => switch(self, false),
            b".section" => switch(self, is_code_section(args)),
            b".pushsection" => {
                self.stack
                    .push((self.current_is_code, self.previous_is_code));
                switch(self, is_code_section(args));
            }
            b".popsection" => {
                if let Some((cur, prev)) = self.stack.pop() {
                    self.current_is_code = cur;
                    self.previous_is_code = prev;
                }
            }
            b".previous" => std::mem::swap(&mut self.current_is_code, &mut self.previous_is_code),
            _ => {}
        }
    }
}

/// `.section NAME[, "FLAGS"...]`: code if the flags have `x`, or, without
/// flags, if the name contains `text` (as the audit assumes too).
fn is_code_section(args: &[u8]) -> bool {
    let args = lexer::trim(args);
    let (name, rest) = if args.first() == Some(&b'"') {
        let close = args[1..]
            .iter()
            .position(|b| *b == b'"')
            .map_or(args.len(), |p| p + 1);
        (&args[1..close], &args[(close + 1).min(args.len())..])
    } else {
        let end = args
            .iter()
            .position(|b| *b == b',' || b.is_ascii_whitespace())
            .unwrap_or(args.len());
        (&args[..end], &args[end..])
    };
    let rest = lexer::trim(rest);
    let flags = rest
        .strip_prefix(b",")
        .map(lexer::trim)
        .filter(|f| f.first() == Some(&b'"'));
    match flags {
        Some(f) => f
            .iter()
            .skip(1)
            .take_while(|b| **b != b'"')
            .any(|b| *b == b'x'),
        None => name.windows(4).any(|w| w == b"text"),
    }
}

fn render(
    input: &[u8],
    inserts: &[Insert],
    end_directive: Option<usize>,
    opt_out: &[OptOutRegion],
) -> Vec<u8> {
    let extra: usize = inserts.iter().map(|i| i.text.len()).sum();
    let mut text = Vec::with_capacity(input.len() + extra + 512);
    let _ = write_header(&mut text);
    let mut copied = 0;
    // Code after a top-level `.end` is never assembled: the trailer goes
    // before it.
    let trailer_at = end_directive.unwrap_or(input.len());
    for ins in inserts {
        if ins.at > trailer_at {
            break;
        }
        text.extend_from_slice(&input[copied..ins.at]);
        text.extend_from_slice(ins.text.as_bytes());
        copied = ins.at;
    }
    text.extend_from_slice(&input[copied..trailer_at]);
    if !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(
        format!("\t{SECTION_DIRECTIVE}\n{CHUNK_END}:\n\t.popsection\n").as_bytes(),
    );
    for r in opt_out {
        text.extend_from_slice(
            format!(
                "# afterburn: opted-out region: lines {}-{}\n",
                r.first_line, r.last_line
            )
            .as_bytes(),
        );
    }
    text.extend_from_slice(&input[trailer_at..]);
    text
}

fn write_header(text: &mut Vec<u8>) -> std::fmt::Result {
    let mut s = String::new();
    writeln!(s, "\t{SECTION_DIRECTIVE}")?;
    // The note: namesz, descsz (the chunk), type, the name padded to 4.
    writeln!(s, "\t.balign {}", format::NOTE_ALIGN)?;
    writeln!(
        s,
        "\t.long {}, {CHUNK_END}-{CHUNK_BEGIN}, {}",
        format::NOTE_NAME.len() + 1,
        format::NOTE_TYPE
    )?;
    writeln!(
        s,
        "\t.asciz \"{}\"",
        core::str::from_utf8(format::NOTE_NAME).unwrap_or("Afterburn")
    )?;
    writeln!(s, "\t.balign {}", format::NOTE_ALIGN)?;
    writeln!(s, "{CHUNK_BEGIN}:")?;
    writeln!(s, "\t.long {:#x}", format::MAGIC)?;
    writeln!(
        s,
        "\t.short {}, {}, {}, 0",
        format::VERSION,
        format::HEADER_SIZE,
        format::RECORD_SIZE
    )?;
    writeln!(
        s,
        "\t.long ({CHUNK_END}-{CHUNK_BEGIN}-{})/{}",
        format::HEADER_SIZE,
        format::RECORD_SIZE
    )?;
    writeln!(s, "\t.popsection")?;
    text.extend_from_slice(s.as_bytes());
    Ok(())
}

fn is_afterburn_section(args: &[u8]) -> bool {
    let name = lexer::trim(args);
    let name = name
        .split(|b| *b == b',' || b.is_ascii_whitespace())
        .next()
        .unwrap_or(b"");
    [format::SECTION_NAME, format::LEGACY_SECTION_NAME]
        .iter()
        .any(|n| name == n.as_bytes() || name == format!("\"{n}\"").as_bytes())
}
