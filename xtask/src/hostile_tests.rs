//! The untrusted guest on seL4 (docs/testing.md, "The hostile guest"): the
//! hostile test guest (`images/hostile`) attacks the VMM, one boot per
//! attack that ends the guest and one for those it survives. In every boot
//! the VMM must keep serving, then report as usual: the guest's own exit,
//! or one line stating why the VMM ended it, then its statistics and the
//! mapping-consistency line, and a defined exit status. And the VMM refuses
//! an image that was not pre-virtualized.

use std::time::Duration;

use crate::kernel::KernelBuild;
use crate::process::tail;
use crate::{generated, images, qemu, system};

/// Guest RAM for these boots: small, so the loader is quick.
const RAM_MIB: u32 = 16;

/// How long a boot whose kernel stops the machine may run: long enough
/// for the loader, the VMM and the guest to reach the call, no longer.
/// How long a machine that stopped must stay silent after the kernel's
/// last line (measured from that line, so the same on any host).
const STOPPED_GRACE: Duration = Duration::from_secs(5);

/// The kernel flavour a case table is for: the debug calls end the guest on
/// the release kernel and show their exposure on the debug one.
pub use crate::kernel::Flavour as Kernel;

/// How a boot must end.
#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    /// The guest survives every attack, reports and exits with a pass
    /// status.
    Exits,
    /// The VMM ends it, stating this reason (a prefix).
    Terminated(String),
    /// The kernel stops the whole machine (a debug kernel's halt, or its
    /// capDL dump waiting for commands on the serial port): nothing runs
    /// after the kernel's lines for [`STOPPED_GRACE`] after its last one.
    MachineStops,
}

/// One boot of the hostile guest.
pub struct Case {
    /// The guest's command line is `attack=ATTACKS`.
    attacks: String,
    what: String,
    end: End,
    /// Lines (substrings) the serial log (COM2 then COM1) must contain: the
    /// guest's reports and the VMM's log.
    lines: Vec<String>,
    /// Lines that must be on COM1, the kernel's and the VMM's console,
    /// exactly.
    com1_lines: Vec<String>,
    /// Text that must appear on neither serial port.
    absent: Vec<String>,
}

impl Case {
    fn new(attacks: &str, what: &str, end: End, lines: &[&str]) -> Case {
        Case {
            attacks: attacks.to_string(),
            what: what.to_string(),
            end,
            lines: lines.iter().map(|l| l.to_string()).collect(),
            com1_lines: Vec::new(),
            absent: Vec::new(),
        }
    }
}

fn terminated(reason: &str) -> End {
    End::Terminated(reason.to_string())
}

/// The line the guest forges through `seL4_DebugPutChar` (images/hostile).
const FORGED: &str = "vmm-server: guest0: forged by the guest through seL4_DebugPutChar";

/// What `int $n` answers, for every n, as the guest reports it
/// (`hostile: ints: by vector: ...`). seL4 5.0.0's IDT on pc99 has DPL-0
/// gates for the exceptions and IRQs 0..=157: the CPU raises #GP with the
/// gate in the error code, which QEMU's TCG gives as 16n+2 in long mode
/// (the SDM says 8n+2; for n = 0 the two agree); a DPL-3 gate for #BP
/// (3), reflected after the `int`; DPL-3 gates 158..=254 that seL4
/// reports as unknown system calls, which the VMM reflects as the SDM's
/// #GP(8n+2); and 255, the spurious vector, on which seL4 returns at
/// once. The same on both kernel flavours.
const INT_ANSWERS: &[(u8, u8, &str)] = &[
    (0, 0, "#GP(8n+2)"),
    (1, 2, "#GP(16n+2)"),
    (3, 3, "#BP"),
    (4, 157, "#GP(16n+2)"),
    (158, 254, "#GP(8n+2)"),
    (255, 255, "returned"),
];

/// Unknown system call numbers, one boot each (42 is the `syscall`
/// attack): the numbers seL4 5.0.0 names but our configuration leaves out
/// (DebugRun -14, the first Benchmark call -15, VMEnter -22), the first
/// past them, 0, and the ends of the 64-bit range (seL4 compares the whole
/// register). Every one takes the same path in the kernel (outside
/// -8..=-1, or -13..=-1 on a debug kernel: `handleUnknownSyscall`), so a
/// few stand for the rest (-21, -100 and 1 gave the same answer by hand).
const UNKNOWN_NUMBERS: &[i64] = &[-14, -15, -22, -23, 0, i64::MIN, i64::MAX];

/// The debug system calls: (number, name).
const DEBUG_CALLS: &[(i64, &str)] = &[
    (-9, "DebugPutChar"),
    (-10, "DebugHalt"),
    (-11, "DebugCapIdentify"),
    (-12, "DebugSnapshot"),
    (-13, "DebugNameThread"),
];

/// The attacks the guest survives, in the order one boot runs them.
const SURVIVORS: [&str; 5] = ["ipc", "jumps", "ptloop", "syscalls", "ints"];

