//! Typed capabilities and the invocations on CNodes, untyped memory,
//! endpoints, notifications, I/O ports and IRQs.

use crate::ipc::{self, Message};
use crate::sys::constants::seL4_WordBits;
use crate::sys::invocation as label;
use crate::vspace::CapRights;
use crate::{CPtr, Error, Word};

macro_rules! capability {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub CPtr);

        impl $name {
            pub const fn cptr(self) -> CPtr {
                self.0
            }
        }
    )*};
}

capability!(
    /// A capability node: a table of capability slots.
    CNode,
    /// Untyped memory that can be retyped into kernel objects.
    Untyped,
    /// A synchronous IPC endpoint.
    Endpoint,
    /// An asynchronous notification word.
    Notification,
    /// A range of x86 I/O ports.
    IoPort,
    /// The right to create IRQ handler capabilities.
    IrqControl,
    /// One interrupt line.
    IrqHandler,
    /// A thread control block.
    Tcb,
    /// A 4 KiB or 2 MiB frame.
    Page,
    /// A page table (maps 2 MiB).
    PageTable,
    /// A page directory (maps 1 GiB).
    PageDirectory,
    /// A page-directory-pointer table (maps 512 GiB).
    Pdpt,
    /// A VSpace root (PML4).
    VSpace,
    /// A pool of address-space identifiers.
    AsidPool,
);

/// A slot in a CNode, named the way invocations name it: the CNode to start
/// from, an index and the number of bits to resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub root: CNode,
    pub index: Word,
    pub depth: u8,
}

impl CNode {
    /// A slot of this CNode when it is the caller's CSpace root, resolved
    /// with the full word (the root CNode's guard makes up the difference).
    pub const fn slot(self, index: Word) -> Slot {
        Slot {
            root: self,
            index,
            depth: seL4_WordBits as u8,
        }
    }
}

impl CNode {
    /// The CNode itself as a retype destination: with depth 0 the lookup
    /// stops at the root, so objects land in this CNode.
    pub const fn itself(self) -> Slot {
        Slot {
            root: self,
            index: 0,
            depth: 0,
        }
    }
}

impl Slot {
    /// Copies the capability in `src` here with (at most) `rights`.
    pub fn copy(self, src: Slot, rights: CapRights) -> Result<(), Error> {
        ipc::invoke(
            self.root.0,
            label::CNodeCopy,
            &[src.root.0],
            &[
                self.index,
                Word::from(self.depth),
                src.index,
                Word::from(src.depth),
                rights.word(),
            ],
        )
        .map(drop)
    }

    /// Moves the reply capability of the last call this thread received
    /// here (this slot must be empty), so the thread can receive again and
    /// reply later by sending on it.
    pub fn save_caller(self) -> Result<(), Error> {
        ipc::invoke(
            self.root.0,
            label::CNodeSaveCaller,
            &[],
            &[self.index, Word::from(self.depth)],
        )
        .map(drop)
    }

    /// Copies `src` here with `rights` and `badge` (28 bits in seL4 5.0.0:
    /// the badge travels as a `seL4_CapData` word).
    pub fn mint(self, src: Slot, rights: CapRights, badge: Word) -> Result<(), Error> {
        self.mint_data(src, rights, badge_data(badge)?)
    }

    /// Copies `src` here with `rights`, updated by the capability-data word
    /// `data` (a badge, a CNode guard, an I/O port range: see the `*_data`
    /// functions).
    pub fn mint_data(self, src: Slot, rights: CapRights, data: Word) -> Result<(), Error> {
        ipc::invoke(
            self.root.0,
            label::CNodeMint,
            &[src.root.0],
            &[
                self.index,
                Word::from(self.depth),
                src.index,
                Word::from(src.depth),
                rights.word(),
                data,
            ],
        )
        .map(drop)
    }

    /// Empties the slot.
    pub fn delete(self) -> Result<(), Error> {
        ipc::invoke(
            self.root.0,
            label::CNodeDelete,
            &[],
            &[self.index, Word::from(self.depth)],
        )
        .map(drop)
    }

    /// Deletes every capability derived from the one in this slot.
    pub fn revoke(self) -> Result<(), Error> {
        ipc::invoke(
            self.root.0,
            label::CNodeRevoke,
            &[],
            &[self.index, Word::from(self.depth)],
        )
        .map(drop)
    }
}

/// The capability data that badges an endpoint or notification capability.
pub fn badge_data(badge: Word) -> Result<Word, Error> {
    use crate::sys::bitfield::seL4_CapData_Badge as BADGE_TAG;
    use crate::sys::bitfield::{
        seL4_CapData_Badge_Badge as BADGE, seL4_CapData_Badge_CapDataType as TYPE,
    };
    if badge > BADGE.mask() {
        return Err(Error::InvalidArgument);
    }
    Ok(BADGE.set(TYPE.set(0, BADGE_TAG), badge))
}

/// The capability data that sets a CNode capability's guard.
pub fn guard_data(guard: Word, guard_size: u8) -> Result<Word, Error> {
    use crate::sys::bitfield::seL4_CapData_Guard as GUARD_TAG;
    use crate::sys::bitfield::{
        seL4_CapData_Guard_CapDataType as TYPE, seL4_CapData_Guard_GuardBits as BITS,
        seL4_CapData_Guard_GuardSize as SIZE,
    };
    if guard > BITS.mask() || Word::from(guard_size) > SIZE.mask() {
        return Err(Error::InvalidArgument);
    }
    Ok(SIZE.set(
        BITS.set(TYPE.set(0, GUARD_TAG), guard),
        Word::from(guard_size),
    ))
}

