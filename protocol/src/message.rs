//! Requests from the wedge to the VMM server and their replies, each in a
//! message label and at most four message registers.

/// The first request label. The guest thread's faults arrive on the same
/// endpoint with the same badge, labelled by the kernel with small numbers
/// (seL4 5.0.0's fault tags are 0–5); requests start well above them so a
/// label alone says which it is.
pub const FIRST_LABEL: u64 = 0x100;

/// What a request asks for: the seL4 message label (20 bits in seL4 5.0.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Label {
    PortIn = FIRST_LABEL,
    PortOut = FIRST_LABEL + 1,
    PortOutString = FIRST_LABEL + 2,
    LoadCr3 = FIRST_LABEL + 3,
    Invlpg = FIRST_LABEL + 4,
    WriteCr0 = FIRST_LABEL + 5,
    WriteCr4 = FIRST_LABEL + 6,
    Halt = FIRST_LABEL + 7,
    SetFsBase = FIRST_LABEL + 8,
    Shutdown = FIRST_LABEL + 9,
    InterruptAck = FIRST_LABEL + 10,
    EnterUser = FIRST_LABEL + 11,
}

impl Label {
    pub const ALL: [Label; 12] = [
        Label::PortIn,
        Label::PortOut,
        Label::PortOutString,
        Label::LoadCr3,
        Label::Invlpg,
        Label::WriteCr0,
        Label::WriteCr4,
        Label::Halt,
        Label::SetFsBase,
        Label::Shutdown,
        Label::InterruptAck,
        Label::EnterUser,
    ];

    pub fn from_number(n: u64) -> Option<Label> {
        Label::ALL.into_iter().find(|l| *l as u64 == n)
    }

    /// How many message registers the request carries.
    pub const fn length(self) -> usize {
        match self {
            Label::PortIn => 2,
            Label::PortOut => 3,
            Label::PortOutString => 4,
            Label::EnterUser => 2,
            Label::Halt | Label::InterruptAck => 0,
            _ => 1,
        }
    }
}

/// Bytes a string-output request carries (three message registers).
pub const STRING_BYTES: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    PortIn {
        port: u16,
        size: u8,
    },
    PortOut {
        port: u16,
        size: u8,
        value: u32,
    },
    /// `len` bytes of `data`, in elements of `size` bytes, to `port`.
    PortOutString {
        port: u16,
        size: u8,
        len: u8,
        data: [u8; STRING_BYTES],
    },
    LoadCr3 {
        value: u64,
    },
    Invlpg {
        address: u64,
    },
    WriteCr0 {
        value: u64,
    },
    WriteCr4 {
        value: u64,
    },
    Halt,
    SetFsBase {
        base: u64,
    },
    Shutdown {
        reason: u64,
    },
    /// The guest accepts an external interrupt (its virtual IF is set and
    /// the VMM said one may be waiting): the interrupt acknowledge cycle.
    /// The reply's value is the vector, or [`NO_VECTOR`] if none is waiting
    /// any more.
    InterruptAck,
    /// The guest kernel returns to user mode (`iretq` to a CPL 3 frame, or
    /// `sysretq`): the process's registers are a `GuestRegs` (16 general
    /// registers in encoding order, rip, rflags) at `regs`, an address in
    /// the wedge's area; `fs_base` is its FS base. The VMM moves the guest
    /// thread into the user view of the current CR3 and starts it there
    /// with those registers: no reply comes (docs/guest-processes.md).
    EnterUser {
        regs: u64,
        fs_base: u64,
    },
}

/// [`Request::InterruptAck`]'s reply when no interrupt is waiting.
pub const NO_VECTOR: u64 = 0x100;

/// A message the VMM refuses, with the offending value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    UnknownLabel(u64),
    BadLength { label: Label, got: usize },
    BadValue { field: &'static str, value: u64 },
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::UnknownLabel(l) => write!(f, "unknown label {l}"),
            DecodeError::BadLength { label, got } => {
                write!(
                    f,
                    "{label:?} with {got} message registers (it takes {})",
                    label.length()
                )
            }
            DecodeError::BadValue { field, value } => {
                write!(f, "{field} = {value:#x} is out of range")
            }
        }
    }
}

fn size(value: u64) -> Result<u8, DecodeError> {
    match value {
        1 | 2 | 4 => Ok(value as u8),
        _ => Err(DecodeError::BadValue {
            field: "size",
            value,
        }),
    }
}

/// A guest-virtual address must be canonical (bits 47–63 equal), as the
/// CPU requires of `invlpg` and the FS base.
fn canonical(field: &'static str, value: u64) -> Result<u64, DecodeError> {
    if crate::address_space::is_canonical(value) {
        Ok(value)
    } else {
        Err(DecodeError::BadValue { field, value })
    }
}

