//! The REST verbs on resources: routing a path to a resource, then get,
//! list, watch, create, update, patch, delete and deletecollection with
//! upstream's semantics for metadata, concurrency and errors.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::delete_options::DeleteOptions;
use crate::meta;
use crate::patch;
use crate::resources::{self, Resource};
use crate::selector::Selector;
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, kv_error, Storage, WriteError};
use crate::table;

/// What a request path names.
#[derive(Debug)]
pub struct Target {
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

impl Target {
    pub(crate) fn key(&self) -> String {
        let mut k = self.res.key_prefix();
        if let Some(ns) = &self.namespace {
            k += ns;
            k.push('/');
        }
        if let Some(n) = &self.name {
            k += n;
        }
        k
    }
    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// Map `/api/v1/...` or `/apis/<g>/<v>/...` to a target.
pub fn route(group: &str, version: &str, rest: &[&str]) -> ApiResult<Target> {
    let res = |plural: &str| resources::find(group, version, plural).ok_or_else(ApiError::no_route);
    let owned = |s: &str| Some(s.to_string());
    match rest {
        ["namespaces", ns, plural, tail @ ..] if resources::find(group, version, plural).is_some_and(|r| r.namespaced) => {
            let r = res(plural)?;
            match tail {
                [] => Ok(Target { res: r, namespace: owned(ns), name: None, sub: None }),
                [name] => Ok(Target { res: r, namespace: owned(ns), name: owned(name), sub: None }),
                [name, sub] if r.subresources.contains(sub) => {
                    Ok(Target { res: r, namespace: owned(ns), name: owned(name), sub: owned(sub) })
                }
                _ => Err(ApiError::no_route()),
            }
        }
        [plural] => Ok(Target { res: res(plural)?, namespace: None, name: None, sub: None }),
        [plural, name] => {
            let r = res(plural)?;
            if r.namespaced {
                return Err(ApiError::no_route());
            }
            Ok(Target { res: r, namespace: None, name: owned(name), sub: None })
        }
        [plural, name, sub] => {
            let r = res(plural)?;
            if r.namespaced || !r.subresources.contains(sub) {
                return Err(ApiError::no_route());
            }
            Ok(Target { res: r, namespace: None, name: owned(name), sub: owned(sub) })
        }
        _ => Err(ApiError::no_route()),
    }
}

pub struct Request {
    pub method: Method,
    pub target: Target,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    pub(crate) fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
    fn dry_run(&self) -> bool {
        self.q("dryRun") == Some("All")
    }
    fn wants_table(&self) -> bool {
        self.headers.get("accept").and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("as=Table"))
    }
    /// `as=PartialObjectMetadata[List]`: metadata-only clients (garbage
    /// collectors, metadata informers) get only `metadata`.
    fn wants_metadata(&self) -> bool {
        self.headers.get("accept").and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("as=PartialObjectMetadata"))
    }
    /// `includeObject` and `noHeaders` of a Table request (metav1.TableOptions).
    fn table_options(&self) -> ApiResult<table::Options> {
        table::Options::parse(self.q("includeObject"), self.q("noHeaders"))
    }
}

pub async fn dispatch(storage: &Storage, req: Request) -> ApiResult<Response> {
    let t = &req.target;
    if let Some(r) = crate::subresources::dispatch(storage, &req).await {
        return r;
    }
    match (&req.method, t.name.is_some()) {
        (&Method::GET, true) => get(storage, &req).await,
        (&Method::GET, false) if matches!(req.q("watch"), Some("true" | "1")) => watch(storage, &req).await,
        (&Method::GET, false) => list(storage, &req).await,
        (&Method::POST, false) => create(storage, &req).await,
        (&Method::PUT, true) => update(storage, &req).await,
        (&Method::PATCH, true) => patch(storage, &req).await,
        (&Method::DELETE, true) => delete(storage, &req).await,
        (&Method::DELETE, false) => delete_collection(storage, &req).await,
        (m, _) => Err(ApiError::method_not_allowed(format!("the server does not allow this method on the requested resource ({m})"))),
    }
}

pub(crate) fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

