//! An owner's release policy: for one app name, which nodes may receive its
//! keys. The owner signs the policy's exact bytes with their key; the key
//! service keeps the first owner key it saw for the app name and takes a
//! new policy only when that key signed it and its version is higher, so
//! whoever runs the service cannot widen a policy.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use mse_api::tee::Tee;
use serde::{Deserialize, Serialize};

/// The largest `test_roots` (a few PEM certificates).
const MAX_TEST_ROOTS: usize = 32 * 1024;

/// The `format` every policy of this version carries.
pub const FORMAT: &str = "mse-release-policy-v1";

/// What the owner's signature covers: this prefix, then the policy's bytes.
const SIGNED_PREFIX: &[u8] = b"mse-release-policy-v1\0";

/// The lease when the owner names none: 24 hours.
pub const DEFAULT_LEASE_SECONDS: u64 = 24 * 3600;
/// The shortest lease a policy may ask for.
pub const MIN_LEASE_SECONDS: u64 = 60;
/// The longest lease a policy may ask for: 30 days.
pub const MAX_LEASE_SECONDS: u64 = 30 * 24 * 3600;
/// Most admission rules in one policy.
pub const MAX_RULES: usize = 64;
/// Longest name (owner, project, app, image, domain) a policy holds.
pub const MAX_NAME: usize = 255;
/// Largest signed policy accepted, in bytes of its JSON.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// The TCB statuses a policy may accept: Intel's, and `Simulation`, which
/// only the simulation TEE reports.
pub const TCB_STATUSES: [&str; 8] = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
    "Simulation",
];

/// Why a policy, or a signed one, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The bytes are not a policy of this format.
    #[error("not a release policy: {0}")]
    Malformed(String),
    /// A field is out of its bounds.
    #[error("release policy: {0}")]
    Invalid(String),
    /// The signature does not verify under the owner key it names.
    #[error("the release policy's signature does not verify under the owner key it names")]
    BadSignature,
    /// Another key than the app name's owner key signed it.
    #[error("the release policy is signed by another key than the one that owns {0}")]
    NotTheOwner(String),
    /// A policy for another app name was given as its successor.
    #[error("the release policy is for {given}, not {expected}")]
    OtherApp {
        /// The app name the service holds.
        expected: String,
        /// The app name of the new policy.
        given: String,
    },
    /// The version does not go up.
    #[error("the release policy's version {given} is not above the current {current} (replayed or stale)")]
    NotNewer {
        /// The version the service holds.
        current: u64,
        /// The version of the new policy.
        given: u64,
    },
}

/// The app name a policy is for: the platform's names of its owner,
/// project and app. Keys follow the name, not an app's UUID, so a
/// rescheduled or upgraded app keeps them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppName {
    /// The owner's user id on the platform.
    pub owner: String,
    /// The project's name.
    pub project: String,
    /// The app's name.
    pub name: String,
}

impl std::fmt::Display for AppName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.owner, self.project, self.name)
    }
}

/// One way a node's app may be admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Exactly this app: its fingerprint (hex), which covers its code, its
    /// runtime, its UUID, domain and TLS mode.
    Fingerprint {
        /// The fingerprint, 64 hex digits.
        fingerprint: String,
    },
    /// Any code, everything else fixed: the node shows its fingerprint's
    /// inputs, which must hash to the fingerprint its evidence binds, and
    /// name one of these runtime images, this domain and this entry point.
    /// What lets an upgrade keep the app's keys.
    Inputs {
        /// Runtime images (`code.docker`) admitted.
        runtime_images: Vec<String>,
        /// The app's domain.
        app_domain: String,
        /// The entry point (`module:variable`).
        python_application: String,
    },
}

/// An owner's release policy for one app name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Always [`FORMAT`].
    pub format: String,
    /// The app name it is for.
    pub app: AppName,
    /// Goes up with every new policy for the app name; a lower or equal one
    /// is refused as stale or replayed.
    pub version: u64,
    /// A node is admitted when one rule admits its app.
    pub admit: Vec<Rule>,
    /// The TEE kinds a node may run in (`simulation` only if listed).
    pub tees: Vec<Tee>,
    /// The TCB statuses accepted (`UpToDate` is not implied).
    pub tcb_statuses: Vec<String>,
    /// Evidence that verified only under test roots (emulated hardware)
    /// may pass: for tests, never on a platform with real users.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emulated: bool,
    /// With `emulated`: the test roots (PEM certificates: an emulated Intel
    /// root CA, emulated AMD ARKs) the owner trusted instead of Intel's and
    /// AMD's, which emulated hardware nodes' evidence must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_roots: Option<String>,
    /// How long a release lasts before the node must attest again.
    pub lease_seconds: u64,
}

