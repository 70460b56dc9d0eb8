//! How an app is started in its environment: the same for `mse test` on the
//! owner's machine and for `mse-run` on a node.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Environment;

/// An app ready to start: its environment, code folder and variables.
#[derive(Debug, Clone)]
pub struct App {
    /// The interpreter of the app's environment.
    pub python: PathBuf,
    /// `module:variable`.
    pub application: String,
    /// The (decrypted) code folder: working directory and `MODULE_PATH`.
    pub module_path: PathBuf,
    /// Extra folders for `PYTHONPATH` after the code (installed requirements).
    pub extra_paths: Vec<PathBuf>,
    /// `TMP_PATH`.
    pub tmp_path: PathBuf,
    /// `SECRETS_PATH`, when the app has secrets.
    pub secrets_path: Option<PathBuf>,
    /// `HOME`, when it must be set.
    pub home: Option<PathBuf>,
    /// Start from an empty environment instead of this process's (a node:
    /// nothing of the platform's environment reaches the app).
    pub clean_env: bool,
}

/// `PATH` of an app started with a clean environment.
pub const CLEAN_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How the app server speaks to its clients.
#[derive(Debug, Clone)]
pub enum Serving {
    /// Plain HTTP.
    Plain,
    /// TLS (HTTP/1.1 and HTTP/2) with this certificate chain and key (PEM files).
    Tls {
        /// Certificate chain, PEM.
        cert: PathBuf,
        /// Private key, PEM.
        key: PathBuf,
    },
}

/// The Python snippet that imports `module` and checks it has `variable`.
const IMPORT_CHECK: &str = "import importlib, sys\n\
m = importlib.import_module(sys.argv[1])\n\
if not hasattr(m, sys.argv[2]):\n    sys.exit(f'module {sys.argv[1]} has no attribute {sys.argv[2]}')";

impl App {
    /// An app of `env` whose code is in `module_path`.
    pub fn new(env: &Environment, application: &str, module_path: &Path, tmp_path: &Path) -> Self {
        App {
            python: env.python.clone(),
            application: application.to_string(),
            module_path: module_path.to_path_buf(),
            extra_paths: Vec::new(),
            tmp_path: tmp_path.to_path_buf(),
            secrets_path: None,
            home: None,
            clean_env: false,
        }
    }

    fn python_path(&self) -> OsString {
        let mut paths = vec![self.module_path.clone()];
        paths.extend(self.extra_paths.iter().cloned());
        std::env::join_paths(paths).unwrap_or_else(|_| self.module_path.clone().into_os_string())
    }

    /// The app's interpreter, in its folder, with its variables set.
    fn python(&self) -> Command {
        let mut command = Command::new(&self.python);
        if self.clean_env {
            command
                .env_clear()
                .env("PATH", CLEAN_PATH)
                .env("LANG", "C.UTF-8");
        }
        command
            .current_dir(&self.module_path)
            .env("PYTHONPATH", self.python_path())
            .env("PYTHONUNBUFFERED", "1")
            .env("MODULE_PATH", &self.module_path)
            .env("TMP_PATH", &self.tmp_path)
            .env("TMPDIR", &self.tmp_path);
        if let Some(secrets) = &self.secrets_path {
            command.env("SECRETS_PATH", secrets);
        }
        if let Some(home) = &self.home {
            command.env("HOME", home);
        }
        command
    }

    /// A command that exits 0 when the app imports, or prints the traceback.
    pub fn import_check(&self) -> Command {
        let (module, variable) = self
            .application
            .split_once(':')
            .unwrap_or((&self.application, "app"));
        let mut command = self.python();
        command.args(["-c", IMPORT_CHECK, module, variable]);
        command
    }

