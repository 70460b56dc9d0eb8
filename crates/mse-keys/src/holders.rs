//! Recovery shares sealed to their holders: each holder (an owner, an
//! operator's officer) makes a key pair on a machine of their own and gives
//! the platform its public half; when the key service makes its root key it
//! splits it ([`crate::recovery::split`]) and seals each share to one
//! holder's key (a sealed box: X25519 and XSalsa20-Poly1305), so the
//! platform keeps shares it cannot read, and no one holds the root key
//! unless the threshold of holders open theirs.
//!
//! Texts: a holder's public key `mse-holder-v1.HEX`, its secret key
//! `mse-holder-secret-v1.HEX`, a sealed share
//! `mse-share-box-v1.HOLDER_HEX.BASE64`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use crypto_box::{PublicKey, SecretKey};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::recovery::RecoveryError;
use crate::seal::RootKey;

const PUBLIC: &str = "mse-holder-v1";
const SECRET: &str = "mse-holder-secret-v1";
const BOX: &str = "mse-share-box-v1";

/// Why a holder's key or a sealed share is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HolderError {
    /// Not a holder's public key.
    #[error("holder key {0} is not one (mse-holder-v1.HEX, from `mse-server keys holder-key`)")]
    PublicKey(usize),
    /// Not a holder's secret key.
    #[error("not a holder's secret key (mse-holder-secret-v1.HEX)")]
    SecretKey,
    /// Not a sealed share.
    #[error("not a sealed recovery share (mse-share-box-v1.HOLDER.BASE64)")]
    Malformed,
    /// Sealed to another holder, or changed.
    #[error("this share is sealed to another holder's key, or was changed")]
    NotYours,
    /// The split.
    #[error(transparent)]
    Split(#[from] RecoveryError),
}

fn key_bytes(text: &str, prefix: &str) -> Option<[u8; 32]> {
    let hex = text.trim().strip_prefix(prefix)?.strip_prefix('.')?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex, &mut bytes).ok()?;
    Some(bytes)
}

/// A new holder key pair: (secret text, public text).
pub fn generate() -> (Zeroizing<String>, String) {
    let secret = SecretKey::generate(&mut OsRng);
    let public = secret.public_key();
    (
        Zeroizing::new(format!("{SECRET}.{}", hex::encode(secret.to_bytes()))),
        format!("{PUBLIC}.{}", hex::encode(public.as_bytes())),
    )
}

/// Checks holders' public keys; the index of the first that is not one.
pub fn check_public(holders: &[String]) -> Result<(), HolderError> {
    for (index, holder) in holders.iter().enumerate() {
        key_bytes(holder, PUBLIC).ok_or(HolderError::PublicKey(index + 1))?;
    }
    Ok(())
}

/// Splits `root` into one share per holder, any `threshold` of which
/// recover it, each sealed to its holder's key.
pub fn split_for(
    root: &RootKey,
    threshold: u8,
    holders: &[String],
) -> Result<Vec<String>, HolderError> {
    check_public(holders)?;
    let count = u8::try_from(holders.len()).unwrap_or(u8::MAX);
    let shares = crate::recovery::split(root, threshold, count)?;
    holders
        .iter()
        .zip(shares)
        .map(|(holder, share)| {
            let share = Zeroizing::new(share);
            let bytes = key_bytes(holder, PUBLIC).ok_or(HolderError::PublicKey(0))?;
            let sealed = PublicKey::from(bytes)
                .seal(&mut OsRng, share.as_bytes())
                .map_err(|_| HolderError::Malformed)?;
            Ok(format!(
                "{BOX}.{}.{}",
                hex::encode(bytes),
                B64.encode(sealed)
            ))
        })
        .collect()
}

/// The holder a sealed share is for (its public key text).
pub fn holder_of(sealed: &str) -> Result<String, HolderError> {
    let mut parts = sealed.trim().splitn(3, '.');
    if parts.next() != Some(BOX) {
        return Err(HolderError::Malformed);
    }
    let holder = parts.next().ok_or(HolderError::Malformed)?;
    Ok(format!("{PUBLIC}.{holder}"))
}

/// Opens a sealed share with its holder's secret key: the share's text.
pub fn open(sealed: &str, secret: &str) -> Result<Zeroizing<String>, HolderError> {
    let mut parts = sealed.trim().splitn(3, '.');
    if parts.next() != Some(BOX) {
        return Err(HolderError::Malformed);
    }
    let _holder = parts.next().ok_or(HolderError::Malformed)?;
    let ciphertext = parts
        .next()
        .and_then(|b| B64.decode(b).ok())
        .ok_or(HolderError::Malformed)?;
    let bytes = Zeroizing::new(key_bytes(secret, SECRET).ok_or(HolderError::SecretKey)?);
    let secret = SecretKey::from(*bytes);
    let plain = Zeroizing::new(
        secret
            .unseal(&ciphertext)
            .map_err(|_| HolderError::NotYours)?,
    );
    String::from_utf8(plain.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| HolderError::NotYours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_holder_opens_only_their_share_and_enough_of_them_recover_the_root_key() {
        let root = RootKey::generate();
        let holders: Vec<_> = (0..3).map(|_| generate()).collect();
        let public: Vec<String> = holders.iter().map(|(_, p)| p.clone()).collect();
        let sealed = split_for(&root, 2, &public).unwrap();
        assert_eq!(sealed.len(), 3);
        for (box_text, (_, public)) in sealed.iter().zip(&holders) {
            assert_eq!(&holder_of(box_text).unwrap(), public);
            // Nothing of the share in the clear.
            assert!(!box_text.contains("mse-recovery-v1"));
        }
        // Another holder's key opens nothing.
        assert_eq!(
            open(&sealed[0], &holders[1].0).unwrap_err(),
            HolderError::NotYours
        );
        let opened: Vec<Zeroizing<String>> = sealed
            .iter()
            .zip(&holders)
            .map(|(s, (secret, _))| open(s, secret).unwrap())
            .collect();
        let two: Vec<&str> = opened[1..].iter().map(|s| s.as_str()).collect();
        assert_eq!(
            crate::recovery::recover(&two).unwrap().as_bytes(),
            root.as_bytes()
        );
        // A changed box does not open.
        let mut changed = sealed[2].clone();
        let last = changed.pop().unwrap();
        changed.push(if last == 'A' { 'B' } else { 'A' });
        assert!(open(&changed, &holders[2].0).is_err());
        // Keys that are not keys are named.
        assert_eq!(
            split_for(&root, 1, &["mse-holder-v1.zz".to_string()]).unwrap_err(),
            HolderError::PublicKey(1)
        );
        assert_eq!(
            split_for(&root, 3, &public[..2]).unwrap_err(),
            HolderError::Split(RecoveryError::Bounds {
                threshold: 3,
                count: 2
            })
        );
    }
}
