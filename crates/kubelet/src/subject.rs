//! The subject of an X.509 certificate: the user name (CN) and groups (O)
//! that upstream's x509 authenticator takes from a client certificate.
//!
//! Why a small DER walker: the certificate has already been verified by
//! rustls-webpki when this runs, and only two attribute types of one field
//! are needed, which does not justify a general ASN.1 dependency.

use rustls::pki_types::CertificateDer;

/// A certificate's identity, as upstream's `x509.CommonNameUserConversion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub common_name: String,
    pub organizations: Vec<String>,
}

/// One DER TLV: (tag, contents, what follows). Long-form lengths up to 4 bytes.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n].iter().fold(0usize, |acc, x| acc << 8 | *x as usize);
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

/// The subject of `cert`, or None if it is not a well-formed certificate.
pub fn subject(cert: &CertificateDer<'_>) -> Option<Name> {
    let (SEQUENCE, cert, _) = tlv(cert)? else { return None };
    let (SEQUENCE, mut tbs, _) = tlv(cert)? else { return None };
    // [0] EXPLICIT version, if present.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity: skip four fields.
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let (SEQUENCE, mut rdns, _) = tlv(tbs)? else { return None };
    let mut name = Name { common_name: String::new(), organizations: vec![] };
    while !rdns.is_empty() {
        let (SET, mut set, rest) = tlv(rdns)? else { return None };
        rdns = rest;
        while !set.is_empty() {
            let (SEQUENCE, atv, rest) = tlv(set)? else { return None };
            set = rest;
            let (0x06, oid, value) = tlv(atv)? else { return None };
            // UTF8String, PrintableString, IA5String, TeletexString: all read as UTF-8.
            let (_, value, _) = tlv(value)?;
            let value = String::from_utf8_lossy(value).to_string();
            match oid {
                OID_CN => name.common_name = value,
                OID_O => name.organizations.push(value),
                _ => {}
            }
        }
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair};

    #[test]
    fn reads_common_name_and_organizations() {
        let mut p = CertificateParams::new(vec!["x".to_string()]).unwrap();
        p.distinguished_name.push(DnType::OrganizationName, "system:masters");
        p.distinguished_name.push(DnType::CommonName, "kube-apiserver-kubelet-client");
        p.distinguished_name.push(DnType::CountryName, "NL");
        let cert = p.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let name = super::subject(cert.der()).unwrap();
        assert_eq!(name.common_name, "kube-apiserver-kubelet-client");
        assert_eq!(name.organizations, vec!["system:masters"]);
    }

    #[test]
    fn long_names_use_long_form_lengths() {
        let mut p = CertificateParams::new(vec![]).unwrap();
        let cn = "n".repeat(300);
        p.distinguished_name.push(DnType::CommonName, cn.clone());
        let cert = p.self_signed(&KeyPair::generate().unwrap()).unwrap();
        assert_eq!(super::subject(cert.der()).unwrap().common_name, cn);
        assert!(super::subject(&rustls::pki_types::CertificateDer::from(vec![0x30, 0x82, 0xff])).is_none());
    }
}
