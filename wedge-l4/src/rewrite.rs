//! Load-time rewriting of the recorded sites, as a pure function over the
//! guest's code bytes.
//!
//! Every rewritten site becomes
//!
//! ```text
//! site+0: ff 15 <disp32>     call *slot(%rip)     ; slot holds the wedge entry
//! site+6: <u16 index>                             ; the site's table index
//! site+8: cc cc ...                               ; never executed
//! ```
//!
//! The wedge lives in PML4 entry 257 (`0xffff_8080_0000_0000` up), terabytes
//! from the guest's code (the test guest's low gigabyte, Linux's image at
//! `0xffff_ffff_8100_0000`), so a `call rel32` cannot reach it.
//! An indirect call through a RIP-relative pointer can: the 8-byte *slot*
//! holding the entry address must only be within ±2 GiB of every site. The
//! slot lives in the tail of the first rewritten site that is at least 16
//! bytes long (bytes 8..16 of it, which nothing executes), so it needs no
//! memory outside the image and no cooperation from the guest. The entry
//! finds the site from its return address (`site + 6`): the `u16` there is
//! an index into the [`SiteTable`], which holds the original instruction
//! bytes the rewrite destroyed, and the entry checks that the entry's
//! address matches. The entry returns to the site's end (or wherever the
//! emulation sent the guest), so the bytes after the index never run; they
//! are `int3` so a stray jump into a site traps instead of running garbage.
//!
//! A call rather than a trap (`int3`): a trap leaves the guest's address
//! space (seL4 delivers it to the fault handler, the VMM server), which is
//! exactly the cost pre-virtualization exists to avoid.
//!
//! With [`FastPaths`] (the wedge's virtual CPU reachable through `%gs`),
//! the hottest kinds are rewritten without the general entry:
//!
//! ```text
//! cli:            65 c6 04 25 <vif>  00      movb $0, %gs:vif ; then NOPs
//! mov %crN, %reg: 65 REX 8b /r 25 <crN>      mov %gs:crN, %reg ; then NOPs
//! sti/pushf/popf/iretq, outb %al,$0x20:
//!                 65 ff 14 25 <slot>         call *%gs:slot   ; a fast path
//!                 eb <len-10>                jmp site_end     ; it returns here
//!                 <u16 index> cc ...
//! ```
//!
//! A fast path is a few instructions in the wedge that work on the guest's
//! stack and the vCPU's `vif` byte without saving registers; when it cannot
//! finish (an interrupt is pending, IOPL is involved) it jumps to the
//! general entry, which finds the site by the index after the jump.
//!
//! Left native: `rdtsc`/`rdtscp` (unprivileged unless CR4.TSD) and `ud2`
//! (it faults on purpose and the guest's handler skips it by its native
//! length, `rip += 2`, which would land inside a rewritten site; natively it
//! reaches the VMM server as a fault, which reflects #UD with the right RIP).
//! Sites in opted-out regions are left alone.

use crate::alternatives::Placement;
use crate::decode::{decode, DecodeError, Insn, Port, PortIo};
use crate::memory::{GuestMemory, MemError};
use crate::records::{Records, Site};
use crate::vcpu::Vcpu;
use afterburn_format::Kind;
use core::mem::offset_of;

/// Length of `call *disp32(%rip)`.
pub const CALL_LEN: u8 = 6;
/// Length of `call *%gs:disp32`.
pub const GS_CALL_LEN: u8 = 8;
/// A fast-path call site: the call, a short jump to the site's end, the index.
pub const FAST_SITE_LEN: u8 = GS_CALL_LEN + 2 + 2;
/// Length of `movb $imm8, %gs:disp32`.
pub const GS_STORE_LEN: u8 = 9;
/// Length of `mov %gs:disp32, %r64`.
pub const GS_LOAD_LEN: u8 = 9;
/// Bytes a rewritten site needs: the call and the index.
pub const STUB_LEN: u8 = 8;
/// A site long enough to also hold the 8-byte entry slot.
pub const SLOT_SITE_LEN: u8 = 16;
/// Most original bytes kept per site (instruction and pair).
pub const MAX_KEPT: usize = 30;

