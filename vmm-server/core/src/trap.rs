//! Trap-and-emulate: the VMM runs an unmodified (plain) guest and catches
//! what faults (docs/trap-and-emulate.md). Every sensitive instruction that
//! faults at user level arrives as the guest thread's exception; this
//! module decodes the instruction from guest memory through the guest's own
//! page tables and emulates it on the virtual CPU with the wedge's decoder
//! and emulator (`wedge_l4`: one implementation for both), or delivers the
//! guest's own exception through its virtual IDT, as the wedge does.
//!
//! Nothing here names seL4: the VMM gives the guest's registers, its
//! virtual CPU and a [`TrapHost`] (the wedge's `Backend`, plus the virtual
//! PIC's acknowledge cycle), and writes the registers back.

use crate::ram::Ram;
use crate::walk::walk;
use afterburn_format::Kind;
use previrt_protocol::address_space::is_canonical;
use wedge_l4::backend::Backend;
use wedge_l4::decode::{decode_at, DecodeError, Insn};
use wedge_l4::emulate::{emulate_decoded, raise, EmulateError, Outcome};
use wedge_l4::interrupts::{deliver, has_error_code, DeliverError};
use wedge_l4::memory::{GuestMemory, GuestRegs, MemError};
use wedge_l4::records::Site;
use wedge_l4::vcpu::Vcpu;

/// `#GP`: what a sensitive instruction raises at user level.
const VEC_GP: u8 = 13;
/// `#PF`.
const VEC_PF: u8 = 14;
/// #PF error code bits: the page was present; the access was a write.
pub(crate) const PF_PRESENT: u64 = 1;
pub(crate) const PF_WRITE: u64 = 2;
/// #PF error code bit 4: an instruction fetch.
pub(crate) const PF_FETCH: u64 = 0x10;

/// Guest-virtual memory through the guest's own page tables (`cr3`), read
/// and written in guest RAM directly, so a page the VMM has not mapped for
/// the guest yet is reachable and one the guest's tables do not map (or
/// map read-only, for a write) is a [`MemError`] at the first byte that
/// failed, with what a #PF needs remembered in [`GuestPages::fault`].
#[derive(Debug)]
pub struct GuestPages<'r> {
    pub ram: &'r Ram,
    pub cr3: u64,
    /// The last access that failed: its #PF error code (present, write).
    pub fault: Option<u64>,
}

impl<'r> GuestPages<'r> {
    pub fn new(ram: &'r Ram, cr3: u64) -> GuestPages<'r> {
        GuestPages {
            ram,
            cr3,
            fault: None,
        }
    }

    /// Runs `f(gpa, from, to)` on each page-sized piece of `[address,
    /// address + len)`, in order, as the tables translate it.
    fn each_page(
        &mut self,
        address: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(&Ram, u64, usize, usize) -> bool,
    ) -> Result<(), MemError> {
        let mut done = 0usize;
        while done < len {
            let va = address.wrapping_add(done as u64);
            let in_page = (4096 - (va & 0xfff)) as usize;
            let n = in_page.min(len - done);
            let t = match walk(self.ram, self.cr3, va) {
                Ok(t) if t.writable || !write => t,
                walked => {
                    let present = if walked.is_ok() { PF_PRESENT } else { 0 };
                    let w = if write { PF_WRITE } else { 0 };
                    self.fault = Some(present | w);
                    return Err(MemError { address: va });
                }
            };
            if !f(self.ram, t.gpa + (va & 0xfff), done, done + n) {
                // The translation named RAM the walk checked: unreachable
                // in practice, but a failure, never a panic.
                self.fault = Some(0);
                return Err(MemError { address: va });
            }
            done += n;
        }
        Ok(())
    }
}

impl GuestMemory for GuestPages<'_> {
    fn read(&mut self, address: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let len = buf.len();
        self.each_page(address, len, false, |ram, gpa, from, to| {
            ram.read(gpa, &mut buf[from..to]).is_ok()
        })
    }

    fn write(&mut self, address: u64, data: &[u8]) -> Result<(), MemError> {
        self.each_page(address, data.len(), true, |ram, gpa, from, to| {
            ram.write(gpa, &data[from..to]).is_ok()
        })
    }
}

