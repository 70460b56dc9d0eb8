//! Helpers shared by the test suites.
//!
//! [`python`] gives every test the same Python virtual environment, built once
//! from `tests/python-requirements.txt` under `target/test-python` and guarded
//! by a file lock, so parallel tests never build it twice.

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
            build_env().unwrap_or_else(|e| panic!("cannot build the test Python environment: {e}"))
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

fn build_env() -> Result<PathBuf, String> {
    let root = workspace_root();
    let requirements_path = root.join("tests/python-requirements.txt");
    let requirements = fs::read_to_string(&requirements_path)
        .map_err(|e| format!("{}: {e}", requirements_path.display()))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let base = target.join("test-python");
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
