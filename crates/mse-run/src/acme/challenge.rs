//! The challenge responder's half: the TLS-ALPN-01 certificate the CA must
//! be shown, and the table through which the node's TLS server presents it
//! while an authorization is pending.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::pki_types::PrivateKeyDer;
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use super::AcmeError;

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The challenge certificates being offered, by domain: what the node's TLS
/// server presents to `acme-tls/1` clients.
#[derive(Debug, Default)]
pub struct Challenges {
    by_domain: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// The challenge certificate for `domain`, if one is being offered.
    pub fn get(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.by_domain
            .read()
            .ok()?
            .get(&domain.to_ascii_lowercase())
            .cloned()
    }

    pub(super) fn set(&self, domain: &str, key: Arc<CertifiedKey>) {
        if let Ok(mut map) = self.by_domain.write() {
            map.insert(domain.to_ascii_lowercase(), key);
        }
    }

    pub(super) fn clear(&self, domain: &str) {
        if let Ok(mut map) = self.by_domain.write() {
            map.remove(&domain.to_ascii_lowercase());
        }
    }
}

/// The TLS-ALPN-01 certificate for `domain` and a key authorization
/// (RFC 8737 §3): self-signed, its only name `domain`, with the critical
/// `acmeIdentifier` extension holding SHA-256 of the key authorization.
pub fn challenge_certificate(
    domain: &str,
    key_authorization: &str,
) -> Result<CertifiedKey, AcmeError> {
    let local = |e: &dyn std::fmt::Display| {
        AcmeError::Local(format!("cannot make the challenge certificate: {e}"))
    };
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| local(&e))?;
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| local(&e))?;
    let digest = Sha256::digest(key_authorization.as_bytes());
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&digest)];
    let cert = params.self_signed(&key).map_err(|e| local(&e))?;
    // Not through `certified_key`: its check that the key fits parses the
    // certificate, and refuses the critical extension it does not know.
    let signing = mse_attest::tls::provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .map_err(|e| local(&e))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_certificate_carries_the_critical_acme_identifier() {
        let certified = challenge_certificate("app.example.test", "tok.thumb").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&certified.cert[0]).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // An OCTET STRING of the SHA-256 of the key authorization.
        let mut expected = vec![0x04, 0x20];
        expected.extend_from_slice(&Sha256::digest(b"tok.thumb"));
        assert_eq!(ext.value, &expected[..]);
        let names: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["DNSName(app.example.test)"]);
    }
}
