//! Evidence from anyone: a quote whose unsigned signature data length was
//! changed, every truncation, many one-byte changes and random bytes given
//! as a quote or report are refused with an error, never a panic, and
//! never verify. Bounded loops over real public evidence.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use mse_attest::hardware::{self, Endorsements};
use mse_attest::verify::{verify_raw, Policy, Status, Tee};

fn data(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(path),
    )
    .unwrap()
}

/// Real evidence, what certifies it, and a time at which it verifies.
fn samples() -> Vec<(&'static str, Vec<u8>, Endorsements, DateTime<Utc>)> {
    let mut out = Vec::new();
    for sample in ["sgx_quote", "tdx_quote", "tdx_quote_td15ex"] {
        let quote = data(&format!("dcap/{sample}"));
        let json = data(&format!("dcap/{sample}_collateral.json"));
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let issued = |key: &str| {
            let inner: serde_json::Value =
                serde_json::from_str(value[key].as_str().unwrap()).unwrap();
            DateTime::parse_from_rfc3339(inner["issueDate"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc)
        };
        let at = issued("tcb_info").max(issued("qe_identity")) + Duration::days(1);
        let tee = hardware::kind(&quote).unwrap();
        out.push((sample, quote, Endorsements::read(tee, &json).unwrap(), at));
    }
    let report = hardware::decode(&data("snp/report_milan.hex"));
    let mut chain = mse_attest::ratls::der_to_pem(&data("snp/vcek_milan.der"));
    chain.push_str(std::str::from_utf8(&data("snp/ask_ark_milan.pem")).unwrap());
    let endorsements = Endorsements::read(Tee::SevSnp, chain.as_bytes()).unwrap();
    let at = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    out.push(("report_milan", report, endorsements, at));
    out
}

fn policy() -> Policy {
    Policy {
        accepted_tcb: vec![
            "ConfigurationAndSWHardeningNeeded".into(),
            "NoMinimum".into(),
        ],
        ..Policy::default()
    }
}

#[test]
fn the_real_samples_verify_so_that_the_refusals_below_mean_something() {
    for (name, bytes, endorsements, at) in samples() {
        let v = verify_raw(&bytes, &policy(), Ok(&endorsements), at);
        assert!(v.verified, "{name}: {:?}", v.failures());
    }
}

#[test]
fn every_truncation_of_real_evidence_is_refused_without_a_panic() {
    for (name, bytes, endorsements, at) in samples() {
        // A quote may end with zero padding (a fixed-size buffer): cuts
        // inside it change nothing. Every length up to the body's end, then
        // every 7th, up to the last non-zero byte.
        let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        let lengths = (0..end.min(700)).chain((700..end).step_by(7));
        for len in lengths {
            let cut = &bytes[..len];
            let _ = hardware::parse(cut);
            let v = verify_raw(cut, &policy(), Ok(&endorsements), at);
            assert!(!v.verified, "{name} cut to {len} bytes verified");
        }
    }
}

#[test]
fn one_byte_changed_anywhere_in_the_signed_part_is_never_accepted() {
    for (name, bytes, endorsements, at) in samples() {
        // The signed part: the header and body of a quote, the first 0x2A0
        // bytes of a report; every 3rd byte, and the signature's first bytes.
        let signed = if name.starts_with("report") {
            0x2A0
        } else {
            632
        };
        let positions = (0..signed.min(bytes.len()))
            .step_by(3)
            .chain(signed..(signed + 16).min(bytes.len()));
        for at_byte in positions {
            let mut changed = bytes.clone();
            changed[at_byte] ^= 0x20;
            let v = verify_raw(&changed, &policy(), Ok(&endorsements), at);
            let signature = v.checks.iter().find(|c| c.name == "quote_signature");
            let refused_by = signature.is_some_and(|c| c.status == Status::Failed)
                || v.checks[0].status == Status::Failed;
            assert!(
                !v.verified && refused_by,
                "{name} with byte {at_byte} changed: {:?}",
                v.checks
            );
        }
    }
}

#[test]
fn a_quote_whose_unsigned_signature_data_length_reaches_into_its_padding_is_refused() {
    // The TDX sample ends with zero padding; its signature data length (a
    // u32 after the 48-byte header and the 584-byte TD report) is covered
    // by no signature. Once, a longer length that reached into the padding
    // verified as if nothing had changed.
    let (_, quote, endorsements, at) = samples().remove(1);
    let field = 48 + 584;
    let length = u32::from_le_bytes(quote[field..field + 4].try_into().unwrap());
    assert!(
        quote.len() >= field + 4 + length as usize + 32,
        "the sample has padding"
    );
    for longer in [1u32, 8, 32] {
        let mut changed = quote.clone();
        changed[field..field + 4].copy_from_slice(&(length + longer).to_le_bytes());
        let v = verify_raw(&changed, &policy(), Ok(&endorsements), at);
        assert!(!v.verified, "a length {longer} bytes longer verified");
        assert_eq!(v.checks[0].name, "quote_present");
        assert_eq!(v.checks[0].status, Status::Failed, "{:?}", v.checks[0]);
        assert!(
            v.checks[0].detail.contains("a length was changed"),
            "{:?}",
            v.checks[0]
        );
    }
}

#[test]
fn random_bytes_are_no_evidence() {
    // A fixed linear congruential sequence: the same bytes every run.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u8
    };
    let (_, _, endorsements, at) = samples().remove(1);
    for len in [0usize, 1, 4, 48, 100, 632, 1184, 5000, 70_000] {
        for header in [[3u8, 0, 2, 0], [4, 0, 2, 0], [5, 0, 2, 0], [2, 0, 0, 0]] {
            let mut bytes: Vec<u8> = (0..len).map(|_| next()).collect();
            for (i, b) in header.iter().enumerate() {
                if i < bytes.len() {
                    bytes[i] = *b;
                }
            }
            let _ = hardware::parse(&bytes);
            let v = verify_raw(&bytes, &policy(), Ok(&endorsements), at);
            assert!(!v.verified, "{len} random bytes verified");
        }
    }
}
