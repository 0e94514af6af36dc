//! Emulating one site's instruction on the virtual CPU.
//!
//! [`emulate`] is what the wedge's entry runs for every rewritten site: it
//! decodes the site's original instruction, applies it to the [`Vcpu`] and
//! the guest's registers, calls the [`Backend`] for what needs the world
//! outside, and leaves `regs.rip` where the guest continues: past the whole
//! site (instruction and padding) normally, at a branch target for `iret`
//! and `lret`, or at an IDT handler when it delivered an exception or a
//! pending virtual interrupt.

use crate::backend::{Backend, BackendError, ShutdownReason};
use crate::debug_registers::{self, DebugRegisterFault};
use crate::decode::{decode, decode_at, DecodeError, Insn, Mem, Operand, Port, PortIo};
use crate::descriptors;
use crate::interrupts::{deliver, deliver_pending, DeliverError};
use crate::memory::{read_sized, reg, write_sized, GuestMemory, GuestRegs, MemError};
use crate::msr;
use crate::records::Site;
use crate::vcpu::{SegReg, Vcpu, CR0_PE, CR0_TS, CR4_PAE, FLAG_OF};
use afterburn_format::Kind;
use previrt_protocol::address_space::is_canonical;

pub use crate::msr::{
    EFER_SCE, MSR_EFER, MSR_FS_BASE, MSR_GS_BASE, MSR_KERNEL_GS_BASE, MSR_LSTAR, MSR_SFMASK,
    MSR_STAR,
};

/// RFLAGS.ZF.
const FLAG_ZF: u64 = 1 << 6;
/// RFLAGS.DF.
const FLAG_DF: u64 = 1 << 10;
/// `#UD`.
const VEC_UD: u8 = 6;
/// `#NP`.
const VEC_NP: u8 = 11;
/// `#GP`.
const VEC_GP: u8 = 13;
/// `#DF`.
const VEC_DF: u8 = 8;

/// CR4.PCIDE.
const CR4_PCIDE: u64 = 1 << 17;
/// The CR4 bits of features the virtual CPU has: VME, PVI, TSD, DE, PSE,
/// PAE, MCE, PGE, PCE, OSFXSR, OSXMMEXCPT. Setting any other bit is #GP(0),
/// as on a CPU without the feature: UMIP, LA57, VMXE, SMXE, FSGSBASE,
/// PCIDE, OSXSAVE, SMEP, SMAP, PKE and the rest (CPUID must hide them;
/// docs/wedge.md, "Control registers").
pub const CR4_SUPPORTED: u64 = 0x7ff;

/// What happened at the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The instruction was applied; the guest resumes at `regs.rip`.
    Resume,
    /// An exception or virtual interrupt with this vector was delivered;
    /// `regs.rip` is its handler.
    Delivered(u8),
    /// The guest kernel returned to user mode (`iretq` to a CPL 3 frame,
    /// `sysretq`): the virtual CPU is at CPL 3 and `regs` hold the process's
    /// registers. Its processes run in address spaces without the guest
    /// kernel in them, which the backend switches to
    /// (docs/guest-processes.md); the wedge's own `iretq` must not run them
    /// in the kernel's.
    EnterUser,
}

/// Why a site could not be emulated. The guest cannot continue correctly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulateError {
    /// The bytes given are shorter than the site's instruction(s).
    BytesTooShort { have: usize, need: usize },
    /// The site is 16- or 32-bit code, which the wedge does not run.
    Not64Bit,
    /// The instruction did not decode.
    Decode(DecodeError),
    /// A valid form the wedge does not emulate (yet).
    Unsupported { kind: Kind },
    /// A shadowed pair the wedge cannot run: its second instruction is
    /// neither `hlt` nor `cli` after `sti`, nor a segment load from a
    /// register after a load of SS ([`pair_supported`]).
    UnsupportedPair,
    /// A far jump or call to 16- or 32-bit code, which the wedge does not
    /// run (the selector it named).
    LeavesLongMode { selector: u16 },
    /// A guest memory access failed.
    Memory(MemError),
    /// The backend failed.
    Backend(BackendError),
    /// An exception could not be delivered even as a double fault; the
    /// backend was told to shut the guest down.
    TripleFault(DeliverError),
    /// A pending interrupt could not be delivered.
    Delivery(DeliverError),
}

impl From<DecodeError> for EmulateError {
    fn from(e: DecodeError) -> Self {
        EmulateError::Decode(e)
    }
}
impl From<MemError> for EmulateError {
    fn from(e: MemError) -> Self {
        EmulateError::Memory(e)
    }
}
impl From<BackendError> for EmulateError {
    fn from(e: BackendError) -> Self {
        EmulateError::Backend(e)
    }
}
impl From<DeliverError> for EmulateError {
    fn from(e: DeliverError) -> Self {
        EmulateError::Delivery(e)
    }
}

