//! What the kernel-feature selftest must print, feature by feature. Each
//! check reads the values the root task printed and judges them here, so a
//! root task that claims "ok" with wrong values still fails.

use previrt_sel4_sys::bitfield::seL4_Fault_VMFault;
use previrt_sel4_sys::config::CONFIG_ROOT_CNODE_SIZE_BITS;

pub struct Check {
    pub name: &'static str,
    pub verify: fn(&str, u32) -> Result<(), String>,
}

fn line<'a>(serial: &'a str, prefix: &str) -> Result<&'a str, String> {
    serial
        .lines()
        .find(|l| l.starts_with(prefix))
        .ok_or_else(|| format!("no line starting with {prefix:?}"))
}

fn expect(serial: &str, text: &str) -> Result<(), String> {
    if serial.contains(text) {
        Ok(())
    } else {
        Err(format!("missing {text:?}"))
    }
}

fn number_after(l: &str, before: &str, after: &str) -> Result<u64, String> {
    let start = l
        .find(before)
        .ok_or_else(|| format!("{before:?} not in {l:?}"))?
        + before.len();
    let rest = &l[start..];
    let end = rest
        .find(after)
        .ok_or_else(|| format!("{after:?} not in {l:?}"))?;
    rest[..end]
        .trim()
        .parse()
        .map_err(|_| format!("not a number in {l:?}"))
}

fn bootinfo(serial: &str, memory_mib: u32) -> Result<(), String> {
    let l = line(serial, "bootinfo: ")?;
    let ram_kib = number_after(l, "RAM totalling ", " KiB")?;
    // The kernel keeps its own image and structures; the rest is handed over.
    let (low, high) = (
        u64::from(memory_mib - 64) << 10,
        u64::from(memory_mib) << 10,
    );
    if !(low..=high).contains(&ram_kib) {
        return Err(format!(
            "{ram_kib} KiB of RAM untyped with -m {memory_mib}: expected {low}..={high}"
        ));
    }
    let slots = line(serial, "bootinfo: free slots")?;
    if number_after(slots, "(", " slots)")? < 1000 {
        return Err(format!("too few free slots: {slots:?}"));
    }
    expect(
        serial,
        &format!("in a root CNode of 2^{CONFIG_ROOT_CNODE_SIZE_BITS} slots"),
    )?;
    expect(serial, "selftest: bootinfo ok")
}

fn memory(serial: &str, _: u32) -> Result<(), String> {
    expect(
        serial,
        "wrote 0x5e140000cafef00d, read back 0x5e140000cafef00d",
    )?;
    expect(serial, "alias 0x40201000 reads 0xa1ebffff35010ff2")?;
    expect(serial, "selftest: memory ok")
}

fn fault(serial: &str, _: u32) -> Result<(), String> {
    expect(
        serial,
        &format!("fault: label {seL4_Fault_VMFault} badge 0x42: VM fault at address 0x50000000"),
    )?;
    expect(serial, "prefetch 0, fsr 0x4")?;
    expect(
        serial,
        "the thread continued and read 0xfeedface0badf00d (badge 0x43)",
    )?;
    expect(serial, "selftest: fault ok")
}

fn irq(serial: &str, _: u32) -> Result<(), String> {
    expect(
        serial,
        "irq: 100 PIT interrupts at 1000 Hz received on a notification and acknowledged",
    )?;
    let l = line(serial, "irq: PIT count read back")?;
    let count = number_after(l, "capability: ", " of")?;
    if count > 1193 {
        return Err(format!("PIT count {count} above its reload value 1193"));
    }
    expect(serial, "selftest: irq ok")
}

fn registers(serial: &str, _: u32) -> Result<(), String> {
    let suspended = line(serial, "registers: suspended the thread at rip")?;
    let moved = line(serial, "registers: set rip to spin_b and resumed")?;
    let counted = number_after(moved, "it counted ", " in spin_b")?;
    if counted == 0 {
        return Err("the thread never ran spin_b".into());
    }
    let frozen = number_after(suspended, "count ", " then")?;
    let stayed = number_after(moved, "spin_a count stayed ", "\n").or_else(|_| {
        moved
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no spin_a count in {moved:?}"))
    })?;
    if frozen != stayed {
        return Err(format!(
            "spin_a count moved from {frozen} to {stayed} after suspend"
        ));
    }
    expect(serial, "selftest: registers ok")
}

/// Kernel patch 0003: a thread marked as having no system calls (a guest's
/// user view) got every one of them, each seL4 number included, as an
/// UnknownSyscall fault with its rsp.
fn no_syscalls(serial: &str, _: u32) -> Result<(), String> {
    // Its verdict line (another line gives the costs, in host time).
    let l = serial
        .lines()
        .find(|l| l.starts_with("no-syscalls: ") && l.contains(" system calls ("))
        .ok_or("no line \"no-syscalls: N of M system calls (...\"")?;
    let seen = number_after(l, "no-syscalls: ", " of ")?;
    let tried = number_after(l, " of ", " system calls")?;
    if seen != tried || tried < 17 {
        return Err(format!("{seen} of {tried} system calls were caught: {l:?}"));
    }
    expect(serial, "selftest: no-syscalls ok")
}

