//! `mse list`, `mse status`, `mse logs`, `mse stop` and `mse remove`: the
//! caller's apps on the platform of the saved profile.
//!
//! The formatting (tables, status lines, remaining time, the part of a log
//! window not printed yet) is plain functions of values; the commands only
//! fetch and print.

use std::collections::HashSet;
use std::io::Write as _;
use std::time::Duration;

use anyhow::anyhow;
use chrono::{DateTime, SecondsFormat, TimeZone as _, Utc};
use mse_api::account::Resource;
use mse_api::apps::{App, AppStatus, CertificateOrigin, ListQuery};
use mse_api::text::{one_line, strip_controls};
use mse_config::datetime::display_utc;
use mse_package::context::{check_id, ContextStore};
use serde::Serialize;

use crate::api::{ApiError, Client};
use crate::conf::conf_dir;
use crate::exit::{CmdResult, Failure};
use crate::poll::{wait_for_status, Pace, WaitError};
use crate::profile::Profile;
use crate::progress::Steps;
use crate::render;
/// Apps asked for per `GET /apps` request.
const PAGE: u32 = 200;
/// How often `logs --follow` polls the platform.
const POLL: Duration = Duration::from_millis(1000);
/// How `stop` waits: a node usually stops within tens of milliseconds.
const STOP_PACE: Pace = Pace::Backoff {
    first: Duration::from_millis(10),
    max: Duration::from_millis(500),
};

/// The fields of `--json` output, for the help texts.
const JSON_FIELDS: &str = "uuid, name, project, url, domain_name, config_domain_name, resource, \
python_application, docker, healthcheck_endpoint, certificate_origin, enclave_size, code_sha256, \
status, status_at, reason, created_at, ready_at, stopped_at, onerror_at, expires_at, sandbox, \
node (the node host it was placed on, the only one whose reports move its status) (times are \
RFC 3339, UTC; absent ones are null)";

/// Arguments of `mse list`.
#[derive(Debug, clap::Args)]
#[command(after_help = format!(
    "Newest first. Live apps are spawning, initializing or running; --all adds the stopped \
     and failed (on_error) ones. DOMAIN is where the app is reached: its name and, unless it is \
     443, the port.\n\nWith --json, each app is an object with: {JSON_FIELDS}."
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
    "With --json, one object with: {JSON_FIELDS}; plus cores and memory_mb of its resource \
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
        let views: Vec<AppView> = apps.iter().map(|a| AppView::new(a, &profile)).collect();
        return print_json(&views);
    }
    if apps.is_empty() {
        let scope = match &args.project {
            Some(project) => format!(" in project `{project}`"),
            None => String::new(),
        };
        if args.all {
            println!("No apps{scope}: deploy one with `mse deploy`");
        } else {
            println!(
                "No live apps{scope} (`mse list --all` shows the stopped and failed ones too)"
            );
        }
        return Ok(());
    }
    print!(
        "{}",
        list_table(&apps, |domain| profile.app_address(domain))
    );
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
            app: AppView::new(&app, &profile),
            cores: resource.as_ref().map(|r| r.cores),
            memory_mb: resource.as_ref().map(|r| r.memory_mb),
            expires_in_seconds: app.expires_at - now,
            resolves,
        };
        return print_json(&view);
    }
    print!(
        "{}",
        status_text(
            &app,
            resource.as_ref(),
            &profile.app_url(&app.domain_name),
            now
        )
    );
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
        if !print_log(&fresh.text)? {
            return Ok(());
        }
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
            println!(
                "App {id} ({}) already {}: nothing to stop",
                app.name,
                final_words(&app)
            );
            remove_context(&id)?;
            return Ok(());
        }
        Err(e) => return Err(app_failure(e, &id, &client)),
    };

    let app = wait_until_final(&client, &app, Duration::from_secs(args.timeout))?;
    match app.status {
        AppStatus::Stopped => println!("App {id} ({}) is stopped", app.name),
        _ => println!("App {id} ({}) {}", app.name, final_words(&app)),
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
    println!("Removed app {id} from the platform, with its log");
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
        AppStatus::is_terminal,
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
    println!("Removed its context {}", dir.display());
    Ok(())
}

