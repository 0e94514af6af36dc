//! Enumerators and numeric macros from libsel4's C headers, after the C
//! preprocessor has applied the config, evaluated by a small C constant
//! expression evaluator.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::preprocess::Preprocessor;

/// The headers that define the numbers a user-level task needs.
const HEADERS: &[&str] = &[
    "sel4/simple_types.h",
    "sel4/macros.h",
    "sel4/objecttype.h",
    "sel4/sel4_arch/objecttype.h",
    "sel4/arch/objecttype.h",
    "sel4/errors.h",
    "sel4/constants.h",
    "sel4/arch/constants.h",
    "sel4/sel4_arch/constants.h",
    "sel4/bootinfo_types.h",
    "sel4/shared_types.h",
    "sel4/arch/types.h",
];

#[derive(Clone)]
pub struct Constant {
    pub name: String,
    pub value: i128,
    /// Where it came from: `enum` or `#define`.
    pub origin: &'static str,
}

fn wrapper() -> String {
    let mut text = String::from("#include <autoconf.h>\n");
    for h in HEADERS {
        let _ = writeln!(text, "#include <{h}>");
    }
    text
}

/// Every `seL4_*` enumerator of the headers (all must evaluate) and every
/// `seL4_*` object-like macro whose expansion is an integer constant.
pub fn libsel4_enums(cpp: &Preprocessor) -> Result<Vec<Constant>, String> {
    let text = cpp.run("enums.c", &wrapper(), false)?;
    let tokens = tokenize(&text);
    let mut known: BTreeMap<String, i128> = BTreeMap::new();
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] != "enum" {
            i += 1;
            continue;
        }
        i += 1;
        if i < tokens.len() && is_ident(&tokens[i]) {
            i += 1; // the enum's tag name
        }
        if i >= tokens.len() || tokens[i] != "{" {
            continue; // `enum name variable;` etc.
        }
        i += 1;
        let mut next: i128 = 0;
        while i < tokens.len() && tokens[i] != "}" {
            let name = tokens[i].clone();
            i += 1;
            let mut value = next;
            if i < tokens.len() && tokens[i] == "=" {
                let start = i + 1;
                let mut depth = 0;
                let mut end = start;
                while end < tokens.len() {
                    match tokens[end].as_str() {
                        "(" => depth += 1,
                        ")" => depth -= 1,
                        "," | "}" if depth == 0 => break,
                        _ => {}
                    }
                    end += 1;
                }
                let evaluated = Evaluator::new(&tokens[start..end], &known).expression();
                match evaluated {
                    Ok(v) => value = v,
                    // Padding members such as `_enum_pad_seL4_VMFault_Msg` use
                    // sizeof; they are not part of the interface.
                    Err(_) if !name.starts_with("seL4_") => value = 0,
                    Err(e) => return Err(format!("enumerator {name}: {e}")),
                }
                i = end;
            }
            if i < tokens.len() && tokens[i] == "," {
                i += 1;
            }
            known.insert(name.clone(), value);
            next = value + 1;
            if name.starts_with("seL4_") {
                out.push(Constant {
                    name,
                    value,
                    origin: "enum",
                });
            }
        }
    }

    // Object-like macros: ask the preprocessor for their names, then for their
    // expansions, and keep those that are integer constants.
    let defines = cpp.run("defines.c", &wrapper(), true)?;
    let mut probe = wrapper();
    let mut names = Vec::new();
    for line in defines.lines() {
        let Some(rest) = line.strip_prefix("#define seL4_") else {
            continue;
        };
        let name_end = rest.find([' ', '(']).unwrap_or(rest.len());
        if rest[name_end..].starts_with('(') {
            continue; // function-like
        }
        let name = format!("seL4_{}", &rest[..name_end]);
        if known.contains_key(&name) {
            continue;
        }
        // The name itself would be expanded too: refer to it by index.
        let _ = writeln!(probe, "PREVIRT_VALUE {} = {name} ;", names.len());
        names.push(name);
    }
    let expanded = cpp.run("macros.c", &probe, false)?;
    for line in expanded.lines() {
        let Some(rest) = line.trim().strip_prefix("PREVIRT_VALUE ") else {
            continue;
        };
        let Some((index, expansion)) = rest.split_once(" = ") else {
            continue;
        };
        let Some(name) = index
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|i| names.get(i))
        else {
            continue;
        };
        let expansion = expansion.trim_end_matches(';');
        let tokens = tokenize(expansion);
        if let Ok(value) = Evaluator::new(&tokens, &known).expression() {
            out.push(Constant {
                name: name.trim().to_string(),
                value,
                origin: "#define",
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

/// Numeric `CONFIG_*` values of the kernel config.
pub fn config_values(cpp: &Preprocessor) -> Result<Vec<Constant>, String> {
    let defines = cpp.run("config.c", "#include <autoconf.h>\n", true)?;
    let mut out = Vec::new();
    for line in defines.lines() {
        let Some(rest) = line.strip_prefix("#define CONFIG_") else {
            continue;
        };
        let Some((name, value)) = rest.split_once(' ') else {
            continue;
        };
        let tokens = tokenize(value);
        if let Ok(value) = Evaluator::new(&tokens, &BTreeMap::new()).expression() {
            out.push(Constant {
                name: format!("CONFIG_{name}"),
                value,
                origin: "autoconf.h",
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub fn tokenize(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == '"' {
            // String literals (deprecation messages) are skipped whole.
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if (c == '<' || c == '>') && chars.get(i + 1) == Some(&c) {
            tokens.push(format!("{c}{c}"));
            i += 2;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

fn is_ident(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
}

/// Integer constant expressions as they appear in libsel4's enums and macros:
/// literals with u/l suffixes, known names, casts to a type name, unary
/// `- ~ !`, and the binary operators `* / + - << >> & ^ |`.
struct Evaluator<'a> {
    tokens: &'a [String],
    pos: usize,
    known: &'a BTreeMap<String, i128>,
}

impl<'a> Evaluator<'a> {
    fn new(tokens: &'a [String], known: &'a BTreeMap<String, i128>) -> Self {
        Evaluator {
            tokens,
            pos: 0,
            known,
        }
    }

    fn expression(mut self) -> Result<i128, String> {
        let v = self.binary(0)?;
        if self.pos != self.tokens.len() {
            return Err(format!("unexpected `{}`", self.tokens[self.pos]));
        }
        Ok(v)
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn binary(&mut self, min_precedence: u8) -> Result<i128, String> {
        let mut left = self.unary()?;
        while let Some(op) = self.peek() {
            let precedence = match op {
                "*" | "/" => 5,
                "+" | "-" => 4,
                "<<" | ">>" => 3,
                "&" => 2,
                "^" => 1,
                "|" => 0,
                _ => break,
            };
            if precedence < min_precedence {
                break;
            }
            let op = op.to_string();
            self.pos += 1;
            let right = self.binary(precedence + 1)?;
            left = match op.as_str() {
                "*" => left.checked_mul(right),
                "/" => left.checked_div(right),
                "+" => left.checked_add(right),
                "-" => left.checked_sub(right),
                "<<" => u32::try_from(right).ok().and_then(|r| left.checked_shl(r)),
                ">>" => u32::try_from(right).ok().and_then(|r| left.checked_shr(r)),
                "&" => Some(left & right),
                "^" => Some(left ^ right),
                _ => Some(left | right),
            }
            .ok_or_else(|| format!("overflow in `{left} {op} {right}`"))?;
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<i128, String> {
        match self.peek() {
            Some("-") => {
                self.pos += 1;
                Ok(-self.unary()?)
            }
            Some("~") => {
                self.pos += 1;
                Ok(!self.unary()?)
            }
            Some("!") => {
                self.pos += 1;
                Ok(i128::from(self.unary()? == 0))
            }
            Some("(") => {
                // A cast `(type)` is a parenthesised name that is not a value.
                if let (Some(name), Some(")")) = (
                    self.tokens.get(self.pos + 1).map(String::as_str),
                    self.tokens.get(self.pos + 2).map(String::as_str),
                ) {
                    if is_ident(name) && !self.known.contains_key(name) {
                        self.pos += 3;
                        return self.unary();
                    }
                }
                self.pos += 1;
                let v = self.binary(0)?;
                if self.peek() != Some(")") {
                    return Err("missing `)`".into());
                }
                self.pos += 1;
                Ok(v)
            }
            Some(token) => {
                let token = token.to_string();
                self.pos += 1;
                if token.starts_with(|c: char| c.is_ascii_digit()) {
                    literal(&token)
                } else {
                    self.known
                        .get(&token)
                        .copied()
                        .ok_or_else(|| format!("unknown name `{token}`"))
                }
            }
            None => Err("expression ends early".into()),
        }
    }
}

fn literal(token: &str) -> Result<i128, String> {
    let digits = token.trim_end_matches(['u', 'U', 'l', 'L']);
    let parsed = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(hex, 16)
    } else if digits.len() > 1 && digits.starts_with('0') {
        i128::from_str_radix(&digits[1..], 8)
    } else {
        digits.parse()
    };
    parsed.map_err(|_| format!("bad integer literal `{token}`"))
}
