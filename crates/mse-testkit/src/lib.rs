//! Helpers shared by the test suites.
//!
//! [`platform`] starts the real `mse-server` binary the way an operator
//! does (a whole [`platform::Platform`] in a temporary folder, or single
//! [`platform::Server`] processes playing some roles) and reaches it the
//! way a client does. [`wait`] is every bounded wait of the tests: a
//! condition polled until it holds, failing with what it waited for and
//! what it saw last.
//!
//! [`python`] gives every test the same Python virtual environment, built once
//! from `tests/python-requirements.txt` under `target/test-python` and guarded
//! by a file lock, so parallel tests never build it twice.
//!
//! [`pebble`] runs a real ACME certificate authority, [`browser`] a real
//! headless browser, and [`tls`] makes the certificates they trust.
//! [`tee`] emulates confidential hardware: configfs-tsm, Intel's DCAP PKI
//! (SGX and TDX quotes with their collateral) and AMD's SEV-SNP reports
//! with their certificates, all under test roots.
//! [`require`] decides whether a test that needs something of the machine
//! (programs such as these, root, cgroups) runs: under `CI` it must.

// The helpers ask the C library for the uid and enter network namespaces.
#![allow(unsafe_code)]

pub mod browser;
pub mod netns;
pub mod pebble;
pub mod platform;
pub mod tee;
pub mod tls;
pub mod wait;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use fs4::fs_std::FileExt;

/// Environment variable naming a ready Python interpreter, which skips the build.
pub const PYTHON_ENV: &str = "MSE_TEST_PYTHON";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the testkit lives two levels below the workspace root")
        .to_path_buf()
}

/// The shared virtual environment's Python interpreter, built on first use.
///
/// Panics with the installer's output when it cannot be built: a test that
/// needs Python must not pass without it.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(python) = std::env::var_os(PYTHON_ENV).filter(|p| !p.is_empty()) {
                return PathBuf::from(python);
            }
            build_env("test-python", "tests/python-requirements.txt")
                .unwrap_or_else(|e| panic!("cannot build the test Python environment: {e}"))
        })
        .clone()
}

/// The `mse` command of the original platform's client, `mse-cli` 0.10.2,
/// in a Python environment of its own (its pins conflict with the shared
/// one's), built on first use from `tests/mse-cli-0.10-requirements.txt`
/// under `target/test-python-mse-cli`.
pub fn original_client() -> PathBuf {
    static MSE: OnceLock<PathBuf> = OnceLock::new();
    MSE.get_or_init(|| {
        build_env("test-python-mse-cli", "tests/mse-cli-0.10-requirements.txt")
            .unwrap_or_else(|e| panic!("cannot install mse-cli 0.10.2: {e}"))
            .with_file_name("mse")
    })
    .clone()
}

/// The `bin` folder of the shared environment (for `PATH`).
pub fn python_bin_dir() -> PathBuf {
    python()
        .parent()
        .expect("the interpreter lives in a bin folder")
        .to_path_buf()
}

/// A virtual environment under `target/NAME` with the packages of
/// `requirements` (relative to the workspace root), rebuilt when that file
/// changes; its interpreter.
fn build_env(name: &str, requirements: &str) -> Result<PathBuf, String> {
    let root = workspace_root();
    let requirements_path = root.join(requirements);
    let requirements = fs::read_to_string(&requirements_path)
        .map_err(|e| format!("{}: {e}", requirements_path.display()))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let base = target.join(name);
    fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let lock_path = base.join(".lock");
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock_exclusive()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;

    let venv = base.join("venv");
    let python = venv.join("bin/python");
    let stamp = base.join("requirements.stamp");
    if python.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(&requirements) {
        return Ok(python);
    }
    let _ = fs::remove_file(&stamp);
    let _ = fs::remove_dir_all(&venv);
    let interpreter = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    run(Command::new(&interpreter).args(["-m", "venv"]).arg(&venv)).map_err(|e| {
        format!("{e}\n(is the venv module installed? on Debian: apt-get install python3-venv)")
    })?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements_path))?;
    fs::write(&stamp, &requirements).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Whether a test runs, given what it `needs` of the machine: `Ok`, or
/// `Err` saying what is missing (a program, root, a writable cgroup).
///
/// When something is missing, the test returns early (prints that it
/// skipped, and why) on a developer's machine, but panics under `CI` (set
/// and neither empty, `0` nor `false`): there everything must be in place
/// (`scripts/test.sh` installs the programs and runs as root), and a
/// skipped test would prove nothing.
///
/// ```
/// fn a_test_that_needs_root() {
///     // SAFETY: geteuid has no preconditions.
///     let root = unsafe { libc::geteuid() } == 0;
///     if !mse_testkit::require(
///         "a_test_that_needs_root",
///         if root { Ok(()) } else { Err("not running as root".into()) },
///     ) {
///         return;
///     }
///     // … what needs root.
/// }
/// # if std::env::var_os("CI").is_none() { a_test_that_needs_root(); }
/// ```
pub fn require(test: &str, needs: Result<(), String>) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    match runs(test, needs, ci) {
        Ok(runs) => runs,
        Err(skipped) => {
            // Written straight to the standard error, which the test
            // harness does not capture, so the skip shows in a normal run.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "{skipped}");
            false
        }
    }
}

/// [`require`]'s decision: `Ok(true)` when the test runs, `Err` with the
/// line that says it skipped; panics under `ci` when something is missing.
fn runs(test: &str, needs: Result<(), String>, ci: bool) -> Result<bool, String> {
    let Err(missing) = needs else {
        return Ok(true);
    };
    assert!(
        !ci,
        "{test}: {missing} (CI is set, so the test cannot be skipped)"
    );
    Err(format!("{test}: skipped: {missing}"))
}

