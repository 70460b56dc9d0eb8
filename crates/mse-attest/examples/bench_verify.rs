//! Verification latency per TEE, on real public evidence: an SGX quote, TDX
//! quotes (v4 and v5) and an SEV-SNP report, each with what certifies it,
//! verified at a time inside its validity. For SGX and TDX the peer is
//! dcap-qvl's own verifier on the same bytes (ours parses the evidence,
//! names every measurement and runs dcap-qvl); for SEV-SNP the peer is the
//! `sev` crate's ARK → ASK → VCEK signature checks alone (ours adds the
//! validity, AMD's root by key, the report's signature, TCB and chip id). The collateral is in memory: this is
//! `mse verify --quote` with cached collateral, or offline.
//!
//! `cargo run --release -p mse-attest --example bench_verify [ROUNDS]`
//! (default 200). Prints the median and 95th percentile of each, and exits
//! 1 when a median of ours exceeds 10 ms.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mse_attest::hardware::Endorsements;
use mse_attest::verify::{verify_raw, Policy, Tee};

fn data(path: &str) -> Vec<u8> {
    let at = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path);
    std::fs::read(&at).unwrap_or_else(|e| panic!("{}: {e}", at.display()))
}

fn time(rounds: usize, mut run: impl FnMut()) -> (Duration, Duration) {
    run();
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[rounds / 2], times[rounds * 95 / 100])
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// A time at which all of a DCAP sample's collateral is current.
fn collateral_time(collateral: &dcap_qvl::QuoteCollateralV3) -> DateTime<Utc> {
    let issued = |json: &str| -> DateTime<Utc> {
        let value: serde_json::Value = serde_json::from_str(json).expect("JSON");
        DateTime::parse_from_rfc3339(value["issueDate"].as_str().expect("issueDate"))
            .expect("a date")
            .with_timezone(&Utc)
    };
    issued(&collateral.tcb_info).max(issued(&collateral.qe_identity)) + chrono::Duration::days(1)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
        .max(20);
    let policy = Policy {
        accepted_tcb: vec![
            "ConfigurationAndSWHardeningNeeded".into(),
            "NoMinimum".into(),
        ],
        ..Policy::default()
    };
    let mut missed = false;
    println!("verify latency over {rounds} rounds (median / p95)");

    for (name, sample) in [
        ("SGX quote v3", "sgx_quote"),
        ("TDX quote v4", "tdx_quote"),
        ("TDX quote v5", "tdx_quote_td15ex"),
    ] {
        let quote = data(&format!("dcap/{sample}"));
        let json = data(&format!("dcap/{sample}_collateral.json"));
        let collateral: dcap_qvl::QuoteCollateralV3 =
            serde_json::from_slice(&json).expect("collateral");
        let now = collateral_time(&collateral);
        let tee = mse_attest::hardware::kind(&quote).expect("a quote");
        let endorsements = Endorsements::read(tee, &json).expect("collateral");
        let check = verify_raw(&quote, &policy, Ok(&endorsements), now);
        assert!(check.verified, "{name}: {:?}", check.failures());
        let (ours, ours_p95) = time(rounds, || {
            let v = verify_raw(&quote, &policy, Ok(&endorsements), now);
            assert!(v.verified);
        });
        let verifier = dcap_qvl::verify::QuoteVerifier::new_prod();
        let secs = u64::try_from(now.timestamp()).expect("after 1970");
        let (peer, peer_p95) = time(rounds, || {
            verifier
                .verify(&quote, &collateral, secs)
                .expect("verifies");
        });
        println!(
            "  {name:<16} mse verify --quote {} / {}   dcap-qvl alone {} / {}",
            ms(ours),
            ms(ours_p95),
            ms(peer),
            ms(peer_p95)
        );
        missed |= ours > Duration::from_millis(10);
    }

    let report = mse_attest::hardware::decode(&data("snp/report_milan.hex"));
    let mut pem = mse_attest::ratls::der_to_pem(&data("snp/vcek_milan.der"));
    pem.push_str(&String::from_utf8(data("snp/ask_ark_milan.pem")).expect("PEM"));
    let endorsements = Endorsements::read(Tee::SevSnp, pem.as_bytes()).expect("a chain");
    let Endorsements::Snp(chain) = &endorsements else {
        unreachable!("an SEV-SNP chain")
    };
    let now = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .expect("a date")
        .with_timezone(&Utc);
    let check = verify_raw(&report, &policy, Ok(&endorsements), now);
    assert!(check.verified, "SEV-SNP: {:?}", check.failures());
    let (ours, ours_p95) = time(rounds, || {
        assert!(verify_raw(&report, &policy, Ok(&endorsements), now).verified);
    });
    let (peer, peer_p95) = time(rounds, || {
        use sev::certs::snp::{Certificate, Verifiable as _};
        let cert = |der: &[u8]| Certificate::from_der(der).expect("a certificate");
        let (ark, ask, vcek) = (
            cert(&chain.ark_der),
            cert(&chain.ask_der),
            cert(&chain.vcek_der),
        );
        (&ark, &ark).verify().expect("self-signed");
        (&ark, &ask).verify().expect("the ASK");
        (&ask, &vcek).verify().expect("the VCEK");
    });
    println!(
        "  {:<16} mse verify --quote {} / {}   chain alone {} / {}",
        "SEV-SNP report",
        ms(ours),
        ms(ours_p95),
        ms(peer),
        ms(peer_p95)
    );
    missed |= ours > Duration::from_millis(10);
    // SGX on hardware: MRENCLAVE replayed from the catalog's template and
    // layout (a Gramine-like enclave), beside the quote's verification.
    let template = format!(
        "[loader.env]\nMSE_FINGERPRINT = \"{}\"\n[sgx]\ndebug = false\n",
        "0".repeat(64)
    );
    for (name, size) in [("1 GiB", 1u64 << 30), ("4 GiB", 4 << 30)] {
        let layout = mse_testkit::tee::loader::example_layout(size, template.len());
        let enclave = mse_attest::enclave::SgxEnclave {
            enclave_size: name.into(),
            manifest: template.clone(),
            layout: serde_json::from_value(layout).expect("a layout"),
        };
        let (ours, ours_p95) = time(rounds.min(40), || {
            enclave.mr_enclave(&[7; 32]).expect("replayed");
        });
        println!(
            "  {:<16} MRENCLAVE replay {} / {}   ({} pages, once per app and layout)",
            format!("SGX enclave {name}"),
            ms(ours),
            ms(ours_p95),
            size / 4096
        );
    }
    if missed {
        println!("a median exceeds 10 ms");
        std::process::exit(1);
    }
}
