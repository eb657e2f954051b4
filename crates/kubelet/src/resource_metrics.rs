//! `/metrics/resource`: upstream kubelet's resource metrics endpoint, the
//! one metrics-server scrapes (and `kubectl top` therefore shows). It is a
//! rendering of the same [`Snapshot`] as `/stats/summary`, so the two agree.
//!
//! Written by hand rather than through `prometheus-client` because upstream
//! attaches the sample's own time to most rows (`value <unix ms>`), which
//! that crate's text encoder cannot express, and because families are
//! built fresh per scrape (upstream's collector is const metrics too, so a
//! container that is gone leaves no stale row). Names, HELP texts (with
//! component-base's `[STABLE]`/`[ALPHA]` prefix), labels and order —
//! families by name, rows by label values, as client_golang's gatherer
//! sorts them — and Go's float formatting follow upstream's output.

use std::fmt::Write;

use skiff_cri as cri;

use crate::stats::{v, Snapshot};

/// One metric family: its rows are (label values, value, timestamp in ns).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    rows: Vec<(Vec<String>, f64, Option<i64>)>,
}

const CONTAINER: &[&str] = &["container", "namespace", "pod"];
const POD: &[&str] = &["namespace", "pod"];

fn family(name: &'static str, kind: &'static str, labels: &'static [&'static str], help: &'static str) -> Family {
    Family { name, help, kind, labels, rows: vec![] }
}

fn cpu_seconds(c: Option<&cri::CpuUsage>) -> Option<(f64, Option<i64>)> {
    let c = c?;
    Some((v(&c.usage_core_nano_seconds)? as f64 / 1e9, Some(c.timestamp)))
}

fn working_set(m: Option<&cri::MemoryUsage>) -> Option<(f64, Option<i64>)> {
    let m = m?;
    Some((v(&m.working_set_bytes)? as f64, Some(m.timestamp)))
}

/// The endpoint's text for a scrape: `Err` when the stats could not be
/// gathered, which upstream reports as `scrape_error 1` and nothing else.
pub fn text(snap: Result<&Snapshot, ()>) -> String {
    let mut node_cpu = family("node_cpu_usage_seconds_total", "counter", &[], "[STABLE] Cumulative cpu time consumed by the node in core-seconds");
    let mut node_mem = family("node_memory_working_set_bytes", "gauge", &[], "[STABLE] Current working set of the node in bytes");
    let mut c_cpu = family("container_cpu_usage_seconds_total", "counter", CONTAINER, "[STABLE] Cumulative cpu time consumed by the container in core-seconds");
    let mut c_mem = family("container_memory_working_set_bytes", "gauge", CONTAINER, "[STABLE] Current working set of the container in bytes");
    let mut c_start = family("container_start_time_seconds", "gauge", CONTAINER, "[STABLE] Start time of the container since unix epoch in seconds");
    let mut p_cpu = family("pod_cpu_usage_seconds_total", "counter", POD, "[STABLE] Cumulative cpu time consumed by the pod in core-seconds");
    let mut p_mem = family("pod_memory_working_set_bytes", "gauge", POD, "[STABLE] Current working set of the pod in bytes");
    let error = if snap.is_ok() { 0.0 } else { 1.0 };
    // Upstream deprecated scrape_error in 1.29 for resource_scrape_error
    // (a 1.30+ kubelet hides it unless --show-hidden-metrics-for-version);
    // both are served so scrapers of either name find it.
    let mut scrape = family("scrape_error", "gauge", &[], "[ALPHA] (Deprecated since 1.29.0) 1 if there was an error while getting container metrics, 0 otherwise");
    let mut resource_scrape = family("resource_scrape_error", "gauge", &[], "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise");
    scrape.rows.push((vec![], error, None));
    resource_scrape.rows.push((vec![], error, None));
    if let Ok(s) = snap {
        let push = |f: &mut Family, labels: Vec<String>, x: Option<(f64, Option<i64>)>| {
            if let Some((value, ts)) = x {
                f.rows.push((labels, value, ts));
            }
        };
        push(&mut node_cpu, vec![], cpu_seconds(Some(&s.node.cpu)));
        push(&mut node_mem, vec![], working_set(Some(&s.node.memory)));
        for p in &s.pods {
            let (ns, pod) = (&p.meta.namespace, &p.meta.name);
            for c in &p.containers {
                let l = vec![c.container.clone(), ns.clone(), pod.clone()];
                // Upstream skips a start time at or before the epoch.
                push(&mut c_start, l.clone(), (c.started >= 1_000_000_000).then(|| (c.started as f64 / 1e9, None)));
                push(&mut c_cpu, l.clone(), cpu_seconds(c.stats.cpu.as_ref()));
                push(&mut c_mem, l, working_set(c.stats.memory.as_ref()));
            }
            push(&mut p_cpu, vec![ns.clone(), pod.clone()], cpu_seconds(p.cpu.as_ref()));
            push(&mut p_mem, vec![ns.clone(), pod.clone()], working_set(p.memory.as_ref()));
        }
    }
    let mut families = [node_cpu, node_mem, c_cpu, c_mem, c_start, p_cpu, p_mem, scrape, resource_scrape];
    families.sort_by_key(|f| f.name);
    let mut out = String::new();
    for f in &mut families {
        if f.rows.is_empty() {
            continue;
        }
        f.rows.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", f.name, f.help, f.name, f.kind);
        for (values, value, ts) in &f.rows {
            out.push_str(f.name);
            if !f.labels.is_empty() {
                let pairs: Vec<String> = f.labels.iter().zip(values).map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let _ = write!(out, "{{{}}}", pairs.join(","));
            }
            let _ = write!(out, " {}", go_float(*value));
            if let Some(ns) = ts {
                let _ = write!(out, " {}", ns.div_euclid(1_000_000));
            }
            out.push('\n');
        }
    }
    out
}

