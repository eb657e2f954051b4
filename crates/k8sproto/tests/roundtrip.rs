//! JSON → protobuf → JSON round trips for every served kind, the wire
//! details that must match upstream byte for byte, and a fuzz-style check
//! that no input makes the decoder panic.

use proptest::prelude::*;
use serde_json::{json, Value};
use skiff_k8sproto::{decode, encode, Error, MAGIC};

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "uid": "0b5c3c36-7d3c-4a9e-9a53-2d4f1d2f8e11", "resourceVersion": "42",
           "generation": 3, "creationTimestamp": "2025-01-02T03:04:05Z", "labels": {"app": name, "tier": "x"},
           "annotations": {"a/b": "c"}, "finalizers": ["f/one"],
           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true, "blockOwnerDeletion": false}],
           "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": "2025-01-02T03:04:05Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {}}}}]})
}

fn pod_spec() -> Value {
    json!({
        "volumes": [
            {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "k", "path": "p", "mode": 420}], "defaultMode": 420, "optional": false}},
            {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
            {"name": "proj", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}, {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "pvc", "readOnly": true}}
        ],
        "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"], "restartPolicy": "Always"}],
        "containers": [{
            "name": "app", "image": "nginx:1.27", "command": ["nginx"], "args": ["-g", "daemon off;"], "workingDir": "/srv",
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "0.0.0.0"}],
            "envFrom": [{"prefix": "CM_", "configMapRef": {"name": "cm", "optional": true}}, {"secretRef": {"name": "s"}}],
            "env": [{"name": "A", "value": "1"}, {"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw", "optional": false}}},
                    {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "c"}}}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true}, {"name": "tmp", "mountPath": "/tmp", "subPath": "x", "mountPropagation": "None"}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP", "httpHeaders": [{"name": "X", "value": "y"}]}, "initialDelaySeconds": 3, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
            "startupProbe": {"exec": {"command": ["cat", "/ready"]}, "failureThreshold": 30, "terminationGracePeriodSeconds": 0},
            "lifecycle": {"preStop": {"sleep": {"seconds": 5}}, "postStart": {"exec": {"command": ["echo"]}}},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
            "securityContext": {"runAsUser": 0, "runAsNonRoot": false, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, "readOnlyRootFilesystem": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "stdin": true, "tty": true
        }],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "nodeSelector": {"kubernetes.io/os": "linux"}, "serviceAccountName": "default", "serviceAccount": "default",
        "automountServiceAccountToken": false, "nodeName": "node-1", "hostNetwork": true,
        "securityContext": {"fsGroup": 2000, "supplementalGroups": [1, 2, 3], "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
        "imagePullSecrets": [{"name": "regcred"}], "hostname": "h", "subdomain": "sd",
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}},
                     "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}}]}},
        "schedulerName": "default-scheduler",
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a", "b"]}], "priorityClassName": "high", "priority": 0,
        "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]},
        "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}],
        "os": {"name": "linux"}, "schedulingGates": [{"name": "g"}]
    })
}

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "web"}, "creationTimestamp": null}, "spec": pod_spec()})
}

