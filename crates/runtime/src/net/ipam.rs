//! Pod addresses from the node's podCIDR, one file per address.
//!
//! The layout is the one CNI's `host-local` plugin keeps (`<dir>/<ip>`
//! holding the sandbox id and interface name, `<dir>/last_reserved_ip.0`),
//! which is what this runtime used before it wired pods itself: addresses
//! held by pods started then stay reserved. Creating the file with O_EXCL is
//! the reservation, so a crash never leaves one address with two owners;
//! the scan starts after the last reserved address so a released address is
//! not handed out again at once (stale ARP entries, connections in flight).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// An IPv4 subnet such as `10.244.0.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet> {
        let (ip, prefix) = s.split_once('/').with_context(|| format!("pod CIDR {s:?}: want a.b.c.d/n"))?;
        let ip: Ipv4Addr = ip.parse().with_context(|| format!("pod CIDR {s:?}"))?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 30).with_context(|| format!("pod CIDR {s:?}: prefix must be 0..=30"))?;
        Ok(Subnet { network: Ipv4Addr::from(u32::from(ip) & Self::mask(prefix)), prefix })
    }

    fn mask(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0)
    }

    /// The bridge's address: the first host address (as CNI's bridge does).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Addresses pods may get: after the gateway, before the broadcast address.
    fn pod_range(&self) -> (u32, u32) {
        let first = u32::from(self.network) + 2;
        let broadcast = u32::from(self.network) | !Self::mask(self.prefix);
        (first, broadcast - 1)
    }
}

pub struct Ipam {
    dir: PathBuf,
    subnet: Subnet,
}

const LAST: &str = "last_reserved_ip.0";

impl Ipam {
    pub fn new(dir: &Path, subnet: Subnet) -> Ipam {
        Ipam { dir: dir.to_owned(), subnet }
    }

    /// The address reserved for `id`, reserving one if it has none.
    pub fn allocate(&self, id: &str, ifname: &str) -> Result<Ipv4Addr> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        if let Some(ip) = self.held_by(id)?.into_iter().next() {
            return Ok(ip);
        }
        let (first, last) = self.subnet.pod_range();
        let after = std::fs::read_to_string(self.dir.join(LAST)).ok().and_then(|s| s.trim().parse::<Ipv4Addr>().ok()).map(u32::from).filter(|ip| (first..=last).contains(ip));
        let start = after.map(|ip| if ip >= last { first } else { ip + 1 }).unwrap_or(first);
        let size = last - first + 1;
        for i in 0..size {
            let ip = Ipv4Addr::from(first + (start - first + i) % size);
            let path = self.dir.join(ip.to_string());
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(format!("{id}\n{ifname}").as_bytes())?;
                    std::fs::write(self.dir.join(LAST), ip.to_string())?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("reserving {}", path.display())),
            }
        }
        bail!("no free address left in {}/{}", self.subnet.network, self.subnet.prefix)
    }

    /// Give back every address `id` holds.
    pub fn release(&self, id: &str) -> Result<()> {
        for ip in self.held_by(id)? {
            match std::fs::remove_file(self.dir.join(ip.to_string())) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    fn held_by(&self, id: &str) -> Result<Vec<Ipv4Addr>> {
        let mut out = vec![];
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for e in entries.flatten() {
            let Some(ip) = e.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else { continue };
            let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
            if owner.lines().next().map(str::trim) == Some(id) {
                out.push(ip);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_give_the_gateway_and_pod_range() {
        let s = Subnet::parse("10.244.1.7/24").unwrap();
        assert_eq!(s.network, Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(s.pod_range(), (u32::from(Ipv4Addr::new(10, 244, 1, 2)), u32::from(Ipv4Addr::new(10, 244, 1, 254))));
        assert!(Subnet::parse("10.0.0.0").is_err());
        assert!(Subnet::parse("10.0.0.0/31").is_err());
        assert!(Subnet::parse("x/24").is_err());
    }

    #[test]
    fn addresses_are_unique_reused_per_sandbox_and_not_handed_out_again_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), Subnet::parse("10.9.0.0/29").unwrap()); // pods: .2 ..= .6
        let a = ipam.allocate("a", "eth0").unwrap();
        let b = ipam.allocate("b", "eth0").unwrap();
        assert_eq!((a, b), (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3)));
        assert_eq!(ipam.allocate("a", "eth0").unwrap(), a, "the same sandbox keeps its address");
        assert_eq!(std::fs::read_to_string(dir.path().join("10.9.0.2")).unwrap(), "a\neth0");
        ipam.release("a").unwrap();
        // The next reservation goes on after the last one, not back to .2.
        assert_eq!(ipam.allocate("c", "eth0").unwrap(), Ipv4Addr::new(10, 9, 0, 4));
        for id in ["d", "e"] {
            ipam.allocate(id, "eth0").unwrap();
        }
        // .6 was the last: the scan wraps around to the released .2.
        assert_eq!(ipam.allocate("f", "eth0").unwrap(), Ipv4Addr::new(10, 9, 0, 2));
        let err = ipam.allocate("g", "eth0").unwrap_err().to_string();
        assert!(err.contains("no free address left in 10.9.0.0/29"), "{err}");
        // A fresh allocator over the same directory (an agent restart) sees the reservations.
        let again = Ipam::new(dir.path(), Subnet::parse("10.9.0.0/29").unwrap());
        assert_eq!(again.allocate("b", "eth0").unwrap(), b);
        again.release("b").unwrap();
        assert_eq!(again.allocate("h", "eth0").unwrap(), b);
    }
}
