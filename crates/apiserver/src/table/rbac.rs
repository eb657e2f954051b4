//! rbac.authorization.k8s.io/v1: Role, ClusterRole and their bindings.

use serde_json::{json, Value};

use super::{age, arr, col, name, s, wide, Column, Printer, AGE, NAME};

pub(super) fn printer(kind: &str) -> Option<Printer> {
    let (columns, cells): (Vec<Column>, super::Cells) = match kind {
        // No printer upstream: the default table convertor.
        "Role" | "ClusterRole" => return Some(super::default_printer()),
        "RoleBinding" | "ClusterRoleBinding" => (
            vec![
                NAME,
                col("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. This field is immutable."),
                AGE,
                wide("Users", "string", "Users in the roleBinding"),
                wide("Groups", "string", "Groups in the roleBinding"),
                wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
            ],
            binding_cells,
        ),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

fn binding_cells(o: &Value, now: i64) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for sub in arr(&o["subjects"]) {
        match s(&sub["kind"]) {
            "User" => users.push(s(&sub["name"]).to_string()),
            "Group" => groups.push(s(&sub["name"]).to_string()),
            "ServiceAccount" => sas.push(format!("{}:{}", s(&sub["namespace"]), s(&sub["name"]))),
            _ => {}
        }
    }
    let role = format!("{}/{}", s(&o["roleRef"]["kind"]), s(&o["roleRef"]["name"]));
    vec![name(o), json!(role), age(o, now), json!(users.join(", ")), json!(groups.join(", ")), json!(sas.join(", "))]
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ago, cells, headers};
    use serde_json::json;

    #[test]
    fn roles_and_bindings() {
        let h: Vec<String> = headers("rbac.authorization.k8s.io", "ClusterRoleBinding").into_iter().map(|h| h.0).collect();
        assert_eq!(h, ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]);
        let rb = json!({"metadata": {"name": "rb", "creationTimestamp": ago(20)}, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}, {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "namespace": "ci", "name": "bot"}]});
        assert_eq!(cells("rbac.authorization.k8s.io", "RoleBinding", &rb), [json!("rb"), json!("ClusterRole/view"), json!("20s"), json!("alice, bob"), json!("devs"), json!("ci:bot")]);
        let role = json!({"metadata": {"name": "r", "creationTimestamp": "2023-12-31T00:00:00Z"}});
        assert_eq!(cells("rbac.authorization.k8s.io", "Role", &role), [json!("r"), json!("2023-12-31T00:00:00Z")]);
    }
}
