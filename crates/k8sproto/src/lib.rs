//! Kubernetes' protobuf encoding, `application/vnd.kubernetes.protobuf`.
//!
//! The wire types are our own `.proto` descriptions (in `proto/`, field
//! numbers as upstream's IDL), compiled at build time into a descriptor
//! pool. Objects travel through the API server as JSON values, so instead of
//! generated structs we transcode dynamically: protobuf bytes ⇄
//! `prost_reflect::DynamicMessage` ⇄ `serde_json::Value`, with Kubernetes'
//! JSON conventions (see `json.rs`).
//!
//! A protobuf body is the magic `k8s\0` followed by a `runtime.Unknown`
//! whose `typeMeta` names the object's apiVersion and kind and whose `raw`
//! holds the object's own message.

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage};
use serde_json::Value;

mod json;
pub mod time;

pub use json::{from_json, to_json};

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The envelope's first four bytes.
pub const MAGIC: &[u8; 4] = b"k8s\0";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("provided object is not a protobuf object (missing the k8s magic prefix)")]
    NoMagic,
    #[error("unable to decode protobuf: {0}")]
    Decode(String),
    #[error("no protobuf type is registered for {api_version}, Kind={kind}")]
    UnknownType { api_version: String, kind: String },
    #[error("content encoding {0:?} is not supported")]
    ContentEncoding(String),
    #[error("unknown protobuf field {number} in {message}")]
    UnknownField { message: String, number: u32 },
    #[error("field {path}: {msg}")]
    Field { path: String, msg: String },
}

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/k8s.fds"))[..]).expect("built-in descriptor set decodes")
});

pub fn pool() -> &'static DescriptorPool {
    &POOL
}

