//! The node runtime's shared parts: the configuration protocol, the status
//! events it prints and the bounded app log. The `mse-run` binary is the
//! runtime itself; the client and the node runner use these types.

pub mod acme;
pub mod front;
pub mod limits;
pub mod logs;
pub mod protocol;
pub mod sandbox;
/// The status events, whose home is the wire-types crate.
pub use mse_api::event as status;
pub mod workdir;
