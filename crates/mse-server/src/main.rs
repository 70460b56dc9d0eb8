//! `mse-server`: the platform, all in one process or one role per process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mse_api::tee::Tee;
use mse_server::Roles;

/// How often a node process looks for apps to claim and stops to act on.
const NODE_POLL: Duration = Duration::from_millis(200);
/// How often a proxy reloads the routes of every node from the store.
const ROUTES_REFRESH: Duration = Duration::from_millis(200);
/// How often the API looks for nodes whose lease ran out (one query): a
/// lost node's apps are `on_error` at most this long after its lease ends.
const LEASE_WATCH: Duration = Duration::from_millis(500);
/// How often the reaper looks for expired apps and lost nodes.
const REAP: Duration = Duration::from_secs(5);

/// Runs the MSE platform: the REST API, the SNI proxy and the node runner
/// (one `mse-run` per app), by default all in this process.
///
/// The first start initialises the data folder (store, enclave-signing key,
/// simulation CA, operator CA and wildcard certificate, image catalog) and
/// prints the admin's API token once; it is also in DATA_DIR/admin.token.
/// SIGTERM or Ctrl-C stops the apps, then the platform.
///
/// With --roles, a process plays only some roles. Processes sharing one
/// store and data folder make one platform on one machine (SQLite, or
/// PostgreSQL with --database-url for API replicas): the API places each
/// deployed app on the least loaded node with room for it and records stop
/// requests; a node process runs the apps placed on it; a proxy routes by
/// the addresses in the store. For example:
///
///   mse-server --roles api,proxy --listen-api-tls 0.0.0.0:9444
///   mse-server --roles node --node-id n1
///
/// Other machines run apps as node hosts, which hold no database URL, data
/// folder or operator key: an admin creates a join token (`POST
/// /nodes/tokens`), and the host joins the API's HTTPS listener with it:
///
///   mse-server --roles node --join https://API:9444 --node-token msejoin_… \
///     --advertise IP --nodes-dir /var/lib/mse-node
#[derive(Debug, Parser)]
#[command(
    name = "mse-server",
    version,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// Operator tools for confidential hardware, instead of serving
    #[command(subcommand)]
    tool: Option<Tool>,
    /// The roles of this process, comma-separated: `api` (REST API),
    /// `proxy` (SNI proxy), `node` (runs the apps)
    #[arg(long, value_name = "ROLES", default_value = "api,proxy,node", value_parser = Roles::parse)]
    roles: Roles,
    /// The name this node process claims apps under; give each node process
    /// sharing a store its own (a restart under the same id recovers its
    /// apps as `on_error`, "node lost")
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// The platform's data folder [default: mse-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The store [default: SQLite in DATA_DIR/mse.db]; `postgres://…` for PostgreSQL
    #[arg(long, value_name = "URL", env = "MSE_DATABASE_URL")]
    database_url: Option<String>,
    /// Address of the REST API
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9443")]
    listen_api: SocketAddr,
    /// Address of the REST API over HTTPS too (node hosts join here), with
    /// a certificate of the operator CA for --api-name
    #[arg(long, value_name = "ADDR")]
    listen_api_tls: Option<SocketAddr>,
    /// A name (DNS name or IP address) of the HTTPS API's certificate, as
    /// hosts dial it; repeatable [default: localhost, 127.0.0.1, ::1 and
    /// the --listen-api-tls address]
    #[arg(long, value_name = "NAME")]
    api_name: Vec<String>,
    /// Seconds a node's lease lasts: a node not heard from for this long is
    /// lost (its apps `on_error`, "node lost"), and a host that cannot renew
    /// stops its apps before then (3-3600)
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    node_lease: u64,
    /// An ACME directory (RFC 8555; Let's Encrypt's
    /// https://acme-v02.api.letsencrypt.org/directory in production): each
    /// zero-trust app's node then obtains a browser-trusted certificate for
    /// its domain itself, with a key that never leaves it, answering the
    /// CA's TLS-ALPN-01 challenge through the proxy (which must be reached
    /// on port 443 at the app's domain), unless deployed with `mse deploy
    /// --no-acme`
    #[arg(long, value_name = "URL")]
    acme_directory: Option<String>,
    /// PEM roots to trust the ACME server's own HTTPS with (a test CA's)
    /// [default: the system's]
    #[arg(long, value_name = "PEM", requires = "acme_directory")]
    acme_ca_bundle: Option<PathBuf>,
    /// Ask the ACME CA for certificates valid this many seconds (an order's
    /// `notAfter`; Pebble honours it, Let's Encrypt refuses it) (30-31536000)
    #[arg(long, value_name = "SECS", requires = "acme_directory",
          value_parser = clap::value_parser!(u64).range(30..=31_536_000))]
    acme_lifetime: Option<u64>,
    /// Memory apps may take on this node, MB [default: this machine's]
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    memory_mb: Option<u64>,
    /// Cores apps may take on this node [default: this machine's]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65_536))]
    cores: Option<u64>,
    /// Join the platform at this API URL as a node host (`https://…`;
    /// comma-separated for API replicas); needs --node-token, --advertise
    /// and --nodes-dir, and takes no store or data folder
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    join: Vec<String>,
    /// The join token an admin created (`POST /nodes/tokens`)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MSE_NODE_TOKEN",
        hide_env_values = true
    )]
    node_token: Option<String>,
    /// The IP address the proxy reaches this host's apps at (--join)
    #[arg(long, value_name = "IP")]
    advertise: Option<std::net::IpAddr>,
    /// Address of the SNI proxy: apps are reached through it (on port 443,
    /// their URLs need no port: https://<uuid>.<BASE_DOMAIN>/)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen_proxy: SocketAddr,
    /// Apps are reachable at https://<uuid>.<BASE_DOMAIN>
    #[arg(long, default_value = "localhost")]
    base_domain: String,
    /// The port clients reach the proxy on, when it differs from the
    /// --listen-proxy port (behind a port forward, e.g. 443)
    #[arg(long, value_name = "PORT")]
    public_port: Option<u16>,
    /// The node runtime binary [default: `mse-run` next to this binary]
    #[arg(long, value_name = "FILE")]
    mse_run: Option<PathBuf>,
    /// Where runtime environments are cached [default: $MSE_CACHE_DIR, else
    /// ~/.cache/mse, the cache `mse test` uses]
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// What installs the packages of runtime environments: `uv` (on PATH),
    /// `pip`, or the path of a uv binary [default: $MSE_UV, else uv on PATH,
    /// else pip]
    #[arg(long, value_name = "uv|pip|FILE", value_parser = mse_runtime::Installer::parse)]
    installer: Option<mse_runtime::Installer>,
    /// Don't build the environments of the catalog's `prepare` images in the
    /// background at start (each is then built by its first deploy)
    #[arg(long)]
    no_prepare: bool,
    /// Where the local nodes keep their private folders (decrypted code,
    /// secrets, logs, the host's quote key) [default: DATA_DIR.nodes, beside
    /// the data folder]
    #[arg(long, value_name = "DIR")]
    nodes_dir: Option<PathBuf>,
    /// Where nodes get their quotes: `simulation` (no hardware), `gramine`
    /// (SGX), `tdx` or `sev-snp` (confidential VMs, through configfs-tsm). A
    /// node host states it when it joins
    #[arg(long, default_value = "simulation", value_parser = Tee::PROVIDERS)]
    quote_provider: String,
    /// Where the TEE's device is, when not in its usual place
    /// (`/dev/attestation` for Gramine, `/sys/kernel/config/tsm` for TDX and
    /// SEV-SNP): for an emulated device
    #[arg(long, value_name = "DIR")]
    tee_device: Option<PathBuf>,
    /// SGX: Gramine's loader, started in each app's node folder with the app's signed
    /// manifest (`app.manifest.sgx`, `app.sig`) [default: gramine-sgx on the PATH]
    #[arg(long, value_name = "FILE")]
    gramine_sgx: Option<PathBuf>,
    /// SGX: the operator's enclave-signing key (PKCS#8 PEM, RSA-3072, exponent 3) that signs
    /// each app's enclave [default: the platform's, DATA_DIR/signer.key, for local nodes]
    #[arg(long, value_name = "FILE")]
    enclave_signing_key: Option<PathBuf>,
    /// SGX and TDX: a PCCS (Intel's v4 API) from which each node fetches the collateral of its
    /// quote at start, and serves it in its certificate, so verifiers need no PCCS of their own
    #[arg(long, value_name = "URL", value_parser = http_url)]
    pccs_url: Option<String>,
    /// Seconds a node waits for its owner's configuration; then it stops and
    /// the app ends `on_error`, saying so (10 to 86400)
    #[arg(long, value_name = "SECS", default_value_t = 180,
          value_parser = clap::value_parser!(u64).range(10..=86_400))]
    config_timeout: u64,
    /// `required`: every app runs sandboxed (Landlock, seccomp, a uid, a
    /// mount namespace, a private /tmp and limits of its own: the platform
    /// must run as root), and an app that cannot be is refused;
    /// `best-effort`: the operator's explicit opt-out, running apps with
    /// what this machine allows (as the platform's user when it is not
    /// root; unsandboxed without Landlock), their status saying so
    #[arg(long, value_enum, value_name = "MODE", default_value = "required")]
    sandbox: mse_run::sandbox::Mode,
    /// Seconds a client of the API has to send a request's header (from
    /// its connection, or its previous answer); then it is closed (1-300)
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    api_header_timeout: u64,
    /// Seconds a client of the API has to send a request's body, from its
    /// header; a body still arriving then is answered 408 (1-86400)
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    api_body_timeout: u64,
    /// The longest a token made through the API lives, seconds: a token
    /// asked for without `expires_in` gets this lifetime, one asking for
    /// more is refused (1-315360000) [default: until revoked]. The first
    /// admin token (DATA_DIR/admin.token) is the operator's and lives until
    /// revoked
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(i64).range(mse_server::domain::bounds::TOKEN_LIFETIME_SECS))]
    max_token_lifetime: Option<i64>,
    /// A holder of the key service's recovery shares: their public key
    /// (`mse-holder-v1.HEX`, made with `mse-server keys holder-key`); when
    /// the key service makes its root key it splits it into one share per
    /// holder, each sealed to that holder's key, so that the platform
    /// keeps shares it cannot read (docs/keys.md); repeatable, with
    /// --recovery-threshold
    #[arg(long, value_name = "KEY")]
    recovery_holder: Vec<String>,
    /// How many holders' shares recover the root key (1 to the number of
    /// --recovery-holder)
    #[arg(long, value_name = "K")]
    recovery_threshold: Option<u8>,
    /// Connections the API serves at once; more are answered 503 (1-65536)
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    api_max_connections: u64,
    /// Connections the API serves at once from one address (IPv4, or IPv6
    /// /64); more from it are answered 503 (1-65536)
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    api_max_connections_per_source: u64,
    /// Connections the proxy handles at once; more are closed (1-65536)
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    proxy_max_connections: u64,
    /// Connections the proxy handles at once from one address (IPv4, or
    /// IPv6 /64); more from it are closed (1-65536)
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    proxy_max_connections_per_source: u64,
}

