//! Checks of single values, shared by the file validator and by `mse init`,
//! which asks for the same values one at a time.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::image::ImageReference;

/// Longest `name` and `project`, in characters.
pub const MAX_NAME_LEN: usize = 255;
/// Longest `resource`, in characters.
pub const MAX_RESOURCE_LEN: usize = 16;
/// Longest `healthcheck_endpoint`, in bytes.
pub const MAX_ENDPOINT_LEN: usize = 2048;
/// `storage.size` when `[storage]` does not say: 256 MiB.
pub const DEFAULT_STORAGE_SIZE: u64 = 256 << 20;
/// The largest `storage.size`: 4 GiB.
pub const MAX_STORAGE_SIZE: u64 = 4 << 30;

/// Checks `name` or `project`.
pub fn check_name(what: &str, value: &str) -> Result<(), String> {
    check_label(what, value, MAX_NAME_LEN)
}

/// Checks `resource`.
pub fn check_resource(value: &str) -> Result<(), String> {
    check_label("resource", value, MAX_RESOURCE_LEN)
}

fn check_label(what: &str, value: &str, max: usize) -> Result<(), String> {
    let count = value.chars().count();
    if value.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if count > max {
        return Err(format!(
            "{what} is {count} characters long; at most {max} are allowed"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    if value.trim() != value {
        return Err(format!("{what} must not start or end with spaces"));
    }
    Ok(())
}

/// Checks `healthcheck_endpoint`: an absolute URL path the node can GET.
pub fn check_healthcheck_endpoint(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err(format!(
            "healthcheck_endpoint must start with `/` (for example `/{}`)",
            value.trim_start_matches('/')
        ));
    }
    if value.len() > MAX_ENDPOINT_LEN {
        return Err(format!(
            "healthcheck_endpoint is longer than {MAX_ENDPOINT_LEN} bytes"
        ));
    }
    if value.starts_with("//") {
        return Err("healthcheck_endpoint must be a path, not `//host/...`".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '#')
    {
        return Err(format!(
            "healthcheck_endpoint must not contain {c:?}; percent-encode it"
        ));
    }
    Ok(())
}

/// Checks `code.docker` syntax.
pub fn check_docker(value: &str) -> Result<ImageReference, String> {
    ImageReference::parse(value)
}

/// The bytes of a size written as the platform writes enclave sizes: a
/// number without leading zeros followed by `M` (MiB) or `G` (GiB), as
/// `512M` or `4G`. `key` names the value in the message.
pub fn parse_size(key: &str, value: &str) -> Result<u64, String> {
    let refused = || {
        format!(
            "{key} must be a number of megabytes or gigabytes, as `512M` or `4G`, not `{value}`"
        )
    };
    let (digits, unit) = match value.strip_suffix('M') {
        Some(digits) => (digits, 1u64 << 20),
        None => (value.strip_suffix('G').ok_or_else(refused)?, 1u64 << 30),
    };
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refused());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(refused)
}

/// Checks `storage.size`: a size ([`parse_size`]) of at most
/// [`MAX_STORAGE_SIZE`]; gives its bytes.
pub fn check_storage_size(value: &str) -> Result<u64, String> {
    let bytes = parse_size("storage.size", value)?;
    if bytes > MAX_STORAGE_SIZE {
        return Err(format!(
            "storage.size is `{value}`; an app keeps at most 4G (4 GiB) of persistent storage"
        ));
    }
    Ok(bytes)
}

/// `python_application`: which module to import and which variable in it is
/// the WSGI/ASGI application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PythonApplication {
    /// Dotted module path, `package.module`.
    pub module: String,
    /// Name of the application object in that module.
    pub variable: String,
}

impl PythonApplication {
    /// Parses `module:variable`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let Some((module, variable)) = value.split_once(':') else {
            return Err(format!(
                "`{value}` is not of the form `module:variable` (for example `app:app`)"
            ));
        };
        if module.is_empty() {
            return Err(format!("`{value}` has no module before `:`"));
        }
        for part in module.split('.') {
            check_identifier(part).map_err(|why| format!("module `{module}`: {why}"))?;
        }
        check_identifier(variable).map_err(|why| format!("variable `{variable}`: {why}"))?;
        Ok(PythonApplication {
            module: module.to_string(),
            variable: variable.to_string(),
        })
    }

    /// The two files the module may be, relative to `code.location`:
    /// `a/b.py` or `a/b/__init__.py`.
    pub fn module_files(&self) -> [PathBuf; 2] {
        let base: PathBuf = self.module.split('.').collect();
        [base.with_extension("py"), base.join("__init__.py")]
    }
}

