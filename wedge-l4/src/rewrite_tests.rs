//! Rewriting on byte buffers.

use super::*;
use crate::emulate::Outcome;
use crate::testutil::{guest, section, Call, Mock};
use afterburn_format::{Record, MARKER_OPT_OUT_BEGIN, MARKER_OPT_OUT_END};

const BASE: u64 = 0x4000; // clear of the test guest's IDT and stack
const ENTRY: u64 = previrt_protocol::WEDGE_BASE + 0x1000;

fn rec(offset: u64, kind: Kind, site_len: u8, insn_len: u8) -> Record {
    Record {
        address: BASE + offset,
        kind: kind.number(),
        flags: 0,
        site_len,
        insn_len,
        pair_len: 0,
        reserved: 0,
    }
}

fn marker(offset: u64, kind: u16) -> Record {
    Record {
        address: BASE + offset,
        kind,
        flags: 0,
        site_len: 0,
        insn_len: 0,
        pair_len: 0,
        reserved: 0,
    }
}

/// A code buffer holding the native sites (instruction then NOPs).
fn code() -> Vec<u8> {
    let mut c = vec![0x90u8; 0x100];
    c[0x00] = 0xfa; // cli (12)
    c[0x10..0x12].copy_from_slice(&[0xe6, 0xf4]); // outb %al,$0xf4 (16)
    c[0x20..0x22].copy_from_slice(&[0x0f, 0x31]); // rdtsc (5)
    c[0x28..0x2a].copy_from_slice(&[0x0f, 0x0b]); // ud2 (8)
    c[0x30..0x32].copy_from_slice(&[0xcd, 0x80]); // int $0x80 (8)
    c[0x40..0x44].copy_from_slice(&[0x0f, 0x01, 0x10, 0x90]); // lgdt (%rax) (16), opted out
    c
}

fn records() -> Vec<u8> {
    section(&[&[
        rec(0x00, Kind::Cli, 12, 1),
        rec(0x10, Kind::PortOut, 16, 2),
        rec(0x20, Kind::Rdtsc, 5, 2),
        rec(0x28, Kind::Ud2, 8, 2),
        rec(0x30, Kind::Int, 8, 2),
        marker(0x40, MARKER_OPT_OUT_BEGIN),
        rec(0x40, Kind::Lgdt, 16, 3),
        marker(0x50, MARKER_OPT_OUT_END),
    ]])
}

#[test]
fn sites_become_indirect_calls_through_one_slot() {
    let sec = records();
    let records = Records::parse(&sec).unwrap();
    let mut c = code();
    let native = c.clone();
    let mut table = SiteTable::<16>::default();
    let s = rewrite(&mut c, BASE, &records, ENTRY, None, &mut table).unwrap();
    let slot = BASE + 0x18;
    let mut by_kind = [0; 64];
    for k in [Kind::Cli, Kind::PortOut, Kind::Int] {
        by_kind[usize::from(k.number())] = 1;
    }
    assert_eq!(
        s,
        Summary {
            rewritten: 3,
            native: 2,
            opted_out: 1,
            fast: 0,
            by_kind,
            slot,
            undecodable: 0,
            first_undecodable: None,
            copied: 0,
            unplaceable: 0,
        }
    );
    // cli: call *0x12(%rip) (slot - (site + 6)), index 0, int3 fill.
    assert_eq!(
        &c[0x00..0x0c],
        &[0xff, 0x15, 0x12, 0, 0, 0, 0, 0, 0xcc, 0xcc, 0xcc, 0xcc]
    );
    // outb: index 1, and the slot in its tail holds the entry address.
    assert_eq!(&c[0x10..0x18], &[0xff, 0x15, 0x02, 0, 0, 0, 1, 0]);
    assert_eq!(&c[0x18..0x20], &ENTRY.to_le_bytes());
    // int $0x80: a negative displacement back to the slot.
    let disp = (slot as i64 - (BASE as i64 + 0x36)) as i32;
    assert_eq!(
        &c[0x30..0x36],
        &[&[0xff, 0x15][..], &disp.to_le_bytes()[..]].concat()
    );
    assert_eq!(&c[0x36..0x38], &[2, 0]);
    // rdtsc, ud2 and the opted-out lgdt stay native; the bytes between too.
    assert_eq!(&c[0x20..0x30], &native[0x20..0x30]);
    assert_eq!(&c[0x38..], &native[0x38..]);
    assert_eq!(table.len(), 3);
    assert_eq!(table.get(2).unwrap().bytes(), &[0xcd, 0x80]);
}