/// Where the fast paths find the virtual CPU: offsets from the GS base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastPaths {
    /// The [`Vcpu`].
    pub vcpu: u32,
    /// The `u64` holding the `sti` fast path's address.
    pub sti: u32,
    /// The `u64` holding the `pushf` fast path's address.
    pub pushf: u32,
    /// The `u64` holding the `popf` fast path's address.
    pub popf: u32,
    /// The `u64` holding the `iretq` fast path's address.
    pub iret: u32,
    /// The `u64` holding the fast path of `outb %al, $0x20` (the master
    /// 8259's command port: the EOI of every interrupt handler).
    pub pic_command: u32,
}

/// How a site is rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// `call *slot(%rip)` to the general entry.
    General,
    /// `movb $0, %gs:vif` (cli).
    StoreVif,
    /// `mov %gs:crN, %reg` (mov from CR0, CR2, CR3 or CR4).
    LoadCr { cr: u8, reg: u8 },
    /// `call *%gs:slot` to a fast path.
    FastCall(u32),
}

fn form(site: &Site, insn: &[u8], fast: Option<&FastPaths>) -> Form {
    let Some(f) = fast else {
        return Form::General;
    };
    // A shadowed pair (`sti; hlt`) needs the general path's pair handling.
    if site.pair_len != 0 {
        return Form::General;
    }
    let call_fits = site.site_len >= FAST_SITE_LEN;
    match site.kind {
        Kind::Cli if site.site_len >= GS_STORE_LEN => Form::StoreVif,
        Kind::Sti if call_fits => Form::FastCall(f.sti),
        Kind::Pushf if call_fits => Form::FastCall(f.pushf),
        Kind::Popf if call_fits => Form::FastCall(f.popf),
        Kind::PortOut if call_fits => match decode(site.kind, insn) {
            Ok(Insn::Out(PortIo {
                size: 1,
                port: Port::Imm(0x20),
                string: false,
                rep: false,
            })) => Form::FastCall(f.pic_command),
            _ => Form::General,
        },
        Kind::Iret if call_fits => match decode(site.kind, insn) {
            Ok(Insn::Iret(8)) => Form::FastCall(f.iret),
            _ => Form::General,
        },
        Kind::MovFromCr if site.site_len >= GS_LOAD_LEN => match decode(site.kind, insn) {
            Ok(Insn::MovFromCr { cr, reg }) if matches!(cr, 0 | 2 | 3 | 4) => {
                Form::LoadCr { cr, reg }
            }
            _ => Form::General,
        },
        _ => Form::General,
    }
}

/// The `Vcpu` field that holds control register `cr` (0, 2, 3 or 4).
fn cr_offset(cr: u8) -> usize {
    match cr {
        0 => offset_of!(Vcpu, cr0),
        2 => offset_of!(Vcpu, cr2),
        3 => offset_of!(Vcpu, cr3),
        _ => offset_of!(Vcpu, cr4),
    }
}

/// Writes `n` bytes of NOPs as few instructions as possible (each NOP is a
/// whole instruction under an instruction-counting emulator): the
/// recommended multi-byte forms, or a short jump over longer gaps.
fn fill_nops(out: &mut [u8]) {
    const NOPS: [&[u8]; 9] = [
        &[0x90],
        &[0x66, 0x90],
        &[0x0f, 0x1f, 0x00],
        &[0x0f, 0x1f, 0x40, 0x00],
        &[0x0f, 0x1f, 0x44, 0x00, 0x00],
        &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
        &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
        &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
    ];
    match out.len() {
        0 => {}
        n @ 1..=9 => out.copy_from_slice(NOPS[n - 1]),
        n => {
            // Sites are at most 255 bytes, so the jump fits in rel8.
            out.fill(0xcc);
            out[0] = 0xeb;
            out[1] = (n - 2).min(127) as u8;
        }
    }
}

/// True for kinds the rewrite leaves native (see the module docs).
pub fn stays_native(kind: Kind) -> bool {
    matches!(kind, Kind::Rdtsc | Kind::Rdtscp | Kind::Ud2)
}

