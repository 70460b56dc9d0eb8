//! SGX and TDX quotes through `dcap::verify`: the real public samples that
//! dcap-qvl 0.7.1 ships (copied into `tests/data/dcap`, with its MIT
//! licence) under Intel's root, and quotes of an emulated Intel PKI
//! (`mse_testkit::tee::intel`) under its test root. Each verifies only at a
//! time inside its collateral's validity, only under its own root, and not
//! once a byte of the measurement, the report data, the signature or the
//! collateral changed.

use std::path::PathBuf;

use chrono::{DateTime, Duration, TimeZone, Utc};
use mse_attest::dcap::{self, DcapTee, Outcome, Root};
use mse_attest::verify::Collateral;
use mse_testkit::tee::intel::{self, EmulatedIntel, Tee};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/dcap")
        .join(name)
}

/// A public sample: the quote and its collateral.
struct Sample {
    quote: Vec<u8>,
    collateral: Collateral,
}

fn sample(name: &'static str) -> Sample {
    Sample {
        quote: std::fs::read(data(name)).unwrap(),
        collateral: mse_attest::collateral::from_file(&data(&format!("{name}_collateral.json")))
            .unwrap(),
    }
}

/// The samples that verify (`tdx_quote_outdated` does not, see
/// [`the_outdated_tdx_sample_matches_no_tcb_level_and_is_refused`]): the
/// refusals below are only meaningful for them.
const SAMPLES: [&str; 3] = ["sgx_quote", "tdx_quote", "tdx_quote_td15ex"];

fn json_dates(json: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let date = |key: &str| {
        DateTime::parse_from_rfc3339(value[key].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    (date("issueDate"), date("nextUpdate"))
}

fn crl_dates(der: &[u8]) -> (DateTime<Utc>, DateTime<Utc>) {
    use x509_parser::prelude::FromDer as _;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).unwrap();
    let at = |t: x509_parser::time::ASN1Time| Utc.timestamp_opt(t.timestamp(), 0).unwrap();
    (
        at(crl.tbs_cert_list.this_update),
        at(crl.tbs_cert_list.next_update.unwrap()),
    )
}

/// The window in which all of the collateral is current (TCB info, QE
/// identity, both CRLs): from the latest issue to the earliest next update.
fn validity(collateral: &Collateral) -> (DateTime<Utc>, DateTime<Utc>) {
    let windows = [
        json_dates(&collateral.tcb_info),
        json_dates(&collateral.qe_identity),
        crl_dates(&collateral.root_ca_crl),
        crl_dates(&collateral.pck_crl),
    ];
    let from = windows.iter().map(|w| w.0).max().unwrap();
    let until = windows.iter().map(|w| w.1).min().unwrap();
    assert!(from < until, "the collateral is never current at once");
    (from, until)
}

/// The middle of the collateral's validity.
fn inside(collateral: &Collateral) -> DateTime<Utc> {
    let (from, until) = validity(collateral);
    from + (until - from) / 2
}

/// Where the report body starts: after the header, and for v5 its body
/// descriptor.
fn body_at(quote: &[u8]) -> usize {
    if quote[0] == 5 {
        54
    } else {
        48
    }
}

/// Offsets of the measurement (MRENCLAVE or MRTD), the report data and
/// the quote signature (the first byte after the signature data length).
fn offsets(quote: &[u8]) -> [(&'static str, usize); 3] {
    let at = body_at(quote);
    let (tee, _, _) = dcap::inspect(quote).unwrap();
    let (measurement, report_data, body_len) = match tee {
        DcapTee::Sgx => (64, 320, 384),
        DcapTee::Tdx => {
            let len = match quote[48] {
                _ if quote[0] == 4 => 584,
                2 => 584,
                3 => 648,
                _ => 885,
            };
            (136, 520, len)
        }
    };
    [
        ("measurement", at + measurement),
        ("report data", at + report_data),
        ("quote signature", at + body_len + 4),
    ]
}

fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] ^= 0x01;
    out
}