/// The machine the instruction runs on, bundled so helpers take one argument.
struct Machine<'a> {
    site: &'a Site,
    vcpu: &'a mut Vcpu,
    regs: &'a mut GuestRegs,
    mem: &'a mut dyn GuestMemory,
    backend: &'a mut dyn Backend,
}

/// Applies the instruction of `site` (original bytes `bytes`: at least the
/// instruction and its pair) to the guest. On entry `regs.rip` is ignored;
/// on success it holds where the guest continues.
pub fn emulate(
    site: &Site,
    bytes: &[u8],
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut dyn GuestMemory,
    backend: &mut dyn Backend,
) -> Result<Outcome, EmulateError> {
    let insn_len = usize::from(site.insn_len);
    let need = insn_len + usize::from(site.pair_len);
    if bytes.len() < need {
        return Err(EmulateError::BytesTooShort {
            have: bytes.len(),
            need,
        });
    }
    if !site.is_64bit() {
        return Err(EmulateError::Not64Bit);
    }
    let insn = decode(site.kind, &bytes[..insn_len])?;
    emulate_decoded(site, insn, &bytes[insn_len..need], vcpu, regs, mem, backend)
}

/// [`emulate`] for an instruction decoded already (the wedge decodes each
/// site once, when it rewrites it); `pair` is the shadowed pair's bytes.
pub fn emulate_decoded(
    site: &Site,
    insn: Insn,
    pair: &[u8],
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut dyn GuestMemory,
    backend: &mut dyn Backend,
) -> Result<Outcome, EmulateError> {
    let pair = classify_pair(insn, pair).ok_or(EmulateError::UnsupportedPair)?;
    let mut m = Machine {
        site,
        vcpu,
        regs,
        mem,
        backend,
    };
    match pair {
        Pair::None => m.run(insn, false),
        Pair::StiHlt => m.run(insn, true),
        // Nothing is delivered inside sti's shadow, so nothing can be
        // before the cli: the pair is a cli.
        Pair::StiCli => m.run(Insn::Cli, false),
        Pair::Then(second) => match m.run(insn, false)? {
            Outcome::Resume => m.run(second, false),
            other => Ok(other),
        },
    }
}

/// How a site's shadowed pair runs.
enum Pair {
    /// No pair.
    None,
    /// `sti; hlt`: halt with interrupts on, deliver after the `hlt`.
    StiHlt,
    /// `sti; cli`.
    StiCli,
    /// The second instruction is one the wedge applies itself, after the
    /// first: a segment load from a register after `mov ..., %ss` (Linux's
    /// `startup_64` loads SS, then ES).
    Then(Insn),
}

