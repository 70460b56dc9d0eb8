//! The platform's roles beyond the API's handlers: the local node runner
//! and the `mse-run` processes it starts, the SNI proxy, a node host's loop,
//! and the HTTP server with its connection limits. Each builds on the state
//! floor below it; `main` wires them together.

pub mod gramine;
pub mod http_server;
pub mod key_service;
pub mod limits;
pub mod node_host;
pub mod process;
pub mod proxy;
pub mod runner;
