//! The layout of a previrt system: the VMM server, its guests and devices,
//! as objects and caps (`docs/capdl.md`, "Generating a system").

use std::collections::BTreeMap;

use super::description::{Description, Guest};
use super::error::{At, DescriptionError, GenerateError, ImageProblem, Problem};
use super::*;
use crate::build::{
    cap, cspace_cap, small_frame, BuildError, Builder, Stack, Task, Thread, VSpace,
};
use crate::elf::{self, Elf};
use crate::model::{Cap, IoApicIrq, ObjectKind, Rights, Slot, Tcb};
use crate::objects::PAGE_BITS;
use crate::spec::{Fill, Spec};

const PAGE: u64 = 1 << PAGE_BITS;
/// At most 256 MiB of VMM image (segments' memory, in pages): the image is
/// one frame object per page.
const MAX_VMM_IMAGE_PAGES: u64 = 1 << 16;
/// At most 256 MiB of guest image file per guest, for the same reason (and
/// the size must fit the 32 bits [`StartInfo`] gives it).
const MAX_GUEST_IMAGE_BYTES: u64 = 1 << 28;
/// PIT: ports, IOAPIC pin and ISA IRQ (QEMU's pc routes ISA IRQ 0 to pin 2).
const PIT_PORTS: (u16, u16) = (0x40, 0x43);
const PIT_IOAPIC_PIN: u32 = 2;
const PIT_IRQ: u32 = 0;
/// COM1.
const SERIAL_PORTS: (u16, u16) = (0x3f8, 0x3ff);
/// QEMU's isa-debug-exit device (`-device isa-debug-exit,iobase=0xf4`).
const DEBUG_EXIT_PORT: u16 = 0xf4;

const RW: Rights = Rights(Rights::READ.0 | Rights::WRITE.0);
const ALL_EP_RIGHTS: Rights =
    Rights(Rights::READ.0 | Rights::WRITE.0 | Rights::GRANT.0 | Rights::GRANT_REPLY.0);
/// A guest may send (faults, wedge calls) and be replied to. seL4 delivers
/// a fault, and gives a caller a reply cap, only through an endpoint cap with
/// grant or grant-reply; previrt's loader hands out read, write and grant
/// only (docs/capdl-loader.md), so grant is what makes it work today, and
/// grant-reply is kept for a loader that passes it on. Grant lets the guest
/// send caps, but its CSpace holds no cap but this one.
const GUEST_EP_RIGHTS: Rights = Rights(Rights::WRITE.0 | Rights::GRANT.0 | Rights::GRANT_REPLY.0);

/// Generates the spec of the system `source` describes, with `images` by
/// name, and returns its canonical text. The spec was validated as it was
/// finished ([`crate::build::Builder::finish`]): what the text says is
/// exactly what was generated.
pub fn generate(source: &str, images: &BTreeMap<String, Vec<u8>>) -> Result<String, GenerateError> {
    generate_spec(source, images).map(|spec| crate::print::print(&spec))
}

/// Generates the spec of the system `source` describes, validated, without
/// printing it.
pub fn generate_spec(
    source: &str,
    images: &BTreeMap<String, Vec<u8>>,
) -> Result<Spec, GenerateError> {
    generate_system(source, images).map(|(spec, _)| spec)
}

