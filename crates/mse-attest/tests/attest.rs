//! Attestation end to end: certificates built by the node-side code and
//! verified by the client-side code, tampered variants refused, and real SGX
//! verification with the sample quote and collateral that dcap-qvl ships.

use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};
use mse_attest::provider::{GramineProvider, QuoteProvider};
use mse_attest::quote::Quote;
use mse_attest::simulation::{SimulationCa, SimulationProvider};
use mse_attest::verify::{
    verify_certificate, Collateral, Policy, Status, Tee, Verification, NO_COLLATERAL,
};
use mse_attest::{dcap, ratls};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

fn dcap_sample_dir() -> PathBuf {
    mse_testkit::dcap_sample_dir()
}

fn sample_quote() -> Vec<u8> {
    std::fs::read(dcap_sample_dir().join("sgx_quote")).unwrap()
}

fn sample_collateral() -> Collateral {
    mse_attest::collateral::from_file(&dcap_sample_dir().join("sgx_quote_collateral.json")).unwrap()
}

fn sample_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 25, 0, 0, 0).unwrap()
}

/// A provider that returns a fixed quote, whatever REPORTDATA is asked for.
struct Fixed(Vec<u8>);

impl QuoteProvider for Fixed {
    fn quote(&self, _: &[u8; 64]) -> Result<Vec<u8>, mse_attest::AttestError> {
        Ok(self.0.clone())
    }
    fn name(&self) -> &'static str {
        "fixed"
    }
}

fn check<'a>(v: &'a Verification, name: &str) -> &'a mse_attest::verify::Check {
    v.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

#[test]
fn dcap_sample_quote_parses_with_our_parser() {
    let quote = Quote::parse(&sample_quote()).unwrap();
    assert!(quote.pck_chain_pem().is_some());
    assert!(!quote.body.debug());
}

#[test]
fn dcap_sample_has_the_expected_tcb_status_and_advisories() {
    let outcome = dcap::verify(
        &sample_quote(),
        &sample_collateral(),
        &dcap::Root::Intel,
        sample_time(),
    )
    .unwrap();
    assert_eq!(outcome.status, "ConfigurationAndSWHardeningNeeded");
    for advisory in ["INTEL-SA-00289", "INTEL-SA-00615"] {
        assert!(
            outcome.advisories.iter().any(|a| a == advisory),
            "{:?}",
            outcome.advisories
        );
    }
}

fn sample_cert_verification(policy: &Policy, collateral: &Collateral) -> Verification {
    let cert = ratls::create(
        "app.localhost",
        sample_time() + chrono::Duration::days(1),
        None,
        &Fixed(sample_quote()),
        sample_time(),
    )
    .unwrap();
    verify_certificate(&cert.cert_der, policy, Ok(collateral), sample_time())
}

#[test]
fn strict_policy_refuses_the_sample_status_and_naming_it_accepts() {
    let strict = sample_cert_verification(&Policy::default(), &sample_collateral());
    assert_eq!(check(&strict, "quote_signature").status, Status::Passed);
    assert_eq!(check(&strict, "tcb").status, Status::Failed);
    assert!(check(&strict, "tcb").detail.contains("INTEL-SA-00289"));
    assert_eq!(
        strict.tcb_status.as_deref(),
        Some("ConfigurationAndSWHardeningNeeded")
    );
    assert_eq!(strict.tee, Some(Tee::Sgx));

    let named = Policy {
        accepted_tcb: vec!["ConfigurationAndSWHardeningNeeded".into()],
        ..Policy::default()
    };
    let accepted = sample_cert_verification(&named, &sample_collateral());
    assert_eq!(check(&accepted, "tcb").status, Status::Passed);
    // The sample quote does not bind our certificate's key: the binding fails.
    assert_eq!(
        check(&accepted, "report_data_binding").status,
        Status::Failed
    );
    assert!(!accepted.verified);
}

