//! Checking a real-world assembly corpus end to end: the pass, the system
//! assembler, the audit. Used by `tests/corpus.rs` and callable from the
//! xtask (`afterburner::corpus::check_assembly_file`).
//!
//! A corpus is clean when every violation the audit reports is an
//! uncovered instruction that inline assembly wrote as `.byte` (which no
//! text pass can see), and there are no more of those than `.byte`
//! statements inside `#APP` blocks.

use crate::audit::{self, Report, Rule};
use crate::{elf, lexer, pass};
use std::path::Path;
use std::process::Command;
use thiserror::Error;

/// Why a corpus failed.
#[derive(Debug, Error)]
pub enum CorpusError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Pass {
        path: String,
        line: u32,
        message: String,
    },
    #[error("the assembler rejected the padded corpus: {0}")]
    Assembler(String),
    #[error("the assembled corpus is not readable ELF: {0}")]
    Elf(#[from] elf::ElfError),
    #[error(
        "the audit found {count} violation(s) not explained by .byte in inline assembly:\n{report}"
    )]
    Audit { count: usize, report: String },
    #[error("{0}: the corpus has no sensitive instruction at all; is it the right file?")]
    Empty(String),
}

/// What a clean corpus run found.
#[derive(Debug)]
pub struct CorpusSummary {
    pub input_bytes: usize,
    pub sites: usize,
    pub byte_statements_in_inline_asm: usize,
    pub report: Report,
}

/// Counts `.byte` statements between `#APP` and `#NO_APP`.
pub fn inline_asm_byte_statements(text: &[u8]) -> usize {
    let mut inside = false;
    let mut count = 0;
    for line in text.split(|b| *b == b'\n') {
        let t = lexer::trim(line);
        if t.starts_with(b"#APP") {
            inside = true;
        } else if t.starts_with(b"#NO_APP") {
            inside = false;
        } else if inside && t.len() >= 5 && t[..5].eq_ignore_ascii_case(b".byte") {
            count += 1;
        }
    }
    count
}

/// Runs the pass over `path`, assembles it with `as --64` and audits it.
pub fn check_assembly_file(path: &Path) -> Result<CorpusSummary, CorpusError> {
    let shown = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| CorpusError::Io {
        path: shown.clone(),
        source: e,
    })?;
    let out = pass::run(&text, &pass::Config::default()).map_err(|e| CorpusError::Pass {
        path: shown.clone(),
        line: e.line,
        message: e.message,
    })?;
    if out.sites.is_empty() {
        return Err(CorpusError::Empty(shown));
    }
    let dir = tempfile::tempdir().map_err(|e| CorpusError::Io {
        path: "temporary directory".into(),
        source: e,
    })?;
    let src = dir.path().join("corpus.afterburn.s");
    let obj = dir.path().join("corpus.o");
    std::fs::write(&src, &out.text).map_err(|e| CorpusError::Io {
        path: src.display().to_string(),
        source: e,
    })?;
    let asm = Command::new("as")
        .arg("--64")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .map_err(|e| CorpusError::Io {
            path: "as".into(),
            source: e,
        })?;
    if !asm.status.success() {
        let msg = String::from_utf8_lossy(&asm.stderr);
        return Err(CorpusError::Assembler(
            msg.lines().take(20).collect::<Vec<_>>().join("\n"),
        ));
    }
    let bytes = std::fs::read(&obj).map_err(|e| CorpusError::Io {
        path: obj.display().to_string(),
        source: e,
    })?;
    let image = elf::ElfImage::parse(&bytes)?;
    let report = audit::audit(&image);
    let hidden = inline_asm_byte_statements(&text);
    let unexplained = report
        .violations
        .iter()
        .filter(|v| v.rule != Rule::Uncovered)
        .count();
    let uncovered = report.violations.len() - unexplained;
    if unexplained > 0 || uncovered > hidden {
        return Err(CorpusError::Audit {
            count: report.violations.len(),
            report: report.to_text(),
        });
    }
    Ok(CorpusSummary {
        input_bytes: text.len(),
        sites: out.sites.len(),
        byte_statements_in_inline_asm: hidden,
        report,
    })
}
