//! Trap-and-emulate on seL4 (docs/trap-and-emulate.md): the plain guest,
//! with no wedge, runs its self-test while the VMM emulates whatever
//! faults. The x86 holes — sensitive instructions that do not fault at
//! user level — make exactly the checks below fail, and the rest pass.

use crate::kernel::KernelBuild;
use crate::process::tail;
use crate::{generated, images, qemu, system};

pub const NAME: &str =
    "trap: the plain guest under trap-and-emulate fails exactly the self-test checks the x86 holes explain";

/// The self-tests in this order: `desc` last, because its holes end the
/// guest (below), and each test's failures should be seen.
pub const CMDLINE: &str = "tests=console,cpu,flags,paging,exceptions,timer,desc";

/// The tests that pass whole: everything they use either faults at user
/// level (and is emulated) or is unprivileged anyway.
const PASSING: &[&str] = &["console", "cpu", "paging", "exceptions", "timer"];

/// Every check that fails, `(test, check)`, and why.
pub const EXPECTED_FAILURES: &[(&str, &str, &str)] = &[
    (
        "flags",
        "IF clear after cli",
        "cli faults and clears the virtual IF, but pushf does not fault at CPL 3: it pushes the real RFLAGS, whose IF is always set",
    ),
    (
        "flags",
        "IF clear inside the outer section",
        "the same: pushf after irq_save's cli shows the real IF",
    ),
    (
        "flags",
        "inner save saw IF clear",
        "the same: the inner irq_save's pushf shows the real IF",
    ),
    (
        "flags",
        "IF still clear after the inner restore",
        "popf does not fault at CPL 3 (it leaves IF alone silently), and pushf shows the real IF",
    ),
    (
        "flags",
        "popf cleared IF and set CF",
        "popf set CF (an unprivileged flag) but could not clear IF, real or virtual",
    ),
    (
        "desc",
        "sgdt base is the kernel's GDT",
        "sgdt does not fault at CPL 3 without UMIP: it stores seL4's own GDTR, never the guest's virtual one",
    ),
    (
        "desc",
        "sgdt limit",
        "the same: the limit of seL4's GDT",
    ),
];

/// Then the guest cannot go on: it reloaded the GDTR and IDTR that sgdt and
/// sidt gave it (lgdt and lidt fault and are emulated, faithfully loading
/// seL4's kernel addresses into the virtual CPU), so its next fault (`ltr`,
/// which reads the GDT) finds the virtual GDT and IDT at addresses its page
/// tables do not map: the #PF, then the #DF, cannot be delivered.
pub const ENDING: &str = "vmm-server: guest0: terminated: triple fault: exception 14 at ";

/// Boots the plain guest under trap-and-emulate and judges it.
pub fn run(kernel: &KernelBuild) -> Result<String, String> {
    let description = generated::description_with_ram(64)?;
    let bundle = generated::bundle_for(
        "generated-trap",
        &description,
        images::Image::Plain,
        Some(CMDLINE),
        true,
    )?;
    let run = system::boot(
        kernel,
        &bundle,
        512,
        Some(crate::test::GUEST_TEST_ICOUNT_SHIFT),
        qemu::Echo::Quiet,
    )?;
    let console = String::from_utf8_lossy(run.com2.as_deref().unwrap_or_default()).into_owned();
    judge(&console, &run.serial, &run.outcome).map_err(|why| {
        format!(
            "{why}\nguest console:\n{}\nserial:\n{}",
            tail(&console, 30),
            tail(&run.serial, 15)
        )
    })
}

pub const HOSTILE_NAME: &str =
    "trap: the hostile guest under trap-and-emulate: garbage IPC refused, wild jumps and page-table loops delivered as its own faults";

/// The hostile guest's attacks whose answers are the same with or without
/// a wedge: its raw IPC, wild jumps (a #PF with CR2, or the #GP of a
/// non-canonical address, through its IDT) and looping page tables.
/// (Its `ints` expect seL4's #GP for `int $n`, which trap-and-emulate
/// instead emulates as the interrupt.)
pub const HOSTILE_ATTACKS: &str = "attack=ipc,jumps,ptloop";

/// Boots the hostile guest under trap-and-emulate with
/// [`HOSTILE_ATTACKS`]: it must survive each with every answer expected,
/// and the VMM report as usual.
pub fn hostile(kernel: &KernelBuild) -> Result<String, String> {
    let description = generated::description_with_ram(16)?;
    let bundle = generated::bundle_for(
        "generated-trap-hostile",
        &description,
        images::Image::Hostile,
        Some(HOSTILE_ATTACKS),
        true,
    )?;
    let run = system::boot(kernel, &bundle, 512, None, qemu::Echo::Quiet)?;
    let console = String::from_utf8_lossy(run.com2.as_deref().unwrap_or_default()).into_owned();
    let survived = "hostile: survived 3 attacks, 0 unexpected answers";
    let reported = ["trap-and-emulate: emulated", "mapping consistency: all"];
    if run.outcome == qemu::Outcome::Passed
        && console.contains(survived)
        && reported.iter().all(|r| run.serial.contains(r))
    {
        Ok(format!("{:.2} s", run.elapsed.as_secs_f64()))
    } else {
        Err(format!(
            "ended with {}, expected `{survived}`, an exit and the VMM's report:\n{}\n{}",
            run.outcome,
            tail(&console, 20),
            tail(&run.serial, 10)
        ))
    }
}

