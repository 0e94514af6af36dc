//! The layout a generated system gives the VMM server: where it finds its
//! capabilities (CSpace slots), where guest memory and guest images appear
//! in its address space (windows), the badges, a guest's own CSpace, and
//! what its start registers say ([`StartInfo`]). The CapDL generator
//! (`capdl::generate`) builds specs by these numbers and the VMM reads them;
//! neither types a slot or an address of its own.

// ---------------------------------------------------------------------------
// The VMM server's CSpace. Slot 0 stays empty: seL4 treats cap pointer 0 as
// the null cap by convention, so a zero left in a register never names a cap.

/// The VMM's own CNode (with the same guard as its TCB's `cspace` cap, so a
/// 64-bit cap pointer resolves through it): to copy and mint caps.
pub const VMM_CNODE_SLOT: u64 = 1;
/// The VMM's own PML4.
pub const VMM_PML4_SLOT: u64 = 2;
/// The VMM's own TCB: to bind the timer notification to itself, so one
/// `seL4_Recv` on the endpoint also returns interrupts.
pub const VMM_TCB_SLOT: u64 = 3;
/// The endpoint the VMM receives on, unbadged, all rights. Wedge calls and
/// guest faults arrive there with the guest's badge ([`guest_badge`]).
pub const VMM_ENDPOINT_SLOT: u64 = 4;
/// The notification the timer IRQ signals (badge [`TIMER_BADGE`]); read and
/// write. Empty without `pit`.
pub const TIMER_NOTIFICATION_SLOT: u64 = 5;
/// The IRQ handler of the PIT (IOAPIC pin 2, ISA IRQ 0). Empty without `pit`.
pub const PIT_IRQ_SLOT: u64 = 6;
/// I/O ports 0x40..=0x43 (the PIT). Empty without `pit`.
pub const PIT_PORTS_SLOT: u64 = 7;
/// I/O ports 0x3f8..=0x3ff (COM1). Empty without `serial`.
pub const SERIAL_PORTS_SLOT: u64 = 8;
/// I/O port 0xf4 (QEMU's isa-debug-exit). Empty without `debug_exit`.
pub const DEBUG_EXIT_PORT_SLOT: u64 = 9;
/// I/O ports [`GUEST_CONSOLE_PORTS`] (COM2): the real UART the VMM writes
/// the guest's console to, so it reaches the outside world apart from the
/// kernel's and the VMM's own lines on COM1. Empty without `guest_console`.
pub const GUEST_CONSOLE_PORTS_SLOT: u64 = 10;
/// The VMM's interrupt thread (with `pit`): one priority level above the
/// VMM's main thread, it waits for the timer's IRQ, acknowledges it, raises
/// the main thread to its own level and wakes it, so the main thread gets the
/// CPU at once even while a guest of its own priority spins (docs/vmm-server.md,
/// "Interrupts"). Empty without `pit`.
pub const VMM_IRQ_TCB_SLOT: u64 = 11;
/// The notification the interrupt thread wakes the main thread with,
/// unbadged, read and write: the main thread binds it to itself, so its
/// `seL4_Recv` on the endpoint also returns wake-ups. Empty without `pit`.
pub const VMM_WAKE_NOTIFICATION_SLOT: u64 = 12;
/// The same notification, badged [`TIMER_BADGE`], write only: what the
/// interrupt thread signals. Empty without `pit`.
pub const VMM_WAKE_SIGNAL_SLOT: u64 = 13;
/// With [`DEVICE_SUPERVISOR`]: the supervisor's endpoint, write only, badged
/// with the system guest number + 1: where the VMM reports its guest's end.
pub const SUPERVISOR_ENDPOINT_SLOT: u64 = 14;
/// The first slot of the per-guest blocks; slot 15 is reserved.
pub const GUEST_SLOTS_BASE: u64 = 16;
/// Slots per guest block: TCB, PML4, page-table untyped, the guest's
/// CNode, the user views' CNode, the user views' PML4s
/// ([`USER_VIEWS`]).
pub const GUEST_SLOT_STRIDE: u64 = 5 + USER_VIEWS as u64;
/// The seL4 VSpaces a guest's processes run in (its *user views*,
/// docs/guest-processes.md), one per guest address space, cached by CR3.
pub const USER_VIEWS: usize = 3;
/// The first RAM frame cap of guest 0; the guests' RAM frames follow one
/// another from here, guest by guest, in frame order (see
/// [`StartInfo::ram_first_slot`]). Every slot after the last RAM frame is
/// free for the VMM ([`StartInfo::free_first_slot`]).
pub const GUEST_RAM_SLOTS_BASE: u64 = 64;

