//! Container resource usage read from cgroupfs, for CRI `ContainerStats` and
//! `ListContainerStats` (which the kubelet turns into cAdvisor-style
//! metrics and its Summary API).
//!
//! Both cgroup layouts are read: v1 (this machine: `cpuacct/`, `memory/`
//! hierarchies) and v2 (one unified tree). The definitions follow cAdvisor,
//! which is what upstream's numbers mean: the working set is usage minus
//! inactive file pages (what the kernel cannot reclaim cheaply), and the
//! CPU rate is the usage delta over the time since the previous sample.

use std::collections::HashMap;
use std::path::Path;

use parking_lot::Mutex;
use skiff_cri as cri;

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// None when unlimited.
    pub limit: Option<u64>,
}

impl Memory {
    /// As CRI reports it, sampled at `now`; available = limit − working set, as cAdvisor.
    pub fn to_cri(&self, now: i64) -> cri::MemoryUsage {
        cri::MemoryUsage {
            timestamp: now,
            working_set_bytes: value(self.working_set),
            available_bytes: self.limit.and_then(|l| value(l.saturating_sub(self.working_set))),
            usage_bytes: value(self.usage),
            rss_bytes: value(self.rss),
            page_faults: value(self.page_faults),
            major_page_faults: value(self.major_page_faults),
        }
    }
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat).
fn stat_file(path: &str) -> Option<HashMap<String, u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.lines().filter_map(|l| l.split_once(' ')).filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?))).collect())
}

/// Cumulative CPU time of every task in the cgroup, in nanoseconds.
pub fn cpu_ns(cgroup: &str) -> Option<u64> {
    read_u64(&format!("{ROOT}/cpuacct{cgroup}/cpuacct.usage"))
        .or_else(|| read_u64(&format!("{ROOT}/cpu,cpuacct{cgroup}/cpuacct.usage")))
        .or_else(|| stat_file(&format!("{ROOT}{cgroup}/cpu.stat"))?.get("usage_usec").map(|us| us * 1000))
}

pub fn memory(cgroup: &str) -> Option<Memory> {
    let v1 = format!("{ROOT}/memory{cgroup}");
    if let Some(usage) = read_u64(&format!("{v1}/memory.usage_in_bytes")) {
        let stat = stat_file(&format!("{v1}/memory.stat")).unwrap_or_default();
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        // v1 reports "no limit" as a huge page-aligned number.
        let limit = read_u64(&format!("{v1}/memory.limit_in_bytes")).filter(|l| *l < 1 << 62);
        return Some(Memory {
            usage,
            working_set: usage.saturating_sub(get("total_inactive_file")),
            rss: get("total_rss"),
            page_faults: get("total_pgfault"),
            major_page_faults: get("total_pgmajfault"),
            limit,
        });
    }
    let v2 = format!("{ROOT}{cgroup}");
    let usage = read_u64(&format!("{v2}/memory.current"))?;
    let stat = stat_file(&format!("{v2}/memory.stat")).unwrap_or_default();
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let limit = read_u64(&format!("{v2}/memory.max"));
    Some(Memory { usage, working_set: usage.saturating_sub(get("inactive_file")), rss: get("anon"), page_faults: get("pgfault"), major_page_faults: get("pgmajfault"), limit })
}

/// Bytes and inodes under `dir` (a container's overlay upper directory: what
/// it wrote on top of its image), not following symlinks.
pub fn dir_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut inodes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            inodes += 1;
            bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

/// The previous CPU sample per container, so each answer can carry a rate.
#[derive(Default)]
pub struct CpuRates(Mutex<HashMap<String, (i64, u64)>>);

impl CpuRates {
    /// Record `(now, usage)` for `id`; the rate in nano-cores since the
    /// previous sample, if there is one.
    pub fn observe(&self, id: &str, now: i64, usage: u64) -> Option<u64> {
        let prev = self.0.lock().insert(id.to_string(), (now, usage));
        let (t0, u0) = prev?;
        let dt = now.checked_sub(t0).filter(|d| *d > 0)? as u128;
        Some((usage.checked_sub(u0)? as u128 * 1_000_000_000 / dt) as u64)
    }

    pub fn forget(&self, id: &str) {
        self.0.lock().remove(id);
    }

    /// Drop the samples of every id `keep` rejects (pods that are gone), so
    /// a caller that sees only the live ones does not grow forever.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0.lock().retain(|id, _| keep(id));
    }
}

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

impl crate::Runtime {
    /// CRI stats of one container, from its cgroup and writable layer.
    pub fn container_stats(&self, id: &str) -> Option<cri::ContainerStats> {
        let (cgroup, attributes) = {
            let cs = self.containers.lock();
            let c = cs.get(id)?;
            let attributes = cri::ContainerAttributes { id: c.id.clone(), metadata: c.config.metadata.clone(), labels: c.config.labels.clone(), annotations: c.config.annotations.clone() };
            (c.cgroup.clone(), attributes)
        };
        let now = crate::timefmt::now_nanos();
        let cpu = cpu_ns(&cgroup).map(|ns| cri::CpuUsage { timestamp: now, usage_core_nano_seconds: value(ns), usage_nano_cores: self.cpu_rates.observe(id, now, ns).and_then(value) });
        let memory = memory(&cgroup).map(|m| m.to_cri(now));
        let (bytes, inodes) = dir_usage(&self.cfg.rw_dir(id).join("upper"));
        let writable_layer = Some(cri::FilesystemUsage {
            timestamp: now,
            fs_id: Some(cri::FilesystemIdentifier { mountpoint: self.cfg.root.display().to_string() }),
            used_bytes: value(bytes),
            inodes_used: value(inodes),
        });
        Some(cri::ContainerStats { attributes: Some(attributes), cpu, memory, writable_layer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_rate_is_the_usage_delta_over_the_sample_interval() {
        let r = CpuRates::default();
        assert_eq!(r.observe("c", 1_000_000_000, 5_000_000_000), None, "no rate from one sample");
        // 0.5 s of CPU over 2 s: a quarter of a core.
        assert_eq!(r.observe("c", 3_000_000_000, 5_500_000_000), Some(250_000_000));
        assert_eq!(r.observe("c", 3_000_000_000, 5_600_000_000), None, "no time passed");
        r.forget("c");
        assert_eq!(r.observe("c", 4_000_000_000, 5_700_000_000), None);
        r.observe("d", 1, 1);
        r.retain(|id| id == "c");
        assert_eq!(r.observe("d", 2, 2), None, "d's sample was dropped");
        assert!(r.observe("c", 5_000_000_000, 5_800_000_000).is_some(), "c's was kept");
    }

    #[test]
    fn this_process_cgroup_reads_as_real_numbers() {
        // The test's own cgroup (v1 here, v2 elsewhere): usage is non-zero
        // and the working set never exceeds usage.
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = |ctrl: &str| own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            (c.split(',').any(|x| x == ctrl) || (c.is_empty() && ctrl.is_empty())).then(|| p.to_string())
        });
        let cg = |ctrl: &str| path(ctrl).or_else(|| path("")).map(|p| if p == "/" { String::new() } else { p }).unwrap();
        let m = memory(&cg("memory")).expect("the test's memory cgroup is readable");
        assert!(m.usage > 0);
        assert!(m.working_set <= m.usage);
        assert!(cpu_ns(&cg("cpuacct")).expect("the test's cpu accounting is readable") > 0);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), vec![1u8; 10_000]).unwrap();
        let (bytes, inodes) = dir_usage(dir.path());
        assert_eq!(inodes, 2);
        assert!(bytes >= 10_000, "{bytes}");
    }
}
