//! Linux on seL4 (docs/linux.md, "Linux on seL4: how far it gets"): the
//! padded `vmlinux` that `cargo xtask linux` built, with its initramfs and
//! the bare boots' command line, as the one guest of a generated system:
//! the VMM loads it by Linux's 64-bit boot protocol and the wedge enters
//! `startup_64`. `cargo xtask run --linux` boots it; the test compares the
//! guest's whole console with the same kernel's bare console, line by
//! line, but for the lines of named machine differences ([`RULES`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::kernel::KernelBuild;
use crate::linux::{self, Kernels};
use crate::{generated, paths, qemu, system};

/// Guest RAM for Linux: what the bare boots give it.
pub const RAM_MIB: u32 = 128;
/// The machine: seL4, the loader with its bundle (the kernel and the
/// initramfs are in it twice, as files and as copies) and the guest's RAM.
pub const MACHINE_MIB: u32 = 512;
/// A run ends long before this: Linux stops at a site the wedge cannot
/// handle yet, or the VMM ends it.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The system's description: one Linux guest, the bare boots' command
/// line, the devices the test guest's system has.
pub fn description() -> String {
    format!(
        "[vmm]\nimage = \"vmm-server\"\npriority = 200\nstack_pages = 4\nwedge = \"wedge-l4\"\n\n\
         [[guest]]\nname = \"guest0\"\nimage = \"vmlinux\"\nlinux = true\ninitrd = \"initramfs\"\n\
         ram_mib = {RAM_MIB}\npriority = 200\npt_untyped_bits = 24\ncmdline = \"{}\"\n\n\
         [devices]\nserial = true\npit = true\ndebug_exit = true\nguest_console = true\n",
        linux::CMDLINE
    )
}

/// Bundles the system with the padded kernel and the initramfs.
pub fn bundle(k: &Kernels) -> Result<PathBuf, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut images = BTreeMap::new();
    for (name, package) in [("vmm-server", "vmm-server"), ("wedge-l4", "wedge-sel4")] {
        images.insert(name.to_string(), generated::task_image(package)?);
    }
    images.insert("vmlinux".to_string(), read(&k.padded.vmlinux)?);
    images.insert("initramfs".to_string(), read(&k.initramfs)?);
    generated::bundle_images("linux", &description(), &images)
}

/// Boots Linux on seL4 under `-icount` (as the bare boots), the guest's
/// console (COM2) and the VMM's lines (COM1) kept in `target/linux/`.
pub fn boot(kernel: &KernelBuild, k: &Kernels, echo: qemu::Echo) -> Result<qemu::Run, String> {
    let bundle = bundle(k)?;
    let run = system::boot_for(
        kernel,
        &bundle,
        MACHINE_MIB,
        Some(crate::test::GUEST_TEST_ICOUNT_SHIFT),
        echo,
        TIMEOUT,
    )?;
    let dir = paths::target().join("linux");
    let _ = std::fs::write(
        dir.join("console-sel4.txt"),
        run.com2.as_deref().unwrap_or_default(),
    );
    let _ = std::fs::write(dir.join("vmm-sel4.txt"), run.serial.as_bytes());
    Ok(run)
}

/// The suite's test (in the `linux:` group, by name only, as the Linux
/// builds it needs).
pub const TEST_NAME: &str =
    "linux: seL4 console: the padded Linux on seL4 prints the bare boot's console but for named machine differences, runs /init and ends by resetting the machine";

/// Where the VMM's report says the wedge stopped the guest.
const STOPPED: &str = "the wedge stopped at the";
/// The VMM's line when the guest reset the machine (Linux's reboot, by the
/// keyboard controller, as the bare boot's under QEMU `-no-reboot`).
pub const RESET: &str = "vmm-server: guest0: reset the machine through the keyboard controller";
/// Linux's line as it starts user space: on seL4 as on the bare machine.
pub const RUN_INIT: &str = "Run /init as init process";
/// Linux's warning when an MSR access raised #GP.
const MSR_WARNING: &str = "unchecked MSR access error";
/// Linux's last line before it resets the machine.
pub const RESTART: &str = "reboot: machine restart";

/// `/init`'s own lines (normalised): from its first (`init: kernel ...`)
/// to its last ([`linux::DONE`]), with whatever the kernel printed between
/// them; empty if either is missing.
pub fn init_lines(console: &str) -> Vec<String> {
    let (lines, _) = linux::normalise(console);
    let first = lines.iter().position(|l| l.starts_with("init: kernel"));
    let last = lines.iter().position(|l| l == linux::DONE);
    match (first, last) {
        (Some(a), Some(b)) if a <= b => lines[a..=b].to_vec(),
        _ => Vec::new(),
    }
}