pub(crate) fn parse_body(req: &Request) -> ApiResult<Value> {
    let ct = req.headers.get("content-type").and_then(|c| c.to_str().ok()).unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "application/json" | "" | "application/merge-patch+json" | "application/json-patch+json" | "application/strategic-merge-patch+json" => {
            serde_json::from_slice(&req.body).map_err(|e| ApiError::bad_request(format!("json: cannot unmarshal request body: {e}")))
        }
        "application/yaml" => crate::apply::parse_yaml(&req.body),
        _ if crate::codec::is_protobuf(base) => crate::codec::decode_body(&req.body),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn labels_of(obj: &Value, field: &str) -> BTreeMap<String, String> {
    obj["metadata"][field]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

pub(crate) fn not_found(t: &Target) -> ApiError {
    ApiError::not_found(t.res.plural, t.res.group, t.name())
}

pub(crate) async fn current(storage: &Storage, t: &Target) -> ApiResult<(Value, i64)> {
    let kv = storage.get(&t.key()).await.map_err(kv_error)?.ok_or_else(|| not_found(t))?;
    Ok((decode(&kv)?, kv.mod_revision))
}

async fn get(storage: &Storage, req: &Request) -> ApiResult<Response> {
    if !req.wants_table() && !req.wants_metadata() {
        // The stored bytes with the resourceVersion spliced in: no decode, no serialize.
        let t = &req.target;
        let kv = storage.get(&t.key()).await.map_err(kv_error)?.ok_or_else(|| not_found(t))?;
        return Ok(match crate::rawjson::with_resource_version(&kv.value, kv.mod_revision) {
            Some(body) => (StatusCode::OK, [("content-type", "application/json")], body).into_response(),
            None => json_response(StatusCode::OK, &decode(&kv)?),
        });
    }
    let (obj, _) = current(storage, &req.target).await?;
    if req.wants_table() {
        return Ok(json_response(StatusCode::OK, &table::table(req.target.res, &[obj], None, req.table_options()?)));
    }
    if req.wants_metadata() {
        return Ok(json_response(StatusCode::OK, &partial(&obj)));
    }
    Ok(json_response(StatusCode::OK, &obj))
}

/// How long a namespace this server deleted is looked up in the store (upstream: 30 s).
const RECENT_NAMESPACE_DELETION: Duration = Duration::from_secs(30);

/// The NamespaceLifecycle admission plugin: content may only be created
/// in a namespace that exists and is not being terminated.
async fn namespace_exists(storage: &Storage, ns: &str) -> ApiResult<()> {
    let prefix = resources::find("", "v1", "namespaces").unwrap().key_prefix();
    let key = format!("{prefix}{ns}");
    // As upstream's NamespaceLifecycle admission: the informer's copy when it
    // has one (a namespace's creation and termination are rare; creates in it
    // are not), the store when it does not (just created, or no cache) or
    // when this server deleted it a moment ago.
    let recently_deleted = {
        let mut recent = storage.recently_deleted_namespaces.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|_, at| at.elapsed() < RECENT_NAMESPACE_DELETION);
        recent.contains_key(ns)
    };
    let cached = if recently_deleted { None } else { storage.watch_cache.get(storage, &prefix).await.ok().and_then(|c| c.get(key.as_bytes())) };
    if let Some(cached) = cached {
        if cached["metadata"]["deletionTimestamp"].is_null() {
            return Ok(());
        }
    }
    match storage.get(&key).await.map_err(kv_error)? {
        Some(kv) => {
            let obj = decode(&kv)?;
            if !obj["metadata"]["deletionTimestamp"].is_null() {
                return Err(ApiError::namespace_terminating(ns));
            }
            Ok(())
        }
        None => Err(ApiError::not_found("namespaces", "", ns)),
    }
}

/// Check `kind`/`apiVersion` of a request body against the resource, filling them in if absent.
pub(crate) fn check_type(res: &Resource, obj: &mut Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let av = res.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != av => {
            return Err(ApiError::bad_request(format!("the API version in the data ({v}) does not match the expected API version ({av})")))
        }
        _ => obj["apiVersion"] = Value::String(av),
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k != res.kind => {
            return Err(ApiError::bad_request(format!("the kind in the data ({k}) does not match the expected kind ({})", res.kind)))
        }
        _ => obj["kind"] = Value::String(res.kind.into()),
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    Ok(())
}

fn validate_meta(res: &Resource, obj: &Value) -> ApiResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let problem = if matches!(res.kind, "Namespace" | "Service") { meta::check_label(name) } else { meta::check_subdomain(name) };
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push(("metadata.name".to_string(), "Required value: name or generateName is required".to_string()));
    } else if let Some(p) = problem {
        causes.push(("metadata.name".to_string(), format!("Invalid value: {name:?}: {p}")));
    }
    for field in ["labels", "annotations"] {
        if let Some(m) = obj["metadata"][field].as_object() {
            let mut total = 0;
            for (k, v) in m {
                let Some(v) = v.as_str() else {
                    causes.push((format!("metadata.{field}"), format!("Invalid value: {k:?}: values must be strings")));
                    continue;
                };
                if let Some(why) = meta::check_qualified_name(k) {
                    causes.push((format!("metadata.{field}"), format!("Invalid value: {k:?}: {why}")));
                }
                if field == "labels" {
                    if let Some(why) = meta::check_label_value(v) {
                        causes.push((format!("metadata.labels"), format!("Invalid value: {v:?}: {why}")));
                    }
                }
                total += k.len() + v.len();
            }
            if field == "annotations" && total > 256 * 1024 {
                causes.push(("metadata.annotations".into(), "Too long: must have at most 262144 bytes".into()));
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res.kind, res.group, name, causes))
    }
}

/// Decode a body as its type (fieldValidation: Strict fails on unknown
/// fields, Warn — the default — reports them, Ignore drops them silently).
/// Returns the object as it will be stored, and warnings for the response.
/// `body` says the object is a request body (create, update): upstream then
/// names the kind it could not decode (its `transformDecodeError`), as
/// `Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: …`.
pub(crate) fn typed(req: &Request, res: &Resource, obj: Value, body: bool) -> ApiResult<(Value, Vec<String>)> {
    let (clean, unknown) = crate::typed::check(res, &obj).map_err(|e| {
        ApiError::bad_request(format!("{} in version \"{}\" cannot be handled as a {}: {e}", res.kind, res.version, res.kind))
    })?;
    if unknown.is_empty() {
        return Ok((clean, vec![]));
    }
    let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    match req.q("fieldValidation") {
        Some("Strict") => {
            let strict = format!("strict decoding error: {}", msgs.join(", "));
            if !body {
                return Err(ApiError::bad_request(strict));
            }
            let version = obj["apiVersion"].as_str().and_then(|v| v.rsplit('/').next()).unwrap_or(res.version);
            Err(ApiError::bad_request(format!("{} in version \"{version}\" cannot be handled as a {}: {strict}", res.kind, res.kind)))
        }
        Some("Ignore") => Ok((clean, vec![])),
        _ => Ok((clean, msgs)),
    }
}

pub(crate) fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let v = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(h) = axum::http::HeaderValue::from_str(&v) {
            resp.headers_mut().append("warning", h);
        }
    }
    resp
}

pub(crate) fn write_error(e: WriteError, t: &Target, name: &str) -> ApiError {
    match e {
        WriteError::Conflict => ApiError::conflict(t.res.plural, t.res.group, name, "the object has been modified; please apply your changes to the latest version and try again"),
        WriteError::NotFound => ApiError::not_found(t.res.plural, t.res.group, name),
        WriteError::Claimed => ApiError::conflict(t.res.plural, t.res.group, name, "an allocated IP or port was taken concurrently; try again"),
        WriteError::Kv(e) => kv_error(e),
    }
}

async fn create(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let obj = parse_body(req)?;
    create_value(storage, req, obj, None).await
}

