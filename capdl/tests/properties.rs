//! Property tests: generated valid specs survive print/parse and postcard
//! round trips; arbitrary text never panics the checker.

use std::collections::BTreeMap;

use capdl::model::{Cap, IoApicIrq, IrqRecord, ObjectKind, Slot, Tcb};
use capdl::objects::{allowed_rights, pml4_entry_address, FrameSize, Rights, SEL4_PML4_ENTRY};
use capdl::spec::{Fill, Object, Spec};
use proptest::prelude::*;

/// A small deterministic generator driven by a proptest seed (xorshift64*).
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Any u64, often a small or an edge value.
    fn word(&mut self) -> u64 {
        match self.below(4) {
            0 => 0,
            1 => u64::MAX,
            2 => self.below(1000),
            _ => self.next(),
        }
    }
}

fn object(name: String, index: Option<u32>, kind: ObjectKind) -> Object {
    Object {
        name,
        index,
        kind,
        untyped: None,
        elf: None,
        fills: Vec::new(),
        slots: BTreeMap::new(),
    }
}

/// Builds a valid spec from `seed`: threads with 4-level VSpaces, frames of
/// both sizes, arrays, CNodes full of caps with rights/badges/guards, I/O
/// ports, IOAPIC IRQs and an untyped that covers some objects.
fn valid_spec(seed: u64) -> Spec {
    let mut dice = Dice(seed | 1);
    let mut objects: Vec<Object> = Vec::new();
    let add = |objects: &mut Vec<Object>, name: &str, kind: ObjectKind| -> u32 {
        objects.push(object(name.to_string(), None, kind));
        objects.len() as u32 - 1
    };
    let eps: Vec<u32> = (0..dice.below(4))
        .map(|i| add(&mut objects, &format!("ep{i}"), ObjectKind::Endpoint))
        .collect();
    let ntfns: Vec<u32> = (0..dice.below(3))
        .map(|i| add(&mut objects, &format!("ntfn_{i}"), ObjectKind::Notification))
        .collect();
    let cnodes: Vec<u32> = (0..1 + dice.below(3))
        .map(|i| {
            let size_bits = 1 + dice.below(6) as u8;
            add(
                &mut objects,
                &format!("cn{i}"),
                ObjectKind::CNode { size_bits },
            )
        })
        .collect();
    // A frame array, sometimes filled from a file.
    let frame_count = 1 + dice.below(6) as u32;
    let frames_first = objects.len() as u32;
    let fills: Vec<Fill> = (0..dice.below(3))
        .map(|k| Fill {
            dest_offset: 0x100 * k,
            length: 0x100,
            file: format!("image{k}.elf"),
            file_offset: dice.word(),
        })
        .collect();
    for i in 0..frame_count {
        let mut frame = object(
            "ram".into(),
            Some(i),
            ObjectKind::Frame {
                size: FrameSize::Small,
                paddr: None,
            },
        );
        frame.fills = fills.clone();
        objects.push(frame);
    }
    let large: Vec<u32> = (0..dice.below(3))
        .map(|i| {
            let paddr = dice.chance(30).then(|| dice.below(1 << 20) << 21);
            add(
                &mut objects,
                &format!("big{i}"),
                ObjectKind::Frame {
                    size: FrameSize::Large,
                    paddr,
                },
            )
        })
        .collect();
    // One VSpace chain per thread.
    let threads = dice.below(3);
    let mut vspaces = Vec::new();
    for t in 0..threads {
        let pml4 = add(&mut objects, &format!("pml4_{t}"), ObjectKind::Pml4);
        let pdpt = add(&mut objects, &format!("pdpt_{t}"), ObjectKind::Pdpt);
        let pd = add(&mut objects, &format!("pd_{t}"), ObjectKind::PageDirectory);
        let pt = add(&mut objects, &format!("pt_{t}"), ObjectKind::PageTable);
        let mut init = heapless::Vec::new();
        for _ in 0..dice.below(7) {
            init.push(dice.word()).unwrap();
        }
        let tcb = Tcb {
            ipc_buffer_addr: dice.below(1 << 30) << 10,
            ip: dice.word(),
            sp: dice.word(),
            prio: dice.below(256) as u8,
            max_prio: dice.below(256) as u8,
            affinity: 0,
            fault_ep: dice.chance(50).then(|| dice.word()),
            init,
        };
        let tcb = add(&mut objects, &format!("thread{t}"), ObjectKind::Tcb(tcb));
        if dice.chance(50) {
            objects[tcb as usize].elf = Some(format!("elf_{t}"));
        }
        vspaces.push((pml4, pdpt, pd, pt, tcb));
    }
    let mut ports_at = 0u64;
    let ports: Vec<u32> = (0..dice.below(3))
        .map(|i| {
            let first = ports_at + dice.below(0x100);
            let last = first + dice.below(0x10);
            ports_at = last + 1;
            add(
                &mut objects,
                &format!("ports{i}"),
                ObjectKind::IoPorts {
                    first: first as u16,
                    last: last as u16,
                },
            )
        })
        .collect();
    let irq_objects: Vec<u32> = (0..dice.below(3))
        .map(|i| {
            let irq = IoApicIrq {
                ioapic: 0,
                pin: dice.below(24) as u32,
                level: dice.below(2) as u32,
                polarity: dice.below(2) as u32,
            };
            add(&mut objects, &format!("irq{i}"), ObjectKind::IoApicIrq(irq))
        })
        .collect();

    // An untyped covering a random subset, big enough for it.
    if dice.chance(70) {
        let ut = objects.len() as u32;
        let mut needed: u128 = 0;
        let mut covered = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            if let Some(bits) = o.kind.size_bits() {
                if dice.chance(50) {
                    needed += 1u128 << bits;
                    covered.push(i);
                }
            }
        }
        let mut size_bits = 4u8;
        while (1u128 << size_bits) < needed {
            size_bits += 1;
        }
        size_bits += dice.below(2) as u8;
        add(
            &mut objects,
            "memory",
            ObjectKind::Untyped {
                size_bits,
                paddr: None,
            },
        );
        for i in covered {
            objects[i].untyped = Some(ut);
        }
        // Sometimes inside a device untyped at a fixed, aligned address.
        if dice.chance(40) {
            let outer_bits = size_bits + 1;
            let outer = add(
                &mut objects,
                "device_memory",
                ObjectKind::Untyped {
                    size_bits: outer_bits,
                    paddr: Some(dice.below(1 << 8) << outer_bits),
                },
            );
            objects[ut as usize].untyped = Some(outer);
        }
    }

    // An ASID pool that assigns some of the VSpaces.
    if dice.chance(50) {
        let asid_high = dice.chance(50).then(|| dice.below(8));
        let pool = add(&mut objects, "asids", ObjectKind::AsidPool { asid_high });
        let roots: Vec<u32> = objects
            .iter()
            .enumerate()
            .filter(|(_, o)| o.kind == ObjectKind::Pml4)
            .map(|(i, _)| i as u32)
            .collect();
        for root in roots {
            if dice.chance(70) {
                let slot = Slot::Index(dice.below(512));
                objects[pool as usize].slots.insert(
                    slot,
                    Cap {
                        target: root,
                        cached: true,
                        ..Cap::default()
                    },
                );
            }
        }
    }

    let frame_cap = |dice: &mut Dice, target: u32| Cap {
        target,
        rights: Rights(Rights::READ.0 | (dice.below(4) as u8 & 1) | ((dice.below(2) as u8) << 4)),
        cached: dice.chance(80),
        ..Cap::default()
    };
    for &(pml4, pdpt, pd, pt, tcb) in &vspaces {
        let plain = |target| Cap {
            target,
            cached: true,
            ..Cap::default()
        };
        // Any PML4 entry but seL4's own, the upper half's included.
        let s4 = match dice.below(511) {
            s if s >= SEL4_PML4_ENTRY => s + 1,
            s => s,
        };
        objects[pml4 as usize]
            .slots
            .insert(Slot::Index(s4), plain(pdpt));
        let s3 = dice.below(512);
        objects[pdpt as usize]
            .slots
            .insert(Slot::Index(s3), plain(pd));
        let pt_slot = dice.below(512);
        objects[pd as usize]
            .slots
            .insert(Slot::Index(pt_slot), plain(pt));
        for &big in &large {
            let s = Slot::Index(dice.below(512));
            if s != Slot::Index(pt_slot) {
                let cap = frame_cap(&mut dice, big);
                objects[pd as usize].slots.insert(s, cap);
            }
        }
        // Frame 0 last, so that no other frame takes its slot: it may be
        // the IPC buffer, found by its address.
        let mut ram0_slot = 0;
        for f in (0..frame_count).rev() {
            let s = dice.below(512);
            let cap = frame_cap(&mut dice, frames_first + f);
            objects[pt as usize].slots.insert(Slot::Index(s), cap);
            ram0_slot = s;
        }
        let cspace = cnodes[dice.below(cnodes.len() as u64) as usize];
        let ObjectKind::CNode { size_bits } = objects[cspace as usize].kind else {
            unreachable!()
        };
        let guard_size = dice.below(u64::from(65 - size_bits)) as u8;
        let guard = if guard_size == 0 {
            0
        } else {
            dice.word() >> (64 - guard_size)
        };
        let tcb_slots = &mut objects[tcb as usize].slots;
        tcb_slots.insert(
            Slot::CSpace,
            Cap {
                target: cspace,
                guard,
                guard_size,
                cached: true,
                ..Cap::default()
            },
        );
        tcb_slots.insert(Slot::VSpace, plain(pml4));
        if dice.chance(50) {
            tcb_slots.insert(Slot::IpcBuffer, frame_cap(&mut dice, frames_first));
            let entry = pml4_entry_address(s4).expect("s4 is a PML4 entry");
            let addr = entry | (s3 << 30) | (pt_slot << 21) | (ram0_slot << 12);
            let ObjectKind::Tcb(tcb) = &mut objects[tcb as usize].kind else {
                unreachable!()
            };
            tcb.ipc_buffer_addr = addr | (dice.below(4) << 10);
        }
    }
    // Caps to anything in the CNodes.
    for &cnode in &cnodes {
        let ObjectKind::CNode { size_bits } = objects[cnode as usize].kind else {
            unreachable!()
        };
        for _ in 0..dice.below(8) {
            let slot = Slot::Index(dice.below(1 << size_bits));
            let target = dice.below(objects.len() as u64) as u32;
            let target_kind = &objects[target as usize].kind;
            let target_type = target_kind.object_type();
            let rights = Rights(dice.below(32) as u8 & allowed_rights(target_type).0);
            let mut cap = Cap {
                target,
                rights,
                cached: true,
                ..Cap::default()
            };
            match target_kind {
                ObjectKind::Endpoint | ObjectKind::Notification => {
                    cap.badge = dice.word() & capdl::objects::MAX_BADGE
                }
                ObjectKind::Frame { .. } => cap.cached = dice.chance(50),
                ObjectKind::CNode { size_bits } => {
                    cap.guard_size = dice.below(u64::from(65 - size_bits)) as u8;
                    if cap.guard_size > 0 {
                        cap.guard = dice.word() >> (64 - cap.guard_size);
                    }
                }
                _ => {}
            }
            objects[cnode as usize].slots.insert(slot, cap);
        }
    }
    let mut irqs = Vec::new();
    let mut number = dice.below(8) as u32;
    for &irq in &irq_objects {
        if let Some(&ntfn) = ntfns.first() {
            if dice.chance(70) {
                objects[irq as usize].slots.insert(
                    Slot::Index(0),
                    Cap {
                        target: ntfn,
                        rights: Rights::WRITE,
                        badge: dice.word() & capdl::objects::MAX_BADGE,
                        cached: true,
                        ..Cap::default()
                    },
                );
            }
        }
        irqs.push(IrqRecord {
            irq: number,
            object: irq,
        });
        number += 1 + dice.below(4) as u32;
    }
    let _ = (eps, ports);
    Spec { objects, irqs }
}

