//! The untrusted guest on seL4 (docs/testing.md, "The hostile guest"): the
//! hostile test guest (`images/hostile`) attacks the VMM, one boot per
//! attack that ends the guest and one for those it survives. In every boot
//! the VMM must keep serving, then report as usual: the guest's own exit,
//! or one line stating why the VMM ended it, then its statistics and the
//! mapping-consistency line, and a defined exit status. And the VMM refuses
//! an image that was not pre-virtualized.

use crate::kernel::KernelBuild;
use crate::process::tail;
use crate::{generated, images, qemu, system};

/// Guest RAM for these boots: small, so the loader is quick.
const RAM_MIB: u32 = 16;

/// One boot of the hostile guest.
struct Case {
    /// The guest's command line is `attack=ATTACKS`.
    attacks: &'static str,
    what: &'static str,
    /// `None`: the guest survives every attack, reports and exits with a
    /// pass status. `Some(reason)`: the VMM ends it, stating `reason`.
    terminated: Option<&'static str>,
    /// Lines (substrings) the serial log must contain: the guest's reports
    /// and the VMM's log.
    lines: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        attacks: "ipc,jumps,ptloop",
        what: "garbage IPC is refused, wild jumps and page-table loops are reflected; the guest reports and exits",
        terminated: None,
        lines: &[
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
            "hostile: jumps: to the kernel half (0xffff800000000000): trapped with vector 14, cr2 0xffff800000000000",
            "hostile: jumps: 5 answers as expected, 0 unexpected",
            "hostile: ptloop: PML4[1] = itself; reading through 1,1,1,1: read",
            "hostile: ptloop: a table outside RAM; reading through it: #PF",
            "hostile: ptloop: 5 answers as expected, 0 unexpected",
            "hostile: survived 3 attacks, 0 unexpected answers",
        ],
    },
    Case {
        attacks: "caps",
        what: "an empty slot is an error from the kernel; a call on a slot beyond its CSpace ends the guest",
        terminated: Some("capability fault: it invoked slot 12345"),
        lines: &[
            "hostile: caps: call on slot 0 (empty): kernel error 2",
            "hostile: caps: non-blocking sends to slots 2 and 12345 returned",
        ],
    },
    Case {
        attacks: "recv",
        what: "its endpoint capability cannot receive: receiving on it ends the guest",
        terminated: Some("capability fault: it tried to receive on slot 1"),
        lines: &[],
    },
    Case {
        attacks: "wedge-code",
        what: "the wedge's code is read-only: a write to it ends the guest",
        terminated: Some("it wrote to the wedge's read-only code at 0x7f8000000000"),
        lines: &["hostile: wedge-code: reading the wedge's first code bytes at 0x7f8000000000: read"],
    },
    Case {
        attacks: "wedge-alias",
        what: "the wedge's memory through the guest's identity map: readable, a write ends the guest",
        terminated: Some("it wrote to the wedge's memory (guest-physical"),
        lines: &["reads as the wedge's first bytes"],
    },
    Case {
        attacks: "wedge-state",
        what: "an overwritten reflect entry ends the guest at the next reflection",
        terminated: Some("the wedge's reflect entry 0x1000 is outside its code"),
        lines: &["hostile: wedge-state: the wedge's reflect entry 0x7f80"],
    },
    Case {
        attacks: "wedge-middle",
        what: "a jump into the middle of the wedge ends the guest",
        // What runs depends on the wedge's bytes there (today: the wedge
        // finds no site and stops the guest); any stated end will do.
        terminated: Some(""),
        lines: &["hostile: wedge-middle: jumping to 0x7f80"],
    },
    Case {
        attacks: "syscall",
        what: "a system call seL4 does not know ends the guest",
        terminated: Some("unknown seL4 system call 42 at"),
        lines: &[],
    },
    Case {
        attacks: "cr3",
        what: "a CR3 outside guest RAM through the wedge is refused, and the wedge stops",
        terminated: Some(
            "the wedge stopped the guest: a site could not be emulated (a request was refused, or guest memory faulted) (reason 7)",
        ),
        lines: &["vmm-server: guest0: invalid request: LoadCr3 0x10000000000 is outside guest RAM"],
    },
    Case {
        attacks: "halt",
        what: "hlt with interrupts disabled ends the guest: nothing could wake it",
        terminated: Some("it halted with interrupts disabled: nothing can wake it"),
        lines: &[],
    },
    Case {
        attacks: "sleep",
        what: "sti; hlt with no timer running ends the guest: nothing could wake it",
        terminated: Some("it halted with no interrupt source running: nothing can wake it"),
        lines: &[],
    },
];

const TERMINATED: &str = "vmm-server: guest0: terminated: ";
const EXITED: &str = "vmm-server: guest0: exited with status ";
/// What the VMM prints after a guest's end, whatever the end.
const REPORT: [&str; 3] = [
    "vmm-server: guest0: requests:",
    "page faults served",
    "vmm-server: guest0: mapping consistency: all",
];

