//! Human output: diagnostics with source snippets, and the resolved configuration.

use std::io::IsTerminal;
use std::path::Path;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource};
use mse_config::datetime::display_utc;
use mse_config::{AppConfig, Diagnostic, Expiry, Severity};

/// Width diagnostics are wrapped at, so output does not depend on the terminal.
const WIDTH: usize = 100;

/// True when stderr is a terminal and colours are wanted.
pub fn color_enabled() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `error:`, in red on a terminal.
pub fn error_prefix() -> &'static str {
    if color_enabled() {
        "\x1b[1;31merror:\x1b[0m"
    } else {
        "error:"
    }
}

/// `warning:`, in yellow on a terminal.
pub fn warning_prefix() -> &'static str {
    if color_enabled() {
        "\x1b[1;33mwarning:\x1b[0m"
    } else {
        "warning:"
    }
}

/// A byte count for people: `1.5 MB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Left-aligned columns separated by two spaces; the first row is the header.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Renders one diagnostic of the file at `path` whose text is `text`.
pub fn diagnostic(path: &Path, text: Option<&str>, diagnostic: &Diagnostic) -> String {
    let mut message = diagnostic.message.clone();
    let last_segment = diagnostic.key.rsplit('.').next().unwrap_or_default();
    if !diagnostic.key.is_empty() && !message.contains(last_segment) {
        message = format!("{}: {message}", diagnostic.key);
    }
    if diagnostic.span.is_none() || text.is_none() {
        message = format!("{}: {message}", path.display());
    }
    let mut report = MietteDiagnostic::new(message).with_severity(match diagnostic.severity {
        Severity::Error => miette::Severity::Error,
        Severity::Warning => miette::Severity::Warning,
    });
    if let Some(help) = &diagnostic.help {
        report = report.with_help(help.clone());
    }
    if let (Some(span), Some(_)) = (&diagnostic.span, text) {
        report = report.with_label(LabeledSpan::new_with_span(
            diagnostic.label.clone(),
            span.clone(),
        ));
    }
    let mut report = miette::Report::new(report);
    if let Some(text) = text {
        report = report.with_source_code(NamedSource::new(
            path.display().to_string(),
            text.to_string(),
        ));
    }
    let theme = if color_enabled() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(WIDTH)
        .with_context_lines(1);
    if handler.render_report(&mut out, report.as_ref()).is_err() {
        out = format!("{}\n", diagnostic.message);
    }
    out
}

/// One line per setting of a valid configuration.
pub fn config_summary(config: &AppConfig) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("name", config.name.clone()),
        ("project", config.project.clone()),
        ("resource", config.resource.clone()),
        ("expires", expiry(config)),
        ("code location", config.code.location.display().to_string()),
        ("docker", config.code.docker.clone()),
        (
            "python application",
            format!(
                "{} ({})",
                config.code.python_application,
                config.code.module_file.display()
            ),
        ),
        ("healthcheck", config.code.healthcheck_endpoint.clone()),
        (
            "secrets",
            config
                .code
                .secrets
                .as_ref()
                .map_or("none".to_string(), |p| p.display().to_string()),
        ),
    ];
    match &config.ssl {
        Some(ssl) => {
            rows.push(("ssl domain", ssl.domain_name.clone()));
            rows.push((
                "ssl certificate",
                format!(
                    "{} (notAfter {})",
                    ssl.certificate.display(),
                    display_utc(&ssl.certificate_not_after)
                ),
            ));
            rows.push(("ssl private key", ssl.private_key.display().to_string()));
        }
        None => rows.push((
            "ssl",
            "none: the app is served with its own RA-TLS certificate".to_string(),
        )),
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("  {k:<width$}  {v}\n"))
        .collect()
}

fn expiry(config: &AppConfig) -> String {
    match config.expiry {
        Expiry::FreePlan { hours } => {
            format!("{hours} hours after deployment (resource `free`)")
        }
        Expiry::ExpirationDate { at } => format!("{} (expiration_date)", display_utc(&at)),
        Expiry::Certificate { at } => {
            format!("{} (the certificate's notAfter)", display_utc(&at))
        }
        Expiry::ResourceDefault => format!(
            "after the default duration of resource `{}`",
            config.resource
        ),
    }
}
