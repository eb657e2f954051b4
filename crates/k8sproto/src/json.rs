//! DynamicMessage ⇄ JSON with Kubernetes' conventions (not proto3's JSON
//! mapping): the proto field name is the JSON name; int64 is a JSON number;
//! `bytes` is base64; Time/MicroTime are RFC 3339 strings (a zero Time is
//! `null`); Duration is Go's duration string; Quantity is its string;
//! IntOrString is the int or the string; RawExtension and FieldsV1 are
//! embedded JSON. Fields named `*_inline` are Go embedded structs whose
//! fields sit in the parent object. A plain (non-`optional`) scalar at its
//! zero value is omitted, like Go's `omitempty`; `optional` ones keep zero.

use base64::Engine;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value as PValue};
use serde_json::{Map, Value};

use crate::time;
use crate::Error;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn is_inline(f: &FieldDescriptor) -> bool {
    f.name().ends_with("_inline")
}

fn special(desc: &MessageDescriptor) -> Option<&'static str> {
    Some(match desc.full_name() {
        "skiff.k8s.meta.Time" => "Time",
        "skiff.k8s.meta.MicroTime" => "MicroTime",
        "skiff.k8s.meta.Duration" => "Duration",
        "skiff.k8s.meta.Quantity" => "Quantity",
        "skiff.k8s.meta.IntOrString" => "IntOrString",
        "skiff.k8s.meta.RawExtension" => "RawExtension",
        "skiff.k8s.meta.FieldsV1" => "FieldsV1",
        _ => return None,
    })
}

// ---------------------------------------------------------------- decode

/// A message as Kubernetes JSON. Unknown fields are an error.
pub fn to_json(msg: &DynamicMessage) -> Result<Value, Error> {
    let desc = msg.descriptor();
    if let Some(u) = msg.unknown_fields().next() {
        return Err(Error::UnknownField { message: desc.full_name().to_string(), number: u.number() });
    }
    if let Some(kind) = special(&desc) {
        return special_to_json(kind, msg);
    }
    let mut out = Map::new();
    object_into(msg, &mut out)?;
    Ok(Value::Object(out))
}

fn object_into(msg: &DynamicMessage, out: &mut Map<String, Value>) -> Result<(), Error> {
    for f in msg.descriptor().fields() {
        if !msg.has_field(&f) {
            continue;
        }
        let v = msg.get_field(&f);
        if is_inline(&f) {
            let sub = v.as_message().ok_or_else(|| bad(f.name(), "inline field is not a message"))?;
            if let Some(u) = sub.unknown_fields().next() {
                return Err(Error::UnknownField { message: sub.descriptor().full_name().to_string(), number: u.number() });
            }
            object_into(sub, out)?;
            continue;
        }
        out.insert(f.name().to_string(), field_to_json(&f, &v)?);
    }
    Ok(())
}

fn field_to_json(f: &FieldDescriptor, v: &PValue) -> Result<Value, Error> {
    if f.is_map() {
        let entry = f.kind();
        let entry = entry.as_message().ok_or_else(|| bad(f.name(), "map without entry"))?;
        let value_field = entry.map_entry_value_field();
        let mut m = Map::new();
        for (k, val) in v.as_map().ok_or_else(|| bad(f.name(), "not a map"))? {
            let key = match k {
                MapKey::String(s) => s.clone(),
                MapKey::Bool(b) => b.to_string(),
                MapKey::I32(i) => i.to_string(),
                MapKey::I64(i) => i.to_string(),
                MapKey::U32(i) => i.to_string(),
                MapKey::U64(i) => i.to_string(),
            };
            m.insert(key, scalar_to_json(&value_field.kind(), val)?);
        }
        return Ok(Value::Object(m));
    }
    if f.is_list() {
        let items = v.as_list().ok_or_else(|| bad(f.name(), "not a list"))?;
        return Ok(Value::Array(items.iter().map(|x| scalar_to_json(&f.kind(), x)).collect::<Result<_, _>>()?));
    }
    scalar_to_json(&f.kind(), v)
}

fn scalar_to_json(kind: &Kind, v: &PValue) -> Result<Value, Error> {
    Ok(match v {
        PValue::Bool(b) => Value::Bool(*b),
        PValue::I32(i) => Value::from(*i),
        PValue::I64(i) => Value::from(*i),
        PValue::U32(i) => Value::from(*i),
        PValue::U64(i) => Value::from(*i),
        PValue::F32(x) => serde_json::Number::from_f64(f64::from(*x)).map(Value::Number).unwrap_or(Value::Null),
        PValue::F64(x) => serde_json::Number::from_f64(*x).map(Value::Number).unwrap_or(Value::Null),
        PValue::String(s) => Value::String(s.clone()),
        PValue::Bytes(b) => Value::String(B64.encode(b)),
        PValue::EnumNumber(n) => Value::from(*n),
        PValue::Message(m) => to_json(m)?,
        PValue::List(_) | PValue::Map(_) => return Err(bad(&format!("{kind:?}"), "nested collection")),
    })
}

