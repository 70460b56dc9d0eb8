//! SEV-SNP verification: a real Milan report and its VCEK verified up to
//! AMD's ARK, tampered variants refused with the check that caught them,
//! and reports of the emulated hardware in `mse-testkit` verified only
//! under their test root.

use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};
use mse_attest::snp::{self, Chain, Outcome, Report, Roots, SnpFailure, Tcb};
use mse_testkit::tee::snp::{self as emulated, EmulatedSnp, ReportFields};
use x509_parser::prelude::{FromDer as _, X509Certificate};

const MILAN_REPORT_HEX: &str = include_str!("data/snp/report_milan.hex");
const MILAN_VCEK: &[u8] = include_bytes!("data/snp/vcek_milan.der");
const MILAN_ASK_ARK: &str = include_str!("data/snp/ask_ark_milan.pem");
const TURIN_VCEK: &[u8] = include_bytes!("data/snp/vcek_turin.der");
const TURIN_ASK_ARK: &str = include_str!("data/snp/ask_ark_turin.pem");

/// The DER certificates of a PEM text, in order.
fn pem_ders(text: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .map(|pem| pem.expect("PEM").contents)
        .collect()
}

/// VCEK, then the ASK and ARK of a `sev` crate chain file (ASK first).
fn chain(vcek: &[u8], ask_ark: &str) -> Chain {
    let ders = pem_ders(ask_ark);
    assert_eq!(ders.len(), 2);
    Chain {
        vcek_der: vcek.to_vec(),
        ask_der: ders[0].clone(),
        ark_der: ders[1].clone(),
    }
}

fn milan_report_bytes() -> Vec<u8> {
    hex::decode(MILAN_REPORT_HEX.trim()).expect("hex")
}

fn milan_report() -> Report {
    Report::parse(&milan_report_bytes()).expect("the Milan report parses")
}

fn milan_chain() -> Chain {
    chain(MILAN_VCEK, MILAN_ASK_ARK)
}

/// The validity of a certificate, read from it.
fn validity(der: &[u8]) -> (DateTime<Utc>, DateTime<Utc>) {
    let (_, cert) = X509Certificate::from_der(der).expect("a certificate");
    let at = |t: x509_parser::time::ASN1Time| {
        Utc.timestamp_opt(t.timestamp(), 0)
            .single()
            .expect("a time")
    };
    (
        at(cert.validity().not_before),
        at(cert.validity().not_after),
    )
}

/// A time in the middle of a VCEK's validity.
fn inside(vcek: &[u8]) -> DateTime<Utc> {
    let (from, to) = validity(vcek);
    from + (to - from) / 2
}

fn refused(result: Result<Outcome, SnpFailure>) -> SnpFailure {
    match result {
        Ok(outcome) => panic!("verified, but should have been refused: {outcome:?}"),
        Err(failure) => failure,
    }
}

#[test]
fn the_milan_report_verifies_up_to_amds_milan_ark() {
    let report = milan_report();
    let outcome = snp::verify(
        &report,
        &milan_chain(),
        &Roots::Amd,
        None,
        inside(MILAN_VCEK),
    )
    .expect("the Milan report verifies");
    assert_eq!(outcome.product, "Milan");
    assert_eq!(outcome.signing_key, "VCEK");
    assert!(!outcome.emulated);
    assert_eq!(outcome.status, "NoMinimum");
    assert_eq!(outcome.tcb, report.reported_tcb());
    assert_eq!(
        outcome.tcb,
        Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None
        }
    );
    assert_eq!(outcome.tcb.to_string(), "bl=3 tee=0 snp=8 ucode=115");
    assert_eq!(report.version(), 2);
    assert_eq!(report.vmpl(), 0);
}

