//! Caps: which slots each holder has, which caps each slot takes, and what
//! a cap's parameters may say; and the IRQ numbers.

use crate::ast::{CapEntry, CapParamValue, NameRef, SlotAst};
use crate::lexer::Pos;
use crate::model::{Cap, IrqRecord, ObjectKind, Slot};
use crate::objects::{
    allowed_rights, pml4_entry_is_users, FrameSize, ObjectType, Rights, MAX_BADGE, PAGING_ENTRIES,
    RIGHT_LETTERS,
};

use super::{slot_text, ValidateError, Validator, ASID_POOL_ENTRIES};

impl Validator {
    pub(super) fn add_cap(&mut self, holder: u32, entry: &CapEntry, targets: &[u32]) {
        let broken = |v: &Self, i: u32| v.broken[i as usize];
        if targets.is_empty() || broken(self, holder) || targets.iter().any(|&t| broken(self, t)) {
            return;
        }
        let holder_obj = &self.objects[holder as usize];
        let holder_name = holder_obj.display_name();
        let holder_type = holder_obj.kind.object_type();
        let pos = entry.slot_pos;
        // The first slot, and how many slots the holder has.
        let base: Slot = match (&entry.slot, holder_type) {
            (SlotAst::Named(name), ObjectType::Tcb) => {
                let slot = match name.as_str() {
                    "cspace" => Slot::CSpace,
                    "vspace" => Slot::VSpace,
                    "ipc_buffer_slot" => Slot::IpcBuffer,
                    _ => {
                        self.error(pos, ValidateError::UnknownSlotName(name.clone()));
                        return;
                    }
                };
                self.attempted_slots.insert((holder, slot));
                if targets.len() != 1 {
                    self.error(
                        entry.target.pos,
                        ValidateError::OneObjectNeeded {
                            what: "a TCB slot",
                            name: entry.target.name.clone(),
                            count: targets.len(),
                        },
                    );
                    return;
                }
                slot
            }
            (SlotAst::Named(name), _) => {
                self.error(
                    pos,
                    ValidateError::NamedSlotOutsideTcb {
                        slot: name.clone(),
                        holder: holder_name,
                        object_type: holder_type.with_article(),
                    },
                );
                return;
            }
            (SlotAst::Index(_), ObjectType::Tcb) => {
                self.error(pos, ValidateError::NumberedSlotInTcb);
                return;
            }
            (SlotAst::Index(n), _) => {
                let limit = match self.objects[holder as usize].kind {
                    ObjectKind::CNode { size_bits } => 1u64 << size_bits,
                    ObjectKind::PageTable
                    | ObjectKind::PageDirectory
                    | ObjectKind::Pdpt
                    | ObjectKind::Pml4 => PAGING_ENTRIES,
                    ObjectKind::AsidPool { .. } => ASID_POOL_ENTRIES,
                    ObjectKind::IoApicIrq(_) => 1,
                    _ => {
                        self.error(
                            entry.target.pos.min(pos),
                            ValidateError::HoldsNoCaps {
                                name: holder_name,
                                object_type: holder_type.with_article(),
                            },
                        );
                        return;
                    }
                };
                let last = n.saturating_add(targets.len() as u128 - 1);
                if last >= u128::from(limit) {
                    self.error(
                        pos,
                        ValidateError::SlotOutOfRange {
                            slot: last,
                            holder: holder_name,
                            limit,
                        },
                    );
                    return;
                }
                // Below `limit`, so the slots are PML4 entries.
                if holder_type == ObjectType::Pml4 {
                    if let Some(kernel) =
                        (*n as u64..=last as u64).find(|&i| !pml4_entry_is_users(i))
                    {
                        self.error(pos, ValidateError::Sel4Pml4Entry(kernel));
                        return;
                    }
                }
                Slot::Index(*n as u64)
            }
        };
        for (k, &target) in targets.iter().enumerate() {
            let slot = match base {
                Slot::Index(n) => Slot::Index(n + k as u64),
                named => named,
            };
            self.attempted_slots.insert((holder, slot));
            let Some(cap) = self.cap(holder, slot, target, entry) else {
                continue;
            };
            if let Some(first) = self.slot_pos.get(&(holder, slot)) {
                let error = ValidateError::SlotFilledTwice {
                    slot: slot_text(slot),
                    holder: self.objects[holder as usize].display_name(),
                    first: *first,
                };
                self.error(pos, error);
                continue;
            }
            self.slot_pos.insert((holder, slot), pos);
            self.objects[holder as usize].slots.insert(slot, cap);
        }
    }

