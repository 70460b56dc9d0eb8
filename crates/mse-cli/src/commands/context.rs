//! `mse context`: the deployment contexts kept under `$MSE_CONF_PATH/context`.

use std::path::PathBuf;

use anyhow::Context as _;
use mse_package::context::{ContextError, ContextStore};

use crate::commands::{absolute, confirm_or_no};
use crate::conf::conf_dir;
use crate::exit::{CmdResult, Failure};
use crate::render;

/// Arguments of `mse context`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["list", "export", "remove", "purge"])))]
pub struct Args {
    /// List the saved contexts
    #[arg(long)]
    list: bool,
    /// Write the context of app UUID to a file, to share with the app's users
    #[arg(long, value_name = "UUID")]
    export: Option<String>,
    /// File to export to [default: ./<UUID>.mse]
    #[arg(long, value_name = "FILE", requires = "export")]
    output: Option<PathBuf>,
    /// Remove the context of app UUID
    #[arg(long, value_name = "UUID")]
    remove: Option<String>,
    /// Remove every saved context
    #[arg(long)]
    purge: bool,
    /// Do not ask for confirmation
    #[arg(long, short)]
    yes: bool,
    /// With --list: print a JSON array
    #[arg(long, requires = "list")]
    json: bool,
}

fn failure(error: ContextError) -> Failure {
    match error {
        ContextError::BadId(_) | ContextError::NotFound(_) => Failure::Invalid(error.to_string()),
        // The message already ends with its source's.
        _ => Failure::Other(anyhow::anyhow!("{error}")),
    }
}

/// Runs `mse context`.
pub fn run(args: Args) -> CmdResult {
    let store = ContextStore::new(&conf_dir());
    if args.list {
        return list(&store, args.json);
    }
    if let Some(id) = &args.export {
        let context = store.load(id).map_err(failure)?;
        let output = absolute(
            &args
                .output
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.mse", context.instance.id))),
        )?;
        if output.exists()
            && !confirm_or_no(
                args.yes,
                &format!("{} exists. Overwrite it?", output.display()),
            )?
        {
            return Err(Failure::Invalid("nothing exported".into()));
        }
        mse_package::context::write_private(&output, context.to_toml().as_bytes())
            .with_context(|| format!("cannot write {}", output.display()))?;
        outln!(
            "Exported the context of app {} to {}",
            context.instance.id,
            output.display()
        )?;
        eprintln!(
            "{} it holds the code key: share it only with those who may read the code",
            render::warning_prefix()
        );
        return Ok(());
    }
    if let Some(id) = &args.remove {
        let context = store.load(id);
        let dir = store.dir(id).map_err(failure)?;
        if !dir.exists() {
            return Err(failure(ContextError::NotFound(id.clone())));
        }
        let what = match &context {
            Ok(c) => format!(
                "app {} ({} in project {})",
                c.instance.id, c.config.name, c.config.project
            ),
            Err(_) => format!("app {id}"),
        };
        if !confirm_or_no(
            args.yes,
            &format!("Remove the context of {what}? It cannot be recovered"),
        )? {
            return Err(Failure::Invalid("nothing removed".into()));
        }
        store.remove(id).map_err(failure)?;
        outln!("Removed the context of {what}")?;
        return Ok(());
    }
    // --purge
    let count = store.list().map_err(failure)?.len();
    if count == 0 {
        outln!("No context to remove in {}", store.root().display())?;
        return Ok(());
    }
    if !confirm_or_no(
        args.yes,
        &format!(
            "Remove all {count} contexts in {}? They cannot be recovered",
            store.root().display()
        ),
    )? {
        return Err(Failure::Invalid("nothing removed".into()));
    }
    let removed = store.purge().map_err(failure)?;
    outln!(
        "Removed {removed} context{}",
        if removed == 1 { "" } else { "s" }
    )?;
    Ok(())
}

fn list(store: &ContextStore, json: bool) -> CmdResult {
    let stored = store.list().map_err(failure)?;
    if json {
        let items: Vec<serde_json::Value> = stored
            .iter()
            .map(|s| match &s.context {
                Ok(c) => serde_json::json!({
                    "uuid": c.instance.id,
                    "name": c.config.name,
                    "project": c.config.project,
                    "docker": c.config.docker,
                    "expires_at": c.instance.expires_at,
                    "certificate_origin": c.instance.ssl_certificate_origin,
                    "path": s.dir,
                }),
                Err(why) => serde_json::json!({ "path": s.dir, "error": why }),
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&items).context("cannot encode the list")?
        )?;
        return Ok(());
    }
    if stored.is_empty() {
        outln!("No context in {}", store.root().display())?;
        return Ok(());
    }
    let mut rows = vec![[
        "UUID".to_string(),
        "NAME".to_string(),
        "PROJECT".to_string(),
        "EXPIRES".to_string(),
        "CERTIFICATE".to_string(),
    ]];
    for s in &stored {
        let id = s
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        rows.push(match &s.context {
            Ok(c) => [
                c.instance.id.clone(),
                c.config.name.clone(),
                c.config.project.clone(),
                mse_config::datetime::display_utc(&c.instance.expires_at),
                c.instance.ssl_certificate_origin.to_string(),
            ],
            Err(why) => [
                id,
                format!("unreadable: {why}"),
                String::new(),
                String::new(),
                String::new(),
            ],
        });
    }
    out!("{}", render::table(&rows))?;
    Ok(())
}
