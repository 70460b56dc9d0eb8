//! The login profile: which platform the client talks to, with which token,
//! and the platform's public material as fetched at login (signer key, CAs),
//! in `$MSE_CONF_PATH/login.toml`, mode 0600.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::api::Client;
use crate::conf::conf_dir;
use crate::exit::Failure;
use mse_api::platform::Platform;

/// Environment variable overriding the profile's API URL.
pub const BASE_URL_ENV: &str = "MSE_BASE_URL";

/// The profile's file name in the configuration folder.
const FILE_NAME: &str = "login.toml";

/// What `mse login` saves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The API's URL.
    pub url: String,
    /// The API token.
    pub token: String,
    /// The user the token belongs to.
    pub user: String,
    /// Whether apps in the simulation TEE (no hardware protection) are
    /// accepted from this platform.
    pub allow_simulation: bool,
    /// Where apps are served.
    pub platform: Platform,
    /// The operator's enclave-signing public key (PEM): the MRSIGNER every
    /// app of this platform must have.
    pub signer_key: String,
    /// The CA of the platform's simulated quotes (PEM).
    pub simulation_ca: String,
    /// The CA of the platform's own TLS certificate (PEM), for
    /// `--untrusted-ssl` apps.
    pub operator_ca: String,
}

/// The profile's path.
pub fn path() -> PathBuf {
    conf_dir().join(FILE_NAME)
}

impl Profile {
    /// Loads the saved profile; fails with a hint when there is none.
    pub fn load() -> Result<Profile, Failure> {
        let path = path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Failure::Invalid(
                    "not logged in: run `mse login --url URL` first".into(),
                ))
            }
            Err(e) => {
                return Err(Failure::Other(anyhow::anyhow!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        let mut profile: Profile = toml::from_str(&text).map_err(|e| {
            Failure::Invalid(format!(
                "{} is damaged ({}); run `mse login` again",
                path.display(),
                e.message()
            ))
        })?;
        if let Some(url) = std::env::var(BASE_URL_ENV).ok().filter(|u| !u.is_empty()) {
            profile.url = url;
        }
        Ok(profile)
    }

    /// Saves the profile, readable by the user only.
    pub fn save(&self) -> Result<PathBuf, Failure> {
        let path = path();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Failure::Other(anyhow::anyhow!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let text = format!(
            "# The platform `mse` talks to. It holds an API token: keep it private.\n{}",
            toml::to_string_pretty(self)
                .map_err(|e| Failure::Other(anyhow::anyhow!("cannot encode the profile: {e}")))?
        );
        mse_package::context::write_private(&path, text.as_bytes())
            .map_err(|e| Failure::Other(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }

    /// A client of the profile's platform, with its token.
    pub fn client(&self) -> Result<Client, Failure> {
        Ok(Client::new(&self.url, Some(self.token.clone()))?)
    }

    /// The MRSIGNER every app of this platform must have, from its signer key.
    pub fn mr_signer(&self) -> Result<[u8; 32], Failure> {
        mse_attest::signer::mr_signer_from_pem(&self.signer_key).map_err(|e| {
            Failure::Other(anyhow::anyhow!(
                "the profile's signer key is not usable ({e}); run `mse login` again"
            ))
        })
    }

    /// The platform's simulation CA, DER.
    pub fn simulation_ca_der(&self) -> Result<Vec<u8>, Failure> {
        mse_attest::ratls::pem_to_der(self.simulation_ca.as_bytes()).map_err(|e| {
            Failure::Other(anyhow::anyhow!(
                "the profile's simulation CA is not usable ({e}); run `mse login` again"
            ))
        })
    }

    /// The simulation quote keys the platform revoked, fetched now: a
    /// platform that does not answer leaves no simulated quote verifiable.
    pub fn simulation_revoked(&self) -> Result<Vec<[u8; 32]>, Failure> {
        Client::new(&self.url, None)
            .and_then(|client| client.simulation_revoked())
            .map_err(|e| {
                Failure::Other(anyhow::anyhow!(
                    "cannot get the revoked simulation quote keys of {} (GET /simulation-revoked), \
                     so no simulated quote of it can be verified: {e}",
                    self.url
                ))
            })
    }

    /// `<domain>[:port]`: where an app of this platform is reached, without
    /// the port when it is HTTPS's own (443).
    pub fn app_address(&self, domain: &str) -> String {
        match self.platform.proxy_port {
            443 => domain.to_string(),
            port => format!("{domain}:{port}"),
        }
    }

    /// `https://<domain>[:port]`: where an app of this platform is served.
    pub fn app_url(&self, domain: &str) -> String {
        format!("https://{}", self.app_address(domain))
    }

    /// Whether other clients can resolve the name of app `domain` on this
    /// machine, and what to do when they cannot. `config_domain` is the
    /// name `mse` reaches the app's node by, whose address goes into the
    /// advice.
    pub fn reachability(&self, domain: &str, config_domain: &str) -> (bool, Option<String>) {
        let port = self.platform.proxy_port;
        if crate::reach::resolves(domain, port) {
            return (true, None);
        }
        let proxy = crate::fetch::resolve(config_domain, port)
            .ok()
            .and_then(|addrs| addrs.first().map(|a| a.ip()));
        (
            false,
            Some(crate::reach::advice(domain, &self.app_url(domain), proxy)),
        )
    }
}