/// At most this many guests per VMM: five per-guest words fit in the start
/// registers after the summary word ([`StartInfo`]).
pub const MAX_GUESTS: usize = 5;

/// At most this many guests in a system. One guest has one VMM that owns
/// the devices itself; with two or more, each guest has a VMM of its own
/// and the machine's shared devices (the PIT, the exit port) belong to the
/// supervisor (docs/vmm-server.md, "Several guests").
pub const MAX_SYSTEM_GUESTS: usize = 8;

/// Guest `guest`'s TCB (no `ip`/`sp` set: the VMM sets them).
pub const fn guest_tcb_slot(guest: u64) -> u64 {
    GUEST_SLOTS_BASE + GUEST_SLOT_STRIDE * guest
}

/// Guest `guest`'s PML4 (its VSpace, empty: the VMM fills it).
pub const fn guest_pml4_slot(guest: u64) -> u64 {
    guest_tcb_slot(guest) + 1
}

/// Guest `guest`'s untyped memory for its page-table objects.
pub const fn guest_untyped_slot(guest: u64) -> u64 {
    guest_tcb_slot(guest) + 2
}

/// Guest `guest`'s own CNode (a CSpace root with its guard): to move the
/// guest thread back into the kernel view.
pub const fn guest_cnode_slot(guest: u64) -> u64 {
    guest_tcb_slot(guest) + 3
}

/// Guest `guest`'s user-view CNode ([`USER_CNODE_BITS`], no guard): the
/// CSpace of its processes, holding only its fault endpoint.
pub const fn guest_user_cnode_slot(guest: u64) -> u64 {
    guest_tcb_slot(guest) + 4
}

/// Guest `guest`'s user view `view` (< [`USER_VIEWS`]): an empty PML4.
pub const fn guest_user_pml4_slot(guest: u64, view: u64) -> u64 {
    guest_tcb_slot(guest) + 5 + view
}

// Every guest block ends before the RAM frames.
const _: () = assert!(guest_tcb_slot(MAX_GUESTS as u64) <= GUEST_RAM_SLOTS_BASE);

// ---------------------------------------------------------------------------
// The supervisor's CSpace (systems of several guests). Its start registers:
// rdi the number of guests, rsi the `DEVICE_SERIAL`, `DEVICE_PIT` and
// `DEVICE_DEBUG_EXIT` bits of what it holds.

/// The supervisor's CNode radix.
pub const SUPERVISOR_CNODE_BITS: u8 = 5;
/// Its priority: above every VMM's interrupt thread, so a tick is passed
/// on at once.
pub const SUPERVISOR_PRIORITY: u8 = 255;
/// Its endpoint, read only: the VMMs' reports arrive badged with their
/// guest's number + 1 ([`guest_badge`]).
pub const SUPERVISOR_OWN_ENDPOINT_SLOT: u64 = 1;
/// Its own TCB, to bind the timer notification to itself.
pub const SUPERVISOR_TCB_SLOT: u64 = 2;
/// The notification the PIT's IRQ signals ([`TIMER_BADGE`]). With `pit`.
pub const SUPERVISOR_TIMER_SLOT: u64 = 3;
/// The PIT's IRQ handler. With `pit`.
pub const SUPERVISOR_PIT_IRQ_SLOT: u64 = 4;
/// The PIT's ports 0x40..=0x43. With `pit`.
pub const SUPERVISOR_PIT_PORTS_SLOT: u64 = 5;
/// COM1, for its own lines. With `serial`.
pub const SUPERVISOR_SERIAL_SLOT: u64 = 6;
/// The isa-debug-exit port. With `debug_exit`.
pub const SUPERVISOR_DEBUG_EXIT_SLOT: u64 = 7;

/// The supervisor's write cap to guest `guest`'s VMM's tick notification.
pub const fn supervisor_ticks_slot(guest: u64) -> u64 {
    16 + guest
}

