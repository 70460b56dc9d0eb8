//! The node runtime's shared parts: the configuration protocol, the status
//! events it prints and the bounded app log. The `mse-run` binary is the
//! runtime itself; the client and the node runner use these types.

// The sandbox, the limits and the node call the C library (namespaces,
// mounts, rlimits, uids); each unsafe block says why it is sound.
#![allow(unsafe_code)]

pub mod acme;
pub mod front;
pub mod limits;
pub mod logs;
pub mod protocol;
pub mod sandbox;
/// The status events, whose home is the wire-types crate.
pub use mse_api::event as status;
pub mod workdir;
