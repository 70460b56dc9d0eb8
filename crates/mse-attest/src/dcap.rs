//! Real SGX quotes, verified with the `dcap-qvl` crate against Intel's root.

use chrono::{DateTime, Utc};

/// What the collateral says about a genuine quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// TCB status (`UpToDate`, `SWHardeningNeeded`, ...).
    pub status: String,
    /// Intel security advisory IDs.
    pub advisories: Vec<String>,
}

/// Verifies the quote's signature chain to Intel's root and evaluates its TCB.
pub fn verify(
    quote: &[u8],
    collateral: &dcap_qvl::QuoteCollateralV3,
    now: DateTime<Utc>,
) -> Result<Outcome, String> {
    let now = u64::try_from(now.timestamp()).map_err(|_| "the clock is before 1970".to_string())?;
    let report = dcap_qvl::verify::verify(quote, collateral, now)
        .map_err(|e| format!("quote verification failed: {e:#}"))?;
    Ok(Outcome {
        status: report.status,
        advisories: report.advisory_ids,
    })
}
