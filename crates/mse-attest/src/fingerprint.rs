//! The fingerprint of an app: the MRENCLAVE the simulation TEE reports,
//! computed the same way by the node and by anyone verifying it. See
//! `docs/fingerprint.md` for the encoding.

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

/// Domain separator, first in the hashed encoding.
pub const DOMAIN: &[u8] = b"mse-fingerprint-v1";

/// How the app's TLS is provided, with what binds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// The node's RA-TLS certificate, valid until the app's expiry.
    SelfSigned {
        /// The app's expiry.
        expires_at: DateTime<Utc>,
    },
    /// The owner's certificate, identified by the SHA-256 of its leaf (DER).
    Owner {
        /// SHA-256 of the owner's leaf certificate, DER.
        certificate_sha256: [u8; 32],
    },
    /// The platform's certificate, at the proxy; the app expires at `expires_at`.
    Operator {
        /// The app's expiry.
        expires_at: DateTime<Utc>,
    },
    /// A publicly trusted certificate obtained over ACME for a key the node
    /// generated (its RA-TLS key); the app expires at `expires_at`.
    Acme {
        /// The app's expiry.
        expires_at: DateTime<Utc>,
    },
}

/// Everything the fingerprint covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintInput {
    /// The runtime image reference (`code.docker`).
    pub runtime_image: String,
    /// Digest (hex) of the runtime environment spec the image maps to.
    pub runtime_spec_digest: String,
    /// Enclave size, as the platform names it (`"4G"`).
    pub enclave_size: String,
    /// The app's UUID.
    pub app_uuid: String,
    /// The app's domain.
    pub app_domain: String,
    /// `module:variable`.
    pub python_application: String,
    /// TLS mode and what binds it.
    pub tls: TlsMode,
    /// SHA-256 of the encrypted code tarball.
    pub code_sha256: [u8; 32],
}

/// Who provides the certificate an app serves, before what binds it is
/// known: the node (RA-TLS), the owner (their leaf, DER) or the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsOrigin<'a> {
    /// The node's RA-TLS certificate.
    SelfSigned,
    /// The owner's certificate.
    Owner {
        /// The leaf certificate, DER.
        leaf_der: &'a [u8],
    },
    /// The platform's certificate, at the proxy.
    Operator,
    /// A publicly trusted certificate, obtained over ACME for the node's key.
    Acme,
}

impl TlsMode {
    /// The mode of an app whose certificate comes from `origin` and which
    /// expires at `expires_at`: the expiry binds the node's, the platform's
    /// and the ACME certificates, the leaf's SHA-256 the owner's.
    pub fn new(origin: TlsOrigin<'_>, expires_at: DateTime<Utc>) -> TlsMode {
        match origin {
            TlsOrigin::SelfSigned => TlsMode::SelfSigned { expires_at },
            TlsOrigin::Owner { leaf_der } => TlsMode::Owner {
                certificate_sha256: Sha256::digest(leaf_der).into(),
            },
            TlsOrigin::Operator => TlsMode::Operator { expires_at },
            TlsOrigin::Acme => TlsMode::Acme { expires_at },
        }
    }

    /// The `tls_mode` and `tls_binding` values of the encoding (see
    /// `docs/fingerprint.md`): the one place that writes them, for the
    /// fingerprint and for the evidence a node publishes.
    pub fn encoded(&self) -> (&'static str, String) {
        match self {
            TlsMode::SelfSigned { expires_at } => ("self", rfc3339(expires_at)),
            TlsMode::Owner { certificate_sha256 } => ("owner", hex::encode(certificate_sha256)),
            TlsMode::Operator { expires_at } => ("operator", rfc3339(expires_at)),
            TlsMode::Acme { expires_at } => ("acme", rfc3339(expires_at)),
        }
    }

    /// The mode whose [`TlsMode::encoded`] values are `mode` and `binding`.
    /// Only the canonical text is accepted (RFC 3339 UTC with seconds, or 64
    /// hex digits), so what is read encodes back to the same bytes.
    pub fn from_encoded(mode: &str, binding: &str) -> Result<TlsMode, String> {
        let expiry = || -> Result<DateTime<Utc>, String> {
            DateTime::parse_from_rfc3339(binding)
                .ok()
                .map(|t| t.with_timezone(&Utc))
                .filter(|t| rfc3339(t) == binding)
                .ok_or_else(|| {
                    format!(
                        "tls_binding `{binding}` of mode `{mode}` is not an RFC 3339 UTC time \
                         with seconds, like 2030-01-01T00:00:00Z"
                    )
                })
        };
        Ok(match mode {
            "self" => TlsMode::SelfSigned {
                expires_at: expiry()?,
            },
            "operator" => TlsMode::Operator {
                expires_at: expiry()?,
            },
            "acme" => TlsMode::Acme {
                expires_at: expiry()?,
            },
            "owner" => {
                let mut certificate_sha256 = [0u8; 32];
                hex::decode_to_slice(binding, &mut certificate_sha256)
                    .ok()
                    .filter(|_| binding == binding.to_ascii_lowercase())
                    .ok_or_else(|| {
                        format!(
                            "tls_binding `{binding}` of mode `owner` is not 64 lowercase hex \
                             digits (the SHA-256 of the owner's leaf certificate)"
                        )
                    })?;
                TlsMode::Owner { certificate_sha256 }
            }
            other => {
                return Err(format!(
                    "unknown tls_mode `{other}`: expected self, owner, operator or acme"
                ))
            }
        })
    }
}