/// Every served kind (and some lists), as rich as the types allow.
fn objects() -> Vec<Value> {
    let ts = "2025-06-07T08:09:10Z";
    vec![
        json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "ns1", "creationTimestamp": ts}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active", "conditions": [{"type": "NamespaceDeletionContentFailure", "status": "False", "lastTransitionTime": ts, "reason": "r", "message": "m"}]}}),
        json!({"kind": "Pod", "apiVersion": "v1", "metadata": meta("p"), "spec": pod_spec(),
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ts}], "hostIP": "10.0.0.2", "hostIPs": [{"ip": "10.0.0.2"}], "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}], "startTime": ts, "qosClass": "Burstable",
                          "containerStatuses": [{"name": "app", "ready": true, "restartCount": 2, "image": "nginx:1.27", "imageID": "sha256:x", "containerID": "containerd://y", "started": true, "state": {"running": {"startedAt": ts}}, "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": ts, "finishedAt": ts}}}]}}),
        json!({"kind": "Service", "apiVersion": "v1", "metadata": meta("svc"),
               "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}, {"name": "named", "protocol": "TCP", "port": 443, "targetPort": "https", "nodePort": 30443, "appProtocol": "https"}],
                        "selector": {"app": "web"}, "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "type": "NodePort", "sessionAffinity": "ClientIP",
                        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}, "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster", "externalTrafficPolicy": "Cluster"},
               "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "ipMode": "VIP", "ports": [{"port": 80, "protocol": "TCP"}]}]}}}),
        json!({"kind": "Endpoints", "apiVersion": "v1", "metadata": meta("svc"), "subsets": [{"addresses": [{"ip": "10.1.0.5", "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u"}}], "notReadyAddresses": [{"ip": "10.1.0.6"}], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}),
        json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta("cm"), "data": {"k": "v", "multi": "a\nb\n", "empty": ""}, "binaryData": {"bin": "AAEC/w=="}, "immutable": false}),
        json!({"kind": "Secret", "apiVersion": "v1", "metadata": meta("s"), "type": "Opaque", "data": {"password": "czNjcjN0", "bin": "AP8A/w==", "empty": ""}, "immutable": true}),
        json!({"kind": "ServiceAccount", "apiVersion": "v1", "metadata": meta("sa"), "secrets": [{"name": "sa-token"}], "imagePullSecrets": [{"name": "regcred"}], "automountServiceAccountToken": false}),
        json!({"kind": "Event", "apiVersion": "v1", "metadata": meta("e"), "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u", "apiVersion": "v1", "resourceVersion": "7", "fieldPath": "spec.containers{app}"},
               "reason": "Pulled", "message": "pulled", "source": {"component": "kubelet", "host": "n1"}, "firstTimestamp": ts, "lastTimestamp": ts, "count": 3, "type": "Normal",
               "eventTime": "2025-06-07T08:09:10.123456Z", "series": {"count": 2, "lastObservedTime": "2025-06-07T08:09:11.000001Z"}, "reportingComponent": "kubelet", "reportingInstance": "n1"}),
        json!({"kind": "LimitRange", "apiVersion": "v1", "metadata": meta("lr"), "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"cpu": "10m"}, "default": {"memory": "256Mi"}, "defaultRequest": {"memory": "128Mi"}, "maxLimitRequestRatio": {"cpu": "4"}}]}}),
        json!({"kind": "ResourceQuota", "apiVersion": "v1", "metadata": meta("q"), "spec": {"hard": {"pods": "10", "requests.cpu": "4"}, "scopes": ["NotTerminating"], "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}, "status": {"hard": {"pods": "10"}, "used": {"pods": "0"}}}),
        json!({"kind": "PodTemplate", "apiVersion": "v1", "metadata": meta("pt"), "template": template()}),
        json!({"kind": "ReplicationController", "apiVersion": "v1", "metadata": meta("rc"), "spec": {"replicas": 0, "selector": {"app": "web"}, "template": template(), "minReadySeconds": 5}, "status": {"replicas": 1, "observedGeneration": 2}}),
        json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": meta("web"),
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template(),
                        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}}, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600, "paused": true, "minReadySeconds": 1},
               "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1, "unavailableReplicas": 1,
                          "conditions": [{"type": "Available", "status": "False", "lastUpdateTime": ts, "lastTransitionTime": ts, "reason": "MinimumReplicasUnavailable", "message": "m"}], "collisionCount": 0}}),
        json!({"kind": "ReplicaSet", "apiVersion": "apps/v1", "metadata": meta("rs"), "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}}, "template": template()}, "status": {"replicas": 0, "fullyLabeledReplicas": 1}}),
        json!({"kind": "StatefulSet", "apiVersion": "apps/v1", "metadata": meta("db"),
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "db"}}, "template": template(), "serviceName": "db", "podManagementPolicy": "Parallel",
                        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 1}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "standard", "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}],
                        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}, "ordinals": {"start": 1}},
               "status": {"replicas": 3, "currentRevision": "db-1", "updateRevision": "db-2", "availableReplicas": 3}}),
        json!({"kind": "DaemonSet", "apiVersion": "apps/v1", "metadata": meta("ds"), "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(), "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}, "revisionHistoryLimit": 10},
               "status": {"currentNumberScheduled": 1, "desiredNumberScheduled": 1, "numberReady": 1}}),
        json!({"kind": "ControllerRevision", "apiVersion": "apps/v1", "metadata": meta("cr"), "data": {"spec": {"template": {"$patch": "replace", "spec": {"containers": [{"name": "a"}]}}}}, "revision": 4}),
        json!({"kind": "Job", "apiVersion": "batch/v1", "metadata": meta("j"),
               "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 6, "activeDeadlineSeconds": 100, "ttlSecondsAfterFinished": 0, "completionMode": "NonIndexed", "suspend": false, "manualSelector": false,
                        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}, "template": template(), "podReplacementPolicy": "TerminatingOrFailed",
                        "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "app", "operator": "In", "values": [1, 2, 42]}}, {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}},
               "status": {"startTime": ts, "active": 1, "ready": 0, "terminating": 0, "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": ts, "lastTransitionTime": ts}], "uncountedTerminatedPods": {"succeeded": ["a"]}}}),
        json!({"kind": "CronJob", "apiVersion": "batch/v1", "metadata": meta("cj"),
               "spec": {"schedule": "*/5 * * * *", "timeZone": "Etc/UTC", "startingDeadlineSeconds": 60, "concurrencyPolicy": "Forbid", "suspend": false, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                        "jobTemplate": {"metadata": {"name": "cj", "creationTimestamp": null}, "spec": {"template": template()}}},
               "status": {"active": [{"kind": "Job", "namespace": "default", "name": "cj-1", "uid": "u", "apiVersion": "batch/v1", "resourceVersion": "9"}], "lastScheduleTime": ts}}),
        json!({"kind": "Lease", "apiVersion": "coordination.k8s.io/v1", "metadata": meta("l"), "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "acquireTime": "2025-06-07T08:09:10.000000Z", "renewTime": "2025-06-07T08:09:10.654321Z", "leaseTransitions": 0}}),
        json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "metadata": meta("es"), "addressType": "IPv4",
               "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true, "serving": true, "terminating": false}, "nodeName": "n1", "zone": "a", "targetRef": {"kind": "Pod", "name": "p"}, "hints": {"forZones": [{"name": "a"}]}}],
               "ports": [{"name": "", "protocol": "TCP", "port": 80}]}),
        json!({"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": meta("ev"), "eventTime": "2025-06-07T08:09:10.000001Z", "reportingController": "c", "reportingInstance": "i", "action": "Bind", "reason": "Scheduled",
               "regarding": {"kind": "Pod", "name": "p"}, "note": "n", "type": "Normal", "deprecatedSource": {"component": "s"}, "deprecatedFirstTimestamp": ts, "deprecatedCount": 2}),
        json!({"kind": "PriorityClass", "apiVersion": "scheduling.k8s.io/v1", "metadata": {"name": "high", "creationTimestamp": ts}, "value": 1000000, "globalDefault": true, "description": "d", "preemptionPolicy": "Never"}),
        json!({"kind": "PodDisruptionBudget", "apiVersion": "policy/v1", "metadata": meta("pdb"), "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}, "unhealthyPodEvictionPolicy": "AlwaysAllow"},
               "status": {"observedGeneration": 1, "disruptedPods": {"p": ts}, "disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2, "conditions": [{"type": "DisruptionAllowed", "status": "True", "observedGeneration": 1, "lastTransitionTime": ts, "reason": "SufficientPods"}]}}),
        json!({"kind": "Role", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": meta("r"), "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]}]}),
        json!({"kind": "RoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": meta("rb"), "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "default"}, {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"}], "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}}),
        json!({"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "cr"}, "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}], "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]}}),
        json!({"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": "crb"}, "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"}], "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}}),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "pods \"x\" not found", "reason": "NotFound", "details": {"name": "x", "kind": "pods", "causes": [{"reason": "FieldValueInvalid", "message": "m", "field": "spec"}]}, "code": 404}),
        json!({"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {"resourceVersion": "77", "continue": "abc", "remainingItemCount": 0},
               "items": [{"metadata": {"name": "a", "namespace": "default"}, "spec": {"replicas": 1, "selector": {}, "template": {"metadata": {}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}]}),
        json!({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "5"}, "items": []}),
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web", "namespace": "default", "resourceVersion": "9"}, "spec": {"replicas": 3}, "status": {"replicas": 0, "selector": "app=web"}}),
        json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {"name": "default", "namespace": "default"},
               "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"}},
               "status": {"token": "", "expirationTimestamp": "2025-06-07T09:09:10Z"}}),
        json!({"kind": "Binding", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "default"}, "target": {"kind": "Node", "name": "n1"}}),
        json!({"kind": "Eviction", "apiVersion": "policy/v1", "metadata": {"name": "p", "namespace": "default"}, "deleteOptions": {"gracePeriodSeconds": 0, "preconditions": {"uid": "u"}, "dryRun": ["All"]}}),
    ]
}

