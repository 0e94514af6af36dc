//! `capdl generate`: the spec of a whole system from a TOML description and
//! ELF images. The ELF files are written byte by byte here, so each test
//! knows exactly which bytes each segment holds.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use capdl::elf::ElfError;
use capdl::generate::{
    generate, generate_spec, generate_system, guest_badge, guest_cnode_slot, guest_console_port,
    guest_image_window, guest_pml4_slot, guest_ram_window, guest_tcb_slot, guest_untyped_slot,
    guest_user_cnode_slot, guest_user_pml4_slot, initrd_offset, supervisor_ticks_slot, At,
    GenerateError, ImageProblem, Problem, StartInfo, StartPage, DEBUG_EXIT_PORT_SLOT,
    DEVICE_DEBUGCON, DEVICE_GUEST_CONSOLE, DEVICE_SERIAL, DEVICE_SHARED_TICKS, DEVICE_SUPERVISOR,
    GUEST_CONSOLE_PORTS_SLOT, GUEST_ENDPOINT_SLOT, GUEST_RAM_SLOTS_BASE, IRQ_THREAD_MARK,
    PIT_IRQ_SLOT, PIT_PORTS_SLOT, SERIAL_PORTS_SLOT, START_LINUX, START_PAGE_ADDR,
    SUPERVISOR_DEBUG_EXIT_SLOT, SUPERVISOR_ENDPOINT_SLOT, SUPERVISOR_PIT_IRQ_SLOT, TIMER_BADGE,
    TIMER_NOTIFICATION_SLOT, USER_FAULT_ENDPOINT, USER_VIEWS, VMM_CNODE_SLOT, VMM_ENDPOINT_SLOT,
    VMM_IPC_BUFFER_ADDR, VMM_IRQ_TCB_SLOT, VMM_PML4_SLOT, VMM_STACK_BOTTOM, VMM_TCB_SLOT,
    VMM_WAKE_NOTIFICATION_SLOT, VMM_WAKE_SIGNAL_SLOT, WEDGE_WINDOW,
};
use capdl::model::{Cap, ObjectKind, Rights, Slot};
use capdl::Spec;

const PAGE: u64 = 4096;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// One segment of a hand-made ELF file.
struct Seg {
    vaddr: u64,
    paddr: u64,
    flags: u32,
    data: Vec<u8>,
    memsz: u64,
}

/// Bytes that say where they are, so a fill from the wrong offset shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// An x86_64 ELF64 executable: the header, the program headers, then each
/// segment's bytes at an offset congruent to its address modulo a page, as
/// a linker lays them out. Returns the bytes and each segment's offset.
fn elf(entry: u64, segs: &[Seg]) -> (Vec<u8>, Vec<u64>) {
    let phoff = 64u64;
    let mut offsets = Vec::new();
    let mut end = phoff + 56 * segs.len() as u64;
    for s in segs {
        let mut off = end.next_multiple_of(PAGE) + s.vaddr % PAGE;
        if off < end {
            off += PAGE;
        }
        offsets.push(off);
        end = off + s.data.len() as u64;
    }
    let mut out = vec![0u8; end as usize];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // ELFDATA2LSB
    out[6] = 1; // EV_CURRENT
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[24..32].copy_from_slice(&entry.to_le_bytes());
    out[32..40].copy_from_slice(&phoff.to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    out[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
    for (k, (s, &off)) in segs.iter().zip(&offsets).enumerate() {
        let ph = &mut out[(phoff as usize + 56 * k)..][..56];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[4..8].copy_from_slice(&s.flags.to_le_bytes());
        ph[8..16].copy_from_slice(&off.to_le_bytes());
        ph[16..24].copy_from_slice(&s.vaddr.to_le_bytes());
        ph[24..32].copy_from_slice(&s.paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&(s.data.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&s.memsz.to_le_bytes());
        ph[48..56].copy_from_slice(&PAGE.to_le_bytes());
        out[off as usize..][..s.data.len()].copy_from_slice(&s.data);
    }
    (out, offsets)
}

/// The VMM: code at 0x400000 (two pages and a bit), data at 0x403100 that
/// shares no page with the code, and bss past its file bytes.
fn vmm_segments() -> Vec<Seg> {
    vec![
        Seg {
            vaddr: 0x40_0000,
            paddr: 0x40_0000,
            flags: PF_R | PF_X,
            data: pattern(0x2345, 1),
            memsz: 0x2345,
        },
        Seg {
            vaddr: 0x40_3100,
            paddr: 0x40_3100,
            flags: PF_R | PF_W,
            data: pattern(0x1800, 2),
            memsz: 0x3000,
        },
    ]
}

fn vmm_elf() -> Vec<u8> {
    elf(0x40_0010, &vmm_segments()).0
}

/// A guest kernel loaded at 1 MiB physical (its virtual address is high,
/// as a kernel's is; the VMM loads it by physical address).
fn guest_elf() -> Vec<u8> {
    elf(
        0x10_0000,
        &[Seg {
            vaddr: 0xffff_ffff_8010_0000,
            paddr: 0x10_0000,
            flags: PF_R | PF_W | PF_X,
            data: pattern(0x2500, 3),
            memsz: 0x4000,
        }],
    )
    .0
}

const SYSTEM: &str = r#"
[vmm]
image = "vmm-server"
priority = 200
stack_pages = 4

[[guest]]
name = "guest0"
image = "guest"
ram_mib = 64
priority = 100
pt_untyped_bits = 22

[devices]
serial = true
pit = true
debug_exit = true
guest_console = true
"#;

/// [`SYSTEM`] with 4 MiB of guest RAM, for tests that do not count frames:
/// a quarter of the objects to build and validate.
fn small_system() -> String {
    SYSTEM.replace("ram_mib = 64", "ram_mib = 4")
}

fn images() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("vmm-server".to_string(), vmm_elf()),
        ("guest".to_string(), guest_elf()),
    ])
}

fn find(spec: &Spec, name: &str) -> u32 {
    spec.objects
        .iter()
        .position(|o| o.display_name() == name)
        .unwrap_or_else(|| panic!("no object `{name}`")) as u32
}

fn slot(spec: &Spec, holder: u32, slot: u64) -> Option<Cap> {
    spec.objects[holder as usize]
        .slots
        .get(&Slot::Index(slot))
        .copied()
}

fn name_of(spec: &Spec, index: u32) -> String {
    spec.objects[index as usize].display_name()
}

