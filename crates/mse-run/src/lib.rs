//! The node runtime's parts: the ACME client, the TLS front, the app's
//! limits and sandbox, the bounded app log and the work folder. The
//! `mse-run` binary is the runtime itself; the node runner uses its log
//! reader, its limits and its work folder's cleanup.

// The sandbox, the limits and the node call the C library (namespaces,
// mounts, rlimits, uids); each unsafe block says why it is sound.
#![allow(unsafe_code)]

pub mod acme;
pub mod front;
pub mod limits;
pub mod logs;
pub mod sandbox;
/// The status events, whose home is the wire-types crate.
pub use mse_api::event as status;
pub mod workdir;
