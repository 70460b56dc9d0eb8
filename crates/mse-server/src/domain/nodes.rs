//! Nodes: the kinds of node, what each offers and its apps take, the
//! placement of a new app, and the join tokens that let hosts in.

/// How this platform's nodes run apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOptions {
    /// How long a node waits for its configuration before it stops and its
    /// app ends `on_error` (seconds).
    pub config_timeout_secs: u64,
    /// Whether an app that cannot be sandboxed may run unsandboxed.
    pub sandbox: mse_run::sandbox::Mode,
}

/// The TEE a machine's nodes run in, and where its device is: `None`
/// is the device's usual place (`/dev/attestation` for Gramine,
/// `/sys/kernel/config/tsm` for TDX and SEV-SNP); tests name an emulated
/// one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeeDevice {
    /// The kind.
    pub tee: mse_api::tee::Tee,
    /// Where its device is, when not in its usual place.
    pub root: Option<std::path::PathBuf>,
    /// SGX: Gramine's loader (`gramine-sgx`), started in the app's node
    /// folder with the app's signed manifest; `None` is `gramine-sgx` on
    /// the PATH.
    pub loader: Option<std::path::PathBuf>,
    /// SGX: the operator's enclave-signing key (PKCS#8 PEM, RSA-3072,
    /// exponent 3) that signs each app's enclave.
    pub signing_key: Option<std::path::PathBuf>,
    /// SGX and TDX: the PCCS nodes fetch their quote's collateral from, to
    /// serve it beside the quote.
    pub pccs_url: Option<String>,
}

/// Bounds of [`NodeOptions::config_timeout_secs`].
pub const CONFIG_TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 10..=86_400;

impl Default for NodeOptions {
    /// 180 s to be configured (as the original platform), sandbox required.
    fn default() -> Self {
        NodeOptions {
            config_timeout_secs: 180,
            sandbox: mse_run::sandbox::Mode::Required,
        }
    }
}

/// What kind of node a node id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A node process sharing the API's store and data folder (the API's
    /// own machine).
    Local,
    /// A host that joined with a token and talks to the API only.
    Remote,
}

impl NodeKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Local => "local",
            NodeKind::Remote => "remote",
        }
    }
}

/// A node, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Its node id.
    pub id: String,
    /// Local or remote.
    pub kind: NodeKind,
    /// The host it runs on.
    pub host: String,
    /// Where the proxy reaches its apps (remote hosts).
    pub address: Option<String>,
    /// The TEE its apps run in.
    pub tee: mse_api::tee::Tee,
    /// Memory apps may take on it, MB.
    pub memory_mb: i64,
    /// Cores apps may take on it.
    pub cores: i64,
    /// How long a renewal lasts, seconds.
    pub lease_secs: i64,
    /// When it joined or took its id, Unix seconds.
    pub started_at: i64,
    /// When it last renewed its lease, Unix seconds.
    pub seen_at: i64,
}

impl NodeRow {
    /// Whether its lease is current at `now`.
    pub fn live_at(&self, now: i64) -> bool {
        self.seen_at.saturating_add(self.lease_secs) >= now
    }
}

/// A node with what its live apps take of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUsage {
    /// The node.
    pub node: NodeRow,
    /// Memory its live apps take, MB.
    pub memory_mb: i64,
    /// Cores its live apps take.
    pub cores: i64,
    /// Its live apps.
    pub apps: Vec<String>,
}

/// No node has room for an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRoom {
    /// The app's memory, MB.
    pub memory_mb: i64,
    /// The app's cores.
    pub cores: i64,
    /// The TEE kinds the app's resource accepts (none named: every kind).
    pub tees: Vec<mse_api::tee::Tee>,
    /// Each live node: id, free memory (MB), free cores, TEE.
    pub free: Vec<(String, i64, i64, mse_api::tee::Tee)>,
}

