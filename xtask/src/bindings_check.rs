//! Checks every number the Rust bindings generated against the value the
//! compiled kernel itself uses.
//!
//! The kernel build leaves `kernel_all.c_pp`: the whole kernel as one
//! preprocessed C file, with the enums its own generators wrote for our config
//! (invocation labels, syscalls, fault tags) and the libsel4 types it shares
//! with user level (object types, errors, fault layouts, boot info). A C file
//! that includes it and asserts, for every generated Rust constant, that the C
//! expression of the same name has the same value, is compiled by gcc; any
//! mismatch, or a Rust name the kernel does not know, fails the compile with
//! the name in the message.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use previrt_sel4_sys::{BootInfo, IpcBuffer, UntypedDesc, C_ENUMERATORS};

use crate::kernel::KernelBuild;
use crate::setup::Tools;
use crate::{paths, process};

/// Struct layouts the Rust side declares by hand, checked like the numbers.
fn layout_assertions() -> Vec<(String, usize)> {
    vec![
        ("sizeof(seL4_BootInfo)".into(), size_of::<BootInfo>()),
        (
            "__builtin_offsetof(seL4_BootInfo, untypedList)".into(),
            offset_of!(BootInfo, untyped_list),
        ),
        (
            "__builtin_offsetof(seL4_BootInfo, initThreadDomain)".into(),
            offset_of!(BootInfo, init_thread_domain),
        ),
        (
            "__builtin_offsetof(seL4_BootInfo, untyped)".into(),
            offset_of!(BootInfo, untyped),
        ),
        (
            "__builtin_offsetof(seL4_BootInfo, ipcBuffer)".into(),
            offset_of!(BootInfo, ipc_buffer),
        ),
        ("sizeof(seL4_UntypedDesc)".into(), size_of::<UntypedDesc>()),
        (
            "__builtin_offsetof(seL4_UntypedDesc, sizeBits)".into(),
            offset_of!(UntypedDesc, size_bits),
        ),
        ("sizeof(seL4_IPCBuffer)".into(), size_of::<IpcBuffer>()),
        (
            "__builtin_offsetof(seL4_IPCBuffer, caps_or_badges)".into(),
            offset_of!(IpcBuffer, caps_or_badges),
        ),
        (
            "__builtin_offsetof(seL4_IPCBuffer, receiveDepth)".into(),
            offset_of!(IpcBuffer, receive_depth),
        ),
    ]
}

fn assertion(expr: &str, value: impl std::fmt::Display) -> String {
    format!("_Static_assert((long long)({expr}) == {value}LL, \"{expr}: the Rust bindings say {value}\");\n")
}

/// Compiles `source` (syntax only); returns gcc's error lines.
fn compile(
    dir: &Path,
    name: &str,
    source: &str,
    include_dirs: &[PathBuf],
) -> Result<Vec<String>, String> {
    let file = dir.join(name);
    std::fs::write(&file, source).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut cmd = Command::new("gcc");
    cmd.args([
        "-fsyntax-only",
        "-w",
        "-std=gnu99",
        "-ffreestanding",
        "-nostdinc",
        "-m64",
        "-DHAVE_AUTOCONF",
    ]);
    for d in include_dirs {
        cmd.arg("-I").arg(d);
    }
    let output = cmd
        .arg(&file)
        .output()
        .map_err(|e| format!("running gcc: {e}"))?;
    Ok(String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains("error:"))
        .map(str::to_string)
        .collect())
}

/// The name in gcc's "'NAME' undeclared" error, if that is what it is.
fn undeclared(error: &str) -> Option<String> {
    let rest = error.split("error: ").nth(1)?;
    let name = rest.strip_suffix(" undeclared here (not in a function)")?;
    Some(
        name.trim_matches(|c| c == '\'' || c == '\u{2018}' || c == '\u{2019}')
            .to_string(),
    )
}