/// Generates the spec and the files its frames are filled from that no
/// image gives (the VMMs' start pages): bundle both with the images.
pub fn generate_system(
    source: &str,
    images: &BTreeMap<String, Vec<u8>>,
) -> Result<(Spec, Vec<GeneratedFile>), GenerateError> {
    let desc = Description::parse(source)?;
    let image = |name: &str, at: &At| -> Result<&[u8], GenerateError> {
        images.get(name).map(Vec::as_slice).ok_or_else(|| {
            let known = if images.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = images.keys().map(String::as_str).collect();
                format!("; images given: {}", names.join(", "))
            };
            GenerateError::Description(DescriptionError {
                at: at.clone(),
                problem: Problem::UnknownImage {
                    name: name.to_string(),
                    known,
                },
            })
        })
    };
    let image_error = |name: &str| {
        let name = name.to_string();
        move |problem| GenerateError::Image { name, problem }
    };
    let vmm_bytes = image(&desc.vmm.image, &desc.vmm.image_at)?;
    let vmm_elf = elf::read(vmm_bytes)
        .map_err(ImageProblem::from)
        .and_then(|e| check_vmm_elf(&e).map(|()| e))
        .map_err(image_error(&desc.vmm.image))?;
    let wedge = match &desc.vmm.wedge {
        Some((name, at)) => {
            let bytes = image(name, at)?;
            check_wedge_image(bytes).map_err(image_error(name))?;
            Some((name.as_str(), bytes))
        }
        None => None,
    };
    let supervisor = match (&desc.vmm.supervisor, desc.guests.len()) {
        (_, 1) => None,
        (Some((name, at)), _) => {
            let elf = elf::read(image(name, at)?)
                .map_err(ImageProblem::from)
                .and_then(|e| check_vmm_elf(&e).map(|()| e))
                .map_err(image_error(name))?;
            Some((name.as_str(), elf))
        }
        (None, n) => {
            return Err(GenerateError::Description(DescriptionError {
                at: At::Key("vmm.supervisor".into()),
                problem: Problem::NoSupervisor(n),
            }))
        }
    };
    let mut guest_images = Vec::new();
    for guest in &desc.guests {
        let bytes = image(&guest.image, &guest.image_at)?;
        check_guest_image(guest, bytes).map_err(image_error(&guest.image))?;
        let initrd = match &guest.initrd {
            Some((name, at)) => {
                let initrd = image(name, at)?;
                check_initrd(bytes, initrd).map_err(image_error(name))?;
                Some((name.as_str(), initrd))
            }
            None => None,
        };
        guest_images.push(GuestFiles {
            kernel: bytes,
            initrd,
        });
    }
    let supervisor = supervisor.as_ref().map(|(name, elf)| (*name, elf));
    build(&desc, &vmm_elf, supervisor, wedge, &guest_images).map_err(GenerateError::Invalid)
}

/// The VMM's segments: inside the region reserved for them, not
/// overlapping, not too many pages, the entry point in one of them.
fn check_vmm_elf(elf: &Elf) -> Result<(), ImageProblem> {
    let mut segments = elf.segments.clone();
    segments.sort_by_key(|s| s.vaddr);
    let mut pages = 0u64;
    for s in &segments {
        let end = s.vaddr + s.memsz; // elf::read checked it does not wrap
        if end > VMM_IMAGE_LIMIT {
            return Err(ImageProblem::VmmSegmentOutside {
                index: s.index,
                start: s.vaddr,
                end,
                limit: VMM_IMAGE_LIMIT,
            });
        }
        pages += end.div_ceil(PAGE) - s.vaddr / PAGE;
    }
    for pair in segments.windows(2) {
        if pair[0].vaddr + pair[0].memsz > pair[1].vaddr {
            return Err(ImageProblem::SegmentOverlap(pair[0].index, pair[1].index));
        }
    }
    if pages > MAX_VMM_IMAGE_PAGES {
        return Err(ImageProblem::TooLarge {
            bytes: pages * PAGE,
            max: MAX_VMM_IMAGE_PAGES * PAGE,
        });
    }
    let entry_in_segment = segments
        .iter()
        .any(|s| (s.vaddr..s.vaddr + s.memsz).contains(&elf.entry));
    if !entry_in_segment {
        return Err(ImageProblem::EntryOutside(elf.entry));
    }
    Ok(())
}

/// A guest image: an ELF whose segments, loaded by physical address, fit in
/// the guest's RAM; small enough to carry.
fn check_guest_image(guest: &Guest, bytes: &[u8]) -> Result<(), ImageProblem> {
    let elf = elf::read(bytes)?;
    let ram = guest.ram_frames * PAGE;
    for s in &elf.segments {
        let end = s.paddr + s.memsz;
        if end > ram {
            return Err(ImageProblem::GuestSegmentOutsideRam {
                index: s.index,
                start: s.paddr,
                end,
                ram,
            });
        }
    }
    if bytes.len() as u64 > MAX_GUEST_IMAGE_BYTES {
        return Err(ImageProblem::TooLarge {
            bytes: bytes.len() as u64,
            max: MAX_GUEST_IMAGE_BYTES,
        });
    }
    Ok(())
}

