//! Who may use the kubelet's API (upstream's `--anonymous-auth=false` with
//! x509 client-certificate authentication).
//!
//! Authentication, in upstream's order:
//! 1. a client certificate that chains to the client CA. That CA is
//!    `--client-ca-file` if given, else the `certificate-authority-data` of
//!    the kubelet's kubeconfig — the cluster CA, which issues the API
//!    server's `apiserver-kubelet-client` certificate. Reusing it means a
//!    node needs nothing beyond the kubeconfig it already has; kubeadm
//!    configures upstream's kubelet the same way.
//! 2. a bearer token. Upstream sends it to the API server in a TokenReview;
//!    Skiff's API server has no TokenReview, so the only token the kubelet
//!    can check is the one it holds itself (from its kubeconfig, which is
//!    the cluster admin's). Its holder is the admin.
//!
//! The TLS handshake *requests* a certificate but accepts any (upstream's
//! `tls.RequestClientCert`): a certificate from another CA, or none, then
//! gets an HTTP 401 `Unauthorized` like upstream, not a failed handshake.
//! Proof of the key is still checked in the handshake.

use crate::subject::Name;
use anyhow::Result;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;

/// The user the API server authenticates as (upstream's `apiserver-kubelet-client.crt`).
pub const APISERVER_USER: &str = "kube-apiserver-kubelet-client";
/// The group whose members may do anything.
pub const MASTERS: &str = "system:masters";

/// Checks credentials against the client CA and the kubelet's own token.
pub struct Authenticator {
    ca: Option<Arc<dyn ClientCertVerifier>>,
    token: Option<String>,
}

impl Authenticator {
    /// `ca_pem`: PEM certificates of the client CA; `token`: the one bearer token accepted.
    pub fn new(ca_pem: Option<&[u8]>, token: Option<String>) -> Result<Self> {
        let ca = match ca_pem {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile::certs(&mut &pem[..]) {
                    roots.add(c?)?;
                }
                anyhow::ensure!(!roots.is_empty(), "the client CA holds no certificate");
                Some(rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?)
            }
            None => None,
        };
        Ok(Self { ca, token: token.filter(|t| !t.is_empty()) })
    }

    /// The identity a connection's client certificate proves, if it chains to the client CA.
    pub fn from_certs(&self, certs: Option<&[CertificateDer<'static>]>) -> Option<Name> {
        let (end, intermediates) = certs?.split_first()?;
        let verifier = self.ca.as_ref()?;
        if let Err(e) = verifier.verify_client_cert(end, intermediates, UnixTime::now()) {
            tracing::debug!("kubelet API: client certificate refused: {e}");
            return None;
        }
        crate::subject::subject(end)
    }

    /// Who sent a request: the connection's certificate, else a bearer token.
    pub fn authenticate(&self, conn: Option<&Name>, headers: &hyper::HeaderMap) -> Option<Name> {
        if let Some(n) = conn {
            return Some(n.clone());
        }
        let given = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?.trim();
        let mine = self.token.as_deref()?;
        constant_time_eq(given.as_bytes(), mine.as_bytes()).then(|| Name { common_name: "skiff-admin".into(), organizations: vec![MASTERS.into()] })
    }

    /// A TLS configuration that serves `chain` and requests (not requires) a client certificate.
    pub fn server_config(&self, serving: crate::pki::Serving) -> Result<Arc<rustls::ServerConfig>> {
        let verifier = Arc::new(RequestClientCert { algs: provider().signature_verification_algorithms, hints: self.ca.as_ref().map(|v| v.root_hint_subjects().to_vec()).unwrap_or_default() });
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?.with_client_cert_verifier(verifier).with_single_cert(serving.chain, serving.key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Authorization. Upstream asks the API server (SubjectAccessReview) whether
/// the user may `<verb> nodes/<subresource>`; Skiff enforces no RBAC, so
/// only the identities upstream's defaults let in are allowed: the API
/// server's kubelet client and members of `system:masters` (the admin).
/// Anyone else with a valid certificate gets 403.
pub fn authorize(user: &Name) -> bool {
    user.common_name == APISERVER_USER || user.organizations.iter().any(|o| o == MASTERS)
}

/// Upstream's 403 text: `Forbidden (user=…, verb=…, resource=nodes, subresource=…)`.
pub fn forbidden_message(user: &Name, method: &hyper::Method, path: &str) -> String {
    let verb = match *method {
        hyper::Method::POST => "create",
        hyper::Method::PUT => "update",
        hyper::Method::PATCH => "patch",
        hyper::Method::DELETE => "delete",
        _ => "get",
    };
    let sub = match path.trim_start_matches('/').split('/').next().unwrap_or("") {
        "metrics" => "metrics",
        "stats" => "stats",
        "logs" => "log",
        "spec" => "spec",
        _ => "proxy",
    };
    format!("Forbidden (user={}, verb={verb}, resource=nodes, subresource={sub})", user.common_name)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Asks for a client certificate and accepts any, checking only that the
/// client holds its key; [`Authenticator::from_certs`] decides what it proves.
#[derive(Debug)]
struct RequestClientCert {
    algs: WebPkiSupportedAlgorithms,
    hints: Vec<DistinguishedName>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

    fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        (pem, Issuer::new(p, key))
    }

    fn client(issuer: &Issuer<'_, KeyPair>, cn: &str, org: Option<&str>) -> Vec<CertificateDer<'static>> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = org {
            p.distinguished_name.push(DnType::OrganizationName, o);
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        vec![p.signed_by(&KeyPair::generate().unwrap(), issuer).unwrap().der().clone()]
    }

    #[test]
    fn certificates_count_only_from_the_client_ca() {
        let (pem, cluster) = ca("cluster");
        let (_, other) = ca("other");
        let auth = Authenticator::new(Some(pem.as_bytes()), None).unwrap();
        let me = auth.from_certs(Some(&client(&cluster, APISERVER_USER, Some(MASTERS)))).unwrap();
        assert_eq!(me.common_name, APISERVER_USER);
        assert!(authorize(&me));
        assert!(auth.from_certs(Some(&client(&other, APISERVER_USER, Some(MASTERS)))).is_none());
        assert!(auth.from_certs(None).is_none());
        let nobody = auth.from_certs(Some(&client(&cluster, "jane", Some("devs")))).unwrap();
        assert!(!authorize(&nobody));
        assert_eq!(forbidden_message(&nobody, &hyper::Method::POST, "/exec/ns/p/c"), "Forbidden (user=jane, verb=create, resource=nodes, subresource=proxy)");
        assert_eq!(forbidden_message(&nobody, &hyper::Method::GET, "/metrics"), "Forbidden (user=jane, verb=get, resource=nodes, subresource=metrics)");
    }

    #[test]
    fn only_the_kubelets_own_token_is_accepted() {
        let auth = Authenticator::new(None, Some("s3cret".into())).unwrap();
        let mut h = hyper::HeaderMap::new();
        assert!(auth.authenticate(None, &h).is_none());
        h.insert("authorization", "Bearer wrong".parse().unwrap());
        assert!(auth.authenticate(None, &h).is_none());
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(authorize(&auth.authenticate(None, &h).unwrap()));
        // No token configured: no token is accepted, not even an empty one.
        let none = Authenticator::new(None, Some(String::new())).unwrap();
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert!(none.authenticate(None, &h).is_none());
    }
}
