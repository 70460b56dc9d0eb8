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