/// The message label of a VMM's report to the supervisor: its guest ended;
/// message register 0 holds the exit value (0 passed).
pub const SUPERVISOR_ENDED_LABEL: u64 = 1;

// ---------------------------------------------------------------------------
// Badges.

/// The badge of guest `guest`'s endpoint cap: its number + 1 (0 would be no
/// badge).
pub const fn guest_badge(guest: u64) -> u64 {
    guest + 1
}

/// The badge the timer IRQ signals its notification with: a high bit, so a
/// bound-notification delivery never looks like a guest's badge (guest
/// badges are 1..=[`MAX_GUESTS`]; seL4 5.0.0 badges have 28 bits).
pub const TIMER_BADGE: u64 = 1 << 27;

// ---------------------------------------------------------------------------
// A guest's own CSpace.

/// The slot of the badged endpoint cap in a guest's CNode, and the cap
/// pointer of its fault endpoint and of the wedge's calls (the guest CNode
/// has radix 1 and guard size 63, so cap pointer 1 is slot 1).
pub const GUEST_ENDPOINT_SLOT: u64 = 1;
/// Radix of a guest's CNode.
pub const GUEST_CNODE_BITS: u8 = 1;
/// Radix of a guest's user-view CNode; its cap has no guard, so a cap
/// pointer's top bit selects the slot.
pub const USER_CNODE_BITS: u8 = 1;
/// The fault-endpoint address of a guest thread in a user view: slot 1 of
/// the user-view CNode, and (the top bit) the mark that tells the kernel
/// (patch 0003) the thread has no system calls: each `syscall` is an
/// UnknownSyscall fault.
pub const USER_FAULT_ENDPOINT: u64 = 1 << 63;

// ---------------------------------------------------------------------------
// The VMM server's address space. All of it is in the user half (PML4
// entries 0..256); each window has PML4 entries of its own.

/// The VMM's ELF segments must lie below this address (PML4 entries 0..32).
pub const VMM_IMAGE_LIMIT: u64 = 0x1000_0000_0000;
/// The VMM thread's IPC buffer (one page, read-write).
pub const VMM_IPC_BUFFER_ADDR: u64 = 0x1000_0000_0000;
/// The lowest stack page; the page between it and the IPC buffer is left
/// unmapped, so a stack overflow faults instead of overwriting the buffer.
pub const VMM_STACK_BOTTOM: u64 = VMM_IPC_BUFFER_ADDR + 0x2000;
/// The VMM's stack is at most this many pages (4 MiB), so it stays far
/// below the windows.
pub const MAX_VMM_STACK_PAGES: u64 = 1024;
/// The interrupt thread's IPC buffer (one page); its stack follows after an
/// unmapped guard page ([`VMM_IRQ_STACK_BOTTOM`]), above the main thread's
/// largest stack.
pub const VMM_IRQ_IPC_BUFFER_ADDR: u64 = VMM_STACK_BOTTOM + (MAX_VMM_STACK_PAGES + 1) * 0x1000;
/// The interrupt thread's lowest stack page.
pub const VMM_IRQ_STACK_BOTTOM: u64 = VMM_IRQ_IPC_BUFFER_ADDR + 0x2000;
/// The interrupt thread's stack pages.
pub const VMM_IRQ_STACK_PAGES: u64 = 4;
/// What the interrupt thread finds in rdi at `_start` (the main thread
/// finds the [`StartInfo`] there): "VMMIRQTH"; rsi holds its priority.
pub const IRQ_THREAD_MARK: u64 = u64::from_le_bytes(*b"VMMIRQTH");
/// Each guest's window is this big (one PML4 entry, 512 GiB).
pub const WINDOW_STRIDE: u64 = 0x80_0000_0000;
/// Guest 0's RAM, read-write, guest-physical address 0 at this address;
/// guest n's at `+ n * WINDOW_STRIDE` ([`guest_ram_window`]).
pub const RAM_WINDOW_BASE: u64 = 0x2000_0000_0000;
/// Guest 0's ELF image file, byte for byte, read-only, zero-padded to a
/// page; guest n's at `+ n * WINDOW_STRIDE` ([`guest_image_window`]).
pub const IMAGE_WINDOW_BASE: u64 = 0x4000_0000_0000;

