//! The simulation TEE: quotes in the SGX v3 layout, signed with real ECDSA,
//! whose PCK chain roots at the platform's own simulation CA — never at
//! Intel's. They prove nothing about hardware, and every verifier refuses
//! them unless told to allow simulation.

use chrono::{DateTime, Utc};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::provider::QuoteProvider;
use crate::quote::{Quote, ReportBody, CERT_DATA_PCK_CHAIN};
use crate::AttestError;

/// Common name of the simulation CA: says what it is.
pub const CA_NAME: &str = "MSE Simulation CA - NOT SGX HARDWARE";
/// Common name of simulated PCK certificates.
pub const PCK_NAME: &str = "MSE Simulated PCK - no hardware protection";
/// Word that marks every simulation certificate.
pub const MARKER: &str = "Simulation";

/// A name of the simulation: common name `common`, organization "MSE
/// Simulation".
fn simulation_params(common: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "MSE Simulation");
    params
}

fn ca_params() -> rcgen::CertificateParams {
    let mut params = simulation_params(CA_NAME);
    // Path length 0: the PCK certificates it signs certify no other key.
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
}

/// The name of a simulated PCK certificate of node host `host`.
fn pck_params(host: &str) -> rcgen::CertificateParams {
    let mut params = simulation_params(PCK_NAME);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, host);
    params
}

/// The platform's simulation CA. It stays on the API host: node hosts get
/// their quote keys certified ([`SimulationCa::certify`]), never the CA key.
pub struct SimulationCa {
    key: rcgen::KeyPair,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for SimulationCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimulationCa(..)")
    }
}

/// A node host's quote-signing key (P-256), made on the host itself: only
/// its public key leaves the host, to be certified by the simulation CA.
pub struct QuoteKey {
    key: SigningKey,
}

impl std::fmt::Debug for QuoteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuoteKey(..)")
    }
}

/// A simulated PCK: a host's quote key and its certificate chain (leaf,
/// CA) in PEM.
pub struct SimulatedPck {
    key: SigningKey,
    /// Leaf then CA, PEM.
    pub chain_pem: String,
}

/// How long a PCK certificate issued by [`SimulationCa::certify`] is valid.
pub const PCK_VALIDITY_DAYS: i64 = 365;
/// The longest node host name a PCK certificate carries (the X.520 bound
/// of an organizational unit name).
pub const MAX_HOST_NAME: usize = 64;

fn cert_error(e: impl std::fmt::Display) -> AttestError {
    AttestError::Certificate(e.to_string())
}

/// A P-256 public key given as SPKI PEM, in the form rcgen signs for.
struct P256PublicKey {
    point: Vec<u8>,
}

impl rcgen::PublicKeyData for P256PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn check_host_name(host: &str) -> Result<(), AttestError> {
    let valid = !host.is_empty()
        && host.len() <= MAX_HOST_NAME
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(AttestError::Certificate(format!(
            "node host name `{}` is not 1 to {MAX_HOST_NAME} letters, digits, `-`, `_` or `.`",
            host.escape_default()
        )))
    }
}

