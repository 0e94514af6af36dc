//! A decoder for exactly the instruction forms the afterburner marks.
//!
//! The site's [`Kind`] already says which opcode family the bytes are, so the
//! decoder only checks that the opcode matches the family and extracts the
//! operands: legacy prefixes, REX, ModRM/SIB/displacement, immediates. It
//! handles 64-bit code only (the wedge runs nothing else). Any other form is
//! a [`DecodeError`] carrying the bytes, never a guess.

use crate::vcpu::SegReg;
use afterburn_format::Kind;

/// A memory operand: `seg:[base + index*scale + disp]` or `[rip + disp]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mem {
    /// Base register number, if any.
    pub base: Option<u8>,
    /// Index register number and scale (1, 2, 4, 8), if any.
    pub index: Option<(u8, u8)>,
    /// Displacement (sign-extended).
    pub disp: i64,
    /// `disp` is relative to the end of the instruction.
    pub rip_relative: bool,
    /// 32-bit address size (`0x67` prefix): the address is truncated.
    pub addr32: bool,
    /// `fs:` override (the FS base is added); `gs:` is refused (the guest
    /// promises not to use it).
    pub fs: bool,
}

/// A register or memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// A general register by encoding number.
    Reg(u8),
    /// A memory operand.
    Mem(Mem),
}

/// Where a port number comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// An immediate port (`outb %al,$0xf4`).
    Imm(u8),
    /// `%dx`.
    Dx,
}

/// A port I/O instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortIo {
    /// Access size in bytes: 1, 2 or 4.
    pub size: u8,
    /// Port source.
    pub port: Port,
    /// `ins`/`outs` (memory at rdi/rsi) instead of `in`/`out` (rax).
    pub string: bool,
    /// `rep` prefix.
    pub rep: bool,
}

/// A decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    Cli,
    Sti,
    /// `pushf` with the operand size (2 or 8).
    Pushf(u8),
    /// `popf` with the operand size (2 or 8).
    Popf(u8),
    /// `iret` with the operand size (2, 4 or 8).
    Iret(u8),
    Hlt,
    In(PortIo),
    Out(PortIo),
    /// `mov %reg, %crN`.
    MovToCr {
        cr: u8,
        reg: u8,
    },
    /// `mov %crN, %reg`.
    MovFromCr {
        cr: u8,
        reg: u8,
    },
    Clts,
    Lmsw(Operand),
    /// `smsw` and its operand size (2, 4, 8).
    Smsw(Operand, u8),
    Lgdt(Mem),
    Lidt(Mem),
    Sgdt(Mem),
    Sidt(Mem),
    Lldt(Operand),
    Ltr(Operand),
    /// `sldt` and its operand size.
    Sldt(Operand, u8),
    /// `str` and its operand size.
    Str(Operand, u8),
    Invlpg(Mem),
    Invd,
    Wbinvd,
    Rdmsr,
    Wrmsr,
    Cpuid,
    /// `mov r/m16, %seg`.
    MovToSeg(SegReg, Operand),
    /// `mov %seg, r/m` and the operand size.
    MovFromSeg(SegReg, Operand, u8),
    /// `lret` with the operand size (4 or 8) and the bytes to release.
    FarRet {
        size: u8,
        release: u16,
    },
    /// `int $n`.
    Int(u8),
    Int3,
    Into,
    Ud2,
    Rdtsc,
    Swapgs,
    /// `sysret` with the operand size (8: `sysretq`, to 64-bit user code;
    /// 4: to compatibility mode).
    Sysret(u8),
    /// `mov %reg, %drN`.
    MovToDr {
        dr: u8,
        reg: u8,
    },
    /// `mov %drN, %reg`.
    MovFromDr {
        dr: u8,
        reg: u8,
    },
    /// `invpcid desc, %reg`: the type in a register, a 16-byte descriptor
    /// in memory.
    Invpcid {
        reg: u8,
        desc: Mem,
    },
    Rdpmc,
    Xsetbv,
    Rdtscp,
    Monitor,
    Mwait,
    /// `lar sel, %reg` with the operand size.
    Lar {
        reg: u8,
        sel: Operand,
        size: u8,
    },
    /// `lsl sel, %reg` with the operand size.
    Lsl {
        reg: u8,
        sel: Operand,
        size: u8,
    },
    Verr(Operand),
    Verw(Operand),
    /// `push %fs`/`%gs` with the operand size (8 or 2).
    PushSeg(SegReg, u8),
    /// `pop %fs`/`%gs` with the operand size (8 or 2).
    PopSeg(SegReg, u8),
    /// `ljmp *m`: a far pointer in memory, its offset `size` bytes (4 or
    /// 8) then a selector.
    FarJmp {
        ptr: Mem,
        size: u8,
    },
    /// `lcall *m`, the pointer as for [`Insn::FarJmp`].
    FarCall {
        ptr: Mem,
        size: u8,
    },
    /// `rdfsbase`/`rdgsbase %reg` with the operand size (4 or 8).
    RdSegBase {
        seg: SegReg,
        reg: u8,
        size: u8,
    },
    /// `wrfsbase`/`wrgsbase %reg` with the operand size (4 or 8).
    WrSegBase {
        seg: SegReg,
        reg: u8,
        size: u8,
    },
}

/// Why bytes did not decode. The instruction bytes (up to 15) come along so
/// the report shows what the wedge was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the instruction needs.
    Truncated { bytes: InsnBytes },
    /// The bytes are not a form of the site's kind this decoder handles.
    Unsupported { kind: Kind, bytes: InsnBytes },
    /// More than 15 bytes: no x86 instruction is that long.
    TooLong,
    /// The instruction decoded to fewer bytes than the record says.
    LengthMismatch { decoded: u8, bytes: InsnBytes },
}

/// Up to 15 instruction bytes, by value (no allocator).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InsnBytes {
    len: u8,
    buf: [u8; 15],
}

