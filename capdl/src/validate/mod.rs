//! From syntax tree to [`Spec`]: resolves names and checks that the spec is
//! one seL4 5.0.0 (x86_64, previrt's config) can build. Every error is
//! collected; checking goes on after each.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::ast::{NameRef, ObjectDecl, ObjectParamValue, RangeAst, SpecAst, UntypedChild};
use crate::lexer::Pos;
use crate::model::{IoApicIrq, IrqRecord, ObjectKind, Slot, Tcb};
use crate::objects::{
    is_canonical, FrameSize, ObjectType, IPC_BUFFER_BITS, MAX_CNODE_BITS, MAX_INIT_ARGS,
    MAX_IO_PORT, MAX_PRIORITY, MAX_UNTYPED_BITS, MIN_CNODE_BITS, MIN_UNTYPED_BITS, NUM_NODES,
    PAGING_ENTRIES,
};
use crate::spec::{Fill, Object, Spec};

mod caps;
mod error;

pub use error::ValidateError;

/// At most this many objects in one spec, so that `f[100000000]` is an
/// error rather than an out-of-memory abort.
pub const MAX_OBJECTS: u128 = 1 << 20;
/// At most this many caps in one spec (counted as written, before checks),
/// so that `a[] { 0: b[] }` on huge arrays is an error, not a hang.
pub const MAX_CAPS: u128 = 1 << 22;
/// x86_64 ASID pools have `2^asidLowBits` = 512 entries.
const ASID_POOL_ENTRIES: u64 = 512;
/// Previrt's kernel config has one IOAPIC (`MAX_NUM_IOAPIC` 1) with 24 pins.
const IOAPIC_PINS: u128 = 24;

/// Resolves and checks `ast`. Returns the spec if there is no error.
pub fn validate(ast: &SpecAst) -> Result<Spec, Vec<(Pos, ValidateError)>> {
    let mut v = Validator::default();
    for decl in &ast.objects {
        v.declare(decl, None);
    }
    v.resolve_untyped_refs();
    let mut caps_left = MAX_CAPS;
    'blocks: for block in &ast.cap_blocks {
        let holders = v.resolve(&block.holder);
        for entry in &block.entries {
            let targets = v.resolve(&entry.target);
            let work = (holders.len() as u128) * (targets.len() as u128);
            if work > caps_left {
                v.error(entry.slot_pos, ValidateError::TooManyCaps);
                break 'blocks;
            }
            caps_left -= work;
            for &holder in &holders {
                v.add_cap(holder, entry, &targets);
            }
        }
    }
    for mapping in &ast.irq_maps {
        v.add_irq(mapping.irq, mapping.pos, &mapping.target);
    }
    v.check_whole();
    if v.errors.is_empty() {
        let mut irqs: Vec<IrqRecord> = v.irqs.values().map(|(record, _)| *record).collect();
        irqs.sort_by_key(|r| r.irq);
        Ok(Spec {
            objects: v.objects,
            irqs,
        })
    } else {
        v.errors.sort_by_key(|(pos, _)| *pos);
        Err(v.errors)
    }
}

/// A declared name: a single object or an array.
struct NameEntry {
    first: u32,
    len: Option<u32>,
    pos: Pos,
}

#[derive(Default)]
struct Validator {
    objects: Vec<Object>,
    /// Where each object was declared.
    decl_pos: Vec<Pos>,
    /// Objects whose declaration had an error (already reported): checks
    /// that involve them are skipped, so one mistake gives one message.
    broken: Vec<bool>,
    names: HashMap<String, NameEntry>,
    /// Untyped references to resolve once every name is declared.
    untyped_refs: Vec<(u32, NameRef)>,
    /// Every (holder, slot) and IRQ object some statement tried to fill,
    /// even if it failed: only a slot no statement names is "missing".
    attempted_slots: HashSet<(u32, Slot)>,
    attempted_irqs: HashSet<u32>,
    /// Where each slot was filled, for "filled twice".
    slot_pos: HashMap<(u32, Slot), Pos>,
    /// Where each paging structure was mapped.
    mapped_at: HashMap<u32, Pos>,
    /// IRQ objects by index: their record and where it was given.
    irqs: BTreeMap<u32, (IrqRecord, Pos)>,
    irq_numbers: HashMap<u32, u32>,
    errors: Vec<(Pos, ValidateError)>,
}