impl Args {
    /// `--cache-dir`, else `$MSE_CACHE_DIR`, else `~/.cache/mse`.
    fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(mse_runtime::default_cache_dir)
    }

    /// `--installer`, else what this machine has.
    fn installer(&self) -> mse_runtime::Installer {
        self.installer
            .clone()
            .unwrap_or_else(mse_runtime::Installer::detect)
    }

    /// The ACME CA of `--acme-directory`, its bundle read and checked.
    fn recovery(&self) -> anyhow::Result<Option<mse_api::keys::RecoveryHolders>> {
        match (self.recovery_holder.as_slice(), self.recovery_threshold) {
            ([], None) => Ok(None),
            ([], Some(_)) => {
                anyhow::bail!("--recovery-threshold needs --recovery-holder KEY for each holder")
            }
            (_, None) => anyhow::bail!(
                "--recovery-holder needs --recovery-threshold K: how many holders' shares recover \
                 the root key"
            ),
            (holders, Some(threshold)) => {
                mse_keys::holders::check_public(holders).map_err(|e| anyhow::anyhow!("{e}"))?;
                if threshold == 0
                    || usize::from(threshold) > holders.len()
                    || holders.len() > usize::from(mse_keys::recovery::MAX_SHARES)
                {
                    anyhow::bail!(
                        "--recovery-threshold {threshold}: 1 to the {} holders (at most {})",
                        holders.len(),
                        mse_keys::recovery::MAX_SHARES
                    );
                }
                Ok(Some(mse_api::keys::RecoveryHolders {
                    threshold,
                    holders: holders.to_vec(),
                }))
            }
        }
    }

    fn acme(&self) -> anyhow::Result<Option<mse_api::node::AcmeCa>> {
        let Some(directory) = &self.acme_directory else {
            return Ok(None);
        };
        if !directory.starts_with("https://") || directory.parse::<hyper::Uri>().is_err() {
            anyhow::bail!("--acme-directory `{directory}` is not an https:// URL");
        }
        let ca_bundle_pem = match &self.acme_ca_bundle {
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read --acme-ca-bundle {}: {e}", path.display())
                })?;
                mse_attest::ratls::pem_to_der(pem.as_bytes())
                    .map_err(|e| anyhow::anyhow!("--acme-ca-bundle {}: {e}", path.display()))?;
                Some(pem)
            }
            None => None,
        };
        Ok(Some(mse_api::node::AcmeCa {
            directory: directory.clone(),
            ca_bundle_pem,
            lifetime_secs: self.acme_lifetime,
        }))
    }

    /// The TEE this machine's nodes run in (`--quote-provider`,
    /// `--tee-device`).
    fn tee_device(&self) -> mse_server::domain::nodes::TeeDevice {
        mse_server::domain::nodes::TeeDevice {
            // The parser accepts only the providers' names.
            tee: Tee::from_name(&self.quote_provider).unwrap_or_default(),
            root: self.tee_device.clone(),
            loader: self.gramine_sgx.clone(),
            signing_key: self.enclave_signing_key.clone(),
            pccs_url: self.pccs_url.clone(),
        }
    }

    /// `--memory-mb` and `--cores`, each else the machine's.
    fn capacity(&self) -> mse_api::node::Capacity {
        let machine = mse_server::machine_capacity();
        mse_api::node::Capacity {
            memory_mb: self.memory_mb.unwrap_or(machine.memory_mb),
            cores: self.cores.unwrap_or(machine.cores),
        }
    }
}

