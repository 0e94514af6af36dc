//! A small safe layer over the generated seL4 bindings.
//!
//! Capabilities are typed newtypes over capability addresses; every
//! invocation returns `Result<_, Error>` with the kernel's error code. The
//! marshalling of each invocation follows the parameter order of the kernel's
//! interface XML, as the kernel's own stub generator packs it (one message
//! register per parameter, capability parameters as extra caps).
#![no_std]

pub mod cap;
pub mod cpu;
pub mod debug;
mod error;
pub mod ipc;
mod root_task;
pub mod serial;
pub mod tcb;
pub mod vspace;

pub use cap::{
    AsidPool, CNode, Endpoint, IoPort, IrqControl, IrqHandler, Notification, Page, PageDirectory,
    PageTable, Pdpt, Slot, Tcb, Untyped, VSpace,
};
pub use error::Error;
pub use ipc::{Badge, Message};
pub use previrt_sel4_sys as sys;
pub use sys::{BootInfo, CPtr, MessageInfo, Word};
pub use tcb::{Priority, UserContext};
pub use vspace::{CapRights, VmAttributes};

/// The initial thread's capabilities, in the slots the kernel puts them.
pub mod init {
    use crate::sys::constants as c;
    use crate::{AsidPool, CNode, IoPort, IrqControl, Tcb, VSpace};

    pub const TCB: Tcb = Tcb(c::seL4_CapInitThreadTCB);
    pub const CNODE: CNode = CNode(c::seL4_CapInitThreadCNode);
    pub const VSPACE: VSpace = VSpace(c::seL4_CapInitThreadVSpace);
    pub const IRQ_CONTROL: IrqControl = IrqControl(c::seL4_CapIRQControl);
    pub const ASID_POOL: AsidPool = AsidPool(c::seL4_CapInitThreadASIDPool);
    /// On x86 the initial thread holds one capability to every I/O port.
    pub const IO_PORTS: IoPort = IoPort(c::seL4_CapIOPort);
}
