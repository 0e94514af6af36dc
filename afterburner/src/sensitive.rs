//! Which AT&T-syntax statements are sensitive instructions, and of what kind.
//!
//! Mnemonics are matched whole (`invlpg` is not `in`), with and without
//! size suffixes; for `mov`/`push`/`pop`/`jmp`/`call` the operands decide
//! (`%cr3`, `%ss`, two immediates), and `%fs:` inside an address is a
//! segment override, not a segment-register operand.

use crate::format::Kind;
use thiserror::Error;

/// A statement body split into prefixes, mnemonic and operand text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Number of prefix words before the mnemonic (`rep`, `lock`, `cs`, ...).
    pub prefixes: usize,
    /// True if one of the prefixes is `rep`/`repe`/`repz`/`repne`/`repnz`.
    pub rep: bool,
    /// The mnemonic as written (may be upper case); empty for a statement
    /// made only of prefixes.
    pub mnemonic: &'a [u8],
    /// Everything after the mnemonic, trimmed.
    pub operands: &'a [u8],
}

/// A recognised sensitive mnemonic whose operands the pass cannot handle.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct OperandError {
    pub message: String,
}

fn err<T>(message: String) -> Result<T, OperandError> {
    Err(OperandError { message })
}

/// For words `as` accepts as instruction prefixes: `Some(true)` for the
/// `rep` family, `Some(false)` for the others; `None` for anything else.
pub fn prefix_kind(word: &[u8]) -> Option<bool> {
    let mut buf = [0u8; 16];
    let w = lower(word, &mut buf)?;
    let rep = matches!(w, b"rep" | b"repe" | b"repz" | b"repne" | b"repnz");
    let other = matches!(
        w,
        b"lock"
            | b"data16"
            | b"data32"
            | b"addr16"
            | b"addr32"
            | b"cs"
            | b"ds"
            | b"es"
            | b"fs"
            | b"gs"
            | b"ss"
            | b"rex"
            | b"rex64"
            | b"notrack"
            | b"bnd"
            | b"xacquire"
            | b"xrelease"
    ) || w.starts_with(b"rex.")
        || (w.first() == Some(&b'{') && w.last() == Some(&b'}'));
    if rep || other {
        Some(rep)
    } else {
        None
    }
}

/// Lower-cases `word` into `buf`, or `None` if it does not fit (no known
/// mnemonic is longer than 16 bytes).
fn lower<'b>(word: &[u8], buf: &'b mut [u8; 16]) -> Option<&'b [u8]> {
    if word.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(word) {
        *d = s.to_ascii_lowercase();
    }
    Some(&buf[..word.len()])
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let rest = &s[end..];
    let start = rest
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    (&s[..end], &rest[start..])
}

/// Splits an instruction statement body. Returns `None` for directives,
/// assignments (`x = 1`) and empty bodies.
pub fn parse(body: &[u8]) -> Option<Parsed<'_>> {
    match body.first() {
        None | Some(b'.') => return None,
        _ => {}
    }
    let mut rest = body;
    let mut prefixes = 0;
    let mut rep = false;
    loop {
        let (word, after) = split_word(rest);
        if word.is_empty() {
            return Some(Parsed {
                prefixes,
                rep,
                mnemonic: word,
                operands: after,
            });
        }
        if prefixes == 0 && (after.first() == Some(&b'=') || word.contains(&b'=')) {
            return None;
        }
        match prefix_kind(word) {
            Some(r) => {
                rep |= r;
                prefixes += 1;
                rest = after;
            }
            None => {
                return Some(Parsed {
                    prefixes,
                    rep,
                    mnemonic: word,
                    operands: after,
                })
            }
        }
    }
}

