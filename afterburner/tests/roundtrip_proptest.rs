//! Property: random instruction sequences (printed by iced-x86's GAS
//! formatter), padded by the pass and assembled by `as`, pass the audit and
//! decode — NOPs removed — to the same instructions as the unpadded
//! assembly (branch displacements aside).

mod common;

use afterburner::decode;
use iced_x86::{Code, Formatter, GasFormatter, Instruction, MemoryOperand, Register};
use proptest::prelude::*;

fn mem(base: Register, displ: i64) -> MemoryOperand {
    MemoryOperand::with_base_displ(base, displ)
}

/// The instruction pool: innocuous and sensitive, with register and memory
/// operands. (Branches are written as text, to a label.)
// `Register::None` must stay qualified: the glob import would make a bare
// `None` ambiguous to the reader.
#[allow(unused_qualifications)]
fn pool() -> Vec<Instruction> {
    use Register::*;
    let r = |res: Result<Instruction, iced_x86::IcedError>| res.expect("valid instruction");
    vec![
        // Innocuous.
        r(Instruction::with2(Code::Mov_r64_rm64, RAX, RBX)),
        r(Instruction::with2(Code::Mov_r64_rm64, RCX, mem(RSP, 8))),
        r(Instruction::with2(Code::Mov_rm64_r64, mem(RDI, 0x40), RDX)),
        r(Instruction::with2(Code::Add_r64_rm64, R8, R9)),
        r(Instruction::with2(Code::Xor_r32_rm32, EAX, EAX)),
        r(Instruction::with2(Code::Mov_r32_imm32, ESI, 0x1234u32)),
        r(Instruction::with2(
            Code::Lea_r64_m,
            RAX,
            MemoryOperand::with_base_index_scale_displ_size(RBX, RCX, 4, 16, 1),
        )),
        r(Instruction::with1(Code::Push_r64, R12)),
        r(Instruction::with1(Code::Pop_r64, R13)),
        r(Instruction::with2(Code::Cmp_rm64_imm8, RAX, 5i32)),
        r(Instruction::with2(
            Code::Mov_r64_rm64,
            RAX,
            MemoryOperand::with_base_displ_size_bcst_seg(RAX, 16, 1, false, FS),
        )),
        Instruction::with_stosb(64, iced_x86::RepPrefixKind::Repe).expect("stosb"),
        // Sensitive.
        Instruction::with(Code::Cli),
        Instruction::with(Code::Sti),
        Instruction::with(Code::Hlt),
        Instruction::with(Code::Pushfq),
        Instruction::with(Code::Popfq),
        Instruction::with(Code::Cpuid),
        Instruction::with(Code::Rdmsr),
        Instruction::with(Code::Wrmsr),
        Instruction::with(Code::Swapgs),
        Instruction::with(Code::Rdtsc),
        Instruction::with(Code::Int3),
        Instruction::with(Code::Ud2),
        Instruction::with(Code::Iretq),
        Instruction::with(Code::Wbinvd),
        Instruction::with(Code::Clts),
        r(Instruction::with1(Code::Int_imm8, 0x80u32)),
        r(Instruction::with1(Code::Invlpg_m, mem(R11, 0))),
        r(Instruction::with1(Code::Lgdt_m1664, mem(RSP, 27))),
        r(Instruction::with1(Code::Lidt_m1664, mem(RAX, 0x100))),
        r(Instruction::with1(Code::Sgdt_m1664, mem(RDI, 0))),
        r(Instruction::with2(Code::Mov_cr_r64, CR3, RAX)),
        r(Instruction::with2(Code::Mov_cr_r64, CR0, RBX)),
        r(Instruction::with2(Code::Mov_r64_cr, RDX, CR4)),
        r(Instruction::with2(Code::Mov_dr_r64, DR7, RAX)),
        r(Instruction::with2(Code::In_AL_DX, AL, DX)),
        r(Instruction::with2(Code::Out_DX_AL, DX, AL)),
        r(Instruction::with2(Code::In_AL_imm8, AL, 0x60u32)),
        r(Instruction::with2(Code::Out_imm8_AL, 0x80u32, AL)),
        r(Instruction::with2(Code::Out_DX_EAX, DX, EAX)),
        r(Instruction::with_outsb(
            64,
            Register::None,
            iced_x86::RepPrefixKind::Repe,
        )),
        r(Instruction::with_insb(64, iced_x86::RepPrefixKind::Repe)),
        r(Instruction::with_outsb(
            64,
            Register::None,
            iced_x86::RepPrefixKind::None,
        )),
        r(Instruction::with1(Code::Ltr_rm16, AX)),
        r(Instruction::with1(Code::Str_r32m16, R15D)),
        r(Instruction::with1(Code::Sldt_r32m16, R14D)),
        r(Instruction::with1(Code::Smsw_r32m16, EBP)),
        r(Instruction::with2(Code::Lar_r32_r32m16, EAX, EBX)),
        r(Instruction::with2(Code::Lsl_r64_r64m16, RAX, RBX)),
        r(Instruction::with1(Code::Verr_rm16, AX)),
        r(Instruction::with2(Code::Mov_Sreg_r32m16, DS, EAX)),
        r(Instruction::with2(Code::Mov_r32m16_Sreg, R13D, CS)),
        r(Instruction::with2(Code::Mov_Sreg_r32m16, SS, EAX)),
        r(Instruction::with1(Code::Pushq_FS, FS)),
        r(Instruction::with1(Code::Popq_GS, GS)),
        r(Instruction::with1(Code::Wrfsbase_r64, RAX)),
        r(Instruction::with1(Code::Rdgsbase_r64, RDI)),
        r(Instruction::with2(Code::Lfs_r32_m1632, EAX, mem(RAX, 0))),
    ]
}

