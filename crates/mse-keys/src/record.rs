//! What the key service keeps for an app name, sealed under its root key:
//! the owner's signed policy and the app's keys, as the owner provisioned
//! them.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::policy::{AppName, SignedPolicy};
use crate::seal::{RootKey, SealError};

/// The name of an app name's record (what it is sealed under and stored as).
pub fn record_name(app: &AppName) -> String {
    // JSON keeps the three names apart whatever they hold.
    format!(
        "app:{}",
        serde_json::to_string(&[&app.owner, &app.project, &app.name]).unwrap_or_default()
    )
}

/// An app name's keys and policy. Never printed; its secrets are wiped on drop.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptRecord {
    /// The owner's signed policy in force.
    pub policy: SignedPolicy,
    /// The app (uuid) the keys were provisioned with.
    pub app_id: String,
    /// The code key, 64 hex digits.
    pub code_secret_key: String,
    /// The owner certificate's private key (PEM), owner mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_private_key: Option<String>,
    /// The app's secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_secrets: Option<serde_json::Value>,
    /// The key of its persistent storage, 64 hex digits, when it keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_key: Option<String>,
    /// The storage key `storage_key` replaced (`mse rotate --storage-key`),
    /// given to nodes with it until the home is sealed under the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_storage_key: Option<String>,
}

impl std::fmt::Debug for KeptRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptRecord")
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

impl Drop for KeptRecord {
    fn drop(&mut self) {
        self.code_secret_key.zeroize();
        if let Some(key) = self.ssl_private_key.as_mut() {
            key.zeroize();
        }
        for key in [&mut self.storage_key, &mut self.previous_storage_key]
            .into_iter()
            .flatten()
        {
            key.zeroize();
        }
    }
}

impl KeptRecord {
    /// The record sealed under `root` as `name`.
    pub fn seal(&self, root: &RootKey, name: &str) -> Vec<u8> {
        let mut plain = serde_json::to_vec(self).unwrap_or_default();
        let sealed = root.seal(name, &plain);
        plain.zeroize();
        sealed
    }

    /// The record `name` sealed under `root`.
    pub fn open(root: &RootKey, name: &str, sealed: &[u8]) -> Result<KeptRecord, SealError> {
        let mut plain = root.open(name, sealed)?;
        let record = serde_json::from_slice(&plain).map_err(|_| SealError::Forged(name.into()));
        plain.zeroize();
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, Rule};
    use mse_api::tee::Tee;

    fn app(name: &str) -> AppName {
        AppName {
            owner: "u-1".into(),
            project: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_record_seals_under_its_app_name_and_opens_only_there() {
        let owner = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let policy = Policy::new(
            app("shop"),
            1,
            vec![Rule::Fingerprint {
                fingerprint: "ab".repeat(32),
            }],
            vec![Tee::Simulation],
        )
        .sign(&owner)
        .unwrap();
        let record = KeptRecord {
            policy,
            app_id: "a-1".into(),
            code_secret_key: "cd".repeat(32),
            ssl_private_key: None,
            app_secrets: Some(serde_json::json!({"API_KEY": "s3cret"})),
            storage_key: None,
            previous_storage_key: None,
        };
        let root = RootKey::generate();
        let name = record_name(&app("shop"));
        let sealed = record.seal(&root, &name);
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        let opened = KeptRecord::open(&root, &name, &sealed).unwrap();
        assert_eq!(opened.code_secret_key, "cd".repeat(32));
        assert_eq!(opened.app_secrets, record.app_secrets);
        assert!(KeptRecord::open(&root, &record_name(&app("bank")), &sealed).is_err());
        assert_eq!(format!("{opened:?}"), "KeptRecord { app_id: \"a-1\", .. }");
        // Names stay apart whatever they hold.
        let tricky = AppName {
            owner: "u".into(),
            project: "a\",\"b".into(),
            name: "c".into(),
        };
        let plain = AppName {
            owner: "u".into(),
            project: "a".into(),
            name: "b\",\"c".into(),
        };
        assert_ne!(record_name(&tricky), record_name(&plain));
    }
}
