//! Objects every cluster starts with: the system namespaces and the
//! `kubernetes` Service in `default`.

use serde_json::{json, Value};

use crate::meta;
use crate::storage::{Storage, WriteError};

fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "uid": meta::new_uid(), "creationTimestamp": meta::now_rfc3339(),
                     "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

/// Create what is missing; existing objects are left as they are.
pub async fn ensure(storage: &Storage, service_ip: &str, port: u16) -> anyhow::Result<()> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        match storage.create(&format!("/registry/namespaces/{ns}"), &namespace(ns)).await {
            Ok(_) | Err(WriteError::Conflict) => {}
            Err(e) => anyhow::bail!("creating namespace {ns}: {e:?}"),
        }
    }
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "uid": meta::new_uid(),
                     "creationTimestamp": meta::now_rfc3339(), "generation": 1,
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": service_ip, "clusterIPs": [service_ip],
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                 "internalTrafficPolicy": "Cluster",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
        "status": {"loadBalancer": {}},
    });
    let claims = crate::admission::service_alloc::claims(&svc);
    match storage.write("/registry/services/default/kubernetes", 0, Some(&svc), &claims, &[]).await {
        Ok(_) | Err(WriteError::Conflict) => {}
        Err(e) => anyhow::bail!("creating the kubernetes service: {e:?}"),
    }
    for (name, value, description) in crate::admission::priority::system_classes() {
        let pc = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name, "uid": meta::new_uid(), "creationTimestamp": meta::now_rfc3339()},
            "value": value, "description": description, "preemptionPolicy": "PreemptLowerPriority",
        });
        match storage.create(&format!("/registry/scheduling.k8s.io/priorityclasses/{name}"), &pc).await {
            Ok(_) | Err(WriteError::Conflict) => {}
            Err(e) => anyhow::bail!("creating PriorityClass {name}: {e:?}"),
        }
    }
    Ok(())
}