/// A rewritten site and its original instruction bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteEntry {
    /// The site.
    pub site: Site,
    /// Length of the call the site was rewritten into: the call returns to
    /// `site.address + call_len`, where the index is.
    pub call_len: u8,
    /// The instruction, decoded when the site was rewritten.
    pub insn: Insn,
    bytes: [u8; MAX_KEPT],
}

impl SiteEntry {
    /// The original instruction and pair bytes (what [`crate::emulate::emulate`] takes).
    pub fn bytes(&self) -> &[u8] {
        let n = usize::from(self.site.insn_len) + usize::from(self.site.pair_len);
        &self.bytes[..n.min(MAX_KEPT)]
    }

    /// The shadowed pair's bytes (what [`crate::emulate::emulate_decoded`]
    /// takes with [`SiteEntry::insn`]).
    pub fn pair(&self) -> &[u8] {
        self.bytes()
            .get(usize::from(self.site.insn_len)..)
            .unwrap_or(&[])
    }
}

/// The wedge's table of rewritten sites, with a fixed capacity (no
/// allocator; the seL4 wedge keeps one in its `.bss`).
#[derive(Debug)]
pub struct SiteTable<const N: usize> {
    entries: [Option<SiteEntry>; N],
    len: usize,
}

impl<const N: usize> Default for SiteTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> SiteTable<N> {
    /// An empty table. `const`, so a large one can live in a static rather
    /// than be built on a small stack.
    pub const fn new() -> Self {
        SiteTable {
            entries: [None; N],
            len: 0,
        }
    }
}

/// Why a return address did not lead to a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// Reading the index failed.
    Memory(MemError),
    /// No site has this index, or its site does not end its call here.
    NoSite { return_address: u64 },
}

impl<const N: usize> SiteTable<N> {
    /// Number of sites.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no site was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry at `index`.
    pub fn get(&self, index: u16) -> Option<&SiteEntry> {
        self.entries.get(usize::from(index))?.as_ref()
    }

    /// The site that starts at `address`, if any (a search: for the rare
    /// lookups by address, such as the guest's `syscall` entry).
    pub fn at(&self, address: u64) -> Option<&SiteEntry> {
        self.entries[..self.len]
            .iter()
            .flatten()
            .find(|e| e.site.address == address)
    }

    /// The site whose call pushed `return_address`, found through the index
    /// stored after the call (general form) or after the short jump that
    /// follows it (fast form). The entry found must have its call end at
    /// `return_address`, which tells the two apart: a fast site's jump read
    /// as an index would name a site starting inside that fast site.
    pub fn by_return_address(
        &self,
        return_address: u64,
        code: &mut dyn GuestMemory,
    ) -> Result<&SiteEntry, LookupError> {
        let mut b = [0u8; 4];
        code.read(return_address, &mut b)
            .map_err(LookupError::Memory)?;
        let ends_here =
            |e: &&SiteEntry| e.site.address.wrapping_add(u64::from(e.call_len)) == return_address;
        self.get(u16::from_le_bytes([b[0], b[1]]))
            .filter(|e| e.call_len == CALL_LEN)
            .filter(ends_here)
            .or_else(|| {
                self.get(u16::from_le_bytes([b[2], b[3]]))
                    .filter(|e| e.call_len == GS_CALL_LEN)
                    .filter(ends_here)
            })
            .ok_or(LookupError::NoSite { return_address })
    }

    /// [`Self::by_return_address`] for code that may also run `alias`
    /// bytes below the addresses its records name (Linux's `startup_64`
    /// before its own page tables, at its physical addresses): the entry,
    /// and how far below its record the call came from (0 or `alias`).
    /// The site is looked up where it ran first; only if none ends there,
    /// `alias` higher.
    pub fn by_return_address_aliased(
        &self,
        return_address: u64,
        alias: u64,
        code: &mut dyn GuestMemory,
    ) -> Result<(&SiteEntry, u64), LookupError> {
        match self.by_return_address(return_address, code) {
            Ok(e) => Ok((e, 0)),
            Err(e) if alias == 0 => Err(e),
            Err(e) => self
                .by_return_address(return_address.wrapping_add(alias), code)
                .map(|found| (found, alias))
                .map_err(|_| e),
        }
    }

