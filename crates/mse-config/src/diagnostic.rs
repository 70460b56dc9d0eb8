//! Problems found in a configuration file, with enough position information to
//! point at them.

use std::ops::Range;

use serde::Serialize;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file is invalid and nothing can be deployed from it.
    Error,
    /// The file is usable, but something deserves the owner's attention.
    Warning,
}

/// One problem in `mse.toml`: what is wrong, which key, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    #[serde(skip)]
    pub severity: Severity,
    /// Dotted key the problem is about (`code.location`), or empty for the file.
    pub key: String,
    /// What is wrong, in one sentence.
    pub message: String,
    /// 1-based line of the offending text, when it can be located.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending text.
    pub column: Option<usize>,
    /// What to do about it, when there is something useful to say.
    pub help: Option<String>,
    /// Byte range in the file text that the problem is about.
    #[serde(skip)]
    pub span: Option<Range<usize>>,
    /// Short text shown under the highlighted span.
    #[serde(skip)]
    pub label: Option<String>,
}

impl Diagnostic {
    /// A diagnostic about `key` that points nowhere yet.
    pub fn new(severity: Severity, key: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            key: key.to_string(),
            message: message.into(),
            line: None,
            column: None,
            help: None,
            span: None,
            label: None,
        }
    }

    /// True for errors, false for warnings.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Converts byte offsets of a text into 1-based line and column numbers.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Collects diagnostics while a file is checked, so that all of them are
/// reported together.
#[derive(Debug)]
pub(crate) struct Sink<'t> {
    text: &'t str,
    pub(crate) items: Vec<Diagnostic>,
}

/// Builder returned by [`Sink::error`] and [`Sink::warning`].
pub(crate) struct Pending<'s, 't> {
    sink: &'s mut Sink<'t>,
    diagnostic: Diagnostic,
}

impl<'t> Sink<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Sink {
            text,
            items: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, key: &str, message: impl Into<String>) -> Pending<'_, 't> {
        self.push(Severity::Error, key, message.into())
    }

    pub(crate) fn warning(&mut self, key: &str, message: impl Into<String>) -> Pending<'_, 't> {
        self.push(Severity::Warning, key, message.into())
    }

    fn push(&mut self, severity: Severity, key: &str, message: String) -> Pending<'_, 't> {
        Pending {
            sink: self,
            diagnostic: Diagnostic::new(severity, key, message),
        }
    }

    pub(crate) fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }
}

impl Pending<'_, '_> {
    /// Points the diagnostic at a byte range of the file.
    pub(crate) fn at(mut self, span: Option<Range<usize>>) -> Self {
        if let Some(span) = span {
            let (line, column) = line_column(self.sink.text, span.start);
            self.diagnostic.line = Some(line);
            self.diagnostic.column = Some(column);
            self.diagnostic.span = Some(span);
        }
        self
    }

    pub(crate) fn label(mut self, label: impl Into<String>) -> Self {
        self.diagnostic.label = Some(label.into());
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.diagnostic.help = Some(help.into());
        self
    }

    pub(crate) fn help_opt(mut self, help: Option<String>) -> Self {
        self.diagnostic.help = help;
        self
    }
}

impl Drop for Pending<'_, '_> {
    fn drop(&mut self) {
        let diagnostic = std::mem::replace(
            &mut self.diagnostic,
            Diagnostic::new(Severity::Error, "", String::new()),
        );
        self.sink.items.push(diagnostic);
    }
}

/// Suggests the closest known name for a misspelt one.
pub(crate) fn did_you_mean<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (strsim::jaro_winkler(given, candidate), *candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one_and_in_characters() {
        let text = "a = 1\nné = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // `=` after the two-byte `é`: byte 10, character column 4.
        assert_eq!(line_column(text, 10), (2, 4));
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn did_you_mean_finds_close_names_only() {
        let known = ["healthcheck_endpoint", "location", "docker"];
        assert_eq!(
            did_you_mean("helthcheck_endpoint", &known),
            Some("healthcheck_endpoint")
        );
        assert_eq!(did_you_mean("dokcer", &known), Some("docker"));
        assert_eq!(did_you_mean("zzz", &known), None);
    }
}
