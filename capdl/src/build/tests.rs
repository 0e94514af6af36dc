use super::*;
use crate::elf::{Elf, Segment};
use crate::model::Tcb;

const RW: Rights = Rights(Rights::READ.0 | Rights::WRITE.0);

fn tcb() -> ObjectKind {
    ObjectKind::Tcb(Tcb::default())
}

fn segment(index: usize, vaddr: u64, offset: u64, filesz: u64, memsz: u64, w: bool) -> Segment {
    Segment {
        index,
        vaddr,
        paddr: vaddr,
        offset,
        filesz,
        memsz,
        writable: w,
        executable: !w,
    }
}

/// Code at 0x400000 (a page and a bit), data sharing the code's last page.
fn elf() -> Elf {
    Elf {
        entry: 0x40_0010,
        segments: vec![
            segment(0, 0x40_0000, 0x1000, 0x1100, 0x1100, false),
            segment(1, 0x40_1800, 0x2800, 0x100, 0x2000, true),
        ],
    }
}

fn task<'a>(name: &'a str, elf: &'a Elf, init: &'a [u64]) -> Task<'a> {
    Task {
        name,
        image: "t.elf",
        elf,
        image_region: 0x40_0000..0x5f_f000,
        ipc_buffer: 0x5f_f000,
        stack: None,
        cnode_bits: 4,
        prio: 100,
        max_prio: 100,
        fault_ep: None,
        init,
    }
}

#[test]
fn a_name_is_declared_once_and_must_be_a_capdl_name() {
    let mut b = Builder::new();
    b.object("ep", ObjectKind::Endpoint).unwrap();
    assert_eq!(
        b.object("ep", ObjectKind::Notification),
        Err(BuildError::DuplicateName("ep".into()))
    );
    assert_eq!(
        b.array("ep", 3, small_frame()).unwrap_err(),
        BuildError::DuplicateName("ep".into())
    );
    for bad in ["", "1ep", "e p", "a--b", "a..b", "é"] {
        assert_eq!(
            b.object(bad, ObjectKind::Endpoint),
            Err(BuildError::BadName(bad.into())),
            "{bad:?}"
        );
    }
    // A refused declaration declares nothing.
    assert_eq!(b.finish().unwrap().objects.len(), 1);
}

#[test]
fn a_cap_to_or_in_an_unknown_object_is_refused() {
    let mut other = Builder::new();
    other.object("a", ObjectKind::Endpoint).unwrap();
    let stranger = other.object("b", ObjectKind::Endpoint).unwrap();
    let mut b = Builder::new();
    let cnode = b.object("c", ObjectKind::CNode { size_bits: 2 }).unwrap();
    assert_eq!(
        b.cap(cnode, Slot::Index(0), cap(stranger, RW)),
        Err(BuildError::UnknownObject(1))
    );
    assert_eq!(
        b.cap(stranger, Slot::Index(0), cap(cnode, Rights::NONE)),
        Err(BuildError::UnknownObject(1))
    );
    assert_eq!(b.name(stranger), Err(BuildError::UnknownObject(1)));
}

#[test]
fn a_slot_must_exist_in_its_holder_and_be_empty() {
    let mut b = Builder::new();
    let ep = b.object("ep", ObjectKind::Endpoint).unwrap();
    let cnode = b.object("c", ObjectKind::CNode { size_bits: 2 }).unwrap();
    let t = b.object("t", tcb()).unwrap();
    let pml4 = b.object("p", ObjectKind::Pml4).unwrap();
    let pt = b.array("pt", 2, ObjectKind::PageTable).unwrap();
    let no_slot = |r: Result<(), BuildError>| matches!(r, Err(BuildError::NoSuchSlot { .. }));
    assert!(no_slot(b.cap(cnode, Slot::Index(4), cap(ep, RW))));
    assert!(no_slot(b.cap(cnode, Slot::CSpace, cap(ep, RW))));
    assert!(no_slot(b.cap(t, Slot::Index(0), cap(ep, RW))));
    assert!(no_slot(b.cap(ep, Slot::Index(0), cap(ep, RW))));
    // seL4's own PML4 entry, and past the last one, are no user's slots;
    // the entries on either side of seL4's are.
    let pt0 = pt.get(0).unwrap();
    assert!(no_slot(b.cap(
        pml4,
        Slot::Index(256),
        cap(pt0, Rights::NONE)
    )));
    assert!(no_slot(b.cap(
        pml4,
        Slot::Index(512),
        cap(pt0, Rights::NONE)
    )));
    for slot in [255, 257, 511] {
        let pdpt = b.object(&format!("pdpt{slot}"), ObjectKind::Pdpt).unwrap();
        b.cap(pml4, Slot::Index(slot), cap(pdpt, Rights::NONE))
            .unwrap();
    }
    let err = b.cap(cnode, Slot::Index(4), cap(ep, RW)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`c` has no slot 4: a CNode of radix 2 has slots 0..4"
    );
    b.cap(cnode, Slot::Index(3), cap(ep, RW)).unwrap();
    assert_eq!(
        b.cap(cnode, Slot::Index(3), cap(ep, Rights::WRITE)),
        Err(BuildError::SlotFilled {
            holder: "c".into(),
            slot: "3".into()
        })
    );
    assert!(pt.get(2).is_none());
}

