//! XSalsa20-Poly1305 secretbox, byte-compatible with PyNaCl's
//! `SecretBox.encrypt(data, nonce)`: `nonce (24) ‖ tag (16) ‖ ciphertext`.

use std::fmt;

use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::secretbox;

/// Bytes in a key.
pub const KEY_LEN: usize = secretbox::KEY_LEN;
/// Bytes in a nonce.
pub const NONCE_LEN: usize = secretbox::NONCE_LEN;
/// Bytes of authentication tag.
pub const TAG_LEN: usize = secretbox::TAG_LEN;

/// Errors of the secretbox layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// A key in hex was malformed.
    #[error("the code key must be {} hex digits", KEY_LEN * 2)]
    BadKey,
    /// A nonce in hex was malformed.
    #[error("a nonce must be {} hex digits", NONCE_LEN * 2)]
    BadNonce,
    /// The data is shorter than a nonce and a tag.
    #[error("the encrypted data is truncated")]
    Truncated,
    /// Authentication failed: wrong key, or tampered data.
    #[error("the data does not decrypt with this key (wrong key or tampered data)")]
    Forged,
}

/// The code's symmetric key. Never printed; wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct CodeKey([u8; KEY_LEN]);

impl CodeKey {
    /// A fresh random key from the operating system.
    pub fn generate() -> Self {
        let mut key = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut key);
        CodeKey(key)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let mut key = [0u8; KEY_LEN];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| CryptoError::BadKey)?;
        Ok(CodeKey(key))
    }

    /// The key as 64 lowercase hex digits: handle with care.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl From<[u8; KEY_LEN]> for CodeKey {
    fn from(bytes: [u8; KEY_LEN]) -> Self {
        CodeKey(bytes)
    }
}

impl fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeKey(<redacted>)")
    }
}

/// A per-file nonce.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl Nonce {
    /// A fresh random nonce.
    pub fn generate() -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        Nonce(nonce)
    }

    /// Parses 48 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        hex::decode_to_slice(text.trim(), &mut nonce).map_err(|_| CryptoError::BadNonce)?;
        Ok(Nonce(nonce))
    }

    /// 48 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.to_hex())
    }
}

/// Encrypts `data`: `nonce ‖ tag ‖ ciphertext`.
pub fn seal(key: &CodeKey, nonce: &Nonce, data: &[u8]) -> Vec<u8> {
    secretbox::seal(key.as_bytes(), &nonce.0, data)
}

/// Room to leave before the plaintext for [`seal_in_place`].
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Seals in place a buffer laid out as `[OVERHEAD bytes] ‖ plaintext`; it
/// becomes `nonce ‖ tag ‖ ciphertext`.
pub fn seal_in_place(key: &CodeKey, nonce: &Nonce, buffer: &mut [u8]) {
    assert!(
        buffer.len() >= OVERHEAD,
        "the buffer has no room for nonce and tag"
    );
    secretbox::seal_in_place(key.as_bytes(), &nonce.0, buffer);
}

/// Decrypts what [`seal`] produced, checking the tag.
pub fn open(key: &CodeKey, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Truncated);
    }
    secretbox::open(key.as_bytes(), sealed).ok_or(CryptoError::Forged)
}

/// The nonce a sealed file starts with.
pub fn nonce_of(sealed: &[u8]) -> Option<Nonce> {
    sealed
        .get(..NONCE_LEN)
        .and_then(|n| n.try_into().ok())
        .map(Nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_with_the_same_key_only() {
        let key = CodeKey::generate();
        let nonce = Nonce::generate();
        let sealed = seal(&key, &nonce, b"print('hi')");
        assert_eq!(sealed.len(), NONCE_LEN + TAG_LEN + 11);
        assert_eq!(nonce_of(&sealed), Some(nonce));
        assert_eq!(open(&key, &sealed).unwrap(), b"print('hi')");
        assert_eq!(
            open(&CodeKey::generate(), &sealed),
            Err(CryptoError::Forged)
        );
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let key = CodeKey::generate();
        let sealed = seal(&key, &Nonce::generate(), b"data");
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert_eq!(open(&key, &tampered), Err(CryptoError::Forged), "byte {i}");
        }
        assert_eq!(open(&key, &sealed[..39]), Err(CryptoError::Truncated));
    }

    #[test]
    fn keys_parse_from_hex_and_never_print() {
        let key = CodeKey::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(key.to_hex(), "ab".repeat(32));
        assert_eq!(format!("{key:?}"), "CodeKey(<redacted>)");
        assert_eq!(CodeKey::from_hex("abc"), Err(CryptoError::BadKey));
        assert_eq!(Nonce::from_hex("zz"), Err(CryptoError::BadNonce));
    }
}