    /// The app server (hypercorn; WSGI and ASGI apps alike) bound to `bind`,
    /// writing its access log to stdout and its errors to stderr. It serves
    /// in its own process: no worker process is spawned that could outlive
    /// it. hypercorn 0.15 and later do that with `--workers 0`; older ones,
    /// as in the early 2023 images, always serve from worker processes from
    /// their command line, so their worker is run directly (by a short
    /// Python script given to `python -c`).
    pub fn server(&self, bind: &str, serving: &Serving) -> Command {
        let mut command = self.python();
        if matches!(hypercorn_version(&self.python), Some((0, minor)) if minor < 15) {
            let (cert, key) = match serving {
                Serving::Tls { cert, key } => (cert.as_os_str(), key.as_os_str()),
                Serving::Plain => ("".as_ref(), "".as_ref()),
            };
            command
                .args(["-c", LEGACY_SERVER, bind, &self.application])
                .arg(cert)
                .arg(key);
            return command;
        }
        command
            .args(["-m", "hypercorn", "--workers", "0", "--bind", bind])
            .args(["--access-logfile", "-", "--error-logfile", "-"]);
        if let Serving::Tls { cert, key } = serving {
            command
                .arg("--certfile")
                .arg(cert)
                .arg("--keyfile")
                .arg(key);
        }
        command.arg(&self.application);
        command
    }
}

/// Serves with a hypercorn older than 0.15 in this process: its asyncio
/// worker, with the configuration its command line would give. Arguments:
/// bind address, `module:variable`, certificate and key (empty for plain
/// HTTP). SIGTERM stops it gracefully, as it does the command line.
const LEGACY_SERVER: &str = "import sys\n\
from hypercorn.config import Config\n\
from hypercorn.asyncio.run import asyncio_worker\n\
bind, application, cert, key = sys.argv[1:5]\n\
config = Config()\n\
config.bind = [bind]\n\
config.accesslog = '-'\n\
config.errorlog = '-'\n\
config.application_path = application\n\
if cert:\n    config.certfile = cert\n    config.keyfile = key\n\
asyncio_worker(config, config.create_sockets())";

/// `(major, minor)` of the hypercorn installed in the environment of
/// `python` (a virtual environment's `bin/python`), from its
/// `hypercorn-X.Y.Z.dist-info` folder.
fn hypercorn_version(python: &Path) -> Option<(u32, u32)> {
    let venv = python.parent()?.parent()?;
    for lib in std::fs::read_dir(venv.join("lib")).ok()?.flatten() {
        let Ok(entries) = std::fs::read_dir(lib.path().join("site-packages")) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name
                .to_str()
                .and_then(|n| n.strip_prefix("hypercorn-"))
                .and_then(|n| n.strip_suffix(".dist-info"))
            else {
                continue;
            };
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            if let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) {
                return Some((major, minor));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercorn_version_is_read_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("lib/python3.11/site-packages");
        std::fs::create_dir_all(site.join("hypercorn-0.14.3.dist-info")).unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let python = dir.path().join("bin/python");
        assert_eq!(hypercorn_version(&python), Some((0, 14)));
        std::fs::remove_dir(site.join("hypercorn-0.14.3.dist-info")).unwrap();
        std::fs::create_dir_all(site.join("hypercorn-0.17.3.dist-info")).unwrap();
        assert_eq!(hypercorn_version(&python), Some((0, 17)));
        let args = |app: &App| -> Vec<String> {
            app.server("127.0.0.1:1", &Serving::Plain)
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let env = Environment {
            python: python.clone(),
            digest: String::new(),
        };
        let app = App::new(&env, "app:app", dir.path(), dir.path());
        assert!(args(&app).windows(2).any(|w| w == ["--workers", "0"]));
        std::fs::remove_dir(site.join("hypercorn-0.17.3.dist-info")).unwrap();
        std::fs::create_dir_all(site.join("hypercorn-0.14.4.dist-info")).unwrap();
        let legacy = args(&app);
        assert_eq!(legacy[..2], ["-c".to_string(), LEGACY_SERVER.to_string()]);
        assert_eq!(legacy[2..], ["127.0.0.1:1", "app:app", "", ""]);
    }
}