/// Which console a rule drops lines from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The bare boot's (QEMU with SeaBIOS) only.
    Bare,
    /// The seL4 machine's only.
    Sel4,
    /// Either: the line is there on both machines with other values.
    Both,
}

/// A console line a rule names: the whole line, or its fixed start (what
/// follows is the machine's numbers).
#[derive(Clone, Copy, Debug)]
pub enum Pattern {
    Exact(&'static str),
    Prefix(&'static str),
}

impl Pattern {
    fn matches(self, line: &str) -> bool {
        match self {
            Self::Exact(l) => line == l,
            Self::Prefix(p) => line.starts_with(p),
        }
    }
}

/// One difference between the two machines and the console lines it
/// accounts for. A line either rule names is left out of the comparison;
/// every other line must be the same on both machines.
pub struct Rule {
    pub name: &'static str,
    /// Why the machines differ there.
    pub why: &'static str,
    pub side: Side,
    pub lines: &'static [Pattern],
    /// A line of this build's consoles the rule drops, and a neighbour it
    /// must keep (the rule's unit test).
    pub drops: &'static str,
    pub keeps: &'static str,
}

impl Rule {
    fn drops_from(&self, side: Side, line: &str) -> bool {
        (self.side == side || self.side == Side::Both) && self.lines.iter().any(|p| p.matches(line))
    }

    /// The sides the rule drops lines from.
    fn sides(&self) -> &'static [Side] {
        match self.side {
            Side::Both => &[Side::Bare, Side::Sel4],
            Side::Bare => &[Side::Bare],
            Side::Sel4 => &[Side::Sel4],
        }
    }
}

/// Every rule drops its example line on its sides and no rule drops
/// another's kept neighbour: a rule widened by mistake fails here, in the
/// unit tests and before each comparison.
pub fn check_rules() -> Result<(), String> {
    for rule in RULES {
        for &side in rule.sides() {
            if !rule.drops_from(side, rule.drops) {
                return Err(format!(
                    "rule `{}` does not drop its own example `{}` ({side:?})",
                    rule.name, rule.drops
                ));
            }
            if let Some(r) = RULES.iter().find(|r| r.drops_from(side, rule.keeps)) {
                return Err(format!(
                    "rule `{}` drops `{}`, which rule `{}` names as a line to keep",
                    r.name, rule.keeps, rule.name
                ));
            }
        }
    }
    Ok(())
}

/// Each rule's name and reason, one a line (for a failure's message).
pub fn rules_explained() -> String {
    RULES
        .iter()
        .map(|r| format!("  {}: {}", r.name, r.why))
        .collect::<Vec<_>>()
        .join("\n")
}

use Pattern::{Exact, Prefix};

/// The machine differences, in console order. They apply first; then the
/// bare comparison's filters (`linux::FILTER`: memory sizes, clock
/// calibration), on both sides. The e820 map and `last_pfn` are not
/// dropped but checked against the VMM's layout ([`compare`]).
pub const RULES: &[Rule] = &[
    Rule {
        name: "MP table",
        why: "SeaBIOS writes an MP table (one CPU, an IOAPIC); the VMM gives Linux no firmware tables",
        side: Side::Bare,
        lines: &[
            Prefix("found SMP MP-table at "),
            Exact("Intel MultiProcessor Specification v1.4"),
            Prefix("MPTABLE: "),
            Exact("Processor #0 (Bootup-CPU)"),
            Prefix("IOAPIC[0]: "),
            Exact("Processors: 1"),
        ],
        drops: "MPTABLE: OEM ID: BOCHSCPU",
        keeps: "x86/PAT: Configuration [0-7]: WB  WT  UC- UC  WB  WT  UC- UC",
    },
    Rule {
        name: "no local APIC",
        why: "the virtual CPU's CPUID hides the APIC, which the MP table announces on the bare machine",
        side: Side::Sel4,
        lines: &[
            Exact("No local APIC present"),
            Exact("APIC: disable apic facility"),
            Exact("APIC: switched to apic NOOP"),
        ],
        drops: "APIC: disable apic facility",
        keeps: "Zone ranges:",
    },
    Rule {
        name: "memory layout",
        why: "where RAM, its holes and the initrd are: SeaBIOS's e820 map (a reserved EBDA below 640 KiB, its tables at the top) against the VMM's (the wedge area and boot pages at the top)",
        side: Side::Both,
        lines: &[
            Prefix("RAMDISK: [mem "),
            Prefix("  DMA32    [mem "),
            Prefix("  node   0: [mem "),
            Prefix("Initmem setup node 0 [mem "),
            Prefix("On node 0, zone DMA32: "),
            Prefix("[mem 0x08000000-"),
            Prefix("Built 1 zonelists, mobility grouping on.  Total pages: "),
        ],
        drops: "RAMDISK: [mem 0x07dfb000-0x07fdffff]",
        keeps: "  DMA      [mem 0x0000000000001000-0x0000000000ffffff]",
    },
    Rule {
        name: "TSC calibration",
        why: "Linux measures the TSC against the PIT's channel 2 through ports 0x61 and 0x42: the fast calibration runs before the guest starts its PIT, while the VMM's guest time stands still, and the slow one needs 1,000 port reads in 10 ms where a round trip to the VMM takes about 18 us; the TSC is marked unstable and jiffies stay the clocksource (docs/linux.md, \"What still differs\")",
        side: Side::Both,
        lines: &[
            Exact("tsc: Fast TSC calibration using PIT"),
            Prefix("tsc: Detected "),
            Prefix("clocksource: tsc-early: "),
            Exact("clocksource: Switched to clocksource tsc-early"),
            Prefix("sched_clock: Marking stable "),
            Prefix("clocksource: tsc: "),
            Exact("clocksource: Switched to clocksource tsc"),
            Exact("tsc: Fast TSC calibration failed"),
            Exact("tsc: Unable to calibrate against PIT"),
            Exact("tsc: No reference (HPET/PMTIMER) available"),
            Exact("tsc: Marking TSC unstable due to could not calculate TSC khz"),
            Prefix("Calibrating delay loop... "),
            Exact("clocksource: Switched to clocksource refined-jiffies"),
        ],
        drops: "tsc: Unable to calibrate against PIT",
        keeps: "clocksource: jiffies: mask: 0xffffffff max_cycles: 0xffffffff, max_idle_ns: 7645041785100000 ns",
    },
    Rule {
        name: "interrupt count",
        why: "the bare machine's IOAPIC adds 24 interrupts to the 8259's",
        side: Side::Both,
        lines: &[Prefix("NR_IRQS: 4352, nr_irqs: ")],
        drops: "NR_IRQS: 4352, nr_irqs: 48, preallocated irqs: 16",
        keeps: "rcu: Preemptible hierarchical RCU implementation.",
    },
    Rule {
        name: "VGA console",
        why: "SeaBIOS reports a VGA text mode in the boot parameters; the VMM's zero page reports no display",
        side: Side::Both,
        lines: &[
            Exact("Console: colour VGA+ 80x25"),
            Exact("Console: colour dummy device 80x25"),
        ],
        drops: "Console: colour dummy device 80x25",
        keeps: "printk: console [ttyS0] enabled",
    },
    Rule {
        name: "keyboard controller",
        why: "the bare machine has an i8042 with a keyboard; the VMM models only its reset line",
        side: Side::Both,
        lines: &[
            Exact("serio: i8042 KBD port at 0x60,0x64 irq 1"),
            Exact("input: AT Translated Set 2 keyboard as /devices/platform/i8042/serio0/input/input0"),
            Exact("i8042: No controller found"),
        ],
        drops: "i8042: No controller found",
        keeps: "rtc_cmos 00:00: RTC can wake from S4",
    },
];

/// Lines each filter or rule left out, bare and seL4.
#[derive(Debug, PartialEq, Eq)]
pub struct Dropped {
    pub name: &'static str,
    pub bare: usize,
    pub sel4: usize,
}

/// How the seL4 console compares with the bare one.
#[derive(Debug, PartialEq, Eq)]
pub struct Comparison {
    /// Compared lines equal to the bare console's, in order, from the
    /// first.
    pub matched: usize,
    /// Lines compared on each side (after the filters and rules).
    pub compared: (usize, usize),
    /// The first seL4 line that differs from the bare one, and the bare
    /// line there (an empty string: that console ended).
    pub first_difference: Option<(String, String)>,
    /// Per filter and rule, the lines it left out.
    pub dropped: Vec<Dropped>,
    /// The e820 map's and `last_pfn`'s lines on seL4, checked against the
    /// VMM's layout.
    pub layout_lines: usize,
}

impl Comparison {
    /// The consoles are equal but for the filters' and rules' lines.
    pub fn equal(&self) -> bool {
        self.first_difference.is_none() && self.compared.0 == self.compared.1
    }