fn verify(sample: &Sample, root: &Root) -> Result<Outcome, String> {
    dcap::verify(
        &sample.quote,
        &sample.collateral,
        root,
        inside(&sample.collateral),
    )
}

#[test]
fn real_samples_verify_under_intels_root_with_their_tee_version_and_status() {
    // (sample, TEE, version, TCB status, advisories), as dcap-qvl evaluates them.
    let expected: [(&str, DcapTee, u16, &str, &[&str]); 3] = [
        // An SGX platform (FMSPC 00A067110000) whose BIOS configuration
        // and software mitigations lag: both advisories name it.
        (
            "sgx_quote",
            DcapTee::Sgx,
            3,
            "ConfigurationAndSWHardeningNeeded",
            &["INTEL-SA-00289", "INTEL-SA-00615"],
        ),
        ("tdx_quote", DcapTee::Tdx, 4, "UpToDate", &[]),
        // Quote v5, body type 4 (TD 1.5 with the "ex" fields).
        ("tdx_quote_td15ex", DcapTee::Tdx, 5, "UpToDate", &[]),
    ];
    for (name, tee, version, status, advisories) in expected {
        let sample = sample(name);
        let outcome = verify(&sample, &Root::Intel)
            .unwrap_or_else(|e| panic!("{name} at {}: {e}", inside(&sample.collateral)));
        assert_eq!(
            (outcome.tee, outcome.version, outcome.status.as_str()),
            (tee, version, status),
            "{name}: {outcome:#?}"
        );
        assert_eq!(outcome.advisories, advisories, "{name}: {outcome:#?}");
        assert!(!outcome.emulated, "{name}");
        let (_, _, measurements) = dcap::inspect(&sample.quote).unwrap();
        assert_eq!(outcome.measurements, measurements);
        assert!(!measurements.debug, "{name}");
        match tee {
            DcapTee::Sgx => {
                assert!(measurements.mr_enclave.is_some() && measurements.mr_td.is_none());
            }
            DcapTee::Tdx => {
                assert!(measurements.mr_td.is_some() && measurements.mr_enclave.is_none());
            }
        }
        assert_eq!(
            measurements.mr_service_td.is_some(),
            name == "tdx_quote_td15ex",
            "{name}: only the TD 1.5 report has MRSERVICETD"
        );
    }
}

/// dcap-qvl's "outdated" TDX sample gives no TCB status at all: its PCK
/// certificate says CPUSVN 03 03 02 02 04 01 00 03 …, and every level of
/// the TCB info it comes with (February 2026, evaluation data number 18)
/// asks for SVN 5 in SGX component 7 (the SEAMLDR ACM). A platform below
/// every level matches none, so dcap-qvl refuses the quote (as Intel's QVL
/// reports its TCB as not supported) instead of calling it `OutOfDate`;
/// dcap-qvl's own tests only get a status from it by overriding the TCB
/// info. The refusal is about the TCB, not the signatures: changing a byte
/// of them is refused earlier, for the signature.
#[test]
fn the_outdated_tdx_sample_matches_no_tcb_level_and_is_refused() {
    let sample = sample("tdx_quote_outdated");
    let (tee, version, measurements) = dcap::inspect(&sample.quote).unwrap();
    assert_eq!((tee, version), (DcapTee::Tdx, 5));
    assert!(!measurements.debug);
    let error = verify(&sample, &Root::Intel).unwrap_err();
    assert!(error.contains("No matching TCB level found"), "{error}");
    let [_, _, (_, signature)] = offsets(&sample.quote);
    let altered = Sample {
        quote: flipped(&sample.quote, signature),
        ..self::sample("tdx_quote_outdated")
    };
    let error = verify(&altered, &Root::Intel).unwrap_err();
    assert!(error.contains("signature"), "{error}");
}

#[test]
fn real_samples_are_refused_outside_their_collateral_validity() {
    for name in SAMPLES {
        let sample = sample(name);
        let (from, until) = validity(&sample.collateral);
        for at in [from - Duration::days(2), until + Duration::days(1)] {
            let result = dcap::verify(&sample.quote, &sample.collateral, &Root::Intel, at);
            assert!(result.is_err(), "{name} at {at}: {result:?}");
        }
    }
}

