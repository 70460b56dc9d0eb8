//! The key service's rules, free of I/O (docs/keys.md): an owner's release
//! policy for an app name and its signature ([`policy`]), whether a node's
//! verified evidence is admitted by it ([`admission`]), and the records the
//! service keeps in the platform's store, sealed under its root key
//! ([`seal`]), the root key's k-of-n recovery shares ([`recovery`]), and
//! the service's measurement ([`service`]); what it keeps per app name
//! ([`record`]).
//!
//! ```
//! use mse_keys::policy::{AppName, Policy, Rule};
//! use mse_api::tee::Tee;
//!
//! let owner = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
//! let app = AppName { owner: "u-1".into(), project: "default".into(), name: "shop".into() };
//! let rule = Rule::Fingerprint { fingerprint: "ab".repeat(32) };
//! let signed = Policy::new(app, 1, vec![rule], vec![Tee::Tdx]).sign(&owner).unwrap();
//! // The service reads back exactly what the owner signed.
//! assert_eq!(signed.verify().unwrap().tees, vec![Tee::Tdx]);
//! ```

pub mod admission;
pub mod holders;
pub mod policy;
pub mod record;
pub mod recovery;
pub mod seal;
pub mod service;

pub use admission::{admit, Admission, Candidate, Refusal};
pub use policy::{AppName, Policy, PolicyError, Rule, SignedPolicy};
pub use seal::{RootKey, SealError};