/// Splits operand text at top-level commas.
pub fn split_operands(ops: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    if ops.iter().all(|b| b.is_ascii_whitespace()) {
        return out;
    }
    let mut depth = 0i32;
    let mut start = 0;
    for (i, &b) in ops.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth <= 0 => {
                out.push(crate::lexer::trim(&ops[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(crate::lexer::trim(&ops[start..]));
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reg {
    Control,
    Debug,
    Segment,
    Other,
}

fn register_class(op: &[u8]) -> Reg {
    let mut buf = [0u8; 16];
    let Some(o) = lower(op, &mut buf) else {
        return Reg::Other;
    };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if let Some(n) = o.strip_prefix(b"%cr") {
        if digits(n) {
            return Reg::Control;
        }
    }
    if let Some(n) = o.strip_prefix(b"%db").or_else(|| o.strip_prefix(b"%dr")) {
        if digits(n) {
            return Reg::Debug;
        }
    }
    if matches!(o, b"%cs" | b"%ds" | b"%es" | b"%fs" | b"%gs" | b"%ss") {
        return Reg::Segment;
    }
    Reg::Other
}

fn is_immediate(op: &[u8]) -> bool {
    op.first() == Some(&b'$')
}

fn is_ss(op: &[u8]) -> bool {
    op.eq_ignore_ascii_case(b"%ss")
}

/// What the pass needs to know about a sensitive instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sensitive {
    pub kind: Kind,
    /// The instruction loads %ss or sets IF: the next instruction runs in
    /// its interrupt shadow.
    pub shadow: bool,
}

/// Whether an instruction of `kind` right after an `sti` relies on running
/// in its interrupt shadow, so the pass keeps the two in one site. The
/// shadow holds off interrupts for exactly one instruction (SDM vol. 2,
/// STI); it matters only where an interrupt on the boundary between the
/// two would change what happens:
/// - `hlt`, `mwait`: the wait would start after the interrupt that was to
///   end it (a lost wake-up).
/// - `cli`, `popf`: natively IF goes back to 0 (`popf` may restore it so)
///   with no window opened at all; an interrupt in between would be one the
///   code never let in.
/// - `iret`, `sysret`, `sysexit`: they leave for another context; an
///   interrupt in between would land on the half-switched state (after
///   `swapgs`, say).
///
/// After anything else an interrupt taken before the instruction instead of
/// after it is one instruction early, which no correct code can tell apart:
/// the pass leaves that instruction where it is (a `ret`, `jmp` or `call`
/// could not move into a site anyway).
pub fn relies_on_sti_shadow(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Hlt
            | Kind::Mwait
            | Kind::Cli
            | Kind::Popf
            | Kind::Iret
            | Kind::Sysret
            | Kind::Sysexit
    )
}

/// Classifies a mnemonic with its operand text. `Ok(None)`: not sensitive.
pub fn classify(mnemonic: &[u8], operands: &[u8]) -> Result<Option<Sensitive>, OperandError> {
    let mut buf = [0u8; 16];
    let Some(m) = lower(mnemonic, &mut buf) else {
        return Ok(None);
    };
    let kind = match m {
        b"cli" => Kind::Cli,
        b"sti" => Kind::Sti,
        b"pushf" | b"pushfw" | b"pushfl" | b"pushfq" | b"pushfd" => Kind::Pushf,
        b"popf" | b"popfw" | b"popfl" | b"popfq" | b"popfd" => Kind::Popf,
        b"iret" | b"iretw" | b"iretl" | b"iretd" | b"iretq" => Kind::Iret,
        b"hlt" => Kind::Hlt,
        b"in" | b"inb" | b"inw" | b"inl" | b"ins" | b"insb" | b"insw" | b"insl" | b"insd" => {
            Kind::PortIn
        }
        b"out" | b"outb" | b"outw" | b"outl" | b"outs" | b"outsb" | b"outsw" | b"outsl"
        | b"outsd" => Kind::PortOut,
        b"clts" => Kind::Clts,
        b"lmsw" | b"lmsww" => Kind::Lmsw,
        b"smsw" | b"smsww" | b"smswl" | b"smswq" => Kind::Smsw,
        b"lgdt" | b"lgdtw" | b"lgdtl" | b"lgdtq" => Kind::Lgdt,
        b"lidt" | b"lidtw" | b"lidtl" | b"lidtq" => Kind::Lidt,
        b"lldt" | b"lldtw" => Kind::Lldt,
        b"ltr" | b"ltrw" => Kind::Ltr,
        b"sgdt" | b"sgdtw" | b"sgdtl" | b"sgdtq" => Kind::Sgdt,
        b"sidt" | b"sidtw" | b"sidtl" | b"sidtq" => Kind::Sidt,
        b"sldt" | b"sldtw" | b"sldtl" | b"sldtq" => Kind::Sldt,
        b"str" | b"strw" | b"strl" | b"strq" => Kind::Str,
        b"invlpg" => Kind::Invlpg,
        b"invpcid" => Kind::Invpcid,
        b"invd" => Kind::Invd,
        b"wbinvd" => Kind::Wbinvd,
        b"rdmsr" => Kind::Rdmsr,
        b"wrmsr" => Kind::Wrmsr,
        b"swapgs" => Kind::Swapgs,
        b"sysret" | b"sysretl" | b"sysretq" => Kind::Sysret,
        b"sysexit" | b"sysexitl" | b"sysexitq" => Kind::Sysexit,
        b"rdpmc" => Kind::Rdpmc,
        b"xsetbv" => Kind::Xsetbv,
        b"monitor" | b"monitorx" => Kind::Monitor,
        b"mwait" | b"mwaitx" => Kind::Mwait,
        b"rsm" => Kind::Rsm,
        b"lar" | b"larw" | b"larl" | b"larq" => Kind::Lar,
        b"lsl" | b"lslw" | b"lsll" | b"lslq" => Kind::Lsl,
        b"verr" | b"verrw" => Kind::Verr,
        b"verw" | b"verww" => Kind::Verw,
        b"cpuid" => Kind::Cpuid,
        b"lds" | b"ldsw" | b"ldsl" | b"les" | b"lesw" | b"lesl" | b"lfs" | b"lfsw" | b"lfsl"
        | b"lfsq" | b"lgs" | b"lgsw" | b"lgsl" | b"lgsq" | b"lss" | b"lssw" | b"lssl" | b"lssq" => {
            Kind::LoadFarPointer
        }
        b"ljmp" | b"ljmpw" | b"ljmpl" | b"ljmpq" => Kind::FarJmp,
        b"lcall" | b"lcallw" | b"lcalll" | b"lcallq" => Kind::FarCall,
        b"lret" | b"lretw" | b"lretl" | b"lretq" | b"retf" | b"retfw" | b"retfl" | b"retfq" => {
            Kind::FarRet
        }
        b"int" => Kind::Int,
        b"int3" => Kind::Int3,
        b"into" => Kind::Into,
        b"ud2" | b"ud2a" => Kind::Ud2,
        b"wrfsbase" | b"wrfsbasel" | b"wrfsbaseq" | b"wrgsbase" | b"wrgsbasel" | b"wrgsbaseq" => {
            Kind::WrSegBase
        }
        b"rdfsbase" | b"rdfsbasel" | b"rdfsbaseq" | b"rdgsbase" | b"rdgsbasel" | b"rdgsbaseq" => {
            Kind::RdSegBase
        }
        b"rdtsc" => Kind::Rdtsc,
        b"rdtscp" => Kind::Rdtscp,
        b"stac" | b"clac" => Kind::AlignmentCheck,
        b"xsaves" | b"xsaves64" | b"xsavesq" | b"xrstors" | b"xrstors64" | b"xrstorsq" => {
            Kind::SupervisorState
        }
        b"mov" | b"movw" | b"movl" | b"movq" => return classify_mov(m, operands),
        b"push" | b"pushw" | b"pushl" | b"pushq" => {
            return classify_push_pop(m, operands, Kind::PushSeg)
        }
        b"pop" | b"popw" | b"popl" | b"popq" => {
            return classify_push_pop(m, operands, Kind::PopSeg)
        }
        b"jmp" | b"jmpw" | b"jmpl" | b"jmpq" => return classify_far_branch(operands, Kind::FarJmp),
        b"call" | b"callw" | b"calll" | b"callq" => {
            return classify_far_branch(operands, Kind::FarCall)
        }
        _ => return Ok(None),
    };
    let ops = split_operands(operands);
    let name = String::from_utf8_lossy(m);
    let count_ok = match kind {
        Kind::Cli
        | Kind::Sti
        | Kind::Pushf
        | Kind::Popf
        | Kind::Iret
        | Kind::Hlt
        | Kind::Clts
        | Kind::Invd
        | Kind::Wbinvd
        | Kind::Rdmsr
        | Kind::Wrmsr
        | Kind::Swapgs
        | Kind::Sysret
        | Kind::Sysexit
        | Kind::Rdpmc
        | Kind::Xsetbv
        | Kind::Rsm
        | Kind::Cpuid
        | Kind::Int3
        | Kind::Into
        | Kind::Ud2
        | Kind::Rdtsc
        | Kind::Rdtscp
        | Kind::AlignmentCheck => ops.is_empty(),
        Kind::PortIn | Kind::PortOut => ops.len() <= 2,
        Kind::Monitor | Kind::Mwait => ops.len() <= 3,
        Kind::Lmsw
        | Kind::Smsw
        | Kind::Lgdt
        | Kind::Lidt
        | Kind::Lldt
        | Kind::Ltr
        | Kind::Sgdt
        | Kind::Sidt
        | Kind::Sldt
        | Kind::Str
        | Kind::Invlpg
        | Kind::Verr
        | Kind::Verw
        | Kind::WrSegBase
        | Kind::RdSegBase
        | Kind::SupervisorState => ops.len() == 1,
        Kind::Lar | Kind::Lsl | Kind::Invpcid | Kind::LoadFarPointer => ops.len() == 2,
        Kind::FarJmp | Kind::FarCall => ops.len() == 1 || ops.len() == 2,
        Kind::FarRet => ops.len() <= 1,
        Kind::Int => {
            if ops.len() != 1 || !(is_immediate(ops[0]) || ops[0].first() == Some(&b'\\')) {
                return err(format!("`{name}` needs one immediate operand ($n)"));
            }
            true
        }
        _ => true,
    };
    if !count_ok {
        return err(format!(
            "`{name}` with {} operand(s) is not an instruction the pass knows",
            ops.len()
        ));
    }
    if matches!(
        kind,
        Kind::Lgdt | Kind::Lidt | Kind::Sgdt | Kind::Sidt | Kind::Invlpg
    ) && (ops[0].first() == Some(&b'%') && !ops[0].contains(&b':') || is_immediate(ops[0]))
    {
        return err(format!("`{name}` needs a memory operand"));
    }
    let shadow = match kind {
        Kind::Sti => true,
        Kind::LoadFarPointer => m.starts_with(b"lss"),
        _ => false,
    };
    Ok(Some(Sensitive { kind, shadow }))
}

fn classify_mov(m: &[u8], operands: &[u8]) -> Result<Option<Sensitive>, OperandError> {
    let ops = split_operands(operands);
    let classes: Vec<Reg> = ops.iter().map(|o| register_class(o)).collect();
    if classes.iter().all(|c| *c == Reg::Other) {
        return Ok(None);
    }
    if ops.len() != 2 {
        return err(format!(
            "`{}` of a control, debug or segment register needs two operands",
            String::from_utf8_lossy(m)
        ));
    }
    let kind = match (classes[0], classes[1]) {
        (Reg::Control, _) if classes[1] == Reg::Control => {
            return err("mov between two control registers".into())
        }
        (_, Reg::Control) => Kind::MovToCr,
        (Reg::Control, _) => Kind::MovFromCr,
        (_, Reg::Debug) => Kind::MovToDr,
        (Reg::Debug, _) => Kind::MovFromDr,
        (_, Reg::Segment) => Kind::MovToSeg,
        (Reg::Segment, _) => Kind::MovFromSeg,
        _ => return Ok(None),
    };
    let shadow = kind == Kind::MovToSeg && is_ss(ops[1]);
    Ok(Some(Sensitive { kind, shadow }))
}

fn classify_push_pop(
    m: &[u8],
    operands: &[u8],
    kind: Kind,
) -> Result<Option<Sensitive>, OperandError> {
    let ops = split_operands(operands);
    if !ops.iter().any(|o| register_class(o) == Reg::Segment) {
        return Ok(None);
    }
    if ops.len() != 1 {
        return err(format!(
            "`{}` of a segment register takes one operand",
            String::from_utf8_lossy(m)
        ));
    }
    let shadow = kind == Kind::PopSeg && is_ss(ops[0]);
    Ok(Some(Sensitive { kind, shadow }))
}

/// `jmp $sel, $off` and `call $sel, $off` are far in AT&T syntax.
fn classify_far_branch(operands: &[u8], kind: Kind) -> Result<Option<Sensitive>, OperandError> {
    let ops = split_operands(operands);
    match ops.as_slice() {
        [a, b] if is_immediate(a) && is_immediate(b) => Ok(Some(Sensitive {
            kind,
            shadow: false,
        })),
        [_, _] => err("two-operand jmp/call must be far (`$selector, $offset`)".into()),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(stmt: &str) -> Option<Kind> {
        let p = parse(stmt.as_bytes()).expect("an instruction");
        classify(p.mnemonic, p.operands)
            .expect("handled")
            .map(|s| s.kind)
    }

    fn error(stmt: &str) -> String {
        let p = parse(stmt.as_bytes()).expect("an instruction");
        classify(p.mnemonic, p.operands)
            .expect_err("rejected")
            .message
    }

    #[test]
    fn whole_mnemonics_only() {
        assert_eq!(kind("invlpg (%r11)"), Some(Kind::Invlpg));
        assert_eq!(kind("int $0x80"), Some(Kind::Int));
        assert_eq!(kind("incl %eax"), None);
        assert_eq!(kind("inc %eax"), None);
        assert_eq!(kind("into"), Some(Kind::Into));
        assert_eq!(kind("stosb"), None);
        assert_eq!(kind("strlen"), None);
        assert_eq!(kind("outsb"), Some(Kind::PortOut));
        assert_eq!(kind("CLI"), Some(Kind::Cli));
        assert_eq!(kind("ud2"), Some(Kind::Ud2));
        assert_eq!(kind("ud1 %eax,%eax"), None);
    }

    #[test]
    fn every_plain_form_and_suffix() {
        let cases: &[(&str, Kind)] = &[
            ("cli", Kind::Cli),
            ("sti", Kind::Sti),
            ("hlt", Kind::Hlt),
            ("clts", Kind::Clts),
            ("lgdt 27(%rsp)", Kind::Lgdt),
            ("lgdtq (%rax)", Kind::Lgdt),
            ("lidt idt_ptr(%rip)", Kind::Lidt),
            ("lidtl (%eax)", Kind::Lidt),
            ("lldt %ax", Kind::Lldt),
            ("lldtw (%rax)", Kind::Lldt),
            ("ltr %ax", Kind::Ltr),
            ("ltrw %di", Kind::Ltr),
            ("lmsw %ax", Kind::Lmsw),
            ("movq %rax,%cr3", Kind::MovToCr),
            ("mov %rax, %cr0", Kind::MovToCr),
            ("mov %cr2,%rax", Kind::MovFromCr),
            ("movl %cr4, %eax", Kind::MovFromCr),
            ("mov %rax,%cr8", Kind::MovToCr),
            ("mov %rax,%db7", Kind::MovToDr),
            ("movq %dr6,%rax", Kind::MovFromDr),
            ("invlpg (%r11)", Kind::Invlpg),
            ("invpcid (%rax),%rbx", Kind::Invpcid),
            ("invd", Kind::Invd),
            ("wbinvd", Kind::Wbinvd),
            ("rdmsr", Kind::Rdmsr),
            ("wrmsr", Kind::Wrmsr),
            ("inb %dx,%al", Kind::PortIn),
            ("inb $0x60,%al", Kind::PortIn),
            ("inw %dx,%ax", Kind::PortIn),
            ("inl %dx,%eax", Kind::PortIn),
            ("in %dx,%al", Kind::PortIn),
            ("insb", Kind::PortIn),
            ("insw", Kind::PortIn),
            ("insl", Kind::PortIn),
            ("insb (%dx),%es:(%rdi)", Kind::PortIn),
            ("outb %al,%dx", Kind::PortOut),
            ("outb %al,$244", Kind::PortOut),
            ("outw %ax,%dx", Kind::PortOut),
            ("outl %eax,%dx", Kind::PortOut),
            ("out %al,%dx", Kind::PortOut),
            ("outsb", Kind::PortOut),
            ("outsw", Kind::PortOut),
            ("outsl", Kind::PortOut),
            ("swapgs", Kind::Swapgs),
            ("sysret", Kind::Sysret),
            ("sysretq", Kind::Sysret),
            ("sysexit", Kind::Sysexit),
            ("rdpmc", Kind::Rdpmc),
            ("xsetbv", Kind::Xsetbv),
            ("monitor", Kind::Monitor),
            ("monitor %rax,%ecx,%edx", Kind::Monitor),
            ("mwait", Kind::Mwait),
            ("iret", Kind::Iret),
            ("iretq", Kind::Iret),
            ("iretl", Kind::Iret),
            ("rsm", Kind::Rsm),
            ("pushf", Kind::Pushf),
            ("pushfq", Kind::Pushf),
            ("pushfw", Kind::Pushf),
            ("pushfl", Kind::Pushf),
            ("popf", Kind::Popf),
            ("popfq", Kind::Popf),
            ("popfw", Kind::Popf),
            ("sgdt (%rax)", Kind::Sgdt),
            ("sidtq (%rax)", Kind::Sidt),
            ("sldt %r14d", Kind::Sldt),
            ("str %r15w", Kind::Str),
            ("smsw %bp", Kind::Smsw),
            ("lar %ax,%bx", Kind::Lar),
            ("larl %eax,%ebx", Kind::Lar),
            ("lsl %eax,%ebx", Kind::Lsl),
            ("verr %ax", Kind::Verr),
            ("verw (%rax)", Kind::Verw),
            ("cpuid", Kind::Cpuid),
            ("push %fs", Kind::PushSeg),
            ("pushq %gs", Kind::PushSeg),
            ("pushw %ds", Kind::PushSeg),
            ("pop %es", Kind::PopSeg),
            ("popq %fs", Kind::PopSeg),
            ("mov %eax,%ds", Kind::MovToSeg),
            ("movw %ax,%ss", Kind::MovToSeg),
            ("mov %cs,%r13w", Kind::MovFromSeg),
            ("movl %gs,%eax", Kind::MovFromSeg),
            ("lds (%eax),%ebx", Kind::LoadFarPointer),
            ("les (%eax),%ebx", Kind::LoadFarPointer),
            ("lfs (%rax),%rbx", Kind::LoadFarPointer),
            ("lgsq (%rax),%rbx", Kind::LoadFarPointer),
            ("lss (%rax),%rsp", Kind::LoadFarPointer),
            ("ljmp $0x8,$1f", Kind::FarJmp),
            ("ljmpl *(%eax)", Kind::FarJmp),
            ("jmp $0x10,$start64", Kind::FarJmp),
            ("lcall $0x8,$foo", Kind::FarCall),
            ("lcallq *(%rax)", Kind::FarCall),
            ("lret", Kind::FarRet),
            ("lretq", Kind::FarRet),
            ("lret $8", Kind::FarRet),
            ("int $0x80", Kind::Int),
            ("int3", Kind::Int3),
            ("into", Kind::Into),
            ("ud2", Kind::Ud2),
            ("wrfsbase %rax", Kind::WrSegBase),
            ("wrgsbase %rdi", Kind::WrSegBase),
            ("rdfsbase %rax", Kind::RdSegBase),
            ("rdgsbase %rax", Kind::RdSegBase),
            ("rdtsc", Kind::Rdtsc),
            ("rdtscp", Kind::Rdtscp),
            ("stac", Kind::AlignmentCheck),
            ("xsaves (%rdi)", Kind::SupervisorState),
        ];
        for (text, k) in cases {
            assert_eq!(kind(text), Some(*k), "{text}");
        }
    }

    #[test]
    fn operands_decide_for_general_mnemonics() {
        assert_eq!(kind("mov %fs:8(%rax),%rbx"), None);
        assert_eq!(kind("movq %rax,%gs:0x10"), None);
        assert_eq!(kind("push %rax"), None);
        assert_eq!(kind("pushq %fs:(%rax)"), None);
        assert_eq!(kind("jmp *%rax"), None);
        assert_eq!(kind("jmp foo"), None);
        assert_eq!(kind("call *8(%rax)"), None);
        assert_eq!(kind("movq %rcx, %rdx"), None);
    }

    #[test]
    fn prefixes_are_split_off() {
        let p = parse(b"rep outsb").unwrap();
        assert_eq!((p.prefixes, p.rep, p.mnemonic), (1, true, &b"outsb"[..]));
        let p = parse(b"lock data16 cs   outw %ax,%dx").unwrap();
        assert_eq!(
            (p.prefixes, p.rep, p.mnemonic, p.operands),
            (3, false, &b"outw"[..], &b"%ax,%dx"[..])
        );
        let p = parse(b"rep").unwrap();
        assert_eq!((p.prefixes, p.mnemonic), (1, &b""[..]));
        assert_eq!(parse(b".byte 0xfa"), None);
        assert_eq!(parse(b"x = 3"), None);
        assert_eq!(parse(b"x=cli"), None);
    }

    #[test]
    fn shadows() {
        let s = |t: &str| {
            let p = parse(t.as_bytes()).unwrap();
            classify(p.mnemonic, p.operands).unwrap().unwrap().shadow
        };
        assert!(s("sti"));
        assert!(s("mov %ax,%ss"));
        assert!(s("popq %ss"));
        assert!(s("lss (%rax),%rsp"));
        assert!(!s("mov %ax,%ds"));
        assert!(!s("cli"));
    }

    #[test]
    fn what_relies_on_the_sti_shadow() {
        let relies = |t: &str| {
            let p = parse(t.as_bytes()).unwrap();
            classify(p.mnemonic, p.operands)
                .unwrap()
                .is_some_and(|s| relies_on_sti_shadow(s.kind))
        };
        for t in [
            "hlt", "cli", "mwait", "popfq", "iretq", "sysretq", "sysexit",
        ] {
            assert!(relies(t), "{t}");
        }
        for t in [
            "ret",
            "jmp 1f",
            "call f",
            "mov %rax,%rbx",
            "pushfq",
            "sti",
            "mov %ax,%ss",
        ] {
            assert!(!relies(t), "{t}");
        }
    }

    #[test]
    fn unhandled_operands_are_errors() {
        assert!(error("cli %eax").contains("cli"));
        assert!(error("int 3").contains("immediate"));
        assert!(error("outb %al,%dx,%cx").contains("outb"));
        assert!(error("lgdt %rax").contains("memory"));
        assert!(error("mov %cr3").contains("two operands"));
        assert!(error("jmp foo, bar").contains("far"));
        assert!(error("push %fs, %gs").contains("one operand"));
    }
}