/// Returns how many values were checked.
pub fn check(kernel: &KernelBuild, tools: &Tools) -> Result<usize, String> {
    let dir = paths::kernel_build().join("bindings-check");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    // 1. Against the kernel's own translation unit.
    let mut c = format!("#include \"{}\"\n", kernel.preprocessed().display());
    for (name, value) in C_ENUMERATORS {
        c.push_str(&assertion(name, value));
    }
    let layouts = layout_assertions();
    for (expr, value) in &layouts {
        c.push_str(&assertion(expr, value));
    }
    let errors = compile(&dir, "against-kernel.c", &c, &[])?;
    let missing: Vec<String> = errors.iter().filter_map(|e| undeclared(e)).collect();
    let mut wrong: Vec<String> = errors
        .into_iter()
        .filter(|e| e.contains("static assertion failed"))
        .collect();

    // 2. Names only user level has (libsel4's VM attributes, the capability
    //    data tags) against libsel4's headers, with the headers libsel4
    //    generates from its .bf files made by the kernel's own bitfield_gen.py.
    if !missing.is_empty() {
        let generated = libsel4_generated_headers(kernel, tools, &dir)?;
        let mut c = String::from(
            "#include <autoconf.h>\n#include <sel4/simple_types.h>\n#include <sel4/macros.h>\n\
             #include <sel4/debug_assert.h>\n#include <sel4/types_gen.h>\n#include <sel4/arch/types.h>\n",
        );
        for name in &missing {
            let value = C_ENUMERATORS
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v);
            c.push_str(&assertion(name, value));
        }
        let l = kernel.source().join("libsel4");
        let includes = [
            paths::root().join("sel4/kernel/config"),
            generated,
            l.join("include"),
            l.join("arch_include/x86"),
            l.join("sel4_arch_include/x86_64"),
            l.join("sel4_plat_include/pc99"),
        ];
        wrong.extend(compile(&dir, "against-libsel4.c", &c, &includes)?);
    }
    if !wrong.is_empty() {
        return Err(format!(
            "{} generated values disagree with the C the kernel was built from:\n{}",
            wrong.len(),
            wrong.join("\n")
        ));
    }
    Ok(C_ENUMERATORS.len() + layouts.len())
}

/// `sel4/types_gen.h` as libsel4's build makes it: types_64.bf through the C
/// preprocessor (for the config) and the kernel's bitfield_gen.py.
fn libsel4_generated_headers(
    kernel: &KernelBuild,
    tools: &Tools,
    dir: &Path,
) -> Result<PathBuf, String> {
    let src = kernel.source();
    let out = dir.join("generated");
    std::fs::create_dir_all(out.join("sel4")).map_err(|e| format!("{}: {e}", out.display()))?;
    let pbf = dir.join("types_64.pbf");
    let pp = process::run(
        Command::new("gcc")
            .args(["-E", "-P", "-x", "c", "-include"])
            .arg(paths::root().join("sel4/kernel/config/autoconf.h"))
            .arg(src.join("libsel4/include/sel4/types_64.bf")),
        "preprocessing types_64.bf",
    )?;
    std::fs::write(&pbf, pp.stdout).map_err(|e| format!("{}: {e}", pbf.display()))?;
    process::run(
        Command::new(tools.python_shim.join("python"))
            .arg(src.join("tools/bitfield_gen.py"))
            .arg("--environment")
            .arg("libsel4")
            .arg(&pbf)
            .arg(out.join("sel4/types_gen.h"))
            .env("PYTHONPATH", src.join("tools")),
        "generating libsel4's types_gen.h",
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_name_of_an_undeclared_identifier() {
        let e = "check.c:152:28: error: \u{2018}seL4_X86_WriteBack\u{2019} undeclared here (not in a function)";
        assert_eq!(undeclared(e).as_deref(), Some("seL4_X86_WriteBack"));
        assert_eq!(
            undeclared("check.c:1:1: error: static assertion failed: \"x\""),
            None
        );
    }
}
