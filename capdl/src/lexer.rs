//! Tokens of the CapDL text: identifiers, numbers, strings, punctuation.
//! Comments (`-- line`, nested `/* block */`) and whitespace are dropped.

use core::fmt;

/// A position in the source: 1-based line and column (columns count
/// characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A name or keyword: a letter, then letters, digits, `_`, `@`, `.`, `-`.
    Ident(String),
    /// A number: decimal, `0x` hexadecimal or `0o` octal.
    Number(u128),
    /// A double-quoted string (frame fill file names).
    Str(String),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `:`
    Colon,
    /// `,`
    Comma,
    /// `;`
    Semi,
    /// `=`
    Equals,
    /// `..`
    DotDot,
    /// End of the input.
    Eof,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Ident(s) => write!(f, "`{s}`"),
            TokenKind::Number(n) => write!(f, "number {n}"),
            TokenKind::Str(s) => write!(f, "string {s:?}"),
            TokenKind::LBrace => f.write_str("`{`"),
            TokenKind::RBrace => f.write_str("`}`"),
            TokenKind::LParen => f.write_str("`(`"),
            TokenKind::RParen => f.write_str("`)`"),
            TokenKind::LBracket => f.write_str("`[`"),
            TokenKind::RBracket => f.write_str("`]`"),
            TokenKind::Colon => f.write_str("`:`"),
            TokenKind::Comma => f.write_str("`,`"),
            TokenKind::Semi => f.write_str("`;`"),
            TokenKind::Equals => f.write_str("`=`"),
            TokenKind::DotDot => f.write_str("`..`"),
            TokenKind::Eof => f.write_str("end of file"),
        }
    }
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Where it starts.
    pub pos: Pos,
}

/// What can be wrong with the characters of a spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    /// A character that starts no token.
    #[error("unexpected character {0:?}")]
    UnexpectedChar(char),
    /// `/*` without its `*/`.
    #[error("comment is not closed (`/*` without `*/`)")]
    UnterminatedComment,
    /// `"` without its closing quote on the same line.
    #[error("string is not closed before the end of the line")]
    UnterminatedString,
    /// A number with more digits than any field can hold.
    #[error("number `{0}` is too large")]
    NumberTooLarge(String),
    /// `0x` or `0o` with no digits after it.
    #[error("number `{0}` has no digits after its prefix")]
    MissingDigits(String),
}

/// Splits `source` into tokens. Every lexical error is reported and lexing
/// goes on after it, so one bad character does not hide the rest.
/// The last token is always [`TokenKind::Eof`].
pub fn tokenize(source: &str) -> (Vec<Token>, Vec<(Pos, LexError)>) {
    let mut lexer = Lexer {
        chars: source.chars().collect(),
        at: 0,
        pos: Pos { line: 1, col: 1 },
        tokens: Vec::new(),
        errors: Vec::new(),
    };
    lexer.run();
    (lexer.tokens, lexer.errors)
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
    pos: Pos,
    tokens: Vec<Token>,
    errors: Vec<(Pos, LexError)>,
}

fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '.' | '-')
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.at += 1;
        if c == '\n' {
            self.pos.line = self.pos.line.saturating_add(1);
            self.pos.col = 1;
        } else {
            self.pos.col = self.pos.col.saturating_add(1);
        }
        Some(c)
    }

    fn push(&mut self, kind: TokenKind, pos: Pos) {
        self.tokens.push(Token { kind, pos });
    }

    fn run(&mut self) {
        while let Some(c) = self.peek(0) {
            let start = self.pos;
            match c {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '-' if self.peek(1) == Some('-') => {
                    while let Some(c) = self.peek(0) {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                '/' if self.peek(1) == Some('*') => self.block_comment(start),
                '"' => self.string(start),
                c if c.is_ascii_digit() => self.number(start),
                c if c.is_ascii_alphabetic() => self.ident(start),
                '.' if self.peek(1) == Some('.') => {
                    self.bump();
                    self.bump();
                    self.push(TokenKind::DotDot, start);
                }
                _ => {
                    self.bump();
                    let kind = match c {
                        '{' => TokenKind::LBrace,
                        '}' => TokenKind::RBrace,
                        '(' => TokenKind::LParen,
                        ')' => TokenKind::RParen,
                        '[' => TokenKind::LBracket,
                        ']' => TokenKind::RBracket,
                        ':' => TokenKind::Colon,
                        ',' => TokenKind::Comma,
                        ';' => TokenKind::Semi,
                        '=' => TokenKind::Equals,
                        other => {
                            self.errors.push((start, LexError::UnexpectedChar(other)));
                            continue;
                        }
                    };
                    self.push(kind, start);
                }
            }
        }
        let end = self.pos;
        self.push(TokenKind::Eof, end);
    }

    /// Block comments nest, as in the capDL tool.
    fn block_comment(&mut self, start: Pos) {
        self.bump();
        self.bump();
        let mut depth = 1usize;
        while depth > 0 {
            match (self.peek(0), self.peek(1)) {
                (None, _) => {
                    self.errors.push((start, LexError::UnterminatedComment));
                    return;
                }
                (Some('/'), Some('*')) => {
                    self.bump();
                    self.bump();
                    depth += 1;
                }
                (Some('*'), Some('/')) => {
                    self.bump();
                    self.bump();
                    depth -= 1;
                }
                _ => {
                    self.bump();
                }
            }
        }
    }

    fn string(&mut self, start: Pos) {
        self.bump();
        let mut text = String::new();
        loop {
            match self.peek(0) {
                None | Some('\n') => {
                    self.errors.push((start, LexError::UnterminatedString));
                    return;
                }
                Some('"') => {
                    self.bump();
                    break;
                }
                Some(c) => {
                    self.bump();
                    text.push(c);
                }
            }
        }
        self.push(TokenKind::Str(text), start);
    }

    /// `0x` hexadecimal, `0o` octal, otherwise decimal (leading zeros are
    /// decimal, as in the capDL tool's Parsec lexer, whatever its manual says).
    fn number(&mut self, start: Pos) {
        let (radix, prefix) = match (self.peek(0), self.peek(1)) {
            (Some('0'), Some('x' | 'X')) => (16, 2),
            (Some('0'), Some('o' | 'O')) => (8, 2),
            _ => (10, 0),
        };
        let mut text = String::new();
        for _ in 0..prefix {
            if let Some(c) = self.bump() {
                text.push(c);
            }
        }
        let mut digits = String::new();
        while let Some(c) = self.peek(0) {
            if c.is_digit(radix) {
                digits.push(c);
                text.push(c);
                self.bump();
            } else if c == '_' && !digits.is_empty() {
                // Digit separators, as in Rust: `0x1_0000`.
                text.push(c);
                self.bump();
            } else {
                break;
            }
        }
        if digits.is_empty() {
            self.errors.push((start, LexError::MissingDigits(text)));
            return;
        }
        match u128::from_str_radix(&digits, radix) {
            Ok(value) => self.push(TokenKind::Number(value), start),
            Err(_) => {
                self.errors.push((start, LexError::NumberTooLarge(text)));
                // Still a number, so the parse goes on as the writer meant.
                self.push(TokenKind::Number(u128::MAX), start);
            }
        }
    }

    fn ident(&mut self, start: Pos) {
        let mut text = String::new();
        while let Some(c) = self.peek(0) {
            // `--` starts a comment and `..` a range even right after a name.
            let next = self.peek(1);
            let breaks = (c == '-' && next == Some('-')) || (c == '.' && next == Some('.'));
            if !is_ident_continue(c) || breaks {
                break;
            }
            text.push(c);
            self.bump();
        }
        self.push(TokenKind::Ident(text), start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind> {
        let (tokens, errors) = tokenize(source);
        assert!(errors.is_empty(), "{errors:?}");
        tokens.into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn numbers_in_every_radix() {
        assert_eq!(
            kinds("10 0x1F 0o17 007 0x1_000"),
            vec![
                TokenKind::Number(10),
                TokenKind::Number(31),
                TokenKind::Number(15),
                TokenKind::Number(7),
                TokenKind::Number(0x1000),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn units_split_from_numbers() {
        assert_eq!(
            kinds("4k 2M"),
            vec![
                TokenKind::Number(4),
                TokenKind::Ident("k".into()),
                TokenKind::Number(2),
                TokenKind::Ident("M".into()),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn comments_nest_and_lines_count() {
        let (tokens, errors) = tokenize("/* a /* b */ c */ x -- y\n  z..w");
        assert!(errors.is_empty());
        let z = &tokens[1];
        assert_eq!(z.kind, TokenKind::Ident("z".into()));
        assert_eq!(z.pos, Pos { line: 2, col: 3 });
        assert_eq!(tokens[2].kind, TokenKind::DotDot);
    }

    #[test]
    fn errors_are_positioned_and_lexing_goes_on() {
        let (tokens, errors) = tokenize("a $ b\n\"open");
        assert_eq!(
            errors,
            vec![
                (Pos { line: 1, col: 3 }, LexError::UnexpectedChar('$')),
                (Pos { line: 2, col: 1 }, LexError::UnterminatedString),
            ]
        );
        assert_eq!(tokens.len(), 3);
    }

    #[test]
    fn huge_numbers_and_bare_prefixes_are_errors() {
        let (_, errors) = tokenize("0x1_0000_0000_0000_0000_0000_0000_0000_0000 0x");
        assert!(matches!(errors[0].1, LexError::NumberTooLarge(_)));
        assert!(matches!(errors[1].1, LexError::MissingDigits(_)));
        let (_, errors) = tokenize("/* open");
        assert_eq!(
            errors,
            vec![(Pos { line: 1, col: 1 }, LexError::UnterminatedComment)]
        );
    }
}
