//! Helpers shared by the tests that run the wedge's core on real images.
pub mod elf;
