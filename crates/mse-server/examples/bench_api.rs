//! Latency of `GET /apps` with 10,000 apps in the store, over HTTP on
//! loopback: the whole listing, a page filtered by name, and one app by id.
//!
//! `cargo run --release -p mse-server --example bench_api [-- APPS [REQUESTS]]`
//! (`./scripts/bench-api.sh`). Prints p50/p99/max per request kind.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let apps: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let requests: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);

    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let settings = mse_server::Settings {
        data_dir: data.clone(),
        database_url: None,
        base_domain: "localhost".into(),
        mse_run: "/nonexistent/mse-run".into(),
        cache_dir: dir.path().join("cache"),
        installer: mse_runtime::Installer::Pip,
        nodes_dir: dir.path().join("nodes"),
        tee: Default::default(),
        node_options: Default::default(),
        capacity: mse_server::machine_capacity(),
        lease_secs: 30,
        acme: None,
        max_token_lifetime: None,
        recovery: None,
    };
    let mse_server::Opened {
        state,
        admin_token: token,
        ..
    } = mse_server::open(&settings).await?;
    let token = token.expect("a new platform has an admin token");
    let admin = state
        .store
        .user_by_token_hash(
            &mse_server::state::auth::token_hash(&token),
            chrono::Utc::now().timestamp(),
        )
        .await?
        .expect("the admin");
    let project = state
        .store
        .project(&admin.id, "default")
        .await?
        .expect("the default project");

    // Every app stays live: the admin's quota must hold them all.
    state
        .store
        .set_user_quota(
            &admin.id,
            &mse_server::domain::accounts::QuotaChange {
                max_live_apps: Some(Some(i64::try_from(apps)?)),
                max_stored_bytes: None,
            },
        )
        .await?;
    eprintln!("inserting {apps} apps…");
    let started = Instant::now();
    let now = chrono::Utc::now().timestamp();
    for i in 0..apps {
        let id = mse_server::store::new_id();
        state
            .store
            .insert_app(&mse_server::domain::app::NewApp {
                id: id.clone(),
                project_id: project.id.clone(),
                domain: format!("{id}.localhost"),
                config_domain: format!("{id}.localhost"),
                spec: mse_server::domain::app::AppSpec {
                    name: format!("app-{i}"),
                    resource: "free".into(),
                    docker: "ghcr.io/cosmian/mse-flask:20230124182826".into(),
                    python_application: "app:app".into(),
                    healthcheck_endpoint: "/health".into(),
                    certificate_origin:
                        mse_server::domain::lifecycle::CertificateOrigin::SelfSigned,
                    ssl_certificate: None,
                    code_sha256: "00".repeat(32),
                    code_bytes: 0,
                    enclave_size: "1G".into(),
                    storage_bytes: None,
                },
                created_at: chrono::DateTime::from_timestamp(now - (apps - i) as i64, 0)
                    .expect("a time of this century"),
                expires_at: chrono::DateTime::from_timestamp(now + 3600, 0)
                    .expect("a time of this century"),
            })
            .await?;
    }
    eprintln!("inserted in {:.1} s", started.elapsed().as_secs_f64());
    let some_id = state
        .store
        .user_apps(
            &admin.id,
            &mse_server::domain::app::AppFilter {
                name: Some("app-4242".into()),
                ..Default::default()
            },
        )
        .await?
        .first()
        .map(|a| a.id.clone())
        .unwrap_or_default();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(axum::serve(listener, mse_server::api::router(state)).into_future());

    println!(
        "GET latency over HTTP/1.1 on loopback (a new connection each), {apps} apps in SQLite, {requests} requests each"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>10}",
        "request", "bytes", "p50 ms", "p99 ms", "max ms"
    );
    for (label, path) in [
        ("GET /apps (all)", "/apps".to_string()),
        ("GET /apps?limit=100", "/apps?limit=100".to_string()),
        ("GET /apps?name=app-4242", "/apps?name=app-4242".to_string()),
        (
            "GET /apps?status=running",
            "/apps?status=running".to_string(),
        ),
        ("GET /apps/{id}", format!("/apps/{some_id}")),
    ] {
        let (times, bytes) = measure(addr, &path, &token, requests).await?;
        println!(
            "{label:<34} {bytes:>10} {:>10.2} {:>10.2} {:>10.2}",
            ms(percentile(&times, 50)),
            ms(percentile(&times, 99)),
            ms(*times.last().unwrap_or(&Duration::ZERO))
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

async fn measure(
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
    requests: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut times = Vec::with_capacity(requests);
    let mut bytes = 0;
    for _ in 0..requests + 5 {
        let request = hyper::Request::get(path)
            .header("host", "localhost")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        // A connection per request, as the command-line client makes them.
        let started = Instant::now();
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        anyhow::ensure!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let body = response.into_body().collect().await?.to_bytes();
        times.push(started.elapsed());
        bytes = body.len();
    }
    times.drain(..5);
    times.sort();
    Ok((times, bytes))
}
