//! `mse rotate`: new keys for an app whose keys the key service keeps. It
//! is a deployment of the app's folder that replaces the live app: the
//! code is encrypted under a new code key (as every deployment does), and
//! with `--secrets` the local secrets replace the kept ones, with
//! `--storage-key` the home is sealed under a new storage key.

use crate::commands::deploy;
use crate::exit::CmdResult;

/// Arguments of `mse rotate`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "A deployment of the app of mse.toml that replaces the live app \
    (no question asked) and keeps its domain: the code is encrypted under a new code key, \
    uploaded and verified, and the platform's key service (verified first) keeps the new code \
    key under a later policy your owner key signs and configures the new node itself. Without \
    --secrets the new node gets the secrets and owner TLS key the service keeps (the local \
    secrets file is not sent); with --secrets those of the local files replace them. With \
    --storage-key the service keeps a new storage key and, until the home is sealed under it, \
    the one it replaces: the new node restores the home under the old key and writes it back \
    under the new one; `mse rotate` waits for that write-back. The app must have been deployed \
    with --keep-running (docs/keys.md). With --json, stdout carries what `mse deploy --json` \
    prints, key_service.rotated saying what was renewed."
)]
pub struct Args {
    #[command(flatten)]
    common: deploy::Common,
    /// Replace the secrets (and the owner's TLS key) the key service keeps with those of the
    /// local files mse.toml names
    #[arg(long)]
    secrets: bool,
    /// Seal the app's persistent home under a new storage key
    #[arg(long)]
    storage_key: bool,
}

/// Runs `mse rotate`.
pub fn run(args: Args) -> CmdResult {
    let rotation = deploy::Rotation {
        secrets: args.secrets,
        storage_key: args.storage_key,
    };
    deploy::run(deploy::Args::rotation(args.common, rotation))
}
