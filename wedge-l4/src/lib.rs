//! The in-place VMM (the *wedge*), linked into the guest's address space.
//!
//! Not built yet: it rewrites the guest's `.afterburn` sites at load time and
//! emulates the virtual CPU (see `docs/` and the architecture brief). The crate
//! exists so the workspace shows the system's shape; it has no functionality.
#![no_std]
