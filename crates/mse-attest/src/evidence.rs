//! Evidence for a certificate that carries no quote: an ACME certificate for
//! the node's key, or the owner's certificate (`[ssl]`). The node serves it as
//! JSON at [`EVIDENCE_PATH`] on the app's domain: a quote whose
//! REPORTDATA[0..32] is the SHA-256 of the served certificate's
//! subjectPublicKey (the RA-TLS rule, so the quote of the node's RA-TLS
//! certificate serves for an ACME certificate of the same key), and what the
//! fingerprint is computed from. [`verify_evidence`] checks both against the
//! certificate a client was served.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fingerprint::{fingerprint, FingerprintInput, TlsMode};
use crate::ratls;
use crate::verify::{verify_quote, Claims, Endorsements, Policy, QuoteCheck, Verification};
use crate::AttestError;

/// Where a node serves the evidence of an app, on the app's domain.
pub const EVIDENCE_PATH: &str = "/.well-known/mse-evidence";

/// The evidence format this crate writes and reads.
pub const VERSION: u32 = 1;

/// The largest evidence accepted, in bytes: a quote with its PCK chain is a
/// few kilobytes.
pub const MAX_LEN: usize = 64 * 1024;

/// The subjectPublicKey BIT STRING contents of a certificate (DER): for EC
/// P-256 the 65-byte uncompressed point, for RSA the PKCS#1 public key. This
/// is what REPORTDATA binds.
pub fn key_bits(cert_der: &[u8]) -> Result<Vec<u8>, AttestError> {
    let cert = ratls::parse_der(cert_der)?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// REPORTDATA for a quote that binds `key_bits` (see [`key_bits`]), with no
/// X25519 key.
pub fn key_report_data(key_bits: &[u8]) -> [u8; 64] {
    ratls::report_data(key_bits, None)
}

/// What a node publishes beside a certificate without a quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The format version, [`VERSION`].
    pub version: u32,
    /// The quote, standard base64.
    pub quote: String,
    /// What the fingerprint (the quote's MRENCLAVE) is computed from.
    pub fingerprint_input: EvidenceInput,
    /// The fingerprint of `fingerprint_input`, hex. Informational: a verifier
    /// recomputes it.
    pub fingerprint: String,
    /// What the TEE gave beside the quote, standard base64: on SEV-SNP the
    /// certificate table of the VCEK chain, so the report can be checked
    /// with nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<String>,
}

/// [`FingerprintInput`] as text, the way evidence carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceInput {
    /// The runtime image reference.
    pub runtime_image: String,
    /// Digest (hex) of the runtime environment spec.
    pub runtime_spec_digest: String,
    /// Enclave size, as the platform names it (`"4G"`).
    pub enclave_size: String,
    /// The app's UUID.
    pub app_uuid: String,
    /// The app's domain.
    pub app_domain: String,
    /// `module:variable`.
    pub python_application: String,
    /// `self`, `owner`, `operator` or `acme`.
    pub tls_mode: String,
    /// The app's expiry (RFC 3339), or the owner leaf's SHA-256 (hex).
    pub tls_binding: String,
    /// SHA-256 of the encrypted code tarball, hex.
    pub code_sha256: String,
}

impl From<&FingerprintInput> for EvidenceInput {
    fn from(input: &FingerprintInput) -> EvidenceInput {
        let (tls_mode, tls_binding) = input.tls.encoded();
        EvidenceInput {
            runtime_image: input.runtime_image.clone(),
            runtime_spec_digest: input.runtime_spec_digest.clone(),
            enclave_size: input.enclave_size.clone(),
            app_uuid: input.app_uuid.clone(),
            app_domain: input.app_domain.clone(),
            python_application: input.python_application.clone(),
            tls_mode: tls_mode.to_string(),
            tls_binding,
            code_sha256: hex::encode(input.code_sha256),
        }
    }
}

