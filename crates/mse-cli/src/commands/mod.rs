//! One module per subcommand.

pub mod apps;
pub mod context;
pub mod deploy;
pub mod init;
pub mod keys;
pub mod login;
pub mod package;
pub mod policy;
pub mod rotate;
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

/// Asks a yes/no question on the terminal, unless `assume_yes` (`-y`,
/// `--yes`) already answers yes. Without a terminal to ask on, refuses with
/// the message `refusal` gives, which says which flag confirms. `default` is
/// the answer to a bare Enter; without one, only y or n answers. The lines
/// of `question` before its last are printed above the prompt.
pub fn confirm(
    assume_yes: bool,
    question: &str,
    default: Option<bool>,
    refusal: impl FnOnce() -> String,
) -> Result<bool, Failure> {
    if assume_yes {
        return Ok(true);
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(Failure::Invalid(refusal()));
    }
    let question = match question.rsplit_once('\n') {
        Some((above, last)) => {
            eprintln!("{above}");
            last
        }
        None => question,
    };
    let mut prompt = dialoguer::Confirm::new().with_prompt(question);
    if let Some(default) = default {
        prompt = prompt.default(default);
    }
    prompt
        .interact()
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot read the answer: {e}")))
}

/// [`confirm`] for a question that defaults to no, whose refusal without a
/// terminal is "QUESTION: there is no terminal to ask on; pass -y to confirm".
pub fn confirm_or_no(assume_yes: bool, question: &str) -> Result<bool, Failure> {
    confirm(assume_yes, question, Some(false), || {
        format!("{question}: there is no terminal to ask on; pass -y to confirm")
    })
}
