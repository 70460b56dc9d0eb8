//! The expiry rules: which of the resource, `expiration_date` and the owner
//! certificate decides when an app stops, and what makes a date unusable.
//! Pure: the times come in as values, there is no clock inside. The
//! validator checks a file with them, the platform computes the instant of
//! a deployment with them.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::datetime::display_utc;

/// Hours a `free` app lives, counted from its creation.
pub const FREE_PLAN_HOURS: u32 = 4;

/// The resource whose apps live [`FREE_PLAN_HOURS`], whatever else is asked.
pub const FREE_RESOURCE: &str = "free";

/// Where an app's expiry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Expiry {
    /// Resource `free`: a fixed lifetime from creation, whatever the file says.
    FreePlan {
        /// Lifetime in hours.
        hours: u32,
    },
    /// A date from `expiration_date`.
    ExpirationDate {
        /// The instant, UTC.
        at: DateTime<Utc>,
    },
    /// No `expiration_date`: the owner certificate's notAfter.
    Certificate {
        /// The instant, UTC.
        at: DateTime<Utc>,
    },
    /// Neither: the resource's default duration, known to the server.
    ResourceDefault,
}

impl Expiry {
    /// The fixed instant, when the file determines one.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        match self {
            Expiry::ExpirationDate { at } | Expiry::Certificate { at } => Some(*at),
            Expiry::FreePlan { .. } | Expiry::ResourceDefault => None,
        }
    }
}

/// What an app asks of its expiry: the date it names, and the notAfter of
/// the owner certificate it serves, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpiryRequest {
    /// `expiration_date`, in UTC.
    pub expiration_date: Option<DateTime<Utc>>,
    /// The owner certificate's notAfter (`[ssl]` apps only).
    pub certificate_not_after: Option<DateTime<Utc>>,
}

/// A rule an expiry request breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpiryProblem {
    /// `expiration_date` is later than the owner certificate's notAfter.
    #[error(
        "expiration_date {} is after the certificate's expiry {}",
        display_utc(at),
        display_utc(not_after)
    )]
    AfterCertificate {
        /// The date asked for.
        at: DateTime<Utc>,
        /// The certificate's notAfter.
        not_after: DateTime<Utc>,
    },
    /// `expiration_date` is not in the future.
    #[error(
        "expiration_date {} is in the past (now is {})",
        display_utc(at),
        display_utc(now)
    )]
    DateInPast {
        /// The date asked for.
        at: DateTime<Utc>,
        /// "Now".
        now: DateTime<Utc>,
    },
    /// Without `expiration_date`, the owner certificate that would set the
    /// expiry has expired.
    #[error("the certificate expired on {}", display_utc(not_after))]
    CertificateExpired {
        /// The certificate's notAfter.
        not_after: DateTime<Utc>,
    },
    /// A lifetime in hours that gives no instant after the creation.
    #[error("its lifetime ({hours} hours) is out of range")]
    LifetimeOutOfRange {
        /// The lifetime.
        hours: i64,
    },
}

impl ExpiryRequest {
    /// The rules on the dates themselves, whatever the resource: the date
    /// must not outlive the certificate and must be after `now`; without a
    /// date, the certificate must not have expired at `now`.
    pub fn problems(&self, now: DateTime<Utc>) -> Vec<ExpiryProblem> {
        let mut problems = Vec::new();
        if let (Some(at), Some(not_after)) = (self.expiration_date, self.certificate_not_after) {
            if at > not_after {
                problems.push(ExpiryProblem::AfterCertificate { at, not_after });
            }
        }
        match (self.expiration_date, self.certificate_not_after) {
            (Some(at), _) if at <= now => problems.push(ExpiryProblem::DateInPast { at, now }),
            (None, Some(not_after)) if not_after <= now => {
                problems.push(ExpiryProblem::CertificateExpired { not_after });
            }
            _ => {}
        }
        problems
    }

    /// Which rule decides the expiry on `resource`: the free plan, else
    /// `expiration_date`, else the certificate, else the resource's default.
    pub fn expiry(&self, resource: &str) -> Expiry {
        if resource == FREE_RESOURCE {
            return Expiry::FreePlan {
                hours: FREE_PLAN_HOURS,
            };
        }
        match (self.expiration_date, self.certificate_not_after) {
            (Some(at), _) => Expiry::ExpirationDate { at },
            (None, Some(at)) => Expiry::Certificate { at },
            (None, None) => Expiry::ResourceDefault,
        }
    }

    /// The instant an app on `resource` (whose default lifetime is
    /// `default_hours`) created at `created` expires at, or the first rule
    /// the request breaks. The free plan ignores the dates, so breaks none.
    pub fn expires_at(
        &self,
        resource: &str,
        created: DateTime<Utc>,
        default_hours: i64,
    ) -> Result<DateTime<Utc>, ExpiryProblem> {
        let expiry = self.expiry(resource);
        if !matches!(expiry, Expiry::FreePlan { .. }) {
            if let Some(problem) = self.problems(created).into_iter().next() {
                return Err(problem);
            }
        }
        match expiry {
            Expiry::ExpirationDate { at } | Expiry::Certificate { at } => Ok(at),
            Expiry::FreePlan { hours } => after_hours(created, i64::from(hours)),
            Expiry::ResourceDefault => after_hours(created, default_hours),
        }
    }
}

