//! Arbitrary bytes as an SGX quote: parsing must fail cleanly or give a quote
//! that serialises back to the same bytes; the simulation checks must not panic.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use mse_attest::quote::Quote;
use mse_attest::simulation;

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = Quote::parse(data) {
        assert_eq!(quote.to_bytes(), data, "parse and serialise must round-trip");
        let _ = quote.body.mr_enclave();
        let _ = quote.body.debug();
        let _ = simulation::looks_simulated(&quote);
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let _ = simulation::verify_quote(&quote, b"not a CA", &[], now);
    }
});
