//! What happens to an object between decoding and storage: defaulting,
//! the built-in admission plugins (Priority, ServiceAccount,
//! DefaultTolerationSeconds, the Service IP/port allocators) and
//! validation. Upstream splits these across `SetDefaults_*`, admission
//! plugins and registry strategies; here they are one pass per write.

pub mod defaults;
pub mod priority;
pub mod service_account;
pub mod service_alloc;
pub mod validation;

use serde_json::Value;

use crate::resources::Resource;
use crate::status::{ApiError, ApiResult};
use crate::storage::Storage;

/// Allocation keys a write takes and gives back, written atomically with it.
#[derive(Debug, Default)]
pub struct Claims {
    pub claim: Vec<String>,
    pub release: Vec<String>,
}

/// Default, admit and validate `obj` (create when `old` is None). Status
/// writes (`sub` = status) change nothing else and skip it.
pub async fn admit(storage: &Storage, res: &Resource, sub: Option<&str>, obj: &mut Value, old: Option<&Value>) -> ApiResult<Claims> {
    if sub.is_some_and(|s| s != "ephemeralcontainers") {
        return Ok(Claims::default());
    }
    defaults::apply(res.kind, obj);
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if res.kind == "Pod" && old.is_none() {
        priority::resolve(storage, obj).await?;
        service_account::admit(storage, obj).await?;
    }
    if res.kind == "Service" {
        if let Some(old) = old {
            service_alloc::drop_type_dependent_fields(obj, old);
        }
    }
    let errs = validation::validate(res.kind, obj, old);
    if !errs.is_empty() {
        return Err(ApiError::invalid(res.kind, res.group, &name, errs));
    }
    if res.kind != "Service" {
        return Ok(Claims::default());
    }
    service_alloc::allocate(storage, &storage.service_ranges, obj, old).await?;
    let now = service_alloc::claims(obj);
    let before = old.map(service_alloc::claims).unwrap_or_default();
    Ok(Claims {
        claim: now.iter().filter(|k| !before.contains(k)).cloned().collect(),
        release: before.iter().filter(|k| !now.contains(k)).cloned().collect(),
    })
}

/// What a deleted object gives back.
pub fn released_by(res: &Resource, obj: &Value) -> Vec<String> {
    if res.kind == "Service" { service_alloc::claims(obj) } else { vec![] }
}
