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

/// Runs `mse validate`.
pub fn run(args: Args) -> CmdResult {
    let report = match check_config(args.path.as_deref(), args.untrusted_ssl) {
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
            println!("{json:#}");
            return Err(Failure::Reported);
        }
        Err(other) => return Err(other),
    };
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
        println!("{text}");
        return if report.is_valid() {
            Ok(())
        } else {
            Err(Failure::Reported)
        };
    }
    print_diagnostics(&report);
    match &report.config {
        Some(config) => {
            println!("{} is valid\n", report.path.display());
            print!("{}", render::config_summary(config));
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
