//! The certificates the proxy serves `--untrusted-ssl` apps with: the
//! operator's wildcard `*.<base-domain>` where TLS clients accept it, and
//! otherwise a certificate for the exact name, issued on first use by the
//! operator CA and cached. Clients refuse a wildcard directly under a
//! single-label domain (`*.localhost`), so a local platform needs the latter.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Names whose certificates are kept; past this the cache starts over.
const CACHE_LIMIT: usize = 10_000;
/// How long an issued certificate is valid.
const VALIDITY_DAYS: i64 = 90;

/// Serves a certificate for every routed name, signed by the operator CA.
pub struct OperatorCerts {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_der: CertificateDer<'static>,
    wildcard: Option<(String, Arc<CertifiedKey>)>,
    issued: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for OperatorCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorCerts")
            .field("wildcard", &self.wildcard.as_ref().map(|(s, _)| s))
            .finish_non_exhaustive()
    }
}

impl OperatorCerts {
    /// From the operator CA (certificate and key, PEM) and, when the base
    /// domain has two labels or more, the wildcard chain and key (PEM).
    pub fn new(
        ca_pem: &str,
        ca_key_pem: &str,
        wildcard: Option<(&str, &[u8], &[u8])>,
    ) -> anyhow::Result<Self> {
        let provider = mse_attest::tls::provider();
        let ca_key = rcgen::KeyPair::from_pem(ca_key_pem).context("the operator CA key")?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(ca_pem, ca_key).context("the operator CA")?;
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .context("the operator CA is not valid PEM")?;
        let wildcard = match wildcard {
            Some((base, cert_pem, key_pem)) if base.contains('.') => {
                let chain = CertificateDer::pem_slice_iter(cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .context("the wildcard certificate is not valid PEM")?;
                let key = PrivateKeyDer::from_pem_slice(key_pem)
                    .context("the wildcard key is not a valid PEM private key")?;
                let certified = CertifiedKey::from_der(chain, key, &provider)
                    .context("the wildcard key does not fit its certificate")?;
                Some((
                    format!(".{}", base.to_ascii_lowercase()),
                    Arc::new(certified),
                ))
            }
            _ => None,
        };
        Ok(OperatorCerts {
            issuer,
            ca_der,
            wildcard,
            issued: Mutex::new(HashMap::new()),
            provider,
        })
    }

    /// From the data folder: `operator-ca.pem`/`.key`, `wildcard.pem`/`.key`.
    pub fn load(data_dir: &Path, base_domain: &str) -> anyhow::Result<Self> {
        let read = |name: &str| {
            let path = data_dir.join(name);
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))
        };
        let (cert, key) = (read("wildcard.pem")?, read("wildcard.key")?);
        OperatorCerts::new(
            &read("operator-ca.pem")?,
            &read("operator-ca.key")?,
            Some((base_domain, cert.as_bytes(), key.as_bytes())),
        )
    }

    /// The certificate for `name`: the wildcard when it covers the name
    /// (one label under the base domain), else one issued for `name`.
    pub fn for_name(&self, name: &str, now: DateTime<Utc>) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        if let Some((suffix, certified)) = &self.wildcard {
            if let Some(label) = name.strip_suffix(suffix.as_str()) {
                if !label.is_empty() && !label.contains('.') {
                    return Some(certified.clone());
                }
            }
        }
        let mut issued = self.issued.lock().ok()?;
        if let Some(certified) = issued.get(&name) {
            return Some(certified.clone());
        }
        let certified = Arc::new(self.issue(&name, now).ok()?);
        if issued.len() >= CACHE_LIMIT {
            issued.clear();
        }
        issued.insert(name, certified.clone());
        Some(certified)
    }

    fn issue(&self, name: &str, now: DateTime<Utc>) -> anyhow::Result<CertifiedKey> {
        let key = rcgen::KeyPair::generate().context("cannot generate a key")?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
            .with_context(|| format!("`{name}` is not a valid name"))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.not_before = at(now - chrono::Duration::hours(1))?;
        params.not_after = at(now + chrono::Duration::days(VALIDITY_DAYS))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("cannot sign the certificate")?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| anyhow::anyhow!("the new key: {e}"))?;
        CertifiedKey::from_der(
            vec![cert.der().clone(), self.ca_der.clone()],
            key_der,
            &self.provider,
        )
        .context("the new key does not fit its certificate")
    }
}