impl EvidenceInput {
    /// The fingerprint input this text stands for; an error names the field
    /// that is not valid.
    pub fn to_input(&self) -> Result<FingerprintInput, AttestError> {
        let tls = TlsMode::from_encoded(&self.tls_mode, &self.tls_binding)
            .map_err(|why| AttestError::Evidence(format!("fingerprint_input: {why}")))?;
        let mut code_sha256 = [0u8; 32];
        hex::decode_to_slice(&self.code_sha256, &mut code_sha256).map_err(|_| {
            AttestError::Evidence(format!(
                "fingerprint_input: code_sha256 `{}` is not 64 hex digits",
                self.code_sha256
            ))
        })?;
        Ok(FingerprintInput {
            runtime_image: self.runtime_image.clone(),
            runtime_spec_digest: self.runtime_spec_digest.clone(),
            enclave_size: self.enclave_size.clone(),
            app_uuid: self.app_uuid.clone(),
            app_domain: self.app_domain.clone(),
            python_application: self.python_application.clone(),
            tls,
            code_sha256,
        })
    }
}

impl Evidence {
    /// The evidence of a node whose quote is `quote_bytes` (with what the
    /// TEE gave beside it, `aux`), for an app whose fingerprint is computed
    /// from `input`.
    pub fn new(quote_bytes: &[u8], aux: Option<&[u8]>, input: &FingerprintInput) -> Evidence {
        let base64 = &base64::engine::general_purpose::STANDARD;
        Evidence {
            version: VERSION,
            quote: base64.encode(quote_bytes),
            fingerprint_input: input.into(),
            fingerprint: hex::encode(fingerprint(input)),
            aux: aux
                .filter(|aux| !aux.is_empty())
                .map(|aux| base64.encode(aux)),
        }
    }

    /// What the TEE gave beside the quote, decoded from base64.
    pub fn aux_bytes(&self) -> Result<Option<Vec<u8>>, AttestError> {
        self.aux
            .as_ref()
            .map(|aux| {
                base64::engine::general_purpose::STANDARD
                    .decode(aux)
                    .map_err(|e| AttestError::Evidence(format!("aux is not standard base64: {e}")))
            })
            .transpose()
    }

    /// The JSON the node serves at [`EVIDENCE_PATH`].
    pub fn to_json(&self) -> Vec<u8> {
        // Only strings and numbers: serializing cannot fail.
        serde_json::to_vec_pretty(self).expect("evidence serializes to JSON")
    }

    /// Reads evidence as served at [`EVIDENCE_PATH`]: at most [`MAX_LEN`]
    /// bytes of JSON of version [`VERSION`], with no unknown field.
    pub fn parse(bytes: &[u8]) -> Result<Evidence, AttestError> {
        if bytes.len() > MAX_LEN {
            return Err(AttestError::Evidence(format!(
                "{} bytes is more than the {MAX_LEN} bytes evidence may have",
                bytes.len()
            )));
        }
        #[derive(Deserialize)]
        struct Versioned {
            version: Option<serde_json::Value>,
        }
        let versioned: Versioned =
            serde_json::from_slice(bytes).map_err(|source| AttestError::EvidenceJson { source })?;
        match versioned.version {
            Some(v) if v == VERSION => {}
            Some(v) => {
                return Err(AttestError::Evidence(format!(
                    "version {v} is not supported: this verifier reads version {VERSION}"
                )))
            }
            None => {
                return Err(AttestError::Evidence(format!(
                    "no `version`: not the JSON a node serves at {EVIDENCE_PATH}"
                )))
            }
        }
        serde_json::from_slice(bytes).map_err(|source| AttestError::EvidenceJson { source })
    }

    /// The quote, decoded from base64.
    pub fn quote_bytes(&self) -> Result<Vec<u8>, AttestError> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.quote)
            .map_err(|e| AttestError::Evidence(format!("quote is not standard base64: {e}")))
    }
}

