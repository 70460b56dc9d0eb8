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

fn ca_params() -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CA_NAME);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "MSE Simulation");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
}

/// The platform's simulation CA.
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

/// A simulated PCK: key and chain (leaf, CA) in PEM.
pub struct SimulatedPck {
    key: SigningKey,
    /// Leaf then CA, PEM.
    pub chain_pem: String,
}

impl SimulationCa {
    /// A new CA valid for ten years from `now`.
    pub fn generate(now: DateTime<Utc>) -> Result<Self, AttestError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| AttestError::Certificate(e.to_string()))?;
        let mut params = ca_params();
        params.not_before = crate::ratls::to_offset(now - chrono::Duration::days(1))?;
        params.not_after = crate::ratls::to_offset(now + chrono::Duration::days(3650))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| AttestError::Certificate(e.to_string()))?;
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

    /// Issues a PCK certificate for one simulated node.
    pub fn issue_pck(&self, now: DateTime<Utc>) -> Result<SimulatedPck, AttestError> {
        let signing = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let pkcs8 = signing
            .to_pkcs8_pem(Default::default())
            .map_err(|e| AttestError::Certificate(e.to_string()))?;
        let leaf_key = rcgen::KeyPair::from_pem(&pkcs8)
            .map_err(|e| AttestError::Certificate(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, PCK_NAME);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "MSE Simulation");
        params.not_before = crate::ratls::to_offset(now - chrono::Duration::days(1))?;
        params.not_after = crate::ratls::to_offset(now + chrono::Duration::days(3650))?;
        let issuer = rcgen::Issuer::new(ca_params(), &self.key);
        let leaf = params
            .signed_by(&leaf_key, &issuer)
            .map_err(|e| AttestError::Certificate(e.to_string()))?;
        Ok(SimulatedPck {
            key: signing,
            chain_pem: format!("{}{}", leaf.pem(), self.cert_pem),
        })
    }
}

impl SimulatedPck {
    /// The PCK key, PKCS#8 PEM (the node keeps it).
    pub fn key_pem(&self) -> Result<String, AttestError> {
        Ok(self
            .key
            .to_pkcs8_pem(Default::default())
            .map_err(|e| AttestError::Certificate(e.to_string()))?
            .to_string())
    }

    /// Loads a PCK from its key and chain.
    pub fn from_pem(key_pem: &str, chain_pem: &str) -> Result<Self, AttestError> {
        Ok(SimulatedPck {
            key: SigningKey::from_pkcs8_pem(key_pem)
                .map_err(|e| AttestError::Certificate(format!("PCK key: {e}")))?,
            chain_pem: chain_pem.to_string(),
        })
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

/// Verifies a simulated quote against the pinned simulation CA: the PCK chain,
/// the QE report signature and binding of the attestation key, and the quote
/// signature.
pub fn verify_quote(quote: &Quote, ca_der: &[u8], now: DateTime<Utc>) -> Result<(), String> {
    let chain = pck_chain(quote)?;
    let (_, ca) =
        X509Certificate::from_der(ca_der).map_err(|e| format!("invalid simulation CA: {e}"))?;
    let leaf_der = &chain[0];
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| format!("invalid PCK certificate: {e}"))?;
    if chain.last().map(Vec::as_slice) != Some(ca_der) {
        return Err("the PCK chain does not end at the platform's simulation CA".into());
    }
    leaf.verify_signature(Some(ca.public_key()))
        .map_err(|_| "the PCK certificate is not signed by the simulation CA".to_string())?;
    let at =
        x509_parser::time::ASN1Time::from_timestamp(now.timestamp()).map_err(|e| e.to_string())?;
    if !leaf.validity().is_valid_at(at) || !ca.validity().is_valid_at(at) {
        return Err("the PCK chain is not valid now".into());
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