    fn push(&mut self, site: Site, call_len: u8, insn: Insn, original: &[u8]) -> Option<u16> {
        let index = u16::try_from(self.len).ok()?;
        let slot = self.entries.get_mut(self.len)?;
        let mut bytes = [0u8; MAX_KEPT];
        let n = original.len().min(MAX_KEPT);
        bytes[..n].copy_from_slice(&original[..n]);
        *slot = Some(SiteEntry {
            site,
            call_len,
            insn,
            bytes,
        });
        self.len += 1;
        Some(index)
    }
}

/// Why the guest could not be rewritten. Nothing was written when this is
/// returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteError {
    /// A site lies (partly) outside the code bytes given.
    OutsideCode { address: u64 },
    /// A site is too short for the call and index.
    SiteTooSmall { address: u64, kind: Kind },
    /// A site outside opted-out regions is not 64-bit code.
    Not64Bit { address: u64 },
    /// A site's instruction does not decode: the wedge could not emulate it.
    Decode { address: u64, error: DecodeError },
    /// More sites than the table holds.
    TableFull,
    /// No rewritten site is long enough to hold the entry slot.
    NoSlot,
    /// The slot is more than 2 GiB from this site.
    SlotOutOfReach { address: u64 },
}

/// What the rewrite did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Sites rewritten into calls.
    pub rewritten: usize,
    /// Sites left native by kind.
    pub native: usize,
    /// Sites in opted-out regions.
    pub opted_out: usize,
    /// Of the rewritten sites, those in an inline or fast-path form.
    pub fast: usize,
    /// Rewritten sites by `.afterburn` kind number.
    pub by_kind: [u32; 64],
    /// Address of the entry slot (0 if nothing was rewritten).
    pub slot: u64,
    /// Sites left native because their instruction does not decode.
    pub undecodable: usize,
    /// The first of them, in record order.
    pub first_undecodable: Option<u64>,
    /// Of the rewritten sites, those written for the address the guest
    /// copies them to ([`Placement::CopiedTo`]).
    pub copied: usize,
    /// Sites left as written because the guest copies them to no single
    /// place ([`Placement::Unplaceable`]).
    pub unplaceable: usize,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            rewritten: 0,
            native: 0,
            opted_out: 0,
            fast: 0,
            by_kind: [0; 64],
            slot: 0,
            undecodable: 0,
            first_undecodable: None,
            copied: 0,
            unplaceable: 0,
        }
    }
}

enum Plan {
    Native,
    OptedOut,
    /// The instruction does not decode: a kind or form the wedge cannot
    /// emulate (yet), or bytes that are not the recorded kind. Left as the
    /// compiler wrote it, it runs natively at user level, where a
    /// privileged instruction traps to the VMM like any other fault and an
    /// unprivileged one (`verw`, `lar`) does what it does for any
    /// process: nothing the guest could not do without a record.
    Undecodable,
    /// Copied by the guest to no single place (see [`Placement`]).
    Unplaceable,
    /// Rewritten for where it runs: its own address, or the one the guest
    /// copies it to.
    Rewrite(Site),
}

fn plan(
    site: &Site,
    records: &Records<'_>,
    code: &[u8],
    base: u64,
    placement: &dyn Fn(&Site) -> Placement,
) -> Plan {
    if records.is_opted_out(site.address) {
        Plan::OptedOut
    } else if stays_native(site.kind) {
        Plan::Native
    } else if range(site, base, code.len()).is_ok()
        && decode(site.kind, insn_bytes(code, base, site)).is_err()
    {
        Plan::Undecodable
    } else {
        match placement(site) {
            Placement::InPlace => Plan::Rewrite(*site),
            Placement::CopiedTo(address) => Plan::Rewrite(Site { address, ..*site }),
            Placement::Unplaceable => Plan::Unplaceable,
        }
    }
}

