//! The generated system: `capdl generate` over a description, with the VMM
//! server and the padded guest image, bundled for the loader.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::images::{self, Image};
use crate::{paths, system, tasks};

/// The description every `cargo xtask capdl` starts from.
pub fn example_description() -> PathBuf {
    paths::root().join("capdl/examples/system.toml")
}

fn build_vmm_server(cmdline: Option<&str>, trap: bool) -> Result<Vec<u8>, String> {
    let mut env: Vec<(&str, &std::ffi::OsStr)> = cmdline
        .map(|c| ("PREVIRT_GUEST_CMDLINE", std::ffi::OsStr::new(c)))
        .into_iter()
        .collect();
    // Trap-and-emulate: the VMM runs the guest with no wedge
    // (docs/trap-and-emulate.md).
    if trap {
        env.push(("PREVIRT_TRAP", std::ffi::OsStr::new("1")));
    }
    let path = tasks::build_sel4_binary("vmm-server", &env)?;
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The images a description names: the VMM server and the padded guest.
pub fn images() -> Result<BTreeMap<String, Vec<u8>>, String> {
    images_with(Image::Padded, None)
}

/// The images with the given guest image (the plain one, to see it refused).
/// `cmdline`, if given, is the guest's command line (built into the VMM).
pub fn images_with(
    image: Image,
    cmdline: Option<&str>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    images_for(image, cmdline, false)
}

/// [`images_with`], with the VMM in trap-and-emulate mode if `trap`.
pub fn images_for(
    image: Image,
    cmdline: Option<&str>,
    trap: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let guest = images::build(image)?;
    let guest = std::fs::read(&guest).map_err(|e| format!("{}: {e}", guest.display()))?;
    let wedge = tasks::build_sel4_binary("wedge-sel4", &[])?;
    let wedge = std::fs::read(&wedge).map_err(|e| format!("{}: {e}", wedge.display()))?;
    Ok(BTreeMap::from([
        ("vmm-server".to_string(), build_vmm_server(cmdline, trap)?),
        ("guest".to_string(), guest),
        ("wedge-l4".to_string(), wedge),
    ]))
}

/// The spec of `description` (TOML).
pub fn spec(description: &str, images: &BTreeMap<String, Vec<u8>>) -> Result<capdl::Spec, String> {
    capdl::generate::generate_spec(description, images)
        .map_err(|e| format!("{}: {e}", example_description().display()))
}

/// The example description with its guest's RAM set to `ram_mib`.
pub fn description_with_ram(ram_mib: u32) -> Result<String, String> {
    let path = example_description();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("ram_mib") {
                found = true;
                format!("ram_mib = {ram_mib}")
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        return Err(format!("{}: no `ram_mib` line to change", path.display()));
    }
    Ok(out.join("\n"))
}

/// `description` (TOML) with its VMM's vTLB strategy and checking set
/// (docs/vtlb.md).
pub fn with_vtlb(description: &str, strategy: &str, check: bool) -> Result<String, String> {
    with_vtlb_recording(description, strategy, check, false)
}

/// As [`with_vtlb`], and whether the VMM records a page-table trace
/// (docs/vtlb.md, "Record and replay").
pub fn with_vtlb_recording(
    description: &str,
    strategy: &str,
    check: bool,
    record: bool,
) -> Result<String, String> {
    if capdl::generate::VtlbStrategy::from_name(strategy).is_none() {
        let names: Vec<&str> = capdl::generate::VtlbStrategy::ALL
            .iter()
            .map(|s| s.name())
            .collect();
        return Err(format!(
            "unknown vTLB strategy `{strategy}`: one of {}",
            names.join(", ")
        ));
    }
    let mut out = String::new();
    let mut found = false;
    for line in description.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if key == "vtlb" || key == "vtlb_check" || key == "vtlb_record" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[vmm]" {
            found = true;
            out.push_str(&format!("vtlb = \"{strategy}\"\nvtlb_check = {check}\n"));
            if record {
                out.push_str("vtlb_record = true\n");
            }
        }
    }
    if !found {
        return Err("the system description has no [vmm] table".into());
    }
    Ok(out)
}

/// Generates, checks and bundles the system; returns the bundle.
pub fn bundle(name: &str, description: &str) -> Result<PathBuf, String> {
    bundle_with(name, description, Image::Padded, None)
}

/// As [`bundle`], with the given guest image and command line.
pub fn bundle_with(
    name: &str,
    description: &str,
    image: Image,
    cmdline: Option<&str>,
) -> Result<PathBuf, String> {
    bundle_for(name, description, image, cmdline, false)
}

/// [`bundle_with`], with the VMM in trap-and-emulate mode if `trap`.
pub fn bundle_for(
    name: &str,
    description: &str,
    image: Image,
    cmdline: Option<&str>,
    trap: bool,
) -> Result<PathBuf, String> {
    let images = images_for(image, cmdline, trap)?;
    let spec = spec(description, &images)?;
    let files: Vec<(&str, &[u8])> = images
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    system::bundle(name, &spec, &files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vtlb_keys_go_into_the_vmm_table_once() {
        let text = "[vmm]\nimage = \"v\"\nvtlb = \"flush\"\n\n[[guest]]\nname = \"g\"\n";
        let out = with_vtlb(text, "prefetch", true).unwrap();
        assert_eq!(out.matches("vtlb =").count(), 1, "{out}");
        assert!(
            out.starts_with("[vmm]\nvtlb = \"prefetch\"\nvtlb_check = true\n"),
            "{out}"
        );
        assert!(with_vtlb(text, "lazy", false).unwrap_err().contains("keep"));
        assert!(with_vtlb("[[guest]]\n", "keep", false).is_err());
        // Recording: once, and gone again when not asked for.
        let recording = with_vtlb_recording(text, "keep", false, true).unwrap();
        assert_eq!(
            recording.matches("vtlb_record = true").count(),
            1,
            "{recording}"
        );
        let again = with_vtlb(&recording, "keep", false).unwrap();
        assert!(!again.contains("vtlb_record"), "{again}");
    }
}
