//! The system description: TOML in, checked numbers out. Every value keeps
//! where it was written, so a problem found later (an image name no
//! `--image` gives) still points at its line.

use serde::Deserialize;
use toml::Spanned;

use previrt_protocol::VtlbStrategy;

use super::error::{At, DescriptionError, Problem};
use super::{MAX_CMDLINE, MAX_SYSTEM_GUESTS, MAX_VMM_STACK_PAGES};
use crate::objects::{MAX_PRIORITY, PAGE_BITS};

/// Default VMM stack: 16 KiB.
const DEFAULT_STACK_PAGES: i64 = 4;
/// All guests' RAM together: at most 2 GiB (2^19 frame objects, half of
/// what the validator accepts in one spec).
pub(crate) const MAX_TOTAL_RAM_FRAMES: u64 = 1 << 19;
/// At most 256 MiB of page-table untyped per guest: 65536 paging
/// structures map far more than the largest guest RAM, and the VMM's CNode
/// gets a free slot for each one it can make.
pub(crate) const MAX_PT_UNTYPED_BITS: u8 = 28;
/// A guest's command line when its table gives none: every self-test.
pub const DEFAULT_CMDLINE: &str = "tests=all";
/// Object names the system's own objects start with.
const RESERVED_NAMES: [&str; 7] = [
    "vmm",
    "supervisor",
    "pit",
    "serial",
    "debug_exit",
    "timer",
    "guest_console",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDescription {
    vmm: Option<Spanned<RawVmm>>,
    #[serde(default)]
    guest: Vec<Spanned<RawGuest>>,
    #[serde(default)]
    devices: RawDevices,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVmm {
    image: Spanned<String>,
    wedge: Option<Spanned<String>>,
    supervisor: Option<Spanned<String>>,
    priority: Spanned<i64>,
    stack_pages: Option<Spanned<i64>>,
    vtlb: Option<Spanned<String>>,
    vtlb_check: Option<bool>,
    vtlb_record: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuest {
    name: Spanned<String>,
    image: Spanned<String>,
    ram_mib: Option<Spanned<i64>>,
    ram_kib: Option<Spanned<i64>>,
    priority: Spanned<i64>,
    pt_untyped_bits: Spanned<i64>,
    cmdline: Option<Spanned<String>>,
    #[serde(default)]
    trap: bool,
    #[serde(default)]
    linux: bool,
    initrd: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevices {
    #[serde(default)]
    serial: bool,
    #[serde(default)]
    pit: bool,
    #[serde(default)]
    debug_exit: bool,
    #[serde(default)]
    guest_console: bool,
}

/// A checked system description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// The VMM server.
    pub vmm: Vmm,
    /// The guests, in order (guest n has badge n + 1).
    pub guests: Vec<Guest>,
    /// The devices the VMM drives.
    pub devices: Devices,
}

/// `[vmm]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vmm {
    /// The name of its ELF image.
    pub image: String,
    /// Where `image =` is written.
    pub image_at: At,
    /// The wedge's ELF image, if the VMM is to carry one, and where its
    /// name is written.
    pub wedge: Option<(String, At)>,
    /// The supervisor's ELF image (systems of several guests), and where
    /// its name is written.
    pub supervisor: Option<(String, At)>,
    /// Its priority (and maximum controlled priority).
    pub priority: u8,
    /// Its stack, in 4 KiB pages.
    pub stack_pages: u64,
    /// How its virtual TLB keeps mappings consistent (`vtlb`, default
    /// `keep`; docs/vtlb.md).
    pub vtlb: VtlbStrategy,
    /// Whether it checks the mapping invariant at every invalidation point
    /// (`vtlb_check`, default false).
    pub vtlb_check: bool,
    /// Whether it records a page-table trace for replay on the host
    /// (`vtlb_record`, default false; docs/vtlb.md).
    pub vtlb_record: bool,
}

/// One `[[guest]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    /// Its name: the prefix of its objects' names.
    pub name: String,
    /// The name of its kernel's ELF image.
    pub image: String,
    /// Where `image =` is written.
    pub image_at: At,
    /// Its RAM, in 4 KiB frames.
    pub ram_frames: u64,
    /// Its thread's priority.
    pub priority: u8,
    /// log2 of the untyped the VMM makes its page tables from.
    pub pt_untyped_bits: u8,
    /// Its kernel's command line (`cmdline`, default [`DEFAULT_CMDLINE`]).
    pub cmdline: String,
    /// Trap-and-emulate (`trap`, default false): the VMM runs it with no
    /// wedge (docs/trap-and-emulate.md).
    pub trap: bool,
    /// The image is Linux's `vmlinux`, entered through Linux's 64-bit
    /// boot protocol (`linux`, default false; docs/linux.md).
    pub linux: bool,
    /// The image of its initrd (`initrd`, only with `linux`), and where
    /// its name is written.
    pub initrd: Option<(String, At)>,
}

/// `[devices]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Devices {
    /// COM1's I/O ports.
    pub serial: bool,
    /// The PIT's I/O ports, its IRQ and a notification.
    pub pit: bool,
    /// The isa-debug-exit port.
    pub debug_exit: bool,
    /// COM2's I/O ports, where the VMM writes the guest's console.
    pub guest_console: bool,
}