impl SimulationCa {
    /// A new CA valid for ten years from `now`.
    pub fn generate(now: DateTime<Utc>) -> Result<Self, AttestError> {
        let key =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_error)?;
        let mut params = ca_params();
        params.not_before = crate::ratls::to_offset(now - chrono::Duration::days(1))?;
        params.not_after = crate::ratls::to_offset(now + chrono::Duration::days(3650))?;
        let cert = params.self_signed(&key).map_err(cert_error)?;
        Ok(SimulationCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
        })
    }

    /// Loads a CA saved with [`Self::cert_pem`] and [`Self::key_pem`].
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, AttestError> {
        let key = rcgen::KeyPair::from_pem(key_pem)
            .map_err(|e| AttestError::Certificate(format!("simulation CA key: {e}")))?;
        let cert_der = crate::ratls::pem_to_der(cert_pem.as_bytes())?;
        Ok(SimulationCa {
            key,
            cert_pem: cert_pem.to_string(),
            cert_der,
        })
    }

    /// The CA certificate, PEM: what verifiers pin.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA key, PEM (the operator keeps it private).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Certifies a node host's quote key (P-256, SPKI PEM) as a PCK of
    /// `host`, as Intel certifies each platform's PCK key: a leaf that is
    /// not a CA, naming the host (organizational unit), with a random
    /// serial, valid for [`PCK_VALIDITY_DAYS`] from `now`. Returns the chain,
    /// leaf then CA, PEM.
    pub fn certify(
        &self,
        public_key_pem: &str,
        host: &str,
        now: DateTime<Utc>,
    ) -> Result<String, AttestError> {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        use p256::pkcs8::DecodePublicKey;
        check_host_name(host)?;
        let public = p256::PublicKey::from_public_key_pem(public_key_pem.trim()).map_err(|e| {
            AttestError::Certificate(format!(
                "the quote key to certify is not a P-256 public key in SPKI PEM \
                 (`-----BEGIN PUBLIC KEY-----`): {e}"
            ))
        })?;
        let point = public.to_encoded_point(false).as_bytes().to_vec();
        let mut params = pck_params(host);
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let mut serial: [u8; 16] = [0; 16];
        p256::elliptic_curve::rand_core::RngCore::fill_bytes(
            &mut p256::elliptic_curve::rand_core::OsRng,
            &mut serial,
        );
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.not_before = crate::ratls::to_offset(now - chrono::Duration::days(1))?;
        params.not_after =
            crate::ratls::to_offset(now + chrono::Duration::days(PCK_VALIDITY_DAYS))?;
        let issuer = rcgen::Issuer::new(ca_params(), &self.key);
        let leaf = params
            .signed_by(&P256PublicKey { point }, &issuer)
            .map_err(cert_error)?;
        Ok(format!("{}{}", leaf.pem(), self.cert_pem))
    }

    /// A quote key made here and certified for `host` at once: for tests
    /// and tools that hold the CA anyway. A node host makes its own key
    /// ([`QuoteKey::generate`]) and has it certified.
    pub fn issue_pck(&self, host: &str, now: DateTime<Utc>) -> Result<SimulatedPck, AttestError> {
        let key = QuoteKey::generate();
        let chain = self.certify(&key.public_key_pem()?, host, now)?;
        SimulatedPck::new(key, &chain)
    }
}

impl QuoteKey {
    /// A new random key.
    pub fn generate() -> Self {
        QuoteKey {
            key: SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng),
        }
    }

    /// Loads a key saved with [`Self::key_pem`].
    pub fn from_pem(key_pem: &str) -> Result<Self, AttestError> {
        Ok(QuoteKey {
            key: SigningKey::from_pkcs8_pem(key_pem).map_err(|e| {
                AttestError::Certificate(format!(
                    "the quote key is not a P-256 PKCS#8 PEM key: {e}"
                ))
            })?,
        })
    }

    /// The key, PKCS#8 PEM (the host keeps it private).
    pub fn key_pem(&self) -> Result<String, AttestError> {
        Ok(self
            .key
            .to_pkcs8_pem(Default::default())
            .map_err(cert_error)?
            .to_string())
    }

    /// The public key, SPKI PEM: what the host sends to be certified.
    pub fn public_key_pem(&self) -> Result<String, AttestError> {
        use p256::pkcs8::EncodePublicKey;
        self.key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .map_err(cert_error)
    }
}