/// A Linux guest's initrd: it follows the kernel in the image window, and
/// both together are small enough to carry (the start page holds its size
/// in 32 bits).
fn check_initrd(kernel: &[u8], initrd: &[u8]) -> Result<(), ImageProblem> {
    let total = initrd_offset(kernel.len() as u64) + initrd.len() as u64;
    if total > MAX_GUEST_IMAGE_BYTES {
        return Err(ImageProblem::TooLarge {
            bytes: total,
            max: MAX_GUEST_IMAGE_BYTES,
        });
    }
    Ok(())
}

/// What a guest's image window holds: its kernel and, for Linux, its
/// initrd (name and bytes) after it.
#[derive(Clone, Copy)]
struct GuestFiles<'a> {
    kernel: &'a [u8],
    initrd: Option<(&'a str, &'a [u8])>,
}

/// The wedge: an ELF (the VMM links it itself, at run time), small enough
/// to carry.
fn check_wedge_image(bytes: &[u8]) -> Result<(), ImageProblem> {
    elf::read(bytes)?;
    if bytes.len() as u64 > MAX_GUEST_IMAGE_BYTES {
        return Err(ImageProblem::TooLarge {
            bytes: bytes.len() as u64,
            max: MAX_GUEST_IMAGE_BYTES,
        });
    }
    Ok(())
}

/// The smallest radix whose CNode has `slots` slots.
fn radix_for(slots: u64) -> u8 {
    (u64::BITS - slots.saturating_sub(1).leading_zeros()).max(1) as u8
}

/// The start registers of a VMM serving `guests` (with their images),
/// with the `devices` bits it gets.
fn start_info(
    desc: &Description,
    guests: &[(u64, &Guest, GuestFiles)],
    cnode_bits: u8,
    devices: u8,
    wedge: Option<(&str, &[u8])>,
) -> StartInfo {
    let mut info = StartInfo {
        guest_count: guests.len() as u8,
        cnode_bits,
        devices,
        vtlb: desc.vmm.vtlb.code()
            | if desc.vmm.vtlb_check { VTLB_CHECK } else { 0 }
            | if desc.vmm.vtlb_record { VTLB_RECORD } else { 0 },
        // Checked to be at most 2^28 bytes.
        wedge_bytes: wedge.map_or(0, |(_, bytes)| bytes.len() as u32),
        ..StartInfo::default()
    };
    for (k, (_, guest, bytes)) in guests.iter().enumerate() {
        // Both were checked to fit: RAM frames < 2^20, image bytes <= 2^28.
        info.guests[k] = GuestInfo {
            ram_frames: guest.ram_frames as u32,
            image_bytes: bytes.kernel.len() as u32,
        };
    }
    info
}

/// The devices of the description as `StartInfo` bits (a system of one guest).
fn solo_devices(desc: &Description) -> u8 {
    [
        (desc.devices.serial, DEVICE_SERIAL),
        (desc.devices.pit, DEVICE_PIT),
        (desc.devices.debug_exit, DEVICE_DEBUG_EXIT),
        (desc.devices.guest_console, DEVICE_GUEST_CONSOLE),
    ]
    .iter()
    .filter(|(present, _)| *present)
    .fold(0, |bits, (_, bit)| bits | bit)
}

/// Frames `PREFIX@0xOFFSET` that hold the file `name` (`bytes`), byte for
/// byte, one per page, mapped read-only from `window` up.
fn file_window(
    b: &mut Builder,
    vspace: &mut VSpace,
    window: u64,
    prefix: &str,
    name: &str,
    bytes: &[u8],
) -> Result<(), BuildError> {
    let len = bytes.len() as u64;
    let mut offset = 0;
    while offset < len {
        let frame = b.object(&format!("{prefix}@{offset:#x}"), small_frame())?;
        b.fill(
            frame,
            Fill {
                dest_offset: 0,
                length: PAGE.min(len - offset),
                file: name.to_string(),
                file_offset: offset,
            },
        )?;
        vspace.map(window + offset, frame, Rights::READ)?;
        offset += PAGE;
    }
    Ok(())
}

