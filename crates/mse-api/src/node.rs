//! The node-host protocol: how a machine that runs apps joins the platform,
//! renews its lease, learns which apps to start and stop, fetches their
//! encrypted packages and reports their events and logs. Every call goes
//! over TLS to the API's node listener, whose certificate chains to the
//! platform's operator CA; the join token carries that CA's SHA-256, so a
//! joining host trusts nothing it has not checked.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::Event;

/// The prefix of every join token.
pub const JOIN_TOKEN_PREFIX: &str = "msejoin_";
/// The prefix of a node host's credential (the bearer token of its calls).
pub const NODE_CREDENTIAL_PREFIX: &str = "msenode_";

/// A join token: a secret the API keeps hashed, and the SHA-256 of the
/// platform's CA certificate (DER), which the joining host pins.
/// Written `msejoin_<64 hex secret>_<64 hex CA hash>`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The secret, 32 bytes.
    pub secret: [u8; 32],
    /// SHA-256 of the CA certificate's DER.
    pub ca_sha256: [u8; 32],
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "JoinToken(ca sha256 {})", hex::encode(self.ca_sha256))
    }
}

/// Why a join token does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a join token: expected `msejoin_` then 64 hex digits, `_` and 64 more (as \
     `POST /nodes/tokens` gave it)"
)]
pub struct BadJoinToken;

impl JoinToken {
    /// A new token for the CA whose certificate (DER) is `ca_der`.
    pub fn new(secret: [u8; 32], ca_der: &[u8]) -> Self {
        JoinToken {
            secret,
            ca_sha256: Sha256::digest(ca_der).into(),
        }
    }

    /// Parses the written form.
    pub fn parse(text: &str) -> Result<Self, BadJoinToken> {
        let rest = text
            .trim()
            .strip_prefix(JOIN_TOKEN_PREFIX)
            .ok_or(BadJoinToken)?;
        let (secret, ca) = rest.split_once('_').ok_or(BadJoinToken)?;
        let mut token = JoinToken {
            secret: [0; 32],
            ca_sha256: [0; 32],
        };
        hex::decode_to_slice(secret, &mut token.secret).map_err(|_| BadJoinToken)?;
        hex::decode_to_slice(ca, &mut token.ca_sha256).map_err(|_| BadJoinToken)?;
        Ok(token)
    }

    /// SHA-256 (hex) of the secret: what the API stores.
    pub fn secret_hash(&self) -> String {
        hex::encode(Sha256::digest(self.secret))
    }

    /// Whether `ca_der` is the certificate this token pins.
    pub fn pins(&self, ca_der: &[u8]) -> bool {
        let seen: [u8; 32] = Sha256::digest(ca_der).into();
        seen == self.ca_sha256
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{JOIN_TOKEN_PREFIX}{}_{}",
            hex::encode(self.secret),
            hex::encode(self.ca_sha256)
        )
    }
}

/// `POST /nodes/tokens` (admin): a new join token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinToken {
    /// Hours it may be used for (1 to 8760; default 24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_hours: Option<u32>,
    /// How many hosts (names) it may join (1 to [`MAX_TOKEN_HOSTS`];
    /// default 1). A host that joins again under its name uses no more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hosts: Option<u32>,
    /// The most memory a host joining with it is granted, MB, whatever it
    /// declares (default [`DEFAULT_GRANT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mb: Option<u64>,
    /// The most cores a host joining with it is granted (default
    /// [`DEFAULT_GRANT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cores: Option<u64>,
    /// An address the admin approves for its hosts to advertise instead of
    /// the one their join comes from (a host behind NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<IpAddr>,
}

/// The most hosts one join token may join.
pub const MAX_TOKEN_HOSTS: u32 = 1000;

/// What a host is granted at most when its join token names no capacity:
/// 4096 MB and 4 cores.
pub const DEFAULT_GRANT: Capacity = Capacity {
    memory_mb: 4096,
    cores: 4,
};

