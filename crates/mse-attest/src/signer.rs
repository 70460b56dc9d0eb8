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