/// A file the generated spec fills frames from that no `--image` gives:
/// the VMMs' start pages. Bundle them with the images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Its name, as the fills name it.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Builds VMM task `name` serving `guests` (system number, description,
/// image; numbered 0.. in its own layout), with its start page and the
/// wedge window; its devices are the caller's. Returns its objects; its
/// start page's file is pushed to `files`.
#[allow(clippy::too_many_arguments)]
fn vmm_task(
    b: &mut Builder,
    desc: &Description,
    vmm_elf: &Elf,
    name: &str,
    guests: &[(u64, &Guest, GuestFiles)],
    devices: u8,
    wedge: Option<(&str, &[u8])>,
    files: &mut Vec<GeneratedFile>,
) -> Result<crate::build::TaskObjects, BuildError> {
    // The CNode holds the fixed slots, every RAM frame, and as many free
    // slots again as the VMM may need caps at run time: one copy of each
    // RAM frame cap (to map it into its guest) and one slot per page-table
    // object its guests' untypeds can make.
    let ram: u64 = guests.iter().map(|(_, g, _)| g.ram_frames).sum();
    let tables: u64 = guests
        .iter()
        .map(|(_, g, _)| 1u64 << (g.pt_untyped_bits - PAGE_BITS))
        .sum();
    // The RAM frames' own slots come first, then the VMM's mappers: the
    // kernel view's half of the rest (a primary copy per frame, aliases,
    // tables), the user views' equal shares of the other half (a copy per
    // frame and tables each; vmm-server's main.rs splits them so).
    let cnode_bits = radix_for(GUEST_RAM_SLOTS_BASE + ram + 2 * USER_VIEWS as u64 * (ram + tables));
    let info = start_info(desc, guests, cnode_bits, devices, wedge);
    let init = info.to_registers();
    let mut vmm = b.task(&Task {
        name,
        image: &desc.vmm.image,
        elf: vmm_elf,
        image_region: 0..VMM_IMAGE_LIMIT,
        ipc_buffer: VMM_IPC_BUFFER_ADDR,
        // At most 1024 pages (description).
        stack: Some(Stack {
            bottom: VMM_STACK_BOTTOM,
            pages: desc.vmm.stack_pages as u32,
        }),
        cnode_bits,
        prio: desc.vmm.priority,
        // The VMM may give its guests any priority up to its own.
        max_prio: desc.vmm.priority,
        fault_ep: None,
        init: &init,
    })?;
    let (vmm_tcb, vmm_cnode, cnode_cap) = (vmm.tcb, vmm.cnode, vmm.cspace);
    let vmm_pml4 = vmm.vspace.pml4();
    let vmm_ep = b.object(&format!("{name}_ep"), ObjectKind::Endpoint)?;
    b.cap(vmm_cnode, Slot::Index(VMM_CNODE_SLOT), cnode_cap)?;
    b.cap(
        vmm_cnode,
        Slot::Index(VMM_PML4_SLOT),
        cap(vmm_pml4, Rights::NONE),
    )?;
    b.cap(
        vmm_cnode,
        Slot::Index(VMM_TCB_SLOT),
        cap(vmm_tcb, Rights::NONE),
    )?;
    b.cap(
        vmm_cnode,
        Slot::Index(VMM_ENDPOINT_SLOT),
        cap(vmm_ep, ALL_EP_RIGHTS),
    )?;

    // The start page: which guest of the system, how, its command line.
    // Each VMM serves one guest (several are possible in the layout, but
    // the page describes the first).
    let (index, first, first_files) = guests[0];
    let page = StartPage {
        index: index as u32,
        flags: if first.trap { START_TRAP } else { 0 } | if first.linux { START_LINUX } else { 0 },
        cmdline: first.cmdline.as_bytes(),
        // Checked with the images to fit below 2^28 bytes.
        initrd_bytes: first_files.initrd.map_or(0, |(_, b)| b.len() as u32),
    };
    let mut bytes = [0u8; START_PAGE_BYTES];
    let len = page.to_bytes(&mut bytes);
    let file = format!("{name}-start");
    let start = b.object(&format!("{name}_start"), small_frame())?;
    b.fill(
        start,
        Fill {
            dest_offset: 0,
            length: len as u64,
            file: file.clone(),
            file_offset: 0,
        },
    )?;
    vmm.vspace.map(START_PAGE_ADDR, start, Rights::READ)?;
    files.push(GeneratedFile {
        name: file,
        bytes: bytes[..len].to_vec(),
    });

    // The guests.
    let mut ram_slot = GUEST_RAM_SLOTS_BASE;
    for (n, (_, guest, image)) in guests.iter().enumerate() {
        let n = n as u64;
        let gname = &guest.name;
        let tcb = b.object(
            &format!("{gname}_tcb"),
            ObjectKind::Tcb(Tcb {
                prio: guest.priority,
                max_prio: guest.priority,
                fault_ep: Some(GUEST_ENDPOINT_SLOT),
                ..Tcb::default()
            }),
        )?;
        let cnode = b.object(
            &format!("{gname}_cnode"),
            ObjectKind::CNode {
                size_bits: GUEST_CNODE_BITS,
            },
        )?;
        let pml4 = b.object(&format!("{gname}_pml4"), ObjectKind::Pml4)?;
        let untyped = b.object(
            &format!("{gname}_untyped"),
            ObjectKind::Untyped {
                size_bits: guest.pt_untyped_bits,
                paddr: None,
            },
        )?;
        // At most 2^19 frames in all (checked with the description).
        let ram = b.array(
            &format!("{gname}_ram"),
            guest.ram_frames as u32,
            small_frame(),
        )?;
        let ram_window = guest_ram_window(n);
        for (k, frame) in ram.iter().enumerate() {
            let k = k as u64;
            b.cap(vmm_cnode, Slot::Index(ram_slot + k), cap(frame, RW))?;
            vmm.vspace.map(ram_window + k * PAGE, frame, RW)?;
        }
        ram_slot += u64::from(ram.len());
        file_window(
            b,
            &mut vmm.vspace,
            guest_image_window(n),
            &format!("{gname}_image"),
            &guest.image,
            image.kernel,
        )?;
        if let Some((name, bytes)) = image.initrd {
            file_window(
                b,
                &mut vmm.vspace,
                guest_image_window(n) + initrd_offset(image.kernel.len() as u64),
                &format!("{gname}_initrd"),
                name,
                bytes,
            )?;
        }
        b.cap(tcb, Slot::CSpace, cspace_cap(cnode, GUEST_CNODE_BITS))?;
        b.cap(tcb, Slot::VSpace, cap(pml4, Rights::NONE))?;
        // The guest's one capability: the VMM's endpoint, badged with its
        // number. Its user views' CSpace holds the same.
        let guest_ep = Cap {
            badge: guest_badge(n),
            ..cap(vmm_ep, GUEST_EP_RIGHTS)
        };
        b.cap(cnode, Slot::Index(GUEST_ENDPOINT_SLOT), guest_ep)?;
        b.cap(
            vmm_cnode,
            Slot::Index(guest_tcb_slot(n)),
            cap(tcb, Rights::NONE),
        )?;
        b.cap(
            vmm_cnode,
            Slot::Index(guest_pml4_slot(n)),
            cap(pml4, Rights::NONE),
        )?;
        b.cap(
            vmm_cnode,
            Slot::Index(guest_untyped_slot(n)),
            cap(untyped, Rights::NONE),
        )?;
        // The user views (docs/guest-processes.md): the VMM moves the guest
        // thread between its own CSpace and VSpace and these.
        b.cap(
            vmm_cnode,
            Slot::Index(guest_cnode_slot(n)),
            cspace_cap(cnode, GUEST_CNODE_BITS),
        )?;
        let user_cnode = b.object(
            &format!("{gname}_user_cnode"),
            ObjectKind::CNode {
                size_bits: USER_CNODE_BITS,
            },
        )?;
        b.cap(
            user_cnode,
            Slot::Index(USER_FAULT_ENDPOINT >> (64 - USER_CNODE_BITS)),
            guest_ep,
        )?;
        // No guard: the fault endpoint's address resolves by its top bit.
        b.cap(
            vmm_cnode,
            Slot::Index(guest_user_cnode_slot(n)),
            cap(user_cnode, Rights::NONE),
        )?;
        for view in 0..USER_VIEWS as u64 {
            let pml4 = b.object(&format!("{gname}_user_pml4_{view}"), ObjectKind::Pml4)?;
            b.cap(
                vmm_cnode,
                Slot::Index(guest_user_pml4_slot(n, view)),
                cap(pml4, Rights::NONE),
            )?;
        }
    }

    if let Some((file, bytes)) = wedge {
        file_window(
            b,
            &mut vmm.vspace,
            WEDGE_WINDOW,
            &format!("{name}_wedge"),
            file,
            bytes,
        )?;
    }
    Ok(vmm)
}

