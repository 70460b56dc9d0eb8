//! A node in a TDX or SEV-SNP guest, up to the hardware boundary: the
//! configfs-tsm provider asks an emulated configfs-tsm (a mounted file
//! system answering in the hardware's formats, signed under test roots) for
//! the evidence of its RA-TLS certificate, and the verifier checks that
//! certificate as `mse verify` does: key binding, debug, the runtime's
//! reference measurements, the app's fingerprint in REPORTDATA[32..64], the
//! vendor chain and the TCB.

use std::sync::{Arc, OnceLock};

use chrono::{Duration, Utc};
use mse_attest::hardware::{Endorsements, Trust};
use mse_attest::provider::{TsmKind, TsmProvider};
use mse_attest::snp::Chain;
use mse_attest::verify::{verify_certificate_with, Policy, Reference, Status, Tee, Verification};
use mse_testkit::tee::configfs::EmulatedTsm;
use mse_testkit::tee::intel::{self, EmulatedIntel, TdxGuest};
use mse_testkit::tee::snp::{self as emulated, EmulatedSnp, SnpGuest};

const FINGERPRINT: [u8; 32] = [0xF1; 32];
const MR_TD: [u8; 48] = [0x7D; 48];
const RTMRS: [[u8; 48]; 4] = [[0x10; 48], [0x11; 48], [0x12; 48], [0; 48]];
const MEASUREMENT: [u8; 48] = [0x5E; 48];

fn intel() -> Arc<EmulatedIntel> {
    EmulatedIntel::shared()
}

fn amd() -> Arc<EmulatedSnp> {
    static AMD: OnceLock<Arc<EmulatedSnp>> = OnceLock::new();
    AMD.get_or_init(|| {
        let tcb = emulated::Tcb {
            bootloader: 4,
            tee: 0,
            snp: 22,
            microcode: 213,
            fmc: None,
        };
        Arc::new(EmulatedSnp::new("Milan", tcb, [0xC1; 64]).unwrap())
    })
    .clone()
}

fn tdx_reference() -> Reference {
    let mut measurements = vec![("mr_td".to_string(), hex::encode(MR_TD))];
    for (i, rtmr) in RTMRS[..3].iter().enumerate() {
        measurements.push((format!("rtmr{i}"), hex::encode(rtmr)));
    }
    Reference {
        tee: Tee::Tdx,
        name: "tdx reference of the test image".into(),
        measurements,
    }
}

fn snp_reference() -> Reference {
    Reference {
        tee: Tee::SevSnp,
        name: "sev-snp reference of the test image".into(),
        measurements: vec![
            ("measurement".into(), hex::encode(MEASUREMENT)),
            ("policy".into(), "0x30000".into()),
        ],
    }
}

/// The policy `mse verify` applies to an app of this fingerprint, trusting
/// the emulated roots.
fn policy(reference: Reference) -> Policy {
    Policy {
        mr_enclave: Some(FINGERPRINT),
        trust: Trust::Test {
            intel_root_der: Some(intel().root_der()),
            amd_ark_ders: vec![amd().ark_der()],
        },
        references: vec![reference],
        snp_min_tcb: Some(mse_attest::snp::Tcb {
            bootloader: 4,
            tee: 0,
            snp: 22,
            microcode: 213,
            fmc: None,
        }),
        ..Policy::default()
    }
}

fn tdx_endorsements() -> Endorsements {
    let json = intel().collateral_json(intel::Tee::Tdx).unwrap();
    Endorsements::read(Tee::Tdx, json.as_bytes()).unwrap()
}

fn snp_endorsements() -> Endorsements {
    Endorsements::Snp(Chain::from_auxblob(&amd().auxblob()).unwrap())
}

/// An RA-TLS certificate made in the guest through configfs-tsm.
fn certificate(tsm: &EmulatedTsm, kind: TsmKind, fingerprint: [u8; 32]) -> Vec<u8> {
    let provider = TsmProvider::new(tsm.root(), kind, fingerprint);
    let now = Utc::now();
    mse_attest::ratls::create(
        "app.example",
        now + Duration::hours(4),
        None,
        &provider,
        now,
    )
    .unwrap()
    .cert_der
}

