//! CapDL systems on seL4: building a spec's VSpaces from task ELF files,
//! bundling the spec with its images, building the loader around the bundle,
//! and booting it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kernel::KernelBuild;
use crate::{paths, qemu, tasks};

/// One task of a test system: its image, role and capabilities.
pub struct Task<'a> {
    pub name: &'a str,
    /// The bundle entry its frames are filled from.
    pub image: &'a str,
    pub elf: &'a [u8],
    pub prio: u8,
    pub init: &'a [u64],
    pub fault_ep: Option<u64>,
    /// `slot: cap` lines for its CNode (radix 4).
    pub caps: &'a [(u64, String)],
}

/// Where a task's IPC buffer goes: the last page its one page table maps.
const IPC_BUFFER: u64 = 0x5ff000;
const TABLE_BASE: u64 = 0x400000;

/// The CapDL objects and caps of `task`: TCB, CNode, a 4-level VSpace with
/// one page table for the image (at 0x400000..0x600000) and its IPC buffer.
pub fn task_spec(task: &Task) -> Result<(String, String), String> {
    let n = task.name;
    let elf = capdl::elf::read(task.elf).map_err(|e| format!("{}: {e}", task.image))?;
    let (entry, segments) = (elf.entry, elf.segments);
    let mut objects = String::new();
    let mut caps = String::new();
    let init: Vec<String> = task.init.iter().map(u64::to_string).collect();
    let fault = task
        .fault_ep
        .map(|f| format!(", fault_ep: {f}"))
        .unwrap_or_default();
    let _ = writeln!(
        objects,
        "  {n} = tcb (addr: {IPC_BUFFER:#x}, ip: {entry:#x}, sp: 0, prio: {p}, max_prio: {p}, elf: {img}, init: [{i}]{fault})",
        p = task.prio,
        img = task.image,
        i = init.join(", ")
    );
    for kind in ["cnode (4 bits)", "pml4", "pdpt", "pd", "pt"] {
        let suffix = kind.split(' ').next().unwrap_or(kind);
        let _ = writeln!(objects, "  {n}_{suffix} = {kind}");
    }
    let _ = writeln!(objects, "  {n}_ipc = frame (4k)");
    let _ = writeln!(caps, "  {n} {{ cspace: {n}_cnode (guard: 0, guard_size: 60); vspace: {n}_pml4; ipc_buffer_slot: {n}_ipc (RW) }}");
    let _ = writeln!(
        caps,
        "  {n}_pml4 {{ 0: {n}_pdpt }}\n  {n}_pdpt {{ 0: {n}_pd }}\n  {n}_pd {{ 2: {n}_pt }}"
    );
    let mut pt = format!("  {n}_pt {{\n    511: {n}_ipc (RW)\n");
    for s in &segments {
        let first = s.vaddr & !0xfff;
        let end = (s.vaddr + s.memsz).next_multiple_of(0x1000);
        if first < TABLE_BASE || end > IPC_BUFFER {
            return Err(format!(
                "{}: segment at {:#x} is outside 0x400000..{IPC_BUFFER:#x}",
                task.image, s.vaddr
            ));
        }
        for page in (first..end).step_by(0x1000) {
            let frame = format!("{n}_image_{:x}", page >> 12);
            // The part of this page the file provides.
            let from = page.max(s.vaddr);
            let to = (page + 0x1000).min(s.vaddr + s.filesz);
            let fill = if to > from {
                format!(
                    ", fill: [{{{} {} CDL_FrameFill_FileData \"{}\" {:#x}}}]",
                    from - page,
                    to - from,
                    task.image,
                    s.offset + (from - s.vaddr)
                )
            } else {
                String::new()
            };
            let _ = writeln!(objects, "  {frame} = frame (4k{fill})");
            let rights = if s.writable { "RW" } else { "R" };
            let _ = writeln!(pt, "    {}: {frame} ({rights})", (page - TABLE_BASE) >> 12);
        }
    }
    pt.push_str("  }\n");
    caps.push_str(&pt);
    let slots: Vec<String> = task
        .caps
        .iter()
        .map(|(slot, cap)| format!("{slot}: {cap}"))
        .collect();
    let _ = writeln!(caps, "  {n}_cnode {{ {} }}", slots.join("; "));
    Ok((objects, caps))
}

/// Checks `spec` (all errors, file:line:col), encodes it and bundles it with
/// `files`; returns the bundle's path.
pub fn bundle(name: &str, spec: &str, files: &[(&str, &[u8])]) -> Result<PathBuf, String> {
    let dir = paths::target().join("capdl").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let spec_path = dir.join("system.cdl");
    crate::write_atomically(&spec_path, spec.as_bytes())?;
    bundle_file(name, &spec_path, spec, files)
}

/// As [`bundle`], for a spec that lives in the file `spec_path`; also checks
/// that every file a frame fill names is among `files`.
pub fn bundle_file(
    name: &str,
    spec_path: &Path,
    spec: &str,
    files: &[(&str, &[u8])],
) -> Result<PathBuf, String> {
    let dir = paths::target().join("capdl").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let checked = capdl::check(spec).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|d| format!("{}:{d}", spec_path.display()))
            .collect();
        lines.join("\n")
    })?;
    let encoded =
        capdl::encode::encode(&checked).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    let reader = capdl::model::SpecReader::new(&encoded)
        .map_err(|e| format!("{}: {e}", spec_path.display()))?;
    for fill in reader.fills() {
        if !files.iter().any(|(n, _)| *n == fill.file) {
            return Err(format!(
                "{}: frame `{}` is filled from `{}`: give it with --image {}=PATH",
                spec_path.display(),
                reader.object(fill.frame).map_or("?", |o| o.name),
                fill.file,
                fill.file
            ));
        }
    }
    let mut entries: Vec<(&str, &[u8])> = vec![(capdl::bundle::SPEC, &encoded)];
    entries.extend_from_slice(files);
    let path = dir.join("bundle.bin");
    crate::write_atomically(&path, &capdl::bundle::write(&entries))?;
    Ok(path)
}