/// The VMM's interrupt thread, and the notification it wakes the main
/// thread with: same CSpace and VSpace as the main thread, its own IPC
/// buffer and stack, one priority level higher.
fn irq_thread(
    b: &mut Builder,
    desc: &Description,
    vmm_elf: &Elf,
    name: &str,
    vmm: &mut crate::build::TaskObjects,
    shared_ticks: bool,
) -> Result<(), BuildError> {
    let vmm_cnode = vmm.cnode;
    let irq_prio = desc.vmm.priority + 1; // at most 255 (description)
                                          // The third value: the supervisor signals the ticks (no IRQ to ack).
    let irq_init = [
        IRQ_THREAD_MARK,
        u64::from(irq_prio),
        u64::from(shared_ticks),
    ];
    let irq_thread = b.thread(
        vmm,
        &Thread {
            name: &format!("{name}_irq"),
            ip: vmm_elf.entry,
            ipc_buffer: VMM_IRQ_IPC_BUFFER_ADDR,
            stack: Some(Stack {
                bottom: VMM_IRQ_STACK_BOTTOM,
                pages: VMM_IRQ_STACK_PAGES as u32,
            }),
            prio: irq_prio,
            max_prio: irq_prio,
            fault_ep: None,
            init: &irq_init,
        },
    )?;
    b.cap(
        vmm_cnode,
        Slot::Index(VMM_IRQ_TCB_SLOT),
        cap(irq_thread.tcb, Rights::NONE),
    )?;
    let wake = b.object(&format!("{name}_wake"), ObjectKind::Notification)?;
    b.cap(
        vmm_cnode,
        Slot::Index(VMM_WAKE_NOTIFICATION_SLOT),
        cap(wake, RW),
    )?;
    b.cap(
        vmm_cnode,
        Slot::Index(VMM_WAKE_SIGNAL_SLOT),
        Cap {
            badge: TIMER_BADGE,
            ..cap(wake, Rights::WRITE)
        },
    )
}