/// `null` means absent, and an empty list is absent on the wire (plain
/// repeated field): compare with that in mind.
fn normalize(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, x)| !x.is_null() && !x.as_array().is_some_and(|a| a.is_empty()))
                .map(|(k, x)| (k, normalize(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        other => other,
    }
}

#[test]
fn every_kind_round_trips() {
    for obj in objects() {
        let bytes = encode(&obj).unwrap_or_else(|e| panic!("encode {}: {e}", obj["kind"]));
        assert_eq!(&bytes[..4], MAGIC);
        let back = decode(&bytes).unwrap_or_else(|e| panic!("decode {}: {e}", obj["kind"]));
        assert_eq!(normalize(back), normalize(obj.clone()), "{} did not round-trip", obj["kind"]);
    }
}

#[test]
fn wire_details_match_upstream() {
    // A ConfigMap named "a" with data {k: v}: ObjectMeta{name=1} is field 1, data is map field 2.
    let cm = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a"}, "data": {"k": "v"}});
    let b = encode(&cm).unwrap();
    let expected_inner: Vec<u8> = vec![0x0a, 0x03, 0x0a, 0x01, b'a', 0x12, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v'];
    // Unknown{typeMeta=1{apiVersion=1 "v1", kind=2 "ConfigMap"}, raw=2}
    let mut expected = b"k8s\0".to_vec();
    expected.extend([0x0a, 0x0f, 0x0a, 0x02, b'v', b'1', 0x12, 0x09]);
    expected.extend(b"ConfigMap");
    expected.extend([0x12, expected_inner.len() as u8]);
    expected.extend(&expected_inner);
    assert_eq!(b, expected);

    // IntOrString: an int is type 0 + intVal; a string type 1 + strVal.
    let svc = json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 81, "targetPort": "web"}]}});
    let back = decode(&encode(&svc).unwrap()).unwrap();
    assert_eq!(back["spec"]["ports"][0]["targetPort"], json!(8080));
    assert_eq!(back["spec"]["ports"][1]["targetPort"], json!("web"));

    // Secret data is raw bytes on the wire, base64 in JSON.
    let s = json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"}, "data": {"k": "aGVsbG8="}});
    let b = encode(&s).unwrap();
    assert!(b.windows(5).any(|w| w == b"hello"), "secret bytes are raw on the wire");

    // A zero Time (as Go writes an unset creationTimestamp: an empty message) is null.
    let raw = vec![0x0a, 0x05, 0x0a, 0x01, b'a', 0x42, 0x00];
    let body = skiff_k8sproto::envelope("v1", "ConfigMap", raw);
    assert_eq!(decode(&body).unwrap()["metadata"], json!({"name": "a", "creationTimestamp": null}));

    // A DELETE body: DeleteOptions names its kind, but carries no metadata.
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background", "gracePeriodSeconds": 0});
    assert_eq!(decode(&encode(&opts).unwrap()).unwrap(), opts);

    // replicas: 0 (a Go pointer) survives; a plain zero (minReadySeconds) is omitted.
    let d = json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "d"}, "spec": {"replicas": 0, "minReadySeconds": 0}});
    assert_eq!(decode(&encode(&d).unwrap()).unwrap()["spec"], json!({"replicas": 0}));
}