/// The frame mapped at `vaddr` in the VSpace rooted at `pml4`, and its
/// rights.
fn mapped(spec: &Spec, pml4: u32, vaddr: u64) -> Option<(u32, Rights)> {
    let mut table = pml4;
    for shift in [39, 30, 21, 12] {
        let cap = slot(spec, table, (vaddr >> shift) & 511)?;
        if shift == 12 {
            return Some((cap.target, cap.rights));
        }
        table = cap.target;
    }
    None
}

fn start_info(spec: &Spec) -> StartInfo {
    let ObjectKind::Tcb(tcb) = &spec.objects[find(spec, "vmm_tcb") as usize].kind else {
        panic!("vmm_tcb is not a TCB");
    };
    let regs: [u64; 6] = tcb.init.as_slice().try_into().expect("six init values");
    StartInfo::from_registers(regs)
}

fn generated() -> (String, Spec) {
    let text = generate(SYSTEM, &images()).expect("generates");
    let spec = capdl::check(&text).expect("validates");
    (text, spec)
}

#[test]
fn the_spec_validates_and_has_the_expected_objects() {
    let (text, spec) = generated();
    assert_eq!(spec, generate_spec(SYSTEM, &images()).unwrap());
    let count = |name: &str| spec.objects.iter().filter(|o| o.name == name).count();
    assert_eq!(count("guest0_ram"), 16384);
    assert!(text.contains("guest0_ram[16384] = frame (4k)"), "{text}");
    assert_eq!(count("vmm_stack"), 4);
    // Code: pages 0x400000..0x403000; data + bss: 0x403000..0x407000.
    let vmm_image = spec
        .objects
        .iter()
        .filter(|o| o.name.starts_with("vmm_image@"))
        .count();
    assert_eq!(vmm_image, 3 + 4);
    let guest_image = spec
        .objects
        .iter()
        .filter(|o| o.name.starts_with("guest0_image@"))
        .count();
    assert_eq!(
        guest_image as u64,
        (guest_elf().len() as u64).div_ceil(PAGE)
    );
    let by_type = |t: &str| {
        spec.objects
            .iter()
            .filter(|o| o.kind.object_type().keyword() == t)
            .count()
    };
    // The VMM's two threads (main, interrupt) and the guest's.
    assert_eq!(by_type("tcb"), 3);
    // The VMM's, the guest's and its user views' CNodes; the VMM's PML4,
    // the guest's and its user views'.
    assert_eq!(by_type("cnode"), 3);
    assert_eq!(by_type("pml4"), 2 + USER_VIEWS);
    assert_eq!(by_type("ep"), 1);
    // The timer's and the interrupt thread's wake-up.
    assert_eq!(by_type("notification"), 2);
    assert_eq!(by_type("ioapic_irq"), 1);
    assert_eq!(by_type("io_ports"), 4);
    assert_eq!(by_type("ut"), 1);
    let untyped = &spec.objects[find(&spec, "guest0_untyped") as usize];
    assert_eq!(
        untyped.kind,
        ObjectKind::Untyped {
            size_bits: 22,
            paddr: None
        }
    );
    assert_eq!(spec.irqs.len(), 1);
    assert_eq!(spec.irqs[0].irq, 0);
    assert_eq!(name_of(&spec, spec.irqs[0].object), "pit_irq");
    let ObjectKind::IoApicIrq(irq) = spec.objects[spec.irqs[0].object as usize].kind else {
        panic!("pit_irq is not an IOAPIC IRQ");
    };
    assert_eq!((irq.pin, irq.level, irq.polarity), (2, 0, 0));
    let pit_irq = find(&spec, "pit_irq");
    let signal = slot(&spec, pit_irq, 0).expect("the IRQ signals a notification");
    assert_eq!(name_of(&spec, signal.target), "timer_notification");
    assert_eq!(signal.badge, TIMER_BADGE);
}

#[test]
fn a_guest_cnode_holds_only_its_badged_endpoint() {
    let (_, spec) = generated();
    let cnode = find(&spec, "guest0_cnode");
    let slots = &spec.objects[cnode as usize].slots;
    assert_eq!(slots.len(), 1);
    let cap = slot(&spec, cnode, GUEST_ENDPOINT_SLOT).expect("endpoint cap");
    assert_eq!(cap.target, find(&spec, "vmm_ep"));
    assert_eq!(cap.badge, guest_badge(0));
    assert_eq!(cap.badge, 1);
    // Send, and be replied to (grant: see GUEST_EP_RIGHTS); never receive.
    assert!(cap
        .rights
        .contains(Rights(Rights::WRITE.0 | Rights::GRANT.0)));
    assert!(!cap.rights.contains(Rights::READ));
    let tcb = &spec.objects[find(&spec, "guest0_tcb") as usize];
    let ObjectKind::Tcb(t) = &tcb.kind else {
        panic!("guest0_tcb is not a TCB");
    };
    assert_eq!(t.fault_ep, Some(GUEST_ENDPOINT_SLOT));
    assert_eq!((t.ip, t.sp, t.prio), (0, 0, 100));
    let cspace = tcb.slots[&Slot::CSpace];
    assert_eq!(cspace.target, cnode);
    // Radix + guard = 64: a whole cap pointer resolves to one slot.
    let ObjectKind::CNode { size_bits } = spec.objects[cnode as usize].kind else {
        panic!("not a CNode");
    };
    assert_eq!(u32::from(size_bits) + u32::from(cspace.guard_size), 64);
    // The guest's VSpace is empty: the VMM fills it.
    let pml4 = tcb.slots[&Slot::VSpace].target;
    assert!(spec.objects[pml4 as usize].slots.is_empty());
}

#[test]
fn the_user_views_cnode_holds_only_the_endpoint_at_the_marked_address() {
    let (_, spec) = generated();
    let user = find(&spec, "guest0_user_cnode");
    assert_eq!(spec.objects[user as usize].slots.len(), 1);
    // No guard: the top bit of USER_FAULT_ENDPOINT selects the slot.
    let ObjectKind::CNode { size_bits } = spec.objects[user as usize].kind else {
        panic!("not a CNode");
    };
    let slot_index = USER_FAULT_ENDPOINT >> (64 - u32::from(size_bits));
    let cap = slot(&spec, user, slot_index).expect("endpoint cap");
    let guest = slot(&spec, find(&spec, "guest0_cnode"), GUEST_ENDPOINT_SLOT).unwrap();
    assert_eq!(
        (cap.target, cap.badge, cap.rights),
        (guest.target, guest.badge, guest.rights)
    );
    // The VMM holds the CSpace roots and the user views' VSpaces.
    let vmm = find(&spec, "vmm_cnode");
    let at = |s: u64| slot(&spec, vmm, s).expect("a VMM slot");
    let kernel_view = at(guest_cnode_slot(0));
    assert_eq!(kernel_view.target, find(&spec, "guest0_cnode"));
    assert_eq!(u32::from(size_bits) + u32::from(kernel_view.guard_size), 64);
    let user_view = at(guest_user_cnode_slot(0));
    assert_eq!((user_view.target, user_view.guard_size), (user, 0));
    for view in 0..USER_VIEWS as u64 {
        let pml4 = at(guest_user_pml4_slot(0, view)).target;
        assert_eq!(name_of(&spec, pml4), format!("guest0_user_pml4_{view}"));
        assert!(
            spec.objects[pml4 as usize].slots.is_empty(),
            "empty: the VMM fills it"
        );
    }
}

