//! Boots seL4 and a root task in QEMU and collects the serial console.
//!
//! The run ends when the system writes to the `isa-debug-exit` port (QEMU
//! exits with 2V+1: 1 is pass, 3 fail), when QEMU stops for another reason,
//! or at the timeout, which is an outcome of its own.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Machine<'a> {
    /// A multiboot kernel: seL4, or a guest booted bare.
    pub kernel: &'a Path,
    /// The boot module: the root task under seL4.
    pub module: Option<&'a Path>,
    /// The kernel's command line.
    pub append: Option<&'a str>,
    pub memory_mib: u32,
    pub accel: &'a str,
    /// Deterministic time: the TSC counts executed instructions
    /// (`-icount shift=0`), and idle time jumps to the next timer deadline.
    pub icount: bool,
}

/// Where serial output goes while it is collected.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    Terminal,
    Quiet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    /// QEMU exited with a status the exit device does not produce.
    Exited(Option<i32>),
    TimedOut(Duration),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Passed => f.write_str("a pass status on the exit port"),
            Outcome::Failed => f.write_str("a failure status on the exit port"),
            Outcome::Exited(Some(code)) => write!(
                f,
                "QEMU exiting with status {code} (no exit-port write: a crash or a reboot?)"
            ),
            Outcome::Exited(None) => f.write_str("QEMU killed by a signal"),
            Outcome::TimedOut(t) => write!(
                f,
                "a timeout: nothing ended the run within {} s",
                t.as_secs()
            ),
        }
    }
}

/// Serial bytes and the completed lines with their times, as they arrive.
type Collected = (Vec<u8>, Vec<(Duration, String)>);

pub struct Run {
    pub outcome: Outcome,
    /// The serial bytes exactly as the system wrote them.
    pub bytes: Vec<u8>,
    /// The serial text (CRs removed), with QEMU's own errors appended.
    pub serial: String,
    pub elapsed: Duration,
    /// When each serial line was complete, from QEMU's start.
    pub lines: Vec<(Duration, String)>,
}

impl Run {
    /// Seconds from QEMU's start to the first line containing `marker`.
    pub fn time_to(&self, marker: &str) -> Option<Duration> {
        self.lines
            .iter()
            .find(|(_, l)| l.contains(marker))
            .map(|(t, _)| *t)
    }
}

impl Machine<'_> {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", self.accel, "-cpu", "qemu64,+fsgsbase", "-m"])
            .arg(self.memory_mib.to_string())
            .args([
                "-display",
                "none",
                "-serial",
                "stdio",
                "-monitor",
                "none",
                "-no-reboot",
                "-nic",
                "none",
            ])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-kernel")
            .arg(self.kernel);
        if let Some(module) = self.module {
            cmd.arg("-initrd").arg(module);
        }
        if let Some(append) = self.append {
            cmd.arg("-append").arg(append);
        }
        if self.icount {
            cmd.args(["-icount", "shift=0,align=off,sleep=off"]);
        }
        cmd
    }

    pub fn boot(&self, timeout: Duration, echo: Echo) -> Result<Run, String> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
        let collected: Arc<Mutex<Collected>> = Arc::default();
        let mut stdout = child.stdout.take().ok_or("QEMU has no stdout pipe")?;
        let sink = Arc::clone(&collected);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut line = Vec::new();
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if echo == Echo::Terminal {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
                let Ok(mut guard) = sink.lock() else { break };
                guard.0.extend_from_slice(&buf[..n]);
                for &b in &buf[..n] {
                    if b == b'\n' {
                        let text = String::from_utf8_lossy(&line)
                            .trim_end_matches('\r')
                            .to_string();
                        guard.1.push((started.elapsed(), text));
                        line.clear();
                    } else {
                        line.push(b);
                    }
                }
            }
        });
        let mut stderr = child.stderr.take().ok_or("QEMU has no stderr pipe")?;
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });

        let outcome = loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    break match status.code() {
                        Some(1) => Outcome::Passed,
                        Some(3) => Outcome::Failed,
                        code => Outcome::Exited(code),
                    }
                }
                Ok(None) if started.elapsed() >= timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Outcome::TimedOut(timeout);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("waiting for QEMU: {e}")),
            }
        };
        let elapsed = started.elapsed();
        let _ = reader.join();
        let qemu_errors = errors.join().unwrap_or_default();
        let (bytes, lines) = match Arc::try_unwrap(collected) {
            Ok(m) => m.into_inner().unwrap_or_default(),
            Err(shared) => shared.lock().map(|g| g.clone()).unwrap_or_default(),
        };
        let mut serial = String::from_utf8_lossy(&bytes).replace('\r', "");
        if !qemu_errors.trim().is_empty() {
            serial.push_str("\n[qemu stderr]\n");
            serial.push_str(&qemu_errors);
        }
        Ok(Run {
            outcome,
            bytes,
            serial,
            elapsed,
            lines,
        })
    }
}