#[test]
fn altered_quote_signature_report_body_or_collateral_is_refused() {
    let quote = sample_quote();
    let mut bad_signature = quote.clone();
    bad_signature[436 + 5] ^= 0x01;
    let mut bad_body = quote.clone();
    bad_body[48 + 64] ^= 0x01;
    for altered in [bad_signature, bad_body] {
        assert!(dcap::verify(
            &altered,
            &sample_collateral(),
            &dcap::Root::Intel,
            sample_time()
        )
        .is_err());
    }
    let mut collateral = sample_collateral();
    collateral.tcb_info = collateral
        .tcb_info
        .replacen("\"tcbLevels\"", "\"tcbLevels\" ", 1);
    assert!(dcap::verify(&quote, &collateral, &dcap::Root::Intel, sample_time()).is_err());
    let mut collateral = sample_collateral();
    collateral.qe_identity_signature[3] ^= 0x01;
    assert!(dcap::verify(&quote, &collateral, &dcap::Root::Intel, sample_time()).is_err());
}

struct Platform {
    ca: SimulationCa,
    mr_signer: [u8; 32],
}

fn platform() -> &'static Platform {
    static PLATFORM: OnceLock<Platform> = OnceLock::new();
    PLATFORM.get_or_init(|| Platform {
        ca: SimulationCa::generate(now()).unwrap(),
        mr_signer: [0x5e; 32],
    })
}

const FINGERPRINT: [u8; 32] = [0xf1; 32];

fn simulated_cert() -> ratls::RaTls {
    let p = platform();
    let provider = SimulationProvider::new(
        p.ca.issue_pck("test-host", now()).unwrap(),
        FINGERPRINT,
        p.mr_signer,
    );
    ratls::create(
        "app.localhost",
        now() + chrono::Duration::hours(4),
        Some(&[9; 32]),
        &provider,
        now(),
    )
    .unwrap()
}

fn simulation_policy() -> Policy {
    Policy {
        mr_signer: Some(platform().mr_signer),
        mr_enclave: Some(FINGERPRINT),
        allow_simulation: true,
        simulation_ca: Some(platform().ca.cert_der().to_vec()),
        simulation_revoked: Some(Vec::new()),
        ..Policy::default()
    }
}

#[test]
fn node_certificate_verifies_on_the_client_when_simulation_is_allowed() {
    let cert = simulated_cert();
    let v = verify_certificate(
        &cert.cert_der,
        &simulation_policy(),
        Err(NO_COLLATERAL),
        now(),
    );
    assert!(v.verified, "{v:#?}");
    assert_eq!(v.tee, Some(Tee::Simulation));
    assert_eq!(v.tcb_status.as_deref(), Some("Simulation"));
    assert!(check(&v, "quote_signature")
        .detail
        .contains("simulation — no hardware protection"));
    let inspected = ratls::inspect(&cert.cert_der).unwrap();
    assert_eq!(inspected.dns_names, ["app.localhost"]);
    let quote = Quote::parse(&inspected.quote_bytes).unwrap();
    assert_eq!(
        quote.body.report_data()[32..],
        [9; 32],
        "X25519 key in REPORTDATA[32..64]"
    );
}

#[test]
fn ratls_certificate_has_the_mse_shape() {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let cert = simulated_cert();
    let (_, parsed) = X509Certificate::from_der(&cert.cert_der).unwrap();
    let bc = parsed.basic_constraints().unwrap().unwrap();
    assert!(bc.value.ca && bc.critical);
    let ext = parsed
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == ratls::QUOTE_OID_STR)
        .unwrap();
    assert!(!ext.critical);
    assert_eq!(parsed.public_key().subject_public_key.data.len(), 65);
    assert_eq!(
        parsed.validity().not_after.timestamp(),
        (now() + chrono::Duration::hours(4)).timestamp()
    );
}

#[test]
fn simulated_quote_is_refused_unless_simulation_is_allowed() {
    let cert = simulated_cert();
    let policy = Policy {
        allow_simulation: false,
        ..simulation_policy()
    };
    let v = verify_certificate(&cert.cert_der, &policy, Ok(&sample_collateral()), now());
    assert!(!v.verified);
    assert_eq!(v.tee, None);
    assert!(check(&v, "quote_signature")
        .detail
        .contains("simulation — no hardware protection"));
}

#[test]
fn simulated_quote_never_verifies_as_sgx() {
    let cert = simulated_cert();
    let quote = ratls::inspect(&cert.cert_der).unwrap().quote_bytes;
    // Intel's verifier refuses it at any time, with genuine collateral.
    for at in [sample_time(), now()] {
        assert!(dcap::verify(&quote, &sample_collateral(), &dcap::Root::Intel, at).is_err());
    }
    // Whatever the policy, the client never reports it as SGX.
    for allow in [false, true] {
        let policy = Policy {
            allow_simulation: allow,
            ..simulation_policy()
        };
        let v = verify_certificate(&cert.cert_der, &policy, Ok(&sample_collateral()), now());
        assert_ne!(v.tee, Some(Tee::Sgx));
    }
}

