//! How the API server reaches kubelets (pods/log, exec, attach,
//! portforward): TLS, presenting its own client certificate issued by the
//! cluster CA (upstream's `--kubelet-client-certificate`), which kubelets
//! require.
//!
//! Like upstream, the kubelet's serving certificate is not verified unless
//! `--kubelet-certificate-authority` is given: by default kubelets serve a
//! self-signed certificate no one else could know in advance.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A TLS connection to a kubelet.
pub type KubeletStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Opens TLS connections to kubelets.
#[derive(Clone)]
pub struct KubeletClient {
    tls: tokio_rustls::TlsConnector,
}

impl Default for KubeletClient {
    /// No client certificate (kubelets will answer 401) and no verification.
    fn default() -> Self {
        Self::new(None, None).expect("a TLS configuration without certificates is always valid")
    }
}

impl KubeletClient {
    /// `cert`: the client certificate and key (PEM); `ca_pem`: the CA that
    /// must have issued kubelets' serving certificates (None: not verified).
    pub fn new(cert: Option<(&str, &str)>, ca_pem: Option<&[u8]>) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let builder = match ca_pem {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile::certs(&mut &pem[..]) {
                    roots.add(c?)?;
                }
                anyhow::ensure!(!roots.is_empty(), "--kubelet-certificate-authority holds no certificate");
                builder.with_root_certificates(roots)
            }
            None => builder.dangerous().with_custom_certificate_verifier(Arc::new(Unverified(provider.signature_verification_algorithms))),
        };
        let mut cfg = match cert {
            Some((cert, key)) => {
                let chain = rustls_pemfile::certs(&mut cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
                let key = rustls_pemfile::private_key(&mut key.as_bytes())?.context("no private key for the kubelet client certificate")?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)) })
    }

    /// Connect to the kubelet at `addr` (`host:port`, IPv6 hosts in brackets).
    pub async fn connect(&self, addr: &str) -> std::io::Result<KubeletStream> {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']);
        let name = ServerName::try_from(host.to_string()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        self.tls.connect(name, tcp).await
    }
}

/// Accepts any kubelet serving certificate, but still checks that the
/// kubelet holds its key (the handshake signature).
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }
    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::KubeletClient;
    use rcgen::{CertificateParams, KeyPair};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection TLS server on loopback with a self-signed certificate for 127.0.0.1.
    async fn server() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap())
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let _ = s.write_all(b"hi").await;
                    let _ = s.shutdown().await;
                }
            }
        });
        (addr, cert.pem())
    }

    #[tokio::test]
    async fn verifies_kubelets_only_when_given_their_ca() {
        let (addr, pem) = server().await;
        let mut buf = String::new();
        KubeletClient::default().connect(&addr).await.unwrap().read_to_string(&mut buf).await.unwrap();
        assert_eq!(buf, "hi");
        let trusted = KubeletClient::new(None, Some(pem.as_bytes())).unwrap();
        buf.clear();
        trusted.connect(&addr).await.unwrap().read_to_string(&mut buf).await.unwrap();
        assert_eq!(buf, "hi");
        let other = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&KeyPair::generate().unwrap()).unwrap().pem();
        let strict = KubeletClient::new(None, Some(other.as_bytes())).unwrap();
        let Err(err) = strict.connect(&addr).await else { panic!("a kubelet certificate from another CA must be refused") };
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}