/// Writes log text to stdout without its control characters (newlines and
/// tabs kept: no escape sequence of an app or a node host reaches the
/// terminal); false when the reader went away (a closed pipe, as with `|
/// head`), which ends the command quietly.
fn print_log(text: &str) -> Result<bool, Failure> {
    let text = strip_controls(text);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::Other(anyhow!("cannot write the log: {e}"))),
    }
}

fn print_json<T: Serialize>(value: &T) -> CmdResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::Other(anyhow!("cannot encode the output: {e}")))?;
    println!("{text}");
    Ok(())
}

// ---------------------------------------------------------------------------
// Plain functions of values

/// An app as `--json` shows it.
#[derive(Debug, Serialize)]
struct AppView {
    uuid: String,
    name: String,
    project: String,
    url: String,
    domain_name: String,
    config_domain_name: String,
    resource: String,
    python_application: String,
    docker: String,
    healthcheck_endpoint: String,
    certificate_origin: CertificateOrigin,
    enclave_size: String,
    code_sha256: String,
    status: AppStatus,
    status_at: Option<String>,
    reason: Option<String>,
    created_at: Option<String>,
    ready_at: Option<String>,
    stopped_at: Option<String>,
    onerror_at: Option<String>,
    expires_at: Option<String>,
    sandbox: Option<String>,
    node: Option<String>,
}

impl AppView {
    fn new(app: &App, profile: &Profile) -> Self {
        AppView {
            uuid: app.id.clone(),
            name: app.name.clone(),
            project: app.project.clone(),
            url: profile.app_url(&app.domain_name),
            domain_name: app.domain_name.clone(),
            config_domain_name: app.config_domain_name.clone(),
            resource: app.resource.clone(),
            python_application: app.python_application.clone(),
            docker: app.docker.clone(),
            healthcheck_endpoint: app.healthcheck_endpoint.clone(),
            certificate_origin: app.certificate_origin,
            enclave_size: app.enclave_size.clone(),
            code_sha256: app.code_sha256.clone(),
            status: app.status,
            status_at: rfc3339(app.status_time()),
            reason: app.reason.clone(),
            created_at: rfc3339(app.created_at),
            ready_at: app.ready_at.and_then(rfc3339),
            stopped_at: app.stopped_at.and_then(rfc3339),
            onerror_at: app.onerror_at.and_then(rfc3339),
            expires_at: rfc3339(app.expires_at),
            sandbox: app.sandbox.clone(),
            node: app.node.clone(),
        }
    }
}

/// `mse status --json`.
#[derive(Debug, Serialize)]
struct StatusView {
    #[serde(flatten)]
    app: AppView,
    cores: Option<i64>,
    memory_mb: Option<i64>,
    expires_in_seconds: i64,
    resolves: bool,
}

fn instant(unix: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(unix, 0).single()
}