/// Whether every program of `programs` is on `PATH`: [`require`] with the
/// missing ones.
pub fn programs_present(test: &str, programs: &[&str]) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|program| {
            !std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
        })
        .collect();
    let needs = if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("{} missing on PATH", missing.join(", ")))
    };
    require(test, needs)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A folder for what a test leaves to look at afterwards, such as
/// screenshots (`target/test-artifacts/<name>`), created when missing.
pub fn artifacts_dir(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("test-artifacts")
        .join(name);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The `sample/` folder of the dcap-qvl crate in this build (its SGX sample
/// quote and collateral), found through `cargo metadata`.
pub fn dcap_sample_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let output = Command::new(cargo)
            .args(["metadata", "--format-version", "1"])
            .current_dir(workspace_root())
            .output()
            .expect("cargo metadata runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
        let manifest = json["packages"]
            .as_array()
            .and_then(|packages| packages.iter().find(|p| p["name"] == "dcap-qvl"))
            .and_then(|p| p["manifest_path"].as_str())
            .expect("dcap-qvl is a dependency of the workspace");
        Path::new(manifest)
            .parent()
            .expect("a manifest has a folder")
            .join("sample")
    })
    .clone()
}

/// A runtime-environment cache shared by every test (`target/test-cache`),
/// so the image environments are built once per machine, not once per test.
pub fn runtime_cache_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("test-cache")
}

/// The variables every process that builds runtime environments gets in
/// tests: the shared cache, and `uv` from the shared Python environment.
pub fn runtime_env() -> [(&'static str, PathBuf); 2] {
    [
        ("MSE_CACHE_DIR", runtime_cache_dir()),
        ("MSE_UV", python_bin_dir().join("uv")),
    ]
}

/// A binary of this workspace (`mse-run`, `mse-server`, `mse`) from the same
/// build as the running test: next to its `deps/` folder. Built with cargo
/// when missing (a test run of a single package does not build the others).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let path = profile_dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .args(["build", "--bin", name])
            .current_dir(workspace_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cannot build {name}");
    }
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// A throwaway PostgreSQL server for this test process (initdb + pg_ctl from
/// the Debian `postgresql` package, trust authentication on loopback, a
/// random port), stopped when the process exits. Returns the URL of a new,
/// empty database on it.
///
/// Panics with what to install when PostgreSQL is missing: a test that
/// needs it must not pass without it.
pub fn postgres_database() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SERVER: OnceLock<(PathBuf, u16)> = OnceLock::new();
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let (bin, port) = SERVER.get_or_init(start_postgres).clone();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let output = as_postgres(&bin.join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "postgres", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "cannot create a test database: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    format!("postgres://postgres@127.0.0.1:{port}/{name}")
}

/// [`postgres_database`], reached through the server's Unix socket instead
/// of loopback: from any network namespace of this machine.
pub fn postgres_socket_database() -> String {
    let url = postgres_database();
    let (rest, name) = url.rsplit_once('/').expect("a database URL");
    let port = rest.rsplit(':').next().expect("a port");
    let (_, data) = PG_DATA.get().expect("the server started");
    format!(
        "postgres://postgres@localhost/{name}?host={}&port={port}",
        data.display()
    )
}

/// The folder of the PostgreSQL programs.
fn postgres_bin() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|dir| dir.join("initdb").exists())
}

/// A command run as the `postgres` user when this process is root (the
/// server refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

static PG_DATA: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();

extern "C" fn stop_postgres() {
    if let Some((bin, data)) = PG_DATA.get() {
        let _ = as_postgres(&bin.join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(data)
            .arg("stop")
            .output();
        let _ = fs::remove_dir_all(data);
    }
}

fn start_postgres() -> (PathBuf, u16) {
    let bin = postgres_bin().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): \
             on Debian, apt-get install postgresql (./scripts/test.sh does it when it can)"
        )
    });
    let data = std::env::temp_dir().join(format!("mse-test-pg-{}", std::process::id()));
    let _ = fs::remove_dir_all(&data);
    fs::create_dir_all(&data).expect("a folder for the test database");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&data)
            .status()
            .expect("chown runs");
        assert!(
            status.success(),
            "cannot give the test database folder to postgres"
        );
    }
    let run = |command: &mut Command, what: &str| {
        let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            output.status.success(),
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(
        as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data),
        "initdb",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let _ = PG_DATA.set((bin.clone(), data.clone()));
    // SAFETY: registering a plain extern "C" function to run at exit.
    unsafe {
        libc::atexit(stop_postgres);
    }
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
        data.display()
    );
    run(
        as_postgres(&bin.join("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(data.join("server.log"))
            .arg("start"),
        "pg_ctl start",
    );
    (bin, port)
}

/// Every file below `dir`, recursively (folders that cannot be read are
/// skipped): what a test searches for leftovers.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Processes (not zombies) whose process group is `pgid`: an app server and
/// whatever it forked, which must all end with their node.
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command's closing parenthesis: state, ppid, pgrp.
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let fields: Vec<&str> = rest.split(' ').collect();
            fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn a_test_with_what_it_needs_runs_under_ci_and_elsewhere() {
        assert_eq!(runs("t", Ok(()), true), Ok(true));
        assert_eq!(runs("t", Ok(()), false), Ok(true));
    }

    #[test]
    fn a_test_missing_something_skips_saying_what_outside_ci() {
        assert_eq!(
            runs("t", Err("not running as root".into()), false),
            Err("t: skipped: not running as root".into())
        );
    }

    #[test]
    #[should_panic(expected = "t: not running as root (CI is set, so the test cannot be skipped)")]
    fn a_test_missing_something_fails_under_ci_saying_what() {
        let _ = runs("t", Err("not running as root".into()), true);
    }
}