#[test]
fn vmm_cspace_slots_match_the_published_constants() {
    let (_, spec) = generated();
    let cnode = find(&spec, "vmm_cnode");
    let target = |s: u64| slot(&spec, cnode, s).map(|c| name_of(&spec, c.target));
    assert_eq!(target(0), None);
    assert_eq!(target(VMM_CNODE_SLOT).as_deref(), Some("vmm_cnode"));
    assert_eq!(target(VMM_PML4_SLOT).as_deref(), Some("vmm_pml4"));
    assert_eq!(target(VMM_TCB_SLOT).as_deref(), Some("vmm_tcb"));
    assert_eq!(target(VMM_ENDPOINT_SLOT).as_deref(), Some("vmm_ep"));
    let ep = slot(&spec, cnode, VMM_ENDPOINT_SLOT).unwrap();
    assert_eq!(ep.badge, 0, "the VMM's endpoint cap is unbadged");
    assert!(ep.rights.contains(Rights::READ));
    assert_eq!(
        target(TIMER_NOTIFICATION_SLOT).as_deref(),
        Some("timer_notification")
    );
    assert_eq!(target(PIT_IRQ_SLOT).as_deref(), Some("pit_irq"));
    assert_eq!(target(PIT_PORTS_SLOT).as_deref(), Some("pit_ports"));
    assert_eq!(target(VMM_IRQ_TCB_SLOT).as_deref(), Some("vmm_irq_tcb"));
    assert_eq!(
        target(VMM_WAKE_NOTIFICATION_SLOT).as_deref(),
        Some("vmm_wake")
    );
    assert_eq!(target(VMM_WAKE_SIGNAL_SLOT).as_deref(), Some("vmm_wake"));
    let signal = slot(&spec, cnode, VMM_WAKE_SIGNAL_SLOT).unwrap();
    assert_eq!(signal.badge, TIMER_BADGE, "a wake-up says it is the timer");
    let ObjectKind::Tcb(irq) = &spec.objects[find(&spec, "vmm_irq_tcb") as usize].kind else {
        panic!("vmm_irq_tcb is not a TCB");
    };
    let ObjectKind::Tcb(main) = &spec.objects[find(&spec, "vmm_tcb") as usize].kind else {
        panic!("vmm_tcb is not a TCB");
    };
    assert_eq!(
        irq.prio,
        main.prio + 1,
        "the interrupt thread preempts the main one"
    );
    // The third value: 0, the VMM acknowledges the PIT's IRQ itself (with
    // several guests the supervisor does, and it is 1).
    assert_eq!(
        irq.init.as_slice(),
        &[IRQ_THREAD_MARK, u64::from(irq.prio), 0]
    );
    assert_eq!(irq.ip, main.ip, "both start at the VMM's entry");
    assert_eq!(target(SERIAL_PORTS_SLOT).as_deref(), Some("serial_ports"));
    assert_eq!(
        target(DEBUG_EXIT_PORT_SLOT).as_deref(),
        Some("debug_exit_port")
    );
    assert_eq!(
        target(GUEST_CONSOLE_PORTS_SLOT).as_deref(),
        Some("guest_console_ports")
    );
    let ports = |name: &str| spec.objects[find(&spec, name) as usize].kind.clone();
    assert_eq!(
        ports("serial_ports"),
        ObjectKind::IoPorts {
            first: 0x3f8,
            last: 0x3ff
        }
    );
    assert_eq!(
        ports("pit_ports"),
        ObjectKind::IoPorts {
            first: 0x40,
            last: 0x43
        }
    );
    assert_eq!(
        ports("debug_exit_port"),
        ObjectKind::IoPorts {
            first: 0xf4,
            last: 0xf4
        }
    );
    assert_eq!(
        ports("guest_console_ports"),
        ObjectKind::IoPorts {
            first: 0x2f8,
            last: 0x2ff
        }
    );
    assert_eq!(target(guest_tcb_slot(0)).as_deref(), Some("guest0_tcb"));
    assert_eq!(target(guest_pml4_slot(0)).as_deref(), Some("guest0_pml4"));
    assert_eq!(
        target(guest_untyped_slot(0)).as_deref(),
        Some("guest0_untyped")
    );
    let info = start_info(&spec);
    assert_eq!(info.guest_count, 1);
    assert_eq!(info.devices, 15);
    assert_eq!(info.guests[0].ram_frames, 16384);
    assert_eq!(info.guests[0].image_bytes as usize, guest_elf().len());
    let ObjectKind::CNode { size_bits } = spec.objects[cnode as usize].kind else {
        panic!("not a CNode");
    };
    assert_eq!(info.cnode_bits, size_bits);
    let first = info.ram_first_slot(0).unwrap();
    for k in [0u64, 1, 8191, 16383] {
        let cap = slot(&spec, cnode, first + k).expect("RAM frame cap");
        assert_eq!(name_of(&spec, cap.target), format!("guest0_ram[{k}]"));
        assert_eq!(cap.rights, Rights(Rights::READ.0 | Rights::WRITE.0));
    }
    // Every slot from the first free one on is empty, and there are at
    // least as many as RAM frames (one copy each, to map them).
    let free = info.free_first_slot();
    assert_eq!(free, first + 16384);
    let used_past_free = spec.objects[cnode as usize]
        .slots
        .keys()
        .filter(|s| matches!(s, Slot::Index(i) if *i >= free))
        .count();
    assert_eq!(used_past_free, 0);
    assert!((1u64 << size_bits) - free >= 16384);
    let vmm = &spec.objects[find(&spec, "vmm_tcb") as usize];
    assert_eq!(vmm.slots[&Slot::CSpace].target, cnode);
    assert_eq!(
        u32::from(vmm.slots[&Slot::CSpace].guard_size) + u32::from(size_bits),
        64
    );
}

