//! Latency histograms and the Markdown tables they end up in.

use hdrhistogram::Histogram;
use std::time::Duration;

pub fn histogram() -> Histogram<u64> {
    // Microseconds, up to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record((d.as_micros() as u64).max(1));
}

/// Throughput and latency of one measured step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests completed in the whole step, warm-up included: the
    /// denominator for the server's CPU time over the same span.
    pub total_ops: u64,
}

impl Figures {
    pub fn from(h: &Histogram<u64>, ops: u64, elapsed: Duration) -> Figures {
        Figures {
            ops_per_sec: ops as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: h.value_at_quantile(0.50) as f64 / 1000.0,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
            total_ops: ops,
        }
    }
}

/// A Markdown table with Skiff, etcd and their ratio for each row.
pub struct Table {
    title: String,
    rows: Vec<(String, f64, f64, &'static str)>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Table {
        Table { title: title.into(), rows: vec![] }
    }
    /// `better` is "higher" or "lower".
    pub fn row(&mut self, name: impl Into<String>, skiff: f64, etcd: f64, better: &'static str) {
        self.rows.push((name.into(), skiff, etcd, better));
    }
    pub fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n| measure | Skiff | etcd 3.4 | Skiff/etcd | better |\n|---|---:|---:|---:|---|\n", self.title);
        for (name, a, b, better) in &self.rows {
            let ratio = if *b > 0.0 { format!("{:.2}", a / b) } else { "-".into() };
            s += &format!("| {name} | {} | {} | {ratio} | {better} |\n", fmt(*a), fmt(*b));
        }
        s + "\n"
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0}") } else if v >= 1.0 { format!("{v:.2}") } else { format!("{v:.3}") }
}
