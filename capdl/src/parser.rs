//! Recursive-descent parser from tokens to [`SpecAst`].
//!
//! Errors do not stop the parse: after one, the parser skips to the next
//! statement (the next line at the same nesting depth, a `;`, or the `}` that
//! closes the block) and goes on, so a spec's errors are all reported at once.

use crate::ast::{
    CapBlock, CapEntry, CapParam, CapParamValue, FillAst, IrqMapping, NameRef, ObjectDecl,
    ObjectParam, ObjectParamValue, RangeAst, SlotAst, SpecAst, UntypedChild,
};
use crate::lexer::{Pos, Token, TokenKind};

/// What can be wrong with the structure of a spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A token other than the one the grammar needs here.
    #[error("expected {expected}, found {found}")]
    Expected {
        /// What would have been accepted.
        expected: &'static str,
        /// What was there.
        found: String,
    },
    /// The file does not start with `arch`.
    #[error("a spec starts with `arch x86_64`")]
    MissingArch,
    /// `arch` names another architecture.
    #[error("architecture `{0}` is not supported: previrt specs are `arch x86_64`")]
    UnsupportedArch(String),
    /// A section keyword this subset does not have (`cdt`, ...).
    #[error("section `{0}` is not supported (sections: `objects`, `caps`, `irq maps`)")]
    UnknownSection(String),
    /// An object array declared with a range instead of a count.
    #[error("an object array is declared with its length, as `name[N]`")]
    BadArrayDecl,
    /// A frame fill entry of another kind than file data.
    #[error("frame fill `{0}` is not supported (only CDL_FrameFill_FileData)")]
    UnsupportedFill(String),
}

/// Parses `tokens` (ending in `Eof`, as [`crate::lexer::tokenize`] returns
/// them). Returns the tree of everything that parsed and every error.
pub fn parse(tokens: &[Token]) -> (SpecAst, Vec<(Pos, ParseError)>) {
    let mut parser = Parser {
        tokens,
        at: 0,
        errors: Vec::new(),
        ast: SpecAst::default(),
    };
    parser.module();
    (parser.ast, parser.errors)
}

/// The error was recorded; the caller recovers.
struct Reported;

type PResult<T> = Result<T, Reported>;

struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
    errors: Vec<(Pos, ParseError)>,
    ast: SpecAst,
}

const RIGHT_LETTERS: &str = "RWXGP";

fn is_rights(word: &str) -> bool {
    !word.is_empty() && word.chars().all(|c| RIGHT_LETTERS.contains(c))
}

impl<'t> Parser<'t> {
    fn peek(&self) -> &'t Token {
        // The token list always ends in Eof and `bump` never passes it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &'t Token {
        &self.tokens[(self.at + ahead).min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> &'t Token {
        let token = self.peek();
        if token.kind != TokenKind::Eof {
            self.at += 1;
        }
        token
    }

    fn at_kind(&self, kind: &TokenKind) -> bool {
        &self.peek().kind == kind
    }

    fn at_ident(&self, word: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Ident(w) if w == word)
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if self.at_kind(kind) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn error<T>(&mut self, pos: Pos, error: ParseError) -> PResult<T> {
        self.errors.push((pos, error));
        Err(Reported)
    }

    fn expected<T>(&mut self, expected: &'static str) -> PResult<T> {
        let token = self.peek();
        self.error(
            token.pos,
            ParseError::Expected {
                expected,
                found: token.kind.to_string(),
            },
        )
    }

    fn expect(&mut self, kind: &TokenKind, expected: &'static str) -> PResult<Pos> {
        if self.at_kind(kind) {
            Ok(self.bump().pos)
        } else {
            self.expected(expected)
        }
    }

    fn ident(&mut self, expected: &'static str) -> PResult<(String, Pos)> {
        match &self.peek().kind {
            TokenKind::Ident(word) => {
                let pos = self.bump().pos;
                Ok((word.clone(), pos))
            }
            _ => self.expected(expected),
        }
    }

    fn number(&mut self, expected: &'static str) -> PResult<(u128, Pos)> {
        match self.peek().kind {
            TokenKind::Number(n) => {
                let pos = self.bump().pos;
                Ok((n, pos))
            }
            _ => self.expected(expected),
        }
    }