/// What the VMM gives the emulator besides the wedge's `Backend`: its
/// virtual PIC.
pub trait TrapHost: Backend {
    /// Whether the virtual PIC asserts INTR (brought up to guest time).
    fn interrupt_waiting(&mut self) -> bool;
    /// The acknowledge cycle: the vector the PIC gives, if any.
    fn acknowledge(&mut self) -> Option<u8>;
}

/// A fault of the guest thread, as the VMM received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A CPU exception at `regs.rip` with its error code (0 if none).
    Exception { vector: u8, error: u64 },
    /// A page fault the guest's own tables do not allow: `error` is the
    /// #PF error code they imply (present, write).
    PageFault { address: u64, error: u64 },
}

/// What the VMM did with a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// A sensitive instruction was emulated; the guest resumes at
    /// `regs.rip`, after it.
    Emulated(Kind),
    /// An exception or an interrupt was delivered through the guest's IDT
    /// (after emulating `emulated`, if any): `regs.rip` is its handler.
    Delivered { vector: u8, emulated: Option<Kind> },
    /// `hlt` (or `sti; hlt`) with no interrupt to take: the guest waits,
    /// `regs.rip` past the `hlt`. The VMM wakes it with [`take_interrupt`].
    Halted,
}

/// Why the guest cannot go on. The VMM ends it, saying this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapError {
    /// A sensitive instruction at `rip` could not be emulated.
    Emulate {
        rip: u64,
        kind: Kind,
        error: EmulateError,
    },
    /// An exception could not be delivered, even as a double fault.
    TripleFault {
        rip: u64,
        vector: u8,
        error: DeliverError,
    },
    /// An external interrupt could not be delivered.
    InterruptUndeliverable { vector: u8, error: DeliverError },
    /// The guest kernel returned to user mode (`iretq` to CPL 3,
    /// `sysretq`) at `rip`: trap-and-emulate has no user views, and running
    /// the process in the kernel's address space would let it reach the
    /// kernel (docs/trap-and-emulate.md).
    UserMode { rip: u64 },
}

impl core::fmt::Display for TrapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TrapError::Emulate { rip, kind, error } => write!(
                f,
                "its `{}` at {rip:#x} could not be emulated: {error:?}",
                kind.name()
            ),
            TrapError::TripleFault { rip, vector, error } => write!(
                f,
                "triple fault: exception {vector} at {rip:#x} could not be delivered, nor a double fault: {}",
                Why(error)
            ),
            TrapError::InterruptUndeliverable { vector, error } => {
                write!(f, "interrupt vector {vector} could not be delivered: {}", Why(error))
            }
            TrapError::UserMode { rip } => write!(
                f,
                "its return to user mode at {rip:#x} needs user views, which trap-and-emulate does not have"
            ),
        }
    }
}

/// Why a delivery failed, in words.
struct Why(DeliverError);

impl core::fmt::Display for Why {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            DeliverError::OutsideIdt { vector } => {
                write!(f, "gate {vector} is beyond the IDT's limit")
            }
            DeliverError::NotPresent { vector } => write!(f, "gate {vector} is not present"),
            DeliverError::BadGateType { vector, type_byte } => {
                write!(f, "gate {vector} has type byte {type_byte:#x}")
            }
            DeliverError::NoTss { vector } => {
                write!(f, "gate {vector} names an IST stack but TR selects no TSS")
            }
            DeliverError::Memory(MemError { address }) => write!(
                f,
                "the IDT, TSS or stack at {address:#x} is not mapped by its page tables"
            ),
        }
    }
}

/// The sensitive instruction at `rip`: up to 15 bytes, stopping at the
/// first page the guest's tables do not map. Returns the bytes fetched and,
/// if the fetch stopped early, the address that failed.
pub fn fetch(mem: &mut GuestPages, rip: u64) -> ([u8; 15], usize, Option<u64>) {
    let mut b = [0u8; 15];
    let first = ((4096 - (rip & 0xfff)) as usize).min(15);
    if mem.read(rip, &mut b[..first]).is_err() {
        return (b, 0, Some(rip));
    }
    if first < 15 {
        let next = rip.wrapping_add(first as u64);
        if mem.read(next, &mut b[first..]).is_err() {
            return (b, first, Some(next));
        }
    }
    (b, 15, None)
}