#[test]
fn the_milan_report_is_up_to_date_at_its_own_tcb_and_out_of_date_below_a_higher_one() {
    let (report, chain, now) = (milan_report(), milan_chain(), inside(MILAN_VCEK));
    let tcb = report.reported_tcb();
    let outcome = snp::verify(&report, &chain, &Roots::Amd, Some(&tcb), now).expect("verifies");
    assert_eq!(outcome.status, "UpToDate");

    let higher = Tcb {
        snp: tcb.snp + 1,
        microcode: tcb.microcode + 1,
        ..tcb
    };
    let failure = refused(snp::verify(
        &report,
        &chain,
        &Roots::Amd,
        Some(&higher),
        now,
    ));
    assert_eq!(failure.check, "tcb");
    assert!(failure.detail.starts_with("OutOfDate"), "{failure}");
    assert!(failure.detail.contains("snp=8<9"), "{failure}");
    assert!(failure.detail.contains("ucode=115<116"), "{failure}");
}

#[test]
fn a_changed_byte_of_the_milan_reports_measurement_report_data_or_signature_is_refused() {
    // MEASUREMENT at 0x90, REPORT_DATA at 0x50, signature R at 0x2A0 and S at 0x2E8.
    for (what, at) in [
        ("measurement", 0x90 + 5),
        ("report data", 0x50 + 40),
        ("signature R", 0x2A0 + 3),
        ("signature S", 0x2E8 + 20),
    ] {
        let mut bytes = milan_report_bytes();
        bytes[at] ^= 0x01;
        let report = Report::parse(&bytes).expect("still a report");
        let failure = refused(snp::verify(
            &report,
            &milan_chain(),
            &Roots::Amd,
            None,
            inside(MILAN_VCEK),
        ));
        assert_eq!(failure.check, "quote_signature", "{what}: {failure}");
    }
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("found")
}

#[test]
fn a_changed_byte_of_the_vceks_signature_or_public_key_is_refused() {
    let (_, cert) = X509Certificate::from_der(MILAN_VCEK).expect("the VCEK");
    let key = cert.public_key().subject_public_key.data.to_vec();
    let signature = cert.signature_value.data.to_vec();
    let key_at = find(MILAN_VCEK, &key);
    let signature_at = find(MILAN_VCEK, &signature);

    for (what, at) in [
        ("public key", key_at + 20),
        ("signature", signature_at + signature.len() - 1),
        ("signature", signature_at + 100),
    ] {
        let mut vcek = MILAN_VCEK.to_vec();
        vcek[at] ^= 0x01;
        let failure = refused(snp::verify(
            &milan_report(),
            &chain(&vcek, MILAN_ASK_ARK),
            &Roots::Amd,
            None,
            inside(MILAN_VCEK),
        ));
        assert_eq!(failure.check, "quote_signature", "{what}: {failure}");
        assert!(
            failure.detail.contains("not signed by the ASK"),
            "{what}: {failure}"
        );
    }
}

#[test]
fn the_milan_report_is_refused_outside_its_vceks_validity() {
    let (from, to) = validity(MILAN_VCEK);
    for now in [
        from - chrono::Duration::seconds(1),
        to + chrono::Duration::days(1),
    ] {
        let failure = refused(snp::verify(
            &milan_report(),
            &milan_chain(),
            &Roots::Amd,
            None,
            now,
        ));
        assert_eq!(failure.check, "quote_signature");
        assert!(
            failure
                .detail
                .contains("the VCEK certificate is valid from"),
            "{failure}"
        );
    }
}

#[test]
fn the_milan_report_is_refused_under_test_roots_of_another_ark() {
    let other = emulator_milan().ark_der();
    let failure = refused(snp::verify(
        &milan_report(),
        &milan_chain(),
        &Roots::Test(vec![other]),
        None,
        inside(MILAN_VCEK),
    ));
    assert_eq!(failure.check, "quote_signature");
    assert!(failure.detail.contains("test ARKs"), "{failure}");
}

