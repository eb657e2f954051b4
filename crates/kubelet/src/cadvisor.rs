//! `/metrics/cadvisor`: cAdvisor's container metrics, with its names and
//! labels, for every running container and for every pod cgroup that could
//! be read — cAdvisor reports each cgroup, and a pod's is the row with
//! `container=""` and the cgroup path as `id` that dashboards sum by pod.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use skiff_cri as cri;

use crate::stats::{v, Snapshot};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    container: String,
    id: String,
    image: String,
    name: String,
    namespace: String,
    pod: String,
}

type F64Counter = Counter<f64, std::sync::atomic::AtomicU64>;
type F64Gauge = Gauge<f64, std::sync::atomic::AtomicU64>;

#[derive(Default)]
struct Families {
    cpu: Family<Labels, F64Counter>,
    working_set: Family<Labels, Gauge>,
    usage: Family<Labels, Gauge>,
    rss: Family<Labels, Gauge>,
    fs: Family<Labels, Gauge>,
    start: Family<Labels, F64Gauge>,
}

impl Families {
    fn usage(&self, l: &Labels, cpu: Option<&cri::CpuUsage>, memory: Option<&cri::MemoryUsage>) {
        if let Some(ns) = cpu.and_then(|c| v(&c.usage_core_nano_seconds)) {
            self.cpu.get_or_create(l).inc_by(ns as f64 / 1e9);
        }
        if let Some(m) = memory {
            for (f, x) in [(&self.working_set, &m.working_set_bytes), (&self.usage, &m.usage_bytes), (&self.rss, &m.rss_bytes)] {
                if let Some(x) = v(x) {
                    f.get_or_create(l).set(x as i64);
                }
            }
        }
    }
}

pub fn text(snap: &Snapshot) -> String {
    let f = Families::default();
    for p in &snap.pods {
        if let Some(cg) = &p.cgroup {
            let l = Labels { container: String::new(), id: cg.clone(), image: String::new(), name: String::new(), namespace: p.meta.namespace.clone(), pod: p.meta.name.clone() };
            f.usage(&l, p.cpu.as_ref(), p.memory.as_ref());
        }
        for s in &p.containers {
            let id = s.stats.attributes.as_ref().map(|a| a.id.clone()).unwrap_or_default();
            let l = Labels { container: s.container.clone(), id: id.clone(), image: s.image.clone(), name: id, namespace: p.meta.namespace.clone(), pod: p.meta.name.clone() };
            f.usage(&l, s.stats.cpu.as_ref(), s.stats.memory.as_ref());
            if let Some(b) = s.stats.writable_layer.as_ref().and_then(|w| v(&w.used_bytes)) {
                f.fs.get_or_create(&l).set(b as i64);
            }
            f.start.get_or_create(&l).set(s.started as f64 / 1e9);
        }
    }
    let mut reg = prometheus_client::registry::Registry::default();
    reg.register("container_cpu_usage_seconds", "Cumulative cpu time consumed in seconds.", f.cpu);
    reg.register("container_memory_working_set_bytes", "Current working set in bytes.", f.working_set);
    reg.register("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", f.usage);
    reg.register("container_memory_rss", "Size of RSS in bytes.", f.rss);
    reg.register("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", f.fs);
    reg.register("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", f.start);
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::sample;
    use crate::stats::{NodeStats, PodStats};

    fn snapshot(cgroup: Option<&str>) -> Snapshot {
        let s = sample("web", "app", 2_500_000_000, 4096);
        let meta = s.pod.clone().unwrap();
        let memory = cri::MemoryUsage { working_set_bytes: Some(cri::UInt64Value { value: 9000 }), ..Default::default() };
        let pod = PodStats { meta, cgroup: cgroup.map(str::to_string), containers: vec![s], cpu: None, memory: Some(memory) };
        Snapshot { time: 0, node: NodeStats { cpu: Default::default(), memory: Default::default() }, pods: vec![pod] }
    }

    #[test]
    fn container_rows_have_upstream_names_and_labels() {
        let text = text(&snapshot(None));
        let labels = r#"container="app",id="id-app",image="busybox:latest",name="id-app",namespace="default",pod="web""#;
        assert!(text.contains(&format!("container_cpu_usage_seconds_total{{{labels}}} 2.5")), "{text}");
        assert!(text.contains(&format!("container_memory_working_set_bytes{{{labels}}} 4096")), "{text}");
        assert!(text.contains(&format!("container_memory_usage_bytes{{{labels}}} 8192")), "{text}");
        assert!(text.contains("# TYPE container_cpu_usage_seconds counter"), "{text}");
        assert!(!text.contains(r#"container="""#), "no pod row without a pod cgroup: {text}");
    }

    #[test]
    fn a_pod_cgroup_is_a_row_of_its_own() {
        let text = text(&snapshot(Some("/kubepods/besteffort/poduid-web")));
        let labels = r#"container="",id="/kubepods/besteffort/poduid-web",image="",name="",namespace="default",pod="web""#;
        assert!(text.contains(&format!("container_memory_working_set_bytes{{{labels}}} 9000")), "{text}");
    }
}
