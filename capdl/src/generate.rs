//! `capdl generate`: the spec of a whole previrt system from a short TOML
//! description (`docs/capdl.md`, "Generating a system").
//!
//! The numbers the generated spec and the VMM server that runs in it agree
//! on (CSpace slots, windows, badges, [`StartInfo`]) are the contract crate's
//! `previrt_protocol::vmm_layout`, re-exported here; the generator itself
//! (TOML, ELF, spec building) needs `std`. It builds the spec with
//! [`crate::build`], as xtask builds its test systems.

#[cfg(feature = "std")]
mod description;
#[cfg(feature = "std")]
mod error;
#[cfg(feature = "std")]
mod system;

#[cfg(feature = "std")]
pub use description::{Description, Devices, Guest, Vmm, DEFAULT_CMDLINE};
#[cfg(feature = "std")]
pub use error::{At, DescriptionError, GenerateError, ImageProblem, Problem};
#[cfg(feature = "std")]
pub use system::{generate, generate_spec, generate_system, GeneratedFile};

pub use previrt_protocol::vmm_layout::*;
pub use previrt_protocol::VtlbStrategy;

/// The vTLB strategies' names, for messages.
#[cfg(feature = "std")]
pub(crate) fn vtlb_names() -> String {
    VtlbStrategy::ALL.map(VtlbStrategy::name).join(", ")
}
