//! The validator: file text, a file-system view and a clock in; a
//! configuration or every problem out.

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::datetime::{self, display_utc};
use crate::diagnostic::{did_you_mean, Diagnostic, Severity, Sink};
use crate::expiry::{Expiry, ExpiryProblem, ExpiryRequest};
use crate::fields::{self, PythonApplication};
use crate::fs::{resolve, FileKind, FileSystem, ReadError};
use crate::image::ImageReference;
use crate::model::{AppConfig, CodeConfig, SslConfig, StorageConfig};
use crate::tls;

/// Largest `mse.toml`, secrets file, key or certificate the validator reads.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// What validation depends on besides the file itself.
#[derive(Debug, Clone)]
pub struct Options {
    /// "Now", for the expiry rules.
    pub now: DateTime<Utc>,
    /// `--untrusted-ssl`: the `[ssl]` section is ignored with a warning.
    pub untrusted_ssl: bool,
}

/// The outcome of validating one file.
#[derive(Debug, Clone)]
pub struct Report {
    /// The file that was checked.
    pub path: PathBuf,
    /// The configuration, present exactly when there is no error.
    pub config: Option<AppConfig>,
    /// Errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// The file's text, when it could be read (for showing snippets).
    pub text: Option<String>,
}

impl Report {
    /// True when nothing prevents using the file.
    pub fn is_valid(&self) -> bool {
        self.config.is_some()
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }
}

const TOP_KEYS: &[&str] = &[
    "name",
    "project",
    "resource",
    "expiration_date",
    "code",
    "ssl",
    "storage",
];
const CODE_KEYS: &[&str] = &[
    "location",
    "docker",
    "python_application",
    "healthcheck_endpoint",
    "secrets",
];
const SSL_KEYS: &[&str] = &["domain_name", "private_key", "certificate"];
const STORAGE_KEYS: &[&str] = &["persistent", "size"];

type Value<'i> = Spanned<DeValue<'i>>;

/// Reads `path` through `fs` and validates it.
pub fn load(path: &Path, fs: &dyn FileSystem, options: &Options) -> Report {
    let failure = |message: String| Report {
        path: path.to_path_buf(),
        config: None,
        diagnostics: vec![Diagnostic::new(Severity::Error, "", message)],
        text: None,
    };
    let bytes = match fs.read(path, MAX_FILE_SIZE) {
        Ok(bytes) => bytes,
        Err(ReadError::NotFound) => {
            return failure(format!("{} does not exist", path.display()));
        }
        Err(e) => return failure(format!("cannot read {}: {e}", path.display())),
    };
    match String::from_utf8(bytes) {
        Ok(text) => validate(path, &text, fs, options),
        Err(e) => failure(format!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )),
    }
}

/// Validates the text of the file at `path` (absolute; relative paths inside
/// the file are resolved against its folder).
pub fn validate(path: &Path, text: &str, fs: &dyn FileSystem, options: &Options) -> Report {
    let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut checker = Checker {
        sink: Sink::new(text),
        fs,
        base,
        options,
    };
    let config = checker.run(path, text);
    let mut diagnostics = checker.sink.items;
    diagnostics.sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    Report {
        path: path.to_path_buf(),
        config: if has_errors { None } else { config },
        diagnostics,
        text: Some(text.to_string()),
    }
}

struct Checker<'a, 't> {
    sink: Sink<'t>,
    fs: &'a dyn FileSystem,
    base: PathBuf,
    options: &'a Options,
}

/// A string value with the span it came from.
struct Str {
    value: String,
    span: Range<usize>,
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn key_help(key: &str) -> &'static str {
    match key {
        "name" => "the application's name, unique among the running apps of its project, e.g. `name = \"my_app\"`",
        "project" => "the project to group the app in; every user has `project = \"default\"`",
        "resource" => "the resource (plan) to run on, e.g. `resource = \"free\"`",
        "code" => "add a `[code]` section with location, docker, python_application and healthcheck_endpoint",
        "code.location" => "the folder holding the Python code, relative to mse.toml, e.g. `location = \"mse_src\"`",
        "code.docker" => "the runtime image, e.g. `docker = \"ghcr.io/cosmian/mse-flask:20230124182826\"`",
        "code.python_application" => "the application object as `module:variable`, e.g. `python_application = \"app:app\"`",
        "code.healthcheck_endpoint" => "an unauthenticated GET path that answers once the app is ready, e.g. `healthcheck_endpoint = \"/health\"`",
        "ssl.domain_name" => "the app's own domain, e.g. `domain_name = \"app.example.com\"`",
        "ssl.private_key" => "the PEM private key file, e.g. `private_key = \"privkey.pem\"`",
        "ssl.certificate" => "the PEM full-chain certificate file, e.g. `certificate = \"fullchain.pem\"`",
        "storage.persistent" => "`persistent = true` keeps the app's $HOME, encrypted, across restarts, reschedules and upgrades",
        "storage.size" => "the most the persistent home holds, in megabytes or gigabytes, e.g. `size = \"1G\"` (at most 4G)",
        _ => "",
    }
}

