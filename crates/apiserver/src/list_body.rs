//! List responses written from bytes the server already has: stored objects
//! with their resourceVersion spliced in ([`crate::rawjson`]) and the watch
//! cache's serialized objects, concatenated into a few large chunks. No
//! `Value` is built or serialized per item, so a list of 10,000 pods costs
//! about one copy of its bytes. The output is byte for byte what serializing
//! the list object would give (keys in serde_json's sorted order).

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Items are gathered into chunks of about this size, so the body goes out
/// as a short stream of large frames rather than one per object.
const CHUNK: usize = 256 * 1024;

/// A list body under construction.
pub struct ListBody {
    chunks: Vec<Bytes>,
    buf: Vec<u8>,
    first: bool,
}

impl ListBody {
    /// Start `{"apiVersion":…,"items":[`.
    pub fn new(api_version: &str) -> ListBody {
        let mut buf = Vec::with_capacity(CHUNK + 8 * 1024);
        buf.extend_from_slice(b"{\"apiVersion\":");
        serde_json::to_writer(&mut buf, api_version).expect("strings serialize");
        buf.extend_from_slice(b",\"items\":[");
        ListBody { chunks: Vec::new(), buf, first: true }
    }

    /// Append one item written by `write`, which returns false if it could
    /// not write (it must then leave the buffer as it was).
    pub fn item(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let mark = self.buf.len();
        if !self.first {
            self.buf.push(b',');
        }
        if !write(&mut self.buf) {
            self.buf.truncate(mark);
            return false;
        }
        self.first = false;
        if self.buf.len() >= CHUNK {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 8 * 1024));
            self.chunks.push(Bytes::from(full));
        }
        true
    }

    /// An item that is already serialized.
    pub fn raw(&mut self, json: &[u8]) {
        self.item(|b| {
            b.extend_from_slice(json);
            true
        });
    }

    /// An item as a value.
    pub fn value(&mut self, v: &Value) {
        self.item(|b| serde_json::to_writer(b, v).is_ok());
    }

    /// Close with `],"kind":…,"metadata":…}` and answer 200 with it.
    pub fn finish(mut self, kind: &str, metadata: &Value) -> Response {
        self.buf.extend_from_slice(b"],\"kind\":");
        serde_json::to_writer(&mut self.buf, kind).expect("strings serialize");
        self.buf.extend_from_slice(b",\"metadata\":");
        serde_json::to_writer(&mut self.buf, metadata).expect("values serialize");
        self.buf.push(b'}');
        self.chunks.push(Bytes::from(self.buf));
        let body = if self.chunks.len() == 1 {
            Body::from(self.chunks.pop().unwrap_or_default())
        } else {
            Body::from_stream(futures::stream::iter(self.chunks.into_iter().map(Ok::<_, std::convert::Infallible>)))
        };
        (StatusCode::OK, [("content-type", "application/json")], body).into_response()
    }
}

/// A list's metadata, as `list_object` writes it.
pub fn list_metadata(rev: i64, cont: Option<String>, remaining: Option<i64>) -> Value {
    let mut metadata = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = cont {
        metadata["continue"] = Value::String(c);
    }
    if let Some(r) = remaining {
        metadata["remainingItemCount"] = json!(r);
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_bytes_as_the_list_object() {
        let items: Vec<Value> = (0..3000).map(|i| json!({"metadata": {"name": format!("p{i}"), "resourceVersion": "7"}, "spec": {"x": "y".repeat(100)}})).collect();
        for n in [0, 1, 3000] {
            let mut body = ListBody::new("v1");
            for (i, it) in items[..n].iter().enumerate() {
                if i % 2 == 0 {
                    body.raw(&serde_json::to_vec(it).unwrap());
                } else {
                    body.value(it);
                }
            }
            // A writer that fails leaves nothing behind.
            assert!(!body.item(|b| {
                b.extend_from_slice(b"garbage");
                false
            }));
            let resp = body.finish("PodList", &list_metadata(9, Some("c".into()), Some(4)));
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            let want = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "9", "continue": "c", "remainingItemCount": 4}, "items": items[..n]});
            assert_eq!(bytes, serde_json::to_vec(&want).unwrap(), "{n} items");
        }
    }
}