#[test]
fn simulated_quote_is_refused_when_the_revoked_keys_are_unknown() {
    let cert = simulated_cert();
    let policy = Policy {
        simulation_revoked: None,
        ..simulation_policy()
    };
    let v = verify_certificate(&cert.cert_der, &policy, Err(NO_COLLATERAL), now());
    assert!(!v.verified);
    let signature = check(&v, "quote_signature");
    assert_eq!(signature.status, Status::Failed);
    assert!(
        signature.detail.contains("revoked quote keys is unknown"),
        "{}",
        signature.detail
    );
}

#[test]
fn simulated_quote_under_another_simulation_ca_is_refused() {
    let cert = simulated_cert();
    let other = SimulationCa::generate(now()).unwrap();
    let policy = Policy {
        simulation_ca: Some(other.cert_der().to_vec()),
        ..simulation_policy()
    };
    let v = verify_certificate(&cert.cert_der, &policy, Err(NO_COLLATERAL), now());
    assert!(!v.verified);
    assert_eq!(check(&v, "quote_signature").status, Status::Failed);
}

#[test]
fn wrong_fingerprint_or_signer_is_refused_and_missing_fingerprint_is_skipped() {
    let cert = simulated_cert();
    let v = verify_certificate(
        &cert.cert_der,
        &Policy {
            mr_enclave: Some([0; 32]),
            ..simulation_policy()
        },
        Err(NO_COLLATERAL),
        now(),
    );
    assert!(!v.verified);
    assert_eq!(check(&v, "mr_enclave").status, Status::Failed);
    let v = verify_certificate(
        &cert.cert_der,
        &Policy {
            mr_signer: Some([0; 32]),
            ..simulation_policy()
        },
        Err(NO_COLLATERAL),
        now(),
    );
    assert_eq!(check(&v, "mr_signer").status, Status::Failed);
    assert!(!v.verified);
    let v = verify_certificate(
        &cert.cert_der,
        &Policy {
            mr_enclave: None,
            ..simulation_policy()
        },
        Err(NO_COLLATERAL),
        now(),
    );
    assert_eq!(check(&v, "mr_enclave").status, Status::Skipped);
    assert!(
        v.verified,
        "a skipped fingerprint check does not fail verification"
    );
}

/// Rebuilds a certificate whose quote was altered by `alter` after signing.
fn cert_with_altered_quote(alter: impl Fn(&mut Quote)) -> Vec<u8> {
    let quote_bytes = ratls::inspect(&simulated_cert().cert_der)
        .unwrap()
        .quote_bytes;
    let mut quote = Quote::parse(&quote_bytes).unwrap();
    alter(&mut quote);
    // The altered quote goes into a new certificate: binding breaks too, but
    // what matters is that the signature check catches the change.
    ratls::create(
        "app.localhost",
        now() + chrono::Duration::hours(1),
        None,
        &Fixed(quote.to_bytes()),
        now(),
    )
    .unwrap()
    .cert_der
}

