//! Arbitrary bytes as an RA-TLS certificate: verification reports failed
//! checks, never panics, and never verifies.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use mse_attest::verify::{verify_certificate, Policy};

fuzz_target!(|data: &[u8]| {
    let policy = Policy {
        mr_signer: Some([1; 32]),
        mr_enclave: Some([2; 32]),
        allow_simulation: true,
        simulation_ca: Some(b"not a CA".to_vec()),
        simulation_revoked: Some(Vec::new()),
        ..Policy::default()
    };
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let v = verify_certificate(data, &policy, Err(mse_attest::verify::NO_COLLATERAL), now);
    assert!(!v.verified);
});
