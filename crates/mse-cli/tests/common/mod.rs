//! A `TestContext` that owns a temporary home and runs the real `mse` binary
//! the way a user does.

#![allow(dead_code)]

pub mod acme;
pub mod deploy;
pub mod kept;
pub mod platform;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// The `mse` binary: Cargo's for tests, the workspace's for examples.
pub fn mse_binary() -> std::path::PathBuf {
    match option_env!("CARGO_BIN_EXE_mse") {
        Some(path) => path.into(),
        None => mse_testkit::workspace_binary("mse"),
    }
}

/// A temporary home with `MSE_CONF_PATH` inside it, and a working directory.
pub struct TestContext {
    pub root: tempfile::TempDir,
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl TestContext {
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("mse-test-")
            .tempdir()
            .expect("a temporary folder");
        std::fs::create_dir_all(root.path().join("work")).unwrap();
        std::fs::create_dir_all(root.path().join("home")).unwrap();
        TestContext { root }
    }

    /// The working directory commands run in.
    pub fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// `mse` with a clean environment, run in `work()`.
    pub fn mse(&self) -> Command {
        self.mse_in(&self.work())
    }

    /// `mse` run in `dir`.
    pub fn mse_in(&self, dir: &Path) -> Command {
        Command::from_std(self.mse_process_in(dir))
    }

    /// `mse` run in `dir`, as a plain process (to spawn, signal, stream).
    pub fn mse_process_in(&self, dir: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(mse_binary());
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root.path().join("home"))
            .env("MSE_CONF_PATH", self.root.path().join("home/conf"))
            .envs(mse_testkit::runtime_env())
            .env("NO_COLOR", "1");
        cmd
    }

    /// Replaces the temporary root in `text` with `[TEMP]`.
    pub fn filter(&self, text: &str) -> String {
        let root = self.root.path().to_string_lossy().to_string();
        text.replace(&root, "[TEMP]")
    }

    /// Runs `mse ARGS` in `dir` and panics with its output unless it succeeds.
    pub fn ok_in(&self, dir: &Path, args: &[&str]) -> Output {
        let output = self.mse_in(dir).args(args).output().unwrap();
        assert!(output.status.success(), "mse {args:?} failed: {output:?}");
        output
    }

    /// `mse scaffold NAME` in `work()`; returns the app folder.
    pub fn scaffold(&self, name: &str) -> PathBuf {
        self.ok_in(&self.work(), &["scaffold", name]);
        self.work().join(name)
    }

    pub fn write(&self, relative: &str, content: &str) -> PathBuf {
        let path = self.work().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }
}

/// Stdout and stderr of a finished command, as text.
pub fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}
