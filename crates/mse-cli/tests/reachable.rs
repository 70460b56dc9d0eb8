//! The URL `mse deploy` prints is reachable by the clients app owners and
//! users run (curl, Python `requests`, an app's own pytest suite), not only
//! by `mse` itself.

mod common;

use std::process::Command;

/// A fresh `<uuid>.localhost` name, as a local platform gives an app.
fn fresh_localhost_name() -> String {
    let hex = mse_package::CodeKey::generate().to_hex();
    format!(
        "{}-{}-{}-{}-{}.localhost",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[test]
fn python_resolves_any_localhost_name_to_the_loopback_address() {
    let name = fresh_localhost_name();
    let output = Command::new(mse_testkit::python())
        .args([
            "-c",
            "import socket, sys\n\
             infos = socket.getaddrinfo(sys.argv[1], 443, proto=socket.IPPROTO_TCP)\n\
             print(' '.join(sorted({info[4][0] for info in infos})))",
            &name,
        ])
        .output()
        .expect("python runs");
    let (stdout, stderr) = common::texts(&output);
    assert!(
        output.status.success(),
        "Python cannot resolve {name} (run ./scripts/localhost-names.sh as root): {stderr}"
    );
    assert!(
        stdout.split_whitespace().any(|a| a == "127.0.0.1"),
        "{name} resolves to {stdout}, not to 127.0.0.1"
    );
}