#[test]
fn fills_and_irqs_are_checked() {
    let mut b = Builder::new();
    let frame = b.object("f", small_frame()).unwrap();
    let ep = b.object("ep", ObjectKind::Endpoint).unwrap();
    let fill = |dest_offset, length| Fill {
        dest_offset,
        length,
        file: "img".into(),
        file_offset: 0,
    };
    b.fill(frame, fill(0xf00, 0x100)).unwrap();
    assert!(matches!(
        b.fill(frame, fill(0xf00, 0x101)),
        Err(BuildError::FillOutside { .. })
    ));
    assert!(matches!(
        b.fill(frame, fill(u64::MAX, 2)),
        Err(BuildError::FillOutside { .. })
    ));
    assert!(matches!(
        b.fill(ep, fill(0, 1)),
        Err(BuildError::WrongType { .. })
    ));
    assert!(matches!(
        b.set_elf(frame, "img"),
        Err(BuildError::WrongType { .. })
    ));
    let irq = b
        .object(
            "irq",
            ObjectKind::IoApicIrq(crate::model::IoApicIrq::default()),
        )
        .unwrap();
    assert!(matches!(b.irq(0, ep), Err(BuildError::WrongType { .. })));
    b.irq(0, irq).unwrap();
    assert!(matches!(b.irq(0, irq), Err(BuildError::Irq { irq: 0, .. })));
    assert!(matches!(b.irq(1, irq), Err(BuildError::Irq { irq: 1, .. })));
}

#[test]
fn mappings_must_be_aligned_user_and_apart() {
    let mut b = Builder::new();
    let mut vspace = VSpace::new(&mut b, "v").unwrap();
    let frames = b.array("f", 2, small_frame()).unwrap();
    let (f0, f1) = (frames.get(0).unwrap(), frames.get(1).unwrap());
    vspace.map(0x1000, f0, RW).unwrap();
    assert_eq!(
        vspace.map(0x1000, f1, RW),
        Err(BuildError::Overlap {
            name: "v".into(),
            vaddr: 0x1000
        })
    );
    assert!(matches!(
        vspace.map(0x2001, f1, RW),
        Err(BuildError::BadPageAddress { .. })
    ));
    // Non-canonical, and seL4's own PML4 entry (its first and last page).
    for vaddr in [
        0x8000_0000_0000,
        0x1_0000_0000_0000,
        0xffff_8000_0000_0000,
        0xffff_807f_ffff_f000,
    ] {
        assert!(
            matches!(
                vspace.map(vaddr, f1, RW),
                Err(BuildError::BadPageAddress { .. })
            ),
            "{vaddr:#x}"
        );
    }
    assert_eq!(
        vspace.map(0xffff_8000_0000_0000, f1, RW).unwrap_err().to_string(),
        "v: cannot map a page at 0xffff800000000000: in seL4's own PML4 entry 256 (0xffff800000000000..0xffff808000000000)"
    );
    assert_eq!(
        vspace
            .map(0x8000_0000_0000, f1, RW)
            .unwrap_err()
            .to_string(),
        "v: cannot map a page at 0x800000000000: not canonical (bits 47 to 63 differ)"
    );
    // Only 4K frames are pages.
    let ep = b.object("ep", ObjectKind::Endpoint).unwrap();
    vspace.map(0x3000, ep, RW).unwrap();
    assert!(matches!(
        vspace.finish(&mut b),
        Err(BuildError::WrongType { .. })
    ));
}