fn tdx_guest(td_attributes: [u8; 8]) -> TdxGuest {
    TdxGuest {
        intel: intel(),
        mr_td: MR_TD,
        rtmrs: RTMRS,
        td_attributes,
    }
}

fn snp_guest(policy: u64) -> SnpGuest {
    SnpGuest {
        snp: amd(),
        measurement: MEASUREMENT,
        policy,
    }
}

fn failed(v: &Verification) -> Vec<&str> {
    v.checks
        .iter()
        .filter(|c| c.status == Status::Failed)
        .map(|c| c.name)
        .collect()
}

fn names(v: &Verification) -> Vec<&str> {
    v.checks.iter().map(|c| c.name).collect()
}

const VM_CHECKS: [&str; 7] = [
    "quote_present",
    "report_data_binding",
    "debug_disabled",
    "runtime_measurements",
    "fingerprint",
    "quote_signature",
    "tcb",
];

#[test]
fn a_tdx_node_verifies_under_the_test_root_only_and_is_reported_emulated() {
    let test = "a_tdx_node_verifies_under_the_test_root_only_and_is_reported_emulated";
    let Some(tsm) = EmulatedTsm::for_test(test, tdx_guest(intel::TD_ATTRIBUTES)) else {
        return;
    };
    let cert = certificate(&tsm, TsmKind::Tdx, FINGERPRINT);
    let endorsements = tdx_endorsements();
    let v = verify_certificate_with(
        &cert,
        &policy(tdx_reference()),
        Ok(&endorsements),
        Utc::now(),
    );
    assert!(v.verified, "{:?}", v.failures());
    assert_eq!(names(&v), VM_CHECKS);
    assert_eq!(v.tee, Some(Tee::Tdx));
    assert!(v.emulated, "a test root is reported as emulated");
    assert_eq!(
        v.measurements.get("mr_td").map(String::as_str),
        Some(&*hex::encode(MR_TD))
    );
    assert_eq!(v.tcb_status.as_deref(), Some("UpToDate"));

    // Under Intel's real root, the same evidence is refused.
    let vendors = Policy {
        trust: Trust::Vendors,
        ..policy(tdx_reference())
    };
    let v = verify_certificate_with(&cert, &vendors, Ok(&endorsements), Utc::now());
    assert_eq!(failed(&v), ["quote_signature", "tcb"], "{:?}", v.failures());
    assert!(!v.emulated);
}

#[test]
fn a_tdx_node_for_another_fingerprint_or_runtime_or_in_debug_is_refused_naming_the_check() {
    let test =
        "a_tdx_node_for_another_fingerprint_or_runtime_or_in_debug_is_refused_naming_the_check";
    let Some(tsm) = EmulatedTsm::for_test(test, tdx_guest(intel::TD_ATTRIBUTES)) else {
        return;
    };
    let endorsements = tdx_endorsements();
    // Evidence made for another app's fingerprint.
    let other = certificate(&tsm, TsmKind::Tdx, [0xAB; 32]);
    let v = verify_certificate_with(
        &other,
        &policy(tdx_reference()),
        Ok(&endorsements),
        Utc::now(),
    );
    assert_eq!(failed(&v), ["fingerprint"], "{:?}", v.failures());

    // Another runtime image: RTMR2 differs from the reference.
    let cert = certificate(&tsm, TsmKind::Tdx, FINGERPRINT);
    let mut reference = tdx_reference();
    reference.measurements[3].1 = hex::encode([0x99; 48]);
    let v = verify_certificate_with(&cert, &policy(reference), Ok(&endorsements), Utc::now());
    assert_eq!(failed(&v), ["runtime_measurements"], "{:?}", v.failures());
    assert!(v.failures()[0].contains("rtmr2"), "{:?}", v.failures());

    // No reference at all: refused, saying so.
    let unreferenced = Policy {
        references: Vec::new(),
        ..policy(tdx_reference())
    };
    let v = verify_certificate_with(&cert, &unreferenced, Ok(&endorsements), Utc::now());
    assert_eq!(failed(&v), ["runtime_measurements"]);

    // An SNP reference for TDX evidence.
    let v = verify_certificate_with(
        &cert,
        &policy(snp_reference()),
        Ok(&endorsements),
        Utc::now(),
    );
    assert_eq!(failed(&v), ["runtime_measurements"]);
    drop(tsm);

    // A debug TD (TD attribute bit 0).
    let mut debug = intel::TD_ATTRIBUTES;
    debug[0] |= 1;
    let Some(tsm) = EmulatedTsm::for_test(test, tdx_guest(debug)) else {
        return;
    };
    let cert = certificate(&tsm, TsmKind::Tdx, FINGERPRINT);
    let v = verify_certificate_with(
        &cert,
        &policy(tdx_reference()),
        Ok(&endorsements),
        Utc::now(),
    );
    assert!(failed(&v).contains(&"debug_disabled"), "{:?}", v.failures());
    assert!(!v.verified);
}

