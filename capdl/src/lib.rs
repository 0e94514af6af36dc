//! CapDL for previrt: the language that says who may touch what.
//!
//! - [`objects`] and [`model`] are `no_std` and allocation-free: the
//!   root-task loader depends on `capdl = { default-features = false }` and
//!   reads the serialized spec with [`model::SpecReader`].
//! - With the default `std` feature: the [`lexer`], [`parser`],
//!   [`validate`]or, [`print`](mod@print)er and [`encode`]r, the spec [`build`]er (how
//!   host tools make specs in code), the reader of images' program headers
//!   ([`elf`]), the system [`generate`]or, and the `capdl` CLI. The numbers the generated layout promises the VMM
//!   server (slots, windows, start registers) are in [`generate`] without
//!   `std` too.
//!
//! The supported language is documented in `docs/capdl.md`.

#![cfg_attr(not(feature = "std"), no_std)]

pub mod bundle;
pub mod generate;
pub mod model;
pub mod objects;

#[cfg(feature = "std")]
pub mod ast;
#[cfg(feature = "std")]
pub mod build;
#[cfg(feature = "std")]
pub mod diagnostic;
#[cfg(feature = "std")]
pub mod elf;
#[cfg(feature = "std")]
pub mod encode;
#[cfg(feature = "std")]
pub mod lexer;
#[cfg(feature = "std")]
pub mod parser;
#[cfg(feature = "std")]
pub mod print;
#[cfg(feature = "std")]
pub mod spec;
#[cfg(feature = "std")]
pub mod validate;

#[cfg(feature = "std")]
pub use diagnostic::{Diagnostic, Error};
#[cfg(feature = "std")]
pub use spec::Spec;

/// Parses and validates `source`. Returns the spec, or every error sorted
/// by position.
///
/// Statements that fail to parse are dropped and the rest is validated, so
/// errors of meaning are reported along with errors of syntax. The kinds of
/// error a dropped statement can cause by its absence alone (a name it would
/// have declared, a TCB slot or IRQ number it would have given) are left out
/// while there are syntax errors, so that one typo gives one message.
#[cfg(feature = "std")]
pub fn check(source: &str) -> Result<Spec, Vec<Diagnostic>> {
    use validate::ValidateError;

    let (tokens, lex_errors) = lexer::tokenize(source);
    let (ast, parse_errors) = parser::parse(&tokens);
    let syntax_errors = !lex_errors.is_empty() || !parse_errors.is_empty();
    let lex_error_lines: Vec<u32> = lex_errors.iter().map(|(pos, _)| pos.line).collect();
    // An early end of file closes every open block at once: say it once.
    let mut parse_errors = parse_errors;
    parse_errors.dedup_by_key(|(pos, _)| *pos);
    let mut diagnostics: Vec<Diagnostic> = lex_errors
        .into_iter()
        .map(|(pos, e)| Diagnostic {
            pos,
            error: e.into(),
        })
        .chain(parse_errors.into_iter().map(|(pos, e)| Diagnostic {
            pos,
            error: e.into(),
        }))
        .collect();
    match validate::validate(&ast) {
        Ok(spec) if diagnostics.is_empty() => return Ok(spec),
        Ok(_) => {}
        Err(errors) => diagnostics.extend(
            errors
                .into_iter()
                // A line with a bad character or number says so, once.
                .filter(|(pos, _)| !lex_error_lines.contains(&pos.line))
                .filter(|(_, e)| {
                    !syntax_errors
                        || !matches!(
                            e,
                            ValidateError::UnknownName(_)
                                | ValidateError::TcbMissingSlot { .. }
                                | ValidateError::IrqNotMapped(_)
                        )
                })
                .map(|(pos, e)| Diagnostic {
                    pos,
                    error: e.into(),
                }),
        ),
    }
    diagnostics.sort_by_key(|d| d.pos);
    // A cap entry that names an array checks its parameters once per
    // element: say each problem once.
    diagnostics.dedup();
    Err(diagnostics)
}
