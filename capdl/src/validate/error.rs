//! The errors of meaning a spec can have.

use crate::lexer::Pos;
use crate::objects::MAX_INIT_ARGS;

use super::{number_text, MAX_CAPS, MAX_OBJECTS};

/// What can be wrong with the meaning of a spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidateError {
    /// A type keyword not in the subset.
    #[error("unknown object type `{0}` (types: ut, frame, pt, pd, pdpt, pml4, asid_pool, cnode, tcb, ep, notification, ioapic_irq, io_ports)")]
    UnknownObjectType(String),
    /// `irq`, which needs `IRQControl_Get`, refused with IRQ_IOAPIC.
    #[error("`irq` objects are not supported: previrt's kernel routes IRQs through the IOAPIC, declare `ioapic_irq (ioapic_pin: N)`")]
    PlainIrq,
    /// A parameter this type does not take.
    #[error("{object_type} takes no parameter `{param}`")]
    UnknownParam {
        /// The type, as in messages.
        object_type: &'static str,
        /// The parameter.
        param: String,
    },
    /// The same parameter twice.
    #[error("parameter `{0}` is given twice")]
    DuplicateParam(String),
    /// A required parameter is missing.
    #[error("{object_type} needs {param}")]
    MissingParam {
        /// The type.
        object_type: &'static str,
        /// What is missing, as it would be written.
        param: &'static str,
    },
    /// A number larger than its field allows.
    #[error("{what} {} is too large (at most {})", number_text(*.value), number_text(*.max))]
    TooLarge {
        /// The field.
        what: &'static str,
        /// The value.
        value: u128,
        /// The largest legal value.
        max: u128,
    },
    /// An untyped or CNode size out of seL4's range.
    #[error("{object_type} of {bits} bits is not possible: seL4 allows {min} to {max}")]
    BadSizeBits {
        /// The type.
        object_type: &'static str,
        /// The size given.
        bits: u128,
        /// Smallest legal.
        min: u8,
        /// Largest legal.
        max: u8,
    },
    /// A frame size other than 4k and 2M.
    #[error("a frame is 4k or 2M, not {0:#x} bytes")]
    BadFrameSize(u128),
    /// An address not aligned as seL4 needs.
    #[error("{what} {value:#x} is not aligned to {align:#x}")]
    Misaligned {
        /// The field.
        what: &'static str,
        /// The address.
        value: u64,
        /// The alignment.
        align: u64,
    },
    /// `ports: [a..b]` with b < a or past 0xffff.
    #[error("port range {first:#x}..{last:#x} is not a range of x86 I/O ports (0 to 0xffff, first <= last)")]
    BadPortRange {
        /// First port.
        first: u128,
        /// Last port.
        last: u128,
    },
    /// Two `io_ports` objects share a port.
    #[error(
        "ports {first:#x}..{last:#x} overlap those of `{other}` (the kernel issues each port once)"
    )]
    PortOverlap {
        /// First port of this range.
        first: u16,
        /// Last port of this range.
        last: u16,
        /// The other object.
        other: String,
    },
    /// A frame fill that runs past the frame.
    #[error("fill of {length:#x} bytes at offset {offset:#x} runs past the end of the {size:#x}-byte frame")]
    FillOutOfFrame {
        /// Offset in the frame.
        offset: u128,
        /// Bytes.
        length: u128,
        /// The frame's size.
        size: u64,
    },
    /// More `init` arguments than argument registers.
    #[error("{0} init arguments, but a thread has {MAX_INIT_ARGS} argument registers")]
    TooManyInitArgs(usize),
    /// A name declared twice.
    #[error("`{name}` is already declared at {first}")]
    DuplicateName {
        /// The name.
        name: String,
        /// Where it was first declared.
        first: Pos,
    },
    /// More objects than [`MAX_OBJECTS`].
    #[error("the spec declares more than {MAX_OBJECTS} objects")]
    TooManyObjects,
    /// More caps than [`MAX_CAPS`].
    #[error("the spec has more than {MAX_CAPS} caps (caps after this one are not checked)")]
    TooManyCaps,
    /// A name no object has.
    #[error("no object is named `{0}`")]
    UnknownName(String),
    /// `name[i]` where `name` is a single object.
    #[error("`{0}` is not an array")]
    NotAnArray(String),
    /// An array named where one object is needed.
    #[error(
        "`{name}` is an array of {len}: name an element (`{name}[0]`) or elements (`{name}[]`)"
    )]
    ArrayNeedsIndex {
        /// The array.
        name: String,
        /// Its length.
        len: u32,
    },
    /// `name[i]` past the end.
    #[error("`{name}[{index}]` is past the end of the array (length {len})")]
    IndexOutOfRange {
        /// The array.
        name: String,
        /// The index.
        index: u128,
        /// The length.
        len: u32,
    },
    /// Several objects where one is needed.
    #[error("{what} is one object, but `{name}` names {count}")]
    OneObjectNeeded {
        /// The place.
        what: &'static str,
        /// The reference.
        name: String,
        /// How many it names.
        count: usize,
    },
    /// Children on an object that is not an untyped.
    #[error("only untypeds cover other objects, and `{0}` is not one")]
    ChildrenOnNonUntyped(String),
    /// Children on an array of untypeds.
    #[error("untyped array `{0}` cannot cover objects: declare single untypeds for that")]
    ChildrenOnUntypedArray(String),
    /// An object covered by two untypeds.
    #[error("`{name}` is already covered by untyped `{first}`")]
    CoveredTwice {
        /// The object.
        name: String,
        /// The first untyped.
        first: String,
    },
    /// An object that is not made from untyped memory, covered by an untyped.
    #[error("`{name}` is {object_type}, which the kernel issues without untyped memory")]
    NotFromUntyped {
        /// The object.
        name: String,
        /// Its type.
        object_type: &'static str,
    },
    /// An untyped that covers itself, directly or not.
    #[error("untyped `{0}` covers itself")]
    UntypedCycle(String),
    /// Children that need more memory than the untyped has.
    #[error(
        "the objects untyped `{name}` covers need {needed:#x} bytes, but it has {available:#x}"
    )]
    UntypedTooSmall {
        /// The untyped.
        name: String,
        /// Bytes the children need.
        needed: u128,
        /// Bytes the untyped has.
        available: u128,
    },
    /// Caps in an object that holds none.
    #[error("`{name}` is {object_type}, which holds no caps")]
    HoldsNoCaps {
        /// The object.
        name: String,
        /// Its type.
        object_type: &'static str,
    },
    /// A named slot in something other than a TCB.
    #[error("`{slot}` is a TCB slot, but `{holder}` is {object_type}")]
    NamedSlotOutsideTcb {
        /// The slot.
        slot: String,
        /// The holder.
        holder: String,
        /// The holder's type.
        object_type: &'static str,
    },
    /// A slot name that does not exist.
    #[error("unknown slot `{0}` (TCB slots: cspace, vspace, ipc_buffer_slot)")]
    UnknownSlotName(String),
    /// A numbered slot in a TCB.
    #[error("TCB slots are named: cspace, vspace, ipc_buffer_slot")]
    NumberedSlotInTcb,
    /// A slot past the end of the holder.
    #[error("slot {slot} is outside `{holder}`, which has {limit} slots")]
    SlotOutOfRange {
        /// The slot.
        slot: u128,
        /// The holder.
        holder: String,
        /// How many slots it has.
        limit: u64,
    },
    /// A user mapping in seL4's own PML4 entry.
    #[error("PML4 slot {0} is seL4's own entry (0xffff800000000000..0xffff808000000000): a user may map every slot but 256")]
    Sel4Pml4Entry(u64),
    /// A slot filled twice.
    #[error("slot {slot} of `{holder}` is already filled at {first}")]
    SlotFilledTwice {
        /// The slot.
        slot: String,
        /// The holder.
        holder: String,
        /// Where it was first filled.
        first: Pos,
    },
    /// A cap of the wrong kind for a slot.
    #[error("{place} takes {expected}, not `{target}` ({found})")]
    WrongCapForSlot {
        /// The slot, described.
        place: String,
        /// What it takes.
        expected: &'static str,
        /// The cap's object.
        target: String,
        /// That object's type.
        found: String,
    },
    /// A paging structure mapped in two places.
    #[error("`{name}` is already mapped at {first}: seL4 maps a paging structure once")]
    MappedTwice {
        /// The paging structure.
        name: String,
        /// Where it was first mapped.
        first: Pos,
    },
    /// A frame mapped with no read right.
    #[error("frame `{0}` is mapped without `R`: x86_64 pages are always readable")]
    UnreadableMapping(String),
    /// Rights the cap's object does not have.
    #[error("a cap to {object_type} cannot have right `{right}` (allowed: {allowed})")]
    BadRights {
        /// The target type.
        object_type: &'static str,
        /// The offending letter.
        right: char,
        /// The letters allowed.
        allowed: String,
    },
    /// A badge on a cap that cannot carry one.
    #[error("only endpoint and notification caps carry a badge, not a cap to {0}")]
    BadgeNotAllowed(&'static str),
    /// A guard on a cap that is not a CNode cap.
    #[error("only CNode caps have a guard, not a cap to {0}")]
    GuardNotAllowed(&'static str),
    /// A guard larger than its size.
    #[error("guard {guard:#x} does not fit in {guard_size} bits")]
    GuardTooLarge {
        /// The guard.
        guard: u64,
        /// Its size.
        guard_size: u8,
    },
    /// Guard and radix that resolve more than a word.
    #[error("guard_size {guard_size} + radix {radix} of `{cnode}` is more than 64 bits")]
    GuardTooLong {
        /// The guard size.
        guard_size: u8,
        /// The CNode's radix.
        radix: u8,
        /// The CNode.
        cnode: String,
    },
    /// `cached`/`uncached` on a cap that is not a frame cap.
    #[error("only frame caps are `cached` or `uncached`, not a cap to {0}")]
    CachingNotAllowed(&'static str),
    /// A cap parameter the subset does not know.
    #[error(
        "unknown cap parameter `{0}` (known: rights, badge, guard, guard_size, cached, uncached)"
    )]
    UnknownCapParam(String),
    /// A TCB without one of its required slots.
    #[error("TCB `{tcb}` has no `{slot}`: every thread needs a CSpace and a VSpace")]
    TcbMissingSlot {
        /// The TCB.
        tcb: String,
        /// The slot.
        slot: &'static str,
    },
    /// An IPC buffer frame that is not where the TCB says it is.
    #[error("the IPC buffer of TCB `{tcb}` is at {addr:#x}, but its VSpace maps {found} there, not `{frame}`")]
    IpcBufferNotMapped {
        /// The TCB.
        tcb: String,
        /// Its IPC buffer address.
        addr: u64,
        /// The frame in its `ipc_buffer_slot`.
        frame: String,
        /// What the VSpace has at the address.
        found: String,
    },
    /// An IRQ object without a number.
    #[error("IRQ `{0}` has no number in `irq maps`")]
    IrqNotMapped(String),
    /// An IRQ object with two numbers.
    #[error("IRQ `{name}` already has number {first}")]
    IrqMappedTwice {
        /// The IRQ object.
        name: String,
        /// Its first number.
        first: u32,
    },
    /// An IRQ number given twice.
    #[error("IRQ number {irq} is already given to `{first}`")]
    IrqNumberTaken {
        /// The number.
        irq: u32,
        /// The object that has it.
        first: String,
    },
    /// An `irq maps` entry naming something other than an IRQ.
    #[error("`{name}` is {object_type}, not an IRQ")]
    NotAnIrq {
        /// The object.
        name: String,
        /// Its type.
        object_type: &'static str,
    },
}
