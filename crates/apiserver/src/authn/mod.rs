//! Authentication: who a request is.
//!
//! Two kinds of bearer token are accepted:
//! - the cluster admin's static token (`pki/admin.token`), compared first
//!   and in constant time, with no parsing: it is on every request of the
//!   controllers, the scheduler and the benchmarks;
//! - service-account tokens ([`jwt`], ES256), issued by the TokenRequest
//!   subresource. They are checked as upstream's service-account
//!   authenticator does: signature, `exp`/`nbf`, audience, issuer, and that
//!   the ServiceAccount (and the Pod or Secret the token is bound to) still
//!   exists with the uid in the token. Those objects are read from the
//!   watch cache, falling back to the store on a miss (a just-created
//!   ServiceAccount may not have reached the cache yet).
//!
//! Anything else is 401. Authorization is allow-all for every
//! authenticated user: RBAC is a later issue.

pub mod jwt;
pub mod keys;
pub mod lookup;
pub mod discovery;
pub mod review;
pub mod token_review;

use std::path::Path;

use axum::http::HeaderMap;
use serde_json::{json, Value};

use crate::storage::Storage;

/// The API server's issuer and default audience (upstream's default with
/// kubeadm: `--service-account-issuer=https://kubernetes.default.svc.cluster.local`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// What the API server issues and accepts service-account tokens with.
pub struct Tokens {
    pub signer: jwt::Signer,
    pub issuer: String,
    /// Audiences the API server accepts; the first is the default of a TokenRequest.
    pub audiences: Vec<String>,
}

