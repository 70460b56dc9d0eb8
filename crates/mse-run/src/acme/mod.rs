//! An ACME client (RFC 8555) that answers TLS-ALPN-01 (RFC 8737) itself,
//! so that the key of the app's domain never leaves the node.
//!
//! The node's account key is an ECDSA P-256 key in a file of the node
//! host's (mode 0600, made on first use); the domain's key is the node's
//! RA-TLS key, so the quote of the RA-TLS certificate binds the key of the
//! certificate the CA issues. The challenge certificate is handed to the
//! node's TLS server through [`Challenges`], which answers the CA's
//! `acme-tls/1` handshakes on the app's port (reached through the
//! platform's SNI passthrough proxy).
//!
//! The JWS signing and the key authorization are pure functions (the
//! account key's); the network sits in a small HTTP/1.1 client over rustls
//! with a timeout on every exchange, which the protocol's [`Client`] drives.
//! When to renew is [`Issued::renew_at`].

mod account;
mod challenge;
mod client;
mod http;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

pub use challenge::{challenge_certificate, Challenges, ACME_TLS_ALPN};
pub use client::Client;

/// Why a certificate could not be obtained, in words for the app's owner.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The ACME server could not be reached or answered garbage.
    #[error("cannot reach the ACME server at {url}: {why}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The ACME server refused a request (an RFC 7807 problem document).
    #[error("the ACME server refused to {step}: {detail}{}", retry_hint(.retry_after))]
    Refused {
        /// What the node asked for.
        step: &'static str,
        /// The problem's type, without `urn:ietf:params:acme:error:`.
        kind: String,
        /// The problem's detail, with a hint for known kinds.
        detail: String,
        /// When to try again, when the server said.
        retry_after: Option<String>,
    },
    /// The CA could not validate the node's answer to its challenge.
    #[error(
        "the ACME server could not validate {domain}: {detail} (the CA must reach the \
             node through the platform's proxy on port 443 with TLS-ALPN-01: check that \
             {domain} resolves to the proxy)"
    )]
    Validation {
        /// The app's domain.
        domain: String,
        /// What the CA reported.
        detail: String,
    },
    /// The ACME server answered something the protocol does not allow.
    #[error("the ACME server answered unexpectedly while trying to {step}: {why}")]
    Protocol {
        /// What the node asked for.
        step: &'static str,
        /// What was wrong.
        why: String,
    },
    /// The node's own files or keys.
    #[error("{0}")]
    Local(String),
}

fn retry_hint(retry_after: &Option<String>) -> String {
    match retry_after {
        Some(when) => format!(" (retry after {when})"),
        None => String::new(),
    }
}

impl AcmeError {
    /// True when the CA limits the rate of orders: retrying soon won't help.
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, AcmeError::Refused { kind, .. } if kind == "rateLimited")
    }
}

/// Where certificates come from: the operator's ACME settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The directory URL (Let's Encrypt's, or a test CA's).
    pub directory: String,
    /// PEM roots trusted for the ACME server's own HTTPS [default: the
    /// system's].
    pub ca_bundle: Option<PathBuf>,
    /// The node's account key (PKCS#8 PEM, made when missing).
    pub account_key: PathBuf,
    /// The validity to ask for (an order's `notAfter`), for CAs that honour
    /// it; `None` lets the CA choose (Let's Encrypt refuses `notAfter`).
    pub lifetime: Option<Duration>,
}

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Start of the leaf's validity.
    pub not_before: DateTime<Utc>,
    /// End of the leaf's validity.
    pub not_after: DateTime<Utc>,
    /// The leaf's issuer, as a distinguished name.
    pub issuer: String,
}

impl Issued {
    /// When to renew: two thirds into the leaf's validity, as Let's
    /// Encrypt advises.
    pub fn renew_at(&self) -> DateTime<Utc> {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

/// A rustls signing key and chain, with the platform's crypto provider.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, rustls::Error> {
    CertifiedKey::from_der(chain, key, &mse_attest::tls::provider())
}

/// The words for a problem type a user is likely to meet.
fn explain(kind: &str, detail: &str) -> String {
    let hint = match kind {
        "rateLimited" => {
            "; the CA limits how many certificates a domain or an account may get: \
             the app keeps its RA-TLS certificate meanwhile"
        }
        "caa" => "; a CAA record of the domain forbids this CA or this account",
        "rejectedIdentifier" | "unsupportedIdentifier" => {
            "; the CA does not issue certificates for this name"
        }
        "accountDoesNotExist" | "unauthorized" => "; the node's ACME account is not allowed",
        _ => "",
    };
    let detail = if detail.is_empty() {
        kind.to_string()
    } else {
        detail.to_string()
    };
    format!("{detail}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_two_thirds_into_the_validity() {
        let not_before = DateTime::from_timestamp(0, 0).unwrap();
        let issued = Issued {
            chain: Vec::new(),
            not_before,
            not_after: DateTime::from_timestamp(90, 0).unwrap(),
            issuer: String::new(),
        };
        assert_eq!(issued.renew_at(), DateTime::from_timestamp(60, 0).unwrap());
    }

    #[test]
    fn rate_limits_are_explained_and_recognised() {
        let e = AcmeError::Refused {
            step: "create an order",
            kind: "rateLimited".into(),
            detail: explain("rateLimited", "too many certificates for example.test"),
            retry_after: Some("3600".into()),
        };
        assert!(e.is_rate_limit());
        let text = e.to_string();
        assert!(text.contains("too many certificates"), "{text}");
        assert!(text.contains("RA-TLS certificate meanwhile"), "{text}");
        assert!(text.contains("retry after 3600"), "{text}");
    }
}
