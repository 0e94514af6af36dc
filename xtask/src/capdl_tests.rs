//! QEMU tests of the CapDL loader: small systems built from the test task,
//! each checking one promise of the loader.

use crate::kernel::KernelBuild;
use crate::process::tail;
use crate::system::{self, Task};
use crate::{generated, qemu, tasks};

const IMAGE: &str = "capdl-test-task";
const PING_PONG_CAPS: [&str; 2] = ["pong", "ping"];

fn build_task() -> Result<Vec<u8>, String> {
    let path = tasks::build_sel4_binary(IMAGE, &[])?;
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The test task's console (capdl/test-task): COM1's ports in slot 3.
pub const CONSOLE_CAP: (u64, &str) = (3, "console");
const CONSOLE_OBJECT: &str = "  console = io_ports (ports: [0x3f8..0x3ff])\n";

/// A whole spec: extra objects, the tasks (each given the console), and
/// extra caps.
fn spec(extra_objects: &str, tasks: &[Task]) -> Result<String, String> {
    let (mut objects, mut caps) = (format!("{CONSOLE_OBJECT}{extra_objects}"), String::new());
    for task in tasks {
        let (o, c) = system::task_spec(task)?;
        objects.push_str(&o);
        caps.push_str(&c);
    }
    Ok(format!(
        "arch x86_64\n\nobjects {{\n{objects}}}\n\ncaps {{\n{caps}}}\n"
    ))
}

/// Two tasks over one endpoint; `extra` objects are added (for the memory test).
fn ping_pong(elf: &[u8], extra: &str) -> Result<String, String> {
    let console = (CONSOLE_CAP.0, CONSOLE_CAP.1.to_string());
    let pong_caps = [(1, "channel (RW)".to_string()), console.clone()];
    let ping_caps = [
        (1, "channel (W, G, badge: 7)".to_string()),
        (2, "exit_port".to_string()),
        console,
    ];
    let tasks = [
        Task {
            name: PING_PONG_CAPS[0],
            image: IMAGE,
            elf,
            prio: 100,
            init: &[1],
            fault_ep: None,
            caps: &pong_caps,
        },
        Task {
            name: PING_PONG_CAPS[1],
            image: IMAGE,
            elf,
            prio: 100,
            init: &[2],
            fault_ep: None,
            caps: &ping_caps,
        },
    ];
    spec(
        &format!("  channel = ep\n  exit_port = io_ports (ports: [0xf4..0xf4])\n{extra}"),
        &tasks,
    )
}

fn lacking(elf: &[u8]) -> Result<String, String> {
    let console = (CONSOLE_CAP.0, CONSOLE_CAP.1.to_string());
    let judge_caps = [
        (1, "report (RW)".to_string()),
        (2, "exit_port".to_string()),
        console.clone(),
    ];
    let lacking_caps = [(1, "report (W, badge: 3)".to_string()), console];
    let tasks = [
        Task {
            name: "judge",
            image: IMAGE,
            elf,
            prio: 100,
            init: &[4],
            fault_ep: None,
            caps: &judge_caps,
        },
        Task {
            name: "lacking",
            image: IMAGE,
            elf,
            prio: 100,
            init: &[3],
            fault_ep: None,
            caps: &lacking_caps,
        },
    ];
    spec(
        "  report = ep\n  exit_port = io_ports (ports: [0xf4..0xf4])\n",
        &tasks,
    )
}

fn run(kernel: &KernelBuild, name: &str, spec: &str, elf: &[u8]) -> Result<qemu::Run, String> {
    let bundle = system::bundle(name, spec, &[(IMAGE, elf)])?;
    system::boot(kernel, &bundle, 512, None, qemu::Echo::Quiet)
}

fn expect(run: &qemu::Run, outcome: qemu::Outcome, lines: &[&str]) -> Result<String, String> {
    let missing: Vec<&&str> = lines.iter().filter(|l| !run.serial.contains(**l)).collect();
    if run.outcome != outcome || !missing.is_empty() {
        return Err(format!(
            "ended with {} (expected {outcome}), missing {missing:?}:\n{}",
            run.outcome,
            tail(&run.serial, 25)
        ));
    }
    Ok(format!("{:.2} s", run.elapsed.as_secs_f64()))
}

/// The loader's tests ([`all`]), in the order they record.
pub const NAMES: [&str; 3] = [
    "capdl: two tasks from a spec exchange 1,000 messages",
    "capdl: a capability the spec does not name is not reachable",
    "capdl: a spec too large for memory stops and says how much is missing",
];

/// The generated system's tests ([`generated_system`]).
pub const GENERATED_NAMES: [&str; 2] = [
    "guest on seL4: the padded guest's self-tests pass, timer included",
    "guest on seL4: its console (COM2) is identical to the bare run, line for line",
];

pub fn all(kernel: &KernelBuild, record: &mut dyn FnMut(&str, Result<String, String>)) {
    let elf = match build_task() {
        Ok(elf) => elf,
        Err(e) => {
            for name in NAMES {
                record(name, Err(format!("the test task does not build: {e}")));
            }
            return;
        }
    };
    record(
        NAMES[0],
        ping_pong(&elf, "")
            .and_then(|s| run(kernel, "ping-pong", &s, &elf))
            .and_then(|r| {
                expect(
                    &r,
                    qemu::Outcome::Passed,
                    &[
                        "loader: started 2 of 2 threads",
                        "ping: 1000 calls answered, 0 wrong",
                    ],
                )
            }),
    );
    record(
        NAMES[1],
        lacking(&elf)
            .and_then(|s| run(kernel, "lacking", &s, &elf))
            .and_then(|r| {
                expect(
                &r,
                qemu::Outcome::Passed,
                &[
                    "lacking: writing the exit port without its capability: seL4_InvalidCapability",
                    "judge: the kernel refused the invocation",
                ],
            )
            }),
    );
    record(
        NAMES[2],
        ping_pong(&elf, "  hoard = ut (29 bits)\n")
            .and_then(|s| run(kernel, "too-large", &s, &elf))
            .and_then(|r| {
                expect(
                    &r,
                    qemu::Outcome::Failed,
                    &[
                        "loader: error: the spec does not fit: it needs",
                        "KiB missing",
                    ],
                )
            }),
    );
}

/// The guest's self-tests the seL4 system runs (vmm-server's GUEST_CMDLINE):
/// every one, `timer` included.
pub const SEL4_GUEST_TESTS: &str = "tests=all";

/// The generated system of capdl/examples/system.toml (64 MiB guest): the
/// loader builds it, the VMM loads the padded guest, the wedge rewrites its
/// sites, and the guest's self-tests pass on seL4. The guest's console is
/// what the VMM wrote to COM2, compared byte for byte (bench figures aside)
/// with what the same image prints on COM1 when it boots bare.
pub fn generated_system(
    kernel: &KernelBuild,
    record: &mut dyn FnMut(&str, Result<String, String>),
) {
    let sel4 = generated::description_with_ram(64)
        .and_then(|d| generated::bundle("generated-64", &d))
        .and_then(|bundle| {
            system::boot(
                kernel,
                &bundle,
                512,
                Some(crate::test::GUEST_TEST_ICOUNT_SHIFT),
                qemu::Echo::Quiet,
            )
        });
    let sel4 = match sel4 {
        Ok(run) => run,
        Err(e) => {
            for name in GENERATED_NAMES {
                record(name, Err(e.clone()));
            }
            return;
        }
    };
    let console = sel4.com2.clone().unwrap_or_default();
    let summary = "selftest: 7 passed, 0 failed\n";
    let passed = expect(
        &sel4,
        qemu::Outcome::Passed,
        &[
            // The VMM's main and interrupt threads (the VMM starts the guest).
            "loader: started 2 of 3 threads",
            "vmm-server: bring-up passed",
            "entering through the wedge",
            "vmm-server: the guest's console goes to COM2",
            "exceptions reflected into the guest",
            "interrupts taken after a site",
            "seL4 mappings justified by the guest's page tables",
            "vmm-server: guest0: exited with status 1",
        ],
    )
    .and_then(|time| {
        if String::from_utf8_lossy(&console).contains(summary) {
            Ok(time)
        } else {
            Err(format!(
                "no {summary:?} on the guest's console (COM2); it holds:\n{}",
                tail(&String::from_utf8_lossy(&console), 25)
            ))
        }
    });
    record(GENERATED_NAMES[0], passed);
    let bare = crate::images::build(crate::images::Image::Padded)
        .and_then(|elf| crate::test::boot_guest(&elf, SEL4_GUEST_TESTS));
    let same = bare.and_then(|bare| {
        if console.is_empty() {
            return Err("nothing on the guest's console (COM2) in the seL4 run".into());
        }
        // The guest's banner on COM1 would mean its bytes leaked there.
        if sel4.serial.contains("guest: previrt test kernel") {
            return Err("the guest's console is also on the kernel's console (COM1)".into());
        }
        match crate::test::first_difference(&console, &bare.bytes, ["seL4", "bare"]) {
            None => Ok(format!(
                "{} lines, {} bytes",
                console.iter().filter(|&&b| b == b'\n').count(),
                console.len()
            )),
            Some(d) => Err(d),
        }
    });
    record(GENERATED_NAMES[1], same);
}