/// The capability data that narrows an I/O port capability to `first..=last`.
pub fn io_port_data(first: u16, last: u16) -> Word {
    use crate::sys::bitfield::{
        io_port_capdata_firstPort as FIRST, io_port_capdata_lastPort as LAST,
    };
    LAST.set(FIRST.set(0, Word::from(first)), Word::from(last))
}

impl AsidPool {
    /// Gives `vspace` an address-space identifier from this pool; a VSpace
    /// must have one before anything is mapped into it.
    pub fn assign(self, vspace: VSpace) -> Result<(), Error> {
        ipc::invoke(self.0, label::X86ASIDPoolAssign, &[vspace.0], &[]).map(drop)
    }
}

impl Untyped {
    /// Creates `count` objects of `object_type` (`size_bits` for variable
    /// sized ones), their capabilities in slots `offset..offset+count` of the
    /// CNode that `dest` names (`CNode::itself` for the root CNode).
    pub fn retype(
        self,
        object_type: Word,
        size_bits: Word,
        dest: Slot,
        offset: Word,
        count: Word,
    ) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::UntypedRetype,
            &[dest.root.0],
            &[
                object_type,
                size_bits,
                dest.index,
                Word::from(dest.depth),
                offset,
                count,
            ],
        )
        .map(drop)
    }
}

impl Endpoint {
    pub fn call(self, label: u64, words: &[Word]) -> Message {
        ipc::call(self.0, label, words)
    }

    pub fn send(self, label: u64, words: &[Word]) {
        ipc::send(self.0, label, words)
    }

    pub fn recv(self) -> Message {
        ipc::recv(self.0)
    }

    pub fn reply_recv(self, label: u64, words: &[Word]) -> Message {
        ipc::reply_recv(self.0, label, words)
    }
}

impl Notification {
    /// Sets the badge bits of this capability in the notification word.
    pub fn signal(self) {
        ipc::send(self.0, 0, &[]);
    }

    /// Blocks until signalled; returns the accumulated badge bits.
    pub fn wait(self) -> Word {
        ipc::recv(self.0).badge
    }

    /// Returns the accumulated badge bits without blocking (0: none).
    pub fn poll(self) -> Word {
        ipc::poll(self.0).badge
    }
}

impl IoPort {
    pub fn in8(self, port: u16) -> Result<u8, Error> {
        ipc::invoke(self.0, label::X86IOPortIn8, &[], &[Word::from(port)]).map(|m| m.mr[0] as u8)
    }

    pub fn in16(self, port: u16) -> Result<u16, Error> {
        ipc::invoke(self.0, label::X86IOPortIn16, &[], &[Word::from(port)]).map(|m| m.mr[0] as u16)
    }

    pub fn in32(self, port: u16) -> Result<u32, Error> {
        ipc::invoke(self.0, label::X86IOPortIn32, &[], &[Word::from(port)]).map(|m| m.mr[0] as u32)
    }

    pub fn out8(self, port: u16, value: u8) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::X86IOPortOut8,
            &[],
            &[Word::from(port), Word::from(value)],
        )
        .map(drop)
    }

    pub fn out16(self, port: u16, value: u16) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::X86IOPortOut16,
            &[],
            &[Word::from(port), Word::from(value)],
        )
        .map(drop)
    }

    pub fn out32(self, port: u16, value: u32) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::X86IOPortOut32,
            &[],
            &[Word::from(port), Word::from(value)],
        )
        .map(drop)
    }
}

/// How an IOAPIC pin signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Edge,
    Level,
}

/// The active level of an IOAPIC pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    ActiveHigh,
    ActiveLow,
}

impl IrqControl {
    /// Creates in `dest` a handler for IOAPIC `ioapic`'s `pin`, delivered to
    /// the kernel as user IRQ number `irq`.
    pub fn get_ioapic(
        self,
        dest: Slot,
        ioapic: Word,
        pin: Word,
        trigger: Trigger,
        polarity: Polarity,
        irq: Word,
    ) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::X86IRQIssueIRQHandlerIOAPIC,
            &[dest.root.0],
            &[
                dest.index,
                Word::from(dest.depth),
                ioapic,
                pin,
                Word::from(trigger == Trigger::Level),
                Word::from(polarity == Polarity::ActiveLow),
                irq,
            ],
        )
        .map(drop)
    }
}

impl IrqHandler {
    /// Delivers this interrupt as a signal on `notification`.
    pub fn set_notification(self, notification: Notification) -> Result<(), Error> {
        ipc::invoke(self.0, label::IRQSetIRQHandler, &[notification.0], &[]).map(drop)
    }

    /// Re-enables the interrupt after it was delivered.
    pub fn ack(self) -> Result<(), Error> {
        ipc::invoke(self.0, label::IRQAckIRQ, &[], &[]).map(drop)
    }

    pub fn clear(self) -> Result<(), Error> {
        ipc::invoke(self.0, label::IRQClearIRQHandler, &[], &[]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_data_words_follow_the_bitfield_layouts() {
        // Badge: tag 0 in bit 31, badge in bits 0-27.
        assert_eq!(badge_data(0x42), Ok(0x42));
        assert_eq!(badge_data(1 << 28), Err(Error::InvalidArgument));
        // Guard: tag 1 in bit 31, guard bits 8-25, guard size bits 2-7.
        assert_eq!(guard_data(0, 48), Ok((1 << 31) | (48 << 2)));
        assert_eq!(guard_data(1 << 18, 1), Err(Error::InvalidArgument));
        // I/O ports: first port in bits 16-31, last in bits 0-15.
        assert_eq!(io_port_data(0x3f8, 0x3ff), 0x03f8_03ff);
    }
}
