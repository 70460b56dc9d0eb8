//! The platform's wire types, one home for each shape that crosses a
//! process: the status events a node prints ([`event`]) and the node-host
//! protocol ([`node`]). The client, the server and the node hosts all use
//! these, so a field renamed on one side is renamed on every side.
//!
//! ```
//! use mse_api::node::JoinToken;
//!
//! let token = JoinToken::new([1; 32], b"the CA certificate, DER");
//! let text = token.to_string();
//! assert!(JoinToken::parse(&text).unwrap().pins(b"the CA certificate, DER"));
//! ```

pub mod event;
pub mod node;
