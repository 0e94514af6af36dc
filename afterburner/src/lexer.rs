//! Splits GNU assembler source into statements, the way `as` does for x86:
//! `;` and newlines separate statements, `#` starts a comment (as does `/`
//! as the first character of a line), `/* */` comments may span lines, and
//! none of these count inside `"strings"` or `'c` character constants.
//!
//! The lexer only finds boundaries (byte offsets into the input); it never
//! copies text, so the pass can reproduce everything it does not touch
//! byte for byte.

use thiserror::Error;

/// One statement: optional labels, then a body (mnemonic, directive, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statement {
    /// 1-based source line of the body.
    pub line: u32,
    /// Offset of the body's first byte (after labels and blanks).
    pub body_start: usize,
    /// Offset one past the body's last non-blank byte.
    pub end: usize,
    /// True if one or more labels precede the body in this statement.
    pub has_label: bool,
    /// True if a `/* */` comment sits inside the body (see [`clean_body`]).
    pub has_block_comment: bool,
}

impl Statement {
    /// The body's bytes.
    pub fn body<'a>(&self, input: &'a [u8]) -> &'a [u8] {
        &input[self.body_start..self.end]
    }

    /// The body with `/* */` comments blanked out, for classification.
    pub fn clean_body<'a>(&self, input: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let body = self.body(input);
        if !self.has_block_comment {
            return std::borrow::Cow::Borrowed(body);
        }
        let mut out = body.to_vec();
        let mut i = 0;
        while i + 1 < out.len() {
            if out[i] == b'/' && out[i + 1] == b'*' {
                let end = out[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(out.len(), |p| i + 2 + p + 2);
                out[i..end].fill(b' ');
                i = end;
            } else if out[i] == b'"' {
                i += 1;
                while i < out.len() && out[i] != b'"' {
                    i += if out[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            } else {
                i += 1;
            }
        }
        let trimmed = trim(&out).to_vec();
        std::borrow::Cow::Owned(trimmed)
    }
}

/// What the lexer reports, in source order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// A statement with a non-empty body.
    Statement(Statement),
    /// A label-only statement (`foo:` alone): code may jump here.
    Label { line: u32 },
    /// A `# afterburn: off` (`on == false`) or `# afterburn: on` comment;
    /// `offset` is where the `#` is.
    Marker { line: u32, offset: usize, on: bool },
}

/// Lexical errors (the assembler would reject these too).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LexError {
    #[error("{line}: unterminated string")]
    UnterminatedString { line: u32 },
    #[error("{line}: unterminated /* comment")]
    UnterminatedComment { line: u32 },
    #[error("{line}: NUL byte: this is not assembly text")]
    NulByte { line: u32 },
}

/// Bytes that end the plain run of a statement's text.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'\n' as usize] = true;
    t[b';' as usize] = true;
    t[b'#' as usize] = true;
    t[b'"' as usize] = true;
    t[b'\'' as usize] = true;
    t[b'/' as usize] = true;
    t[0] = true;
    t
};