/// [`SYSTEM`] with three small guests (each of its own VMM) and a supervisor.
fn three_guest_system() -> String {
    let mut text = SYSTEM.replace("ram_mib = 64", "ram_kib = 2048").replace(
        "stack_pages = 4",
        "stack_pages = 4\nsupervisor = \"supervisor\"",
    );
    for name in ["beta", "gamma"] {
        text = text.replace(
            "[devices]",
            &format!("[[guest]]\nname = \"{name}\"\nimage = \"guest\"\nram_kib = 2048\npriority = 100\npt_untyped_bits = 16\ncmdline = \"attack=ipc\"\n\n[devices]"),
        );
    }
    text
}

fn images_with_supervisor() -> BTreeMap<String, Vec<u8>> {
    let mut images = images();
    images.insert("supervisor".to_string(), vmm_elf());
    images
}

fn start_info_of(spec: &Spec, tcb: &str) -> StartInfo {
    let ObjectKind::Tcb(t) = &spec.objects[find(spec, tcb) as usize].kind else {
        panic!("{tcb} is not a TCB");
    };
    let regs: [u64; 6] = t.init.as_slice().try_into().expect("six init values");
    StartInfo::from_registers(regs)
}

#[test]
fn several_guests_get_a_vmm_each_and_a_supervisor() {
    let system = three_guest_system();
    let (spec, files) = generate_system(&system, &images_with_supervisor()).expect("generates");
    // Each VMM serves one guest, at the first guest's slots and windows.
    for (n, name) in ["guest0", "beta", "gamma"].iter().enumerate() {
        let vmm = format!("vmm_{name}");
        let info = start_info_of(&spec, &format!("{vmm}_tcb"));
        assert_eq!(info.guest_count, 1);
        assert_eq!(
            info.devices,
            DEVICE_SERIAL
                | DEVICE_GUEST_CONSOLE
                | DEVICE_DEBUGCON
                | DEVICE_SHARED_TICKS
                | DEVICE_SUPERVISOR
        );
        let cnode = find(&spec, &format!("{vmm}_cnode"));
        let target = |s: u64| slot(&spec, cnode, s).map(|c| name_of(&spec, c.target));
        assert_eq!(target(guest_tcb_slot(0)), Some(format!("{name}_tcb")));
        assert_eq!(target(guest_tcb_slot(1)), None);
        assert_eq!(target(GUEST_RAM_SLOTS_BASE), Some(format!("{name}_ram[0]")));
        assert_eq!(
            target(TIMER_NOTIFICATION_SLOT),
            Some(format!("{vmm}_ticks"))
        );
        assert_eq!(target(PIT_IRQ_SLOT), None);
        assert_eq!(target(PIT_PORTS_SLOT), None);
        assert_eq!(target(DEBUG_EXIT_PORT_SLOT), None);
        let report = slot(&spec, cnode, SUPERVISOR_ENDPOINT_SLOT).unwrap();
        assert_eq!(name_of(&spec, report.target), "supervisor_ep");
        assert_eq!((report.rights, report.badge), (Rights::WRITE, n as u64 + 1));
        let console = slot(&spec, cnode, GUEST_CONSOLE_PORTS_SLOT).unwrap();
        let port = guest_console_port(n as u64);
        assert_eq!(
            spec.objects[console.target as usize].kind,
            ObjectKind::IoPorts {
                first: port,
                last: port
            }
        );
        let ep = slot(
            &spec,
            find(&spec, &format!("{name}_cnode")),
            GUEST_ENDPOINT_SLOT,
        )
        .unwrap();
        assert_eq!(name_of(&spec, ep.target), format!("{vmm}_ep"));
        assert_eq!(ep.badge, 1);
        // The start page names the guest's number and command line.
        let file = files
            .iter()
            .find(|f| f.name == format!("{vmm}-start"))
            .expect("a start page");
        let page = StartPage::from_bytes(&file.bytes).expect("reads");
        assert_eq!(page.index, n as u32);
        let cmdline: &[u8] = if n == 0 { b"tests=all" } else { b"attack=ipc" };
        assert_eq!(page.cmdline, cmdline);
        let ObjectKind::Tcb(irq) =
            &spec.objects[find(&spec, &format!("{vmm}_irq_tcb")) as usize].kind
        else {
            panic!("no interrupt thread");
        };
        assert_eq!(irq.init[2], 1, "the supervisor acknowledges the PIT's IRQ");
        let pml4 = find(&spec, &format!("{vmm}_pml4"));
        let (frame, rights) = mapped(&spec, pml4, START_PAGE_ADDR).unwrap();
        assert_eq!(name_of(&spec, frame), format!("{vmm}_start"));
        assert_eq!(rights, Rights::READ);
    }
    // The supervisor holds the PIT, COM1, the exit port and a write cap
    // to each VMM's tick notification.
    let sup = find(&spec, "supervisor_cnode");
    let target = |s: u64| slot(&spec, sup, s).map(|c| name_of(&spec, c.target));
    assert_eq!(target(SUPERVISOR_PIT_IRQ_SLOT).as_deref(), Some("pit_irq"));
    assert_eq!(
        target(SUPERVISOR_DEBUG_EXIT_SLOT).as_deref(),
        Some("debug_exit_port")
    );
    assert_eq!(
        target(supervisor_ticks_slot(2)).as_deref(),
        Some("vmm_gamma_ticks")
    );
    assert_eq!(target(supervisor_ticks_slot(3)), None);
    // Without a supervisor image, several guests are refused.
    let without = system.replace("supervisor = \"supervisor\"", "");
    let err = generate_spec(&without, &images()).unwrap_err().to_string();
    assert!(err.contains("need `supervisor = IMAGE`"), "{err}");
}

/// Every object reachable from `roots` through capabilities: CNode slots,
/// a TCB's CSpace, VSpace and IPC buffer, paging structures' entries.
fn reachable(spec: &Spec, roots: &[u32]) -> BTreeMap<u32, Vec<Cap>> {
    let mut seen: BTreeMap<u32, Vec<Cap>> = roots.iter().map(|&r| (r, Vec::new())).collect();
    let mut todo: Vec<u32> = roots.to_vec();
    while let Some(at) = todo.pop() {
        for cap in spec.objects[at as usize].slots.values() {
            let entry = seen.entry(cap.target).or_default();
            let first = entry.is_empty() && !roots.contains(&cap.target);
            entry.push(*cap);
            if first {
                todo.push(cap.target);
            }
        }
    }
    seen
}

