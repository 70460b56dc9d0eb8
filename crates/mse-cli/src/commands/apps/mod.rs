//! `mse list`, `mse status`, `mse logs`, `mse stop` and `mse remove`: the
//! caller's apps on the platform of the saved profile.
//!
//! The formatting (tables, status lines, remaining time: [`text`]; the part
//! of a log window not printed yet: [`follow`]) is plain functions of
//! values; the commands only fetch and print.

mod follow;
pub(crate) mod text;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::anyhow;
use chrono::Utc;
use mse_api::apps::{App, AppStatus, ListQuery};
use mse_api::text::strip_controls;
use mse_package::context::{check_id, ContextStore};
use serde::Serialize;

use follow::LogFollower;
pub use text::kept_domain_note;
use text::{final_words, list_table, sort_newest_first, status_text};

use crate::api::{ApiError, Client};
use crate::conf::conf_dir;
use crate::exit::{CmdResult, Failure};
use crate::poll::{wait_for_status, Pace, WaitError};
use crate::profile::Profile;
use crate::progress::Steps;
use crate::render;
use crate::views::{AppView, APP_FIELDS};

/// Apps asked for per `GET /apps` request.
const PAGE: u32 = 200;
/// How often `logs --follow` polls the platform.
const POLL: Duration = Duration::from_millis(1000);
/// How `stop` waits: a node usually stops within tens of milliseconds.
const STOP_PACE: Pace = Pace::Backoff {
    first: Duration::from_millis(10),
    max: Duration::from_millis(500),
};

/// Arguments of `mse list`.
#[derive(Debug, clap::Args)]
#[command(after_help = format!(
    "Newest first. Live apps are spawning, initializing or running; --all adds the stopped \
     and failed (on_error) ones. DOMAIN is where the app is reached: its name and, unless it is \
     443, the port.\n\nWith --json, each app is an object with: {APP_FIELDS}."
))]
pub struct ListArgs {
    /// Only the apps of this project
    #[arg(long, value_name = "NAME")]
    project: Option<String>,
    /// Also list stopped and failed apps
    #[arg(long)]
    all: bool,
    /// Print a JSON array instead of a table
    #[arg(long)]
    json: bool,
}

/// Arguments of `mse status`.
#[derive(Debug, clap::Args)]
#[command(after_help = format!(
    "With --json, one object with: {APP_FIELDS}; plus cores and memory_mb of its resource \
     (null when the resource is no longer available to you), expires_in_seconds (negative \
     once expired) and resolves (whether this machine's resolver knows the URL's name; when it \
     does not, a warning says what to do)."
))]
pub struct StatusArgs {
    /// The app's UUID (see `mse list`)
    #[arg(value_name = "UUID")]
    uuid: String,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// Arguments of `mse logs`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The platform keeps the last 64 kB of each app's log: its output, its \
errors, its access log and the runtime's own lines (marked [mse-run]). A longer log is shown \
from a whole line: first the runtime's own earlier lines, then `[… earlier lines dropped]`, then \
the last lines. The log stays readable after the app stops, until `mse remove`."
)]
pub struct LogsArgs {
    /// The app's UUID (see `mse list`)
    #[arg(value_name = "UUID")]
    uuid: String,
    /// Keep printing new lines (polling every second) until the app stops or fails, or Ctrl-C
    #[arg(long, short)]
    follow: bool,
}

/// Arguments of `mse stop`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Stopping frees the app's node and everything in it (decrypted code, \
secrets, keys); a stopped app never runs again. Its log stays readable until `mse remove`. The \
local context of the app ($MSE_CONF_PATH/context/UUID), if any, is removed."
)]
pub struct StopArgs {
    /// The app's UUID (see `mse list`)
    #[arg(value_name = "UUID")]
    uuid: String,
    /// Seconds to wait for the app to stop
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    timeout: u64,
}

/// Arguments of `mse remove`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Only a stopped or failed app can be removed: stop a live one first with \
`mse stop UUID`. Its log goes with it, and its local context ($MSE_CONF_PATH/context/UUID), if \
any, is removed too."
)]
pub struct RemoveArgs {
    /// The app's UUID (see `mse list --all`)
    #[arg(value_name = "UUID")]
    uuid: String,
}

// ---------------------------------------------------------------------------
// Commands

