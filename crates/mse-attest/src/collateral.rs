//! Collateral for SGX quotes: from a JSON file, or from a PCCS (v4 API), cached
//! on disk until its nextUpdate. This is the only part that touches the network,
//! and only with the `pccs` feature ([`fetch_pccs`]).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::verify::Collateral;
use crate::AttestError;

/// Reads collateral from a JSON file (dcap-qvl's `QuoteCollateralV3` form).
pub fn from_file(path: &Path) -> Result<Collateral, AttestError> {
    let text = std::fs::read(path).map_err(|source| AttestError::CollateralIo {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| AttestError::CollateralJson {
        path: Some(path.to_path_buf()),
        source,
    })
}

/// Reads collateral from its JSON (dcap-qvl's `QuoteCollateralV3` form), as
/// a node serves it beside its quote.
pub fn from_json(bytes: &[u8]) -> Result<Collateral, AttestError> {
    serde_json::from_slice(bytes)
        .map_err(|source| AttestError::CollateralJson { path: None, source })
}

/// The collateral a node served beside its quote (`aux`), when it is
/// collateral and not yet due for its next update at `now`: what a
/// verifier may use instead of fetching its own. Its signatures are
/// checked like any other's.
pub fn served(aux: &[u8], now: DateTime<Utc>) -> Option<Collateral> {
    let collateral = from_json(aux).ok()?;
    (next_update(&collateral)? > now).then_some(collateral)
}

/// The earliest nextUpdate of the TCB info and QE identity: when the
/// collateral must be fetched again.
pub fn next_update(collateral: &Collateral) -> Option<DateTime<Utc>> {
    let read = |json: &str| -> Option<DateTime<Utc>> {
        let value: serde_json::Value = serde_json::from_str(json).ok()?;
        let text = value.get("nextUpdate")?.as_str()?;
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let tcb = read(&collateral.tcb_info)?;
    let qe = read(&collateral.qe_identity)?;
    Some(tcb.min(qe))
}

/// A folder of collateral, one JSON file per PCCS and platform.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    fn path(&self, pccs_url: &str, quote: &[u8]) -> PathBuf {
        // The platform is identified by the PCK chain the quote carries.
        let platform = crate::quote::Quote::parse(quote)
            .map(|q| q.cert_data)
            .unwrap_or_else(|_| quote.to_vec());
        let mut hasher = Sha256::new();
        hasher.update(pccs_url.as_bytes());
        hasher.update([0]);
        hasher.update(&platform);
        self.dir
            .join(format!("{}.json", hex::encode(hasher.finalize())))
    }

    /// Cached collateral still valid at `now`.
    pub fn get(&self, pccs_url: &str, quote: &[u8], now: DateTime<Utc>) -> Option<Collateral> {
        let collateral = from_file(&self.path(pccs_url, quote)).ok()?;
        (next_update(&collateral)? > now).then_some(collateral)
    }

    /// Stores collateral.
    pub fn put(
        &self,
        pccs_url: &str,
        quote: &[u8],
        collateral: &Collateral,
    ) -> Result<(), AttestError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| AttestError::CollateralIo {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.path(pccs_url, quote);
        let text = serde_json::to_vec(collateral)
            .map_err(|source| AttestError::CollateralJson { path: None, source })?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| AttestError::CollateralIo {
                path: path.clone(),
                source,
            })
    }

    /// Cached collateral, or fetched with `fetch` and cached.
    pub fn get_or_fetch(
        &self,
        pccs_url: &str,
        quote: &[u8],
        now: DateTime<Utc>,
        fetch: impl FnOnce(&str, &[u8]) -> Result<Collateral, AttestError>,
    ) -> Result<Collateral, AttestError> {
        if let Some(collateral) = self.get(pccs_url, quote, now) {
            return Ok(collateral);
        }
        let collateral = fetch(pccs_url, quote)?;
        self.put(pccs_url, quote, &collateral)?;
        Ok(collateral)
    }
}

/// Fetches collateral for `quote` from the PCCS at `pccs_url` (v4 API paths).
#[cfg(feature = "pccs")]
pub fn fetch_pccs(pccs_url: &str, quote: &[u8]) -> Result<Collateral, AttestError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AttestError::Collateral(format!("cannot start the HTTP client: {e}")))?;
    runtime.block_on(async {
        let client = dcap_qvl::collateral::CollateralClient::with_default_http(pccs_url)
            .map_err(|e| AttestError::Collateral(format!("PCCS {pccs_url}: {e:#}")))?;
        client
            .fetch(quote)
            .await
            .map_err(|e| AttestError::Collateral(format!("PCCS {pccs_url}: {e:#}")))
    })
}
