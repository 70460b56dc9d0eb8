//! Where the client keeps its state: `$MSE_CONF_PATH`, by default `~/.config/mse`.

use std::path::PathBuf;

/// Environment variable naming the client's configuration folder.
pub const CONF_PATH_ENV: &str = "MSE_CONF_PATH";

/// The client's configuration folder (profiles, contexts); not created here.
pub fn conf_dir() -> PathBuf {
    match std::env::var_os(CONF_PATH_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => home_dir().join(".config").join("mse"),
    }
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Environment variable naming the cache of runtime environments.
pub const CACHE_DIR_ENV: &str = "MSE_CACHE_DIR";

/// Where runtime environments are built: `$MSE_CACHE_DIR`, by default `~/.cache/mse`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => home_dir().join(".cache").join("mse"),
    }
}