impl ResolvesServerCert for OperatorCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.for_name(hello.server_name()?, Utc::now())
    }
}

/// A time as certificates take it.
fn at(t: DateTime<Utc>) -> anyhow::Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).context("date out of range")
}

/// The TLS configuration of the API over HTTPS: a certificate for `names`
/// (DNS names or IP addresses) issued by the operator CA, served with the
/// CA after it, so that node hosts holding the CA's hash (their join token)
/// can check both.
pub fn api_server_config(
    data_dir: &Path,
    names: &[String],
    now: DateTime<Utc>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let ca_pem = std::fs::read_to_string(data_dir.join("operator-ca.pem"))
        .context("cannot read the operator CA")?;
    let ca_key = std::fs::read_to_string(data_dir.join("operator-ca.key"))
        .context("cannot read the operator CA key")?;
    let ca_key = rcgen::KeyPair::from_pem(&ca_key).context("the operator CA key")?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("the operator CA")?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .context("the API's names are not valid certificate names")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "MSE platform API");
    params.not_before = at(now - chrono::Duration::days(1))?;
    params.not_after = at(now + chrono::Duration::days(VALIDITY_DAYS))?;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("cannot make the API's key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot issue the API's certificate")?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .context("the operator CA is not valid PEM")?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| anyhow::anyhow!("the API's key: {e}"))?;
    let config = mse_attest::tls::server_config(
        vec![cert.der().clone(), ca_der],
        key_der,
        mse_attest::tls::HTTP1,
    )
    .context("the API's certificate")?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test operator CA");
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn names(certified: &CertifiedKey) -> Vec<String> {
        let (_, cert) = x509_parser::parse_x509_certificate(&certified.cert[0]).unwrap();
        cert.subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    #[test]
    fn a_single_label_base_domain_gets_a_certificate_per_name_cached() {
        let (ca_pem, ca_key) = ca();
        let certs = OperatorCerts::new(&ca_pem, &ca_key, None).unwrap();
        let now = Utc::now();
        let first = certs.for_name("abc.localhost", now).unwrap();
        assert_eq!(names(&first), ["DNSName(abc.localhost)"]);
        assert_eq!(first.cert.len(), 2, "the chain carries the CA");
        let again = certs.for_name("ABC.localhost", now).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "issued once per name");
        let other = certs.for_name("def.localhost", now).unwrap();
        assert_eq!(names(&other), ["DNSName(def.localhost)"]);
    }

    #[test]
    fn names_one_label_under_a_multi_label_base_use_the_wildcard() {
        let (ca_pem, ca_key) = ca();
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(&ca_pem, rcgen::KeyPair::from_pem(&ca_key).unwrap())
                .unwrap();
        let wildcard = rcgen::CertificateParams::new(vec!["*.apps.example.com".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let certs = OperatorCerts::new(
            &ca_pem,
            &ca_key,
            Some((
                "apps.example.com",
                wildcard.pem().as_bytes(),
                key.serialize_pem().as_bytes(),
            )),
        )
        .unwrap();
        let now = Utc::now();
        let one = certs.for_name("x1.apps.example.com", now).unwrap();
        assert_eq!(names(&one), ["DNSName(*.apps.example.com)"]);
        let deeper = certs.for_name("a.b.apps.example.com", now).unwrap();
        assert_eq!(names(&deeper), ["DNSName(a.b.apps.example.com)"]);
    }
}