/// The runtime an app runs on, as the fingerprint names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime<'a> {
    /// The runtime image reference (`code.docker`).
    pub image: &'a str,
    /// Digest (hex) of the runtime environment spec the image maps to.
    pub spec_digest: &'a str,
    /// Enclave size, as the platform names it (`"4G"`).
    pub enclave_size: &'a str,
}

/// The deployed app, as the fingerprint names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppIdentity<'a> {
    /// The app's UUID.
    pub uuid: &'a str,
    /// The app's domain.
    pub domain: &'a str,
    /// `module:variable`.
    pub python_application: &'a str,
}

impl FingerprintInput {
    /// The input for `app` on `runtime`, serving a certificate from
    /// `origin` until `expires_at`, with the encrypted code of SHA-256
    /// `code_sha256`: what the client knows after deploying, a verifier from
    /// a context and the node from its arguments.
    pub fn new(
        runtime: Runtime<'_>,
        app: AppIdentity<'_>,
        origin: TlsOrigin<'_>,
        expires_at: DateTime<Utc>,
        code_sha256: [u8; 32],
    ) -> FingerprintInput {
        FingerprintInput {
            runtime_image: runtime.image.to_string(),
            runtime_spec_digest: runtime.spec_digest.to_string(),
            enclave_size: runtime.enclave_size.to_string(),
            app_uuid: app.uuid.to_string(),
            app_domain: app.domain.to_string(),
            python_application: app.python_application.to_string(),
            tls: TlsMode::new(origin, expires_at),
            code_sha256,
        }
    }
}

fn field(hasher: &mut Sha256, name: &str, value: &[u8]) {
    hasher.update((name.len() as u32).to_be_bytes());
    hasher.update(name.as_bytes());
    hasher.update((value.len() as u32).to_be_bytes());
    hasher.update(value);
}

