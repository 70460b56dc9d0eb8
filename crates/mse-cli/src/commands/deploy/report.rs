//! What `mse deploy` prints once the app runs: a summary, or with `--json`
//! the app as `mse status --json` shows it and what the deployment checked.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use mse_api::apps::App;
use mse_api::text::one_line;
use mse_attest::verify::Tee;
use serde::Serialize;

use super::node::Browser;
use super::plan::Flags;
use super::steps::{Expected, Kept, NodeCheck, Saved, Served};
use crate::commands::apps::kept_domain_note;
use crate::exit::CmdResult;
use crate::profile::Profile;
use crate::progress::{seconds, Steps};
use crate::render;
use crate::views::AppView;

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct JsonOutput {
    /// The app, with the fingerprint this deployment computed and verified.
    #[serde(flatten)]
    app: AppView,
    /// Whether the system's resolver knows the URL's name (what other
    /// clients than `mse` need).
    resolves: bool,
    verified: bool,
    tee: Option<Tee>,
    /// The node verified under test roots: emulated hardware.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    emulated: bool,
    /// Whether the certificate a browser sees was verified against the
    /// node's evidence (ACME and owner apps whose domain resolves).
    browser_verified: Option<bool>,
    cert_path: Option<PathBuf>,
    context_path: PathBuf,
    /// What the key service keeps (`--keep-running`).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_service: Option<Kept>,
    timings: serde_json::Map<String, serde_json::Value>,
}

/// What the deployment found, for the report.
pub struct Deployed<'a> {
    /// The login profile.
    pub profile: &'a Profile,
    /// The flags.
    pub flags: &'a Flags,
    /// The app, running.
    pub app: &'a App,
    /// The fingerprint computed.
    pub expected: &'a Expected,
    /// The node's verification.
    pub node: &'a NodeCheck,
    /// Where it is reached.
    pub served: &'a Served,
    /// Where the context was saved.
    pub saved: &'a Saved,
    /// What the key service keeps, with `--keep-running`.
    pub kept: Option<&'a Kept>,
    /// The steps taken, with their timings.
    pub steps: &'a Steps,
    /// When the deployment began.
    pub started: Instant,
}

/// Prints the warning on the URL, if any, then the report.
pub fn print(deployed: &Deployed<'_>) -> CmdResult {
    let Deployed {
        profile,
        flags,
        app,
        expected,
        node,
        served,
        saved,
        kept,
        steps,
        started,
    } = deployed;
    let url = profile.app_url(&app.domain_name);
    if let Some(advice) = &served.advice {
        eprint!("{} {advice}", render::warning_prefix());
    }
    let fingerprint = hex::encode(expected.fingerprint);
    if flags.json {
        let mut timings = serde_json::Map::new();
        for (key, elapsed) in steps.timings() {
            timings.insert(key.clone(), serde_json::json!(elapsed.as_secs_f64()));
        }
        timings.insert(
            "total".into(),
            serde_json::json!(started.elapsed().as_secs_f64()),
        );
        let mut view = AppView::new(app, url);
        view.fingerprint = Some(fingerprint);
        let output = JsonOutput {
            app: view,
            resolves: served.resolves,
            verified: node.verified,
            tee: node.tee,
            emulated: node.emulated,
            browser_verified: served.browser.as_ref().map(Browser::issued),
            cert_path: saved.cert_path.clone(),
            context_path: saved.context_dir.clone(),
            key_service: kept.cloned(),
            timings,
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&output).context("cannot encode the output")?
        )?;
        return Ok(());
    }
    outln!(
        "Deployed `{}` in {}: {} is running",
        app.name,
        seconds(started.elapsed()),
        app.id
    )?;
    outln!("  URL          {url}")?;
    if let Some(note) = kept_domain_note(app) {
        outln!("               ({note})")?;
    }
    outln!(
        "  expires      {} ({})",
        mse_config::datetime::display_utc(&expected.expires_at),
        remaining(expected.expires_at, Utc::now())
    )?;
    outln!("  fingerprint  {fingerprint}")?;
    match (node.verified, node.tee) {
        (true, Some(Tee::Simulation)) => outln!(
            "  TEE          SIMULATION — no hardware protection (accepted for this platform)"
        )?,
        (true, tee) => {
            let kind = match tee {
                Some(Tee::Tdx) => "Intel TDX",
                Some(Tee::SevSnp) => "AMD SEV-SNP",
                _ => "SGX",
            };
            if node.emulated {
                outln!("  TEE          {kind}, EMULATED (test roots) — no hardware protection")?;
            } else {
                outln!("  TEE          {kind}, verified")?;
            }
        }
        (false, _) => outln!(
            "  TEE          NOT VERIFIED (--no-verify); placed on: {}",
            crate::commands::apps::text::tee_line(app.tee)
        )?,
    }
    if let Some(kept) = kept {
        outln!(
            "  keys         kept by the key service for {} (policy version {})",
            kept.app,
            kept.policy_version
        )?;
        if let Some(rotated) = &kept.rotated {
            let mut renewed = vec!["code key".to_string()];
            if rotated.secrets {
                renewed.push("secrets".into());
            }
            if let Some(version) = rotated.storage_version {
                renewed.push(format!(
                    "storage key (home resealed: snapshot version {version})"
                ));
            }
            outln!("  rotated      {}", renewed.join(", "))?;
        }
    }
    if let Some(sandbox) = &app.sandbox {
        outln!("  sandbox      {}", one_line(sandbox))?;
    }
    if let Some(certificate) = &app.certificate {
        outln!(
            "  certificate  {}, until {}",
            one_line(&certificate.issuer),
            one_line(&certificate.not_after)
        )?;
        if let Some(error) = &certificate.error {
            outln!(
                "               {} {}",
                render::warning_prefix(),
                one_line(error)
            )?;
        }
    }
    if let Some(browser) = &served.browser {
        if let Some(evidence_url) = &browser.evidence_url {
            outln!(
                "  browser      {url} (its certificate's key is the attested node's, verified \
                 against {evidence_url})"
            )?;
        }
    }
    outln!("  context      {}", saved.context_dir.display())?;
    outln!(
        "Let app users verify it: `mse context --export {}` gives them the context, to use with \
         the plaintext code and `mse verify`.",
        app.id
    )?;
    let health = format!("{url}{}", app.healthcheck_endpoint);
    match &saved.cert_path {
        Some(path) => outln!("Try it: curl --cacert {} {health}", path.display())?,
        None => outln!("Try it: curl {health}")?,
    }
    Ok(())
}

/// "in 3h 59m", "in 12m", "expired".
fn remaining(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (at - now).num_minutes();
    if at <= now {
        "expired".to_string()
    } else if minutes >= 24 * 60 {
        format!("in {}d {}h", minutes / (24 * 60), minutes % (24 * 60) / 60)
    } else if minutes >= 60 {
        format!("in {}h {}m", minutes / 60, minutes % 60)
    } else {
        format!("in {}m", minutes.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_reads_naturally() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let at = |secs: i64| DateTime::from_timestamp(1_000_000 + secs, 0).unwrap();
        assert_eq!(remaining(at(4 * 3600), now), "in 4h 0m");
        assert_eq!(remaining(at(3600 * 3 + 59 * 60 + 30), now), "in 3h 59m");
        assert_eq!(remaining(at(30), now), "in 1m");
        assert_eq!(remaining(at(-5), now), "expired");
        assert_eq!(remaining(at(50 * 3600), now), "in 2d 2h");
    }
}
