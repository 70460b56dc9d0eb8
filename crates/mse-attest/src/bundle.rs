//! Evidence bundles: a node's RA-TLS certificate (whose extensions carry the
//! quote or report, and on SEV-SNP the VCEK chain) with everything needed
//! to check it (Intel's collateral for SGX and TDX), saved by `mse verify
//! --save-evidence` and checked later with no network by `mse verify
//! --offline`, at the time it was saved or at another.
//!
//! A bundle is not trusted for anything: every signature in it is checked
//! again, up to the roots the verifier trusts, at the time it names. What
//! the node must run (the fingerprint, the runtime's references) comes from
//! the verifier, never from the bundle.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::hardware::Endorsements;

/// What `format` says.
pub const FORMAT: &str = "mse-evidence-bundle";
/// The version this crate writes and reads.
pub const VERSION: u32 = 1;
/// The largest bundle read, in bytes: a certificate and collateral are tens
/// of kilobytes.
pub const MAX_LEN: usize = 1024 * 1024;

/// A saved piece of evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// Where the certificate was served (`host:port`), or the file it was
    /// read from.
    pub source: String,
    /// When it was verified: the time an offline check uses by default.
    pub verified_at: DateTime<Utc>,
    /// The RA-TLS certificate, PEM.
    pub certificate: String,
    /// Intel's collateral for an SGX or TDX quote, as dcap-qvl reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<dcap_qvl::QuoteCollateralV3>,
    /// The SEV-SNP chain (VCEK, ASK, ARK), PEM, when it did not come from
    /// the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp_chain: Option<String>,
}

impl Bundle {
    /// A bundle of `certificate_der` and what certified it.
    pub fn new(
        source: &str,
        verified_at: DateTime<Utc>,
        certificate_der: &[u8],
        endorsements: Option<&Endorsements>,
    ) -> Bundle {
        let (collateral, snp_chain) = match endorsements {
            Some(Endorsements::Dcap(collateral)) => (Some((**collateral).clone()), None),
            Some(Endorsements::Snp(chain)) => (None, Some(chain.to_pem())),
            None => (None, None),
        };
        Bundle {
            format: FORMAT.into(),
            version: VERSION,
            source: source.into(),
            verified_at,
            certificate: crate::ratls::der_to_pem(certificate_der),
            collateral,
            snp_chain,
        }
    }

    /// Reads a bundle, refusing what is not one of this version.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, String> {
        if bytes.len() > MAX_LEN {
            return Err(format!(
                "{} bytes is too large for an evidence bundle (at most {MAX_LEN})",
                bytes.len()
            ));
        }
        let bundle: Bundle = serde_json::from_slice(bytes).map_err(|e| {
            format!("not an evidence bundle (JSON, `mse verify --save-evidence`): {e}")
        })?;
        if bundle.format != FORMAT || bundle.version != VERSION {
            return Err(format!(
                "format `{}` version {}, but this client reads `{FORMAT}` version {VERSION}",
                bundle.format, bundle.version
            ));
        }
        Ok(bundle)
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> Result<Vec<u8>, String> {
        crate::ratls::pem_to_der(self.certificate.as_bytes()).map_err(|e| e.to_string())
    }

    /// What certifies the evidence: the saved collateral or chain, else the
    /// chain the certificate carries (SEV-SNP), else why there is none.
    pub fn endorsements(&self) -> Result<Endorsements, String> {
        if let Some(collateral) = &self.collateral {
            return Ok(Endorsements::Dcap(Box::new(collateral.clone())));
        }
        if let Some(chain) = &self.snp_chain {
            return crate::snp::Chain::from_pem(chain)
                .map(Endorsements::Snp)
                .map_err(|e| e.to_string());
        }
        let inspected =
            crate::ratls::inspect(&self.certificate_der()?).map_err(|e| e.to_string())?;
        match inspected.aux {
            Some(table) => Endorsements::from_aux(&table),
            None => Err("the bundle holds no collateral for its quote".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_reads_back_and_other_documents_are_refused() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let bundle = Bundle::new("app.example:443", at, b"not DER", None);
        let text = serde_json::to_vec(&bundle).unwrap();
        let read = Bundle::parse(&text).unwrap();
        assert_eq!(read.verified_at, at);
        assert_eq!(read.source, "app.example:443");
        let mut other: serde_json::Value = serde_json::from_slice(&text).unwrap();
        other["version"] = 2.into();
        assert!(Bundle::parse(other.to_string().as_bytes())
            .unwrap_err()
            .contains("version 2"));
        other["version"] = 1.into();
        other["extra"] = true.into();
        assert!(Bundle::parse(other.to_string().as_bytes()).is_err());
        assert!(Bundle::parse(&vec![b' '; MAX_LEN + 1])
            .unwrap_err()
            .contains("too large"));
        assert!(Bundle::parse(b"{}").is_err());
    }
}