/// The boot of every attack the guest survives, led by `first` (attacks it
/// survives too, run before them).
fn survivors(first: &[&str]) -> Case {
    let attacks: Vec<&str> = first.iter().chain(SURVIVORS.iter()).copied().collect();
    let mut case = Case::new(
        &attacks.join(","),
        "garbage IPC is refused, wild jumps and page-table loops are reflected, every survivable system call returns, every int $n and sysenter is reflected; the guest reports and exits",
        End::Exits,
        &[
                "vmm-server: guest0: invalid request: unknown label 511",
                "vmm-server: guest0: invalid request: label 0x42 with 2 message registers is neither a request nor a fault",
                "vmm-server: guest0: invalid request: label 0x5 with 3 message registers is neither a request nor a fault",
                "vmm-server: guest0: invalid request: size = 0x3 is out of range",
                "vmm-server: guest0: invalid request: len = 0x19 is out of range",
                "vmm-server: guest0: invalid request: LoadCr3 0x10000000000 is outside guest RAM",
                "vmm-server: guest0: invalid request: address = 0x800000000000 is out of range",
                "hostile: ipc: a well-formed port-in: reply label 0",
                "hostile: ipc: a send of unknown label 0x1ff returned",
                "hostile: jumps: to a non-canonical address (0x800000000000): trapped with vector 13",
                "hostile: jumps: to seL4's physical-memory window (0xffff800000000000): trapped with vector 14, cr2 0xffff800000000000",
                "hostile: jumps: to the wedge's PML4 entry past its memory (0xffff808000200000): trapped with vector 14, cr2 0xffff808000200000",
                "hostile: jumps: 5 answers as expected, 0 unexpected",
                "hostile: ptloop: PML4[1] = itself; reading through 1,1,1,1: read",
                "hostile: ptloop: a table outside RAM; reading through it: #PF",
                "hostile: ptloop: 5 answers as expected, 0 unexpected",
                "hostile: syscalls: Yield (-7): returned",
                "hostile: syscalls: Reply (-6) with no reply capability: returned",
                "hostile: syscalls: Call (-1) on slot 0 (empty): kernel error 2",
                "hostile: syscalls: Send (-3) on slot 0 (empty): returned",
                "hostile: syscalls: NBSend (-4) on slots 0, 2, 12345, 0xffffffffffffffff: returned",
                "hostile: syscalls: 3 answers as expected, 0 unexpected",
                "hostile: ints: 256 int instructions: 98 #GP(8n+2), 156 #GP(16n+2), 1 #BP, 1 returned, 0 other",
                "hostile: ints: sysenter: trapped with vector 6, error 0x0, at the sysenter + 0",
                "hostile: ints: 2 answers as expected, 0 unexpected",
                "(97 of the #GP: `int $n` seL4 reported as unknown system calls)",
        ],
    );
    case.lines.push(format!(
        "hostile: survived {} attacks, 0 unexpected answers",
        attacks.len()
    ));
    case
}

/// Every boot for a kernel of this flavour.
fn cases(kernel: Kernel) -> Vec<Case> {
    let mut cases = vec![
        survivors(&[]),
        Case::new(
            "caps",
            "an empty slot is an error from the kernel; a call on a slot beyond its CSpace ends the guest",
            terminated("capability fault: it invoked slot 12345"),
            &[
                "hostile: caps: call on slot 0 (empty): kernel error 2",
                "hostile: caps: non-blocking sends to slots 2 and 12345 returned",
            ],
        ),
        Case::new(
            "recv",
            "its endpoint capability cannot receive: receiving on it ends the guest",
            terminated("capability fault: it tried to receive on slot 1"),
            &[],
        ),
        Case::new(
            "wedge-code",
            "the wedge's code is read-only: a write to it ends the guest",
            terminated("it wrote to the wedge's read-only code at 0xffff808000000000"),
            &["hostile: wedge-code: reading the wedge's first code bytes at 0xffff808000000000: read"],
        ),
        Case::new(
            "wedge-alias",
            "the wedge's memory through the guest's identity map: readable, a write ends the guest",
            terminated("it wrote to the wedge's memory (guest-physical"),
            &["reads as the wedge's first bytes"],
        ),
        Case::new(
            "wedge-state",
            "an overwritten reflect entry ends the guest at the next reflection",
            terminated("the wedge's reflect entry 0x1000 is outside its code"),
            &["hostile: wedge-state: the wedge's reflect entry 0xffff8080"],
        ),
        // What runs depends on the wedge's bytes there (today: the wedge
        // finds no site and stops the guest); any stated end will do.
        Case::new(
            "wedge-middle",
            "a jump into the middle of the wedge ends the guest",
            terminated(""),
            &["hostile: wedge-middle: jumping to 0xffff8080"],
        ),
        Case::new(
            "syscall",
            "a system call seL4 does not know ends the guest",
            terminated("unknown seL4 system call 42 at"),
            &[],
        ),
        Case::new(
            "cr3",
            "a CR3 outside guest RAM through the wedge is refused, and the wedge stops",
            terminated(
                "the wedge stopped the guest: a site could not be emulated (a request was refused, or guest memory faulted) (reason 7)",
            ),
            &["vmm-server: guest0: invalid request: LoadCr3 0x10000000000 is outside guest RAM"],
        ),
        Case::new(
            "halt",
            "hlt with interrupts disabled ends the guest: nothing could wake it",
            terminated("it halted with interrupts disabled: nothing can wake it"),
            &[],
        ),
        Case::new(
            "sleep",
            "sti; hlt with no timer running ends the guest: nothing could wake it",
            terminated("it halted with no interrupt source running: nothing can wake it"),
            &[],
        ),
        // The API calls that end the guest: each receives, or invokes a
        // slot its CSpace cannot resolve, so seL4 sends a capability fault.
        Case::new(
            "sys:-2",
            "ReplyRecv on its endpoint: no reply to send, and it may not receive",
            terminated("capability fault: it tried to receive on slot 1"),
            &[],
        ),
        Case::new(
            "sys:-5@0",
            "Recv on an empty slot ends the guest",
            terminated("capability fault: it tried to receive on slot 0"),
            &[],
        ),
        Case::new(
            "sys:-8",
            "NBRecv on its endpoint ends the guest, as Recv does",
            terminated("capability fault: it tried to receive on slot 1"),
            &[],
        ),
        Case::new(
            "sys:-3@12345",
            "Send (blocking) to a slot beyond its CSpace ends the guest",
            terminated("capability fault: it invoked slot 12345"),
            &[],
        ),
    ];
    for &number in UNKNOWN_NUMBERS {
        cases.push(Case::new(
            &format!("sys:{number}"),
            &format!("system call {number}, which seL4 does not know, ends the guest"),
            terminated(&format!("unknown seL4 system call {number} at")),
            &[],
        ));
    }
    for &(number, name) in DEBUG_CALLS {
        cases.push(debug_call(kernel, number, name));
    }
    cases
}

