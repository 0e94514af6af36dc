//! Interrupts on seL4 under load (docs/testing.md, "Interrupts"): the guest
//! runs the `mixed` workload for a stretch of guest time with its timer at
//! 1 kHz (`stress=SECONDS`), and every tick must arrive exactly once — the
//! guest's count, the VMM's PIT edges, its injected interrupts and the real
//! timer's ticks all agree — by both ways the VMM delivers: at the wedge's
//! sites and by redirecting the running guest.

use std::time::Duration;

use crate::kernel::KernelBuild;
use crate::process::tail;
use crate::{generated, images, qemu, system};

/// Seconds of guest time: the figure.
pub const STRESS_SECONDS: u64 = 60;

/// The numbers both sides print.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    /// The guest's own count of timer interrupts.
    guest: u64,
    pit_edges: u64,
    /// Edges merged at the PIC while the guest could not take them.
    merged: u64,
    real_ticks: u64,
    injected: u64,
    redirected: u64,
    at_sites: u64,
}

/// The first run of digits after `after` in `line`.
fn number_after(line: &str, after: &str) -> Option<u64> {
    let rest = &line[line.find(after)? + after.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn counts(console: &str, serial: &str) -> Result<Counts, String> {
    let guest_line = console
        .lines()
        .find(|l| l.starts_with("stress: "))
        .ok_or("the guest printed no stress line")?;
    let vmm_line = serial
        .lines()
        .find(|l| l.starts_with("vmm-server: guest0: interrupts: "))
        .ok_or("the VMM printed no interrupt statistics")?;
    let get = |line: &str, after: &str| {
        number_after(line, after).ok_or_else(|| format!("no number after {after:?} in {line:?}"))
    };
    Ok(Counts {
        guest: get(guest_line, "stress:")?,
        pit_edges: get(vmm_line, "interrupts:")?,
        merged: get(vmm_line, "edges (")?,
        real_ticks: get(vmm_line, "),")?,
        injected: get(vmm_line, "ticks;")?,
        redirected: get(vmm_line, "injected:")?,
        at_sites: get(vmm_line, "running guest,")?,
    })
}

/// What must hold of a run of `seconds` at 1 kHz.
fn judge(c: &Counts, seconds: u64) -> Result<String, String> {
    let target = seconds * 1000;
    let checks = [
        (c.guest >= target, "the guest counted fewer ticks than it waited for"),
        (c.guest <= target + 2, "the guest counted more ticks than it waited for"),
        (c.injected == c.guest, "the VMM injected another number of interrupts than the guest counted (lost or duplicated)"),
        // The guest never masks IRQ 0 meanwhile: no edge may merge.
        (c.merged == 0, "ticks merged at the PIC"),
        // The guest stops its PIT right after its last count: one more
        // edge may have come before it did, never taken.
        (c.pit_edges == c.injected || c.pit_edges == c.injected + 1, "PIT edges and injected interrupts disagree"),
        // The real PIT stops a moment after the guest's virtual one (the
        // VMM stops it when the guest's stop reaches it): one more tick.
        (c.real_ticks == c.pit_edges || c.real_ticks == c.pit_edges + 1, "guest time drifted from the real timer"),
        (c.redirected + c.at_sites == c.injected, "the delivery paths do not add up"),
        (c.redirected > 0, "no interrupt was delivered by redirecting the running guest"),
        (c.at_sites > 0, "no interrupt was delivered at a site"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, why)) => Err(format!("{why}: {c:?}")),
        None => Ok(format!(
            "{} ticks in {seconds} s of guest time, each delivered once: {} by redirection, {} at sites",
            c.guest, c.redirected, c.at_sites
        )),
    }
}

/// The ticks a passed stress run delivered, read from its detail line.
pub fn ticks_in(detail: &str) -> Option<u64> {
    detail.split_whitespace().next()?.parse().ok()
}

pub fn stress(kernel: &KernelBuild, record: &mut dyn FnMut(&str, Result<String, String>)) {
    let cmdline = format!("stress={STRESS_SECONDS}");
    let run = generated::description_with_ram(16)
        .and_then(|d| generated::bundle_with("stress", &d, images::Image::Padded, Some(&cmdline)))
        .and_then(|bundle| {
            // Guest time is real time here: give it room.
            system::boot_for(
                kernel,
                &bundle,
                512,
                qemu::Echo::Quiet,
                Duration::from_secs(STRESS_SECONDS * 4 + 60),
            )
        });
    let result = run.and_then(|run| {
        let console = String::from_utf8_lossy(run.com2.as_deref().unwrap_or_default()).into_owned();
        if run.outcome != qemu::Outcome::Passed {
            return Err(format!(
                "ended with {}:\n{}\n{}",
                run.outcome,
                tail(&console, 5),
                tail(&run.serial, 15)
            ));
        }
        counts(&console, &run.serial).and_then(|c| judge(&c, STRESS_SECONDS))
    });
    record(
        &format!("interrupts: {STRESS_SECONDS} s at 1 kHz under the mixed workload, every tick delivered once"),
        result,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMM: &str = "vmm-server: guest0: interrupts: 60001 PIT edges (0 merged with IRQ 0 masked, at most 1 owed), 60001 real timer ticks; 60000 injected: 2000 by redirecting the running guest, 58000 taken at sites; 0 hlt waits, 0 TSC ticks idle; ticks served by the interrupt thread 59000, by the main thread 1001";
    const GUEST: &str = "stress: 60000 timer interrupts counted in 60 s of guest time at 1 kHz, 900 iterations of mixed";

    #[test]
    fn the_counts_are_read_from_both_sides() {
        let c = counts(GUEST, VMM).unwrap();
        assert_eq!(
            c,
            Counts {
                guest: 60000,
                pit_edges: 60001,
                merged: 0,
                real_ticks: 60001,
                injected: 60000,
                redirected: 2000,
                at_sites: 58000
            }
        );
        assert!(judge(&c, 60).is_ok());
    }

    #[test]
    fn a_lost_duplicated_or_drifting_tick_fails() {
        let ok = counts(GUEST, VMM).unwrap();
        let lost = Counts {
            injected: 59999,
            at_sites: 57999,
            ..counts(GUEST, VMM).unwrap()
        };
        assert!(judge(&lost, 60).unwrap_err().contains("lost or duplicated"));
        let drift = Counts {
            real_ticks: 60003,
            ..counts(GUEST, VMM).unwrap()
        };
        assert!(judge(&drift, 60).unwrap_err().contains("drifted"));
        let never_redirected = Counts {
            redirected: 0,
            at_sites: 60000,
            ..ok
        };
        assert!(judge(&never_redirected, 60).is_err());
        assert!(counts("nothing", VMM).is_err());
    }
}