/// The PIT for the task of CNode `cnode`: a notification its IRQ handler
/// signals with [`TIMER_BADGE`], the handler, the PIT's ports; their caps
/// go in `slots` (notification, IRQ handler, ports).
fn pit(
    b: &mut Builder,
    cnode: crate::build::ObjectId,
    [notification_slot, irq_slot, ports_slot]: [u64; 3],
) -> Result<(), BuildError> {
    let notification = b.object("timer_notification", ObjectKind::Notification)?;
    let irq = b.object(
        "pit_irq",
        // ISA IRQs are edge-triggered, active high.
        ObjectKind::IoApicIrq(IoApicIrq {
            ioapic: 0,
            pin: PIT_IOAPIC_PIN,
            level: 0,
            polarity: 0,
        }),
    )?;
    b.irq(PIT_IRQ, irq)?;
    b.cap(
        irq,
        Slot::Index(0),
        Cap {
            badge: TIMER_BADGE,
            ..cap(notification, Rights::WRITE)
        },
    )?;
    b.cap(cnode, Slot::Index(notification_slot), cap(notification, RW))?;
    b.cap(cnode, Slot::Index(irq_slot), cap(irq, Rights::NONE))?;
    let (first, last) = PIT_PORTS;
    let ports = b.object("pit_ports", ObjectKind::IoPorts { first, last })?;
    b.cap(cnode, Slot::Index(ports_slot), cap(ports, Rights::NONE))
}