/// `created` plus `hours`, when that is a later instant chrono can hold.
fn after_hours(created: DateTime<Utc>, hours: i64) -> Result<DateTime<Utc>, ExpiryProblem> {
    TimeDelta::try_hours(hours)
        .and_then(|d| created.checked_add_signed(d))
        .filter(|at| *at > created)
        .ok_or(ExpiryProblem::LifetimeOutOfRange { hours })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn now() -> DateTime<Utc> {
        utc(2030, 1, 1)
    }

    fn request(date: Option<DateTime<Utc>>, cert: Option<DateTime<Utc>>) -> ExpiryRequest {
        ExpiryRequest {
            expiration_date: date,
            certificate_not_after: cert,
        }
    }

    #[test]
    fn the_free_plan_wins_then_the_date_then_the_certificate_then_the_default() {
        let (date, cert) = (Some(utc(2030, 2, 1)), Some(utc(2030, 3, 1)));
        assert_eq!(
            request(date, cert).expiry("free"),
            Expiry::FreePlan { hours: 4 }
        );
        assert_eq!(
            request(date, cert).expiry("paid"),
            Expiry::ExpirationDate {
                at: utc(2030, 2, 1)
            }
        );
        assert_eq!(
            request(None, cert).expiry("paid"),
            Expiry::Certificate {
                at: utc(2030, 3, 1)
            }
        );
        assert_eq!(request(None, None).expiry("paid"), Expiry::ResourceDefault);
    }

    #[test]
    fn a_date_after_the_certificate_or_in_the_past_is_a_problem() {
        assert_eq!(
            request(Some(utc(2030, 4, 1)), Some(utc(2030, 3, 1))).problems(now()),
            [ExpiryProblem::AfterCertificate {
                at: utc(2030, 4, 1),
                not_after: utc(2030, 3, 1)
            }]
        );
        assert_eq!(
            request(Some(now()), None).problems(now()),
            [ExpiryProblem::DateInPast {
                at: now(),
                now: now()
            }]
        );
        assert!(request(Some(utc(2030, 2, 1)), Some(utc(2030, 3, 1)))
            .problems(now())
            .is_empty());
    }

    #[test]
    fn an_expired_certificate_is_a_problem_only_without_a_date() {
        let expired = Some(utc(2029, 1, 1));
        assert_eq!(
            request(None, expired).problems(now()),
            [ExpiryProblem::CertificateExpired {
                not_after: utc(2029, 1, 1)
            }]
        );
        // With a date, the date is what is checked (and outlives the certificate).
        assert_eq!(
            request(Some(utc(2030, 2, 1)), expired).problems(now()),
            [ExpiryProblem::AfterCertificate {
                at: utc(2030, 2, 1),
                not_after: utc(2029, 1, 1)
            }]
        );
    }

    #[test]
    fn the_instant_counts_hours_from_creation_or_takes_the_deciding_date() {
        let created = now();
        assert_eq!(
            request(Some(utc(2020, 1, 1)), None).expires_at("free", created, 24),
            Ok(created + TimeDelta::hours(4)),
            "the free plan ignores the date, even a past one"
        );
        assert_eq!(
            request(None, None).expires_at("paid", created, 24),
            Ok(created + TimeDelta::hours(24))
        );
        assert_eq!(
            request(Some(utc(2030, 2, 1)), Some(utc(2030, 3, 1))).expires_at("paid", created, 24),
            Ok(utc(2030, 2, 1))
        );
        assert_eq!(
            request(None, Some(utc(2030, 3, 1))).expires_at("paid", created, 24),
            Ok(utc(2030, 3, 1))
        );
    }

    #[test]
    fn the_instant_is_refused_when_a_rule_is_broken_or_the_default_is_out_of_range() {
        let created = now();
        assert_eq!(
            request(Some(utc(2001, 1, 1)), None).expires_at("paid", created, 24),
            Err(ExpiryProblem::DateInPast {
                at: utc(2001, 1, 1),
                now: created
            })
        );
        assert_eq!(
            request(None, None).expires_at("paid", created, i64::MAX),
            Err(ExpiryProblem::LifetimeOutOfRange { hours: i64::MAX })
        );
        assert_eq!(
            request(None, None).expires_at("paid", created, 0),
            Err(ExpiryProblem::LifetimeOutOfRange { hours: 0 })
        );
    }

    #[test]
    fn problems_read_as_the_validator_reports_them() {
        let problem = ExpiryProblem::AfterCertificate {
            at: utc(2030, 4, 1),
            not_after: utc(2030, 3, 1),
        };
        assert_eq!(
            problem.to_string(),
            "expiration_date 2030-04-01 00:00:00 UTC is after the certificate's expiry \
             2030-03-01 00:00:00 UTC"
        );
    }
}
