//! Per-kind validation, as upstream's `Validate*` functions: a list of
//! `(field path, message)` that becomes a 422 Invalid with causes.
//! Only what clients commonly hit is checked; the typed round trip
//! ([`crate::typed`]) has already rejected wrong JSON types.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use crate::label_selector;
use crate::meta;

pub type Errors = Vec<(String, String)>;

fn required(errs: &mut Errors, field: impl Into<String>) {
    errs.push((field.into(), "Required value".into()));
}

/// Go's `%#v` of a label map, as upstream prints it in messages.
fn go_map(m: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("map[string]string{{{}}}", inner.join(", "))
}

fn containers(errs: &mut Errors, spec: &Value, path: &str) {
    let mut names = HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let p = format!("{path}.{list}[{i}]");
            match c["name"].as_str().filter(|n| !n.is_empty()) {
                None => required(errs, format!("{p}.name")),
                Some(n) => {
                    if let Some(why) = meta::check_label(n) {
                        errs.push((format!("{p}.name"), format!("Invalid value: {n:?}: {why}")));
                    } else if !names.insert(n.to_string()) {
                        errs.push((format!("{p}.name"), format!("Duplicate value: {n:?}")));
                    }
                }
            }
            if c["image"].as_str().is_none_or(|s| s.trim().is_empty()) {
                required(errs, format!("{p}.image"));
            }
            for (j, port) in c["ports"].as_array().into_iter().flatten().enumerate() {
                let n = port["containerPort"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&n) {
                    errs.push((format!("{p}.ports[{j}].containerPort"), format!("Invalid value: {n}: must be between 1 and 65535, inclusive")));
                }
            }
        }
    }
}

/// A pod spec, standalone or in a template. `restart` lists the allowed
/// restart policies (templates of Deployments allow only Always).
pub fn pod_spec(errs: &mut Errors, spec: &Value, path: &str, restart: &[&str]) {
    if spec["containers"].as_array().is_none_or(Vec::is_empty) {
        required(errs, format!("{path}.containers"));
    }
    containers(errs, spec, path);
    let rp = spec["restartPolicy"].as_str().unwrap_or("Always");
    if !restart.contains(&rp) {
        let supported: Vec<String> = restart.iter().map(|s| format!("{s:?}")).collect();
        errs.push((format!("{path}.restartPolicy"), format!("Unsupported value: {rp:?}: supported values: {}", supported.join(", "))));
    }
    if let Some(g) = spec["terminationGracePeriodSeconds"].as_i64().filter(|g| *g < 0) {
        errs.push((format!("{path}.terminationGracePeriodSeconds"), format!("Invalid value: {g}: must be greater than or equal to 0")));
    }
}

fn replicas(errs: &mut Errors, spec: &Value) {
    if let Some(n) = spec["replicas"].as_i64().filter(|n| *n < 0) {
        errs.push(("spec.replicas".into(), format!("Invalid value: {n}: must be greater than or equal to 0")));
    }
}

/// A workload's selector must exist, be non-empty and select its template.
fn selector_matches_template(errs: &mut Errors, spec: &Value) {
    let sel = &spec["selector"];
    if sel.is_null() {
        required(errs, "spec.selector");
        return;
    }
    if sel["matchLabels"].as_object().is_none_or(|m| m.is_empty()) && sel["matchExpressions"].as_array().is_none_or(Vec::is_empty) {
        errs.push(("spec.selector".into(), "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment".into()));
        return;
    }
    let labels = label_selector::labels(&spec["template"]["metadata"]);
    if !label_selector::matches(sel, &labels) {
        errs.push(("spec.template.metadata.labels".into(), format!("Invalid value: {}: `selector` does not match template `labels`", go_map(&labels))));
    }
}