#[test]
fn errors_not_panics() {
    assert_eq!(decode(b"{}"), Err(Error::NoMagic));
    assert!(matches!(decode(b"k8s\0\xff\xff"), Err(Error::Decode(_))));
    // A kind we have no message for.
    let body = skiff_k8sproto::envelope("v1", "Node", vec![]);
    assert!(matches!(decode(&body), Err(Error::UnknownType { .. })));
    // An unknown field (number 15 in ConfigMap) is refused.
    let body = skiff_k8sproto::envelope("v1", "ConfigMap", vec![0x7a, 0x01, b'x']);
    assert!(matches!(decode(&body), Err(Error::UnknownField { number: 15, .. })), "{:?}", decode(&body));
    // ... also inside an embedded message (field 99 of ObjectMeta).
    let body = skiff_k8sproto::envelope("v1", "ConfigMap", vec![0x0a, 0x03, 0x98, 0x06, 0x01]);
    assert!(matches!(decode(&body), Err(Error::UnknownField { number: 99, .. })), "{:?}", decode(&body));
    // JSON the type does not have cannot be encoded.
    let bad = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a"}, "dta": {}});
    assert!(matches!(encode(&bad), Err(Error::Field { .. })));
    let bad = json!({"kind": "Deployment", "apiVersion": "apps/v1", "spec": {"replicas": "two"}});
    assert!(encode(&bad).is_err());
}

