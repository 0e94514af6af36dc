//! One error of a spec, from whichever stage found it, with its position.

use core::fmt;

use crate::lexer::{LexError, Pos};
use crate::parser::ParseError;
use crate::validate::ValidateError;

/// What is wrong, by the stage that found it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A character-level error.
    #[error(transparent)]
    Lex(#[from] LexError),
    /// A structural error.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A meaning error.
    #[error(transparent)]
    Validate(#[from] ValidateError),
}

/// An error and where it is. Displays as `line:col: message`; prefix the
/// file name for `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where.
    pub pos: Pos,
    /// What.
    pub error: Error,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.error)
    }
}

impl std::error::Error for Diagnostic {}
