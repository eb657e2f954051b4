//! The `paths` of a group-version document (OpenAPI v3 form): one entry per
//! REST path we route, with upstream's operation ids, parameters and
//! `x-kubernetes-action` / `x-kubernetes-group-version-kind` extensions.
//!
//! kubectl reads these, not just the schemas: before `create`/`apply` it
//! looks for the kind's PATCH operation and its `fieldValidation` query
//! parameter to decide whether the server validates (so it can send
//! `fieldValidation=Strict` instead of validating client-side), and
//! client-side `apply` uses the PATCH request body's
//! `application/strategic-merge-patch+json` to pick a strategic merge patch.

use serde_json::{json, Map, Value};

use super::schemas::{ref_to, KindNames, META};
use crate::discovery::subresource;
use crate::resources::Resource;

/// `rbac.authorization.k8s.io` → `RbacAuthorization`, `""` → `Core`.
fn group_ident(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group.trim_end_matches(".k8s.io").split('.').map(|p| p[..1].to_uppercase() + &p[1..]).collect()
}

fn tag(r: &Resource) -> String {
    let g = group_ident(r.group);
    format!("{}{}_{}", g[..1].to_lowercase(), &g[1..], r.version)
}

fn string_param(name: &str, inn: &str, desc: &str) -> Value {
    let mut p = json!({"name": name, "in": inn, "description": desc, "schema": {"type": "string", "uniqueItems": true}});
    if inn == "path" {
        p["required"] = json!(true);
    }
    p
}