#[test]
fn the_entry_finds_the_site_from_its_return_address_and_emulates_it() {
    let sec = records();
    let records = Records::parse(&sec).unwrap();
    let (mut vcpu, mut regs, mut mem) = guest();
    let mut table = SiteTable::<16>::default();
    mem.0[0x4000..0x4100].copy_from_slice(&code());
    rewrite(
        &mut mem.0[0x4000..0x4100],
        BASE,
        &records,
        ENTRY,
        None,
        &mut table,
    )
    .unwrap();
    // What the wedge entry does after `call *slot(%rip)` at the outb site.
    let e = *table.by_return_address(BASE + 0x16, &mut mem).unwrap();
    assert_eq!(e.site.kind, Kind::PortOut);
    regs.set(0, 0x1);
    let mut be = Mock::default();
    // The instruction decoded at rewrite time is the one the bytes hold.
    assert_eq!(Ok(e.insn), decode(e.site.kind, e.bytes()));
    let out = crate::emulate::emulate_decoded(
        &e.site,
        e.insn,
        e.pair(),
        &mut vcpu,
        &mut regs,
        &mut mem,
        &mut be,
    )
    .unwrap();
    assert_eq!(out, Outcome::Resume);
    assert_eq!(be.calls, vec![Call::PortOut(0xf4, 1, 1)]);
    assert_eq!(regs.rip, BASE + 0x20);
    // A return address that is not right after a site's call is refused.
    assert_eq!(
        table.by_return_address(BASE + 0x17, &mut mem).unwrap_err(),
        LookupError::NoSite {
            return_address: BASE + 0x17
        }
    );
}

#[test]
fn a_site_run_at_its_alias_is_found_from_there() {
    let sec = records();
    let records = Records::parse(&sec).unwrap();
    let (_, _, mut mem) = guest();
    let mut table = SiteTable::<16>::default();
    mem.0[0x4000..0x4100].copy_from_slice(&code());
    rewrite(
        &mut mem.0[0x4000..0x4100],
        BASE,
        &records,
        ENTRY,
        None,
        &mut table,
    )
    .unwrap();
    // The outb site's call, run where its record names it and 0x2000
    // lower (what is there is not read: the lookup reads the record's).
    const ALIAS: u64 = 0x2000;
    let (e, at) = table
        .by_return_address_aliased(BASE + 0x16, ALIAS, &mut mem)
        .unwrap();
    assert_eq!((e.site.address, at), (BASE + 0x10, 0));
    let (e, at) = table
        .by_return_address_aliased(BASE - ALIAS + 0x16, ALIAS, &mut mem)
        .unwrap();
    assert_eq!((e.site.address, at), (BASE + 0x10, ALIAS));
    // Without an alias, or from no site's end, the lookup fails with the
    // address the call came from.
    let no = |ra| LookupError::NoSite { return_address: ra };
    assert_eq!(
        table
            .by_return_address_aliased(BASE - ALIAS + 0x16, 0, &mut mem)
            .unwrap_err(),
        no(BASE - ALIAS + 0x16)
    );
    assert_eq!(
        table
            .by_return_address_aliased(BASE - ALIAS + 0x17, ALIAS, &mut mem)
            .unwrap_err(),
        no(BASE - ALIAS + 0x17)
    );
}

#[test]
fn bad_sites_are_refused_before_anything_is_written() {
    let cases: [(Record, RewriteError); 3] = [
        (
            rec(0x00, Kind::Cli, 6, 1),
            RewriteError::SiteTooSmall {
                address: BASE,
                kind: Kind::Cli,
            },
        ),
        (
            rec(0xf8, Kind::Lgdt, 16, 3),
            RewriteError::OutsideCode {
                address: BASE + 0xf8,
            },
        ),
        (
            Record {
                flags: afterburn_format::FLAG_CODE32,
                ..rec(0x00, Kind::Cli, 12, 1)
            },
            RewriteError::Not64Bit { address: BASE },
        ),
    ];
    for (bad, want) in cases {
        let sec = section(&[&[rec(0x10, Kind::PortOut, 16, 2), bad]]);
        let records = Records::parse(&sec).unwrap();
        let mut c = code();
        let mut table = SiteTable::<16>::default();
        let before = c.clone();
        let got = rewrite(&mut c, BASE, &records, ENTRY, None, &mut table);
        assert_eq!(got, Err(want));
        assert_eq!(c, before);
        assert!(table.is_empty());
    }
    // A cli site whose bytes are not cli (as a kind or form the wedge has
    // no emulation for would be): the wedge could not emulate it, so it
    // stays as written (it runs natively at user level) and is counted;
    // the rest is rewritten.
    let sec = section(&[&[
        rec(0x10, Kind::PortOut, 16, 2),
        rec(0x20, Kind::Cli, 5 + 3, 1),
    ]]);
    let records = Records::parse(&sec).unwrap();
    let mut c = code();
    let before = c.clone();
    let mut table = SiteTable::<4>::default();
    let got = rewrite(&mut c, BASE, &records, ENTRY, None, &mut table).unwrap();
    assert_eq!((got.rewritten, got.undecodable), (1, 1), "{got:?}");
    assert_eq!(got.first_undecodable, Some(BASE + 0x20));
    assert_eq!(table.len(), 1);
    assert_eq!(
        &c[0x20..0x28],
        &before[0x20..0x28],
        "the cli site as written"
    );
    assert_ne!(
        &c[0x10..0x20],
        &before[0x10..0x20],
        "the outb site rewritten"
    );
}

