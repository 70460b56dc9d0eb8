//! Whether a node may receive an app's keys: its evidence, as
//! `mse_attest` verified it, against the owner's policy and the platform's
//! revoked hosts. Pure: the verification, the fingerprint the evidence
//! binds, the inputs the node showed and the revocation list in; a release
//! or a refusal whose words the owner reads in the service's log.

use mse_api::tee::Tee;
use mse_attest::fingerprint::{fingerprint, FingerprintInput};
use mse_attest::verify::Verification;

use crate::policy::{parse_fingerprint, Policy, Rule};

/// A node asking for an app's keys.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Its evidence, verified by `mse_attest` against the app's fingerprint
    /// (the caller verified the certificate and the binding).
    pub verification: &'a Verification,
    /// The fingerprint its evidence binds.
    pub fingerprint: [u8; 32],
    /// The fingerprint's inputs, when the node showed them (needed by
    /// [`Rule::Inputs`]).
    pub inputs: Option<&'a FingerprintInput>,
    /// The host it runs on, as the platform names it.
    pub host: &'a str,
}

/// Why a node gets nothing. Each says what the owner needs to know; none
/// holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Its evidence did not verify.
    #[error("the node's evidence did not verify: {0}")]
    NotVerified(String),
    /// Its TEE kind is not one the policy names.
    #[error("the node runs in {tee}; the policy admits {admitted}")]
    Tee {
        /// The node's kind.
        tee: String,
        /// The kinds the policy names.
        admitted: String,
    },
    /// Its evidence verified only under test roots.
    #[error("the node's evidence verified only under test roots (emulated hardware); the policy wants real hardware")]
    Emulated,
    /// Its TCB status is not accepted.
    #[error("the node's TCB status is {status}; the policy accepts {accepted}")]
    Tcb {
        /// The node's status.
        status: String,
        /// The statuses the policy accepts.
        accepted: String,
    },
    /// The inputs it showed do not hash to its fingerprint.
    #[error(
        "the fingerprint inputs the node showed do not hash to the fingerprint its evidence binds"
    )]
    InputsMismatch,
    /// No rule admits its app.
    #[error("no rule of policy version {version} admits fingerprint {fingerprint}")]
    NotAdmitted {
        /// The policy's version.
        version: u64,
        /// The node's fingerprint, hex.
        fingerprint: String,
    },
    /// Its host is revoked.
    #[error("the node's host {0} is revoked")]
    HostRevoked(String),
}

/// What a release is granted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The policy version that admitted it.
    pub policy_version: u64,
    /// The index of the rule that admitted it.
    pub rule: usize,
    /// How long the release lasts.
    pub lease_seconds: u64,
}

