//! What a deployment will do, resolved before anything reaches the network:
//! the flags with the profile applied ([`Flags`]), then the checked
//! `mse.toml` and the files it names ([`Plan`]). Resolving is a function of
//! values; reading the files is [`AppFiles::read`], at the edge.

use std::path::Path;
use std::time::Duration;

use mse_api::apps::{DeployConfig, DeploySsl};
use mse_config::AppConfig;
use mse_package::context::CertificateOrigin;

use super::Args;
use crate::exit::Failure;
use crate::profile::Profile;

/// The flags of `mse deploy` with the profile applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    /// Replace a live app of the same name without asking.
    pub yes: bool,
    /// Verify the node before sending it anything (no `--no-verify`).
    pub verify: bool,
    /// `--untrusted-ssl`: the platform's certificate.
    pub untrusted_ssl: bool,
    /// `--no-acme`: keep the RA-TLS certificate.
    pub no_acme: bool,
    /// A node in the simulation TEE is accepted (by the profile or the flag).
    pub allow_simulation: bool,
    /// `--keep-running`: the key service keeps the keys.
    pub keep_running: bool,
    /// `--keep-secrets`: the key service gives the new node the secrets it
    /// keeps.
    pub keep_secrets: bool,
    /// `mse rotate`: what the redeployment renews besides the code key.
    pub rotation: Option<Rotation>,
    /// How long to wait for the app to start.
    pub timeout: Duration,
    /// Print one JSON object at the end.
    pub json: bool,
}

impl Flags {
    /// The flags, refused when the platform's nodes are simulated and
    /// nothing accepts simulation: their verification would fail after the
    /// upload, leaving a node behind.
    pub fn resolve(args: &Args, profile: &Profile) -> Result<Flags, Failure> {
        let allow_simulation = profile.allow_simulation || args.common.allow_simulation;
        if profile.platform.quote_provider == "simulation" && !allow_simulation && !args.no_verify {
            return Err(Failure::Invalid(format!(
                "{} runs apps in the simulation TEE (no hardware protection) and this profile \
                 does not accept simulation, so nothing was uploaded; log in again with `mse \
                 login --allow-simulation`, or pass --allow-simulation to accept it for this \
                 deployment",
                profile.url
            )));
        }
        Ok(Flags {
            yes: args.yes,
            verify: !args.no_verify,
            untrusted_ssl: args.untrusted_ssl,
            no_acme: args.no_acme,
            allow_simulation,
            keep_running: args.keep_running || args.keep_secrets,
            keep_secrets: args.keep_secrets,
            rotation: args.rotation,
            timeout: Duration::from_secs(args.common.timeout),
            json: args.common.json,
        })
    }
}

/// What `mse rotate` renews, besides the code key (every deployment
/// encrypts the code under a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rotation {
    /// The secrets (and the owner's TLS key) from the local files replace
    /// those the key service keeps.
    pub secrets: bool,
    /// A new storage key: the app's home is sealed under it from its next
    /// write-back.
    pub storage_key: bool,
}

/// The local files `mse.toml` names that the deployment sends: the secrets
/// and, in owner mode, the certificate and its private key.
#[derive(Debug, Clone, Default)]
pub struct AppFiles {
    /// The app's secrets, a JSON object, when `code.secrets` is set.
    pub secrets: Option<serde_json::Value>,
    /// Owner mode: the domain and chain sent to the platform.
    pub ssl: Option<DeploySsl>,
    /// Owner mode: the private key, sent only to the verified node.
    pub ssl_key: Option<String>,
}

impl AppFiles {
    /// Reads the files `config` names.
    pub fn read(config: &AppConfig) -> Result<AppFiles, Failure> {
        let secrets = read_secrets(config)?;
        let (ssl, ssl_key) = read_ssl(config)?;
        Ok(AppFiles {
            secrets,
            ssl,
            ssl_key,
        })
    }
}

