//! Runtime environments without a container engine.
//!
//! The operator's catalog maps each approved image reference to a Python
//! environment spec (Python version and pinned packages). A spec is built once
//! into a virtual environment keyed by its digest, under a file lock so that
//! two processes never build the same one at once, and reused afterwards.
//! Apps' own `requirements.txt` go into a separate folder keyed by the spec and
//! the requirements, so the shared environment never changes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

mod app;

pub use app::{App, Serving, CLEAN_PATH};

use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The catalog shipped with the platform.
pub const DEFAULT_CATALOG: &str = include_str!("default-catalog.toml");

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The catalog file is malformed.
    #[error("runtime catalog {0}: {1}")]
    Catalog(String, String),
    /// The image is not approved.
    #[error("image `{0}` is not in the runtime catalog; approved images: {1}")]
    UnknownImage(String, String),
    /// Building an environment failed.
    #[error("cannot build the Python environment: {0}")]
    Build(String),
}

/// One approved image and the environment standing in for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The image reference, as apps name it in `code.docker`.
    pub reference: String,
    /// Python version required: `3`, `3.11`, ...
    pub python: String,
    /// Pinned packages (pip requirement lines).
    pub packages: Vec<String>,
}

impl ImageSpec {
    /// Digest of the environment spec (hex): Python version and sorted
    /// packages, length-prefixed. The image reference is not part of it.
    pub fn digest(&self) -> String {
        let mut packages = self.packages.clone();
        packages.sort();
        let mut h = Sha256::new();
        let mut field = |value: &str| {
            h.update((value.len() as u32).to_be_bytes());
            h.update(value.as_bytes());
        };
        field("mse-runtime-spec-v1");
        field(&self.python);
        for package in &packages {
            field(package);
        }
        hex::encode(h.finalize())
    }
}

/// The operator's image allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Approved images.
    #[serde(rename = "image", default)]
    pub images: Vec<ImageSpec>,
}

