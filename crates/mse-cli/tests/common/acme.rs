//! A platform whose ACME CA is a real Pebble, for the ACME tests and their
//! benchmark.

use std::net::TcpListener;

use mse_testkit::pebble::{Pebble, PebbleOptions};

use super::platform::Platform;

/// A platform whose ACME CA is a Pebble validating on the proxy's port.
pub struct AcmePlatform {
    // Dropped in this order: the platform stops its nodes first.
    pub platform: Platform,
    pub pebble: Pebble,
    pub port: u16,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether Pebble and Chromium are installed (under CI they must be).
pub fn installed(test: &str) -> bool {
    let programs: Vec<&str> = mse_testkit::pebble::PROGRAMS
        .iter()
        .chain(mse_testkit::browser::PROGRAMS.iter())
        .copied()
        .collect();
    mse_testkit::programs_present(test, &programs)
}

pub fn start(lifetime: Option<u64>) -> AcmePlatform {
    let port = free_port();
    let pebble = Pebble::start(PebbleOptions::new(port, free_port())).expect("Pebble starts");
    let platform = Platform::start_with_proxy(&format!("127.0.0.1:{port}"), |c| {
        c.arg("--acme-directory")
            .arg(pebble.directory_url())
            .arg("--acme-ca-bundle")
            .arg(pebble.ca_bundle());
        if let Some(lifetime) = lifetime {
            c.args(["--acme-lifetime", &lifetime.to_string()]);
        }
    });
    AcmePlatform {
        platform,
        pebble,
        port,
    }
}