/// Everything the deployment needs from this machine.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The flags, with the profile applied.
    pub flags: Flags,
    /// The checked `mse.toml`.
    pub config: AppConfig,
    /// The files it names.
    pub files: AppFiles,
    /// What was asked of the certificate; for zero trust the platform says
    /// whether the node gets an ACME certificate or keeps its RA-TLS one.
    pub asked: CertificateOrigin,
    /// `[storage] persistent = true`: the key its `$HOME` is encrypted
    /// under (64 hex digits), made here, sent only to the verified node and
    /// the verified key service.
    pub storage_key: Option<zeroize::Zeroizing<String>>,
}

impl Plan {
    /// The plan of `config` deployed with `flags`.
    pub fn new(flags: Flags, config: AppConfig, files: AppFiles) -> Plan {
        // `[ssl]` is ignored with `--untrusted-ssl` (with a warning).
        let asked = CertificateOrigin::chosen(
            config.ssl.is_some() && !flags.untrusted_ssl,
            flags.untrusted_ssl,
            false,
        );
        let mut plan = Plan {
            flags,
            config,
            files,
            asked,
            storage_key: None,
        };
        // Persistent storage lives under a key only the key service keeps
        // besides the node: the deployment hands it over (`--keep-running`).
        plan.flags.keep_running |= plan.keeps_storage();
        plan
    }

    /// With `[storage] persistent = true`: a new random storage key. The key
    /// service keeps the first one it is given for the app name (every later
    /// deployment's node gets that one, from the service) until `mse rotate
    /// --storage-key` sends it this one to use instead.
    pub fn with_storage_key(mut self) -> Plan {
        if self.keeps_storage() {
            let mut key = zeroize::Zeroizing::new([0u8; 32]);
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, key.as_mut());
            self.storage_key = Some(zeroize::Zeroizing::new(hex::encode(key.as_ref())));
        }
        self
    }

    /// `[storage] persistent = true`.
    pub fn keeps_storage(&self) -> bool {
        self.config
            .storage
            .as_ref()
            .is_some_and(|s| s.persistent_size().is_some())
    }

    /// Whether the key service, not this machine, configures the node: it
    /// gives the secrets it keeps (`--keep-secrets`, `mse rotate` without
    /// `--secrets`), or the storage key it keeps (persistent storage).
    pub fn service_configures(&self) -> bool {
        self.flags.keep_running && (self.flags.keep_secrets || self.keeps_storage())
    }

    /// The `config` part of `POST /apps`.
    pub fn deploy_config(&self) -> DeployConfig {
        let config = &self.config;
        DeployConfig {
            name: config.name.clone(),
            project: config.project.clone(),
            resource: config.resource.clone(),
            docker: config.code.docker.clone(),
            python_application: config.code.python_application.to_string(),
            healthcheck_endpoint: config.code.healthcheck_endpoint.clone(),
            expiration_date: config.expiration_date,
            ssl: self.files.ssl.clone(),
            untrusted_ssl: self.flags.untrusted_ssl,
            no_acme: self.flags.no_acme,
            storage_bytes: config.storage.as_ref().and_then(|s| s.persistent_size()),
        }
    }

    /// Whether the certificate origin the platform set the app up with is
    /// what was asked: zero trust takes an ACME certificate unless
    /// `--no-acme`.
    pub fn accepts_origin(&self, origin: CertificateOrigin) -> bool {
        // The platform's rule, with or without an ACME CA of its own.
        let owner = self.asked == CertificateOrigin::Owner;
        [false, !self.flags.no_acme]
            .into_iter()
            .any(|acme| CertificateOrigin::chosen(owner, self.flags.untrusted_ssl, acme) == origin)
    }
}

/// How a certificate origin reads in a sentence.
pub fn origin_words(origin: CertificateOrigin) -> &'static str {
    match origin {
        CertificateOrigin::SelfSigned => "the node's RA-TLS",
        CertificateOrigin::Owner => "your own",
        CertificateOrigin::Operator => "the platform's",
        CertificateOrigin::Acme => "a browser-trusted (ACME)",
    }
}

