//! Recovery shares of the root key, for when every replica of the key
//! service is lost: the root key split k-of-n (Shamir over GF(256)), each
//! share a line of text a holder keeps offline. Any k shares give the root
//! key back; fewer give nothing about it. Every share names the service it
//! belongs to (a check value of the root key, which reveals nothing of it),
//! so shares of another service, or a corrupted one, are refused instead of
//! recovering a wrong key.

use rand_core::OsRng;
use sha2::{Digest, Sha256};
use sharks::{Share, Sharks};
use zeroize::Zeroize;

use crate::seal::RootKey;

/// What every share starts with.
const PREFIX: &str = "mse-recovery-v1";
/// Domain separator of the check value.
const CHECK: &[u8] = b"mse-keys-root-check-v1";
/// Most shares one split makes.
pub const MAX_SHARES: u8 = 32;

/// Why shares cannot be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// Threshold and count out of bounds.
    #[error("recovery shares: the threshold must be 1 to the count, and the count 1 to {MAX_SHARES} (got {threshold} of {count})")]
    Bounds {
        /// The threshold asked for.
        threshold: u8,
        /// The count asked for.
        count: u8,
    },
    /// A share is not one.
    #[error("share {0} is not a recovery share (mse-recovery-v1.SERVICE.K.N.HEX)")]
    Malformed(usize),
    /// Shares of different services or splits.
    #[error("share {0} belongs to another service or another split than share 1")]
    Mixed(usize),
    /// The same share twice.
    #[error("share {0} was given twice")]
    Duplicate(usize),
    /// Fewer shares than the threshold.
    #[error("{given} share(s) given; this split needs {threshold}")]
    TooFew {
        /// Shares given.
        given: usize,
        /// Shares needed.
        threshold: u8,
    },
    /// The shares did not give back the key they were made from.
    #[error("the shares do not give back service {0}'s root key: one of them is corrupted")]
    Corrupted(String),
}

/// The check value naming a root key's service: 8 bytes of a domain-separated
/// hash, hex.
pub fn service_id(root: &RootKey) -> String {
    let mut hash = Sha256::new();
    hash.update(CHECK);
    hash.update(root.as_bytes());
    hex::encode(&hash.finalize()[..8])
}

/// Splits `root` into `count` shares, any `threshold` of which recover it.
pub fn split(root: &RootKey, threshold: u8, count: u8) -> Result<Vec<String>, RecoveryError> {
    if threshold == 0 || threshold > count || count > MAX_SHARES {
        return Err(RecoveryError::Bounds { threshold, count });
    }
    let id = service_id(root);
    let dealer = Sharks(threshold).dealer_rng(root.as_bytes(), &mut OsRng);
    Ok(dealer
        .take(usize::from(count))
        .map(|share| {
            let mut bytes = Vec::from(&share);
            let text = format!("{PREFIX}.{id}.{threshold}.{count}.{}", hex::encode(&bytes));
            bytes.zeroize();
            text
        })
        .collect())
}

/// One parsed share: (service id, threshold, count, share).
fn parse(text: &str, index: usize) -> Result<(String, u8, u8, Share), RecoveryError> {
    let bad = || RecoveryError::Malformed(index + 1);
    let mut parts = text.trim().split('.');
    if parts.next() != Some(PREFIX) {
        return Err(bad());
    }
    let id = parts.next().filter(|id| id.len() == 16).ok_or_else(bad)?;
    let threshold: u8 = parts.next().and_then(|k| k.parse().ok()).ok_or_else(bad)?;
    let count: u8 = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let mut bytes = parts
        .next()
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(bad)?;
    // x (1..=count) then the 32 bytes of the key's polynomials.
    if parts.next().is_some()
        || bytes.len() != 33
        || bytes[0] == 0
        || bytes[0] > count
        || threshold == 0
        || threshold > count
    {
        bytes.zeroize();
        return Err(bad());
    }
    let share = Share::try_from(bytes.as_slice()).map_err(|_| bad());
    bytes.zeroize();
    Ok((id.to_string(), threshold, count, share?))
}

