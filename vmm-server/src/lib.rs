//! The VMM server: a user-level seL4 task that maps guest memory through frame
//! capabilities, models devices and delivers interrupts.
//!
//! Not built yet; the crate exists so the workspace shows the system's shape.
#![no_std]