/// Runs `mse list`.
pub fn list(args: ListArgs) -> CmdResult {
    let profile = Profile::load()?;
    let client = profile.client()?;
    if let Some(project) = &args.project {
        if !client.project_exists(project)? {
            return Err(Failure::Other(anyhow!(
                "you have no project `{project}` on {}",
                client.base()
            )));
        }
    }
    let statuses: Vec<Option<AppStatus>> = if args.all {
        vec![None]
    } else {
        AppStatus::LIVE.into_iter().map(Some).collect()
    };
    let mut apps = Vec::new();
    let mut seen = HashSet::new();
    for status in statuses {
        let filter = ListQuery {
            project: args.project.clone(),
            status,
            ..ListQuery::default()
        };
        for app in all_pages(&client, filter)? {
            if seen.insert(app.id.clone()) {
                apps.push(app);
            }
        }
    }
    sort_newest_first(&mut apps);

    if args.json {
        let views: Vec<AppView> = apps
            .iter()
            .map(|a| AppView::new(a, profile.app_url(&a.domain_name)))
            .collect();
        return print_json(&views);
    }
    if apps.is_empty() {
        let scope = match &args.project {
            Some(project) => format!(" in project `{project}`"),
            None => String::new(),
        };
        if args.all {
            outln!("No apps{scope}: deploy one with `mse deploy`")?;
        } else {
            outln!("No live apps{scope} (`mse list --all` shows the stopped and failed ones too)")?;
        }
        return Ok(());
    }
    out!(
        "{}",
        list_table(&apps, |domain| profile.app_address(domain))
    )?;
    Ok(())
}

/// Runs `mse status`.
pub fn status(args: StatusArgs) -> CmdResult {
    let id = app_id(&args.uuid)?;
    let profile = Profile::load()?;
    let client = profile.client()?;
    let app = client.app(&id).map_err(|e| app_failure(e, &id, &client))?;
    let resource = client.resource(&app.resource)?;
    let now = Utc::now().timestamp();
    let (resolves, advice) = profile.reachability(&app.domain_name, &app.config_domain_name);
    if let Some(advice) = advice.filter(|_| !app.is_final()) {
        eprint!("{} {advice}", render::warning_prefix());
    }
    if args.json {
        let view = StatusView {
            app: AppView::new(&app, profile.app_url(&app.domain_name)),
            cores: resource.as_ref().map(|r| r.cores),
            memory_mb: resource.as_ref().map(|r| r.memory_mb),
            expires_in_seconds: app.expires_at.timestamp() - now,
            resolves,
        };
        return print_json(&view);
    }
    out!(
        "{}",
        status_text(
            &app,
            resource.as_ref(),
            &profile.app_url(&app.domain_name),
            now
        )
    )?;
    Ok(())
}