fn service(errs: &mut Errors, svc: &Value) {
    let spec = &svc["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
        errs.push(("spec.type".into(), format!("Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"")));
    }
    if ty == "ExternalName" && spec["externalName"].as_str().is_none_or(str::is_empty) {
        required(errs, "spec.externalName");
    }
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    let headless = spec["clusterIP"] == "None";
    if ports.is_empty() && ty != "ExternalName" && !headless {
        required(errs, "spec.ports");
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let n = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&n) {
            errs.push((format!("spec.ports[{i}].port"), format!("Invalid value: {n}: must be between 1 and 65535, inclusive")));
        }
        let name = p["name"].as_str().unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            required(errs, format!("spec.ports[{i}].name"));
        } else if !name.is_empty() && !names.insert(name.to_string()) {
            errs.push((format!("spec.ports[{i}].name"), format!("Duplicate value: {name:?}")));
        }
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            errs.push((format!("spec.ports[{i}].protocol"), format!("Unsupported value: {proto:?}: supported values: \"SCTP\", \"TCP\", \"UDP\"")));
        }
        if ty == "ClusterIP" && p["nodePort"].as_i64().is_some_and(|n| n != 0) {
            errs.push((format!("spec.ports[{i}].nodePort"), "Forbidden: may not be used when `type` is 'ClusterIP'".into()));
        }
    }
}

/// Validation on create (`old` None) and update.
pub fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Errors {
    let mut errs = Errors::new();
    let spec = &obj["spec"];
    match kind {
        "Pod" => pod_spec(&mut errs, spec, "spec", &["Always", "OnFailure", "Never"]),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            replicas(&mut errs, spec);
            selector_matches_template(&mut errs, spec);
            pod_spec(&mut errs, &spec["template"]["spec"], "spec.template.spec", &["Always"]);
            if kind == "Deployment" {
                if let Some(st) = spec["strategy"]["type"].as_str().filter(|t| !["RollingUpdate", "Recreate"].contains(t)) {
                    errs.push(("spec.strategy.type".into(), format!("Unsupported value: {st:?}: supported values: \"Recreate\", \"RollingUpdate\"")));
                }
            }
        }
        "ReplicationController" => {
            replicas(&mut errs, spec);
            pod_spec(&mut errs, &spec["template"]["spec"], "spec.template.spec", &["Always"]);
        }
        "Job" => {
            selector_matches_template(&mut errs, spec);
            let rp = spec["template"]["spec"]["restartPolicy"].as_str().unwrap_or("");
            if !["OnFailure", "Never"].contains(&rp) {
                errs.push(("spec.template.spec.restartPolicy".into(), "Required value: valid values: \"OnFailure\", \"Never\"".into()));
            } else {
                pod_spec(&mut errs, &spec["template"]["spec"], "spec.template.spec", &["OnFailure", "Never"]);
            }
            for f in ["parallelism", "completions", "backoffLimit", "activeDeadlineSeconds"] {
                if let Some(n) = spec[f].as_i64().filter(|n| *n < 0) {
                    errs.push((format!("spec.{f}"), format!("Invalid value: {n}: must be greater than or equal to 0")));
                }
            }
        }
        "CronJob" => {
            let sched = spec["schedule"].as_str().unwrap_or("");
            if sched.is_empty() {
                required(&mut errs, "spec.schedule");
            } else if !cron_ok(sched) {
                errs.push(("spec.schedule".into(), format!("Invalid value: {sched:?}: unparseable schedule")));
            }
        }
        "Service" => service(&mut errs, obj),
        "PriorityClass" if obj["value"].as_i64().is_some_and(|v| v > 1_000_000_000) && !obj["metadata"]["name"].as_str().unwrap_or("").starts_with("system-") => {
            errs.push(("value".into(), "Forbidden: maximum allowed value of a user defined priority is 1000000000".into()));
        }
        _ => {}
    }
    if let Some(old) = old {
        immutable(&mut errs, kind, obj, old);
    }
    errs
}

