//! Every sensitive instruction form through the pass, then through the real
//! `as` and the audit.

mod common;

use afterburner::format::Kind;
use common::{afterburn, burn_and_audit};

/// 64-bit forms: source text and the kinds of the sites it must produce.
const FORMS_64: &[(&str, &[Kind])] = &[
    ("cli", &[Kind::Cli]),
    ("sti; nop", &[Kind::Sti]),
    ("hlt", &[Kind::Hlt]),
    ("clts", &[Kind::Clts]),
    ("lgdt 27(%rsp)", &[Kind::Lgdt]),
    ("lgdtq (%rax)", &[Kind::Lgdt]),
    ("lidt 0x12345678(%rax,%rbx,8)", &[Kind::Lidt]),
    ("lldt %ax", &[Kind::Lldt]),
    ("ltr %ax", &[Kind::Ltr]),
    ("ltrw %di", &[Kind::Ltr]),
    ("lmsw %ax", &[Kind::Lmsw]),
    ("movq %rax,%cr3", &[Kind::MovToCr]),
    ("mov %rax,%cr3", &[Kind::MovToCr]),
    ("mov %cr2,%rax", &[Kind::MovFromCr]),
    (
        "mov %cr0,%rbx; mov %rbx,%cr0",
        &[Kind::MovFromCr, Kind::MovToCr],
    ),
    ("mov %rax,%cr4", &[Kind::MovToCr]),
    ("mov %rax,%cr8", &[Kind::MovToCr]),
    ("mov %rax,%db7", &[Kind::MovToDr]),
    ("mov %dr6,%rax", &[Kind::MovFromDr]),
    ("invlpg (%r11)", &[Kind::Invlpg]),
    ("invpcid (%rax),%rbx", &[Kind::Invpcid]),
    ("invd", &[Kind::Invd]),
    ("wbinvd", &[Kind::Wbinvd]),
    ("rdmsr", &[Kind::Rdmsr]),
    ("wrmsr", &[Kind::Wrmsr]),
    ("inb %dx,%al", &[Kind::PortIn]),
    ("inb $0x60,%al", &[Kind::PortIn]),
    ("inw %dx,%ax", &[Kind::PortIn]),
    ("inl %dx,%eax", &[Kind::PortIn]),
    ("in %dx,%al", &[Kind::PortIn]),
    ("in $0x71,%al", &[Kind::PortIn]),
    ("insb", &[Kind::PortIn]),
    ("insw", &[Kind::PortIn]),
    ("insl", &[Kind::PortIn]),
    ("rep insb", &[Kind::PortIn]),
    ("rep; insb", &[Kind::PortIn]),
    ("rep insl", &[Kind::PortIn]),
    ("outb %al,%dx", &[Kind::PortOut]),
    ("outb %al,$244", &[Kind::PortOut]),
    ("outw %ax,%dx", &[Kind::PortOut]),
    ("outl %eax,%dx", &[Kind::PortOut]),
    ("out %al,%dx", &[Kind::PortOut]),
    ("outsb", &[Kind::PortOut]),
    ("outsw", &[Kind::PortOut]),
    ("outsl", &[Kind::PortOut]),
    ("rep outsb", &[Kind::PortOut]),
    ("rep outsw", &[Kind::PortOut]),
    ("rep\n outsl", &[Kind::PortOut]),
    ("fs outsb", &[Kind::PortOut]),
    ("outsb %fs:(%rsi),(%dx)", &[Kind::PortOut]),
    ("swapgs", &[Kind::Swapgs]),
    ("sysret", &[Kind::Sysret]),
    ("sysretq", &[Kind::Sysret]),
    ("sysexit", &[Kind::Sysexit]),
    ("sysexitq", &[Kind::Sysexit]),
    ("rdpmc", &[Kind::Rdpmc]),
    ("xsetbv", &[Kind::Xsetbv]),
    ("monitor", &[Kind::Monitor]),
    ("monitor %rax,%ecx,%edx", &[Kind::Monitor]),
    ("mwait", &[Kind::Mwait]),
    ("mwait %eax,%ecx", &[Kind::Mwait]),
    ("iretq", &[Kind::Iret]),
    ("iret", &[Kind::Iret]),
    ("iretw", &[Kind::Iret]),
    ("rsm", &[Kind::Rsm]),
    ("pushf", &[Kind::Pushf]),
    ("pushfq", &[Kind::Pushf]),
    ("pushfw", &[Kind::Pushf]),
    ("data16 pushf", &[Kind::Pushf]),
    ("popf", &[Kind::Popf]),
    ("popfq", &[Kind::Popf]),
    ("popfw", &[Kind::Popf]),
    ("sgdt (%rax)", &[Kind::Sgdt]),
    ("sgdtq 8(%rsp)", &[Kind::Sgdt]),
    ("sidt (%rax)", &[Kind::Sidt]),
    ("sldt %r14d", &[Kind::Sldt]),
    ("sldt %ax", &[Kind::Sldt]),
    ("str %r15w", &[Kind::Str]),
    ("strq %rax", &[Kind::Str]),
    ("smsw %bp", &[Kind::Smsw]),
    ("smswl %eax", &[Kind::Smsw]),
    ("lar %ax,%bx", &[Kind::Lar]),
    ("larl %eax,%ebx", &[Kind::Lar]),
    ("lsl %eax,%ebx", &[Kind::Lsl]),
    ("lslq %rax,%rbx", &[Kind::Lsl]),
    ("verr %ax", &[Kind::Verr]),
    ("verw (%rax)", &[Kind::Verw]),
    ("cpuid", &[Kind::Cpuid]),
    ("push %fs", &[Kind::PushSeg]),
    ("pushq %gs", &[Kind::PushSeg]),
    ("pushw %fs", &[Kind::PushSeg]),
    ("pop %fs", &[Kind::PopSeg]),
    ("popq %gs", &[Kind::PopSeg]),
    ("mov %eax,%ds", &[Kind::MovToSeg]),
    ("movw %ax,%es", &[Kind::MovToSeg]),
    ("mov %ax,%ss; nop", &[Kind::MovToSeg]),
    ("mov %cs,%r13w", &[Kind::MovFromSeg]),
    ("movl %gs,%eax", &[Kind::MovFromSeg]),
    ("mov %ds,(%rax)", &[Kind::MovFromSeg]),
    ("lfs (%rax),%eax", &[Kind::LoadFarPointer]),
    ("lgs (%rax),%ebx", &[Kind::LoadFarPointer]),
    ("lss (%rax),%esp; nop", &[Kind::LoadFarPointer]),
    ("ljmpl *(%rax)", &[Kind::FarJmp]),
    ("ljmp *(%rax)", &[Kind::FarJmp]),
    ("lcall *(%rax)", &[Kind::FarCall]),
    ("lcall *8(%rsp)", &[Kind::FarCall]),
    ("lret", &[Kind::FarRet]),
    ("lretq", &[Kind::FarRet]),
    ("lretq $8", &[Kind::FarRet]),
    ("int $0x80", &[Kind::Int]),
    ("int $3", &[Kind::Int]),
    ("int3", &[Kind::Int3]),
    ("ud2", &[Kind::Ud2]),
    ("wrfsbase %rax", &[Kind::WrSegBase]),
    ("wrgsbase %eax", &[Kind::WrSegBase]),
    ("rdfsbase %rax", &[Kind::RdSegBase]),
    ("rdgsbase %rdi", &[Kind::RdSegBase]),
    ("rdtsc", &[Kind::Rdtsc]),
    ("rdtscp", &[Kind::Rdtscp]),
    ("stac", &[Kind::AlignmentCheck]),
    ("clac", &[Kind::AlignmentCheck]),
    ("xsaves64 (%rdi)", &[Kind::SupervisorState]),
    ("xrstors (%rdi)", &[Kind::SupervisorState]),
    // Prefixes: data16, address size, segment overrides, pseudo prefixes.
    ("data16 lgdt (%rax)", &[Kind::Lgdt]),
    ("cs lgdt (%rax)", &[Kind::Lgdt]),
    ("addr32 lgdt (%eax)", &[Kind::Lgdt]),
    ("lgdt %gs:8(%rax)", &[Kind::Lgdt]),
    ("{disp32} lgdt 8(%rax)", &[Kind::Lgdt]),
    // Upper case, several statements, labels, comments.
    ("CLI", &[Kind::Cli]),
    ("x: cli; y: hlt # sti", &[Kind::Cli, Kind::Hlt]),
    ("cli /* sti */ ; hlt", &[Kind::Cli, Kind::Hlt]),
    ("lock incl (%rax); lock; incl (%rax); cpuid", &[Kind::Cpuid]),
];