/// A generated statement.
#[derive(Clone, Debug)]
struct Stmt {
    text: String,
}

fn stmt_strategy() -> impl Strategy<Value = Stmt> {
    let pool = pool();
    let n = pool.len();
    prop_oneof![
        9 => (0..n, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(move |(i, suffix, upper, split_rep)| {
            let mut f = GasFormatter::new();
            f.options_mut().set_gas_show_mnemonic_size_suffix(suffix);
            f.options_mut().set_uppercase_mnemonics(upper);
            let mut text = String::new();
            f.format(&pool[i], &mut text);
            if split_rep {
                text = text.replacen("rep ", "rep; ", 1).replacen("REP ", "REP; ", 1);
            }
            Stmt { text }
        }),
        1 => prop_oneof![Just("jne 9f"), Just("jmp 9f"), Just("call 9f")]
            .prop_map(|t| Stmt { text: t.to_string() }),
    ]
}

fn render(stmts: &[Stmt], same_line: &[bool]) -> String {
    let mut s = String::from("\t.text\nstart:\n\t");
    for (i, st) in stmts.iter().enumerate() {
        s.push_str(&st.text);
        s.push_str(if same_line.get(i).copied().unwrap_or(false) {
            "; "
        } else {
            "\n\t"
        });
    }
    s.push_str("\n9:\tret\n");
    s
}

fn format_instr(i: &Instruction) -> String {
    let mut f = GasFormatter::new();
    let mut s = String::new();
    f.format(i, &mut s);
    s
}

fn comparable(i: &Instruction) -> String {
    // Displacements of branches change with padding (and so may their size).
    if i.is_jcc_short_or_near() || i.is_jmp_short_or_near() || i.is_call_near() {
        format!("{:?}", i.mnemonic())
    } else {
        format_instr(i)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn padded_code_is_the_same_code(
        stmts in proptest::collection::vec(stmt_strategy(), 1..24),
        same_line in proptest::collection::vec(any::<bool>(), 24),
    ) {
        let src = render(&stmts, &same_line);
        let plain = common::assemble(src.as_bytes()).map_err(|e| TestCaseError::fail(format!("as: {e}\n{src}")))?;
        let out = afterburner::pass::run(src.as_bytes(), &afterburner::pass::Config::default())
            .map_err(|e| TestCaseError::fail(format!("pass: {e}\n{src}")))?;
        let padded = common::assemble(&out.text)
            .map_err(|e| TestCaseError::fail(format!("as (padded): {e}\n{}", String::from_utf8_lossy(&out.text))))?;

        let image = afterburner::elf::ElfImage::parse(&padded).expect("ELF");
        let report = afterburner::audit::audit(&image);
        prop_assert!(report.is_clean(), "{}\n{src}", report.to_text());

        let before = common::without_nops(&common::decode_all(&common::text_of(&plain)));
        let after = common::without_nops(&common::decode_all(&common::text_of(&padded)));
        let a: Vec<String> = before.iter().map(comparable).collect();
        let b: Vec<String> = after.iter().map(comparable).collect();
        prop_assert_eq!(&a, &b, "{}", src);

        // One site per sensitive instruction, except those sitting in a
        // shadow pair's second slot.
        let sensitive = before.iter().filter(|i| decode::kind_of(i).is_some()).count();
        let paired_sensitive = out.sites.iter().filter(|s| s.paired).count();
        prop_assert!(out.sites.len() <= sensitive && out.sites.len() + paired_sensitive >= sensitive,
            "{} sites for {} sensitive instructions\n{}", out.sites.len(), sensitive, src);
        prop_assert_eq!(report.sites, out.sites.len());

        // An `sti` keeps the next instruction in its site (directly after
        // it, before the padding) exactly when that one relies on the
        // shadow; an `sti` that is itself an SS load's pair has no say.
        let raw = common::decode_all(&common::text_of(&padded));
        for (j, i) in raw.iter().enumerate() {
            if i.mnemonic() != iced_x86::Mnemonic::Sti
                || j > 0 && raw[j - 1].code() == Code::Mov_Sreg_r32m16 && raw[j - 1].op0_register() == Register::SS
            {
                continue;
            }
            let Some(next) = raw[j + 1..].iter().find(|n| n.mnemonic() != iced_x86::Mnemonic::Nop) else {
                continue;
            };
            let relies = decode::kind_of(next).is_some_and(afterburner::sensitive::relies_on_sti_shadow);
            let adjacent = raw.get(j + 1).is_some_and(|n| n.ip() == next.ip());
            prop_assert_eq!(adjacent, relies, "sti at {:#x}, then {}\n{}", i.ip(), next, src);
        }
    }
}
