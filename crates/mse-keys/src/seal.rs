//! What the key service keeps in the platform's store, sealed under its
//! root key: each record is encrypted (XSalsa20-Poly1305, the package
//! format's cipher) under a key derived from the root key and the record's
//! name, so the store's owner can neither read a record nor pass one off
//! as another (a record moved to another name does not open).

use mse_package::crypto::{open, seal, CodeKey, Nonce};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Domain separator of the per-record key derivation.
const DERIVE: &[u8] = b"mse-keys-record-v1";

/// Why a sealed record does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Wrong root key, another record's bytes, or tampered bytes.
    #[error("the sealed record {0} does not open under this root key (another record's, tampered, or another service's)")]
    Forged(String),
}

/// The key service's root key: 32 random bytes that only attested replicas
/// hold. Never printed; wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct RootKey([u8; 32]);

impl RootKey {
    /// A fresh random root key from the operating system.
    pub fn generate() -> RootKey {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        RootKey(key)
    }

    /// A root key from its bytes (a replica receiving it, or recovery).
    pub fn from_bytes(bytes: [u8; 32]) -> RootKey {
        RootKey(bytes)
    }

    /// The key's bytes, for splitting it into recovery shares and handing
    /// it to an attested replica: handle with care.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key that seals the record named `name`.
    fn record_key(&self, name: &str) -> CodeKey {
        let mut hash = Sha256::new();
        hash.update(DERIVE);
        hash.update(self.0);
        hash.update((name.len() as u64).to_be_bytes());
        hash.update(name.as_bytes());
        CodeKey::from(<[u8; 32]>::from(hash.finalize()))
    }

    /// Seals `plaintext` as the record named `name`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.record_key(name), &Nonce::generate(), plaintext)
    }

    /// Opens the record named `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        open(&self.record_key(name), sealed).map_err(|_| SealError::Forged(name.to_string()))
    }
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_opens_under_its_name_and_root_key_only() {
        let root = RootKey::generate();
        let sealed = root.seal("app/u-1/default/shop", b"code key and secrets");
        assert!(!sealed
            .windows(7)
            .any(|w| w == b"secrets" || w == b"code ke"));
        assert_eq!(
            root.open("app/u-1/default/shop", &sealed).unwrap(),
            b"code key and secrets"
        );
        // Passed off as another app's record.
        assert_eq!(
            root.open("app/u-2/default/shop", &sealed),
            Err(SealError::Forged("app/u-2/default/shop".into()))
        );
        // Another service's root key.
        assert!(RootKey::generate()
            .open("app/u-1/default/shop", &sealed)
            .is_err());
        // Any byte changed.
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert!(
                root.open("app/u-1/default/shop", &tampered).is_err(),
                "byte {i}"
            );
        }
        // Truncated, empty.
        assert!(root.open("app/u-1/default/shop", &sealed[..10]).is_err());
        assert!(root.open("app/u-1/default/shop", &[]).is_err());
    }

    #[test]
    fn sealing_twice_gives_different_bytes_and_names_do_not_collide_by_concatenation() {
        let root = RootKey::from_bytes([7; 32]);
        assert_ne!(root.seal("a", b"x"), root.seal("a", b"x"));
        assert_ne!(
            root.record_key("ab").as_bytes(),
            root.record_key("a").as_bytes()
        );
        assert_eq!(format!("{root:?}"), "RootKey(<redacted>)");
    }
}