/// 32-bit-only forms (invalid in 64-bit mode), assembled under `.code32`.
const FORMS_32: &[(&str, &[Kind])] = &[
    ("lds (%eax),%ebx", &[Kind::LoadFarPointer]),
    ("les (%eax),%ebx", &[Kind::LoadFarPointer]),
    ("push %ds", &[Kind::PushSeg]),
    ("push %cs", &[Kind::PushSeg]),
    ("pop %es", &[Kind::PopSeg]),
    ("popl %ss; nop", &[Kind::PopSeg]),
    ("jmp $0x10,$0x1000", &[Kind::FarJmp]),
    ("ljmp $0x8,$1f; 1:", &[Kind::FarJmp]),
    ("ljmpl *(%eax)", &[Kind::FarJmp]),
    ("lcall $0x8,$0x2000", &[Kind::FarCall]),
    ("call $0x8,$0x2000", &[Kind::FarCall]),
    ("into", &[Kind::Into]),
    ("lret", &[Kind::FarRet]),
    ("iretl", &[Kind::Iret]),
    ("pushfl", &[Kind::Pushf]),
    ("outsb", &[Kind::PortOut]),
];

/// Forms the assembler would reject (a `lock` on a non-lockable
/// instruction) but the pass must still treat as one site with its prefix.
const TEXT_ONLY_FORMS: &[(&str, &[Kind])] = &[
    ("lock cli", &[Kind::Cli]),
    ("lock; cli", &[Kind::Cli]),
    ("data16; outsb", &[Kind::PortOut]),
    ("gs; outsb", &[Kind::PortOut]),
    ("rep;outsb;rep;insb", &[Kind::PortOut, Kind::PortIn]),
    ("REP OUTSB", &[Kind::PortOut]),
];

