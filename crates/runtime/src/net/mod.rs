//! The pod network on this node: a bridge holding the podCIDR's first
//! address (the pods' gateway), and per sandbox a veth pair whose far end is
//! the pod's `eth0`, with an address from [`ipam`] and a default route
//! through the bridge. The same shape CNI's `bridge` + `host-local` plugins
//! give (which this runtime used to run), wired here over rtnetlink.

pub mod ipam;
pub mod netlink;

use std::net::Ipv4Addr;

use anyhow::{Context, Result};

use ipam::{Ipam, Subnet};
use netlink::Netlink;

/// The pod's interface name inside its namespace.
const POD_IF: &str = "eth0";

fn ipam(cfg: &crate::Config) -> Result<Ipam> {
    // host-local's data directory under the network name "skiff", as before.
    Ok(Ipam::new(&cfg.root.join("cni").join("skiff"), Subnet::parse(&cfg.pod_cidr)?))
}

/// The host end of a sandbox's veth: named after the sandbox, so teardown
/// needs no state (interface names are at most 15 bytes).
pub fn host_veth(sandbox_id: &str) -> String {
    format!("veth{}", &sandbox_id[..sandbox_id.len().min(11)])
}

/// Attach the sandbox whose pause process is `pid` to the node network;
/// returns its address.
pub fn attach(cfg: &crate::Config, id: &str, pid: u32) -> Result<Ipv4Addr> {
    let subnet = Subnet::parse(&cfg.pod_cidr)?;
    let ipam = ipam(cfg)?;
    let ip = ipam.allocate(id, POD_IF)?;
    match wire(cfg, subnet, id, pid, ip) {
        Ok(()) => Ok(ip),
        Err(e) => {
            let _ = Netlink::open().and_then(|mut nl| nl.del_link(&host_veth(id)));
            let _ = ipam.release(id);
            Err(e)
        }
    }
}

fn wire(cfg: &crate::Config, subnet: Subnet, id: &str, pid: u32, ip: Ipv4Addr) -> Result<()> {
    let mut nl = Netlink::open().context("opening rtnetlink")?;
    let host = host_veth(id);
    let bridge = bridge_index(&mut nl, &cfg.bridge, subnet, false)?;
    if let Err(e) = nl.add_veth(&host, POD_IF, pid, bridge) {
        // A leftover link of that name, or a bridge that is gone (or was
        // made again, with a new index) since it was last checked: check
        // the bridge afresh, clear the name, and try once more.
        tracing::debug!(%host, "creating the veth: {e}; checking the bridge and retrying");
        let bridge = bridge_index(&mut nl, &cfg.bridge, subnet, true)?;
        nl.del_link(&host).with_context(|| format!("removing a leftover {host}"))?;
        nl.add_veth(&host, POD_IF, pid, bridge).with_context(|| format!("creating veth {host} on {} for the pod (pid {pid})", cfg.bridge))?;
    }
    if let Err(e) = nl.set_hairpin(&host) {
        tracing::warn!(%host, "hairpin mode: {e}");
    }
    in_netns(pid, move || {
        let mut nl = Netlink::open().context("opening rtnetlink in the pod")?;
        let lo = nl.link_index("lo")?.context("no lo in the pod")?;
        nl.set_up(lo).context("lo up")?;
        let eth = nl.link_index(POD_IF)?.context("no eth0 in the pod")?;
        nl.add_address(eth, ip, subnet.prefix).context("eth0 address")?;
        nl.set_up(eth).context("eth0 up")?;
        nl.add_default_route(eth, subnet.gateway()).context("default route")?;
        Ok(())
    })
}

/// The bridges this process has made ready, by name, with their index.
static BRIDGES: std::sync::Mutex<Vec<(String, u32)>> = std::sync::Mutex::new(Vec::new());

/// The bridge's index, made ready the first time (and whenever `recheck`
/// says a pod's veth could not join it): four requests under the RTNL lock
/// that every pod's setup would otherwise repeat.
fn bridge_index(nl: &mut Netlink, name: &str, subnet: Subnet, recheck: bool) -> Result<u32> {
    let mut known = BRIDGES.lock().unwrap_or_else(|e| e.into_inner());
    if !recheck && let Some((_, index)) = known.iter().find(|(n, _)| n == name) {
        return Ok(*index);
    }
    let index = ensure_bridge(nl, name, subnet)?;
    known.retain(|(n, _)| n != name);
    known.push((name.to_string(), index));
    Ok(index)
}

/// The bridge, up, with the gateway address; returns its index. Each step
/// accepts "exists", so this also repairs a bridge that lost its address or
/// went down.
fn ensure_bridge(nl: &mut Netlink, name: &str, subnet: Subnet) -> Result<u32> {
    nl.add_bridge(name).with_context(|| format!("creating bridge {name}"))?;
    let index = nl.link_index(name)?.with_context(|| format!("bridge {name} vanished"))?;
    nl.add_address(index, subnet.gateway(), subnet.prefix).with_context(|| format!("gateway address on {name}"))?;
    nl.set_up(index)?;
    // The bridge routes for its pods (CNI's isGateway did the same).
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|v| v.trim() != "1").unwrap_or(false) {
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
    }
    Ok(index)
}