fn special_to_json(kind: &str, msg: &DynamicMessage) -> Result<Value, Error> {
    let get = |name: &str| msg.get_field_by_name(name).map(|c| c.into_owned());
    let int = |name: &str| get(name).and_then(|v| v.as_i64().or(v.as_i32().map(i64::from))).unwrap_or(0);
    let string = |name: &str| get(name).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let bytes = |name: &str| get(name).and_then(|v| v.as_bytes().cloned()).unwrap_or_default();
    Ok(match kind {
        "Time" | "MicroTime" => {
            let (s, n) = (int("seconds"), int("nanos"));
            if s == 0 && n == 0 {
                Value::Null
            } else {
                if !(0..1_000_000_000).contains(&n) || !(-62_135_596_800..=253_402_300_799).contains(&s) {
                    return Err(bad(kind, "time out of range"));
                }
                Value::String(time::format(s, n as i32, kind == "MicroTime"))
            }
        }
        "Duration" => Value::String(time::format_duration(int("duration"))),
        "Quantity" => {
            let s = string("string");
            Value::String(if s.is_empty() { "0".into() } else { s })
        }
        "IntOrString" => match int("type") {
            0 => Value::from(int("intVal")),
            1 => Value::String(string("strVal")),
            t => return Err(bad("IntOrString", &format!("unknown type {t}"))),
        },
        "RawExtension" | "FieldsV1" => {
            let raw = bytes(if kind == "FieldsV1" { "Raw" } else { "raw" });
            if raw.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&raw).map_err(|e| bad(kind, &format!("embedded object is not JSON: {e}")))?
            }
        }
        _ => unreachable!("special kinds are listed in special()"),
    })
}

fn bad(path: &str, msg: &str) -> Error {
    Error::Field { path: path.to_string(), msg: msg.to_string() }
}

// ---------------------------------------------------------------- encode

/// A JSON value as a message of type `desc`. Fields the message does not
/// have are an error; `null` means absent. `apiVersion`/`kind` of objects
/// (the top level, and messages with `metadata`) are carried by the
/// envelope, not the message.
pub fn from_json(desc: &MessageDescriptor, v: &Value) -> Result<DynamicMessage, Error> {
    from_json_top(desc, v, desc.name(), true)
}

fn from_json_at(desc: &MessageDescriptor, v: &Value, path: &str) -> Result<DynamicMessage, Error> {
    from_json_top(desc, v, path, false)
}

fn from_json_top(desc: &MessageDescriptor, v: &Value, path: &str, top: bool) -> Result<DynamicMessage, Error> {
    if let Some(kind) = special(desc) {
        return special_from_json(kind, desc, v, path);
    }
    let obj = v.as_object().ok_or_else(|| bad(path, "expected an object"))?;
    let mut msg = DynamicMessage::new(desc.clone());
    let is_object = top || desc.get_field_by_name("metadata").is_some();
    // Keys of embedded (inline) structs, gathered per inline field.
    let mut inline: Vec<(FieldDescriptor, Map<String, Value>)> = Vec::new();
    for (k, val) in obj {
        if val.is_null() {
            continue;
        }
        let p = format!("{path}.{k}");
        if let Some(f) = desc.get_field_by_name(k).filter(|f| !is_inline(f)) {
            let pv = field_from_json(&f, val, &p)?;
            msg.set_field(&f, pv);
            continue;
        }
        if is_object && matches!(k.as_str(), "apiVersion" | "kind") {
            continue;
        }
        match desc.fields().find(|f| is_inline(f) && f.kind().as_message().is_some_and(|m| accepts(m, k))) {
            Some(f) => match inline.iter_mut().find(|(g, _)| *g == f) {
                Some((_, m)) => {
                    m.insert(k.clone(), val.clone());
                }
                None => inline.push((f, Map::from_iter([(k.clone(), val.clone())]))),
            },
            None => return Err(bad(&p, "unknown field")),
        }
    }
    for (f, m) in inline {
        let sub = from_json_at(f.kind().as_message().expect("checked"), &Value::Object(m), path)?;
        msg.set_field(&f, PValue::Message(sub));
    }
    Ok(msg)
}

/// Whether a JSON key belongs to `desc` (directly or through its inline fields).
fn accepts(desc: &MessageDescriptor, key: &str) -> bool {
    desc.fields().any(|f| if is_inline(&f) { f.kind().as_message().is_some_and(|m| accepts(m, key)) } else { f.name() == key })
}