/// Innocuous instructions that must pass through untouched.
const INNOCUOUS: &[&str] = &[
    "movq %rax,%rbx",
    "mov %fs:8(%rax),%rbx",
    "movq %rax,%gs:0x10",
    "push %rax",
    "pushq %fs:(%rax)",
    "jmp *%rax",
    "call *8(%rax)",
    "incl %eax",
    "stosb",
    "rep stosb",
    "lock cmpxchg %rbx,(%rcx)",
    "xgetbv",
    "syscall",
    "fxsave (%rax)",
    "ud1 %eax,%eax",
    ".ascii \"cli; sti; hlt # outb\"",
    ".string \"invlpg (%rax)\"",
    "movb $'#', %al",
    "nop",
];

fn check_kinds(forms: &[(&str, &[Kind])], prefix: &str) {
    for (src, kinds) in forms {
        let out = afterburn(&format!("{prefix}{src}\n"));
        let got: Vec<Kind> = out.sites.iter().map(|s| s.kind).collect();
        assert_eq!(&got, kinds, "kinds of `{src}`");
    }
}

#[test]
fn pass_recognises_every_form() {
    check_kinds(FORMS_64, "");
    check_kinds(FORMS_32, ".code32\n");
    check_kinds(TEXT_ONLY_FORMS, "");
    // The site label goes before the prefix statement, not the mnemonic.
    let text = String::from_utf8(afterburn("\tlock; cli\n").text).unwrap();
    assert!(text.contains("740000001: lock; cli; 740000002:"), "{text}");
}

#[test]
fn innocuous_text_passes_through_byte_for_byte() {
    for src in INNOCUOUS {
        // Strings in a code section get data markers (see below); in a data
        // section nothing at all may change.
        let text = if src.starts_with(".ascii") || src.starts_with(".string") {
            format!("\t.data\n\t{src}\n")
        } else {
            format!("\t{src}\n")
        };
        let out = afterburn(&text);
        assert!(out.sites.is_empty(), "`{src}` made a site");
        assert_eq!(out.text, text.as_bytes(), "`{src}` was changed");
    }
}