/// Every attack of the hostile guest as the neighbour of other guests (the
/// `several:` tests): those it survives in one guest, led by `spin` (2^28
/// turns with interrupts off, which only shows something beside other
/// guests: they must run meanwhile), and each one that ends the guest in
/// a guest of its own. The `sys:` numbers stay solo boots: each ends the
/// guest through a path `syscall`, `recv` or `caps` takes already (an
/// unknown system call, a capability fault).
pub fn neighbours(kernel: Kernel) -> Vec<Case> {
    let mut out = vec![survivors(&["spin"])];
    out.extend(
        cases(kernel)
            .into_iter()
            .filter(|c| c.end != End::Exits && !c.attacks.starts_with("sys:")),
    );
    out
}

impl Case {
    /// The guest's `attack=` list.
    pub fn attacks(&self) -> &str {
        &self.attacks
    }

    /// Whether the VMM must end the guest (else it exits by itself).
    pub fn ends_the_guest(&self) -> bool {
        self.end != End::Exits
    }
}

/// The boot for one debug system call on a kernel of this flavour.
fn debug_call(kernel: Kernel, number: i64, name: &str) -> Case {
    let attacks = format!("sys:{number}");
    let mut case = match kernel {
        // Unknown to the kernel: the VMM ends the guest, and says so.
        Kernel::Release => Case::new(
            &attacks,
            &format!("{name} does not exist in a release kernel: the VMM ends the guest"),
            terminated(&format!("unknown seL4 system call {number} at")),
            &[],
        ),
        // The exposure, shown: what the call does on a debug kernel.
        Kernel::Debug => match number {
            -9 => {
                let mut case = Case::new(
                    &attacks,
                    "DebugPutChar on a debug kernel: the guest prints a forged VMM line on COM1 (the exposure)",
                    End::Exits,
                    &["hostile: sys: -9: returned after 66 characters"],
                );
                case.com1_lines.push(FORGED.to_string());
                case
            }
            -10 => Case::new(
                &attacks,
                "DebugHalt on a debug kernel halts the whole machine (the exposure)",
                End::MachineStops,
                &["Debug halt syscall from user thread", "halting..."],
            ),
            -11 => Case::new(
                &attacks,
                "DebugCapIdentify on a debug kernel tells the guest its capability's type (the exposure)",
                End::Exits,
                // seL4's cap_endpoint_cap is 4.
                &["hostile: sys: -11: returned: label 0, length 0, rdi 0x4"],
            ),
            -12 => Case::new(
                &attacks,
                "DebugSnapshot on a debug kernel stops the machine: the kernel waits for capDL commands on its serial port (the exposure)",
                End::MachineStops,
                &["Debug snapshot syscall from user thread"],
            ),
            _ => Case::new(
                &attacks,
                "DebugNameThread on a debug kernel, without a TCB capability, halts the whole machine (the exposure)",
                End::MachineStops,
                &["SysDebugNameThread: cap is not a TCB, halting", "halting..."],
            ),
        },
    };
    // Not a character of the forged line reaches a release kernel's
    // machine: the first DebugPutChar ends the guest.
    if kernel == Kernel::Release && number == -9 {
        case.absent.push(FORGED.to_string());
        case.absent.push("forged by the guest".to_string());
    }
    case
}