#[test]
fn real_samples_are_refused_after_one_byte_of_measurement_report_data_or_signature_changes() {
    for name in SAMPLES {
        let sample = sample(name);
        for (what, at) in offsets(&sample.quote) {
            let altered = Sample {
                quote: flipped(&sample.quote, at),
                ..self::sample(name)
            };
            let error = verify(&altered, &Root::Intel).unwrap_err();
            assert!(
                error.contains("signature"),
                "{name}, {what} changed: {error}"
            );
        }
    }
}

/// A byte of a digit changed in a JSON text: still valid JSON, no longer
/// what was signed.
fn changed_digit(json: &str) -> String {
    let at = json
        .find("\"tcbEvaluationDataNumber\":")
        .map(|at| at + "\"tcbEvaluationDataNumber\":".len())
        .unwrap();
    let mut bytes = json.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    String::from_utf8(bytes).unwrap()
}

/// The sample's collateral with one byte changed, in each of its parts.
fn altered_collaterals(collateral: &Collateral) -> Vec<(&'static str, Collateral)> {
    let change = |what, edit: &dyn Fn(&mut Collateral)| {
        let mut altered = collateral.clone();
        edit(&mut altered);
        (what, altered)
    };
    vec![
        change("TCB info", &|c| c.tcb_info = changed_digit(&c.tcb_info)),
        change("TCB info signature", &|c| c.tcb_info_signature[7] ^= 1),
        change("QE identity", &|c| {
            c.qe_identity = changed_digit(&c.qe_identity);
        }),
        change("QE identity signature", &|c| {
            c.qe_identity_signature[7] ^= 1;
        }),
        change("root CA CRL", &|c| {
            let last = c.root_ca_crl.len() - 1;
            c.root_ca_crl[last] ^= 1;
        }),
        change("PCK CRL", &|c| {
            let last = c.pck_crl.len() - 1;
            c.pck_crl[last] ^= 1;
        }),
    ]
}

#[test]
fn real_samples_are_refused_after_one_byte_of_their_collateral_changes() {
    for name in SAMPLES {
        let sample = sample(name);
        let at = inside(&sample.collateral);
        for (what, collateral) in altered_collaterals(&sample.collateral) {
            let result = dcap::verify(&sample.quote, &collateral, &Root::Intel, at);
            assert!(result.is_err(), "{name}, {what} changed: {result:?}");
        }
    }
}

#[test]
fn real_samples_are_refused_under_another_root() {
    let other = EmulatedIntel::new(Utc::now()).unwrap();
    for name in SAMPLES {
        let sample = sample(name);
        let error = verify(&sample, &Root::Test(other.root_der())).unwrap_err();
        assert!(error.contains("verification failed"), "{name}: {error}");
    }
}

/// When the emulated PKI issues its collateral; tests verify an hour later.
fn issued() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
}

fn emulated_collateral(intel: &EmulatedIntel, tee: Tee) -> Collateral {
    serde_json::from_str(&intel.collateral_json(tee).unwrap()).unwrap()
}

/// `quote` verifies under the emulated root only, and not after one byte
/// of the measurement, the report data or the signature changed.
fn check_emulated(intel: &EmulatedIntel, tee: Tee, quote: &[u8]) -> Outcome {
    let collateral = emulated_collateral(intel, tee);
    let at = issued() + Duration::hours(1);
    let root = Root::Test(intel.root_der());
    let outcome = dcap::verify(quote, &collateral, &root, at).unwrap();
    assert_eq!(outcome.status, "UpToDate", "{outcome:#?}");
    assert!(outcome.advisories.is_empty(), "{outcome:#?}");
    assert!(outcome.emulated);

    let error = dcap::verify(quote, &collateral, &Root::Intel, at).unwrap_err();
    assert!(error.contains("verification failed"), "{error}");
    for (what, offset) in offsets(quote) {
        let error = dcap::verify(&flipped(quote, offset), &collateral, &root, at).unwrap_err();
        assert!(error.contains("signature"), "{what} changed: {error}");
    }
    for (what, altered) in altered_collaterals(&collateral) {
        let result = dcap::verify(quote, &altered, &root, at);
        assert!(result.is_err(), "{what} changed: {result:?}");
    }
    // The other TEE's collateral does not fit.
    let other = match tee {
        Tee::Sgx => Tee::Tdx,
        Tee::Tdx => Tee::Sgx,
    };
    let result = dcap::verify(quote, &emulated_collateral(intel, other), &root, at);
    assert!(result.is_err(), "{result:?}");
    outcome
}