/// Verifies that `served_cert_der`, the certificate served on `domain`, is
/// held by the attested node that published `evidence`. `endorsements`
/// certify its quote or report, or say why there are none. The checks, in order:
/// `quote_present`, `report_data_binding` (the quote binds the served
/// certificate's key), `evidence_inputs` (`fingerprint_input` recomputes to
/// MRENCLAVE and names `domain`), `debug_disabled`, `mr_signer`,
/// `mr_enclave`, `quote_signature`, `tcb`.
pub fn verify_evidence(
    served_cert_der: &[u8],
    evidence: &Evidence,
    domain: &str,
    policy: &Policy,
    endorsements: Result<&Endorsements, &str>,
    now: DateTime<Utc>,
) -> Verification {
    let quote_bytes = evidence.quote_bytes().map_err(|e| e.to_string());
    let served_key = key_bits(served_cert_der);
    let binding = |claims: &Claims| {
        let key = served_key
            .as_ref()
            .map_err(|e| format!("the certificate served on {domain}: {e}"))?;
        ratls::check_binding(&claims.report_data, key)
            .map(|()| format!("REPORTDATA binds the key of the certificate served on {domain}"))
            .map_err(|_| {
                format!(
                    "the key of the certificate served on {domain} is not the one the node's \
                     quote binds: the certificate is served by something other than the \
                     attested node (for example the proxy)"
                )
            })
    };
    let inputs =
        |claims: &Claims| evidence_inputs(&evidence.fingerprint_input, domain, claims, policy);
    let extra: [(&'static str, QuoteCheck<'_>); 1] = [("evidence_inputs", &inputs)];
    verify_quote(
        quote_bytes.as_deref().map_err(Clone::clone),
        &binding,
        &extra,
        policy,
        endorsements,
        now,
    )
}