impl std::fmt::Display for NoRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cores = |n: i64| if n == 1 { "core" } else { "cores" };
        if self.free.is_empty() {
            return write!(
                f,
                "no node host is running, so the app cannot be placed: start a node (the \
                 default `mse-server` is one) or join a host (`mse-server --roles node --join`, \
                 see docs/server.md), then deploy again"
            );
        }
        if !self
            .free
            .iter()
            .any(|(.., tee)| mse_api::tee::accepts(&self.tees, *tee))
        {
            let running: Vec<String> = self
                .free
                .iter()
                .map(|(id, .., tee)| format!("`{id}` ({tee})"))
                .collect();
            return write!(
                f,
                "no node host of a TEE kind this app's resource accepts ({}) is running; \
                 running: {}; deploy on a resource that accepts one of those kinds, or ask the \
                 operator to join a host of an accepted kind",
                mse_api::tee::join(&self.tees),
                running.join(", ")
            );
        }
        let free: Vec<String> = self
            .free
            .iter()
            .filter(|(.., tee)| mse_api::tee::accepts(&self.tees, *tee))
            .map(|(id, memory, c, tee)| format!("`{id}` ({tee}) {memory} MB and {c} {}", cores(*c)))
            .collect();
        write!(
            f,
            "no node host has room for this app ({} MB, {} {}); free now: {}; stop an app, \
             deploy on a smaller resource, or ask the operator to add a node host",
            self.memory_mb,
            self.cores,
            cores(self.cores),
            free.join(", ")
        )
    }
}

/// Where a new app goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On the least loaded live node that fits the app's resource.
    Fit {
        /// The app's memory, MB.
        memory_mb: i64,
        /// The app's cores.
        cores: i64,
        /// The TEE kinds its resource accepts (none named: every kind).
        tees: Vec<mse_api::tee::Tee>,
        /// Now, Unix seconds (which leases are current).
        now: i64,
    },
    /// Unclaimed, for any node to claim (stores of an earlier version).
    Unclaimed,
}

/// The least loaded of `nodes` of a kind in `tees` (none named: every
/// kind) that fits an app of `memory_mb` and `cores`: the one whose busiest
/// measure (memory or cores, as a share of what it offers) is lowest once
/// the app is on it; ties go to the first by id.
pub fn least_loaded<'a>(
    nodes: &'a [NodeUsage],
    memory_mb: i64,
    cores: i64,
    tees: &[mse_api::tee::Tee],
) -> Option<&'a NodeUsage> {
    nodes
        .iter()
        .filter(|n| {
            mse_api::tee::accepts(tees, n.node.tee)
                && n.memory_mb.saturating_add(memory_mb) <= n.node.memory_mb
                && n.cores.saturating_add(cores) <= n.node.cores
        })
        .min_by(|a, b| {
            let load = |n: &NodeUsage| {
                let memory = (n.memory_mb + memory_mb) as f64 / n.node.memory_mb.max(1) as f64;
                let cores = (n.cores + cores) as f64 / n.node.cores.max(1) as f64;
                memory.max(cores)
            };
            load(a)
                .total_cmp(&load(b))
                .then_with(|| a.node.id.cmp(&b.node.id))
        })
}

/// A join token, as the store keeps it: its secret's hash, never the
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokenRow {
    /// SHA-256 (hex) of its secret.
    pub hash: String,
    /// The admin who made it.
    pub created_by: String,
    /// When, Unix seconds.
    pub created_at: i64,
    /// When it stops being accepted, Unix seconds.
    pub expires_at: i64,
    /// How many hosts it may join.
    pub max_hosts: i64,
    /// The most memory a host joining with it is granted, MB (`None`: the
    /// default).
    pub max_memory_mb: Option<i64>,
    /// The most cores a host joining with it is granted (`None`: the
    /// default).
    pub max_cores: Option<i64>,
    /// The address its hosts may advertise besides their join's source.
    pub advertise: Option<String>,
    /// When an admin revoked it.
    pub revoked_at: Option<i64>,
    /// The hosts it joined, by name.
    pub hosts: Vec<String>,
}

impl JoinTokenRow {
    /// Its public id: the first 16 hex digits of its hash.
    pub fn id(&self) -> &str {
        self.hash.get(..TOKEN_ID_LEN).unwrap_or(&self.hash)
    }

    /// Whether it joins a new host at `now`.
    pub fn usable_at(&self, now: i64) -> bool {
        self.revoked_at.is_none()
            && self.expires_at > now
            && (self.hosts.len() as i64) < self.max_hosts
    }
}

/// The length of a join token's id (hex digits of its hash).
pub const TOKEN_ID_LEN: usize = 16;

