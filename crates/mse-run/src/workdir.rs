//! A node's work folder: what lives in it, and what goes when the node ends.
//!
//! `app/` (the decrypted code), `home/` (the app's home, its secrets
//! included), `tmp/` (its temporary folder) and `tls/` (the key it serves
//! with) are private and wiped when the node ends, however it ends: by the
//! node itself, by its supervisor when the node was killed, and at the next
//! start of the platform after a crash. The log stays (`mse-server` keeps
//! it outside the work folder, and removes the work folder itself).

use std::path::Path;

use mse_api::launch::private_dirs;

/// Removes the private folders under `work_dir` (what is not there is fine).
pub fn wipe(work_dir: &Path) {
    for dir in private_dirs(work_dir) {
        let _ = std::fs::remove_dir_all(dir);
    }
}
