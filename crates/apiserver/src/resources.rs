//! The built-in resource types the API serves: their group, version, kind,
//! names and scope. Discovery, routing and storage keys all come from here.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Subresources served (`status`, `scale`, …).
    pub subresources: &'static [&'static str],
    pub categories: &'static [&'static str],
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }
    /// Storage key prefix for all objects of this resource (upstream's layout).
    pub fn key_prefix(&self) -> String {
        if self.group.is_empty() || matches!(self.group, "apps" | "batch" | "policy") {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }
    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }
    /// Kinds whose changes to `spec` bump `metadata.generation`.
    pub fn has_spec(&self) -> bool {
        !matches!(self.kind, "ConfigMap" | "Secret" | "ServiceAccount" | "Event" | "Endpoints" | "EndpointSlice" | "ControllerRevision" | "PriorityClass" | "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" | "Namespace")
    }
}

macro_rules! r {
    ($g:expr, $v:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr, [$($short:expr),*], [$($sub:expr),*], [$($cat:expr),*]) => {
        Resource { group: $g, version: $v, kind: $kind, plural: $plural, singular: $singular, namespaced: $ns,
            short_names: &[$($short),*], subresources: &[$($sub),*], categories: &[$($cat),*] }
    };
}

pub static RESOURCES: &[Resource] = &[
    r!("", "v1", "Namespace", "namespaces", "namespace", false, ["ns"], ["status", "finalize"], []),
    r!("", "v1", "Pod", "pods", "pod", true, ["po"], ["status", "binding", "eviction", "log", "ephemeralcontainers", "exec", "attach", "portforward"], ["all"]),
    r!("", "v1", "Node", "nodes", "node", false, ["no"], ["status"], []),
    r!("", "v1", "Service", "services", "service", true, ["svc"], ["status"], ["all"]),
    r!("", "v1", "Endpoints", "endpoints", "endpoints", true, ["ep"], [], []),
    r!("", "v1", "ConfigMap", "configmaps", "configmap", true, ["cm"], [], []),
    r!("", "v1", "Secret", "secrets", "secret", true, [], [], []),
    r!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, ["sa"], ["token"], []),
    r!("", "v1", "Event", "events", "event", true, ["ev"], [], []),
    r!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, ["pv"], ["status"], []),
    r!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, ["pvc"], ["status"], []),
    r!("", "v1", "LimitRange", "limitranges", "limitrange", true, ["limits"], [], []),
    r!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, ["quota"], ["status"], []),
    r!("", "v1", "PodTemplate", "podtemplates", "podtemplate", true, [], [], []),
    r!("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true, ["rc"], ["status", "scale"], ["all"]),
    r!("apps", "v1", "Deployment", "deployments", "deployment", true, ["deploy"], ["status", "scale"], ["all"]),
    r!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, ["rs"], ["status", "scale"], ["all"]),
    r!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, ["sts"], ["status", "scale"], ["all"]),
    r!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, ["ds"], ["status"], ["all"]),
    r!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, [], [], []),
    r!("batch", "v1", "Job", "jobs", "job", true, [], ["status"], ["all"]),
    r!("batch", "v1", "CronJob", "cronjobs", "cronjob", true, ["cj"], ["status"], ["all"]),
    r!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, [], [], []),
    r!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, [], [], []),
    r!("events.k8s.io", "v1", "Event", "events", "event", true, ["ev"], [], []),
    r!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, ["pc"], [], []),
    r!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, ["pdb"], ["status"], []),
    r!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, [], [], []),
    r!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, [], [], []),
    r!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, [], [], []),
    r!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, [], [], []),
];

/// Resources that take only `create` and store nothing: upstream's review
/// APIs, answered from the request alone. Kept out of [`RESOURCES`] so
/// storage, routing, tables and OpenAPI never treat them as stored kinds;
/// only discovery lists them (see [`discoverable`]).
pub static CREATE_ONLY: &[Resource] = &[
    r!("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false, [], [], []),
    r!("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", false, [], [], []),
];

pub fn is_create_only(r: &Resource) -> bool {
    CREATE_ONLY.contains(r)
}

/// A create-only resource by group, version and plural.
pub fn find_create_only(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    CREATE_ONLY.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// API groups in discovery order (core first), each with its versions.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().chain(CREATE_ONLY) {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

pub fn in_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static Resource> + use<'a> {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

/// What discovery lists for a group-version: the stored resources, then
/// the create-only ones.
pub fn discoverable<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static Resource> + use<'a> {
    in_group_version(group, version).chain(CREATE_ONLY.iter().filter(move |r| r.group == group && r.version == version))
}
