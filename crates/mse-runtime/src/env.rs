//! Cached virtual environments, one per spec digest, built once under a
//! file lock so two processes never build the same one at once.

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use fs4::fs_std::FileExt;
use sha2::{Digest, Sha256};

use crate::{ImageSpec, RuntimeError};

/// Names the `uv` binary to build environments with (else `uv` on `PATH`).
pub const UV_ENV: &str = "MSE_UV";
/// Names the folder environments are cached in.
pub const CACHE_DIR_ENV: &str = "MSE_CACHE_DIR";

/// Where environments are cached when nothing says otherwise:
/// `$MSE_CACHE_DIR`, else `$XDG_CACHE_HOME/mse`, else `~/.cache/mse`. The
/// client's `mse test` and the platform share it.
pub fn default_cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var(CACHE_DIR_ENV) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("mse");
    }
    var("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
        .join(".cache")
        .join("mse")
}

/// The tool that installs packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installer {
    /// `uv` (much faster on a cold cache; docs/catalog.md has the numbers).
    Uv(PathBuf),
    /// The environment's own `pip`.
    Pip,
}

impl Installer {
    /// `$MSE_UV` (`pip` forces pip), else `uv` on `PATH`, else pip.
    pub fn detect() -> Self {
        match std::env::var_os(UV_ENV).filter(|v| !v.is_empty()) {
            Some(v) if v == "pip" => Installer::Pip,
            Some(v) => Installer::Uv(PathBuf::from(v)),
            None => uv_on_path().map_or(Installer::Pip, Installer::Uv),
        }
    }

    /// A command-line choice: `pip`, `uv` (found on `PATH`), or the path
    /// of a uv binary.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "pip" => Ok(Installer::Pip),
            "uv" => uv_on_path()
                .map(Installer::Uv)
                .ok_or_else(|| "no `uv` on PATH (pip install uv, or name its path)".to_string()),
            path if is_executable(Path::new(path)) => Ok(Installer::Uv(PathBuf::from(path))),
            path => Err(format!(
                "`{path}` is not `uv`, `pip` or the path of an executable uv binary"
            )),
        }
    }

    /// The choice as [`Installer::parse`] reads it back.
    pub fn as_arg(&self) -> std::ffi::OsString {
        match self {
            Installer::Uv(path) => path.clone().into_os_string(),
            Installer::Pip => "pip".into(),
        }
    }

    /// Its name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Installer::Uv(_) => "uv",
            Installer::Pip => "pip",
        }
    }

    /// The program to allow in a sandbox that runs it, if not the
    /// environment's Python.
    pub fn program(&self) -> Option<&Path> {
        match self {
            Installer::Uv(path) => Some(path),
            Installer::Pip => None,
        }
    }

    /// `install` into the environment of `python`, quiet, never prompting.
    fn install(&self, python: &Path) -> Command {
        match self {
            Installer::Uv(uv) => {
                let mut command = Command::new(uv);
                command
                    .args(["pip", "install", "--quiet", "--no-config", "--python"])
                    .arg(python);
                command
            }
            Installer::Pip => {
                let mut command = Command::new(python);
                command.args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-input",
                ]);
                command
            }
        }
    }
}

fn uv_on_path() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("uv"))
            .find(|uv| is_executable(uv))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A built environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Its interpreter.
    pub python: PathBuf,
    /// The spec digest.
    pub digest: String,
}

/// Where environments are built: `<cache>/envs/<digest>/`.
#[derive(Debug, Clone)]
pub struct EnvCache {
    root: PathBuf,
    interpreter: String,
    installer: Installer,
}

