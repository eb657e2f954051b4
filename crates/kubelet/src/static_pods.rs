//! Static pods: Pod manifests (YAML or JSON) in a directory, run on this
//! node. Here they are published as mirror pods (`<name>-<node>`, annotated
//! `kubernetes.io/config.mirror`) and then run by the ordinary pod workers,
//! so unlike upstream they need the API server to start. A changed file
//! replaces its pod; a removed file deletes it.

use crate::client::Api;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

/// The mirror pod for a manifest, and its content hash.
pub fn mirror(manifest: &Value, text: &str, node: &str) -> Option<(Value, String)> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    let hash = format!("{:016x}", h.finish());
    let mut pod = manifest.clone();
    let name = pod["metadata"]["name"].as_str()?.to_string();
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    pod["metadata"]["name"] = json!(format!("{name}-{node}"));
    if pod["metadata"]["namespace"].as_str().is_none_or(str::is_empty) {
        pod["metadata"]["namespace"] = json!("default");
    }
    let ann = pod["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
    pod["metadata"]["annotations"] = json!(ann);
    for (k, v) in [("kubernetes.io/config.source", "file"), ("kubernetes.io/config.mirror", hash.as_str()), ("kubernetes.io/config.hash", hash.as_str())] {
        pod["metadata"]["annotations"][k] = json!(v);
    }
    pod["spec"]["nodeName"] = json!(node);
    Some((pod, hash))
}

fn parse(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok().or_else(|| serde_saphyr::from_str::<Value>(text).ok())
}

/// Keep the mirror pods in step with the directory, every 5 s.
pub async fn run(api: Api, dir: PathBuf, node: String) {
    // file → (namespace/name path, hash)
    let mut known: HashMap<PathBuf, (String, String)> = HashMap::new();
    loop {
        let mut seen = vec![];
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if !matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml" | "json")) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else { continue };
            let Some((pod, hash)) = parse(&text).and_then(|m| mirror(&m, &text, &node)) else {
                tracing::warn!(file = %p.display(), "not a pod manifest");
                continue;
            };
            seen.push(p.clone());
            let path = format!("/api/v1/namespaces/{}/pods/{}", pod["metadata"]["namespace"].as_str().unwrap_or("default"), pod["metadata"]["name"].as_str().unwrap_or(""));
            if known.get(&p).is_some_and(|(_, h)| *h == hash) {
                continue;
            }
            let current = api.get(&path).await.ok().filter(|(c, _)| *c == 200).map(|(_, v)| v);
            let same = current.as_ref().is_some_and(|c| c["metadata"]["annotations"]["kubernetes.io/config.mirror"] == hash.as_str());
            if !same {
                if current.is_some() {
                    let _ = api.call("DELETE", &path, "application/json", None).await;
                    continue; // recreate once the old pod is gone
                }
                let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
                if let Err(e) = api.ok("POST", &format!("/api/v1/namespaces/{ns}/pods"), "application/json", Some(&pod)).await {
                    tracing::warn!(file = %p.display(), "creating static pod: {e:#}");
                    continue;
                }
                tracing::info!(file = %p.display(), pod = %path, "static pod created");
            }
            known.insert(p, (path, hash));
        }
        for (p, (path, _)) in known.clone() {
            if !seen.contains(&p) {
                let _ = api.call("DELETE", &path, "application/json", None).await;
                known.remove(&p);
                tracing::info!(file = %p.display(), "static pod removed");
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn mirror_pods_are_named_and_annotated() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
        let (pod, hash) = mirror(&parse(text).unwrap(), text, "n1").unwrap();
        assert_eq!(pod["metadata"]["name"], "web-n1");
        assert_eq!(pod["metadata"]["namespace"], "default");
        assert_eq!(pod["spec"]["nodeName"], "n1");
        assert_eq!(pod["metadata"]["annotations"]["kubernetes.io/config.mirror"], hash.as_str());
        assert_eq!(pod["spec"]["containers"][0]["image"], "busybox");
    }
}