#[test]
fn a_self_made_ark_with_amds_names_is_refused_under_amds_roots() {
    // The emulated ARK calls itself "ARK-Milan" with AMD's other names.
    let fake_ark = emulator_milan().ark_der();
    let (_, cert) = X509Certificate::from_der(&fake_ark).expect("a certificate");
    let amd_der = milan_chain().ark_der;
    let (_, amd) = X509Certificate::from_der(&amd_der).expect("AMD's Milan ARK");
    assert_eq!(cert.subject().to_string(), amd.subject().to_string());

    let chain = Chain {
        ark_der: fake_ark,
        ..milan_chain()
    };
    let failure = refused(snp::verify(
        &milan_report(),
        &chain,
        &Roots::Amd,
        None,
        inside(MILAN_VCEK),
    ));
    assert_eq!(failure.check, "quote_signature");
    assert!(
        failure.detail.contains("does not end at AMD's ARK"),
        "{failure}"
    );
}

#[test]
fn the_milan_vcek_does_not_chain_to_turins_ark() {
    let turin = chain(TURIN_VCEK, TURIN_ASK_ARK);
    let chain = Chain {
        vcek_der: MILAN_VCEK.to_vec(),
        ..turin
    };
    let failure = refused(snp::verify(
        &milan_report(),
        &chain,
        &Roots::Amd,
        None,
        inside(MILAN_VCEK),
    ));
    assert_eq!(failure.check, "quote_signature");
    assert!(
        failure.detail.contains("not signed by the ASK"),
        "{failure}"
    );
}

#[test]
fn the_turin_vcek_chains_to_amds_turin_ark() {
    let outcome = snp::verify_chain(
        &chain(TURIN_VCEK, TURIN_ASK_ARK),
        &Roots::Amd,
        inside(TURIN_VCEK),
    )
    .expect("the Turin chain verifies");
    assert_eq!(outcome.product, "Turin");
    assert!(!outcome.emulated);
}

#[test]
fn a_real_chain_round_trips_through_pem_and_the_certificate_table() {
    let chain = milan_chain();
    assert_eq!(Chain::from_pem(&chain.to_pem()).expect("PEM"), chain);
    assert_eq!(
        Chain::from_auxblob(&chain.to_auxblob()).expect("table"),
        chain
    );
}

// Emulated hardware.

const CHIP_ID: [u8; 64] = [0x42; 64];

fn milan_tcb() -> emulated::Tcb {
    emulated::Tcb {
        bootloader: 4,
        tee: 0,
        snp: 22,
        microcode: 213,
        fmc: None,
    }
}

/// One emulated Milan for the whole test binary: RSA-4096 keys take time.
fn emulator_milan() -> &'static EmulatedSnp {
    static SNP: OnceLock<EmulatedSnp> = OnceLock::new();
    SNP.get_or_init(|| EmulatedSnp::new("Milan", milan_tcb(), CHIP_ID).expect("an emulated Milan"))
}

fn emulator_turin() -> &'static EmulatedSnp {
    static SNP: OnceLock<EmulatedSnp> = OnceLock::new();
    SNP.get_or_init(|| {
        let mut chip_id = [0; 64];
        chip_id[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let tcb = emulated::Tcb {
            fmc: Some(1),
            ..milan_tcb()
        };
        EmulatedSnp::new("Turin", tcb, chip_id).expect("an emulated Turin")
    })
}

fn test_roots(snp: &EmulatedSnp) -> Roots {
    Roots::Test(vec![snp.ark_der()])
}