const TERMINATED: &str = "vmm-server: guest0: terminated: ";
const EXITED: &str = "vmm-server: guest0: exited with status ";
/// What the VMM prints after a guest's end, whatever the end.
const REPORT: [&str; 3] = [
    "vmm-server: guest0: requests:",
    "page faults served",
    "vmm-server: guest0: mapping consistency: all",
];

/// Judges one boot: the guest's console (`com2`), the kernel's and the
/// VMM's (`com1`), and how it ended.
fn judge(case: &Case, com2: &str, com1: &str, outcome: &qemu::Outcome) -> Result<String, String> {
    // The guest's console first: its words all come before the VMM's
    // report of its end.
    let serial = format!("{com2}\n{com1}");
    let lines: Vec<&str> = serial.lines().collect();
    let find = |what: &str| lines.iter().position(|l| l.contains(what));
    let missing: Vec<&str> = case
        .lines
        .iter()
        .map(String::as_str)
        .filter(|l| find(l).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing {missing:?}"));
    }
    if let Some(l) = case
        .com1_lines
        .iter()
        .find(|l| !com1.lines().any(|c| c == l.as_str()))
    {
        return Err(format!("no line {l:?} on COM1"));
    }
    if let Some(a) = case.absent.iter().find(|a| serial.contains(a.as_str())) {
        return Err(format!("{a:?} must appear nowhere, and does"));
    }
    if let Some(l) = lines
        .iter()
        .find(|l| l.contains("UNEXPECTED") || l.contains("vmm-server: panic"))
    {
        return Err(format!("{l:?}"));
    }
    if let Some(ints) = case.attacks.split(',').find(|a| *a == "ints") {
        ints_agree(&lines).map_err(|e| format!("{ints}: {e}"))?;
    }
    let endings: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with(TERMINATED) || lines[i].starts_with(EXITED))
        .collect();
    if case.end == End::MachineStops {
        return machine_stopped(case, &lines, &endings, outcome);
    }
    let [ending] = endings[..] else {
        return Err(format!("{} ending lines, not one", endings.len()));
    };
    let (expected_outcome, stated) = match &case.end {
        End::Terminated(reason) => (qemu::Outcome::Failed, format!("{TERMINATED}{reason}")),
        _ => (qemu::Outcome::Passed, format!("{EXITED}1")),
    };
    if !lines[ending].starts_with(&stated) {
        return Err(format!("ended {:?}, expected {stated:?}", lines[ending]));
    }
    // The VMM keeps reporting after the guest's end.
    for report in REPORT {
        if !lines[ending..].iter().any(|l| l.contains(report)) {
            return Err(format!("no {report:?} after {:?}", lines[ending]));
        }
    }
    if *outcome != expected_outcome {
        return Err(format!("ended with {outcome}, expected {expected_outcome}"));
    }
    match case.end {
        // A terminated guest ran no further: nothing after its last words.
        End::Terminated(_) => ran_no_further(&lines)?,
        _ => {
            each_attack_reported(&case.attacks, &lines)?;
            // Every refused message is counted, and the guest saw each
            // refusal.
            if case.attacks.split(',').any(|a| a == "ipc") {
                refusals_agree(&lines)?;
            }
        }
    }
    Ok(lines[ending]
        .strip_prefix("vmm-server: guest0: ")
        .unwrap_or(lines[ending])
        .to_string())
}

/// Each named attack of a guest that survived them reported its answers,
/// at least one, all as expected (a `sys:` call counts none).
fn each_attack_reported(attacks: &str, lines: &[&str]) -> Result<(), String> {
    for attack in attacks.split(',').filter(|a| !a.starts_with("sys:")) {
        let prefix = format!("hostile: {attack}: ");
        let counted = lines.iter().find_map(|l| {
            l.strip_prefix(&prefix)?
                .strip_suffix(" answers as expected, 0 unexpected")?
                .parse::<u32>()
                .ok()
        });
        if !matches!(counted, Some(n) if n > 0) {
            return Err(format!(
                "no {prefix}N answers as expected, 0 unexpected (N > 0)"
            ));
        }
    }
    Ok(())
}

/// Judges one guest of a system of several, which ran `case` beside the
/// others: its console, its VMM's lines (`vmm_log`, where its VMM calls it
/// `guest{index}`) and the exit value the supervisor reported for it.
pub fn judge_neighbour(
    case: &Case,
    console: &str,
    vmm_log: &str,
    index: usize,
    exit_value: Option<u8>,
) -> Result<String, String> {
    // The cases speak of a guest alone, which its VMM calls guest0.
    let log = vmm_log.replace(
        &format!("vmm-server: guest{index}: "),
        "vmm-server: guest0: ",
    );
    let outcome = match exit_value {
        Some(0) => qemu::Outcome::Passed,
        Some(_) => qemu::Outcome::Failed,
        None => return Err("the supervisor reported no end of it".into()),
    };
    judge(case, console, &log, &outcome)
}