/// The fingerprint (32 bytes).
pub fn fingerprint(input: &FingerprintInput) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((DOMAIN.len() as u32).to_be_bytes());
    h.update(DOMAIN);
    field(&mut h, "runtime_image", input.runtime_image.as_bytes());
    field(
        &mut h,
        "runtime_spec_digest",
        input.runtime_spec_digest.to_ascii_lowercase().as_bytes(),
    );
    field(&mut h, "enclave_size", input.enclave_size.as_bytes());
    field(
        &mut h,
        "app_uuid",
        input.app_uuid.to_ascii_lowercase().as_bytes(),
    );
    field(
        &mut h,
        "app_domain",
        input.app_domain.to_ascii_lowercase().as_bytes(),
    );
    field(
        &mut h,
        "python_application",
        input.python_application.as_bytes(),
    );
    let (mode, binding) = input.tls.encoded();
    field(&mut h, "tls_mode", mode.as_bytes());
    field(&mut h, "tls_binding", binding.as_bytes());
    field(
        &mut h,
        "code_sha256",
        hex::encode(input.code_sha256).as_bytes(),
    );
    h.finalize().into()
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn sample() -> FingerprintInput {
        FingerprintInput {
            runtime_image: "ghcr.io/cosmian/mse-flask:20230124182826".into(),
            runtime_spec_digest: "ab".repeat(32),
            enclave_size: "4G".into(),
            app_uuid: "0f4e8a52-9c1b-4d7e-a3f0-1b2c3d4e5f60".into(),
            app_domain: "0f4e8a52-9c1b-4d7e-a3f0-1b2c3d4e5f60.localhost".into(),
            python_application: "app:app".into(),
            tls: TlsMode::SelfSigned {
                expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
            },
            code_sha256: [7; 32],
        }
    }

    #[test]
    fn known_vector_is_stable() {
        // Pinned so that a change of the encoding is noticed: the node and
        // every client must agree on it. See docs/fingerprint.md.
        assert_eq!(hex::encode(fingerprint(&sample())), KNOWN);
    }

    const KNOWN: &str = include_str!("../tests/fingerprint-vector.txt");

    #[test]
    fn known_acme_vector_is_stable() {
        let mut input = sample();
        input.tls = TlsMode::Acme {
            expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
        };
        assert_eq!(hex::encode(fingerprint(&input)), KNOWN_ACME);
    }

    const KNOWN_ACME: &str = include_str!("../tests/fingerprint-vector-acme.txt");

    #[test]
    fn every_mode_reads_back_from_its_encoding() {
        let expires_at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        for mode in [
            TlsMode::SelfSigned { expires_at },
            TlsMode::Operator { expires_at },
            TlsMode::Acme { expires_at },
            TlsMode::Owner {
                certificate_sha256: [0xab; 32],
            },
        ] {
            let (name, binding) = mode.encoded();
            assert_eq!(TlsMode::from_encoded(name, &binding), Ok(mode));
        }
    }

    #[test]
    fn a_non_canonical_or_unknown_encoding_is_refused_naming_it() {
        for (mode, binding, says) in [
            ("acme", "2030-01-01T00:00:00+00:00", "RFC 3339 UTC time"),
            ("self", "2030-01-01T00:00:00.5Z", "RFC 3339 UTC time"),
            ("operator", "tomorrow", "`tomorrow`"),
            ("owner", &"AB".repeat(32), "64 lowercase hex digits"),
            ("owner", "abcd", "64 lowercase hex digits"),
            (
                "letsencrypt",
                "2030-01-01T00:00:00Z",
                "unknown tls_mode `letsencrypt`",
            ),
        ] {
            let error = TlsMode::from_encoded(mode, binding).unwrap_err();
            assert!(error.contains(says), "{mode} {binding}: {error}");
        }
    }

    #[test]
    fn every_input_changes_the_fingerprint() {
        let base = fingerprint(&sample());
        type Change = Box<dyn Fn(&mut FingerprintInput)>;
        let variants: Vec<Change> = vec![
            Box::new(|i| i.runtime_image.push('x')),
            Box::new(|i| i.runtime_spec_digest = "cd".repeat(32)),
            Box::new(|i| i.enclave_size = "8G".into()),
            Box::new(|i| i.app_uuid = "1f4e8a52-9c1b-4d7e-a3f0-1b2c3d4e5f60".into()),
            Box::new(|i| i.app_domain = "other.localhost".into()),
            Box::new(|i| i.python_application = "app:application".into()),
            Box::new(|i| {
                i.tls = TlsMode::SelfSigned {
                    expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 1).unwrap(),
                }
            }),
            Box::new(|i| {
                i.tls = TlsMode::Operator {
                    expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
                }
            }),
            Box::new(|i| {
                i.tls = TlsMode::Owner {
                    certificate_sha256: [1; 32],
                }
            }),
            Box::new(|i| {
                i.tls = TlsMode::Acme {
                    expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
                }
            }),
            Box::new(|i| i.code_sha256[31] ^= 1),
        ];
        for (n, change) in variants.iter().enumerate() {
            let mut input = sample();
            change(&mut input);
            assert_ne!(fingerprint(&input), base, "variant {n}");
        }
    }

    #[test]
    fn the_constructor_binds_the_expiry_or_the_owner_leaf() {
        let input = |origin, expires_at| {
            FingerprintInput::new(
                Runtime {
                    image: "ghcr.io/cosmian/mse-flask:20230124182826",
                    spec_digest: &"ab".repeat(32),
                    enclave_size: "4G",
                },
                AppIdentity {
                    uuid: "0f4e8a52-9c1b-4d7e-a3f0-1b2c3d4e5f60",
                    domain: "0f4e8a52-9c1b-4d7e-a3f0-1b2c3d4e5f60.localhost",
                    python_application: "app:app",
                },
                origin,
                expires_at,
                [7; 32],
            )
        };
        let expiry = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(input(TlsOrigin::SelfSigned, expiry), sample());
        assert_eq!(
            input(TlsOrigin::Operator, expiry).tls,
            TlsMode::Operator { expires_at: expiry }
        );
        assert_eq!(
            input(TlsOrigin::Acme, expiry).tls,
            TlsMode::Acme { expires_at: expiry }
        );
        let owner = input(TlsOrigin::Owner { leaf_der: b"leaf" }, expiry);
        assert_eq!(
            owner.tls,
            TlsMode::Owner {
                certificate_sha256: Sha256::digest(b"leaf").into()
            }
        );
        let later = expiry + chrono::TimeDelta::days(1);
        assert_eq!(
            input(TlsOrigin::Owner { leaf_der: b"leaf" }, later),
            owner,
            "the owner's certificate, not the expiry, binds owner mode"
        );
    }

    #[test]
    fn length_prefixes_prevent_field_shifting() {
        let mut a = sample();
        a.enclave_size = "4Gx".into();
        a.app_uuid = "y".into();
        let mut b = sample();
        b.enclave_size = "4G".into();
        b.app_uuid = "xy".into();
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