/// Builds every object and cap. Errors are the generator's own mistakes:
/// the description and the images were checked before.
fn build(
    desc: &Description,
    vmm_elf: &Elf,
    supervisor: Option<(&str, &Elf)>,
    wedge: Option<(&str, &[u8])>,
    guest_images: &[GuestFiles],
) -> Result<(Spec, Vec<GeneratedFile>), BuildError> {
    let mut b = Builder::new();
    let mut files = Vec::new();
    let guests: Vec<(u64, &Guest, GuestFiles)> = desc
        .guests
        .iter()
        .zip(guest_images)
        .enumerate()
        .map(|(n, (g, files))| (n as u64, g, *files))
        .collect();
    match supervisor {
        Some(sup) if guests.len() > 1 => {
            build_several(&mut b, desc, vmm_elf, sup, wedge, &guests, &mut files)?
        }
        _ => build_one(&mut b, desc, vmm_elf, wedge, &guests, &mut files)?,
    }
    Ok((b.finish()?, files))
}

/// A system of one guest: one VMM, which owns the devices.
fn build_one(
    b: &mut Builder,
    desc: &Description,
    vmm_elf: &Elf,
    wedge: Option<(&str, &[u8])>,
    guests: &[(u64, &Guest, GuestFiles)],
    files: &mut Vec<GeneratedFile>,
) -> Result<(), BuildError> {
    let devices = solo_devices(desc);
    let mut vmm = vmm_task(b, desc, vmm_elf, "vmm", guests, devices, wedge, files)?;
    let vmm_cnode = vmm.cnode;
    let ports = |b: &mut Builder, name: &str, (first, last): (u16, u16), slot: u64| {
        let object = b.object(name, ObjectKind::IoPorts { first, last })?;
        b.cap(vmm_cnode, Slot::Index(slot), cap(object, Rights::NONE))
    };
    if desc.devices.pit {
        pit(
            b,
            vmm_cnode,
            [TIMER_NOTIFICATION_SLOT, PIT_IRQ_SLOT, PIT_PORTS_SLOT],
        )?;
        irq_thread(b, desc, vmm_elf, "vmm", &mut vmm, false)?;
    }
    if desc.devices.serial {
        ports(b, "serial_ports", SERIAL_PORTS, SERIAL_PORTS_SLOT)?;
    }
    if desc.devices.guest_console {
        ports(
            b,
            "guest_console_ports",
            GUEST_CONSOLE_PORTS,
            GUEST_CONSOLE_PORTS_SLOT,
        )?;
    }
    if desc.devices.debug_exit {
        ports(
            b,
            "debug_exit_port",
            (DEBUG_EXIT_PORT, DEBUG_EXIT_PORT),
            DEBUG_EXIT_PORT_SLOT,
        )?;
    }
    // The VMM's paging structures last: they depend on every page above.
    vmm.vspace.finish(b)
}