/// (apiVersion, kind) → message; `<Kind>List` uses `<message>List`.
const TYPES: &[(&str, &str, &str)] = &[
    ("v1", "Namespace", "core.Namespace"),
    ("v1", "Pod", "core.Pod"),
    ("v1", "Service", "core.Service"),
    ("v1", "Endpoints", "core.Endpoints"),
    ("v1", "ConfigMap", "core.ConfigMap"),
    ("v1", "Secret", "core.Secret"),
    ("v1", "ServiceAccount", "core.ServiceAccount"),
    ("v1", "Event", "core.Event"),
    ("v1", "LimitRange", "core.LimitRange"),
    ("v1", "ResourceQuota", "core.ResourceQuota"),
    ("v1", "PodTemplate", "core.PodTemplate"),
    ("v1", "ReplicationController", "core.ReplicationController"),
    ("apps/v1", "Deployment", "apps.Deployment"),
    ("apps/v1", "ReplicaSet", "apps.ReplicaSet"),
    ("apps/v1", "StatefulSet", "apps.StatefulSet"),
    ("apps/v1", "DaemonSet", "apps.DaemonSet"),
    ("apps/v1", "ControllerRevision", "apps.ControllerRevision"),
    ("batch/v1", "Job", "batch.Job"),
    ("batch/v1", "CronJob", "batch.CronJob"),
    ("coordination.k8s.io/v1", "Lease", "other.Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice", "other.EndpointSlice"),
    ("events.k8s.io/v1", "Event", "other.EventsEvent"),
    ("scheduling.k8s.io/v1", "PriorityClass", "other.PriorityClass"),
    ("policy/v1", "PodDisruptionBudget", "other.PodDisruptionBudget"),
    ("rbac.authorization.k8s.io/v1", "Role", "other.Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "other.RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "other.ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "other.ClusterRoleBinding"),
];

/// Bodies of subresources (no lists).
const SUBRESOURCE_TYPES: &[(&str, &str, &str)] = &[
    ("v1", "Binding", "core.Binding"),
    ("policy/v1", "Eviction", "other.Eviction"),
    ("autoscaling/v1", "Scale", "other.Scale"),
    ("authentication.k8s.io/v1", "TokenRequest", "other.TokenRequest"),
];

/// The message for an apiVersion and kind (lists included), if we have one.
pub fn message_for(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let name = match (api_version, kind) {
        ("v1" | "meta.k8s.io/v1", "Status") => "meta.Status".to_string(),
        (_, "DeleteOptions") => "meta.DeleteOptions".to_string(),
        ("meta.k8s.io/v1" | "v1", "WatchEvent") => "meta.WatchEvent".to_string(),
        _ if SUBRESOURCE_TYPES.iter().any(|(v, k, _)| *v == api_version && *k == kind) => {
            SUBRESOURCE_TYPES.iter().find(|(v, k, _)| *v == api_version && *k == kind).map(|(_, _, m)| m.to_string())?
        }
        _ => {
            let base = kind.strip_suffix("List").filter(|b| !b.is_empty());
            if let Some((_, _, m)) = TYPES.iter().find(|(v, k, _)| *v == api_version && *k == kind) {
                m.to_string()
            } else {
                let (_, _, m) = TYPES.iter().find(|(v, k, _)| *v == api_version && Some(*k) == base)?;
                format!("{m}List")
            }
        }
    };
    POOL.get_message_by_name(&format!("skiff.k8s.{name}"))
}

fn unknown_desc() -> MessageDescriptor {
    POOL.get_message_by_name("skiff.k8s.meta.Unknown").expect("Unknown is defined")
}

/// Decode a protobuf body (envelope included) to the object's JSON, with
/// `apiVersion` and `kind` set from the envelope. Never panics.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    let raw = body.strip_prefix(&MAGIC[..]).ok_or(Error::NoMagic)?;
    let unknown = DynamicMessage::decode(unknown_desc(), raw).map_err(|e| Error::Decode(e.to_string()))?;
    let env = to_json(&unknown)?;
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let api_version = s(&env["typeMeta"]["apiVersion"]);
    let kind = s(&env["typeMeta"]["kind"]);
    let encoding = s(&env["contentEncoding"]);
    if !encoding.is_empty() {
        return Err(Error::ContentEncoding(encoding));
    }
    let desc = message_for(&api_version, &kind).ok_or_else(|| Error::UnknownType { api_version: api_version.clone(), kind: kind.clone() })?;
    let inner = unknown.get_field_by_name("raw").and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
    let msg = DynamicMessage::decode(desc, inner).map_err(|e| Error::Decode(e.to_string()))?;
    let mut obj = to_json(&msg)?;
    if let Value::Object(m) = &mut obj {
        // apiVersion and kind first, as upstream writes them.
        let mut out = serde_json::Map::new();
        if !kind.is_empty() {
            out.insert("kind".into(), Value::String(kind));
        }
        if !api_version.is_empty() {
            out.insert("apiVersion".into(), Value::String(api_version));
        }
        out.append(m);
        obj = Value::Object(out);
    }
    Ok(obj)
}

/// Encode an object (its `apiVersion` and `kind` pick the message) as a
/// protobuf body with the envelope.
pub fn encode(obj: &Value) -> Result<Vec<u8>, Error> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let desc = message_for(api_version, kind).ok_or_else(|| Error::UnknownType { api_version: api_version.into(), kind: kind.into() })?;
    let msg = from_json(&desc, obj)?;
    Ok(envelope(api_version, kind, msg.encode_to_vec()))
}

/// One event of a protobuf watch stream, framed as upstream frames them: a
/// 4-byte big-endian length, then a bare `metav1.WatchEvent` (no envelope)
/// whose `object.raw` is the object's full protobuf body (with envelope).
pub fn encode_watch_event(event_type: &str, obj: &Value) -> Result<Vec<u8>, Error> {
    let inner = encode(obj)?;
    let desc = POOL.get_message_by_name("skiff.k8s.meta.WatchEvent").expect("WatchEvent is defined");
    let raw_desc = desc.get_field_by_name("object").unwrap().kind().as_message().unwrap().clone();
    let mut raw = DynamicMessage::new(raw_desc);
    raw.set_field_by_name("raw", prost_reflect::Value::Bytes(inner.into()));
    let mut ev = DynamicMessage::new(desc);
    ev.set_field_by_name("type", prost_reflect::Value::String(event_type.into()));
    ev.set_field_by_name("object", prost_reflect::Value::Message(raw));
    let body = ev.encode_to_vec();
    let len = u32::try_from(body.len()).map_err(|_| Error::Field { path: "WatchEvent".into(), msg: "event too large".into() })?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend(body);
    Ok(out)
}

