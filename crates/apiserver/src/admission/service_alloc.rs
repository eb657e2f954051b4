//! Service cluster IPs and node ports: allocated by the API server, as
//! upstream's IP and port allocators do, from `--service-cluster-ip-range`
//! and `--service-node-port-range`.
//!
//! Each allocation is a key (`/registry/skiff/serviceips/<ip>`,
//! `/registry/skiff/nodeports/<port>`) written in the same txn as the
//! Service itself ([`crate::storage::Storage::write`]), so two Services can
//! never hold the same IP and a deleted Service frees its IP atomically.
//! No repair loop is needed because nothing can leak.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::status::{ApiError, ApiResult};
use crate::storage::Storage;

/// The ranges Services draw from.
#[derive(Debug, Clone, Copy)]
pub struct ServiceRanges {
    pub cidr_base: u32,
    pub cidr_prefix: u8,
    pub node_ports: (u16, u16),
}

impl Default for ServiceRanges {
    fn default() -> Self {
        ServiceRanges { cidr_base: u32::from(Ipv4Addr::new(10, 96, 0, 0)), cidr_prefix: 12, node_ports: (30000, 32767) }
    }
}

impl ServiceRanges {
    /// Parse `10.96.0.0/12`.
    pub fn with_cidr(mut self, cidr: &str) -> Result<Self, String> {
        let (ip, bits) = cidr.split_once('/').ok_or_else(|| format!("invalid CIDR {cidr:?}"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("invalid CIDR {cidr:?}"))?;
        let bits: u8 = bits.parse().ok().filter(|b| (8..=30).contains(b)).ok_or_else(|| format!("invalid CIDR prefix in {cidr:?} (8..30)"))?;
        self.cidr_prefix = bits;
        self.cidr_base = u32::from(ip) & (u32::MAX << (32 - bits));
        Ok(self)
    }
    /// Parse `30000-32767`.
    pub fn with_node_ports(mut self, range: &str) -> Result<Self, String> {
        let (a, b) = range.split_once('-').ok_or_else(|| format!("invalid port range {range:?}"))?;
        let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| format!("invalid port range {range:?}"))?, b.trim().parse().map_err(|_| format!("invalid port range {range:?}"))?);
        if a == 0 || a > b {
            return Err(format!("invalid port range {range:?}"));
        }
        self.node_ports = (a, b);
        Ok(self)
    }
    fn size(&self) -> u32 {
        1 << (32 - self.cidr_prefix)
    }
    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.cidr_base), self.cidr_prefix)
    }
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        // The network and broadcast addresses are never handed out.
        v > self.cidr_base && v < self.cidr_base + self.size() - 1
    }
    /// The first address: the `kubernetes` Service's.
    pub fn first_ip(&self) -> String {
        Ipv4Addr::from(self.cidr_base + 1).to_string()
    }
}

pub fn ip_key(ip: &str) -> String {
    format!("/registry/skiff/serviceips/{ip}")
}

pub fn port_key(port: i64) -> String {
    format!("/registry/skiff/nodeports/{port}")
}

/// The allocation keys a Service holds.
pub fn claims(svc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for ip in svc["spec"]["clusterIPs"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if ip != "None" && !ip.is_empty() {
            out.push(ip_key(ip));
        }
    }
    for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
        if let Some(n) = p["nodePort"].as_i64().filter(|n| *n > 0) {
            out.push(port_key(n));
        }
    }
    if let Some(n) = svc["spec"]["healthCheckNodePort"].as_i64().filter(|n| *n > 0) {
        out.push(port_key(n));
    }
    out.sort();
    out.dedup();
    out
}

async fn taken(storage: &Storage, key: &str) -> ApiResult<bool> {
    Ok(storage.get(key).await.map_err(crate::storage::kv_error)?.is_some())
}

fn invalid(name: &str, field: String, msg: String) -> ApiError {
    ApiError::invalid("Service", "", name, vec![(field, msg)])
}