/// The wedge's ELF file (`vmm.wedge`), byte for byte, read-only,
/// zero-padded to a page: the VMM copies it into each guest.
pub const WEDGE_WINDOW: u64 = 0x6000_0000_0000;

/// Where guest `guest`'s RAM is mapped in the VMM.
pub const fn guest_ram_window(guest: u64) -> u64 {
    RAM_WINDOW_BASE + guest * WINDOW_STRIDE
}

/// Where guest `guest`'s ELF image is mapped in the VMM.
pub const fn guest_image_window(guest: u64) -> u64 {
    IMAGE_WINDOW_BASE + guest * WINDOW_STRIDE
}

// ---------------------------------------------------------------------------
// The VMM's start registers.

/// `StartInfo::devices` bit: COM1 ports are in [`SERIAL_PORTS_SLOT`].
pub const DEVICE_SERIAL: u8 = 1;
/// `StartInfo::devices` bit: the PIT's ports, IRQ and notification are there.
pub const DEVICE_PIT: u8 = 2;
/// `StartInfo::devices` bit: the isa-debug-exit port is there.
pub const DEVICE_DEBUG_EXIT: u8 = 4;
/// `StartInfo::devices` bit: COM2's ports are in [`GUEST_CONSOLE_PORTS_SLOT`].
pub const DEVICE_GUEST_CONSOLE: u8 = 8;

/// `StartInfo::devices` bit: the notification in [`TIMER_NOTIFICATION_SLOT`]
/// is signalled by the supervisor at every tick of the real PIT, which runs
/// at [`SHARED_TICK_PERIOD`]; the VMM holds no PIT port and no IRQ.
pub const DEVICE_SHARED_TICKS: u8 = 16;
/// `StartInfo::devices` bit: the guest's console is a one-port console
/// (QEMU's `isa-debugcon`) at [`guest_console_port`] of the VMM's system
/// guest number, in [`GUEST_CONSOLE_PORTS_SLOT`]; the VMM's own lines go to
/// one at [`vmm_log_port`], in [`SERIAL_PORTS_SLOT`].
pub const DEVICE_DEBUGCON: u8 = 32;
/// `StartInfo::devices` bit: the VMM reports its guest's end to the
/// supervisor ([`SUPERVISOR_ENDPOINT_SLOT`]) instead of ending the machine.
pub const DEVICE_SUPERVISOR: u8 = 64;

/// COM2's I/O ports, first and last: the guest's console (`guest_console`).
pub const GUEST_CONSOLE_PORTS: (u16, u16) = (0x2f8, 0x2ff);

/// The real PIT's period, in input ticks, when the supervisor owns it: 1 kHz.
pub const SHARED_TICK_PERIOD: u32 = 1193;

/// With several guests, guest `n`'s console: one I/O port, each byte written
/// to it leaves the machine on a line of its own (QEMU's `isa-debugcon`).
/// 0x780.. is free on QEMU's pc (the firmware puts ACPI at 0x600, SMBus at
/// 0x700, PCI I/O BARs from 0xc000).
pub const fn guest_console_port(n: u64) -> u16 {
    0x780 + n as u16
}

/// With several guests, the console of guest `n`'s VMM (its own lines).
pub const fn vmm_log_port(n: u64) -> u16 {
    0x790 + n as u16
}

/// The start page: a read-only page of the VMM's address space the
/// generator fills with what the VMM needs at run time and the start
/// registers cannot hold ([`StartPage`]).
pub const START_PAGE_ADDR: u64 = VMM_IRQ_STACK_BOTTOM + (VMM_IRQ_STACK_PAGES + 1) * 0x1000;

/// [`StartPage`]'s first word: "PVSTART1".
pub const START_PAGE_MAGIC: u64 = u64::from_le_bytes(*b"PVSTART1");

/// The longest guest command line the start page holds.
pub const MAX_CMDLINE: usize = 1024;

/// [`StartPage::flags`]: the guest runs by trap-and-emulate, with no wedge
/// (docs/trap-and-emulate.md).
pub const START_TRAP: u32 = 1;
/// [`StartPage::flags`]: the guest image is Linux's `vmlinux`, entered by
/// Linux's 64-bit boot protocol (docs/linux.md, "Linux on seL4"); its
/// initrd ([`StartPage::initrd_bytes`] bytes) follows the image in the
/// image window at [`initrd_offset`].
pub const START_LINUX: u32 = 2;