fn at<T>(source: &str, value: &Spanned<T>) -> At {
    At::of_offset(source, value.span().start)
}

fn error(at: At, problem: Problem) -> DescriptionError {
    DescriptionError { at, problem }
}

/// A number of the description, checked against its range.
fn ranged(
    source: &str,
    value: &Spanned<i64>,
    key: &'static str,
    min: i64,
    max: i64,
) -> Result<u64, DescriptionError> {
    let v = *value.get_ref();
    if v < min || v > max {
        return Err(error(
            at(source, value),
            Problem::OutOfRange {
                key,
                value: v,
                min,
                max,
            },
        ));
    }
    // min >= 0 for every key, so v is not negative.
    Ok(v.unsigned_abs())
}

/// A guest name prefixes object names, so it must be a plain identifier.
fn is_guest_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An image name is printed as `elf: NAME` and as a fill's file name, so it
/// must lex as one CapDL identifier.
pub(crate) fn is_image_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.contains("--")
        && !name.contains("..")
}

fn image_name(source: &str, value: &Spanned<String>) -> Result<String, DescriptionError> {
    let name = value.get_ref();
    if is_image_name(name) {
        Ok(name.clone())
    } else {
        Err(error(
            at(source, value),
            Problem::BadImageName(name.clone()),
        ))
    }
}

