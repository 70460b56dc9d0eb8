//! The platform's wire types, one home for each shape that crosses a
//! process: the REST API's requests and answers — apps and their status
//! ([`apps`]), users, tokens, projects, resources and quotas
//! ([`account`]), the platform's public description ([`platform`]) and the
//! error body ([`error`]) — the status events a node prints ([`event`]),
//! the node-host protocol ([`node`]), how a node is started ([`launch`]),
//! the configuration an owner hands a verified node ([`config`]), the key
//! service's launch and what it publishes ([`keys`]), what is
//! shown of an app's log ([`logs`]), the kinds of TEE ([`tee`]) and how
//! text others wrote is made safe to show ([`text`]). The client, the server and the node hosts all use
//! these, so a field renamed on one side is renamed on every side; the
//! server maps its store's rows onto them.
//!
//! ```
//! use mse_api::apps::{App, AppStatus};
//! use mse_api::node::JoinToken;
//!
//! let app: App = serde_json::from_str(
//!     r#"{"id": "x", "project": "default", "domain_name": "x.localhost",
//!         "config_domain_name": "x.localhost", "name": "hello", "resource": "free",
//!         "docker": "ghcr.io/cosmian/mse-flask:20230124182826",
//!         "python_application": "app:app", "healthcheck_endpoint": "/health",
//!         "certificate_origin": "self", "code_sha256": "00", "enclave_size": "1G",
//!         "status": "on_error", "created_at": 1, "expires_at": 9}"#,
//! )
//! .unwrap();
//! assert_eq!(app.status, AppStatus::OnError);
//! assert!(app.status.is_terminal());
//!
//! let token = JoinToken::new([1; 32], b"the CA certificate, DER");
//! let text = token.to_string();
//! assert!(JoinToken::parse(&text).unwrap().pins(b"the CA certificate, DER"));
//! ```

pub mod account;
pub mod apps;
pub mod config;
pub mod error;
pub mod event;
pub mod keys;
pub mod launch;
pub mod logs;
pub mod node;
pub mod platform;
pub mod tee;
pub mod text;
