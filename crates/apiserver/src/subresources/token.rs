//! `POST serviceaccounts/<name>/token` (authentication.k8s.io/v1
//! TokenRequest): a signed, expiring token for a ServiceAccount, optionally
//! bound to a Pod or Secret so it dies with it. Upstream's checks and
//! wording (pkg/registry/core/serviceaccount/storage/token.go); nothing is
//! stored.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::handlers::{current, json_response, parse_body, Request, Target};
use crate::resources;
use crate::status::{ApiError, ApiResult};
use crate::storage::Storage;

const KIND: &str = "TokenRequest";
const GROUP: &str = "authentication.k8s.io";
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;

fn invalid(name: &str, field: &str, value: &str, why: &str) -> ApiError {
    ApiError::invalid(KIND, GROUP, name, vec![(field.into(), format!("Invalid value: {value}: {why}"))])
}

async fn read(storage: &Storage, plural: &str, ns: &str, name: &str) -> ApiResult<Value> {
    let res = resources::find("", "v1", plural).expect("a core resource");
    let t = Target { res, namespace: Some(ns.into()), name: Some(name.into()), sub: None };
    Ok(current(storage, &t).await?.0)
}

pub async fn create(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let tokens = storage.service_accounts.as_deref().ok_or_else(|| ApiError::internal("service-account tokens are not configured on this server"))?;
    let (ns, name) = (req.target.namespace.clone().unwrap_or_default(), req.target.name().to_string());
    let mut tr = parse_body(req)?;
    if !tr.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    for part in ["metadata", "spec"] {
        if !tr[part].is_object() {
            tr[part] = json!({});
        }
    }
    let meta = &tr["metadata"];
    if let Some(n) = meta["name"].as_str().filter(|n| !n.is_empty() && *n != name) {
        return Err(invalid(&name, "metadata.name", &format!("{n:?}"), "must match the service account name if specified"));
    }
    if let Some(n) = meta["namespace"].as_str().filter(|n| !n.is_empty() && *n != ns) {
        return Err(invalid(&name, "metadata.namespace", &format!("{n:?}"), "must match the service account namespace if specified"));
    }
    let sa = read(storage, "serviceaccounts", &ns, &name).await?;
    let sa_uid = sa["metadata"]["uid"].as_str().unwrap_or("").to_string();
    if let Some(u) = meta["uid"].as_str().filter(|u| !u.is_empty() && *u != sa_uid) {
        return Err(ApiError::conflict(KIND, GROUP, &name, &format!("the UID in the token request ({u}) does not match the UID of the service account ({sa_uid})")));
    }
    let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": name, "uid": sa_uid}});
    let r = &tr["spec"]["boundObjectRef"];
    if r.is_object() {
        let (kind, api_version, obj_name) = (r["kind"].as_str().unwrap_or(""), r["apiVersion"].as_str().unwrap_or(""), r["name"].as_str().unwrap_or(""));
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let uid = match (group, kind) {
            ("", "Pod") => {
                let pod = read(storage, "pods", &ns, obj_name).await?;
                let sa_of_pod = pod["spec"]["serviceAccountName"].as_str().unwrap_or("");
                if sa_of_pod != name {
                    return Err(ApiError::bad_request(format!("cannot bind token for serviceaccount {name:?} to pod running with serviceaccount {sa_of_pod:?}")));
                }
                let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
                k8s["pod"] = json!({"name": obj_name, "uid": uid});
                if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                    // The node's uid too when it exists (upstream's ServiceAccountTokenPodNodeInfo).
                    if let Some(n) = crate::authn::lookup::object(storage, "nodes", None, node).await {
                        k8s["node"] = json!({"name": node, "uid": n["metadata"]["uid"]});
                    }
                }
                uid
            }
            ("", "Secret") => {
                let secret = read(storage, "secrets", &ns, obj_name).await?;
                let uid = secret["metadata"]["uid"].as_str().unwrap_or("").to_string();
                k8s["secret"] = json!({"name": obj_name, "uid": uid});
                uid
            }
            _ => return Err(ApiError::bad_request(format!("cannot bind token to object of type {group}/{version}, Kind={kind}"))),
        };
        if let Some(want) = r["uid"].as_str().filter(|u| !u.is_empty() && *u != uid) {
            return Err(ApiError::conflict(kind, group, obj_name, &format!("the UID in the bound object reference ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated")));
        }
    }
    let expiration = match &tr["spec"]["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION,
        v => v.as_i64().ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid("", "spec.expirationSeconds", &expiration.to_string(), "may not specify a duration less than 10 minutes"));
    }
    if expiration > MAX_EXPIRATION {
        return Err(invalid("", "spec.expirationSeconds", &expiration.to_string(), "may not specify a duration larger than 2^32 seconds"));
    }
    let audiences: Vec<String> = tr["spec"]["audiences"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_string)).collect();
    let audiences = if audiences.is_empty() { tokens.audiences.clone() } else { audiences };
    let now = crate::meta::now_secs();
    let claims = json!({
        "aud": audiences,
        "exp": now + expiration,
        "iat": now,
        "iss": tokens.issuer,
        "jti": crate::meta::new_uid(),
        "kubernetes.io": k8s,
        "nbf": now,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let token = tokens.signer.sign(&claims);
    tr["apiVersion"] = json!(format!("{GROUP}/v1"));
    tr["kind"] = json!(KIND);
    tr["metadata"]["name"] = json!(name);
    tr["metadata"]["namespace"] = json!(ns);
    if tr["metadata"]["creationTimestamp"].is_null() {
        tr["metadata"]["creationTimestamp"] = Value::Null;
    }
    tr["spec"]["audiences"] = json!(audiences);
    tr["spec"]["expirationSeconds"] = json!(expiration);
    tr["status"] = json!({"token": token, "expirationTimestamp": crate::meta::rfc3339(now + expiration)});
    Ok(json_response(StatusCode::CREATED, &tr))
}