/// The isolation proof on the spec: walks every CSpace and VSpace from
/// each guest's thread and its VMM's threads, and finds only that guest's
/// own objects (named after it or its VMM), plus one write-only cap to the
/// supervisor's endpoint with that guest's badge. No frame, TCB, endpoint,
/// notification, I/O port or IRQ is reachable from two guests' sides.
#[test]
fn each_guest_and_its_vmm_reach_only_their_own_objects() {
    let (spec, _) =
        generate_system(&three_guest_system(), &images_with_supervisor()).expect("generates");
    let names = ["guest0", "beta", "gamma"];
    let mut owner: BTreeMap<u32, &str> = BTreeMap::new();
    for (n, name) in names.iter().enumerate() {
        let vmm = format!("vmm_{name}");
        let roots = [
            find(&spec, &format!("{vmm}_tcb")),
            find(&spec, &format!("{vmm}_irq_tcb")),
            find(&spec, &format!("{name}_tcb")),
        ];
        let domain = reachable(&spec, &roots);
        // The walk went through the CSpace and the VSpace: RAM and image.
        assert!(domain.contains_key(&find(&spec, &format!("{name}_ram[0]"))));
        assert!(domain.contains_key(&find(&spec, &format!("{vmm}_start"))));
        for (&object, caps) in &domain {
            let object_name = name_of(&spec, object);
            if object_name == "supervisor_ep" {
                for cap in caps {
                    assert_eq!(
                        (cap.rights, cap.badge),
                        (Rights::WRITE, n as u64 + 1),
                        "{name}'s side holds the supervisor's endpoint only to report, with its own badge"
                    );
                }
                continue;
            }
            assert!(
                object_name.starts_with(&format!("{name}_"))
                    || object_name.starts_with(&format!("{vmm}_")),
                "{name}'s side reaches {object_name}, which is not its own"
            );
            assert!(
                !matches!(spec.objects[object as usize].kind, ObjectKind::IoApicIrq(_)),
                "{name}'s side reaches an IRQ: {object_name}"
            );
            if let Some(other) = owner.insert(object, name) {
                panic!("{object_name} is reachable from both {other} and {name}");
            }
        }
        // The guest itself holds one cap: its VMM's endpoint, send only.
        let guest = reachable(&spec, &[find(&spec, &format!("{name}_tcb"))]);
        let ep = find(&spec, &format!("{vmm}_ep"));
        let caps = &guest[&ep];
        assert_eq!(caps.len(), 1);
        assert!(!caps[0].rights.contains(Rights::READ));
        let ObjectKind::CNode { .. } =
            spec.objects[find(&spec, &format!("{name}_cnode")) as usize].kind
        else {
            panic!("no guest CNode");
        };
        assert_eq!(
            spec.objects[find(&spec, &format!("{name}_cnode")) as usize]
                .slots
                .len(),
            1
        );
        // The guest's VSpace is empty: the VMM fills it.
        assert!(spec.objects[find(&spec, &format!("{name}_pml4")) as usize]
            .slots
            .is_empty());
    }
    // The supervisor reaches no guest's memory, thread or VMM endpoint:
    // only the tick notifications, written to.
    let sup = reachable(&spec, &[find(&spec, "supervisor_tcb")]);
    for (&object, caps) in &sup {
        if let Some(guest) = owner.get(&object) {
            let object_name = name_of(&spec, object);
            assert!(
                object_name.ends_with("_ticks") && caps.iter().all(|c| c.rights == Rights::WRITE),
                "the supervisor reaches {guest}'s {object_name}"
            );
        }
    }
}

#[test]
fn the_vmm_vspace_holds_its_image_stack_ipc_buffer_and_windows() {
    let (_, spec) = generated();
    let pml4 = find(&spec, "vmm_pml4");
    let tcb = &spec.objects[find(&spec, "vmm_tcb") as usize];
    let ObjectKind::Tcb(t) = &tcb.kind else {
        panic!("vmm_tcb is not a TCB");
    };
    assert_eq!(t.ip, 0x40_0010);
    assert_eq!(t.sp, VMM_STACK_BOTTOM + 4 * PAGE);
    assert_eq!(t.ipc_buffer_addr, VMM_IPC_BUFFER_ADDR);
    assert_eq!(t.prio, 200);
    assert_eq!(tcb.elf.as_deref(), Some("vmm-server"));
    let rw = Rights(Rights::READ.0 | Rights::WRITE.0);
    let ipc = tcb.slots[&Slot::IpcBuffer].target;
    assert_eq!(mapped(&spec, pml4, VMM_IPC_BUFFER_ADDR), Some((ipc, rw)));
    for k in 0..4 {
        let (frame, rights) = mapped(&spec, pml4, VMM_STACK_BOTTOM + k * PAGE).unwrap();
        assert_eq!(name_of(&spec, frame), format!("vmm_stack[{k}]"));
        assert_eq!(rights, rw);
    }
    // A guard page below the stack, and nothing just above it.
    assert_eq!(mapped(&spec, pml4, VMM_STACK_BOTTOM - PAGE), None);
    assert_eq!(mapped(&spec, pml4, VMM_STACK_BOTTOM + 4 * PAGE), None);
    for k in [0u64, 1, 16383] {
        let (frame, rights) = mapped(&spec, pml4, guest_ram_window(0) + k * PAGE).unwrap();
        assert_eq!(name_of(&spec, frame), format!("guest0_ram[{k}]"));
        assert_eq!(rights, rw);
    }
    assert_eq!(
        mapped(&spec, pml4, guest_ram_window(0) + 16384 * PAGE),
        None
    );
    // The guest image window is read-only and holds the file, byte for byte.
    assert_window_holds(&spec, guest_image_window(0), "guest", &guest_elf());
}

/// The window at `base` in the VMM is read-only and holds `file` (named
/// `name`), byte for byte, zero-padded to a page, and nothing more.
fn assert_window_holds(spec: &Spec, base: u64, name: &str, file: &[u8]) {
    let pml4 = find(spec, "vmm_pml4");
    let mut window = Vec::new();
    let mut vaddr = base;
    while let Some((frame, rights)) = mapped(spec, pml4, vaddr) {
        assert_eq!(rights, Rights::READ);
        let mut page = vec![0u8; PAGE as usize];
        for fill in &spec.objects[frame as usize].fills {
            assert_eq!(fill.file, name);
            let (src, dst) = (fill.file_offset as usize, fill.dest_offset as usize);
            let len = fill.length as usize;
            page[dst..dst + len].copy_from_slice(&file[src..src + len]);
        }
        window.extend_from_slice(&page);
        vaddr += PAGE;
    }
    assert_eq!(&window[..file.len()], file);
    assert!(window[file.len()..].iter().all(|&b| b == 0));
    assert_eq!(
        window.len() as u64,
        (file.len() as u64).div_ceil(PAGE) * PAGE
    );
}