#[test]
fn a_vspace_makes_just_the_structures_its_pages_need() {
    let mut b = Builder::new();
    let t = b.object("t", tcb()).unwrap();
    let cnode = b.object("c", ObjectKind::CNode { size_bits: 1 }).unwrap();
    let mut vspace = VSpace::new(&mut b, "v").unwrap();
    let frames = b.array("f", 3, small_frame()).unwrap();
    // Two pages under one page table, one in another 512 GiB.
    vspace.map(0x40_0000, frames.get(0).unwrap(), RW).unwrap();
    vspace.map(0x40_1000, frames.get(1).unwrap(), RW).unwrap();
    vspace
        .map(0x80_0000_0000, frames.get(2).unwrap(), Rights::READ)
        .unwrap();
    let pml4 = vspace.pml4();
    vspace.finish(&mut b).unwrap();
    b.cap(t, Slot::CSpace, cspace_cap(cnode, 1)).unwrap();
    b.cap(t, Slot::VSpace, cap(pml4, Rights::NONE)).unwrap();
    let spec = b.finish().unwrap();
    let count = |name: &str| spec.objects.iter().filter(|o| o.name == name).count();
    assert_eq!((count("v_pdpt"), count("v_pd"), count("v_pt")), (2, 2, 2));
    let pml4 = &spec.objects[pml4.index() as usize];
    assert_eq!(
        pml4.slots.keys().copied().collect::<Vec<_>>(),
        [Slot::Index(0), Slot::Index(1)]
    );
}

#[test]
fn a_vspace_maps_the_upper_half_outside_sel4s_entry() {
    let mut b = Builder::new();
    let t = b.object("t", tcb()).unwrap();
    let cnode = b.object("c", ObjectKind::CNode { size_bits: 1 }).unwrap();
    let mut vspace = VSpace::new(&mut b, "v").unwrap();
    let frames = b.array("f", 3, small_frame()).unwrap();
    // The top of the lower half, PML4 entry 257 (the wedge's) and the
    // top of the address space.
    for (i, vaddr) in [
        0x7fff_ffff_f000,
        0xffff_8080_0000_0000,
        0xffff_ffff_ffff_f000,
    ]
    .into_iter()
    .enumerate()
    {
        let frame = frames.get(i as u32).unwrap();
        vspace.map(vaddr, frame, RW).unwrap();
    }
    let pml4 = vspace.pml4();
    vspace.finish(&mut b).unwrap();
    b.cap(t, Slot::CSpace, cspace_cap(cnode, 1)).unwrap();
    b.cap(t, Slot::VSpace, cap(pml4, Rights::NONE)).unwrap();
    let spec = b.finish().unwrap();
    let pml4 = &spec.objects[pml4.index() as usize];
    assert_eq!(
        pml4.slots.keys().copied().collect::<Vec<_>>(),
        [Slot::Index(255), Slot::Index(257), Slot::Index(511)]
    );
    let slots = |name: &str, index: u32| {
        let o = spec
            .objects
            .iter()
            .find(|o| o.name == name && o.index == Some(index));
        o.unwrap().slots.keys().copied().collect::<Vec<_>>()
    };
    // Entry 257's PDPT, its first; the top page's table, its last.
    assert_eq!(slots("v_pdpt", 1), [Slot::Index(0)]);
    assert_eq!(slots("v_pt", 2), [Slot::Index(511)]);
}

#[test]
fn a_task_is_its_image_ipc_buffer_and_cspace() {
    let elf = elf();
    let mut b = Builder::new();
    let objects = b.task(&task("t", &elf, &[7])).unwrap();
    let tcb = objects.tcb;
    objects.vspace.finish(&mut b).unwrap();
    let spec = b.finish().unwrap();
    let ObjectKind::Tcb(t) = &spec.objects[tcb.index() as usize].kind else {
        panic!("not a TCB");
    };
    assert_eq!((t.ip, t.sp, t.ipc_buffer_addr), (0x40_0010, 0, 0x5f_f000));
    assert_eq!(t.init.as_slice(), [7]);
    let by_name = |name: &str| spec.objects.iter().find(|o| o.name == name).unwrap();
    assert_eq!(by_name("t_tcb").elf.as_deref(), Some("t.elf"));
    // The code's second page also holds the data's first bytes: one frame,
    // both fills, both segments' rights.
    let shared = by_name("t_image@0x401000");
    assert_eq!(shared.fills.len(), 2);
    assert_eq!(
        (shared.fills[1].dest_offset, shared.fills[1].length),
        (0x800, 0x100)
    );
    assert_eq!(shared.fills[1].file_offset, 0x2800);
    let pt = by_name("t_pt");
    let rights = pt.slots[&Slot::Index(1)].rights;
    assert!(rights.contains(Rights::WRITE) && rights.contains(Rights::EXECUTE));
    // .bss: mapped, not filled.
    assert!(by_name("t_image@0x403000").fills.is_empty());
    assert_eq!(pt.slots[&Slot::Index(0x1ff)].rights, RW);
    let cspace = by_name("t_tcb").slots[&Slot::CSpace];
    assert_eq!(cspace.guard_size, 60);
}

