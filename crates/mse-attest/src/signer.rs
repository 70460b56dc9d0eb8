//! MRSIGNER: the measurement of the operator's enclave-signing key.

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::AttestError;

/// Bytes of an SGX enclave-signing modulus (RSA-3072).
pub const MODULUS_LEN: usize = 384;

/// MRSIGNER of an RSA-3072 public key (PEM, SPKI or PKCS#1): SHA-256 of the
/// modulus as 384 little-endian bytes.
pub fn mr_signer_from_pem(pem: &str) -> Result<[u8; 32], AttestError> {
    let key = rsa::RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|_| {
            AttestError::SignerKey(
                "not an RSA public key in PEM (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`)"
                    .into(),
            )
        })?;
    mr_signer(&key)
}

/// MRSIGNER of an RSA-3072 public key.
pub fn mr_signer(key: &rsa::RsaPublicKey) -> Result<[u8; 32], AttestError> {
    let mut modulus = key.n().to_bytes_le();
    if modulus.len() > MODULUS_LEN || key.n().bits() != 3072 {
        return Err(AttestError::SignerKey(format!(
            "the enclave-signing key has {} bits; SGX needs RSA-3072",
            key.n().bits()
        )));
    }
    modulus.resize(MODULUS_LEN, 0);
    Ok(Sha256::digest(&modulus).into())
}

/// Signs `message` with the operator's enclave-signing key (PKCS#8 PEM):
/// RSASSA-PKCS1-v1_5 with SHA-256, base64. What the platform vouches for
/// with the key whose MRSIGNER its enclaves carry (the catalog's reference
/// measurements).
pub fn sign(private_pem: &str, message: &[u8]) -> Result<String, AttestError> {
    use base64::Engine as _;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_pem)
        .map_err(|_| AttestError::SignerKey("not an RSA private key in PKCS#8 PEM".into()))?;
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key);
    let signature = signer.sign(message);
    Ok(base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()))
}

/// Checks a [`sign`] signature of `message` with the enclave-signing
/// public key (PEM, SPKI or PKCS#1).
pub fn verify(public_pem: &str, message: &[u8], signature: &str) -> Result<(), AttestError> {
    use base64::Engine as _;
    use rsa::signature::Verifier;
    let key = rsa::RsaPublicKey::from_public_key_pem(public_pem)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(public_pem))
        .map_err(|_| AttestError::SignerKey("not an RSA public key in PEM".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| AttestError::SignerKey("the signature is not base64".into()))?;
    let signature = rsa::pkcs1v15::Signature::try_from(bytes.as_slice())
        .map_err(|_| AttestError::SignerKey("not an RSA signature".into()))?;
    rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
        .verify(message, &signature)
        .map_err(|_| {
            AttestError::SignerKey("the signature is not the enclave-signing key's".into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only_and_for_its_message_only() {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let mut rng = rsa::rand_core::OsRng;
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let private = key.to_pkcs8_pem(Default::default()).unwrap();
        let public = key
            .to_public_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        let other = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let other_public = other
            .to_public_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        let signature = sign(&private, b"references").unwrap();
        verify(&public, b"references", &signature).unwrap();
        assert!(verify(&public, b"references!", &signature).is_err());
        assert!(verify(&other_public, b"references", &signature).is_err());
        assert!(verify(&public, b"references", "not base64 !").is_err());
    }
}
