//! What the platform says of itself, without a token: where apps are
//! served and how they are attested (`GET /platform`), and whether it is up
//! (`GET /health`). The image catalog (`GET /catalog`) is
//! `mse_runtime::PublishedCatalog`, the catalog's own type.

use serde::{Deserialize, Serialize};

/// The platform's public description (`GET /platform`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// Apps are at `<uuid>.<base_domain>`.
    pub base_domain: String,
    /// The port the proxy serves apps on.
    pub proxy_port: u16,
    /// Where nodes get their quotes: `simulation` or `gramine`.
    pub quote_provider: String,
}

/// The answer of `GET /health` while the API and its store answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

impl Health {
    /// The healthy answer.
    pub fn ok() -> Self {
        Health {
            status: "ok".to_string(),
        }
    }
}