fn rfc3339(unix: i64) -> Option<String> {
    instant(unix).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// `2030-01-01 12:00:00 UTC`, as the rest of the CLI shows times.
fn utc(unix: i64) -> String {
    instant(unix).map_or_else(|| format!("{unix} (Unix time)"), |t| display_utc(&t))
}

/// Newest first; ties by uuid, as the platform orders them.
fn sort_newest_first(apps: &mut [App]) {
    apps.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// The table of `mse list`; `address` gives where a domain is reached
/// (`host:port`).
fn list_table(apps: &[App], address: impl Fn(&str) -> String) -> String {
    let mut rows = vec![[
        "UUID".to_string(),
        "CREATED".to_string(),
        "STATUS".to_string(),
        "NAME".to_string(),
        "DOMAIN".to_string(),
    ]];
    for app in apps {
        rows.push([
            app.id.clone(),
            utc(app.created_at),
            app.status.to_string(),
            app.name.clone(),
            address(&app.domain_name),
        ]);
    }
    render::table(&rows)
}

/// How long until `expires_at`, seen at `now`: `in 3h 59m`, or `expired`.
fn remaining(expires_at: i64, now: i64) -> String {
    let left = expires_at - now;
    if left <= 0 {
        return "expired".to_string();
    }
    let (days, hours, minutes) = (left / 86_400, left % 86_400 / 3_600, left % 3_600 / 60);
    if days > 0 && hours > 0 {
        format!("in {days}d {hours}h")
    } else if days > 0 {
        format!("in {days}d")
    } else if hours > 0 && minutes > 0 {
        format!("in {hours}h {minutes}m")
    } else if hours > 0 {
        format!("in {hours}h")
    } else if minutes > 0 {
        format!("in {minutes}m")
    } else {
        format!("in {left}s")
    }
}

/// `stopped at 2030-01-01 12:00:00 UTC (why)` or `failed at …`, for a final app.
fn final_words(app: &App) -> String {
    let what = match app.status {
        AppStatus::OnError => "failed",
        other => other.as_str(),
    };
    let text = format!("{what} at {}", utc(app.status_time()));
    match &app.reason {
        Some(reason) => format!("{text} ({})", one_line(reason)),
        None => text,
    }
}

/// The status line of `mse status`: the status and the time it began.
fn status_line(app: &App) -> String {
    let at = utc(app.status_time());
    match app.status {
        AppStatus::Running => format!("running since {at}"),
        AppStatus::Stopped | AppStatus::OnError => format!("{} at {at}", app.status),
        other => format!("{other} (deployed {at})"),
    }
}

fn certificate_line(app: &App) -> String {
    match app.certificate_origin {
        CertificateOrigin::SelfSigned => {
            "self: the node's own RA-TLS certificate (verify it with `mse verify`)".into()
        }
        CertificateOrigin::Owner => {
            format!("owner: the owner's certificate for {}", app.domain_name)
        }
        CertificateOrigin::Operator => {
            "operator: the platform's certificate (--untrusted-ssl)".into()
        }
        CertificateOrigin::Acme => "acme: a browser-trusted certificate whose key only the node \
             holds (verify it with `mse verify DOMAIN`)"
            .into(),
    }
}

/// What the node serves, as it last said: issuer and end of validity, and
/// why the last attempt to obtain or renew a certificate failed.
fn served_lines(app: &App) -> Vec<(&'static str, String)> {
    let Some(served) = &app.certificate else {
        return Vec::new();
    };
    let mut rows = vec![
        ("issuer", served.issuer.clone()),
        ("cert expiry", served.not_after.clone()),
    ];
    if let Some(error) = &served.error {
        rows.push(("cert error", error.clone()));
    }
    rows
}

/// What to say next to the URL of an app whose domain names another uuid
/// than its own: a redeployed name keeps the domain of its first
/// deployment, and the app's own uuid name leads nowhere once it runs.
pub fn kept_domain_note(app: &App) -> Option<String> {
    (app.certificate_origin != CertificateOrigin::Owner
        && app.domain_name != app.config_domain_name)
        .then(|| {
            format!(
                "the domain of the first deployment of `{}` in project `{}`: a redeployed name \
                 keeps its domain, and {} leads nowhere once the app runs",
                app.name, app.project, app.config_domain_name
            )
        })
}

/// The text of `mse status`.
fn status_text(app: &App, resource: Option<&Resource>, url: &str, now: i64) -> String {
    let expires = if app.is_final() {
        utc(app.expires_at)
    } else {
        format!(
            "{} ({})",
            utc(app.expires_at),
            remaining(app.expires_at, now)
        )
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("name", app.name.clone()),
        ("project", app.project.clone()),
        (
            "domain",
            match kept_domain_note(app) {
                Some(note) => format!("{url} ({note})"),
                None => url.to_string(),
            },
        ),
        ("resource", app.resource.clone()),
        ("application", app.python_application.clone()),
        ("image", app.docker.clone()),
        ("healthcheck", app.healthcheck_endpoint.clone()),
        ("uuid", app.id.clone()),
        ("certificate", certificate_line(app)),
    ];
    rows.extend(served_lines(app));
    rows.extend([
        ("enclave size", app.enclave_size.clone()),
        (
            "cores",
            resource.map_or_else(
                || {
                    format!(
                        "unknown (resource `{}` is not available to you)",
                        app.resource
                    )
                },
                |r| r.cores.to_string(),
            ),
        ),
        ("created", utc(app.created_at)),
        ("expires", expires),
        ("status", status_line(app)),
        (
            "sandbox",
            app.sandbox
                .clone()
                .unwrap_or_else(|| "not reported yet".to_string()),
        ),
        (
            "limits",
            app.limits
                .clone()
                .unwrap_or_else(|| "not reported yet".to_string()),
        ),
    ]);
    if let Some(reason) = &app.reason {
        rows.push(("reason", reason.clone()));
    }
    rows.push((
        "node",
        match &app.node {
            Some(node) => format!("{node} (the node host whose reports are shown above)"),
            None => "not placed yet".to_string(),
        },
    ));
    // What a node host reported is its text: never a terminal's command.
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {}\n", one_line(v)))
        .collect()
}

/// What `logs --follow` prints of a new log window.
#[derive(Debug, PartialEq, Eq)]
struct Fresh {
    /// The text not printed yet.
    text: String,
    /// True when the window moved past text never seen: some was lost.
    gap: bool,
}

/// Turns successive windows of a log (what the platform shows of it each
/// time: whole lines, and once it is long, the runtime's kept lines and a
/// marker first) into the text not printed yet. Only whole lines are printed
/// until the end, so a half-written line is never printed twice.
#[derive(Debug, Default)]
struct LogFollower {
    /// The start of the last window, up to the end of what was printed.
    printed: String,
}

impl LogFollower {
    /// The new part of `window`; with `last`, also a trailing unfinished line.
    fn update(&mut self, window: &str, last: bool) -> Fresh {
        let (start, gap) = if window.starts_with(self.printed.as_str()) {
            (self.printed.len(), false)
        } else {
            // The window slid: what it kept of the runtime's lines was
            // printed when they came; the lines after the marker are whole.
            let body_start = mse_api::logs::after_kept(window.as_bytes());
            match overlap(&self.printed, &window[body_start..]) {
                Some(length) => (body_start + length, false),
                None => (body_start, true),
            }
        };
        let new = &window[start..];
        let take = if last {
            new.len()
        } else {
            new.rfind('\n').map_or(0, |i| i + 1)
        };
        let mut text = new[..take].to_string();
        if last && !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        self.printed = window[..start + take].to_string();
        Fresh { text, gap }
    }
}

/// How much of `body` (the whole lines of a slid window) was printed
/// already: the longest run of its first lines that ends `printed`, whole
/// lines there too. `None` when the window moved past everything printed.
fn overlap(printed: &str, body: &str) -> Option<usize> {
    // Longest first: with repeated lines, printing too little beats
    // printing twice.
    body.match_indices('\n')
        .map(|(i, _)| i + 1)
        .filter(|&end| end <= printed.len())
        .rev()
        .find(|&length| {
            printed.ends_with(&body[..length]) && {
                let before = &printed[..printed.len() - length];
                before.is_empty() || before.ends_with('\n')
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mse_api::logs::DROPPED;

    fn app(status: &str) -> App {
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
    fn remaining_time_reads_in_days_hours_minutes_or_expired() {
        assert_eq!(remaining(100, 100), "expired");
        assert_eq!(remaining(100, 200), "expired");
        assert_eq!(remaining(145, 100), "in 45s");
        assert_eq!(remaining(100 + 59 * 60 + 5, 100), "in 59m");
        assert_eq!(remaining(100 + 4 * 3600 - 60, 100), "in 3h 59m");
        assert_eq!(remaining(100 + 3 * 86_400 + 2 * 3600 + 7, 100), "in 3d 2h");
        assert_eq!(remaining(100 + 4 * 3600, 100), "in 4h");
        assert_eq!(remaining(100 + 2 * 86_400 + 59, 100), "in 2d");
    }

    #[test]
    fn status_text_shows_the_mse_fields_with_times_in_utc() {
        let resource = Resource {
            name: "free".into(),
            memory_mb: 2048,
            cores: 1,
            enclave_size: "1G".into(),
            default_hours: 4,
            public: true,
            max_live_apps: None,
        };
        let text = status_text(
            &app("running"),
            Some(&resource),
            "https://x.localhost:8443",
            1_900_000_100,
        );
        assert!(
            text.contains("domain        https://x.localhost:8443\n"),
            "{text}"
        );
        assert!(text.contains("cores         1\n"), "{text}");
        assert!(text.contains("enclave size  1G\n"), "{text}");
        assert!(
            text.contains("expires       2030-03-17 21:46:40 UTC (in 3h 58m)\n"),
            "{text}"
        );
        assert!(
            text.contains("status        running since 2030-03-17 17:47:40 UTC\n"),
            "{text}"
        );
        assert!(!text.contains("reason"), "{text}");

        let mut stopped = app("stopped");
        stopped.stopped_at = Some(1_900_000_200);
        stopped.reason = Some("stopped by its owner".into());
        let text = status_text(&stopped, None, "https://x.localhost:8443", 1_900_000_300);
        assert!(
            text.contains("status        stopped at 2030-03-17 17:50:00 UTC\n"),
            "{text}"
        );
        assert!(
            text.contains("reason        stopped by its owner\n"),
            "{text}"
        );
        assert!(
            text.contains("expires       2030-03-17 21:46:40 UTC\n"),
            "{text}"
        );
        assert!(text.contains("cores         unknown"), "{text}");
    }

    #[test]
    fn status_text_names_the_reporting_node_and_prints_no_control_character() {
        let mut failed = app("on_error");
        failed.onerror_at = Some(1_900_000_200);
        failed.node = Some("h1".into());
        failed.reason = Some("\u{1b}[2Jforged\u{1b}]0;title\u{7}\nline".into());
        failed.sandbox = Some("\u{9b}31mlandlock".into());
        failed.limits = Some("memory 512 MB, 256 processes".into());
        let text = status_text(&failed, None, "https://x.localhost:8443", 1_900_000_300);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("reason        [2Jforged]0;title line\n"),
            "{text}"
        );
        assert!(text.contains("sandbox       31mlandlock\n"), "{text}");
        assert!(
            text.contains("limits        memory 512 MB, 256 processes\n"),
            "{text}"
        );
        assert!(text.contains("node          h1 ("), "{text}");
        assert!(final_words(&failed).ends_with("([2Jforged]0;title line)"));
        assert_eq!(
            strip_controls("a\u{1b}]8;;https://evil.test\u{1b}\\b\r\n\tc"),
            "a]8;;https://evil.test\\b\n\tc"
        );
    }

    #[test]
    fn status_says_when_the_domain_was_kept_from_the_first_deployment() {
        let first = app("running");
        assert_eq!(kept_domain_note(&first), None);
        let mut again = app("running");
        again.id = "00000000-0000-0000-0000-000000000002".into();
        again.config_domain_name = format!("{}.localhost", again.id);
        let url = format!("https://{}:8443", again.domain_name);
        let text = status_text(&again, None, &url, 1_900_000_100);
        assert!(
            text.contains(&format!(
                "domain        {url} (the domain of the first deployment of `hello` in project \
                 `default`: a redeployed name keeps its domain, and \
                 00000000-0000-0000-0000-000000000002.localhost leads nowhere once the app runs)\n"
            )),
            "{text}"
        );
        let mut owner = again.clone();
        owner.certificate_origin = CertificateOrigin::Owner;
        owner.domain_name = "shop.example.com".into();
        assert_eq!(kept_domain_note(&owner), None, "a custom domain is its own");
    }

    #[test]
    fn apps_are_listed_newest_first() {
        let mut older = app("running");
        older.id = "00000000-0000-0000-0000-000000000001".into();
        older.created_at -= 10;
        let newer = app("spawning");
        let mut apps = vec![older, newer];
        sort_newest_first(&mut apps);
        assert_eq!(apps[0].status, AppStatus::Spawning);
        let table = list_table(&apps, |domain| format!("{domain}:8443"));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("UUID  "), "{table}");
        assert!(lines[0].contains("CREATED") && lines[0].ends_with("DOMAIN"));
        assert!(
            lines[1].ends_with(".localhost:8443"),
            "the domain with its port: {table}"
        );
        assert!(
            lines[1].contains("2030-03-17 17:46:40 UTC  spawning"),
            "{table}"
        );
    }

    #[test]
    fn the_json_view_has_rfc3339_times_and_the_url() {
        let mut failed = app("on_error");
        failed.onerror_at = Some(1_900_000_120);
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
        let value = serde_json::to_value(AppView::new(&failed, &profile)).unwrap();
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
    fn app_ids_are_checked_and_lower_cased() {
        assert_eq!(
            app_id("0B1C2D3E-4F50-6172-8394-A5B6C7D8E9F0").unwrap(),
            "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
        );
        assert!(matches!(app_id("../etc"), Err(Failure::Invalid(_))));
    }

    fn follow(windows: &[(&str, bool)]) -> (String, bool) {
        let mut follower = LogFollower::default();
        let mut out = String::new();
        let mut gap = false;
        for (window, last) in windows {
            let fresh = follower.update(window, *last);
            out.push_str(&fresh.text);
            gap |= fresh.gap;
        }
        (out, gap)
    }

    #[test]
    fn a_growing_log_is_printed_once_line_by_line() {
        let (out, gap) = follow(&[
            ("a\nb", false),
            ("a\nb\nc\n", false),
            ("a\nb\nc\n", false),
            ("a\nb\nc\nd", true),
        ]);
        assert_eq!(out, "a\nb\nc\nd\n");
        assert!(!gap);
    }

    #[test]
    fn a_sliding_window_prints_only_the_new_lines() {
        let slid = |kept: &str, lines: &str| format!("{kept}{DROPPED}{lines}");
        let windows = [
            ("[mse-run] started\none\ntwo\nthr".to_string(), false),
            (slid("[mse-run] started\n", "two\nthree\nfour\n"), false),
            (slid("[mse-run] started\n", "four\nfive\n"), false),
            (slid("[mse-run] started\n", "five\nsix"), true),
        ];
        let windows: Vec<(&str, bool)> = windows.iter().map(|(w, l)| (w.as_str(), *l)).collect();
        let (out, gap) = follow(&windows);
        assert_eq!(out, "[mse-run] started\none\ntwo\nthree\nfour\nfive\nsix\n");
        assert!(!gap);
    }

    #[test]
    fn repeated_lines_in_a_sliding_window_are_not_printed_twice() {
        let slid = format!("{DROPPED}x\nx\ny\n");
        let (out, _) = follow(&[("x\nx\nx\n", false), (&slid, true)]);
        assert_eq!(out, "x\nx\nx\ny\n");
    }

    #[test]
    fn a_long_log_read_through_the_platforms_window_comes_out_whole() {
        // Lines of varied lengths with multi-byte characters and the
        // runtime's own lines, growing by chunks that cut lines and
        // characters anywhere, trimmed as the node trims its log.
        let mut stream = Vec::new();
        for i in 0..20_000u32 {
            let line = if i % 1000 == 0 {
                format!("[mse-run] note {i}\n")
            } else {
                format!(
                    "{i} r\u{e9}ponse {}\n",
                    "\u{2713}".repeat((i % 17) as usize)
                )
            };
            stream.extend_from_slice(line.as_bytes());
        }
        let mut follower = LogFollower::default();
        let mut out = String::new();
        let mut file = Vec::new();
        let mut written = 0;
        let mut step = 1usize;
        while written < stream.len() {
            step = (step * 7919 + 13) % 20_000 + 1;
            let end = (written + step).min(stream.len());
            file.extend_from_slice(&stream[written..end]);
            written = end;
            if file.len() as u64 >= 2 * mse_api::logs::KEEP {
                file = mse_api::logs::window(&file);
            }
            let window = mse_api::logs::window(&file);
            let fresh = follower.update(&String::from_utf8_lossy(&window), written == stream.len());
            assert!(
                !fresh.gap,
                "nothing is lost when the log grows slower than the window"
            );
            out.push_str(&fresh.text);
        }
        assert_eq!(out, String::from_utf8(stream).unwrap());
    }

    #[test]
    fn a_window_past_everything_printed_says_lines_were_lost() {
        let slid = format!("{DROPPED}c\nd\n");
        let (out, gap) = follow(&[("a\nb\n", false), (&slid, true)]);
        assert_eq!(out, "a\nb\nc\nd\n");
        assert!(gap);
    }
}