/// The range of `code` (based at `base`) a site covers.
fn range(site: &Site, base: u64, len: usize) -> Result<core::ops::Range<usize>, RewriteError> {
    let out = RewriteError::OutsideCode {
        address: site.address,
    };
    let start = usize::try_from(site.address.checked_sub(base).ok_or(out)?).map_err(|_| out)?;
    let end = start.checked_add(usize::from(site.site_len)).ok_or(out)?;
    if end > len {
        return Err(out);
    }
    Ok(start..end)
}

/// Rewrites every site of `records` in `code` (the guest's bytes from
/// guest-virtual `base`) into a call through a slot holding `entry` (or,
/// with `fast`, the hottest kinds into their fast forms), and fills
/// `table`. Validates everything before writing a byte.
pub fn rewrite<const N: usize>(
    code: &mut [u8],
    base: u64,
    records: &Records<'_>,
    entry: u64,
    fast: Option<&FastPaths>,
    table: &mut SiteTable<N>,
) -> Result<Summary, RewriteError> {
    rewrite_placed(code, base, records, entry, fast, table, &|_| {
        Placement::InPlace
    })
}

/// [`rewrite`] for a guest that copies some of its code before it runs it
/// (Linux's alternatives, [`crate::alternatives`]): `placement` says where
/// each site runs. A site copied elsewhere is rewritten for the address it
/// is copied to, in its own bytes (the copy carries the call there), and
/// its table entry names that address; one copied to no single place is
/// left as written. The entry slot is never in a copied site.
pub fn rewrite_placed<const N: usize>(
    code: &mut [u8],
    base: u64,
    records: &Records<'_>,
    entry: u64,
    fast: Option<&FastPaths>,
    table: &mut SiteTable<N>,
    placement: &dyn Fn(&Site) -> Placement,
) -> Result<Summary, RewriteError> {
    // Pass 1: check every site and choose the slot.
    let mut summary = Summary::default();
    let mut error = None;
    let mut slot = None;
    let mut count = 0usize;
    records.for_each_site(|site| {
        if error.is_some() {
            return;
        }
        match plan(&site, records, code, base, placement) {
            Plan::OptedOut => summary.opted_out += 1,
            Plan::Native => summary.native += 1,
            Plan::Undecodable => {
                summary.undecodable += 1;
                summary.first_undecodable.get_or_insert(site.address);
            }
            Plan::Unplaceable => summary.unplaceable += 1,
            Plan::Rewrite(run) => {
                let r = check(code, base, &site);
                if let Err(e) = r {
                    error = Some(e);
                    return;
                }
                count += 1;
                // The slot's bytes must be a general site's unexecuted tail,
                // where the site is: not one the guest copies elsewhere.
                if slot.is_none()
                    && run.address == site.address
                    && site.site_len >= SLOT_SITE_LEN
                    && form(&site, insn_bytes(code, base, &site), fast) == Form::General
                {
                    slot = Some(site.address + u64::from(STUB_LEN));
                }
            }
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    if count == 0 {
        return Ok(summary);
    }
    if count > N - table.len().min(N) || count > usize::from(u16::MAX) + 1 {
        return Err(RewriteError::TableFull);
    }
    let slot = slot.ok_or(RewriteError::NoSlot)?;
    let mut out_of_reach = None;
    records.for_each_site(|site| {
        if let Plan::Rewrite(run) = plan(&site, records, code, base, placement) {
            if out_of_reach.is_none() && disp(&run, slot).is_none() {
                out_of_reach = Some(RewriteError::SlotOutOfReach {
                    address: run.address,
                });
            }
        }
    });
    if let Some(e) = out_of_reach {
        return Err(e);
    }

    // Pass 2: write. Nothing below can fail (checked above); failures are
    // skipped rather than unwrapped all the same.
    records.for_each_site(|site| {
        let Plan::Rewrite(run) = plan(&site, records, code, base, placement) else {
            return;
        };
        let (Ok(r), Some(d)) = (range(&site, base, code.len()), disp(&run, slot)) else {
            return;
        };
        let kept = usize::from(site.insn_len) + usize::from(site.pair_len);
        let form = form(
            &site,
            &code[r.start..r.start + usize::from(site.insn_len)],
            fast,
        );
        let call_len = match form {
            Form::FastCall(_) => GS_CALL_LEN,
            _ => CALL_LEN,
        };
        // Decoded (and checked) in pass 1: cannot fail here.
        let Ok(insn) = decode(
            site.kind,
            &code[r.start..r.start + usize::from(site.insn_len)],
        ) else {
            return;
        };
        let Some(index) = table.push(run, call_len, insn, &code[r.start..r.start + kept]) else {
            return;
        };
        if run.address != site.address {
            summary.copied += 1;
        }
        let bytes = &mut code[r];
        bytes.fill(0xcc);
        match form {
            Form::General => {
                bytes[0] = 0xff;
                bytes[1] = 0x15;
                bytes[2..6].copy_from_slice(&d.to_le_bytes());
                bytes[6..8].copy_from_slice(&index.to_le_bytes());
            }
            Form::LoadCr { cr, reg } => {
                let at = fast.map_or(0, |f| f.vcpu) + cr_offset(cr) as u32;
                let rex = 0x48 | if reg >= 8 { 0x04 } else { 0 };
                bytes[..5].copy_from_slice(&[0x65, rex, 0x8b, ((reg & 7) << 3) | 4, 0x25]);
                bytes[5..9].copy_from_slice(&at.to_le_bytes());
                fill_nops(&mut bytes[usize::from(GS_LOAD_LEN)..]);
            }
            Form::StoreVif => {
                let vif = fast.map_or(0, |f| f.vcpu) + offset_of!(Vcpu, vif) as u32;
                bytes[..4].copy_from_slice(&[0x65, 0xc6, 0x04, 0x25]);
                bytes[4..8].copy_from_slice(&vif.to_le_bytes());
                bytes[8] = 0;
                fill_nops(&mut bytes[usize::from(GS_STORE_LEN)..]);
            }
            Form::FastCall(slot) => {
                bytes[..4].copy_from_slice(&[0x65, 0xff, 0x14, 0x25]);
                bytes[4..8].copy_from_slice(&slot.to_le_bytes());
                // The fast path returns here: on to the site's end.
                bytes[8] = 0xeb;
                bytes[9] = site.site_len - 10;
                bytes[10..12].copy_from_slice(&index.to_le_bytes());
            }
        }
        if form != Form::General {
            summary.fast += 1;
        }
        if let Some(n) = summary.by_kind.get_mut(usize::from(site.kind.number())) {
            *n += 1;
        }
        summary.rewritten += 1;
    });
    let at = (slot - base) as usize; // inside a checked site
    code[at..at + 8].copy_from_slice(&entry.to_le_bytes());
    summary.slot = slot;
    Ok(summary)
}

/// A (checked) site's instruction bytes; empty if out of range.
fn insn_bytes<'c>(code: &'c [u8], base: u64, site: &Site) -> &'c [u8] {
    range(site, base, code.len())
        .ok()
        .and_then(|r| code.get(r.start..r.start + usize::from(site.insn_len)))
        .unwrap_or(&[])
}

/// Validates one site to be rewritten.
fn check(code: &[u8], base: u64, site: &Site) -> Result<(), RewriteError> {
    let r = range(site, base, code.len())?;
    if site.site_len < STUB_LEN {
        return Err(RewriteError::SiteTooSmall {
            address: site.address,
            kind: site.kind,
        });
    }
    if !site.is_64bit() {
        return Err(RewriteError::Not64Bit {
            address: site.address,
        });
    }
    let insn = &code[r.start..r.start + usize::from(site.insn_len)];
    decode(site.kind, insn).map_err(|error| RewriteError::Decode {
        address: site.address,
        error,
    })?;
    Ok(())
}

/// The call's displacement from `site` to `slot`, if it fits in 32 bits.
fn disp(site: &Site, slot: u64) -> Option<i32> {
    let from = site.address.wrapping_add(u64::from(CALL_LEN));
    i32::try_from(slot.wrapping_sub(from) as i64).ok()
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