/// A streaming lexer: each call to [`Lexer::next_line`] lexes one source
/// line (more if a `/* */` comment spans lines), so the pass needs no
/// memory proportional to the input.
#[derive(Debug)]
pub struct Lexer<'a> {
    input: &'a [u8],
    pos: usize,
    line: u32,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Lexer {
            input,
            pos: 0,
            line: 1,
        }
    }

    /// Lexes the next line into `out`; `Ok(false)` at the end of input.
    pub fn next_line(&mut self, out: &mut Vec<Item>) -> Result<bool, LexError> {
        let input = self.input;
        let len = input.len();
        let mut pos = self.pos;
        if pos >= len {
            return Ok(false);
        }
        let mut line = self.line;
        // `/` first on a line is a line comment on x86.
        let mut stmt_start = pos;
        let first = skip_blanks(input, pos);
        if first < len && input[first] == b'/' && input.get(first + 1) != Some(&b'*') {
            pos = find_newline(input, first);
            self.pos = next_line(input, pos, &mut line);
            self.line = line;
            return Ok(true);
        }
        let mut stmt_line = line;
        let mut block_comment = false;
        loop {
            while pos < len && !SPECIAL[usize::from(input[pos])] {
                pos += 1;
            }
            if pos >= len {
                push_statement(input, stmt_start, pos, stmt_line, block_comment, out);
                break;
            }
            match input[pos] {
                b'\n' => {
                    push_statement(input, stmt_start, pos, stmt_line, block_comment, out);
                    pos += 1;
                    line += 1;
                    break;
                }
                b';' => {
                    push_statement(input, stmt_start, pos, stmt_line, block_comment, out);
                    block_comment = false;
                    pos += 1;
                    stmt_start = pos;
                }
                b'#' => {
                    push_statement(input, stmt_start, pos, stmt_line, block_comment, out);
                    let end = find_newline(input, pos);
                    if let Some(on) = marker(&input[pos + 1..end]) {
                        out.push(Item::Marker {
                            line,
                            offset: pos,
                            on,
                        });
                    }
                    pos = next_line(input, end, &mut line);
                    break;
                }
                b'"' => pos = skip_string(input, pos, line)?,
                b'\'' => pos = skip_char_constant(input, pos),
                0 => return Err(LexError::NulByte { line }),
                b'/' if input.get(pos + 1) == Some(&b'*') => {
                    // `as` treats the comment as blank space; a comment that
                    // spans lines ends the statement before it.
                    let start_line = line;
                    let mut p = pos + 2;
                    loop {
                        if p + 1 >= len {
                            return Err(LexError::UnterminatedComment { line: start_line });
                        }
                        if input[p] == b'*' && input[p + 1] == b'/' {
                            break;
                        }
                        if input[p] == b'\n' {
                            line += 1;
                        }
                        p += 1;
                    }
                    if line != start_line {
                        push_statement(input, stmt_start, pos, stmt_line, block_comment, out);
                        block_comment = false;
                        stmt_start = p + 2;
                        stmt_line = line;
                    } else {
                        block_comment = true;
                    }
                    pos = p + 2;
                }
                _ => pos += 1,
            }
        }
        self.pos = pos;
        self.line = line;
        Ok(true)
    }
}

/// Lexes all of `input` and appends its items to `out`.
pub fn lex(input: &[u8], out: &mut Vec<Item>) -> Result<(), LexError> {
    let mut lexer = Lexer::new(input);
    while lexer.next_line(out)? {}
    Ok(())
}

fn next_line(input: &[u8], newline: usize, line: &mut u32) -> usize {
    if newline < input.len() {
        *line += 1;
        newline + 1
    } else {
        newline
    }
}