    /// Skips the rest of a broken statement that began at token `start`:
    /// first out of whatever brackets the statement had opened, then up to a
    /// `;`/`,` (eaten), the `}` that closes the enclosing block (not eaten),
    /// or the first token of a later line. A later line that starts a
    /// declaration (`name =`) ends the skip even inside unclosed brackets.
    fn recover(&mut self, start: usize) {
        let mut depth = 0usize;
        for token in &self.tokens[start..self.at] {
            match token.kind {
                TokenKind::LBrace | TokenKind::LParen | TokenKind::LBracket => depth += 1,
                TokenKind::RBrace | TokenKind::RParen | TokenKind::RBracket => {
                    depth = depth.saturating_sub(1);
                }
                _ => {}
            }
        }
        let error_line = self.peek().pos.line;
        loop {
            let token = self.peek();
            let later_line = token.pos.line > error_line;
            match token.kind {
                TokenKind::Eof => return,
                TokenKind::Ident(_) if later_line && self.peek_at(1).kind == TokenKind::Equals => {
                    return
                }
                TokenKind::LBrace | TokenKind::LParen | TokenKind::LBracket => depth += 1,
                TokenKind::RBrace if depth == 0 => return,
                TokenKind::RBrace | TokenKind::RParen | TokenKind::RBracket => {
                    depth = depth.saturating_sub(1);
                }
                TokenKind::Semi | TokenKind::Comma if depth == 0 => {
                    self.bump();
                    return;
                }
                TokenKind::Ident(_) | TokenKind::Number(_) if depth == 0 && later_line => return,
                _ => {}
            }
            self.bump();
        }
    }

    /// Parses `{ item* }`; `item` is retried after each error.
    fn block(&mut self, mut item: impl FnMut(&mut Self) -> PResult<()>) -> PResult<()> {
        self.expect(&TokenKind::LBrace, "`{`")?;
        loop {
            if self.eat(&TokenKind::RBrace) {
                return Ok(());
            }
            if self.at_kind(&TokenKind::Eof) {
                return self.expected("`}`");
            }
            let before = self.at;
            if item(self).is_err() {
                self.recover(before);
                if self.at == before && !self.at_kind(&TokenKind::RBrace) {
                    // Nothing was skipped: step over the token to make progress.
                    self.bump();
                }
            }
        }
    }

    fn module(&mut self) {
        if self.at_ident("arch") {
            self.bump();
            if let Ok((arch, pos)) = self.ident("an architecture name") {
                if arch != "x86_64" {
                    self.errors
                        .push((pos, ParseError::UnsupportedArch(arch.clone())));
                }
                self.ast.arch = Some((arch, pos));
            }
        } else {
            let pos = self.peek().pos;
            self.errors.push((pos, ParseError::MissingArch));
        }
        while !self.at_kind(&TokenKind::Eof) {
            if self.section().is_err() {
                self.skip_to_section();
            }
        }
    }

