//! The core group (v1), except Pod (pod.rs).

use serde_json::{json, Value};

use super::{age, arr, col, containers_images, format_labels, int, len, name, or, s, since, wide, Column, Printer, AGE, CONTAINERS_DOC, IMAGES_DOC, NAME};

pub(super) fn printer(kind: &str) -> Option<Printer> {
    let (columns, cells): (Vec<Column>, super::Cells) = match kind {
        "Namespace" => (vec![NAME, col("Status", "string", "The status of the namespace"), AGE], |o, now| {
            vec![name(o), o["status"]["phase"].clone(), age(o, now)]
        }),
        "ConfigMap" => (vec![NAME, col("Data", "string", "Number of entries in data"), AGE], |o, now| {
            vec![name(o), json!(len(&o["data"]) + len(&o["binaryData"])), age(o, now)]
        }),
        "Secret" => (
            vec![NAME, col("Type", "string", "The type of the secret"), col("Data", "string", "Number of entries in data"), AGE],
            |o, now| vec![name(o), json!(s(&o["type"])), json!(len(&o["data"])), age(o, now)],
        ),
        "ServiceAccount" => (vec![NAME, col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE], |o, now| {
            vec![name(o), json!(len(&o["secrets"])), age(o, now)]
        }),
        "Node" => (node_columns(), node_cells),
        "Service" => (service_columns(), service_cells),
        "Endpoints" => (vec![NAME, col("Endpoints", "string", "The set of all endpoints is the union of all subsets."), AGE], |o, now| {
            vec![name(o), json!(format_endpoints(o)), age(o, now)]
        }),
        "Event" => (event_columns(), event_cells),
        "PersistentVolume" => (pv_columns(), pv_cells),
        "PersistentVolumeClaim" => (pvc_columns(), pvc_cells),
        "ResourceQuota" => (
            vec![
                NAME,
                col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
                col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
                AGE,
            ],
            quota_cells,
        ),
        // No printer upstream: the default table convertor.
        "LimitRange" => return Some(super::default_printer()),
        "ReplicationController" => (
            vec![
                NAME,
                col("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
                col("Current", "integer", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
                col("Ready", "integer", "The number of ready replicas for this replication controller."),
                AGE,
                wide("Containers", "string", CONTAINERS_DOC),
                wide("Images", "string", IMAGES_DOC),
                wide("Selector", "string", "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
            ],
            |o, now| {
                let (c, i) = containers_images(&o["spec"]["template"]["spec"]);
                let replicas = o["spec"]["replicas"].as_i64().unwrap_or(1);
                vec![name(o), json!(replicas), json!(int(&o["status"]["replicas"])), json!(int(&o["status"]["readyReplicas"])), age(o, now), c, i, json!(format_labels(&o["spec"]["selector"]))]
            },
        ),
        "PodTemplate" => (
            vec![
                NAME,
                col("Containers", "string", CONTAINERS_DOC),
                col("Images", "string", IMAGES_DOC),
                col("Pod Labels", "string", "The labels for the pod template."),
            ],
            |o, _| {
                let (c, i) = containers_images(&o["template"]["spec"]);
                vec![name(o), c, i, json!(format_labels(&o["template"]["metadata"]["labels"]))]
            },
        ),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

fn node_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Status", "string", "The status of the node"),
        col("Roles", "string", "The roles of the node"),
        AGE,
        col("Version", "string", "Kubelet Version reported by the node."),
        wide("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses"),
        wide("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses"),
        wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
        wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
        wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
    ]
}

fn node_cells(o: &Value, now: i64) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = arr(&o["status"]["conditions"]).iter().rev().find(|c| s(&c["type"]) == "Ready") {
        status.push(if s(&c["status"]) == "True" { "Ready".into() } else { "NotReady".into() });
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if o["spec"]["unschedulable"].as_bool() == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = o["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" && !s(v).is_empty() {
                roles.push(s(v).to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() { "<none>".to_string() } else { roles.join(",") };
    let address = |ty: &str| {
        arr(&o["status"]["addresses"]).iter().find(|a| s(&a["type"]) == ty).map(|a| s(&a["address"]).to_string()).unwrap_or_else(|| "<none>".into())
    };
    let info = &o["status"]["nodeInfo"];
    vec![
        name(o),
        json!(status.join(",")),
        json!(roles),
        age(o, now),
        json!(s(&info["kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or(s(&info["osImage"]), "<unknown>")),
        json!(or(s(&info["kernelVersion"]), "<unknown>")),
        json!(or(s(&info["containerRuntimeVersion"]), "<unknown>")),
    ]
}

fn service_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types"),
        col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"),
        col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system."),
        col("Port(s)", "string", "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"),
        AGE,
        wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/"),
    ]
}

fn strings(v: &Value) -> Vec<String> {
    arr(v).iter().map(|x| s(x).to_string()).collect()
}

fn service_external_ip(o: &Value) -> String {
    let spec = &o["spec"];
    let external = strings(&spec["externalIPs"]);
    match s(&spec["type"]) {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() { "<none>".into() } else { external.join(",") }
        }
        "LoadBalancer" => {
            let mut lb: Vec<String> = arr(&o["status"]["loadBalancer"]["ingress"])
                .iter()
                .filter_map(|i| [s(&i["ip"]), s(&i["hostname"])].into_iter().find(|x| !x.is_empty()).map(str::to_string))
                .collect();
            lb.sort();
            lb.dedup();
            let all: Vec<String> = lb.into_iter().chain(external).collect();
            if all.is_empty() { "<pending>".into() } else { all.join(",") }
        }
        "ExternalName" => s(&spec["externalName"]).to_string(),
        _ => "<unknown>".into(),
    }
}

fn service_cells(o: &Value, now: i64) -> Vec<Value> {
    let spec = &o["spec"];
    let cluster_ip = arr(&spec["clusterIPs"]).first().map(|v| s(v).to_string()).unwrap_or_else(|| "<none>".into());
    let ports: Vec<String> = arr(&spec["ports"])
        .iter()
        .map(|p| {
            let proto = s(&p["protocol"]);
            match int(&p["nodePort"]) {
                np if np > 0 => format!("{}:{np}/{proto}", int(&p["port"])),
                _ => format!("{}/{proto}", int(&p["port"])),
            }
        })
        .collect();
    let ports = if ports.is_empty() { "<none>".to_string() } else { ports.join(",") };
    vec![name(o), json!(s(&spec["type"])), json!(cluster_ip), json!(service_external_ip(o)), json!(ports), age(o, now), json!(format_labels(&spec["selector"]))]
}

/// The first three `ip:port` pairs, then `+ N more...`.
fn format_endpoints(o: &Value) -> String {
    let subsets = arr(&o["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    let join = |ip: &str, port: i64| if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
    for ss in subsets {
        let addrs = arr(&ss["addresses"]);
        let ports = arr(&ss["ports"]);
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(s(&a["ip"]).to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join(s(&a["ip"]), int(&p["port"])));
            }
        }
    }
    let ret = list.join(",");
    if more { format!("{ret} + {} more...", count - MAX) } else { ret }
}

pub(super) fn event_columns() -> Vec<Column> {
    vec![
        col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
        col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
        col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
        col("Object", "string", "The object that this event is about."),
        wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object."),
        wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
        col("Message", "string", "A human-readable description of the status of this operation."),
        wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
        wide("Count", "string", "The number of times this event has occurred."),
        Column { priority: 1, ..NAME },
    ]
}

/// A core/v1 Event's cells; events.k8s.io Events are converted to this shape first.
pub(super) fn event_cells(o: &Value, now: i64) -> Vec<Value> {
    let first = if o["firstTimestamp"].is_string() { since(&o["firstTimestamp"], now) } else { since(&o["eventTime"], now) };
    let mut last = if o["lastTimestamp"].is_string() { since(&o["lastTimestamp"], now) } else { first.clone() };
    let mut count = int(&o["count"]);
    if o["series"].is_object() {
        last = since(&o["series"]["lastObservedTime"], now);
        count = int(&o["series"]["count"]);
    } else if count == 0 {
        count = 1;
    }
    let inv = &o["involvedObject"];
    let kind = s(&inv["kind"]).to_lowercase();
    let target = if s(&inv["name"]).is_empty() { kind } else { format!("{kind}/{}", s(&inv["name"])) };
    let component = or(s(&o["source"]["component"]), s(&o["reportingComponent"])).to_string();
    let instance = or(s(&o["source"]["host"]), s(&o["reportingInstance"]));
    let source = if instance.is_empty() { component } else { format!("{component}, {instance}") };
    vec![
        json!(last),
        json!(s(&o["type"])),
        json!(s(&o["reason"])),
        json!(target),
        json!(s(&inv["fieldPath"])),
        json!(source),
        json!(s(&o["message"]).trim()),
        json!(first),
        json!(count),
        name(o),
    ]
}

/// helper.GetAccessModesAsString.
fn access_modes(v: &Value) -> String {
    let modes = strings(v);
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(m, _)| modes.iter().any(|x| x == m))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

fn storage_class(o: &Value) -> String {
    match o["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"].as_str() {
        Some(c) => c.to_string(),
        None => s(&o["spec"]["storageClassName"]).to_string(),
    }
}

fn quantity(v: &Value) -> String {
    match v {
        Value::String(q) => canonical_quantity(q),
        Value::Number(n) => canonical_quantity(&n.to_string()),
        _ => "0".into(),
    }
}

/// resource.Quantity's canonical String(): `1024Mi` is `1Gi`, `2000` is
/// `2k`, `0.5` is `500m`; binary suffixes stay binary when the amount is
/// a whole number of at least 1024. (Precision: thousandths.)
pub(super) fn canonical_quantity(q: &str) -> String {
    let Some(v) = crate::quantity::parse(q) else { return q.to_string() };
    if v == 0 {
        return "0".into();
    }
    let exponent = q.trim().trim_start_matches(['+', '-']).contains(['e', 'E']);
    if q.trim().ends_with('i') && v % 1000 == 0 && (v / 1000).abs() >= 1024 {
        let units = v / 1000;
        for (k, suffix) in [(6, "Ei"), (5, "Pi"), (4, "Ti"), (3, "Gi"), (2, "Mi"), (1, "Ki")] {
            let d = 1i128 << (10 * k);
            if units % d == 0 {
                return format!("{}{suffix}", units / d);
            }
        }
    }
    let (mut m, mut e) = (v, -3i32);
    while m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    while e.rem_euclid(3) != 0 || e > 18 {
        m *= 10;
        e -= 1;
    }
    let suffix = if exponent {
        if e == 0 { String::new() } else { format!("e{e}") }
    } else {
        match e {
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        }
        .to_string()
    };
    format!("{m}{suffix}")
}

const VOLUME_MODE_DOC: &str = "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.";

fn pv_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"),
        col("Access Modes", "string", "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"),
        col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"),
        col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"),
        col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"),
        col("StorageClass", "string", "StorageClass of the pv"),
        col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
        col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
        AGE,
        wide("VolumeMode", "string", VOLUME_MODE_DOC),
    ]
}

fn pv_cells(o: &Value, now: i64) -> Vec<Value> {
    let spec = &o["spec"];
    let claim = if spec["claimRef"].is_object() { format!("{}/{}", s(&spec["claimRef"]["namespace"]), s(&spec["claimRef"]["name"])) } else { String::new() };
    let phase = if o["metadata"]["deletionTimestamp"].is_string() { "Terminating" } else { s(&o["status"]["phase"]) };
    vec![
        name(o),
        json!(quantity(&spec["capacity"]["storage"])),
        json!(access_modes(&spec["accessModes"])),
        json!(s(&spec["persistentVolumeReclaimPolicy"])),
        json!(phase),
        json!(claim),
        json!(storage_class(o)),
        json!(spec["volumeAttributesClassName"].as_str().unwrap_or("<unset>")),
        json!(s(&o["status"]["reason"])),
        age(o, now),
        json!(spec["volumeMode"].as_str().unwrap_or("<unset>")),
    ]
}

fn pvc_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
        col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
        col("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
        col("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
        col("StorageClass", "string", "StorageClass of the pvc"),
        col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
        AGE,
        wide("VolumeMode", "string", VOLUME_MODE_DOC),
    ]
}

fn pvc_cells(o: &Value, now: i64) -> Vec<Value> {
    let spec = &o["spec"];
    let phase = if o["metadata"]["deletionTimestamp"].is_string() { "Terminating" } else { s(&o["status"]["phase"]) };
    let (capacity, modes) = if s(&spec["volumeName"]).is_empty() {
        (String::new(), String::new())
    } else {
        (quantity(&o["status"]["capacity"]["storage"]), access_modes(&o["status"]["accessModes"]))
    };
    let vac = spec["volumeAttributesClassName"].as_str().unwrap_or("<unset>");
    vec![
        name(o),
        json!(phase),
        json!(s(&spec["volumeName"])),
        json!(capacity),
        json!(modes),
        json!(storage_class(o)),
        json!(vac),
        age(o, now),
        json!(spec["volumeMode"].as_str().unwrap_or("<unset>")),
    ]
}

fn quota_cells(o: &Value, now: i64) -> Vec<Value> {
    let hard = o["status"]["hard"].as_object().cloned().unwrap_or_default();
    let mut names: Vec<&String> = hard.keys().collect();
    names.sort();
    let (mut req, mut lim) = (Vec::new(), Vec::new());
    for r in names {
        let used = quantity(&o["status"]["used"][r.as_str()]);
        let entry = format!("{r}: {used}/{}", quantity(&hard[r.as_str()]));
        if r.split('.').count() > 1 && r.split('.').next() == Some("limits") {
            lim.push(entry);
        } else {
            req.push(entry);
        }
    }
    vec![name(o), json!(req.join(", ")), json!(lim.join(", ")), age(o, now)]
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ago, cells, headers};
    use serde_json::json;

    fn names(kind: &str) -> Vec<String> {
        headers("", kind).into_iter().map(|h| h.0).collect()
    }

    #[test]
    fn node() {
        assert_eq!(names("Node"), ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]);
        let n = json!({"metadata": {"name": "n1", "creationTimestamp": ago(3 * 86400 + 7200), "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "", "kubernetes.io/role": "edge"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.0"}}});
        assert_eq!(cells("", "Node", &n), [json!("n1"), json!("Ready,SchedulingDisabled"), json!("control-plane,edge,worker"), json!("3d2h"), json!("v1.33.0"),
            json!("10.0.0.1"), json!("<none>"), json!("Debian GNU/Linux 12 (bookworm)"), json!("6.1.0"), json!("containerd://1.7.0")]);
        let bare = json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let c = cells("", "Node", &bare);
        assert_eq!((c[1].as_str(), c[2].as_str(), c[3].as_str(), c[7].as_str()), (Some("NotReady"), Some("<none>"), Some("<unknown>"), Some("<unknown>")));
        assert_eq!(cells("", "Node", &json!({"metadata": {"name": "n3"}}))[1], "Unknown");
    }

    #[test]
    fn service() {
        assert_eq!(names("Service"), ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]);
        let svc = json!({"metadata": {"name": "web", "creationTimestamp": ago(60)}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web", "tier": "fe"}}});
        assert_eq!(cells("", "Service", &svc), [json!("web"), json!("NodePort"), json!("10.96.0.10"), json!("<none>"), json!("80:30080/TCP,53/UDP"), json!("60s"), json!("app=web,tier=fe")]);
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"], "externalIPs": ["1.2.3.4"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example"}, {"ip": "5.6.7.8"}]}}});
        let c = cells("", "Service", &lb);
        assert_eq!((c[3].as_str(), c[4].as_str(), c[6].as_str()), (Some("5.6.7.8,lb.example,1.2.3.4"), Some("<none>"), Some("<none>")));
        let pending = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"}});
        assert_eq!(cells("", "Service", &pending)[3], "<pending>");
        let ext = json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(cells("", "Service", &ext)[2..4], [json!("<none>"), json!("db.example.com")]);
    }

    #[test]
    fn endpoints() {
        let ep = |subsets| json!({"metadata": {"name": "e"}, "subsets": subsets});
        assert_eq!(cells("", "Endpoints", &ep(json!([])))[1], "<none>");
        let two = ep(json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]));
        assert_eq!(cells("", "Endpoints", &two)[1], "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...");
        let noports = ep(json!([{"addresses": [{"ip": "10.0.0.1"}]}]));
        assert_eq!(cells("", "Endpoints", &noports)[1], "10.0.0.1");
    }

    #[test]
    fn event() {
        assert_eq!(names("Event"), ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN", "COUNT", "NAME"]);
        let e = json!({"metadata": {"name": "p.1"}, "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
            "reason": "Pulled", "message": "Pulled image \n", "type": "Normal", "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 4});
        assert_eq!(cells("", "Event", &e), [json!("30s"), json!("Normal"), json!("Pulled"), json!("pod/p"), json!("spec.containers{a}"), json!("kubelet, n1"),
            json!("Pulled image"), json!("10m"), json!(4), json!("p.1")]);
        let new = json!({"metadata": {"name": "x"}, "involvedObject": {"kind": "Node"}, "eventTime": "2023-12-31T23:59:00.000000Z", "reportingComponent": "sched"});
        let c = cells("", "Event", &new);
        assert_eq!((c[0].as_str(), c[3].as_str(), c[5].as_str(), c[8].as_i64()), (Some("60s"), Some("node"), Some("sched"), Some(1)));
    }

    #[test]
    fn quantities_print_canonically() {
        for (q, want) in [("10Gi", "10Gi"), ("1024Mi", "1Gi"), ("1536Mi", "1536Mi"), ("512", "512"), ("0.5Gi", "512Mi"), ("2000", "2k"), ("0.5", "500m"),
            ("1500m", "1500m"), ("1000m", "1"), ("4", "4"), ("1G", "1G"), ("0", "0"), ("1e3", "1e3"), ("100M", "100M")] {
            assert_eq!(super::canonical_quantity(q), want, "{q}");
        }
    }

    #[test]
    fn volumes() {
        assert_eq!(names("PersistentVolume"), ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "REASON", "AGE", "VOLUMEMODE"]);
        let pv = json!({"metadata": {"name": "pv1", "creationTimestamp": ago(10)}, "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "default", "name": "c"}, "storageClassName": "fast", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        assert_eq!(cells("", "PersistentVolume", &pv), [json!("pv1"), json!("10Gi"), json!("RWO,RWX"), json!("Retain"), json!("Bound"), json!("default/c"), json!("fast"),
            json!("<unset>"), json!(""), json!("10s"), json!("Filesystem")]);
        assert_eq!(names("PersistentVolumeClaim"), ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE", "VOLUMEMODE"]);
        let pending = json!({"metadata": {"name": "c", "creationTimestamp": ago(10)}, "spec": {"resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "fast"}, "status": {"phase": "Pending"}});
        assert_eq!(cells("", "PersistentVolumeClaim", &pending), [json!("c"), json!("Pending"), json!(""), json!(""), json!(""), json!("fast"), json!("<unset>"), json!("10s"), json!("<unset>")]);
        let bound = json!({"metadata": {"name": "c"}, "spec": {"volumeName": "pv1"}, "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(cells("", "PersistentVolumeClaim", &bound)[2..5], [json!("pv1"), json!("10Gi"), json!("RWO")]);
    }

    #[test]
    fn small_kinds() {
        let o = |extra: serde_json::Value| {
            let mut v = json!({"metadata": {"name": "x", "creationTimestamp": ago(3 * 3600 + 600)}});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            v
        };
        assert_eq!(cells("", "Secret", &o(json!({"type": "kubernetes.io/tls", "data": {"a": "", "b": ""}}))), [json!("x"), json!("kubernetes.io/tls"), json!(2), json!("3h10m")]);
        assert_eq!(cells("", "ConfigMap", &o(json!({"data": {"a": ""}, "binaryData": {"b": ""}})))[1], 2);
        assert_eq!(cells("", "ServiceAccount", &o(json!({"secrets": [{"name": "t"}]})))[1], 1);
        assert_eq!(cells("", "Namespace", &o(json!({"status": {"phase": "Active"}})))[1], "Active");
        let lr = o(json!({}));
        assert_eq!(cells("", "LimitRange", &lr)[1], lr["metadata"]["creationTimestamp"]);
        assert_eq!(names("LimitRange"), ["NAME", "CREATED AT"]);
        let rq = o(json!({"status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi", "limits.memory": "2Gi"}, "used": {"pods": "3", "limits.cpu": "500m"}}}));
        assert_eq!(names("ResourceQuota"), ["NAME", "REQUEST", "LIMIT", "AGE"]);
        assert_eq!(cells("", "ResourceQuota", &rq)[1..3], [json!("pods: 3/10, requests.memory: 0/1Gi"), json!("limits.cpu: 500m/2, limits.memory: 0/2Gi")]);
        let rc = o(json!({"spec": {"replicas": 3, "selector": {"app": "a"}, "template": {"spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]}}}, "status": {"replicas": 3, "readyReplicas": 2}}));
        assert_eq!(cells("", "ReplicationController", &rc), [json!("x"), json!(3), json!(3), json!(2), json!("3h10m"), json!("a,b"), json!("nginx,busybox"), json!("app=a")]);
        assert_eq!(names("ReplicationController"), ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
        let pt = o(json!({"template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}}}));
        assert_eq!(cells("", "PodTemplate", &pt), [json!("x"), json!("a"), json!("nginx"), json!("app=a")]);
    }
}
