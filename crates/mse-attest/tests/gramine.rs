//! A node in an SGX enclave under Gramine, up to the hardware boundary: the
//! Gramine provider asks an emulated `/dev/attestation` (a mounted file
//! system giving SGX quotes of the enclave, signed by an emulated Intel
//! platform) for its RA-TLS certificate's quote, and the verifier checks it
//! as `mse verify` does: MRENCLAVE must be the measurement, replayed from
//! the catalog's manifest template and layout, of the enclave built for the
//! app's fingerprint. Whatever runs in the enclave may choose REPORTDATA,
//! but every quote carries the enclave's own MRENCLAVE: one built for
//! another app's fingerprint is never accepted for it.

use std::sync::Arc;

use chrono::{Duration, Utc};
use mse_attest::enclave::SgxEnclave;
use mse_attest::hardware::{Endorsements, Trust};
use mse_attest::provider::{GramineProvider, QuoteProvider};
use mse_attest::verify::{
    verify_certificate_with, EnclaveReference, Policy, Status, Tee, Verification,
};
use mse_testkit::tee::gramine::{EmulatedAttestation, Enclave};
use mse_testkit::tee::intel::{self, EmulatedIntel};
use mse_testkit::tee::loader;

/// The app's fingerprint, set in its enclave's manifest.
const FINGERPRINT: [u8; 32] = [0xF1; 32];
const MR_SIGNER: [u8; 32] = [0x5E; 32];
const ENCLAVE_SIZE: u64 = 1 << 30;

/// The signed manifest of an image's enclaves, the fingerprint zeros.
fn template() -> String {
    format!(
        "[libos]\nentrypoint = \"/mse/bin/mse-run\"\n\n[loader.env]\nMSE_FINGERPRINT = \"{}\"\n\n\
         [sgx]\ndebug = false\nenclave_size = \"1G\"\n",
        "0".repeat(64)
    )
}

/// The catalog's enclave of the image: template and a Gramine-like layout.
fn published() -> SgxEnclave {
    let layout = loader::example_layout(ENCLAVE_SIZE, template().len());
    SgxEnclave {
        enclave_size: "1G".into(),
        manifest: template(),
        layout: serde_json::from_value(layout).unwrap(),
    }
}

/// MRENCLAVE of the enclave built for `fingerprint`, as the emulated
/// loader measures it (independently of `mse-attest`).
fn built_for(fingerprint: [u8; 32]) -> [u8; 32] {
    let manifest = mse_attest::enclave::render_manifest(&template(), &fingerprint).unwrap();
    let layout = loader::example_layout(ENCLAVE_SIZE, template().len());
    loader::measure(&layout, manifest.as_bytes()).unwrap()
}

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
        sgx_enclaves: vec![EnclaveReference {
            name: "sgx reference of the image (1G)".into(),
            enclave: published(),
            replayed: None,
        }],
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
fn the_replay_of_the_catalogs_enclave_is_what_the_loader_measures() {
    for fingerprint in [FINGERPRINT, [0; 32], [0xBA; 32]] {
        assert_eq!(
            published().mr_enclave(&fingerprint).unwrap(),
            built_for(fingerprint)
        );
    }
    assert_ne!(built_for(FINGERPRINT), built_for([0xBA; 32]));
    assert!(
        published().problems().is_empty(),
        "{:?}",
        published().problems()
    );
}