/// A label value in the text format: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `strconv.FormatFloat(x, 'g', -1, 64)`, which client_golang's text format
/// uses: the shortest digits that round-trip, in exponent form when the
/// exponent is below -4 or at least 6 (`1.6e+07`), else plain (`1000`).
pub fn go_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: "1.6e7".
    let e = format!("{x:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{x}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::sample;
    use crate::stats::{NodeStats, PodStats};

    #[test]
    fn floats_print_as_go_prints_them() {
        for (x, want) in [(10.0, "10"), (1000.0, "1000"), (2.5, "2.5"), (123456.0, "123456"), (1.6e7, "1.6e+07"), (16_777_216.0, "1.6777216e+07"), (1624396248.3020916, "1.6243962483020916e+09"), (0.0001, "0.0001"), (0.00001, "1e-05"), (-3.0, "-3"), (0.0, "0"), (1e100, "1e+100"), (f64::INFINITY, "+Inf")] {
            assert_eq!(go_float(x), want, "{x}");
        }
    }

    fn u(x: u64) -> Option<cri::UInt64Value> {
        Some(cri::UInt64Value { value: x })
    }

    // 2021-06-23T05:11:18.302091597Z, as in upstream's collector tests.
    const T: i64 = 1_624_396_278_302_091_597;

    #[test]
    fn rows_match_upstream_names_labels_values_and_timestamps() {
        let mut a = sample("pod_a", "container_b", 10_000_000_000, 1000);
        a.started = T - 120_000_000_000;
        let mut b = sample("pod_a", "container_a", 10_000_000_000, 1000);
        b.started = T - 30_000_000_000;
        for s in [&mut a, &mut b] {
            s.stats.cpu.as_mut().unwrap().timestamp = T;
            s.stats.memory.as_mut().unwrap().timestamp = T;
            s.pod.as_mut().unwrap().namespace = "namespace_a".into();
        }
        let meta = a.pod.clone().unwrap();
        let pod = PodStats {
            meta,
            cgroup: Some("/kubepods/besteffort/poduid".into()),
            containers: vec![a, b],
            cpu: Some(cri::CpuUsage { timestamp: T, usage_core_nano_seconds: u(25_000_000_000), usage_nano_cores: None }),
            memory: Some(cri::MemoryUsage { timestamp: T, working_set_bytes: u(20_000_000), ..Default::default() }),
        };
        let node = NodeStats { cpu: cri::CpuUsage { timestamp: T, usage_core_nano_seconds: u(10_000_000_000), usage_nano_cores: None }, memory: cri::MemoryUsage { timestamp: T, working_set_bytes: u(1000), ..Default::default() } };
        let got = text(Ok(&Snapshot { time: T, node, pods: vec![pod] }));
        let want = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="container_a",namespace="namespace_a",pod="pod_a"} 10 1624396278302
container_cpu_usage_seconds_total{container="container_b",namespace="namespace_a",pod="pod_a"} 10 1624396278302
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="container_a",namespace="namespace_a",pod="pod_a"} 1000 1624396278302
container_memory_working_set_bytes{container="container_b",namespace="namespace_a",pod="pod_a"} 1000 1624396278302
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="container_a",namespace="namespace_a",pod="pod_a"} 1.6243962483020916e+09
container_start_time_seconds{container="container_b",namespace="namespace_a",pod="pod_a"} 1.6243961583020916e+09
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 10 1624396278302
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1000 1624396278302
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="namespace_a",pod="pod_a"} 25 1624396278302
# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="namespace_a",pod="pod_a"} 2e+07 1624396278302
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
# HELP scrape_error [ALPHA] (Deprecated since 1.29.0) 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
"#;
        assert_eq!(got, want);
    }

    #[test]
    fn a_failed_scrape_is_only_the_error_gauges() {
        let got = text(Err(()));
        let samples: Vec<&str> = got.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples, ["resource_scrape_error 1", "scrape_error 1"]);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
