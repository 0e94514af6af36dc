//! The C preprocessor, configured the way the kernel build configures it:
//! previrt's `autoconf.h` plus libsel4's include folders for x86_64/pc99.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::source::KernelSource;

pub struct Preprocessor {
    includes: Vec<PathBuf>,
    scratch: PathBuf,
}

/// Headers that the libsel4 build generates; preprocessing the headers we read
/// only needs them to exist, since no declaration from them is used.
const GENERATED_HEADERS: &[&str] = &[
    "sel4/shared_types_gen.h",
    "sel4/types_gen.h",
    "sel4/invocation.h",
    "sel4/syscall.h",
    "sel4/sel4_arch/invocation.h",
    "sel4/sel4_arch/types_gen.h",
    "sel4/arch/invocation.h",
    "sel4/arch/types_gen.h",
];

impl Preprocessor {
    pub fn new(kernel: &KernelSource, config: &Path, out_dir: &Path) -> Result<Self, String> {
        let stubs = out_dir.join("generated-header-stubs");
        for header in GENERATED_HEADERS {
            let path = stubs.join(header);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            std::fs::write(&path, "").map_err(|e| format!("{}: {e}", path.display()))?;
        }
        // The kernel's own .bf files include the kernel's config.h, which
        // only pulls in the config.
        let config_h = stubs.join("config.h");
        std::fs::write(&config_h, "#include <autoconf.h>\n")
            .map_err(|e| format!("{}: {e}", config_h.display()))?;
        let l = kernel.libsel4();
        let config_dir = config.parent().ok_or("config file has no parent folder")?;
        Ok(Preprocessor {
            includes: vec![
                config_dir.to_path_buf(),
                l.join("include"),
                l.join("arch_include/x86"),
                l.join("sel4_arch_include/x86_64"),
                l.join("sel4_plat_include/pc99"),
                stubs,
                // Last, for the kernel's own .bf files and what they include.
                kernel.root.join("include"),
                kernel.root.join("include/arch/x86"),
                kernel.root.join("include/arch/x86/arch/64/mode"),
            ],
            scratch: out_dir.to_path_buf(),
        })
    }

    /// Preprocesses `text` (C, or a `.bf` file that uses C conditionals) and
    /// returns the output without line markers. `macros` also dumps the final
    /// `#define`s.
    pub fn run(&self, name: &str, text: &str, macros: bool) -> Result<String, String> {
        let input = self.scratch.join(name);
        std::fs::write(&input, text).map_err(|e| format!("{}: {e}", input.display()))?;
        let mut cmd = Command::new("gcc");
        cmd.args([
            "-E",
            "-P",
            "-nostdinc",
            "-undef",
            "-DHAVE_AUTOCONF",
            "-x",
            "c",
        ]);
        if macros {
            cmd.arg("-dM");
        }
        for dir in &self.includes {
            cmd.arg("-I").arg(dir);
        }
        cmd.arg(&input);
        let output = cmd
            .output()
            .map_err(|e| format!("running gcc (the C preprocessor) failed: {e}; install gcc"))?;
        if !output.status.success() {
            return Err(format!(
                "gcc -E {} failed:\n{}",
                input.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        String::from_utf8(output.stdout).map_err(|e| format!("gcc -E output is not UTF-8: {e}"))
    }
}
