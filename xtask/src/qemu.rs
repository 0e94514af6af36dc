//! Boots seL4 and a root task in QEMU and collects the serial consoles.
//!
//! COM1 is QEMU's stdout: the kernel's debug console (seL4's and every
//! task's lines), or a bare guest's console. COM2, when asked for, goes to a
//! file under `target/qemu/`: on seL4 the VMM writes the guest's console
//! there, so it arrives byte for byte, apart from everyone else's lines.
//!
//! The run ends when the system writes to the `isa-debug-exit` port (QEMU
//! exits with 2V+1: 1 is pass, 3 fail), when QEMU stops for another reason,
//! or at the timeout, which is an outcome of its own.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::paths;

pub struct Machine<'a> {
    /// A multiboot kernel: seL4, or a guest booted bare.
    pub kernel: &'a Path,
    /// The boot module: the root task under seL4.
    pub module: Option<&'a Path>,
    /// The kernel's command line.
    pub append: Option<&'a str>,
    pub memory_mib: u32,
    pub accel: &'a str,
    /// Deterministic time, `-icount shift=N,align=off,sleep=off`: guest
    /// time (the TSC, in ns, and every timer) is the instruction count,
    /// 2^N ns per instruction, and idle time jumps to the next timer
    /// deadline. `None`: guest time is the host's real time.
    pub icount: Option<u32>,
    /// Give the machine a second serial port (COM2, 0x2f8) and collect what
    /// is written to it in [`Run::com2`].
    pub com2: bool,
    /// For a machine expected to stop: once a COM1 line contains the
    /// marker, the run ends this long after it ([`Outcome::Settled`]).
    pub settle: Option<(&'a str, Duration)>,
    /// One-port consoles (`isa-debugcon`): each port's bytes go to its file,
    /// shown live with the name before each line (a system of several
    /// guests: each guest's console and each VMM's lines).
    pub debugcons: &'a [Debugcon<'a>],
}

/// A one-port console of the machine and where its bytes go.
#[derive(Clone, Copy, Debug)]
pub struct Debugcon<'a> {
    pub port: u16,
    pub file: &'a Path,
    /// What the terminal shows before each of its lines.
    pub name: &'a str,
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
    /// The machine was ended the settle time after the marker line.
    Settled(Duration),
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
            Outcome::Settled(t) => write!(
                f,
                "no exit within {} s of the marker line (ended by xtask)",
                t.as_secs()
            ),
        }
    }
}

/// Serial bytes and the completed lines with their times, as they arrive.
type Collected = (Vec<u8>, Vec<(Duration, String)>);

pub struct Run {
    pub outcome: Outcome,
    /// COM1's bytes exactly as the system wrote them.
    pub bytes: Vec<u8>,
    /// COM2's bytes exactly as the system wrote them, if the machine had it
    /// (on seL4: the guest's console, nothing else).
    pub com2: Option<Vec<u8>>,
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

/// A fresh file for COM2 under `target/qemu/`, named after this process so
/// runs of concurrent `cargo xtask` commands never share one.
fn com2_file() -> Result<PathBuf, String> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let dir = paths::target().join("qemu");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("com2-{}-{n}.bin", std::process::id()));
    // Created (empty) before QEMU starts, so it can be followed at once.
    File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// What the terminal shows of a run: COM1 as it arrives and, with COM2,
/// COM2's new bytes read from its file before each COM1 chunk and every few
/// milliseconds. A COM2 byte is in the file as soon as QEMU has written it,
/// so whatever the system wrote on COM2 before a COM1 line is shown before
/// that line (the guest's console before the VMM's statistics). With both,
/// each stream is shown in whole lines, so the two never split each other's.
struct Terminal {
    com2: Option<File>,
    /// The one-port consoles followed, with the name shown before each line.
    others: Vec<(File, String)>,
    /// Each stream's bytes after its last newline: COM1, COM2, the others.
    partial: Vec<Vec<u8>>,
}

impl Terminal {
    fn com1(&mut self, bytes: &[u8]) {
        self.follow_com2();
        self.show(0, bytes);
    }

    fn follow_com2(&mut self) {
        let mut new = Vec::new();
        if let Some(file) = &mut self.com2 {
            let _ = file.read_to_end(&mut new);
        }
        self.show(1, &new);
        for k in 0..self.others.len() {
            let mut new = Vec::new();
            let _ = self.others[k].0.read_to_end(&mut new);
            self.show(2 + k, &new);
        }
    }

    /// The prefix of stream `stream`'s lines.
    fn prefix(&self, stream: usize) -> String {
        match stream.checked_sub(2).and_then(|k| self.others.get(k)) {
            Some((_, name)) => format!("[{name}] "),
            None => String::new(),
        }
    }

    fn show(&mut self, stream: usize, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        if self.com2.is_none() && self.others.is_empty() {
            let _ = out.write_all(bytes);
            let _ = out.flush();
            return;
        }
        let prefix = self.prefix(stream);
        let pending = &mut self.partial[stream];
        pending.extend_from_slice(bytes);
        if let Some(last) = pending.iter().rposition(|&b| b == b'\n') {
            for line in pending[..=last].split_inclusive(|&b| b == b'\n') {
                let _ = out.write_all(prefix.as_bytes());
                let _ = out.write_all(line);
            }
            let _ = out.flush();
            pending.drain(..=last);
        }
    }

