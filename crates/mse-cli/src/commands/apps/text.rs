//! The text of `mse list` and `mse status`: plain functions of values.

use chrono::{DateTime, Utc};
use mse_api::account::Resource;
use mse_api::apps::{App, AppStatus, CertificateOrigin};
use mse_api::text::one_line;
use mse_config::datetime::display_utc;

use crate::render;

/// `2030-01-01 12:00:00 UTC`, as the rest of the CLI shows times.
pub(super) fn utc(time: DateTime<Utc>) -> String {
    display_utc(&time)
}

/// Newest first; ties by uuid, as the platform orders them.
pub(super) fn sort_newest_first(apps: &mut [App]) {
    apps.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// The table of `mse list`; `address` gives where a domain is reached
/// (`host:port`).
pub(super) fn list_table(apps: &[App], address: impl Fn(&str) -> String) -> String {
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
pub(super) fn final_words(app: &App) -> String {
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

/// What `mse status` and `mse deploy` say of the TEE an app runs in.
pub(crate) fn tee_line(tee: Option<mse_api::tee::Tee>) -> String {
    use mse_api::tee::Tee;
    match tee {
        None => "not placed yet".to_string(),
        Some(Tee::Simulation) => "simulation (no hardware protection)".to_string(),
        Some(Tee::Sgx) => "sgx (Intel SGX enclave, Gramine)".to_string(),
        Some(Tee::Tdx) => "tdx (Intel TDX confidential VM)".to_string(),
        Some(Tee::SevSnp) => "sev-snp (AMD SEV-SNP confidential VM)".to_string(),
    }
}

/// The text of `mse status`.
pub(super) fn status_text(app: &App, resource: Option<&Resource>, url: &str, now: i64) -> String {
    let expires = if app.is_final() {
        utc(app.expires_at)
    } else {
        format!(
            "{} ({})",
            utc(app.expires_at),
            remaining(app.expires_at.timestamp(), now)
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
    rows.push(("tee", tee_line(app.tee)));
    if app.keep_running {
        rows.push((
            "keys",
            "kept by the platform's key service: restarted on another node when its node is lost"
                .to_string(),
        ));
    }
    if let Some(note) = &app.rescheduled {
        rows.push(("rescheduled", note.clone()));
    }
    if let Some(storage) = &app.storage {
        rows.push((
            "storage",
            match storage
                .updated_at
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            {
                Some(at) => format!(
                    "persistent $HOME, {} of {} kept encrypted (version {}, written back {})",
                    crate::render::bytes(storage.size),
                    crate::render::bytes(storage.cap_bytes),
                    storage.version,
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => format!(
                    "persistent $HOME of at most {}, nothing written back yet",
                    crate::render::bytes(storage.cap_bytes)
                ),
            },
        ));
    }
    // What a node host reported is its text: never a terminal's command.
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {}\n", one_line(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use mse_api::text::strip_controls;

    use super::*;
    use crate::commands::apps::tests::app;

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
            tees: Vec::new(),
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
        stopped.stopped_at = DateTime::from_timestamp(1_900_000_200, 0);
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
        failed.onerror_at = DateTime::from_timestamp(1_900_000_200, 0);
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
        assert!(text.contains("tee           not placed yet\n"), "{text}");
        failed.tee = Some(mse_api::tee::Tee::Tdx);
        let text = status_text(&failed, None, "https://x", 0);
        assert!(
            text.contains("tee           tdx (Intel TDX confidential VM)\n"),
            "{text}"
        );
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
        older.created_at -= chrono::Duration::seconds(10);
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
}
