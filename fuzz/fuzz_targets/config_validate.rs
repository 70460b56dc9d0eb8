//! Feeds arbitrary text to the `mse.toml` validator: it must report problems,
//! never panic, whatever the input.
#![no_main]

use std::path::Path;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use mse_config::{validate, MemoryFs, Options};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the options; the rest is the file.
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let fs = MemoryFs::new()
        .file("/p/code/app.py", "app = None")
        .file("/p/code/pkg/__init__.py", "")
        .file("/p/secrets.json", "{\"a\": 1}")
        .file("/p/bad.json", "[1")
        .file("/p/cert.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        .file("/p/key.pem", "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n");
    let options = Options {
        now: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        untrusted_ssl: flags & 1 == 1,
    };
    let report = validate(Path::new("/p/mse.toml"), text, &fs, &options);
    // A report is valid exactly when it has no error.
    assert_eq!(report.is_valid(), report.errors().next().is_none());
    for diagnostic in &report.diagnostics {
        if let Some(span) = &diagnostic.span {
            assert!(span.start <= text.len() && span.end <= text.len());
        }
    }
});
