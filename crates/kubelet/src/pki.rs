//! The kubelet's serving certificate.
//!
//! Upstream's kubelet, when no `--tls-cert-file` is given, generates a
//! self-signed certificate for its hostname and node addresses and keeps it
//! as `<cert-dir>/kubelet.crt` and `kubelet.key` (`cert-dir` defaults to
//! `<root-dir>/pki`). It is made once and reused afterwards, so clients that
//! pinned it keep working across restarts; it is regenerated only when a
//! file is missing or unreadable. The API server does not verify it unless
//! told to (`--kubelet-certificate-authority`), as upstream.

use anyhow::{Context, Result};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// A certificate chain and its key, ready for rustls.
pub struct Serving {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Where the certificate was read from (or written to).
    pub cert_path: PathBuf,
}

/// Read a PEM certificate chain and key.
pub fn load(cert: &Path, key: &Path) -> Result<Serving> {
    let chain = rustls_pemfile::certs(&mut &std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?[..]).collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key = rustls_pemfile::private_key(&mut &std::fs::read(key).with_context(|| format!("reading {}", key.display()))?[..])?.with_context(|| format!("{} holds no private key", key.display()))?;
    Ok(Serving { chain, key, cert_path: cert.to_path_buf() })
}

/// `<dir>/kubelet.crt` and `kubelet.key`, generated for `host` and `ips`
/// unless both are already there and readable.
pub fn self_signed(dir: &Path, host: &str, ips: &[&str]) -> Result<Serving> {
    let (crt, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if let Ok(s) = load(&crt, &key) {
        return Ok(s);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut sans = vec![host.to_string()];
    sans.extend(ips.iter().map(|i| i.to_string()).filter(|i| *i != host));
    let mut params = CertificateParams::new(sans)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    // Upstream names it `<host>@<unix time>`.
    params.distinguished_name.push(DnType::CommonName, format!("{host}@{now}"));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let pair = KeyPair::generate()?;
    let cert = params.self_signed(&pair)?;
    write_private(&key, &pair.serialize_pem())?;
    std::fs::write(&crt, cert.pem())?;
    tracing::info!(path = %crt.display(), "generated the kubelet's self-signed serving certificate");
    load(&crt, &key)
}

fn write_private(path: &Path, data: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path)?;
    f.write_all(data.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::self_signed(dir.path(), "node-a", &["10.0.0.7"]).unwrap();
        let b = super::self_signed(dir.path(), "node-a", &["10.0.0.7"]).unwrap();
        assert_eq!(a.chain, b.chain);
        let name = crate::subject::subject(&a.chain[0]).unwrap();
        assert!(name.common_name.starts_with("node-a@"), "{name:?}");
        std::fs::remove_file(dir.path().join("kubelet.key")).unwrap();
        let c = super::self_signed(dir.path(), "node-a", &["10.0.0.7"]).unwrap();
        assert_ne!(a.chain, c.chain);
    }
}
