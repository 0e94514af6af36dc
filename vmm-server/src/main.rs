//! The VMM server: the seL4 shell around `vmm_core` (docs/vmm-server.md,
//! docs/vmm-core.md). It reads what the generated system gave it (its start
//! registers and the CSpace slots of `previrt_protocol::vmm_layout`), checks
//! each guest's RAM frames, RAM window and image window are usable, loads
//! the guest and the wedge, serves the guest until it ends, and reports.
#![no_std]
#![no_main]

mod bringup;
mod clock;
mod console;
mod irq_thread;
mod mapper;
mod platform;
mod serve;
mod shared;

use previrt_protocol::vmm_layout::{
    guest_image_window, guest_pml4_slot, guest_ram_window, guest_tcb_slot, guest_untyped_slot,
    guest_user_pml4_slot, initrd_offset, vmm_log_port, StartInfo, StartPage, DEVICE_DEBUGCON,
    DEVICE_PIT, DEVICE_SERIAL, DEVICE_SHARED_TICKS, IRQ_THREAD_MARK, SERIAL_PORTS_SLOT,
    START_LINUX, START_PAGE_ADDR, START_TRAP, VMM_TCB_SLOT, VMM_WAKE_NOTIFICATION_SLOT, VTLB_CHECK,
    VTLB_RECORD, WEDGE_WINDOW,
};
use previrt_protocol::{
    VtlbStrategy, WedgeStats, BOOT_BLOCK_OFFSET, STATS_OFFSET, VCPU_OFFSET, VCPU_PAGE,
    VCPU_PAGE_OFFSET, WEDGE_AREA, WEDGE_BASE, WEDGE_STATS_MAGIC,
};
use previrt_sel4::{print, println, Notification, Page, Tcb, Untyped, UserContext, VSpace, Word};

use vmm_core::devices::Devices;
use vmm_core::ending::Ending;
use vmm_core::guest::{Guest, Reflector, Stats};
use vmm_core::interrupts::Interrupts;
use vmm_core::linux_boot;
use vmm_core::load::{self, PrepareError, Prepared, WedgeLoaded};
use vmm_core::ram::Ram;
use vmm_core::record::{RecordError, Recorder};
use vmm_core::sites::{self, Sites};
use vmm_core::spaces::Spaces;
use vmm_core::trap_guest::TrapCpu;
use vmm_core::views::{UserViews, USER_VIEWS};
use vmm_core::vtlb::Vtlb;
use vmm_core::walk::Translation;

use crate::console::Console;
use crate::mapper::Sel4Mapper;
use crate::platform::Sel4Platform;

/// What the generated system's start page says: the guest's number in the
/// system (the VMM's lines name it), its command line, and whether it runs
/// by trap-and-emulate (docs/trap-and-emulate.md): with no wedge, the VMM
/// emulating what faults.
fn start_page() -> Result<StartPage<'static>, previrt_protocol::vmm_layout::StartPageError> {
    // SAFETY: the generated spec maps the start page read-only at
    // START_PAGE_ADDR for the VMM's whole life; nothing writes it.
    let page = unsafe { core::slice::from_raw_parts(START_PAGE_ADDR as *const u8, 4096) };
    StartPage::from_bytes(page)
}

static mut VTLB: Vtlb<Sel4Mapper> = Vtlb::new(Sel4Mapper::new());
static mut VIEWS: UserViews<Sel4Mapper> = UserViews::new([
    Vtlb::new(Sel4Mapper::new()),
    Vtlb::new(Sel4Mapper::new()),
    Vtlb::new(Sel4Mapper::new()),
]);
static mut SITES: Sites = Sites::empty();
static mut TRAP_CPU: Option<TrapCpu> = None;
static mut RECORDER: Recorder = Recorder::new();

// The loader starts the VMM with its stack set up by the spec and the start
// information in the six argument registers.
core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym vmm_main,
);