#[test]
fn an_emulated_sgx_quote_verifies_under_its_test_root_only() {
    let intel = EmulatedIntel::new(issued()).unwrap();
    let body = intel::sgx_report_body(
        &[0xe1; 32],
        &[0x5e; 32],
        &intel::SGX_ATTRIBUTES,
        &[0xda; 64],
    );
    let quote = intel.sgx_quote(&body).unwrap();
    let outcome = check_emulated(&intel, Tee::Sgx, &quote);
    assert_eq!((outcome.tee, outcome.version), (DcapTee::Sgx, 3));
    let m = outcome.measurements;
    assert_eq!(m.mr_enclave, Some([0xe1; 32]));
    assert_eq!(m.mr_signer, Some([0x5e; 32]));
    assert_eq!(m.report_data, [0xda; 64]);
    assert!(!m.debug);
}

#[test]
fn an_emulated_tdx_quote_verifies_under_its_test_root_only() {
    let intel = EmulatedIntel::new(issued()).unwrap();
    let rtmrs = [[0x70; 48], [0x71; 48], [0x72; 48], [0x73; 48]];
    let body = intel::td_report_body(&[0x7d; 48], &rtmrs, &intel::TD_ATTRIBUTES, &[0xda; 64]);
    let quote = intel.tdx_quote(&body).unwrap();
    let outcome = check_emulated(&intel, Tee::Tdx, &quote);
    assert_eq!((outcome.tee, outcome.version), (DcapTee::Tdx, 4));
    let m = outcome.measurements;
    assert_eq!(m.mr_td, Some([0x7d; 48]));
    assert_eq!([m.rtmr0, m.rtmr1, m.rtmr2, m.rtmr3], rtmrs.map(Some),);
    assert_eq!(m.td_attributes, Some(intel::TD_ATTRIBUTES));
    assert_eq!(m.tee_tcb_svn, Some(intel::TEE_TCB_SVN));
    assert_eq!(m.report_data, [0xda; 64]);
    assert_eq!(m.mr_service_td, None);
    assert!(!m.debug);
}

#[test]
fn an_emulated_debug_td_is_refused() {
    let intel = EmulatedIntel::new(issued()).unwrap();
    let mut attributes = intel::TD_ATTRIBUTES;
    attributes[0] |= 0x01;
    let body = intel::td_report_body(&[0x7d; 48], &[[0; 48]; 4], &attributes, &[0; 64]);
    let quote = intel.tdx_quote(&body).unwrap();
    let (_, _, m) = dcap::inspect(&quote).unwrap();
    assert!(m.debug);
    let error = dcap::verify(
        &quote,
        &emulated_collateral(&intel, Tee::Tdx),
        &Root::Test(intel.root_der()),
        issued() + Duration::hours(1),
    )
    .unwrap_err();
    assert!(error.contains("Debug"), "{error}");
}

#[test]
fn collateral_a_node_serves_is_used_until_its_next_update_only() {
    let json = EmulatedIntel::shared().collateral_json(Tee::Tdx).unwrap();
    let now = Utc::now();
    let served = mse_attest::collateral::served(json.as_bytes(), now).expect("fresh collateral");
    let due = mse_attest::collateral::next_update(&served).unwrap();
    assert!(due > now);
    assert!(mse_attest::collateral::served(json.as_bytes(), due).is_none());
    // An SEV-SNP certificate table, or bytes, is no collateral.
    assert!(mse_attest::collateral::served(b"\x00\x01not json", now).is_none());
    assert!(mse_attest::collateral::served(b"{}", now).is_none());
}
