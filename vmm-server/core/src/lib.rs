//! The parts of the VMM server that have nothing to do with seL4 (docs/vmm-core.md):
//! guest RAM ([`ram`]), the walk of the guest's own page tables ([`walk`]),
//! the vTLB's 2 MiB region bookkeeping ([`regions`]), trap-and-emulate over the
//! wedge's emulator ([`trap`]) and the reader of the
//! guest's ELF file ([`elf`]). Everything here takes untrusted input — the
//! guest's page tables, the guest's image — and answers with typed errors,
//! never a panic. `no_std`, no allocator; tested (and fuzzed) on the host.
#![cfg_attr(not(test), no_std)]

pub mod elf;
pub mod ram;
pub mod regions;
pub mod trap;
pub mod walk;
