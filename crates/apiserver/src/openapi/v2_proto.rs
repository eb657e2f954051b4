//! The Swagger 2.0 document in gnostic's protobuf form
//! (`openapi.v2.Document`, media type
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`), which is
//! the only form kubectl asks `/openapi/v2` for: `explain` in kubectl 1.27
//! and 1.28 reads it, and so does kubectl's client-side schema validation.
//!
//! Encoded straight from the JSON document with a small protobuf writer,
//! field numbers from gnostic's `OpenAPIv2.proto`. Only what our documents
//! contain is encoded. Values without a typed field (vendor extensions,
//! defaults, enums) go in `Any.yaml` as JSON text, which is valid YAML, the
//! way gnostic and kube-openapi read them.

use serde_json::{Map, Value};

/// A protobuf message being written.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.varint(((field as u64) << 3) | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    /// A string field; proto3 leaves empty strings out.
    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }
    fn str_of(&mut self, field: u32, v: &Value) {
        if let Some(s) = v.as_str() {
            self.string(field, s);
        }
    }
    fn strings(&mut self, field: u32, v: &Value) {
        for s in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
            self.bytes(field, s.as_bytes());
        }
    }
    fn boolean(&mut self, field: u32, v: &Value) {
        if v.as_bool() == Some(true) {
            self.varint((field as u64) << 3);
            self.varint(1);
        }
    }
    fn int64(&mut self, field: u32, v: &Value) {
        if let Some(n) = v.as_i64().filter(|n| *n != 0) {
            self.varint((field as u64) << 3);
            self.varint(n as u64);
        }
    }
    fn double(&mut self, field: u32, v: &Value) {
        if let Some(n) = v.as_f64() {
            self.varint(((field as u64) << 3) | 1);
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }
    fn msg(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }
}

/// `Any { yaml = 2 }`.
fn any(v: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(2, &v.to_string());
    m
}

/// `NamedAny` entries for every `x-…` key of `obj`.
fn extensions(out: &mut Msg, field: u32, obj: &Map<String, Value>) {
    for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Msg::default();
        named.string(1, k);
        named.msg(2, any(v));
        out.msg(field, named);
    }
}

fn schema(v: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(o) = v.as_object() else { return m };
    m.str_of(1, &o.get("$ref").cloned().unwrap_or_default());
    m.str_of(2, o.get("format").unwrap_or(&Value::Null));
    m.str_of(3, o.get("title").unwrap_or(&Value::Null));
    m.str_of(4, o.get("description").unwrap_or(&Value::Null));
    if let Some(d) = o.get("default") {
        m.msg(5, any(d));
    }
    for (key, field) in [("multipleOf", 6), ("maximum", 7), ("minimum", 9)] {
        if let Some(x) = o.get(key) {
            m.double(field, x);
        }
    }
    for (key, field) in [("maxLength", 11), ("minLength", 12), ("maxItems", 14), ("minItems", 15), ("maxProperties", 17), ("minProperties", 18)] {
        if let Some(x) = o.get(key) {
            m.int64(field, x);
        }
    }
    m.str_of(13, o.get("pattern").unwrap_or(&Value::Null));
    m.boolean(16, o.get("uniqueItems").unwrap_or(&Value::Null));
    m.strings(19, o.get("required").unwrap_or(&Value::Null));
    for e in o.get("enum").and_then(Value::as_array).into_iter().flatten() {
        m.msg(20, any(e));
    }
    match o.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut a = Msg::default();
            a.boolean(2, &Value::Bool(*b));
            m.msg(21, a);
        }
        Some(s @ Value::Object(_)) => {
            let mut a = Msg::default();
            a.msg(1, schema(s));
            m.msg(21, a);
        }
        _ => {}
    }
    if let Some(t) = o.get("type") {
        let mut ty = Msg::default();
        match t {
            Value::String(s) => ty.string(1, s),
            other => ty.strings(1, other),
        }
        m.msg(22, ty);
    }
    if let Some(items) = o.get("items") {
        let mut it = Msg::default();
        it.msg(1, schema(items));
        m.msg(23, it);
    }
    for s in o.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        m.msg(24, schema(s));
    }
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        let mut p = Msg::default();
        for (name, s) in props {
            let mut named = Msg::default();
            named.string(1, name);
            named.msg(2, schema(s));
            p.msg(1, named);
        }
        m.msg(25, p);
    }
    m.boolean(27, o.get("readOnly").unwrap_or(&Value::Null));
    extensions(&mut m, 31, o);
    m
}

/// `ParametersItem { parameter = 1 { body_parameter = 1 | non_body_parameter = 2 } }`.
fn parameter(p: &Value) -> Msg {
    let s = |k: &str| p.get(k).cloned().unwrap_or_default();
    let mut param = Msg::default();
    if s("in") == "body" {
        let mut b = Msg::default();
        b.str_of(1, &s("description"));
        b.str_of(2, &s("name"));
        b.str_of(3, &s("in"));
        b.boolean(4, &s("required"));
        b.msg(5, schema(&s("schema")));
        param.msg(1, b);
    } else {
        // Query and path sub-schemas share their first fields, then differ by one.
        let path = s("in") == "path";
        let mut q = Msg::default();
        q.boolean(1, &s("required"));
        q.str_of(2, &s("in"));
        q.str_of(3, &s("description"));
        q.str_of(4, &s("name"));
        q.str_of(if path { 5 } else { 6 }, &s("type"));
        q.boolean(if path { 19 } else { 20 }, &s("uniqueItems"));
        let mut nb = Msg::default();
        nb.msg(if path { 4 } else { 3 }, q);
        param.msg(2, nb);
    }
    let mut item = Msg::default();
    item.msg(1, param);
    item
}

fn operation(op: &Value) -> Msg {
    let mut m = Msg::default();
    m.strings(1, &op["tags"]);
    m.str_of(3, &op["description"]);
    m.str_of(5, &op["operationId"]);
    m.strings(6, &op["produces"]);
    m.strings(7, &op["consumes"]);
    for p in op["parameters"].as_array().into_iter().flatten() {
        m.msg(8, parameter(p));
    }
    let mut responses = Msg::default();
    for (code, r) in op["responses"].as_object().into_iter().flatten() {
        let mut resp = Msg::default();
        resp.str_of(1, &r["description"]);
        if r.get("schema").is_some() {
            let mut item = Msg::default();
            item.msg(1, schema(&r["schema"]));
            resp.msg(2, item);
        }
        let mut value = Msg::default();
        value.msg(1, resp);
        let mut named = Msg::default();
        named.string(1, code);
        named.msg(2, value);
        responses.msg(1, named);
    }
    m.msg(9, responses);
    m.strings(10, &op["schemes"]);
    if let Some(o) = op.as_object() {
        extensions(&mut m, 13, o);
    }
    m
}

fn path_item(item: &Value) -> Msg {
    let mut m = Msg::default();
    for (method, field) in [("get", 2), ("put", 3), ("post", 4), ("delete", 5), ("patch", 8)] {
        if let Some(op) = item.get(method) {
            m.msg(field, operation(op));
        }
    }
    for p in item["parameters"].as_array().into_iter().flatten() {
        m.msg(9, parameter(p));
    }
    m
}

/// Encode a Swagger 2.0 JSON document as `openapi.v2.Document`.
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut d = Msg::default();
    d.str_of(1, &doc["swagger"]);
    let mut info = Msg::default();
    info.str_of(1, &doc["info"]["title"]);
    info.str_of(2, &doc["info"]["version"]);
    d.msg(2, info);
    let mut paths = Msg::default();
    for (name, item) in doc["paths"].as_object().into_iter().flatten() {
        let mut named = Msg::default();
        named.string(1, name);
        named.msg(2, path_item(item));
        paths.msg(2, named);
    }
    d.msg(8, paths);
    let mut defs = Msg::default();
    for (name, s) in doc["definitions"].as_object().into_iter().flatten() {
        let mut named = Msg::default();
        named.string(1, name);
        named.msg(2, schema(s));
        defs.msg(1, named);
    }
    d.msg(9, defs);
    d.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_follow_the_wire_format() {
        let mut m = Msg::default();
        m.varint(300);
        assert_eq!(m.0, [0xac, 0x02]);
        let doc = serde_json::json!({"swagger": "2.0", "info": {"title": "K", "version": "v"}, "paths": {}, "definitions": {}});
        // swagger = 1 ("2.0"), info = 2 { title = 1, version = 2 }, empty paths = 8, empty definitions = 9.
        assert_eq!(encode(&doc), [0x0a, 3, b'2', b'.', b'0', 0x12, 6, 0x0a, 1, b'K', 0x12, 1, b'v', 0x42, 0, 0x4a, 0]);
    }
}
