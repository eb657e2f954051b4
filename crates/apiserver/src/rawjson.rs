//! Stored objects as response bytes without decoding them.
//!
//! The store holds each object as compact JSON written by serde_json from a
//! `Value` (keys sorted) without `metadata.resourceVersion`, which every read
//! fills in from the key's mod_revision. Decoding a whole object only to add
//! that one field and serialize it again is what made large lists slow;
//! here the field is spliced into the stored bytes at its sorted place, so
//! the result is byte for byte what decode + serialize would give, for the
//! cost of scanning up to `metadata` and one copy.
//!
//! Anything unexpected (not an object, escaped keys, a resourceVersion
//! already there) returns false and the caller decodes instead.

/// Append `raw` to `out` with `"resourceVersion":"<rev>"` in its top-level
/// `metadata` object. Returns false (and leaves `out` as it was) when `raw`
/// is not in the stored form.
pub fn splice_resource_version(raw: &[u8], rev: i64, out: &mut Vec<u8>) -> bool {
    splice_at(raw, rev, out).is_some()
}

/// [`splice_resource_version`], returning where in `out` the version's
/// digits start (None inside when there is no `metadata` object, so no
/// version was written); None when `raw` is not in the stored form.
fn splice_at(raw: &[u8], rev: i64, out: &mut Vec<u8>) -> Option<Option<usize>> {
    match insertion_point(raw)? {
        Insert::Nowhere => {
            out.extend_from_slice(raw);
            Some(None)
        }
        Insert::At { pos, comma_before, comma_after } => {
            out.reserve(raw.len() + 40);
            out.extend_from_slice(&raw[..pos]);
            if comma_before {
                out.push(b',');
            }
            out.extend_from_slice(b"\"resourceVersion\":\"");
            let digits = out.len();
            out.extend_from_slice(rev.to_string().as_bytes());
            out.push(b'"');
            if comma_after {
                out.push(b',');
            }
            out.extend_from_slice(&raw[pos..]);
            Some(Some(digits))
        }
    }
}

/// [`with_resource_version`], also returning the offset of the version's
/// digits in the result (see [`replace_resource_version`]).
pub fn with_resource_version_at(raw: &[u8], rev: i64) -> Option<(Vec<u8>, Option<usize>)> {
    let mut out = Vec::with_capacity(raw.len() + 40);
    let at = splice_at(raw, rev, &mut out)?;
    Some((out, at))
}

/// `json` (made by [`with_resource_version_at`], its digits at `at`) with
/// another resourceVersion: what a deletion event shows of the last state.
pub fn replace_resource_version(json: &[u8], at: usize, rev: i64) -> Option<Vec<u8>> {
    let end = at + json.get(at..)?.iter().position(|&c| c == b'"')?;
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(&json[..at]);
    out.extend_from_slice(rev.to_string().as_bytes());
    out.extend_from_slice(&json[end..]);
    Some(out)
}

/// The raw bytes of the top-level `metadata` value of a compact object, if
/// it has one (for PartialObjectMetadata without decoding the object).
pub fn metadata_bytes(b: &[u8]) -> Option<&[u8]> {
    let i = metadata_at(b)??;
    if b.get(i) != Some(&b'{') {
        return None;
    }
    Some(&b[i..value_end(b, i)?])
}

/// [`splice_resource_version`] into a new buffer.
pub fn with_resource_version(raw: &[u8], rev: i64) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() + 40);
    splice_resource_version(raw, rev, &mut out).then_some(out)
}

enum Insert {
    /// No `metadata` object: decoding would not add the field either.
    Nowhere,
    At { pos: usize, comma_before: bool, comma_after: bool },
}

const RV: &[u8] = b"resourceVersion";

/// Where the top-level `metadata` value starts: Some(None) when the object
/// has none; None when `b` is not in the stored form.
fn metadata_at(b: &[u8]) -> Option<Option<usize>> {
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = ws(b, i);
        match b.get(i)? {
            b'}' => return Some(None),
            b'"' => {}
            _ => return None,
        }
        let key_end = string_end(b, i)?;
        let key = &b[i + 1..key_end - 1];
        if key.contains(&b'\\') {
            return None;
        }
        i = ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        if key == b"metadata" {
            return Some(Some(i));
        }
        i = ws(b, value_end(b, i)?);
        match b.get(i)? {
            b',' => i += 1,
            b'}' => return Some(None),
            _ => return None,
        }
    }
}

