//! Pure Job arithmetic (upstream's `job/indexed_job_utils.go`, backoff and
//! conditions), kept apart so it is unit tested without a cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// Upstream's pod-creation backoff after failures: 10s doubled per failure, at most 6 minutes.
pub fn failure_backoff(failures: i32) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    let secs = 10u64.saturating_mul(1 << (failures - 1).min(10));
    Duration::from_secs(secs.min(360))
}

/// `0-2,4,6-7`: upstream's compressed form of a set of indexes.
pub fn format_intervals(idx: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = idx.iter().peekable();
    while let Some(&first) = it.next() {
        let mut last = first;
        while it.peek().is_some_and(|n| **n == last + 1) {
            last = *it.next().unwrap();
        }
        out.push(if first == last { first.to_string() } else { format!("{first}-{last}") });
    }
    out.join(",")
}

/// The inverse of `format_intervals`, ignoring indexes outside [0, completions).
pub fn parse_intervals(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            out.extend((a..=b).filter(|i| *i >= 0 && *i < completions));
        }
    }
    out
}

/// The completion index of an Indexed Job's pod (annotation, else label).
pub fn index_of(p: &Pod) -> Option<i32> {
    let m = &p.metadata;
    m.annotations.as_ref().and_then(|a| a.get(INDEX_KEY)).or_else(|| m.labels.as_ref().and_then(|l| l.get(INDEX_KEY)))?.parse().ok()
}

/// Failed as upstream's isPodFailed: phase Failed, or deleted before it succeeded.
pub fn is_failed(p: &Pod) -> bool {
    let phase = crate::util::pod_phase(p);
    phase == "Failed" || (p.metadata.deletion_timestamp.is_some() && phase != "Succeeded")
}

pub fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn has_condition(job: &Job, type_: &str) -> bool {
    job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Finished = Complete or Failed condition (upstream's IsJobFinished).
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True").map(|c| c.last_transition_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_trip() {
        let s: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(format_intervals(&s), "0-2,4,6-7");
        assert_eq!(parse_intervals("0-2,4,6-7", 10), s);
        assert_eq!(parse_intervals("0-2,4,6-7", 5), [0, 1, 2, 4].into());
        assert_eq!(format_intervals(&BTreeSet::new()), "");
    }

    #[test]
    fn backoff_doubles_from_ten_seconds() {
        assert_eq!(failure_backoff(0), Duration::ZERO);
        assert_eq!(failure_backoff(1), Duration::from_secs(10));
        assert_eq!(failure_backoff(3), Duration::from_secs(40));
        assert_eq!(failure_backoff(30), Duration::from_secs(360));
    }
}