/// SHA-256 of a PCK leaf's SubjectPublicKeyInfo (DER), hex: how the
/// platform names a quote key, in its list of revoked keys.
pub fn quote_key_id(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// The id ([`quote_key_id`]) of the leaf of a PCK chain (PEM).
pub fn chain_key_id(chain_pem: &str) -> Result<String, AttestError> {
    let leaf = crate::ratls::pem_to_der(chain_pem.as_bytes())?;
    let (_, cert) = X509Certificate::from_der(&leaf)
        .map_err(|e| AttestError::Certificate(format!("invalid PCK certificate: {e}")))?;
    Ok(quote_key_id(cert.public_key().raw))
}

impl SimulatedPck {
    /// A quote key with its chain (leaf, CA; PEM), refused when the leaf
    /// certifies another key.
    pub fn new(key: QuoteKey, chain_pem: &str) -> Result<Self, AttestError> {
        use p256::pkcs8::EncodePublicKey;
        let spki = key
            .key
            .verifying_key()
            .to_public_key_der()
            .map_err(cert_error)?;
        if chain_key_id(chain_pem)? != quote_key_id(spki.as_bytes()) {
            return Err(AttestError::Certificate(
                "the quote chain certifies another key than this quote key: give the chain \
                 certified for this key"
                    .into(),
            ));
        }
        Ok(SimulatedPck {
            key: key.key,
            chain_pem: chain_pem.to_string(),
        })
    }

    /// The PCK key, PKCS#8 PEM (the node keeps it).
    pub fn key_pem(&self) -> Result<String, AttestError> {
        Ok(self
            .key
            .to_pkcs8_pem(Default::default())
            .map_err(cert_error)?
            .to_string())
    }

    /// Loads a PCK from its key and chain.
    pub fn from_pem(key_pem: &str, chain_pem: &str) -> Result<Self, AttestError> {
        Self::new(QuoteKey::from_pem(key_pem)?, chain_pem)
    }
}

/// A quote provider for the simulation TEE of one app.
pub struct SimulationProvider {
    pck: SimulatedPck,
    mr_enclave: [u8; 32],
    mr_signer: [u8; 32],
}

impl SimulationProvider {
    /// Quotes for an enclave with these measurements, certified by `pck`.
    pub fn new(pck: SimulatedPck, mr_enclave: [u8; 32], mr_signer: [u8; 32]) -> Self {
        SimulationProvider {
            pck,
            mr_enclave,
            mr_signer,
        }
    }
}

fn raw_signature(key: &SigningKey, message: &[u8]) -> [u8; 64] {
    let signature: Signature = key.sign(message);
    let mut out = [0u8; 64];
    out.copy_from_slice(&signature.to_bytes());
    out
}

impl QuoteProvider for SimulationProvider {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
        let attestation = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let point = attestation.verifying_key().to_encoded_point(false);
        let mut attestation_key = [0u8; 64];
        attestation_key.copy_from_slice(&point.as_bytes()[1..]);
        let mut qe_auth_data = vec![0u8; 32];
        p256::elliptic_curve::rand_core::RngCore::fill_bytes(
            &mut p256::elliptic_curve::rand_core::OsRng,
            &mut qe_auth_data,
        );

        let mut qe_report = ReportBody::zeroed();
        qe_report.set_mr_enclave(&Sha256::digest(b"mse simulated quoting enclave").into());
        let mut qe_data = [0u8; 64];
        qe_data[..32].copy_from_slice(&Sha256::digest(
            [&attestation_key[..], &qe_auth_data[..]].concat(),
        ));
        qe_report.set_report_data(&qe_data);

        let mut body = ReportBody::zeroed();
        body.set_mr_enclave(&self.mr_enclave);
        body.set_mr_signer(&self.mr_signer);
        body.set_isv(0, 0);
        body.set_debug(false);
        body.set_report_data(report_data);

        let mut quote = Quote {
            header: Quote::header_v3(0, 0),
            body,
            signature: [0u8; 64],
            attestation_key,
            qe_report_signature: raw_signature(&self.pck.key, &qe_report.0),
            qe_report,
            qe_auth_data,
            cert_data_type: CERT_DATA_PCK_CHAIN,
            cert_data: self.pck.chain_pem.clone().into_bytes(),
        };
        quote.signature = raw_signature(&attestation, &quote.signed_bytes());
        Ok(quote.to_bytes())
    }

    fn name(&self) -> &'static str {
        "simulation"
    }
}

/// The certificates (DER) of a quote's PCK chain, leaf first.
pub fn pck_chain(quote: &Quote) -> Result<Vec<Vec<u8>>, String> {
    let pem = quote
        .pck_chain_pem()
        .ok_or("the quote carries no PCK certificate chain")?;
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| format!("invalid PCK chain: {e}"))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err("the PCK chain holds no certificate".into());
    }
    Ok(out)
}

/// True when the quote's PCK chain names the simulation TEE.
pub fn looks_simulated(quote: &Quote) -> bool {
    pck_chain(quote).is_ok_and(|chain| {
        chain.iter().any(|der| {
            X509Certificate::from_der(der).is_ok_and(|(_, cert)| {
                cert.subject().to_string().contains(MARKER)
                    || cert.issuer().to_string().contains(MARKER)
            })
        })
    })
}