impl InsnBytes {
    fn new(b: &[u8]) -> InsnBytes {
        let mut buf = [0u8; 15];
        let n = b.len().min(15);
        buf[..n].copy_from_slice(&b[..n]);
        InsnBytes {
            len: n as u8, // n <= 15
            buf,
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl core::fmt::Debug for InsnBytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, b) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Prefix state.
#[derive(Clone, Copy, Default)]
struct Prefixes {
    opsize: bool,
    addr32: bool,
    rep: bool,
    /// `f3` (rep/repe) rather than `f2`: a mandatory prefix for some forms.
    f3: bool,
    fs: bool,
    gs: bool,
    rex: u8,
}

impl Prefixes {
    fn w(&self) -> bool {
        self.rex & 8 != 0
    }
    fn r(&self) -> u8 {
        (self.rex >> 2 & 1) << 3
    }
    fn x(&self) -> u8 {
        (self.rex >> 1 & 1) << 3
    }
    fn b(&self) -> u8 {
        (self.rex & 1) << 3
    }
    /// Operand size of an instruction whose default is 32 bits.
    fn opsize32(&self) -> u8 {
        if self.w() {
            8
        } else if self.opsize {
            2
        } else {
            4
        }
    }
    /// Operand size of an instruction whose default is 64 bits (push/pop).
    fn opsize64(&self) -> u8 {
        if self.opsize && !self.w() {
            2
        } else {
            8
        }
    }
}

/// A cursor over the bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.at).ok_or(DecodeError::Truncated {
            bytes: InsnBytes::new(self.bytes),
        })?;
        self.at += 1;
        Ok(b)
    }
    fn i8(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from(self.byte()? as i8))
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
    fn i32(&mut self) -> Result<i64, DecodeError> {
        let b = [self.byte()?, self.byte()?, self.byte()?, self.byte()?];
        Ok(i64::from(i32::from_le_bytes(b)))
    }
}

/// A decoded ModRM byte: the reg field and the r/m operand.
struct ModRm {
    /// The raw 3-bit reg field (the opcode extension for group opcodes).
    ext: u8,
    /// The reg field as a general register (REX.R applied), for the forms
    /// that name one there (`lar`, `lsl`, `invpcid`).
    reg: u8,
    rm: Operand,
}

fn modrm(c: &mut Cursor<'_>, p: &Prefixes) -> Result<ModRm, DecodeError> {
    let m = c.byte()?;
    let md = m >> 6;
    let ext = (m >> 3) & 7;
    let rm = m & 7;
    let reg = ext | p.r();
    if md == 3 {
        return Ok(ModRm {
            ext,
            reg,
            rm: Operand::Reg(rm | p.b()),
        });
    }
    let mut mem = Mem {
        base: None,
        index: None,
        disp: 0,
        rip_relative: false,
        addr32: p.addr32,
        fs: p.fs,
    };
    if rm == 4 {
        let sib = c.byte()?;
        let scale = 1u8 << (sib >> 6);
        let index = ((sib >> 3) & 7) | p.x();
        if index != 4 {
            mem.index = Some((index, scale));
        }
        let base = sib & 7;
        if base == 5 && md == 0 {
            mem.disp = c.i32()?;
        } else {
            mem.base = Some(base | p.b());
        }
    } else if rm == 5 && md == 0 {
        mem.rip_relative = true;
        mem.disp = c.i32()?;
    } else {
        mem.base = Some(rm | p.b());
    }
    match md {
        1 => mem.disp = c.i8()?,
        2 => mem.disp = c.i32()?,
        _ => {}
    }
    Ok(ModRm {
        ext,
        reg,
        rm: Operand::Mem(mem),
    })
}

/// Decodes the instruction of a site of `kind` from `bytes`, which must be
/// exactly the instruction (the record's `insn_len` bytes).
pub fn decode(kind: Kind, bytes: &[u8]) -> Result<Insn, DecodeError> {
    if bytes.len() > 15 {
        return Err(DecodeError::TooLong);
    }
    let (insn, len) = decode_prefix(kind, bytes)?;
    if len != bytes.len() {
        return Err(DecodeError::LengthMismatch {
            decoded: len as u8, // at most 15: longer inputs were refused
            bytes: InsnBytes::new(bytes),
        });
    }
    Ok(insn)
}

/// Decodes an instruction found at a faulting address rather than at a
/// recorded site (trap-and-emulate, docs/trap-and-emulate.md): `bytes` are
/// up to 15 bytes of guest memory starting at it, the kind comes from the
/// opcode ([`identify`]). Returns the kind, the instruction and its length.
/// Bytes of no sensitive kind this decoder handles are `Unsupported` (with
/// [`Kind::Cli`] as a placeholder kind), never a guess.
pub fn decode_at(bytes: &[u8]) -> Result<(Kind, Insn, u8), DecodeError> {
    let bytes = &bytes[..bytes.len().min(15)];
    let kind = match identify_within(bytes) {
        Ok(Some(kind)) => kind,
        Ok(None) => {
            return Err(DecodeError::Unsupported {
                kind: Kind::Cli,
                bytes: InsnBytes::new(bytes),
            })
        }
        // The bytes end before the opcode does: more may make it one.
        Err(()) => {
            return Err(DecodeError::Truncated {
                bytes: InsnBytes::new(bytes),
            })
        }
    };
    let (insn, len) = decode_prefix(kind, bytes)?;
    // At most 15: `bytes` was cut to 15.
    Ok((kind, insn, len as u8))
}

/// The sensitive kind of the instruction starting `bytes`, from its
/// opcode (after legacy prefixes and one REX), or `None` if it is none the
/// wedge emulates. Operands are not checked here: [`decode`] does that.
pub fn identify(bytes: &[u8]) -> Option<Kind> {
    identify_within(bytes).ok().flatten()
}

/// [`identify`], telling apart bytes that end before the opcode does
/// (`Err`).
fn identify_within(bytes: &[u8]) -> Result<Option<Kind>, ()> {
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        match b {
            0x66 | 0x67 | 0xf2 | 0xf3 | 0x64 | 0x65 | 0x26 | 0x2e | 0x36 | 0x3e | 0xf0 => at += 1,
            _ => break,
        }
    }
    if bytes.get(at).is_some_and(|b| (0x40..0x50).contains(b)) {
        at += 1;
    }
    let op = *bytes.get(at).ok_or(())?;
    let ext = |i: usize| bytes.get(at + i).map(|m| (m >> 3) & 7).ok_or(());
    Ok(Some(match op {
        0xfa => Kind::Cli,
        0xfb => Kind::Sti,
        0xf4 => Kind::Hlt,
        0x9c => Kind::Pushf,
        0x9d => Kind::Popf,
        0xcf => Kind::Iret,
        0xe4 | 0xe5 | 0xec | 0xed | 0x6c | 0x6d => Kind::PortIn,
        0xe6 | 0xe7 | 0xee | 0xef | 0x6e | 0x6f => Kind::PortOut,
        0x8e => Kind::MovToSeg,
        0x8c => Kind::MovFromSeg,
        0xca | 0xcb => Kind::FarRet,
        0xcd => Kind::Int,
        0xcc => Kind::Int3,
        0xce => Kind::Into,
        0x0f => match *bytes.get(at + 1).ok_or(())? {
            0xa2 => Kind::Cpuid,
            0x32 => Kind::Rdmsr,
            0x30 => Kind::Wrmsr,
            0x31 => Kind::Rdtsc,
            0x06 => Kind::Clts,
            0x08 => Kind::Invd,
            0x09 => Kind::Wbinvd,
            0x0b => Kind::Ud2,
            0x22 => Kind::MovToCr,
            0x20 => Kind::MovFromCr,
            0x07 => Kind::Sysret,
            0x21 => Kind::MovFromDr,
            0x23 => Kind::MovToDr,
            0x33 => Kind::Rdpmc,
            0x38 if bytes.get(at + 2) == Some(&0x82) => Kind::Invpcid,
            // Register forms of group 7 that are not invlpg.
            0x01 if bytes.get(at + 2) == Some(&0xf8) => Kind::Swapgs,
            0x01 if bytes.get(at + 2) == Some(&0xf9) => Kind::Rdtscp,
            0x01 if bytes.get(at + 2) == Some(&0xd1) => Kind::Xsetbv,
            0x01 if bytes.get(at + 2) == Some(&0xc8) => Kind::Monitor,
            0x01 if bytes.get(at + 2) == Some(&0xc9) => Kind::Mwait,
            0x01 => match ext(2)? {
                0 => Kind::Sgdt,
                1 => Kind::Sidt,
                2 => Kind::Lgdt,
                3 => Kind::Lidt,
                4 => Kind::Smsw,
                6 => Kind::Lmsw,
                7 => Kind::Invlpg,
                _ => return Ok(None),
            },
            0x00 => match ext(2)? {
                0 => Kind::Sldt,
                1 => Kind::Str,
                2 => Kind::Lldt,
                3 => Kind::Ltr,
                _ => return Ok(None),
            },
            _ => return Ok(None),
        },
        _ => return Ok(None),
    }))
}