#[test]
fn all_forms_assemble_and_audit_clean() {
    let mut src = String::from("\t.text\nstart64:\n");
    let mut expected = 0;
    for (s, kinds) in FORMS_64 {
        src.push_str(&format!("\t{s}\n"));
        expected += kinds.len();
    }
    for s in INNOCUOUS {
        src.push_str(&format!("\t{s}\n"));
    }
    src.push_str("\t.section .text32,\"ax\",@progbits\n\t.code32\nstart32:\n");
    for (s, kinds) in FORMS_32 {
        src.push_str(&format!("\t{s}\n"));
        expected += kinds.len();
    }
    src.push_str("\t.code64\n");
    let (out, image, report) = burn_and_audit(&src);
    assert_eq!(out.sites.len(), expected);
    let site_records = image.records.iter().filter(|r| r.record.is_site()).count();
    assert_eq!(site_records, expected);
    // The .ascii strings in .text decode as junk: the audit may flag that
    // data as straddling a site, never as an uncovered instruction.
    let real: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.rule != afterburner::audit::Rule::StraddlesSite)
        .collect();
    assert!(real.is_empty(), "{}", report.to_text());
    assert_eq!(report.sites, expected);
}

#[test]
fn every_site_has_its_kind_size_and_multibyte_nops() {
    let (_, image, report) =
        burn_and_audit("\tcli\n\tmovq %rax,%cr3\n\trdtsc\n\tlgdt 0x12345678(%rax,%rbx,8)\n");
    assert!(report.is_clean(), "{}", report.to_text());
    let sizes: Vec<u8> = image.records.iter().map(|r| r.record.site_len).collect();
    assert_eq!(sizes, vec![12, 16, 5, 16]);
    let insn: Vec<u8> = image.records.iter().map(|r| r.record.insn_len).collect();
    assert_eq!(insn, vec![1, 3, 2, 8]);
    // 11 bytes of padding after cli: at most two NOP instructions.
    let code = &image.code[0].data;
    let nops = common::decode_all(&code[1..12]);
    assert!(nops.len() <= 2, "{nops:?}");
}

#[test]
fn shadow_pairs_stay_one_site() {
    for (src, first_len, pair_len) in [
        ("sti; hlt", 1u8, 1u8),
        ("sti\n\tcli", 1, 1),
        ("sti; mwait", 1, 3),
        ("sti; iretq", 1, 2),
        ("sti; sysretq", 1, 3),
        ("sti; popfq", 1, 1),
        // An ordinary instruction stays where it is: nothing relies on its
        // place in the shadow.
        ("sti\n\tret", 1, 0),
        ("sti; jmp 1f; 1:", 1, 0),
        ("sti; call f; f:", 1, 0),
        ("sti; mov %rax,%rbx", 1, 0),
        // An SS load keeps the next instruction, whatever it is.
        ("mov %ax,%ss\n\tmov %rbp,%rsp", 2, 3),
        ("mov %ax,%ss; ret", 2, 1),
        ("popq %fs\n\tnop", 2, 0),
    ] {
        let (out, image, report) = burn_and_audit(&format!("\t{src}\n"));
        assert!(report.is_clean(), "{src}: {}", report.to_text());
        let r = image.records[0].record;
        assert_eq!(r.insn_len, first_len, "{src}");
        assert_eq!(r.pair_len, pair_len, "{src}");
        assert_eq!(out.sites[0].paired, pair_len != 0, "{src}");
        let code = &image.code[0].data;
        if pair_len != 0 {
            // Nothing between the two instructions.
            let decoded = common::decode_all(&code[..usize::from(first_len + pair_len)]);
            assert_eq!(decoded.len(), 2, "{src}");
        }
    }
}

#[test]
fn sti_leaves_an_ordinary_instruction_alone_without_a_warning() {
    for src in [
        "\tsti\n\tret\n",
        "\tsti; jmp 1f\n1:\n",
        "\tsti; call f\nf:\n",
        "\tsti; movl $1,%eax\n",
    ] {
        let (out, image, report) = burn_and_audit(src);
        assert!(report.is_clean(), "{src}: {}", report.to_text());
        assert_eq!(out.sites.len(), 1, "{src}");
        assert!(!out.sites[0].paired, "{src}");
        assert!(out.warnings.is_empty(), "{src}: {:?}", out.warnings);
        // The site is the `sti` and its padding; the next instruction
        // follows it unchanged.
        let r = image.records[0].record;
        assert_eq!((r.insn_len, r.pair_len), (1, 0), "{src}");
        let code = &image.code[0].data;
        let after = common::decode_all(&code[usize::from(r.site_len)..]);
        assert!(
            !after.is_empty() && after[0].mnemonic() != iced_x86::Mnemonic::Nop,
            "{src}"
        );
    }
}