impl Policy {
    /// A policy admitting `admit` on `tees`, `UpToDate` only, with the
    /// default lease.
    pub fn new(app: AppName, version: u64, admit: Vec<Rule>, tees: Vec<Tee>) -> Policy {
        Policy {
            format: FORMAT.into(),
            app,
            version,
            admit,
            tees,
            tcb_statuses: vec!["UpToDate".into()],
            emulated: false,
            test_roots: None,
            lease_seconds: DEFAULT_LEASE_SECONDS,
        }
    }

    /// Checks every bound, reporting every problem at once.
    pub fn check(&self) -> Result<(), PolicyError> {
        let mut problems = Vec::new();
        if self.format != FORMAT {
            problems.push(format!("format must be `{FORMAT}`, not `{}`", self.format));
        }
        for (what, name) in [
            ("app.owner", &self.app.owner),
            ("app.project", &self.app.project),
            ("app.name", &self.app.name),
        ] {
            if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
                problems.push(format!(
                    "{what} must be 1 to {MAX_NAME} printable characters"
                ));
            }
        }
        if self.version == 0 {
            problems.push("version starts at 1".into());
        }
        if self.admit.is_empty() || self.admit.len() > MAX_RULES {
            problems.push(format!("admit must hold 1 to {MAX_RULES} rules"));
        }
        for (i, rule) in self.admit.iter().enumerate() {
            match rule {
                Rule::Fingerprint { fingerprint } => {
                    if parse_fingerprint(fingerprint).is_none() {
                        problems.push(format!("admit[{i}].fingerprint must be 64 hex digits"));
                    }
                }
                Rule::Inputs {
                    runtime_images,
                    app_domain,
                    python_application,
                } => {
                    if runtime_images.is_empty() || runtime_images.len() > MAX_RULES {
                        problems.push(format!(
                            "admit[{i}].runtime_images must name 1 to {MAX_RULES} images"
                        ));
                    }
                    for name in runtime_images
                        .iter()
                        .chain([app_domain, python_application])
                    {
                        if name.is_empty() || name.len() > MAX_NAME {
                            problems.push(format!(
                                "admit[{i}]: every name must be 1 to {MAX_NAME} characters"
                            ));
                            break;
                        }
                    }
                }
            }
        }
        if self.tees.is_empty() {
            problems.push("tees must name at least one TEE kind".into());
        }
        if self.tcb_statuses.is_empty() {
            problems.push("tcb_statuses must name at least one status".into());
        }
        for status in &self.tcb_statuses {
            if !TCB_STATUSES.contains(&status.as_str()) {
                problems.push(format!(
                    "tcb_statuses: `{status}` is not one of {}",
                    TCB_STATUSES.join(", ")
                ));
            }
        }
        match &self.test_roots {
            Some(_) if !self.emulated => {
                problems.push("test_roots only with emulated = true".into());
            }
            Some(pem)
                if pem.len() > MAX_TEST_ROOTS || !pem.contains("-----BEGIN CERTIFICATE-----") =>
            {
                problems.push(format!(
                    "test_roots must be PEM certificates, at most {MAX_TEST_ROOTS} bytes"
                ));
            }
            _ => {}
        }
        if !(MIN_LEASE_SECONDS..=MAX_LEASE_SECONDS).contains(&self.lease_seconds) {
            problems.push(format!(
                "lease_seconds must be {MIN_LEASE_SECONDS} to {MAX_LEASE_SECONDS}"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Invalid(problems.join("; ")))
        }
    }

    /// Signs the policy with the owner's key.
    pub fn sign(&self, owner: &SigningKey) -> Result<SignedPolicy, PolicyError> {
        self.check()?;
        let bytes = serde_json::to_vec(self).map_err(|e| PolicyError::Malformed(e.to_string()))?;
        let signature = owner.sign(&signed_message(&bytes));
        Ok(SignedPolicy {
            policy: B64.encode(&bytes),
            owner_key: hex::encode(owner.verifying_key().as_bytes()),
            signature: B64.encode(signature.to_bytes()),
        })
    }
}

