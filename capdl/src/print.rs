//! The canonical text of a [`Spec`]: parsing it gives back the same spec.
//!
//! Canonical means: every object declared at the top level in index order
//! (arrays as `name[N]`), untypeds list what they cover by name, one cap
//! block per object that holds caps, slots in order (numbers in hex), rights
//! in the order R W X G P, addresses in hex, other numbers in decimal.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::model::{Cap, ObjectKind, Slot};
use crate::objects::{FrameSize, ObjectType, RIGHT_LETTERS};
use crate::spec::{Object, Spec};
use crate::validate::slot_text;

/// Prints `spec` in canonical form.
///
/// Expects what [`crate::validate::validate`] builds: the elements of an
/// array are consecutive, from index 0, and share kind, ELF and fills, and
/// only single untypeds (not arrays) cover objects.
pub fn print(spec: &Spec) -> String {
    let mut children: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (index, object) in spec.objects.iter().enumerate() {
        if let Some(parent) = object.untyped {
            children.entry(parent).or_default().push(index);
        }
    }
    let mut out = String::from("arch x86_64\n\nobjects {\n");
    let mut at = 0;
    while at < spec.objects.len() {
        let object = &spec.objects[at];
        let len = array_len(spec, at);
        let name = match object.index {
            Some(_) => format!("{}[{len}]", object.name),
            None => object.name.clone(),
        };
        let _ = write!(out, "  {name} = {}", object_text(object));
        if let Some(children) = children.get(&(at as u32)) {
            let _ = write!(out, " {{ {} }}", refs_text(spec, children));
        }
        out.push('\n');
        at += len.max(1);
    }
    out.push_str("}\n\ncaps {\n");
    for object in &spec.objects {
        if object.slots.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {} {{", object.display_name());
        let slots: Vec<(&Slot, &Cap)> = object.slots.iter().collect();
        let mut k = 0;
        while k < slots.len() {
            let run = cap_run(spec, &slots[k..]);
            let (slot, cap) = slots[k];
            let target = &spec.objects[cap.target as usize];
            let target_text = if run > 1 {
                let first = target.index.unwrap_or(0);
                format!("{}[{first}..{}]", target.name, first + run as u32 - 1)
            } else {
                target.display_name()
            };
            let _ = writeln!(
                out,
                "    {}: {target_text}{}",
                slot_text(*slot),
                cap_params_text(target, cap)
            );
            k += run;
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n\nirq maps {\n");
    for irq in &spec.irqs {
        let object = &spec.objects[irq.object as usize];
        let _ = writeln!(out, "  {}: {}", irq.irq, object.display_name());
    }
    out.push_str("}\n");
    out
}

/// How many of `slots` (at least 1) can be written as one entry
/// `slot: name[a..b] (params)`: consecutive numbered slots holding caps with
/// the same parameters to consecutive elements of one array.
fn cap_run(spec: &Spec, slots: &[(&Slot, &Cap)]) -> usize {
    let (Slot::Index(first_slot), first_cap) = slots[0] else {
        return 1;
    };
    let first = &spec.objects[first_cap.target as usize];
    let Some(first_index) = first.index else {
        return 1;
    };
    let mut run = 1;
    while let Some((Slot::Index(slot), cap)) = slots.get(run) {
        let target = &spec.objects[cap.target as usize];
        let same_params = Cap {
            target: first_cap.target,
            ..**cap
        } == *first_cap;
        if *slot != first_slot + run as u64
            || target.name != first.name
            || target.index != Some(first_index + run as u32)
            || !same_params
        {
            break;
        }
        run += 1;
    }
    run
}

/// How many consecutive objects from `at` form one array (1 for a single
/// object).
fn array_len(spec: &Spec, at: usize) -> usize {
    let first = &spec.objects[at];
    if first.index != Some(0) {
        return 1;
    }
    spec.objects[at..]
        .iter()
        .enumerate()
        .take_while(|(k, o)| o.name == first.name && o.index == Some(*k as u32))
        .count()
}

/// `a, b[0..3], c[5]`: runs of consecutive elements of one array collapse.
fn refs_text(spec: &Spec, indices: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut k = 0;
    while k < indices.len() {
        let object = &spec.objects[indices[k]];
        let Some(first) = object.index else {
            parts.push(object.name.clone());
            k += 1;
            continue;
        };
        let mut run = 1;
        while k + run < indices.len() {
            let next = &spec.objects[indices[k + run]];
            if next.name == object.name && next.index == Some(first + run as u32) {
                run += 1;
            } else {
                break;
            }
        }
        let last = first + run as u32 - 1;
        parts.push(if run == 1 {
            format!("{}[{first}]", object.name)
        } else {
            format!("{}[{first}..{last}]", object.name)
        });
        k += run;
    }
    parts.join(", ")
}

fn object_text(object: &Object) -> String {
    let mut params: Vec<String> = Vec::new();
    let keyword = object.kind.object_type().keyword();
    match &object.kind {
        ObjectKind::Untyped { size_bits, paddr } => {
            params.push(format!("{size_bits} bits"));
            if let Some(p) = paddr {
                params.push(format!("paddr: {p:#x}"));
            }
        }
        ObjectKind::Frame { size, paddr } => {
            params.push(match size {
                FrameSize::Small => "4k".into(),
                FrameSize::Large => "2M".into(),
            });
            if let Some(p) = paddr {
                params.push(format!("paddr: {p:#x}"));
            }
            if !object.fills.is_empty() {
                let fills: Vec<String> = object
                    .fills
                    .iter()
                    .map(|f| {
                        format!(
                            "{{{:#x} {:#x} CDL_FrameFill_FileData \"{}\" {:#x}}}",
                            f.dest_offset, f.length, f.file, f.file_offset
                        )
                    })
                    .collect();
                params.push(format!("fill: [{}]", fills.join(", ")));
            }
        }
        ObjectKind::AsidPool {
            asid_high: Some(high),
        } => params.push(format!("asid_high: {high:#x}")),
        ObjectKind::CNode { size_bits } => params.push(format!("{size_bits} bits")),
        ObjectKind::Tcb(tcb) => {
            params.push(format!("addr: {:#x}", tcb.ipc_buffer_addr));
            params.push(format!("ip: {:#x}", tcb.ip));
            params.push(format!("sp: {:#x}", tcb.sp));
            params.push(format!("prio: {}", tcb.prio));
            params.push(format!("max_prio: {}", tcb.max_prio));
            if tcb.affinity != 0 {
                params.push(format!("affinity: {}", tcb.affinity));
            }
            if let Some(ep) = tcb.fault_ep {
                params.push(format!("fault_ep: {ep:#x}"));
            }
            if let Some(elf) = &object.elf {
                params.push(format!("elf: {elf}"));
            }
            if !tcb.init.is_empty() {
                let args: Vec<String> = tcb.init.iter().map(|a| format!("{a:#x}")).collect();
                params.push(format!("init: [{}]", args.join(", ")));
            }
        }
        ObjectKind::IoApicIrq(irq) => {
            params.push(format!("ioapic_num: {}", irq.ioapic));
            params.push(format!("ioapic_pin: {}", irq.pin));
            params.push(format!("ioapic_level: {}", irq.level));
            params.push(format!("ioapic_polarity: {}", irq.polarity));
        }
        ObjectKind::IoPorts { first, last } => {
            params.push(format!("ports: [{first:#x}..{last:#x}]"));
        }
        _ => {}
    }
    if params.is_empty() {
        keyword.to_string()
    } else {
        format!("{keyword} ({})", params.join(", "))
    }
}

fn cap_params_text(target: &Object, cap: &Cap) -> String {
    let mut params: Vec<String> = Vec::new();
    let rights: String = RIGHT_LETTERS
        .iter()
        .filter(|(_, r)| cap.rights.contains(*r))
        .map(|(c, _)| *c)
        .collect();
    if !rights.is_empty() {
        params.push(rights);
    }
    if cap.badge != 0 {
        params.push(format!("badge: {:#x}", cap.badge));
    }
    if let ObjectKind::CNode { .. } = target.kind {
        if cap.guard != 0 {
            params.push(format!("guard: {:#x}", cap.guard));
        }
        if cap.guard_size != 0 {
            params.push(format!("guard_size: {}", cap.guard_size));
        }
    }
    if target.kind.object_type() == ObjectType::Frame && !cap.cached {
        params.push("uncached".into());
    }
    if params.is_empty() {
        String::new()
    } else {
        format!(" ({})", params.join(", "))
    }
}
