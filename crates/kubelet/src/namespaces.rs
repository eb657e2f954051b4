//! Which Linux namespaces a pod's containers share (upstream's
//! `namespacesForPod`). The kubelet must say so explicitly: CRI's zero value
//! is `POD` for every namespace, so a runtime such as containerd would
//! otherwise put all of a pod's containers in one PID namespace, as if
//! `shareProcessNamespace` were set.

use serde_json::Value;
use skiff_cri as cri;

/// Network, PID and IPC modes for the pod's sandbox and its containers.
pub fn for_pod(pod: &Value) -> cri::NamespaceOption {
    let spec = &pod["spec"];
    let on = |k: &str| spec[k].as_bool().unwrap_or(false);
    let mode = |m: cri::NamespaceMode| m as i32;
    let host_or_pod = |k: &str| mode(if on(k) { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod });
    let pid = if on("hostPID") {
        cri::NamespaceMode::Node
    } else if on("shareProcessNamespace") {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Container
    };
    cri::NamespaceOption { network: host_or_pod("hostNetwork"), pid: mode(pid), ipc: host_or_pod("hostIPC"), target_id: String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn modes_follow_the_pod_spec() {
        let n = for_pod(&json!({"spec": {}}));
        assert_eq!((n.network, n.pid, n.ipc), (cri::NamespaceMode::Pod as i32, cri::NamespaceMode::Container as i32, cri::NamespaceMode::Pod as i32));
        let n = for_pod(&json!({"spec": {"shareProcessNamespace": true, "hostNetwork": true}}));
        assert_eq!((n.network, n.pid), (cri::NamespaceMode::Node as i32, cri::NamespaceMode::Pod as i32));
        let n = for_pod(&json!({"spec": {"hostPID": true, "hostIPC": true, "shareProcessNamespace": true}}));
        assert_eq!((n.pid, n.ipc), (cri::NamespaceMode::Node as i32, cri::NamespaceMode::Node as i32));
    }
}