#[test]
fn a_wedge_image_is_carried_in_its_window() {
    let wedge = elf(
        0x1000,
        &[Seg {
            vaddr: 0x1000,
            paddr: 0x1000,
            flags: PF_R | PF_X,
            data: pattern(0x1234, 8),
            memsz: 0x2000,
        }],
    )
    .0;
    let mut images = images();
    images.insert("wedge-l4".into(), wedge.clone());
    let system = small_system().replace("priority = 200", "priority = 200\nwedge = \"wedge-l4\"");
    let spec = capdl::check(&generate(&system, &images).unwrap()).unwrap();
    assert_window_holds(&spec, WEDGE_WINDOW, "wedge-l4", &wedge);
    assert_eq!(start_info(&spec).wedge_bytes as usize, wedge.len());
    // Without it, nothing is there and the size is 0.
    let plain = capdl::check(&generate(&small_system(), &images).unwrap()).unwrap();
    assert_eq!(mapped(&plain, find(&plain, "vmm_pml4"), WEDGE_WINDOW), None);
    assert_eq!(start_info(&plain).wedge_bytes, 0);
    // A wedge no --image gives.
    images.remove("wedge-l4");
    let (at, problem) = description_error(&system, &images);
    assert_eq!(at, At::Pos { line: 5, col: 9 });
    assert!(matches!(problem, Problem::UnknownImage { ref name, .. } if name == "wedge-l4"));
}

#[test]
fn a_linux_guest_carries_its_initrd_after_its_kernel() {
    let initrd = pattern(0x1801, 9);
    let mut images = images();
    images.insert("initramfs".into(), initrd.clone());
    let system = small_system().replace(
        "pt_untyped_bits = 22",
        "pt_untyped_bits = 22\nlinux = true\ninitrd = \"initramfs\"",
    );
    let (spec, files) = generate_system(&system, &images).unwrap();
    let spec = capdl::check(&capdl::print::print(&spec)).unwrap();
    let kernel = guest_elf();
    let start = files.iter().find(|f| f.name == "vmm-start").unwrap();
    let page = StartPage::from_bytes(&start.bytes).unwrap();
    assert_eq!(page.flags, START_LINUX);
    assert_eq!(page.initrd_bytes as usize, initrd.len());
    assert_eq!(
        start_info(&spec).guests[0].image_bytes as usize,
        kernel.len()
    );
    // The window: the kernel, zeros to its page's end, then the initrd
    // from the next page on, zeros to its page's end, and nothing after.
    let pml4 = find(&spec, "vmm_pml4");
    let at = initrd_offset(kernel.len() as u64);
    let mut window = Vec::new();
    let mut vaddr = guest_image_window(0);
    while let Some((frame, rights)) = mapped(&spec, pml4, vaddr) {
        assert_eq!(rights, Rights::READ);
        let mut bytes = vec![0u8; PAGE as usize];
        for fill in &spec.objects[frame as usize].fills {
            let (file, expected) = if vaddr < guest_image_window(0) + at {
                (&kernel, "guest")
            } else {
                (&initrd, "initramfs")
            };
            assert_eq!(fill.file, expected, "{vaddr:#x}");
            let (src, dst) = (fill.file_offset as usize, fill.dest_offset as usize);
            let len = fill.length as usize;
            bytes[dst..dst + len].copy_from_slice(&file[src..src + len]);
        }
        window.extend_from_slice(&bytes);
        vaddr += PAGE;
    }
    assert_eq!(&window[..kernel.len()], &kernel[..]);
    assert!(window[kernel.len()..at as usize].iter().all(|&b| b == 0));
    assert_eq!(
        &window[at as usize..at as usize + initrd.len()],
        &initrd[..]
    );
    assert_eq!(
        window.len() as u64,
        at + (initrd.len() as u64).div_ceil(PAGE) * PAGE
    );
    // Not Linux: no flag, no initrd; an initrd without `linux` is refused.
    let (_, plain) = generate_system(&small_system(), &images).unwrap();
    let plain_page =
        StartPage::from_bytes(&plain.iter().find(|f| f.name == "vmm-start").unwrap().bytes)
            .unwrap();
    assert_eq!((plain_page.flags, plain_page.initrd_bytes), (0, 0));
    let without = system.replace("linux = true\n", "");
    let (_, problem) = description_error(&without, &images);
    assert_eq!(problem, Problem::InitrdWithoutLinux);
}

/// Replays the fills of every frame mapped in the VMM's image region and
/// checks that they write exactly the segments' file bytes, at their
/// addresses, and nothing else; and that the pages have the segments'
/// rights.
#[test]
fn vmm_fills_cover_the_segment_bytes_exactly() {
    let (_, spec) = generated();
    let file = vmm_elf();
    let segs = vmm_segments();
    let pml4 = find(&spec, "vmm_pml4");
    let mut written: BTreeMap<u64, u8> = BTreeMap::new();
    for page in (0x40_0000..0x40_8000).step_by(PAGE as usize) {
        let Some((frame, rights)) = mapped(&spec, pml4, page) else {
            assert!(page >= 0x40_7000, "{page:#x} is not mapped");
            continue;
        };
        assert!(page < 0x40_7000, "{page:#x} is mapped");
        let writable = page >= 0x40_3000;
        assert!(rights.contains(Rights::READ));
        assert_eq!(rights.contains(Rights::WRITE), writable, "{page:#x}");
        for fill in &spec.objects[frame as usize].fills {
            assert_eq!(fill.file, "vmm-server");
            for k in 0..fill.length {
                let byte = file[(fill.file_offset + k) as usize];
                let at = page + fill.dest_offset + k;
                assert!(written.insert(at, byte).is_none(), "{at:#x} filled twice");
            }
        }
    }
    let mut expected: BTreeMap<u64, u8> = BTreeMap::new();
    for s in &segs {
        for (k, &byte) in s.data.iter().enumerate() {
            expected.insert(s.vaddr + k as u64, byte);
        }
    }
    assert_eq!(written, expected);
}

