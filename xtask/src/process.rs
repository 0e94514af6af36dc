//! Running commands with clear errors.

use std::process::{Command, Output};

/// Runs `cmd`, failing with its command line and the tail of its output.
pub fn run(cmd: &mut Command, what: &str) -> Result<Output, String> {
    let output = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{what} failed ({}): {:?}\n{}{}",
            output.status,
            cmd,
            tail(&String::from_utf8_lossy(&output.stdout), 30),
            tail(&String::from_utf8_lossy(&output.stderr), 30)
        ))
    }
}

/// Runs `cmd` with its output going to ours.
pub fn run_visible(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = all[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}