#[test]
fn an_enclave_built_for_the_app_verifies_under_the_test_root_only() {
    let test = "an_enclave_built_for_the_app_verifies_under_the_test_root_only";
    let Some(device) = device(test, built_for(FINGERPRINT)) else {
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
    assert_eq!(
        v.mr_enclave.as_deref(),
        Some(&*hex::encode(built_for(FINGERPRINT)))
    );
    assert_eq!(device.served().len(), 1);

    // Under Intel's real root the same quote is refused.
    let v = verify_certificate_with(
        &cert.cert_der,
        &policy(FINGERPRINT, Trust::Vendors),
        Ok(&endorsements),
        now,
    );
    assert_eq!(failed(&v), ["quote_signature", "tcb"], "{:?}", v.failures());

    // A catalog that publishes no enclave of the image: nothing says which
    // enclave holds the fingerprint, and MRENCLAVE is never taken for it.
    let mut bare = policy(FINGERPRINT, test_roots());
    bare.sgx_enclaves.clear();
    let v = verify_certificate_with(&cert.cert_der, &bare, Ok(&endorsements), now);
    assert_eq!(failed(&v), ["mr_enclave"], "{:?}", v.failures());
    // Nor is an enclave whose MRENCLAVE is the fingerprint itself (the
    // simulation's rule) on hardware.
    let Some(plain) = self::device(test, FINGERPRINT) else {
        return;
    };
    let cert = mse_attest::ratls::create(
        "app.example",
        now + Duration::hours(4),
        None,
        &GramineProvider::new(plain.root()),
        now,
    )
    .unwrap();
    let v = verify_certificate_with(
        &cert.cert_der,
        &policy(FINGERPRINT, test_roots()),
        Ok(&endorsements),
        now,
    );
    assert_eq!(failed(&v), ["mr_enclave"], "{:?}", v.failures());
}

#[test]
fn an_app_choosing_reportdata_in_its_enclave_still_gets_its_own_mrenclave_only() {
    let test = "an_app_choosing_reportdata_in_its_enclave_still_gets_its_own_mrenclave_only";
    // The hostile app's own enclave, built for its own fingerprint.
    let hostile = built_for([0xBA; 32]);
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
    let Some(device) = device(test, built_for(FINGERPRINT)) else {
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

#[test]
fn the_platforms_sigstruct_is_what_einit_accepts_and_only_for_its_enclave() {
    use rsa::pkcs8::EncodePrivateKey as _;
    let key =
        rsa::RsaPrivateKey::new_with_exp(&mut rsa::rand_core::OsRng, 3072, &3u8.into()).unwrap();
    let pem = key.to_pkcs8_pem(Default::default()).unwrap();
    let mr_enclave = built_for(FINGERPRINT);
    let sig = mse_attest::enclave::sigstruct(&pem, &mr_enclave, 20261207).unwrap();
    // The emulated CPU's reading of SIGSTRUCT, independent of ours.
    let initialised = loader::einit(&sig).unwrap();
    assert_eq!(initialised.mr_enclave, mr_enclave);
    assert!(!initialised.debug);
    assert_eq!(
        initialised.mr_signer,
        mse_attest::signer::mr_signer(&rsa::RsaPublicKey::from(&key)).unwrap()
    );

    // The loader builds the enclave from the manifest it is given: a
    // SIGSTRUCT signed for the app's enclave does not start the enclave of
    // another fingerprint, and a changed SIGSTRUCT starts nothing.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout.json");
    std::fs::write(
        &layout,
        loader::example_layout(ENCLAVE_SIZE, template().len()).to_string(),
    )
    .unwrap();
    let other = mse_attest::enclave::render_manifest(&template(), &[0xBA; 32]).unwrap();
    std::fs::write(dir.path().join("app.manifest.sgx"), other).unwrap();
    std::fs::write(dir.path().join("app.sig"), &sig).unwrap();
    let run = || {
        std::process::Command::new(mse_testkit::workspace_binary("mse-emulated-gramine-sgx"))
            .arg("app")
            .current_dir(dir.path())
            .env("MSE_EMULATED_GRAMINE_LAYOUT", &layout)
            .env("MSE_EMULATED_INTEL", dir.path().join("no-platform-needed"))
            .output()
            .unwrap()
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("EINIT refused"), "{stderr}");
    let mut changed = sig.clone();
    changed[970] ^= 1;
    std::fs::write(dir.path().join("app.sig"), &changed).unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("does not verify"), "{stderr}");
}