/// Where a guest's initrd starts in its image window: the page after the
/// image's last byte.
pub const fn initrd_offset(image_bytes: u64) -> u64 {
    image_bytes.div_ceil(0x1000) * 0x1000
}

/// What the start page says, per VMM: which guest of the system it serves
/// (its lines name it), how, and the guest's command line.
///
/// Layout (little-endian): magic (u64), system guest number (u32), flags
/// (u32), command-line length (u32), initrd size (u32), the command line's
/// bytes (at most [`MAX_CMDLINE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartPage<'a> {
    /// The guest's number in the system (0 for the only guest).
    pub index: u32,
    /// `START_*` bits.
    pub flags: u32,
    /// The guest's command line.
    pub cmdline: &'a [u8],
    /// The size of the initrd in the image window (with [`START_LINUX`];
    /// 0: none).
    pub initrd_bytes: u32,
}

/// Why a start page cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPageError {
    /// The first word is not [`START_PAGE_MAGIC`] (it holds this).
    Magic(u64),
    /// The command line's length is over [`MAX_CMDLINE`] or the page.
    CmdlineLength(u32),
}

impl core::fmt::Display for StartPageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartPageError::Magic(m) => write!(f, "the start page begins {m:#x}, not the magic"),
            StartPageError::CmdlineLength(n) => write!(
                f,
                "the start page's command line is {n} bytes long, over {MAX_CMDLINE}"
            ),
        }
    }
}

/// Bytes before the command line.
const START_HEADER: usize = 24;

impl<'a> StartPage<'a> {
    /// The page's bytes (at most a page).
    pub fn to_bytes(&self, out: &mut [u8; START_HEADER + MAX_CMDLINE]) -> usize {
        let len = self.cmdline.len().min(MAX_CMDLINE);
        out[..8].copy_from_slice(&START_PAGE_MAGIC.to_le_bytes());
        out[8..12].copy_from_slice(&self.index.to_le_bytes());
        out[12..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..20].copy_from_slice(&(len as u32).to_le_bytes());
        out[20..24].copy_from_slice(&self.initrd_bytes.to_le_bytes());
        out[START_HEADER..START_HEADER + len].copy_from_slice(&self.cmdline[..len]);
        START_HEADER + len
    }

    /// Reads a start page.
    pub fn from_bytes(page: &'a [u8]) -> Result<StartPage<'a>, StartPageError> {
        let word = |at: usize| -> u32 {
            let mut b = [0u8; 4];
            if let Some(s) = page.get(at..at + 4) {
                b.copy_from_slice(s);
            }
            u32::from_le_bytes(b)
        };
        let mut magic = [0u8; 8];
        if let Some(s) = page.get(..8) {
            magic.copy_from_slice(s);
        }
        let magic = u64::from_le_bytes(magic);
        if magic != START_PAGE_MAGIC {
            return Err(StartPageError::Magic(magic));
        }
        let len = word(16);
        let cmdline = page
            .get(START_HEADER..START_HEADER + len as usize)
            .filter(|_| len as usize <= MAX_CMDLINE)
            .ok_or(StartPageError::CmdlineLength(len))?;
        Ok(StartPage {
            index: word(8),
            flags: word(12),
            cmdline,
            initrd_bytes: word(20),
        })
    }
}

/// The size of a start page's bytes ([`StartPage::to_bytes`]'s buffer).
pub const START_PAGE_BYTES: usize = START_HEADER + MAX_CMDLINE;

/// What the VMM cannot know from the constants above: how many guests, how
/// big each one's RAM and image are, how big its CNode is, which devices it
/// has. The generator puts it in the VMM TCB's `init` registers, which the
/// loader sets before the thread starts, so no file has to be made for it.
///
/// - `rdi`: guest count (bits 0..8), CNode radix (bits 8..16), device bits
///   (16..24), size of the wedge's ELF file in [`WEDGE_WINDOW`] (bits 32..64;
///   0 without a wedge).
/// - `rsi`, `rdx`, `rcx`, `r8`, `r9`: guest 0..4: RAM frames (bits 32..64)
///   and image bytes (bits 0..32); 0 for absent guests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartInfo {
    /// Number of guests (at most [`MAX_GUESTS`]).
    pub guest_count: u8,
    /// Radix of the VMM's CNode.
    pub cnode_bits: u8,
    /// `DEVICE_*` bits.
    pub devices: u8,
    /// Size of the wedge's ELF file in [`WEDGE_WINDOW`], 0 if none.
    pub wedge_bytes: u32,
    /// The vTLB: its strategy's code ([`crate::VtlbStrategy::code`], bits
    /// 0..=5), whether the VMM records a page-table trace (bit 6,
    /// [`VTLB_RECORD`]) and whether it checks the invariant at every
    /// invalidation point (bit 7, [`VTLB_CHECK`]).
    pub vtlb: u8,
    /// Per guest: RAM in 4 KiB frames, image in bytes.
    pub guests: [GuestInfo; MAX_GUESTS],
}