#[test]
fn tampered_simulated_quotes_are_refused() {
    type Alteration = (&'static str, Box<dyn Fn(&mut Quote)>);
    let alterations: Vec<Alteration> = vec![
        ("mr_enclave", Box::new(|q| q.body.set_mr_enclave(&[0; 32]))),
        ("signature", Box::new(|q| q.signature[10] ^= 1)),
        ("qe report", Box::new(|q| q.qe_report.0[100] ^= 1)),
        ("qe auth data", Box::new(|q| q.qe_auth_data[0] ^= 1)),
        ("attestation key", Box::new(|q| q.attestation_key[5] ^= 1)),
    ];
    for (what, alter) in alterations {
        let der = cert_with_altered_quote(alter);
        let v = verify_certificate(&der, &simulation_policy(), Err(NO_COLLATERAL), now());
        assert_eq!(
            check(&v, "quote_signature").status,
            Status::Failed,
            "{what}"
        );
        assert!(!v.verified, "{what}");
    }
}

#[test]
fn certificate_whose_key_the_quote_does_not_bind_is_refused() {
    // A genuine simulated quote, moved into a certificate with another key.
    let quote = ratls::inspect(&simulated_cert().cert_der)
        .unwrap()
        .quote_bytes;
    let der = ratls::create(
        "app.localhost",
        now() + chrono::Duration::hours(1),
        None,
        &Fixed(quote),
        now(),
    )
    .unwrap()
    .cert_der;
    let v = verify_certificate(&der, &simulation_policy(), Err(NO_COLLATERAL), now());
    assert_eq!(check(&v, "report_data_binding").status, Status::Failed);
    assert_eq!(check(&v, "quote_signature").status, Status::Passed);
    assert!(!v.verified);
}

#[test]
fn debug_enclave_is_refused() {
    let der = cert_with_altered_quote(|q| q.body.set_debug(true));
    let v = verify_certificate(&der, &simulation_policy(), Err(NO_COLLATERAL), now());
    assert_eq!(check(&v, "debug_disabled").status, Status::Failed);
    assert!(!v.verified);
}

#[test]
fn a_certificate_without_a_quote_fails_every_check() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["app.localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let v = verify_certificate(cert.der(), &simulation_policy(), Err(NO_COLLATERAL), now());
    assert_eq!(v.checks.len(), 7);
    assert!(v.checks.iter().all(|c| c.status == Status::Failed));
    assert!(check(&v, "quote_present")
        .detail
        .contains("1.2.840.113741.1337.6"));
    let garbage = verify_certificate(
        b"not a certificate",
        &simulation_policy(),
        Err(NO_COLLATERAL),
        now(),
    );
    assert!(!garbage.verified);
}

#[test]
fn sgx_quote_without_collateral_fails_signature_and_tcb_with_a_reason() {
    let v = verify_certificate(
        &ratls::create(
            "a.localhost",
            sample_time() + chrono::Duration::days(1),
            None,
            &Fixed(sample_quote()),
            sample_time(),
        )
        .unwrap()
        .cert_der,
        &Policy::default(),
        Err(NO_COLLATERAL),
        sample_time(),
    );
    assert!(check(&v, "quote_signature")
        .detail
        .contains("no collateral"));
    assert_eq!(check(&v, "tcb").status, Status::Failed);
}

#[test]
fn gramine_provider_writes_report_data_and_reads_the_quote() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform();
    let sim = SimulationProvider::new(
        p.ca.issue_pck("test-host", now()).unwrap(),
        FINGERPRINT,
        p.mr_signer,
    );
    let data = [0x42u8; 64];
    std::fs::write(dir.path().join("quote"), sim.quote(&data).unwrap()).unwrap();
    let gramine = GramineProvider::new(dir.path());
    assert!(gramine.available());
    let quote = gramine.quote(&data).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("user_report_data")).unwrap(),
        data
    );
    assert_eq!(Quote::parse(&quote).unwrap().body.report_data(), data);
    // A device that answers with a quote for other data is refused.
    assert!(gramine.quote(&[0x43; 64]).is_err());
    assert!(!GramineProvider::new(dir.path().join("missing")).available());
}

#[test]
fn collateral_cache_serves_until_next_update() {
    let dir = tempfile::tempdir().unwrap();
    let cache = mse_attest::collateral::Cache::new(dir.path());
    let quote = sample_quote();
    let next = mse_attest::collateral::next_update(&sample_collateral()).unwrap();
    let fetches = std::cell::Cell::new(0);
    let fetch = |_: &str, _: &[u8]| {
        fetches.set(fetches.get() + 1);
        Ok(sample_collateral())
    };
    cache
        .get_or_fetch("https://pccs.example", &quote, sample_time(), fetch)
        .unwrap();
    cache
        .get_or_fetch("https://pccs.example", &quote, sample_time(), fetch)
        .unwrap();
    assert_eq!(fetches.get(), 1, "the second call is served from the cache");
    cache
        .get_or_fetch("https://other.example", &quote, sample_time(), fetch)
        .unwrap();
    assert_eq!(fetches.get(), 2, "another PCCS has its own entry");
    cache
        .get_or_fetch(
            "https://pccs.example",
            &quote,
            next + chrono::Duration::seconds(1),
            fetch,
        )
        .unwrap();
    assert_eq!(fetches.get(), 3, "expired collateral is fetched again");
}