fn classify_pair(insn: Insn, pair: &[u8]) -> Option<Pair> {
    match (insn, pair) {
        (_, []) => Some(Pair::None),
        (Insn::Sti, [0xf4]) => Some(Pair::StiHlt),
        (Insn::Sti, [0xfa]) => Some(Pair::StiCli),
        // From a register only: a memory operand of the second instruction
        // would be RIP-relative to its own end, not the site's instruction's.
        (Insn::MovToSeg(SegReg::Ss, _), _) => match decode_at(pair) {
            Ok((Kind::MovToSeg, second @ Insn::MovToSeg(_, Operand::Reg(_)), len))
                if usize::from(len) == pair.len() =>
            {
                Some(Pair::Then(second))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Whether the wedge runs a site whose instruction is `insn` and whose
/// shadowed pair is `pair` (empty for none). Anything else in a shadow
/// would have to execute natively inside the wedge: `emulate` refuses it
/// with [`EmulateError::UnsupportedPair`].
pub fn pair_supported(insn: Insn, pair: &[u8]) -> bool {
    classify_pair(insn, pair).is_some()
}

/// Raises exception `vector` in the guest as a CPU does: the frame returns
/// to `rip` (the faulting instruction for faults, the next one for traps).
/// An exception that cannot be delivered becomes a double fault (#DF(0));
/// an undeliverable double fault shuts the guest down through the backend
/// (a triple fault). Used by `emulate` and by a VMM that catches the
/// guest's faults itself (trap-and-emulate).
pub fn raise(
    vector: u8,
    error: Option<u64>,
    rip: u64,
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut dyn GuestMemory,
    backend: &mut dyn Backend,
) -> Result<Outcome, EmulateError> {
    regs.rip = rip;
    let first = match deliver(vector, error, vcpu, regs, mem) {
        Ok(()) => return Ok(Outcome::Delivered(vector)),
        Err(e) => e,
    };
    let failed = if vector == VEC_DF {
        first
    } else {
        match deliver(VEC_DF, Some(0), vcpu, regs, mem) {
            Ok(()) => return Ok(Outcome::Delivered(VEC_DF)),
            Err(e) => e,
        }
    };
    backend.shutdown(ShutdownReason::TripleFault);
    Err(EmulateError::TripleFault(failed))
}

impl Machine<'_> {
    fn next(&self) -> u64 {
        self.site.end()
    }

    /// Resumes after the site, delivering a pending interrupt if virtual IF
    /// allows it (used after instructions that may set IF).
    fn resume_checking_pending(&mut self) -> Result<Outcome, EmulateError> {
        match deliver_pending(self.vcpu, self.regs, self.mem)? {
            Some(v) => Ok(Outcome::Delivered(v)),
            None => Ok(Outcome::Resume),
        }
    }

    /// After a return (`iretq`, `sysretq`): a pending interrupt first (at
    /// the new CPL, so from CPL 3 its frame goes on RSP0's stack); else on
    /// at CPL 0, or into user mode.
    fn resume_at_cpl(&mut self) -> Result<Outcome, EmulateError> {
        match self.resume_checking_pending()? {
            Outcome::Resume if self.vcpu.seg(SegReg::Cs) & 3 != 0 => Ok(Outcome::EnterUser),
            other => Ok(other),
        }
    }

    /// Raises an exception: `rip` is what the frame holds (the site for
    /// faults, past it for traps). Escalates to #DF, then shuts down.
    fn raise(&mut self, vector: u8, error: Option<u64>, rip: u64) -> Result<Outcome, EmulateError> {
        raise(
            vector,
            error,
            rip,
            self.vcpu,
            self.regs,
            self.mem,
            self.backend,
        )
    }

    fn fault(&mut self, vector: u8, error: Option<u64>) -> Result<Outcome, EmulateError> {
        self.raise(vector, error, self.site.address)
    }

    fn address(&self, m: &Mem) -> u64 {
        let mut a = m.disp as u64; // two's complement: adding wraps correctly
        if m.rip_relative {
            // Relative to the *native* next instruction, not the site's end.
            a = a.wrapping_add(self.site.insn_end());
        }
        if let Some(b) = m.base {
            a = a.wrapping_add(self.regs.get(b));
        }
        if let Some((i, scale)) = m.index {
            a = a.wrapping_add(self.regs.get(i).wrapping_mul(u64::from(scale)));
        }
        if m.addr32 {
            a &= 0xffff_ffff;
        }
        if m.fs {
            a = a.wrapping_add(self.vcpu.fs_base);
        }
        a
    }

    fn read16(&mut self, op: &Operand) -> Result<u16, EmulateError> {
        Ok(match op {
            Operand::Reg(r) => self.regs.get(*r) as u16,
            Operand::Mem(m) => {
                let a = self.address(m);
                read_sized(self.mem, a, 2)? as u16
            }
        })
    }

    /// Stores `value` with the store rules of smsw/str/sldt/mov-from-seg:
    /// registers by operand size, memory always 16 bits.
    fn store(&mut self, op: &Operand, value: u64, size: u8) -> Result<(), EmulateError> {
        match op {
            Operand::Reg(r) => self.regs.write_sized(*r, value, size),
            Operand::Mem(m) => {
                let a = self.address(m);
                write_sized(self.mem, a, value, 2)?;
            }
        }
        Ok(())
    }

    fn push(&mut self, value: u64, size: u8) -> Result<(), EmulateError> {
        let rsp = self.regs.rsp().wrapping_sub(u64::from(size));
        write_sized(self.mem, rsp, value, size)?;
        self.regs.set_rsp(rsp);
        Ok(())
    }

    fn run(&mut self, insn: Insn, sti_hlt: bool) -> Result<Outcome, EmulateError> {
        let next = self.next();
        // Every arm that resumes after the site sets rip itself last, so an
        // error leaves the registers as they were as far as possible.
        match insn {
            Insn::Cli => self.vcpu.set_interrupts_enabled(false),
            Insn::Sti => {
                self.vcpu.set_interrupts_enabled(true);
                self.regs.rip = next;
                if sti_hlt {
                    return self.halt();
                }
                // Unpaired sti: the shadowed instruction is ordinary guest
                // code after the site, so delivering now (before it) is
                // indistinguishable from delivering after it.
                return self.resume_checking_pending();
            }
            Insn::Hlt => {
                self.regs.rip = next;
                return self.halt();
            }
            Insn::Pushf(size) => {
                let image = self.vcpu.visible_rflags(self.regs.rflags);
                self.push(image, size)?;
            }
            Insn::Popf(size) => {
                let rsp = self.regs.rsp();
                let v = read_sized(self.mem, rsp, size)?;
                let image = if size == 2 {
                    (self.vcpu.visible_rflags(self.regs.rflags) & !0xffff) | v
                } else {
                    v
                };
                self.vcpu.load_rflags(&mut self.regs.rflags, image);
                self.regs.set_rsp(rsp.wrapping_add(u64::from(size)));
                self.regs.rip = next;
                return self.resume_checking_pending();
            }
            Insn::Iret(8) => {
                let rsp = self.regs.rsp();
                let mut f = [0u8; 40];
                self.mem.read(rsp, &mut f)?;
                let q = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&f[i * 8..i * 8 + 8]);
                    u64::from_le_bytes(b)
                };
                self.vcpu.load_rflags(&mut self.regs.rflags, q(2));
                self.vcpu.set_seg(SegReg::Cs, q(1) as u16);
                self.vcpu.set_seg(SegReg::Ss, q(4) as u16);
                self.regs.set_rsp(q(3));
                self.regs.rip = q(0);
                return self.resume_at_cpl();
            }
            Insn::Iret(_) => return Err(EmulateError::Unsupported { kind: Kind::Iret }),
            Insn::FarRet { size, release } => {
                let rsp = self.regs.rsp();
                let rip = read_sized(self.mem, rsp, size)?;
                let cs = read_sized(self.mem, rsp.wrapping_add(u64::from(size)), 2)?;
                self.vcpu.set_seg(SegReg::Cs, cs as u16);
                let popped = 2 * u64::from(size) + u64::from(release);
                self.regs.set_rsp(rsp.wrapping_add(popped));
                self.regs.rip = rip;
                return Ok(Outcome::Resume);
            }
            Insn::In(io) => self.port_in(io)?,
            Insn::Out(io) => self.port_out(io)?,
            Insn::MovToCr { cr, reg } => {
                let v = self.regs.get(reg);
                match cr {
                    0 => {
                        self.backend.write_cr0(v)?;
                        self.vcpu.cr0 = v;
                    }
                    2 => self.vcpu.cr2 = v,
                    3 => {
                        self.backend.load_cr3(v)?;
                        self.vcpu.cr3 = v;
                    }
                    // A feature the virtual CPU lacks, or leaving PAE
                    // paging in long mode, is #GP(0) as on hardware.
                    4 if v & !CR4_SUPPORTED != 0 || v & CR4_PAE == 0 => {
                        return self.fault(VEC_GP, Some(0));
                    }
                    4 => {
                        self.backend.write_cr4(v)?;
                        self.vcpu.cr4 = v;
                    }
                    8 => {
                        return Err(EmulateError::Unsupported {
                            kind: Kind::MovToCr,
                        })
                    }
                    _ => return self.fault(VEC_UD, None),
                }
            }
            Insn::MovFromCr { cr, reg } => {
                let v = match cr {
                    0 => self.vcpu.cr0,
                    2 => self.vcpu.cr2,
                    3 => self.vcpu.cr3,
                    4 => self.vcpu.cr4,
                    // No virtual local APIC yet: the task priority is 0.
                    8 => 0,
                    _ => return self.fault(VEC_UD, None),
                };
                self.regs.set(reg, v);
            }
            Insn::Clts => self.vcpu.cr0 &= !CR0_TS,
            Insn::Lmsw(op) => {
                let v = u64::from(self.read16(&op)?);
                // lmsw loads PE, MP, EM, TS but can set PE, never clear it.
                let cr0 = (self.vcpu.cr0 & !0xf) | (v & 0xf) | (self.vcpu.cr0 & CR0_PE);
                self.backend.write_cr0(cr0)?;
                self.vcpu.cr0 = cr0;
            }
            Insn::Smsw(op, size) => self.store(&op, self.vcpu.cr0, size)?,
            Insn::Lgdt(m) | Insn::Lidt(m) => {
                let a = self.address(&m);
                let mut b = [0u8; 10];
                self.mem.read(a, &mut b)?;
                let limit = u16::from_le_bytes([b[0], b[1]]);
                let mut base = [0u8; 8];
                base.copy_from_slice(&b[2..]);
                let base = u64::from_le_bytes(base);
                if matches!(insn, Insn::Lgdt(_)) {
                    self.vcpu.gdtr_base = base;
                    self.vcpu.gdtr_limit = limit;
                } else {
                    self.vcpu.idtr_base = base;
                    self.vcpu.idtr_limit = limit;
                }
            }
            Insn::Sgdt(m) | Insn::Sidt(m) => {
                let (base, limit) = if matches!(insn, Insn::Sgdt(_)) {
                    (self.vcpu.gdtr_base, self.vcpu.gdtr_limit)
                } else {
                    (self.vcpu.idtr_base, self.vcpu.idtr_limit)
                };
                let mut b = [0u8; 10];
                b[..2].copy_from_slice(&limit.to_le_bytes());
                b[2..].copy_from_slice(&base.to_le_bytes());
                let a = self.address(&m);
                self.mem.write(a, &b)?;
            }
            Insn::Ltr(op) => {
                let sel = self.read16(&op)?;
                // Like hardware: the selector must name an available 64-bit
                // TSS in the GDT, which becomes busy (a second ltr of it
                // faults, as on bare metal).
                let index = u64::from(sel & !7);
                let type_at = self.vcpu.gdtr_base.wrapping_add(index + 5);
                let fits =
                    sel & 4 == 0 && index != 0 && index + 15 <= u64::from(self.vcpu.gdtr_limit);
                let mut t = [0u8; 1];
                if fits {
                    self.mem.read(type_at, &mut t)?;
                }
                if !fits || t[0] & 0x9f != 0x89 {
                    return self.fault(VEC_GP, Some(u64::from(sel & !3)));
                }
                self.mem.write(type_at, &[t[0] | 0x02])?;
                self.vcpu.tr = sel;
            }
            Insn::Lldt(op) => self.vcpu.ldtr = self.read16(&op)?,
            Insn::Str(op, size) => self.store(&op, u64::from(self.vcpu.tr), size)?,
            Insn::Sldt(op, size) => self.store(&op, u64::from(self.vcpu.ldtr), size)?,
            Insn::MovToSeg(seg, op) => {
                let v = self.read16(&op)?;
                self.vcpu.set_seg(seg, v);
            }
            Insn::MovFromSeg(seg, op, size) => {
                self.store(&op, u64::from(self.vcpu.seg(seg)), size)?;
            }
            Insn::Invlpg(m) => {
                let a = self.address(&m);
                self.backend.invlpg(a)?;
            }
            // Caches are the host's business.
            Insn::Invd | Insn::Wbinvd => {}
            Insn::Swapgs => {
                // The real GS base is the vCPU page; the guest's pair is
                // virtual (docs/wedge.md, "FS and GS bases").
                core::mem::swap(&mut self.vcpu.gs_base, &mut self.vcpu.kernel_gs_base);
            }
            Insn::Sysret(size) => {
                // Intel SDM vol. 2, SYSRET: rip from rcx, rflags from r11,
                // CS and SS from STAR[63:48] (+16 for 64-bit code, +8 for
                // the stack), both with RPL 3.
                let base = (self.vcpu.star >> 48) as u16;
                let (cs, rip) = if size == 8 {
                    (base.wrapping_add(16) | 3, self.regs.get(reg::RCX))
                } else {
                    (base | 3, self.regs.get(reg::RCX) & 0xffff_ffff)
                };
                let image = self.regs.get(reg::R11);
                self.vcpu.load_rflags(&mut self.regs.rflags, image);
                self.vcpu.set_seg(SegReg::Cs, cs);
                self.vcpu.set_seg(SegReg::Ss, base.wrapping_add(8) | 3);
                self.regs.rip = rip;
                return self.resume_at_cpl();
            }
            Insn::Rdmsr => {
                let Ok(v) = msr::read(self.vcpu, self.regs.get(reg::RCX) as u32) else {
                    // Hardware raises #GP for an MSR it does not have.
                    return self.fault(VEC_GP, Some(0));
                };
                self.regs.set(reg::RAX, v & 0xffff_ffff);
                self.regs.set(reg::RDX, v >> 32);
            }
            Insn::Wrmsr => {
                let v = (self.regs.get(reg::RDX) << 32) | (self.regs.get(reg::RAX) & 0xffff_ffff);
                let which = self.regs.get(reg::RCX) as u32;
                // The real FS base is the TCB's: the backend first, so a
                // failure leaves the vCPU as it was.
                if which == MSR_FS_BASE && is_canonical(v) {
                    self.backend.set_fs_base(v)?;
                }
                if msr::write(self.vcpu, which, v).is_err() {
                    return self.fault(VEC_GP, Some(0));
                }
            }
            Insn::Cpuid => {
                let leaf = self.regs.get(reg::RAX) as u32;
                let subleaf = self.regs.get(reg::RCX) as u32;
                let r = crate::cpuid::filter(leaf, subleaf, self.backend.cpuid(leaf, subleaf));
                for (n, v) in [reg::RAX, reg::RBX, reg::RCX, reg::RDX].into_iter().zip(r) {
                    self.regs.set(n, u64::from(v));
                }
            }
            Insn::Rdtsc => {
                let t = self.backend.rdtsc();
                self.regs.set(reg::RAX, t & 0xffff_ffff);
                self.regs.set(reg::RDX, t >> 32);
            }
            // Traps: the frame returns past the site.
            Insn::Int(v) => return self.raise(v, None, next),
            Insn::Int3 => return self.raise(3, None, next),
            Insn::Into => {
                if self.regs.rflags & FLAG_OF != 0 {
                    return self.raise(4, None, next);
                }
            }
            // A fault: the frame points at the instruction itself.
            Insn::Ud2 => return self.fault(VEC_UD, None),
            Insn::MovToDr { dr, reg } => {
                let v = self.regs.get(reg);
                if let Err(e) = debug_registers::write(self.vcpu, dr, v) {
                    return self.debug_register_fault(e);
                }
            }
            Insn::MovFromDr { dr, reg } => match debug_registers::read(self.vcpu, dr) {
                Ok(v) => self.regs.set(reg, v),
                Err(e) => return self.debug_register_fault(e),
            },
            Insn::Invpcid { reg, desc } => return self.invpcid(reg, &desc),
            // No performance counter exists (CPUID shows no PMU): every
            // counter number is invalid.
            Insn::Rdpmc => return self.fault(VEC_GP, Some(0)),
            // XSAVE is hidden and CR4.OSXSAVE cannot be set: #UD, as on a
            // CPU without XSAVE.
            Insn::Xsetbv => return self.fault(VEC_UD, None),
            // MONITOR/MWAIT are hidden in CPUID: #UD.
            Insn::Monitor | Insn::Mwait => return self.fault(VEC_UD, None),
            // FSGSBASE is hidden and CR4.FSGSBASE cannot be set: #UD.
            Insn::RdSegBase { .. } | Insn::WrSegBase { .. } => return self.fault(VEC_UD, None),
            Insn::Rdtscp => {
                let t = self.backend.rdtsc();
                self.regs.set(reg::RAX, t & 0xffff_ffff);
                self.regs.set(reg::RDX, t >> 32);
                self.regs.set(reg::RCX, self.vcpu.tsc_aux & 0xffff_ffff);
            }
            Insn::Lar { reg, sel, size } | Insn::Lsl { reg, sel, size } => {
                let sel = self.read16(&sel)?;
                let d = descriptors::lookup(self.vcpu, self.mem, sel)?;
                let cpl = self.cpl();
                let found = if matches!(insn, Insn::Lar { .. }) {
                    descriptors::lar(d, cpl, (sel & 3) as u8)
                } else {
                    descriptors::lsl(d, cpl, (sel & 3) as u8)
                };
                // Without a descriptor the destination keeps its value.
                if let Some(v) = found {
                    self.regs.write_sized(reg, u64::from(v), size);
                }
                self.set_zf(found.is_some());
            }
            Insn::Verr(op) | Insn::Verw(op) => {
                let sel = self.read16(&op)?;
                let d = descriptors::lookup(self.vcpu, self.mem, sel)?;
                let (cpl, rpl) = (self.cpl(), (sel & 3) as u8);
                let ok = if matches!(insn, Insn::Verr(_)) {
                    descriptors::verr(d, cpl, rpl)
                } else {
                    // Linux's MDS buffer clear: nothing to clear here.
                    descriptors::verw(d, cpl, rpl)
                };
                self.set_zf(ok);
            }
            Insn::PushSeg(seg, size) => {
                self.push(u64::from(self.vcpu.seg(seg)), size)?;
            }
            Insn::PopSeg(seg, size) => {
                let rsp = self.regs.rsp();
                let v = read_sized(self.mem, rsp, size)?;
                self.vcpu.set_seg(seg, v as u16);
                self.regs.set_rsp(rsp.wrapping_add(u64::from(size)));
            }
            Insn::FarJmp { ptr, size } => return self.far_transfer(&ptr, size, false),
            Insn::FarCall { ptr, size } => return self.far_transfer(&ptr, size, true),
        }
        self.regs.rip = next;
        Ok(Outcome::Resume)
    }

    /// hlt: deliver at once if an interrupt is already deliverable, else
    /// block in the backend, then deliver. `regs.rip` is already past the
    /// site, which is where the frame must return (after the hlt).
    fn halt(&mut self) -> Result<Outcome, EmulateError> {
        if !(self.vcpu.interrupts_enabled() && self.vcpu.has_pending()) {
            self.backend.halt(self.vcpu)?;
        }
        self.resume_checking_pending()
    }

    /// The virtual CPL: the RPL of the virtual CS.
    fn cpl(&self) -> u8 {
        (self.vcpu.seg(SegReg::Cs) & 3) as u8
    }

    /// Sets or clears ZF in the real flags (the entry stub restores them).
    fn set_zf(&mut self, on: bool) {
        if on {
            self.regs.rflags |= FLAG_ZF;
        } else {
            self.regs.rflags &= !FLAG_ZF;
        }
    }

    fn debug_register_fault(&mut self, e: DebugRegisterFault) -> Result<Outcome, EmulateError> {
        match e {
            DebugRegisterFault::Undefined => self.fault(VEC_UD, None),
            DebugRegisterFault::Reserved => self.fault(VEC_GP, Some(0)),
        }
    }

    /// `invpcid` (Intel SDM vol. 2, INVPCID) with PCIDs off (CR4.PCIDE is
    /// never set): only PCID 0 exists. Type 0 invalidates one address, as
    /// `invlpg`; types 1–3 everything, as a CR3 load does in the virtual
    /// TLB (which keeps no global translations).
    fn invpcid(&mut self, reg: u8, desc: &Mem) -> Result<Outcome, EmulateError> {
        let kind = self.regs.get(reg);
        let at = self.address(desc);
        let mut d = [0u8; 16];
        self.mem.read(at, &mut d)?;
        let mut half = [0u8; 8];
        half.copy_from_slice(&d[..8]);
        let pcid = u64::from_le_bytes(half);
        half.copy_from_slice(&d[8..]);
        let address = u64::from_le_bytes(half);
        let pcids_off = self.vcpu.cr4 & CR4_PCIDE == 0;
        let bad = kind > 3
            || pcid >> 12 != 0
            || (kind <= 1 && pcids_off && pcid != 0)
            || (kind == 0 && !is_canonical(address));
        if bad {
            return self.fault(VEC_GP, Some(0));
        }
        if kind == 0 {
            self.backend.invlpg(address)?;
        } else {
            self.backend.load_cr3(self.vcpu.cr3)?;
        }
        self.regs.rip = self.next();
        Ok(Outcome::Resume)
    }

    /// `ljmp *m` / `lcall *m` to a code segment of the virtual GDT or LDT
    /// (Intel SDM vol. 3, 5.8.1), at the same privilege level. The
    /// descriptor decides: not there is #GP(sel), not code or of the wrong
    /// privilege #GP(sel), not present #NP(sel); a 64-bit code segment is
    /// entered; 16- and 32-bit code (Linux's jump to its real-mode reboot
    /// trampoline) and call gates the wedge does not run.
    fn far_transfer(&mut self, ptr: &Mem, size: u8, call: bool) -> Result<Outcome, EmulateError> {
        let kind = if call { Kind::FarCall } else { Kind::FarJmp };
        let at = self.address(ptr);
        let offset = read_sized(self.mem, at, size)?;
        let sel = read_sized(self.mem, at.wrapping_add(u64::from(size)), 2)? as u16;
        let error = Some(u64::from(sel & !3));
        if sel & !3 == 0 {
            return self.fault(VEC_GP, Some(0));
        }
        let Some(d) = descriptors::lookup(self.vcpu, self.mem, sel)? else {
            return self.fault(VEC_GP, error);
        };
        if d.system() && d.kind() == 0xc {
            return Err(EmulateError::Unsupported { kind });
        }
        let cpl = self.cpl();
        let rpl = (sel & 3) as u8;
        let allowed = d.code()
            && if d.conforming() {
                d.dpl() <= cpl
            } else {
                d.dpl() == cpl && rpl <= cpl
            };
        if !allowed {
            return self.fault(VEC_GP, error);
        }
        if !d.present() {
            return self.fault(VEC_NP, error);
        }
        if !d.long() {
            return Err(EmulateError::LeavesLongMode { selector: sel });
        }
        if !is_canonical(offset) {
            return self.fault(VEC_GP, Some(0));
        }
        if call {
            let cs = u64::from(self.vcpu.seg(SegReg::Cs));
            let rsp = self.regs.rsp();
            self.push(cs, size)?;
            if let Err(e) = self.push(self.next(), size) {
                self.regs.set_rsp(rsp);
                return Err(e);
            }
        }
        self.vcpu.set_seg(SegReg::Cs, (sel & !3) | u16::from(cpl));
        self.regs.rip = offset;
        Ok(Outcome::Resume)
    }

    fn port(&self, io: &PortIo) -> u16 {
        match io.port {
            Port::Imm(p) => u16::from(p),
            Port::Dx => self.regs.get(reg::RDX) as u16,
        }
    }

    /// The element count and step of a string instruction.
    fn string_count(&self, io: &PortIo) -> u64 {
        if io.rep {
            self.regs.get(reg::RCX)
        } else {
            1
        }
    }

    fn port_out(&mut self, io: PortIo) -> Result<(), EmulateError> {
        let port = self.port(&io);
        if !io.string {
            let mask = match io.size {
                1 => 0xff,
                2 => 0xffff,
                _ => 0xffff_ffff,
            };
            let v = (self.regs.get(reg::RAX) & mask) as u32;
            self.backend.port_out(port, io.size, v)?;
            return Ok(());
        }
        let size = u64::from(io.size);
        let mut left = self.string_count(&io);
        let down = self.regs.rflags & FLAG_DF != 0;
        let mut buf = [0u8; 64];
        while left > 0 {
            // Downward strings go one element at a time (rare; keeps the
            // batch in ascending address order simple).
            let n = if down { 1 } else { left.min(64 / size) };
            let bytes = (n * size) as usize; // at most 64
            let rsi = self.regs.get(reg::RSI);
            self.mem.read(rsi, &mut buf[..bytes])?;
            self.backend.port_out_string(port, io.size, &buf[..bytes])?;
            left -= n;
            self.string_advance(reg::RSI, n * size, down, &io, left);
        }
        Ok(())
    }

    /// After `moved` bytes of a string instruction: steps its index
    /// register (rsi or rdi) in the direction DF says and, under `rep`,
    /// leaves the remaining count in rcx.
    fn string_advance(&mut self, index: u8, moved: u64, down: bool, io: &PortIo, left: u64) {
        let at = self.regs.get(index);
        let at = if down {
            at.wrapping_sub(moved)
        } else {
            at.wrapping_add(moved)
        };
        self.regs.set(index, at);
        if io.rep {
            self.regs.set(reg::RCX, left);
        }
    }

    fn port_in(&mut self, io: PortIo) -> Result<(), EmulateError> {
        let port = self.port(&io);
        if !io.string {
            let v = self.backend.port_in(port, io.size)?;
            self.regs.write_sized(reg::RAX, u64::from(v), io.size);
            return Ok(());
        }
        let size = u64::from(io.size);
        let mut left = self.string_count(&io);
        let down = self.regs.rflags & FLAG_DF != 0;
        let mut buf = [0u8; 64];
        while left > 0 {
            let n = if down { 1 } else { left.min(64 / size) };
            let bytes = (n * size) as usize; // at most 64
            self.backend
                .port_in_string(port, io.size, &mut buf[..bytes])?;
            let rdi = self.regs.get(reg::RDI);
            self.mem.write(rdi, &buf[..bytes])?;
            left -= n;
            self.string_advance(reg::RDI, n * size, down, &io, left);
        }
        Ok(())
    }
}

/// A guest process's `syscall`, caught outside the wedge (on seL4: the
/// kernel's UnknownSyscall fault of the thread in its user view): enters
/// the guest kernel as the instruction does (Intel SDM vol. 2, SYSCALL):
/// rcx = `next_rip`, r11 = the flags, the flags in SFMASK cleared, CS and SS
/// from STAR[47:32], rip = LSTAR. Without EFER.SCE the instruction is #UD
/// at `next_rip - 2`, delivered (from CPL 3) instead.
pub fn enter_syscall(
    next_rip: u64,
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut dyn GuestMemory,
) -> Result<Outcome, DeliverError> {
    if vcpu.efer & EFER_SCE == 0 {
        regs.rip = next_rip.wrapping_sub(2);
        deliver(VEC_UD, None, vcpu, regs, mem)?;
        return Ok(Outcome::Delivered(VEC_UD));
    }
    let flags = vcpu.visible_rflags(regs.rflags);
    regs.set(reg::RCX, next_rip);
    regs.set(reg::R11, flags);
    vcpu.load_rflags(&mut regs.rflags, flags & !vcpu.sfmask);
    let base = (vcpu.star >> 32) as u16;
    vcpu.set_seg(SegReg::Cs, base & !3);
    vcpu.set_seg(SegReg::Ss, base.wrapping_add(8) & !3);
    regs.rip = vcpu.lstar;
    Ok(Outcome::Resume)
}

#[cfg(test)]
#[path = "emulate_tests.rs"]
mod tests;