/// The answer of `POST /nodes/tokens`: the token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenCreated {
    /// The token (`msejoin_…`).
    pub token: String,
    /// When it stops being accepted, Unix seconds.
    pub expires_at: i64,
    /// Its id, as `GET /nodes/tokens` lists it and `DELETE
    /// /nodes/tokens/{id}` revokes it.
    #[serde(default)]
    pub id: String,
    /// How many hosts it may join.
    #[serde(default)]
    pub max_hosts: u32,
    /// The most a host joining with it is granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Capacity>,
}

/// A join token, as `GET /nodes/tokens` lists it (admin): never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenInfo {
    /// Its id (`DELETE /nodes/tokens/{id}` revokes it).
    pub id: String,
    /// The admin who made it.
    pub created_by: String,
    /// When, Unix seconds.
    pub created_at: i64,
    /// When it stops being accepted, Unix seconds.
    pub expires_at: i64,
    /// How many hosts it may join.
    pub max_hosts: u32,
    /// The hosts it joined.
    pub hosts: Vec<String>,
    /// The most a host joining with it is granted.
    pub grant: Capacity,
    /// The address its hosts may advertise besides their join's source.
    pub advertise: Option<IpAddr>,
    /// Whether an admin revoked it.
    pub revoked: bool,
    /// Whether it joins a host now: not revoked, not expired, not used up.
    pub usable: bool,
}

/// What a host offers: the memory and cores apps may take on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Memory, MB.
    pub memory_mb: u64,
    /// CPU cores.
    pub cores: u64,
}

/// `POST /nodes/join`: a host asks to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The join token (`msejoin_…`).
    pub token: String,
    /// The name the host asks for, a host name ([`check_node_id`]); a
    /// host that rejoins asks for its old name.
    pub name: String,
    /// The address the proxy reaches the host's apps at: the address the
    /// join comes from, or the one its token approves.
    pub advertise: IpAddr,
    /// What the host declares apps may take on it; it is granted at most
    /// what its token allows.
    pub capacity: Capacity,
    /// The host's own quote-signing public key (SubjectPublicKeyInfo, PEM),
    /// which the platform's simulation CA certifies.
    pub quote_key: String,
    /// The TEE the host's nodes run in (a host that says nothing:
    /// simulation).
    #[serde(default)]
    pub tee: crate::tee::Tee,
}

/// The answer of `POST /nodes/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The host's node id.
    pub node: String,
    /// The bearer credential of the host's later calls (`msenode_…`),
    /// shown once; the host keeps it in memory only.
    pub credential: String,
    /// Seconds a lease lasts: after this long without a renewal the API
    /// marks the host's apps `on_error` ("node lost").
    pub lease_secs: u64,
    /// The host's quote-signing certificate then the simulation CA, PEM.
    pub quote_chain: String,
    /// The enclave-signing public key (PEM): what MRSIGNER is made of.
    pub signer_pem: String,
    /// The quote provider of the host's TEE, as it stated it:
    /// `simulation`, `gramine`, `tdx` or `sev-snp`.
    pub quote_provider: String,
    /// Seconds a node waits for its owner's configuration.
    pub config_timeout_secs: u64,
    /// `required` or `best-effort`.
    pub sandbox: String,
    /// What the host is granted: what it declared, capped by what its join
    /// token allows. Placement counts this, not the declaration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// The key service's domain (`keys.<base domain>`): the host runs a
    /// replica of it (docs/keys.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_service: Option<String>,
}

/// `POST /nodes/lease`: the host renews its lease and says what runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The apps whose nodes run on the host now.
    pub running: Vec<String>,
    /// How long the API may hold the answer while there is nothing to do,
    /// milliseconds (at most [`MAX_LEASE_WAIT_MS`]).
    #[serde(default)]
    pub wait_ms: u64,
}

/// The longest [`LeaseRequest::wait_ms`].
pub const MAX_LEASE_WAIT_MS: u64 = 5_000;