    /// The end of the run: the rest of COM2 and the others, then every
    /// stream's last unfinished line.
    fn finish(&mut self) {
        self.follow_com2();
        let prefixes: Vec<String> = (0..self.partial.len()).map(|k| self.prefix(k)).collect();
        let mut out = std::io::stdout().lock();
        for (pending, prefix) in self.partial.iter_mut().zip(prefixes) {
            if !pending.is_empty() {
                let _ = out.write_all(prefix.as_bytes());
                let _ = out.write_all(pending);
                let _ = out.write_all(b"\n");
                pending.clear();
            }
        }
        let _ = out.flush();
    }
}

impl Machine<'_> {
    /// The QEMU command line; COM2, if the machine has it, goes to `com2`.
    pub fn command(&self, com2: Option<&Path>) -> Command {
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
        if let Some(path) = com2 {
            // The second -serial is COM2. `file:` takes the rest of the
            // argument as the path, whatever characters it holds.
            let mut arg = std::ffi::OsString::from("file:");
            arg.push(path);
            cmd.arg("-serial").arg(arg);
        }
        for (k, con) in self.debugcons.iter().enumerate() {
            // `path=` ends at the next comma: the files are xtask's own,
            // under target/, with no comma in their names.
            let mut chardev = std::ffi::OsString::from(format!("file,id=debugcon{k},path="));
            chardev.push(con.file);
            cmd.arg("-chardev").arg(chardev).args([
                "-device",
                &format!("isa-debugcon,iobase={:#x},chardev=debugcon{k}", con.port),
            ]);
        }
        if let Some(shift) = self.icount {
            cmd.arg("-icount")
                .arg(format!("shift={shift},align=off,sleep=off"));
            // The CMOS clock too follows guest time, from the date the
            // VMM's RTC model shows at guest time 0: a bare boot and one on
            // seL4 read the same dates, on every run (and a bare Linux boot
            // repeats to the tick: the bench's figures depend on it).
            cmd.arg("-rtc").arg(rtc_base());
        }
        cmd
    }

    pub fn boot(&self, timeout: Duration, echo: Echo) -> Result<Run, String> {
        let com2_path = if self.com2 { Some(com2_file()?) } else { None };
        let result = self.boot_with(timeout, echo, com2_path.as_deref());
        if let Some(path) = &com2_path {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    fn boot_with(&self, timeout: Duration, echo: Echo, com2: Option<&Path>) -> Result<Run, String> {
        let terminal = match echo {
            Echo::Quiet => None,
            Echo::Terminal => {
                let follow = match com2 {
                    Some(path) => {
                        Some(File::open(path).map_err(|e| format!("{}: {e}", path.display()))?)
                    }
                    None => None,
                };
                let mut others = Vec::new();
                for con in self.debugcons {
                    // Created (empty) before QEMU starts, so it can be
                    // followed at once.
                    File::create(con.file).map_err(|e| format!("{}: {e}", con.file.display()))?;
                    let file =
                        File::open(con.file).map_err(|e| format!("{}: {e}", con.file.display()))?;
                    others.push((file, con.name.to_string()));
                }
                let streams = 2 + others.len();
                Some(Arc::new(Mutex::new(Terminal {
                    com2: follow,
                    others,
                    partial: vec![Vec::new(); streams],
                })))
            }
        };
        let mut cmd = self.command(com2);
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
        let shown = terminal.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut line = Vec::new();
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Some(Ok(mut t)) = shown.as_ref().map(|t| t.lock()) {
                    t.com1(&buf[..n]);
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

        let mut marker_seen: Option<Instant> = None;
        let outcome = loop {
            if let (Some((marker, _)), None) = (self.settle, marker_seen) {
                let seen = collected
                    .lock()
                    .is_ok_and(|g| g.1.iter().any(|(_, l)| l.contains(marker)));
                if seen {
                    marker_seen = Some(Instant::now());
                }
            }
            if let (Some((_, grace)), Some(at)) = (self.settle, marker_seen) {
                if at.elapsed() >= grace && matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Outcome::Settled(grace);
                }
            }
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
                Ok(None) => {
                    if let Some(Ok(mut t)) = terminal.as_ref().map(|t| t.lock()) {
                        t.follow_com2();
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(format!("waiting for QEMU: {e}")),
            }
        };
        let elapsed = started.elapsed();
        let _ = reader.join();
        if let Some(Ok(mut t)) = terminal.as_ref().map(|t| t.lock()) {
            t.finish();
        }
        let com2 = match com2 {
            Some(path) => {
                Some(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?)
            }
            None => None,
        };
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
            com2,
            serial,
            elapsed,
            lines,
        })
    }
}

/// QEMU's `-rtc` under `-icount`: the VMM's RTC epoch, advancing with the
/// virtual clock (instruction count), not the host's.
pub fn rtc_base() -> String {
    let e = vmm_devices::cmos_rtc::EPOCH;
    format!(
        "base={:04}-{:02}-{:02}T{:02}:{:02}:{:02},clock=vm",
        e.year, e.month, e.day, e.hour, e.minute, e.second
    )
}