/// Decode one watch frame (without its length prefix) to (type, object).
pub fn decode_watch_event(frame: &[u8]) -> Result<(String, Value), Error> {
    let desc = POOL.get_message_by_name("skiff.k8s.meta.WatchEvent").expect("WatchEvent is defined");
    let ev = DynamicMessage::decode(desc, frame).map_err(|e| Error::Decode(e.to_string()))?;
    let object = ev.get_field_by_name("object").and_then(|o| o.as_message().cloned());
    for m in std::iter::once(&ev).chain(object.as_ref()) {
        if let Some(u) = m.unknown_fields().next() {
            return Err(Error::UnknownField { message: m.descriptor().full_name().to_string(), number: u.number() });
        }
    }
    let event_type = ev.get_field_by_name("type").and_then(|t| t.as_str().map(str::to_string)).unwrap_or_default();
    let raw = object.and_then(|m| m.get_field_by_name("raw").and_then(|r| r.as_bytes().cloned())).unwrap_or_default();
    Ok((event_type, decode(&raw)?))
}

/// Split a protobuf watch stream into its frames; the rest is an
/// incomplete frame (returned as the second value).
pub fn split_watch_frames(mut buf: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut frames = Vec::new();
    while buf.len() >= 4 {
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if buf.len() - 4 < len {
            break;
        }
        frames.push(&buf[4..4 + len]);
        buf = &buf[4 + len..];
    }
    (frames, buf)
}

/// Wrap an encoded message in `k8s\0` + `runtime.Unknown`.
pub fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let desc = unknown_desc();
    let mut tm = DynamicMessage::new(desc.get_field_by_name("typeMeta").unwrap().kind().as_message().unwrap().clone());
    tm.set_field_by_name("apiVersion", prost_reflect::Value::String(api_version.into()));
    tm.set_field_by_name("kind", prost_reflect::Value::String(kind.into()));
    let mut u = DynamicMessage::new(desc);
    u.set_field_by_name("typeMeta", prost_reflect::Value::Message(tm));
    u.set_field_by_name("raw", prost_reflect::Value::Bytes(raw.into()));
    let mut out = MAGIC.to_vec();
    u.encode(&mut out).expect("Vec grows");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_message_and_a_list() {
        for (v, k, _) in TYPES {
            assert!(message_for(v, k).is_some(), "{v} {k}");
            assert!(message_for(v, &format!("{k}List")).is_some(), "{v} {k}List");
        }
        assert!(message_for("v1", "Status").is_some());
        for (v, k, _) in SUBRESOURCE_TYPES {
            assert!(message_for(v, k).is_some(), "{v} {k}");
        }
        assert!(message_for("v1", "Node").is_none());
        assert!(message_for("v1", "List").is_none());
    }

    #[test]
    fn watch_frames() {
        let obj = serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a", "resourceVersion": "5"}});
        let mut stream = encode_watch_event("ADDED", &obj).unwrap();
        stream.extend(encode_watch_event("DELETED", &obj).unwrap());
        stream.extend([0, 0, 0, 9, 1]);
        let (frames, rest) = split_watch_frames(&stream);
        assert_eq!(frames.len(), 2);
        assert_eq!(rest, &[0, 0, 0, 9, 1]);
        assert_eq!(decode_watch_event(frames[0]).unwrap(), ("ADDED".to_string(), obj.clone()));
        assert_eq!(decode_watch_event(frames[1]).unwrap().0, "DELETED");
        assert!(decode_watch_event(&[0xff, 0xff]).is_err());
    }
}