fn param_key(value: &ObjectParamValue) -> &str {
    match value {
        ObjectParamValue::Bits(_) => "bits",
        ObjectParamValue::VmSize(_) => "size",
        ObjectParamValue::Number(key, _)
        | ObjectParamValue::Name(key, _)
        | ObjectParamValue::List(key, _) => key,
        ObjectParamValue::Ports(..) => "ports",
        ObjectParamValue::Fill(_) => "fill",
    }
}

/// The parameters each type takes, by key.
fn allowed_params(object_type: ObjectType) -> &'static [&'static str] {
    match object_type {
        ObjectType::Untyped => &["bits", "paddr"],
        ObjectType::Frame => &["size", "paddr", "fill"],
        ObjectType::CNode => &["bits"],
        ObjectType::AsidPool => &["asid_high"],
        ObjectType::Tcb => &[
            "addr", "ip", "sp", "prio", "max_prio", "affinity", "elf", "init", "fault_ep",
        ],
        ObjectType::IoApicIrq => &[
            "ioapic_num",
            "ioapic_pin",
            "ioapic_level",
            "ioapic_polarity",
        ],
        ObjectType::IoPorts => &["ports"],
        ObjectType::PageTable
        | ObjectType::PageDirectory
        | ObjectType::Pdpt
        | ObjectType::Pml4
        | ObjectType::Endpoint
        | ObjectType::Notification => &[],
    }
}

/// The parameters of one declaration, checked for unknown and duplicate keys.
struct Params<'d> {
    by_key: HashMap<&'d str, (&'d ObjectParamValue, Pos)>,
}

impl Params<'_> {
    fn get(&self, key: &str) -> Option<(&ObjectParamValue, Pos)> {
        self.by_key.get(key).copied()
    }
}

impl Validator {
    fn error(&mut self, pos: Pos, error: ValidateError) {
        self.errors.push((pos, error));
    }

    fn number(&mut self, pos: Pos, what: &'static str, value: u128, max: u128) -> Option<u128> {
        if value > max {
            self.error(pos, ValidateError::TooLarge { what, value, max });
            None
        } else {
            Some(value)
        }
    }

    fn u64_value(&mut self, pos: Pos, what: &'static str, value: u128) -> Option<u64> {
        self.number(pos, what, value, u128::from(u64::MAX))
            .and_then(|v| u64::try_from(v).ok())
    }