    /// Checks that `target` may sit in `slot` of `holder` with the entry's
    /// parameters, and builds the cap.
    fn cap(&mut self, holder: u32, slot: Slot, target: u32, entry: &CapEntry) -> Option<Cap> {
        let holder_kind = &self.objects[holder as usize].kind;
        let target_obj = &self.objects[target as usize];
        let target_type = target_obj.kind.object_type();
        let target_kind = target_obj.kind.clone();
        let is_paging = matches!(
            holder_kind,
            ObjectKind::PageTable | ObjectKind::PageDirectory | ObjectKind::Pdpt | ObjectKind::Pml4
        );
        let (expected, ok) = slot_accepts(holder_kind, slot, &target_kind);
        let place = |v: &Self| {
            let holder_obj = &v.objects[holder as usize];
            format!(
                "slot {} of {} `{}`",
                slot_text(slot),
                holder_obj.kind.object_type().description(),
                holder_obj.display_name()
            )
        };
        if !ok {
            let found = match target_kind {
                ObjectKind::Frame { size, .. } => format!(
                    "a {} frame",
                    if size == FrameSize::Small { "4k" } else { "2M" }
                ),
                _ => target_type.with_article().to_string(),
            };
            let error = ValidateError::WrongCapForSlot {
                place: place(self),
                expected,
                target: self.objects[target as usize].display_name(),
                found,
            };
            self.error(entry.target.pos, error);
            return None;
        }
        let mut cap = Cap {
            target,
            cached: true,
            ..Cap::default()
        };
        let mut good = true;
        for param in &entry.params {
            let pos = param.pos;
            match &param.value {
                CapParamValue::Rights(letters) => {
                    let allowed = allowed_rights(target_type);
                    for letter in letters.chars() {
                        let right = RIGHT_LETTERS
                            .iter()
                            .find(|(c, _)| *c == letter)
                            .map_or(Rights::NONE, |(_, r)| *r);
                        if !allowed.contains(right) || right.is_empty() {
                            let allowed_letters: String = RIGHT_LETTERS
                                .iter()
                                .filter(|(_, r)| allowed.contains(*r) && !r.is_empty())
                                .map(|(c, _)| *c)
                                .collect();
                            self.error(
                                pos,
                                ValidateError::BadRights {
                                    object_type: target_type.with_article(),
                                    right: letter,
                                    allowed: if allowed_letters.is_empty() {
                                        "none".into()
                                    } else {
                                        allowed_letters
                                    },
                                },
                            );
                            good = false;
                        }
                        cap.rights = cap.rights.union(right);
                    }
                }
                CapParamValue::Number(key, n) if key == "badge" => {
                    if !matches!(target_type, ObjectType::Endpoint | ObjectType::Notification) {
                        self.error(
                            pos,
                            ValidateError::BadgeNotAllowed(target_type.with_article()),
                        );
                        good = false;
                    }
                    match self.number(pos, "badge", *n, u128::from(MAX_BADGE)) {
                        Some(badge) => cap.badge = badge as u64,
                        None => good = false,
                    }
                }
                CapParamValue::Number(key, n) if key == "guard" || key == "guard_size" => {
                    let ObjectKind::CNode { size_bits } = target_kind else {
                        self.error(
                            pos,
                            ValidateError::GuardNotAllowed(target_type.with_article()),
                        );
                        good = false;
                        continue;
                    };
                    if key == "guard" {
                        match self.u64_value(pos, "guard", *n) {
                            Some(guard) => cap.guard = guard,
                            None => good = false,
                        }
                    } else {
                        if *n > u128::from(64 - size_bits) {
                            let error = ValidateError::GuardTooLong {
                                guard_size: u8::try_from(*n).unwrap_or(u8::MAX),
                                radix: size_bits,
                                cnode: self.objects[target as usize].display_name(),
                            };
                            self.error(pos, error);
                            good = false;
                        } else {
                            // At most 63 (the radix is at least 1): exact.
                            cap.guard_size = *n as u8;
                        }
                    }
                }
                CapParamValue::Flag(flag) if flag == "cached" || flag == "uncached" => {
                    if target_type != ObjectType::Frame {
                        self.error(
                            pos,
                            ValidateError::CachingNotAllowed(target_type.with_article()),
                        );
                        good = false;
                    }
                    cap.cached = flag == "cached";
                }
                CapParamValue::Number(key, _) | CapParamValue::Flag(key) => {
                    self.error(pos, ValidateError::UnknownCapParam(key.clone()));
                    good = false;
                }
            }
        }
        if cap.guard_size < 64 && cap.guard >> cap.guard_size != 0 {
            self.error(
                entry.target.pos,
                ValidateError::GuardTooLarge {
                    guard: cap.guard,
                    guard_size: cap.guard_size,
                },
            );
            good = false;
        }
        if is_paging {
            if target_type == ObjectType::Frame {
                if !cap.rights.contains(Rights::READ) && good {
                    let name = self.objects[target as usize].display_name();
                    self.error(entry.target.pos, ValidateError::UnreadableMapping(name));
                    good = false;
                }
            } else if let Some(first) = self.mapped_at.get(&target) {
                let error = ValidateError::MappedTwice {
                    name: self.objects[target as usize].display_name(),
                    first: *first,
                };
                self.error(entry.target.pos, error);
                good = false;
            } else if good {
                self.mapped_at.insert(target, entry.target.pos);
            }
        }
        good.then_some(cap)
    }