impl<'t> Checker<'_, 't> {
    fn run(&mut self, path: &Path, text: &str) -> Option<AppConfig> {
        let (root, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            for error in errors {
                let message = error.message().trim().to_string();
                self.sink
                    .error("", format!("TOML syntax error: {message}"))
                    .at(error.span())
                    .label("here");
            }
            return None;
        }
        let root = root.into_inner();

        self.unknown_keys("", &root, TOP_KEYS);
        let name = self.label(&root, None, "name", |v| fields::check_name("name", v));
        let project = self.label(&root, None, "project", |v| fields::check_name("project", v));
        let resource = self.label(&root, None, "resource", fields::check_resource);
        let expiration_date = self.expiration_date(&root);

        let code = match self.section(&root, "code", true) {
            Some((table, header)) => self.code(table, header),
            None => None,
        };

        let ssl_section = self.section(&root, "ssl", false);
        let ssl = match ssl_section {
            Some((_, header)) if self.options.untrusted_ssl => {
                self.sink
                    .warning(
                        "ssl",
                        "the [ssl] section is ignored because of --untrusted-ssl: the platform's certificate is used instead",
                    )
                    .at(header)
                    .label("ignored");
                None
            }
            Some((table, header)) => self.ssl(table, header),
            None => None,
        };

        let storage = match self.section(&root, "storage", false) {
            Some((table, _)) => self.storage(table).map(Some),
            None => Some(None),
        };

        let expiry = self.expiry(
            resource.as_ref().map(|r| r.value.as_str()),
            expiration_date.as_ref(),
            ssl.as_ref(),
        );

        if self.sink.error_count() > 0 {
            return None;
        }
        Some(AppConfig {
            path: path.to_path_buf(),
            name: name?.value,
            project: project?.value,
            resource: resource?.value,
            expiration_date: expiration_date.map(|(at, _)| at),
            code: code?,
            ssl: ssl.map(|(config, _)| config),
            storage: storage?,
            expiry: expiry?,
        })
    }

    /// Reports keys of `table` that are not in `known`, with a suggestion.
    fn unknown_keys(&mut self, section: &str, table: &DeTable<'_>, known: &[&str]) {
        for (key, _) in table.iter() {
            let name: &str = key.get_ref();
            if known.contains(&name) {
                continue;
            }
            let dotted = dotted(section, name);
            let place = if section.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in [{section}]")
            };
            let mut help = did_you_mean(name, known).map(|s| format!("did you mean `{s}`?"));
            if help.is_none() && section.is_empty() && CODE_KEYS.contains(&name) {
                help = Some(format!("`{name}` belongs in the [code] section"));
            }
            if help.is_none() {
                help = Some(format!("known keys {place}: {}", known.join(", ")));
            }
            self.sink
                .error(&dotted, format!("unknown key `{name}` {place}"))
                .at(Some(key.span()))
                .label("unknown key")
                .help_opt(help);
        }
    }

    /// Looks up a sub-table; reports it missing (when mandatory) or of the wrong type.
    fn section<'d, 'i>(
        &mut self,
        root: &'d DeTable<'i>,
        name: &str,
        mandatory: bool,
    ) -> Option<(&'d DeTable<'i>, Option<Range<usize>>)> {
        let Some((key, value)) = root.get_key_value(name) else {
            if mandatory {
                self.sink
                    .error(name, format!("missing mandatory section [{name}]"))
                    .help(key_help(name));
            }
            return None;
        };
        match value.get_ref() {
            DeValue::Table(table) => Some((table, Some(key.span()))),
            other => {
                self.sink
                    .error(
                        name,
                        format!(
                            "`{name}` must be a table ([{name}]), found {}",
                            type_name(other)
                        ),
                    )
                    .at(Some(value.span()))
                    .label("expected a table");
                None
            }
        }
    }

    /// Fetches a string key; reports it missing or of the wrong type.
    fn string(
        &mut self,
        table: &DeTable<'_>,
        header: Option<Range<usize>>,
        section: &str,
        key: &str,
        mandatory: bool,
    ) -> Option<Str> {
        let dotted = dotted(section, key);
        let Some(value) = table.get(key) else {
            if mandatory {
                let place = if section.is_empty() {
                    String::new()
                } else {
                    format!(" in [{section}]")
                };
                self.sink
                    .error(&dotted, format!("missing mandatory key `{key}`{place}"))
                    .at(header)
                    .label(format!("`{key}` is missing here"))
                    .help(key_help(&dotted));
            }
            return None;
        };
        self.as_string(&dotted, value)
    }

    fn as_string(&mut self, dotted: &str, value: &Value<'_>) -> Option<Str> {
        match value.get_ref() {
            DeValue::String(s) => Some(Str {
                value: s.to_string(),
                span: value.span(),
            }),
            other => {
                self.sink
                    .error(
                        dotted,
                        format!("`{dotted}` must be a string, found {}", type_name(other)),
                    )
                    .at(Some(value.span()))
                    .label("expected a string");
                None
            }
        }
    }

    fn as_bool(&mut self, dotted: &str, value: &Value<'_>) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.sink
                    .error(
                        dotted,
                        format!(
                            "`{dotted}` must be a boolean (true or false), found {}",
                            type_name(other)
                        ),
                    )
                    .at(Some(value.span()))
                    .label("expected a boolean")
                    .help(key_help(dotted));
                None
            }
        }
    }

    /// A string checked by `check`.
    fn label(
        &mut self,
        table: &DeTable<'_>,
        header: Option<Range<usize>>,
        key: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Option<Str> {
        let value = self.string(table, header, "", key, true)?;
        self.checked(key, value, |v| check(v).map(|_| ()))
    }

    fn checked<T>(
        &mut self,
        dotted: &str,
        value: Str,
        check: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Str> {
        match check(&value.value) {
            Ok(_) => Some(value),
            Err(message) => {
                self.sink
                    .error(dotted, message)
                    .at(Some(value.span))
                    .label("invalid value");
                None
            }
        }
    }

    fn expiration_date(&mut self, root: &DeTable<'_>) -> Option<(DateTime<Utc>, Range<usize>)> {
        let value = root.get("expiration_date")?;
        let parsed = match value.get_ref() {
            DeValue::Datetime(dt) => datetime::from_toml_datetime(dt),
            DeValue::String(s) => datetime::parse_datetime_str(s),
            other => Err(format!(
                "`expiration_date` must be a date, found {}",
                type_name(other)
            )),
        };
        match parsed {
            Ok(at) => Some((at, value.span())),
            Err(message) => {
                self.sink
                    .error("expiration_date", message)
                    .at(Some(value.span()))
                    .label("invalid date")
                    .help(format!(
                        "write a UTC date and time, e.g. `expiration_date = \"2030-01-31 18:00:00\"`, or {}",
                        datetime::EXPECTED_FORM
                    ));
                None
            }
        }
    }

    fn code(&mut self, table: &DeTable<'_>, header: Option<Range<usize>>) -> Option<CodeConfig> {
        self.unknown_keys("code", table, CODE_KEYS);

        let location = self.string(table, header.clone(), "code", "location", true);
        let location = location.and_then(|loc| self.folder("code.location", loc));

        let docker = self.string(table, header.clone(), "code", "docker", true);
        let image = docker.as_ref().and_then(|d| self.docker(d));

        let app = self.string(table, header.clone(), "code", "python_application", true);
        let app = app.and_then(|app| match PythonApplication::parse(&app.value) {
            Ok(parsed) => Some((parsed, app.span)),
            Err(message) => {
                self.sink
                    .error("code.python_application", message)
                    .at(Some(app.span))
                    .label("invalid value")
                    .help(key_help("code.python_application"));
                None
            }
        });
        let module_file = match (&location, &app) {
            (Some(location), Some((app, span))) => self.module_file(location, app, span.clone()),
            _ => None,
        };

        let endpoint = self.string(table, header.clone(), "code", "healthcheck_endpoint", true);
        let endpoint = endpoint.and_then(|e| {
            self.checked(
                "code.healthcheck_endpoint",
                e,
                fields::check_healthcheck_endpoint,
            )
        });

        let secrets = match table.get("secrets") {
            Some(value) => match self.as_string("code.secrets", value) {
                Some(path) => Some(self.secrets(path)),
                None => Some(None),
            },
            None => None,
        };

        Some(CodeConfig {
            location: location?,
            docker: docker?.value,
            image: image?,
            python_application: app?.0,
            module_file: module_file?,
            healthcheck_endpoint: endpoint?.value,
            secrets: match secrets {
                Some(Some(path)) => Some(path),
                Some(None) => return None,
                None => None,
            },
        })
    }

    /// A path to an existing folder.
    fn folder(&mut self, key: &str, value: Str) -> Option<PathBuf> {
        if value.value.is_empty() {
            self.sink
                .error(
                    key,
                    format!("`{key}` must not be empty; use \".\" for the folder of mse.toml"),
                )
                .at(Some(value.span));
            return None;
        }
        let path = resolve(&self.base, Path::new(&value.value));
        match self.fs.kind(&path) {
            Some(FileKind::Dir) => Some(path),
            Some(_) => {
                self.sink
                    .error(key, format!("{} is not a folder", path.display()))
                    .at(Some(value.span))
                    .label("not a folder")
                    .help("point it to the folder holding the Python code");
                None
            }
            None => {
                self.sink
                    .error(key, format!("folder {} does not exist", path.display()))
                    .at(Some(value.span))
                    .label("no such folder")
                    .help("paths are relative to the folder of mse.toml");
                None
            }
        }
    }

    fn docker(&mut self, docker: &Str) -> Option<ImageReference> {
        match ImageReference::parse(&docker.value) {
            Ok(image) => {
                if !image.is_remote() {
                    self.sink
                        .warning(
                            "code.docker",
                            format!("`{}` names no registry: it can run locally, but deploying needs a registry reference", docker.value),
                        )
                        .at(Some(docker.span.clone()))
                        .label("local image")
                        .help("deploy from a registry, e.g. `ghcr.io/cosmian/mse-flask:20230124182826`");
                } else if !image.is_pinned() {
                    self.sink
                        .warning(
                            "code.docker",
                            format!("`{}` is not pinned to a tag or digest: deploying needs a pinned reference", docker.value),
                        )
                        .at(Some(docker.span.clone()))
                        .label("unpinned image")
                        .help("name a dated tag (`:20230124182826`) or a digest (`@sha256:...`), never `:latest`");
                }
                Some(image)
            }
            Err(message) => {
                self.sink
                    .error("code.docker", format!("invalid image reference: {message}"))
                    .at(Some(docker.span.clone()))
                    .label("invalid value")
                    .help(key_help("code.docker"));
                None
            }
        }
    }

    fn module_file(
        &mut self,
        location: &Path,
        app: &PythonApplication,
        span: Range<usize>,
    ) -> Option<PathBuf> {
        let candidates = app.module_files().map(|p| location.join(p));
        if let Some(found) = candidates
            .iter()
            .find(|p| self.fs.kind(p) == Some(FileKind::File))
        {
            return Some(found.clone());
        }
        self.sink
            .error(
                "code.python_application",
                format!(
                    "module `{}` not found: neither {} nor {} exists",
                    app.module,
                    candidates[0].display(),
                    candidates[1].display()
                ),
            )
            .at(Some(span))
            .label("module not found")
            .help("the module is looked up inside code.location");
        None
    }

    /// The secrets file: must hold one JSON object. Its content is never shown.
    fn secrets(&mut self, value: Str) -> Option<PathBuf> {
        let path = resolve(&self.base, Path::new(&value.value));
        match check_secrets_file(self.fs, &path) {
            Ok(()) => Some(path),
            Err(message) => {
                self.sink
                    .error("code.secrets", message)
                    .at(Some(value.span))
                    .label("unusable secrets file")
                    .help("the secrets file is a JSON object, e.g. {\"API_KEY\": \"...\"}; its path is relative to mse.toml");
                None
            }
        }
    }

    /// The `[ssl]` section and the span of its certificate path; `None` when
    /// it is unusable (errors were reported).
    fn ssl(
        &mut self,
        table: &DeTable<'_>,
        header: Option<Range<usize>>,
    ) -> Option<(SslConfig, Range<usize>)> {
        self.unknown_keys("ssl", table, SSL_KEYS);
        let domain = self.string(table, header.clone(), "ssl", "domain_name", true);
        let domain =
            domain.and_then(|d| self.checked("ssl.domain_name", d, fields::check_domain_name));
        let key = self.string(table, header.clone(), "ssl", "private_key", true);
        let cert = self.string(table, header.clone(), "ssl", "certificate", true);

        let leaf = cert.as_ref().and_then(|cert| {
            self.pem_file(
                "ssl.certificate",
                "certificate file",
                cert,
                tls::parse_chain,
                "give the PEM full chain, leaf first (certbot's fullchain.pem)",
            )
        });
        let private = key.as_ref().and_then(|key| {
            self.pem_file(
                "ssl.private_key",
                "private key file",
                key,
                tls::parse_private_key,
                "give the PEM private key of the certificate (certbot's privkey.pem)",
            )
        });

        if let (Some((leaf, _)), Some(domain)) = (&leaf, &domain) {
            if !tls::domain_matches(&domain.value, &leaf.dns_names) {
                let names = if leaf.dns_names.is_empty() {
                    "none".to_string()
                } else {
                    leaf.dns_names.join(", ")
                };
                self.sink
                    .error(
                        "ssl.domain_name",
                        format!(
                            "the certificate is not valid for `{}`: its DNS names are {names}",
                            domain.value
                        ),
                    )
                    .at(Some(domain.span.clone()))
                    .label("not in the certificate")
                    .help("the leaf certificate's Subject Alternative Name must list this domain or its wildcard");
            }
        }
        if let (Some((leaf, _)), Some((private, _)), Some(key)) = (&leaf, &private, &key) {
            if !private.matches(leaf) {
                self.sink
                    .error(
                        "ssl.private_key",
                        "the private key does not match the certificate's public key",
                    )
                    .at(Some(key.span.clone()))
                    .label("not the certificate's key")
                    .help("use the key the certificate was issued for");
            }
        }
        if let (Some((leaf, _)), Some(cert)) = (&leaf, &cert) {
            if leaf.not_before > self.options.now {
                self.sink
                    .warning(
                        "ssl.certificate",
                        format!(
                            "the certificate is not valid before {}",
                            display_utc(&leaf.not_before)
                        ),
                    )
                    .at(Some(cert.span.clone()))
                    .label("not yet valid");
            }
        }

        let ((leaf, cert_path), (_, key_path), domain, cert) = (leaf?, private?, domain?, cert?);
        Some((
            SslConfig {
                domain_name: domain.value.to_ascii_lowercase(),
                private_key: key_path,
                certificate: cert_path,
                certificate_not_before: leaf.not_before,
                certificate_not_after: leaf.not_after,
            },
            cert.span,
        ))
    }

    /// The `[storage]` section; `None` when it is unusable (errors were
    /// reported).
    fn storage(&mut self, table: &DeTable<'_>) -> Option<StorageConfig> {
        self.unknown_keys("storage", table, STORAGE_KEYS);
        // Each `Some(None)`: present, and refused.
        let persistent = table
            .get("persistent")
            .map(|value| self.as_bool("storage.persistent", value));
        let size = table.get_key_value("size").map(|(key, value)| {
            let bytes = self.as_string("storage.size", value).and_then(|text| {
                match fields::check_storage_size(&text.value) {
                    Ok(bytes) => Some(bytes),
                    Err(message) => {
                        self.sink
                            .error("storage.size", message)
                            .at(Some(text.span))
                            .label("invalid size")
                            .help(key_help("storage.size"));
                        None
                    }
                }
            });
            (bytes, key.span())
        });
        // A size without `persistent = true` caps nothing (a `persistent`
        // of the wrong type was reported already).
        if let (Some((_, key)), None | Some(Some(false))) = (&size, persistent) {
            self.sink
                .error(
                    "storage.size",
                    "`storage.size` caps the persistent home, but `persistent = true` is \
                     missing: the home is not kept",
                )
                .at(Some(key.clone()))
                .label("without `persistent = true`")
                .help("add `persistent = true` to [storage], or remove `size`");
            return None;
        }
        Some(StorageConfig {
            persistent: persistent.unwrap_or(Some(false))?,
            size_bytes: match size {
                Some((bytes, _)) => bytes?,
                None => fields::DEFAULT_STORAGE_SIZE,
            },
        })
    }

    /// Reads and parses a PEM file named by `value`; reports `key` on failure.
    fn pem_file<T>(
        &mut self,
        key: &str,
        what: &str,
        value: &Str,
        parse: fn(&[u8]) -> Result<T, String>,
        help: &str,
    ) -> Option<(T, PathBuf)> {
        let path = resolve(&self.base, Path::new(&value.value));
        let parsed = self
            .fs
            .read(&path, MAX_FILE_SIZE)
            .map_err(|e| format!("cannot be read: {e}"))
            .and_then(|pem| parse(&pem));
        match parsed {
            Ok(parsed) => Some((parsed, path)),
            Err(why) => {
                self.sink
                    .error(key, format!("{what} {} {why}", path.display()))
                    .at(Some(value.span.clone()))
                    .label(format!("unusable {}", what.trim_end_matches(" file")))
                    .help(help);
                None
            }
        }
    }

    fn expiry(
        &mut self,
        resource: Option<&str>,
        expiration_date: Option<&(DateTime<Utc>, Range<usize>)>,
        ssl: Option<&(SslConfig, Range<usize>)>,
    ) -> Option<Expiry> {
        let request = ExpiryRequest {
            expiration_date: expiration_date.map(|(at, _)| *at),
            certificate_not_after: ssl.map(|(ssl, _)| ssl.certificate_not_after),
        };
        let date_span = || expiration_date.map(|(_, span)| span.clone());
        for problem in request.problems(self.options.now) {
            let message = problem.to_string();
            match problem {
                ExpiryProblem::AfterCertificate { .. } => {
                    self.sink
                        .error("expiration_date", message)
                        .at(date_span())
                        .label("after the certificate's notAfter")
                        .help("choose an earlier date, or remove expiration_date to use the certificate's");
                }
                ExpiryProblem::DateInPast { .. } => {
                    self.sink
                        .error("expiration_date", message)
                        .at(date_span())
                        .label("in the past")
                        .help("choose a date in the future, in UTC");
                }
                ExpiryProblem::CertificateExpired { .. } => {
                    self.sink
                        .error("ssl.certificate", message)
                        .at(ssl.map(|(_, span)| span.clone()))
                        .label("expired")
                        .help("renew the certificate (e.g. `certbot renew`)");
                }
                // Only an instant computed from hours is out of range.
                ExpiryProblem::LifetimeOutOfRange { .. } => {}
            }
        }
        let expiry = request.expiry(resource?);
        if let (Expiry::FreePlan { hours }, Some((_, span))) = (expiry, expiration_date) {
            self.sink
                .warning(
                    "expiration_date",
                    format!("with resource `free` the app expires {hours} hours after deployment, whatever expiration_date says"),
                )
                .at(Some(span.clone()))
                .label("overridden by the free resource");
        }
        Some(expiry)
    }
}

fn dotted(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The kind of a JSON error, without serde_json's text (which could quote content).
fn json_error_kind(error: &serde_json::Error) -> Cow<'static, str> {
    match error.classify() {
        serde_json::error::Category::Eof => "unexpected end of file".into(),
        serde_json::error::Category::Syntax => "syntax error".into(),
        serde_json::error::Category::Data => "invalid data".into(),
        serde_json::error::Category::Io => "read error".into(),
    }
}

/// Checks that `path` is a readable file holding one JSON object. The message
/// on failure never quotes the file's content.
pub fn check_secrets_file(fs: &dyn FileSystem, path: &Path) -> Result<(), String> {
    let bytes = fs
        .read(path, MAX_FILE_SIZE)
        .map_err(|e| format!("secrets file {}: {e}", path.display()))?;
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(other) => Err(format!(
            "secrets file {} must hold a JSON object, not {}",
            path.display(),
            json_type(&other)
        )),
        Err(e) => Err(format!(
            "secrets file {} is not valid JSON ({} at line {} column {})",
            path.display(),
            json_error_kind(&e),
            e.line(),
            e.column()
        )),
    }
}
