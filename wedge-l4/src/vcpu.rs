//! The virtual CPU: the privileged state the guest believes it has. Its
//! type and layout are the contract crate's (`previrt_protocol::vcpu`): the
//! VMM server reads and writes the same page.

pub use previrt_protocol::vcpu::*;
