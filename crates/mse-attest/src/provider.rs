//! Where a node's quotes come from: the Gramine attestation device on real
//! SGX hardware, or the simulation TEE.

use std::path::PathBuf;

use crate::AttestError;

/// Produces quotes binding 64 bytes of REPORTDATA.
pub trait QuoteProvider: Send + Sync {
    /// A quote whose report body carries `report_data`.
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError>;
    /// `gramine` or `simulation`.
    fn name(&self) -> &'static str;
}

/// Gramine's `/dev/attestation` interface: write REPORTDATA to
/// `<root>/user_report_data`, read the quote from `<root>/quote`.
#[derive(Debug, Clone)]
pub struct GramineProvider {
    root: PathBuf,
}

impl GramineProvider {
    /// Default root of the attestation device.
    pub const DEFAULT_ROOT: &'static str = "/dev/attestation";

    /// A provider reading the device at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        GramineProvider { root: root.into() }
    }

    /// True when the attestation device exists.
    pub fn available(&self) -> bool {
        self.root.join("quote").exists()
    }
}

impl QuoteProvider for GramineProvider {
    fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
        let data_path = self.root.join("user_report_data");
        std::fs::write(&data_path, report_data).map_err(|source| AttestError::ProviderIo {
            action: "write",
            path: data_path.clone(),
            source,
        })?;
        let quote_path = self.root.join("quote");
        let quote = std::fs::read(&quote_path).map_err(|source| AttestError::ProviderIo {
            action: "read",
            path: quote_path.clone(),
            source,
        })?;
        let parsed = crate::quote::Quote::parse(&quote)?;
        if parsed.body.report_data() != *report_data {
            return Err(AttestError::Provider(
                "the quote from the attestation device does not carry the REPORTDATA written"
                    .into(),
            ));
        }
        Ok(quote)
    }

    fn name(&self) -> &'static str {
        "gramine"
    }
}