impl EnvCache {
    /// A cache under `root`, building with `python3` (or `$PYTHON`) and the
    /// detected installer.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        EnvCache {
            root: root.into(),
            interpreter: std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string()),
            installer: Installer::detect(),
        }
    }

    /// The same cache, installing with `installer`.
    pub fn with_installer(mut self, installer: Installer) -> Self {
        self.installer = installer;
        self
    }

    /// The installer it uses.
    pub fn installer(&self) -> &Installer {
        &self.installer
    }

    /// Its folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn env_dir(&self, spec: &ImageSpec) -> PathBuf {
        self.root.join("envs").join(spec.digest())
    }

    /// Whether the environment of `spec` is built already.
    pub fn is_ready(&self, spec: &ImageSpec) -> bool {
        self.env_dir(spec).join(".ready").exists()
    }

    /// The environment for `spec`, built on first use. `progress` is told
    /// when a build starts (it takes a while).
    pub fn ensure(
        &self,
        spec: &ImageSpec,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Environment, RuntimeError> {
        let digest = spec.digest();
        let dir = self.env_dir(spec);
        let python = dir.join("venv/bin/python");
        let ready = dir.join(".ready");
        if ready.exists() {
            return Ok(Environment { python, digest });
        }
        let build = |e: std::io::Error| RuntimeError::Build(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(build)?;
        let lock = lock(&dir.join(".lock"))?;
        if !ready.exists() {
            progress(&format!(
                "building the Python environment of {} with {} (once)",
                spec.reference,
                self.installer.name()
            ));
            check_python_version(&self.interpreter, &spec.python)?;
            let venv = dir.join("venv");
            let _ = std::fs::remove_dir_all(&venv);
            let mut create = Command::new(&self.interpreter);
            create.args(["-m", "venv"]);
            if matches!(self.installer, Installer::Uv(_)) {
                // uv installs everything; pip in the venv would be unlocked.
                create.arg("--without-pip");
            }
            run(create.arg(&venv)).map_err(|e| match e {
                RuntimeError::Build(m) => RuntimeError::Build(format!(
                    "{m} (is the venv module installed? on Debian: apt-get install python3-venv)"
                )),
                other => other,
            })?;
            if !spec.packages.is_empty() {
                let lock_file = dir.join("lock.txt");
                std::fs::write(&lock_file, spec.lock_file()).map_err(build)?;
                let mut install = self.installer.install(&python);
                install
                    .args(["--require-hashes", "--no-deps", "-r"])
                    .arg(&lock_file);
                if matches!(self.installer, Installer::Uv(_)) {
                    // As pip does: apps, which cannot write the shared
                    // environment, then start without compiling it each time.
                    install.arg("--compile-bytecode");
                }
                run(&mut install)?;
            }
            std::fs::write(&ready, &digest).map_err(build)?;
        }
        drop(lock);
        Ok(Environment { python, digest })
    }

    /// Installs an app's `requirements.txt` into a folder of its own (keyed by
    /// the environment and the requirements), to put on `PYTHONPATH`.
    ///
    /// The installer reads a copy of the file kept beside that folder and
    /// runs in it; `confine` gets the command, the folder it installs into
    /// and an empty scratch folder (its home and temporary folder, removed
    /// after) before it runs (a node confines it as it confines the app: the
    /// installer runs the packages' build code, and the file is the
    /// tenant's). Once installed, the folder is given to the owner of the
    /// cache and made read-only for everyone else, whoever ran the
    /// installer: every app of the same requirements shares it.
    pub fn requirements(
        &self,
        env: &Environment,
        requirements: &Path,
        progress: &mut dyn FnMut(&str),
        confine: &mut dyn FnMut(&mut Command, &Path, &Path) -> Result<(), String>,
    ) -> Result<PathBuf, RuntimeError> {
        let text = std::fs::read(requirements)
            .map_err(|e| RuntimeError::Build(format!("{}: {e}", requirements.display())))?;
        let mut h = Sha256::new();
        h.update(env.digest.as_bytes());
        h.update(&text);
        let dir = self
            .root
            .join("requirements")
            .join(hex::encode(h.finalize()));
        let ready = dir.join(".ready");
        // `.sealed`: made the cache owner's after the install (an install
        // of an earlier version, which left it to its installer, is sealed
        // on its next use).
        let sealed = dir.join(".sealed");
        if ready.exists() && sealed.exists() {
            return Ok(dir.join("site"));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::Build(format!("{}: {e}", dir.display())))?;
        let lock = lock(&dir.join(".lock"))?;
        if !ready.exists() {
            progress(&format!("installing {}", requirements.display()));
            let site = dir.join("site");
            let _ = std::fs::remove_dir_all(&site);
            let _ = std::fs::remove_file(&sealed);
            let copy = dir.join("requirements.txt");
            let build = |e: std::io::Error| RuntimeError::Build(format!("{}: {e}", dir.display()));
            std::fs::write(&copy, &text).map_err(build)?;
            std::fs::create_dir_all(&site).map_err(build)?;
            let installer = match &self.installer {
                // An environment built by pip has pip; one built by uv needs uv.
                Installer::Pip if !has_pip(&env.python) => {
                    return Err(RuntimeError::Build(format!(
                        "{} has no pip (it was built with uv): set {UV_ENV} to the uv binary",
                        env.python.display()
                    )))
                }
                installer => installer,
            };
            let mut install = installer.install(&env.python);
            install
                .current_dir(&site)
                .arg("--target")
                .arg(&site)
                .arg("-r")
                .arg(&copy);
            if matches!(installer, Installer::Uv(_)) {
                install.arg("--no-cache");
            }
            let scratch = dir.join("scratch");
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::create_dir_all(&scratch).map_err(build)?;
            confine(&mut install, &site, &scratch).map_err(RuntimeError::Build)?;
            let installed = run(&mut install);
            let _ = std::fs::remove_dir_all(&scratch);
            installed?;
            std::fs::write(&ready, b"")
                .map_err(|e| RuntimeError::Build(format!("{}: {e}", ready.display())))?;
        }
        if !sealed.exists() {
            let build = |e: std::io::Error| RuntimeError::Build(format!("{}: {e}", dir.display()));
            let owner = std::fs::metadata(&dir).map_err(build)?;
            seal(&dir.join("site"), owner.uid(), owner.gid()).map_err(build)?;
            std::fs::write(&sealed, b"").map_err(build)?;
        }
        drop(lock);
        Ok(dir.join("site"))
    }
}

/// Gives `path` and everything under it to `uid`:`gid`, without a write
/// bit for the group or others, nor a set-user-ID or set-group-ID bit.
fn seal(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o755;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            seal(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn has_pip(python: &Path) -> bool {
    python.parent().and_then(Path::parent).is_some_and(|venv| {
        std::fs::read_dir(venv.join("lib")).is_ok_and(|mut dirs| {
            dirs.any(|d| d.is_ok_and(|d| d.path().join("site-packages/pip").is_dir()))
        })
    })
}

fn lock(path: &Path) -> Result<File, RuntimeError> {
    let file =
        File::create(path).map_err(|e| RuntimeError::Build(format!("{}: {e}", path.display())))?;
    file.lock_exclusive()
        .map_err(|e| RuntimeError::Build(format!("cannot lock {}: {e}", path.display())))?;
    Ok(file)
}

fn check_python_version(interpreter: &str, wanted: &str) -> Result<(), RuntimeError> {
    let output = Command::new(interpreter)
        .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        .output()
        .map_err(|e| {
            RuntimeError::Build(format!("cannot run {interpreter}: {e} (install Python 3)"))
        })?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if version == wanted || version.starts_with(&format!("{wanted}.")) {
        Ok(())
    } else {
        Err(RuntimeError::Build(format!(
            "the image needs Python {wanted}, but {interpreter} is {version} (set $PYTHON to a \
             Python {wanted} interpreter)"
        )))
    }
}

fn run(command: &mut Command) -> Result<(), RuntimeError> {
    let output = command
        .output()
        .map_err(|e| RuntimeError::Build(format!("cannot run {:?}: {e}", command.get_program())))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        Err(RuntimeError::Build(format!(
            "{:?} failed ({}):\n{}",
            command.get_program(),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )))
    }
}
