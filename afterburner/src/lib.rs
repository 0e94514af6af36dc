//! The afterburner: makes a guest kernel pre-virtualized.
//!
//! - [`pass`] pads every sensitive instruction in GNU assembler source and
//!   records the site in the `.afterburn` section ([`format`]).
//! - [`cc`] is a compiler driver that runs the pass between the compiler
//!   and the assembler.
//! - [`audit`] proves, on the binary, that every sensitive instruction is
//!   inside a recorded site; [`sites`] reads the records back.
//! - [`corpus`] runs pass, assembler and audit over a real-world file (the
//!   xtask's entry point for the seL4 corpus).
//!
//! Design and limits: `docs/afterburner.md`; the section ABI:
//! `docs/afterburn-format.md`.

pub mod audit;
pub mod cc;
pub mod compile_cache;
pub mod corpus;
pub mod decode;
pub mod elf;
/// The `.afterburn` ABI, a crate of its own (the wedge and the VMM read it).
pub use afterburn_format as format;
pub mod io;
pub mod lexer;
pub mod pass;
pub mod sensitive;
pub mod sha256;
pub mod sites;