/// Fields that may not change after create.
fn immutable(errs: &mut Errors, kind: &str, obj: &Value, old: &Value) {
    let same = |path: &[&str]| path.iter().fold(obj, |v, k| &v[*k]) == path.iter().fold(old, |v, k| &v[*k]);
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" if !same(&["spec", "selector"]) => {
            errs.push(("spec.selector".into(), format!("Invalid value: {}: field is immutable", obj["spec"]["selector"])));
        }
        "Pod" => {
            // Pods are mostly immutable: images, activeDeadlineSeconds and added tolerations may change.
            let strip = |v: &Value| {
                let mut s = v["spec"].clone();
                for list in ["containers", "initContainers"] {
                    if let Some(a) = s[list].as_array_mut() {
                        for c in a {
                            c["image"] = Value::Null;
                        }
                    }
                }
                if let Some(m) = s.as_object_mut() {
                    for k in ["activeDeadlineSeconds", "tolerations", "schedulingGates", "terminationGracePeriodSeconds", "ephemeralContainers"] {
                        m.remove(k);
                    }
                }
                s
            };
            if strip(obj) != strip(old) {
                errs.push(("spec".into(), "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into()));
            }
        }
        "StatefulSet" => {
            for f in ["serviceName", "volumeClaimTemplates", "podManagementPolicy"] {
                if !same(&["spec", f]) {
                    errs.push(("spec".into(), "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into()));
                    break;
                }
            }
        }
        "Namespace" | "ConfigMap" | "Secret" if old["immutable"] == Value::Bool(true) && (!same(&["data"]) || !same(&["binaryData"])) => {
            errs.push(("data".into(), "Forbidden: field is immutable when `immutable` is set".into()));
        }
        "Secret" if !same(&["type"]) => {
            errs.push(("type".into(), format!("Invalid value: {}: field is immutable", obj["type"])));
        }
        "Service" if !same(&["spec", "clusterIP"]) && obj["spec"]["type"] != "ExternalName" && old["spec"]["type"] != "ExternalName" => {
            errs.push(("spec.clusterIPs[0]".into(), format!("Invalid value: {}: may not change once set", obj["spec"]["clusterIP"])));
        }
        _ => {}
    }
}

/// Five fields, or a macro such as `@hourly`, as the cron parser takes.
pub fn cron_ok(s: &str) -> bool {
    let s = s.trim();
    let s = s.strip_prefix("CRON_TZ=").or(s.strip_prefix("TZ=")).map_or(s, |rest| rest.split_once(' ').map_or("", |(_, r)| r.trim()));
    if s.starts_with('@') {
        return ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"].contains(&s) || s.starts_with("@every ");
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    fields.len() == 5 && fields.iter().all(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || "*/,-?".contains(c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods() {
        let e = validate("Pod", &json!({"spec": {"containers": []}}), None);
        assert_eq!(e, vec![("spec.containers".to_string(), "Required value".to_string())]);
        let e = validate("Pod", &json!({"spec": {"containers": [{"name": "c", "image": "x"}, {"name": "c"}]}}), None);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0], ("spec.containers[1].name".to_string(), "Duplicate value: \"c\"".to_string()));
        assert_eq!(e[1].0, "spec.containers[1].image");
    }

    #[test]
    fn pod_updates_are_mostly_forbidden() {
        let old = json!({"spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        assert!(validate("Pod", &json!({"spec": {"containers": [{"name": "c", "image": "x:2"}]}}), Some(&old)).is_empty());
        let e = validate("Pod", &json!({"spec": {"containers": [{"name": "d", "image": "x:1"}]}}), Some(&old));
        assert!(e[0].1.starts_with("Forbidden: pod updates may not change"), "{e:?}");
    }

    #[test]
    fn workload_selector() {
        let d = json!({"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let e = validate("Deployment", &d, None);
        assert_eq!(e[0].1, "Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`");
        let mut ok = d.clone();
        ok["spec"]["template"]["metadata"]["labels"]["app"] = json!("x");
        assert!(validate("Deployment", &ok, None).is_empty());
        let mut changed = ok.clone();
        changed["spec"]["selector"]["matchLabels"]["app"] = json!("z");
        changed["spec"]["template"]["metadata"]["labels"]["app"] = json!("z");
        assert!(validate("Deployment", &changed, Some(&ok))[0].1.contains("field is immutable"));
    }

    #[test]
    fn services_and_cron() {
        let e = validate("Service", &json!({"spec": {"ports": [{"port": 80}, {"port": 0}]}}), None);
        assert!(e.contains(&("spec.ports[1].port".to_string(), "Invalid value: 0: must be between 1 and 65535, inclusive".to_string())));
        assert!(e.contains(&("spec.ports[0].name".to_string(), "Required value".to_string())));
        assert!(cron_ok("*/5 * * * *"));
        assert!(cron_ok("@hourly"));
        assert!(cron_ok("CRON_TZ=UTC 0 0 * * *"));
        assert!(!cron_ok("every minute"));
    }
}