#[test]
fn sti_then_a_sensitive_instruction_it_does_not_pair_gives_two_sites() {
    let out = afterburn("\tsti; pushfq\n");
    let kinds: Vec<_> = out.sites.iter().map(|s| (s.kind, s.paired)).collect();
    assert_eq!(kinds, vec![(Kind::Sti, false), (Kind::Pushf, false)]);
    assert!(out.warnings.is_empty());
}

#[test]
fn sti_before_data_is_not_paired_and_warns() {
    // Linux writes `sti; mwait` with `mwait` as bytes: the pass cannot see
    // what follows, so the shadow covers padding, and it says so.
    let out = afterburn("\tsti; .byte 0x0f, 0x01, 0xc9\n");
    assert_eq!(out.sites.len(), 1);
    assert!(!out.sites[0].paired);
    assert_eq!(out.warnings.len(), 1);
    assert!(out.warnings[0].message.contains("shadow covers padding"));
}

#[test]
fn sti_before_a_label_is_not_paired_and_warns() {
    let out = afterburn("\tsti\n1:\thlt\n");
    assert_eq!(out.sites.len(), 2);
    assert!(!out.sites[0].paired);
    assert_eq!(out.warnings.len(), 1);
}

#[test]
fn macros_and_repeats_get_distinct_sites() {
    let src = "\t.macro io port\n\toutb %al, $\\port\n\tinb $\\port, %al\n\t.endm\n\tio 0x80\n\tio 0x81\n\
               \t.rept 3\n\tcpuid\n\t.endr\n\t.irp r,ax,bx\n\tltr %\\r\n\t.endr\n";
    let (out, image, report) = burn_and_audit(src);
    assert_eq!(out.sites.len(), 4, "sites in the source text");
    assert!(report.is_clean(), "{}", report.to_text());
    let kinds: Vec<u16> = image.records.iter().map(|r| r.record.kind).collect();
    let (o, i, c, l) = (
        Kind::PortOut.number(),
        Kind::PortIn.number(),
        Kind::Cpuid.number(),
        Kind::Ltr.number(),
    );
    assert_eq!(kinds, vec![o, i, o, i, c, c, c, l, l]);
    let mut addrs: Vec<u64> = image.records.iter().map(|r| r.address).collect();
    addrs.dedup();
    assert_eq!(addrs.len(), 9, "every expansion has its own site");
}

#[test]
fn records_are_relocations_that_survive_linking() {
    let a = afterburn("\t.text\n\t.globl _start\n_start:\n\tnop\n\tcli\n\tcall f\n");
    let b = afterburn("\t.text\n\t.globl f\nf:\n\tmovq %rax,%cr3\n\tsti; hlt\n\tret\n");
    let dir = tempfile::tempdir().unwrap();
    let mut objs = Vec::new();
    for (n, out) in [a, b].iter().enumerate() {
        let obj = common::assemble(&out.text).unwrap();
        let path = dir.path().join(format!("{n}.o"));
        std::fs::write(&path, obj).unwrap();
        objs.push(path);
    }
    let exe = dir.path().join("a.out");
    let st = std::process::Command::new("ld")
        .args(["-o"])
        .arg(&exe)
        .args(["-Ttext=0x401000"])
        .args(&objs)
        .status()
        .unwrap();
    assert!(st.success());
    let image = afterburner::elf::ElfImage::parse(&std::fs::read(&exe).unwrap()).unwrap();
    let addrs: Vec<u64> = image.records.iter().map(|r| r.address).collect();
    let text = &image.code[0];
    assert_eq!(text.address, 0x401000);
    // cli at _start+1; f starts after _start's 1+12+5 bytes, aligned by ld.
    assert_eq!(addrs[0], 0x401001);
    assert_eq!(
        text.data[(addrs[1] - 0x401000) as usize..][..3],
        [0x0f, 0x22, 0xd8]
    );
    assert_eq!(
        text.data[(addrs[2] - 0x401000) as usize..][..2],
        [0xfb, 0xf4]
    );
    let report = afterburner::audit::audit(&image);
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.sites, 3);
}