/// Nothing from the guest after its last words.
fn ran_no_further(lines: &[&str]) -> Result<(), String> {
    let last_words = lines
        .iter()
        .position(|l| l.contains("the VMM should end this guest"))
        .ok_or("the guest never reached its last step")?;
    match lines[last_words + 1..]
        .iter()
        .find(|l| l.starts_with("hostile:"))
    {
        Some(l) => Err(format!("the guest ran on: {l:?}")),
        None => Ok(()),
    }
}

/// The kernel stopped the machine at the guest's call: the kernel's lines
/// (the case's last expected line) and nothing after them from the guest
/// or the VMM, no end of the guest, and the run ended at the timeout.
fn machine_stopped(
    case: &Case,
    lines: &[&str],
    endings: &[usize],
    outcome: &qemu::Outcome,
) -> Result<String, String> {
    if !endings.is_empty() {
        return Err(format!("the guest ended: {:?}", lines[endings[0]]));
    }
    ran_no_further(lines)?;
    let last = case.lines.last().ok_or("no kernel line to expect")?;
    let at = lines
        .iter()
        .rposition(|l| l.contains(last.as_str()))
        .ok_or_else(|| format!("no {last:?}"))?;
    if let Some(l) = lines[at + 1..]
        .iter()
        .find(|l| l.starts_with("vmm-server:") || l.starts_with("hostile:"))
    {
        return Err(format!("the machine ran on after {last:?}: {l:?}"));
    }
    match outcome {
        qemu::Outcome::Settled(_) => Ok(format!("the machine stopped: {last:?}")),
        other => Err(format!(
            "ended with {other}, expected silence after {last:?}"
        )),
    }
}

/// What the guest reports for `int $n`, n = 0..=255: runs of vectors with
/// the same answer, `0-2 #GP, 3 #BP, ...`. Returns the answer for each n,
/// or why the line is malformed (a gap, an overlap, a bad number).
fn parse_int_answers(line: &str) -> Result<Vec<String>, String> {
    let mut answers: Vec<String> = Vec::new();
    for run in line.split(", ") {
        let (range, answer) = run
            .split_once(' ')
            .ok_or_else(|| format!("{run:?}: no answer"))?;
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let number = |s: &str| -> Result<usize, String> {
            s.parse::<u8>()
                .map(usize::from)
                .map_err(|_| format!("{run:?}: {s:?} is not a vector"))
        };
        let (first, last) = (number(first)?, number(last)?);
        if first != answers.len() || last < first {
            return Err(format!("{run:?}: expected a run from {}", answers.len()));
        }
        answers.extend((first..=last).map(|_| answer.to_string()));
    }
    if answers.len() != 256 {
        return Err(format!("{} vectors, not 256", answers.len()));
    }
    Ok(answers)
}

/// The guest's answers to `int $n` are [`INT_ANSWERS`], vector by vector,
/// and its counts agree with them.
fn ints_agree(lines: &[&str]) -> Result<(), String> {
    const BY_VECTOR: &str = "hostile: ints: by vector: ";
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix(BY_VECTOR))
        .ok_or("no answers by vector")?;
    let got = parse_int_answers(line)?;
    for &(first, last, answer) in INT_ANSWERS {
        for n in first..=last {
            if got[usize::from(n)] != answer {
                return Err(format!(
                    "int ${n}: {:?}, expected {answer:?}",
                    got[usize::from(n)]
                ));
            }
        }
    }
    let count = |answer: &str| got.iter().filter(|a| *a == answer).count();
    let counts = format!(
        "hostile: ints: 256 int instructions: {} #GP(8n+2), {} #GP(16n+2), {} #BP, {} returned, {} other",
        count("#GP(8n+2)"),
        count("#GP(16n+2)"),
        count("#BP"),
        count("returned"),
        count("other")
    );
    if !lines.contains(&counts.as_str()) {
        return Err(format!("no {counts:?}"));
    }
    Ok(())
}

