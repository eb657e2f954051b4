//! `metav1.DeleteOptions`, from the request body or the query string:
//! grace period, preconditions, propagation policy and dry run.

use serde_json::Value;

use crate::status::{ApiError, ApiResult};

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Parse a DeleteOptions object (the body of DELETE, or the
    /// `deleteOptions` of an Eviction), then let query parameters override.
    pub fn parse(body: &Value, query: &dyn Fn(&str) -> Option<String>) -> ApiResult<DeleteOptions> {
        let mut o = DeleteOptions {
            grace_period: body["gracePeriodSeconds"].as_i64(),
            propagation: body["propagationPolicy"].as_str().map(str::to_string),
            uid: body["preconditions"]["uid"].as_str().map(str::to_string),
            resource_version: body["preconditions"]["resourceVersion"].as_str().map(str::to_string),
            dry_run: body["dryRun"].as_array().is_some_and(|a| a.iter().any(|v| v == "All")),
        };
        if body.get("orphanDependents") == Some(&Value::Bool(true)) && o.propagation.is_none() {
            o.propagation = Some("Orphan".into());
        }
        if let Some(g) = query("gracePeriodSeconds") {
            o.grace_period = Some(g.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?);
        }
        if let Some(p) = query("propagationPolicy") {
            o.propagation = Some(p);
        }
        if query("dryRun").as_deref() == Some("All") {
            o.dry_run = true;
        }
        if let Some(p) = &o.propagation {
            if !["Orphan", "Foreground", "Background"].contains(&p.as_str()) {
                return Err(ApiError::bad_request(format!("DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\"")));
            }
        }
        if let Some(g) = o.grace_period.filter(|g| *g < 0) {
            // Upstream treats negative as "immediately" after validation allows it; we reject like kubectl does client-side.
            return Err(ApiError::bad_request(format!("gracePeriodSeconds must be >= 0, got {g}")));
        }
        Ok(o)
    }

    /// Preconditions: the object must still be the one the client means.
    pub fn check(&self, obj: &Value, resource: &str, group: &str) -> ApiResult<()> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("");
        if let Some(uid) = &self.uid {
            let have = obj["metadata"]["uid"].as_str().unwrap_or("");
            if uid != have {
                return Err(ApiError::conflict(resource, group, name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}")));
            }
        }
        if let Some(rv) = &self.resource_version {
            let have = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if rv != have {
                return Err(ApiError::conflict(resource, group, name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_and_query() {
        let none = |_: &str| None;
        let o = DeleteOptions::parse(&json!({"gracePeriodSeconds": 5, "propagationPolicy": "Foreground", "preconditions": {"uid": "u"}}), &none).unwrap();
        assert_eq!((o.grace_period, o.propagation.as_deref(), o.uid.as_deref()), (Some(5), Some("Foreground"), Some("u")));
        let q = |k: &str| (k == "gracePeriodSeconds").then(|| "0".to_string());
        assert_eq!(DeleteOptions::parse(&json!({"gracePeriodSeconds": 5}), &q).unwrap().grace_period, Some(0));
        assert!(DeleteOptions::parse(&json!({"propagationPolicy": "Sideways"}), &none).is_err());
        let o = DeleteOptions::parse(&json!({"preconditions": {"uid": "a"}}), &none).unwrap();
        assert_eq!(o.check(&json!({"metadata": {"uid": "b", "name": "x"}}), "pods", "").unwrap_err().code, 409);
    }
}