fn assert_valid_and_round_trips(spec: &Spec) {
    let text = capdl::print::print(spec);
    let parsed = capdl::check(&text).unwrap_or_else(|errors| {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("generated spec is refused:\n{}\n{text}", errors.join("\n"))
    });
    assert_eq!(&parsed, spec, "print/parse changed the spec:\n{text}");
    let bytes = capdl::encode::encode(spec).expect("encodes");
    let decoded = capdl::encode::decode(&bytes).expect("decodes");
    assert_eq!(&decoded, spec, "postcard round trip changed the spec");
}

/// Words that make up CapDL, to build text that reaches deep into the parser.
const WORDS: &[&str] = &[
    "arch",
    "x86_64",
    "objects",
    "caps",
    "irq",
    "maps",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    ",",
    ";",
    "=",
    "..",
    "ep",
    "notification",
    "tcb",
    "cnode",
    "ut",
    "frame",
    "pt",
    "pd",
    "pdpt",
    "pml4",
    "asid_pool",
    "ioapic_irq",
    "io_ports",
    "4k",
    "2M",
    "bits",
    "k",
    "M",
    "a",
    "b",
    "c[2]",
    "a[]",
    "b[0..1]",
    "c[..1]",
    "0",
    "1",
    "0x10",
    "0xffffffffffffffffff",
    "cspace",
    "vspace",
    "ipc_buffer_slot",
    "RWG",
    "R",
    "badge:",
    "guard:",
    "guard_size:",
    "ports:",
    "fill:",
    "init:",
    "prio:",
    "addr:",
    "uncached",
    "\"f\"",
    "CDL_FrameFill_FileData",
    "--",
    "\n",
    "/*",
    "*/",
    " ",
];

proptest! {
    // 200 cases keep the suite fast; PROPTEST_CASES=N soaks longer.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(200)
    ))]

    #[test]
    fn generated_specs_round_trip(seed in any::<u64>()) {
        assert_valid_and_round_trips(&valid_spec(seed));
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = capdl::check(&text);
    }

    #[test]
    fn token_soup_never_panics_and_what_passes_round_trips(
        words in proptest::collection::vec(proptest::sample::select(WORDS), 0..120)
    ) {
        let text = words.join(" ");
        if let Ok(spec) = capdl::check(&text) {
            assert_valid_and_round_trips(&spec);
        }
    }

    #[test]
    fn mangled_valid_specs_never_panic(seed in any::<u64>(), cut in any::<prop::sample::Index>(),
                                       insert in proptest::sample::select(WORDS)) {
        let text = capdl::print::print(&valid_spec(seed));
        let at = cut.index(text.len() + 1);
        let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let mangled = format!("{}{insert}{}", &text[..at], &text[at..]);
        if let Ok(spec) = capdl::check(&mangled) {
            assert_valid_and_round_trips(&spec);
        }
    }
}