#[test]
fn segments_that_share_a_page_share_its_frame() {
    let (vmm, offsets) = elf(
        0x40_0000,
        &[
            Seg {
                vaddr: 0x40_0000,
                paddr: 0,
                flags: PF_R | PF_X,
                data: pattern(0x800, 4),
                memsz: 0x800,
            },
            Seg {
                vaddr: 0x40_0800,
                paddr: 0,
                flags: PF_R | PF_W,
                data: pattern(0x100, 5),
                memsz: 0x200,
            },
        ],
    );
    let mut images = images();
    images.insert("vmm-server".into(), vmm);
    let spec = capdl::check(&generate(&small_system(), &images).unwrap()).unwrap();
    let frame = &spec.objects[find(&spec, "vmm_image@0x400000") as usize];
    let fills: Vec<(u64, u64, u64)> = frame
        .fills
        .iter()
        .map(|f| (f.dest_offset, f.length, f.file_offset))
        .collect();
    assert_eq!(
        fills,
        vec![(0, 0x800, offsets[0]), (0x800, 0x100, offsets[1])]
    );
    let (_, rights) = mapped(&spec, find(&spec, "vmm_pml4"), 0x40_0000).unwrap();
    assert!(rights.contains(Rights(Rights::READ.0 | Rights::WRITE.0)));
}

#[test]
fn devices_left_out_leave_their_slots_empty() {
    let system = small_system().replace(" = true", " = false");
    let spec = capdl::check(&generate(&system, &images()).unwrap()).unwrap();
    let cnode = find(&spec, "vmm_cnode");
    for s in [
        TIMER_NOTIFICATION_SLOT,
        PIT_IRQ_SLOT,
        PIT_PORTS_SLOT,
        SERIAL_PORTS_SLOT,
        DEBUG_EXIT_PORT_SLOT,
        GUEST_CONSOLE_PORTS_SLOT,
    ] {
        assert_eq!(slot(&spec, cnode, s), None);
    }
    assert!(spec.irqs.is_empty());
    assert_eq!(start_info(&spec).devices, 0);
}

fn description_error(system: &str, images: &BTreeMap<String, Vec<u8>>) -> (At, Problem) {
    match generate(system, images) {
        Err(GenerateError::Description(e)) => (e.at, e.problem),
        other => panic!("expected a description error, got {other:?}"),
    }
}

fn image_error(images: &BTreeMap<String, Vec<u8>>) -> (String, ImageProblem) {
    match generate(SYSTEM, images) {
        Err(GenerateError::Image { name, problem }) => (name, problem),
        other => panic!("expected an image error, got {other:?}"),
    }
}

#[test]
fn an_unknown_image_name_is_reported_where_it_is_written() {
    let system = SYSTEM.replace("image = \"guest\"", "image = \"gest\"");
    let (at, problem) = description_error(&system, &images());
    assert_eq!(at, At::Pos { line: 9, col: 9 });
    assert!(matches!(problem, Problem::UnknownImage { ref name, .. } if name == "gest"));
    assert!(
        problem.to_string().contains("guest, vmm-server"),
        "{problem}"
    );
}

#[test]
fn bad_ram_sizes_are_refused() {
    let zero = SYSTEM.replace("ram_mib = 64", "ram_mib = 0");
    let (at, problem) = description_error(&zero, &images());
    assert_eq!(at, At::Pos { line: 10, col: 11 });
    assert!(matches!(
        problem,
        Problem::OutOfRange {
            key: "ram_mib",
            value: 0,
            ..
        }
    ));
    let odd = SYSTEM.replace("ram_mib = 64", "ram_kib = 6");
    let (_, problem) = description_error(&odd, &images());
    assert_eq!(problem, Problem::RamNotPageMultiple(6));
    let both = SYSTEM.replace("ram_mib = 64", "ram_mib = 64\nram_kib = 4");
    assert_eq!(description_error(&both, &images()).1, Problem::RamSize);
    let huge = SYSTEM.replace("ram_mib = 64", "ram_mib = 100000000");
    assert!(matches!(
        description_error(&huge, &images()).1,
        Problem::OutOfRange { .. }
    ));
}

#[test]
fn a_missing_vmm_table_is_reported_by_key() {
    let system = SYSTEM.replace(
        "[vmm]\nimage = \"vmm-server\"\npriority = 200\nstack_pages = 4\n",
        "",
    );
    let (at, problem) = description_error(&system, &images());
    assert_eq!(at, At::Key("vmm".into()));
    assert_eq!(problem, Problem::MissingVmm);
}

#[test]
fn toml_mistakes_have_a_position() {
    let (at, problem) =
        description_error(&SYSTEM.replace("priority = 200", "priority = "), &images());
    assert!(matches!(at, At::Pos { line: 4, .. }), "{at:?}");
    assert!(matches!(problem, Problem::Toml(_)));
    let (at, problem) = description_error(
        &SYSTEM.replace("stack_pages = 4", "stack_pagez = 4"),
        &images(),
    );
    assert!(matches!(at, At::Pos { line: 5, .. }), "{at:?}");
    assert!(problem.to_string().contains("stack_pagez"), "{problem}");
    let (_, problem) = description_error(
        &SYSTEM.replace("name = \"guest0\"", "name = \"vmm\""),
        &images(),
    );
    assert_eq!(problem, Problem::ReservedGuestName("vmm".into()));
    let (_, problem) = description_error(
        &SYSTEM.replace("priority = 100", "priority = 256"),
        &images(),
    );
    assert!(matches!(
        problem,
        Problem::OutOfRange {
            key: "priority",
            value: 256,
            ..
        }
    ));
}