/// The manager a write is recorded under in managedFields.
pub(crate) fn field_manager(req: &Request) -> ApiResult<String> {
    let m = crate::apply::managed::manager_of(req.q("fieldManager"), req.headers.get("user-agent").and_then(|u| u.to_str().ok()));
    if m.len() > 128 {
        return Err(ApiError::bad_request("fieldManager: Too long: may not be more than 128 bytes"));
    }
    Ok(m)
}

/// Create `obj`. `applied` carries the managedFields of a server-side
/// apply that creates; otherwise the creator is recorded as an Update.
pub(crate) async fn create_value(storage: &Storage, req: &Request, mut obj: Value, applied: Option<Vec<crate::apply::managed::Entry>>) -> ApiResult<Response> {
    let t = &req.target;
    let res = t.res;
    if res.namespaced && t.namespace.is_none() {
        return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"));
    }
    let manager = field_manager(req)?;
    check_type(res, &mut obj)?;
    let (mut obj, warnings) = typed(req, res, obj, applied.is_none())?;
    let m = &mut obj["metadata"];
    if m["name"].as_str().unwrap_or("").is_empty() {
        if let Some(g) = m["generateName"].as_str().filter(|g| !g.is_empty()) {
            m["name"] = Value::String(format!("{g}{}", meta::random_suffix()));
        }
    }
    if let Some(ns) = &t.namespace {
        match m["namespace"].as_str() {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"))
            }
            _ => m["namespace"] = Value::String(ns.clone()),
        }
    } else if let Some(o) = m.as_object_mut() {
        o.remove("namespace");
    }
    validate_meta(res, &obj)?;
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if let Some(ns) = &t.namespace {
        namespace_exists(storage, ns).await?;
    }
    let mut obj = obj;
    let m = obj["metadata"].as_object_mut().unwrap();
    m.insert("uid".into(), Value::String(meta::new_uid()));
    m.insert("creationTimestamp".into(), Value::String(meta::now_rfc3339()));
    m.remove("resourceVersion");
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    if res.has_spec() {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    if res.kind == "Namespace" {
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
        obj["status"] = json!({"phase": "Active"});
    }
    let target = Target { res, namespace: t.namespace.clone(), name: Some(name.clone()), sub: None };
    // Random allocations (a Service's IP) may race another create; retry with new picks.
    for _ in 0..8 {
        let mut obj = obj.clone();
        let claims = crate::admission::admit(storage, res, None, &mut obj, None).await?;
        match &applied {
            Some(entries) => crate::apply::managed::write(&mut obj, entries),
            None => crate::apply::managed::record_update(None, &mut obj, &manager, &res.api_version(), ""),
        }
        if req.dry_run() {
            return Ok(with_warnings(json_response(StatusCode::CREATED, &obj), &warnings));
        }
        // Stored and answered with the same bytes: serialized once.
        let stored = crate::storage::encode(&obj);
        match storage.write_encoded(&target.key(), 0, Some(stored.clone()), &claims.claim, &[]).await {
            Ok(rev) => {
                let resp = match crate::rawjson::with_resource_version(&stored, rev) {
                    Some(body) => (StatusCode::CREATED, [("content-type", "application/json")], body).into_response(),
                    None => {
                        obj["metadata"]["resourceVersion"] = Value::String(rev.to_string());
                        json_response(StatusCode::CREATED, &obj)
                    }
                };
                return Ok(with_warnings(resp, &warnings));
            }
            Err(WriteError::Claimed) => continue,
            Err(WriteError::Conflict) => return Err(ApiError::already_exists(res.plural, res.group, &name)),
            Err(e) => return Err(write_error(e, &target, &name)),
        }
    }
    Err(write_error(WriteError::Claimed, &target, &name))
}

