//! The user views on the host: each privilege change of a guest process
//! (into user mode, its `syscall`, `int $n`, exceptions, page faults, an
//! interrupt), as the wedge and the kernel send it, against the model
//! platform of the dispatch tests and guest page tables in host RAM.

use std::boxed::Box;

use previrt_protocol::{
    Request, REFLECT_SITE, REFLECT_SOFTWARE_INTERRUPT, REFLECT_SYSCALL, WEDGE_AREA, WEDGE_BASE,
};
use wedge_l4::memory::GuestRegs;

use crate::devices::Devices;
use crate::dispatch_tests::{
    reflection, request, Capture, Fixture, Model, AREA, BOOT_BLOCK, CODE, ROOT,
};
use crate::ending::Ending;
use crate::event::Event;
use crate::guest::{Guest, Reflector, Stats, Step};
use crate::interrupts::Interrupts;
use crate::ram::Ram;
use crate::sites::Sites;
use crate::views::tests::boxed_views;
use crate::views::{UserViews, View};
use crate::vtlb::tests::{ModelSpace, Tables};

/// A process's pages: code (read-only), data (writable), both U=1; and a
/// kernel page (supervisor only).
const UCODE: u64 = 0x100_0000_0000;
const UDATA: u64 = 0x100_0000_1000;
const KPAGE: u64 = 0x40_1000;
/// Where the wedge keeps the process's registers for `EnterUser`.
const REGS_AT: u64 = WEDGE_BASE + 0x8000;

fn process_registers() -> GuestRegs {
    let mut r = GuestRegs::default();
    for (i, g) in r.gpr.iter_mut().enumerate() {
        *g = 0x1000 + i as u64;
    }
    r.rip = UCODE + 0x10;
    r.rflags = 0x202;
    r
}