/// The guest's count of refused messages (plus the one it sent without
/// waiting) is the VMM's count of invalid requests and of its log lines.
fn refusals_agree(lines: &[&str]) -> Result<(), String> {
    let number = |line: &str, after: &str| -> Option<u64> {
        let rest = &line[line.find(after)? + after.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let refused = lines
        .iter()
        .find(|l| l.contains("garbage messages refused as invalid, 1 sent without a reply"))
        .and_then(|l| number(l, "hostile: ipc: "))
        .ok_or("no count of refused messages from the guest")?;
    let counted = lines
        .iter()
        .find(|l| l.starts_with("vmm-server: guest0: requests:"))
        .and_then(|l| number(l, ", invalid "))
        .ok_or("no count of invalid requests from the VMM")?;
    let logged = lines
        .iter()
        .filter(|l| l.starts_with("vmm-server: guest0: invalid request: "))
        .count() as u64;
    if refused == 0 || counted != refused + 1 || logged != counted {
        return Err(format!(
            "the guest saw {refused} refusals (and sent 1 more); the VMM counted {counted} and logged {logged}"
        ));
    }
    Ok(())
}

fn boot(kernel: &KernelBuild, case: &Case) -> Result<String, String> {
    let cmdline = format!("attack={}", case.attacks);
    let name = format!("hostile-{}", case.attacks.replace([',', ':', '@'], "-"));
    let run = generated::description_with_ram(RAM_MIB)
        .and_then(|d| generated::bundle_with(&name, &d, images::Image::Hostile, Some(&cmdline)))
        .and_then(|bundle| match (&case.end, case.lines.last()) {
            // The kernel's last words mark the stop; silence is measured
            // from there.
            (End::MachineStops, Some(last)) => {
                system::boot_until_settled(kernel, &bundle, last, STOPPED_GRACE)
            }
            _ => system::boot(kernel, &bundle, 512, None, qemu::Echo::Quiet),
        })?;
    let guest = String::from_utf8_lossy(run.com2.as_deref().unwrap_or_default());
    judge(case, &guest, &run.serial, &run.outcome)
        .map(|ending| format!("{ending}; {:.2} s", run.elapsed.as_secs_f64()))
        .map_err(|e| format!("{e}:\n{}", tail(&format!("{guest}\n{}", run.serial), 25)))
}

/// Each hostile boot of `flavour` as a named test for the suite: the
/// refused unpadded image first, then every case; `debug_only` keeps only
/// the debug system calls (what the debug kernel adds).
pub fn named(flavour: Kernel, debug_only: bool) -> Vec<(String, Option<Case>)> {
    let mut out = Vec::new();
    if !debug_only {
        out.push((UNPADDED_REFUSED.to_string(), None));
    }
    let (prefix, list) = if debug_only {
        (
            "hostile, debug kernel",
            DEBUG_CALLS
                .iter()
                .map(|&(number, name)| debug_call(flavour, number, name))
                .collect(),
        )
    } else {
        ("hostile", cases(flavour))
    };
    for case in list {
        out.push((
            format!("{prefix}: attack={}: {}", case.attacks, case.what),
            Some(case),
        ));
    }
    out
}

/// Runs one test of [`named`]: a case, or (`None`) the unpadded image.
pub fn run_named(kernel: &KernelBuild, case: Option<&Case>) -> Result<String, String> {
    match case {
        Some(case) => boot(kernel, case),
        None => unpadded_guest_refused(kernel),
    }
}

const UNPADDED_REFUSED: &str =
    "vmm: an unpadded guest image is refused with a message that says so";

/// Every hostile boot, judged by the expectations of `flavour`.
pub fn all_for(
    kernel: &KernelBuild,
    flavour: Kernel,
    record: &mut dyn FnMut(&str, Result<String, String>),
) {
    record(UNPADDED_REFUSED, unpadded_guest_refused(kernel));
    for case in cases(flavour) {
        record(
            &format!("hostile: attack={}: {}", case.attacks, case.what),
            boot(kernel, &case),
        );
    }
}

/// The VMM refuses a guest image that was not pre-virtualized, saying so.
fn unpadded_guest_refused(kernel: &KernelBuild) -> Result<String, String> {
    generated::description_with_ram(RAM_MIB)
        .and_then(|d| generated::bundle_with("generated-plain", &d, images::Image::Plain, None))
        .and_then(|bundle| system::boot(kernel, &bundle, 512, None, qemu::Echo::Quiet))
        .and_then(|run| {
            let refusal =
                "vmm-server: guest0: refused: no .afterburn records (not a pre-virtualized image)";
            if run.outcome == qemu::Outcome::Failed && run.serial.contains(refusal) {
                Ok(format!("{:.2} s", run.elapsed.as_secs_f64()))
            } else {
                Err(format!(
                    "ended with {}, expected a refusal:\n{}",
                    run.outcome,
                    tail(&run.serial, 25)
                ))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SURVIVED: &str = "hostile: ipc: 2 garbage messages refused as invalid, 1 sent without a reply
hostile: ipc: 3 answers as expected, 0 unexpected
vmm-server: guest0: invalid request: a
vmm-server: guest0: invalid request: b
vmm-server: guest0: invalid request: c
hostile: survived 1 attacks, 0 unexpected answers
vmm-server: guest0: exited with status 1
vmm-server: guest0: 1 page faults served, 1 mappings made, 0 removed, 1 seL4 paging structures created
vmm-server: guest0: requests: port-in 1, invalid 3; 0 exceptions reflected into the guest
vmm-server: guest0: mapping consistency: all 1 seL4 mappings justified by the guest's page tables
";

    fn survivor() -> Case {
        Case::new("ipc", "", End::Exits, &["hostile: survived 1 attacks"])
    }

    #[test]
    fn a_survivor_passes_when_both_sides_agree() {
        assert_eq!(
            judge(&survivor(), "", SURVIVED, &qemu::Outcome::Passed),
            Ok("exited with status 1".to_string())
        );
        // The wrong status, a missing report, a count that disagrees.
        assert!(judge(&survivor(), "", SURVIVED, &qemu::Outcome::Failed).is_err());
        let no_report = SURVIVED.replace("mapping consistency", "mapping");
        assert!(judge(&survivor(), "", &no_report, &qemu::Outcome::Passed).is_err());
        let disagree = SURVIVED.replace("invalid 3", "invalid 4");
        assert!(judge(&survivor(), "", &disagree, &qemu::Outcome::Passed).is_err());
        let unreported = SURVIVED.replace("hostile: ipc: 3 answers", "hostile: ipc: answers");
        assert!(judge(&survivor(), "", &unreported, &qemu::Outcome::Passed).is_err());
    }

    const CAPS: &str = "hostile: caps: x; the VMM should end this guest
vmm-server: guest0: terminated: capability fault: it invoked slot 12345
vmm-server: guest0: 1 page faults served
vmm-server: guest0: requests: port-in 1, invalid 0; 0 exceptions reflected into the guest
vmm-server: guest0: mapping consistency: all 1 seL4 mappings justified by the guest's page tables
";

    #[test]
    fn a_terminated_guest_must_be_stated_and_silent() {
        let case = Case::new("caps", "", terminated("capability fault"), &[]);
        assert!(judge(&case, "", CAPS, &qemu::Outcome::Failed).is_ok());
        let ran_on = CAPS.replace(
            "vmm-server: guest0: terminated",
            "hostile: caps: still here\nvmm-server: guest0: terminated",
        );
        assert!(judge(&case, "", &ran_on, &qemu::Outcome::Failed).is_err());
        let other_reason = CAPS.replace("capability fault", "something else");
        assert!(judge(&case, "", &other_reason, &qemu::Outcome::Failed).is_err());
        let report_first = "hostile: caps: x; the VMM should end this guest
vmm-server: guest0: requests: port-in 1, invalid 0; 0 exceptions reflected into the guest
vmm-server: guest0: mapping consistency: all 1 seL4 mappings justified by the guest's page tables
vmm-server: guest0: terminated: capability fault: it invoked slot 12345
";
        assert!(judge(&case, "", report_first, &qemu::Outcome::Failed).is_err());
    }

    #[test]
    fn absent_text_must_be_on_neither_port_and_com1_lines_on_com1() {
        let mut case = Case::new("caps", "", terminated("capability fault"), &[]);
        case.absent.push(FORGED.to_string());
        assert!(judge(&case, "", CAPS, &qemu::Outcome::Failed).is_ok());
        let forged = format!("{FORGED}\n{CAPS}");
        assert!(judge(&case, "", &forged, &qemu::Outcome::Failed).is_err());
        assert!(judge(&case, FORGED, CAPS, &qemu::Outcome::Failed).is_err());
        let mut shown = Case::new("caps", "", terminated("capability fault"), &[]);
        shown.com1_lines.push(FORGED.to_string());
        assert!(judge(&shown, "", &forged, &qemu::Outcome::Failed).is_ok());
        // On COM2 it is the guest's own console: not the exposure.
        assert!(judge(&shown, FORGED, CAPS, &qemu::Outcome::Failed).is_err());
    }

    #[test]
    fn a_stopped_machine_times_out_with_nothing_after_the_kernel() {
        let case = Case::new(
            "sys:-10",
            "",
            End::MachineStops,
            &["Debug halt syscall from user thread", "halting..."],
        );
        let com2 = "hostile: sys: -10 (DebugHalt); unless the kernel serves it, the VMM should end this guest\n";
        let com1 = "Debug halt syscall from user thread 0xffff80001fe0a400\nhalting...\n";
        let timeout = qemu::Outcome::Settled(STOPPED_GRACE);
        assert!(judge(&case, com2, com1, &timeout).is_ok());
        assert!(judge(&case, com2, com1, &qemu::Outcome::Failed).is_err());
        let ran_on = format!("{com1}vmm-server: guest0: requests: none\n");
        assert!(judge(&case, com2, &ran_on, &timeout).is_err());
        let ended = format!("{CAPS}{com1}");
        assert!(judge(&case, com2, &ended, &timeout).is_err());
        assert!(judge(&case, com2, "halting...\n", &timeout).is_err());
    }

    #[test]
    fn int_answers_are_parsed_by_runs() {
        let got = parse_int_answers("0-2 #GP, 3 #BP, 4-254 #GP, 255 returned").unwrap();
        assert_eq!(got.len(), 256);
        assert_eq!((got[2].as_str(), got[3].as_str()), ("#GP", "#BP"));
        assert_eq!((got[254].as_str(), got[255].as_str()), ("#GP", "returned"));
        // Gaps, overlaps, too few or too many, numbers that are no vector.
        for bad in [
            "0-2 #GP, 4-255 #GP",
            "0-2 #GP, 2-255 #GP",
            "0-254 #GP",
            "0-255 #GP, 256 returned",
            "0-x #GP",
            "3-0 #GP",
            "0-255",
            "",
        ] {
            assert!(parse_int_answers(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn int_answers_must_be_sel4s_and_counted() {
        let lines = [
            "hostile: ints: by vector: 0 #GP(8n+2), 1-2 #GP(16n+2), 3 #BP, 4-157 #GP(16n+2), 158-254 #GP(8n+2), 255 returned",
            "hostile: ints: 256 int instructions: 98 #GP(8n+2), 156 #GP(16n+2), 1 #BP, 1 returned, 0 other",
        ];
        assert_eq!(ints_agree(&lines), Ok(()));
        let wrong = [
            "hostile: ints: by vector: 0-157 #GP(16n+2), 158-254 #GP(8n+2), 255 returned",
            lines[1],
        ];
        assert!(ints_agree(&wrong).is_err());
        let miscounted = [
            lines[0],
            "hostile: ints: 256 int instructions: 99 #GP(8n+2), 155 #GP(16n+2), 1 #BP, 1 returned, 0 other",
        ];
        assert!(ints_agree(&miscounted).is_err());
    }

    /// The names in the hostile guest's own table of attacks
    /// (images/hostile/src/main.c, `attacks[]`).
    fn the_guests_attacks() -> Vec<String> {
        let path = crate::paths::root().join("images/hostile/src/main.c");
        let source = std::fs::read_to_string(&path).unwrap();
        let table = source
            .split_once("} attacks[] = {")
            .and_then(|(_, rest)| rest.split_once("};"))
            .map(|(table, _)| table)
            .expect("main.c has a table `attacks[] = { ... };`");
        let names: Vec<String> = table
            .lines()
            .filter_map(|l| l.trim().strip_prefix("{ \""))
            .filter_map(|l| l.split_once('"'))
            .map(|(name, _)| name.to_string())
            .collect();
        assert!(names.len() >= 16, "{names:?}");
        names
    }

    #[test]
    fn the_neighbours_run_every_attack_of_the_guest_once() {
        let neighbours = neighbours(Kernel::Release);
        let mut run: Vec<&str> = neighbours
            .iter()
            .flat_map(|c| c.attacks.split(','))
            .collect();
        run.sort();
        let mut table = the_guests_attacks();
        table.sort();
        assert_eq!(run, table, "add the guest's new attack to `cases`");
        // One guest survives its attacks; each other is ended by its one.
        let [survivor, ended @ ..] = &neighbours[..] else {
            panic!("no neighbours")
        };
        assert!(!survivor.ends_the_guest() && survivor.attacks.starts_with("spin,"));
        for case in ended {
            assert!(case.ends_the_guest() && !case.attacks.contains(','));
        }
        // The solo boots run every attack but `spin` (which needs others).
        let solo: Vec<String> = cases(Kernel::Release)
            .iter()
            .flat_map(|c| c.attacks.split(',').map(String::from).collect::<Vec<_>>())
            .collect();
        for attack in table.iter().filter(|a| *a != "spin") {
            assert!(solo.contains(attack), "{attack} has no solo boot");
        }
    }

    #[test]
    fn a_survivor_reports_each_attack() {
        let lines = [
            "hostile: spin: 1 answers as expected, 0 unexpected",
            "hostile: ipc: 19 answers as expected, 0 unexpected",
        ];
        assert_eq!(each_attack_reported("spin,ipc,sys:-9", &lines), Ok(()));
        assert!(each_attack_reported("spin,ipc,jumps", &lines).is_err());
        let none = ["hostile: spin: 0 answers as expected, 0 unexpected"];
        assert!(each_attack_reported("spin", &none).is_err());
        let unexpected = ["hostile: spin: 1 answers as expected, 1 unexpected"];
        assert!(each_attack_reported("spin", &unexpected).is_err());
    }

    #[test]
    fn the_flavours_differ_only_in_the_debug_calls() {
        let release = cases(Kernel::Release);
        let debug = cases(Kernel::Debug);
        assert_eq!(release.len(), debug.len());
        let debug_numbers: Vec<String> = DEBUG_CALLS
            .iter()
            .map(|(n, _)| format!("sys:{n}"))
            .collect();
        for (r, d) in release.iter().zip(&debug) {
            assert_eq!(r.attacks, d.attacks);
            let same = r.end == d.end && r.lines == d.lines;
            assert_eq!(!same, debug_numbers.contains(&r.attacks), "{}", r.attacks);
        }
        // On a release kernel every debug number ends the guest, and the
        // forged line is nowhere; on a debug kernel it is on COM1.
        for number in &debug_numbers {
            let r = release.iter().find(|c| &c.attacks == number).unwrap();
            assert!(
                matches!(&r.end, End::Terminated(why) if why.starts_with("unknown seL4 system call -"))
            );
        }
        let put_char = |cases: &[Case]| cases.iter().position(|c| c.attacks == "sys:-9").unwrap();
        assert_eq!(release[put_char(&release)].absent.len(), 2);
        assert_eq!(debug[put_char(&debug)].com1_lines, [FORGED]);
        // Every case has a boot of its own name.
        let mut names: Vec<&str> = release.iter().map(|c| c.attacks.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), release.len());
    }
}
