//! The serialized form, read only through `capdl::model` (the no_std,
//! no-alloc reader the loader uses), and what it does with bad bytes.

use capdl::model::{
    CapRecord, FrameSize, IrqRecord, ModelError, ObjectKind, ObjectRecord, Slot, SpecReader,
    FORMAT_VERSION, MAGIC,
};

const SPEC: &str = r#"
arch x86_64
objects {
  u = ut (16 bits) { t, f[0..1] }
  t = tcb (addr: 0x3000, ip: 0x401000, sp: 0x3000, prio: 7, max_prio: 9, elf: guest, init: [5])
  c = cnode (3 bits)
  r = pml4
  f[2] = frame (4k, fill: [{16 32 CDL_FrameFill_FileData "guest.elf" 0x40}])
  e = ep
  i = ioapic_irq (ioapic_pin: 9, ioapic_level: 1)
  n = notification
}
caps {
  t { cspace: c (guard_size: 61); vspace: r }
  c { 2: e (RWGP, badge: 0xfffffff); 1: f[1] (R, uncached) }
  i { 0: n (W) }
}
irq maps { 9: i }
"#;

fn bytes() -> Vec<u8> {
    let spec = capdl::check(SPEC).expect("valid");
    capdl::encode::encode(&spec).expect("encodes")
}

#[test]
fn the_loader_reads_everything_without_an_allocator() {
    let bytes = bytes();
    // Only `capdl::model` from here on: the same calls the loader makes.
    let reader = SpecReader::new(&bytes).expect("reads");
    let header = reader.header();
    assert_eq!(header.magic, MAGIC);
    assert_eq!(header.version, FORMAT_VERSION);
    assert_eq!(header.object_count, 9);
    assert_eq!(header.cap_count, 5);
    assert_eq!(header.fill_count, 2);
    assert_eq!(header.irq_count, 1);

    let mut objects = reader.objects();
    let u: ObjectRecord<'_> = objects.next().unwrap();
    assert_eq!(u.name, "u");
    assert_eq!(
        u.kind,
        ObjectKind::Untyped {
            size_bits: 16,
            paddr: None
        }
    );
    let t = objects.next().unwrap();
    assert_eq!((t.name, t.untyped, t.elf), ("t", Some(0), Some("guest")));
    let ObjectKind::Tcb(tcb) = &t.kind else {
        panic!("t is a TCB")
    };
    assert_eq!(
        (tcb.ipc_buffer_addr, tcb.ip, tcb.sp, tcb.prio, tcb.max_prio),
        (0x3000, 0x401000, 0x3000, 7, 9)
    );
    assert_eq!(tcb.init.as_slice(), &[5]);
    let f1 = reader.object(5).unwrap();
    assert_eq!((f1.name, f1.index, f1.untyped), ("f", Some(1), Some(0)));
    assert_eq!(
        f1.kind,
        ObjectKind::Frame {
            size: FrameSize::Small,
            paddr: None
        }
    );
    assert!(reader.object(9).is_none());

    let caps: heapless::Vec<CapRecord, 8> = reader.caps().collect();
    assert_eq!(caps.len(), 5);
    // Sorted by holder (t = 1, c = 2, i = 7), then slot.
    assert_eq!((caps[0].holder, caps[0].slot), (1, Slot::CSpace));
    assert_eq!(caps[0].cap.guard_size, 61);
    assert_eq!(
        (caps[1].holder, caps[1].slot, caps[1].cap.target),
        (1, Slot::VSpace, 3)
    );
    assert_eq!((caps[2].slot, caps[2].cap.target), (Slot::Index(1), 5));
    assert!(!caps[2].cap.cached);
    assert_eq!(caps[3].cap.badge, capdl::objects::MAX_BADGE);
    assert_eq!(caps[3].cap.rights.0, 0b1111);
    assert_eq!((caps[4].holder, caps[4].cap.target), (7, 8));

    let mut fills = reader.fills();
    let fill = fills.next().unwrap();
    assert_eq!(
        (
            fill.frame,
            fill.dest_offset,
            fill.length,
            fill.file,
            fill.file_offset
        ),
        (4, 16, 32, "guest.elf", 0x40)
    );
    assert_eq!(fills.next().unwrap().frame, 5);
    assert!(fills.next().is_none());

    let irqs: heapless::Vec<IrqRecord, 1> = reader.irqs().collect();
    assert_eq!(irqs[0], IrqRecord { irq: 9, object: 7 });
}

#[test]
fn bad_bytes_are_refused_with_a_reason() {
    let good = bytes();
    let mut bad_magic = good.clone();
    bad_magic[0] ^= 0xff;
    assert_eq!(
        SpecReader::new(&bad_magic).unwrap_err(),
        ModelError::BadMagic
    );

    let mut new_version = good.clone();
    new_version[4] = 99;
    assert_eq!(
        SpecReader::new(&new_version).unwrap_err(),
        ModelError::UnsupportedVersion(99)
    );

    let truncated = &good[..good.len() - 1];
    assert!(matches!(
        SpecReader::new(truncated).unwrap_err(),
        ModelError::Decode { .. }
    ));

    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        SpecReader::new(&trailing).unwrap_err(),
        ModelError::TrailingBytes { offset: good.len() }
    );

    // The last record is the IRQ record; its last byte is the object index.
    let mut bad_index = good.clone();
    *bad_index.last_mut().unwrap() = 100;
    assert!(matches!(
        SpecReader::new(&bad_index).unwrap_err(),
        ModelError::BadObjectIndex { index: 100, .. }
    ));
    assert!(SpecReader::new(&[]).is_err());
}

#[test]
fn every_prefix_and_every_flipped_byte_is_handled() {
    let good = bytes();
    for len in 0..good.len() {
        assert!(
            SpecReader::new(&good[..len]).is_err(),
            "prefix of {len} bytes"
        );
    }
    for at in 0..good.len() {
        let mut bytes = good.clone();
        bytes[at] ^= 0x5a;
        // Either refused, or every record iterates without panicking.
        if let Ok(reader) = SpecReader::new(&bytes) {
            assert_eq!(
                reader.objects().count(),
                reader.header().object_count as usize
            );
            assert_eq!(reader.caps().count(), reader.header().cap_count as usize);
            let _ = reader.fills().count();
            let _ = reader.irqs().count();
        }
    }
}