/// Decides whether `candidate` may receive the keys `policy` guards,
/// checking, in order: its evidence verified, its host is not revoked, its
/// TEE kind, test roots, its TCB status, then the rules.
pub fn admit(
    policy: &Policy,
    candidate: &Candidate<'_>,
    revoked_hosts: &[String],
) -> Result<Admission, Refusal> {
    let verification = candidate.verification;
    if !verification.verified {
        let failures = verification.failures();
        return Err(Refusal::NotVerified(if failures.is_empty() {
            "no TEE verified".into()
        } else {
            failures.join("; ")
        }));
    }
    if revoked_hosts.iter().any(|h| h == candidate.host) {
        return Err(Refusal::HostRevoked(candidate.host.to_string()));
    }
    let tee = verification
        .tee
        .ok_or_else(|| Refusal::NotVerified("no TEE verified".into()))?;
    if !policy.tees.contains(&tee) {
        return Err(Refusal::Tee {
            tee: tee.as_str().into(),
            admitted: names(policy.tees.iter().map(|t| Tee::as_str(*t))),
        });
    }
    if verification.emulated && !policy.emulated {
        return Err(Refusal::Emulated);
    }
    let status = verification.tcb_status.clone().unwrap_or_default();
    if !policy.tcb_statuses.contains(&status) {
        return Err(Refusal::Tcb {
            status: if status.is_empty() {
                "unknown".into()
            } else {
                status
            },
            accepted: names(policy.tcb_statuses.iter().map(String::as_str)),
        });
    }
    let shown = match candidate.inputs {
        Some(inputs) if fingerprint(inputs) != candidate.fingerprint => {
            return Err(Refusal::InputsMismatch)
        }
        shown => shown,
    };
    for (index, rule) in policy.admit.iter().enumerate() {
        let admitted = match rule {
            Rule::Fingerprint { fingerprint } => {
                parse_fingerprint(fingerprint) == Some(candidate.fingerprint)
            }
            Rule::Inputs {
                runtime_images,
                app_domain,
                python_application,
            } => shown.is_some_and(|inputs| {
                runtime_images.contains(&inputs.runtime_image)
                    && inputs.app_domain == *app_domain
                    && inputs.python_application == *python_application
            }),
        };
        if admitted {
            return Ok(Admission {
                policy_version: policy.version,
                rule: index,
                lease_seconds: policy.lease_seconds,
            });
        }
    }
    Err(Refusal::NotAdmitted {
        version: policy.version,
        fingerprint: hex::encode(candidate.fingerprint),
    })
}

