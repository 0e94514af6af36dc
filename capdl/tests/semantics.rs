//! What valid specs mean: ranges, arrays, untyped coverage, defaults, and
//! text in the style seL4's capDL tool prints.

use capdl::model::{Cap, ObjectKind, Slot};
use capdl::objects::Rights;
use capdl::Spec;

fn check(source: &str) -> Spec {
    capdl::check(source).unwrap_or_else(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("{}", text.join("\n"))
    })
}

fn index(spec: &Spec, name: &str, element: Option<u32>) -> u32 {
    spec.objects
        .iter()
        .position(|o| o.name == name && o.index == element)
        .unwrap_or_else(|| panic!("{name}")) as u32
}

fn targets(spec: &Spec, holder: &str) -> Vec<(Slot, u32)> {
    let holder = &spec.objects[index(spec, holder, None) as usize];
    holder.slots.iter().map(|(s, c)| (*s, c.target)).collect()
}

#[test]
fn ranges_fill_consecutive_slots() {
    let spec = check(
        "arch x86_64 objects { c = cnode (4 bits); e[6] = ep }\n\
         caps { c { 0: e[..1]; 2: e[4..]; 4: e[2, 3]; 10: e[] } }",
    );
    let e = |i| index(&spec, "e", Some(i));
    let slots = targets(&spec, "c");
    let expected: Vec<(Slot, u32)> = [
        (0, e(0)),
        (1, e(1)),
        (2, e(4)),
        (3, e(5)),
        (4, e(2)),
        (5, e(3)),
    ]
    .into_iter()
    .chain((0..6).map(|i| (10 + i, e(i as u32))))
    .map(|(s, t)| (Slot::Index(s), t))
    .collect();
    assert_eq!(slots, expected);
}

#[test]
fn a_holder_range_gets_the_same_caps_in_each() {
    let spec = check(
        "arch x86_64 objects { c[3] = cnode (2 bits); n = notification }\n\
         caps { c[0..1] { 3: n (R, badge: 7) } }",
    );
    let n = index(&spec, "n", None);
    for i in 0..2 {
        let c = &spec.objects[index(&spec, "c", Some(i)) as usize];
        assert_eq!(
            c.slots[&Slot::Index(3)],
            Cap {
                target: n,
                rights: Rights::READ,
                badge: 7,
                cached: true,
                ..Cap::default()
            }
        );
    }
    assert!(spec.objects[index(&spec, "c", Some(2)) as usize]
        .slots
        .is_empty());
}

#[test]
fn untyped_children_declared_in_place_or_named() {
    let spec = check(
        "arch x86_64 objects {\n\
           outer = ut (16 bits) {\n\
             inner = ut (13 bits) { e = ep, f[0] }\n\
             g = frame (4k)\n\
           }\n\
           f[2] = frame (4k)\n\
         }",
    );
    let outer = index(&spec, "outer", None);
    let inner = index(&spec, "inner", None);
    assert_eq!(spec.objects[inner as usize].untyped, Some(outer));
    assert_eq!(
        spec.objects[index(&spec, "e", None) as usize].untyped,
        Some(inner)
    );
    assert_eq!(
        spec.objects[index(&spec, "g", None) as usize].untyped,
        Some(outer)
    );
    assert_eq!(
        spec.objects[index(&spec, "f", Some(0)) as usize].untyped,
        Some(inner)
    );
    assert_eq!(
        spec.objects[index(&spec, "f", Some(1)) as usize].untyped,
        None
    );
    // Declaration order: outer, inner, e, g, f[0], f[1].
    let names: Vec<String> = spec.objects.iter().map(|o| o.display_name()).collect();
    assert_eq!(names, ["outer", "inner", "e", "g", "f[0]", "f[1]"]);
    // 64 KiB from boot untypeds for outer, 4 KiB for f[1].
    assert_eq!(spec.bytes_from_boot_untypeds(), 0x10000 + 0x1000);
}

#[test]
fn irq_ranges_take_consecutive_numbers() {
    let spec = check(
        "arch x86_64 objects { i[3] = ioapic_irq (ioapic_pin: 5) }\n\
         irq maps { 8: i[] }",
    );
    let numbers: Vec<(u32, u32)> = spec.irqs.iter().map(|r| (r.irq, r.object)).collect();
    assert_eq!(numbers, vec![(8, 0), (9, 1), (10, 2)]);
}

#[test]
fn numbers_and_defaults() {
    let spec = check(
        "arch x86_64 objects { t = tcb (addr: 0o2000, prio: 010, max_prio: 0x0ff); \
         c = cnode (1 bits); r = pml4; f = frame (4k) }\n\
         caps { t { cspace: c; vspace: r }; c { 1: f } }",
    );
    let ObjectKind::Tcb(tcb) = &spec.objects[0].kind else {
        panic!("tcb")
    };
    assert_eq!(tcb.ipc_buffer_addr, 0o2000);
    assert_eq!(
        tcb.prio, 10,
        "a leading zero is decimal, as in the capDL tool"
    );
    assert_eq!(tcb.max_prio, 255);
    assert_eq!((tcb.ip, tcb.sp, tcb.fault_ep), (0, 0, None));
    let cap = spec.objects[1].slots[&Slot::Index(1)];
    assert_eq!(cap.rights, Rights::NONE, "no rights written is no rights");
    assert!(
        cap.cached,
        "frame caps are cached unless they say otherwise"
    );
}

/// The shape seL4's capDL tool prints (sections glued with `} caps {`, an
/// empty `cdt` section, `init: []`, slot numbers without `0x`).
#[test]
fn capdl_tool_output_style_is_read() {
    let spec = check(
        "arch x86_64\n\
         \n\
         objects {\n\
         \n\
           cnode_a = cnode (2 bits)\n\
           ep_a = ep\n\
           pml4_a = pml4\n\
           tcb_a = tcb (addr: 0, ip: 4198400, sp: 4210688, prio: 254, max_prio: 254, affinity: 0, init: [])\n\
         \n\
         } caps {\n\
         \n\
           cnode_a {\n\
           1: ep_a (RWG, badge: 0x5)\n\
           2: tcb_a\n\
           }\n\
         \n\
           tcb_a {\n\
           cspace: cnode_a (guard: 0, guard_size: 62)\n\
           vspace: pml4_a\n\
           }\n\
         \n\
         } cdt {\n\
         \n\
         } irq maps {\n\
         \n\
         }\n",
    );
    assert_eq!(spec.objects.len(), 4);
    assert_eq!(spec.cap_count(), 4);
}