/// Run `f` on a thread inside the network namespace of process `pid`.
/// A netlink socket opened there stays bound to that namespace; the thread
/// ends with `f`, so no other work ever runs in the wrong namespace.
fn in_netns<T: Send>(pid: u32, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            use std::os::fd::AsRawFd;
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).with_context(|| format!("entering {path}"));
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| anyhow::bail!("pod network setup panicked"))
    })
}

/// Release the sandbox's address and remove its veth (gone already if the
/// pod's namespace is).
pub fn detach(cfg: &crate::Config, id: &str) {
    if let Err(e) = Netlink::open().and_then(|mut nl| nl.del_link(&host_veth(id))) {
        tracing::warn!(sandbox = id, "removing the pod's veth: {e}");
    }
    if let Err(e) = ipam(cfg).and_then(|i| i.release(id)) {
        tracing::warn!(sandbox = id, "releasing the pod's address: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn in_pod(pid: u32, args: &[&str]) -> std::process::Output {
        Command::new("nsenter").args(["-t", &pid.to_string(), "-n", "--"]).args(args).output().unwrap()
    }

    /// Real namespaces, a real bridge and veths: the pod gets its address,
    /// reaches its gateway and a second pod, and teardown removes the veth
    /// and gives the address back.
    #[test]
    fn pods_get_an_address_a_gateway_and_reach_each_other() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tag = format!("{:04x}", rand::random::<u16>());
        let cfg = crate::Config { root: dir.path().to_owned(), bridge: format!("sktest{tag}"), pod_cidr: "10.251.7.0/24".into(), ..Default::default() };
        let mut pods: Vec<std::process::Child> = (0..3).map(|_| Command::new("unshare").args(["-n", "sleep", "60"]).spawn().unwrap()).collect();
        // unshare execs sleep once the namespace exists.
        for p in &pods {
            let own = std::fs::read_link("/proc/self/ns/net").unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::fs::read_link(format!("/proc/{}/ns/net", p.id())).map(|l| l == own).unwrap_or(true) {
                assert!(std::time::Instant::now() < deadline, "unshare -n did not start");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let ids = [format!("a{tag}0000000000000"), format!("b{tag}0000000000000"), format!("c{tag}0000000000000")];
        let result = std::panic::catch_unwind(|| {
            let a = attach(&cfg, &ids[0], pods[0].id()).unwrap();
            let b = attach(&cfg, &ids[1], pods[1].id()).unwrap();
            assert_eq!((a, b), ("10.251.7.2".parse().unwrap(), "10.251.7.3".parse().unwrap()));
            let addr = String::from_utf8(in_pod(pods[0].id(), &["ip", "-4", "-o", "addr", "show", "eth0"]).stdout).unwrap();
            assert!(addr.contains("inet 10.251.7.2/24"), "{addr}");
            let route = String::from_utf8(in_pod(pods[0].id(), &["ip", "-4", "route", "show", "default"]).stdout).unwrap();
            assert!(route.contains("default via 10.251.7.1 dev eth0"), "{route}");
            let lo = String::from_utf8(in_pod(pods[0].id(), &["ip", "-o", "link", "show", "lo"]).stdout).unwrap();
            assert!(lo.contains("UP"), "{lo}");
            for target in ["10.251.7.1", "10.251.7.3"] {
                let ping = in_pod(pods[0].id(), &["busybox", "ping", "-c", "1", "-W", "2", target]);
                assert!(ping.status.success(), "ping {target}: {}", String::from_utf8_lossy(&ping.stdout));
            }
            let hairpin = std::fs::read_to_string(format!("/sys/class/net/{}/brport/hairpin_mode", host_veth(&ids[0]))).unwrap();
            assert_eq!(hairpin.trim(), "1");
            detach(&cfg, &ids[0]);
            assert!(!std::path::Path::new(&format!("/sys/class/net/{}", host_veth(&ids[0]))).exists(), "veth removed");
            assert!(!dir.path().join("cni/skiff/10.251.7.2").exists(), "address released");
            let gone = String::from_utf8(in_pod(pods[0].id(), &["ip", "-o", "link"]).stdout).unwrap();
            assert!(!gone.contains("eth0"), "{gone}");
            detach(&cfg, &ids[1]);
            // The bridge is looked up once and then trusted; if it goes away,
            // the next pod's veth cannot join it, and the bridge is made again.
            Netlink::open().and_then(|mut nl| nl.del_link(&cfg.bridge)).unwrap();
            let c = attach(&cfg, &ids[2], pods[2].id()).unwrap();
            let ping = in_pod(pods[2].id(), &["busybox", "ping", "-c", "1", "-W", "2", "10.251.7.1"]);
            assert!(ping.status.success(), "ping the remade bridge from {c}: {}", String::from_utf8_lossy(&ping.stdout));
            detach(&cfg, &ids[2]);
        });
        for p in &mut pods {
            let _ = p.kill();
            let _ = p.wait();
        }
        let _ = Netlink::open().and_then(|mut nl| nl.del_link(&cfg.bridge));
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
}