#[test]
fn bad_images_are_refused() {
    let mut images = images();
    images.insert(
        "guest".into(),
        b"#!/bin/sh\necho not an ELF file\n".to_vec(),
    );
    let (name, problem) = image_error(&images);
    assert_eq!(name, "guest");
    assert!(
        matches!(problem, ImageProblem::Elf(ElfError::NotElf(_))),
        "{problem:?}"
    );
    // A kernel that does not fit in the guest's RAM.
    let (big, _) = elf(
        0x10_0000,
        &[Seg {
            vaddr: 0x10_0000,
            paddr: 0x3ff_f000,
            flags: PF_R,
            data: pattern(0x10, 6),
            memsz: 0x2000,
        }],
    );
    images.insert("guest".into(), big);
    let (_, problem) = image_error(&images);
    assert!(matches!(
        problem,
        ImageProblem::GuestSegmentOutsideRam { .. }
    ));
    // A VMM linked where its windows are.
    let (high, _) = elf(
        0x2000_0000_0000,
        &[Seg {
            vaddr: 0x2000_0000_0000,
            paddr: 0,
            flags: PF_R | PF_X,
            data: pattern(0x10, 7),
            memsz: 0x10,
        }],
    );
    let mut images = self::images();
    images.insert("vmm-server".into(), high);
    let (name, problem) = image_error(&images);
    assert_eq!(name, "vmm-server");
    assert!(matches!(problem, ImageProblem::VmmSegmentOutside { .. }));
    // A segment whose bytes run past the end of the file.
    let mut truncated = vmm_elf();
    truncated.truncate(truncated.len() - 1);
    images.insert("vmm-server".into(), truncated);
    assert!(matches!(
        image_error(&images).1,
        ImageProblem::Elf(ElfError::SegmentOutOfFile { .. })
    ));
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("capdl-generate-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn the_cli_prints_the_spec_or_file_line_col_errors() {
    let dir = temp_dir("cli");
    let system = dir.join("system.toml");
    let vmm = dir.join("vmm.elf");
    let guest = dir.join("guest.elf");
    fs::write(&system, SYSTEM).unwrap();
    fs::write(&vmm, vmm_elf()).unwrap();
    fs::write(&guest, guest_elf()).unwrap();
    let run = |system: &std::path::Path, guest: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_capdl"))
            .arg("generate")
            .arg(system)
            .arg("--image")
            .arg(format!("vmm-server={}", vmm.display()))
            .arg("--image")
            .arg(format!("guest={}", guest.display()))
            .output()
            .expect("capdl runs")
    };
    let out = run(&system, &guest);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, generate(SYSTEM, &images()).unwrap());

    fs::write(&system, SYSTEM.replace("ram_mib = 64", "ram_mib = 0")).unwrap();
    let out = run(&system, &guest);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("{}:10:11: `ram_mib` is 0", system.display())),
        "{stderr}"
    );

    fs::write(&system, SYSTEM).unwrap();
    let out = run(&system, &dir.join("missing.elf"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("missing.elf: cannot read"), "{stderr}");

    let out = run(&system, &system);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("image `guest`: not an ELF file"),
        "{stderr}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_example_description_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/system.toml");
    let source = fs::read_to_string(path).unwrap();
    // The example carries a wedge too: any ELF file stands in for it here.
    let mut images = images();
    images.insert("wedge-l4".to_string(), vmm_elf());
    let text = generate(&source, &images).expect("the example generates");
    assert!(capdl::check(&text).is_ok());
}

/// A system small enough to generate hundreds of times per test.
fn tiny_system() -> String {
    SYSTEM.replace("ram_mib = 64", "ram_kib = 64")
}

/// Lines a description is made of, right and wrong, for the soup below.
const LINES: &[&str] = &[
    "[vmm]",
    "[[guest]]",
    "[devices]",
    "[vmm.extra]",
    "image = \"vmm-server\"",
    "image = \"guest\"",
    "image = \"nothing\"",
    "image = 5",
    "wedge = \"guest\"",
    "priority = 200",
    "priority = -1",
    "priority = 1e3",
    "stack_pages = 0",
    "stack_pages = 9223372036854775807",
    "name = \"g\"",
    "name = \"g\"",
    "name = \"bad name\"",
    "ram_mib = 1",
    "ram_mib = 0",
    "ram_kib = 6",
    "ram_kib = 4",
    "pt_untyped_bits = 12",
    "pt_untyped_bits = 64",
    "serial = true",
    "pit = true",
    "debug_exit = \"yes\"",
    "guest_console = true",
    "= =",
    "\"",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(100)
    ))]

    /// Whatever a description says, generating gives a spec or an error,
    /// never a panic, and never a generator bug.
    #[test]
    fn line_soup_never_panics(
        lines in proptest::collection::vec(proptest::sample::select(LINES), 0..30)
    ) {
        let source = lines.join("\n");
        let result = generate(&source, &images());
        proptest::prop_assert!(
            !matches!(result, Err(GenerateError::Invalid(_))),
            "{result:?}"
        );
    }

    /// Corrupted ELF headers and program headers give an error or a spec
    /// that validates (`generate` checks it), never a panic.
    #[test]
    fn corrupted_elf_never_panics(
        edits in proptest::collection::vec((0usize..64 + 2 * 56, proptest::prelude::any::<u8>()), 1..8),
        guest in proptest::prelude::any::<bool>(),
    ) {
        let mut images = images();
        let name = if guest { "guest" } else { "vmm-server" };
        let bytes = images.get_mut(name).unwrap();
        for (at, value) in edits {
            if let Some(b) = bytes.get_mut(at) {
                *b = value;
            }
        }
        let result = generate(&tiny_system(), &images);
        proptest::prop_assert!(
            !matches!(result, Err(GenerateError::Invalid(_))),
            "{result:?}"
        );
    }
}

#[test]
fn the_vtlb_strategy_checking_and_recording_reach_the_vmm_start_registers() {
    use capdl::generate::{VtlbStrategy, VTLB_CHECK, VTLB_RECORD};
    let spec_of = |system: &str| capdl::check(&generate(system, &images()).unwrap()).unwrap();
    // By default: `keep`, not checking.
    let info = start_info(&spec_of(&small_system()));
    assert_eq!(info.vtlb, VtlbStrategy::Keep.code());
    for strategy in VtlbStrategy::ALL {
        let system = small_system().replace(
            "stack_pages = 4\n",
            &format!(
                "stack_pages = 4\nvtlb = \"{}\"\nvtlb_check = true\n",
                strategy.name()
            ),
        );
        let info = start_info(&spec_of(&system));
        assert_eq!(
            info.vtlb & !VTLB_CHECK,
            strategy.code(),
            "{}",
            strategy.name()
        );
        assert_eq!(info.vtlb & VTLB_CHECK, VTLB_CHECK);
        assert_eq!(info.vtlb & VTLB_RECORD, 0);
    }
    // Recording: its own bit, beside the strategy's code and checking's.
    let system = small_system().replace(
        "stack_pages = 4\n",
        "stack_pages = 4\nvtlb = \"flush\"\nvtlb_record = true\n",
    );
    let info = start_info(&spec_of(&system));
    assert_eq!(info.vtlb, VtlbStrategy::Flush.code() | VTLB_RECORD);
}

#[test]
fn an_unknown_vtlb_strategy_is_refused_where_it_is_written() {
    let system = SYSTEM.replace("stack_pages = 4\n", "stack_pages = 4\nvtlb = \"lazy\"\n");
    let (at, problem) = description_error(&system, &images());
    assert_eq!(at, At::Pos { line: 6, col: 8 });
    assert_eq!(problem, Problem::UnknownVtlbStrategy("lazy".into()));
    assert!(
        problem
            .to_string()
            .contains("flush, keep, prefetch, write-protect, broken-keep-all"),
        "{problem}"
    );
}
