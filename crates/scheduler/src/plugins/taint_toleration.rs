//! TaintToleration: NoSchedule/NoExecute taints the pod does not tolerate
//! exclude the node; untolerated PreferNoSchedule taints lower its score.

use super::helpers::{tolerated, tolerates};
use crate::framework::{default_normalize, CycleState, NodeInfo, Plugin, PodInfo, Status};

pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let tols = pod.spec().tolerations.as_deref().unwrap_or(&[]);
        for t in &node.taints {
            if (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(tols, t) {
                let msg = format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or(""));
                return Status::unresolvable(self.name(), msg);
            }
        }
        Status::success()
    }
    fn weight(&self) -> i64 {
        3
    }
    /// Raw score: how many PreferNoSchedule taints the pod does not tolerate
    /// (only tolerations with effect PreferNoSchedule or empty count).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        if node.taints.is_empty() {
            return 0;
        }
        let tols = pod.spec().tolerations.as_deref().unwrap_or(&[]);
        let prefer = |t: &&k8s_openapi::api::core::v1::Toleration| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule"));
        node.taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !tols.iter().filter(prefer).any(|tol| tolerates(tol, t))).count() as i64
    }
    fn normalize(&self, _: &CycleState, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    fn tainted(taints: serde_json::Value) -> NodeInfo {
        node(json!({"metadata": {"name": "n"}, "spec": {"taints": taints}}))
    }

    #[test]
    fn filter_table() {
        let cp = tainted(json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]));
        let kv = tainted(json!([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]));
        let soft = tainted(json!([{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]));
        let plain = pod(json!({"spec": {}}));
        let exists = pod(json!({"spec": {"tolerations": [{"operator": "Exists"}]}}));
        let eq = pod(json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}]}}));
        let wrong = pod(json!({"spec": {"tolerations": [{"key": "dedicated", "value": "cpu"}]}}));
        let st = CycleState::default();
        let cases: Vec<(&PodInfo, &NodeInfo, Option<&str>)> = vec![
            (&plain, &cp, Some("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }")),
            (&exists, &cp, None),
            (&plain, &kv, Some("node(s) had untolerated taint {dedicated: gpu}")),
            (&eq, &kv, None),
            (&wrong, &kv, Some("node(s) had untolerated taint {dedicated: gpu}")),
            (&plain, &soft, None),
        ];
        for (i, (p, n, want)) in cases.into_iter().enumerate() {
            let s = TaintToleration.filter(&st, p, n);
            assert_eq!(s.reasons.first().map(|s| s.as_str()), want, "case {i}");
        }
    }

    #[test]
    fn score_prefers_fewer_untolerated_soft_taints() {
        let none = tainted(json!([]));
        let one = tainted(json!([{"key": "a", "effect": "PreferNoSchedule"}]));
        let two = tainted(json!([{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]));
        let p = pod(json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists", "effect": "PreferNoSchedule"}]}}));
        let st = CycleState::default();
        let mut scores: Vec<i64> = [&none, &one, &two].iter().map(|n| TaintToleration.score(&st, &p, n)).collect();
        assert_eq!(scores, vec![0, 1, 1]);
        TaintToleration.normalize(&st, &mut scores);
        assert_eq!(scores, vec![100, 0, 0]);
    }
}
