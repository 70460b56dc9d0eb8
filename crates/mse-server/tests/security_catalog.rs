//! The operator's catalog at start: a broken one (unlocked pins, pip options
//! smuggled into a package line) stops the server before it serves
//! anything, naming every problem; an older default nobody edited is
//! moved to the current default; an edited one is kept as it is.

use std::time::Duration;

use mse_testkit::platform::{self, Server};
use mse_testkit::wait;

/// The default catalog of earlier versions: unpinned, unlocked.
const OLD_DEFAULT: &str = r#"# Runtime images the platform approves, each mapped to the Python environment
# that stands in for it where no container engine runs. The environment's
# digest is part of every app's fingerprint.

[[image]]
reference = "ghcr.io/cosmian/mse-flask:20230124182826"
python = "3"
packages = [
    "flask==3.1.3",
    "hypercorn==0.17.3",
    "requests==2.32.3",
]
"#;

fn server_args() -> [&'static str; 4] {
    [
        "--listen-api",
        "127.0.0.1:0",
        "--listen-proxy",
        "127.0.0.1:0",
    ]
}

#[test]
fn a_broken_catalog_stops_the_server_at_start_naming_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("catalog.toml"),
        "[[image]]\nreference = \"r\"\npython = \"3\"\npackages = [\"flask>=2\", \"-r /etc/shadow\", \
         \"flask==2.2.2 --index-url=http://198.18.0.1/\"]\n",
    )
    .unwrap();
    let mut child = platform::command(Some(&data), &server_args(), |_| {})
        .args(["--no-prepare"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait::exit(
        "the server stops on a broken catalog",
        &mut child,
        Duration::from_secs(60),
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!status.success());
    assert!(
        stderr.contains("major.minor")
            && stderr.contains("exact version")
            && stderr.contains("only `--hash=sha256:HEX` may follow the pin")
            && stderr.contains("docs/catalog.md"),
        "{stderr}"
    );
    assert!(!stdout.contains("listening"), "it served nothing: {stdout}");
}

#[test]
fn an_unedited_old_default_is_moved_to_the_current_default_and_an_edited_catalog_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The shipped default of 17 locked images, byte for byte.
    let locked_17 = include_str!("data/default-catalog-of-17-images.toml");
    for old in [OLD_DEFAULT, locked_17] {
        std::fs::write(data.join("catalog.toml"), old).unwrap();
        let server = Server::spawn(&data, &server_args());
        server.api_port(); // started
        drop(server);
        assert_eq!(
            std::fs::read_to_string(data.join("catalog.toml")).unwrap(),
            mse_runtime::DEFAULT_CATALOG
        );
    }

    let edited = format!("# the operator's own\n{}", mse_runtime::DEFAULT_CATALOG);
    std::fs::write(data.join("catalog.toml"), &edited).unwrap();
    let server = Server::spawn(&data, &server_args());
    server.api_port(); // started
    drop(server);
    assert_eq!(
        std::fs::read_to_string(data.join("catalog.toml")).unwrap(),
        edited
    );
}