/// The root key the shares were split from.
pub fn recover(shares: &[&str]) -> Result<RootKey, RecoveryError> {
    let mut parsed = Vec::with_capacity(shares.len());
    for (index, text) in shares.iter().enumerate() {
        let (id, threshold, count, share) = parse(text, index)?;
        if let Some((first_id, first_k, first_n, _)) = parsed.first() {
            if (&id, threshold, count) != (first_id, *first_k, *first_n) {
                return Err(RecoveryError::Mixed(index + 1));
            }
        }
        if parsed
            .iter()
            .any(|(_, _, _, s): &(String, u8, u8, Share)| s.x.0 == share.x.0)
        {
            return Err(RecoveryError::Duplicate(index + 1));
        }
        parsed.push((id, threshold, count, share));
    }
    let Some((id, threshold, _, _)) = parsed.first().cloned() else {
        return Err(RecoveryError::TooFew {
            given: 0,
            threshold: 1,
        });
    };
    if parsed.len() < usize::from(threshold) {
        return Err(RecoveryError::TooFew {
            given: parsed.len(),
            threshold,
        });
    }
    let only: Vec<Share> = parsed.into_iter().map(|(_, _, _, s)| s).collect();
    let mut secret = Sharks(threshold)
        .recover(only.iter())
        .map_err(|_| RecoveryError::Corrupted(id.clone()))?;
    let key: Result<[u8; 32], _> = secret.as_slice().try_into();
    secret.zeroize();
    let root = RootKey::from_bytes(key.map_err(|_| RecoveryError::Corrupted(id.clone()))?);
    if service_id(&root) != id {
        return Err(RecoveryError::Corrupted(id));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_threshold_of_the_shares_recovers_the_root_key() {
        let root = RootKey::generate();
        let shares = split(&root, 3, 5).unwrap();
        assert_eq!(shares.len(), 5);
        // Every 3-subset, in any order.
        for a in 0..5 {
            for b in 0..5 {
                for c in 0..5 {
                    if a == b || b == c || a == c {
                        continue;
                    }
                    let got = recover(&[&shares[a], &shares[b], &shares[c]]).unwrap();
                    assert_eq!(got, root);
                }
            }
        }
        // All five too.
        let all: Vec<&str> = shares.iter().map(String::as_str).collect();
        assert_eq!(recover(&all).unwrap(), root);
        // One-of-one is the key itself, still checked.
        let single = split(&root, 1, 1).unwrap();
        assert_eq!(recover(&[&single[0]]).unwrap(), root);
    }

    #[test]
    fn too_few_mixed_duplicated_or_corrupted_shares_are_refused() {
        let root = RootKey::generate();
        let shares = split(&root, 3, 5).unwrap();
        assert_eq!(
            recover(&[&shares[0], &shares[1]]),
            Err(RecoveryError::TooFew {
                given: 2,
                threshold: 3
            })
        );
        assert_eq!(
            recover(&[&shares[0], &shares[1], &shares[1]]),
            Err(RecoveryError::Duplicate(3))
        );
        let other = split(&RootKey::generate(), 3, 5).unwrap();
        assert_eq!(
            recover(&[&shares[0], &shares[1], &other[2]]),
            Err(RecoveryError::Mixed(3))
        );
        // One byte of one share's polynomial values changed.
        let mut corrupted = shares[2].clone();
        let last = corrupted.pop().unwrap();
        corrupted.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(
            recover(&[&shares[0], &shares[1], &corrupted]),
            Err(RecoveryError::Corrupted(_))
        ));
        for bad in [
            "",
            "mse-recovery-v1",
            "mse-recovery-v1.00.3.5.00",
            &shares[0].replace("mse-recovery-v1", "mse-recovery-v2"),
            &format!("{}.extra", shares[0]),
            &shares[0][..shares[0].len() - 2],
        ] {
            assert!(
                matches!(recover(&[bad]), Err(RecoveryError::Malformed(1))),
                "{bad}"
            );
        }
        // x = 0 would be the secret's own position: refused.
        let id = service_id(&root);
        let zero = format!("mse-recovery-v1.{id}.1.1.00{}", "00".repeat(32));
        assert_eq!(recover(&[&zero]), Err(RecoveryError::Malformed(1)));
        assert!(recover(&[]).is_err());
    }

    #[test]
    fn bounds_are_checked_and_shares_do_not_show_the_key() {
        let root = RootKey::from_bytes([0x5a; 32]);
        for (k, n) in [(0, 3), (4, 3), (2, MAX_SHARES + 1)] {
            assert_eq!(
                split(&root, k, n),
                Err(RecoveryError::Bounds {
                    threshold: k,
                    count: n
                })
            );
        }
        let shares = split(&root, 2, 3).unwrap();
        for share in &shares {
            assert!(!share.contains(&"5a".repeat(8)), "{share}");
            assert!(share.starts_with(&format!("mse-recovery-v1.{}.2.3.", service_id(&root))));
        }
    }
}