/// Kernel patch 0005: a page where Linux links its image, one in the
/// hole's entry 257 (the wedge's) and the hole's last page hold what was
/// written; a frame or PDPT in seL4's entry (256), or at a non-canonical
/// address, is refused with seL4_InvalidArgument.
fn layout(serial: &str, _: u32) -> Result<(), String> {
    for (vaddr, pattern) in [
        ("0xffffffff81000000", "0x1105000081000000"),
        ("0xffff808000000000", "0x3ed9e00080800000"),
        ("0xffff87fffffff000", "0x1a57000087fff000"),
    ] {
        let l = line(serial, &format!("layout: a frame mapped at {vaddr}: "))?;
        if l.trim_end()
            != format!("layout: a frame mapped at {vaddr}: wrote {pattern}, read back {pattern}")
        {
            return Err(format!(
                "the page at {vaddr} did not hold what was written: {l:?}"
            ));
        }
    }
    for (object, vaddr) in [
        ("a frame", "0xffff800000000000"),
        ("a frame", "0xffff807f80000000"),
        ("a frame", "0xffff807ffffff000"),
        ("a frame", "0x800000000000"),
        ("a frame", "0x1000000000000"),
        ("a PDPT", "0xffff800000000000"),
        ("a PDPT", "0x8000000000000000"),
    ] {
        let prefix = format!("layout: {object} at {vaddr} (");
        let l = line(serial, &prefix)?;
        if !l.ends_with("): refused with seL4_InvalidArgument") {
            return Err(format!("not refused as an invalid address: {l:?}"));
        }
    }
    expect(serial, "selftest: layout ok")
}

pub const CHECKS: &[Check] = &[
    Check {
        name: "bootinfo",
        verify: bootinfo,
    },
    Check {
        name: "memory",
        verify: memory,
    },
    Check {
        name: "fault-ipc",
        verify: fault,
    },
    Check {
        name: "interrupts",
        verify: irq,
    },
    Check {
        name: "registers",
        verify: registers,
    },
    Check {
        name: "no-syscalls",
        verify: no_syscalls,
    },
    Check {
        name: "layout",
        verify: layout,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_after_finds_the_value() {
        assert_eq!(number_after("a 12 KiB", "a ", " KiB"), Ok(12));
        assert!(number_after("a x KiB", "a ", " KiB").is_err());
    }

    #[test]
    fn no_syscalls_reads_its_verdict_not_the_costs() {
        let costs = "no-syscalls: costs: a system call round trip 1888 ticks\n";
        let all = "no-syscalls: 17 of 17 system calls (...)\nselftest: no-syscalls ok\n";
        let lost = "no-syscalls: 16 of 17 system calls (...)\nselftest: no-syscalls ok\n";
        assert_eq!(no_syscalls(&format!("{costs}{all}"), 512), Ok(()));
        assert!(no_syscalls(&format!("{costs}{lost}"), 512).is_err());
        assert!(no_syscalls(costs, 512).is_err());
    }

    #[test]
    fn layout_fails_on_a_mapping_in_sel4s_entry_or_a_lost_write() {
        let good = "layout: a frame mapped at 0xffffffff81000000: wrote 0x1105000081000000, read back 0x1105000081000000\n\
            layout: a frame mapped at 0xffff808000000000: wrote 0x3ed9e00080800000, read back 0x3ed9e00080800000\n\
            layout: a frame mapped at 0xffff87fffffff000: wrote 0x1a57000087fff000, read back 0x1a57000087fff000\n\
            layout: a frame at 0xffff800000000000 (x): refused with seL4_InvalidArgument\n\
            layout: a frame at 0xffff807f80000000 (x): refused with seL4_InvalidArgument\n\
            layout: a frame at 0xffff807ffffff000 (x): refused with seL4_InvalidArgument\n\
            layout: a frame at 0x800000000000 (x): refused with seL4_InvalidArgument\n\
            layout: a frame at 0x1000000000000 (x): refused with seL4_InvalidArgument\n\
            layout: a PDPT at 0xffff800000000000 (x): refused with seL4_InvalidArgument\n\
            layout: a PDPT at 0x8000000000000000 (x): refused with seL4_InvalidArgument\n\
            selftest: layout ok\n";
        assert_eq!(layout(good, 512), Ok(()));
        let mapped = good.replace(
            "0xffff807f80000000 (x): refused with seL4_InvalidArgument",
            "0xffff807f80000000 (x): mapped",
        );
        assert!(layout(&mapped, 512)
            .unwrap_err()
            .contains("0xffff807f80000000"));
        let other = good.replace(
            "0x1000000000000 (x): refused with seL4_InvalidArgument",
            "0x1000000000000 (x): refused with seL4_DeleteFirst",
        );
        assert!(layout(&other, 512).is_err());
        // The kernel before entry 257 was the user's: no page there.
        let no_wedge_entry = good.replace(
            "layout: a frame mapped at 0xffff808000000000: wrote 0x3ed9e00080800000, read back 0x3ed9e00080800000\n",
            "",
        );
        assert!(layout(&no_wedge_entry, 512)
            .unwrap_err()
            .contains("0xffff808000000000"));
        let last_page_mapped = good.replace(
            "0xffff807ffffff000 (x): refused with seL4_InvalidArgument",
            "0xffff807ffffff000 (x): mapped",
        );
        assert!(layout(&last_page_mapped, 512)
            .unwrap_err()
            .contains("0xffff807ffffff000"));
        let lost = good.replace("read back 0x1105000081000000", "read back 0x0");
        assert!(layout(&lost, 512)
            .unwrap_err()
            .contains("0xffffffff81000000"));
    }

    #[test]
    fn bootinfo_rejects_too_little_ram() {
        let serial =
            "bootinfo: 3 untyped caps: 2 RAM totalling 1024 KiB (largest 2^20 bytes), 1 device\n";
        assert!(bootinfo(serial, 512).unwrap_err().contains("1024 KiB"));
    }
}
