//! Systems of several guests (docs/vmm-server.md, "Several guests"): each
//! guest with a VMM of its own, the supervisor owning the timer and the
//! exit. Each guest's console and each VMM's lines leave the machine on a
//! one-port console of their own, into a file each, so they are separable
//! byte for byte; the terminal shows them live, each line after its name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use capdl::generate::{guest_console_port, vmm_log_port};

use crate::generated::{self, GuestSpec};
use crate::kernel::KernelBuild;
use crate::{hostile_tests, interrupt_tests, paths, qemu, system};

/// What a run of several guests left.
pub struct Several {
    pub run: qemu::Run,
    /// Each guest's console bytes, in guest order.
    pub consoles: Vec<Vec<u8>>,
    /// Each guest's VMM's lines, in guest order.
    pub logs: Vec<String>,
}

/// A fresh folder under `target/qemu/` for one run's console files.
fn run_dir() -> Result<PathBuf, String> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = paths::target()
        .join("qemu")
        .join(format!("several-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Generates, bundles and boots `guests`, each with its own VMM; returns
/// every console.
pub fn run(
    kernel: &KernelBuild,
    name: &str,
    guests: &[GuestSpec],
    memory_mib: u32,
    icount: Option<u32>,
    echo: qemu::Echo,
    timeout: Duration,
) -> Result<Several, String> {
    let images = generated::images_several()?;
    let description = generated::several_description(guests);
    let bundle = generated::bundle_images(name, &description, &images)?;
    let dir = run_dir()?;
    let console_files: Vec<PathBuf> = guests
        .iter()
        .map(|g| dir.join(format!("{}.log", g.name)))
        .collect();
    let log_files: Vec<PathBuf> = guests
        .iter()
        .map(|g| dir.join(format!("vmm_{}.log", g.name)))
        .collect();
    let vmm_names: Vec<String> = guests.iter().map(|g| format!("vmm {}", g.name)).collect();
    let mut debugcons = Vec::new();
    for (n, g) in guests.iter().enumerate() {
        debugcons.push(qemu::Debugcon {
            port: guest_console_port(n as u64),
            file: &console_files[n],
            name: &g.name,
        });
        debugcons.push(qemu::Debugcon {
            port: vmm_log_port(n as u64),
            file: &log_files[n],
            name: &vmm_names[n],
        });
    }
    let run = system::boot_several(
        kernel, &bundle, memory_mib, icount, &debugcons, echo, timeout,
    );
    let read = |p: &Path| std::fs::read(p).unwrap_or_default();
    let consoles = console_files.iter().map(|p| read(p)).collect();
    let logs = log_files
        .iter()
        .map(|p| String::from_utf8_lossy(&read(p)).replace('\r', ""))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Several {
        run: run?,
        consoles,
        logs,
    })
}

/// Writes each guest's console to `dir/NAME.log`.
pub fn save_consoles(dir: &Path, guests: &[GuestSpec], several: &Several) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (g, bytes) in guests.iter().zip(&several.consoles) {
        crate::write_atomically(&dir.join(format!("{}.log", g.name)), bytes)?;
    }
    Ok(())
}

/// The suite's test of several guests.
pub const NAME: &str =
    "several: eight guests, two self-testing and two timing their ticks beside hostile ones, each with its own VMM";

/// Guest RAM of the self-testing guests: as in their solo boot.
const RAM_MIB: u32 = 32;
/// Guest RAM of the others (hostile and stress), as in their solo tests:
/// small, so eight guests stay quick to load.
const SMALL_RAM_MIB: u32 = 16;
/// The most guests a system holds (docs/vmm-server.md, "Several guests").
const MOST_GUESTS: usize = 8;
/// Seconds of guest time each stress guest runs at 1 kHz: 2,000 ticks,
/// all while the spin goes on beside them.
const STRESS_SECONDS: u64 = 2;

/// What a guest of a test system does.
enum Role {
    /// Every self-test; its console must be the guest's alone.
    SelfTest,
    /// The interrupt stress run (docs/testing.md, "Interrupts"), judged
    /// sharing the machine.
    Stress,
    /// Attacks, judged as the hostile case says.
    Hostile(hostile_tests::Case),
}

/// A guest of a test system.
struct Member {
    spec: GuestSpec,
    role: Role,
}