#[test]
fn no_slot_and_a_full_table_are_errors() {
    let sec = section(&[&[rec(0x00, Kind::Cli, 12, 1)]]);
    let records = Records::parse(&sec).unwrap();
    let mut table = SiteTable::<4>::default();
    assert_eq!(
        rewrite(&mut code(), BASE, &records, ENTRY, None, &mut table),
        Err(RewriteError::NoSlot)
    );
    let sec = records_bytes_two();
    let records = Records::parse(&sec).unwrap();
    let mut small = SiteTable::<1>::default();
    assert_eq!(
        rewrite(&mut code(), BASE, &records, ENTRY, None, &mut small),
        Err(RewriteError::TableFull)
    );
}

fn records_bytes_two() -> Vec<u8> {
    section(&[&[rec(0x00, Kind::Cli, 12, 1), rec(0x10, Kind::PortOut, 16, 2)]])
}

#[test]
fn displacement_reach() {
    let s = Site {
        address: 0x1000,
        kind: Kind::Cli,
        flags: 0,
        site_len: 12,
        insn_len: 1,
        pair_len: 0,
    };
    assert_eq!(disp(&s, 0x1006), Some(0));
    assert_eq!(disp(&s, 0x1006 + i32::MAX as u64), Some(i32::MAX));
    assert_eq!(disp(&s, 0x1006 + i32::MAX as u64 + 1), None);
    assert_eq!(
        disp(&s, previrt_protocol::WEDGE_BASE),
        None,
        "the wedge region is out of reach"
    );
    // Backwards too: the slot below the site by more than 2 GiB.
    assert_eq!(disp(&s, 0x1006u64.wrapping_sub(1 << 31)), Some(i32::MIN));
    assert_eq!(disp(&s, 0x1006u64.wrapping_sub((1 << 31) + 1)), None);
}

#[test]
fn nothing_to_rewrite_is_fine() {
    let sec = section(&[&[rec(0x20, Kind::Rdtsc, 5, 2)]]);
    let records = Records::parse(&sec).unwrap();
    let mut table = SiteTable::<4>::default();
    let s = rewrite(&mut code(), BASE, &records, ENTRY, None, &mut table).unwrap();
    assert_eq!(s.native, 1);
    assert_eq!(s.slot, 0);
}

const FAST: FastPaths = FastPaths {
    vcpu: 0x800, // vif at 0x865
    sti: 0xc00,
    pushf: 0xc08,
    popf: 0xc10,
    iret: 0xc18,
    pic_command: 0xc20,
};