fn valid_bodies() -> Vec<Vec<u8>> {
    objects().iter().map(|o| encode(o).unwrap()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut body = MAGIC.to_vec();
        body.extend(&tail);
        let _ = decode(&body);
        let _ = decode(&tail);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_bodies_never_panic(which in 0usize..32, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let bodies = valid_bodies();
        let mut body = bodies[which % bodies.len()].clone();
        for (pos, byte) in flips {
            let i = 4 + pos % (body.len() - 4);
            body[i] = byte;
        }
        let _ = decode(&body);
        body.truncate(4 + cut % (body.len() - 3));
        let _ = decode(&body);
    }

    #[test]
    fn mutated_inner_messages_never_panic(which in 0usize..32, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        // Mutate the object's bytes but keep a well-formed envelope, so the
        // inner decoder and the JSON transcoder see the damage.
        let obj = &objects()[which % objects().len()];
        let full = encode(obj).unwrap();
        let desc = skiff_k8sproto::message_for(obj["apiVersion"].as_str().unwrap(), obj["kind"].as_str().unwrap()).unwrap();
        let mut inner = prost::Message::encode_to_vec(&skiff_k8sproto::from_json(&desc, obj).unwrap());
        prop_assume!(!inner.is_empty() && full.len() > inner.len());
        for (pos, byte) in flips {
            let i = pos % inner.len();
            inner[i] = byte;
        }
        let body = skiff_k8sproto::envelope(obj["apiVersion"].as_str().unwrap(), obj["kind"].as_str().unwrap(), inner);
        if let Ok(v) = decode(&body) {
            // Whatever decodes must encode again.
            let _ = encode(&v);
        }
    }
}
