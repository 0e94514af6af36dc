//! The IPC buffer (`seL4_IPCBuffer`): message registers beyond the four that
//! travel in CPU registers, capabilities to transfer, and where to receive them.

use crate::constants::{seL4_MsgMaxExtraCaps, seL4_MsgMaxLength};
use crate::{CPtr, Word};

const MSG_MAX: usize = seL4_MsgMaxLength as usize;
const EXTRA_CAPS: usize = seL4_MsgMaxExtraCaps as usize;

/// The kernel aligns the buffer to its own size (1 KiB on x86_64).
#[repr(C, align(1024))]
#[derive(Debug)]
pub struct IpcBuffer {
    pub tag: Word,
    pub msg: [Word; MSG_MAX],
    pub user_data: Word,
    pub caps_or_badges: [Word; EXTRA_CAPS],
    pub receive_cnode: CPtr,
    pub receive_index: CPtr,
    pub receive_depth: Word,
}

const _: () = assert!(size_of::<IpcBuffer>() == 1024);