/// How taking a use of a join token for a host went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenUse {
    /// The host may join: `new` when this join used one more of the token
    /// (else the host joined with it before).
    Taken {
        /// A use was taken now.
        new: bool,
    },
    /// The token joined as many hosts as it may.
    UsedUp {
        /// The hosts it joined.
        hosts: Vec<String>,
    },
}

/// How a remote host's join went in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// The host holds the node id now.
    Joined,
    /// A live node holds the id.
    Held(NodeRow),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(id: &str, memory: (i64, i64), cores: (i64, i64)) -> NodeUsage {
        NodeUsage {
            node: NodeRow {
                id: id.into(),
                kind: NodeKind::Remote,
                host: id.into(),
                address: None,
                tee: mse_api::tee::Tee::Simulation,
                memory_mb: memory.1,
                cores: cores.1,
                lease_secs: 30,
                started_at: 0,
                seen_at: 0,
            },
            memory_mb: memory.0,
            cores: cores.0,
            apps: Vec::new(),
        }
    }

    #[test]
    fn the_least_loaded_node_that_fits_is_chosen() {
        let nodes = [
            usage("a", (1024, 2048), (1, 4)),
            usage("b", (0, 2048), (0, 4)),
            usage("c", (0, 256), (0, 64)),
        ];
        assert_eq!(
            least_loaded(&nodes, 512, 1, &[]).map(|n| n.node.id.as_str()),
            Some("b")
        );
        // c is empty but too small in memory; b is fuller after one more.
        let nodes = [
            usage("a", (0, 2048), (0, 4)),
            usage("b", (512, 2048), (1, 4)),
        ];
        assert_eq!(
            least_loaded(&nodes, 512, 1, &[]).map(|n| n.node.id.as_str()),
            Some("a")
        );
    }

    #[test]
    fn cores_count_as_much_as_memory_and_nothing_fits_a_full_node() {
        let nodes = [
            usage("a", (0, 8192), (2, 2)),
            usage("b", (4096, 8192), (0, 2)),
        ];
        assert_eq!(
            least_loaded(&nodes, 512, 1, &[]).map(|n| n.node.id.as_str()),
            Some("b")
        );
        assert_eq!(least_loaded(&nodes, 8192, 1, &[]), None);
        assert_eq!(least_loaded(&[], 1, 1, &[]), None);
    }

    #[test]
    fn only_nodes_of_an_accepted_tee_kind_are_chosen_and_no_room_says_which_run() {
        use mse_api::tee::Tee;
        let mut tdx = usage("t", (1024, 2048), (1, 4));
        tdx.node.tee = Tee::Tdx;
        let nodes = [usage("s", (0, 2048), (0, 4)), tdx];
        let pick = |tees: &[Tee]| least_loaded(&nodes, 512, 1, tees).map(|n| n.node.id.clone());
        assert_eq!(pick(&[]).as_deref(), Some("s"));
        assert_eq!(pick(&[Tee::Tdx]).as_deref(), Some("t"));
        assert_eq!(pick(&[Tee::Simulation, Tee::Tdx]).as_deref(), Some("s"));
        assert_eq!(pick(&[Tee::SevSnp]), None);
        let refused = NoRoom {
            memory_mb: 512,
            cores: 1,
            tees: vec![Tee::SevSnp],
            free: vec![
                ("s".into(), 2048, 4, Tee::Simulation),
                ("t".into(), 1024, 3, Tee::Tdx),
            ],
        }
        .to_string();
        assert!(
            refused.starts_with(
                "no node host of a TEE kind this app's resource accepts (sev-snp) is running; \
                 running: `s` (simulation), `t` (tdx)"
            ),
            "{refused}"
        );
        let full = NoRoom {
            tees: vec![Tee::Tdx],
            ..NoRoom {
                memory_mb: 4096,
                cores: 1,
                tees: Vec::new(),
                free: vec![
                    ("s".into(), 2048, 4, Tee::Simulation),
                    ("t".into(), 1024, 3, Tee::Tdx),
                ],
            }
        }
        .to_string();
        assert!(
            full.contains("free now: `t` (tdx) 1024 MB and 3 cores;"),
            "{full}"
        );
    }
}