/// 64 hex digits as 32 bytes.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn signed_message(policy: &[u8]) -> Vec<u8> {
    [SIGNED_PREFIX, policy].concat()
}

/// A policy as the owner sent it: its exact bytes, the owner's public key
/// and the signature over them. What the key service stores and checks
/// again whenever it reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPolicy {
    /// The policy's JSON, base64.
    pub policy: String,
    /// The owner's Ed25519 public key, hex.
    pub owner_key: String,
    /// The Ed25519 signature of the policy's bytes (after a fixed prefix), base64.
    pub signature: String,
}

impl SignedPolicy {
    /// Reads a signed policy from JSON, refusing oversized input.
    pub fn from_json(bytes: &[u8]) -> Result<SignedPolicy, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::Malformed(format!(
                "larger than {MAX_POLICY_BYTES} bytes"
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| PolicyError::Malformed(e.to_string()))
    }

    /// The owner key it names.
    pub fn owner_key(&self) -> Result<VerifyingKey, PolicyError> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(&self.owner_key, &mut key)
            .map_err(|_| PolicyError::Malformed("owner_key must be 64 hex digits".into()))?;
        VerifyingKey::from_bytes(&key)
            .map_err(|_| PolicyError::Malformed("owner_key is not an Ed25519 public key".into()))
    }

    /// The policy, once its signature verified under the key it names and
    /// its bounds hold. Who that key belongs to is the caller's question
    /// ([`SignedPolicy::succeeds`]).
    pub fn verify(&self) -> Result<Policy, PolicyError> {
        let key = self.owner_key()?;
        let bytes = B64
            .decode(&self.policy)
            .map_err(|_| PolicyError::Malformed("policy is not base64".into()))?;
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::Malformed(format!(
                "larger than {MAX_POLICY_BYTES} bytes"
            )));
        }
        let signature: [u8; 64] = B64
            .decode(&self.signature)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| PolicyError::Malformed("signature is not 64 bytes of base64".into()))?;
        key.verify_strict(
            &signed_message(&bytes),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .map_err(|_| PolicyError::BadSignature)?;
        let policy: Policy =
            serde_json::from_slice(&bytes).map_err(|e| PolicyError::Malformed(e.to_string()))?;
        policy.check()?;
        Ok(policy)
    }

    /// The new policy when it may replace `current` (the one the service
    /// holds for the app name): signed by the same owner key, for the same
    /// app name, with a higher version.
    pub fn succeeds(&self, current: &SignedPolicy) -> Result<Policy, PolicyError> {
        let held = current.verify()?;
        let new = self.verify()?;
        if new.app != held.app {
            return Err(PolicyError::OtherApp {
                expected: held.app.to_string(),
                given: new.app.to_string(),
            });
        }
        if self.owner_key()? != current.owner_key()? {
            return Err(PolicyError::NotTheOwner(held.app.to_string()));
        }
        if new.version <= held.version {
            return Err(PolicyError::NotNewer {
                current: held.version,
                given: new.version,
            });
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn owner_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn app() -> AppName {
        AppName {
            owner: "u-1".into(),
            project: "default".into(),
            name: "shop".into(),
        }
    }

    fn policy(version: u64) -> Policy {
        Policy::new(
            app(),
            version,
            vec![Rule::Fingerprint {
                fingerprint: "ab".repeat(32),
            }],
            vec![Tee::Tdx],
        )
    }

    #[test]
    fn a_signed_policy_verifies_to_the_policy_its_owner_signed() {
        let signed = policy(1).sign(&owner_key(1)).unwrap();
        let json = serde_json::to_vec(&signed).unwrap();
        let read = SignedPolicy::from_json(&json).unwrap();
        assert_eq!(read.verify().unwrap(), policy(1));
    }

    #[test]
    fn a_policy_changed_after_signing_or_signed_over_is_refused() {
        let signed = policy(1).sign(&owner_key(1)).unwrap();
        // Widened by whoever holds it: simulation added.
        let mut wider = policy(1);
        wider.tees.push(Tee::Simulation);
        let tampered = SignedPolicy {
            policy: B64.encode(serde_json::to_vec(&wider).unwrap()),
            ..signed.clone()
        };
        assert_eq!(tampered.verify(), Err(PolicyError::BadSignature));
        // Re-signed by another key but claiming the owner's.
        let other = wider.sign(&owner_key(2)).unwrap();
        let forged = SignedPolicy {
            owner_key: signed.owner_key.clone(),
            ..other.clone()
        };
        assert_eq!(forged.verify(), Err(PolicyError::BadSignature));
        // Signed by another key, as itself: verifies, but does not succeed
        // the owner's policy.
        let mut next = wider.clone();
        next.version = 2;
        let by_other = next.sign(&owner_key(2)).unwrap();
        assert!(by_other.verify().is_ok());
        assert_eq!(
            by_other.succeeds(&signed),
            Err(PolicyError::NotTheOwner("u-1/default/shop".into()))
        );
    }

    #[test]
    fn a_successor_must_be_the_owner_s_for_the_same_app_with_a_higher_version() {
        let key = owner_key(1);
        let current = policy(3).sign(&key).unwrap();
        assert_eq!(
            policy(4).sign(&key).unwrap().succeeds(&current).unwrap(),
            policy(4)
        );
        for stale in [1, 3] {
            assert_eq!(
                policy(stale).sign(&key).unwrap().succeeds(&current),
                Err(PolicyError::NotNewer {
                    current: 3,
                    given: stale
                })
            );
        }
        let mut other = policy(5);
        other.app.name = "bank".into();
        assert!(matches!(
            other.sign(&key).unwrap().succeeds(&current),
            Err(PolicyError::OtherApp { .. })
        ));
    }

    #[test]
    fn bounds_are_checked_and_every_problem_named() {
        let mut bad = policy(0);
        bad.admit = vec![Rule::Fingerprint {
            fingerprint: "xyz".into(),
        }];
        bad.tees.clear();
        bad.tcb_statuses = vec!["Fine".into()];
        bad.lease_seconds = 5;
        bad.app.name = String::new();
        let err = bad.check().unwrap_err().to_string();
        for part in [
            "version starts at 1",
            "admit[0].fingerprint",
            "tees must name",
            "`Fine` is not one of",
            "lease_seconds must be 60",
            "app.name must be",
        ] {
            assert!(err.contains(part), "{part} missing from: {err}");
        }
        assert!(bad.sign(&owner_key(1)).is_err());
    }

    #[test]
    fn test_roots_come_only_with_emulated_and_only_as_pem() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let mut roots = policy(1);
        roots.test_roots = Some(pem.into());
        let err = roots.check().unwrap_err().to_string();
        assert!(err.contains("test_roots only with emulated"), "{err}");
        roots.emulated = true;
        assert!(roots.check().is_ok());
        let signed = roots.sign(&owner_key(1)).unwrap();
        assert_eq!(signed.verify().unwrap().test_roots.as_deref(), Some(pem));
        roots.test_roots = Some("not a certificate".into());
        let err = roots.check().unwrap_err().to_string();
        assert!(err.contains("test_roots must be PEM"), "{err}");
        roots.test_roots = Some(pem.repeat(MAX_TEST_ROOTS / pem.len() + 1));
        assert!(roots.check().is_err());
    }

    #[test]
    fn malformed_signed_policies_are_refused_without_panicking() {
        let good = serde_json::to_string(&policy(1).sign(&owner_key(1)).unwrap()).unwrap();
        let inputs: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"{}".to_vec(),
            b"[]".to_vec(),
            good.replace("\"policy\"", "\"policy2\"").into_bytes(),
            good.replace("\"owner_key\":\"", "\"owner_key\":\"zz")
                .into_bytes(),
            vec![b' '; MAX_POLICY_BYTES + 1],
            good.as_bytes()[..good.len() / 2].to_vec(),
        ];
        for input in inputs {
            let outcome = SignedPolicy::from_json(&input).and_then(|s| s.verify());
            assert!(outcome.is_err(), "{}", String::from_utf8_lossy(&input));
        }
        let unknown_field = SignedPolicy {
            policy: B64.encode(b"{\"format\":\"mse-release-policy-v1\",\"extra\":1}"),
            ..policy(1).sign(&owner_key(1)).unwrap()
        };
        assert!(unknown_field.verify().is_err());
    }
}
