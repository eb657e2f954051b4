//! The cluster CA, the API server's serving certificate, its client
//! certificate for kubelets, the admin credential and the admin kubeconfig,
//! all kept in the data directory.
//!
//! The CA and the admin token are made once; the serving and kubelet-client
//! certificates are re-issued by the CA at every start, so a new listen
//! address just works.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};

pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// Bearer token of the cluster admin.
    pub admin_token: String,
    /// The API server's client certificate for kubelets (upstream's
    /// `apiserver-kubelet-client.crt`), and its key.
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

/// The identity kubelets see in the API server's client certificate (upstream's kubeadm names).
pub const KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";
pub const KUBELET_CLIENT_ORG: &str = "system:masters";

fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "skiff-ca");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(p)
}

pub(crate) fn write_private(path: &Path, data: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::io::Write;
    let mut f = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path)?;
    f.write_all(data.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Create the CA and the admin token under `dir/pki` unless they exist.
fn ensure_ca(dir: &Path) -> Result<PathBuf> {
    let pki = dir.join("pki");
    fs::create_dir_all(&pki)?;
    let (ca_crt, ca_key, token_path) = (pki.join("ca.crt"), pki.join("ca.key"), pki.join("admin.token"));
    if !ca_crt.exists() || !ca_key.exists() {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key, &key.serialize_pem())?;
        fs::write(&ca_crt, cert.pem())?;
        tracing::info!(path = %ca_crt.display(), "generated cluster CA");
    }
    if !token_path.exists() {
        let token: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        write_private(&token_path, &token)?;
    }
    crate::authn::keys::ensure(&pki)?;
    Ok(pki)
}

/// Load or create the PKI under `dir/pki`.
pub fn ensure(dir: &Path, listen: SocketAddr) -> Result<Pki> {
    let pki = ensure_ca(dir)?;
    let (ca_crt, ca_key, token_path) = (pki.join("ca.crt"), pki.join("ca.key"), pki.join("admin.token"));
    let ca_pem = fs::read_to_string(&ca_crt)?;
    let ca_key = KeyPair::from_pem(&fs::read_to_string(&ca_key)?).context("reading the CA key")?;
    let issuer = Issuer::new(ca_params()?, ca_key);

    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string(), "kubernetes".into(), "kubernetes.default".into(), "kubernetes.default.svc".into()];
    let ip = listen.ip().to_string();
    if !listen.ip().is_unspecified() && !sans.contains(&ip) {
        sans.push(ip);
    }
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, KUBELET_CLIENT_CN);
    params.distinguished_name.push(DnType::OrganizationName, KUBELET_CLIENT_ORG);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client = params.signed_by(&client_key, &issuer)?;
    // Kept on disk as upstream does, for an operator (or a test) to talk to kubelets as the API server.
    fs::write(pki.join("apiserver-kubelet-client.crt"), client.pem())?;
    write_private(&pki.join("apiserver-kubelet-client.key"), &client_key.serialize_pem())?;
    Ok(Pki {
        ca_pem,
        server_cert_pem: cert.pem(),
        server_key_pem: key.serialize_pem(),
        admin_token: fs::read_to_string(&token_path)?.trim().to_string(),
        kubelet_client_cert_pem: client.pem(),
        kubelet_client_key_pem: client_key.serialize_pem(),
    })
}

/// The key that holds the cluster's CA and admin token in the store.
/// Outside `/registry/`, so no API request can read it.
pub const SHARED_PKI_KEY: &str = "/skiff/pki";

#[derive(serde::Serialize, serde::Deserialize, PartialEq)]
struct SharedPki {
    #[serde(rename = "caCrt")]
    ca_crt: String,
    #[serde(rename = "caKey")]
    ca_key: String,
    #[serde(rename = "adminToken")]
    admin_token: String,
    /// The service-account signing key pair: a token issued by one member
    /// must verify on all. Empty in what older versions stored.
    #[serde(rename = "saKey", default)]
    sa_key: String,
    #[serde(rename = "saPub", default)]
    sa_pub: String,
}

/// Make every API server on one store use the same CA, admin token and
/// service-account signing key.
///
/// Why: members of a `skiff server` cluster (or API servers sharing an
/// external etcd) each start with their own data directory, yet a client
/// must be able to talk to any of them with one kubeconfig. The first member
/// to get here publishes its CA (generated on first start) with a
/// create-only txn; every other member adopts what is stored, overwriting
/// its local files, before it issues its serving certificate. Like k3s'
/// bootstrap data, the CA key then lives in the store: protect the store's
/// data directory and peer network accordingly.
pub async fn share_through_store(kv: &dyn crate::kv::Kv, dir: &Path) -> Result<()> {
    use etcdpb::{compare, request_op, response_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
    let pki = ensure_ca(dir)?;
    let local = SharedPki {
        ca_crt: fs::read_to_string(pki.join("ca.crt"))?,
        ca_key: fs::read_to_string(pki.join("ca.key"))?,
        admin_token: fs::read_to_string(pki.join("admin.token"))?.trim().to_string(),
        sa_key: fs::read_to_string(pki.join(crate::authn::keys::KEY_FILE))?,
        sa_pub: fs::read_to_string(pki.join(crate::authn::keys::PUB_FILE))?,
    };
    let key = bytes::Bytes::from_static(SHARED_PKI_KEY.as_bytes());
    let txn = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Create as i32,
            key: key.clone(),
            target_union: Some(compare::TargetUnion::CreateRevision(0)),
            range_end: bytes::Bytes::new(),
        }],
        success: vec![RequestOp { request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.clone(),
            value: serde_json::to_vec(&local)?.into(),
            ..Default::default()
        })) }],
        failure: vec![RequestOp { request: Some(request_op::Request::RequestRange(RangeRequest { key, ..Default::default() })) }],
    };
    let resp = crate::kv::Kv::txn(kv, txn).await.map_err(|e| anyhow::anyhow!("sharing the cluster CA: {e}"))?;
    if resp.succeeded {
        tracing::info!("published this member's CA and admin token for the cluster");
        return Ok(());
    }
    let stored = resp.responses.into_iter().find_map(|r| match r.response {
        Some(response_op::Response::ResponseRange(r)) => r.kvs.into_iter().next(),
        _ => None,
    });
    let stored: SharedPki = match stored {
        Some(kv) => serde_json::from_slice(&kv.value).context("reading the cluster CA from the store")?,
        None => anyhow::bail!("the cluster CA disappeared from the store while reading it"),
    };
    if stored != local {
        tracing::info!("adopting the cluster's CA and admin token from the store");
        write_private(&pki.join("ca.key"), &stored.ca_key)?;
        fs::write(pki.join("ca.crt"), &stored.ca_crt)?;
        write_private(&pki.join("admin.token"), &stored.admin_token)?;
        if !stored.sa_key.is_empty() {
            crate::authn::keys::write(&pki, &stored.sa_key, &stored.sa_pub)?;
        }
    }
    Ok(())
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Write `dir/kubeconfig.yaml` for the cluster admin and return its path.
pub fn write_kubeconfig(dir: &Path, pki: &Pki, listen: SocketAddr) -> Result<PathBuf> {
    let host = if listen.ip().is_unspecified() { "127.0.0.1".to_string() } else { listen.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let cfg = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: https://{host}:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: skiff-admin\n  user:\n    token: {token}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: skiff-admin\n    namespace: default\ncurrent-context: skiff\n",
        port = listen.port(),
        ca = base64(pki.ca_pem.as_bytes()),
        token = pki.admin_token,
    );
    let path = dir.join("kubeconfig.yaml");
    write_private(&path, &cfg)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
