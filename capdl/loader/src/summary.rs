//! The one-screen summary: objects by type, memory used, time taken.

use capdl::objects::ObjectType;
use previrt_sel4::println;

use crate::create::Table;
use crate::threads::Ticks;
use crate::untyped::Pool;

const TYPES: [(ObjectType, &str); 13] = [
    (ObjectType::Untyped, "untyped"),
    (ObjectType::Frame, "frame"),
    (ObjectType::PageTable, "pt"),
    (ObjectType::PageDirectory, "pd"),
    (ObjectType::Pdpt, "pdpt"),
    (ObjectType::Pml4, "pml4"),
    (ObjectType::AsidPool, "asid_pool"),
    (ObjectType::CNode, "cnode"),
    (ObjectType::Tcb, "tcb"),
    (ObjectType::Endpoint, "ep"),
    (ObjectType::Notification, "notification"),
    (ObjectType::IoApicIrq, "irq"),
    (ObjectType::IoPorts, "io_ports"),
];

pub fn print(t: &Table, memory: &Pool, threads: u32, create: Ticks, ready: Ticks, now: Ticks) {
    println!("loader: objects by type:");
    for (ty, name) in TYPES {
        let n = t.types[..t.count as usize]
            .iter()
            .filter(|&&x| x == Some(ty))
            .count();
        if n > 0 {
            println!("loader:   {name:<13} {n:>6}");
        }
    }
    println!(
        "loader: {} objects, {} KiB of untyped memory used, {} KiB left",
        t.count,
        memory.used() >> 10,
        memory.available() >> 10
    );
    println!(
        "loader: creating took {} TSC ticks ({} per object); ready after {} ticks; TSC at start of threads {}",
        create,
        create / u64::from(t.count.max(1)),
        ready,
        now
    );
    println!("loader: {threads} threads configured");
}