/// Fill in `clusterIP(s)` and node ports for a Service being created
/// (`old` None) or updated. Requested values are checked; missing ones are
/// picked at random from the free part of the range.
pub async fn allocate(storage: &Storage, ranges: &ServiceRanges, svc: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let name = svc["metadata"]["name"].as_str().unwrap_or("").to_string();
    let ty = svc["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
    let held: Vec<String> = old.map(claims).unwrap_or_default();
    let spec = &mut svc["spec"];
    if ty == "ExternalName" {
        if let Some(s) = spec.as_object_mut() {
            s.remove("clusterIP");
            s.remove("clusterIPs");
        }
    } else {
        let old_ip = old.and_then(|o| o["spec"]["clusterIP"].as_str()).filter(|s| !s.is_empty()).map(str::to_string);
        let wanted = spec["clusterIP"].as_str().filter(|s| !s.is_empty()).map(str::to_string)
            .or_else(|| spec["clusterIPs"][0].as_str().filter(|s| !s.is_empty()).map(str::to_string));
        let ip = match (wanted, old_ip) {
            (Some(w), Some(o)) if w != o => {
                return Err(invalid(&name, "spec.clusterIPs[0]".into(), format!("Invalid value: {w:?}: may not change once set")));
            }
            (None, Some(o)) | (Some(_), Some(o)) => o,
            (Some(w), None) if w == "None" => w,
            (Some(w), None) => {
                let parsed: Ipv4Addr = w.parse().map_err(|_| invalid(&name, "spec.clusterIPs[0]".into(), format!("Invalid value: {w:?}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")))?;
                if !ranges.contains(parsed) {
                    return Err(invalid(&name, "spec.clusterIPs".into(), format!("Invalid value: [\"{w}\"]: failed to allocate IP {w}: the provided IP ({w}) is not in the valid range. The range of valid IPs is {}", ranges.cidr())));
                }
                if taken(storage, &ip_key(&w)).await? {
                    return Err(invalid(&name, "spec.clusterIPs".into(), format!("Invalid value: [\"{w}\"]: failed to allocate IP {w}: provided IP is already allocated")));
                }
                w
            }
            (None, None) => random_ip(storage, ranges).await?,
        };
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
    }

    let wants_ports = matches!(ty.as_str(), "NodePort" | "LoadBalancer");
    let old_ports: Vec<Value> = old.and_then(|o| o["spec"]["ports"].as_array().cloned()).unwrap_or_default();
    let mut used: Vec<i64> = Vec::new();
    let count = spec["ports"].as_array().map_or(0, Vec::len);
    for i in 0..count {
        let p = &mut spec["ports"][i];
        if !wants_ports {
            if let Some(o) = p.as_object_mut() {
                o.remove("nodePort");
            }
            continue;
        }
        let requested = p["nodePort"].as_i64().filter(|n| *n > 0);
        let port = match requested {
            Some(n) => {
                let (lo, hi) = ranges.node_ports;
                if n < lo as i64 || n > hi as i64 {
                    return Err(invalid(&name, format!("spec.ports[{i}].nodePort"), format!("Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}")));
                }
                if !held.contains(&port_key(n)) && !used.contains(&n) && taken(storage, &port_key(n)).await? {
                    return Err(invalid(&name, format!("spec.ports[{i}].nodePort"), format!("Invalid value: {n}: provided port is already allocated")));
                }
                n
            }
            None => {
                // An update keeps the node port the same service port had.
                let same = old_ports.iter().find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"]).and_then(|o| o["nodePort"].as_i64());
                match same {
                    Some(n) => n,
                    None => random_port(storage, ranges, &used).await?,
                }
            }
        };
        used.push(port);
        p["nodePort"] = json!(port);
    }
    Ok(())
}

/// Upstream's `dropTypeDependentFields`: a Service changing away from
/// NodePort/LoadBalancer loses the node ports it was given, unless the
/// client changed them in the same request (then validation speaks).
pub fn drop_type_dependent_fields(svc: &mut Value, old: &Value) {
    let needs = |v: &Value| matches!(v["spec"]["type"].as_str(), Some("NodePort" | "LoadBalancer"));
    if !needs(old) || needs(svc) {
        return;
    }
    let node_ports = |v: &Value| -> Vec<Value> { v["spec"]["ports"].as_array().into_iter().flatten().map(|p| p["nodePort"].clone()).collect() };
    if node_ports(svc) == node_ports(old) {
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for p in ports {
                if let Some(o) = p.as_object_mut() {
                    o.remove("nodePort");
                }
            }
        }
    }
    if svc["spec"]["healthCheckNodePort"] == old["spec"]["healthCheckNodePort"] {
        if let Some(s) = svc["spec"].as_object_mut() {
            s.remove("healthCheckNodePort");
            s.remove("externalTrafficPolicy");
        }
    }
}

async fn random_ip(storage: &Storage, ranges: &ServiceRanges) -> ApiResult<String> {
    for _ in 0..64 {
        let off = rand::random_range(1..ranges.size() - 1);
        let ip = Ipv4Addr::from(ranges.cidr_base + off).to_string();
        if !taken(storage, &ip_key(&ip)).await? {
            return Ok(ip);
        }
    }
    Err(ApiError::internal(format!("failed to allocate a serviceIP: range is full ({})", ranges.cidr())))
}

async fn random_port(storage: &Storage, ranges: &ServiceRanges, used: &[i64]) -> ApiResult<i64> {
    let (lo, hi) = ranges.node_ports;
    for _ in 0..64 {
        let n = rand::random_range(lo..=hi) as i64;
        if !used.contains(&n) && !taken(storage, &port_key(n)).await? {
            return Ok(n);
        }
    }
    Err(ApiError::internal(format!("failed to allocate a nodePort: range is full ({lo}-{hi})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_contain() {
        let r = ServiceRanges::default();
        assert_eq!(r.cidr(), "10.96.0.0/12");
        assert_eq!(r.first_ip(), "10.96.0.1");
        assert!(r.contains("10.111.255.254".parse().unwrap()));
        assert!(!r.contains("10.111.255.255".parse().unwrap()));
        assert!(!r.contains("10.96.0.0".parse().unwrap()));
        assert!(!r.contains("10.112.0.1".parse().unwrap()));
        let r = ServiceRanges::default().with_cidr("10.0.5.7/24").unwrap();
        assert_eq!(r.cidr(), "10.0.5.0/24");
        assert!(ServiceRanges::default().with_cidr("10.0.0.0/40").is_err());
        assert_eq!(ServiceRanges::default().with_node_ports("31000-31010").unwrap().node_ports, (31000, 31010));
        assert!(ServiceRanges::default().with_node_ports("5-1").is_err());
    }

    #[test]
    fn claims_cover_ips_and_ports() {
        let svc = json!({"spec": {"clusterIPs": ["10.96.0.9"], "ports": [{"nodePort": 30001}, {"nodePort": 30001}, {"port": 80}]}});
        assert_eq!(claims(&svc), vec![port_key(30001), ip_key("10.96.0.9")]);
        assert!(claims(&json!({"spec": {"clusterIPs": ["None"]}})).is_empty());
    }
}
