//! `mse-server`: the platform on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Runs the MSE platform on this machine: the REST API, the SNI proxy and the
/// local node runner (one `mse-run` per app).
///
/// The first start initialises the data folder (store, enclave-signing key,
/// simulation CA, operator CA and wildcard certificate, image catalog) and
/// prints the admin's API token once; it is also in DATA_DIR/admin.token.
/// SIGTERM or Ctrl-C stops the apps, then the platform.
#[derive(Debug, Parser)]
#[command(name = "mse-server", version)]
struct Args {
    /// The platform's data folder
    #[arg(long, value_name = "DIR", default_value = "mse-data")]
    data_dir: PathBuf,
    /// The store [default: SQLite in DATA_DIR/mse.db]; `postgres://…` for PostgreSQL
    #[arg(long, value_name = "URL", env = "MSE_DATABASE_URL")]
    database_url: Option<String>,
    /// Address of the REST API
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9443")]
    listen_api: SocketAddr,
    /// Address of the SNI proxy: apps are reached through it
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen_proxy: SocketAddr,
    /// Apps are reachable at https://<uuid>.<BASE_DOMAIN>
    #[arg(long, default_value = "localhost")]
    base_domain: String,
    /// The node runtime binary [default: `mse-run` next to this binary]
    #[arg(long, value_name = "FILE")]
    mse_run: Option<PathBuf>,
    /// Where runtime environments are cached [default: DATA_DIR/cache]
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Where the local nodes keep their private folders (decrypted code,
    /// secrets, logs) [default: DATA_DIR.nodes, beside the data folder]
    #[arg(long, value_name = "DIR")]
    nodes_dir: Option<PathBuf>,
    /// Where nodes get their quotes: `simulation` (no hardware) or `gramine`
    #[arg(long, default_value = "simulation", value_parser = ["simulation", "gramine"])]
    quote_provider: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
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

async fn serve(args: Args) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mse_run = match args.mse_run {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot find this binary")?
            .with_file_name("mse-run"),
    };
    let settings = mse_server::Settings {
        cache_dir: args
            .cache_dir
            .clone()
            .unwrap_or_else(|| args.data_dir.join("cache")),
        nodes_dir: args.nodes_dir.clone().unwrap_or_else(|| {
            let mut name = args.data_dir.as_os_str().to_owned();
            name.push(".nodes");
            PathBuf::from(name)
        }),
        data_dir: args.data_dir.clone(),
        database_url: args.database_url.clone(),
        base_domain: args.base_domain.clone(),
        mse_run,
        quote_provider: args.quote_provider.clone(),
    };
    let (state, admin_token) = mse_server::open(&settings).await?;
    let reaper = state.runner.clone();
    tokio::spawn(async move { reaper.reap(std::time::Duration::from_secs(5)).await });
    if let Some(token) = admin_token {
        println!("admin token: {token}");
        println!(
            "(shown once; also in {})",
            args.data_dir.join("admin.token").display()
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen_api)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen_api))?;
    let proxy_listener = tokio::net::TcpListener::bind(args.listen_proxy)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen_proxy))?;
    let terminate = mse_server::proxy::load_terminate_config(&args.data_dir)?;
    println!("API listening on http://{}", listener.local_addr()?);
    println!(
        "proxy listening on {} (apps at https://<uuid>.{}:{})",
        proxy_listener.local_addr()?,
        args.base_domain,
        proxy_listener.local_addr()?.port()
    );

    // SIGTERM or Ctrl-C stops everything: the API and the proxy stop
    // accepting, and every node is asked to stop.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
        let _ = stop.send(true);
    });
    let until_stopped = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };
    let proxy = tokio::spawn(mse_server::proxy::serve(
        proxy_listener,
        state.runner.routes(),
        Some(terminate),
        mse_server::proxy::ProxyLimits::default(),
        until_stopped(stopped.clone()),
    ));
    let runner = state.runner.clone();
    axum::serve(listener, mse_server::api::router(state))
        .with_graceful_shutdown(until_stopped(stopped))
        .await
        .context("the API server failed")?;
    println!("stopping the apps…");
    runner.stop_all(std::time::Duration::from_secs(20)).await;
    let _ = proxy.await;
    println!("stopped");
    Ok(())
}