#[test]
fn audit_finds_instructions_hidden_in_bytes() {
    let (_, _, report) = burn_and_audit("\tcli\n\t.byte 0x0f, 0x01, 0xf8\n\tret\n");
    assert_eq!(report.violations.len(), 1, "{}", report.to_text());
    let v = &report.violations[0];
    assert_eq!(v.rule, afterburner::audit::Rule::Uncovered);
    assert_eq!(v.address, 12);
    assert_eq!(v.disassembly, "swapgs");
}

#[test]
fn audit_rejects_unpadded_code_and_broken_sites() {
    // Plain `as` output without the pass: every sensitive instruction is uncovered.
    let obj = common::assemble(b"\tcli\n\tmovq %rax,%cr3\n\tret\n").unwrap();
    let report = afterburner::audit::audit(&afterburner::elf::ElfImage::parse(&obj).unwrap());
    assert_eq!(report.violations.len(), 2);
    // A record whose site holds a non-NOP after the instruction.
    let mut out = afterburn("\tcli\n").text;
    let s = String::from_utf8(out.clone())
        .unwrap()
        .replace("740000002:", "740000002: incl %eax;");
    out = s.into_bytes();
    let obj = common::assemble(&out).unwrap();
    let report = afterburner::audit::audit(&afterburner::elf::ElfImage::parse(&obj).unwrap());
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.rule == afterburner::audit::Rule::BadPadding),
        "{}",
        report.to_text()
    );
    // A record pointing into data.
    let s = String::from_utf8(afterburn("\tcli\n").text)
        .unwrap()
        .replace(".quad 740000001b", ".quad dat");
    let obj = common::assemble(format!("{s}\t.data\ndat: .long 0\n").as_bytes()).unwrap();
    let report = afterburner::audit::audit(&afterburner::elf::ElfImage::parse(&obj).unwrap());
    assert!(report
        .violations
        .iter()
        .any(|v| v.rule == afterburner::audit::Rule::RecordOutsideCode));
}

#[test]
fn gs_operands_are_noted_not_violations() {
    let (_, _, report) = burn_and_audit("\tmovq %gs:0x10,%rax\n\tmovq %fs:0x10,%rax\n");
    assert!(report.is_clean());
    assert_eq!(report.notes.len(), 1);
    assert_eq!(report.notes[0].rule, afterburner::audit::Rule::GsOperand);
}

#[test]
fn opted_out_regions_are_recorded_and_skipped_by_the_audit() {
    let src = "\tcli\n# afterburn: off\n\t.code32\n\tmovl %eax,%cr0\n\tljmp $0x8,$1f\n1:\n\t.code64\n# afterburn: on\n\thlt\n";
    let (out, image, report) = burn_and_audit(src);
    assert_eq!(out.opt_out.len(), 1);
    assert_eq!(
        (out.opt_out[0].first_line, out.opt_out[0].last_line),
        (2, 8)
    );
    assert_eq!(out.sites.len(), 2);
    assert!(report.is_clean(), "{}", report.to_text());
    assert!(report.opted_out_bytes >= 10);
    assert!(String::from_utf8_lossy(&out.text).contains("opted-out region: lines 2-8"));
    let markers = image.records.iter().filter(|r| !r.record.is_site()).count();
    assert!(markers >= 2);
}

#[test]
fn code_between_the_user_code_symbols_is_not_audited() {
    // A process's privileged instructions (they fault at CPL 3, as meant),
    // between the symbols, unpadded (left to the compiler as PIC code).
    let user = "\t.text\n\tcli\nafterburn_user_code_start:\n\tcli\n\tout %al,$0x80\n\tmovq %cr3,%rax\nafterburn_user_code_end:\n";
    let obj = common::assemble(user.as_bytes()).unwrap();
    let image = afterburner::elf::ElfImage::parse(&obj).unwrap();
    let report = afterburner::audit::audit(&image);
    // The first cli, outside them, is still uncovered.
    assert_eq!(report.violations.len(), 1, "{}", report.to_text());
    assert_eq!(report.violations[0].address, 0);
    assert!(report.opted_out_bytes >= 6);
    // Symbols the wrong way round are a bad region.
    let swapped = user
        .replace("afterburn_user_code_start", "x")
        .replace("afterburn_user_code_end", "afterburn_user_code_start")
        .replace("x:", "afterburn_user_code_end:");
    let obj = common::assemble(swapped.as_bytes()).unwrap();
    let image = afterburner::elf::ElfImage::parse(&obj).unwrap();
    let report = afterburner::audit::audit(&image);
    assert!(report
        .violations
        .iter()
        .any(|v| v.rule == afterburner::audit::Rule::BadRegion));
}