fn with_user_guest<R>(f: impl FnOnce(&mut Guest<'_, Model>, &Ram) -> R) -> R {
    let mut fx = Fixture::new();
    let mut views: Box<UserViews<ModelSpace>> = boxed_views();
    let ram = fx.host.ram();
    {
        let mut t = Tables::new_keeping(&ram, ROOT);
        // Fixture::new built the kernel's pages (at TEXT, DATA, ...) under
        // the same root; these add the process's.
        t.set_user(UCODE, 0x28_0000, 1);
        t.set_user(UDATA, 0x28_1000, 3);
    }
    // `syscall` at UCODE + 0x10, `int $0x80` at + 0x12, `int $0xa0` at +0x14.
    ram.write(0x28_0010, &[0x0f, 0x05, 0xcd, 0x80, 0xcd, 0xa0])
        .unwrap();
    let r = process_registers();
    let mut bytes = [0u8; 144];
    for (i, w) in r.gpr.iter().chain([r.rip, r.rflags].iter()).enumerate() {
        bytes[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
    }
    ram.write(AREA + (REGS_AT - WEDGE_BASE), &bytes).unwrap();
    let mut g = Guest {
        number: 0,
        ram: &ram,
        cr3: ROOT,
        vtlb: &mut fx.vtlb,
        sites: &fx.sites,
        devices: Devices::new(Capture::default()).unwrap(),
        platform: Model::default(),
        stats: Stats::default(),
        reflector: Some(Reflector {
            boot_block_gpa: BOOT_BLOCK,
            area_gpa: AREA,
            code: CODE,
        }),
        irq: Interrupts::new(Interrupts::vcpu_page(AREA)),
        ending: None,
        trap: None,
        views: Some(&mut views),
        recorder: None,
    };
    f(&mut g, &ram)
}

fn enter(g: &mut Guest<'_, Model>) -> Step {
    request(
        g,
        Request::EnterUser {
            regs: REGS_AT,
            fs_base: 0x7000_0000,
        },
    )
}

#[test]
fn enter_user_moves_the_thread_into_a_user_view_with_the_process_s_registers() {
    with_user_guest(|g, _| {
        // No answer: the restart cancels the wedge's call.
        assert_eq!(enter(g), Step::Wait);
        assert_eq!(g.platform.view, Some(View::User(0)));
        assert_eq!(g.platform.started, Some((process_registers(), 0x7000_0000)));
        assert!(g.in_user_mode());
        let stats = g.views.as_ref().unwrap().stats;
        assert_eq!((stats.entries, stats.misses, stats.hits), (1, 1, 0));
    });
}

#[test]
fn enter_user_with_registers_outside_the_wedge_is_refused() {
    with_user_guest(|g, _| {
        for at in [0x40_0000, WEDGE_BASE + WEDGE_AREA - 8, REGS_AT + 4] {
            let step = request(
                g,
                Request::EnterUser {
                    regs: at,
                    fs_base: 0,
                },
            );
            assert_eq!(step, Step::Reply(previrt_protocol::Status::Invalid, 0));
            assert!(!g.in_user_mode());
            assert_eq!(g.platform.view, None);
        }
    });
}

#[test]
fn a_process_s_syscall_leaves_for_the_kernel_view_and_the_wedge_enters_lstar() {
    with_user_guest(|g, ram| {
        enter(g);
        let step = g.handle(Event::UnknownSyscall {
            number: (-1i64) as u64,
            rip: UCODE + 0x10,
        });
        assert_eq!(step, Step::Resume);
        assert_eq!(g.platform.view, Some(View::Kernel));
        assert!(!g.in_user_mode());
        let r = reflection(ram);
        assert_eq!((r.vector, r.rip), (REFLECT_SYSCALL, UCODE + 0x12));
        assert_eq!(g.platform.rip, crate::dispatch_tests::ENTRY);
    });
}

#[test]
fn int_n_from_a_process_goes_to_the_wedge_which_checks_the_guest_s_gate() {
    with_user_guest(|g, ram| {
        // Through seL4's DPL-0 gate 0x80: #GP(0x80 * 8 + 2).
        enter(g);
        let step = g.handle(Event::Exception {
            rip: UCODE + 0x12,
            vector: 13,
            code: 0x80 << 3 | 2,
            sp: 0,
            flags: 0x202,
        });
        assert_eq!(step, Step::Resume);
        let r = reflection(ram);
        assert_eq!(
            (r.vector, r.rip),
            (REFLECT_SOFTWARE_INTERRUPT + 0x80, UCODE + 0x12)
        );
        assert_eq!(g.platform.view, Some(View::Kernel));
        // Through one of seL4's DPL-3 gates: an unknown system call.
        enter(g);
        let step = g.handle(Event::UnknownSyscall {
            number: 0xa0 << 24,
            rip: UCODE + 0x14,
        });
        assert_eq!(step, Step::Resume);
        let r = reflection(ram);
        assert_eq!(r.vector, REFLECT_SOFTWARE_INTERRUPT + 0xa0);
        assert_eq!(g.views.as_ref().unwrap().stats.software_interrupts, 2);
    });
}

#[test]
fn a_privileged_instruction_s_gp_is_the_guest_kernel_s_at_the_instruction() {
    with_user_guest(|g, ram| {
        enter(g);
        let step = g.handle(Event::Exception {
            rip: UCODE + 0x20,
            vector: 13,
            code: 0,
            sp: 0,
            flags: 0x202,
        });
        assert_eq!(step, Step::Resume);
        let r = reflection(ram);
        assert_eq!((r.vector, r.error, r.rip), (13, 0, UCODE + 0x20));
        assert_eq!(g.platform.view, Some(View::Kernel));
    });
}

#[test]
fn user_pages_are_mapped_in_the_user_view_only_and_kernel_pages_are_the_process_s_pf() {
    with_user_guest(|g, ram| {
        enter(g);
        let step = g.handle(Event::PageFault {
            rip: UCODE,
            addr: UDATA + 8,
            write: true,
        });
        assert_eq!(step, Step::Resume, "the process goes on in its view");
        assert!(g.in_user_mode());
        let view = &g.views.as_ref().unwrap().vtlbs[0];
        assert_eq!(
            view.mapper.pages.get(&UDATA),
            Some(&(view.mappings()[0].handle, 0x28_1000, true))
        );
        assert!(
            !g.vtlb.mapper.pages.contains_key(&UDATA),
            "not in the kernel view"
        );
        // The kernel's page: #PF, present, user, write.
        let step = g.handle(Event::PageFault {
            rip: UCODE,
            addr: KPAGE,
            write: true,
        });
        assert_eq!(step, Step::Resume);
        let r = reflection(ram);
        assert_eq!((r.vector, r.error, r.cr2), (14, 7, KPAGE));
        assert_eq!(g.platform.view, Some(View::Kernel));
        assert!(!g.views.as_ref().unwrap().vtlbs[0]
            .mapper
            .pages
            .contains_key(&(KPAGE & !0xfff)));
        // The wedge: not present for user mode, whatever is there.
        enter(g);
        g.handle(Event::PageFault {
            rip: UCODE,
            addr: WEDGE_BASE,
            write: false,
        });
        assert_eq!(reflection(ram).error, 4);
    });
}

#[test]
fn a_cr3_load_makes_views_stale_and_entry_re_validates_them() {
    with_user_guest(|g, ram| {
        enter(g);
        g.handle(Event::PageFault {
            rip: UCODE,
            addr: UDATA,
            write: true,
        });
        g.handle(Event::UnknownSyscall {
            number: 0,
            rip: UCODE + 0x10,
        });
        // The guest kernel takes the page away from the process (no
        // invlpg) and reloads CR3 with the same root.
        let mut t = Tables::new_keeping(ram, ROOT);
        t.set_user(UDATA, 0x28_1000, 0);
        assert_eq!(
            request(g, Request::LoadCr3 { value: ROOT }),
            Step::Reply(previrt_protocol::Status::Ok, 0)
        );
        assert_eq!(g.views.as_ref().unwrap().vtlbs[0].count, 1, "not yet");
        enter(g);
        let views = g.views.as_ref().unwrap();
        assert_eq!(views.vtlbs[0].count, 0, "dropped at entry");
        assert_eq!((views.stats.hits, views.stats.revalidations), (1, 2));
        assert!(views.vtlbs[0].check_consistency(ram, ROOT).is_ok());
    });
}

#[test]
fn an_invlpg_reaches_the_current_cr3_s_user_view() {
    with_user_guest(|g, ram| {
        enter(g);
        g.handle(Event::PageFault {
            rip: UCODE,
            addr: UDATA,
            write: false,
        });
        g.handle(Event::UnknownSyscall {
            number: 0,
            rip: UCODE + 0x10,
        });
        let mut t = Tables::new_keeping(ram, ROOT);
        t.set_user(UDATA, 0x28_1000, 1);
        request(g, Request::Invlpg { address: UDATA });
        assert_eq!(g.views.as_ref().unwrap().vtlbs[0].count, 0);
    });
}

#[test]
fn each_address_space_has_its_view_and_the_least_recently_used_is_taken_over() {
    with_user_guest(|g, _| {
        let roots = [ROOT, ROOT + 0x10_0000, ROOT + 0x20_0000, ROOT + 0x28_0000];
        for (n, &root) in roots[..3].iter().enumerate() {
            g.cr3 = root;
            enter(g);
            assert_eq!(g.platform.view, Some(View::User(n)));
            g.leave_user().unwrap();
        }
        g.cr3 = ROOT;
        enter(g);
        assert_eq!(g.platform.view, Some(View::User(0)), "a hit");
        g.leave_user().unwrap();
        g.cr3 = roots[3];
        enter(g);
        assert_eq!(g.platform.view, Some(View::User(1)), "the oldest goes");
        let s = g.views.as_ref().unwrap().stats;
        assert_eq!((s.entries, s.hits, s.misses), (5, 1, 4));
    });
}

#[test]
fn an_interrupt_for_a_running_process_takes_it_back_to_the_kernel_view_first() {
    with_user_guest(|g, ram| {
        crate::dispatch_tests::program_timer(g, 1000);
        crate::dispatch_tests::set_vif(ram, true);
        enter(g);
        g.platform.rip = UCODE + 0x40;
        g.platform.now += 2000;
        g.platform.period = Some(1000);
        assert_eq!(g.wake(), Step::Wait);
        assert_eq!(g.platform.view, Some(View::Kernel));
        assert!(!g.in_user_mode());
        let r = reflection(ram);
        assert_eq!((r.vector, r.rip), (0x20, UCODE + 0x40));
        assert_eq!(g.views.as_ref().unwrap().stats.interrupts, 1);
    });
}

#[test]
fn a_process_writing_the_wedge_s_memory_through_its_tables_ends_the_guest() {
    with_user_guest(|g, ram| {
        let mut t = Tables::new_keeping(ram, ROOT);
        t.set_user(UDATA + 0x1000, AREA + 0x2000, 3);
        enter(g);
        let step = g.handle(Event::PageFault {
            rip: UCODE,
            addr: UDATA + 0x1000,
            write: true,
        });
        assert!(matches!(step, Step::End(Ending::WedgeAliasWrite { .. })));
    });
}

#[test]
fn a_fault_sent_just_before_an_interrupt_took_the_process_out_is_stale() {
    with_user_guest(|g, ram| {
        crate::dispatch_tests::program_timer(g, 1000);
        crate::dispatch_tests::set_vif(ram, true);
        enter(g);
        // The process's `syscall` at UCODE + 0x10 waits in the endpoint
        // while the interrupt thread redirects the thread.
        g.platform.rip = UCODE + 0x10;
        g.platform.now += 2000;
        g.platform.period = Some(1000);
        g.wake();
        let entry = g.platform.rip;
        let step = g.handle(Event::UnknownSyscall {
            number: 0,
            rip: UCODE + 0x10,
        });
        assert_eq!(step, Step::Resume, "restarted into the wedge");
        assert_eq!(g.platform.rip, entry);
        assert_eq!(reflection(ram).vector, 0x20, "the interrupt stays");
        assert_eq!(g.views.as_ref().unwrap().stats.stale_faults, 1);
        // Only the first event after the redirection can be stale.
        let step = g.handle(Event::UnknownSyscall {
            number: 0,
            rip: UCODE + 0x10,
        });
        assert!(matches!(step, Step::End(Ending::UnknownSyscall { .. })));
    });
}

#[test]
fn the_page_of_a_reflected_fault_is_mapped_at_entry_once_the_kernel_allows_it() {
    with_user_guest(|g, ram| {
        let heap = UDATA + 0x1000;
        enter(g);
        // Demand-zero: not present, the kernel's #PF.
        g.handle(Event::PageFault {
            rip: UCODE,
            addr: heap + 8,
            write: true,
        });
        assert_eq!(reflection(ram).error, 6);
        // The kernel maps a page there and returns to the process.
        let mut t = Tables::new_keeping(ram, ROOT);
        t.set_user(heap, 0x28_2000, 3);
        enter(g);
        let views = g.views.as_ref().unwrap();
        assert_eq!(views.stats.faults_premapped, 1);
        assert_eq!(
            views.vtlbs[0].mapper.pages.get(&heap).map(|p| (p.1, p.2)),
            Some((0x28_2000, true))
        );
        assert!(views.vtlbs[0].check_consistency(ram, ROOT).is_ok());
        // A fault its kernel did not resolve (the process is killed, say)
        // maps nothing.
        g.handle(Event::PageFault {
            rip: UCODE,
            addr: KPAGE,
            write: false,
        });
        enter(g);
        assert_eq!(g.views.as_ref().unwrap().stats.faults_premapped, 1);
    });
}

#[test]
fn a_site_whose_call_cannot_push_on_a_process_s_stack_is_run_by_the_wedge() {
    with_user_guest(|g, ram| {
        use afterburn_format::Kind;
        // The kernel's exit: `swapgs; sysretq` on the process's stack,
        // whose page is read-only (copy-on-write): the call's push faults.
        let mut sites = Sites::empty();
        sites.set(&[(0x40_0100, 12, Kind::Swapgs), (0x40_0200, 12, Kind::Pushf)]);
        g.sites = Box::leak(Box::new(sites));
        let mut t = Tables::new_keeping(ram, ROOT);
        t.set_user(UDATA, 0x28_1000, 1);
        let step = g.handle(Event::PageFault {
            rip: 0x40_0100,
            addr: UDATA + 0xff8,
            write: true,
        });
        assert_eq!(step, Step::Resume);
        let r = reflection(ram);
        assert_eq!((r.vector, r.rip), (REFLECT_SITE, 0x40_0100));
        assert_eq!(g.stats.sites_without_stack, 1);
        // A pushf writes the stack itself: its fault is the guest's #PF.
        g.handle(Event::PageFault {
            rip: 0x40_0200,
            addr: UDATA + 0xff8,
            write: true,
        });
        let r = reflection(ram);
        assert_eq!((r.vector, r.error), (14, 3));
    });
}