/// Builds the loader around `bundle` and returns its ELF.
pub fn build_loader(bundle: &Path) -> Result<PathBuf, String> {
    tasks::build_sel4_binary(
        "capdl-loader",
        &[("PREVIRT_CAPDL_BUNDLE", bundle.as_os_str())],
    )
}

/// Boots seL4 with the loader carrying `bundle`.
pub fn boot(
    kernel: &KernelBuild,
    bundle: &Path,
    memory_mib: u32,
    icount: Option<u32>,
    echo: qemu::Echo,
) -> Result<qemu::Run, String> {
    boot_for(
        kernel,
        bundle,
        memory_mib,
        icount,
        echo,
        Duration::from_secs(120),
    )
}

/// [`boot`] with a timeout of its own, for long runs.
pub fn boot_for(
    kernel: &KernelBuild,
    bundle: &Path,
    memory_mib: u32,
    icount: Option<u32>,
    echo: qemu::Echo,
    timeout: Duration,
) -> Result<qemu::Run, String> {
    let settings = Settings {
        memory_mib,
        icount,
        settle: None,
    };
    boot_with(kernel, bundle, settings, echo, timeout)
}

/// [`boot`] of a system expected to stop the machine: the run ends `grace`
/// after a COM1 line containing `marker` (the kernel's last words), with
/// [`qemu::Outcome::Settled`], so how long the machine stays silent is
/// measured from its halt, not from QEMU's start (any host speed).
pub fn boot_until_settled(
    kernel: &KernelBuild,
    bundle: &Path,
    marker: &str,
    grace: Duration,
) -> Result<qemu::Run, String> {
    let machine = Settings {
        memory_mib: 512,
        icount: None,
        settle: Some((marker, grace)),
    };
    boot_with(
        kernel,
        bundle,
        machine,
        qemu::Echo::Quiet,
        Duration::from_secs(120),
    )
}

/// What differs between the system boots.
struct Settings<'a> {
    memory_mib: u32,
    icount: Option<u32>,
    settle: Option<(&'a str, Duration)>,
}

fn boot_with(
    kernel: &KernelBuild,
    bundle: &Path,
    settings: Settings,
    echo: qemu::Echo,
    timeout: Duration,
) -> Result<qemu::Run, String> {
    let loader = build_loader(bundle)?;
    qemu::Machine {
        kernel: &kernel.multiboot_elf,
        module: Some(&loader),
        append: None,
        memory_mib: settings.memory_mib,
        accel: "tcg",
        icount: settings.icount,
        // A system's guest console (`guest_console`): the VMM writes it there.
        com2: true,
        settle: settings.settle,
    }
    .boot(timeout, echo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_elf() -> Vec<u8> {
        let mut elf = vec![0u8; 0x100];
        elf[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        elf[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        elf[0x18..0x20].copy_from_slice(&0x400010u64.to_le_bytes());
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let ph = 0x40;
        elf[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        elf[ph + 4..ph + 8].copy_from_slice(&6u32.to_le_bytes()); // RW
        elf[ph + 8..ph + 16].copy_from_slice(&0x80u64.to_le_bytes());
        elf[ph + 16..ph + 24].copy_from_slice(&0x400800u64.to_le_bytes());
        elf[ph + 32..ph + 40].copy_from_slice(&0x20u64.to_le_bytes());
        elf[ph + 40..ph + 48].copy_from_slice(&0x1000u64.to_le_bytes());
        elf
    }

    #[test]
    fn segments_become_filled_frames_that_validate() {
        let elf = tiny_elf();
        let read = capdl::elf::read(&elf).unwrap();
        assert_eq!(read.entry, 0x400010);
        assert_eq!(read.segments.len(), 1);
        let caps = [(1, "ep (RW)".to_string())];
        let task = Task {
            name: "t",
            image: "t.elf",
            elf: &elf,
            prio: 10,
            init: &[1],
            fault_ep: None,
            caps: &caps,
        };
        let (objects, cap_text) = task_spec(&task).unwrap();
        // 0x400800 + 0x1000 spans two pages; the file covers 0x20 bytes of the first.
        assert!(objects.contains(
            "t_image_400 = frame (4k, fill: [{2048 32 CDL_FrameFill_FileData \"t.elf\" 0x80}])"
        ));
        assert!(objects.contains("t_image_401 = frame (4k)"));
        let spec =
            format!("arch x86_64\nobjects {{\n  ep = ep\n{objects}}}\ncaps {{\n{cap_text}}}\n");
        capdl::check(&spec)
            .map_err(|e| format!("{e:?}\n{spec}"))
            .unwrap();
    }

    #[test]
    fn a_task_that_is_not_elf64_is_refused_with_its_name() {
        for bytes in [&b"\x7fELF\x01\x01rest"[..], &tiny_elf()[..0x50]] {
            let task = Task {
                name: "t",
                image: "t.elf",
                elf: bytes,
                prio: 10,
                init: &[],
                fault_ep: None,
                caps: &[],
            };
            assert!(task_spec(&task).unwrap_err().starts_with("t.elf: "));
        }
    }
}
