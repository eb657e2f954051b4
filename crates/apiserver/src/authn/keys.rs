//! The service-account signing key pair in the data directory's pki
//! (`sa.key`, PKCS#8 PEM; `sa.pub`, SubjectPublicKeyInfo PEM), the files
//! upstream's kubeadm keeps under the same names.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;

use super::jwt::Signer;

pub const KEY_FILE: &str = "sa.key";
pub const PUB_FILE: &str = "sa.pub";

pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out + &format!("-----END {label}-----\n")
}

/// Make `pki/sa.key` and `pki/sa.pub` unless the key exists.
pub fn ensure(pki: &Path) -> Result<()> {
    if pki.join(KEY_FILE).exists() {
        return Ok(());
    }
    let der = Signer::generate_pkcs8();
    let signer = Signer::from_pkcs8(&der).map_err(anyhow::Error::msg)?;
    write(pki, &pem("PRIVATE KEY", &der), &pem("PUBLIC KEY", &signer.verifier.spki_der()))?;
    tracing::info!("generated the service-account signing key");
    Ok(())
}

/// Replace the key pair (a cluster member adopting the cluster's key).
pub fn write(pki: &Path, key_pem: &str, pub_pem: &str) -> Result<()> {
    crate::certs::write_private(&pki.join(KEY_FILE), key_pem)?;
    fs::write(pki.join(PUB_FILE), pub_pem)?;
    Ok(())
}

/// The signer from `pki/sa.key`.
pub fn load(pki: &Path) -> Result<Signer> {
    let text = fs::read_to_string(pki.join(KEY_FILE)).context("reading sa.key")?;
    let key = rustls_pemfile::private_key(&mut text.as_bytes())?.context("sa.key holds no private key")?;
    let rustls::pki_types::PrivateKeyDer::Pkcs8(der) = key else { anyhow::bail!("sa.key: expected a PKCS#8 P-256 key") };
    Signer::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| anyhow::anyhow!("sa.key: {e}"))
}