fn port(value: u64) -> Result<u16, DecodeError> {
    u16::try_from(value).map_err(|_| DecodeError::BadValue {
        field: "port",
        value,
    })
}

impl Request {
    pub fn label(&self) -> Label {
        match self {
            Request::PortIn { .. } => Label::PortIn,
            Request::PortOut { .. } => Label::PortOut,
            Request::PortOutString { .. } => Label::PortOutString,
            Request::LoadCr3 { .. } => Label::LoadCr3,
            Request::Invlpg { .. } => Label::Invlpg,
            Request::WriteCr0 { .. } => Label::WriteCr0,
            Request::WriteCr4 { .. } => Label::WriteCr4,
            Request::Halt => Label::Halt,
            Request::SetFsBase { .. } => Label::SetFsBase,
            Request::Shutdown { .. } => Label::Shutdown,
            Request::InterruptAck => Label::InterruptAck,
            Request::EnterUser { .. } => Label::EnterUser,
        }
    }

    /// The label and message registers (only the first `label.length()`
    /// are sent).
    pub fn encode(&self) -> (Label, [u64; 4]) {
        let mut mr = [0u64; 4];
        match *self {
            Request::PortIn { port, size } => {
                mr[..2].copy_from_slice(&[u64::from(port), u64::from(size)])
            }
            Request::PortOut { port, size, value } => {
                mr[..3].copy_from_slice(&[u64::from(port), u64::from(size), u64::from(value)])
            }
            Request::PortOutString {
                port,
                size,
                len,
                data,
            } => {
                mr[0] = u64::from(port) | u64::from(size) << 16 | u64::from(len) << 24;
                for (i, chunk) in data.chunks(8).enumerate() {
                    mr[1 + i] = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
                }
            }
            Request::LoadCr3 { value }
            | Request::WriteCr0 { value }
            | Request::WriteCr4 { value } => mr[0] = value,
            Request::Invlpg { address } => mr[0] = address,
            Request::SetFsBase { base } => mr[0] = base,
            Request::Shutdown { reason } => mr[0] = reason,
            Request::EnterUser { regs, fs_base } => mr[..2].copy_from_slice(&[regs, fs_base]),
            Request::Halt | Request::InterruptAck => {}
        }
        (self.label(), mr)
    }

    /// Reads a request, checking every value.
    pub fn decode(label: u64, length: usize, mr: [u64; 4]) -> Result<Request, DecodeError> {
        let label = Label::from_number(label).ok_or(DecodeError::UnknownLabel(label))?;
        if length != label.length() {
            return Err(DecodeError::BadLength { label, got: length });
        }
        Ok(match label {
            Label::PortIn => Request::PortIn {
                port: port(mr[0])?,
                size: size(mr[1])?,
            },
            Label::PortOut => {
                let value = u32::try_from(mr[2]).map_err(|_| DecodeError::BadValue {
                    field: "value",
                    value: mr[2],
                })?;
                Request::PortOut {
                    port: port(mr[0])?,
                    size: size(mr[1])?,
                    value,
                }
            }
            Label::PortOutString => {
                let (p, s, len) = (mr[0] & 0xffff, (mr[0] >> 16) & 0xff, mr[0] >> 24);
                let s = size(s)?;
                if len > STRING_BYTES as u64 || len % u64::from(s) != 0 {
                    return Err(DecodeError::BadValue {
                        field: "len",
                        value: len,
                    });
                }
                let mut data = [0u8; STRING_BYTES];
                for i in 0..3 {
                    data[8 * i..8 * i + 8].copy_from_slice(&mr[1 + i].to_le_bytes());
                }
                Request::PortOutString {
                    port: p as u16,
                    size: s,
                    len: len as u8,
                    data,
                }
            }
            Label::LoadCr3 => Request::LoadCr3 { value: mr[0] },
            Label::Invlpg => Request::Invlpg {
                address: canonical("address", mr[0])?,
            },
            Label::WriteCr0 => Request::WriteCr0 { value: mr[0] },
            Label::WriteCr4 => Request::WriteCr4 { value: mr[0] },
            Label::Halt => Request::Halt,
            Label::SetFsBase => Request::SetFsBase {
                base: canonical("base", mr[0])?,
            },
            Label::Shutdown => Request::Shutdown { reason: mr[0] },
            Label::InterruptAck => Request::InterruptAck,
            Label::EnterUser => Request::EnterUser {
                regs: canonical("regs", mr[0])?,
                fs_base: canonical("fs_base", mr[1])?,
            },
        })
    }
}