impl fmt::Display for PythonApplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.module, self.variable)
    }
}

const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

fn check_identifier(part: &str) -> Result<(), String> {
    let mut chars = part.chars();
    let Some(first) = chars.next() else {
        return Err("empty name".into());
    };
    if !(first == '_' || unicode_ident::is_xid_start(first))
        || !chars.all(unicode_ident::is_xid_continue)
    {
        return Err(format!("`{part}` is not a Python identifier"));
    }
    if PYTHON_KEYWORDS.contains(&part) {
        return Err(format!("`{part}` is a Python keyword"));
    }
    Ok(())
}

/// Checks a domain name given in `[ssl]`: lowercase-insensitive DNS labels.
pub fn check_domain_name(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("domain_name must not be empty".into());
    }
    if value.len() > 253 {
        return Err("domain_name is longer than 253 characters".into());
    }
    let labels: Vec<&str> = value.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "`{value}` is not a fully qualified domain name (for example `app.example.com`)"
        ));
    }
    for label in labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "`{value}` is not a valid domain name (label `{label}`)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_application_splits_module_and_variable() {
        let app = PythonApplication::parse("pkg.sub:application").unwrap();
        assert_eq!(app.module, "pkg.sub");
        assert_eq!(app.variable, "application");
        assert_eq!(
            app.module_files(),
            [
                PathBuf::from("pkg/sub.py"),
                PathBuf::from("pkg/sub/__init__.py")
            ]
        );
    }

    #[test]
    fn python_application_refuses_non_identifiers_and_keywords() {
        for bad in [
            "app",
            ":app",
            "app:",
            "1app:app",
            "app:my-app",
            "a..b:app",
            "class:app",
            "app:app()",
            "app:a:b",
        ] {
            assert!(PythonApplication::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(PythonApplication::parse("café:app").is_ok());
    }

    #[test]
    fn labels_are_bounded_and_clean() {
        assert!(check_resource(&"r".repeat(16)).is_ok());
        assert!(check_resource(&"r".repeat(17)).is_err());
        assert!(check_name("name", &"n".repeat(255)).is_ok());
        assert!(check_name("name", &"n".repeat(256)).is_err());
        assert!(check_name("name", " x").is_err());
        assert!(check_name("name", "a\tb").is_err());
    }

    #[test]
    fn healthcheck_endpoints_are_paths() {
        assert!(check_healthcheck_endpoint("/").is_ok());
        assert!(check_healthcheck_endpoint("/health?full=1").is_ok());
        assert!(check_healthcheck_endpoint("health").is_err());
        assert!(check_healthcheck_endpoint("//evil.example/").is_err());
        assert!(check_healthcheck_endpoint("/a b").is_err());
    }

    #[test]
    fn sizes_are_megabytes_or_gigabytes_and_storage_is_at_most_4g() {
        assert_eq!(parse_size("k", "512M"), Ok(512 << 20));
        assert_eq!(parse_size("k", "1G"), Ok(1 << 30));
        for bad in [
            "",
            "M",
            "0M",
            "0512M",
            "4T",
            "4g",
            "-1G",
            "1.5G",
            "256",
            "lots",
            "99999999999999999999G",
            "18446744073709551615M",
        ] {
            let e = parse_size("storage.size", bad).unwrap_err();
            assert!(e.starts_with("storage.size must be"), "{bad}: {e}");
        }
        assert_eq!(check_storage_size("4G"), Ok(MAX_STORAGE_SIZE));
        assert_eq!(check_storage_size("4096M"), Ok(MAX_STORAGE_SIZE));
        let e = check_storage_size("4097M").unwrap_err();
        assert!(
            e.contains("storage.size") && e.contains("at most 4G"),
            "{e}"
        );
        assert_eq!(check_storage_size("256M"), Ok(DEFAULT_STORAGE_SIZE));
    }

    #[test]
    fn domain_names_are_fully_qualified() {
        assert!(check_domain_name("app.example.com").is_ok());
        assert!(check_domain_name("localhost").is_err());
        assert!(check_domain_name("*.example.com").is_err());
        assert!(check_domain_name("a..b").is_err());
    }
}