/// Raises this process's soft limit of open files to its hard limit, so the
/// connection caps, not the descriptor limit, bound the connections; and
/// warns when the caps could still exhaust it.
#[allow(unsafe_code)]
fn raise_open_files_limit(api: Option<u64>, proxy: Option<u64>) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on a struct this function owns.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let current: u64 = limit.rlim_cur;
    // A proxied connection holds two descriptors; keep some for the store,
    // the nodes and the logs.
    let needed = api.unwrap_or(0) + 2 * proxy.unwrap_or(0) + 256;
    if needed > current {
        eprintln!(
            "warning: the connection caps (API {}, proxy {}) may need {needed} open files, but the \
             limit is {current}: raise it (ulimit -n) or lower --api-max-connections and \
             --proxy-max-connections",
            api.unwrap_or(0),
            proxy.unwrap_or(0),
        );
    }
}

/// `mse-server tee …`: tools, not a server.
#[derive(Debug, clap::Subcommand)]
enum Tool {
    /// Confidential hardware: what a node host needs to run apps in a TEE
    #[command(subcommand)]
    Tee(TeeTool),
    /// The key service's recovery shares (docs/keys.md)
    #[command(subcommand)]
    Keys(KeysTool),
}

#[derive(Debug, clap::Subcommand)]
enum KeysTool {
    /// Make a recovery holder's key pair: the secret key goes to FILE (mode 0600; keep it
    /// offline), the public key is printed, for the operator's --recovery-holder
    HolderKey {
        /// Where the secret key is written (it must not exist)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Open a recovery share sealed to you (one line of `GET /keys/recovery-shares`) with your
    /// secret key: prints the share, for `mse keys recover`
    OpenShare {
        /// Your secret key (from holder-key)
        #[arg(long, value_name = "FILE")]
        secret_key: PathBuf,
        /// The sealed share (mse-share-box-v1.…)
        share: String,
    },
}

fn keys_tool(tool: KeysTool) -> anyhow::Result<()> {
    use anyhow::Context as _;
    match tool {
        KeysTool::HolderKey { out } => {
            let (secret, public) = mse_keys::holders::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(
                &mut options
                    .open(&out)
                    .with_context(|| format!("cannot create {}", out.display()))?,
                format!("{}\n", secret.as_str()).as_bytes(),
            )
            .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{public}");
            Ok(())
        }
        KeysTool::OpenShare { secret_key, share } => {
            let secret = zeroize::Zeroizing::new(
                std::fs::read_to_string(&secret_key)
                    .with_context(|| format!("cannot read {}", secret_key.display()))?,
            );
            let opened =
                mse_keys::holders::open(&share, &secret).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", opened.as_str());
            Ok(())
        }
    }
}

#[derive(Debug, clap::Subcommand)]
enum TeeTool {
    /// Print the Gramine manifest of one app's SGX enclave (mse-run, the image's Python
    /// environment, the app's fingerprint in loader.env.MSE_FINGERPRINT, DEBUG off), to sign with
    /// gramine-sgx-sign and the operator's key (docs/attestation.md)
    GramineManifest(GramineManifestArgs),
    /// Print the catalog entry ([[image.tee.sgx]]) of an image's enclaves of one size: the
    /// signed manifest as the template node hosts render each app's from, and the enclave's
    /// layout, once the layout replays to the MRENCLAVE gramine-sgx-sign signed
    /// (docs/attestation.md)
    GramineReference(GramineReferenceArgs),
}

#[derive(Debug, clap::Args)]
struct GramineReferenceArgs {
    /// The manifest gramine-sgx-sign wrote (`.manifest.sgx`), rendered for any fingerprint
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The SIGSTRUCT gramine-sgx-sign wrote for it (`.sig`)
    #[arg(long, value_name = "FILE")]
    sig: PathBuf,
    /// The enclave's layout (JSON): where the manifest goes and the pages after it, in
    /// measurement order
    #[arg(long, value_name = "FILE")]
    layout: PathBuf,
    /// The enclave size apps name (`1G`, `4G`)
    #[arg(long, value_name = "SIZE")]
    enclave_size: String,
}

/// `mse-server tee gramine-reference`: the catalog entry on standard
/// output, once the layout replays to the signed MRENCLAVE.
fn gramine_reference(args: GramineReferenceArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let read = |path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let manifest = String::from_utf8(read(&args.manifest)?)
        .with_context(|| format!("{} is not UTF-8", args.manifest.display()))?;
    let signed = mse_attest::enclave::check_sigstruct(&read(&args.sig)?)
        .with_context(|| args.sig.display().to_string())?;
    let layout: mse_attest::enclave::Layout = serde_json::from_slice(&read(&args.layout)?)
        .with_context(|| format!("{} is not an enclave layout", args.layout.display()))?;
    let replayed = layout.mr_enclave(manifest.as_bytes())?;
    if replayed != signed.mr_enclave {
        anyhow::bail!(
            "the layout does not replay to the signed enclave: {} measures {}, {} signs {}",
            args.layout.display(),
            hex::encode(replayed),
            args.sig.display(),
            hex::encode(signed.mr_enclave)
        );
    }
    let enclave = mse_attest::enclave::SgxEnclave {
        enclave_size: args.enclave_size,
        manifest: mse_attest::enclave::manifest_template(&manifest)?,
        layout,
    };
    let problems = enclave.problems();
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("; "));
    }
    let mut tee = toml::Table::new();
    tee.insert("sgx".into(), toml::Value::try_from(vec![enclave])?);
    let mut image = toml::Table::new();
    image.insert("tee".into(), toml::Value::Table(tee));
    let mut entry = toml::Table::new();
    entry.insert("image".into(), toml::Value::Table(image));
    print!(
        "# MRENCLAVE {} replayed from the layout; add under the image's [[image]] entry.\n{}",
        hex::encode(replayed),
        toml::to_string(&entry)?
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
struct GramineManifestArgs {
    /// The app's fingerprint, 64 hex digits [default: 64 zeros, the template the catalog
    /// publishes once signed]
    #[arg(long, value_name = "HEX")]
    fingerprint: Option<String>,
    /// The enclave size of the app's resource (`512M`, `4G`)
    #[arg(long, value_name = "SIZE")]
    enclave_size: String,
    /// The image's Python environment (absolute)
    #[arg(long, value_name = "DIR")]
    python_env: PathBuf,
    /// The mse-run binary [default: the one beside mse-server]
    #[arg(long, value_name = "FILE")]
    mse_run: Option<PathBuf>,
    /// Gramine's runtime folder
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc"
    )]
    gramine_runtime: PathBuf,
    /// Gramine's LibOS
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so"
    )]
    libos: PathBuf,
    /// Threads the enclave may run
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_threads: u32,
    /// Another host path to mount at the same place and trust: the Python interpreter the
    /// environment was built with and its standard library (may be repeated)
    #[arg(long, value_name = "PATH")]
    trusted: Vec<PathBuf>,
}