#[test]
fn a_task_whose_image_does_not_fit_is_refused() {
    let mut elf = elf();
    elf.segments[1].memsz = 0x20_0000;
    let mut b = Builder::new();
    let err = b.task(&task("t", &elf, &[])).unwrap_err();
    assert!(matches!(
        err,
        BuildError::SegmentOutside {
            index: 1,
            limit: 0x5f_f000,
            ..
        }
    ));
    let elf = self::elf();
    assert!(matches!(
        b.task(&task("t", &elf, &[1, 2, 3, 4, 5, 6, 7])),
        Err(BuildError::BadThread { .. })
    ));
    let high = Task {
        prio: 101,
        ..task("t", &elf, &[])
    };
    assert!(matches!(b.task(&high), Err(BuildError::BadThread { .. })));
    // The IPC buffer on an image page.
    let clash = Task {
        ipc_buffer: 0x40_0000,
        ..task("u", &elf, &[])
    };
    assert!(matches!(b.task(&clash), Err(BuildError::Overlap { .. })));
    // A failed task declares nothing: its names are free again.
    assert!(b.finish().unwrap().objects.is_empty());
}

#[test]
fn what_only_the_whole_spec_shows_is_the_validators_to_say() {
    // A TCB without its CSpace and VSpace.
    let mut b = Builder::new();
    b.object("t", tcb()).unwrap();
    let err = b.finish().unwrap_err();
    let BuildError::Invalid(text) = &err else {
        panic!("{err:?}");
    };
    assert!(text.contains("(at `t = tcb"), "{text}");
    // A page table mapped twice.
    let mut b = Builder::new();
    let pd = b.array("pd", 2, ObjectKind::PageDirectory).unwrap();
    let pt = b.object("pt", ObjectKind::PageTable).unwrap();
    for d in pd.iter() {
        b.cap(d, Slot::Index(0), cap(pt, Rights::NONE)).unwrap();
    }
    assert!(matches!(b.finish(), Err(BuildError::Invalid(_))));
}

#[test]
fn a_second_thread_shares_the_tasks_spaces() {
    let elf = elf();
    let mut b = Builder::new();
    let mut objects = b.task(&task("t", &elf, &[])).unwrap();
    let thread = Thread {
        name: "t_irq",
        ip: 0x40_0020,
        ipc_buffer: 0x60_0000,
        stack: Some(Stack {
            bottom: 0x60_2000,
            pages: 2,
        }),
        prio: 101,
        max_prio: 101,
        fault_ep: None,
        init: &[9],
    };
    let second = b.thread(&mut objects, &thread).unwrap();
    // Its IPC buffer page is taken now.
    let clash = Thread {
        name: "t_other",
        stack: None,
        ..thread.clone()
    };
    assert!(matches!(
        b.thread(&mut objects, &clash),
        Err(BuildError::Overlap {
            vaddr: 0x60_0000,
            ..
        })
    ));
    let (main, pml4) = (objects.tcb, objects.vspace.pml4());
    objects.vspace.finish(&mut b).unwrap();
    let spec = b.finish().unwrap();
    let tcb = &spec.objects[second.tcb.index() as usize];
    let ObjectKind::Tcb(t) = &tcb.kind else {
        panic!("not a TCB");
    };
    assert_eq!((t.ip, t.sp, t.prio), (0x40_0020, 0x60_4000, 101));
    assert_eq!(tcb.elf.as_deref(), Some("t.elf"));
    let main = &spec.objects[main.index() as usize];
    assert_eq!(tcb.slots[&Slot::CSpace], main.slots[&Slot::CSpace]);
    assert_eq!(tcb.slots[&Slot::VSpace].target, pml4.index());
    assert_eq!(tcb.slots[&Slot::IpcBuffer].target, second.ipc.index());
    assert_eq!(second.stack.map(Array::len), Some(2));
}