fn field_from_json(f: &FieldDescriptor, v: &Value, path: &str) -> Result<PValue, Error> {
    if f.is_map() {
        let entry = f.kind();
        let entry = entry.as_message().expect("map fields have an entry message");
        let key_kind = entry.map_entry_key_field().kind();
        let value_kind = entry.map_entry_value_field().kind();
        let obj = v.as_object().ok_or_else(|| bad(path, "expected an object"))?;
        let mut m = std::collections::HashMap::new();
        for (k, val) in obj {
            let key = match key_kind {
                Kind::String => MapKey::String(k.clone()),
                _ => return Err(bad(path, "only string map keys are supported")),
            };
            if val.is_null() && !matches!(value_kind, Kind::String) {
                continue;
            }
            m.insert(key, scalar_from_json(&value_kind, val, &format!("{path}[{k}]"))?);
        }
        return Ok(PValue::Map(m));
    }
    if f.is_list() {
        let arr = v.as_array().ok_or_else(|| bad(path, "expected an array"))?;
        let items = arr.iter().enumerate().map(|(i, x)| scalar_from_json(&f.kind(), x, &format!("{path}[{i}]"))).collect::<Result<_, _>>()?;
        return Ok(PValue::List(items));
    }
    scalar_from_json(&f.kind(), v, path)
}

fn scalar_from_json(kind: &Kind, v: &Value, path: &str) -> Result<PValue, Error> {
    let int = |lo: i64, hi: i64| -> Result<i64, Error> {
        v.as_i64().filter(|i| (lo..=hi).contains(i)).ok_or_else(|| bad(path, &format!("expected an integer, got {v}")))
    };
    Ok(match kind {
        Kind::Bool => PValue::Bool(v.as_bool().ok_or_else(|| bad(path, "expected a boolean"))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => PValue::I32(int(i32::MIN.into(), i32::MAX.into())? as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => PValue::I64(int(i64::MIN, i64::MAX)?),
        Kind::Uint32 | Kind::Fixed32 => PValue::U32(int(0, u32::MAX.into())? as u32),
        Kind::Uint64 | Kind::Fixed64 => PValue::U64(v.as_u64().ok_or_else(|| bad(path, "expected an unsigned integer"))?),
        Kind::Float => PValue::F32(v.as_f64().ok_or_else(|| bad(path, "expected a number"))? as f32),
        Kind::Double => PValue::F64(v.as_f64().ok_or_else(|| bad(path, "expected a number"))?),
        Kind::String => PValue::String(match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            _ => return Err(bad(path, "expected a string")),
        }),
        Kind::Bytes => {
            let s = v.as_str().ok_or_else(|| bad(path, "expected a base64 string"))?;
            PValue::Bytes(B64.decode(s).map_err(|e| bad(path, &format!("illegal base64 data: {e}")))?.into())
        }
        Kind::Enum(_) => PValue::EnumNumber(int(i32::MIN.into(), i32::MAX.into())? as i32),
        Kind::Message(m) => PValue::Message(from_json_at(m, v, path)?),
    })
}

fn special_from_json(kind: &str, desc: &MessageDescriptor, v: &Value, path: &str) -> Result<DynamicMessage, Error> {
    let mut msg = DynamicMessage::new(desc.clone());
    match kind {
        "Time" | "MicroTime" => {
            let s = v.as_str().ok_or_else(|| bad(path, "expected an RFC 3339 time string"))?;
            let (secs, nanos) = time::parse(s).ok_or_else(|| bad(path, &format!("invalid time {s:?}")))?;
            // Time has second precision in JSON and on the wire; MicroTime keeps micros.
            let nanos = if kind == "Time" { 0 } else { nanos / 1000 * 1000 };
            msg.set_field_by_name("seconds", PValue::I64(secs));
            msg.set_field_by_name("nanos", PValue::I32(nanos));
        }
        "Duration" => {
            let s = v.as_str().ok_or_else(|| bad(path, "expected a duration string"))?;
            let n = time::parse_duration(s).ok_or_else(|| bad(path, &format!("invalid duration {s:?}")))?;
            msg.set_field_by_name("duration", PValue::I64(n));
        }
        "Quantity" => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(bad(path, "expected a quantity string")),
            };
            msg.set_field_by_name("string", PValue::String(s));
        }
        "IntOrString" => match v {
            Value::Number(_) => {
                let i = v.as_i64().filter(|i| i32::try_from(*i).is_ok()).ok_or_else(|| bad(path, "expected an int32 or a string"))?;
                msg.set_field_by_name("type", PValue::I64(0));
                msg.set_field_by_name("intVal", PValue::I32(i as i32));
            }
            Value::String(s) => {
                msg.set_field_by_name("type", PValue::I64(1));
                msg.set_field_by_name("strVal", PValue::String(s.clone()));
            }
            _ => return Err(bad(path, "expected an int32 or a string")),
        },
        "RawExtension" | "FieldsV1" => {
            let name = if kind == "FieldsV1" { "Raw" } else { "raw" };
            msg.set_field_by_name(name, PValue::Bytes(v.to_string().into_bytes().into()));
        }
        _ => unreachable!("special kinds are listed in special()"),
    }
    Ok(msg)
}
