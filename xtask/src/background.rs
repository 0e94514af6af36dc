//! A long job the suite starts early and waits for late: another `cargo
//! xtask` command in a child process, at the lowest CPU priority (`nice -n
//! 19`: a core the suite's single-threaded QEMU boots leave idle does its
//! work, a core the suite wants is the suite's), with everything it prints
//! in a log file. The suite shows the job's own `xtask:` lines between its
//! tests (never in the middle of one's output), and the job's error with
//! the log's tail if it fails.
//!
//! The job runs in a process group of its own, so it can be ended whole
//! (make and every compiler under it). It ends with the suite too: it holds
//! the read end of a pipe the suite holds open, and when the suite goes —
//! finished, interrupted, or killed — the pipe closes and the job ends its
//! group with SIGTERM, on which make removes the target it was writing.
//! Nothing the job builds is trusted half-written: see its command. When
//! the suite waits for the job, having nothing else to run, the job is
//! given the suite's own priority back (`renice`, where allowed).

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::tail;

/// Set in the job's environment: it is a background job and should watch
/// its parent ([`watch_parent`]).
const WATCH_ENV: &str = "PREVIRT_BACKGROUND_JOB";

/// The niceness of a job: the lowest priority.
const NICENESS: &str = "19";

/// A running job.
#[derive(Debug)]
pub struct Job {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    /// How much of the log has been shown.
    shown: u64,
    started: Instant,
}

impl Job {
    /// Starts `cargo xtask ARGS` (this very executable) as job `name`,
    /// its output going to `log`.
    pub fn start(name: &str, args: &[OsString], log: &Path) -> Result<Job, String> {
        let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("nice")
            .args(["-n", NICENESS])
            .arg(exe)
            .args(args)
            .env(WATCH_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting the background job {name}: {e}"))?;
        println!(
            "xtask: started in the background at nice {NICENESS}: {name} (pid {}, log: {})",
            child.id(),
            log.display()
        );
        Ok(Job {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
            shown: 0,
            started: Instant::now(),
        })
    }

    /// Prints the job's `xtask:` lines written since the last call (whole
    /// lines only), marked as the job's.
    pub fn show_progress(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.log) else {
            return;
        };
        let mut new = Vec::new();
        if f.seek(SeekFrom::Start(self.shown)).is_err() || f.read_to_end(&mut new).is_err() {
            return;
        }
        let Some(end) = new.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        self.shown += end as u64 + 1;
        for line in String::from_utf8_lossy(&new[..end]).lines() {
            if let Some(rest) = line.strip_prefix("xtask: ") {
                println!("xtask: [background] {rest}");
            }
        }
    }

    /// Waits for the job: `Ok` with everything it printed, or its failure
    /// with the end of its log.
    pub fn wait(mut self) -> Result<String, String> {
        let Some(mut child) = self.child.take() else {
            return Err(format!("the background job {} was not running", self.name));
        };
        println!(
            "xtask: waiting for the background job {} (running for {:.0} s)",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
        // The suite has nothing left to run beside the job: it need not
        // yield to the suite any longer, and on a machine others share it
        // should not yield to them more than the suite does.
        let pgid = child.id();
        if let Some(niceness) = own_niceness() {
            let raised = Command::new("renice")
                .args(["-n", &niceness.to_string(), "-g", &pgid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if raised {
                println!(
                    "xtask: the background job now runs at the suite's own niceness ({niceness})"
                );
            }
        }
        let waited = Instant::now();
        // `Child::wait` closes the child's standard input first, which the
        // job reads as the suite having gone: keep it open until it ends.
        let pipe = child.stdin.take();
        // Its lines as they come meanwhile: the suite prints nothing else.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {
                    self.show_progress();
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => break Err(format!("waiting for the background job {}: {e}", self.name)),
            }
        };
        drop(pipe);
        self.show_progress();
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let status = status?;
        println!(
            "xtask: the background job {} ended ({status}) after {:.0} s, {:.0} s of them waited for",
            self.name,
            self.started.elapsed().as_secs_f64(),
            waited.elapsed().as_secs_f64()
        );
        if status.success() {
            Ok(text)
        } else {
            Err(format!(
                "the background job {} failed ({status}); the end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&text, 30)
            ))
        }
    }
}

impl Drop for Job {
    /// A job not waited for (the suite stopped early) is ended now.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_group(child.id());
            let _ = child.wait();
        }
    }
}

