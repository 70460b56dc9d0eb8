//! One module per subcommand.

pub mod init;
pub mod scaffold;
pub mod validate;

use std::path::{Path, PathBuf};

use mse_config::{Options, RealFs, Report};

use crate::exit::Failure;
use crate::render;

/// Makes a user-given path absolute against the current directory.
pub fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    if path.is_absolute() {
        return Ok(mse_config::fs::normalize(path));
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot read the current directory: {e}")))?;
    Ok(mse_config::fs::resolve(&cwd, path))
}

/// Loads and checks `mse.toml` (or `path`), with "now" from the system clock.
pub fn check_config(path: Option<&Path>, untrusted_ssl: bool) -> Result<Report, Failure> {
    let path = absolute(path.unwrap_or(Path::new(mse_config::FILE_NAME)))?;
    if !path.exists() {
        return Err(Failure::Invalid(format!(
            "{} does not exist; create it with `mse init` or `mse scaffold NAME`, or pass --path FILE",
            path.display()
        )));
    }
    let options = Options {
        now: chrono::Utc::now(),
        untrusted_ssl,
    };
    Ok(mse_config::load(&path, &RealFs, &options))
}

/// Prints every diagnostic of a report to stderr.
pub fn print_diagnostics(report: &Report) {
    for diagnostic in &report.diagnostics {
        eprintln!(
            "{}",
            render::diagnostic(&report.path, report.text.as_deref(), diagnostic)
        );
    }
}
