//! How much CPU processes other than the bench and its two servers used while
//! it ran. On a small machine a concurrent build or test skews every figure,
//! so the report states it instead of leaving the reader to guess.

use std::time::Instant;

/// CPU time in clock ticks of the whole machine (busy, not idle or iowait)
/// and of the given processes, at one instant.
#[derive(Clone, Copy)]
pub struct Sample {
    at: Instant,
    machine_busy: u64,
    ours: u64,
}

pub fn ticks_per_sec() -> f64 {
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

fn machine_busy() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0 };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest
    // time is already counted in user, so stop at steal.
    let total: u64 = v.iter().take(8).sum();
    total.saturating_sub(v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0))
}

/// utime + stime of a process (all its threads), in clock ticks; 0 if gone.
pub fn process_cpu(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may contain spaces; fields resume after the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

impl Sample {
    /// `pids`: the servers; the bench process itself is always included.
    pub fn now(pids: &[u32]) -> Sample {
        let ours = process_cpu("self") + pids.iter().map(|p| process_cpu(&p.to_string())).sum::<u64>();
        Sample { at: Instant::now(), machine_busy: machine_busy(), ours }
    }

    /// CPU seconds the whole machine was busy (all cores, all processes) since `earlier`.
    pub fn machine_busy_secs_since(&self, earlier: &Sample) -> f64 {
        self.machine_busy.saturating_sub(earlier.machine_busy) as f64 / ticks_per_sec()
    }

    /// Share of the machine's total CPU capacity (all cores) that other
    /// processes used since `earlier`, in percent.
    pub fn others_since(&self, earlier: &Sample) -> f64 {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let capacity = (self.at - earlier.at).as_secs_f64() * ticks_per_sec() * cores;
        let others = self.machine_busy.saturating_sub(earlier.machine_busy) as f64
            - self.ours.saturating_sub(earlier.ours) as f64;
        if capacity <= 0.0 { 0.0 } else { (others.max(0.0) / capacity * 100.0).min(100.0) }
    }
}

/// Tracks the other processes' CPU share per measured step and over the run.
pub struct Tracker {
    pids: Vec<u32>,
    start: Sample,
    worst: (f64, String),
}

impl Tracker {
    pub fn new(pids: Vec<u32>) -> Tracker {
        let start = Sample::now(&pids);
        Tracker { pids, start, worst: (0.0, String::new()) }
    }

    pub fn sample(&self) -> Sample {
        Sample::now(&self.pids)
    }

    /// Records the step that began at `from`; returns the others' share.
    pub fn step(&mut self, name: &str, from: Sample) -> f64 {
        let share = self.sample().others_since(&from);
        if share > self.worst.0 {
            self.worst = (share, name.to_string());
        }
        share
    }

    /// (share over the whole run, worst step's share, worst step's name)
    pub fn summary(&self) -> (f64, f64, &str) {
        (self.sample().others_since(&self.start), self.worst.0, &self.worst.1)
    }
}
