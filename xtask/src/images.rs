//! Builds the guest kernel from `images/guest/`: the *padded* image through
//! `afterburn cc` (pre-virtualized) and the *plain* image with gcc alone, from
//! the same sources and flags; and the hostile test guest (`images/hostile/`,
//! padded), which shares the guest's boot code, console, traps and paging.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::{paths, process};

/// Which image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    Padded,
    Plain,
    /// The hostile test guest (padded: the VMM runs only pre-virtualized
    /// images).
    Hostile,
}

impl Image {
    pub fn name(self) -> &'static str {
        match self {
            Image::Padded => "padded",
            Image::Plain => "plain",
            Image::Hostile => "hostile",
        }
    }
}

/// The files of `images/guest/src` the hostile guest is built with: the
/// boot entries, the console, the GDT, traps and page tables.
const HOSTILE_SHARED: &[&str] = &[
    "boot.S",
    "console.c",
    "desc.c",
    "paging.c",
    "trap.c",
    "traps.S",
];

/// Freestanding x86-64 kernel code: no red zone (interrupts use the stack),
/// no SSE (its state is not saved), no PIC (linked at a fixed address).
const CFLAGS: &[&str] = &[
    "-std=gnu11",
    "-O2",
    "-g",
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-mno-red-zone",
    "-mgeneral-regs-only",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-builtin",
    "-Wall",
    "-Wextra",
    "-Werror",
];

/// The guest's user programs (`images/guest/src/user/`): mapped at another
/// address in every process than where the kernel image has them, so
/// position-independent, with no jump tables (their tables would be data)
/// and no calls to `memset`/`memcpy` the compiler might make up (the
/// kernel's are not mapped in a process).
const USER_CFLAGS: &[&str] = &[
    "-fpie",
    "-fno-jump-tables",
    "-fno-tree-loop-distribute-patterns",
    "-fvisibility=hidden",
];

const LDFLAGS: &[&str] = &[
    "-nostdlib",
    "-static",
    "-no-pie",
    "-Wl,-z,max-page-size=0x1000",
    "-Wl,-z,noexecstack",
    "-Wl,--no-warn-rwx-segments",
    "-Wl,--build-id=none",
];

fn sources(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "c" || x == "S") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The compiler for an image: gcc, or `afterburn cc` in front of it.
fn compiler(image: Image) -> Result<(PathBuf, Vec<&'static str>), String> {
    match image {
        Image::Plain => Ok((PathBuf::from("gcc"), Vec::new())),
        Image::Padded | Image::Hostile => Ok((crate::tasks::build_afterburn()?, vec!["cc"])),
    }
}

/// Builds `image` and returns the ELF's path.
pub fn build(image: Image) -> Result<PathBuf, String> {
    // One xtask run builds each image once, however many steps ask for it
    // (the sources cannot change under a run).
    static BUILT: Mutex<[Option<PathBuf>; 3]> = Mutex::new([None, None, None]);
    let index = image as usize;
    if let Some(elf) = BUILT.lock().ok().and_then(|built| built[index].clone()) {
        return Ok(elf);
    }
    let elf = build_now(image)?;
    if let Ok(mut built) = BUILT.lock() {
        built[index] = Some(elf.clone());
    }
    Ok(elf)
}

fn build_now(image: Image) -> Result<PathBuf, String> {
    let images = paths::root().join("images");
    let guest = images.join("guest");
    let out = paths::target().join("images").join(image.name());
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (program, prefix) = compiler(image)?;
    let files = match image {
        Image::Padded | Image::Plain => sources(&guest.join("src"))?,
        Image::Hostile => {
            let mut files = sources(&images.join("hostile/src"))?;
            files.extend(HOSTILE_SHARED.iter().map(|f| guest.join("src").join(f)));
            files
        }
    };
    let mut objects = Vec::new();
    for src in files {
        let rel = src.strip_prefix(&images).unwrap_or(&src);
        let object = out.join(rel.to_string_lossy().replace('/', "_") + ".o");
        let mut cmd = Command::new(&program);
        let user = rel.starts_with("guest/src/user");
        cmd.args(&prefix)
            .args(CFLAGS)
            .args(if user { USER_CFLAGS } else { &[] })
            .arg("-I")
            .arg(guest.join("include"))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&object);
        process::run(
            &mut cmd,
            &format!("compiling {} ({} image)", rel.display(), image.name()),
        )?;
        objects.push(object);
    }
    let elf = out.join("guest.elf");
    let mut link = Command::new("gcc");
    link.args(LDFLAGS)
        .arg(format!("-Wl,-T,{}", guest.join("link.ld").display()))
        .arg("-o")
        .arg(&elf);
    link.args(&objects);
    process::run(&mut link, &format!("linking the {} image", image.name()))?;
    Ok(elf)
}