fn member(name: &str, role: Role) -> Member {
    let (image, cmdline, ram_mib) = match &role {
        Role::SelfTest => (
            "guest",
            crate::capdl_tests::SEL4_GUEST_TESTS.to_string(),
            RAM_MIB,
        ),
        Role::Stress => ("guest", format!("stress={STRESS_SECONDS}"), SMALL_RAM_MIB),
        Role::Hostile(case) => (
            "hostile",
            format!("attack={}", case.attacks()),
            SMALL_RAM_MIB,
        ),
    };
    Member {
        spec: GuestSpec {
            name: name.to_string(),
            image,
            cmdline,
            trap: false,
            ram_mib,
        },
        role,
    }
}

/// Every attack of the hostile guest, as neighbours in the two test
/// systems: the first holds the one that survives its attacks (spinning
/// first) and as many ended ones as fit beside its four other guests; the
/// second, the other ended ones beside one stress guest. An attack more
/// than both hold is an error: a third system would be needed.
fn neighbours() -> Result<(Vec<hostile_tests::Case>, Vec<hostile_tests::Case>), String> {
    let all = hostile_tests::neighbours(hostile_tests::Kernel::Release);
    let (mut first, mut ended): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|c| !c.ends_the_guest());
    let room = MOST_GUESTS - 4 - first.len();
    let rest = ended.split_off(room.min(ended.len()));
    if rest.len() > MOST_GUESTS - 1 {
        return Err(format!(
            "{} hostile attacks end the guest: more than the two systems of the several: tests hold",
            room + rest.len()
        ));
    }
    first.append(&mut ended);
    Ok((first, rest))
}

