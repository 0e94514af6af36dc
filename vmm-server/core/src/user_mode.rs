//! Guest user mode on seL4 (docs/guest-processes.md): moving the guest
//! thread between the kernel view and the user views on every guest
//! privilege change, and the user view's events.
//!
//! - **Into user mode**: the wedge's `EnterUser` (its `iretq` to CPL 3 or
//!   `sysretq`, the process's registers in wedge memory): the thread moves
//!   into the view of the current CR3 and restarts there with them; the
//!   wedge's call is never answered (restarting the thread cancels it).
//! - **Out of it**: every event of the thread in a user view — its
//!   `syscall` (an UnknownSyscall fault: the kernel patch gives a thread in
//!   a user view no system calls), `int $n`, an exception, a page fault
//!   the guest's tables do not allow user mode, or an interrupt the VMM
//!   redirects it for — moves it back into the kernel view and into the
//!   wedge, which enters the guest kernel as the CPU would from CPL 3.
//!   A page fault the tables allow is mapped in the view; the thread stays.

use previrt_protocol::{REFLECT_SOFTWARE_INTERRUPT, REFLECT_SYSCALL, WEDGE_AREA, WEDGE_BASE};
use wedge_l4::memory::GuestRegs;

use crate::ending::Ending;
use crate::guest::{Guest, Step};
use crate::platform::Platform;
use crate::views::{user_fault, UserFault, View};
use crate::walk::{mark_used, walk, walk_keeping_upper, Translation};

/// `GuestRegs` in wedge memory: 16 general registers, rip, rflags.
const REGS_BYTES: u64 = 18 * 8;

