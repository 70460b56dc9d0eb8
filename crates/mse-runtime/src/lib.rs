//! Runtime environments without a container engine.
//!
//! The operator's catalog ([`Catalog`]) maps each approved image reference to
//! a locked Python environment spec. A spec is built once into a virtual
//! environment keyed by its digest ([`EnvCache`]) and reused afterwards.
//! Apps' own `requirements.txt` go into a separate folder keyed by the spec
//! and the requirements, so the shared environment never changes.
//!
//! ```
//! let catalog = mse_runtime::Catalog::default_catalog();
//! let spec = catalog.find("ghcr.io/cosmian/mse-flask:20230124182826").unwrap();
//! assert_eq!(spec.digest().len(), 64);
//! ```

mod app;
mod catalog;
mod env;

pub use app::{App, Serving, CLEAN_PATH};
pub use catalog::{Catalog, ImageSpec, PublishedCatalog, SignedReferences, DEFAULT_CATALOG};
pub use env::{default_cache_dir, EnvCache, Environment, Installer, CACHE_DIR_ENV, UV_ENV};

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The catalog is malformed.
    #[error("runtime catalog {0}: {1}")]
    Catalog(String, String),
    /// The image is not approved.
    #[error("image `{0}` is not in the runtime catalog; approved images: {1}")]
    UnknownImage(String, String),
    /// Building an environment failed.
    #[error("cannot build the Python environment: {0}")]
    Build(String),
}