#[test]
fn code32_sites_are_flagged_and_decoded_in_their_mode() {
    let (_, image, report) =
        burn_and_audit("\t.code32\n\tmovl %eax,%cr3\n\tpush %ds\n\tinc %eax\n\t.code64\n\tcpuid\n");
    assert!(report.is_clean(), "{}", report.to_text());
    let sites: Vec<_> = image
        .records
        .iter()
        .filter(|r| r.record.is_site())
        .collect();
    assert_eq!(
        sites[0].record.flags & afterburner::format::FLAG_CODE32,
        afterburner::format::FLAG_CODE32
    );
    assert_eq!(sites[2].record.flags & afterburner::format::FLAG_CODE32, 0);
}

#[test]
fn end_directive_and_no_app_files_still_assemble() {
    // Text after `.end` is never assembled; the chunk trailer goes before it.
    let (out, _, report) = burn_and_audit("\t.text\nf:\n\tcli\n\t.end\n\tthis is not assembly\n");
    assert_eq!(out.sites.len(), 1);
    assert!(report.is_clean());
    let text = String::from_utf8(out.text).unwrap();
    assert!(text.find(".Lafterburn_chunk_end:").unwrap() < text.find(".end\n").unwrap());
    // `#NO_APP` first: `as` skips its preprocessor; inserted text must not need it.
    let (out, _, report) = burn_and_audit("#NO_APP\n\t.text\nf:\n\tcli\n\tsti;hlt\n\tret\n");
    assert_eq!(out.sites.len(), 2);
    assert!(report.is_clean(), "{}", report.to_text());
}

#[test]
fn site_sizes_are_configurable() {
    let mut config = afterburner::pass::Config::default();
    config.apply_option("cli=24").unwrap();
    config.apply_option("3").unwrap_err();
    assert!(config.apply_option("nonsense=8").is_err());
    assert!(config.apply_option("cli=256").is_err());
    let out = afterburner::pass::run(b"\tcli\n\tcpuid\n", &config).unwrap();
    let obj = common::assemble(&out.text).unwrap();
    let image = afterburner::elf::ElfImage::parse(&obj).unwrap();
    let sizes: Vec<u8> = image.records.iter().map(|r| r.record.site_len).collect();
    assert_eq!(sizes, vec![24, 16]);
    let mut all = afterburner::pass::Config::default();
    all.apply_option("32").unwrap();
    assert_eq!(all.site_size(Kind::Rdtsc), 32);
}

#[test]
fn opt_out_marker_on_an_instruction_line() {
    let (out, _, report) =
        burn_and_audit("\tcli# afterburn: off\n\twrmsr\n# AFTERBURN ON\n\thlt\n");
    assert_eq!(out.sites.len(), 2);
    assert_eq!(out.opt_out.len(), 1);
    assert!(report.is_clean(), "{}", report.to_text());
}

#[test]
fn code_in_a_section_without_the_x_flag_is_audited_with_a_note() {
    // seL4's head.S puts its boot code in `.section .phys.text` (no flags).
    let (_, image, report) =
        burn_and_audit("\t.section .phys.text\n\t.code32\nstart:\n\tmovl %eax,%cr3\n\thlt\n");
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.sites, 2);
    assert_eq!(report.notes.len(), 1);
    assert_eq!(
        report.notes[0].rule,
        afterburner::audit::Rule::NotExecutable
    );
    assert!(image
        .code
        .iter()
        .any(|c| c.name == ".phys.text" && !c.executable));
    // Without records pointing there, such a section is data and not decoded.
    let obj = common::assemble(b"\t.section .phys.text\n\thlt\n").unwrap();
    let image = afterburner::elf::ElfImage::parse(&obj).unwrap();
    assert!(afterburner::audit::audit(&image).is_clean());
}

#[test]
fn code16_sites_are_padded_with_16_bit_safe_nops() {
    // `.nops` would emit 32-bit NOP forms that decode as other instructions
    // in 16-bit mode; the audit decodes 16-bit sites in 16-bit mode.
    let (out, image, report) = burn_and_audit(
        "\t.code16\n\tcli\n\tinb $0x60,%al\n\tlgdt (%si)\n\tmovl %cr0,%eax\n\tljmp $0x8,$0x1000\n\t.code64\n\tcpuid\n",
    );
    assert_eq!(out.sites.len(), 6);
    assert!(report.is_clean(), "{}", report.to_text());
    let flags: Vec<u16> = image
        .records
        .iter()
        .filter(|r| r.record.is_site())
        .map(|r| r.record.flags & afterburner::format::FLAG_CODE16)
        .collect();
    assert_eq!(flags, vec![4, 4, 4, 4, 4, 0]);
}

