//! `mse validate`: everything that can be checked without a server.

use std::path::PathBuf;

use serde::Serialize;

use crate::commands::{check_config, print_diagnostics};
use crate::exit::{CmdResult, Failure};
use crate::render;

/// Arguments of `mse validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file [default: ./mse.toml]
    #[arg(long, value_name = "FILE")]
    path: Option<PathBuf>,
    /// Check as for a deployment whose TLS is terminated by the platform: [ssl] is ignored
    #[arg(long)]
    untrusted_ssl: bool,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    path: &'a std::path::Path,
    errors: Vec<&'a mse_config::Diagnostic>,
    warnings: Vec<&'a mse_config::Diagnostic>,
    config: Option<&'a mse_config::AppConfig>,
}

/// Checks the image against the platform's catalog, as deploy does: an
/// image deploy would refuse makes the file invalid here too. Returns the
/// catalog's origin when it approves the image.
fn check_image(report: &mut mse_config::Report) -> Result<Option<String>, Failure> {
    let Some(config) = &report.config else {
        return Ok(None);
    };
    let current = crate::catalog::for_local_use()?;
    if let Some(note) = &current.note {
        eprintln!("note: {note}");
    }
    if let Err(e) = current.catalog.find(&config.code.docker) {
        let mut diagnostic = mse_config::Diagnostic::new(
            mse_config::Severity::Error,
            "code.docker",
            match e {
                mse_runtime::RuntimeError::UnknownImage(image, _) => {
                    format!("`{image}` is not approved by {}", current.origin)
                }
                other => other.to_string(),
            },
        );
        diagnostic.help = Some(format!(
            "use one of the approved images: {}",
            current.catalog.suggest(&config.code.docker).join(", ")
        ));
        report.diagnostics.push(diagnostic);
        report.config = None;
        return Ok(None);
    }
    Ok(Some(current.origin))
}

/// Runs `mse validate`.
pub fn run(args: Args) -> CmdResult {
    let mut report = match check_config(args.path.as_deref(), args.untrusted_ssl) {
        Ok(report) => report,
        Err(Failure::Invalid(message)) if args.json => {
            let path = crate::commands::absolute(
                args.path
                    .as_deref()
                    .unwrap_or(mse_config::FILE_NAME.as_ref()),
            )?;
            let json = serde_json::json!({
                "valid": false,
                "path": path,
                "errors": [{"key": "", "message": message, "line": null, "column": null, "help": null}],
                "warnings": [],
                "config": null,
            });
            outln!("{json:#}")?;
            return Err(Failure::Reported);
        }
        Err(other) => return Err(other),
    };
    let approved_by = check_image(&mut report)?;
    if args.json {
        let json = JsonReport {
            valid: report.is_valid(),
            path: &report.path,
            errors: report.errors().collect(),
            warnings: report.warnings().collect(),
            config: report.config.as_ref(),
        };
        let text = serde_json::to_string_pretty(&json)
            .map_err(|e| Failure::Other(anyhow::anyhow!("cannot encode the report: {e}")))?;
        outln!("{text}")?;
        return if report.is_valid() {
            Ok(())
        } else {
            Err(Failure::Reported)
        };
    }
    print_diagnostics(&report);
    match &report.config {
        Some(config) => {
            outln!("{} is valid\n", report.path.display())?;
            out!("{}", render::config_summary(config))?;
            if let Some(origin) = approved_by {
                outln!("  {:<20}approved by {origin}", "image")?;
            }
            Ok(())
        }
        None => {
            let errors = report.errors().count();
            let warnings = report.warnings().count();
            eprintln!(
                "{} {} is invalid: {errors} error{}{}",
                render::error_prefix(),
                report.path.display(),
                if errors == 1 { "" } else { "s" },
                match warnings {
                    0 => String::new(),
                    1 => ", 1 warning".to_string(),
                    n => format!(", {n} warnings"),
                }
            );
            Err(Failure::Reported)
        }
    }
}
