//! The `mse.toml` model: loading, validation and diagnostics.
//!
//! Validation is pure: it takes the file's text, a [`FileSystem`] view for the
//! files the configuration names, and "now" in [`Options`]. Every problem of a
//! file is reported in one [`Report`].
//!
//! # Example
//!
//! Check an `mse.toml` against an in-memory view of its folder, and print
//! every problem with its key, as `mse validate` does:
//!
//! ```
//! use std::path::Path;
//!
//! use chrono::{TimeZone as _, Utc};
//! use mse_config::{validate, MemoryFs, Options};
//!
//! let text = r#"
//! name = "hello"
//! project = "default"
//! resource = "free"
//!
//! [code]
//! location = "code"
//! docker = "ghcr.io/cosmian/mse-flask:20230124182826"
//! python_application = "app:app"
//! healthcheck_endpoint = "health"
//! "#;
//! let fs = MemoryFs::new().file("/srv/hello/code/app.py", "app = None\n");
//! let options = Options {
//!     now: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
//!     untrusted_ssl: false,
//! };
//! let report = validate(Path::new("/srv/hello/mse.toml"), text, &fs, &options);
//! assert!(!report.is_valid());
//! for error in report.errors() {
//!     println!("{}: {}", error.key, error.message);
//! }
//! let error = report.errors().next().unwrap();
//! assert_eq!(error.key, "code.healthcheck_endpoint");
//!
//! // Fixed, the file gives the configuration.
//! let fixed = text.replace("\"health\"", "\"/health\"");
//! let report = validate(Path::new("/srv/hello/mse.toml"), &fixed, &fs, &options);
//! let config = report.config.expect("valid");
//! assert_eq!(config.code.healthcheck_endpoint, "/health");
//! assert_eq!(config.code.location, Path::new("/srv/hello/code"));
//! ```

pub mod datetime;
mod diagnostic;
pub mod expiry;
pub mod fields;
pub mod fs;
pub mod image;
mod model;
pub mod tls;
mod validate;

pub use diagnostic::{Diagnostic, Severity};
pub use expiry::{Expiry, ExpiryProblem, ExpiryRequest, FREE_PLAN_HOURS};
pub use fs::{FileSystem, MemoryFs, RealFs};
pub use model::{AppConfig, CodeConfig, SslConfig, StorageConfig};
pub use validate::{check_secrets_file, load, validate, Options, Report, MAX_FILE_SIZE};

/// The configuration file's name.
pub const FILE_NAME: &str = "mse.toml";

/// The runtime image new apps use unless told otherwise.
pub const DEFAULT_DOCKER_IMAGE: &str = "ghcr.io/cosmian/mse-flask:20230124182826";
