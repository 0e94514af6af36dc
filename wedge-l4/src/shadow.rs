//! Shadowed pairs. A sensitive instruction that holds off interrupts for
//! one instruction (`sti`, `mov` to SS) is recorded with the next one in the
//! same site, so that nothing can come between them. The emulator runs
//! `sti; hlt` as one; any other pair whose second instruction is itself one
//! the wedge emulates — Linux's `startup_64_setup_env` loads
//! `mov %eax,%ss; mov %eax,%es` — runs as two emulations back to back, with
//! no interrupt taken between them (the wedge takes virtual interrupts only
//! after a whole site). A second instruction the wedge cannot emulate (it
//! would have to run natively inside the wedge) stays an error.

use crate::backend::Backend;
use crate::decode::{decode_at, Insn};
use crate::emulate::{emulate_decoded, EmulateError, Outcome};
use crate::memory::{GuestMemory, GuestRegs};
use crate::records::Site;
use crate::vcpu::Vcpu;
use afterburn_format::FLAG_SHADOW_PAIR;

/// Emulates `site` (its instruction `insn`, decoded, and `pair`, the
/// shadowed instruction's bytes, empty if none), as
/// [`emulate_decoded`] does, splitting a pair it does not run as one.
/// Nothing is emulated unless both instructions decode.
pub fn emulate_site(
    site: &Site,
    insn: Insn,
    pair: &[u8],
    vcpu: &mut Vcpu,
    regs: &mut GuestRegs,
    mem: &mut dyn GuestMemory,
    backend: &mut dyn Backend,
) -> Result<Outcome, EmulateError> {
    match emulate_decoded(site, insn, pair, vcpu, regs, mem, backend) {
        Err(EmulateError::UnsupportedPair) => {}
        other => return other,
    }
    // Refused before anything ran: split it, if the second decodes whole.
    let second = match decode_at(pair) {
        Ok((kind, insn, len)) if usize::from(len) == pair.len() => (kind, insn),
        _ => return Err(EmulateError::UnsupportedPair),
    };
    let first = Site {
        flags: site.flags & !FLAG_SHADOW_PAIR,
        pair_len: 0,
        ..*site
    };
    match emulate_decoded(&first, insn, &[], vcpu, regs, mem, backend)? {
        Outcome::Resume => {}
        // An exception at the first: the second never ran.
        other => return Ok(other),
    }
    let then = Site {
        address: site.insn_end(),
        kind: second.0,
        flags: first.flags,
        site_len: site.site_len - site.insn_len,
        insn_len: pair.len() as u8, // at most 15: decoded
        pair_len: 0,
    };
    regs.rip = then.address;
    emulate_decoded(&then, second.1, &[], vcpu, regs, mem, backend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use crate::testutil::{guest, Call, Mock};
    use crate::vcpu::SegReg;
    use afterburn_format::Kind;

    const AT: u64 = 0x100_0791;

    fn pair_site(insn_len: u8, pair_len: u8) -> Site {
        Site {
            address: AT,
            kind: Kind::MovToSeg,
            flags: FLAG_SHADOW_PAIR,
            site_len: 16,
            insn_len,
            pair_len,
        }
    }

    fn run(bytes: &[u8], site: &Site) -> (Result<Outcome, EmulateError>, Vcpu, GuestRegs, Mock) {
        let (mut vcpu, mut regs, mut mem) = guest();
        let mut be = Mock::default();
        regs.set(crate::memory::reg::RAX, 0x18);
        regs.rip = site.address;
        let (first, pair) = bytes.split_at(usize::from(site.insn_len));
        let insn = decode(site.kind, first).unwrap();
        let out = emulate_site(site, insn, pair, &mut vcpu, &mut regs, &mut mem, &mut be);
        (out, vcpu, regs, be)
    }

    #[test]
    fn mov_ss_then_mov_es_runs_both_and_resumes_after_the_site() {
        // mov %eax,%ss; mov %eax,%es
        let (out, vcpu, regs, _) = run(&[0x8e, 0xd0, 0x8e, 0xc0], &pair_site(2, 2));
        assert_eq!(out, Ok(Outcome::Resume));
        assert_eq!(vcpu.seg(SegReg::Ss), 0x18);
        assert_eq!(vcpu.seg(SegReg::Es), 0x18);
        assert_eq!(regs.rip, AT + 16, "the whole site's end");
    }

    #[test]
    fn a_second_instruction_the_wedge_cannot_emulate_runs_neither() {
        // mov %eax,%ss; nop: the nop would have to run inside the wedge.
        let (out, vcpu, regs, _) = run(&[0x8e, 0xd0, 0x90], &pair_site(2, 1));
        assert_eq!(out, Err(EmulateError::UnsupportedPair));
        assert_ne!(vcpu.seg(SegReg::Ss), 0x18, "nothing ran");
        assert_eq!(regs.rip, AT);
        // A second that decodes to fewer bytes than the record says.
        let (out, ..) = run(&[0x8e, 0xd0, 0x8e, 0xc0, 0x90], &pair_site(2, 3));
        assert_eq!(out, Err(EmulateError::UnsupportedPair));
    }

    #[test]
    fn sti_hlt_is_still_one_emulation() {
        let site = Site {
            kind: Kind::Sti,
            insn_len: 1,
            pair_len: 1,
            ..pair_site(1, 1)
        };
        let (out, _, _, be) = run(&[0xfb, 0xf4], &site);
        assert!(out.is_ok(), "{out:?}");
        assert!(be.calls.contains(&Call::Halt), "{:?}", be.calls);
    }
}
