//! Invocation labels and syscall numbers from the interface XML.
//!
//! Labels are numbered as the kernel's `invocation_header_gen.py` numbers
//! them: the generic interface file first (from 0, "InvalidInvocation"), then
//! the x86_64 file, then the x86 file, each method in file order, methods
//! whose `condition` is false under our config left out. Syscalls are
//! numbered -1, -2, ... in file order, and the numbering counts disabled ones
//! too; only their presence depends on the config.

use std::fmt::Write as _;
use std::path::Path;

use crate::preprocess::Preprocessor;
use crate::source::KernelSource;

pub struct Label {
    pub name: String,
    pub value: u64,
}

pub struct Syscall {
    pub name: String,
    pub value: i64,
}

const LABEL_FILES: &[&str] = &[
    "include/interfaces/sel4.xml",
    "sel4_arch_include/x86_64/interfaces/sel4arch.xml",
    "arch_include/x86/interfaces/sel4arch.xml",
];

struct Conditional {
    name: String,
    condition: Option<String>,
}

pub fn invocation_labels(kernel: &KernelSource, cpp: &Preprocessor) -> Result<Vec<Label>, String> {
    let mut methods = vec![Conditional {
        name: "InvalidInvocation".into(),
        condition: None,
    }];
    for file in LABEL_FILES {
        let path = kernel.libsel4().join(file);
        let text = read(&path)?;
        let doc =
            roxmltree::Document::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for method in doc.descendants().filter(|n| n.has_tag_name("method")) {
            let id = method
                .attribute("id")
                .ok_or_else(|| format!("{}: a <method> without id", path.display()))?;
            methods.push(Conditional {
                name: id.to_string(),
                condition: method.attribute("condition").map(str::to_string),
            });
        }
    }
    let present = evaluate(cpp, "labels.c", &methods)?;
    Ok(present
        .into_iter()
        .enumerate()
        .map(|(i, name)| Label {
            name,
            value: i as u64,
        })
        .collect())
}

pub fn syscalls(kernel: &KernelSource, cpp: &Preprocessor) -> Result<Vec<Syscall>, String> {
    let path = kernel.libsel4().join("include/api/syscall.xml");
    let text = read(&path)?;
    let doc = roxmltree::Document::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut all = Vec::new();
    for syscall in doc.descendants().filter(|n| n.has_tag_name("syscall")) {
        let name = syscall
            .attribute("name")
            .ok_or_else(|| format!("{}: a <syscall> without name", path.display()))?;
        let condition = syscall
            .parent()
            .and_then(|config| config.attribute("condition"))
            .map(str::to_string);
        all.push(Conditional {
            name: name.to_string(),
            condition,
        });
    }
    let numbered: Vec<(String, i64)> = all
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), -(i as i64) - 1))
        .collect();
    let present = evaluate(cpp, "syscalls.c", &all)?;
    Ok(numbered
        .into_iter()
        .filter(|(name, _)| present.contains(name))
        .map(|(name, value)| Syscall {
            name: format!("Sys{name}"),
            value,
        })
        .collect())
}

/// Returns the names whose condition holds, in order, by letting the C
/// preprocessor evaluate every condition against the config.
fn evaluate(
    cpp: &Preprocessor,
    scratch: &str,
    items: &[Conditional],
) -> Result<Vec<String>, String> {
    let mut text = String::from("#include <autoconf.h>\n");
    for item in items {
        match &item.condition {
            Some(condition) => {
                let _ = writeln!(
                    text,
                    "#if {condition}\nPREVIRT_PRESENT {}\n#endif",
                    item.name
                );
            }
            None => {
                let _ = writeln!(text, "PREVIRT_PRESENT {}", item.name);
            }
        }
    }
    let output = cpp.run(scratch, &text, false)?;
    Ok(output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("PREVIRT_PRESENT "))
        .map(|name| name.trim().to_string())
        .collect())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}