    fn declare(&mut self, decl: &ObjectDecl, parent: Option<u32>) {
        let kind = self.object_kind(decl);
        let len = match decl.count {
            None => None,
            Some((n, pos)) => match u32::try_from(n) {
                Ok(n) if u128::from(n) + (self.objects.len() as u128) <= MAX_OBJECTS => Some(n),
                _ => {
                    self.error(pos, ValidateError::TooManyObjects);
                    return;
                }
            },
        };
        if self.objects.len() as u128 >= MAX_OBJECTS {
            self.error(decl.pos, ValidateError::TooManyObjects);
            return;
        }
        if let Some(first) = self.names.get(&decl.name) {
            let first = first.pos;
            self.error(
                decl.pos,
                ValidateError::DuplicateName {
                    name: decl.name.clone(),
                    first,
                },
            );
            return;
        }
        let first = self.objects.len() as u32;
        self.names.insert(
            decl.name.clone(),
            NameEntry {
                first,
                len,
                pos: decl.pos,
            },
        );
        let (elf, fills) = self.elf_and_fills(decl, kind.as_ref());
        let broken = kind.is_none();
        let kind = kind.unwrap_or(ObjectKind::Endpoint);
        let indices: Vec<Option<u32>> = match len {
            None => vec![None],
            Some(n) => (0..n).map(Some).collect(),
        };
        for index in indices {
            self.objects.push(Object {
                name: decl.name.clone(),
                index,
                kind: kind.clone(),
                untyped: parent,
                elf: elf.clone(),
                fills: fills.clone(),
                slots: BTreeMap::new(),
            });
            self.decl_pos.push(decl.pos);
            self.broken.push(broken);
        }
        if decl.children_pos.is_some() && kind.object_type() != ObjectType::Untyped {
            self.error(
                decl.children_pos.unwrap_or(decl.pos),
                ValidateError::ChildrenOnNonUntyped(decl.name.clone()),
            );
            return;
        }
        if decl.count.is_some() && !decl.children.is_empty() {
            self.error(
                decl.children_pos.unwrap_or(decl.pos),
                ValidateError::ChildrenOnUntypedArray(decl.name.clone()),
            );
            return;
        }
        for child in &decl.children {
            match child {
                UntypedChild::Decl(child_decl) => self.declare(child_decl, Some(first)),
                UntypedChild::Ref(name_ref) => self.untyped_refs.push((first, name_ref.clone())),
            }
        }
    }