/// The supervisor's line for guest `n`'s end: its exit value and the timer
/// ticks passed on by then.
fn end_of(serial: &str, n: usize) -> Option<(u8, u64)> {
    let line = serial
        .lines()
        .find(|l| l.starts_with(&format!("supervisor: guest {n} ended with exit value ")))?;
    let value = line
        .split("exit value ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    let before = line.split(" timer ticks passed on").next()?;
    let ticks = before.rsplit(' ').next()?.parse().ok()?;
    Some((value, ticks))
}

/// What a run of a test system left, judged guest by guest.
struct Judged {
    /// Each stress guest's figures ([`figures`]).
    stress: Vec<String>,
    /// Each guest's end: (exit value, ticks passed on by then), in order.
    ends: Vec<(u8, u64)>,
}

/// Boots `members` and judges each guest by its role: self-testing ones
/// against `alone` (their console alone), stress ones sharing the machine
/// with the others, hostile ones as their case says; the run must end
/// after all, with a failure (a hostile guest failed).
fn run_and_judge(
    kernel: &KernelBuild,
    name: &str,
    members: &[Member],
    alone: &[u8],
) -> Result<(Several, Judged), String> {
    let guests: Vec<GuestSpec> = members.iter().map(|m| m.spec.clone()).collect();
    let several = run(
        kernel,
        name,
        &guests,
        512,
        Some(crate::test::GUEST_TEST_ICOUNT_SHIFT),
        qemu::Echo::Quiet,
        Duration::from_secs(180),
    )?;
    let serial = &several.run.serial;
    let context = |n: usize| {
        format!(
            "{}\n[{}]\n{}\n[vmm {}]\n{}",
            crate::process::tail(serial, 12),
            guests[n].name,
            crate::process::tail(&String::from_utf8_lossy(&several.consoles[n]), 8),
            guests[n].name,
            crate::process::tail(&several.logs[n], 8)
        )
    };
    if several.run.outcome != qemu::Outcome::Failed
        || !serial.contains("supervisor: every guest has ended; exit value 1")
    {
        return Err(format!(
            "the run ended with {}, not with a hostile guest's failure after all {} ended:\n{}",
            several.run.outcome,
            guests.len(),
            crate::process::tail(serial, 20)
        ));
    }
    let slice_ns = crate::kernel::time_slice_ns(kernel.flavour)?;
    let mut judged = Judged {
        stress: Vec::new(),
        ends: Vec::new(),
    };
    for (n, m) in members.iter().enumerate() {
        let name = &m.spec.name;
        let end = end_of(serial, n);
        let console = String::from_utf8_lossy(&several.consoles[n]);
        let log = &several.logs[n];
        let verdict = match &m.role {
            Role::SelfTest => {
                let exited = format!("vmm-server: guest{n}: exited with status 1");
                if several.consoles[n] != alone {
                    Err(crate::test::first_difference(
                        &several.consoles[n],
                        alone,
                        [&format!("{name} beside the others"), "alone"],
                    )
                    .map_or(
                        "its console differs from its console alone in line ends".into(),
                        |d| format!("its console is not the one it has alone: {d}"),
                    ))
                } else if !log.contains(&exited) || end.map(|e| e.0) != Some(0) {
                    Err(format!(
                        "its VMM or the supervisor did not report its pass ({exited:?})"
                    ))
                } else {
                    Ok(())
                }
            }
            Role::Stress => {
                let ours = log.replace(&format!("vmm-server: guest{n}: "), "vmm-server: guest0: ");
                let sharing = interrupt_tests::Sharing {
                    guests: members.len() as u64,
                    slice_ns,
                };
                interrupt_tests::counts(&console, &ours).and_then(|c| {
                    interrupt_tests::judge_sharing(&c, STRESS_SECONDS, Some(sharing))?;
                    judged.stress.push(figures(name, &c, &console));
                    Ok(())
                })
            }
            Role::Hostile(case) => {
                hostile_tests::judge_neighbour(case, &console, log, n, end.map(|e| e.0)).map(|_| ())
            }
        };
        verdict.map_err(|e| format!("{name}: {e}:\n{}", context(n)))?;
        judged
            .ends
            .push(end.ok_or_else(|| format!("{name}: no end on COM1:\n{}", context(n)))?);
    }
    Ok((several, judged))
}

/// One stress guest's figures, from its counts and its console: the tick
/// that came latest after interrupts went on, and the most lateness in the
/// second half of its ticks (past the others' start).
fn figures(name: &str, c: &interrupt_tests::Counts, console: &str) -> String {
    let worst = console
        .lines()
        .find_map(|l| l.strip_prefix("stress: latest after interrupts went on: "))
        .unwrap_or("no line naming the latest tick");
    let half = console
        .lines()
        .find(|l| l.starts_with("stress: second half: "))
        .and_then(|l| {
            let late = interrupt_tests::number_after(l, "late_max=")?;
            let after_on = interrupt_tests::number_after(l, "after_on_max=")?;
            Some(format!(
                "second half: late {} µs, {} µs after interrupts went on",
                late / 1000,
                after_on / 1000
            ))
        })
        .unwrap_or_else(|| "no second-half line".to_string());
    format!(
        "{name}: {} ticks, late {}..{} µs, {} µs after interrupts went on (longest off {} µs; {worst}); {half}; {} redirected, {} at sites",
        c.guest,
        c.late_min / 1000,
        c.late_max / 1000,
        c.after_on_max / 1000,
        c.off_max / 1000,
        c.redirected,
        c.at_sites
    )
}

/// Eight guests, each with its own VMM, under `-icount`: two run every
/// self-test, two run the interrupt stress, one hostile guest spins with
/// interrupts off and then survives its other attacks, and three more are
/// each ended by their VMM for an attack ([`neighbours`]). Each
/// self-testing guest's console is the same, byte for byte, as the same
/// guest's alone on seL4; each stress guest gets every tick once, on time
/// by the bounds of a shared CPU ([`interrupt_tests::Sharing`]); every
/// attack is answered as alone; the spin does not stop the others (the
/// self-testing and stress guests end while it spins), and the run ends
/// when all have, with a failure status because hostile guests failed.
pub fn test(kernel: &KernelBuild) -> Result<String, String> {
    let shift = crate::test::GUEST_TEST_ICOUNT_SHIFT;
    let cmdline = crate::capdl_tests::SEL4_GUEST_TESTS;
    let solo = generated::description_with_ram(RAM_MIB)
        .and_then(|d| {
            generated::bundle_with(
                "several-solo",
                &d,
                crate::images::Image::Padded,
                Some(cmdline),
            )
        })
        .and_then(|b| system::boot(kernel, &b, 512, Some(shift), qemu::Echo::Quiet))?;
    if solo.outcome != qemu::Outcome::Passed {
        return Err(format!(
            "the guest alone ended with {}:\n{}",
            solo.outcome,
            crate::process::tail(&solo.serial, 20)
        ));
    }
    let alone = solo.com2.clone().unwrap_or_default();
    let (beside_spin, _) = neighbours()?;
    let mut members = vec![
        member("guest0", Role::SelfTest),
        member("guest1", Role::SelfTest),
        member("stress0", Role::Stress),
        member("stress1", Role::Stress),
    ];
    let first_hostile = members.len();
    for (i, case) in beside_spin.into_iter().enumerate() {
        members.push(member(&format!("hostile{i}"), Role::Hostile(case)));
    }
    let (several, judged) = run_and_judge(kernel, "several-8", &members, &alone)?;
    // The spin does not stop the others: the self-testing and stress
    // guests end while it spins (2^28 turns: 4,000+ ticks alone).
    let spun = judged.ends[first_hostile].1;
    let others: Vec<u64> = judged.ends[..first_hostile].iter().map(|e| e.1).collect();
    let last_other = others.iter().copied().max().unwrap_or(0);
    let selftests_done = others[0].max(others[1]);
    if spun < 4000 || selftests_done * 2 > spun || last_other >= spun {
        return Err(format!(
            "the guests ended at ticks {others:?} and the spinning one at {spun}: the others should end while it spins (the self-testing ones in its first half):\n{}",
            crate::process::tail(&several.run.serial, 16)
        ));
    }
    Ok(format!(
        "self-testing consoles identical to the guest's alone ({} bytes); {} attacks answered as alone; ended at ticks {others:?}, the spinning guest at {spun}; {}; {:.1} s",
        alone.len(),
        members[first_hostile..]
            .iter()
            .map(|m| m.spec.cmdline.split(',').count())
            .sum::<usize>(),
        judged.stress.join("; "),
        several.run.elapsed.as_secs_f64()
    ))
}

/// The suite's test of guests ended early.
pub const ENDED_NAME: &str =
    "several: guests their VMMs end at once leave the other running to its end";

/// The rest of the attacks that end the guest ([`neighbours`]), each in a
/// guest of its own, beside one guest running the interrupt stress: each
/// hostile guest is ended by its VMM for its attack, as alone; the other
/// runs on, gets every tick of its stress once and on time, and ends last;
/// only then does the run end, with the hostile guests' failure. The
/// hostile guests end within the stress guest's first ticks, so its figures
/// are those of a guest alone on the supervisor's timer.
pub fn ended_early(kernel: &KernelBuild) -> Result<String, String> {
    let (_, rest) = neighbours()?;
    let mut members: Vec<Member> = rest
        .into_iter()
        .enumerate()
        .map(|(i, case)| member(&format!("hostile{i}"), Role::Hostile(case)))
        .collect();
    let stress = members.len();
    members.push(member("stress", Role::Stress));
    let (several, judged) = run_and_judge(kernel, "several-ended", &members, &[])?;
    let serial = &several.run.serial;
    let last = format!("supervisor: guest {stress} ended with exit value 0 (0 still running");
    let ended_first = (0..stress).all(|n| {
        serial
            .find(&format!("supervisor: guest {n} ended"))
            .zip(serial.find(&last))
            .is_some_and(|(h, s)| h < s)
    });
    if !ended_first {
        return Err(format!(
            "the stress guest did not end last, after every hostile one:\n{}",
            crate::process::tail(serial, 16)
        ));
    }
    Ok(format!(
        "{stress} hostile guests ended by their VMMs (at ticks {:?}); {}; {:.1} s",
        judged.ends[..stress]
            .iter()
            .map(|e| e.1)
            .collect::<Vec<_>>(),
        judged.stress.join("; "),
        several.run.elapsed.as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attack_has_a_guest_in_the_two_systems() {
        let all = hostile_tests::neighbours(hostile_tests::Kernel::Release);
        let (first, second) = neighbours().expect("the attacks fit in two systems");
        assert_eq!(first.len() + second.len(), all.len());
        // The spinning survivor is in the first system, beside the
        // self-testing and stress guests; each system fits the loader.
        assert!(!first[0].ends_the_guest() && first[0].attacks().starts_with("spin,"));
        assert!(first.len() + 4 <= MOST_GUESTS && second.len() < MOST_GUESTS);
        assert!(second.iter().all(|c| c.ends_the_guest()));
    }
}