    fn skip_to_section(&mut self) {
        let mut depth = 0usize;
        loop {
            let token = self.peek();
            match &token.kind {
                TokenKind::Eof => return,
                TokenKind::Ident(w)
                    if depth == 0 && matches!(w.as_str(), "objects" | "caps" | "irq") =>
                {
                    return
                }
                TokenKind::LBrace => depth += 1,
                TokenKind::RBrace => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.bump();
        }
    }

    fn section(&mut self) -> PResult<()> {
        let (word, pos) = self.ident("`objects`, `caps` or `irq maps`")?;
        match word.as_str() {
            "objects" => self.block(|p| {
                let decl = p.object_decl()?;
                p.ast.objects.push(decl);
                Ok(())
            }),
            "caps" => self.block(|p| p.cap_block()),
            "irq" => {
                if !self.at_ident("maps") {
                    return self.expected("`maps` (the section is `irq maps`)");
                }
                self.bump();
                self.block(|p| p.irq_mapping())
            }
            // seL4's capDL tool always prints a `cdt` section; an empty one
            // says nothing, so it is accepted.
            "cdt"
                if self.at_kind(&TokenKind::LBrace)
                    && self.peek_at(1).kind == TokenKind::RBrace =>
            {
                self.bump();
                self.bump();
                Ok(())
            }
            _ => {
                self.errors.push((pos, ParseError::UnknownSection(word)));
                // Skip its block, if it has one, so its contents raise nothing.
                if self.at_kind(&TokenKind::LBrace) {
                    let mut depth = 0usize;
                    loop {
                        match self.bump().kind {
                            TokenKind::LBrace => depth += 1,
                            TokenKind::RBrace => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            TokenKind::Eof => break,
                            _ => {}
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn name_ref(&mut self, expected: &'static str) -> PResult<NameRef> {
        let (name, pos) = self.ident(expected)?;
        let ranges = if self.at_kind(&TokenKind::LBracket) {
            Some(self.ranges()?)
        } else {
            None
        };
        Ok(NameRef { name, pos, ranges })
    }

    fn ranges(&mut self) -> PResult<Vec<RangeAst>> {
        self.expect(&TokenKind::LBracket, "`[`")?;
        let mut ranges = Vec::new();
        if self.eat(&TokenKind::RBracket) {
            return Ok(ranges);
        }
        loop {
            let range = if self.eat(&TokenKind::DotDot) {
                RangeAst::To(self.number("a number")?.0)
            } else {
                let (first, _) = self.number("an index or a range")?;
                if self.eat(&TokenKind::DotDot) {
                    match self.peek().kind {
                        TokenKind::Number(last) => {
                            self.bump();
                            RangeAst::FromTo(first, last)
                        }
                        _ => RangeAst::From(first),
                    }
                } else {
                    RangeAst::Only(first)
                }
            };
            ranges.push(range);
            if self.eat(&TokenKind::RBracket) {
                return Ok(ranges);
            }
            self.expect(&TokenKind::Comma, "`,` or `]`")?;
        }
    }

    fn object_decl(&mut self) -> PResult<ObjectDecl> {
        let head = self.name_ref("an object name")?;
        self.object_decl_rest(head)
    }

    /// The part after the name: `= type (params) { children }`.
    fn object_decl_rest(&mut self, head: NameRef) -> PResult<ObjectDecl> {
        let count = match &head.ranges {
            None => None,
            Some(ranges) => match ranges.as_slice() {
                [RangeAst::Only(n)] => Some((*n, head.pos)),
                _ => return self.error(head.pos, ParseError::BadArrayDecl),
            },
        };
        self.expect(&TokenKind::Equals, "`=`")?;
        let (type_name, type_pos) = self.ident("an object type")?;
        let mut params = Vec::new();
        if self.eat(&TokenKind::LParen) && !self.eat(&TokenKind::RParen) {
            loop {
                params.push(self.object_param()?);
                if self.eat(&TokenKind::RParen) {
                    break;
                }
                self.expect(&TokenKind::Comma, "`,` or `)`")?;
            }
        }
        let mut children = Vec::new();
        let mut children_pos = None;
        if self.at_kind(&TokenKind::LBrace) {
            children_pos = Some(self.peek().pos);
            self.block(|p| {
                let child = p.name_ref("an object name")?;
                let child = if p.at_kind(&TokenKind::Equals) {
                    UntypedChild::Decl(p.object_decl_rest(child)?)
                } else {
                    UntypedChild::Ref(child)
                };
                children.push(child);
                p.eat(&TokenKind::Comma);
                Ok(())
            })?;
        }
        self.eat(&TokenKind::Semi);
        Ok(ObjectDecl {
            name: head.name,
            pos: head.pos,
            count,
            type_name,
            type_pos,
            params,
            children,
            children_pos,
        })
    }

    fn object_param(&mut self) -> PResult<ObjectParam> {
        let pos = self.peek().pos;
        if let TokenKind::Number(n) = self.peek().kind {
            self.bump();
            let (unit, _) = self.ident("`bits`, `k` or `M` after the number")?;
            let value = match unit.as_str() {
                "bits" => ObjectParamValue::Bits(n),
                "k" => ObjectParamValue::VmSize(n.saturating_mul(1 << 10)),
                "M" => ObjectParamValue::VmSize(n.saturating_mul(1 << 20)),
                _ => {
                    self.at -= 1;
                    return self.expected("`bits`, `k` or `M` after the number");
                }
            };
            return Ok(ObjectParam { pos, value });
        }
        let (key, _) = self.ident("an object parameter")?;
        self.expect(&TokenKind::Colon, "`:`")?;
        let value = match key.as_str() {
            "elf" => ObjectParamValue::Name(key, self.ident("an ELF name")?.0),
            "init" => {
                self.expect(&TokenKind::LBracket, "`[`")?;
                let mut values = Vec::new();
                if !self.eat(&TokenKind::RBracket) {
                    loop {
                        values.push(self.number("a number")?.0);
                        if self.eat(&TokenKind::RBracket) {
                            break;
                        }
                        self.expect(&TokenKind::Comma, "`,` or `]`")?;
                    }
                }
                ObjectParamValue::List(key, values)
            }
            "ports" => {
                self.expect(&TokenKind::LBracket, "`[`")?;
                let (first, _) = self.number("the first port")?;
                self.expect(&TokenKind::DotDot, "`..`")?;
                let (last, _) = self.number("the last port")?;
                self.expect(&TokenKind::RBracket, "`]`")?;
                ObjectParamValue::Ports(first, last)
            }
            "fill" => {
                self.expect(&TokenKind::LBracket, "`[`")?;
                let mut fills = Vec::new();
                if !self.eat(&TokenKind::RBracket) {
                    loop {
                        fills.push(self.fill()?);
                        if self.eat(&TokenKind::RBracket) {
                            break;
                        }
                        self.expect(&TokenKind::Comma, "`,` or `]`")?;
                    }
                }
                ObjectParamValue::Fill(fills)
            }
            _ => ObjectParamValue::Number(key, self.number("a number")?.0),
        };
        Ok(ObjectParam { pos, value })
    }

    fn fill(&mut self) -> PResult<FillAst> {
        let pos = self.expect(&TokenKind::LBrace, "`{`")?;
        let (dest_offset, _) = self.number("the offset in the frame")?;
        let (length, _) = self.number("the length")?;
        let (kind, kind_pos) = self.ident("CDL_FrameFill_FileData")?;
        if kind != "CDL_FrameFill_FileData" {
            return self.error(kind_pos, ParseError::UnsupportedFill(kind));
        }
        let file = match &self.peek().kind {
            TokenKind::Str(s) | TokenKind::Ident(s) => {
                self.bump();
                s.clone()
            }
            _ => return self.expected("a file name"),
        };
        let (file_offset, _) = self.number("the offset in the file")?;
        self.expect(&TokenKind::RBrace, "`}`")?;
        Ok(FillAst {
            pos,
            dest_offset,
            length,
            file,
            file_offset,
        })
    }

    fn cap_block(&mut self) -> PResult<()> {
        let holder = self.name_ref("the name of an object that holds caps")?;
        let mut entries = Vec::new();
        self.block(|p| {
            entries.push(p.cap_entry()?);
            p.eat(&TokenKind::Semi);
            Ok(())
        })?;
        self.eat(&TokenKind::Semi);
        self.ast.cap_blocks.push(CapBlock { holder, entries });
        Ok(())
    }

    fn cap_entry(&mut self) -> PResult<CapEntry> {
        let slot_pos = self.peek().pos;
        let slot = match &self.peek().kind {
            TokenKind::Number(n) => SlotAst::Index(*n),
            TokenKind::Ident(w) => SlotAst::Named(w.clone()),
            _ => {
                return self.expected("a slot (a number, `cspace`, `vspace` or `ipc_buffer_slot`)")
            }
        };
        self.bump();
        self.expect(&TokenKind::Colon, "`:` after the slot")?;
        let target = self.name_ref("the name of the object the cap points to")?;
        let mut params = Vec::new();
        if self.eat(&TokenKind::LParen) && !self.eat(&TokenKind::RParen) {
            loop {
                params.push(self.cap_param()?);
                if self.eat(&TokenKind::RParen) {
                    break;
                }
                self.expect(&TokenKind::Comma, "`,` or `)`")?;
            }
        }
        Ok(CapEntry {
            slot,
            slot_pos,
            target,
            params,
        })
    }

    fn cap_param(&mut self) -> PResult<CapParam> {
        let (word, pos) = self.ident("a cap parameter (rights, `badge:`, `guard:`, ...)")?;
        if self.eat(&TokenKind::Colon) {
            let (n, _) = self.number("a number")?;
            return Ok(CapParam {
                pos,
                value: CapParamValue::Number(word, n),
            });
        }
        if is_rights(&word) {
            // `R W` and `RW` are the same: gather the letters.
            let mut letters = word;
            while let TokenKind::Ident(next) = &self.peek().kind {
                if !is_rights(next) || self.peek_at(1).kind == TokenKind::Colon {
                    break;
                }
                letters.push_str(next);
                self.bump();
            }
            return Ok(CapParam {
                pos,
                value: CapParamValue::Rights(letters),
            });
        }
        Ok(CapParam {
            pos,
            value: CapParamValue::Flag(word),
        })
    }

    fn irq_mapping(&mut self) -> PResult<()> {
        let (irq, pos) = self.number("an IRQ number")?;
        self.expect(&TokenKind::Colon, "`:`")?;
        let target = self.name_ref("the name of an IRQ object")?;
        self.eat(&TokenKind::Semi);
        self.ast.irq_maps.push(IrqMapping { irq, pos, target });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::tokenize;

    fn parse_ok(source: &str) -> SpecAst {
        let (tokens, lex_errors) = tokenize(source);
        assert!(lex_errors.is_empty(), "{lex_errors:?}");
        let (ast, errors) = parse(&tokens);
        assert!(errors.is_empty(), "{errors:?}");
        ast
    }

    fn parse_errors(source: &str) -> Vec<(Pos, ParseError)> {
        let (tokens, _) = tokenize(source);
        parse(&tokens).1
    }

    fn at(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }

    #[test]
    fn objects_caps_and_irqs() {
        let ast = parse_ok(
            "arch x86_64\n\
             objects {\n\
               t = tcb (addr: 0x1000, ip: 0x400000, prio: 100, elf: vmm, init: [1, 2])\n\
               f[4] = frame (4k, fill: [{0 4096 CDL_FrameFill_FileData \"vmm.elf\" 0x1000}])\n\
               u = ut (20 bits) { e = ep, f[0..1] }\n\
               p = io_ports (ports: [0x40..0x43])\n\
             }\n\
             caps {\n\
               c { 1: e (RW G, badge: 5); 2: c (guard: 0, guard_size: 58) }\n\
               t { cspace: c vspace: v }\n\
             }\n\
             irq maps { 4: timer_irq }\n",
        );
        assert_eq!(ast.arch.as_ref().map(|a| a.0.as_str()), Some("x86_64"));
        assert_eq!(ast.objects.len(), 4);
        assert_eq!(ast.objects[1].count, Some((4, at(4, 1))));
        let ObjectParamValue::Fill(fills) = &ast.objects[1].params[1].value else {
            panic!("fill expected");
        };
        assert_eq!(fills[0].file, "vmm.elf");
        assert_eq!(fills[0].file_offset, 0x1000);
        assert_eq!(ast.objects[2].children.len(), 2);
        assert!(matches!(&ast.objects[2].children[1],
            UntypedChild::Ref(r) if r.ranges == Some(vec![RangeAst::FromTo(0, 1)])));
        assert_eq!(
            ast.objects[3].params[0].value,
            ObjectParamValue::Ports(0x40, 0x43)
        );
        let entry = &ast.cap_blocks[0].entries[0];
        assert_eq!(entry.params[0].value, CapParamValue::Rights("RWG".into()));
        assert_eq!(
            entry.params[1].value,
            CapParamValue::Number("badge".into(), 5)
        );
        assert_eq!(
            ast.cap_blocks[1].entries[1].slot,
            SlotAst::Named("vspace".into())
        );
        assert_eq!(ast.irq_maps[0].irq, 4);
    }

    #[test]
    fn every_broken_statement_is_reported() {
        let errors = parse_errors(
            "arch x86_64\nobjects {\n  a = (4k)\n  b = ep\n  c[1..2] = ep\n  d = frame (4 bytes)\n}\n",
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(errors[0].0, at(3, 7));
        assert_eq!(
            errors[0].1.to_string(),
            "expected an object type, found `(`"
        );
        assert_eq!(errors[1], (at(5, 3), ParseError::BadArrayDecl));
        assert_eq!(errors[2].0, at(6, 16));
        assert_eq!(
            errors[2].1.to_string(),
            "expected `bits`, `k` or `M` after the number, found `bytes`"
        );
    }

    #[test]
    fn missing_and_foreign_arch() {
        assert_eq!(
            parse_errors("objects { }"),
            vec![(at(1, 1), ParseError::MissingArch)]
        );
        assert_eq!(
            parse_errors("arch ia32"),
            vec![(at(1, 6), ParseError::UnsupportedArch("ia32".into()))]
        );
    }

    #[test]
    fn unknown_section_is_skipped_whole() {
        let errors = parse_errors("arch x86_64 cdt { (a, 1) { (b, 2) } } objects { e = ep }");
        assert_eq!(
            errors,
            vec![(at(1, 13), ParseError::UnknownSection("cdt".into()))]
        );
    }

    #[test]
    fn unsupported_fill_kind() {
        let errors = parse_errors(
            "arch x86_64 objects { f = frame (4k, fill: [{0 8 CDL_FrameFill_BootInfo x 0}]) }",
        );
        assert_eq!(
            errors,
            vec![(
                at(1, 50),
                ParseError::UnsupportedFill("CDL_FrameFill_BootInfo".into())
            )]
        );
    }

    #[test]
    fn unclosed_block_at_end_of_file() {
        let errors = parse_errors("arch x86_64 objects { e = ep");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].1.to_string(), "expected `}`, found end of file");
    }
}