/// How the VMM answered: the reply's label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Status {
    Ok = 0,
    /// The VMM refused the request (a port the guest may not use, ...).
    Refused = 1,
    /// The guest is stopped; the wedge must not continue.
    Stopped = 2,
    /// The message did not decode.
    Invalid = 3,
}

/// A reply: a status and one value (`PortIn`'s data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub value: u64,
}

impl Reply {
    pub fn decode(label: u64, mr0: u64) -> Reply {
        let status = match label {
            0 => Status::Ok,
            1 => Status::Refused,
            2 => Status::Stopped,
            _ => Status::Invalid,
        };
        Reply { status, value: mr0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(r: Request) -> Request {
        let (label, mr) = r.encode();
        Request::decode(label as u64, label.length(), mr).unwrap()
    }

    #[test]
    fn every_request_round_trips() {
        let mut data = [0u8; STRING_BYTES];
        data[..5].copy_from_slice(b"hello");
        for r in [
            Request::PortIn {
                port: 0x3f8,
                size: 1,
            },
            Request::PortOut {
                port: 0xf4,
                size: 1,
                value: 0,
            },
            Request::PortOutString {
                port: 0x3f8,
                size: 1,
                len: 5,
                data,
            },
            Request::LoadCr3 { value: 0x3ffc000 },
            Request::Invlpg {
                address: 0x8000_0000_0000 - 4096,
            },
            Request::WriteCr0 { value: 0x8001_0033 },
            Request::WriteCr4 { value: 0x20 },
            Request::Halt,
            Request::SetFsBase { base: 0x1234_5000 },
            Request::Shutdown { reason: 1 },
            Request::InterruptAck,
            Request::EnterUser {
                regs: 0xffff_8080_0000_7f00,
                fs_base: 0x100_0000_2000,
            },
        ] {
            assert_eq!(round_trip(r), r);
        }
    }

    #[test]
    fn no_request_label_is_a_fault_label() {
        // seL4 5.0.0's fault tags (generated from the kernel's .bf files).
        for l in Label::ALL {
            assert!(l as u64 > 5, "{l:?}");
            assert!((l as u64) < 1 << 20, "labels are 20 bits");
        }
    }

    #[test]
    fn bad_messages_name_the_offending_value() {
        assert_eq!(
            Request::decode(99, 0, [0; 4]),
            Err(DecodeError::UnknownLabel(99))
        );
        assert_eq!(
            Request::decode(Label::PortOut as u64, 2, [0; 4]),
            Err(DecodeError::BadLength {
                label: Label::PortOut,
                got: 2
            })
        );
        assert_eq!(
            Request::decode(Label::PortIn as u64, 2, [0x10000, 1, 0, 0]),
            Err(DecodeError::BadValue {
                field: "port",
                value: 0x10000
            })
        );
        assert_eq!(
            Request::decode(Label::PortIn as u64, 2, [0x60, 3, 0, 0]),
            Err(DecodeError::BadValue {
                field: "size",
                value: 3
            })
        );
        assert_eq!(
            Request::decode(
                Label::PortOutString as u64,
                4,
                [0x3f8 | 1 << 16 | 25 << 24, 0, 0, 0]
            ),
            Err(DecodeError::BadValue {
                field: "len",
                value: 25
            })
        );
        assert_eq!(
            Request::decode(Label::Invlpg as u64, 1, [0x8000_0000_0000, 0, 0, 0]),
            Err(DecodeError::BadValue {
                field: "address",
                value: 0x8000_0000_0000
            })
        );
        assert_eq!(
            Request::decode(Label::SetFsBase as u64, 1, [0x8000_0000_0000_0000, 0, 0, 0]),
            Err(DecodeError::BadValue {
                field: "base",
                value: 0x8000_0000_0000_0000
            })
        );
        assert_eq!(
            Request::decode(Label::EnterUser as u64, 2, [0x8000, 0x8000_0000_0000, 0, 0]),
            Err(DecodeError::BadValue {
                field: "fs_base",
                value: 0x8000_0000_0000
            })
        );
        // The top half is canonical too.
        assert_eq!(
            Request::decode(Label::Invlpg as u64, 1, [0xffff_8000_0000_0000, 0, 0, 0]),
            Ok(Request::Invlpg {
                address: 0xffff_8000_0000_0000
            })
        );
    }

    proptest! {
        #[test]
        fn any_message_decodes_or_is_refused(label in 0u64..0x110, length in 0usize..5, mr in any::<[u64; 4]>()) {
            if let Ok(r) = Request::decode(label, length, mr) {
                prop_assert_eq!(round_trip(r), r);
            }
        }
    }
}
