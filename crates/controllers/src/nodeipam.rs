//! Node IPAM (upstream's range allocator): each node gets `spec.podCIDR`
//! (and `podCIDRs`) carved from `--cluster-cidr` in blocks of
//! `--node-cidr-mask-size`.
//!
//! Why: pod IPs must be unique across the cluster without nodes talking to
//! each other; giving each node its own block does that. On start the
//! allocations already written on nodes are recovered before anything new
//! is handed out (a restart must never hand out a block twice), and a
//! deleted node's block is released. One worker, so two nodes never race
//! for the same block.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use parking_lot::Mutex;
use serde_json::json;

use crate::informer::key_of;
use crate::{Ctx, NetOptions};

/// The blocks of a cluster CIDR and which are taken.
pub struct CidrSet {
    base: u32,
    mask: u8,
    used: Vec<bool>,
    next: usize,
}

impl CidrSet {
    pub fn new(cluster_cidr: &str, mask: u8) -> Result<CidrSet> {
        let (ip, len) = cluster_cidr.split_once('/').context("--cluster-cidr: want a.b.c.d/n")?;
        let ip: Ipv4Addr = ip.parse().with_context(|| format!("--cluster-cidr {cluster_cidr}: only IPv4 is supported"))?;
        let len: u8 = len.parse().context("--cluster-cidr: bad prefix length")?;
        if len > 32 || mask > 32 || mask < len {
            bail!("--node-cidr-mask-size {mask} must be between the cluster CIDR's prefix ({len}) and 32");
        }
        if mask - len > 24 {
            bail!("--node-cidr-mask-size {mask}: more than 2^24 node blocks in {cluster_cidr}");
        }
        let base = u32::from(ip) & if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(CidrSet { base, mask, used: vec![false; 1usize << (mask - len)], next: 0 })
    }

    pub fn cidr(&self, i: usize) -> String {
        let step = if self.mask == 32 { 1u64 } else { 1u64 << (32 - self.mask) };
        format!("{}/{}", Ipv4Addr::from((self.base as u64 + i as u64 * step) as u32), self.mask)
    }

    /// The block index of `cidr` if it is one of ours.
    pub fn index(&self, cidr: &str) -> Option<usize> {
        let (ip, len) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        if len.parse::<u8>().ok()? != self.mask {
            return None;
        }
        let off = u32::from(ip).checked_sub(self.base)? as u64;
        let step = if self.mask == 32 { 1u64 } else { 1u64 << (32 - self.mask) };
        let i = (off / step) as usize;
        (off.is_multiple_of(step) && i < self.used.len()).then_some(i)
    }

    pub fn occupy(&mut self, i: usize) {
        self.used[i] = true;
    }

    pub fn release(&mut self, i: usize) {
        self.used[i] = false;
    }

    /// The next free block, round-robin from the last one handed out (as upstream).
    pub fn allocate(&mut self) -> Option<usize> {
        let n = self.used.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if !self.used[i] {
                self.used[i] = true;
                self.next = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }
}

struct State {
    set: CidrSet,
    /// Node name → its block, to release it when the node goes.
    owner: HashMap<String, usize>,
}

pub fn start(ctx: Arc<Ctx>, opts: &NetOptions) -> Result<()> {
    let set = CidrSet::new(&opts.cluster_cidr, opts.node_cidr_mask_size)?;
    let q = crate::queue::Queue::new("node_ipam", ctx.metrics.clone());
    let qq = q.clone();
    ctx.nodes.on_change(move |n| qq.add(key_of(n)));
    tokio::spawn(async move {
        ctx.nodes.wait_ready().await;
        let mut st = State { set, owner: HashMap::new() };
        // Recover before allocating anything.
        for n in ctx.nodes.list() {
            if let Some(i) = n.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(|c| st.set.index(c)) {
                st.set.occupy(i);
                st.owner.insert(key_of(n.as_ref()), i);
            }
        }
        tracing::info!(recovered = st.owner.len(), "node CIDR allocations recovered");
        let st = Arc::new(Mutex::new(st));
        crate::queue::run_workers(q, 1, move |name| {
            let (ctx, st) = (ctx.clone(), st.clone());
            async move { sync(&ctx, &st, &name).await }
        });
    });
    Ok(())
}

/// Ok(Some(_)): no block was free; look again later (one may be released).
async fn sync(ctx: &Ctx, st: &Mutex<State>, name: &str) -> Result<Option<std::time::Duration>> {
    let Some(node) = ctx.nodes.get(None, name) else {
        let mut s = st.lock();
        if let Some(i) = s.owner.remove(name) {
            s.set.release(i);
            tracing::info!(node = %name, cidr = %s.set.cidr(i), "released node CIDR");
        }
        return Ok(None);
    };
    if let Some(c) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
        let mut s = st.lock();
        if let Some(i) = s.set.index(c) {
            s.set.occupy(i);
            s.owner.insert(name.to_owned(), i);
        }
        return Ok(None);
    }
    let (i, cidr) = {
        let mut s = st.lock();
        if let Some(&i) = s.owner.get(name) {
            // Allocated, but the cache has not shown our write yet.
            (i, s.set.cidr(i))
        } else {
            let Some(i) = s.set.allocate() else {
                tracing::warn!(node = %name, "no pod CIDR left in the cluster CIDR");
                return Ok(Some(std::time::Duration::from_secs(2)));
            };
            s.owner.insert(name.to_owned(), i);
            (i, s.set.cidr(i))
        }
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "allocated node CIDR");
            Ok(None)
        }
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let mut s = st.lock();
            s.owner.remove(name);
            s.set.release(i);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_robin_recover_and_release() {
        let mut s = CidrSet::new("10.244.0.0/16", 24).unwrap();
        assert_eq!(s.cidr(0), "10.244.0.0/24");
        assert_eq!(s.cidr(255), "10.244.255.0/24");
        assert_eq!(s.index("10.244.7.0/24"), Some(7));
        assert_eq!(s.index("10.244.7.0/25"), None);
        assert_eq!(s.index("10.245.0.0/24"), None);
        s.occupy(0);
        assert_eq!(s.allocate(), Some(1));
        assert_eq!(s.allocate(), Some(2));
        s.release(1);
        // Round robin: a released block is reused only after the others.
        assert_eq!(s.allocate(), Some(3));
        let mut small = CidrSet::new("10.0.0.0/30", 31).unwrap();
        assert_eq!((small.allocate(), small.allocate(), small.allocate()), (Some(0), Some(1), None));
        assert_eq!(small.cidr(1), "10.0.0.2/31");
        assert!(CidrSet::new("10.0.0.0/24", 16).is_err());
        assert!(CidrSet::new("fd00::/64", 80).is_err());
    }
}
