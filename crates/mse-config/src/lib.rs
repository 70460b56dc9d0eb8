//! The `mse.toml` model: loading, validation and diagnostics.
//!
//! Validation is pure: it takes the file's text, a [`FileSystem`] view for the
//! files the configuration names, and "now" in [`Options`]. Every problem of a
//! file is reported in one [`Report`].

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
pub use model::{AppConfig, CodeConfig, SslConfig};
pub use validate::{check_secrets_file, load, validate, Options, Report, MAX_FILE_SIZE};

/// The configuration file's name.
pub const FILE_NAME: &str = "mse.toml";

/// The runtime image new apps use unless told otherwise.
pub const DEFAULT_DOCKER_IMAGE: &str = "ghcr.io/cosmian/mse-flask:20230124182826";