/// [`StartInfo::vtlb`]'s bit: check the mapping invariant at every
/// invalidation point.
pub const VTLB_CHECK: u8 = 0x80;

/// [`StartInfo::vtlb`]'s bit: record the guest's page-table trace for
/// replay on the host (docs/vtlb.md, "Record and replay"); the strategy
/// is then the recorder's own.
pub const VTLB_RECORD: u8 = 0x40;

/// One guest's sizes in [`StartInfo`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestInfo {
    /// RAM, in 4 KiB frames (guest-physical 0 up).
    pub ram_frames: u32,
    /// Size of the ELF file in its image window.
    pub image_bytes: u32,
}

impl StartInfo {
    /// The six `init` values (rdi, rsi, rdx, rcx, r8, r9).
    pub const fn to_registers(&self) -> [u64; 6] {
        let mut regs = [0u64; 6];
        regs[0] = self.guest_count as u64
            | (self.cnode_bits as u64) << 8
            | (self.devices as u64) << 16
            | (self.vtlb as u64) << 24
            | (self.wedge_bytes as u64) << 32;
        let mut k = 0;
        while k < MAX_GUESTS {
            let g = self.guests[k];
            regs[k + 1] = (g.ram_frames as u64) << 32 | g.image_bytes as u64;
            k += 1;
        }
        regs
    }

    /// Reads what [`StartInfo::to_registers`] wrote. A guest count above
    /// [`MAX_GUESTS`] is cut to it.
    pub const fn from_registers(regs: [u64; 6]) -> StartInfo {
        let count = (regs[0] & 0xff) as u8;
        let mut info = StartInfo {
            guest_count: if count as usize > MAX_GUESTS {
                MAX_GUESTS as u8
            } else {
                count
            },
            cnode_bits: (regs[0] >> 8 & 0xff) as u8,
            devices: (regs[0] >> 16 & 0xff) as u8,
            vtlb: (regs[0] >> 24 & 0xff) as u8,
            wedge_bytes: (regs[0] >> 32) as u32,
            guests: [GuestInfo {
                ram_frames: 0,
                image_bytes: 0,
            }; MAX_GUESTS],
        };
        let mut k = 0;
        while k < MAX_GUESTS {
            info.guests[k] = GuestInfo {
                ram_frames: (regs[k + 1] >> 32) as u32,
                image_bytes: regs[k + 1] as u32,
            };
            k += 1;
        }
        info
    }

    /// The slot of guest `guest`'s first RAM frame cap (frame `i` is at
    /// `+ i`); `None` past the last guest.
    pub const fn ram_first_slot(&self, guest: usize) -> Option<u64> {
        if guest >= self.guest_count as usize || guest >= MAX_GUESTS {
            return None;
        }
        let mut slot = GUEST_RAM_SLOTS_BASE;
        let mut k = 0;
        while k < guest {
            slot += self.guests[k].ram_frames as u64;
            k += 1;
        }
        Some(slot)
    }

    /// The first slot after every RAM frame cap: from here to the end of the
    /// CNode (`1 << cnode_bits`) the slots are empty, for the VMM's own use
    /// (frame cap copies for guest mappings, page tables retyped from the
    /// guests' untypeds).
    pub const fn free_first_slot(&self) -> u64 {
        let mut slot = GUEST_RAM_SLOTS_BASE;
        let mut k = 0;
        while k < self.guest_count as usize && k < MAX_GUESTS {
            slot += self.guests[k].ram_frames as u64;
            k += 1;
        }
        slot
    }
}