/// The `evidence_inputs` check: `input` recomputes to the fingerprint the
/// evidence carries (on SGX hardware, the one whose enclave MRENCLAVE
/// measures), and names `domain`.
fn evidence_inputs(
    input: &EvidenceInput,
    domain: &str,
    claims: &Claims,
    policy: &Policy,
) -> Result<String, String> {
    let parsed = input.to_input().map_err(|e| e.to_string())?;
    let recomputed = fingerprint(&parsed);
    let (mr_enclave, at) = (claims.fingerprint, claims.fingerprint_at);
    let carried = if claims.measured_enclave {
        crate::verify::enclave_mr_enclave(mr_enclave, recomputed, policy).is_ok()
    } else {
        recomputed == mr_enclave
    };
    let mut failures = Vec::new();
    if !carried {
        failures.push(format!(
            "the fingerprint {} recomputed from fingerprint_input is not the quote's {at} {}",
            hex::encode(recomputed),
            hex::encode(mr_enclave)
        ));
    }
    if !parsed.app_domain.eq_ignore_ascii_case(domain) {
        failures.push(format!(
            "fingerprint_input is for the domain `{}`, not `{domain}`",
            parsed.app_domain
        ));
    }
    if failures.is_empty() {
        Ok(format!(
            "fingerprint_input ({} mode, domain {domain}) recomputes to the quote's {at} {}",
            input.tls_mode,
            hex::encode(mr_enclave)
        ))
    } else {
        Err(failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use rsa::pkcs8::EncodePrivateKey;

    use super::*;
    use crate::fingerprint::{AppIdentity, Runtime, TlsOrigin};
    use crate::provider::QuoteProvider;
    use crate::simulation::{QuoteKey, SimulatedPck, SimulationCa, SimulationProvider};
    use crate::verify::{Status, Tee, NO_COLLATERAL};

    const DOMAIN: &str = "0f4e8a52-9c1b-4d7e-a3f0-1b2c3d4e5f60.example.com";
    const MR_SIGNER: [u8; 32] = [2; 32];

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn input(origin: TlsOrigin<'_>) -> FingerprintInput {
        FingerprintInput::new(
            Runtime {
                image: "ghcr.io/cosmian/mse-flask:20230124182826",
                spec_digest: &"ab".repeat(32),
                enclave_size: "4G",
            },
            AppIdentity {
                uuid: "0f4e8a52-9c1b-4d7e-a3f0-1b2c3d4e5f60",
                domain: DOMAIN,
                python_application: "app:app",
            },
            origin,
            Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
            [7; 32],
        )
    }

    /// A simulated node: its CA and a quote provider reporting `mr_enclave`.
    struct Node {
        ca: SimulationCa,
        provider: SimulationProvider,
    }

    impl Node {
        fn new(mr_enclave: [u8; 32]) -> Node {
            let ca = SimulationCa::generate(now()).unwrap();
            let key = QuoteKey::generate();
            let chain = ca
                .certify(&key.public_key_pem().unwrap(), "host-1", now())
                .unwrap();
            let pck = SimulatedPck::new(key, &chain).unwrap();
            Node {
                ca,
                provider: SimulationProvider::new(pck, mr_enclave, MR_SIGNER),
            }
        }

        fn quote_for(&self, cert_der: &[u8]) -> Vec<u8> {
            let data = key_report_data(&key_bits(cert_der).unwrap());
            self.provider.quote(&data).unwrap()
        }

        fn policy(&self) -> Policy {
            Policy {
                mr_signer: Some(MR_SIGNER),
                allow_simulation: true,
                simulation_ca: Some(self.ca.cert_der().to_vec()),
                simulation_revoked: Some(Vec::new()),
                ..Policy::default()
            }
        }
    }

    /// A certificate for `DOMAIN` and `key`, issued by a stand-in public CA.
    fn issued_for(key: &rcgen::KeyPair) -> Vec<u8> {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let params = rcgen::CertificateParams::new(vec![DOMAIN.to_string()]).unwrap();
        params.signed_by(key, &issuer).unwrap().der().to_vec()
    }

    fn verify(served: &[u8], evidence: &Evidence, domain: &str, policy: &Policy) -> Verification {
        verify_evidence(served, evidence, domain, policy, Err(NO_COLLATERAL), now())
    }

    fn check<'a>(v: &'a Verification, name: &str) -> &'a crate::verify::Check {
        v.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
    }

    fn names(v: &Verification) -> Vec<&'static str> {
        v.checks.iter().map(|c| c.name).collect()
    }

    const EVIDENCE_CHECKS: [&str; 8] = [
        "quote_present",
        "report_data_binding",
        "evidence_inputs",
        "debug_disabled",
        "mr_signer",
        "mr_enclave",
        "quote_signature",
        "tcb",
    ];

    #[test]
    fn evidence_round_trips_through_json() {
        let input = input(TlsOrigin::Acme);
        let evidence = Evidence::new(b"quote bytes", None, &input);
        let read = Evidence::parse(&evidence.to_json()).unwrap();
        assert_eq!(read, evidence);
        assert_eq!(read.quote_bytes().unwrap(), b"quote bytes");
        assert_eq!(read.fingerprint_input.to_input().unwrap(), input);
        assert_eq!(read.fingerprint_input.tls_mode, "acme");
        assert_eq!(read.fingerprint_input.tls_binding, "2030-01-01T00:00:00Z");
        assert_eq!(read.fingerprint, hex::encode(fingerprint(&input)));
        let owner = self::input(TlsOrigin::Owner { leaf_der: b"leaf" });
        let read = Evidence::parse(&Evidence::new(b"q", None, &owner).to_json()).unwrap();
        assert_eq!(read.fingerprint_input.to_input().unwrap(), owner);
    }

    fn json_with(change: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let evidence = Evidence::new(b"quote", None, &input(TlsOrigin::Acme));
        let mut value: serde_json::Value = serde_json::from_slice(&evidence.to_json()).unwrap();
        change(&mut value);
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn unknown_fields_a_wrong_version_oversize_and_garbage_are_refused() {
        let unknown = json_with(|v| v["extra"] = "x".into());
        let error = Evidence::parse(&unknown).unwrap_err().to_string();
        assert!(error.contains("unknown field `extra`"), "{error}");
        let unknown_input = json_with(|v| v["fingerprint_input"]["extra"] = "x".into());
        let error = Evidence::parse(&unknown_input).unwrap_err().to_string();
        assert!(error.contains("unknown field `extra`"), "{error}");

        let future = json_with(|v| {
            v["version"] = 2.into();
            v["new_field"] = "x".into();
        });
        assert_eq!(
            Evidence::parse(&future).unwrap_err().to_string(),
            "evidence: version 2 is not supported: this verifier reads version 1"
        );
        let unversioned = json_with(|v| {
            v.as_object_mut().unwrap().remove("version");
        });
        let error = Evidence::parse(&unversioned).unwrap_err().to_string();
        assert!(error.contains("no `version`"), "{error}");

        let mut oversize = json_with(|_| {});
        oversize.resize(MAX_LEN + 1, b' ');
        let error = Evidence::parse(&oversize).unwrap_err().to_string();
        assert!(error.contains("more than the 65536 bytes"), "{error}");

        let error = Evidence::parse(b"<html>Not Found</html>")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("evidence: not the JSON a node serves at /.well-known/mse-evidence"),
            "{error}"
        );
    }

    #[test]
    fn bad_hex_an_unknown_mode_or_a_bad_time_in_the_inputs_is_named() {
        let good = EvidenceInput::from(&input(TlsOrigin::Acme));
        type Change = fn(&mut EvidenceInput);
        let cases: [(Change, &str); 4] = [
            (
                |i| i.code_sha256 = "zz".into(),
                "code_sha256 `zz` is not 64 hex digits",
            ),
            (
                |i| i.tls_mode = "public".into(),
                "unknown tls_mode `public`",
            ),
            (
                |i| i.tls_binding = "2030-01-01".into(),
                "not an RFC 3339 UTC time",
            ),
            (
                |i| {
                    i.tls_mode = "owner".into();
                    i.tls_binding = "abc".into();
                },
                "not 64 lowercase hex digits",
            ),
        ];
        for (change, says) in cases {
            let mut bad = good.clone();
            change(&mut bad);
            let error = bad.to_input().unwrap_err().to_string();
            assert!(
                error.starts_with("evidence: fingerprint_input: "),
                "{error}"
            );
            assert!(error.contains(says), "{error}");
        }
        let mut evidence = Evidence::new(b"quote", None, &input(TlsOrigin::Acme));
        evidence.quote = "not base64!".into();
        let error = evidence.quote_bytes().unwrap_err().to_string();
        assert!(error.contains("not standard base64"), "{error}");
    }

    #[test]
    fn an_acme_certificate_for_the_ra_tls_key_verifies_with_the_ra_tls_quote() {
        let input = input(TlsOrigin::Acme);
        let node = Node::new(fingerprint(&input));
        let ra_tls = ratls::create(
            DOMAIN,
            now() + chrono::Duration::days(1),
            None,
            &node.provider,
            now(),
        )
        .unwrap();
        let key = rcgen::KeyPair::from_pem(&ra_tls.key_pem).unwrap();
        let acme = issued_for(&key);
        assert_eq!(
            key_bits(&acme).unwrap(),
            key_bits(&ra_tls.cert_der).unwrap()
        );
        let quote = ratls::inspect(&ra_tls.cert_der).unwrap().quote_bytes;
        let evidence = Evidence::parse(&Evidence::new(&quote, None, &input).to_json()).unwrap();

        let v = verify(&acme, &evidence, &DOMAIN.to_uppercase(), &node.policy());
        assert!(v.verified, "{:#?}", v.checks);
        assert_eq!(names(&v), EVIDENCE_CHECKS);
        assert_eq!(v.tee, Some(Tee::Simulation));
        assert_eq!(
            check(&v, "report_data_binding").detail,
            format!(
                "REPORTDATA binds the key of the certificate served on {}",
                DOMAIN.to_uppercase()
            )
        );
        assert_eq!(check(&v, "mr_enclave").status, Status::Skipped);

        let expected = Policy {
            mr_enclave: Some(fingerprint(&input)),
            ..node.policy()
        };
        let v = verify(&acme, &evidence, DOMAIN, &expected);
        assert!(v.verified, "{:#?}", v.checks);
        assert_eq!(check(&v, "mr_enclave").status, Status::Passed);
    }

    #[test]
    fn an_rsa_owner_certificate_verifies_with_a_quote_binding_its_key() {
        let rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let pem = rsa.to_pkcs8_pem(Default::default()).unwrap();
        let key = rcgen::KeyPair::from_pem(&pem).unwrap();
        let owner = issued_for(&key);
        let input = input(TlsOrigin::Owner { leaf_der: &owner });
        let node = Node::new(fingerprint(&input));
        let evidence = Evidence::new(&node.quote_for(&owner), None, &input);

        let v = verify(&owner, &evidence, DOMAIN, &node.policy());
        assert!(v.verified, "{:#?}", v.checks);
        assert_eq!(names(&v), EVIDENCE_CHECKS);
        assert!(
            check(&v, "evidence_inputs").detail.contains("owner mode"),
            "{}",
            check(&v, "evidence_inputs").detail
        );
    }

    #[test]
    fn a_certificate_with_another_key_fails_the_binding_naming_what_serves_it() {
        let input = input(TlsOrigin::Acme);
        let node = Node::new(fingerprint(&input));
        let node_cert = issued_for(&rcgen::KeyPair::generate().unwrap());
        let evidence = Evidence::new(&node.quote_for(&node_cert), None, &input);
        let proxy_cert = issued_for(&rcgen::KeyPair::generate().unwrap());

        let v = verify(&proxy_cert, &evidence, DOMAIN, &node.policy());
        assert!(!v.verified);
        assert_eq!(names(&v), EVIDENCE_CHECKS);
        let binding = check(&v, "report_data_binding");
        assert_eq!(binding.status, Status::Failed);
        assert_eq!(
            binding.detail,
            format!(
                "the key of the certificate served on {DOMAIN} is not the one the node's quote \
                 binds: the certificate is served by something other than the attested node (for \
                 example the proxy)"
            )
        );
        assert_eq!(check(&v, "quote_signature").status, Status::Passed);

        let v = verify(b"not a certificate", &evidence, DOMAIN, &node.policy());
        let binding = check(&v, "report_data_binding");
        assert_eq!(binding.status, Status::Failed);
        assert!(
            binding.detail.starts_with(&format!(
                "the certificate served on {DOMAIN}: certificate: not an X.509"
            )),
            "{}",
            binding.detail
        );
    }

    #[test]
    fn inputs_that_do_not_recompute_to_mrenclave_fail_evidence_inputs() {
        let input = input(TlsOrigin::Acme);
        let node = Node::new(fingerprint(&input));
        let cert = issued_for(&rcgen::KeyPair::generate().unwrap());
        let mut other = input.clone();
        other.code_sha256 = [8; 32];
        let evidence = Evidence::new(&node.quote_for(&cert), None, &other);

        let v = verify(&cert, &evidence, DOMAIN, &node.policy());
        assert!(!v.verified);
        let inputs = check(&v, "evidence_inputs");
        assert_eq!(inputs.status, Status::Failed);
        assert_eq!(
            inputs.detail,
            format!(
                "the fingerprint {} recomputed from fingerprint_input is not the quote's \
                 MRENCLAVE {}",
                hex::encode(fingerprint(&other)),
                hex::encode(fingerprint(&input))
            )
        );
        assert_eq!(check(&v, "report_data_binding").status, Status::Passed);
    }

    #[test]
    fn evidence_for_another_domain_fails_evidence_inputs() {
        let input = input(TlsOrigin::Acme);
        let node = Node::new(fingerprint(&input));
        let cert = issued_for(&rcgen::KeyPair::generate().unwrap());
        let evidence = Evidence::new(&node.quote_for(&cert), None, &input);

        let v = verify(&cert, &evidence, "other.example.com", &node.policy());
        assert!(!v.verified);
        let inputs = check(&v, "evidence_inputs");
        assert_eq!(inputs.status, Status::Failed);
        assert_eq!(
            inputs.detail,
            format!("fingerprint_input is for the domain `{DOMAIN}`, not `other.example.com`")
        );
    }

    #[test]
    fn a_simulated_quote_is_refused_unless_simulation_is_allowed() {
        let input = input(TlsOrigin::Acme);
        let node = Node::new(fingerprint(&input));
        let cert = issued_for(&rcgen::KeyPair::generate().unwrap());
        let evidence = Evidence::new(&node.quote_for(&cert), None, &input);
        let strict = Policy {
            allow_simulation: false,
            ..node.policy()
        };

        let v = verify(&cert, &evidence, DOMAIN, &strict);
        assert!(!v.verified);
        assert_eq!(v.tee, None);
        let signature = check(&v, "quote_signature");
        assert_eq!(signature.status, Status::Failed);
        assert!(
            signature
                .detail
                .contains("refused unless simulation is allowed"),
            "{}",
            signature.detail
        );
    }

    #[test]
    fn evidence_whose_quote_does_not_decode_fails_every_check() {
        let mut evidence = Evidence::new(b"quote", None, &input(TlsOrigin::Acme));
        let cert = issued_for(&rcgen::KeyPair::generate().unwrap());
        for quote in ["not base64!", "AAAA"] {
            evidence.quote = quote.into();
            let v = verify(&cert, &evidence, DOMAIN, &Policy::default());
            assert!(!v.verified);
            assert_eq!(names(&v), EVIDENCE_CHECKS);
            assert!(v.checks.iter().all(|c| c.status == Status::Failed));
            assert_eq!(check(&v, "evidence_inputs").detail, "no quote to check");
        }
    }
}
