//! The downward API: a pod's own fields as environment values
//! (`fieldRef`, `resourceFieldRef`) and as files (downwardAPI volumes and
//! projected sources), in upstream's formats.

use serde_json::Value;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// `key="value"` lines, sorted by key, with the value quoted like Go's %q —
/// how the kubelet writes `metadata.labels` and `metadata.annotations` files.
pub fn format_map(m: &Value) -> String {
    let mut pairs: Vec<(String, String)> = m.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), s(v))).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default())).collect::<Vec<_>>().join("\n")
}

/// `name['key']` → `key`.
fn subscript<'a>(path: &'a str, field: &str) -> Option<&'a str> {
    path.strip_prefix(field)?.strip_prefix("['")?.strip_suffix("']")
}

/// The value of a `fieldRef.fieldPath`; None for paths the API does not allow.
pub fn field(pod: &Value, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    let m = &pod["metadata"];
    Some(match path {
        "metadata.name" => s(&m["name"]),
        "metadata.namespace" => s(&m["namespace"]),
        "metadata.uid" => s(&m["uid"]),
        "metadata.labels" => format_map(&m["labels"]),
        "metadata.annotations" => format_map(&m["annotations"]),
        "spec.nodeName" => s(&pod["spec"]["nodeName"]),
        "spec.serviceAccountName" => s(&pod["spec"]["serviceAccountName"]),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        p => {
            if let Some(k) = subscript(p, "metadata.labels") {
                s(&m["labels"][k])
            } else if let Some(k) = subscript(p, "metadata.annotations") {
                s(&m["annotations"][k])
            } else {
                return None;
            }
        }
    })
}

/// A `resourceFieldRef` against a container's resources: CPU rounded up to
/// whole cores (or the divisor), memory in bytes (or the divisor).
pub fn resource(pod: &Value, container: Option<&Value>, r: &Value) -> String {
    let res = s(&r["resource"]);
    let c = container.cloned().or_else(|| {
        let name = s(&r["containerName"]);
        pod["spec"]["containers"].as_array()?.iter().find(|c| c["name"] == name.as_str()).cloned()
    });
    let Some(c) = c else { return String::new() };
    let (kind, name) = res.split_once('.').unwrap_or(("limits", "cpu"));
    let milli = c["resources"][kind][name].as_str().and_then(crate::resources::milli).unwrap_or(0);
    let divisor = r["divisor"].as_str().and_then(crate::resources::milli).filter(|d| *d > 0).unwrap_or(1000);
    if name == "cpu" {
        ((milli + divisor - 1) / divisor).max(1).to_string()
    } else {
        (milli / divisor).to_string()
    }
}

/// The files of a downwardAPI volume or projected source: (path, contents).
pub fn files(pod: &Value, items: &Value, pod_ip: &str, host_ip: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    for it in items.as_array().into_iter().flatten() {
        let value = if let Some(p) = it["fieldRef"]["fieldPath"].as_str() {
            field(pod, p, pod_ip, host_ip)
        } else if it["resourceFieldRef"].is_object() {
            Some(resource(pod, None, &it["resourceFieldRef"]))
        } else {
            None
        };
        if let Some(v) = value {
            out.push((s(&it["path"]), v.into_bytes()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn fields_and_maps() {
        let pod = json!({"metadata": {"name": "p", "labels": {"b": "2", "a": "1"}, "annotations": {"batch.kubernetes.io/job-completion-index": "3"}}});
        assert_eq!(field(&pod, "metadata.labels", "", "").unwrap(), "a=\"1\"\nb=\"2\"");
        assert_eq!(field(&pod, "metadata.annotations['batch.kubernetes.io/job-completion-index']", "", "").unwrap(), "3");
        assert_eq!(field(&pod, "metadata.labels['a']", "", "").unwrap(), "1");
        assert_eq!(field(&pod, "status.podIP", "10.0.0.1", "").unwrap(), "10.0.0.1");
        assert!(field(&pod, "spec.containers", "", "").is_none());
    }
}