/// Carry over what clients cannot change, and bump generation on spec changes.
fn prepare_update(res: &Resource, sub: Option<&str>, old: &Value, new: Value) -> Value {
    let mut next = match sub {
        // namespaces/finalize changes only spec.finalizers (the namespace controller's last step).
        Some("finalize") => {
            let mut o = old.clone();
            o["spec"]["finalizers"] = new["spec"].get("finalizers").cloned().unwrap_or(json!([]));
            o
        }
        // The status subresource changes only status.
        Some("status") => {
            let mut o = old.clone();
            o["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            o
        }
        // Ephemeral containers are the only part of a running pod's spec that can grow.
        Some("ephemeralcontainers") => {
            let mut o = old.clone();
            o["spec"]["ephemeralContainers"] = new["spec"].get("ephemeralContainers").cloned().unwrap_or(Value::Null);
            o
        }
        _ => {
            let mut n = new;
            if res.has_status() {
                // The main resource ignores status changes.
                match old.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(o) = n.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            n
        }
    };
    for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace", "name"] {
        match old["metadata"].get(k) {
            Some(v) => next["metadata"][k] = v.clone(),
            None => {
                if let Some(m) = next["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    if res.has_spec() {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let bumped = if old.get("spec") != next.get("spec") { generation + 1 } else { generation };
        next["metadata"]["generation"] = json!(bumped);
    }
    next
}

async fn update(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let t = &req.target;
    let mut obj = parse_body(req)?;
    check_type(t.res, &mut obj)?;
    let wanted_rv = obj["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let manager = field_manager(req)?;
    let (obj, warnings) = typed(req, t.res, obj, true)?;
    let body_name = obj["metadata"]["name"].as_str().unwrap_or("");
    if body_name != t.name() {
        return Err(ApiError::bad_request(format!("the name of the object ({body_name}) does not match the name on the URL ({})", t.name())));
    }
    validate_meta(t.res, &obj)?;
    for _ in 0..16 {
        let (old, rev) = current(storage, t).await?;
        if let Some(want) = &wanted_rv {
            if want != &rev.to_string() {
                return Err(write_error(WriteError::Conflict, t, t.name()));
            }
        }
        let mut next = prepare_update(t.res, t.sub.as_deref(), &old, obj.clone());
        let claims = crate::admission::admit(storage, t.res, t.sub.as_deref(), &mut next, Some(&old)).await?;
        crate::apply::managed::record_update(Some(&old), &mut next, &manager, &t.res.api_version(), t.sub.as_deref().unwrap_or(""));
        if req.dry_run() {
            next["metadata"]["resourceVersion"] = Value::String(rev.to_string());
            return Ok(with_warnings(json_response(StatusCode::OK, &next), &warnings));
        }
        match write_updated(storage, t, &old, rev, &mut next, &claims).await {
            Ok(()) => return Ok(with_warnings(json_response(StatusCode::OK, &next), &warnings)),
            // Unconditional updates retry against the newer object.
            Err(WriteError::Conflict) if wanted_rv.is_none() => continue,
            Err(WriteError::Claimed) => continue,
            Err(e) => return Err(write_error(e, t, t.name())),
        }
    }
    Err(write_error(WriteError::Conflict, t, t.name()))
}

async fn patch(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let t = &req.target;
    let ct = req.headers.get("content-type").and_then(|c| c.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
    if ct == "application/apply-patch+yaml" {
        return crate::apply::patch(storage, req).await;
    }
    let body = parse_body(req)?;
    let manager = field_manager(req)?;
    for _ in 0..16 {
        let (old, rev) = current(storage, t).await?;
        let mut patched = old.clone();
        match ct.as_str() {
            "application/json-patch+json" => patch::json_patch(&mut patched, &body).map_err(|e| ApiError::bad_request(e))?,
            "application/merge-patch+json" => patch::merge(&mut patched, &body),
            "application/strategic-merge-patch+json" => crate::smp::apply(&mut patched, &body).map_err(ApiError::bad_request)?,
            other => return Err(ApiError::unsupported_media_type(other)),
        }
        if let Some(r) = finish_update(storage, req, &old, rev, patched, Some(&manager)).await? {
            return Ok(r);
        }
    }
    Err(write_error(WriteError::Conflict, t, t.name()))
}

/// Validate, admit and write `patched` over `old` (read at `rev`).
/// `manager` records the change as an Update; None means the caller (a
/// server-side apply) has set managedFields itself. Ok(None): the object
/// changed underneath, read it again and retry.
pub(crate) async fn finish_update(storage: &Storage, req: &Request, old: &Value, rev: i64, mut patched: Value, manager: Option<&str>) -> ApiResult<Option<Response>> {
    let t = &req.target;
    check_type(t.res, &mut patched)?;
    let (patched, warnings) = typed(req, t.res, patched, false)?;
    if let Some(want) = patched["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()) {
        if want != rev.to_string() && old["metadata"]["resourceVersion"] != patched["metadata"]["resourceVersion"] {
            return Err(write_error(WriteError::Conflict, t, t.name()));
        }
    }
    validate_meta(t.res, &patched)?;
    let applied_fields = patched["metadata"]["managedFields"].clone();
    let mut next = prepare_update(t.res, t.sub.as_deref(), old, patched);
    let claims = crate::admission::admit(storage, t.res, t.sub.as_deref(), &mut next, Some(old)).await?;
    match manager {
        Some(m) => crate::apply::managed::record_update(Some(old), &mut next, m, &t.res.api_version(), t.sub.as_deref().unwrap_or("")),
        None => next["metadata"]["managedFields"] = applied_fields,
    }
    if req.dry_run() {
        return Ok(Some(with_warnings(json_response(StatusCode::OK, &next), &warnings)));
    }
    match write_updated(storage, t, old, rev, &mut next, &claims).await {
        Ok(()) => Ok(Some(with_warnings(json_response(StatusCode::OK, &next), &warnings))),
        Err(WriteError::Conflict | WriteError::Claimed) => Ok(None),
        Err(e) => Err(write_error(e, t, t.name())),
    }
}

/// Write an updated object. An object being deleted whose last finalizer
/// was just removed is deleted instead, as upstream does. An update that
/// changes nothing is not written, as upstream's storage skips a write whose
/// bytes equal the stored ones: the resourceVersion stays, no watch event is
/// sent, and `kubectl patch` can tell the user "patched (no change)".
async fn write_updated(storage: &Storage, t: &Target, old: &Value, rev: i64, next: &mut Value, claims: &crate::admission::Claims) -> Result<(), WriteError> {
    let deleting = !next["metadata"]["deletionTimestamp"].is_null();
    let finalizers_left = next["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    let graceful_pending = next["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) > 0;
    let finalizers_left = finalizers_left || (t.res.kind == "Namespace" && next["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()));
    if deleting && !finalizers_left && !graceful_pending {
        let mut release = claims.release.clone();
        release.extend(crate::admission::released_by(t.res, next));
        storage.write(&t.key(), rev, None, &[], &release).await?;
        return Ok(());
    }
    if claims.claim.is_empty() && claims.release.is_empty() && same_but_version(old, next) {
        next["metadata"]["resourceVersion"] = Value::String(rev.to_string());
        return Ok(());
    }
    let new_rev = storage.write(&t.key(), rev, Some(next), &claims.claim, &claims.release).await?;
    next["metadata"]["resourceVersion"] = Value::String(new_rev.to_string());
    Ok(())
}

/// Whether `next` equals `old` apart from metadata.resourceVersion (which a
/// request body may carry stale or not at all).
fn same_but_version(old: &Value, next: &Value) -> bool {
    let (Some(o), Some(n)) = (old.as_object(), next.as_object()) else { return false };
    let fields = |m: &serde_json::Map<String, Value>| m.len() - usize::from(m.contains_key("resourceVersion"));
    o.len() == n.len()
        && o.iter().all(|(k, v)| match (k.as_str(), n.get(k)) {
            ("metadata", Some(nv)) => match (v.as_object(), nv.as_object()) {
                (Some(om), Some(nm)) => fields(om) == fields(nm) && om.iter().all(|(mk, mv)| mk == "resourceVersion" || nm.get(mk) == Some(mv)),
                _ => false,
            },
            (_, nv) => nv == Some(v),
        })
}

/// Delete one object. Objects with finalizers get a deletionTimestamp and
/// stay until the finalizers are removed. A pod bound to a node is deleted
/// gracefully: it gets `deletionTimestamp` = now + grace period and stays
/// until its kubelet has stopped it and deletes it with grace 0.
pub(crate) async fn delete_one(storage: &Storage, t: &Target, opts: &DeleteOptions) -> ApiResult<Value> {
    for _ in 0..16 {
        let (mut obj, rev) = current(storage, t).await?;
        opts.check(&obj, t.res.plural, t.res.group)?;
        if storage.controllers && obj["metadata"]["deletionTimestamp"].is_null() {
            add_deletion_finalizers(t.res, &mut obj, opts);
        }
        let has_finalizers = obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
            || (t.res.kind == "Namespace" && storage.controllers && obj["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()));
        let grace = if t.res.kind == "Pod" { pod_grace(&obj, opts) } else { 0 };
        if opts.dry_run {
            return Ok(obj);
        }
        if has_finalizers || grace > 0 {
            let pending = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
            // A second delete may only shorten a pending grace period.
            if pending.is_some() && pending <= Some(grace) && !obj["metadata"]["deletionTimestamp"].is_null() {
                return Ok(obj);
            }
            if grace > 0 || obj["metadata"]["deletionTimestamp"].is_null() {
                if t.res.kind == "Namespace" {
                    obj["status"]["phase"] = json!("Terminating");
                }
                let now = meta::parse_rfc3339(&meta::now_rfc3339()).unwrap_or(0);
                obj["metadata"]["deletionTimestamp"] = Value::String(meta::rfc3339(now + grace));
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                if grace > 0 {
                    let g = obj["metadata"]["generation"].as_i64().unwrap_or(0);
                    obj["metadata"]["generation"] = json!(g + 1);
                }
                match storage.update(&t.key(), rev, &obj).await {
                    Ok(r) => obj["metadata"]["resourceVersion"] = Value::String(r.to_string()),
                    Err(WriteError::Conflict) => continue,
                    Err(e) => return Err(write_error(e, t, t.name())),
                }
                if has_finalizers || grace > 0 {
                    return Ok(obj);
                }
            }
            if has_finalizers {
                return Ok(obj);
            }
        }
        match storage.write(&t.key(), rev, None, &[], &crate::admission::released_by(t.res, &obj)).await {
            Ok(_) => return Ok(obj),
            Err(WriteError::Conflict) => continue,
            Err(e) => return Err(write_error(e, t, t.name())),
        }
    }
    Err(write_error(WriteError::Conflict, t, t.name()))
}

/// With a garbage collector running, Foreground and Orphan deletion are
/// finalizers it acts on (upstream's `foregroundDeletion` and `orphan`);
/// Background needs none, the collector deletes dependents afterwards.
fn add_deletion_finalizers(res: &Resource, obj: &mut Value, opts: &DeleteOptions) {
    let f = match opts.propagation.as_deref() {
        Some("Foreground") => "foregroundDeletion",
        Some("Orphan") => "orphan",
        _ => return,
    };
    if res.kind == "Namespace" {
        return;
    }
    let list = &mut obj["metadata"]["finalizers"];
    match list.as_array_mut() {
        Some(a) if a.iter().any(|x| x == f) => {}
        Some(a) => a.push(json!(f)),
        None => *list = json!([f]),
    }
}

/// The grace period a pod deletion gets: none for pods no kubelet runs
/// (unscheduled or finished), else the request's or the pod's own.
fn pod_grace(pod: &Value, opts: &DeleteOptions) -> i64 {
    let unscheduled = pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
    let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    if unscheduled || finished {
        return 0;
    }
    opts.grace_period.or(pod["spec"]["terminationGracePeriodSeconds"].as_i64()).unwrap_or(30).max(0)
}

fn delete_options(req: &Request) -> ApiResult<DeleteOptions> {
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(req)?
    };
    DeleteOptions::parse(&body, &|k| req.q(k).map(str::to_string))
}

async fn delete(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let t = &req.target;
    let opts = delete_options(req)?;
    if t.res.kind == "Namespace" && !opts.dry_run && !storage.controllers {
        // Until the namespace controller exists, a namespace's contents go with it.
        delete_namespace_contents(storage, t.name()).await?;
    }
    if t.res.kind == "Namespace" && !opts.dry_run {
        storage.recently_deleted_namespaces.lock().unwrap_or_else(|e| e.into_inner()).insert(t.name().to_string(), std::time::Instant::now());
    }
    let obj = delete_one(storage, t, &opts).await?;
    Ok(json_response(StatusCode::OK, &obj))
}

async fn delete_namespace_contents(storage: &Storage, ns: &str) -> ApiResult<()> {
    for res in resources::RESOURCES.iter().filter(|r| r.namespaced) {
        let prefix = format!("{}{ns}/", res.key_prefix());
        let listed = storage.list(&prefix, None, 0, 0).await.map_err(kv_error)?;
        for kv in listed.items {
            let name = String::from_utf8_lossy(&kv.key[prefix.len()..]).to_string();
            let t = Target { res, namespace: Some(ns.to_string()), name: Some(name), sub: None };
            match delete_one(storage, &t, &DeleteOptions { grace_period: Some(0), ..Default::default() }).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

async fn delete_collection(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let t = &req.target;
    let opts = delete_options(req)?;
    let (items, rev) = select(storage, req, 0).await?;
    let mut deleted = Vec::new();
    for obj in items {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
        let one = Target { res: t.res, namespace: ns, name: Some(name), sub: None };
        match delete_one(storage, &one, &opts).await {
            Ok(o) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(StatusCode::OK, &list_object(t.res, deleted, rev, None, None)))
}

fn list_object(res: &Resource, items: Vec<Value>, rev: i64, cont: Option<String>, remaining: Option<i64>) -> Value {
    let metadata = crate::list_body::list_metadata(rev, cont, remaining);
    json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": metadata, "items": items})
}

/// Field values a field selector may name, per kind (as upstream allows).
fn fields_of(res: &Resource, obj: &Value) -> BTreeMap<String, String> {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut f = BTreeMap::new();
    f.insert("metadata.name".into(), s(&obj["metadata"]["name"]));
    if res.namespaced {
        f.insert("metadata.namespace".into(), s(&obj["metadata"]["namespace"]));
    }
    let paths: &[&str] = match res.kind {
        "Pod" => &["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"],
        "Event" => &["involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"],
        "Node" => &["spec.unschedulable"],
        "Secret" => &["type"],
        "Namespace" => &["status.phase"],
        "ReplicaSet" | "ReplicationController" => &["status.replicas"],
        "Job" => &["status.successful"],
        _ => &[],
    };
    for p in paths {
        let v = p.split('.').fold(obj, |v, k| &v[k]);
        let val = if *p == "spec.hostNetwork" && v.is_null() { "false".to_string() } else { s(v) };
        let val = if *p == "source" { s(&obj["source"]["component"]) } else { val };
        f.insert(p.to_string(), val);
    }
    f
}

/// Parse the selectors of a list or watch.
fn selectors(req: &Request) -> ApiResult<(Selector, Selector)> {
    let labels = Selector::parse(req.q("labelSelector").unwrap_or("")).map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = Selector::parse(req.q("fieldSelector").unwrap_or("")).map_err(|e| ApiError::bad_request(e))?;
    let known = fields_of(req.target.res, &json!({}));
    for k in fields.keys() {
        if !known.contains_key(k) {
            return Err(ApiError::bad_request(format!("field label not supported: {k}")));
        }
    }
    Ok((labels, fields))
}

/// What label and field selectors read of `obj` as a `res`.
fn selectable_of(res: &Resource, obj: &Value) -> crate::watch_cache::Selectable {
    crate::watch_cache::Selectable { labels: labels_of(obj, "labels"), fields: fields_of(res, obj) }
}

fn matches(res: &Resource, obj: &Value, labels: &Selector, fields: &Selector) -> bool {
    selectable_of(res, obj).passes(labels, fields)
}

fn list_prefix(t: &Target) -> String {
    let mut p = t.res.key_prefix();
    if let Some(ns) = &t.namespace {
        p += ns;
        p.push('/');
    }
    p
}

/// Continue tokens: the list revision and the next key, hex-encoded JSON (opaque to clients).
fn encode_continue(rev: i64, next_key: &str) -> String {
    json!({"rv": rev, "start": next_key}).to_string().bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::bad_request("continue key is not valid: illegal base64 data");
    let bytes: Vec<u8> = (0..token.len() / 2).map(|i| u8::from_str_radix(token.get(2 * i..2 * i + 2).unwrap_or("zz"), 16)).collect::<Result<_, _>>().map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok((v["rv"].as_i64().ok_or_else(bad)?, v["start"].as_str().ok_or_else(bad)?.to_string()))
}

/// All objects matching the request's selectors, at one revision.
async fn select(storage: &Storage, req: &Request, limit: i64) -> ApiResult<(Vec<Value>, i64)> {
    let (labels, fields) = selectors(req)?;
    let prefix = list_prefix(&req.target);
    let listed = storage.list(&prefix, None, 0, limit).await.map_err(kv_error)?;
    let mut items = Vec::new();
    for kv in &listed.items {
        let obj = decode(kv)?;
        if matches(req.target.res, &obj, &labels, &fields) {
            items.push(obj);
        }
    }
    Ok((items, listed.revision))
}

async fn list(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let t = &req.target;
    let (labels, fields) = selectors(req)?;
    let limit: i64 = match req.q("limit") {
        Some(l) => l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let prefix = list_prefix(t);
    // resourceVersion=0 means "any version is fine": serve it from the watch
    // cache, as upstream does, so informers' initial lists skip the store.
    if req.q("resourceVersion") == Some("0") && req.q("continue").is_none() && req.q("resourceVersionMatch") != Some("Exact") {
        if let Ok(cacher) = storage.watch_cache.get(storage, &t.res.key_prefix()).await {
            let (mut objs, rev) = cacher.list(prefix.as_bytes());
            if !(labels.is_empty() && fields.is_empty()) {
                objs.retain(|o| matches(t.res, o, &labels, &fields));
            }
            return list_response(req, t.res, Items::Cached(objs), rev, None, None);
        }
    }
    let (mut rev, mut start) = match req.q("continue") {
        Some(c) => {
            let (rev, start) = decode_continue(c)?;
            (rev, Some(start))
        }
        None => {
            let rv = match req.q("resourceVersion") {
                None | Some("0") => 0,
                Some(v) => v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resource version {v:?}")))?,
            };
            let matching = req.q("resourceVersionMatch");
            match (matching, req.q("resourceVersion")) {
                (Some(_), None) => return Err(ApiError::bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")),
                (Some("Exact"), Some("0")) => return Err(ApiError::bad_request("resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"")),
                (Some(m), _) if m != "Exact" && m != "NotOlderThan" => {
                    return Err(ApiError::bad_request(format!("resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\"")))
                }
                _ => {}
            }
            if matching != Some("Exact") && rv > 0 {
                // Not older than `rv`: the latest will do, unless `rv` is still in the future.
                let current = storage.list(&prefix, None, 0, 1).await.map_err(kv_error)?.revision;
                if rv > current {
                    return Err(ApiError::timeout(format!("Too large resource version: {rv}, current: {current}")));
                }
            }
            // Exact asks for that revision; otherwise (NotOlderThan or unset) the latest is at least as new.
            (if matching == Some("Exact") { rv } else { 0 }, None)
        }
    };
    let mut items = Vec::new();
    let mut cont = None;
    let mut remaining = None;
    let selecting = !(labels.is_empty() && fields.is_empty());
    // Keep fetching pages until `limit` objects matched (selectors filter after the store's limit).
    loop {
        let page = if limit > 0 { (limit - items.len() as i64).max(1) } else { 0 };
        let listed = storage.list(&prefix, start.as_deref(), rev, page).await.map_err(|e| match e {
            crate::kv::KvError::Compacted(_) => ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."),
            other => kv_error(other),
        })?;
        rev = listed.revision;
        let last_key = listed.items.last().map(|kv| String::from_utf8_lossy(&kv.key).to_string());
        for kv in listed.items {
            // Without selectors nothing needs decoding: the body is written from the stored bytes.
            if !selecting || matches(t.res, &decode(&kv)?, &labels, &fields) {
                items.push(kv);
            }
        }
        if !listed.more {
            break;
        }
        let next = format!("{}\u{0}", last_key.unwrap_or_default());
        if limit > 0 && items.len() as i64 >= limit {
            cont = Some(encode_continue(rev, &next));
            if labels.is_empty() && fields.is_empty() {
                remaining = Some(listed.remaining);
            }
            break;
        }
        start = Some(next);
    }
    list_response(req, t.res, Items::Stored(items), rev, cont, remaining)
}

/// The objects of a list, as they were found.
enum Items {
    Stored(Vec<etcdpb::KeyValue>),
    Cached(Vec<std::sync::Arc<crate::watch_cache::CachedObject>>),
}

impl Items {
    fn values(self) -> ApiResult<Vec<Value>> {
        match self {
            Items::Stored(kvs) => kvs.iter().map(decode).collect(),
            Items::Cached(objs) => Ok(objs.iter().map(|o| o.value().clone()).collect()),
        }
    }
}

/// A list in the form the client asked for: Table, metadata only, or full.
/// Full lists are written from bytes ([`crate::list_body`]), never as one
/// `Value`.
fn list_response(req: &Request, res: &Resource, items: Items, rev: i64, cont: Option<String>, remaining: Option<i64>) -> ApiResult<Response> {
    if !req.wants_table() && !req.wants_metadata() {
        let mut body = crate::list_body::ListBody::new(&res.api_version());
        match items {
            Items::Stored(kvs) => {
                for kv in &kvs {
                    if !body.item(|b| crate::rawjson::splice_resource_version(&kv.value, kv.mod_revision, b)) {
                        body.value(&decode(kv)?);
                    }
                }
            }
            Items::Cached(objs) => objs.iter().for_each(|o| body.raw(o.json())),
        }
        return Ok(body.finish(&format!("{}List", res.kind), &crate::list_body::list_metadata(rev, cont, remaining)));
    }
    if let (true, false, Items::Cached(objs)) = (req.wants_metadata(), req.wants_table(), &items) {
        // Metadata-only (the garbage collector's informers): from the cached bytes.
        let parts: Option<Vec<Vec<u8>>> = objs.iter().map(|o| o.partial_json()).collect();
        if let Some(parts) = parts {
            let mut body = crate::list_body::ListBody::new("meta.k8s.io/v1");
            parts.iter().for_each(|p| body.raw(p));
            return Ok(body.finish("PartialObjectMetadataList", &crate::list_body::list_metadata(rev, cont, remaining)));
        }
    }
    let items = items.values()?;
    if req.wants_table() {
        return Ok(json_response(StatusCode::OK, &table::table(res, &items, Some(table::ListMeta { revision: rev, cont, remaining }), req.table_options()?)));
    }
    if req.wants_metadata() {
        let mut l = list_object(res, items.iter().map(partial).collect(), rev, cont, remaining);
        l["kind"] = json!("PartialObjectMetadataList");
        l["apiVersion"] = json!("meta.k8s.io/v1");
        return Ok(json_response(StatusCode::OK, &l));
    }
    Ok(json_response(StatusCode::OK, &list_object(res, items, rev, cont, remaining)))
}

/// An object as PartialObjectMetadata: its metadata and nothing else.
fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

use crate::watch_cache::event_line;

async fn watch(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let t = &req.target;
    let res = t.res;
    let (labels, fields) = selectors(req)?;
    let prefix = list_prefix(t);
    let timeout = req.q("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).map(Duration::from_secs).unwrap_or(Duration::from_secs(1800));
    let bookmarks = matches!(req.q("allowWatchBookmarks"), Some("true" | "1"));
    let meta_only = req.wants_metadata();
    let after = match req.q("resourceVersion") {
        None | Some("0") => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resource version {v:?}")))?),
    };
    let table = req.wants_table().then(|| req.table_options()).transpose()?;
    let view = View { res, labels, fields, meta_only, table, headers_sent: Default::default() };
    let body: futures::stream::BoxStream<'static, Bytes> = match storage.watch_cache.get_from(storage, &res.key_prefix(), after).await.ok().and_then(|c| c.start(prefix.as_bytes(), after).map(|s| (c, s))) {
        Some((cacher, start)) => cached_watch(cacher, start, prefix, view, bookmarks.then_some(storage.bookmark_interval)),
        None => direct_watch(storage, prefix, after, view, bookmarks.then_some(storage.bookmark_interval)).await?,
    };
    let body = body.take_until(tokio::time::sleep(timeout)).map(Ok::<_, std::convert::Infallible>);
    Ok((StatusCode::OK, [("content-type", "application/json"), ("transfer-encoding", "chunked")], Body::from_stream(body)).into_response())
}

/// What one watcher sees: its resource, selectors and form.
#[derive(Clone)]
struct View {
    res: &'static Resource,
    labels: Selector,
    fields: Selector,
    meta_only: bool,
    /// A Table watch (`kubectl get -w`): each event is a one-row Table,
    /// with the column definitions only in the first.
    table: Option<table::Options>,
    headers_sent: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl View {
    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        match self.table {
            Some(mut opts) if matches!(kind, "ADDED" | "MODIFIED" | "DELETED") => {
                if self.headers_sent.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    opts.no_headers = true;
                }
                event_line(kind, &table::table(self.res, std::slice::from_ref(obj), None, opts))
            }
            _ if self.meta_only => event_line(kind, &partial(obj)),
            _ => event_line(kind, obj),
        }
    }
    /// [`View::line`] for a cached object: a plain watcher gets its bytes as they are.
    fn line_cached(&self, kind: &str, obj: &crate::watch_cache::CachedObject) -> Bytes {
        if self.table.is_none() && !self.meta_only {
            return crate::watch_cache::event_line_raw(kind, obj.json());
        }
        if self.table.is_none() {
            if let Some(partial) = obj.partial_json() {
                return crate::watch_cache::event_line_raw(kind, &partial);
            }
        }
        self.line(kind, obj)
    }
    /// Whether a cached object passes this watcher's selectors; without
    /// selectors the object is not decoded.
    fn matches(&self, obj: &crate::watch_cache::CachedObject) -> bool {
        if self.selects_all() {
            return true;
        }
        let res = self.res;
        obj.selectable((res.group, res.kind), |v| selectable_of(res, v)).passes(&self.labels, &self.fields)
    }
    fn selects_all(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
    fn matches_value(&self, obj: &Value) -> bool {
        matches(self.res, obj, &self.labels, &self.fields)
    }
    fn bookmark(&self, rev: i64) -> Bytes {
        event_line("BOOKMARK", &json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": {"resourceVersion": rev.to_string()}}))
    }
    /// One change as this watcher's event, with selector transitions: an
    /// object that stops matching is DELETED here, one that starts is ADDED.
    fn render(&self, e: &crate::watch_cache::CachedEvent) -> Option<Bytes> {
        let prev_matches = e.prev.as_deref().is_some_and(|p| self.matches(p));
        let kind = if e.deleted {
            prev_matches.then_some("DELETED")?
        } else {
            match (prev_matches, self.matches(&e.obj)) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        };
        if kind == e.natural_type() && !self.meta_only && self.table.is_none() {
            Some(e.line())
        } else {
            Some(self.line_cached(kind, &e.obj))
        }
    }
}

/// A watch served from the watch cache.
fn cached_watch(cacher: std::sync::Arc<crate::watch_cache::Cacher>, start: crate::watch_cache::Start, prefix: String, view: View, bookmarks: Option<Duration>) -> futures::stream::BoxStream<'static, Bytes> {
    use crate::watch_cache::Start;
    let (initial, cursor): (Vec<Bytes>, i64) = match start {
        Start::Snapshot(objs, rev) => (objs.iter().filter(|o| view.matches(o)).map(|o| view.line_cached("ADDED", o)).collect(), rev),
        Start::After(r) => (vec![], r),
    };
    struct S {
        cursor: i64,
        pending: std::collections::VecDeque<Bytes>,
        rx: tokio::sync::watch::Receiver<i64>,
        next_bookmark: tokio::time::Instant,
    }
    let every = bookmarks.unwrap_or(Duration::from_secs(3600));
    let state = S { cursor, pending: initial.into(), rx: cacher.subscribe(), next_bookmark: tokio::time::Instant::now() + every };
    futures::stream::unfold(state, move |mut s| {
        let cacher = cacher.clone();
        let prefix = prefix.clone();
        let view = view.clone();
        async move {
            loop {
                if let Some(line) = s.pending.pop_front() {
                    return Some((line, s));
                }
                s.rx.borrow_and_update();
                // Behind the ring, or the cache died: end; the client re-watches from its last version.
                let (events, rev) = cacher.since(prefix.as_bytes(), s.cursor).ok()?;
                for e in &events {
                    if let Some(l) = view.render(e) {
                        s.pending.push_back(l);
                    }
                    s.cursor = s.cursor.max(e.revision);
                }
                s.cursor = s.cursor.max(rev);
                if !s.pending.is_empty() {
                    continue;
                }
                if bookmarks.is_some() && tokio::time::Instant::now() >= s.next_bookmark {
                    s.next_bookmark = tokio::time::Instant::now() + every;
                    return Some((view.bookmark(s.cursor), s));
                }
                tokio::select! {
                    changed = s.rx.changed() => changed.ok()?,
                    _ = tokio::time::sleep_until(s.next_bookmark) => {}
                }
            }
        }
    })
    .boxed()
}

/// A watch straight from the store: for versions older than the cache
/// holds (the store answers 410 if they are compacted).
async fn direct_watch(storage: &Storage, prefix: String, after: Option<i64>, view: View, bookmarks: Option<Duration>) -> ApiResult<futures::stream::BoxStream<'static, Bytes>> {
    let mut initial = Vec::new();
    let after = match after {
        Some(r) => r,
        None => {
            let listed = storage.list(&prefix, None, 0, 0).await.map_err(kv_error)?;
            for kv in &listed.items {
                let obj = decode(kv)?;
                if view.matches_value(&obj) {
                    initial.push(view.line("ADDED", &obj));
                }
            }
            listed.revision
        }
    };
    let changes = storage.watch(&prefix, after, bookmarks);
    let events = changes.flat_map(move |batch| {
        let lines: Vec<Bytes> = match batch {
            Err(crate::kv::KvError::Compacted(_)) => vec![event_line("ERROR", &ApiError::gone(format!("too old resource version: {after}")).to_status())],
            Err(e) => vec![event_line("ERROR", &ApiError::internal(e.to_string()).to_status())],
            // A bookmark: only the kind and the revision everything has been sent up to.
            Ok(b) if b.events.is_empty() => vec![view.bookmark(b.revision)],
            Ok(b) => b.events.iter().filter_map(|e| translate(&view, e)).collect(),
        };
        futures::stream::iter(lines)
    });
    Ok(futures::stream::iter(initial).chain(events).boxed())
}

/// One store event as a watch event (see [`View::render`]).
fn translate(view: &View, e: &etcdpb::Event) -> Option<Bytes> {
    let kv = e.kv.as_ref()?;
    let prev = e.prev_kv.as_ref().and_then(|p| decode(p).ok());
    let prev_matches = prev.as_ref().is_some_and(|p| view.matches_value(p));
    if e.r#type == 1 {
        let mut obj = prev?;
        obj["metadata"]["resourceVersion"] = Value::String(kv.mod_revision.to_string());
        return prev_matches.then(|| view.line("DELETED", &obj));
    }
    let obj = decode(kv).ok()?;
    match (prev_matches, view.matches_value(&obj)) {
        (true, true) if kv.create_revision != kv.mod_revision => Some(view.line("MODIFIED", &obj)),
        (_, true) => Some(view.line("ADDED", &obj)),
        (true, false) => Some(view.line("DELETED", &obj)),
        (false, false) => None,
    }
}