impl Catalog {
    /// Parses catalog text; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Self, RuntimeError> {
        let catalog: Catalog = toml::from_str(text)
            .map_err(|e| RuntimeError::Catalog(origin.into(), e.message().to_string()))?;
        for image in &catalog.images {
            if image
                .packages
                .iter()
                .any(|p| p.trim().is_empty() || p.trim_start().starts_with('-'))
            {
                return Err(RuntimeError::Catalog(
                    origin.into(),
                    format!(
                        "`{}`: packages must be requirement lines, not pip options",
                        image.reference
                    ),
                ));
            }
        }
        Ok(catalog)
    }

    /// The default catalog.
    pub fn default_catalog() -> Self {
        Catalog::parse("default", DEFAULT_CATALOG).unwrap_or(Catalog { images: Vec::new() })
    }

    /// The spec of an approved image.
    pub fn find(&self, reference: &str) -> Result<&ImageSpec, RuntimeError> {
        self.images
            .iter()
            .find(|i| i.reference == reference)
            .ok_or_else(|| {
                RuntimeError::UnknownImage(
                    reference.to_string(),
                    self.images
                        .iter()
                        .map(|i| i.reference.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
    }
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
}

impl EnvCache {
    /// A cache under `root`, building with `python3` (or `$PYTHON`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        EnvCache {
            root: root.into(),
            interpreter: std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string()),
        }
    }

    /// The environment for `spec`, built on first use. `progress` is told
    /// when a build starts (it takes a while).
    pub fn ensure(
        &self,
        spec: &ImageSpec,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Environment, RuntimeError> {
        let digest = spec.digest();
        let dir = self.root.join("envs").join(&digest);
        let python = dir.join("venv/bin/python");
        let ready = dir.join(".ready");
        if ready.exists() {
            return Ok(Environment { python, digest });
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::Build(format!("{}: {e}", dir.display())))?;
        let lock = lock(&dir.join(".lock"))?;
        if !ready.exists() {
            progress(&format!(
                "building the Python environment of {} (once)",
                spec.reference
            ));
            check_python_version(&self.interpreter, &spec.python)?;
            let venv = dir.join("venv");
            let _ = std::fs::remove_dir_all(&venv);
            run(Command::new(&self.interpreter)
                .args(["-m", "venv"])
                .arg(&venv))
            .map_err(|e| match e {
                RuntimeError::Build(m) => RuntimeError::Build(format!(
                    "{m} (is the venv module installed? on Debian: apt-get install python3-venv)"
                )),
                other => other,
            })?;
            if !spec.packages.is_empty() {
                run(pip_install(&python).args(&spec.packages))?;
            }
            std::fs::write(&ready, &digest)
                .map_err(|e| RuntimeError::Build(format!("{}: {e}", ready.display())))?;
        }
        drop(lock);
        Ok(Environment { python, digest })
    }

    /// Installs an app's `requirements.txt` into a folder of its own (keyed by
    /// the environment and the requirements), to put on `PYTHONPATH`.
    ///
    /// `pip` reads a copy of the file kept beside that folder and runs in it;
    /// `confine` gets the `pip` command and the folder it installs into
    /// before it runs (a node confines it as it confines the app: `pip` runs
    /// the packages' build code, and the file is the tenant's).
    pub fn requirements(
        &self,
        env: &Environment,
        requirements: &Path,
        progress: &mut dyn FnMut(&str),
        confine: &mut dyn FnMut(&mut Command, &Path) -> Result<(), String>,
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
        if ready.exists() {
            return Ok(dir.join("site"));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::Build(format!("{}: {e}", dir.display())))?;
        let lock = lock(&dir.join(".lock"))?;
        if !ready.exists() {
            progress(&format!("installing {}", requirements.display()));
            let site = dir.join("site");
            let _ = std::fs::remove_dir_all(&site);
            let copy = dir.join("requirements.txt");
            let build = |e: std::io::Error| RuntimeError::Build(format!("{}: {e}", dir.display()));
            std::fs::write(&copy, &text).map_err(build)?;
            std::fs::create_dir_all(&site).map_err(build)?;
            let mut pip = pip_install(&env.python);
            pip.current_dir(&site)
                .arg("--target")
                .arg(&site)
                .arg("-r")
                .arg(&copy);
            confine(&mut pip, &site).map_err(RuntimeError::Build)?;
            run(&mut pip)?;
            std::fs::write(&ready, b"")
                .map_err(|e| RuntimeError::Build(format!("{}: {e}", ready.display())))?;
        }
        drop(lock);
        Ok(dir.join("site"))
    }
}

/// `python -m pip install`, quiet and never prompting.
fn pip_install(python: &Path) -> Command {
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
    let matches = version == wanted || version.starts_with(&format!("{wanted}."));
    if matches {
        Ok(())
    } else {
        Err(RuntimeError::Build(format!(
            "the image needs Python {wanted}, but {interpreter} is {version}"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_approves_the_seed_image() {
        let catalog = Catalog::default_catalog();
        let spec = catalog
            .find("ghcr.io/cosmian/mse-flask:20230124182826")
            .unwrap();
        assert!(spec.packages.iter().any(|p| p.starts_with("flask==")));
        assert!(spec.packages.iter().any(|p| p.starts_with("hypercorn==")));
    }

    #[test]
    fn unknown_images_are_refused_with_the_approved_list() {
        let err = Catalog::default_catalog()
            .find("ghcr.io/x/y:1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not in the runtime catalog") && err.contains("mse-flask"),
            "{err}"
        );
    }

    #[test]
    fn digest_depends_on_the_environment_not_on_package_order_or_reference() {
        let a = ImageSpec {
            reference: "r1".into(),
            python: "3".into(),
            packages: vec!["a==1".into(), "b==2".into()],
        };
        let b = ImageSpec {
            reference: "r2".into(),
            python: "3".into(),
            packages: vec!["b==2".into(), "a==1".into()],
        };
        assert_eq!(a.digest(), b.digest());
        let c = ImageSpec {
            packages: vec!["a==1".into(), "b==3".into()],
            ..a.clone()
        };
        assert_ne!(a.digest(), c.digest());
        let d = ImageSpec {
            python: "3.12".into(),
            ..a.clone()
        };
        assert_ne!(a.digest(), d.digest());
    }

    #[test]
    fn catalogs_with_pip_options_or_unknown_keys_are_refused() {
        assert!(Catalog::parse("t", "[[image]]\nreference = \"r\"\npython = \"3\"\npackages = [\"--index-url=http://evil\"]\n").is_err());
        assert!(Catalog::parse(
            "t",
            "[[image]]\nreference = \"r\"\npython = \"3\"\npackages = []\nextra = 1\n"
        )
        .is_err());
    }
}
