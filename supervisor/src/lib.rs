//! The supervisor's seL4-free part, tested on the host: the ledger of the
//! guests' ends ([`ledger`]). The task itself is `main.rs`.
#![no_std]

pub mod ledger;
