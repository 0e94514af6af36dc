//! The machine under the dispatch, on seL4 (`vmm_core::platform`): guest
//! time from the real PIT ([`Clock`]), the guest thread's TCB, a CNode slot
//! for a halted guest's saved reply, the guest's VSpace ([`Sel4Mapper`]) and
//! its console ([`Console`]).

use previrt_protocol::vmm_layout::{
    guest_cnode_slot, guest_pml4_slot, guest_tcb_slot, guest_user_cnode_slot, guest_user_pml4_slot,
    GUEST_ENDPOINT_SLOT, USER_FAULT_ENDPOINT, VMM_CNODE_SLOT,
};
use previrt_protocol::Status;
use previrt_sel4::cpu::rdtsc;
use previrt_sel4::{ipc, println, CNode, Tcb, UserContext, VSpace};
use vmm_core::platform::{Platform, PlatformError};
use vmm_core::views::View;
use wedge_l4::memory::GuestRegs;

use crate::clock::Clock;
use crate::console::Console;
use crate::mapper::Sel4Mapper;

pub struct Sel4Platform {
    pub clock: Clock,
    number: u64,
    guest: Tcb,
    /// An empty slot of the VMM's CNode for a halted guest's saved reply.
    reply_slot: u64,
}

impl Sel4Platform {
    /// The platform of guest `number`, with `reply_slot` free for its
    /// saved reply.
    pub const fn new(number: u64, reply_slot: u64) -> Sel4Platform {
        Sel4Platform {
            clock: Clock::new(),
            number,
            guest: Tcb(guest_tcb_slot(number)),
            reply_slot,
        }
    }
}

impl Platform for Sel4Platform {
    type Mapper = Sel4Mapper;
    type Console = Console;

    #[inline]
    fn now(&mut self) -> u64 {
        self.clock.now()
    }

    #[inline]
    fn timer_running(&self) -> bool {
        self.clock.running()
    }

    fn set_timer_period(&mut self, period: Option<u32>) {
        self.clock.set_period(period);
    }

    fn cycles(&self) -> u64 {
        rdtsc()
    }

    fn guest_rip(&mut self) -> Result<u64, PlatformError> {
        self.guest.read_rip().map_err(|_| PlatformError)
    }

    fn set_guest_rip(&mut self, rip: u64) -> Result<(), PlatformError> {
        self.guest.write_rip(rip, false).map_err(|_| PlatformError)
    }

    fn save_reply(&mut self) -> Result<(), PlatformError> {
        CNode(VMM_CNODE_SLOT)
            .slot(self.reply_slot)
            .save_caller()
            .map_err(|_| PlatformError)
    }

    fn answer_saved(&mut self) {
        ipc::send(self.reply_slot, Status::Ok as u64, &[0]);
    }

    fn resume_saved(&mut self) {
        ipc::send(self.reply_slot, 0, &[]);
    }

    fn read_registers(&mut self) -> Result<(GuestRegs, u64), PlatformError> {
        let c = self
            .guest
            .read_registers(false)
            .map_err(|_| PlatformError)?;
        let regs = GuestRegs {
            gpr: [
                c.rax, c.rcx, c.rdx, c.rbx, c.rsp, c.rbp, c.rsi, c.rdi, c.r8, c.r9, c.r10, c.r11,
                c.r12, c.r13, c.r14, c.r15,
            ],
            rip: c.rip,
            rflags: c.rflags,
        };
        Ok((regs, c.tls_base))
    }

    fn write_registers(&mut self, r: &GuestRegs, tls_base: u64) -> Result<(), PlatformError> {
        let context = user_context(r, tls_base);
        self.guest
            .write_registers(false, &context)
            .map_err(|_| PlatformError)
    }

    fn set_view(&mut self, view: View) -> Result<(), PlatformError> {
        let g = self.number;
        // The fault endpoint is looked up in the thread's own CSpace: slot
        // 1 of either; in a user view its address also marks the thread as
        // one with no system calls (kernel patch 0003).
        let (fault_endpoint, cspace, vspace) = match view {
            View::Kernel => (GUEST_ENDPOINT_SLOT, guest_cnode_slot(g), guest_pml4_slot(g)),
            View::User(n) => (
                USER_FAULT_ENDPOINT,
                guest_user_cnode_slot(g),
                guest_user_pml4_slot(g, n as u64),
            ),
        };
        self.guest
            .set_space(fault_endpoint, CNode(cspace), 0, VSpace(vspace))
            .map_err(|e| {
                println!("vmm-server: guest{g}: TCB_SetSpace into {view:?}: {e}");
                PlatformError
            })
    }

    fn start_user(&mut self, r: &GuestRegs, fs_base: u64) -> Result<(), PlatformError> {
        let context = user_context(r, fs_base);
        // Resuming restarts the thread, which is waiting for the answer to
        // its call: the call is cancelled (its reply capability deleted).
        self.guest
            .write_registers(true, &context)
            .map_err(|_| PlatformError)
    }

    fn write_frame(&mut self, rip: u64, rsp: u64, rflags: u64) -> Result<(), PlatformError> {
        self.guest
            .write_frame(rip, rsp, rflags)
            .map_err(|_| PlatformError)
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        previrt_sel4::cpu::cpuid(leaf, subleaf)
    }

    fn log(&mut self, line: core::fmt::Arguments) {
        println!("{line}");
    }
}

/// The seL4 register set of the guest registers `r`, with `tls_base` as the
/// thread's TLS base (the guest's FS base).
fn user_context(r: &GuestRegs, tls_base: u64) -> UserContext {
    let g = r.gpr;
    UserContext {
        rip: r.rip,
        rsp: g[4],
        rflags: r.rflags,
        rax: g[0],
        rbx: g[3],
        rcx: g[1],
        rdx: g[2],
        rsi: g[6],
        rdi: g[7],
        rbp: g[5],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        tls_base,
    }
}