/// Judges one boot's serial log and outcome.
fn judge(case: &Case, serial: &str, outcome: &qemu::Outcome) -> Result<String, String> {
    let lines: Vec<&str> = serial.lines().collect();
    let find = |what: &str| lines.iter().position(|l| l.contains(what));
    let missing: Vec<&str> = case
        .lines
        .iter()
        .copied()
        .filter(|l| find(l).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing {missing:?}"));
    }
    if let Some(l) = lines
        .iter()
        .find(|l| l.contains("UNEXPECTED") || l.contains("vmm-server: panic"))
    {
        return Err(format!("{l:?}"));
    }
    let endings: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with(TERMINATED) || lines[i].starts_with(EXITED))
        .collect();
    let [ending] = endings[..] else {
        return Err(format!("{} ending lines, not one", endings.len()));
    };
    let (expected_outcome, stated) = match case.terminated {
        None => (qemu::Outcome::Passed, format!("{EXITED}1")),
        Some(reason) => (qemu::Outcome::Failed, format!("{TERMINATED}{reason}")),
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
    match case.terminated {
        // A terminated guest ran no further: nothing after its last words.
        Some(_) => {
            let last_words = find("the VMM should end this guest")
                .ok_or("the guest never reached its last step")?;
            if let Some(l) = lines[last_words + 1..]
                .iter()
                .find(|l| l.starts_with("hostile:"))
            {
                return Err(format!("the guest ran on: {l:?}"));
            }
        }
        // Every refused message is counted, and the guest saw each refusal.
        None if case.attacks.split(',').any(|a| a == "ipc") => refusals_agree(&lines)?,
        None => {}
    }
    Ok(lines[ending]
        .strip_prefix("vmm-server: guest0: ")
        .unwrap_or(lines[ending])
        .to_string())
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
    let run = generated::description_with_ram(RAM_MIB)
        .and_then(|d| {
            generated::bundle_with(
                &format!("hostile-{}", case.attacks.replace(',', "-")),
                &d,
                images::Image::Hostile,
                Some(&cmdline),
            )
        })
        .and_then(|bundle| system::boot(kernel, &bundle, 512, None, qemu::Echo::Quiet))?;
    // The guest's console (COM2) first, then the kernel's and the VMM's
    // (COM1): the guest's words all come before the VMM's report of its end.
    let guest = String::from_utf8_lossy(run.com2.as_deref().unwrap_or_default());
    let log = format!("{guest}\n{}", run.serial);
    judge(case, &log, &run.outcome)
        .map(|ending| format!("{ending}; {:.2} s", run.elapsed.as_secs_f64()))
        .map_err(|e| format!("{e}:\n{}", tail(&log, 25)))
}

pub fn all(kernel: &KernelBuild, record: &mut dyn FnMut(&str, Result<String, String>)) {
    unpadded_guest_refused(kernel, record);
    for case in CASES {
        record(
            &format!("hostile: attack={}: {}", case.attacks, case.what),
            boot(kernel, case),
        );
    }
}

/// The VMM refuses a guest image that was not pre-virtualized, saying so.
fn unpadded_guest_refused(
    kernel: &KernelBuild,
    record: &mut dyn FnMut(&str, Result<String, String>),
) {
    let result = generated::description_with_ram(RAM_MIB)
        .and_then(|d| generated::bundle_with("generated-plain", &d, images::Image::Plain, None))
        .and_then(|bundle| system::boot(kernel, &bundle, 512, None, qemu::Echo::Quiet))
        .and_then(|run| {
            let refusal =
                "vmm-server: guest0: refused: no .afterburn section (not a pre-virtualized image)";
            if run.outcome == qemu::Outcome::Failed && run.serial.contains(refusal) {
                Ok(format!("{:.2} s", run.elapsed.as_secs_f64()))
            } else {
                Err(format!(
                    "ended with {}, expected a refusal:\n{}",
                    run.outcome,
                    tail(&run.serial, 25)
                ))
            }
        });
    record(
        "vmm: an unpadded guest image is refused with a message that says so",
        result,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SURVIVED: &str = "hostile: ipc: 2 garbage messages refused as invalid, 1 sent without a reply
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
        Case {
            attacks: "ipc",
            what: "",
            terminated: None,
            lines: &["hostile: survived 1 attacks"],
        }
    }

    #[test]
    fn a_survivor_passes_when_both_sides_agree() {
        assert_eq!(
            judge(&survivor(), SURVIVED, &qemu::Outcome::Passed),
            Ok("exited with status 1".to_string())
        );
        // The wrong status, a missing report, a count that disagrees.
        assert!(judge(&survivor(), SURVIVED, &qemu::Outcome::Failed).is_err());
        let no_report = SURVIVED.replace("mapping consistency", "mapping");
        assert!(judge(&survivor(), &no_report, &qemu::Outcome::Passed).is_err());
        let disagree = SURVIVED.replace("invalid 3", "invalid 4");
        assert!(judge(&survivor(), &disagree, &qemu::Outcome::Passed).is_err());
    }

    #[test]
    fn a_terminated_guest_must_be_stated_and_silent() {
        let case = Case {
            attacks: "caps",
            what: "",
            terminated: Some("capability fault"),
            lines: &[],
        };
        let log = "hostile: caps: x; the VMM should end this guest
vmm-server: guest0: terminated: capability fault: it invoked slot 12345
vmm-server: guest0: 1 page faults served
vmm-server: guest0: requests: port-in 1, invalid 0; 0 exceptions reflected into the guest
vmm-server: guest0: mapping consistency: all 1 seL4 mappings justified by the guest's page tables
";
        assert!(judge(&case, log, &qemu::Outcome::Failed).is_ok());
        let ran_on = log.replace(
            "vmm-server: guest0: terminated",
            "hostile: caps: still here\nvmm-server: guest0: terminated",
        );
        assert!(judge(&case, &ran_on, &qemu::Outcome::Failed).is_err());
        let other_reason = log.replace("capability fault", "something else");
        assert!(judge(&case, &other_reason, &qemu::Outcome::Failed).is_err());
        let report_first = "hostile: caps: x; the VMM should end this guest
vmm-server: guest0: requests: port-in 1, invalid 0; 0 exceptions reflected into the guest
vmm-server: guest0: mapping consistency: all 1 seL4 mappings justified by the guest's page tables
vmm-server: guest0: terminated: capability fault: it invoked slot 12345
";
        assert!(judge(&case, report_first, &qemu::Outcome::Failed).is_err());
    }
}