/// What a fault is about, found once: the instruction a #GP stopped at, or
/// why there is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A sensitive instruction: its kind, decoding and length.
    Insn(Kind, Insn, u8),
    /// The instruction runs into a page the guest does not map (at this
    /// canonical address): the fetch would have faulted there first.
    FetchFault(u64),
    /// A #GP at bytes that are no instruction the VMM emulates: the
    /// guest's own.
    NotSensitive,
    /// Not a #GP: nothing to decode.
    NoInstruction,
}

impl Decoded {
    /// Whether serving it reads or writes no general register but rsp:
    /// then the VMM needs only rip, rsp and rflags (which a `UserException`
    /// message carries) and writes back only those. True for a delivery
    /// and for `cli`, `sti`, `hlt`, `iretq`, `lret`, `int`, `clts`, `invd`,
    /// `wbinvd`; false for the other instructions.
    pub fn frame_only(&self) -> bool {
        match self {
            Decoded::Insn(_, insn, _) => matches!(
                insn,
                Insn::Cli
                    | Insn::Sti
                    | Insn::Hlt
                    | Insn::Iret(_)
                    | Insn::FarRet { .. }
                    | Insn::Int(_)
                    | Insn::Int3
                    | Insn::Into
                    | Insn::Clts
                    | Insn::Invd
                    | Insn::Wbinvd
            ),
            Decoded::FetchFault(_) | Decoded::NotSensitive | Decoded::NoInstruction => true,
        }
    }
}

/// Finds what `fault` at `rip` is about: for a #GP, the instruction at
/// `rip`, read through the guest's page tables.
pub fn decode_fault(fault: Fault, mem: &mut GuestPages, rip: u64) -> Decoded {
    if !matches!(fault, Fault::Exception { vector: VEC_GP, .. }) {
        return Decoded::NoInstruction;
    }
    let (bytes, got, missing) = fetch(mem, rip);
    match (decode_at(&bytes[..got]), missing) {
        (Ok((kind, insn, len)), _) => Decoded::Insn(kind, insn, len),
        // A non-canonical rip is the #GP itself (a jump there faults so).
        (Err(DecodeError::Truncated { .. }), Some(at)) if is_canonical(at) => {
            Decoded::FetchFault(at)
        }
        (Err(_), _) => Decoded::NotSensitive,
    }
}

/// Serves one fault of the guest: emulates the sensitive instruction a #GP
/// is about, or delivers the guest's own exception through its IDT (a
/// #PF with `vcpu.cr2`). `regs.rip` is where the fault happened (past the
/// instruction for traps, as the CPU reports them).
pub fn handle(
    fault: Fault,
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut GuestPages,
    host: &mut dyn TrapHost,
) -> Result<Handled, TrapError> {
    let decoded = decode_fault(fault, mem, regs.rip);
    handle_decoded(fault, decoded, vcpu, regs, mem, host)
}

/// [`handle`] with the fault decoded already ([`decode_fault`], at
/// `regs.rip`).
pub fn handle_decoded(
    fault: Fault,
    decoded: Decoded,
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut GuestPages,
    host: &mut dyn TrapHost,
) -> Result<Handled, TrapError> {
    match (fault, decoded) {
        (Fault::PageFault { address, error }, _) => {
            exception(VEC_PF, error, address, vcpu, regs, mem, host)
        }
        (_, Decoded::Insn(kind, insn, len)) => emulate_at(kind, insn, len, vcpu, regs, mem, host),
        (_, Decoded::FetchFault(at)) => exception(VEC_PF, PF_FETCH, at, vcpu, regs, mem, host),
        (Fault::Exception { vector, error }, _) => {
            exception(vector, error, 0, vcpu, regs, mem, host)
        }
    }
}

