//! What identifies the key service: its measurement, the value its evidence
//! binds (the quote's MRENCLAVE in simulation, REPORTDATA[32..64] on TDX
//! and SEV-SNP, what its Gramine manifest sets on SGX), computed from the
//! runtime binary that serves it. The node that runs it and the platform
//! that publishes it compute the same value from the same bytes.

use sha2::{Digest, Sha256};

/// Domain separator of the measurement.
const DOMAIN: &[u8] = b"mse-key-service-v1\0";

/// The key service's measurement when `runtime_sha256` is the SHA-256 of
/// the `mse-run` binary that serves it.
pub fn measurement(runtime_sha256: &[u8; 32]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(DOMAIN);
    hash.update(runtime_sha256);
    hash.finalize().into()
}

/// The measurement of the key service served by the binary at `path`.
pub fn measurement_of(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash)?;
    Ok(measurement(&hash.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_measurement_follows_the_binary_and_is_not_its_plain_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mse-run");
        std::fs::write(&path, b"one build").unwrap();
        let one = measurement_of(&path).unwrap();
        assert_eq!(one, measurement(&Sha256::digest(b"one build").into()));
        assert_ne!(one, <[u8; 32]>::from(Sha256::digest(b"one build")));
        std::fs::write(&path, b"another build").unwrap();
        assert_ne!(measurement_of(&path).unwrap(), one);
    }
}