/// This process's niceness (field 19 of `/proc/self/stat`).
fn own_niceness() -> Option<i32> {
    niceness_of_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn niceness_of_stat(stat: &str) -> Option<i32> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3.
    rest.split_whitespace().nth(19 - 3)?.parse().ok()
}

/// SIGTERM to every process of the group `pgid`.
fn terminate_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// In a job (a process [`Job::start`] started): ends the job's whole
/// process group when the suite that started it is gone (its end of the
/// standard-input pipe closes). Elsewhere, nothing.
pub fn watch_parent() {
    if std::env::var_os(WATCH_ENV).is_none() {
        return;
    }
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        // The suite writes nothing: a read returns only at end of file or
        // on an error, both meaning the suite has gone.
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        // The group is this process's: `process_group(0)` made it its
        // leader.
        terminate_group(std::process::id());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Starts this test binary as a job running only the ignored test `helper`.
    fn start_helper(helper: &str, dir: &Path) -> Job {
        let args = [
            format!("background::tests::{helper}"),
            "--exact".into(),
            "--ignored".into(),
            "--nocapture".into(),
        ]
        .map(OsString::from);
        Job::start(helper, &args, &dir.join("job.log")).unwrap()
    }

    /// Polls the job's log until it holds `text`.
    fn await_log(job: &Job, text: &str) -> String {
        for _ in 0..200 {
            let log = std::fs::read_to_string(&job.log).unwrap_or_default();
            if log.contains(text) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the job never printed {text:?}");
    }

    fn alive(pid: u32) -> bool {
        // A zombie has ended; it only waits for its parent.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        })
    }

    /// A job's body: watches its parent and sleeps, with a `sleep` of its
    /// own (a grandchild of the suite, as a compiler under make is).
    #[test]
    #[ignore = "a job the background tests start"]
    fn helper_sleeps() {
        watch_parent();
        let mut grandchild = Command::new("sleep").arg("60").spawn().unwrap();
        println!("xtask: helper started; grandchild {}", grandchild.id());
        let _ = grandchild.wait();
    }

    #[test]
    #[ignore = "a job the background tests start"]
    fn helper_fails() {
        println!("xtask: helper about to fail");
        panic!("the helper's failure");
    }

    fn grandchild_of(log: &str) -> u32 {
        log.split("grandchild ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap()
    }

    #[test]
    fn a_failed_job_is_reported_with_the_end_of_its_log() {
        let dir = tempfile_dir("failed");
        let job = start_helper("helper_fails", &dir);
        let e = job.wait().unwrap_err();
        assert!(e.contains("failed"), "{e}");
        assert!(e.contains("helper about to fail"), "{e}");
        assert!(e.contains("the helper's failure"), "{e}");
    }

    #[test]
    fn a_job_ends_whole_when_the_suite_closes_its_pipe() {
        let dir = tempfile_dir("orphaned");
        let mut job = start_helper("helper_sleeps", &dir);
        let grandchild = grandchild_of(&await_log(&job, "grandchild "));
        assert!(alive(grandchild));
        // As if the suite had died: its end of the pipe closes.
        let child = job.child.as_mut().unwrap();
        drop(child.stdin.take());
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the job did not end"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        while alive(grandchild) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "its grandchild did not end"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn a_job_not_waited_for_is_ended_with_its_group() {
        let dir = tempfile_dir("dropped");
        let job = start_helper("helper_sleeps", &dir);
        let grandchild = grandchild_of(&await_log(&job, "grandchild "));
        let started = Instant::now();
        drop(job);
        assert!(started.elapsed() < Duration::from_secs(20));
        while alive(grandchild) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "its grandchild did not end"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn the_jobs_lines_are_shown_once_each() {
        let dir = tempfile_dir("shown");
        let mut job = start_helper("helper_fails", &dir);
        await_log(&job, "helper about to fail");
        job.show_progress();
        let shown = job.shown;
        assert!(shown > 0);
        job.show_progress();
        assert_eq!(job.shown, shown);
        let _ = job.wait();
    }

    /// A fresh folder for one test's log under the target folder.
    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = crate::paths::target()
            .join("xtask-tests")
            .join(format!("background-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_niceness_is_read_past_a_command_name_with_spaces() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 20 -5 1";
        assert_eq!(niceness_of_stat(stat), Some(-5));
        assert_eq!(niceness_of_stat("42 (x) S 1"), None);
        assert!(own_niceness().is_some());
    }
}