/// The app's secrets, a JSON object, when `code.secrets` is set.
fn read_secrets(config: &AppConfig) -> Result<Option<serde_json::Value>, Failure> {
    let Some(path) = &config.code.secrets else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::Invalid(format!("cannot read the secrets {}: {e}", path.display()))
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::Invalid(format!("{} is not JSON: {e}", path.display())))?;
    if !value.is_object() {
        return Err(Failure::Invalid(format!(
            "{} must hold a JSON object",
            path.display()
        )));
    }
    Ok(Some(value))
}

/// Owner mode: the domain and chain sent to the platform, and the private
/// key kept for the verified node.
fn read_ssl(config: &AppConfig) -> Result<(Option<DeploySsl>, Option<String>), Failure> {
    let Some(ssl) = &config.ssl else {
        return Ok((None, None));
    };
    let read = |path: &Path, what: &str| {
        std::fs::read_to_string(path).map_err(|e| {
            Failure::Invalid(format!("cannot read the {what} {}: {e}", path.display()))
        })
    };
    Ok((
        Some(DeploySsl {
            domain_name: ssl.domain_name.clone(),
            certificate: read(&ssl.certificate, "certificate")?,
        }),
        Some(read(&ssl.private_key, "private key")?),
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::{TimeZone as _, Utc};
    use clap::Parser as _;
    use mse_config::{MemoryFs, Options};

    use super::*;

    /// `mse deploy ARGS`, parsed as clap does.
    fn args(flags: &[&str]) -> Args {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let argv = std::iter::once("deploy").chain(flags.iter().copied());
        Cli::try_parse_from(argv).expect("valid flags").args
    }

    /// A profile of a platform whose nodes get quotes from `provider`.
    fn profile(provider: &str, allow_simulation: bool) -> Profile {
        serde_json::from_value(serde_json::json!({
            "url": "https://platform.example:9443",
            "token": "t",
            "user": "alice",
            "allow_simulation": allow_simulation,
            "platform": {
                "base_domain": "localhost",
                "proxy_port": 8443,
                "quote_provider": provider,
            },
            "signer_key": "",
            "simulation_ca": "",
            "operator_ca": "",
        }))
        .expect("a profile")
    }

    /// A checked `mse.toml` with `extra` appended.
    fn config(extra: &str) -> AppConfig {
        let text = format!(
            "name = \"hello\"\nproject = \"default\"\nresource = \"free\"\n\n[code]\n\
             location = \"code\"\ndocker = \"{}\"\npython_application = \"app:app\"\n\
             healthcheck_endpoint = \"/health\"\n{extra}",
            mse_config::DEFAULT_DOCKER_IMAGE
        );
        let fs = MemoryFs::new().file("/proj/code/app.py", "app = None\n");
        let options = Options {
            now: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            untrusted_ssl: false,
        };
        let report = mse_config::validate(&PathBuf::from("/proj/mse.toml"), &text, &fs, &options);
        report.config.expect("a valid mse.toml")
    }

    fn plan(flags: &[&str], extra: &str) -> Plan {
        let flags = Flags::resolve(&args(flags), &profile("gramine", false)).unwrap();
        Plan::new(flags, config(extra), AppFiles::default())
    }

    #[test]
    fn a_simulated_platform_is_refused_before_anything_is_uploaded_unless_accepted() {
        let refused = Flags::resolve(&args(&[]), &profile("simulation", false)).unwrap_err();
        assert!(matches!(refused, Failure::Invalid(_)), "{refused:?}");
        let text = refused.to_string();
        assert!(text.starts_with("https://platform.example:9443 runs apps in the simulation TEE"));
        assert!(text.contains("mse login --allow-simulation"), "{text}");
        assert!(text.contains("pass --allow-simulation"), "{text}");

        let by_flag = Flags::resolve(
            &args(&["--allow-simulation"]),
            &profile("simulation", false),
        );
        assert!(by_flag.unwrap().allow_simulation);
        let by_profile = Flags::resolve(&args(&[]), &profile("simulation", true));
        assert!(by_profile.unwrap().allow_simulation);
        // Nothing is verified, so nothing would fail verification.
        let unverified = Flags::resolve(&args(&["--no-verify"]), &profile("simulation", false));
        let unverified = unverified.unwrap();
        assert!(!unverified.verify && !unverified.allow_simulation);
    }

    #[test]
    fn flags_default_to_a_verified_deployment_that_asks_and_waits_ten_minutes() {
        let flags = Flags::resolve(&args(&[]), &profile("gramine", false)).unwrap();
        assert_eq!(
            flags,
            Flags {
                yes: false,
                verify: true,
                untrusted_ssl: false,
                no_acme: false,
                allow_simulation: false,
                keep_running: false,
                keep_secrets: false,
                rotation: None,
                timeout: Duration::from_secs(600),
                json: false,
            }
        );
        let flags = Flags::resolve(
            &args(&["-y", "--json", "--timeout", "5", "--no-acme"]),
            &profile("gramine", false),
        )
        .unwrap();
        assert!(flags.yes && flags.json && flags.no_acme);
        assert_eq!(flags.timeout, Duration::from_secs(5));
    }

    #[test]
    fn the_certificate_asked_for_follows_the_flags_then_the_ssl_section() {
        assert_eq!(plan(&[], "").asked, CertificateOrigin::SelfSigned);
        assert_eq!(
            plan(&["--untrusted-ssl"], "").asked,
            CertificateOrigin::Operator
        );
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut owned = config("");
        owned.ssl = Some(mse_config::SslConfig {
            domain_name: "app.example.com".into(),
            private_key: "/proj/key.pem".into(),
            certificate: "/proj/cert.pem".into(),
            certificate_not_before: now,
            certificate_not_after: now,
        });
        let flags = |extra: &[&str]| Flags::resolve(&args(extra), &profile("gramine", false));
        let owner = Plan::new(flags(&[]).unwrap(), owned.clone(), AppFiles::default());
        assert_eq!(owner.asked, CertificateOrigin::Owner);
        assert!(!owner.accepts_origin(CertificateOrigin::Acme));
        let operator = Plan::new(
            flags(&["--untrusted-ssl"]).unwrap(),
            owned,
            AppFiles::default(),
        );
        assert_eq!(operator.asked, CertificateOrigin::Operator);
    }

    #[test]
    fn zero_trust_accepts_an_acme_certificate_unless_no_acme() {
        let plan_default = plan(&[], "");
        assert!(plan_default.accepts_origin(CertificateOrigin::SelfSigned));
        assert!(plan_default.accepts_origin(CertificateOrigin::Acme));
        assert!(!plan_default.accepts_origin(CertificateOrigin::Operator));
        let no_acme = plan(&["--no-acme"], "");
        assert!(no_acme.accepts_origin(CertificateOrigin::SelfSigned));
        assert!(!no_acme.accepts_origin(CertificateOrigin::Acme));
        let operator = plan(&["--untrusted-ssl"], "");
        assert!(operator.accepts_origin(CertificateOrigin::Operator));
        assert!(!operator.accepts_origin(CertificateOrigin::SelfSigned));
    }

    #[test]
    fn the_deploy_request_carries_the_checked_file_and_the_certificate_flags() {
        let config = plan(&["--no-acme"], "").deploy_config();
        assert_eq!(config.name, "hello");
        assert_eq!(config.project, "default");
        assert_eq!(config.resource, "free");
        assert_eq!(config.docker, mse_config::DEFAULT_DOCKER_IMAGE);
        assert_eq!(config.python_application, "app:app");
        assert_eq!(config.healthcheck_endpoint, "/health");
        assert!(config.no_acme && !config.untrusted_ssl);
        assert_eq!(config.ssl, None);
    }

    #[test]
    fn secrets_must_be_a_json_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let mut config = config("");
        config.code.secrets = Some(path.clone());
        std::fs::write(&path, "[1, 2]").unwrap();
        let error = AppFiles::read(&config).unwrap_err();
        assert!(matches!(error, Failure::Invalid(_)), "{error:?}");
        assert!(error.to_string().ends_with("must hold a JSON object"));
        std::fs::write(&path, "{\"token\": \"s3cr3t\"}").unwrap();
        let files = AppFiles::read(&config).unwrap();
        assert_eq!(files.secrets, Some(serde_json::json!({"token": "s3cr3t"})));
        assert!(files.ssl.is_none() && files.ssl_key.is_none());
    }
}