/// Delivers exception `vector` at `regs.rip` (`cr2` for a #PF), escalating
/// as a CPU does.
fn exception(
    vector: u8,
    error: u64,
    cr2: u64,
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut GuestPages,
    host: &mut dyn TrapHost,
) -> Result<Handled, TrapError> {
    let rip = regs.rip;
    if vector == VEC_PF {
        vcpu.cr2 = cr2;
    }
    let code = has_error_code(vector).then_some(error);
    match raise(vector, code, rip, vcpu, regs, mem, host) {
        Ok(Outcome::Delivered(v)) => Ok(Handled::Delivered {
            vector: v,
            emulated: None,
        }),
        Ok(Outcome::Resume) => Ok(Handled::Delivered {
            vector,
            emulated: None,
        }),
        Ok(Outcome::EnterUser) => Err(TrapError::UserMode { rip }),
        Err(EmulateError::TripleFault(error)) => Err(TrapError::TripleFault { rip, vector, error }),
        Err(error) => Err(TrapError::Emulate {
            rip,
            kind: Kind::Int,
            error,
        }),
    }
}

/// Emulates `insn` (`len` bytes at `regs.rip`), then lets a waiting
/// interrupt in if virtual IF allows.
fn emulate_at(
    kind: Kind,
    insn: Insn,
    len: u8,
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut GuestPages,
    host: &mut dyn TrapHost,
) -> Result<Handled, TrapError> {
    let rip = regs.rip;
    let next = rip.wrapping_add(u64::from(len));
    // hlt waits in the VMM, not in the emulator; `sti; hlt` keeps the
    // interrupt shadow: the interrupt comes after the hlt.
    let halts = match insn {
        Insn::Hlt => true,
        Insn::Sti => {
            let mut b = [0u8];
            mem.read(next, &mut b).is_ok() && b[0] == 0xf4
        }
        _ => false,
    };
    if halts {
        if insn == Insn::Sti {
            vcpu.set_interrupts_enabled(true);
            regs.rip = next.wrapping_add(1);
        } else {
            regs.rip = next;
        }
        if vcpu.interrupts_enabled() && host.interrupt_waiting() {
            return take_interrupt(vcpu, regs, mem, host).map(|v| match v {
                Some(vector) => Handled::Delivered {
                    vector,
                    emulated: Some(kind),
                },
                None => Handled::Halted,
            });
        }
        return Ok(Handled::Halted);
    }
    let site = Site {
        address: rip,
        kind,
        flags: 0,
        site_len: len,
        insn_len: len,
        pair_len: 0,
    };
    mem.fault = None;
    match emulate_decoded(&site, insn, &[], vcpu, regs, mem, host) {
        Ok(Outcome::Delivered(vector)) => Ok(Handled::Delivered {
            vector,
            emulated: Some(kind),
        }),
        Ok(Outcome::Resume) => {
            if vcpu.interrupts_enabled() && host.interrupt_waiting() {
                if let Some(vector) = take_interrupt(vcpu, regs, mem, host)? {
                    return Ok(Handled::Delivered {
                        vector,
                        emulated: Some(kind),
                    });
                }
            }
            Ok(Handled::Emulated(kind))
        }
        Ok(Outcome::EnterUser) => Err(TrapError::UserMode { rip }),
        // An operand the guest's tables do not map (or map read-only): the
        // #PF the instruction raises on hardware, at the instruction.
        Err(EmulateError::Memory(MemError { address })) => {
            regs.rip = rip;
            let error = mem.fault.unwrap_or(0);
            exception(VEC_PF, error, address, vcpu, regs, mem, host)
        }
        Err(error) => Err(TrapError::Emulate { rip, kind, error }),
    }
}

/// The acknowledge cycle and the delivery of its vector at `regs.rip`, if
/// the PIC still gives one. Virtual IF must be set.
pub fn take_interrupt(
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut GuestPages,
    host: &mut dyn TrapHost,
) -> Result<Option<u8>, TrapError> {
    let Some(vector) = host.acknowledge() else {
        return Ok(None);
    };
    deliver(vector, None, vcpu, regs, mem)
        .map(|()| Some(vector))
        .map_err(|error| TrapError::InterruptUndeliverable { vector, error })
}
