//! The VMM server without seL4 (docs/vmm-core.md): guest RAM ([`ram`]), the
//! walk of the guest's own page tables ([`walk`]), the virtual TLB's policy
//! ([`vtlb`], with its 2 MiB region bookkeeping in [`regions`]), loading a
//! guest and its wedge ([`load`], with the ELF reader [`elf`]; Linux by its
//! 64-bit boot protocol: [`linux_boot`]), the guest's sites ([`sites`]),
//! its devices ([`devices`]), and the dispatch that turns each message
//! ([`event`]) into an action ([`guest`], [`interrupts`], [`ending`])
//! through the machine's [`platform`], and trap-and-emulate over the
//! wedge's own emulator ([`trap`], [`trap_guest`]). The seL4 task is a
//! shell around it.
//! Everything here takes untrusted input — the guest's page tables, the
//! guest's image — and answers with typed errors, never a panic. `no_std`,
//! no allocator; tested (and fuzzed) on the host.
#![cfg_attr(not(any(test, feature = "replay")), no_std)]

pub mod devices;
#[cfg(test)]
mod dispatch_tests;
pub mod elf;
pub mod ending;
pub mod event;
pub mod guest;
pub mod interrupts;
pub mod linux_boot;
pub mod load;
pub mod platform;
pub mod ram;
pub mod record;
pub mod regions;
#[cfg(any(test, feature = "replay"))]
pub mod replay;
pub mod sites;
pub mod spaces;
pub mod trace;
pub mod trap;
pub mod trap_guest;
#[cfg(test)]
mod trap_tests;
mod user_mode;
#[cfg(test)]
mod user_mode_tests;
pub mod views;
pub mod vtlb;
pub mod walk;