extern "C" fn vmm_main(rdi: Word, rsi: Word, rdx: Word, rcx: Word, r8: Word, r9: Word) -> ! {
    // The interrupt thread starts here too, told apart by its mark.
    if rdi == IRQ_THREAD_MARK {
        irq_thread::irq_thread(rsi as u8, rdx != 0);
    }
    let start = previrt_sel4::cpu::rdtsc();
    let info = StartInfo::from_registers([rdi, rsi, rdx, rcx, r8, r9]);
    // The VMM's lines go to COM1 through the ports its spec gives it; the
    // kernel has no debug console to fall back on. Without them it runs
    // silent, and its exit status still tells the outcome.
    let page = start_page();
    let index = page.map_or(0, |p| p.index);
    if info.devices & DEVICE_SERIAL != 0 {
        let ports = previrt_sel4::IoPort(SERIAL_PORTS_SLOT);
        let _ = if info.devices & DEVICE_DEBUGCON != 0 {
            // With several guests, each VMM's lines leave on a port of
            // their own, never split by another VMM's.
            previrt_sel4::debug::init_debugcon(ports, vmm_log_port(u64::from(index)))
        } else {
            previrt_sel4::debug::init(ports, previrt_sel4::debug::COM1_BASE)
        };
    }
    println!(
        "vmm-server: started at TSC {start}: {} guest(s), CNode of 2^{} slots, devices {:#x}",
        info.guest_count, info.cnode_bits, info.devices
    );
    let ok = bringup::check(&info, index);
    println!(
        "vmm-server: bring-up {}",
        if ok { "passed" } else { "FAILED" }
    );
    if ok && info.devices & DEVICE_PIT != 0 {
        // The interrupt thread's wake-ups arrive with the guests' messages.
        let bound = Tcb(VMM_TCB_SLOT).bind_notification(Notification(VMM_WAKE_NOTIFICATION_SLOT));
        if let Err(e) = bound {
            println!("vmm-server: cannot take the interrupt thread's wake-ups: {e}");
        }
    }
    let page = match page {
        Ok(page) => page,
        Err(e) => {
            println!("vmm-server: {e}");
            bringup::exit_with(&info, 1);
        }
    };
    if !ok || info.guest_count == 0 {
        bringup::exit_with(&info, u8::from(!ok));
    }
    let exit = run_guest(&info, &page, 0);
    bringup::exit_with(&info, exit)
}