impl<P: Platform> Guest<'_, P> {
    /// Whether the guest thread is in a user view.
    pub fn in_user_mode(&self) -> bool {
        self.views.as_ref().is_some_and(|v| v.current.is_some())
    }

    /// `EnterUser`: the process's registers are at `regs_at` in the wedge's
    /// memory, its FS base `fs_base`.
    pub(crate) fn enter_user(&mut self, regs_at: u64, fs_base: u64) -> Step {
        let (Some(reflector), Some(_)) = (self.reflector, self.views.as_deref()) else {
            return self.refuse(format_args!(
                "EnterUser with no user views (a guest without a wedge, or a VMM without views)"
            ));
        };
        if !(WEDGE_BASE..=WEDGE_BASE + WEDGE_AREA - REGS_BYTES).contains(&regs_at)
            || regs_at % 8 != 0
        {
            return self.refuse(format_args!(
                "EnterUser with registers at {regs_at:#x}, not in the wedge's memory"
            ));
        }
        let mut bytes = [0u8; REGS_BYTES as usize];
        if self
            .ram
            .read(reflector.area_gpa + (regs_at - WEDGE_BASE), &mut bytes)
            .is_err()
        {
            return Step::End(Ending::Failed("the wedge's memory is out of guest RAM"));
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[8 * i..8 * i + 8]);
            u64::from_le_bytes(w)
        };
        let mut regs = GuestRegs::default();
        for (i, r) in regs.gpr.iter_mut().enumerate() {
            *r = word(i);
        }
        regs.rip = word(16);
        regs.rflags = word(17);
        // The view of the current CR3, re-validated and with the page of
        // the process's last #PF mapped (`Spaces::enter_user`); or, when
        // recording, as the recorder has it.
        let (ram, cr3) = (self.ram, self.cr3);
        let area = reflector.area_gpa..reflector.area_gpa + WEDGE_AREA;
        let entered = match self.with_recorder(|r, spaces, log| r.enter_user(ram, spaces, cr3, log))
        {
            Some(entered) => entered.ok().flatten(),
            None => self.spaces().enter_user(ram, cr3, &area).ok(),
        };
        let Some(view) = entered else {
            return Step::End(Ending::Failed("re-validating a user view failed"));
        };
        if self.platform.set_view(View::User(view)).is_err() {
            return Step::End(Ending::Failed(
                "moving the guest thread into a user view failed",
            ));
        }
        if let Some(views) = self.views.as_deref_mut() {
            views.current = Some(view);
        }
        match self.platform.start_user(&regs, fs_base) {
            // The wedge's call is cancelled: nothing to answer.
            Ok(()) => Step::Wait,
            Err(_) => Step::End(Ending::Failed("starting the guest process failed")),
        }
    }

    /// Moves the guest thread back into the kernel view (it is in a user
    /// view).
    pub(crate) fn leave_user(&mut self) -> Result<(), Ending> {
        if let Some(views) = self.views.as_deref_mut() {
            views.current = None;
        }
        self.platform
            .set_view(View::Kernel)
            .map_err(|_| Ending::Failed("moving the guest thread into the kernel view failed"))
    }

    /// Out of user mode into the wedge, which delivers `vector` (or enters
    /// the guest kernel for [`REFLECT_SYSCALL`] and
    /// [`REFLECT_SOFTWARE_INTERRUPT`]).
    fn exit_to_kernel(&mut self, rip: u64, vector: u64, error: u64, cr2: u64) -> Step {
        match self.leave_user() {
            Ok(()) => self.reflect(rip, vector, error, cr2),
            Err(ending) => Step::End(ending),
        }
    }

    /// A VM fault of a guest process.
    pub(crate) fn user_page_fault(&mut self, rip: u64, addr: u64, write: bool) -> Step {
        self.stats.page_faults += 1;
        let Some(reflector) = self.reflector else {
            return Step::End(Ending::Failed("a user view without a wedge"));
        };
        let area = reflector.area_gpa..reflector.area_gpa + WEDGE_AREA;
        let (ram, cr3) = (self.ram, self.cr3);
        let walked = walk_keeping_upper(ram, cr3, addr);
        let Some(view) = self.views.as_deref().and_then(|v| v.current) else {
            return Step::End(Ending::Failed("a user fault outside user mode"));
        };
        let space = View::User(view);
        if let Err(end) = self.record_fault(addr, write, space) {
            return end;
        }
        match user_fault(addr, walked.result, write, &area) {
            UserFault::Map { writable } => {
                let Ok(t) = walked.result else {
                    return Step::End(Ending::Failed("a user view mapped an untranslated page"));
                };
                let t = mark_used(ram, cr3, addr, write, Translation { writable, ..t });
                let upper = walked.upper;
                let mapped = self
                    .with_recorder(|r, spaces, _| r.map(ram, spaces, space, addr, t, upper, write))
                    .unwrap_or_else(|| self.spaces().fault(ram, space, addr, t, upper, write));
                match mapped {
                    Ok(()) => Step::Resume,
                    Err(e) => {
                        self.platform.log(format_args!(
                            "vmm-server: guest{}: mapping {addr:#x} for a guest process failed: {e:?}",
                            self.number
                        ));
                        Step::End(Ending::Failed("a mapping failed"))
                    }
                }
            }
            UserFault::Reflect { error } => {
                if let Some(v) = self.views.as_deref_mut() {
                    v.stats.page_faults += 1;
                    v.reflected_fault = Some((addr, write));
                }
                self.exit_to_kernel(rip, 14, error, addr)
            }
            UserFault::WedgeAliasWrite => Step::End(Ending::WedgeAliasWrite {
                addr,
                gpa: walked.result.map_or(0, |t| t.gpa),
                rip,
            }),
        }
    }

    /// A user exception of a guest process (#GP of a privileged
    /// instruction, #UD, #DE, ... all exactly as hardware raises them at
    /// CPL 3: the process runs natively). seL4's own gates are DPL 0 but
    /// for 3 and 158..=254, so `int $n` is #GP(8n+2): the wedge checks the
    /// guest's gate instead, as the CPU would.
    pub(crate) fn user_exception(&mut self, rip: u64, vector: u64, code: u64) -> Step {
        self.stats.user_exceptions[(vector % 32) as usize] += 1;
        if vector == 13 && code & 7 == 2 {
            // The gate's index in the error code: 8n+2 on hardware; QEMU's
            // TCG reports 16n+2 (the 64-bit gate's offset) instead.
            if let Some([0xcd, n]) = self.instruction_at(rip) {
                let n = u64::from(n);
                if code == n << 3 | 2 || code == n << 4 | 2 {
                    return self.user_software_interrupt(rip, n);
                }
            }
        }
        if let Some(v) = self.views.as_deref_mut() {
            v.stats.exceptions += 1;
        }
        self.exit_to_kernel(rip, vector, code, 0)
    }

    fn user_software_interrupt(&mut self, rip: u64, n: u64) -> Step {
        self.stats.software_interrupts += 1;
        if let Some(v) = self.views.as_deref_mut() {
            v.stats.software_interrupts += 1;
        }
        self.exit_to_kernel(rip, REFLECT_SOFTWARE_INTERRUPT + n, 0, 0)
    }

    /// An UnknownSyscall fault of a guest process: its `syscall` (every
    /// one, whatever rdx holds: the thread has no system calls), or an
    /// `int $n` through one of seL4's DPL-3 gates (158..=254).
    pub(crate) fn user_syscall(&mut self, number: u64, rip: u64) -> Step {
        match self.instruction_at(rip) {
            Some([0x0f, 0x05]) => {
                if let Some(v) = self.views.as_deref_mut() {
                    v.stats.syscalls += 1;
                }
                self.exit_to_kernel(rip.wrapping_add(2), REFLECT_SYSCALL, 0, 0)
            }
            Some([0xcd, n]) if (number >> 24) & 0xff == u64::from(n) => {
                self.user_software_interrupt(rip, u64::from(n))
            }
            _ => Step::End(Ending::UnknownSyscall { number, rip }),
        }
    }

    /// The two bytes at `rip` in the guest's address space (user mode
    /// just ran them, so its tables map them).
    fn instruction_at(&self, rip: u64) -> Option<[u8; 2]> {
        Some([self.guest_byte(rip)?, self.guest_byte(rip.wrapping_add(1))?])
    }

    /// The byte at guest-virtual `va`, read through the current CR3.
    pub(crate) fn guest_byte(&self, va: u64) -> Option<u8> {
        let t = walk(self.ram, self.cr3, va).ok()?;
        let mut b = [0u8];
        self.ram.read(t.gpa + (va & 0xfff), &mut b).ok()?;
        Some(b[0])
    }
}