#[test]
fn fast_paths_rewrite_the_virtual_if_kinds_through_gs() {
    let mut c = vec![0x90u8; 0x100];
    c[0x00] = 0xfa; // cli (12)
    c[0x10] = 0x9c; // pushfq (12)
    c[0x20] = 0x9d; // popfq (12)
    c[0x30] = 0xfb; // sti (12)
    c[0x40..0x42].copy_from_slice(&[0xfb, 0xf4]); // sti; hlt (12, a pair)
    c[0x50..0x52].copy_from_slice(&[0xe6, 0xf4]); // outb %al,$0xf4 (16)
    c[0x60..0x64].copy_from_slice(&[0x41, 0x0f, 0x20, 0xd1]); // mov %cr2,%r9 (16)
    c[0x70..0x73].copy_from_slice(&[0x0f, 0x20, 0xc0]); // mov %cr0,%rax (16)
    c[0x80..0x84].copy_from_slice(&[0x44, 0x0f, 0x20, 0xc0]); // mov %cr8,%rax (16)
    c[0x90..0x92].copy_from_slice(&[0x48, 0xcf]); // iretq (16)
    c[0xa0] = 0xcf; // iret, 32-bit operands (16): the general path
    c[0xb0..0xb2].copy_from_slice(&[0xe6, 0x20]); // outb %al,$0x20 (16)
    c[0xc0..0xc2].copy_from_slice(&[0xe6, 0x21]); // outb %al,$0x21 (16): general
    let sti_hlt = Record {
        pair_len: 1,
        flags: afterburn_format::FLAG_SHADOW_PAIR,
        ..rec(0x40, Kind::Sti, 12, 1)
    };
    let sec = section(&[&[
        rec(0x00, Kind::Cli, 16, 1), // long enough for the slot, but fast
        rec(0x10, Kind::Pushf, 12, 1),
        rec(0x20, Kind::Popf, 12, 1),
        rec(0x30, Kind::Sti, 12, 1),
        sti_hlt,
        rec(0x50, Kind::PortOut, 16, 2),
        rec(0x60, Kind::MovFromCr, 16, 4),
        rec(0x70, Kind::MovFromCr, 16, 3),
        rec(0x80, Kind::MovFromCr, 16, 4),
        rec(0x90, Kind::Iret, 16, 2),
        rec(0xa0, Kind::Iret, 16, 1),
        rec(0xb0, Kind::PortOut, 16, 2),
        rec(0xc0, Kind::PortOut, 16, 2),
    ]]);
    let records = Records::parse(&sec).unwrap();
    let mut table = SiteTable::<16>::default();
    let s = rewrite(&mut c, BASE, &records, ENTRY, Some(&FAST), &mut table).unwrap();
    assert_eq!((s.rewritten, s.fast), (13, 8));
    // mov from CR2 into r9 (REX.B in the original, REX.R in the load), from
    // CR0 into rax: a load from the vCPU.
    assert_eq!(
        &c[0x60..0x69],
        &[0x65, 0x4c, 0x8b, 0x0c, 0x25, 0x18, 0x08, 0, 0]
    );
    assert_eq!(
        &c[0x70..0x79],
        &[0x65, 0x48, 0x8b, 0x04, 0x25, 0x10, 0x08, 0, 0]
    );
    // CR8 (the task priority) has no vCPU field: the general path.
    assert_eq!(&c[0x80..0x82], &[0xff, 0x15]);
    // iretq calls its fast path, a 32-bit iret the general entry.
    assert_eq!(&c[0x90..0x98], &[0x65, 0xff, 0x14, 0x25, 0x18, 0x0c, 0, 0]);
    assert_eq!(&c[0xa0..0xa2], &[0xff, 0x15]);
    // The master PIC's command port has a fast path; its data port not.
    assert_eq!(&c[0xb0..0xb8], &[0x65, 0xff, 0x14, 0x25, 0x20, 0x0c, 0, 0]);
    assert_eq!(&c[0xc0..0xc2], &[0xff, 0x15]);
    assert_eq!(
        s.slot,
        BASE + 0x58,
        "the slot is in a general site, not the fast cli"
    );
    // cli: movb $0, %gs:0x865, then one 7-byte NOP.
    assert_eq!(
        &c[0x00..0x10],
        &[0x65, 0xc6, 0x04, 0x25, 0x65, 0x08, 0, 0, 0, 0x0f, 0x1f, 0x80, 0, 0, 0, 0]
    );
    // pushf, popf, sti: call *%gs:slot, a jump to the site's end, the index.
    for (at, slot, index) in [(0x10, 0xc08u32, 1u16), (0x20, 0xc10, 2), (0x30, 0xc00, 3)] {
        let want = [
            &[0x65, 0xff, 0x14, 0x25][..],
            &slot.to_le_bytes(),
            &[0xeb, 0x02],
            &index.to_le_bytes(),
        ]
        .concat();
        assert_eq!(&c[at..at + 12], &want[..], "site at {at:#x}");
    }
    // sti; hlt keeps the general form (its shadow is handled there).
    assert_eq!(&c[0x40..0x42], &[0xff, 0x15]);
    // The general entry finds a fast site (after its 8-byte call) when the
    // fast path gives up, and only there.
    let mut mem = guest().2;
    mem.0[BASE as usize..BASE as usize + 0x100].copy_from_slice(&c);
    let e = table.by_return_address(BASE + 0x28, &mut mem).unwrap();
    assert_eq!((e.site.kind, e.call_len), (Kind::Popf, GS_CALL_LEN));
    assert!(table.by_return_address(BASE + 0x26, &mut mem).is_err());
    // The general sites are still found by the index right after the call.
    let e = table.by_return_address(BASE + 0x56, &mut mem).unwrap();
    assert_eq!((e.site.kind, e.call_len), (Kind::PortOut, CALL_LEN));
}