/// The answer of `POST /nodes/lease`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGranted {
    /// Seconds from now the lease lasts.
    pub lease_secs: u64,
    /// The digest of the platform's catalog: when it is not the one the
    /// host has, the host fetches `GET /nodes/catalog` before starting apps.
    pub catalog_digest: String,
    /// Apps to start.
    pub start: Vec<Assignment>,
    /// Apps to stop, with why.
    pub stop: Vec<StopOrder>,
}

/// How an app's TLS is made, with what the node needs for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "origin", rename_all = "snake_case")]
pub enum AppTls {
    /// An RA-TLS certificate of the node's own.
    #[serde(rename = "self")]
    RaTls,
    /// The owner's certificate (chain, PEM); its key comes with the
    /// owner's configuration.
    Owner {
        /// The chain, PEM.
        chain_pem: String,
    },
    /// The operator's proxy terminates TLS; the node serves plain HTTP.
    Operator,
    /// The node's RA-TLS certificate until its ACME CA issues one for the
    /// same key, which the node obtains and renews itself.
    Acme(AcmeCa),
}

/// The platform's ACME CA, as nodes need it (`mse-server
/// --acme-directory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeCa {
    /// The ACME directory URL.
    pub directory: String,
    /// PEM roots for the ACME server's own HTTPS; `None`: the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_pem: Option<String>,
    /// The validity to ask for, seconds (for CAs that honour an order's
    /// `notAfter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<u64>,
}

/// An app a host is to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Its uuid.
    pub app: String,
    /// Its domain.
    pub domain: String,
    /// `module:variable`.
    pub application: String,
    /// Its runtime image.
    pub image: String,
    /// Enclave size.
    pub enclave_size: String,
    /// Its health check path.
    pub healthcheck: String,
    /// Its TLS.
    pub tls: AppTls,
    /// When it expires (Unix seconds on the wire).
    #[serde(with = "chrono::serde::ts_seconds")]
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// SHA-256 (hex) of its encrypted package: `GET /nodes/packages/{sha256}`.
    pub package_sha256: String,
    /// The package's size, bytes.
    pub package_bytes: u64,
    /// Memory the app may use, MB.
    pub memory_mb: u64,
    /// Cores the app may use.
    pub cores: u64,
    /// Its persistent storage, when it keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<AssignedStorage>,
}

/// The persistent storage of an assigned app (docs/keys.md): what its node
/// restores before the app starts and writes back while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedStorage {
    /// The app name it belongs to (`OWNER/PROJECT/NAME`): kept across
    /// restarts, reschedules and upgrades of that name.
    pub scope: String,
    /// Its cap, bytes.
    pub cap_bytes: u64,
    /// The version the platform holds (0: none yet): what the node
    /// restores (`GET /nodes/storage/{app}`).
    pub version: u64,
}

/// `GET /nodes/storage/{app}`: the snapshot the platform holds of an app's
/// storage (the node's credential, for an app placed on it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageHead {
    /// Its version (0: none).
    pub version: u64,
    /// Its sealed manifest, base64 (empty for none).
    pub manifest: String,
    /// Its size, bytes.
    pub size: u64,
    /// The blobs it names, in order.
    pub blobs: Vec<String>,
}

/// `POST /nodes/storage/{app}/head`: a snapshot whose blobs were sent
/// (`PUT /nodes/storage/{app}/blobs/{id}`) becomes the app's storage when
/// it is a later version than the one held and every blob it names is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageCommit {
    /// The version: one more than the one held.
    pub version: u64,
    /// The sealed manifest, base64.
    pub manifest: String,
    /// The blobs it names, in order.
    pub blobs: Vec<String>,
    /// Its size, bytes.
    pub size: u64,
}

/// Whether `id` names a storage blob: the SHA-256 of its bytes, 64 hex
/// digits.
pub fn is_blob_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The largest blob a node sends: a sealed chunk of a snapshot.
pub const MAX_STORAGE_BLOB: usize = 1024 * 1024 + 1024;

/// An app a host is to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopOrder {
    /// Its uuid.
    pub app: String,
    /// Why (what its status will say).
    pub reason: String,
}