    pub(super) fn add_irq(&mut self, irq: u128, pos: Pos, target: &NameRef) {
        let Some(irq) = self.number(pos, "IRQ number", irq, u128::from(u32::MAX)) else {
            return;
        };
        let irq = irq as u32;
        let objects = self.resolve(target);
        for (k, object) in objects.into_iter().enumerate() {
            let number = irq.saturating_add(k as u32);
            self.attempted_irqs.insert(object);
            if self.broken[object as usize] {
                continue;
            }
            let obj = &self.objects[object as usize];
            if obj.kind.object_type() != ObjectType::IoApicIrq {
                let error = ValidateError::NotAnIrq {
                    name: obj.display_name(),
                    object_type: obj.kind.object_type().with_article(),
                };
                self.error(target.pos, error);
                continue;
            }
            if let Some((first, _)) = self.irqs.get(&object) {
                let error = ValidateError::IrqMappedTwice {
                    name: obj.display_name(),
                    first: first.irq,
                };
                self.error(pos, error);
                continue;
            }
            if let Some(first) = self.irq_numbers.get(&number) {
                let error = ValidateError::IrqNumberTaken {
                    irq: number,
                    first: self.objects[*first as usize].display_name(),
                };
                self.error(pos, error);
                continue;
            }
            self.irq_numbers.insert(number, object);
            self.irqs.insert(
                object,
                (
                    IrqRecord {
                        irq: number,
                        object,
                    },
                    pos,
                ),
            );
        }
    }
}

/// What `slot` of an object of `holder` kind takes (for the message), and
/// whether `target` is that.
fn slot_accepts(holder: &ObjectKind, slot: Slot, target: &ObjectKind) -> (&'static str, bool) {
    let target_type = target.object_type();
    let frame_of =
        |size: FrameSize| matches!(target, ObjectKind::Frame { size: s, .. } if *s == size);
    match (holder, slot) {
        (ObjectKind::CNode { .. }, _) => ("any cap", true),
        (ObjectKind::Tcb(_), Slot::CSpace) => ("a CNode", target_type == ObjectType::CNode),
        (ObjectKind::Tcb(_), Slot::VSpace) => ("a PML4", target_type == ObjectType::Pml4),
        (ObjectKind::Tcb(_), _) => ("a 4k frame", frame_of(FrameSize::Small)),
        (ObjectKind::Pml4, _) => ("a PDPT", target_type == ObjectType::Pdpt),
        (ObjectKind::Pdpt, _) => (
            "a page directory (1 GiB pages are off)",
            target_type == ObjectType::PageDirectory,
        ),
        (ObjectKind::PageDirectory, _) => (
            "a page table or a 2M frame",
            target_type == ObjectType::PageTable || frame_of(FrameSize::Large),
        ),
        (ObjectKind::PageTable, _) => ("a 4k frame", frame_of(FrameSize::Small)),
        (ObjectKind::AsidPool { .. }, _) => ("a PML4", target_type == ObjectType::Pml4),
        // Only IRQs are left that hold caps (the caller checked): slot 0.
        _ => ("a notification", target_type == ObjectType::Notification),
    }
}
