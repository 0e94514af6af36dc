//! The kernel's error codes as a Rust enum.

use crate::sys::constants as c;

/// An invocation's failure, as the kernel reports it in the reply label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    InvalidArgument,
    InvalidCapability,
    IllegalOperation,
    RangeError,
    AlignmentError,
    FailedLookup,
    TruncatedMessage,
    DeleteFirst,
    RevokeFirst,
    NotEnoughMemory,
    /// A label the kernel does not define: a broken reply.
    Unknown(u64),
}

impl Error {
    /// The error for a reply label, or `None` for `seL4_NoError`.
    pub fn from_label(label: u64) -> Option<Error> {
        #[allow(non_upper_case_globals)]
        let e = match label {
            c::seL4_NoError => return None,
            c::seL4_InvalidArgument => Error::InvalidArgument,
            c::seL4_InvalidCapability => Error::InvalidCapability,
            c::seL4_IllegalOperation => Error::IllegalOperation,
            c::seL4_RangeError => Error::RangeError,
            c::seL4_AlignmentError => Error::AlignmentError,
            c::seL4_FailedLookup => Error::FailedLookup,
            c::seL4_TruncatedMessage => Error::TruncatedMessage,
            c::seL4_DeleteFirst => Error::DeleteFirst,
            c::seL4_RevokeFirst => Error::RevokeFirst,
            c::seL4_NotEnoughMemory => Error::NotEnoughMemory,
            other => Error::Unknown(other),
        };
        Some(e)
    }

    /// The kernel's number for this error.
    pub fn code(self) -> u64 {
        match self {
            Error::InvalidArgument => c::seL4_InvalidArgument,
            Error::InvalidCapability => c::seL4_InvalidCapability,
            Error::IllegalOperation => c::seL4_IllegalOperation,
            Error::RangeError => c::seL4_RangeError,
            Error::AlignmentError => c::seL4_AlignmentError,
            Error::FailedLookup => c::seL4_FailedLookup,
            Error::TruncatedMessage => c::seL4_TruncatedMessage,
            Error::DeleteFirst => c::seL4_DeleteFirst,
            Error::RevokeFirst => c::seL4_RevokeFirst,
            Error::NotEnoughMemory => c::seL4_NotEnoughMemory,
            Error::Unknown(label) => label,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Error::InvalidArgument => "seL4_InvalidArgument",
            Error::InvalidCapability => "seL4_InvalidCapability",
            Error::IllegalOperation => "seL4_IllegalOperation",
            Error::RangeError => "seL4_RangeError",
            Error::AlignmentError => "seL4_AlignmentError",
            Error::FailedLookup => "seL4_FailedLookup",
            Error::TruncatedMessage => "seL4_TruncatedMessage",
            Error::DeleteFirst => "seL4_DeleteFirst",
            Error::RevokeFirst => "seL4_RevokeFirst",
            Error::NotEnoughMemory => "seL4_NotEnoughMemory",
            Error::Unknown(_) => "unknown seL4 error",
        }
    }
}

// Every kernel error code must map to a named variant: if the kernel grows
// one, this stops compiling until the enum learns it.
const _: () = assert!(c::seL4_NumErrors == 11);

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Unknown(label) => write!(f, "unknown seL4 error {label}"),
            other => f.write_str(other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_name() {
        assert_eq!(Error::from_label(0), None);
        for label in 1..c::seL4_NumErrors {
            let e = Error::from_label(label).unwrap();
            assert!(
                !matches!(e, Error::Unknown(_)),
                "label {label} has no variant"
            );
        }
        assert_eq!(
            Error::from_label(c::seL4_NumErrors),
            Some(Error::Unknown(11))
        );
        assert_eq!(
            Error::from_label(c::seL4_NotEnoughMemory).unwrap().name(),
            "seL4_NotEnoughMemory"
        );
    }
}
