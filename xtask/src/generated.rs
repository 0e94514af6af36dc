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

/// Builds a seL4 task and reads its ELF.
pub fn task_image(package: &str) -> Result<Vec<u8>, String> {
    let path = tasks::build_sel4_binary(package, &[])?;
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The images a description names: the VMM server and the padded guest.
pub fn images() -> Result<BTreeMap<String, Vec<u8>>, String> {
    images_with(Image::Padded, None)
}

/// The images with the given guest image (the plain one, to see it refused).
/// `cmdline`, if given, is the guest's command line (set in the description by
/// [`bundle_for`], read by the VMM from its start page).
pub fn images_with(
    image: Image,
    cmdline: Option<&str>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    images_for(image, cmdline, false)
}

/// [`images_with`]; the command line and trap mode are the description's
/// now (the VMM reads them from its start page), so they change no image.
pub fn images_for(
    image: Image,
    _cmdline: Option<&str>,
    _trap: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let guest = images::build(image)?;
    let guest = std::fs::read(&guest).map_err(|e| format!("{}: {e}", guest.display()))?;
    Ok(BTreeMap::from([
        ("vmm-server".to_string(), task_image("vmm-server")?),
        ("supervisor".to_string(), task_image("supervisor")?),
        ("guest".to_string(), guest),
        ("wedge-l4".to_string(), task_image("wedge-sel4")?),
    ]))
}

/// The images of a system of several guests: every guest image by its
/// name (`guest` padded, `plain`, `hostile`), the VMM, the supervisor and
/// the wedge.
pub fn images_several() -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut all = images_for(Image::Padded, None, false)?;
    for (name, image) in [("plain", Image::Plain), ("hostile", Image::Hostile)] {
        let path = images::build(image)?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        all.insert(name.to_string(), bytes);
    }
    Ok(all)
}

/// One guest of a system of several.
#[derive(Clone, Debug)]
pub struct GuestSpec {
    pub name: String,
    /// `guest` (padded), `plain` or `hostile`.
    pub image: &'static str,
    pub cmdline: String,
    pub trap: bool,
    pub ram_mib: u32,
}

/// The description of a system of several guests, with the example's VMM
/// and devices.
pub fn several_description(guests: &[GuestSpec]) -> String {
    let mut text = String::from(
        "[vmm]\nimage = \"vmm-server\"\npriority = 200\nstack_pages = 4\nwedge = \"wedge-l4\"\nsupervisor = \"supervisor\"\n\n",
    );
    for g in guests {
        text.push_str(&format!(
            "[[guest]]\nname = \"{}\"\nimage = \"{}\"\nram_mib = {}\npriority = 200\npt_untyped_bits = 22\ncmdline = {}\ntrap = {}\n\n",
            g.name,
            g.image,
            g.ram_mib,
            toml_string(&g.cmdline),
            g.trap
        ));
    }
    text.push_str(
        "[devices]\nserial = true\npit = true\ndebug_exit = true\nguest_console = true\n",
    );
    text
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `description` with every guest's command line and trap mode set.
pub fn with_guest_options(description: &str, cmdline: Option<&str>, trap: bool) -> String {
    let mut out = String::new();
    for line in description.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if (key == "cmdline" && cmdline.is_some()) || key == "trap" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[[guest]]" {
            if let Some(c) = cmdline {
                out.push_str(&format!("cmdline = {}\n", toml_string(c)));
            }
            out.push_str(&format!("trap = {trap}\n"));
        }
    }
    out
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
    let description = with_guest_options(description, cmdline, trap);
    bundle_images(name, &description, &images)
}

/// Generates, checks and bundles `description` with `images` and the
/// files the generator makes (the VMMs' start pages).
pub fn bundle_images(
    name: &str,
    description: &str,
    images: &BTreeMap<String, Vec<u8>>,
) -> Result<PathBuf, String> {
    let (spec, generated) = capdl::generate::generate_system(description, images)
        .map_err(|e| format!("{}: {e}", example_description().display()))?;
    let mut files: Vec<(&str, &[u8])> = images
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    files.extend(
        generated
            .iter()
            .map(|f| (f.name.as_str(), f.bytes.as_slice())),
    );
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