impl Tokens {
    /// From the signing key in `pki_dir` (see [`keys`]).
    pub fn load(pki_dir: &Path) -> anyhow::Result<Tokens> {
        Ok(Tokens { signer: keys::load(pki_dir)?, issuer: ISSUER.into(), audiences: vec![ISSUER.into()] })
    }
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq)]
pub enum User {
    /// The holder of the admin token.
    Admin,
    ServiceAccount(Box<ServiceAccountUser>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceAccountUser {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `(name, uid)` of the bound pod and its node, if any.
    pub pod: Option<(String, String)>,
    pub node: Option<(String, String)>,
    pub jti: Option<String>,
}

/// The admin's name and groups (kubeadm's admin kubeconfig user).
pub const ADMIN_USER: &str = "kubernetes-admin";

impl User {
    pub fn username(&self) -> String {
        match self {
            User::Admin => ADMIN_USER.into(),
            User::ServiceAccount(sa) => format!("system:serviceaccount:{}:{}", sa.namespace, sa.name),
        }
    }

    pub fn groups(&self) -> Vec<String> {
        match self {
            User::Admin => vec!["system:masters".into(), "system:authenticated".into()],
            User::ServiceAccount(sa) => vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{}", sa.namespace), "system:authenticated".into()],
        }
    }

    /// `userInfo` as authentication.k8s.io/v1 writes it.
    pub fn user_info(&self) -> Value {
        let mut info = json!({"username": self.username(), "groups": self.groups()});
        if let User::ServiceAccount(sa) = self {
            info["uid"] = json!(sa.uid);
            let mut extra = serde_json::Map::new();
            let mut put = |k: &str, v: &str| {
                extra.insert(format!("authentication.kubernetes.io/{k}"), json!([v]));
            };
            if let Some(j) = &sa.jti {
                put("credential-id", &format!("JTI={j}"));
            }
            if let Some((n, u)) = &sa.node {
                put("node-name", n);
                put("node-uid", u);
            }
            if let Some((n, u)) = &sa.pod {
                put("pod-name", n);
                put("pod-uid", u);
            }
            if !extra.is_empty() {
                info["extra"] = Value::Object(extra);
            }
        }
        info
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")).map(str::trim)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who sent `headers`, or None (401).
pub async fn authenticate(storage: &Storage, admin_token: &str, headers: &HeaderMap) -> Option<User> {
    let token = bearer(headers)?;
    if constant_time_eq(token.as_bytes(), admin_token.as_bytes()) {
        return Some(User::Admin);
    }
    if !jwt::looks_like_jwt(token) {
        return None;
    }
    let tokens = storage.service_accounts.as_ref()?;
    match service_account(storage, tokens, token, &tokens.audiences).await {
        Ok((u, _)) => Some(User::ServiceAccount(Box::new(u))),
        Err(why) => {
            tracing::debug!(%why, "service-account token rejected");
            None
        }
    }
}

/// The audiences the API server itself accepts tokens for (upstream's
/// `--api-audiences`, defaulting to the issuer).
pub fn api_audiences(storage: &Storage) -> Vec<String> {
    storage.service_accounts.as_ref().map(|t| t.audiences.clone()).unwrap_or_else(|| vec![ISSUER.into()])
}

/// Upstream's message when no authenticator accepts a bearer token.
pub const INVALID_TOKEN: &str = "invalid bearer token";

/// Who `token` is when presented for one of `audiences`, and which of
/// them it is valid for (the TokenReview question); the error says why
/// not. The admin token is audience-agnostic, as upstream's token-file
/// authenticator: valid for the requested audiences the API server
/// accepts, and for nothing when there are none.
pub async fn review_token(storage: &Storage, admin_token: &str, token: &str, audiences: &[String]) -> Result<(User, Vec<String>), String> {
    if constant_time_eq(token.as_bytes(), admin_token.as_bytes()) {
        let api = api_audiences(storage);
        let auds: Vec<String> = audiences.iter().filter(|a| api.contains(a)).cloned().collect();
        return if auds.is_empty() { Err(INVALID_TOKEN.into()) } else { Ok((User::Admin, auds)) };
    }
    let tokens = storage.service_accounts.as_ref().filter(|_| jwt::looks_like_jwt(token)).ok_or(INVALID_TOKEN)?;
    let (u, auds) = service_account(storage, tokens, token, audiences).await?;
    Ok((User::ServiceAccount(Box::new(u)), auds))
}

/// A list as Go's `%q` prints a `[]string` (upstream's error wording).
fn go_quoted(list: &[String]) -> String {
    let q: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", q.join(" "))
}

/// Grace after a bound pod's deletion time before its tokens stop working
/// (upstream: a minute).
const DELETED_POD_GRACE_SECS: i64 = 60;

/// The service account `token` names, checked for `audiences`, with the
/// audiences (of those) it is valid for.
async fn service_account(storage: &Storage, tokens: &Tokens, token: &str, audiences: &[String]) -> Result<(ServiceAccountUser, Vec<String>), String> {
    let now = crate::meta::now_secs();
    let claims = tokens.signer.verifier.verify(token, now).map_err(|e| e.to_string())?;
    if claims["iss"].as_str() != Some(tokens.issuer.as_str()) {
        return Err(format!("token issuer {:?} is invalid", claims["iss"].as_str().unwrap_or("")));
    }
    let mut token_auds = jwt::token_audiences(&claims);
    if token_auds.is_empty() {
        // Legacy tokens without `aud` are for the API server only (upstream).
        token_auds = tokens.audiences.clone();
    }
    // In the requested order, as upstream's Audiences.Intersect.
    let auds: Vec<String> = audiences.iter().filter(|a| token_auds.contains(a)).cloned().collect();
    if auds.is_empty() {
        return Err(format!("token audiences {} is invalid for the target audiences {}", go_quoted(&token_auds), go_quoted(audiences)));
    }
    let k = &claims["kubernetes.io"];
    let (ns, name, uid) = (k["namespace"].as_str().unwrap_or(""), k["serviceaccount"]["name"].as_str().unwrap_or(""), k["serviceaccount"]["uid"].as_str().unwrap_or(""));
    if ns.is_empty() || name.is_empty() || claims["sub"].as_str() != Some(&format!("system:serviceaccount:{ns}:{name}")) {
        return Err("malformed kubernetes.io claims".into());
    }
    let sa = lookup::object(storage, "serviceaccounts", Some(ns), name).await.ok_or_else(|| format!("serviceaccount {ns}/{name} not found"))?;
    if sa["metadata"]["uid"].as_str() != Some(uid) {
        return Err(format!("serviceaccount {ns}/{name} uid does not match the token's"));
    }
    if !sa["metadata"]["deletionTimestamp"].is_null() {
        return Err(format!("serviceaccount {ns}/{name} is being deleted"));
    }
    let mut pod = None;
    if let Some(p) = k["pod"]["name"].as_str() {
        let want = k["pod"]["uid"].as_str().unwrap_or("");
        let obj = lookup::object(storage, "pods", Some(ns), p).await.ok_or_else(|| format!("pod {ns}/{p} not found"))?;
        if obj["metadata"]["uid"].as_str() != Some(want) {
            return Err(format!("pod {ns}/{p} uid does not match the token's"));
        }
        if obj["metadata"]["deletionTimestamp"].as_str().and_then(crate::meta::parse_rfc3339).is_some_and(|t| t < now - DELETED_POD_GRACE_SECS) {
            return Err(format!("pod {ns}/{p} was deleted"));
        }
        pod = Some((p.to_string(), want.to_string()));
    }
    if let Some(s) = k["secret"]["name"].as_str() {
        let obj = lookup::object(storage, "secrets", Some(ns), s).await.ok_or_else(|| format!("secret {ns}/{s} not found"))?;
        if obj["metadata"]["uid"] != k["secret"]["uid"] || !obj["metadata"]["deletionTimestamp"].is_null() {
            return Err(format!("secret {ns}/{s} uid does not match the token's"));
        }
    }
    let node = k["node"]["name"].as_str().map(|n| (n.to_string(), k["node"]["uid"].as_str().unwrap_or("").to_string()));
    let user = ServiceAccountUser { namespace: ns.into(), name: name.into(), uid: uid.into(), pod, node, jti: claims["jti"].as_str().map(str::to_string) };
    Ok((user, auds))
}
