//! etcd-style URL flags (`http://host:port,http://host2:port`).

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;

/// Parse a comma-separated list of `http://host:port` URLs into socket addresses.
pub fn listen_addrs(flag: &str, urls: &str) -> Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => bail!("{flag}: {url}: TLS is not supported yet; use http://"),
            Some((scheme, _)) => bail!("{flag}: {url}: unsupported scheme {scheme:?}; use http://"),
            None => bail!("{flag}: {url}: expected a URL such as http://127.0.0.1:2379"),
        };
        let hostport = rest.trim_end_matches('/');
        let hostport = if let Some(port) = hostport.strip_prefix("localhost:") { format!("127.0.0.1:{port}") } else { hostport.to_string() };
        let addr: SocketAddr = hostport.parse().with_context(|| format!("{flag}: {url}: expected http://IP:PORT"))?;
        out.push(addr);
    }
    if out.is_empty() {
        bail!("{flag}: no URL given");
    }
    Ok(out)
}

pub fn list(urls: &str) -> Vec<String> {
    urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_style_urls() {
        let a = listen_addrs("--x", "http://localhost:2379,http://127.0.0.2:22").unwrap();
        assert_eq!(a, vec!["127.0.0.1:2379".parse().unwrap(), "127.0.0.2:22".parse().unwrap()]);
        assert!(listen_addrs("--x", "https://1.2.3.4:1").unwrap_err().to_string().contains("TLS"));
        assert!(listen_addrs("--x", "127.0.0.1:1").is_err());
        assert!(listen_addrs("--x", "http://nohost").is_err());
    }
}
