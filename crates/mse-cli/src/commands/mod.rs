//! One module per subcommand.

pub mod apps;
pub mod context;
pub mod deploy;
pub mod init;
pub mod login;
pub mod package;
pub mod scaffold;
pub mod test;
pub mod validate;
pub mod verify;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use mse_config::{AppConfig, Options, RealFs, Report};

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

/// Loads `mse.toml` for a command that needs a valid one: warnings are
/// printed, errors printed and turned into exit code 2.
pub fn load_valid_config(path: Option<&Path>, untrusted_ssl: bool) -> Result<AppConfig, Failure> {
    valid_config(check_config(path, untrusted_ssl)?)
}

/// The configuration of a checked file: warnings are printed, errors
/// printed and turned into exit code 2.
pub fn valid_config(report: Report) -> Result<AppConfig, Failure> {
    print_diagnostics(&report);
    match report.config {
        Some(config) => Ok(config),
        None => {
            let errors = report.errors().count();
            Err(Failure::Invalid(format!(
                "{} is invalid ({errors} error{}); see `mse validate`",
                report.path.display(),
                if errors == 1 { "" } else { "s" }
            )))
        }
    }
}

/// Asks a yes/no question on the terminal; without one, refuses and says
/// how to confirm non-interactively.
pub fn confirm(question: &str, default: bool) -> Result<bool, Failure> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(Failure::Invalid(format!(
            "{question}: there is no terminal to ask on; pass -y to confirm"
        )));
    }
    dialoguer::Confirm::new()
        .with_prompt(question)
        .default(default)
        .interact()
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot read the answer: {e}")))
}