    /// "name bare/seL4" for each filter and rule.
    pub fn dropped_summary(&self) -> String {
        self.dropped
            .iter()
            .map(|d| format!("{} {}/{}", d.name, d.bare, d.sel4))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The e820 map's lines Linux prints for the VMM's map (linux_boot's
/// zero page): low RAM, RAM from 1 MiB to the VMM's reserved top, the top.
fn expected_e820(ram: u64) -> [String; 3] {
    let usable = ram - vmm_core::linux_boot::LINUX_RESERVED;
    let line = |from: u64, to: u64, what: &str| {
        format!("BIOS-e820: [mem {from:#018x}-{:#018x}] {what}", to - 1)
    };
    [
        line(0, 0xa_0000, "usable"),
        line(0x10_0000, usable, "usable"),
        line(usable, ram, "reserved"),
    ]
}

/// The console's lines (line ends trimmed) without those the rules for
/// `side`, then the bare comparison's filters, name; counted per rule
/// (`RULES`' order, then `linux::FILTER`'s).
fn apply_rules(console: &str, side: Side, counts: &mut [usize]) -> Vec<String> {
    console
        .lines()
        .map(str::trim_end)
        .filter(|l| {
            let rule = RULES.iter().position(|r| r.drops_from(side, l));
            let filter = || {
                let name = linux::filtered(l)?;
                linux::FILTER.iter().position(|(n, _)| *n == name)
            };
            match rule.or_else(|| filter().map(|i| RULES.len() + i)) {
                Some(i) => {
                    counts[i] += 1;
                    false
                }
                None => true,
            }
        })
        .map(str::to_string)
        .collect()
}

/// The bare console with the firmware's e820 map and `last_pfn` replaced
/// by what Linux prints for the VMM's layout: those lines are compared,
/// against the layout rather than against the firmware's.
fn with_vmm_layout(bare: Vec<String>, ram: u64) -> Vec<String> {
    let usable_pages = (ram - vmm_core::linux_boot::LINUX_RESERVED) >> 12;
    let mut out = Vec::with_capacity(bare.len());
    let mut in_map = false;
    for line in bare {
        if line.starts_with("BIOS-e820:") {
            if !in_map {
                out.extend(expected_e820(ram));
            }
            in_map = true;
            continue;
        }
        in_map = false;
        match line.strip_prefix("last_pfn = ") {
            Some(rest) => out.push(format!(
                "last_pfn = {usable_pages:#x} {}",
                rest.split_once(' ').map_or("", |(_, tail)| tail)
            )),
            None => out.push(line),
        }
    }
    out
}

/// Compares the whole seL4 console with the bare one, line by line: both
/// through the bare comparison's filters, then [`RULES`] (each on its
/// side); the bare e820 map and `last_pfn` stand for the VMM's layout
/// ([`with_vmm_layout`]). Every line left must be equal, in order.
pub fn compare(bare: &str, sel4: &str, ram: u64) -> Comparison {
    let names: Vec<&'static str> = RULES
        .iter()
        .map(|r| r.name)
        .chain(linux::FILTER.iter().map(|(name, _)| *name))
        .collect();
    let (mut dropped_b, mut dropped_s) = (vec![0; names.len()], vec![0; names.len()]);
    let b = with_vmm_layout(apply_rules(bare, Side::Bare, &mut dropped_b), ram);
    let s = apply_rules(sel4, Side::Sel4, &mut dropped_s);
    let layout_lines = s
        .iter()
        .filter(|l| l.starts_with("BIOS-e820:") || l.starts_with("last_pfn = "))
        .count();
    let matched = b.iter().zip(&s).take_while(|(x, y)| x == y).count();
    let first_difference = if matched < b.len().max(s.len()) {
        Some((
            s.get(matched).cloned().unwrap_or_default(),
            b.get(matched).cloned().unwrap_or_default(),
        ))
    } else {
        None
    };
    Comparison {
        matched,
        compared: (b.len(), s.len()),
        first_difference,
        dropped: names
            .into_iter()
            .zip(dropped_b.into_iter().zip(dropped_s))
            .map(|(name, (bare, sel4))| Dropped { name, bare, sel4 })
            .collect(),
        layout_lines,
    }
}

pub fn test(kernel: &KernelBuild) -> Result<String, String> {
    let k = linux::build_all()?;
    let bare = linux::boot(&k.padded, &k.initramfs, qemu::Echo::Quiet)?;
    let run = boot(kernel, &k, qemu::Echo::Quiet)?;
    let console = String::from_utf8_lossy(run.com2.as_deref().unwrap_or_default()).into_owned();
    let saved = paths::target().join("linux");
    let ending = || {
        format!(
            "{} (console: {}, VMM: {}):\n{}",
            run.outcome,
            saved.join("console-sel4.txt").display(),
            saved.join("vmm-sel4.txt").display(),
            crate::process::tail(&run.serial, 20)
        )
    };
    // The run ends as the bare one does: Linux reboots, the VMM ends the
    // run on the reset with its pass status.
    if let Some(stopped) = run.serial.lines().find(|l| l.contains(STOPPED)) {
        return Err(format!(
            "the wedge stopped Linux on seL4 (`{}`), it did not reboot; {}",
            stopped.trim(),
            ending()
        ));
    }
    if !run.serial.lines().any(|l| l.starts_with(RESET)) || run.outcome != qemu::Outcome::Passed {
        return Err(format!(
            "Linux on seL4 did not end by resetting the machine: {}",
            ending()
        ));
    }
    // The virtual CPU answers the MSRs Linux reads as QEMU does: Linux
    // warns about none (the bare boot does not).
    if let Some(l) = console.lines().find(|l| l.starts_with(MSR_WARNING)) {
        return Err(format!(
            "Linux on seL4 warned `{}`; {}",
            l.trim_end(),
            ending()
        ));
    }
    for line in [RUN_INIT, RESTART] {
        if !console.lines().any(|l| l.trim_end() == line) {
            return Err(format!("the seL4 console has no `{line}`; {}", ending()));
        }
    }
    // User space's output goes through the 8250's interrupt-driven
    // transmit path: `/init` prints the same lines as on the bare machine.
    let (ours, theirs) = (init_lines(&console), init_lines(&bare.text));
    if ours.is_empty() || ours != theirs {
        return Err(format!(
            "/init's lines on seL4 are not the bare boot's: {} lines, the bare boot {}; ours:\n{}\n(console: {})",
            ours.len(),
            theirs.len(),
            ours.join("\n"),
            saved.join("console-sel4.txt").display()
        ));
    }
    check_rules()?;
    let c = compare(&bare.text, &console, u64::from(RAM_MIB) << 20);
    if !c.equal() {
        let (ours, theirs) = c.first_difference.clone().unwrap_or_default();
        return Err(format!(
            "the seL4 console differs from the bare boot's at compared line {} ({} bare lines compared, {} seL4): `{ours}` where bare has `{theirs}` (empty: the console ended); a line a machine difference explains needs a rule (xtask/src/linux_sel4.rs, RULES); left out, bare/seL4: {} (console: {}); the rules:\n{}",
            c.matched + 1,
            c.compared.0,
            c.compared.1,
            c.dropped_summary(),
            saved.join("console-sel4.txt").display(),
            rules_explained()
        ));
    }
    let lines = console.lines().count();
    Ok(format!(
        "the whole console as the bare boot's: {} lines compared ({} of them the e820 map and last_pfn, checked against the VMM's layout) of {lines}; left out, bare/seL4: {}; /init's {} lines as the bare boot's; the run ended by a reset",
        c.matched,
        c.layout_lines,
        c.dropped_summary(),
        ours.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: u64 = 128 << 20;
    const BARE: &str = "Linux version 6.1\nCommand line: x\nBIOS-provided physical RAM map:\n\
        BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable\n\
        BIOS-e820: [mem 0x0000000000100000-0x0000000007fdffff] usable\n\
        printk: bootconsole [earlyser0] enabled\ntsc: Fast TSC calibration using PIT\n\
        last_pfn = 0x7fe0 max_arch_pfn = 0x400000000\nx86/PAT: Configuration\n\
        found SMP MP-table at [mem 0x000f5ba0-0x000f5baf]\nRAMDISK: [mem 0x07dfb000-0x07fdffff]\n\
        Zone ranges:\nConsole: colour VGA+ 80x25\nrest\n";

    fn ours(e820: &[String], tail: &str) -> String {
        format!(
            "Linux version 6.1\r\nCommand line: x\r\nBIOS-provided physical RAM map:\r\n{}\nprintk: bootconsole [earlyser0] enabled\r\ntsc: Fast TSC calibration failed\r\n{tail}",
            e820.join("\n")
        )
    }

    const OUR_TAIL: &str = "last_pfn = 0x7ef7 max_arch_pfn = 0x400000000\nx86/PAT: Configuration\n\
        RAMDISK: [mem 0x07d12000-0x07ef6fff]\nZone ranges:\nNo local APIC present\n\
        Console: colour dummy device 80x25\nrest\n";

    #[test]
    fn every_rule_drops_its_line_and_keeps_its_neighbour() {
        check_rules().unwrap();
        for rule in RULES {
            // A one-machine rule leaves the other machine's line compared.
            let other = match rule.side {
                Side::Bare => Some(Side::Sel4),
                Side::Sel4 => Some(Side::Bare),
                Side::Both => None,
            };
            if let Some(other) = other {
                assert!(!rule.drops_from(other, rule.drops), "{}", rule.name);
            }
            assert!(!rule.why.is_empty());
        }
    }

    #[test]
    fn the_whole_console_compares_through_the_rules() {
        let c = compare(BARE, &ours(&expected_e820(RAM), OUR_TAIL), RAM);
        assert!(c.equal(), "{c:?}");
        assert_eq!(c.matched, 11, "{c:?}");
        assert_eq!(c.layout_lines, 4, "three e820 lines and last_pfn");
        let named = |n: &str| {
            c.dropped
                .iter()
                .find(|d| d.name == n)
                .map(|d| (d.bare, d.sel4))
        };
        assert_eq!(named("TSC calibration"), Some((1, 1)));
        assert_eq!(named("clock calibration"), Some((0, 0)));
        assert_eq!(named("MP table"), Some((1, 0)));
        assert_eq!(named("no local APIC"), Some((0, 1)));
        assert_eq!(named("memory layout"), Some((1, 1)));
        assert_eq!(named("VGA console"), Some((1, 1)));
        assert_eq!(named("keyboard controller"), Some((0, 0)));
    }

    #[test]
    fn a_line_no_rule_names_is_a_difference() {
        // Only on seL4, in the middle.
        let tail = OUR_TAIL.replace(
            "Zone ranges:\n",
            "Zone ranges:\nUnable to read current time from RTC\n",
        );
        let c = compare(BARE, &ours(&expected_e820(RAM), &tail), RAM);
        assert!(!c.equal());
        assert_eq!(
            c.first_difference,
            Some(("Unable to read current time from RTC".into(), "rest".into()))
        );
        // Missing at the end.
        let tail = OUR_TAIL.replace("rest\n", "");
        let c = compare(BARE, &ours(&expected_e820(RAM), &tail), RAM);
        assert!(!c.equal());
        assert_eq!(c.first_difference, Some((String::new(), "rest".into())));
        // A bare-only rule does not excuse the line on seL4.
        let tail = OUR_TAIL.replace("rest\n", "rest\nProcessors: 1\n");
        assert!(!compare(BARE, &ours(&expected_e820(RAM), &tail), RAM).equal());
    }

    #[test]
    fn a_wrong_map_or_last_pfn_is_a_difference() {
        let mut e820 = expected_e820(RAM);
        e820[2] = e820[2].replace("reserved", "usable");
        let c = compare(BARE, &ours(&e820, OUR_TAIL), RAM);
        assert_eq!(c.matched, 5);
        assert!(c.first_difference.unwrap().0.ends_with("usable"));
        let tail = OUR_TAIL.replace("last_pfn = 0x7ef7", "last_pfn = 0x7fe0");
        let c = compare(BARE, &ours(&expected_e820(RAM), &tail), RAM);
        assert_eq!(c.matched, 7);
        assert!(c
            .first_difference
            .unwrap()
            .0
            .starts_with("last_pfn = 0x7fe0"));
        assert_eq!(
            expected_e820(RAM)[1],
            "BIOS-e820: [mem 0x0000000000100000-0x0000000007ef6fff] usable"
        );
    }

    #[test]
    fn init_lines_run_from_its_first_line_to_done() {
        let console = "Run /init as init process\r\ninit: kernel 6.1\r\nchild 1: 1\r\ninit: done\r\nreboot: machine restart\r\n";
        assert_eq!(
            init_lines(console),
            ["init: kernel 6.1", "child 1: 1", "init: done"]
        );
        assert!(init_lines("init: kernel 6.1\nchild 1: 1\n").is_empty());
        assert!(init_lines("init: done\ninit: kernel 6.1\n").is_empty());
    }
}