/// Runs `mse logs`.
pub fn logs(args: LogsArgs) -> CmdResult {
    let id = app_id(&args.uuid)?;
    let profile = Profile::load()?;
    let client = profile.client()?;
    if !args.follow {
        let text = client.logs(&id).map_err(|e| app_failure(e, &id, &client))?;
        if text.is_empty() {
            eprintln!("The log of app {id} is empty");
            return Ok(());
        }
        let mut text = text;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        print_log(&text)?;
        return Ok(());
    }

    let mut follower = LogFollower::default();
    loop {
        // The status first, then the log: once the app is final, the log
        // read after it holds its last lines.
        let app = client.app(&id).map_err(|e| app_failure(e, &id, &client))?;
        let text = client.logs(&id).map_err(|e| app_failure(e, &id, &client))?;
        let fresh = follower.update(&text, app.is_final());
        if fresh.gap {
            eprintln!(
                "{} the log grew by more than 64 kB in a second: lines were skipped",
                render::warning_prefix()
            );
        }
        print_log(&fresh.text)?;
        if app.is_final() {
            eprintln!("App {id} {}", final_words(&app));
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

/// Runs `mse stop`.
pub fn stop(args: StopArgs) -> CmdResult {
    let id = app_id(&args.uuid)?;
    let profile = Profile::load()?;
    let client = profile.client()?;
    let app = match client.stop(&id) {
        Ok(app) => app,
        // 409: it is stopped or failed already.
        Err(e) if e.status() == Some(409) => {
            let app = client.app(&id).map_err(|e| app_failure(e, &id, &client))?;
            if !app.is_final() {
                return Err(e.into());
            }
            outln!(
                "App {id} ({}) already {}: nothing to stop",
                app.name,
                final_words(&app)
            )?;
            remove_context(&id)?;
            return Ok(());
        }
        Err(e) => return Err(app_failure(e, &id, &client)),
    };

    let app = wait_until_final(&client, &app, Duration::from_secs(args.timeout))?;
    match app.status {
        AppStatus::Stopped => outln!("App {id} ({}) is stopped", app.name)?,
        _ => outln!("App {id} ({}) {}", app.name, final_words(&app))?,
    }
    remove_context(&id)?;
    Ok(())
}

/// Runs `mse remove`.
pub fn remove(args: RemoveArgs) -> CmdResult {
    let id = app_id(&args.uuid)?;
    let profile = Profile::load()?;
    let client = profile.client()?;
    match client.remove(&id) {
        Ok(()) => {}
        Err(e) if e.status() == Some(409) => {
            return Err(Failure::Other(anyhow!(
                "the platform refused: {e}\nhint: run `mse stop {id}` first, then `mse remove {id}`"
            )))
        }
        Err(e) => return Err(app_failure(e, &id, &client)),
    }
    outln!("Removed app {id} from the platform, with its log")?;
    remove_context(&id)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Edges: arguments, errors, the platform, the context store

/// The canonical (lower-case) UUID, or a usage error.
fn app_id(text: &str) -> Result<String, Failure> {
    let id = text.trim().to_ascii_lowercase();
    check_id(&id).map_err(|_| {
        Failure::Invalid(format!(
            "`{text}` is not an app UUID (like 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0); \
             `mse list --all` shows yours"
        ))
    })?;
    Ok(id)
}

/// An API failure about app `id`: a 404 says the caller has no such app.
fn app_failure(error: ApiError, id: &str, client: &Client) -> Failure {
    if error.status() == Some(404) {
        Failure::Other(anyhow!(
            "no app {id} among yours on {}: `mse list --all` shows your apps",
            client.base()
        ))
    } else {
        error.into()
    }
}

/// Every app matching `filter`, reading page after page.
fn all_pages(client: &Client, filter: ListQuery) -> Result<Vec<App>, Failure> {
    let mut apps: Vec<App> = Vec::new();
    let mut ids = HashSet::new();
    loop {
        let offset = u32::try_from(apps.len()).unwrap_or(u32::MAX);
        let page = client.apps(&ListQuery {
            limit: Some(PAGE),
            offset: (offset > 0).then_some(offset),
            ..filter.clone()
        })?;
        let before = apps.len();
        let count = page.len();
        for app in page {
            // A deployment between two pages shifts the next one by one:
            // the same app may come twice.
            if ids.insert(app.id.clone()) {
                apps.push(app);
            }
        }
        if count < PAGE as usize || apps.len() == before {
            return Ok(apps);
        }
    }
}

/// Polls until the app (as `stop` answered) is stopped or failed, showing
/// its status on stderr.
fn wait_until_final(client: &Client, app: &App, timeout: Duration) -> Result<App, Failure> {
    let id = app.id.clone();
    let mut steps = Steps::new();
    steps.start("stop", &format!("Stopping app {id} ({})", app.name));
    let waited = wait_for_status(
        || client.app(&id),
        |app| app.status.is_terminal(),
        timeout,
        STOP_PACE,
        |app| steps.update(&format!("still {}", app.status)),
    );
    match waited {
        Ok(app) => {
            match app.status {
                AppStatus::Stopped => steps.done("stopped"),
                _ => steps.warn(&final_words(&app)),
            }
            Ok(app)
        }
        Err(WaitError::TimedOut(app)) => {
            steps.fail();
            Err(Failure::Other(anyhow!(
                "app {id} is still {} after {} s; the platform keeps stopping it: check with \
                 `mse status {id}`, or wait longer with `mse stop {id} --timeout SECONDS`",
                app.status,
                timeout.as_secs()
            )))
        }
        Err(WaitError::Api(e)) => {
            steps.fail();
            Err(app_failure(e, &id, client))
        }
    }
}

/// Removes the local context of app `id`, if any, and says so.
fn remove_context(id: &str) -> CmdResult {
    let store = ContextStore::new(&conf_dir());
    let dir = store.dir(id).map_err(|e| Failure::Other(anyhow!("{e}")))?;
    if !dir.exists() {
        return Ok(());
    }
    store
        .remove(id)
        .map_err(|e| Failure::Other(anyhow!("cannot remove the context of app {id}: {e}")))?;
    outln!("Removed its context {}", dir.display())?;
    Ok(())
}

/// Writes log text to stdout without its control characters (newlines and
/// tabs kept: no escape sequence of an app or a node host reaches the
/// terminal).
fn print_log(text: &str) -> CmdResult {
    crate::out::write_now(&strip_controls(text))
}

fn print_json<T: Serialize>(value: &T) -> CmdResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::Other(anyhow!("cannot encode the output: {e}")))?;
    outln!("{text}")?;
    Ok(())
}

/// `mse status --json`: the app as every command shows it, and what
/// `status` adds.
#[derive(Debug, Serialize)]
struct StatusView {
    #[serde(flatten)]
    app: AppView,
    cores: Option<i64>,
    memory_mb: Option<i64>,
    expires_in_seconds: i64,
    resolves: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn app(status: &str) -> App {
        serde_json::from_value(serde_json::json!({
            "id": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "name": "hello",
            "project": "default", "domain_name": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0.localhost",
            "config_domain_name": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0.localhost",
            "resource": "free", "docker": "ghcr.io/cosmian/mse-flask:20230124182826",
            "python_application": "app:app", "healthcheck_endpoint": "/health",
            "certificate_origin": "self", "code_sha256": "00", "enclave_size": "1G",
            "status": status, "created_at": 1_900_000_000, "ready_at": 1_900_000_060,
            "expires_at": 1_900_014_400
        }))
        .unwrap()
    }

    #[test]
    fn the_json_view_has_rfc3339_times_and_the_url() {
        let mut failed = app("on_error");
        failed.onerror_at = chrono::DateTime::from_timestamp(1_900_000_120, 0);
        failed.reason = Some("node lost".into());
        let profile: Profile = toml::from_str(
            r#"
            url = "http://127.0.0.1:9443"
            token = "t"
            user = "u"
            allow_simulation = false
            signer_key = ""
            simulation_ca = ""
            operator_ca = ""
            [platform]
            base_domain = "localhost"
            proxy_port = 8443
            quote_provider = "simulation"
            "#,
        )
        .unwrap();
        let value =
            serde_json::to_value(AppView::new(&failed, profile.app_url(&failed.domain_name)))
                .unwrap();
        assert_eq!(value["uuid"], failed.id);
        assert_eq!(
            value["url"],
            format!("https://{}.localhost:8443", failed.id)
        );
        assert_eq!(value["status"], "on_error");
        assert_eq!(value["status_at"], "2030-03-17T17:48:40Z");
        assert_eq!(value["reason"], "node lost");
        assert_eq!(value["stopped_at"], serde_json::Value::Null);
        assert_eq!(value["expires_at"], "2030-03-17T21:46:40Z");
        assert_eq!(
            final_words(&failed),
            "failed at 2030-03-17 17:48:40 UTC (node lost)"
        );
    }

    #[test]
    fn status_json_has_every_field_of_the_app_and_what_its_node_reported() {
        let mut running = app("running");
        running.limits = Some("memory 512 MB".into());
        running.fingerprint = Some("ab".repeat(32));
        let view = StatusView {
            app: AppView::new(&running, "https://x.localhost:8443".into()),
            cores: Some(1),
            memory_mb: Some(512),
            expires_in_seconds: 60,
            resolves: true,
        };
        let value = serde_json::to_value(&view).unwrap();
        let app_fields = serde_json::to_value(&view.app).unwrap();
        for field in app_fields.as_object().unwrap().keys() {
            assert!(value.get(field).is_some(), "status --json lacks `{field}`");
        }
        for field in ["limits", "certificate", "fingerprint", "cores", "resolves"] {
            assert!(value.get(field).is_some(), "status --json lacks `{field}`");
        }
        assert_eq!(value["fingerprint"], "ab".repeat(32));
        assert_eq!(value["certificate"], serde_json::Value::Null);
    }

    #[test]
    fn app_ids_are_checked_and_lower_cased() {
        assert_eq!(
            app_id("0B1C2D3E-4F50-6172-8394-A5B6C7D8E9F0").unwrap(),
            "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
        );
        assert!(matches!(app_id("../etc"), Err(Failure::Invalid(_))));
    }
}