fn names<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AppName;
    use chrono::{TimeZone, Utc};
    use mse_attest::fingerprint::TlsMode;

    fn inputs(code: u8) -> FingerprintInput {
        FingerprintInput {
            runtime_image: "ghcr.io/cosmian/mse-flask:20230810125234".into(),
            runtime_spec_digest: "cd".repeat(32),
            enclave_size: "1G".into(),
            app_uuid: "0b6d3f0e-1111-4c1c-9a57-6a3c2d7d9e01".into(),
            app_domain: "shop.apps.example".into(),
            python_application: "app:app".into(),
            tls: TlsMode::SelfSigned {
                expires_at: Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
            },
            code_sha256: [code; 32],
        }
    }

    fn verified(tee: Tee, status: &str) -> Verification {
        Verification {
            verified: true,
            tee: Some(tee),
            tcb_status: Some(status.into()),
            ..Verification::default()
        }
    }

    fn policy(admit: Vec<Rule>) -> Policy {
        Policy::new(
            AppName {
                owner: "u-1".into(),
                project: "default".into(),
                name: "shop".into(),
            },
            7,
            admit,
            vec![Tee::Tdx, Tee::SevSnp],
        )
    }

    fn by_fingerprint(input: &FingerprintInput) -> Rule {
        Rule::Fingerprint {
            fingerprint: hex::encode(fingerprint(input)),
        }
    }

    #[test]
    fn a_verified_node_with_an_admitted_fingerprint_gets_the_policy_s_lease() {
        let app = inputs(1);
        let v = verified(Tee::Tdx, "UpToDate");
        let candidate = Candidate {
            verification: &v,
            fingerprint: fingerprint(&app),
            inputs: None,
            host: "h1",
        };
        let admission = admit(&policy(vec![by_fingerprint(&app)]), &candidate, &[]).unwrap();
        assert_eq!(admission.policy_version, 7);
        assert_eq!(admission.lease_seconds, 24 * 3600);
    }

    #[test]
    fn each_failed_condition_is_refused_naming_it() {
        let app = inputs(1);
        let p = policy(vec![by_fingerprint(&app)]);
        let fp = fingerprint(&app);
        let check = |v: Verification, fp: [u8; 32], host: &str, revoked: &[String]| {
            admit(
                &p,
                &Candidate {
                    verification: &v,
                    fingerprint: fp,
                    inputs: None,
                    host,
                },
                revoked,
            )
            .unwrap_err()
        };
        let mut unverified = verified(Tee::Tdx, "UpToDate");
        unverified.verified = false;
        assert!(matches!(
            check(unverified, fp, "h1", &[]),
            Refusal::NotVerified(_)
        ));
        assert_eq!(
            check(verified(Tee::Tdx, "UpToDate"), fp, "h1", &["h1".into()]),
            Refusal::HostRevoked("h1".into())
        );
        assert_eq!(
            check(verified(Tee::Simulation, "Simulation"), fp, "h1", &[]).to_string(),
            "the node runs in simulation; the policy admits tdx, sev-snp"
        );
        let mut emulated = verified(Tee::Tdx, "UpToDate");
        emulated.emulated = true;
        assert_eq!(check(emulated, fp, "h1", &[]), Refusal::Emulated);
        assert_eq!(
            check(verified(Tee::SevSnp, "OutOfDate"), fp, "h1", &[]).to_string(),
            "the node's TCB status is OutOfDate; the policy accepts UpToDate"
        );
        assert!(matches!(
            check(
                verified(Tee::Tdx, "UpToDate"),
                fingerprint(&inputs(2)),
                "h1",
                &[]
            ),
            Refusal::NotAdmitted { version: 7, .. }
        ));
    }

    #[test]
    fn an_inputs_rule_admits_new_code_with_everything_else_fixed() {
        let rule = Rule::Inputs {
            runtime_images: vec!["ghcr.io/cosmian/mse-flask:20230810125234".into()],
            app_domain: "shop.apps.example".into(),
            python_application: "app:app".into(),
        };
        let p = policy(vec![rule]);
        let v = verified(Tee::Tdx, "UpToDate");
        let try_with = |shown: &FingerprintInput, bound: [u8; 32]| {
            admit(
                &p,
                &Candidate {
                    verification: &v,
                    fingerprint: bound,
                    inputs: Some(shown),
                    host: "h1",
                },
                &[],
            )
        };
        // An upgrade: new code, same image, domain and entry point.
        let upgrade = inputs(9);
        assert!(try_with(&upgrade, fingerprint(&upgrade)).is_ok());
        // Inputs that are not the evidence's.
        assert_eq!(
            try_with(&upgrade, fingerprint(&inputs(1))),
            Err(Refusal::InputsMismatch)
        );
        // Another domain or image is not this app.
        let mut moved = inputs(9);
        moved.app_domain = "evil.apps.example".into();
        assert!(matches!(
            try_with(&moved, fingerprint(&moved)),
            Err(Refusal::NotAdmitted { .. })
        ));
        let mut other_image = inputs(9);
        other_image.runtime_image = "ghcr.io/cosmian/mse-base:20230810124352".into();
        assert!(try_with(&other_image, fingerprint(&other_image)).is_err());
        // Without inputs an inputs rule admits nothing.
        let none = admit(
            &p,
            &Candidate {
                verification: &v,
                fingerprint: fingerprint(&upgrade),
                inputs: None,
                host: "h1",
            },
            &[],
        );
        assert!(matches!(none, Err(Refusal::NotAdmitted { .. })));
    }

    #[test]
    fn simulation_and_test_roots_pass_only_when_the_policy_says_so() {
        let app = inputs(1);
        let mut p = policy(vec![by_fingerprint(&app)]);
        p.tees = vec![Tee::Simulation];
        p.tcb_statuses = vec!["Simulation".into()];
        let v = verified(Tee::Simulation, "Simulation");
        let candidate = Candidate {
            verification: &v,
            fingerprint: fingerprint(&app),
            inputs: None,
            host: "h1",
        };
        assert!(admit(&p, &candidate, &[]).is_ok());
        let mut emulated = verified(Tee::Tdx, "UpToDate");
        emulated.emulated = true;
        let mut q = policy(vec![by_fingerprint(&app)]);
        q.emulated = true;
        let candidate = Candidate {
            verification: &emulated,
            ..candidate
        };
        assert!(admit(&q, &candidate, &[]).is_ok());
    }
}
