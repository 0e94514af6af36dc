//! QEMU tests of the CapDL loader: small systems built from the test task,
//! each checking one promise of the loader.

use capdl::build::{cap, BuildError, Builder, ObjectId, Task};
use capdl::elf::Elf;
use capdl::model::{Cap, ObjectKind, Rights, Slot};
use capdl::Spec;

use crate::kernel::KernelBuild;
use crate::process::tail;
use crate::{generated, qemu, system, tasks};

const IMAGE: &str = "capdl-test-task";

fn build_task() -> Result<Vec<u8>, String> {
    let path = tasks::build_sel4_binary(IMAGE, &[])?;
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The test task's layout (it links like a root task): its image in
/// 0x400000..0x5ff000 and its IPC buffer in the last page of the 2 MiB one
/// page table maps; it brings its own stack.
const IMAGE_REGION: std::ops::Range<u64> = 0x40_0000..0x5f_f000;
const IPC_BUFFER: u64 = 0x5f_f000;

/// The test task's CSpace (capdl/test-task): slot 1 its endpoint, slot 2
/// the exit port, slot 3 COM1's ports, its console.
const ENDPOINT_SLOT: u64 = 1;
const EXIT_PORT_SLOT: u64 = 2;
const CONSOLE_SLOT: u64 = 3;

/// Its roles (the first start register).
const PONG: u64 = 1;
const PING: u64 = 2;
const LACKING: u64 = 3;
const JUDGE: u64 = 4;

const RW: Rights = Rights(Rights::READ.0 | Rights::WRITE.0);

/// A system of test tasks: the objects they share, then each task.
struct System {
    b: Builder,
    elf: Elf,
    console: ObjectId,
}

impl System {
    /// A system with COM1's ports, which every task is given as its console.
    fn new(elf: &Elf) -> Result<System, String> {
        let elf = elf.clone();
        let mut b = Builder::new();
        let console = b
            .object(
                "console",
                ObjectKind::IoPorts {
                    first: 0x3f8,
                    last: 0x3ff,
                },
            )
            .map_err(|e| e.to_string())?;
        Ok(System { b, elf, console })
    }

    /// The test task as `name` in `role`, with `caps` in its CNode besides
    /// its console.
    fn task(&mut self, name: &str, role: u64, caps: &[(u64, Cap)]) -> Result<(), BuildError> {
        let task = self.b.task(&Task {
            name,
            image: IMAGE,
            elf: &self.elf,
            image_region: IMAGE_REGION,
            ipc_buffer: IPC_BUFFER,
            stack: None,
            cnode_bits: 4,
            prio: 100,
            max_prio: 100,
            fault_ep: None,
            init: &[role],
        })?;
        let console = (CONSOLE_SLOT, cap(self.console, Rights::NONE));
        for &(slot, cap) in caps.iter().chain([&console]) {
            self.b.cap(task.cnode, Slot::Index(slot), cap)?;
        }
        task.vspace.finish(&mut self.b)
    }

    fn finish(self) -> Result<Spec, String> {
        self.b.finish().map_err(|e| format!("the test system: {e}"))
    }
}

/// QEMU's isa-debug-exit port, for the task that ends the run.
fn exit_port(b: &mut Builder) -> Result<ObjectId, BuildError> {
    b.object(
        "exit_port",
        ObjectKind::IoPorts {
            first: 0xf4,
            last: 0xf4,
        },
    )
}

/// Two tasks over one endpoint; with `hoard`, an untyped of 512 MiB too
/// (more than the machine has free).
fn ping_pong(elf: &Elf, hoard: bool) -> Result<Spec, String> {
    let mut s = System::new(elf)?;
    let mut build = || -> Result<(), BuildError> {
        let channel = s.b.object("channel", ObjectKind::Endpoint)?;
        let exit = exit_port(&mut s.b)?;
        if hoard {
            let untyped = ObjectKind::Untyped {
                size_bits: 29,
                paddr: None,
            };
            s.b.object("hoard", untyped)?;
        }
        s.task("pong", PONG, &[(ENDPOINT_SLOT, cap(channel, RW))])?;
        let send = Cap {
            badge: 7,
            ..cap(channel, Rights(Rights::WRITE.0 | Rights::GRANT.0))
        };
        s.task(
            "ping",
            PING,
            &[
                (ENDPOINT_SLOT, send),
                (EXIT_PORT_SLOT, cap(exit, Rights::NONE)),
            ],
        )
    };
    build().map_err(|e| format!("the test system: {e}"))?;
    s.finish()
}

/// A task that lacks the exit port's cap and tries it; a judge that has it.
fn lacking(elf: &Elf) -> Result<Spec, String> {
    let mut s = System::new(elf)?;
    let mut build = || -> Result<(), BuildError> {
        let report = s.b.object("report", ObjectKind::Endpoint)?;
        let exit = exit_port(&mut s.b)?;
        s.task(
            "judge",
            JUDGE,
            &[
                (ENDPOINT_SLOT, cap(report, RW)),
                (EXIT_PORT_SLOT, cap(exit, Rights::NONE)),
            ],
        )?;
        let tell = Cap {
            badge: 3,
            ..cap(report, Rights::WRITE)
        };
        s.task("lacking", LACKING, &[(ENDPOINT_SLOT, tell)])
    };
    build().map_err(|e| format!("the test system: {e}"))?;
    s.finish()
}

fn run(kernel: &KernelBuild, name: &str, spec: &Spec, elf: &[u8]) -> Result<qemu::Run, String> {
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
    "guest on seL4: the padded guest's self-tests pass, timer and user processes included",
    "guest on seL4: its console (COM2) is identical to the bare run, line for line",
];

pub fn all(kernel: &KernelBuild, record: &mut dyn FnMut(&str, Result<String, String>)) {
    let task = build_task().and_then(|bytes| {
        let elf = capdl::elf::read(&bytes).map_err(|e| format!("{IMAGE}: {e}"))?;
        Ok((bytes, elf))
    });
    let (bytes, elf) = match task {
        Ok(task) => task,
        Err(e) => {
            for name in NAMES {
                record(name, Err(format!("the test task does not build: {e}")));
            }
            return;
        }
    };
    record(
        NAMES[0],
        ping_pong(&elf, false)
            .and_then(|s| run(kernel, "ping-pong", &s, &bytes))
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
            .and_then(|s| run(kernel, "lacking", &s, &bytes))
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
        ping_pong(&elf, true)
            .and_then(|s| run(kernel, "too-large", &s, &bytes))
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

/// The guest's self-tests the seL4 system runs (the description's default `cmdline`):
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
    let summary = format!(
        "selftest: {} passed, 0 failed\n",
        crate::test::GUEST_TESTS.len()
    );
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
            // Its processes ran in user views.
            "entries into user mode",
            "vmm-server: guest0: exited with status 1",
        ],
    )
    .and_then(|time| {
        if String::from_utf8_lossy(&console).contains(&summary) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use capdl::elf::Segment;

    /// The test task's shape: code, then data and bss.
    fn elf() -> Elf {
        let segment = |index, vaddr: u64, memsz, writable| Segment {
            index,
            vaddr,
            paddr: vaddr,
            offset: vaddr - 0x3f_f000,
            filesz: 0x800,
            memsz,
            writable,
            executable: !writable,
        };
        Elf {
            entry: 0x40_0000,
            segments: vec![
                segment(0, 0x40_0000, 0x1800, false),
                segment(1, 0x40_2000, 0x5000, true),
            ],
        }
    }

    fn cnode_of<'a>(spec: &'a Spec, task: &str) -> &'a capdl::spec::Object {
        let name = format!("{task}_cnode");
        spec.objects.iter().find(|o| o.name == name).unwrap()
    }

    fn target<'a>(spec: &'a Spec, cap: &Cap) -> &'a str {
        &spec.objects[cap.target as usize].name
    }

    #[test]
    fn ping_calls_pong_and_may_exit() {
        let spec = ping_pong(&elf(), false).unwrap();
        let ping = cnode_of(&spec, "ping");
        let call = ping.slots[&Slot::Index(ENDPOINT_SLOT)];
        assert_eq!((target(&spec, &call), call.badge), ("channel", 7));
        assert!(!call.rights.contains(Rights::READ));
        assert_eq!(
            target(&spec, &ping.slots[&Slot::Index(EXIT_PORT_SLOT)]),
            "exit_port"
        );
        let pong = cnode_of(&spec, "pong");
        assert!(!pong.slots.contains_key(&Slot::Index(EXIT_PORT_SLOT)));
        for cnode in [ping, pong] {
            assert_eq!(
                target(&spec, &cnode.slots[&Slot::Index(CONSOLE_SLOT)]),
                "console"
            );
        }
        assert!(!spec.objects.iter().any(|o| o.name == "hoard"));
        let hoarding = ping_pong(&elf(), true).unwrap();
        assert!(hoarding.bytes_from_boot_untypeds() >= 512 << 20);
    }

    #[test]
    fn the_lacking_task_has_no_exit_port() {
        let spec = lacking(&elf()).unwrap();
        let lacking = cnode_of(&spec, "lacking");
        assert_eq!(
            lacking.slots.keys().copied().collect::<Vec<_>>(),
            [Slot::Index(ENDPOINT_SLOT), Slot::Index(CONSOLE_SLOT)]
        );
        let judge = cnode_of(&spec, "judge");
        assert!(judge.slots.contains_key(&Slot::Index(EXIT_PORT_SLOT)));
    }

    #[test]
    fn a_task_image_outside_its_page_table_is_refused() {
        let mut elf = elf();
        elf.segments[1].memsz = 0x20_0000;
        let err = ping_pong(&elf, false).unwrap_err();
        assert!(err.contains("outside 0x400000..0x5ff000"), "{err}");
    }
}