impl Description {
    /// Parses and checks a description. The first problem is returned.
    pub fn parse(source: &str) -> Result<Description, DescriptionError> {
        let raw: RawDescription = toml::from_str(source).map_err(|e| {
            let at = match e.span() {
                Some(span) => At::of_offset(source, span.start),
                None => At::Key("(document)".into()),
            };
            error(at, Problem::Toml(e.message().trim_end().to_string()))
        })?;
        let Some(raw_vmm) = raw.vmm else {
            return Err(error(At::Key("vmm".into()), Problem::MissingVmm));
        };
        let raw_vmm = raw_vmm.into_inner();
        let vmm = Vmm {
            image: image_name(source, &raw_vmm.image)?,
            image_at: at(source, &raw_vmm.image),
            wedge: match &raw_vmm.wedge {
                Some(wedge) => Some((image_name(source, wedge)?, at(source, wedge))),
                None => None,
            },
            supervisor: match &raw_vmm.supervisor {
                Some(sup) => Some((image_name(source, sup)?, at(source, sup))),
                None => None,
            },
            // The VMM's interrupt thread runs one level above it.
            priority: ranged(
                source,
                &raw_vmm.priority,
                "priority",
                0,
                MAX_PRIORITY as i64 - 1,
            )? as u8,
            stack_pages: match &raw_vmm.stack_pages {
                Some(pages) => ranged(source, pages, "stack_pages", 1, MAX_VMM_STACK_PAGES as i64)?,
                None => DEFAULT_STACK_PAGES as u64,
            },
            vtlb: match &raw_vmm.vtlb {
                Some(name) => VtlbStrategy::from_name(name.get_ref()).ok_or_else(|| {
                    error(
                        at(source, name),
                        Problem::UnknownVtlbStrategy(name.get_ref().clone()),
                    )
                })?,
                None => VtlbStrategy::default(),
            },
            vtlb_check: raw_vmm.vtlb_check.unwrap_or(false),
            vtlb_record: raw_vmm.vtlb_record.unwrap_or(false),
        };
        if raw.guest.is_empty() {
            return Err(error(At::Key("guest".into()), Problem::NoGuest));
        }
        if raw.guest.len() > MAX_SYSTEM_GUESTS {
            let extra = &raw.guest[MAX_SYSTEM_GUESTS];
            return Err(error(
                at(source, extra),
                Problem::TooManyGuests(raw.guest.len()),
            ));
        }
        let mut guests: Vec<Guest> = Vec::new();
        let mut total_frames = 0u64;
        for raw_guest in &raw.guest {
            let table_at = at(source, raw_guest);
            let g = raw_guest.get_ref();
            let name = g.name.get_ref().clone();
            if !is_guest_name(&name) {
                return Err(error(at(source, &g.name), Problem::BadGuestName(name)));
            }
            if RESERVED_NAMES.contains(&name.as_str()) {
                return Err(error(at(source, &g.name), Problem::ReservedGuestName(name)));
            }
            if guests.iter().any(|other| other.name == name) {
                return Err(error(at(source, &g.name), Problem::DuplicateGuest(name)));
            }
            let max_frames = MAX_TOTAL_RAM_FRAMES as i64;
            let ram_frames = match (&g.ram_mib, &g.ram_kib) {
                (Some(mib), None) => ranged(source, mib, "ram_mib", 1, max_frames / 256)? * 256,
                (None, Some(kib)) => {
                    let k = ranged(source, kib, "ram_kib", 4, max_frames * 4)?;
                    if k % 4 != 0 {
                        return Err(error(
                            at(source, kib),
                            Problem::RamNotPageMultiple(*kib.get_ref()),
                        ));
                    }
                    k / 4
                }
                _ => return Err(error(table_at, Problem::RamSize)),
            };
            total_frames += ram_frames;
            if total_frames > MAX_TOTAL_RAM_FRAMES {
                let ram_at = g
                    .ram_mib
                    .as_ref()
                    .or(g.ram_kib.as_ref())
                    .map_or(table_at, |v| at(source, v));
                return Err(error(
                    ram_at,
                    Problem::RamTooLarge {
                        mib: total_frames / 256,
                        max_mib: MAX_TOTAL_RAM_FRAMES / 256,
                    },
                ));
            }
            guests.push(Guest {
                name,
                image: image_name(source, &g.image)?,
                image_at: at(source, &g.image),
                ram_frames,
                priority: ranged(source, &g.priority, "priority", 0, MAX_PRIORITY as i64)? as u8,
                pt_untyped_bits: ranged(
                    source,
                    &g.pt_untyped_bits,
                    "pt_untyped_bits",
                    i64::from(PAGE_BITS),
                    i64::from(MAX_PT_UNTYPED_BITS),
                )? as u8,
                cmdline: match &g.cmdline {
                    Some(line) if line.get_ref().len() > MAX_CMDLINE => {
                        return Err(error(
                            at(source, line),
                            Problem::CmdlineTooLong(line.get_ref().len()),
                        ))
                    }
                    Some(line) => line.get_ref().clone(),
                    None => DEFAULT_CMDLINE.to_string(),
                },
                trap: g.trap,
                linux: g.linux,
                initrd: match &g.initrd {
                    Some(name) if !g.linux => {
                        return Err(error(at(source, name), Problem::InitrdWithoutLinux))
                    }
                    Some(name) => Some((image_name(source, name)?, at(source, name))),
                    None => None,
                },
            });
        }
        Ok(Description {
            vmm,
            guests,
            devices: Devices {
                serial: raw.devices.serial,
                pit: raw.devices.pit,
                debug_exit: raw.devices.debug_exit,
                guest_console: raw.devices.guest_console,
            },
        })
    }
}
