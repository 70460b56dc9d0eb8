//! The owner's signing key: what signs the release policies the key
//! service holds for the owner's apps (docs/keys.md). Made on first use in
//! `$MSE_CONF_PATH/owner.key` (the 32-byte Ed25519 seed, hex, mode 0600);
//! whoever holds it may widen the policies of every app name it signed.

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore as _};
use zeroize::Zeroize as _;

use crate::conf::conf_dir;
use crate::exit::Failure;

/// The key's file.
pub fn path() -> PathBuf {
    conf_dir().join("owner.key")
}

/// The owner's key, made and saved when there is none yet.
pub fn load_or_create() -> Result<SigningKey, Failure> {
    let path = path();
    match std::fs::read_to_string(&path) {
        Ok(mut text) => {
            let mut seed = [0u8; 32];
            let parsed = hex::decode_to_slice(text.trim(), &mut seed);
            text.zeroize();
            parsed.map_err(|_| {
                Failure::Invalid(format!(
                    "{} is not an owner key (64 hex digits): restore it from your backup; a new \
                     key cannot sign for the app names the old one signed",
                    path.display()
                ))
            })?;
            let key = SigningKey::from_bytes(&seed);
            seed.zeroize();
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            OsRng.fill_bytes(&mut seed);
            let mut text = hex::encode(seed);
            let key = SigningKey::from_bytes(&seed);
            seed.zeroize();
            std::fs::create_dir_all(conf_dir()).map_err(|e| {
                Failure::Other(anyhow::anyhow!(
                    "cannot create {}: {e}",
                    conf_dir().display()
                ))
            })?;
            let written = mse_package::context::write_private(&path, text.as_bytes());
            text.zeroize();
            written.map_err(|e| {
                Failure::Other(anyhow::anyhow!("cannot write {}: {e}", path.display()))
            })?;
            eprintln!(
                "made your owner key {}: it signs your apps' release policies; back it up",
                path.display()
            );
            Ok(key)
        }
        Err(e) => Err(Failure::Other(anyhow::anyhow!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}