#[test]
fn mr_signer_is_the_sha256_of_the_little_endian_modulus() {
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::traits::PublicKeyParts;
    use sha2::Digest;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 3072).unwrap();
    let public = key.to_public_key();
    let mut modulus = public.n().to_bytes_be();
    modulus.reverse();
    modulus.resize(384, 0);
    let expected: [u8; 32] = sha2::Sha256::digest(&modulus).into();
    let spki = public.to_public_key_pem(Default::default()).unwrap();
    let pkcs1 = public.to_pkcs1_pem(Default::default()).unwrap();
    assert_eq!(
        mse_attest::signer::mr_signer_from_pem(&spki).unwrap(),
        expected
    );
    assert_eq!(
        mse_attest::signer::mr_signer_from_pem(&pkcs1).unwrap(),
        expected
    );
    let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .unwrap()
        .to_public_key();
    let err = mse_attest::signer::mr_signer_from_pem(
        &small.to_public_key_pem(Default::default()).unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("RSA-3072"));
    assert!(mse_attest::signer::mr_signer_from_pem("junk").is_err());
}

/// Percent-encodes a header value the way a PCCS sends issuer chains.
#[cfg(feature = "pccs")]
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A local PCCS serving the v4 API from the dcap-qvl sample collateral, for
/// a bounded number of requests. Returns its base URL and the paths it served.
#[cfg(feature = "pccs")]
fn fake_pccs(
    collateral: Collateral,
    requests: usize,
) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, paths) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let _ = seen.send(path.clone());
            let (header, body): (Option<(&str, &str)>, Vec<u8>) =
                if path.starts_with("/sgx/certification/v4/pckcrl") {
                    (
                        Some(("SGX-PCK-CRL-Issuer-Chain", &collateral.pck_crl_issuer_chain)),
                        collateral.pck_crl.clone(),
                    )
                } else if path.starts_with("/sgx/certification/v4/tcb") {
                    let body = format!(
                        "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
                        collateral.tcb_info,
                        hex::encode(&collateral.tcb_info_signature)
                    );
                    (
                        Some((
                            "SGX-TCB-Info-Issuer-Chain",
                            &collateral.tcb_info_issuer_chain,
                        )),
                        body.into_bytes(),
                    )
                } else if path.starts_with("/sgx/certification/v4/qe/identity") {
                    let body = format!(
                        "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                        collateral.qe_identity,
                        hex::encode(&collateral.qe_identity_signature)
                    );
                    (
                        Some((
                            "SGX-Enclave-Identity-Issuer-Chain",
                            &collateral.qe_identity_issuer_chain,
                        )),
                        body.into_bytes(),
                    )
                } else if path.starts_with("/sgx/certification/v4/rootcacrl") {
                    (None, hex::encode(&collateral.root_ca_crl).into_bytes())
                } else {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    continue;
                };
            let mut head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            if let Some((name, value)) = header {
                head.push_str(&format!("{name}: {}\r\n", percent_encode(value)));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (url, paths)
}

#[test]
#[cfg(feature = "pccs")]
fn collateral_fetched_from_a_pccs_v4_api_verifies_the_sample_quote() {
    let (url, paths) = fake_pccs(sample_collateral(), 8);
    let dir = tempfile::tempdir().unwrap();
    let cache = mse_attest::collateral::Cache::new(dir.path());
    let quote = sample_quote();
    let collateral = cache
        .get_or_fetch(
            &url,
            &quote,
            sample_time(),
            mse_attest::collateral::fetch_pccs,
        )
        .unwrap();
    let served: Vec<String> = paths.try_iter().collect();
    assert!(
        served
            .iter()
            .any(|p| p.starts_with("/sgx/certification/v4/tcb?fmspc=")),
        "{served:?}"
    );
    assert!(
        served
            .iter()
            .any(|p| p.starts_with("/sgx/certification/v4/qe/identity")),
        "{served:?}"
    );
    let outcome = dcap::verify(&quote, &collateral, &dcap::Root::Intel, sample_time()).unwrap();
    assert_eq!(outcome.status, "ConfigurationAndSWHardeningNeeded");
    // Served from the cache the second time: the PCCS sees no new request.
    cache
        .get_or_fetch(&url, &quote, sample_time(), |_, _| panic!("fetched again"))
        .unwrap();
}