fn query(name: &str, ty: &str, desc: &str) -> Value {
    json!({"name": name, "in": "query", "description": desc, "schema": {"type": ty, "uniqueItems": true}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut v = vec![
        query("dryRun", "string", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed"),
        query("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint."),
        query("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered."),
    ];
    if patch {
        v.push(query("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests."));
    }
    v
}

fn list_params() -> Vec<Value> {
    [
        ("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
        ("continue", "string", "The continue option should be set when retrieving more results from the server."),
        ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        ("limit", "integer", "limit is a maximum number of responses to return for a list call."),
        ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        ("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
        ("timeoutSeconds", "integer", "Timeout for the list/watch call."),
        ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    ]
    .iter()
    .map(|(n, t, d)| query(n, t, d))
    .collect()
}

fn content(schema: &Value, types: &[&str]) -> Value {
    Value::Object(types.iter().map(|t| (t.to_string(), json!({"schema": schema}))).collect())
}

const RESPONSE_TYPES: &[&str] = &["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];

fn responses(schema: &str, codes: &[&str]) -> Value {
    let mut m = Map::new();
    for code in codes {
        let desc = match *code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        m.insert(code.to_string(), json!({"description": desc, "content": content(&ref_to(schema), RESPONSE_TYPES)}));
    }
    m.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(m)
}

struct Op<'a> {
    r: &'a Resource,
    gvk: (&'a str, &'a str, &'a str),
    action: &'a str,
    id: String,
    desc: String,
    params: Vec<Value>,
    body: Option<(String, &'static [&'static str])>,
    response: (String, &'static [&'static str]),
}

fn render(op: Op) -> Value {
    let mut v = json!({
        "tags": [tag(op.r)],
        "description": op.desc,
        "operationId": op.id,
        "responses": responses(&op.response.0, op.response.1),
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": {"group": op.gvk.0, "version": op.gvk.1, "kind": op.gvk.2},
    });
    if !op.params.is_empty() {
        v["parameters"] = Value::Array(op.params);
    }
    if let Some((schema, types)) = op.body {
        v["requestBody"] = json!({"content": content(&ref_to(&schema), types), "required": true});
    }
    v
}

const PATCH_TYPES: &[&str] =
    &["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"];
const BODY_TYPES: &[&str] = &["*/*"];

/// Add the paths of one resource (its collection, its objects and their
/// subresources) to `paths`.
pub fn add(paths: &mut Map<String, Value>, n: &KindNames, schema_of: &dyn Fn(&str, &str) -> Option<String>) {
    let r = n.res;
    let gv = if r.group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{}/{}", r.group, r.version) };
    let scope = if r.namespaced { "Namespaced" } else { "" };
    // Operation ids as upstream: `listCoreV1NamespacedPod`, `deleteAppsV1CollectionNamespacedDeployment`.
    let gv_ident = format!("{}{}", group_ident(r.group), r.version[..1].to_uppercase() + &r.version[1..]);
    let ident = format!("{gv_ident}{scope}{}", r.kind);
    let base = if r.namespaced { format!("{gv}/namespaces/{{namespace}}/{}", r.plural) } else { format!("{gv}/{}", r.plural) };
    let gvk = (r.group, r.version, r.kind);
    let status = format!("{META}.Status");
    let mut common = vec![query("pretty", "string", "If 'true', then the output is pretty printed.")];
    if r.namespaced {
        common.insert(0, string_param("namespace", "path", "object name and auth scope, such as for teams and projects"));
    }
    type Body = Option<(String, &'static [&'static str])>;
    let op = |action, verb: &str, sub: &str, params, body: Body, response: (String, &'static [&'static str])| {
        let id = format!("{verb}{}{sub}", ident);
        let desc = match verb {
            "list" => format!("list or watch objects of kind {}", r.kind),
            "create" => format!("create a {}", r.kind),
            "deletecollection" => format!("delete collection of {}", r.kind),
            "read" => format!("read the specified {}", r.kind),
            "replace" => format!("replace the specified {}", r.kind),
            "patch" => format!("partially update the specified {}", r.kind),
            _ => format!("delete a {}", r.kind),
        };
        let id = if verb == "deletecollection" { format!("delete{gv_ident}Collection{scope}{}", r.kind) } else { id };
        render(Op { r, gvk, action, id, desc, params, body, response })
    };

    let mut coll = json!({
        "get": op("list", "list", "", list_params(), None, (n.list.clone(), &["200"])),
        "post": op("post", "create", "", write_params(false), Some((n.item.clone(), BODY_TYPES)), (n.item.clone(), &["200", "201", "202"])),
        "delete": op("deletecollection", "deletecollection", "", list_params(), Some((format!("{META}.DeleteOptions"), BODY_TYPES)), (status.clone(), &["200"])),
        "parameters": common.clone(),
    });
    if r.kind == "Namespace" {
        coll.as_object_mut().unwrap().remove("delete");
    }
    paths.insert(base.clone(), coll);

    let mut item_params = common.clone();
    item_params.insert(0, string_param("name", "path", &format!("name of the {}", r.kind)));
    paths.insert(
        format!("{base}/{{name}}"),
        json!({
            "get": op("get", "read", "", vec![], None, (n.item.clone(), &["200"])),
            "put": op("put", "replace", "", write_params(false), Some((n.item.clone(), BODY_TYPES)), (n.item.clone(), &["200", "201"])),
            "patch": op("patch", "patch", "", write_params(true), Some((format!("{META}.Patch"), PATCH_TYPES)), (n.item.clone(), &["200", "201"])),
            "delete": op("delete", "delete", "", vec![], Some((format!("{META}.DeleteOptions"), BODY_TYPES)), (n.item.clone(), &["200", "202"])),
            "parameters": item_params.clone(),
        }),
    );

    for sub in r.subresources {
        let Some(s) = subresource(r, sub) else { continue };
        let Some(schema) = schema_of(s.group, s.kind) else { continue };
        let suffix = sub[..1].to_uppercase() + &sub[1..];
        let mut entry = Map::new();
        for verb in s.verbs {
            let (method, v, action, body, codes): (&str, &str, &str, Body, &'static [&'static str]) = match *verb {
                "get" => ("get", "read", "get", None, &["200"]),
                "update" => ("put", "replace", "put", Some((schema.clone(), BODY_TYPES)), &["200", "201"]),
                "patch" => ("patch", "patch", "patch", Some((format!("{META}.Patch"), PATCH_TYPES)), &["200", "201"]),
                _ => ("post", "create", "post", Some((schema.clone(), BODY_TYPES)), &["200", "201", "202"]),
            };
            let params = match *verb {
                "update" | "create" => write_params(false),
                "patch" => write_params(true),
                _ => vec![],
            };
            let mut o = op(action, v, &suffix, params, body, (schema.clone(), codes));
            o["x-kubernetes-group-version-kind"] = json!({"group": s.group, "version": s.version, "kind": s.kind});
            entry.insert(method.into(), o);
        }
        entry.insert("parameters".into(), Value::Array(item_params.clone()));
        paths.insert(format!("{base}/{{name}}/{sub}"), Value::Object(entry));
    }

    if r.namespaced {
        paths.insert(
            format!("{gv}/{}", r.plural),
            json!({
                "get": render(Op { r, gvk, action: "list", id: format!("list{gv_ident}{}ForAllNamespaces", r.kind),
                    desc: format!("list or watch objects of kind {}", r.kind), params: list_params(), body: None, response: (n.list.clone(), &["200"]) }),
                "parameters": [query("pretty", "string", "If 'true', then the output is pretty printed.")],
            }),
        );
    }
}
