//! Handing out capabilities: IRQ handlers get their notifications, CNodes
//! get copies of the capabilities the spec puts in them, with the spec's
//! rights, badges and guards.

use capdl::model::{Cap, Slot as SpecSlot, SpecReader};
use capdl::objects::{ObjectType, Rights};
use previrt_sel4::cap::guard_data;
use previrt_sel4::{CNode, CapRights, IrqHandler, Notification, Slot};

use crate::create::Table;
use crate::error::{Doing, LoadError};
use crate::slots::{root, Slots};

pub fn cap_rights(rights: Rights) -> CapRights {
    // seL4 5.0.0 has read, write and grant; capDL's grant-reply and execute
    // have no counterpart in it.
    CapRights {
        read: rights.contains(Rights::READ),
        write: rights.contains(Rights::WRITE),
        grant: rights.contains(Rights::GRANT),
    }
}

/// Puts a copy of the capability `cap` describes into `dest`.
fn hand_out(t: &Table, slots: &Slots, dest: Slot, cap: &Cap) -> Result<(), LoadError> {
    let target = cap.target as usize;
    let name = t.names[target];
    let src = root(slots.object(cap.target));
    let rights = cap_rights(cap.rights);
    if t.types[target] == Some(ObjectType::CNode) && cap.guard_size > 0 {
        let data = guard_data(cap.guard, cap.guard_size).doing("encoding the guard of", name)?;
        dest.mint_data(src, rights, data)
            .doing("minting a guarded capability to", name)
    } else if cap.badge != 0 {
        dest.mint(src, rights, cap.badge)
            .doing("minting a badged capability to", name)
    } else {
        dest.copy(src, rights)
            .doing("copying a capability to", name)
    }
}

pub fn irqs(spec: &SpecReader<'static>, t: &Table, slots: &mut Slots) -> Result<(), LoadError> {
    for record in spec.caps() {
        if t.types[record.holder as usize] != Some(ObjectType::IoApicIrq) {
            continue;
        }
        let name = t.names[record.holder as usize];
        // The handler is bound to the capability as the spec gives it
        // (a badged copy carries the badge into every signal).
        let slot = slots.scratch()?;
        hand_out(t, slots, root(slot), &record.cap)?;
        IrqHandler(slots.object(record.holder))
            .set_notification(Notification(slot))
            .doing("binding a notification to", name)?;
    }
    Ok(())
}

pub fn cspaces(spec: &SpecReader<'static>, t: &Table, slots: &Slots) -> Result<(), LoadError> {
    for record in spec.caps() {
        let holder = record.holder as usize;
        if t.types[holder] != Some(ObjectType::CNode) {
            continue;
        }
        let SpecSlot::Index(index) = record.slot else {
            continue;
        };
        // Our own capability to the CNode has no guard: its radix resolves
        // a slot.
        let dest = Slot {
            root: CNode(slots.object(record.holder)),
            index,
            depth: t.radix[holder],
        };
        hand_out(t, slots, dest, &record.cap)?;
    }
    Ok(())
}