#[test]
fn an_emulated_report_verifies_under_its_test_root_and_is_reported_as_emulated() {
    let snp = emulator_milan();
    let (data, measurement, host_data) = ([7; 64], [9; 48], [3; 32]);
    let bytes = snp.report(&data, &measurement, 0x3_0000, &host_data, 0);
    let report = Report::parse(&bytes).expect("the emulated report parses");
    // The parser reads what the emulator wrote, each from its own reading
    // of AMD's layout.
    assert_eq!(report.version(), 3);
    assert_eq!(report.report_data(), data);
    assert_eq!(report.measurement(), measurement);
    assert_eq!(report.host_data(), host_data);
    assert_eq!(report.policy(), 0x3_0000);
    assert!(!report.debug_allowed());
    assert_eq!(report.vmpl(), 0);
    assert_eq!(report.chip_id(), CHIP_ID);
    assert_eq!(report.cpuid().map(|(family, _, _)| family), Some(0x19));

    let chain = Chain::from_pem(&snp.chain_pem()).expect("the emulated chain");
    let min = Tcb {
        bootloader: 4,
        tee: 0,
        snp: 22,
        microcode: 213,
        fmc: None,
    };
    let outcome = snp::verify(&report, &chain, &test_roots(snp), Some(&min), Utc::now())
        .expect("the emulated report verifies under its test root");
    assert!(outcome.emulated);
    assert_eq!(outcome.product, "test");
    assert_eq!(outcome.signing_key, "VCEK");
    assert_eq!(outcome.status, "UpToDate");
    assert_eq!(outcome.tcb, min);
}

#[test]
fn an_emulated_report_is_refused_under_amds_roots() {
    let snp = emulator_milan();
    let report =
        Report::parse(&snp.report(&[0; 64], &[0; 48], 0x3_0000, &[0; 32], 0)).expect("a report");
    let chain = Chain::from_pem(&snp.chain_pem()).expect("a chain");
    let failure = refused(snp::verify(&report, &chain, &Roots::Amd, None, Utc::now()));
    assert_eq!(failure.check, "quote_signature");
    assert!(
        failure.detail.contains("does not end at AMD's ARK"),
        "{failure}"
    );
}

#[test]
fn an_emulated_report_whose_reported_tcb_differs_from_the_vceks_fails_tcb() {
    let snp = emulator_milan();
    let bytes = snp.report_with(&ReportFields {
        reported_tcb: Some(emulated::Tcb {
            snp: 23,
            ..milan_tcb()
        }),
        ..ReportFields::default()
    });
    let report = Report::parse(&bytes).expect("a report");
    let chain = Chain::from_pem(&snp.chain_pem()).expect("a chain");
    let failure = refused(snp::verify(
        &report,
        &chain,
        &test_roots(snp),
        None,
        Utc::now(),
    ));
    assert_eq!(failure.check, "tcb");
    assert_eq!(
        failure.detail,
        "the report's REPORTED_TCB is bl=4 tee=0 snp=23 ucode=213, but its VCEK certifies bl=4 tee=0 snp=22 ucode=213"
    );
}

#[test]
fn an_emulated_report_from_another_chip_than_the_vceks_fails_tcb() {
    let snp = emulator_milan();
    let bytes = snp.report_with(&ReportFields {
        chip_id: Some([0x43; 64]),
        ..ReportFields::default()
    });
    let report = Report::parse(&bytes).expect("a report");
    let chain = Chain::from_pem(&snp.chain_pem()).expect("a chain");
    let failure = refused(snp::verify(
        &report,
        &chain,
        &test_roots(snp),
        None,
        Utc::now(),
    ));
    assert_eq!(failure.check, "tcb");
    assert!(
        failure.detail.contains("is not the VCEK's hwID"),
        "{failure}"
    );
}

#[test]
fn emulated_reports_of_versions_2_3_and_5_verify() {
    let snp = emulator_milan();
    let chain = Chain::from_pem(&snp.chain_pem()).expect("a chain");
    for version in [2, 3, 5] {
        let bytes = snp.report_with(&ReportFields {
            version,
            ..ReportFields::default()
        });
        let report = Report::parse(&bytes).expect("a report");
        assert_eq!(report.version(), version);
        snp::verify(&report, &chain, &test_roots(snp), None, Utc::now())
            .unwrap_or_else(|f| panic!("version {version}: {f}"));
    }
}