#[test]
fn an_sev_snp_node_verifies_under_the_test_ark_with_the_chain_of_its_auxblob() {
    let test = "an_sev_snp_node_verifies_under_the_test_ark_with_the_chain_of_its_auxblob";
    let Some(tsm) = EmulatedTsm::for_test(test, snp_guest(0x3_0000)) else {
        return;
    };
    let cert = certificate(&tsm, TsmKind::SevSnp, FINGERPRINT);
    let endorsements = snp_endorsements();
    let v = verify_certificate_with(
        &cert,
        &policy(snp_reference()),
        Ok(&endorsements),
        Utc::now(),
    );
    assert!(v.verified, "{:?}", v.failures());
    assert_eq!(names(&v), VM_CHECKS);
    assert_eq!(v.tee, Some(Tee::SevSnp));
    assert!(v.emulated);
    assert_eq!(v.tcb_status.as_deref(), Some("UpToDate"));
    assert_eq!(
        v.tcb_components.as_deref(),
        Some("bl=4 tee=0 snp=22 ucode=213")
    );
    assert_eq!(
        v.measurements.get("measurement").map(String::as_str),
        Some(&*hex::encode(MEASUREMENT))
    );

    // Another app's fingerprint; AMD's real ARKs; a higher minimum TCB.
    let other = certificate(&tsm, TsmKind::SevSnp, [0xAB; 32]);
    let v = verify_certificate_with(
        &other,
        &policy(snp_reference()),
        Ok(&endorsements),
        Utc::now(),
    );
    assert_eq!(failed(&v), ["fingerprint"]);
    let vendors = Policy {
        trust: Trust::Vendors,
        ..policy(snp_reference())
    };
    let v = verify_certificate_with(&cert, &vendors, Ok(&endorsements), Utc::now());
    assert_eq!(failed(&v), ["quote_signature", "tcb"], "{:?}", v.failures());
    let stricter = Policy {
        snp_min_tcb: Some(mse_attest::snp::Tcb {
            bootloader: 4,
            tee: 0,
            snp: 23,
            microcode: 213,
            fmc: None,
        }),
        ..policy(snp_reference())
    };
    let v = verify_certificate_with(&cert, &stricter, Ok(&endorsements), Utc::now());
    assert_eq!(failed(&v), ["tcb"], "{:?}", v.failures());
    // Intel's collateral is no chain for a report.
    let v = verify_certificate_with(
        &cert,
        &policy(snp_reference()),
        Ok(&tdx_endorsements()),
        Utc::now(),
    );
    assert_eq!(failed(&v), ["quote_signature", "tcb"]);
}

#[test]
fn an_sev_snp_guest_whose_policy_allows_debugging_is_refused() {
    let test = "an_sev_snp_guest_whose_policy_allows_debugging_is_refused";
    let Some(tsm) = EmulatedTsm::for_test(test, snp_guest(0x3_0000 | 1 << 19)) else {
        return;
    };
    let cert = certificate(&tsm, TsmKind::SevSnp, FINGERPRINT);
    let mut reference = snp_reference();
    reference.measurements.truncate(1);
    let v = verify_certificate_with(
        &cert,
        &policy(reference),
        Ok(&snp_endorsements()),
        Utc::now(),
    );
    assert_eq!(failed(&v), ["debug_disabled"], "{:?}", v.failures());
}
