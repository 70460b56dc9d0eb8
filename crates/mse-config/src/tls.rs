//! The owner's certificate and private key from `[ssl]`: what they say and
//! whether they belong together. Key material never appears in messages.

use chrono::{DateTime, Utc};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What the validator needs to know about the leaf certificate.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// DNS names in the Subject Alternative Name extension.
    pub dns_names: Vec<String>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity: the latest the app may run with this certificate.
    pub not_after: DateTime<Utc>,
    /// Number of certificates in the file (leaf first).
    pub chain_len: usize,
    public_key: PublicKey,
}

/// Public keys the validator can compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    P256(p256::PublicKey),
    P384(p384::PublicKey),
    Rsa(rsa::RsaPublicKey),
    Ed25519([u8; 32]),
}

/// Parses a PEM file holding the full chain, leaf first.
pub fn parse_chain(pem: &[u8]) -> Result<Leaf, String> {
    let mut leaf_der = None;
    let mut count = 0;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| format!("is not a valid PEM file ({e})"))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        count += 1;
        if leaf_der.is_none() {
            leaf_der = Some(block.contents);
        }
    }
    let Some(der) = leaf_der else {
        return Err("holds no `BEGIN CERTIFICATE` block".into());
    };
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| format!("holds a certificate that cannot be parsed ({e})"))?;
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("has an unreadable Subject Alternative Name ({e})")),
    };
    let to_utc = |t: x509_parser::time::ASN1Time| {
        DateTime::<Utc>::from_timestamp(t.timestamp(), 0)
            .ok_or_else(|| "has a validity date out of range".to_string())
    };
    let public_key =
        public_key_from_spki(cert.tbs_certificate.subject_pki.raw).ok_or_else(|| {
            "has a public key of an unsupported type (use RSA, ECDSA P-256/P-384 or Ed25519)"
                .to_string()
        })?;
    Ok(Leaf {
        dns_names,
        not_before: to_utc(cert.validity().not_before)?,
        not_after: to_utc(cert.validity().not_after)?,
        chain_len: count,
        public_key,
    })
}

fn public_key_from_spki(spki_der: &[u8]) -> Option<PublicKey> {
    use p256::pkcs8::DecodePublicKey;
    if let Ok(key) = p256::PublicKey::from_public_key_der(spki_der) {
        return Some(PublicKey::P256(key));
    }
    if let Ok(key) = p384::PublicKey::from_public_key_der(spki_der) {
        return Some(PublicKey::P384(key));
    }
    if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(spki_der) {
        return Some(PublicKey::Rsa(key));
    }
    if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_der(spki_der) {
        return Some(PublicKey::Ed25519(key.to_bytes()));
    }
    None
}

/// A parsed private key, kept only long enough to derive its public half.
pub struct PrivateKey {
    public_key: PublicKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// Parses a PEM private key: PKCS#8, SEC1 (`EC PRIVATE KEY`) or PKCS#1
/// (`RSA PRIVATE KEY`). Encrypted keys are refused with advice.
pub fn parse_private_key(pem: &[u8]) -> Result<PrivateKey, String> {
    use p256::pkcs8::DecodePrivateKey;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| format!("is not a valid PEM file ({e})"))?;
        let der = &block.contents;
        let public_key = match block.label.as_str() {
            "PRIVATE KEY" => {
                if let Ok(key) = p256::SecretKey::from_pkcs8_der(der) {
                    PublicKey::P256(key.public_key())
                } else if let Ok(key) = p384::SecretKey::from_pkcs8_der(der) {
                    PublicKey::P384(key.public_key())
                } else if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
                    PublicKey::Rsa(key.to_public_key())
                } else if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
                    PublicKey::Ed25519(key.verifying_key().to_bytes())
                } else {
                    return Err("holds a PKCS#8 key that is malformed or of an unsupported type (use RSA, ECDSA P-256/P-384 or Ed25519)".into());
                }
            }
            "EC PRIVATE KEY" => {
                if let Ok(key) = p256::SecretKey::from_sec1_der(der) {
                    PublicKey::P256(key.public_key())
                } else if let Ok(key) = p384::SecretKey::from_sec1_der(der) {
                    PublicKey::P384(key.public_key())
                } else {
                    return Err("holds an EC key that is malformed or not on P-256/P-384".into());
                }
            }
            "RSA PRIVATE KEY" => match rsa::RsaPrivateKey::from_pkcs1_der(der) {
                Ok(key) => PublicKey::Rsa(key.to_public_key()),
                Err(_) => return Err("holds a malformed RSA key".into()),
            },
            "ENCRYPTED PRIVATE KEY" => {
                return Err("holds a passphrase-protected key; decrypt it first (`openssl pkey -in KEY -out KEY.plain`)".into())
            }
            _ => continue,
        };
        return Ok(PrivateKey { public_key });
    }
    Err("holds no `BEGIN PRIVATE KEY` block".into())
}

impl PrivateKey {
    /// True when this key is the private half of the leaf's public key.
    pub fn matches(&self, leaf: &Leaf) -> bool {
        self.public_key == leaf.public_key
    }
}

/// True when `domain` is one of `dns_names`, or covered by a wildcard
/// `*.` + all labels of `domain` but the first. Case-insensitive.
pub fn domain_matches(domain: &str, dns_names: &[String]) -> bool {
    let domain = domain.to_ascii_lowercase();
    let wildcard = domain
        .split_once('.')
        .map(|(_, parent)| format!("*.{parent}"));
    dns_names.iter().any(|name| {
        let name = name.to_ascii_lowercase();
        name == domain || Some(&name) == wildcard.as_ref()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let names = vec!["*.example.com".to_string()];
        assert!(domain_matches("app.example.com", &names));
        assert!(domain_matches("APP.Example.com", &names));
        assert!(!domain_matches("a.b.example.com", &names));
        assert!(!domain_matches("example.com", &names));
    }

    #[test]
    fn exact_name_matches() {
        let names = vec!["other.org".to_string(), "app.example.com".to_string()];
        assert!(domain_matches("app.example.com", &names));
        assert!(!domain_matches("app.example.org", &names));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        assert!(parse_chain(b"").is_err());
        assert!(
            parse_chain(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
        assert!(parse_private_key(b"not a key").is_err());
        assert!(parse_private_key(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
    }
}