fn verifying_key(point: &[u8]) -> Result<VerifyingKey, String> {
    VerifyingKey::from_sec1_bytes(point).map_err(|_| "invalid P-256 public key".to_string())
}

fn check_signature(
    key: &VerifyingKey,
    message: &[u8],
    raw: &[u8; 64],
    what: &str,
) -> Result<(), String> {
    let signature = Signature::from_slice(raw).map_err(|_| format!("malformed {what}"))?;
    key.verify(message, &signature)
        .map_err(|_| format!("{what} does not verify"))
}

/// The node host a PCK certificate names (its organizational unit).
pub fn pck_host(leaf: &X509Certificate<'_>) -> Option<String> {
    leaf.subject()
        .iter_organizational_unit()
        .next()
        .and_then(|ou| ou.as_str().ok())
        .map(str::to_string)
}

/// Verifies a simulated quote against the pinned simulation CA: the PCK chain
/// (exactly a leaf that is not a CA, then the CA), that the leaf's key is not
/// among the `revoked` ones (SHA-256 of their SubjectPublicKeyInfo DER, as
/// [`quote_key_id`]), the QE report signature and binding of the attestation
/// key, and the quote signature.
pub fn verify_quote(
    quote: &Quote,
    ca_der: &[u8],
    revoked: &[[u8; 32]],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let chain = pck_chain(quote)?;
    let (_, ca) =
        X509Certificate::from_der(ca_der).map_err(|e| format!("invalid simulation CA: {e}"))?;
    let leaf_der = &chain[0];
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| format!("invalid PCK certificate: {e}"))?;
    if chain.last().map(Vec::as_slice) != Some(ca_der) {
        return Err("the PCK chain does not end at the platform's simulation CA".into());
    }
    if chain.len() != 2 {
        return Err(format!(
            "the PCK chain holds {} certificates, not a PCK certificate and the simulation CA: \
             a quote key cannot certify another key",
            chain.len()
        ));
    }
    leaf.verify_signature(Some(ca.public_key()))
        .map_err(|_| "the PCK certificate is not signed by the simulation CA".to_string())?;
    if leaf.is_ca() {
        return Err("the PCK certificate is a CA: the simulation CA certifies no CA".into());
    }
    let at =
        x509_parser::time::ASN1Time::from_timestamp(now.timestamp()).map_err(|e| e.to_string())?;
    if !leaf.validity().is_valid_at(at) || !ca.validity().is_valid_at(at) {
        return Err("the PCK chain is not valid now".into());
    }
    let key_id: [u8; 32] = Sha256::digest(leaf.public_key().raw).into();
    if revoked.contains(&key_id) {
        let host = pck_host(&leaf).unwrap_or_else(|| "(unnamed)".into());
        return Err(format!(
            "the quote was signed with the quote key of node host `{host}`, which the platform \
             revoked"
        ));
    }
    let pck = verifying_key(&leaf.public_key().subject_public_key.data)?;
    check_signature(
        &pck,
        &quote.qe_report.0,
        &quote.qe_report_signature,
        "the QE report signature",
    )?;
    let expected = Sha256::digest([&quote.attestation_key[..], &quote.qe_auth_data[..]].concat());
    if quote.qe_report.report_data()[..32] != expected[..] {
        return Err("the QE report does not bind the attestation key".into());
    }
    let mut point = [4u8; 65];
    point[1..].copy_from_slice(&quote.attestation_key);
    let attestation = verifying_key(&point)?;
    check_signature(
        &attestation,
        &quote.signed_bytes(),
        &quote.signature,
        "the quote signature",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn quote_of(pck: SimulatedPck) -> Quote {
        let provider = SimulationProvider::new(pck, [1; 32], [2; 32]);
        Quote::parse(&provider.quote(&[3; 64]).unwrap()).unwrap()
    }

    fn key_id(chain_pem: &str) -> [u8; 32] {
        let mut id = [0u8; 32];
        hex::decode_to_slice(chain_key_id(chain_pem).unwrap(), &mut id).unwrap();
        id
    }

    fn certified(ca: &SimulationCa, host: &str) -> (SimulatedPck, String) {
        let key = QuoteKey::generate();
        let chain = ca
            .certify(&key.public_key_pem().unwrap(), host, now())
            .unwrap();
        (SimulatedPck::new(key, &chain).unwrap(), chain)
    }

    #[test]
    fn a_quote_from_a_certified_host_verifies_and_names_the_host() {
        let ca = SimulationCa::generate(now()).unwrap();
        let (pck, chain) = certified(&ca, "host-1");
        let leaf = crate::ratls::pem_to_der(chain.as_bytes()).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
        assert_eq!(pck_host(&cert).as_deref(), Some("host-1"));
        assert!(!cert.is_ca());
        let quote = quote_of(pck);
        verify_quote(&quote, ca.cert_der(), &[], now()).unwrap();
        // Another host's revocation does not touch it.
        let (_, other) = certified(&ca, "host-2");
        verify_quote(&quote, ca.cert_der(), &[key_id(&other)], now()).unwrap();
    }

    #[test]
    fn a_quote_under_a_revoked_host_key_fails_naming_the_host() {
        let ca = SimulationCa::generate(now()).unwrap();
        let (pck, chain) = certified(&ca, "host-1");
        let quote = quote_of(pck);
        let err = verify_quote(&quote, ca.cert_der(), &[key_id(&chain)], now()).unwrap_err();
        assert_eq!(
            err,
            "the quote was signed with the quote key of node host `host-1`, which the platform \
             revoked"
        );
    }

    #[test]
    fn a_host_key_certified_by_another_ca_fails() {
        let ca = SimulationCa::generate(now()).unwrap();
        let other = SimulationCa::generate(now()).unwrap();
        let (pck, _) = certified(&other, "host-1");
        let err = verify_quote(&quote_of(pck), ca.cert_der(), &[], now()).unwrap_err();
        assert!(
            err.contains("does not end at the platform's simulation CA"),
            "{err}"
        );
    }

    #[test]
    fn a_host_key_cannot_certify_another_key() {
        let ca = SimulationCa::generate(now()).unwrap();
        let host_key = QuoteKey::generate();
        let host_chain = ca
            .certify(&host_key.public_key_pem().unwrap(), "host-1", now())
            .unwrap();
        let host_leaf_pem =
            &host_chain[..host_chain.find("-----END CERTIFICATE-----").unwrap() + 25];
        // The host signs a certificate of its own for a fresh key, under its
        // own PCK's name.
        let rogue = QuoteKey::generate();
        let host_pair = rcgen::KeyPair::from_pem(&host_key.key_pem().unwrap()).unwrap();
        let host_params = pck_params("host-1");
        let issuer = rcgen::Issuer::new(host_params, &host_pair);
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, PCK_NAME);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "host-9");
        let rogue_pair = rcgen::KeyPair::from_pem(&rogue.key_pem().unwrap()).unwrap();
        let rogue_leaf = params.signed_by(&rogue_pair, &issuer).unwrap();
        for chain in [
            format!("{}{}{}", rogue_leaf.pem(), host_leaf_pem, ca.cert_pem()),
            format!("{}{}", rogue_leaf.pem(), ca.cert_pem()),
        ] {
            let pck = SimulatedPck {
                key: rogue.key.clone(),
                chain_pem: chain,
            };
            assert!(verify_quote(&quote_of(pck), ca.cert_der(), &[], now()).is_err());
        }
    }

    #[test]
    fn certify_refuses_a_malformed_or_non_p256_key_and_a_bad_host_name() {
        let ca = SimulationCa::generate(now()).unwrap();
        let err = ca.certify("not a key", "host-1", now()).unwrap_err();
        assert!(err.to_string().contains("not a P-256 public key"), "{err}");
        let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let err = ca
            .certify(&ed25519.public_key_pem(), "host-1", now())
            .unwrap_err();
        assert!(err.to_string().contains("not a P-256 public key"), "{err}");
        let key = QuoteKey::generate().public_key_pem().unwrap();
        assert!(ca.certify(&key, "bad name`", now()).is_err());
        assert!(ca.certify(&key, "", now()).is_err());
    }

    #[test]
    fn a_chain_for_another_key_is_refused_with_the_key() {
        let ca = SimulationCa::generate(now()).unwrap();
        let (_, chain) = certified(&ca, "host-1");
        let err = SimulatedPck::new(QuoteKey::generate(), &chain)
            .err()
            .unwrap();
        assert!(err.to_string().contains("certifies another key"), "{err}");
    }
}
