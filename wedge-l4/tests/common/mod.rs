//! Helpers shared by the tests that run the wedge's core on real images.
//! Each test file is a crate of its own and uses only part of them.
#![allow(dead_code)]

pub mod alternatives;
pub mod elf;