/// Decodes the instruction of `kind` at the start of `bytes` (at most 15)
/// and returns it with its length; bytes after it are not looked at.
fn decode_prefix(kind: Kind, bytes: &[u8]) -> Result<(Insn, usize), DecodeError> {
    let unsupported = || DecodeError::Unsupported {
        kind,
        bytes: InsnBytes::new(bytes),
    };
    let mut c = Cursor { bytes, at: 0 };
    let mut p = Prefixes::default();
    // Legacy prefixes, then at most one REX immediately before the opcode.
    let mut op = loop {
        let b = c.byte()?;
        match b {
            0x66 => p.opsize = true,
            0x67 => p.addr32 = true,
            0xf3 | 0xf2 => {
                p.rep = true;
                p.f3 = b == 0xf3;
            }
            0x64 => p.fs = true,
            0x65 => p.gs = true,
            // es/cs/ss/ds overrides mean nothing in 64-bit mode.
            0x26 | 0x2e | 0x36 | 0x3e => {}
            0xf0 => return Err(unsupported()),
            _ => break b,
        }
    };
    if (0x40..0x50).contains(&op) {
        p.rex = op;
        op = c.byte()?;
    }
    if p.gs {
        return Err(unsupported());
    }
    let insn = match (kind, op) {
        (Kind::Cli, 0xfa) => Insn::Cli,
        (Kind::Sti, 0xfb) => Insn::Sti,
        (Kind::Hlt, 0xf4) => Insn::Hlt,
        (Kind::Pushf, 0x9c) => Insn::Pushf(p.opsize64()),
        (Kind::Popf, 0x9d) => Insn::Popf(p.opsize64()),
        (Kind::Iret, 0xcf) => Insn::Iret(p.opsize32()),
        (Kind::PortIn | Kind::PortOut, 0xe4..=0xe7 | 0xec..=0xef | 0x6c..=0x6f) => {
            let size = if op & 1 == 0 {
                1
            } else if p.opsize {
                2
            } else {
                4
            };
            let string = op < 0x70;
            let port = if (0xe4..=0xe7).contains(&op) {
                Port::Imm(c.byte()?)
            } else {
                Port::Dx
            };
            let is_out = matches!(op, 0xe6 | 0xe7 | 0xee | 0xef | 0x6e | 0x6f);
            if is_out != (kind == Kind::PortOut) || (p.rep && !string) {
                return Err(unsupported());
            }
            let io = PortIo {
                size,
                port,
                string,
                rep: p.rep,
            };
            if is_out {
                Insn::Out(io)
            } else {
                Insn::In(io)
            }
        }
        (Kind::Cpuid, 0x0f) | (Kind::Rdmsr, 0x0f) | (Kind::Wrmsr, 0x0f) | (Kind::Rdtsc, 0x0f) => {
            match (kind, c.byte()?) {
                (Kind::Cpuid, 0xa2) => Insn::Cpuid,
                (Kind::Rdmsr, 0x32) => Insn::Rdmsr,
                (Kind::Wrmsr, 0x30) => Insn::Wrmsr,
                (Kind::Rdtsc, 0x31) => Insn::Rdtsc,
                _ => return Err(unsupported()),
            }
        }
        (Kind::Swapgs, 0x0f) if c.byte()? == 0x01 && c.byte()? == 0xf8 => Insn::Swapgs,
        (Kind::Sysret, 0x0f) if c.byte()? == 0x07 => Insn::Sysret(if p.w() { 8 } else { 4 }),
        (Kind::Clts, 0x0f) if c.byte()? == 0x06 => Insn::Clts,
        (Kind::Invd, 0x0f) if c.byte()? == 0x08 => Insn::Invd,
        (Kind::Wbinvd, 0x0f) if c.byte()? == 0x09 => Insn::Wbinvd,
        (Kind::Ud2, 0x0f) if c.byte()? == 0x0b => Insn::Ud2,
        (Kind::Rdpmc, 0x0f) if c.byte()? == 0x33 => Insn::Rdpmc,
        (Kind::Xsetbv, 0x0f) if c.byte()? == 0x01 && c.byte()? == 0xd1 => Insn::Xsetbv,
        (Kind::Rdtscp, 0x0f) if c.byte()? == 0x01 && c.byte()? == 0xf9 => Insn::Rdtscp,
        (Kind::Monitor, 0x0f) if c.byte()? == 0x01 && c.byte()? == 0xc8 => Insn::Monitor,
        (Kind::Mwait, 0x0f) if c.byte()? == 0x01 && c.byte()? == 0xc9 => Insn::Mwait,
        (Kind::MovToDr | Kind::MovFromDr, 0x0f) => {
            let op2 = c.byte()?;
            // As for the control registers, the mod field is ignored.
            let m = c.byte()?;
            let dr = ((m >> 3) & 7) | p.r();
            let reg = (m & 7) | p.b();
            match (kind, op2) {
                (Kind::MovToDr, 0x23) => Insn::MovToDr { dr, reg },
                (Kind::MovFromDr, 0x21) => Insn::MovFromDr { dr, reg },
                _ => return Err(unsupported()),
            }
        }
        // `66` is part of the opcode.
        (Kind::Invpcid, 0x0f) if p.opsize && c.byte()? == 0x38 && c.byte()? == 0x82 => {
            let m = modrm(&mut c, &p)?;
            match m.rm {
                Operand::Mem(desc) => Insn::Invpcid { reg: m.reg, desc },
                Operand::Reg(_) => return Err(unsupported()),
            }
        }
        (Kind::Lar | Kind::Lsl, 0x0f) => {
            let op2 = c.byte()?;
            let m = modrm(&mut c, &p)?;
            let (reg, sel, size) = (m.reg, m.rm, p.opsize32());
            match (kind, op2) {
                (Kind::Lar, 0x02) => Insn::Lar { reg, sel, size },
                (Kind::Lsl, 0x03) => Insn::Lsl { reg, sel, size },
                _ => return Err(unsupported()),
            }
        }
        // Only FS and GS: the one-byte pushes and pops of ES, CS, SS and DS
        // do not exist in 64-bit mode.
        (Kind::PushSeg | Kind::PopSeg, 0x0f) => match (kind, c.byte()?) {
            (Kind::PushSeg, 0xa0) => Insn::PushSeg(SegReg::Fs, p.opsize64()),
            (Kind::PushSeg, 0xa8) => Insn::PushSeg(SegReg::Gs, p.opsize64()),
            (Kind::PopSeg, 0xa1) => Insn::PopSeg(SegReg::Fs, p.opsize64()),
            (Kind::PopSeg, 0xa9) => Insn::PopSeg(SegReg::Gs, p.opsize64()),
            _ => return Err(unsupported()),
        },
        // Only the indirect forms: `ljmp $sel, $off` does not exist in
        // 64-bit mode.
        (Kind::FarJmp | Kind::FarCall, 0xff) => {
            let m = modrm(&mut c, &p)?;
            let size = far_size(&p).ok_or_else(unsupported)?;
            match (kind, m.ext, m.rm) {
                (Kind::FarJmp, 5, Operand::Mem(ptr)) => Insn::FarJmp { ptr, size },
                (Kind::FarCall, 3, Operand::Mem(ptr)) => Insn::FarCall { ptr, size },
                _ => return Err(unsupported()),
            }
        }
        // `f3` is part of the opcode; the operand is a register.
        (Kind::RdSegBase | Kind::WrSegBase, 0x0f) if p.f3 && c.byte()? == 0xae => {
            let m = modrm(&mut c, &p)?;
            let Operand::Reg(reg) = m.rm else {
                return Err(unsupported());
            };
            let size = if p.w() { 8 } else { 4 };
            let seg = if m.ext & 1 == 0 {
                SegReg::Fs
            } else {
                SegReg::Gs
            };
            match (kind, m.ext) {
                (Kind::RdSegBase, 0 | 1) => Insn::RdSegBase { seg, reg, size },
                (Kind::WrSegBase, 2 | 3) => Insn::WrSegBase { seg, reg, size },
                _ => return Err(unsupported()),
            }
        }
        (Kind::MovToCr | Kind::MovFromCr, 0x0f) => {
            let op2 = c.byte()?;
            // The mod field is ignored: these always name registers.
            let m = c.byte()?;
            let cr = ((m >> 3) & 7) | p.r();
            let reg = (m & 7) | p.b();
            match (kind, op2) {
                (Kind::MovToCr, 0x22) => Insn::MovToCr { cr, reg },
                (Kind::MovFromCr, 0x20) => Insn::MovFromCr { cr, reg },
                _ => return Err(unsupported()),
            }
        }
        (
            Kind::Lgdt
            | Kind::Lidt
            | Kind::Sgdt
            | Kind::Sidt
            | Kind::Smsw
            | Kind::Lmsw
            | Kind::Invlpg
            | Kind::Lldt
            | Kind::Ltr
            | Kind::Sldt
            | Kind::Str
            | Kind::Verr
            | Kind::Verw,
            0x0f,
        ) => {
            let group = c.byte()?;
            let m = modrm(&mut c, &p)?;
            let mem = match m.rm {
                Operand::Mem(mem) => Some(mem),
                Operand::Reg(_) => None,
            };
            match (kind, group, m.ext, mem) {
                (Kind::Sgdt, 0x01, 0, Some(mem)) => Insn::Sgdt(mem),
                (Kind::Sidt, 0x01, 1, Some(mem)) => Insn::Sidt(mem),
                (Kind::Lgdt, 0x01, 2, Some(mem)) => Insn::Lgdt(mem),
                (Kind::Lidt, 0x01, 3, Some(mem)) => Insn::Lidt(mem),
                (Kind::Smsw, 0x01, 4, _) => Insn::Smsw(m.rm, smsw_size(&p, mem.is_some())),
                (Kind::Lmsw, 0x01, 6, _) => Insn::Lmsw(m.rm),
                (Kind::Invlpg, 0x01, 7, Some(mem)) => Insn::Invlpg(mem),
                (Kind::Sldt, 0x00, 0, _) => Insn::Sldt(m.rm, smsw_size(&p, mem.is_some())),
                (Kind::Str, 0x00, 1, _) => Insn::Str(m.rm, smsw_size(&p, mem.is_some())),
                (Kind::Lldt, 0x00, 2, _) => Insn::Lldt(m.rm),
                (Kind::Ltr, 0x00, 3, _) => Insn::Ltr(m.rm),
                (Kind::Verr, 0x00, 4, _) => Insn::Verr(m.rm),
                (Kind::Verw, 0x00, 5, _) => Insn::Verw(m.rm),
                _ => return Err(unsupported()),
            }
        }
        (Kind::MovToSeg, 0x8e) => {
            let m = modrm(&mut c, &p)?;
            match SegReg::from_encoding(m.ext) {
                // `mov` to %cs is #UD on hardware.
                Some(SegReg::Cs) | None => return Err(unsupported()),
                Some(seg) => Insn::MovToSeg(seg, m.rm),
            }
        }
        (Kind::MovFromSeg, 0x8c) => {
            let m = modrm(&mut c, &p)?;
            let seg = SegReg::from_encoding(m.ext).ok_or_else(unsupported)?;
            let size = smsw_size(&p, matches!(m.rm, Operand::Mem(_)));
            Insn::MovFromSeg(seg, m.rm, size)
        }
        (Kind::FarRet, 0xcb) => Insn::FarRet {
            size: far_size(&p).ok_or_else(unsupported)?,
            release: 0,
        },
        (Kind::FarRet, 0xca) => Insn::FarRet {
            size: far_size(&p).ok_or_else(unsupported)?,
            release: c.u16()?,
        },
        (Kind::Int, 0xcd) => Insn::Int(c.byte()?),
        (Kind::Int3, 0xcc) => Insn::Int3,
        (Kind::Into, 0xce) => Insn::Into,
        _ => return Err(unsupported()),
    };
    Ok((insn, c.at))
}