#[test]
fn an_emulated_turin_reports_its_fmc_and_its_8_byte_chip_id() {
    let snp = emulator_turin();
    let report =
        Report::parse(&snp.report(&[1; 64], &[2; 48], 0x3_0000, &[0; 32], 0)).expect("a report");
    let chain = Chain::from_auxblob(&snp.auxblob()).expect("the certificate table");
    let outcome = snp::verify(&report, &chain, &test_roots(snp), None, Utc::now())
        .expect("the emulated Turin report verifies");
    assert_eq!(outcome.tcb.fmc, Some(1));
    assert_eq!(outcome.tcb.to_string(), "bl=4 tee=0 snp=22 ucode=213 fmc=1");
}

#[test]
fn the_emulators_certificate_table_and_pem_give_the_same_chain() {
    let snp = emulator_milan();
    let from_table = Chain::from_auxblob(&snp.auxblob()).expect("the certificate table");
    let from_pem = Chain::from_pem(&snp.chain_pem()).expect("PEM");
    assert_eq!(from_table, from_pem);
    assert_eq!(from_table.ark_der, snp.ark_der());
}

#[test]
fn an_emulated_report_is_refused_outside_the_emulated_vceks_validity() {
    let snp = emulator_milan();
    let report =
        Report::parse(&snp.report(&[0; 64], &[0; 48], 0x3_0000, &[0; 32], 0)).expect("a report");
    let chain = Chain::from_pem(&snp.chain_pem()).expect("a chain");
    let failure = refused(snp::verify(
        &report,
        &chain,
        &test_roots(snp),
        None,
        Utc::now() - chrono::Duration::days(1),
    ));
    assert_eq!(failure.check, "quote_signature");
}

#[test]
fn amds_kds_is_asked_for_the_chips_vcek_at_its_reported_tcb() {
    // The real Milan report: its 64-byte chip id and reported TCB.
    let report = milan_report();
    let product = snp::kds_product(&report).unwrap_or("Milan");
    let (vcek, chain) = snp::kds_paths(&report, product).unwrap();
    let tcb = report.reported_tcb();
    assert_eq!(
        vcek,
        format!(
            "/vcek/v1/Milan/{}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            hex::encode(report.chip_id()),
            tcb.bootloader,
            tcb.tee,
            tcb.snp,
            tcb.microcode
        )
    );
    assert_eq!(chain, "/vcek/v1/Milan/cert_chain");
    // What the KDS answers for it makes the chain the report verifies with.
    assert_eq!(
        Chain::from_kds(MILAN_VCEK, MILAN_ASK_ARK).unwrap(),
        milan_chain()
    );

    // Turin: 8 bytes of chip id, and the FMC's SVN.
    let turin = EmulatedSnp::new(
        "Turin",
        emulated::Tcb {
            bootloader: 1,
            tee: 2,
            snp: 3,
            microcode: 4,
            fmc: Some(5),
        },
        [0xAB; 64],
    )
    .unwrap();
    let report = Report::parse(&turin.report_with(&ReportFields::default())).unwrap();
    assert_eq!(snp::kds_product(&report), Some("Turin"));
    let (vcek, _) = snp::kds_paths(&report, "Turin").unwrap();
    assert_eq!(
        vcek,
        "/vcek/v1/Turin/abababababababab?blSPL=1&teeSPL=2&snpSPL=3&ucodeSPL=4&fmcSPL=5"
    );
    // A masked chip id, or a product the KDS does not know: refused.
    let masked = EmulatedSnp::new(
        "Milan",
        emulated::Tcb {
            bootloader: 1,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        },
        [0; 64],
    )
    .unwrap();
    let report = Report::parse(&masked.report_with(&ReportFields::default())).unwrap();
    assert!(snp::kds_paths(&report, "Milan")
        .unwrap_err()
        .to_string()
        .contains("masked"));
    assert!(snp::kds_paths(&report, "Naples").is_err());
}
