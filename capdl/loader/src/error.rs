//! What can go wrong while loading, and on which object.

use capdl::bundle::BundleError;
use capdl::model::ModelError;
use previrt_sel4::Error;

#[derive(Debug)]
pub enum LoadError {
    Bundle(BundleError),
    NoSpec,
    Spec(ModelError),
    /// More objects than the root CNode has free slots for.
    TooManyObjects {
        objects: u32,
        free_slots: u64,
    },
    /// The spec needs more untyped memory than the machine has.
    OutOfMemory {
        needed: u64,
        available: u64,
    },
    /// Memory was there but too fragmented for an object.
    NoRoomFor {
        object: &'static str,
        bytes: u64,
    },
    /// A kernel invocation failed while doing `step` for `object`.
    Kernel {
        step: &'static str,
        object: &'static str,
        error: Error,
    },
    /// The spec asks for something this loader cannot do.
    Unsupported {
        object: &'static str,
        what: &'static str,
    },
    /// A fill names a file the bundle does not carry, or reaches past it.
    MissingFile {
        object: &'static str,
        file: &'static str,
    },
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::Bundle(e) => write!(f, "the embedded bundle: {e}"),
            LoadError::NoSpec => f.write_str("the embedded bundle has no spec (build with `cargo xtask`)"),
            LoadError::Spec(e) => write!(f, "the spec: {e}"),
            LoadError::TooManyObjects { objects, free_slots } => {
                write!(f, "{objects} objects but the root CNode has {free_slots} free slots")
            }
            LoadError::OutOfMemory { needed, available } => write!(
                f,
                "the spec does not fit: it needs {} KiB of untyped memory, the machine has {} KiB: {} KiB missing",
                needed >> 10,
                available >> 10,
                (needed - available).div_ceil(1024)
            ),
            LoadError::NoRoomFor { object, bytes } => {
                write!(f, "no untyped region has {bytes} contiguous bytes left for `{object}`")
            }
            LoadError::Kernel { step, object, error } => write!(f, "{step} `{object}`: {error}"),
            LoadError::Unsupported { object, what } => write!(f, "`{object}`: {what} is not supported"),
            LoadError::MissingFile { object, file } => {
                write!(f, "`{object}` is filled from `{file}`, which the bundle does not carry (whole)")
            }
        }
    }
}

/// Attaches the step and object to a kernel error.
pub trait Doing<T> {
    fn doing(self, step: &'static str, object: &'static str) -> Result<T, LoadError>;
}

impl<T> Doing<T> for Result<T, Error> {
    fn doing(self, step: &'static str, object: &'static str) -> Result<T, LoadError> {
        self.map_err(|error| LoadError::Kernel {
            step,
            object,
            error,
        })
    }
}