// The layout's promises, checked when the crate compiles.
const _: () = {
    // Every guest block sits below the RAM slots.
    assert!(guest_tcb_slot(MAX_GUESTS as u64) <= GUEST_RAM_SLOTS_BASE);
    // The windows are in the user half (PML4 entries 0..256), one after the
    // other, above the stack, and the largest stack stays below them.
    assert!(guest_ram_window(MAX_GUESTS as u64) <= IMAGE_WINDOW_BASE);
    assert!(guest_image_window(MAX_GUESTS as u64) <= WEDGE_WINDOW);
    assert!(WEDGE_WINDOW + WINDOW_STRIDE <= 0x8000_0000_0000);
    assert!(VMM_STACK_BOTTOM + (MAX_VMM_STACK_PAGES << 12) < RAM_WINDOW_BASE);
    // Guest badges never collide with the timer's bit.
    assert!(guest_badge(MAX_GUESTS as u64) < TIMER_BADGE);
    assert!(guest_badge(MAX_SYSTEM_GUESTS as u64) < TIMER_BADGE);
    // The start page is above the interrupt thread's stack, below the windows.
    assert!(START_PAGE_ADDR + 0x1000 < RAM_WINDOW_BASE);
    assert!(START_PAGE_BYTES <= 0x1000);
    // The supervisor's tick caps fit its CNode.
    assert!(supervisor_ticks_slot(MAX_SYSTEM_GUESTS as u64) <= 1 << SUPERVISOR_CNODE_BITS);
    // The per-guest console ports do not meet.
    assert!(guest_console_port(MAX_SYSTEM_GUESTS as u64) <= vmm_log_port(0));
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_page_round_trips_and_refuses_bad_pages() {
        let page = StartPage {
            index: 3,
            flags: START_TRAP,
            cmdline: b"tests=all",
            initrd_bytes: 0,
        };
        let mut bytes = [0u8; START_PAGE_BYTES];
        let n = page.to_bytes(&mut bytes);
        assert_eq!(StartPage::from_bytes(&bytes[..n]), Ok(page));
        let linux = StartPage {
            flags: START_LINUX,
            initrd_bytes: 1_984_312,
            ..page
        };
        let mut linux_bytes = [0u8; START_PAGE_BYTES];
        let n = linux.to_bytes(&mut linux_bytes);
        assert_eq!(StartPage::from_bytes(&linux_bytes[..n]), Ok(linux));
        assert_eq!(initrd_offset(12_458_824), 12_460_032);
        assert_eq!(initrd_offset(0x3000), 0x3000);
        assert_eq!(StartPage::from_bytes(&bytes), Ok(page));
        let mut bad = bytes;
        bad[0] ^= 1;
        assert!(matches!(
            StartPage::from_bytes(&bad),
            Err(StartPageError::Magic(_))
        ));
        let mut long = bytes;
        long[16..20].copy_from_slice(&2000u32.to_le_bytes());
        assert_eq!(
            StartPage::from_bytes(&long),
            Err(StartPageError::CmdlineLength(2000))
        );
        assert!(StartPage::from_bytes(&bytes[..4]).is_err());
    }

    #[test]
    fn start_info_round_trips() {
        let mut info = StartInfo {
            guest_count: 2,
            cnode_bits: 15,
            devices: DEVICE_PIT | DEVICE_SERIAL | DEVICE_GUEST_CONSOLE,
            wedge_bytes: 0x1234,
            ..StartInfo::default()
        };
        info.guests[0] = GuestInfo {
            ram_frames: 16384,
            image_bytes: 12345,
        };
        info.guests[1] = GuestInfo {
            ram_frames: 256,
            image_bytes: 1,
        };
        assert_eq!(StartInfo::from_registers(info.to_registers()), info);
        assert_eq!(info.ram_first_slot(0), Some(GUEST_RAM_SLOTS_BASE));
        assert_eq!(info.ram_first_slot(1), Some(GUEST_RAM_SLOTS_BASE + 16384));
        assert_eq!(info.ram_first_slot(2), None);
        assert_eq!(info.free_first_slot(), GUEST_RAM_SLOTS_BASE + 16384 + 256);
    }
}
