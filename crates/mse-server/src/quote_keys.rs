//! Quote keys of the platform's machines (simulation): each node's own
//! quote-signing key, certified by the simulation CA, whose key stays in the
//! API machine's data folder.

use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use crate::datadir::DataDir;
use crate::runner::RunnerConfig;
use crate::store::Store;

/// Gives the local node (on the API machine, beside the data folder) its
/// quote key and chain, in its nodes' folder (mode 0600).
pub async fn issue_local(
    _store: &Store,
    data: &DataDir,
    config: &RunnerConfig,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let files = config.quote_files();
    let ca = load_ca(&data.root)?;
    let pck = ca
        .issue_pck(&config.node_id, now)
        .context("cannot issue the node's quote key")?;
    let key = pck.key_pem().context("cannot write the node's quote key")?;
    mse_package::context::write_private(&files.key, key.as_bytes())
        .with_context(|| format!("cannot write {}", files.key.display()))?;
    mse_package::context::write_private(&files.chain, pck.chain_pem.as_bytes())
        .with_context(|| format!("cannot write {}", files.chain.display()))?;
    Ok(())
}

fn load_ca(root: &Path) -> anyhow::Result<mse_attest::simulation::SimulationCa> {
    let cert = std::fs::read_to_string(root.join("simulation-ca.pem"))
        .context("cannot read the simulation CA certificate")?;
    let key = std::fs::read_to_string(root.join("simulation-ca.key"))
        .context("cannot read the simulation CA key")?;
    mse_attest::simulation::SimulationCa::from_pem(&cert, &key).context("the simulation CA")
}

/// Certifies a node host's quote key (SPKI PEM) under its node id.
pub async fn certify(
    _store: &Store,
    data: &DataDir,
    node: &str,
    public_key_pem: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let ca = load_ca(&data.root)?;
    ca.certify(public_key_pem, node, now)
        .context("cannot certify the host's quote key")
}

/// The nodes whose quote keys were revoked.
pub async fn revoked_nodes(
    _store: &Store,
) -> Result<std::collections::HashSet<String>, crate::store::StoreError> {
    Ok(std::collections::HashSet::new())
}
