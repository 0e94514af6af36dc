//! The contracts that cross an address space, declared once: between the
//! wedge (inside the guest's address space) and the VMM server — messages,
//! the vCPU page, the wedge's boot block and statistics, shutdown reasons —
//! and between the generated system and the VMM server ([`vmm_layout`]:
//! CSpace slots, windows, start registers). Both sides use these types, so a
//! message can only be built and read one way. Documented in
//! docs/protocol.md.
//!
//! Every request fits in the four message registers seL4 passes in CPU
//! registers (the guest thread has no IPC buffer), so a call costs one
//! `seL4_Call` and no memory traffic. The VMM validates every message: an
//! unknown label or a value out of range is an error naming the value, never
//! a panic — the guest is untrusted and the wedge can be bypassed.
#![no_std]

pub mod address_space;
mod boot_info;
mod message;
mod shutdown;
pub mod vcpu;
mod vcpu_page;
pub mod vmm_layout;
mod vtlb_strategy;
mod wedge_boot;

pub use boot_info::{
    MemoryRange, PvBootInfo, BOOT_INFO_MAGIC, BOOT_INFO_VERSION, MAX_MEMORY_RANGES, PV_HEADER_MAGIC,
};
pub use message::{
    DecodeError, Label, Reply, Request, Status, FIRST_LABEL, NO_VECTOR, STRING_BYTES,
};
pub use shutdown::{shutdown_reason, ShutdownReason};
pub use vcpu_page::{
    WedgeStats, BOOT_BLOCK_OFFSET, DEFERRED_EOI_OFFSET, FAST_IRET, FAST_PIC_COMMAND, FAST_POPF,
    FAST_PUSHF, FAST_SLOTS_OFFSET, FAST_STI, KIND_SLOTS, STATS_OFFSET, STOP_BACKEND, STOP_DECODE,
    STOP_DELIVERY, STOP_MEMORY, STOP_UNSUPPORTED, VCPU_OFFSET, VCPU_PAGE, VCPU_PAGE_OFFSET,
    WEDGE_AREA, WEDGE_STATS_MAGIC,
};
pub use vtlb_strategy::VtlbStrategy;
pub use wedge_boot::{
    Reflection, WedgeBoot, ENTER_LINUX, ENTER_PV, REFLECTION_OFFSET, REFLECT_SITE,
    REFLECT_SOFTWARE_INTERRUPT, REFLECT_SYSCALL, SEL4_REGION, WEDGE_BASE, WEDGE_BOOT_MAGIC,
};

/// Bumped on every incompatible change to this crate's layouts or numbers.
pub const PROTOCOL_VERSION: u64 = 6;