fn insertion_point(b: &[u8]) -> Option<Insert> {
    match metadata_at(b)? {
        Some(i) if b.get(i) == Some(&b'{') => metadata_point(b, i),
        _ => Some(Insert::Nowhere),
    }
}

/// Where in the `metadata` object starting at `open` the field goes: before
/// the first key that sorts after it, else at the end.
fn metadata_point(b: &[u8], open: usize) -> Option<Insert> {
    let mut i = ws(b, open + 1);
    if b.get(i) == Some(&b'}') {
        return Some(Insert::At { pos: i, comma_before: false, comma_after: false });
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(b, i)?;
        let key = &b[i + 1..key_end - 1];
        if key.contains(&b'\\') || key == RV {
            return None;
        }
        if key > RV {
            return Some(Insert::At { pos: i, comma_before: false, comma_after: true });
        }
        let mut j = ws(b, key_end);
        if b.get(j) != Some(&b':') {
            return None;
        }
        j = ws(b, value_end(b, ws(b, j + 1))?);
        match b.get(j)? {
            b',' => i = ws(b, j + 1),
            b'}' => return Some(Insert::At { pos: j, comma_before: true, comma_after: false }),
            _ => return None,
        }
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `b[i]` is an opening quote: the index just past the closing one.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The index just past the JSON value starting at `b[i]`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while !matches!(b.get(j), None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')) {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// What a read did before: decode, set the field, serialize.
    fn decoded(raw: &[u8], rev: i64) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(raw).unwrap();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), Value::String(rev.to_string()));
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn same_bytes_as_decode_and_serialize() {
        let objects = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u", "labels": {"a": "b"}, "managedFields": [{"f": {"x": "}\"{"}}]}, "spec": {"containers": [{"name": "c"}]}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v with \"quotes\" and \\ and }"}, "metadata": {"name": "a"}}),
            json!({"metadata": {}}),
            json!({"metadata": {"uid": "x"}}),
            json!({"metadata": {"name": "n"}}),
            json!({"metadata": {"annotations": {"resourceVersion": "not this one"}, "selfLink": "s"}}),
            json!({"apiVersion": "v1", "kind": "X", "spec": [1, -2.5, true, null, [], {}]}),
            json!({"a": {"metadata": {"nested": true}}, "metadata": {"zzz": 1, "aaa": [1, 2, {"b": "]"}]}}),
            json!({"metadata": null}),
            json!({"kind": "Node", "metadata": {"name": "ünïcode", "labels": {"é": "ü"}}}),
        ];
        for o in objects {
            let raw = serde_json::to_vec(&o).unwrap();
            assert_eq!(String::from_utf8(with_resource_version(&raw, 42).unwrap()).unwrap(), String::from_utf8(decoded(&raw, 42)).unwrap(), "{o}");
        }
    }

    #[test]
    fn replaced_version_and_metadata_bytes_match_decoding() {
        let o = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "}"}, "uid": "u"}, "spec": {"x": [1, {"y": "z"}]}});
        let raw = serde_json::to_vec(&o).unwrap();
        let (with, at) = with_resource_version_at(&raw, 7).unwrap();
        let at = at.unwrap();
        assert_eq!(&with[at..at + 1], b"7");
        let replaced = replace_resource_version(&with, at, 123456).unwrap();
        assert_eq!(String::from_utf8(replaced).unwrap(), String::from_utf8(decoded(&raw, 123456)).unwrap());
        let meta: Value = serde_json::from_slice(metadata_bytes(&with).unwrap()).unwrap();
        assert_eq!(meta, json!({"name": "p", "labels": {"a": "}"}, "uid": "u", "resourceVersion": "7"}));
        assert_eq!(metadata_bytes(b"{\"kind\":\"X\"}"), None);
        assert_eq!(metadata_bytes(b"{\"metadata\":null}"), None);
        let (no_meta, at) = with_resource_version_at(b"{\"kind\":\"X\"}", 3).unwrap();
        assert_eq!((no_meta.as_slice(), at), (&b"{\"kind\":\"X\"}"[..], None));
    }

    #[test]
    fn unexpected_forms_fall_back() {
        for raw in [&b"[1]"[..], b"{\"metadata\":{\"resourceVersion\":\"1\"}}", b"{\"metadata\":{\"na", b"", b"{\"k\\u0041\":1}", b"{\"a\" 1}"] {
            let mut out = b"keep".to_vec();
            assert!(!splice_resource_version(raw, 1, &mut out), "{}", String::from_utf8_lossy(raw));
            assert_eq!(out, b"keep");
        }
    }
}