#[test]
fn nop_fill_is_one_instruction_up_to_nine_bytes() {
    for n in 0..=20usize {
        let mut b = vec![0u8; n];
        fill_nops(&mut b);
        match n {
            0 => {}
            1 => assert_eq!(b, [0x90]),
            2..=9 => assert!(b.starts_with(&[0x0f, 0x1f]) || b.starts_with(&[0x66])),
            _ => assert_eq!(&b[..2], &[0xeb, (n - 2) as u8]),
        }
    }
}

/// A site inside code the guest copies before running it (a Linux
/// alternative's replacement at `REPL`, copied over `ORIG`): rewritten for
/// `ORIG`, so that once copied its call reaches the slot and the entry
/// finds it there; a site copied to no single place is left as written;
/// the slot is never in a copied site.
#[test]
fn a_copied_site_is_rewritten_for_the_place_it_is_copied_to() {
    const ORIG: u64 = 0x40; // the original the guest copies over
    const REPL: u64 = 0x80; // the replacement
    const ODD: u64 = 0xa0; // copied to no single place
    let sec = section(&[&[
        rec(REPL, Kind::Wrmsr, 16, 2),
        rec(ODD, Kind::Wrmsr, 16, 2),
        rec(0x00, Kind::Cli, 16, 1),
        rec(ORIG, Kind::Rdmsr, 16, 2),
    ]]);
    let records = Records::parse(&sec).unwrap();
    let (mut vcpu, mut regs, mut mem) = guest();
    let mut c = vec![0x90u8; 0x100];
    c[0x00] = 0xfa;
    c[ORIG as usize..ORIG as usize + 2].copy_from_slice(&[0x0f, 0x32]);
    for at in [REPL, ODD] {
        c[at as usize..at as usize + 2].copy_from_slice(&[0x0f, 0x30]);
    }
    let placement = |s: &Site| match s.address - BASE {
        REPL => Placement::CopiedTo(BASE + ORIG),
        ODD => Placement::Unplaceable,
        _ => Placement::InPlace,
    };
    let mut table = SiteTable::<16>::default();
    let s = rewrite_placed(&mut c, BASE, &records, ENTRY, None, &mut table, &placement).unwrap();
    assert_eq!((s.rewritten, s.copied, s.unplaceable), (3, 1, 1));
    // The slot is in the first site that stays where it is (the cli), not
    // in the copied one, which comes first in the records.
    assert_eq!(s.slot, BASE + 0x08);
    assert_eq!(&c[ODD as usize..ODD as usize + 2], &[0x0f, 0x30]);
    // The guest copies the replacement over the original (Linux's
    // `apply_alternatives`: the bytes as they are, the rest 0x90).
    let copy: Vec<u8> = c[REPL as usize..REPL as usize + 16].to_vec();
    c[ORIG as usize..ORIG as usize + 16].copy_from_slice(&copy);
    // Its call now reaches the slot from the original's address...
    let disp = i32::from_le_bytes(c[ORIG as usize + 2..ORIG as usize + 6].try_into().unwrap());
    let after_call = BASE + ORIG + 6;
    assert_eq!((after_call as i64 + i64::from(disp)) as u64, s.slot);
    mem.0[0x4000..0x4100].copy_from_slice(&c);
    // ...and the entry finds the wrmsr there, emulated where it ran.
    let e = *table.by_return_address(after_call, &mut mem).unwrap();
    assert_eq!((e.site.kind, e.site.address), (Kind::Wrmsr, BASE + ORIG));
    regs.rip = e.site.address;
    regs.set(1, 0xc000_0102); // KERNEL_GS_BASE, which the vCPU holds
    regs.set(0, 0x1000);
    let mut be = Mock::default();
    crate::emulate::emulate(&e.site, e.bytes(), &mut vcpu, &mut regs, &mut mem, &mut be).unwrap();
    assert_eq!(regs.rip, BASE + ORIG + 16);
    assert_eq!(vcpu.kernel_gs_base, 0x1000);
}