    fn collect_params<'d>(&mut self, decl: &'d ObjectDecl, object_type: ObjectType) -> Params<'d> {
        let allowed = allowed_params(object_type);
        let mut by_key = HashMap::new();
        for param in &decl.params {
            let key = param_key(&param.value);
            if !allowed.contains(&key) {
                self.error(
                    param.pos,
                    ValidateError::UnknownParam {
                        object_type: object_type.with_article(),
                        param: key.to_string(),
                    },
                );
            } else if by_key.insert(key, (&param.value, param.pos)).is_some() {
                self.error(param.pos, ValidateError::DuplicateParam(key.to_string()));
            }
        }
        Params { by_key }
    }

    fn param_number(
        &mut self,
        params: &Params<'_>,
        key: &'static str,
        max: u128,
    ) -> Option<Option<u128>> {
        match params.get(key) {
            Some((ObjectParamValue::Number(_, n), pos)) => self.number(pos, key, *n, max).map(Some),
            _ => Some(None),
        }
    }

    fn required(
        &mut self,
        decl: &ObjectDecl,
        object_type: ObjectType,
        param: &'static str,
    ) -> Option<ObjectKind> {
        self.error(
            decl.type_pos,
            ValidateError::MissingParam {
                object_type: object_type.with_article(),
                param,
            },
        );
        None
    }

    /// The object's kind, if its type and parameters are legal.
    fn object_kind(&mut self, decl: &ObjectDecl) -> Option<ObjectKind> {
        let Some(object_type) = ObjectType::from_keyword(&decl.type_name) else {
            let error = if decl.type_name == "irq" {
                ValidateError::PlainIrq
            } else {
                ValidateError::UnknownObjectType(decl.type_name.clone())
            };
            self.error(decl.type_pos, error);
            return None;
        };
        let params = self.collect_params(decl, object_type);
        let paddr = |v: &mut Self, align_bits: u8| -> Option<Option<u64>> {
            let Some((ObjectParamValue::Number(_, n), pos)) = params.get("paddr") else {
                return Some(None);
            };
            let addr = v.u64_value(pos, "paddr", *n)?;
            let align = 1u64 << align_bits;
            if addr % align != 0 {
                v.error(
                    pos,
                    ValidateError::Misaligned {
                        what: "paddr",
                        value: addr,
                        align,
                    },
                );
                return None;
            }
            Some(Some(addr))
        };
        let kind = match object_type {
            ObjectType::Untyped | ObjectType::CNode => {
                let Some((ObjectParamValue::Bits(bits), pos)) = params.get("bits") else {
                    return self.required(decl, object_type, "a size (`N bits`)");
                };
                let (min, max) = if object_type == ObjectType::Untyped {
                    (MIN_UNTYPED_BITS, MAX_UNTYPED_BITS)
                } else {
                    (MIN_CNODE_BITS, MAX_CNODE_BITS)
                };
                let size_bits = match u8::try_from(*bits) {
                    Ok(b) if (min..=max).contains(&b) => b,
                    _ => {
                        self.error(
                            pos,
                            ValidateError::BadSizeBits {
                                object_type: object_type.with_article(),
                                bits: *bits,
                                min,
                                max,
                            },
                        );
                        return None;
                    }
                };
                if object_type == ObjectType::Untyped {
                    ObjectKind::Untyped {
                        size_bits,
                        paddr: paddr(self, size_bits)?,
                    }
                } else {
                    ObjectKind::CNode { size_bits }
                }
            }
            ObjectType::Frame => {
                let Some((ObjectParamValue::VmSize(bytes), pos)) = params.get("size") else {
                    return self.required(decl, object_type, "a size (`4k` or `2M`)");
                };
                let Some(size) = u64::try_from(*bytes).ok().and_then(FrameSize::from_bytes) else {
                    self.error(pos, ValidateError::BadFrameSize(*bytes));
                    return None;
                };
                ObjectKind::Frame {
                    size,
                    paddr: paddr(self, size.bits())?,
                }
            }
            ObjectType::PageTable => ObjectKind::PageTable,
            ObjectType::PageDirectory => ObjectKind::PageDirectory,
            ObjectType::Pdpt => ObjectKind::Pdpt,
            ObjectType::Pml4 => ObjectKind::Pml4,
            ObjectType::Endpoint => ObjectKind::Endpoint,
            ObjectType::Notification => ObjectKind::Notification,
            ObjectType::AsidPool => {
                let asid_high = self.param_number(&params, "asid_high", u128::from(u64::MAX))?;
                ObjectKind::AsidPool {
                    asid_high: asid_high.map(|n| n as u64),
                }
            }
            ObjectType::Tcb => ObjectKind::Tcb(self.tcb(&params)?),
            ObjectType::IoApicIrq => {
                let Some(pin) = self.param_number(&params, "ioapic_pin", IOAPIC_PINS - 1)? else {
                    return self.required(decl, object_type, "`ioapic_pin:`");
                };
                let ioapic = self.param_number(&params, "ioapic_num", 0)?.unwrap_or(0);
                let level = self.param_number(&params, "ioapic_level", 1)?.unwrap_or(0);
                let polarity = self
                    .param_number(&params, "ioapic_polarity", 1)?
                    .unwrap_or(0);
                // Each is at most 23 here, so the casts are exact.
                ObjectKind::IoApicIrq(IoApicIrq {
                    ioapic: ioapic as u32,
                    pin: pin as u32,
                    level: level as u32,
                    polarity: polarity as u32,
                })
            }
            ObjectType::IoPorts => {
                let Some((ObjectParamValue::Ports(first, last), pos)) = params.get("ports") else {
                    return self.required(decl, object_type, "`ports: [first..last]`");
                };
                let max = u128::from(MAX_IO_PORT);
                if first > last || *last > max {
                    self.error(
                        pos,
                        ValidateError::BadPortRange {
                            first: *first,
                            last: *last,
                        },
                    );
                    return None;
                }
                ObjectKind::IoPorts {
                    first: *first as u16,
                    last: *last as u16,
                }
            }
        };
        Some(kind)
    }

    fn tcb(&mut self, params: &Params<'_>) -> Option<Tcb> {
        let word = u128::from(u64::MAX);
        let ipc_buffer_addr = self.param_number(params, "addr", word)?.unwrap_or(0) as u64;
        let align = 1u64 << IPC_BUFFER_BITS;
        if ipc_buffer_addr % align != 0 {
            let pos = params.get("addr").map(|p| p.1).unwrap_or_default();
            self.error(
                pos,
                ValidateError::Misaligned {
                    what: "IPC buffer address",
                    value: ipc_buffer_addr,
                    align,
                },
            );
            return None;
        }
        let ip = self.param_number(params, "ip", word)?.unwrap_or(0) as u64;
        let sp = self.param_number(params, "sp", word)?.unwrap_or(0) as u64;
        let max_prio = u128::from(MAX_PRIORITY);
        let prio = self.param_number(params, "prio", max_prio)?.unwrap_or(0) as u8;
        let max_prio = self
            .param_number(params, "max_prio", max_prio)?
            .unwrap_or(0) as u8;
        let last_node = u128::from(NUM_NODES - 1);
        let affinity = self
            .param_number(params, "affinity", last_node)?
            .unwrap_or(0) as u8;
        let fault_ep = self
            .param_number(params, "fault_ep", word)?
            .map(|n| n as u64);
        let mut init = heapless::Vec::new();
        if let Some((ObjectParamValue::List(_, values), pos)) = params.get("init") {
            if values.len() > MAX_INIT_ARGS {
                self.error(pos, ValidateError::TooManyInitArgs(values.len()));
                return None;
            }
            for &value in values {
                let value = self.u64_value(pos, "init argument", value)?;
                // Cannot fail: the length was checked above.
                init.push(value).ok()?;
            }
        }
        Some(Tcb {
            ipc_buffer_addr,
            ip,
            sp,
            prio,
            max_prio,
            affinity,
            fault_ep,
            init,
        })
    }

    fn elf_and_fills(
        &mut self,
        decl: &ObjectDecl,
        kind: Option<&ObjectKind>,
    ) -> (Option<String>, Vec<Fill>) {
        let mut elf = None;
        let mut fills = Vec::new();
        for param in &decl.params {
            match &param.value {
                ObjectParamValue::Name(key, name) if key == "elf" => elf = Some(name.clone()),
                ObjectParamValue::Fill(list) => {
                    let Some(ObjectKind::Frame { size, .. }) = kind else {
                        continue;
                    };
                    let frame_bytes = size.bytes();
                    for fill in list {
                        let end = fill.dest_offset.saturating_add(fill.length);
                        if end > u128::from(frame_bytes) {
                            self.error(
                                fill.pos,
                                ValidateError::FillOutOfFrame {
                                    offset: fill.dest_offset,
                                    length: fill.length,
                                    size: frame_bytes,
                                },
                            );
                            continue;
                        }
                        let Some(file_offset) =
                            self.u64_value(fill.pos, "file offset", fill.file_offset)
                        else {
                            continue;
                        };
                        fills.push(Fill {
                            dest_offset: fill.dest_offset as u64,
                            length: fill.length as u64,
                            file: fill.file.clone(),
                            file_offset,
                        });
                    }
                }
                _ => {}
            }
        }
        (elf, fills)
    }

    /// The objects a reference names; reports and returns none if it names
    /// nothing.
    fn resolve(&mut self, name_ref: &NameRef) -> Vec<u32> {
        let Some(entry) = self.names.get(&name_ref.name) else {
            self.error(
                name_ref.pos,
                ValidateError::UnknownName(name_ref.name.clone()),
            );
            return Vec::new();
        };
        let (first, len) = (entry.first, entry.len);
        match (&name_ref.ranges, len) {
            (None, None) => vec![first],
            (None, Some(len)) => {
                self.error(
                    name_ref.pos,
                    ValidateError::ArrayNeedsIndex {
                        name: name_ref.name.clone(),
                        len,
                    },
                );
                Vec::new()
            }
            (Some(_), None) => {
                self.error(
                    name_ref.pos,
                    ValidateError::NotAnArray(name_ref.name.clone()),
                );
                Vec::new()
            }
            (Some(ranges), Some(len)) => {
                if ranges.is_empty() {
                    return (first..first + len).collect();
                }
                let mut out = Vec::new();
                for range in ranges {
                    let (lo, hi) = match *range {
                        RangeAst::Only(i) => (i, i),
                        RangeAst::FromTo(a, b) => (a, b),
                        RangeAst::From(a) => (a, u128::from(len).saturating_sub(1)),
                        RangeAst::To(b) => (0, b),
                    };
                    let bad = if hi >= u128::from(len) {
                        Some(hi)
                    } else if lo >= u128::from(len) {
                        Some(lo)
                    } else {
                        None
                    };
                    if let Some(index) = bad {
                        self.error(
                            name_ref.pos,
                            ValidateError::IndexOutOfRange {
                                name: name_ref.name.clone(),
                                index,
                                len,
                            },
                        );
                        return Vec::new();
                    }
                    // Both are below len, a u32.
                    out.extend((lo..=hi).map(|i| first + i as u32));
                }
                out
            }
        }
    }

    fn resolve_untyped_refs(&mut self) {
        let refs = std::mem::take(&mut self.untyped_refs);
        // Where each covering was written, to point at it if it closes a cycle.
        let mut covered_at: HashMap<u32, Pos> = HashMap::new();
        for (ut, name_ref) in &refs {
            for child in self.resolve(name_ref) {
                let object = &self.objects[child as usize];
                if object.kind.size_bits().is_none() && !self.broken[child as usize] {
                    let error = ValidateError::NotFromUntyped {
                        name: object.display_name(),
                        object_type: object.kind.object_type().with_article(),
                    };
                    self.error(name_ref.pos, error);
                    continue;
                }
                if let Some(first) = object.untyped {
                    let error = ValidateError::CoveredTwice {
                        name: object.display_name(),
                        first: self.objects[first as usize].display_name(),
                    };
                    self.error(name_ref.pos, error);
                    continue;
                }
                self.objects[child as usize].untyped = Some(*ut);
                covered_at.insert(child, name_ref.pos);
            }
        }
        // Cycles: walk up from each object, colouring what the walk has
        // seen, so every object is walked once (linear however deep).
        const NEW: u8 = 0;
        const ON_PATH: u8 = 1;
        const DONE: u8 = 2;
        let mut state = vec![NEW; self.objects.len()];
        for start in 0..self.objects.len() {
            let mut path = Vec::new();
            let mut at = Some(start as u32);
            while let Some(object) = at {
                match state[object as usize] {
                    DONE => break,
                    ON_PATH => {
                        // `object` covers, through the path, itself: cut the
                        // edge that closed the loop and report it there.
                        let last = *path.last().unwrap_or(&object);
                        self.objects[last as usize].untyped = None;
                        let pos = covered_at.get(&last).copied().unwrap_or_default();
                        let name = self.objects[object as usize].display_name();
                        self.error(pos, ValidateError::UntypedCycle(name));
                        break;
                    }
                    _ => {
                        state[object as usize] = ON_PATH;
                        path.push(object);
                        at = self.objects[object as usize].untyped;
                    }
                }
            }
            for object in path {
                state[object as usize] = DONE;
            }
        }
    }

    /// The object mapped at `addr` in the VSpace rooted at `root`: the 4k
    /// frame of a page table entry, or the 2M frame of a page directory
    /// entry.
    fn mapped_at(&self, root: u32, addr: u64) -> Option<u32> {
        // The walk ignores bits 48..64: a non-canonical address would alias
        // a canonical one, but nothing can be mapped there.
        if !is_canonical(addr) {
            return None;
        }
        let mut table = root;
        for shift in [39u32, 30, 21, 12] {
            let slot = Slot::Index((addr >> shift) & (PAGING_ENTRIES - 1));
            let next = self.objects[table as usize].slots.get(&slot)?.target;
            if let ObjectKind::Frame { .. } = self.objects[next as usize].kind {
                return Some(next);
            }
            table = next;
        }
        None
    }

    /// A thread's IPC buffer frame must be mapped in its own VSpace at its
    /// IPC buffer address, or its first IPC faults.
    fn ipc_buffer_error(&self, object: &Object, addr: u64) -> Option<ValidateError> {
        let frame = object.slots.get(&Slot::IpcBuffer)?.target;
        let root = object.slots.get(&Slot::VSpace)?.target;
        let found = self.mapped_at(root, addr);
        if found == Some(frame) {
            return None;
        }
        Some(ValidateError::IpcBufferNotMapped {
            tcb: object.display_name(),
            addr,
            frame: self.objects[frame as usize].display_name(),
            found: match found {
                Some(other) => format!("`{}`", self.objects[other as usize].display_name()),
                None => "nothing".into(),
            },
        })
    }

    /// Checks that need the whole spec.
    fn check_whole(&mut self) {
        let mut ports: Vec<(u16, u16, u32)> = Vec::new();
        let mut needed: HashMap<u32, u128> = HashMap::new();
        for (index, object) in self.objects.iter().enumerate() {
            if self.broken[index] {
                continue;
            }
            let pos = self.decl_pos[index];
            let index = index as u32;
            match &object.kind {
                ObjectKind::Tcb(tcb) => {
                    if let Some(error) = self.ipc_buffer_error(object, tcb.ipc_buffer_addr) {
                        self.errors.push((pos, error));
                    }
                    for (slot, name) in [(Slot::CSpace, "cspace"), (Slot::VSpace, "vspace")] {
                        if !self.attempted_slots.contains(&(index, slot)) {
                            self.errors.push((
                                pos,
                                ValidateError::TcbMissingSlot {
                                    tcb: object.display_name(),
                                    slot: name,
                                },
                            ));
                        }
                    }
                }
                ObjectKind::IoApicIrq(_) if !self.attempted_irqs.contains(&index) => {
                    self.errors
                        .push((pos, ValidateError::IrqNotMapped(object.display_name())));
                }
                ObjectKind::IoPorts { first, last } => ports.push((*first, *last, index)),
                _ => {}
            }
            if let (Some(parent), Some(bits)) = (object.untyped, object.kind.size_bits()) {
                *needed.entry(parent).or_default() += 1u128 << bits;
            }
        }
        // Sizes are powers of two: placed largest first, each is aligned
        // with no padding, so the children fit exactly when their sum does.
        let mut needed: Vec<(u32, u128)> = needed.into_iter().collect();
        needed.sort_unstable();
        for (parent, needed) in needed {
            let object = &self.objects[parent as usize];
            let Some(bits) = object.kind.size_bits() else {
                continue;
            };
            let available = 1u128 << bits;
            if needed > available {
                let error = ValidateError::UntypedTooSmall {
                    name: object.display_name(),
                    needed,
                    available,
                };
                self.errors.push((self.decl_pos[parent as usize], error));
            }
        }
        ports.sort_unstable();
        for pair in ports.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.0 <= a.1 {
                let error = ValidateError::PortOverlap {
                    first: b.0,
                    last: b.1,
                    other: self.objects[a.2 as usize].display_name(),
                };
                self.errors.push((self.decl_pos[b.2 as usize], error));
            }
        }
    }
}

/// Small numbers in decimal, large ones (addresses, badges) in hex.
fn number_text(n: u128) -> String {
    if n < 0x10000 {
        n.to_string()
    } else {
        format!("{n:#x}")
    }
}

/// A slot as the text writes it.
pub fn slot_text(slot: Slot) -> String {
    match slot {
        Slot::CSpace => "cspace".into(),
        Slot::VSpace => "vspace".into(),
        Slot::IpcBuffer => "ipc_buffer_slot".into(),
        Slot::Index(n) => format!("{n:#x}"),
    }
}
