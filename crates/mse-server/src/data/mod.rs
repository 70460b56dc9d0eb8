//! The operator's material on disk, beside the store: the data folder
//! (keys, certificates, uploaded packages), the image catalog file, the
//! operator's TLS certificates and the simulation quote keys.

pub mod catalog;
pub mod dir;
pub mod operator_tls;
pub mod quote_keys;
