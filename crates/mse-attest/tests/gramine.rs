//! A node in an SGX enclave under Gramine, up to the hardware boundary: the
//! Gramine provider asks an emulated `/dev/attestation` (a mounted file
//! system giving SGX quotes of the enclave, signed by an emulated Intel
//! platform) for its RA-TLS certificate's quote, and the verifier checks it
//! as `mse verify` does. Whatever runs in the enclave may choose
//! REPORTDATA, but every quote carries the enclave's own MRENCLAVE: one
//! built for another app's fingerprint is never accepted for it.

use std::sync::Arc;

use chrono::{Duration, Utc};
use mse_attest::hardware::{Endorsements, Trust};
use mse_attest::provider::{GramineProvider, QuoteProvider};
use mse_attest::verify::{verify_certificate_with, Policy, Status, Tee, Verification};
use mse_testkit::tee::gramine::{EmulatedAttestation, Enclave};
use mse_testkit::tee::intel::{self, EmulatedIntel};

/// The app's fingerprint: the MRENCLAVE of the enclave built for it.
const FINGERPRINT: [u8; 32] = [0xF1; 32];
const MR_SIGNER: [u8; 32] = [0x5E; 32];

fn intel() -> Arc<EmulatedIntel> {
    EmulatedIntel::shared()
}

fn endorsements() -> Endorsements {
    let json = intel().collateral_json(intel::Tee::Sgx).unwrap();
    Endorsements::read(Tee::Sgx, json.as_bytes()).unwrap()
}

fn policy(fingerprint: [u8; 32], trust: Trust) -> Policy {
    Policy {
        mr_signer: Some(MR_SIGNER),
        mr_enclave: Some(fingerprint),
        trust,
        ..Policy::default()
    }
}

fn test_roots() -> Trust {
    Trust::Test {
        intel_root_der: Some(intel().root_der()),
        amd_ark_ders: Vec::new(),
    }
}

fn failed(v: &Verification) -> Vec<&str> {
    v.checks
        .iter()
        .filter(|c| c.status == Status::Failed)
        .map(|c| c.name)
        .collect()
}

fn device(test: &str, mr_enclave: [u8; 32]) -> Option<EmulatedAttestation> {
    EmulatedAttestation::for_test(
        test,
        Enclave {
            intel: intel(),
            mr_enclave,
            mr_signer: MR_SIGNER,
        },
    )
}

#[test]
fn an_enclave_built_for_the_app_verifies_under_the_test_root_only() {
    let test = "an_enclave_built_for_the_app_verifies_under_the_test_root_only";
    let Some(device) = device(test, FINGERPRINT) else {
        return;
    };
    let provider = GramineProvider::new(device.root());
    assert!(provider.available());
    let now = Utc::now();
    let cert = mse_attest::ratls::create(
        "app.example",
        now + Duration::hours(4),
        None,
        &provider,
        now,
    )
    .unwrap();
    let endorsements = endorsements();
    let v = verify_certificate_with(
        &cert.cert_der,
        &policy(FINGERPRINT, test_roots()),
        Ok(&endorsements),
        now,
    );
    assert!(v.verified, "{:?}", v.failures());
    assert_eq!(v.tee, Some(Tee::Sgx));
    assert!(v.emulated, "a test root is reported as emulated");
    assert_eq!(v.mr_enclave.as_deref(), Some(&*hex::encode(FINGERPRINT)));
    assert_eq!(device.served().len(), 1);

    // Under Intel's real root the same quote is refused.
    let v = verify_certificate_with(
        &cert.cert_der,
        &policy(FINGERPRINT, Trust::Vendors),
        Ok(&endorsements),
        now,
    );
    assert_eq!(failed(&v), ["quote_signature", "tcb"], "{:?}", v.failures());
}

#[test]
fn an_app_choosing_reportdata_in_its_enclave_still_gets_its_own_mrenclave_only() {
    let test = "an_app_choosing_reportdata_in_its_enclave_still_gets_its_own_mrenclave_only";
    // The hostile app's own enclave, built for its own fingerprint.
    let hostile = [0xBA; 32];
    let Some(device) = device(test, hostile) else {
        return;
    };
    // It writes the REPORTDATA of its choice, as any code in an enclave can.
    let provider = GramineProvider::new(device.root());
    let chosen = [0x42; 64];
    let quote = provider.quote(&chosen).unwrap();
    let parsed = mse_attest::quote::Quote::parse(&quote).unwrap();
    assert_eq!(parsed.body.report_data(), chosen);
    assert_eq!(
        parsed.body.mr_enclave(),
        hostile,
        "the enclave's own measurement"
    );

    // A certificate made with it is refused for the victim's fingerprint.
    let now = Utc::now();
    let cert = mse_attest::ratls::create(
        "victim.example",
        now + Duration::hours(4),
        None,
        &provider,
        now,
    )
    .unwrap();
    let v = verify_certificate_with(
        &cert.cert_der,
        &policy(FINGERPRINT, test_roots()),
        Ok(&endorsements()),
        now,
    );
    assert_eq!(failed(&v), ["mr_enclave"], "{:?}", v.failures());
}

#[test]
fn the_device_takes_exactly_64_bytes_of_reportdata() {
    let test = "the_device_takes_exactly_64_bytes_of_reportdata";
    let Some(device) = device(test, FINGERPRINT) else {
        return;
    };
    let file = device.root().join("user_report_data");
    assert!(std::fs::write(&file, [1u8; 65]).is_err());
    assert!(std::fs::write(&file, [1u8; 10]).is_err());
    std::fs::write(&file, [7u8; 64]).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), vec![7u8; 64]);
    assert_eq!(
        std::fs::read_to_string(device.root().join("attestation_type")).unwrap(),
        "dcap"
    );
}