/// A system of several guests: a VMM per guest, holding only its guest's
/// objects, its own console ports and a notification the supervisor
/// signals at each timer tick; the supervisor owns what the machine has
/// one of (the PIT, COM1, the exit port) and ends the run when every VMM
/// has reported its guest's end (docs/vmm-server.md, "Several guests").
fn build_several(
    b: &mut Builder,
    desc: &Description,
    vmm_elf: &Elf,
    (supervisor_image, supervisor_elf): (&str, &Elf),
    wedge: Option<(&str, &[u8])>,
    guests: &[(u64, &Guest, GuestFiles)],
    files: &mut Vec<GeneratedFile>,
) -> Result<(), BuildError> {
    let count = guests.len() as u64;
    let init = [count, u64::from(solo_devices(desc))];
    let sup = b.task(&Task {
        name: "supervisor",
        image: supervisor_image,
        elf: supervisor_elf,
        image_region: 0..VMM_IMAGE_LIMIT,
        ipc_buffer: VMM_IPC_BUFFER_ADDR,
        stack: Some(Stack {
            bottom: VMM_STACK_BOTTOM,
            pages: 4,
        }),
        cnode_bits: SUPERVISOR_CNODE_BITS,
        // Above every VMM and guest: a tick is passed on at once, and its
        // lines are never split.
        prio: SUPERVISOR_PRIORITY,
        max_prio: SUPERVISOR_PRIORITY,
        fault_ep: None,
        init: &init,
    })?;
    let sup_cnode = sup.cnode;
    let sup_ep = b.object("supervisor_ep", ObjectKind::Endpoint)?;
    b.cap(
        sup_cnode,
        Slot::Index(SUPERVISOR_OWN_ENDPOINT_SLOT),
        cap(sup_ep, Rights::READ),
    )?;
    b.cap(
        sup_cnode,
        Slot::Index(SUPERVISOR_TCB_SLOT),
        cap(sup.tcb, Rights::NONE),
    )?;
    let sup_ports = |b: &mut Builder, name: &str, (first, last): (u16, u16), slot: u64| {
        let object = b.object(name, ObjectKind::IoPorts { first, last })?;
        b.cap(sup_cnode, Slot::Index(slot), cap(object, Rights::NONE))
    };
    if desc.devices.pit {
        pit(
            b,
            sup_cnode,
            [
                SUPERVISOR_TIMER_SLOT,
                SUPERVISOR_PIT_IRQ_SLOT,
                SUPERVISOR_PIT_PORTS_SLOT,
            ],
        )?;
    }
    if desc.devices.serial {
        sup_ports(b, "serial_ports", SERIAL_PORTS, SUPERVISOR_SERIAL_SLOT)?;
    }
    if desc.devices.debug_exit {
        sup_ports(
            b,
            "debug_exit_port",
            (DEBUG_EXIT_PORT, DEBUG_EXIT_PORT),
            SUPERVISOR_DEBUG_EXIT_SLOT,
        )?;
    }

    for &(n, guest, image) in guests {
        let name = format!("vmm_{}", guest.name);
        let mut devices = DEVICE_SUPERVISOR;
        if desc.devices.serial {
            devices |= DEVICE_SERIAL | DEVICE_DEBUGCON;
        }
        if desc.devices.guest_console {
            devices |= DEVICE_GUEST_CONSOLE | DEVICE_DEBUGCON;
        }
        if desc.devices.pit {
            devices |= DEVICE_SHARED_TICKS;
        }
        let mut vmm = vmm_task(
            b,
            desc,
            vmm_elf,
            &name,
            &[(n, guest, image)],
            devices,
            wedge,
            files,
        )?;
        let vmm_cnode = vmm.cnode;
        let port = |b: &mut Builder, what: &str, port: u16, slot: u64| {
            let object = b.object(
                &format!("{name}_{what}"),
                ObjectKind::IoPorts {
                    first: port,
                    last: port,
                },
            )?;
            b.cap(vmm_cnode, Slot::Index(slot), cap(object, Rights::NONE))
        };
        if desc.devices.serial {
            port(b, "log_port", vmm_log_port(n), SERIAL_PORTS_SLOT)?;
        }
        if desc.devices.guest_console {
            port(
                b,
                "console_port",
                guest_console_port(n),
                GUEST_CONSOLE_PORTS_SLOT,
            )?;
        }
        b.cap(
            vmm_cnode,
            Slot::Index(SUPERVISOR_ENDPOINT_SLOT),
            Cap {
                badge: guest_badge(n),
                ..cap(sup_ep, Rights::WRITE)
            },
        )?;
        if desc.devices.pit {
            let ticks = b.object(&format!("{name}_ticks"), ObjectKind::Notification)?;
            b.cap(
                vmm_cnode,
                Slot::Index(TIMER_NOTIFICATION_SLOT),
                cap(ticks, Rights::READ),
            )?;
            b.cap(
                sup_cnode,
                Slot::Index(supervisor_ticks_slot(n)),
                Cap {
                    badge: TIMER_BADGE,
                    ..cap(ticks, Rights::WRITE)
                },
            )?;
            irq_thread(b, desc, vmm_elf, &name, &mut vmm, true)?;
        }
        vmm.vspace.finish(b)?;
    }
    sup.vspace.finish(b)
}