/// Store size of `smsw`/`str`/`sldt`/`mov %seg`: 2 to memory, else by
/// operand size.
fn smsw_size(p: &Prefixes, memory: bool) -> u8 {
    if memory {
        2
    } else {
        p.opsize32()
    }
}

/// Operand size of `lret`: 8 with REX.W, 4 by default; 16-bit is refused.
fn far_size(p: &Prefixes) -> Option<u8> {
    match p.opsize32() {
        2 => None,
        s => Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(kind: Kind, b: &[u8]) -> Insn {
        decode(kind, b).unwrap_or_else(|e| panic!("{b:02x?}: {e:?}"))
    }

    fn mem(base: Option<u8>, disp: i64) -> Mem {
        Mem {
            base,
            index: None,
            disp,
            rip_relative: false,
            addr32: false,
            fs: false,
        }
    }

    #[test]
    fn port_io_forms() {
        let out_dx = PortIo {
            size: 1,
            port: Port::Dx,
            string: false,
            rep: false,
        };
        assert_eq!(d(Kind::PortOut, &[0xee]), Insn::Out(out_dx));
        assert_eq!(
            d(Kind::PortOut, &[0xe6, 0xf4]),
            Insn::Out(PortIo {
                port: Port::Imm(0xf4),
                ..out_dx
            })
        );
        assert_eq!(
            d(Kind::PortOut, &[0x66, 0xef]),
            Insn::Out(PortIo { size: 2, ..out_dx })
        );
        assert_eq!(d(Kind::PortIn, &[0xec]), Insn::In(out_dx));
        assert_eq!(
            d(Kind::PortIn, &[0xe4, 0x60]),
            Insn::In(PortIo {
                port: Port::Imm(0x60),
                ..out_dx
            })
        );
        assert_eq!(
            d(Kind::PortOut, &[0xf3, 0x6e]),
            Insn::Out(PortIo {
                string: true,
                rep: true,
                ..out_dx
            })
        );
        // An `in` at a port-out site is refused.
        assert!(decode(Kind::PortOut, &[0xec]).is_err());
    }

    #[test]
    fn control_register_forms() {
        // mov %cr3,%rax / mov %rax,%cr3 / mov %r9,%cr3 / mov %cr8,%rax
        assert_eq!(
            d(Kind::MovFromCr, &[0x0f, 0x20, 0xd8]),
            Insn::MovFromCr { cr: 3, reg: 0 }
        );
        assert_eq!(
            d(Kind::MovToCr, &[0x0f, 0x22, 0xd8]),
            Insn::MovToCr { cr: 3, reg: 0 }
        );
        assert_eq!(
            d(Kind::MovToCr, &[0x41, 0x0f, 0x22, 0xd9]),
            Insn::MovToCr { cr: 3, reg: 9 }
        );
        assert_eq!(
            d(Kind::MovFromCr, &[0x44, 0x0f, 0x20, 0xc0]),
            Insn::MovFromCr { cr: 8, reg: 0 }
        );
        assert_eq!(
            d(Kind::MovFromCr, &[0x0f, 0x20, 0xd2]),
            Insn::MovFromCr { cr: 2, reg: 2 }
        );
    }

    #[test]
    fn descriptor_table_forms() {
        // lgdt (%rsp) needs a SIB; lidt 0x10(%rbp); sgdt 0x12(%rip); invlpg (%rdi)
        assert_eq!(
            d(Kind::Lgdt, &[0x0f, 0x01, 0x14, 0x24]),
            Insn::Lgdt(mem(Some(4), 0))
        );
        assert_eq!(
            d(Kind::Lidt, &[0x0f, 0x01, 0x5d, 0x10]),
            Insn::Lidt(mem(Some(5), 0x10))
        );
        assert_eq!(
            d(Kind::Sgdt, &[0x0f, 0x01, 0x05, 0x12, 0, 0, 0]),
            Insn::Sgdt(Mem {
                base: None,
                rip_relative: true,
                ..mem(None, 0x12)
            })
        );
        assert_eq!(
            d(Kind::Sidt, &[0x0f, 0x01, 0x4c, 0x24, 0xf6]),
            Insn::Sidt(mem(Some(4), -10))
        );
        assert_eq!(
            d(Kind::Invlpg, &[0x0f, 0x01, 0x3f]),
            Insn::Invlpg(mem(Some(7), 0))
        );
        assert_eq!(
            d(Kind::Invlpg, &[0x41, 0x0f, 0x01, 0x3c, 0x88]),
            Insn::Invlpg(Mem {
                index: Some((1, 4)),
                ..mem(Some(8), 0)
            })
        );
        // lgdt with a register operand does not exist.
        assert!(decode(Kind::Lgdt, &[0x0f, 0x01, 0xd0]).is_err());
    }

    #[test]
    fn selector_forms() {
        assert_eq!(
            d(Kind::Ltr, &[0x0f, 0x00, 0xd8]),
            Insn::Ltr(Operand::Reg(0))
        );
        assert_eq!(
            d(Kind::Lldt, &[0x0f, 0x00, 0xd2]),
            Insn::Lldt(Operand::Reg(2))
        );
        assert_eq!(
            d(Kind::Str, &[0x66, 0x0f, 0x00, 0xc8]),
            Insn::Str(Operand::Reg(0), 2)
        );
        assert_eq!(
            d(Kind::Sldt, &[0x0f, 0x00, 0xc1]),
            Insn::Sldt(Operand::Reg(1), 4)
        );
        assert_eq!(
            d(Kind::Smsw, &[0x66, 0x0f, 0x01, 0xe0]),
            Insn::Smsw(Operand::Reg(0), 2)
        );
        assert_eq!(
            d(Kind::Lmsw, &[0x0f, 0x01, 0xf0]),
            Insn::Lmsw(Operand::Reg(0))
        );
        assert_eq!(
            d(Kind::MovToSeg, &[0x8e, 0xd8]),
            Insn::MovToSeg(SegReg::Ds, Operand::Reg(0))
        );
        assert_eq!(
            d(Kind::MovToSeg, &[0x8e, 0xc0]),
            Insn::MovToSeg(SegReg::Es, Operand::Reg(0))
        );
        assert_eq!(
            d(Kind::MovFromSeg, &[0x66, 0x8c, 0xd8]),
            Insn::MovFromSeg(SegReg::Ds, Operand::Reg(0), 2)
        );
        assert_eq!(
            d(Kind::MovFromSeg, &[0x8c, 0xc8]),
            Insn::MovFromSeg(SegReg::Cs, Operand::Reg(0), 4)
        );
        assert!(decode(Kind::MovToSeg, &[0x8e, 0xc8]).is_err(), "mov to %cs");
    }

    #[test]
    fn one_and_two_byte_forms() {
        assert_eq!(d(Kind::Cli, &[0xfa]), Insn::Cli);
        assert_eq!(d(Kind::Sti, &[0xfb]), Insn::Sti);
        assert_eq!(d(Kind::Pushf, &[0x9c]), Insn::Pushf(8));
        assert_eq!(d(Kind::Popf, &[0x9d]), Insn::Popf(8));
        assert_eq!(d(Kind::Pushf, &[0x66, 0x9c]), Insn::Pushf(2));
        assert_eq!(d(Kind::Iret, &[0x48, 0xcf]), Insn::Iret(8));
        assert_eq!(
            d(Kind::FarRet, &[0x48, 0xcb]),
            Insn::FarRet {
                size: 8,
                release: 0
            }
        );
        assert_eq!(
            d(Kind::FarRet, &[0xca, 8, 0]),
            Insn::FarRet {
                size: 4,
                release: 8
            }
        );
        assert_eq!(d(Kind::Int, &[0xcd, 0x80]), Insn::Int(0x80));
        assert_eq!(d(Kind::Int3, &[0xcc]), Insn::Int3);
        assert_eq!(d(Kind::Ud2, &[0x0f, 0x0b]), Insn::Ud2);
        assert_eq!(d(Kind::Rdmsr, &[0x0f, 0x32]), Insn::Rdmsr);
        assert_eq!(d(Kind::Wrmsr, &[0x0f, 0x30]), Insn::Wrmsr);
        assert_eq!(d(Kind::Swapgs, &[0x0f, 0x01, 0xf8]), Insn::Swapgs);
        assert_eq!(d(Kind::Sysret, &[0x48, 0x0f, 0x07]), Insn::Sysret(8));
        assert_eq!(d(Kind::Sysret, &[0x0f, 0x07]), Insn::Sysret(4));
        // rdtscp shares swapgs's opcode and group; syscall is not sysret.
        assert!(decode(Kind::Swapgs, &[0x0f, 0x01, 0xf9]).is_err());
        assert!(decode(Kind::Sysret, &[0x0f, 0x05]).is_err());
        assert_eq!(d(Kind::Cpuid, &[0x0f, 0xa2]), Insn::Cpuid);
        assert_eq!(d(Kind::Rdtsc, &[0x0f, 0x31]), Insn::Rdtsc);
        assert_eq!(d(Kind::Hlt, &[0xf4]), Insn::Hlt);
    }

    /// Every form the guest uses, as GNU as 2.x encodes it (`as --64`),
    /// decodes under the kind the afterburner gives it.
    #[test]
    fn the_guests_forms_as_gas_emits_them() {
        let forms: &[(Kind, &[u8])] = &[
            (Kind::PortOut, &[0xee]),                      // outb %al,%dx
            (Kind::PortOut, &[0xe6, 0xf4]),                // outb %al,$0xf4
            (Kind::PortOut, &[0x66, 0xef]),                // outw %ax,%dx
            (Kind::PortIn, &[0xec]),                       // inb %dx,%al
            (Kind::PortIn, &[0xe4, 0x60]),                 // inb $0x60,%al
            (Kind::PortOut, &[0xf3, 0x6e]),                // rep outsb
            (Kind::MovFromCr, &[0x0f, 0x20, 0xd8]),        // mov %cr3,%rax
            (Kind::MovToCr, &[0x0f, 0x22, 0xd8]),          // mov %rax,%cr3
            (Kind::MovFromCr, &[0x0f, 0x20, 0xd2]),        // mov %cr2,%rdx
            (Kind::Invlpg, &[0x0f, 0x01, 0x38]),           // invlpg (%rax)
            (Kind::Lgdt, &[0x0f, 0x01, 0x54, 0x24, 0x06]), // lgdt 6(%rsp)
            (Kind::Lidt, &[0x0f, 0x01, 0x5c, 0x24, 0x06]), // lidt 6(%rsp)
            (Kind::Sgdt, &[0x0f, 0x01, 0x44, 0x24, 0x06]), // sgdt 6(%rsp)
            (Kind::Sidt, &[0x0f, 0x01, 0x4c, 0x24, 0x06]), // sidt 6(%rsp)
            (Kind::Ltr, &[0x0f, 0x00, 0xd8]),              // ltr %ax
            (Kind::Str, &[0x66, 0x0f, 0x00, 0xc8]),        // str %ax
            (Kind::Lldt, &[0x0f, 0x00, 0xd2]),             // lldt %dx
            (Kind::Sldt, &[0x66, 0x0f, 0x00, 0xc2]),       // sldt %dx
            (Kind::Smsw, &[0x66, 0x0f, 0x01, 0xe0]),       // smsw %ax
            (Kind::MovToSeg, &[0x8e, 0xd8]),               // mov %ax,%ds
            (Kind::MovToSeg, &[0x8e, 0xc0]),               // mov %ax,%es
            (Kind::MovFromSeg, &[0x66, 0x8c, 0xd8]),       // mov %ds,%ax
            (Kind::MovFromSeg, &[0x66, 0x8c, 0xc8]),       // mov %cs,%ax
            (Kind::FarRet, &[0x48, 0xcb]),                 // lretq
            (Kind::Pushf, &[0x9c]),                        // pushfq
            (Kind::Popf, &[0x9d]),                         // popfq
            (Kind::Cli, &[0xfa]),
            (Kind::Sti, &[0xfb]),
            (Kind::Hlt, &[0xf4]),
            (Kind::Rdmsr, &[0x0f, 0x32]),
            (Kind::Wrmsr, &[0x0f, 0x30]),
            (Kind::Cpuid, &[0x0f, 0xa2]),
            (Kind::Iret, &[0x48, 0xcf]), // iretq
            (Kind::Int, &[0xcd, 0x80]),  // int $0x80
            (Kind::Int3, &[0xcc]),
            (Kind::Ud2, &[0x0f, 0x0b]),
            (Kind::Rdtsc, &[0x0f, 0x31]),
            (Kind::Swapgs, &[0x0f, 0x01, 0xf8]),
            (Kind::Sysret, &[0x48, 0x0f, 0x07]), // sysretq
        ];
        for (kind, bytes) in forms {
            assert!(decode(*kind, bytes).is_ok(), "{kind:?} {bytes:02x?}");
        }
    }

    /// Every form of the kinds Linux 6.1's padded `vmlinux` has beyond the
    /// guest's, as its sites hold them (the real-kernel test,
    /// `tests/linux_sites.rs`, decodes all 3,106).
    #[test]
    fn linuxs_forms() {
        let m = |base: Option<u8>, disp: i64| Mem {
            base,
            ..mem(None, disp)
        };
        let rip = |disp: i64| Mem {
            rip_relative: true,
            ..mem(None, disp)
        };
        let cases: &[(Kind, &[u8], Insn)] = &[
            // mov %rdx,%dr7 / mov %dr7,%rbp / mov %dr2,%r8 / mov %rax,%dr0
            (
                Kind::MovToDr,
                &[0x0f, 0x23, 0xfa],
                Insn::MovToDr { dr: 7, reg: 2 },
            ),
            (
                Kind::MovFromDr,
                &[0x0f, 0x21, 0xfd],
                Insn::MovFromDr { dr: 7, reg: 5 },
            ),
            (
                Kind::MovFromDr,
                &[0x41, 0x0f, 0x21, 0xd0],
                Insn::MovFromDr { dr: 2, reg: 8 },
            ),
            (
                Kind::MovToDr,
                &[0x0f, 0x23, 0xc0],
                Insn::MovToDr { dr: 0, reg: 0 },
            ),
            // invpcid (%rsp),%rax
            (
                Kind::Invpcid,
                &[0x66, 0x0f, 0x38, 0x82, 0x04, 0x24],
                Insn::Invpcid {
                    reg: 0,
                    desc: m(Some(4), 0),
                },
            ),
            (Kind::Rdpmc, &[0x0f, 0x33], Insn::Rdpmc),
            (Kind::Xsetbv, &[0x0f, 0x01, 0xd1], Insn::Xsetbv),
            (Kind::Rdtscp, &[0x0f, 0x01, 0xf9], Insn::Rdtscp),
            // lar 0xa0(%rdi),%eax
            (
                Kind::Lar,
                &[0x0f, 0x02, 0x87, 0xa0, 0, 0, 0],
                Insn::Lar {
                    reg: 0,
                    sel: Operand::Mem(m(Some(7), 0xa0)),
                    size: 4,
                },
            ),
            // lsl %ax,%r9 (REX.W R)
            (
                Kind::Lsl,
                &[0x4c, 0x0f, 0x03, 0xc8],
                Insn::Lsl {
                    reg: 9,
                    sel: Operand::Reg(0),
                    size: 8,
                },
            ),
            // verw mds_clear_cpu_buffers.ds(%rip) / verr %ax
            (
                Kind::Verw,
                &[0x0f, 0x00, 0x2d, 0x9c, 0xfe, 0xff, 0xff],
                Insn::Verw(Operand::Mem(rip(-0x164))),
            ),
            (Kind::Verr, &[0x0f, 0x00, 0xe0], Insn::Verr(Operand::Reg(0))),
            // ljmp *0x18(%rax) (machine_real_restart) / lcall *(%rsp)
            (
                Kind::FarJmp,
                &[0xff, 0x68, 0x18],
                Insn::FarJmp {
                    ptr: m(Some(0), 0x18),
                    size: 4,
                },
            ),
            (
                Kind::FarCall,
                &[0x48, 0xff, 0x1c, 0x24],
                Insn::FarCall {
                    ptr: m(Some(4), 0),
                    size: 8,
                },
            ),
            // wrgsbase %rax / wrfsbase %rdi / rdfsbase %rax / rdgsbase %ebx
            (
                Kind::WrSegBase,
                &[0xf3, 0x48, 0x0f, 0xae, 0xd8],
                Insn::WrSegBase {
                    seg: SegReg::Gs,
                    reg: 0,
                    size: 8,
                },
            ),
            (
                Kind::WrSegBase,
                &[0xf3, 0x48, 0x0f, 0xae, 0xd7],
                Insn::WrSegBase {
                    seg: SegReg::Fs,
                    reg: 7,
                    size: 8,
                },
            ),
            (
                Kind::RdSegBase,
                &[0xf3, 0x48, 0x0f, 0xae, 0xc0],
                Insn::RdSegBase {
                    seg: SegReg::Fs,
                    reg: 0,
                    size: 8,
                },
            ),
            (
                Kind::RdSegBase,
                &[0xf3, 0x0f, 0xae, 0xcb],
                Insn::RdSegBase {
                    seg: SegReg::Gs,
                    reg: 3,
                    size: 4,
                },
            ),
            (Kind::PushSeg, &[0x0f, 0xa0], Insn::PushSeg(SegReg::Fs, 8)),
            (
                Kind::PopSeg,
                &[0x66, 0x0f, 0xa9],
                Insn::PopSeg(SegReg::Gs, 2),
            ),
            (Kind::Monitor, &[0x0f, 0x01, 0xc8], Insn::Monitor),
            (Kind::Mwait, &[0x0f, 0x01, 0xc9], Insn::Mwait),
        ];
        for (kind, bytes, insn) in cases {
            assert_eq!(decode(*kind, bytes), Ok(*insn), "{kind:?} {bytes:02x?}");
        }
        // Forms that do not exist, or not in 64-bit mode: refused.
        let refused: &[(Kind, &[u8])] = &[
            (Kind::Invpcid, &[0x0f, 0x38, 0x82, 0x04, 0x24]), // no 66
            (Kind::Invpcid, &[0x66, 0x0f, 0x38, 0x82, 0xc0]), // register operand
            (Kind::WrSegBase, &[0x48, 0x0f, 0xae, 0xd8]),     // no f3: not wrgsbase
            (Kind::WrSegBase, &[0xf3, 0x0f, 0xae, 0x18]),     // memory operand
            (Kind::WrSegBase, &[0xf3, 0x0f, 0xae, 0xc0]),     // rdfsbase at a wr site
            (Kind::PushSeg, &[0x06]),                         // push %es
            (Kind::PopSeg, &[0x0f, 0xa0]),                    // a push at a pop site
            (Kind::FarJmp, &[0xff, 0xe8]),                    // register operand
            (Kind::FarJmp, &[0xff, 0x20]),                    // jmp *(%rax): near
            (Kind::FarJmp, &[0x66, 0xff, 0x28]),              // 16-bit offset
            (Kind::FarJmp, &[0xea, 0, 0, 0, 0, 0x10, 0]),     // direct: not in 64-bit mode
            (Kind::Lar, &[0x0f, 0x03, 0xc0]),                 // lsl at a lar site
            (Kind::Verw, &[0x0f, 0x00, 0xe0]),                // verr at a verw site
            (Kind::Xsetbv, &[0x0f, 0x01, 0xd0]),              // xgetbv
        ];
        for (kind, bytes) in refused {
            assert!(
                matches!(decode(*kind, bytes), Err(DecodeError::Unsupported { .. })),
                "{kind:?} {bytes:02x?}"
            );
        }
    }

    #[test]
    fn linuxs_privileged_forms_are_found_at_a_fault() {
        // The ones that #GP at CPL 3, which trap-and-emulate meets.
        let cases: [(&[u8], Kind, u8); 6] = [
            (&[0x0f, 0x23, 0xfa, 0x90], Kind::MovToDr, 3),
            (&[0x41, 0x0f, 0x21, 0xd0, 0x90], Kind::MovFromDr, 4),
            (&[0x0f, 0x33, 0xc3], Kind::Rdpmc, 2),
            (&[0x0f, 0x01, 0xd1, 0xc3], Kind::Xsetbv, 3),
            (
                &[0x66, 0x0f, 0x38, 0x82, 0x04, 0x24, 0xc9],
                Kind::Invpcid,
                6,
            ),
            (&[0x0f, 0x01, 0xf9, 0x90], Kind::Rdtscp, 3),
        ];
        for (bytes, kind, len) in cases {
            let (k, insn, n) = decode_at(bytes).unwrap();
            assert_eq!((k, n), (kind, len), "{bytes:x?}");
            assert_eq!(decode(kind, &bytes[..usize::from(len)]), Ok(insn));
        }
    }

    // The default number of cases, which PROPTEST_CASES overrides (the
    // Miri run takes 4).
    proptest::proptest! {
        /// The new opcodes with any prefixes, REX, ModRM, SIB and
        /// displacement bytes after them: never a panic; at most one
        /// length of the bytes decodes (an instruction has one length),
        /// and the forms without operand rules always decode; what
        /// `decode_at` finds in the whole bytes is what `decode` gives for
        /// the instruction's own length.
        #[test]
        fn new_forms_have_one_length(
            form in 0usize..16,
            prefixes in proptest::collection::vec(proptest::sample::select(vec![0x66u8, 0x67, 0xf3, 0x2e]), 0..3),
            rex in proptest::option::of(0x40u8..0x50),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 6..12),
        ) {
            let forms: [(Kind, &[u8]); 16] = [
                (Kind::MovToDr, &[0x0f, 0x23]),
                (Kind::MovFromDr, &[0x0f, 0x21]),
                (Kind::Invpcid, &[0x0f, 0x38, 0x82]),
                (Kind::Rdpmc, &[0x0f, 0x33]),
                (Kind::Xsetbv, &[0x0f, 0x01, 0xd1]),
                (Kind::Rdtscp, &[0x0f, 0x01, 0xf9]),
                (Kind::Lar, &[0x0f, 0x02]),
                (Kind::Lsl, &[0x0f, 0x03]),
                (Kind::Verr, &[0x0f, 0x00]),
                (Kind::Verw, &[0x0f, 0x00]),
                (Kind::PushSeg, &[0x0f, 0xa8]),
                (Kind::PopSeg, &[0x0f, 0xa1]),
                (Kind::FarJmp, &[0xff]),
                (Kind::FarCall, &[0xff]),
                (Kind::WrSegBase, &[0x0f, 0xae]),
                (Kind::RdSegBase, &[0x0f, 0xae]),
            ];
            let (kind, opcode) = forms[form];
            let mut bytes = prefixes.clone();
            bytes.extend(rex);
            bytes.extend_from_slice(opcode);
            bytes.extend_from_slice(&tail);
            let bytes = &bytes[..bytes.len().min(15)];
            let lengths: Vec<usize> = (0..=bytes.len())
                .filter(|&n| decode(kind, &bytes[..n]).is_ok())
                .collect();
            proptest::prop_assert!(lengths.len() <= 1, "{kind:?} {bytes:02x?}: {lengths:?}");
            if matches!(form, 0 | 1 | 3 | 4 | 5) {
                proptest::prop_assert_eq!(lengths.len(), 1, "{:?} {:02x?}", kind, bytes);
            }
            if let Some(&n) = lengths.first() {
                if let Ok((k, insn, len)) = decode_at(bytes) {
                    if k == kind {
                        proptest::prop_assert_eq!(usize::from(len), n);
                        proptest::prop_assert_eq!(decode(kind, &bytes[..n]), Ok(insn));
                    }
                }
            }
        }
    }

    #[test]
    fn bad_input_is_a_typed_error_with_the_bytes() {
        match decode(Kind::Cli, &[0xfb]) {
            Err(DecodeError::Unsupported { kind, bytes }) => {
                assert_eq!(kind, Kind::Cli);
                assert_eq!(bytes.as_slice(), &[0xfb]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode(Kind::Int, &[0xcd]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(Kind::Cli, &[0xfa, 0x90]),
            Err(DecodeError::LengthMismatch { decoded: 1, .. })
        ));
        assert!(decode(Kind::Cli, &[]).is_err());
        assert!(
            decode(Kind::Lgdt, &[0x65, 0x0f, 0x01, 0x10]).is_err(),
            "gs: refused"
        );
        assert_eq!(decode(Kind::Cli, &[0x66; 40]), Err(DecodeError::TooLong));
    }

    #[test]
    fn an_instruction_found_at_a_fault_is_identified_by_its_opcode() {
        // With the bytes that follow it in memory: only the instruction's
        // own length counts.
        let cases: [(&[u8], Kind, u8); 10] = [
            (&[0x0f, 0x01, 0xf8, 0x90], Kind::Swapgs, 3),
            (&[0x48, 0x0f, 0x07, 0xcc], Kind::Sysret, 3),
            (&[0xfa, 0x90, 0x90], Kind::Cli, 1),
            (&[0xfb, 0xf4], Kind::Sti, 1),
            (&[0x48, 0xcf, 0xcc], Kind::Iret, 2),
            (&[0xe6, 0x80, 0x0f], Kind::PortOut, 2),
            (&[0x0f, 0x22, 0xd8, 0xc3], Kind::MovToCr, 3),
            (&[0x0f, 0x01, 0x38, 0x90], Kind::Invlpg, 3),
            (&[0x0f, 0x00, 0xd8, 0x90], Kind::Ltr, 3),
            (&[0xcd, 0x80, 0x90], Kind::Int, 2),
        ];
        for (bytes, kind, len) in cases {
            let (k, insn, n) = decode_at(bytes).unwrap();
            assert_eq!((k, n), (kind, len), "{bytes:x?}");
            assert_eq!(decode(kind, &bytes[..usize::from(len)]), Ok(insn));
        }
        // Not sensitive: an ordinary load, nop, verr (0f 00 /4), and the
        // memory forms of 0f 01 the wedge does not emulate.
        for bytes in [
            &[0x48, 0x8b, 0x18][..],
            &[0x90],
            &[0x0f, 0x00, 0xe0],
            &[0x0f, 0x01, 0x28],
        ] {
            assert_eq!(identify(bytes), None, "{bytes:x?}");
            assert!(matches!(
                decode_at(bytes),
                Err(DecodeError::Unsupported { .. })
            ));
        }
        // Bytes that end inside the prefixes or the opcode are truncated:
        // more bytes (the next page) may make an instruction of them.
        for bytes in [&[][..], &[0x66; 15], &[0x0f], &[0x0f, 0x01], &[0xe6]] {
            assert!(
                matches!(decode_at(bytes), Err(DecodeError::Truncated { .. })),
                "{bytes:x?}"
            );
        }
        // A prefix storm longer than 15 bytes is never an instruction.
        let mut storm = [0x66u8; 20];
        storm[19] = 0xfa;
        assert!(decode_at(&storm).is_err());
    }
}
