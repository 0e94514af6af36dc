//! The CapDL loader: previrt's root task. It carries a bundle (the serialized
//! spec and the images its frames are filled from), creates exactly the
//! objects the spec names from the boot untyped memory, fills and maps the
//! frames, builds CSpaces, VSpaces and TCBs, hands out the capabilities with
//! the spec's rights and badges, starts the threads, prints a summary and
//! suspends itself. Nothing gets a capability the spec does not name.
#![no_std]
#![no_main]

mod create;
mod error;
mod fill;
mod handout;
mod slots;
mod summary;
mod threads;
mod untyped;
mod vspace;

use capdl::bundle::{Bundle, SPEC};
use capdl::model::SpecReader;
use previrt_sel4::cpu::rdtsc;
use previrt_sel4::{init, println, BootInfo};

use crate::error::LoadError;

previrt_sel4::root_task!(loader_main, 64 * 1024);

/// The bundle `cargo xtask` embedded (see build.rs).
static BUNDLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bundle.bin"));

fn loader_main(bootinfo: &'static BootInfo) -> ! {
    let started = rdtsc();
    match load(bootinfo, started) {
        Ok(()) => {
            // Its work is done: the loader holds no authority any thread can
            // reach, and never runs again.
            let _ = init::TCB.suspend();
            loop {
                previrt_sel4::sys::syscalls::yield_now();
            }
        }
        Err(e) => {
            println!("loader: error: {e}");
            // Stop the machine (a QEMU run ends with a failure status).
            let _ = init::IO_PORTS.out8(0xf4, 1);
            let _ = init::TCB.suspend();
            loop {
                previrt_sel4::sys::syscalls::yield_now();
            }
        }
    }
}

fn load(bootinfo: &'static BootInfo, started: u64) -> Result<(), LoadError> {
    let bundle = Bundle::parse(BUNDLE).map_err(LoadError::Bundle)?;
    let spec_bytes = bundle.get(SPEC).ok_or(LoadError::NoSpec)?;
    let spec = SpecReader::new(spec_bytes).map_err(LoadError::Spec)?;
    let header = spec.header();
    println!(
        "loader: spec of {} objects, {} caps, {} fills, {} irqs",
        header.object_count, header.cap_count, header.fill_count, header.irq_count
    );
    let mut slots = slots::Slots::new(bootinfo, header.object_count)?;
    let mut memory = untyped::Pool::new(bootinfo);
    let table = create::create_all(&spec, &mut slots, &mut memory)?;
    let created = rdtsc();
    vspace::map_all(&spec, table, &mut slots)?;
    fill::fill_all(&spec, &bundle, table, &mut slots, &mut memory)?;
    handout::irqs(&spec, table, &mut slots)?;
    handout::cspaces(&spec, table, &slots)?;
    let threads = threads::configure_all(&spec, table, &slots)?;
    let ready = rdtsc();
    summary::print(
        table,
        &memory,
        threads,
        created - started,
        ready - started,
        ready,
    );
    let started = threads::start_all(&spec, table, &slots)?;
    println!("loader: started {started} of {threads} threads; the loader suspends itself");
    Ok(())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("loader: panic: {info}");
    let _ = init::IO_PORTS.out8(0xf4, 1);
    loop {
        previrt_sel4::sys::syscalls::yield_now();
    }
}