/// `POST /nodes/events`: what a host's node said of its app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventReport {
    /// The app.
    pub app: String,
    /// The event, with `listen` rewritten to the host's advertised address.
    pub event: Event,
}

/// The largest log chunk a host sends in one `POST /nodes/logs/{app}`.
pub const MAX_LOG_CHUNK: usize = 256 * 1024;

/// One node host, as `GET /nodes` lists it (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHost {
    /// Its node id.
    pub node: String,
    /// `local` (a node process sharing the API's store) or `remote` (a host
    /// that joined with a token).
    pub kind: String,
    /// Where the proxy reaches its apps.
    pub address: Option<String>,
    /// The TEE its apps run in, as it stated when it joined.
    #[serde(default)]
    pub tee: crate::tee::Tee,
    /// When its lease ends, Unix seconds.
    pub lease_until: i64,
    /// Whether its lease is current.
    pub live: bool,
    /// What it offers.
    pub capacity: Capacity,
    /// What its live apps take of it.
    pub used: Capacity,
    /// Its live apps.
    pub apps: Vec<String>,
    /// Whether its quote key was revoked.
    pub revoked: bool,
    /// Whether an admin revoked the host: it is fenced and its name joins
    /// nothing until an admin allows it (`POST /nodes/{node}/allow`).
    #[serde(default)]
    pub barred: bool,
    /// Whether an admin drained it (`POST /nodes/{node}/drain`): nothing
    /// new is placed on it and the apps the key service keeps moved off it.
    #[serde(default)]
    pub draining: bool,
}

/// Names under `/nodes/` that are routes, never a node's name.
pub const RESERVED_NODE_NAMES: [&str; 9] = [
    "tokens",
    "join",
    "lease",
    "catalog",
    "packages",
    "events",
    "logs",
    "key-service",
    "storage",
];

/// Checks a node id as a host name (RFC 1123): dot-separated labels of 1
/// to 63 letters, digits and `-`, none starting or ending with `-`, at most
/// 253 characters in all; not one of [`RESERVED_NODE_NAMES`].
pub fn check_node_id(id: &str) -> Result<(), String> {
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let shown = crate::text::capped(&crate::text::one_line(id), 80);
    if id.len() > 253 || !id.split('.').all(label) {
        return Err(format!(
            "`{shown}` is not a node id: give a host name (labels of 1 to 63 letters, digits \
             and `-`, separated by single dots, at most 253 characters)"
        ));
    }
    if RESERVED_NODE_NAMES.contains(&id) {
        return Err(format!(
            "`{id}` is not a node id: it names a route under /nodes/; give another name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_token_reads_back_as_written_and_pins_its_ca() {
        let token = JoinToken::new([7; 32], b"ca certificate");
        let parsed = JoinToken::parse(&token.to_string()).unwrap();
        assert_eq!(parsed, token);
        assert!(parsed.pins(b"ca certificate"));
        assert!(!parsed.pins(b"another certificate"));
        assert!(!format!("{parsed:?}").contains(&hex::encode([7u8; 32])));
    }

    #[test]
    fn node_ids_are_host_names() {
        for good in ["local", "n1", "node-a.example", "a", &"x".repeat(63)] {
            assert_eq!(check_node_id(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "..",
            ".",
            "../h1",
            "a..b",
            "a/b",
            "-a",
            "a-",
            "a_b",
            "a b",
            "\u{1b}[2J",
            &"x".repeat(64),
            &["a"; 130].join("."),
            "tokens",
        ] {
            assert!(check_node_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_join_tokens_are_refused() {
        let good = JoinToken::new([1; 32], b"ca").to_string();
        for bad in [
            "",
            "msejoin_",
            &good[..good.len() - 1],
            &good.replace("msejoin_", "mse_"),
            &good.replacen('_', "-", 2),
            &format!("{good}00"),
        ] {
            assert_eq!(JoinToken::parse(bad), Err(BadJoinToken), "{bad}");
        }
    }
}
