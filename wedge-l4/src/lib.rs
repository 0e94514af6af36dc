//! The in-place VMM (the *wedge*), linked into the guest's address space.
//!
//! This crate is the wedge's seL4-free core: it reads the guest's
//! `.afterburn` records ([`records`]), rewrites each recorded site into a
//! call to the wedge ([`rewrite`]), and at run time emulates the site's
//! instruction on the virtual CPU ([`vcpu`], [`decode`], [`emulate`]),
//! delivering exceptions and virtual interrupts through the guest's virtual
//! IDT ([`interrupts`]). Whatever needs the outside world goes through the
//! [`backend::Backend`] trait: seL4 IPC to the VMM server is one
//! implementation, a Linux process another. Design: `docs/wedge.md`.
#![cfg_attr(not(test), no_std)]

/// The `.afterburn` ABI (kind numbers, flags, record layout): the crate the
/// afterburner writes it with.
pub use afterburn_format;

pub mod alternatives;
pub mod backend;
pub mod cpuid;
pub mod debug_registers;
pub mod decode;
pub mod descriptors;
pub mod emulate;
pub mod interrupts;
pub mod memory;
pub mod msr;
pub mod records;
pub mod rewrite;
pub mod vcpu;

#[cfg(test)]
mod testutil;