#[test]
fn strings_in_code_sections_are_data_but_bytes_are_still_decoded() {
    // "no" is `outsb; outsl` as code: without data markers the audit would
    // report them; a `.byte`-encoded swapgs must still be reported.
    let src =
        "\t.section .phys.text\nmsg:\t.asciz \"no no no\"\nf:\tcli\n\t.byte 0x0f, 0x01, 0xf8\n\
               \t.section .rodata\n\t.string \"not in code\"\n\t.text\n\t.ascii \"nn\"\n\thlt\n";
    let (out, image, report) = burn_and_audit(src);
    assert_eq!(out.sites.len(), 2);
    assert_eq!(report.violations.len(), 1, "{}", report.to_text());
    assert_eq!(report.violations[0].disassembly, "swapgs");
    assert_eq!(report.data_bytes, 9 + 2);
    let data_markers = image
        .records
        .iter()
        .filter(|r| r.record.kind == afterburner::format::MARKER_DATA_BEGIN)
        .count();
    assert_eq!(data_markers, 2, "the .rodata string gets none");
}

#[test]
fn audit_resynchronises_at_mode_switches() {
    // 0xb8 starts a 5-byte `mov $imm32, %eax` that would swallow the next
    // bytes; the `.code32` marker is a statement boundary, so the audit
    // restarts decoding there instead of reporting a straddled site.
    let (_, _, report) =
        burn_and_audit("\t.byte 0xb8\n\t.code32\n\tcli\n\tmovl %eax,%cr3\n\t.code64\n");
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.sites, 2);
}

#[test]
fn deliberate_traps_can_go_without_a_site_and_the_audit_counts_them() {
    let mut config = afterburner::pass::Config::default();
    config.apply_option("int3=none").unwrap();
    config.apply_option("ud2=none").unwrap();
    // Only traps: a cli without a site would be a hole.
    assert!(config.apply_option("cli=none").is_err());
    assert!(config.apply_option("none").is_err());
    assert_eq!(config.site_size(Kind::Int3), 0);
    // Linux's int3 self-test: the handler emulates a 5-byte call from the
    // int3, so the 4 NOPs after it must follow it directly.
    let out =
        afterburner::pass::run(b"1:\tint3; nop; nop; nop; nop\n\tud2\n\tcli\n", &config).unwrap();
    assert_eq!(out.sites.len(), 1);
    let obj = common::assemble(&out.text).unwrap();
    let image = afterburner::elf::ElfImage::parse(&obj).unwrap();
    let text = common::text_of(&obj);
    assert_eq!(&text[..7], &[0xcc, 0x90, 0x90, 0x90, 0x90, 0x0f, 0x0b]);
    let report = afterburner::audit::audit(&image);
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.traps_without_site, 2);
    assert_eq!(report.sites, 1);
}

#[test]
fn alternatives_are_listed_apart_and_summarised() {
    use afterburner::audit::Rule;
    // Linux's ASM_CLAC: `.byte`-encoded in .altinstr_replacement, copied
    // over the original NOPs only on a CPU with SMAP.
    let (_, _, report) = burn_and_audit(
        "\tnop; nop; nop\n\t.pushsection .altinstr_replacement,\"ax\"\n\t.byte 0x0f,0x01,0xca\n\t.popsection\n\t.byte 0x0f,0x01,0xca\n",
    );
    let rules: Vec<Rule> = report.violations.iter().map(|v| v.rule).collect();
    assert_eq!(rules, [Rule::Uncovered, Rule::UncoveredAlternative]);
    let summary = report.summary();
    assert_eq!(summary["uncovered-alternative"]["clac"], 1);
    assert_eq!(summary["uncovered"]["clac"], 1);
    let json = report.to_json();
    assert_eq!(json["summary"]["uncovered-alternative"]["clac"], 1);
    assert!(report
        .to_text()
        .contains("summary: uncovered-alternative: clac 1"));
}
