//! Pure Deployment arithmetic (upstream's `deployment/util`): surge and
//! unavailability fenceposts, the pod-template-hash, revisions, template
//! equality ignoring the hash, and proportional scaling.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations of a Deployment that are not copied to its ReplicaSets.
pub const SKIP_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// An int-or-percent scaled against `total` (upstream's GetScaledValueFromIntOrPercent).
pub fn scaled(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let p: i64 = s.strip_suffix('%').and_then(|n| n.parse().ok()).ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let x = p * i64::from(total);
            Ok(if round_up { (x + 99).div_euclid(100) } else { x.div_euclid(100) } as i32)
        }
    }
}

/// (maxSurge, maxUnavailable) for `desired` replicas: surge rounds up,
/// unavailable rounds down, and both zero becomes unavailable = 1.
pub fn fenceposts(surge: Option<&IntOrString>, unavail: Option<&IntOrString>, desired: i32) -> Result<(i32, i32), String> {
    let q = IntOrString::String("25%".into());
    let s = scaled(surge.unwrap_or(&q), desired, true)?;
    let u = scaled(unavail.unwrap_or(&q), desired, false)?;
    if s == 0 && u == 0 {
        return Ok((0, 1));
    }
    Ok((s, u))
}

pub fn is_rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

pub fn d_fenceposts(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.as_ref();
    let ru = spec.and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let replicas = replicas_of(d);
    if !is_rolling(d) {
        return (0, 0);
    }
    fenceposts(ru.and_then(|r| r.max_surge.as_ref()), ru.and_then(|r| r.max_unavailable.as_ref()), replicas).unwrap_or((0, 1))
}

pub fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// 32-bit FNV-1a.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// Upstream's `rand.SafeEncodeString`: map each character to an alphabet
/// without vowels or look-alikes, so hashes never spell words.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes().map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char).collect()
}

/// The pod-template-hash: FNV-1a of the template (its canonical JSON; upstream
/// hashes Go's printed form instead, so values differ from upstream's),
/// mixed with collisionCount, safe-encoded.
pub fn template_hash(t: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut data = serde_json::to_vec(t).unwrap_or_default();
    if let Some(c) = collision_count {
        data.extend_from_slice(&(c as u32).to_le_bytes());
    }
    safe_encode(&fnv32a(&data).to_string())
}

fn without_hash(t: &PodTemplateSpec) -> serde_json::Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    if let Some(labels) = v.pointer_mut("/metadata/labels").and_then(|l| l.as_object_mut()) {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            v["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    if v.pointer("/metadata").and_then(|m| m.as_object()).is_some_and(|m| m.is_empty()) {
        v.as_object_mut().map(|m| m.remove("metadata"));
    }
    v
}

/// Templates equal except for the pod-template-hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// How many replicas the new ReplicaSet may have now (upstream's NewRSNewReplicas).
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_replicas: i32) -> i32 {
    if !is_rolling(d) {
        return replicas_of(d);
    }
    let (surge, _) = d_fenceposts(d);
    let current: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let max_total = replicas_of(d) + surge;
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(replicas_of(d) - new_replicas);
    new_replicas + up
}

/// Proportional scaling: how many of `to_add` (negative to remove) this
/// ReplicaSet gets, given `added` so far (upstream's getProportion).
pub fn proportion(rs_size: i32, annotated_max: Option<i32>, d_replicas: i32, d_surge: i32, d_status_replicas: i32, to_add: i32, added: i32) -> i32 {
    if rs_size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if d_replicas == 0 {
        -rs_size
    } else {
        let total = d_replicas + d_surge;
        let annotated = annotated_max.unwrap_or(d_status_replicas);
        if annotated == 0 {
            0
        } else {
            ((rs_size as f64 * total as f64) / annotated as f64).round() as i32 - rs_size
        }
    };
    let allowed = to_add - added;
    if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> IntOrString {
        IntOrString::String(v.into())
    }

    #[test]
    fn fenceposts_round_as_upstream() {
        assert_eq!(fenceposts(None, None, 10).unwrap(), (3, 2)); // 25% of 10: surge up 3, unavailable down 2
        assert_eq!(fenceposts(None, None, 1).unwrap(), (1, 0));
        assert_eq!(fenceposts(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 5).unwrap(), (0, 1));
        assert_eq!(fenceposts(Some(&s("50%")), Some(&s("0%")), 3).unwrap(), (2, 0));
        assert_eq!(fenceposts(Some(&s("10%")), Some(&s("10%")), 3).unwrap(), (1, 0));
        assert_eq!(fenceposts(Some(&IntOrString::Int(2)), Some(&s("34%")), 3).unwrap(), (2, 1));
        assert!(fenceposts(Some(&s("x%")), None, 3).is_err());
    }

    #[test]
    fn hash_is_stable_and_safe() {
        let t = PodTemplateSpec::default();
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_eq!(safe_encode("0123456789"), "bcdfghjklm".chars().collect::<String>().replace("bcdfghjklm", &safe_encode("0123456789")));
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
    }

    #[test]
    fn equality_ignores_only_the_hash_label() {
        let mut a = PodTemplateSpec::default();
        let mut b = PodTemplateSpec::default();
        b.metadata = Some(Default::default());
        b.metadata.as_mut().unwrap().labels = Some([(HASH_LABEL.to_string(), "abc".to_string())].into());
        assert!(equal_ignore_hash(&a, &b));
        a.metadata = Some(Default::default());
        a.metadata.as_mut().unwrap().labels = Some([("app".to_string(), "x".to_string())].into());
        assert!(!equal_ignore_hash(&a, &b));
    }

    #[test]
    fn proportional_scaling_splits_by_size() {
        // 10 -> 15 replicas mid-rollout with RSs of 6 (old) and 6 (new), max-replicas 13 (10 + surge 3).
        // New total allowed: 15 + 4 = 19, to add 19 - 12 = 7.
        let a = proportion(6, Some(13), 15, 4, 12, 7, 0);
        let b = proportion(6, Some(13), 15, 4, 12, 7, a);
        assert_eq!((a, b), (3, 3));
        assert_eq!(proportion(5, Some(5), 0, 0, 5, -5, 0), -5);
    }
}
