//! The node's ACME account key: kept in a file of the node host's, and the
//! JWS signatures and RFC 7638 thumbprint the protocol derives from it
//! (pure functions of the key).

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::AcmeError;

/// An account key, with what the protocol derives from it.
pub(super) struct AccountKey {
    signing: SigningKey,
    jwk: Value,
    pub(super) thumbprint: String,
}

impl AccountKey {
    fn new(signing: SigningKey) -> Self {
        let point = signing.verifying_key().to_encoded_point(false);
        let (x, y) = (
            B64.encode(point.x().map(|x| &x[..]).unwrap_or_default()),
            B64.encode(point.y().map(|y| &y[..]).unwrap_or_default()),
        );
        // RFC 7638: the required members, in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        AccountKey {
            signing,
            jwk: json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}),
            thumbprint: B64.encode(Sha256::digest(canonical.as_bytes())),
        }
    }

    /// Loads the key at `path`, or makes one there (mode 0600) when there
    /// is none. Two nodes making it at once agree on the first one written.
    pub(super) fn load_or_create(path: &Path) -> Result<AccountKey, AcmeError> {
        let local = |what: &str, e: &dyn std::fmt::Display| {
            AcmeError::Local(format!(
                "{what} the ACME account key {}: {e}",
                path.display()
            ))
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                return SigningKey::from_pkcs8_pem(&pem)
                    .map(AccountKey::new)
                    .map_err(|e| local("cannot read", &e))
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(local("cannot read", &e))
            }
            Err(_) => {}
        }
        let signing = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let pem = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| local("cannot encode", &e))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| local("cannot store", &e))?;
        }
        let written = {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut file| file.write_all(pem.as_bytes()))
        };
        match written {
            Ok(()) => Ok(AccountKey::new(signing)),
            // Another node made it first: use that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let pem = std::fs::read_to_string(path).map_err(|e| local("cannot read", &e))?;
                SigningKey::from_pkcs8_pem(&pem)
                    .map(AccountKey::new)
                    .map_err(|e| local("cannot read", &e))
            }
            Err(e) => Err(local("cannot store", &e)),
        }
    }

    /// A flattened JWS (RFC 7515 §7.2.2) of `payload` (`None`: POST-as-GET)
    /// for `url`, identified by `kid` or, without one, by the key itself.
    pub(super) fn sign(
        &self,
        url: &str,
        nonce: &str,
        kid: Option<&str>,
        payload: Option<&Value>,
    ) -> Value {
        let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match kid {
            Some(kid) => protected["kid"] = json!(kid),
            None => protected["jwk"] = self.jwk.clone(),
        }
        let protected = B64.encode(protected.to_string());
        let payload = payload
            .map(|p| B64.encode(p.to_string()))
            .unwrap_or_default();
        let signature: Signature = self
            .signing
            .sign(format!("{protected}.{payload}").as_bytes());
        json!({
            "protected": protected,
            "payload": payload,
            "signature": B64.encode(signature.to_bytes()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use p256::ecdsa::signature::Verifier as _;

    fn key() -> AccountKey {
        AccountKey::new(SigningKey::from_slice(&[7u8; 32]).unwrap())
    }

    #[test]
    fn the_jws_is_signed_by_the_account_key_over_protected_and_payload() {
        let key = key();
        let jws = key.sign(
            "https://ca/new-order",
            "n1",
            Some("https://ca/acct/1"),
            Some(&json!({"a": 1})),
        );
        let protected: Value =
            serde_json::from_slice(&B64.decode(jws["protected"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(protected["alg"], "ES256");
        assert_eq!(protected["nonce"], "n1");
        assert_eq!(protected["url"], "https://ca/new-order");
        assert_eq!(protected["kid"], "https://ca/acct/1");
        assert!(protected.get("jwk").is_none());
        let signed = format!(
            "{}.{}",
            jws["protected"].as_str().unwrap(),
            jws["payload"].as_str().unwrap()
        );
        let signature =
            Signature::from_slice(&B64.decode(jws["signature"].as_str().unwrap()).unwrap())
                .unwrap();
        key.signing
            .verifying_key()
            .verify(signed.as_bytes(), &signature)
            .unwrap();
    }

    #[test]
    fn a_new_account_is_identified_by_its_jwk_and_post_as_get_has_an_empty_payload() {
        let jws = key().sign("https://ca/new-acct", "n", None, None);
        let protected: Value =
            serde_json::from_slice(&B64.decode(jws["protected"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(protected["jwk"]["kty"], "EC");
        assert!(protected.get("kid").is_none());
        assert_eq!(jws["payload"], "");
    }

    #[test]
    fn the_thumbprint_follows_rfc_7638() {
        let key = key();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            key.jwk["x"].as_str().unwrap(),
            key.jwk["y"].as_str().unwrap()
        );
        assert_eq!(key.thumbprint, B64.encode(Sha256::digest(canonical)));
        assert_eq!(key.thumbprint.len(), 43);
    }

    #[test]
    fn the_account_key_is_made_once_with_mode_0600_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme/account.pem");
        let first = AccountKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = AccountKey::load_or_create(&path).unwrap();
        assert_eq!(first.thumbprint, second.thumbprint);
    }
}