/// The guest's console (`console`) and the VMM's lines (`serial`) against
/// the expectations: every expected failure and no other, every passing
/// test passed, and the stated end.
pub fn judge(console: &str, serial: &str, outcome: &qemu::Outcome) -> Result<String, String> {
    let mut failed: Vec<(String, String)> = Vec::new();
    for line in console.lines() {
        if let Some((test, rest)) = line.split_once(": check '") {
            let check = rest.split("' failed").next().unwrap_or(rest);
            failed.push((test.to_string(), check.to_string()));
        }
    }
    let expected: Vec<(String, String)> = EXPECTED_FAILURES
        .iter()
        .map(|(t, c, _)| (t.to_string(), c.to_string()))
        .collect();
    let unexpected: Vec<String> = failed
        .iter()
        .filter(|f| !expected.contains(f))
        .map(|(t, c)| format!("{t}: '{c}'"))
        .collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|e| !failed.contains(e))
        .map(|(t, c)| format!("{t}: '{c}'"))
        .collect();
    if !unexpected.is_empty() || !missing.is_empty() {
        return Err(format!(
            "failed unexpectedly: [{}]; expected to fail but did not: [{}]",
            unexpected.join(", "),
            missing.join(", ")
        ));
    }
    for test in PASSING {
        if !console
            .lines()
            .any(|l| l.starts_with(&format!("{test}: passed (")))
        {
            return Err(format!("`{test}` did not pass"));
        }
    }
    if !console.lines().any(|l| l.starts_with("flags: FAILED (")) {
        return Err("`flags` did not report its failures".to_string());
    }
    if !serial.lines().any(|l| l.starts_with(ENDING)) {
        return Err(format!("the VMM did not end the guest with `{ENDING}...`"));
    }
    if *outcome != qemu::Outcome::Failed {
        return Err(format!(
            "the run ended with {outcome}, expected the failure status of a terminated guest"
        ));
    }
    let emulated = serial
        .lines()
        .find(|l| l.contains("trap-and-emulate: emulated"))
        .ok_or("no trap-and-emulate statistics from the VMM")?;
    Ok(format!(
        "{} checks failed as expected; {}",
        failed.len(),
        emulated.trim_start_matches("vmm-server: guest0: ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(extra: &str) -> String {
        let mut c = String::from("console: passed (3 checks)\ncpu: passed (5 checks)\n");
        for (test, check, _) in EXPECTED_FAILURES {
            c.push_str(&format!(
                "{test}: check '{check}' failed: expected 0x0, got 0x200\n"
            ));
        }
        c.push_str("flags: FAILED (7 checks)\npaging: passed (15 checks)\nexceptions: passed (5 checks)\ntimer: passed (5 checks)\n");
        c.push_str(extra);
        c
    }

    const SERIAL: &str = "vmm-server: guest0: terminated: triple fault: exception 14 at 0x2031a0 could not be delivered\nvmm-server: guest0: trap-and-emulate: emulated cli 3\n";

    #[test]
    fn exactly_the_expected_failures_pass() {
        let r = judge(&console(""), SERIAL, &qemu::Outcome::Failed);
        assert_eq!(
            r,
            Ok("7 checks failed as expected; trap-and-emulate: emulated cli 3".to_string())
        );
    }

    #[test]
    fn another_failure_a_missing_one_or_another_end_fails() {
        let extra = console("timer: check 'x' failed: expected 1, got 0\n");
        assert!(judge(&extra, SERIAL, &qemu::Outcome::Failed)
            .unwrap_err()
            .contains("timer: 'x'"));
        let fewer = console("")
            .replace("flags: check 'sgdt", "x")
            .replace("desc: check 'sgdt limit'", "y");
        assert!(judge(&fewer, SERIAL, &qemu::Outcome::Failed)
            .unwrap_err()
            .contains("desc: 'sgdt limit'"));
        let no_timer = console("").replace("timer: passed", "timer: FAILED");
        assert!(judge(&no_timer, SERIAL, &qemu::Outcome::Failed).is_err());
        assert!(judge(
            &console(""),
            "vmm-server: guest0: exited with status 1\n",
            &qemu::Outcome::Failed
        )
        .is_err());
        assert!(judge(&console(""), SERIAL, &qemu::Outcome::Passed).is_err());
    }
}
