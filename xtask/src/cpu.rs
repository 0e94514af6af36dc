//! CPU time of this process and of its waited-for children, from
//! `/proc/self/stat`: what a step of the suite or a build costs whatever
//! else the machine runs (wall time on a shared machine says more about
//! the others than about us).

/// USER_HZ: the unit of `/proc/*/stat` times, 100 on x86 Linux (fixed by
/// the kernel's ABI, whatever the kernel's own tick rate).
const TICKS_PER_SECOND: f64 = 100.0;

/// User and system seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub user: f64,
    pub system: f64,
}

impl Usage {
    pub fn total(self) -> f64 {
        self.user + self.system
    }

    /// What was spent between `earlier` and `self`.
    pub fn since(self, earlier: Usage) -> Usage {
        Usage {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} s CPU ({:.1} user + {:.1} system)",
            self.total(),
            self.user,
            self.system
        )
    }
}

/// This process's own CPU plus its waited-for children's (a child still
/// running, such as a background job, counts once it has been waited for).
pub fn with_children() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let [utime, stime, cutime, cstime] = times_of_stat(&stat)?;
    Some(Usage {
        user: utime + cutime,
        system: stime + cstime,
    })
}

/// Waited-for children's CPU only (user + system seconds).
pub fn children_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let [_, _, cutime, cstime] = times_of_stat(&stat)?;
    Some(cutime + cstime)
}

/// Fields 14–17 of a `stat` line (utime, stime, cutime, cstime), in seconds.
fn times_of_stat(stat: &str) -> Option<[f64; 4]> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let mut times = [0.0; 4];
    for (i, t) in times.iter_mut().enumerate() {
        // `rest` starts at field 3.
        let ticks: u64 = fields.get(14 + i - 3)?.parse().ok()?;
        *t = ticks as f64 / TICKS_PER_SECOND;
    }
    Some(times)
}

/// Measures one step: its CPU (this process and the children it waited
/// for meanwhile) and wall time.
pub struct Meter {
    cpu: Option<Usage>,
    wall: std::time::Instant,
}

impl Meter {
    pub fn start() -> Meter {
        Meter {
            cpu: with_children(),
            wall: std::time::Instant::now(),
        }
    }

    /// `N s CPU (U user + S system), W s wall`.
    pub fn report(&self) -> String {
        let wall = self.wall.elapsed().as_secs_f64();
        match (with_children(), self.cpu) {
            (Some(now), Some(then)) => format!("{}, {wall:.1} s wall", now.since(then)),
            _ => format!("CPU unknown (no /proc/self/stat), {wall:.1} s wall"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_past_a_command_name_with_spaces() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 1000 50 250 130 20 0 1";
        assert_eq!(times_of_stat(stat), Some([10.0, 0.5, 2.5, 1.3]));
        assert_eq!(times_of_stat("42 (x) S 1"), None);
        assert!(with_children().is_some());
        assert!(children_seconds().is_some());
    }

    #[test]
    fn a_meter_sees_the_cpu_of_a_child_it_waited_for() {
        let meter = Meter::start();
        let before = with_children().unwrap();
        // A child that spins a little in user space, then is waited for.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let spent = with_children().unwrap().since(before);
        assert!(spent.total() > 0.0, "{spent}");
        assert!(meter.report().contains("s CPU ("), "{}", meter.report());
    }
}