fn find_newline(input: &[u8], from: usize) -> usize {
    input[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(input.len(), |p| from + p)
}

fn skip_blanks(input: &[u8], mut pos: usize) -> usize {
    while pos < input.len() && matches!(input[pos], b' ' | b'\t' | b'\r' | b'\x0c') {
        pos += 1;
    }
    pos
}

fn skip_string(input: &[u8], open: usize, line: u32) -> Result<usize, LexError> {
    let mut p = open + 1;
    while p < input.len() {
        match input[p] {
            b'\\' => p += 2,
            b'"' => return Ok(p + 1),
            b'\n' => break,
            _ => p += 1,
        }
    }
    Err(LexError::UnterminatedString { line })
}

/// `'c`, `'\n`, and the optional closing quote of `'c'`.
fn skip_char_constant(input: &[u8], quote: usize) -> usize {
    let mut p = quote + 1;
    match input.get(p) {
        Some(b'\\') => p += 2,
        Some(b'\n') | None => return p,
        Some(_) => p += 1,
    }
    if input.get(p) == Some(&b'\'') {
        p += 1;
    }
    p.min(input.len())
}

/// Recognises the opt-out comments `# afterburn: off` / `# afterburn: on`
/// (the colon and blanks are optional, case is ignored).
fn marker(comment: &[u8]) -> Option<bool> {
    let mut c = comment;
    while let [b' ' | b'\t', rest @ ..] = c {
        c = rest;
    }
    let rest = strip_prefix_ignore_case(c, b"afterburn")?;
    let rest = trim(rest);
    let rest = rest.strip_prefix(b":").map_or(rest, trim);
    if rest.eq_ignore_ascii_case(b"off") {
        Some(false)
    } else if rest.eq_ignore_ascii_case(b"on") {
        Some(true)
    } else {
        None
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// Trims ASCII blanks on both sides.
pub fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'$' | b'\\' | b'@')
}

/// Splits labels off the statement `[start, end)` and records it.
fn push_statement(
    input: &[u8],
    start: usize,
    end: usize,
    line: u32,
    has_block_comment: bool,
    out: &mut Vec<Item>,
) {
    let mut p = skip_blanks(input, start);
    let mut has_label = false;
    // Each round consumes one `name:` label.
    loop {
        let name_start = p;
        let mut q = p;
        if q < end && input[q] == b'"' {
            // Quoted symbol name.
            q += 1;
            while q < end && input[q] != b'"' {
                q += if input[q] == b'\\' { 2 } else { 1 };
            }
            q = (q + 1).min(end);
        } else {
            while q < end && is_label_char(input[q]) {
                q += 1;
            }
        }
        if q > name_start && q < end && input[q] == b':' {
            has_label = true;
            p = skip_blanks(input, q + 1);
        } else {
            break;
        }
    }
    let mut e = end;
    while e > p && input[e - 1].is_ascii_whitespace() {
        e -= 1;
    }
    if e > p {
        out.push(Item::Statement(Statement {
            line,
            body_start: p,
            end: e,
            has_label,
            has_block_comment,
        }));
    } else if has_label {
        out.push(Item::Label { line });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(src: &str) -> Vec<(u32, String, bool)> {
        let mut items = Vec::new();
        lex(src.as_bytes(), &mut items).unwrap();
        items
            .into_iter()
            .filter_map(|i| match i {
                Item::Statement(s) => Some((
                    s.line,
                    String::from_utf8(s.body(src.as_bytes()).to_vec()).unwrap(),
                    s.has_label,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn splits_statements_labels_and_comments() {
        let b = bodies("foo: cli; sti # hlt\n\tbar:baz: rep; insb\n/ line comment cli\n");
        assert_eq!(
            b,
            vec![
                (1, "cli".into(), true),
                (1, "sti".into(), false),
                (2, "rep".into(), true),
                (2, "insb".into(), false),
            ]
        );
    }

    #[test]
    fn strings_and_char_constants_hide_separators() {
        let b = bodies(".ascii \"cli; sti # x\" ; movb $'#', %al; movb $';, %bl\n");
        assert_eq!(
            b,
            vec![
                (1, ".ascii \"cli; sti # x\"".into(), false),
                (1, "movb $'#', %al".into(), false),
                (1, "movb $';, %bl".into(), false),
            ]
        );
    }

    #[test]
    fn block_comments_span_lines() {
        let b = bodies("cli /* a; b\n c */ ; sti\nhlt\n");
        assert_eq!(
            b,
            vec![
                (1, "cli".into(), false),
                (2, "sti".into(), false),
                (3, "hlt".into(), false)
            ]
        );
        let src = b"outb /* x; */ %al, %dx /* y */\n";
        let mut items = Vec::new();
        lex(src, &mut items).unwrap();
        let Item::Statement(s) = items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(&*s.clean_body(src), b"outb          %al, %dx");
    }

    #[test]
    fn markers_are_reported() {
        let mut items = Vec::new();
        lex(
            b"# afterburn: off\ncli\n#AFTERBURN ON\n# afterburner\n",
            &mut items,
        )
        .unwrap();
        assert!(matches!(
            items[0],
            Item::Marker {
                line: 1,
                offset: 0,
                on: false
            }
        ));
        assert!(matches!(
            items[2],
            Item::Marker {
                line: 3,
                on: true,
                ..
            }
        ));
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn errors_carry_lines() {
        let mut items = Vec::new();
        assert_eq!(
            lex(b"nop\n.ascii \"abc\n", &mut items),
            Err(LexError::UnterminatedString { line: 2 })
        );
        assert_eq!(
            lex(b"nop\n/* never closed\n", &mut items),
            Err(LexError::UnterminatedComment { line: 2 })
        );
    }

    #[test]
    fn label_only_statement() {
        let mut items = Vec::new();
        lex(b"1:\n", &mut items).unwrap();
        assert_eq!(items, vec![Item::Label { line: 1 }]);
    }
}