/// An `http` or `https` URL, for `--pccs-url`.
fn http_url(text: &str) -> Result<String, String> {
    let ok = (text.starts_with("https://") || text.starts_with("http://"))
        && !text.chars().any(char::is_whitespace);
    if ok {
        Ok(text.trim_end_matches('/').to_string())
    } else {
        Err(format!("`{text}` is not an http or https URL"))
    }
}

/// `mse-server tee gramine-manifest`: the manifest on standard output.
fn gramine_manifest(args: GramineManifestArgs) -> anyhow::Result<()> {
    let mut fingerprint = [0u8; 32];
    if let Some(text) = &args.fingerprint {
        hex::decode_to_slice(text.trim(), &mut fingerprint)
            .map_err(|_| anyhow::anyhow!("--fingerprint must be 64 hex digits"))?;
    }
    let mse_run = match args.mse_run {
        Some(path) => path,
        None => mse_run_binary(None)?,
    };
    let text = mse_server::roles::gramine::manifest(&mse_server::roles::gramine::ManifestInputs {
        fingerprint,
        enclave_size: args.enclave_size,
        mse_run,
        python_env: args.python_env,
        gramine_runtime: args.gramine_runtime,
        libos: args.libos,
        max_threads: args.max_threads,
        trusted: args.trusted,
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    print!("{text}");
    Ok(())
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(tool) = args.tool.take() {
        let result = match tool {
            Tool::Tee(TeeTool::GramineManifest(tool)) => gramine_manifest(tool),
            Tool::Tee(TeeTool::GramineReference(tool)) => gramine_reference(tool),
            Tool::Keys(tool) => keys_tool(tool),
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A node host's run: `--join`.
async fn host(args: Args) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if args.roles
        != (Roles {
            api: false,
            proxy: false,
            node: true,
        })
    {
        anyhow::bail!("--join makes a node host: give --roles node (it plays no other role)");
    }
    if args.database_url.is_some() {
        anyhow::bail!(
            "a node host holds no database URL: drop --database-url (and unset \
             MSE_DATABASE_URL); it reaches the platform through --join only"
        );
    }
    if args.data_dir.is_some() {
        anyhow::bail!(
            "a node host holds no data folder (the operator's keys stay on the API's machine): \
             drop --data-dir and give --nodes-dir"
        );
    }
    let token = args
        .node_token
        .as_deref()
        .context("--join needs --node-token (or MSE_NODE_TOKEN): the token an admin created")?;
    let token = mse_api::node::JoinToken::parse(token)?;
    let advertise = args
        .advertise
        .context("--join needs --advertise IP: where the proxy reaches this host's apps")?;
    let nodes_dir = args
        .nodes_dir
        .clone()
        .context("--join needs --nodes-dir DIR: where this host keeps its apps' folders")?;
    for url in &args.join {
        if !url.starts_with("https://") {
            anyhow::bail!("--join {url}: give the API's HTTPS URL (https://HOST:PORT)");
        }
    }
    let name = match args.node_id.clone() {
        Some(id) => id,
        None => mse_server::roles::runner::host_name(),
    };
    mse_server::check_node_id(&name).map_err(anyhow::Error::msg)?;
    let settings = mse_server::roles::node_host::HostSettings {
        api: args.join.clone(),
        token,
        name,
        advertise,
        nodes_dir,
        cache_dir: args.cache_dir(),
        installer: args.installer(),
        mse_run: mse_run_binary(args.mse_run.clone())?,
        capacity: args.capacity(),
        tee: args.tee_device(),
    };
    println!(
        "node host `{}` joining {} ({} MB, {} cores)",
        settings.name,
        settings.api.join(", "),
        settings.capacity.memory_mb,
        settings.capacity.cores
    );
    mse_server::roles::node_host::run(settings, stop_signal()).await?;
    println!("stopped");
    Ok(())
}

/// The `mse-run` binary: the one given, else the one next to this binary.
fn mse_run_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    match given {
        Some(path) => Ok(path),
        None => Ok(std::env::current_exe()
            .context("cannot find this binary")?
            .with_file_name("mse-run")),
    }
}

/// Resolves at SIGTERM or Ctrl-C.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    if let Ok(mut term) = signal(SignalKind::terminate()) {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    } else {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve(mut args: Args) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if !args.join.is_empty() {
        return host(args).await;
    }
    for (given, flag) in [
        (args.node_token.is_some(), "--node-token"),
        (args.advertise.is_some(), "--advertise"),
    ] {
        if given {
            anyhow::bail!("{flag} is for node hosts: give --join too");
        }
    }
    let data_dir = args
        .data_dir
        .take()
        .unwrap_or_else(|| PathBuf::from("mse-data"));
    let node_id = args
        .node_id
        .take()
        .unwrap_or_else(|| mse_server::DEFAULT_NODE_ID.to_string());
    let roles = args.roles;
    if !(roles.api || roles.proxy || roles.node) {
        anyhow::bail!("--roles names no role: give api, proxy and/or node");
    }
    if args.api_max_connections_per_source > args.api_max_connections {
        anyhow::bail!(
            "--api-max-connections-per-source ({}) is above --api-max-connections ({})",
            args.api_max_connections_per_source,
            args.api_max_connections
        );
    }
    if args.proxy_max_connections_per_source > args.proxy_max_connections {
        anyhow::bail!(
            "--proxy-max-connections-per-source ({}) is above --proxy-max-connections ({})",
            args.proxy_max_connections_per_source,
            args.proxy_max_connections
        );
    }
    raise_open_files_limit(
        roles.api.then_some(args.api_max_connections),
        roles.proxy.then_some(args.proxy_max_connections),
    );
    // The flags' ranges make these conversions lossless.
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let api_limits = mse_server::roles::http_server::HttpLimits {
        header_timeout: Duration::from_secs(args.api_header_timeout),
        body_timeout: Duration::from_secs(args.api_body_timeout),
        max_connections: count(args.api_max_connections),
        max_connections_per_source: count(args.api_max_connections_per_source),
        ..Default::default()
    };
    let proxy_limits = mse_server::roles::proxy::ProxyLimits {
        max_connections: count(args.proxy_max_connections),
        max_connections_per_source: count(args.proxy_max_connections_per_source),
        ..Default::default()
    };
    let mse_run = mse_run_binary(args.mse_run.clone())?;
    let settings = mse_server::Settings {
        cache_dir: args.cache_dir(),
        installer: args.installer(),
        nodes_dir: args.nodes_dir.clone().unwrap_or_else(|| {
            let mut name = data_dir.as_os_str().to_owned();
            name.push(".nodes");
            PathBuf::from(name)
        }),
        data_dir: data_dir.clone(),
        database_url: args.database_url.clone(),
        base_domain: args.base_domain.clone(),
        mse_run,
        tee: args.tee_device(),
        node_options: mse_server::NodeOptions {
            config_timeout_secs: args.config_timeout,
            sandbox: args.sandbox,
        },
        capacity: args.capacity(),
        lease_secs: i64::try_from(args.node_lease).unwrap_or(30),
        acme: args.acme()?,
        max_token_lifetime: args.max_token_lifetime,
        recovery: args.recovery()?,
    };
    let mse_server::Opened {
        state,
        runner,
        admin_token,
    } = mse_server::open_as(&settings, roles, &node_id).await?;
    if let Some(token) = admin_token {
        println!("admin token: {token}");
        println!(
            "(shown once; also in {})",
            data_dir.join("admin.token").display()
        );
    }
    let listener = match roles.api {
        true => Some(
            tokio::net::TcpListener::bind(args.listen_api)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen_api))?,
        ),
        false => None,
    };
    let tls_listener = match (roles.api, args.listen_api_tls) {
        (true, Some(addr)) => {
            let mut names = args.api_name.clone();
            if names.is_empty() {
                names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
                if !addr.ip().is_unspecified() {
                    names.push(addr.ip().to_string());
                }
            }
            let config = mse_server::data::operator_tls::api_server_config(
                &data_dir,
                &names,
                chrono::Utc::now(),
            )?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            Some((listener, tokio_rustls::TlsAcceptor::from(config), names))
        }
        (false, Some(_)) => anyhow::bail!("--listen-api-tls needs the api role"),
        _ => None,
    };
    let proxy_listener = match roles.proxy {
        true => Some((
            tokio::net::TcpListener::bind(args.listen_proxy)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen_proxy))?,
            mse_server::roles::proxy::load_terminate_config(&data_dir, &args.base_domain)?,
        )),
        false => None,
    };

    // SIGTERM or Ctrl-C stops everything: the API and the proxy stop
    // accepting, the node claims no more apps, and every node is asked to
    // stop.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };

    // The platform's own listeners, bound here or in another process: no
    // route leads to them and no node host advertises their address.
    let platform_routes = runner.routes();
    let bound = [
        listener.as_ref().and_then(|l| l.local_addr().ok()),
        tls_listener
            .as_ref()
            .and_then(|(l, _, _)| l.local_addr().ok()),
        proxy_listener
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok()),
    ];
    let configured = [
        Some(args.listen_api),
        args.listen_api_tls,
        Some(args.listen_proxy),
    ];
    for addr in bound.into_iter().chain(configured).flatten() {
        platform_routes.add_platform_listener(addr);
    }
    // The key service runs on the platform's own node, started by the
    // platform itself (docs/keys.md).
    let key_service = roles.node.then(|| {
        // It keeps its records through this process's API, when it has one.
        let api_url = listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|addr| {
                let ip = match addr.ip() {
                    ip if ip.is_unspecified() && ip.is_ipv4() => {
                        std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST)
                    }
                    ip if ip.is_unspecified() => {
                        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
                    }
                    ip => ip,
                };
                format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
            });
        let config = runner.key_service_config(&mse_api::keys::domain(&args.base_domain), api_url);
        let registry = std::sync::Arc::new(mse_server::roles::key_service::LocalRegistry {
            store: runner.store().clone(),
            routes: runner.routes(),
            domain: config.domain.clone(),
            node_id: config.node_id.clone(),
            tee: config.quotes.tee(),
        });
        let stopped = until_stopped(stopped.clone());
        tokio::spawn(mse_server::roles::key_service::supervise(
            config, registry, stopped,
        ))
    });
    let node = roles.node.then(|| {
        let looking = runner.clone();
        let stopped = until_stopped(stopped.clone());
        let reaper = runner.clone();
        let reaping = tokio::spawn(async move { reaper.reap(REAP).await });
        let looking = tokio::spawn(async move { looking.run(NODE_POLL, stopped).await });
        (looking, reaping)
    });
    let mut proxy_port = None;
    let proxy = match proxy_listener {
        Some((proxy_listener, terminate)) => {
            let routes = runner.routes();
            routes
                .load()
                .await
                .context("cannot load the routes from the store")?;
            let following = routes.clone();
            let refresh = tokio::spawn(async move { following.follow_every(ROUTES_REFRESH).await });
            let address = proxy_listener.local_addr()?;
            proxy_port = Some(address.port());
            // Where clients reach apps: HTTPS's own port needs no `:443`.
            let public = match args.public_port.unwrap_or(address.port()) {
                443 => String::new(),
                port => format!(":{port}"),
            };
            println!(
                "proxy listening on {address} (apps at https://<uuid>.{}{public})",
                args.base_domain
            );
            let serving = tokio::spawn(mse_server::roles::proxy::serve(
                proxy_listener,
                routes,
                Some(terminate),
                proxy_limits,
                until_stopped(stopped.clone()),
            ));
            Some((serving, refresh))
        }
        None => None,
    };
    if roles.node {
        println!(
            "node `{}` running apps with {}",
            node_id,
            settings.mse_run.display()
        );
        if !args.no_prepare {
            // In the background: the API serves while the builds run, and a
            // deploy of an image being built waits on its lock.
            let catalog = state.catalog.get(&state.data.root)?;
            let cache = state.cache.clone();
            std::thread::spawn(move || {
                mse_server::data::catalog::prepare(&catalog.catalog, &cache);
            });
        }
    }
    // The port clients reach apps on, as `GET /platform` tells them: the
    // public port, else this process's proxy port, else the proxy's
    // configured port (a proxy in another process).
    let proxy_port = args
        .public_port
        .or(proxy_port)
        .unwrap_or(args.listen_proxy.port());
    state
        .proxy_port
        .store(proxy_port, std::sync::atomic::Ordering::Relaxed);
    // The API watches the leases of remote hosts: their apps are lost once
    // a lease runs out.
    let lease_watch = roles.api.then(|| {
        let store = state.store.clone();
        let period = LEASE_WATCH;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                ticker.tick().await;
                let now = chrono::Utc::now().timestamp();
                mse_server::state::events::reap_lost_nodes(&store, None, now).await;
            }
        })
    });
    let tls_serving = tls_listener.map(|(listener, acceptor, names)| {
        if let Ok(addr) = listener.local_addr() {
            println!(
                "HTTPS API listening on https://{addr} (certificate for {})",
                names.join(", ")
            );
        }
        tokio::spawn(mse_server::roles::http_server::serve_tls(
            listener,
            mse_server::api::router(state.clone()),
            api_limits.clone(),
            Some(acceptor),
            until_stopped(stopped.clone()),
        ))
    });
    match listener {
        Some(listener) => {
            println!("API listening on http://{}", listener.local_addr()?);
            mse_server::roles::http_server::serve(
                listener,
                mse_server::api::router(state),
                api_limits,
                until_stopped(stopped),
            )
            .await;
        }
        None => {
            drop(state);
            until_stopped(stopped).await;
        }
    }
    if let Some(watch) = lease_watch {
        watch.abort();
    }
    if let Some(serving) = tls_serving {
        let _ = serving.await;
    }
    if let Some((looking, reaping)) = node {
        reaping.abort();
        let _ = looking.await;
        println!("stopping the apps…");
        runner.stop_all(Duration::from_secs(20)).await;
        if let Some(key_service) = key_service {
            // It saw the stop too: it ends its service and forgets it.
            let _ = tokio::time::timeout(Duration::from_secs(5), key_service).await;
        }
        runner.release().await;
    }
    if let Some((serving, refresh)) = proxy {
        let _ = serving.await;
        refresh.abort();
    }
    println!("stopped");
    Ok(())
}