/// Prepares guest `g` (of this VMM's layout; `page` says which of the
/// system's it is) and serves it until it stops. Returns the exit value to
/// give QEMU's exit port (0 pass, 1 fail).
fn run_guest(info: &StartInfo, page: &StartPage, g: usize) -> u8 {
    let trap_and_emulate = page.flags & START_TRAP != 0;
    let Ok(cmdline) = core::str::from_utf8(page.cmdline) else {
        println!("vmm-server: the command line in the start page is not UTF-8");
        return 1;
    };
    let id = page.index;
    let guest = info.guests[g];
    let ram_bytes = u64::from(guest.ram_frames) * 4096;
    // SAFETY: the generated spec maps the guest's RAM frames read-write at
    // its RAM window, contiguously, for the VMM's whole life; only the VMM
    // and (through its own mappings) the guest touch them.
    let ram = unsafe { Ram::new(guest_ram_window(g as u64), ram_bytes) };
    // SAFETY: the spec maps the guest's ELF file read-only at its image
    // window; `image_bytes` is the file's size (the generator's StartInfo).
    let image = unsafe {
        core::slice::from_raw_parts(
            guest_image_window(g as u64) as *const u8,
            guest.image_bytes as usize,
        )
    };
    let prepared = if page.flags & START_LINUX != 0 {
        // SAFETY: the spec maps the initrd's bytes read-only in the image
        // window after the image, from `initrd_offset` on (the generator
        // put its size in the start page).
        let initrd = unsafe {
            core::slice::from_raw_parts(
                (guest_image_window(g as u64) + initrd_offset(u64::from(guest.image_bytes)))
                    as *const u8,
                page.initrd_bytes as usize,
            )
        };
        match linux_boot::prepare_linux(&ram, image, initrd, cmdline) {
            Ok(p) => {
                let (initrd, initrd_len) = p.initrd.unwrap_or((0, 0));
                println!(
                    "vmm-server: guest{id}: Linux: startup_64 at {:#x}, zero page at {:#x}, initrd at {initrd:#x} ({initrd_len} bytes)",
                    p.entry, p.zero_page
                );
                p.as_prepared()
            }
            Err(e) => {
                println!("vmm-server: guest{id}: refused: {e}");
                return 1;
            }
        }
    } else {
        match load::prepare(&ram, image, cmdline) {
            Ok(p) => p,
            Err(e) => {
                println!("vmm-server: guest{id}: refused: {e}");
                return 1;
            }
        }
    };
    // The VMM is single-threaded and these statics are used only here, once.
    let (vtlb, sites, trap_cpu, views, recorder) = (
        &raw mut VTLB,
        &raw mut SITES,
        &raw mut TRAP_CPU,
        &raw mut VIEWS,
        &raw mut RECORDER,
    );
    // SAFETY: (as above) the only references to these statics, made once.
    let (vtlb, sites, trap_cpu, views, recorder) = unsafe {
        (
            &mut *vtlb,
            &mut *sites,
            &mut *trap_cpu,
            &mut *views,
            &mut *recorder,
        )
    };
    match prepared.afterburn.map(|(at, len)| ram.slice(at, len)) {
        // Trap-and-emulate needs no records.
        _ if trap_and_emulate => {}
        Some(Ok(section)) => {
            if let Err(e) = sites.read(section) {
                println!("vmm-server: guest{id}: {e}");
                return 1;
            }
        }
        _ => {
            println!("vmm-server: guest{id}: refused: no .afterburn records (not a pre-virtualized image)");
            return 1;
        }
    }
    let Some(ram_first) = info.ram_first_slot(g) else {
        return 1;
    };
    let code = info.vtlb & !(VTLB_CHECK | VTLB_RECORD);
    let Some(strategy) = VtlbStrategy::from_code(code) else {
        println!(
            "vmm-server: guest{id}: refused: vTLB strategy code {code} is not one this VMM has"
        );
        return 1;
    };
    let check = info.vtlb & VTLB_CHECK != 0;
    let record = info.vtlb & VTLB_RECORD != 0 && !trap_and_emulate;
    // No strategy maps the wedge's memory ahead of a fault (the guest
    // may only read it, page by page).
    vtlb.clear(
        strategy,
        check,
        (prepared.wedge_area, prepared.wedge_area + WEDGE_AREA),
    );
    // The first free slot holds a halted guest's saved reply; the kernel
    // view's mapper gets half the rest, each user view an equal share of
    // the other half (each maps at most every RAM frame once, plus tables:
    // the generator sizes the CNode for that).
    let (free, end) = (info.free_first_slot() + 1, 1u64 << info.cnode_bits);
    let half = free + (end - free) / 2;
    let share = (end - half) / USER_VIEWS as u64;
    vtlb.mapper.reset(
        VSpace(guest_pml4_slot(g as u64)),
        Untyped(guest_untyped_slot(g as u64)),
        ram_first,
        (free, half),
    );
    // Every address space of the guest runs the run's strategy, checked
    // or not (docs/vtlb.md, "Processes: the user views").
    views.clear(
        strategy,
        check,
        (prepared.wedge_area, prepared.wedge_area + WEDGE_AREA),
    );
    for (n, view) in (0..).zip(views.vtlbs.iter_mut()) {
        let start = half + n * share;
        view.mapper.reset(
            VSpace(guest_user_pml4_slot(g as u64, n)),
            Untyped(guest_untyped_slot(g as u64)),
            ram_first,
            (start, start + share),
        );
    }
    // With a wedge, the guest thread starts in it; without, at the guest's
    // PV entry, and stops at its first sensitive instruction.
    // Linux's protocol takes the zero page in rsi, the PV protocol its
    // boot information in rdi: both hold it.
    let mut regs = UserContext {
        rip: prepared.entry,
        rdi: prepared.boot_info,
        rsi: prepared.boot_info,
        rflags: 0x202,
        ..UserContext::default()
    };
    // With a wedge: its code's range in the guest's address space.
    let wedge_code = if info.wedge_bytes > 0 && !trap_and_emulate {
        // SAFETY: the spec maps the wedge's ELF read-only at the wedge window.
        let file = unsafe {
            core::slice::from_raw_parts(WEDGE_WINDOW as *const u8, info.wedge_bytes as usize)
        };
        match load::load_wedge(&ram, &prepared, file)
            .and_then(|w| map_wedge(vtlb, &prepared, &w).map(|()| w))
        {
            Ok(w) => {
                // The vCPU page is the guest thread's IPC buffer: the kernel
                // points its GS base there, where the wedge's fast paths
                // find the virtual CPU.
                let frame = ram_first + ((prepared.wedge_area + VCPU_PAGE_OFFSET) >> 12);
                if let Err(e) = Tcb(guest_tcb_slot(g as u64)).set_ipc_buffer(VCPU_PAGE, Page(frame))
                {
                    println!("vmm-server: guest{id}: cannot give the wedge its vCPU page: {e}");
                    return 1;
                }
                regs = UserContext {
                    rip: w.entry,
                    rdi: w.boot_block,
                    rflags: 0x202,
                    ..UserContext::default()
                };
                Some(w.code)
            }
            Err(e) => {
                println!("vmm-server: guest{id}: the wedge: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    println!(
        "vmm-server: guest{id}: loaded; PV entry {:#x}, {} pre-virtualized sites, page tables at {:#x}, {}, command line \"{cmdline}\"",
        prepared.entry,
        sites.count,
        prepared.cr3,
        if wedge_code.is_some() {
            "entering through the wedge"
        } else if trap_and_emulate {
            "no wedge: trap-and-emulate"
        } else {
            "no wedge"
        }
    );
    // The TSC as the guest's thread starts: where `cargo xtask bench`
    // measures Linux's boot on seL4 from (docs/linux.md, "Boot and /init
    // in ticks").
    let entered = previrt_sel4::cpu::rdtsc();
    if let Err(e) = Tcb(guest_tcb_slot(g as u64)).write_registers(true, &regs) {
        println!("vmm-server: guest{id}: cannot start its thread: {e}");
        return 1;
    }
    println!("vmm-server: guest{id}: started at TSC {entered}");
    let devices = match Devices::new(Console::open(info, id)) {
        Ok(d) => d,
        Err(e) => {
            println!("vmm-server: guest{id}: its devices: {e}");
            return 1;
        }
    };
    let mut run = Guest {
        number: g as u64,
        ram: &ram,
        cr3: prepared.cr3,
        vtlb,
        sites,
        devices,
        platform: Sel4Platform::new(g as u64, info.free_first_slot()),
        stats: Stats::default(),
        reflector: wedge_code.map(|code| Reflector {
            boot_block_gpa: prepared.wedge_area + BOOT_BLOCK_OFFSET,
            area_gpa: prepared.wedge_area,
            code,
        }),
        irq: Interrupts::new(Interrupts::vcpu_page(prepared.wedge_area)),
        ending: None,
        views: wedge_code.map(|_| views),
        trap: trap_and_emulate.then(|| {
            let vcpu_page = Interrupts::vcpu_page(prepared.wedge_area);
            trap_cpu.insert(TrapCpu::new(
                prepared.cr3,
                vcpu_page + VCPU_OFFSET + previrt_protocol::vcpu::VIF_OFFSET,
            ))
        }),
        recorder: record.then_some(recorder),
    };
    if let Some(recorder) = run.recorder.as_deref_mut() {
        let wedge = run.reflector.map(|r| r.area_gpa);
        let log = &mut |line: core::fmt::Arguments<'_>| println!("{line}");
        let mut spaces = Spaces {
            kernel: &mut *run.vtlb,
            views: run.views.as_deref_mut(),
        };
        if recorder
            .start(&ram, &mut spaces, prepared.cr3, wedge, log)
            .is_err()
        {
            println!("vmm-server: guest{id}: starting the page-table trace failed");
            return 1;
        }
    }
    if info.devices & DEVICE_PIT != 0 {
        run.platform.clock.stop_real_timer();
    }
    if info.devices & DEVICE_SHARED_TICKS != 0 {
        run.platform.clock.share_ticks();
    }
    let ending = serve::serve(&mut run);
    // Whatever it was doing, the guest thread runs no more: a guest that
    // ended itself with a send (no reply to wait for) must not run on
    // while the VMM reports.
    if let Err(e) = Tcb(guest_tcb_slot(g as u64)).suspend() {
        println!("vmm-server: guest{id}: suspending its thread failed: {e}");
    }
    // The trace ends once the guest thread is stopped: the last table
    // words it wrote are final.
    if let Some(recorder) = run.recorder.as_deref_mut() {
        let log = &mut |line: core::fmt::Arguments<'_>| println!("{line}");
        let mut spaces = Spaces {
            kernel: &mut *run.vtlb,
            views: run.views.as_deref_mut(),
        };
        if recorder.finish(&ram, &mut spaces, log).is_err() {
            println!("vmm-server: guest{id}: ending the page-table trace failed");
        }
        print!(
            "vmm-server: guest{id}: vtlb record: {} trace records",
            recorder.records
        );
        match recorder.error {
            Some(RecordError::Untracked(gpa)) => println!(
                "; NOT FAITHFUL: the page table at {gpa:#x} lies beyond the frames the recorder tracks (the trace's end says so)"
            ),
            None => println!(),
        }
    }
    let verdict = match ending {
        Ending::Exited(status) => {
            println!("vmm-server: guest{id}: exited with status {status}");
            // QEMU's exit status 2V+1: pass the guest's V on.
            Some(((status.saturating_sub(1)) / 2) as u8)
        }
        // A reboot the guest asked for ends its run cleanly, as QEMU's
        // `-no-reboot` ends a bare one.
        Ending::Reset { .. } => {
            println!("vmm-server: guest{id}: {ending}; the run ends as a reboot");
            Some(0)
        }
        Ending::SensitiveInstruction {
            rip,
            vector,
            site_kind: Some(kind),
        } if wedge_code.is_none() => {
            println!(
                "vmm-server: guest{id}: stopped at its first pre-virtualized site: `{kind}` at {rip:#x} (exception {vector}); rewriting sites is the wedge's job, and no wedge was given"
            );
            Some(0)
        }
        // Every other ending is the VMM ending the guest, in one line that
        // says why; the report and the exit follow as for any ending.
        other => {
            println!("vmm-server: guest{id}: terminated: {other}");
            None
        }
    };
    let (cr3, stats) = (run.cr3, run.stats);
    let (irq, real_ticks) = (run.irq.stats, run.platform.clock.real_ticks);
    if let Some(cpu) = &run.trap {
        print_trap_stats(id, cpu);
    }
    if irq.pit_edges > 0 || irq.injected > 0 || irq.halts > 0 {
        println!(
            "vmm-server: guest{id}: interrupts: {} PIT edges ({} merged with IRQ 0 masked, at most {} owed), {} real timer ticks; {} injected: {} by redirecting the running guest, {} taken at sites; {} hlt waits, {} TSC ticks idle; {} EOIs deferred by the wedge; ticks served by the interrupt thread {}, by the main thread {}; {} faults sent just before a redirection restarted",
            irq.pit_edges,
            irq.merged,
            irq.most_owed,
            real_ticks,
            irq.injected,
            irq.redirected,
            irq.at_sites,
            irq.halts,
            irq.idle_tsc,
            irq.deferred_eois,
            irq_thread::TICKS_SERVED_HERE.load(core::sync::atomic::Ordering::Relaxed),
            irq_thread::TICKS_PASSED_ON.load(core::sync::atomic::Ordering::Relaxed),
            irq.stale_faults,
        );
    }
    // The guest's seL4 address spaces: the kernel view's, then the user
    // views' (the figures are for all of them).
    let views_used = run.views.as_deref().is_some_and(|v| v.stats.entries > 0);
    let user: &[Vtlb<Sel4Mapper>] = match run.views.as_deref() {
        Some(v) => &v.vtlbs,
        None => &[],
    };
    let sum = |f: &dyn Fn(&Vtlb<Sel4Mapper>) -> u64| f(run.vtlb) + user.iter().map(f).sum::<u64>();
    let (made, removed) = (sum(&|v| v.stats.maps), sum(&|v| v.removed));
    let tables = sum(&|v| u64::from(v.mapper.tables_created));
    println!(
        "vmm-server: guest{id}: {} page faults served, {made} mappings made, {removed} removed, {tables} seL4 paging structures created",
        stats.page_faults,
    );
    let v = run.vtlb.stats;
    println!(
        "vmm-server: guest{id}: vtlb {}: {made} mappings made ({} prefetched), at most {} at once, {} page-table writes trapped{}",
        if run.recorder.is_some() {
            "record"
        } else {
            run.vtlb.strategy.name()
        },
        sum(&|v| v.stats.prefetched),
        stats.peak_mappings,
        sum(&|v| v.stats.table_writes),
        if check { "; checking every invalidation point" } else { "" }
    );
    if views_used {
        println!(
            "vmm-server: guest{id}: vtlb, of which in the user views: {} mappings made, {} removed, {} seL4 paging structures created, {} page-table writes trapped",
            made - run.vtlb.stats.maps,
            removed - run.vtlb.removed,
            tables - u64::from(run.vtlb.mapper.tables_created),
            sum(&|v| v.stats.table_writes) - v.table_writes,
        );
    }
    if check {
        println!(
            "vmm-server: guest{id}: vtlb check: {} invalidation points checked, {} violations",
            sum(&|v| v.stats.checks),
            sum(&|v| v.stats.violations)
        );
        // The kernel view's first, else the first view's that has one.
        let first = v.first_violation.map(|f| (f, None)).or_else(|| {
            (0..)
                .zip(user)
                .find_map(|(n, u)| u.stats.first_violation.map(|f| (f, Some(n))))
        });
        match first {
            Some((first, None)) => {
                println!("vmm-server: guest{id}: vtlb check: first violation {first}")
            }
            Some((first, Some(n))) => println!(
                "vmm-server: guest{id}: vtlb check: first violation {first} (in user view {n})"
            ),
            None => {}
        }
    }
    let violations = sum(&|v| v.stats.violations);
    let labels = [
        "port-in",
        "port-out",
        "port-out-string",
        "cr3",
        "invlpg",
        "cr0",
        "cr4",
        "hlt",
        "fs-base",
        "shutdown",
        "interrupt-ack",
        "enter-user",
    ];
    print!("vmm-server: guest{id}: requests:");
    for (name, n) in labels.iter().zip(stats.requests) {
        if n > 0 {
            print!(" {name} {n}");
        }
    }
    println!(
        ", invalid {}; {} exceptions reflected into the guest",
        stats.invalid_requests, stats.reflected
    );
    print_faults(id, &stats);
    if wedge_code.is_some() {
        print_wedge_stats(
            id,
            &ram,
            prepared.wedge_area + VCPU_PAGE_OFFSET + STATS_OFFSET,
        );
    }
    let mut consistent = match run.vtlb.check_consistency(&ram, cr3) {
        Ok(n) => {
            println!("vmm-server: guest{id}: mapping consistency: all {n} seL4 mappings justified by the guest's page tables");
            true
        }
        Err(u) => {
            println!(
                "vmm-server: guest{id}: mapping consistency VIOLATED at {:#x}: {}",
                u.va, u.why
            );
            false
        }
    };
    if let Some(views) = run.views.as_deref() {
        consistent &= report_views(id, &ram, views, stats.sites_without_stack);
    }
    match verdict {
        Some(v) if consistent && violations == 0 => v,
        _ => 1,
    }
}

/// Prints what trap-and-emulate did: instructions emulated by kind,
/// exceptions and interrupts delivered.
fn print_trap_stats(g: u32, cpu: &TrapCpu) {
    print!("vmm-server: guest{g}: trap-and-emulate: emulated");
    for (number, &n) in cpu.emulated.iter().enumerate() {
        if n > 0 {
            print!(" {} {n}", sites::kind_name(number as u16));
        }
    }
    print!("; exceptions delivered");
    for (vector, &n) in cpu.exceptions.iter().enumerate() {
        if n > 0 {
            print!(" {vector}: {n}");
        }
    }
    println!(
        "; interrupts delivered {}; {} faults served with the fault message's rip, rsp and rflags alone",
        cpu.interrupts, cpu.frame_only
    );
}

/// Prints what the user views did and checks each one's mappings against
/// the tables of the CR3 it holds (for user mode: U=1 at every level).
/// A view entered since the last CR3 load must be consistent as it
/// stands; a stale one may hold what the guest changed since (its tables
/// were not current), which re-validation drops at its next entry.
fn report_views(
    g: u32,
    ram: &Ram,
    views: &UserViews<Sel4Mapper>,
    sites_without_stack: u64,
) -> bool {
    let s = views.stats;
    if s.entries == 0 {
        return true;
    }
    println!(
        "vmm-server: guest{g}: user views: {USER_VIEWS}; {} entries into user mode ({} hits, {} misses, {} re-validated); exits: {} syscall, {} int $n, {} exceptions, {} page faults reflected, {} interrupts ({} faults sent just before them restarted); {} faulting pages mapped at entry; {} sites run without their call (a process's stack)",
        s.entries,
        s.hits,
        s.misses,
        s.revalidations,
        s.syscalls,
        s.software_interrupts,
        s.exceptions,
        s.page_faults,
        s.interrupts,
        s.stale_faults,
        s.faults_premapped,
        sites_without_stack,
    );
    let mut ok = true;
    for (n, cr3, view) in views.each() {
        match view.check_consistency(ram, cr3) {
            Ok(count) => println!(
                "vmm-server: guest{g}: user view {n} (CR3 {cr3:#x}): all {count} mappings justified by user-mode translations"
            ),
            Err(u) if !views.is_fresh(n) => println!(
                "vmm-server: guest{g}: user view {n} (CR3 {cr3:#x}): stale, to be re-validated at its next entry ({:#x}: {})",
                u.va, u.why
            ),
            Err(u) => {
                println!(
                    "vmm-server: guest{g}: user view {n} (CR3 {cr3:#x}): mapping consistency VIOLATED at {:#x}: {}",
                    u.va, u.why
                );
                ok = false;
            }
        }
    }
    ok
}

/// Prints the guest thread's faults by kind and the exceptions reflected
/// by vector.
fn print_faults(g: u32, stats: &Stats) {
    let user: u64 = stats.user_exceptions.iter().sum();
    print!(
        "vmm-server: guest{g}: faults: {} VM faults ({} mapped, {} reflected as #PF), {user} user exceptions",
        stats.page_faults,
        stats.page_faults.saturating_sub(stats.reflected_by_vector[14]),
        stats.reflected_by_vector[14]
    );
    const NAMES: [&str; 20] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#09", "#TS", "#NP", "#SS",
        "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM",
    ];
    for (vector, &n) in stats.user_exceptions.iter().enumerate() {
        if n > 0 {
            print!(" {} {n}", NAMES.get(vector).copied().unwrap_or("#?"));
        }
    }
    if stats.software_interrupts > 0 {
        print!(
            " ({} of the #GP: `int $n` seL4 reported as unknown system calls)",
            stats.software_interrupts
        );
    }
    println!();
}

/// Prints what the wedge counted (it keeps its statistics in the vCPU page,
/// in guest RAM: the guest could have overwritten them, so they are only
/// printed, never trusted).
fn print_wedge_stats(g: u32, ram: &Ram, at: u64) {
    let mut bytes = [0u8; WedgeStats::SIZE];
    if ram.read(at, &mut bytes).is_err() {
        return;
    }
    let stats = WedgeStats::from_bytes(&bytes);
    if stats.magic != WEDGE_STATS_MAGIC {
        println!("vmm-server: guest{g}: the wedge left no statistics");
        return;
    }
    let total: u64 = stats.rewritten.iter().map(|&n| u64::from(n)).sum();
    print!(
        "vmm-server: guest{g}: sites rewritten: {total} ({} inline or fast path, {} left native):",
        stats.fast, stats.native
    );
    print_by_kind(stats.rewritten.iter().map(|&n| u64::from(n)));
    println!();
    if stats.stopped_at != 0 {
        let why = match stats.stopped_error {
            previrt_protocol::STOP_DECODE => {
                "the wedge cannot emulate its instruction (left as written, it trapped with the vector in parentheses)"
            }
            previrt_protocol::STOP_UNSUPPORTED => "a form the wedge does not emulate",
            previrt_protocol::STOP_MEMORY => "the wedge refused a guest memory access",
            previrt_protocol::STOP_BACKEND => "the VMM refused a request",
            previrt_protocol::STOP_DELIVERY => "an exception could not be delivered",
            _ => "unknown",
        };
        println!(
            "vmm-server: guest{g}: the wedge stopped at the `{}` site at {:#x}: {why} ({:#x})",
            sites::kind_name(stats.stopped_kind as u16),
            stats.stopped_at,
            stats.stopped_value
        );
    }
    if stats.undecodable > 0 {
        println!(
            "vmm-server: guest{g}: {} sites left as written: the wedge cannot emulate their instruction (the first at {:#x})",
            stats.undecodable, stats.first_undecodable
        );
    }
    print!("vmm-server: guest{g}: site calls emulated in the wedge's general path:");
    print_by_kind(stats.emulated.iter().copied());
    println!(
        "; {} exceptions delivered; interrupts taken after a site {}, on redirection {}; {} returns to user mode, {} process syscalls entered",
        stats.reflected,
        stats.interrupts_at_sites,
        stats.interrupts_redirected,
        stats.user_entries,
        stats.user_syscalls
    );
}

/// Prints ` name count` for each nonzero count, indexed by kind number.
fn print_by_kind(counts: impl Iterator<Item = u64>) {
    for (number, n) in counts.enumerate() {
        if n > 0 {
            print!(" {} {n}", sites::kind_name(number as u16));
        }
    }
}

/// Maps the wedge area into the guest's address space at `WEDGE_BASE`,
/// its code and constants read-only.
fn map_wedge(
    vtlb: &mut Vtlb<Sel4Mapper>,
    prepared: &Prepared,
    wedge: &WedgeLoaded,
) -> Result<(), PrepareError> {
    for (page, &writable) in (0..).zip(&wedge.writable) {
        let t = Translation {
            gpa: prepared.wedge_area + page * 4096,
            writable,
            // Not the guest's: no user view ever holds it.
            user: false,
        };
        if vtlb.map_fixed(WEDGE_BASE + page * 4096, t).is_err() {
            return Err(PrepareError::SegmentOutsideRam {
                paddr: WEDGE_BASE + page * 4096,
                size: 4096,
            });
        }
    }
    Ok(())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("vmm-server: panic: {info}");
    loop {
        previrt_sel4::sys::syscalls::yield_now();
    }
}
