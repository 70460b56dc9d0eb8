//! The app's start once its code is decrypted: its secrets and TLS files,
//! its folders given to its own uid, its `requirements.txt` installed and
//! its server started, each confined, and its output sent to the log.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{anyhow, bail, Context as _};
use mse_api::launch::Launch;
use mse_run::limits;
use mse_run::sandbox::{self, Confinement, Decision, Identity, Policy};
use mse_runtime::{App, Serving};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::health::{loopback, supervise};
use super::prepare::app_owner;
use super::serving::{owner_key, ratls_key, start_front};
use super::shutdown::STOP_GRACE;
use super::storage;
use super::{create_private_dir, Dirs, Prepared, TlsSetup};
use crate::config_server::Accepted;

/// What the app's own processes may read besides their own folders: the
/// system's files and its runtime environment.
fn runtime_read_paths(env: &mse_runtime::Environment) -> Vec<PathBuf> {
    let mut read = sandbox::system_read_paths();
    read.extend(sandbox::python_paths(&env.python));
    read
}

/// The confinement of one of the app's processes under `policy`.
fn confinement(decision: &Decision, policy: &Policy) -> anyhow::Result<Confinement> {
    match decision {
        // The message already ends with its source's.
        Decision::Confine { identity, .. } => {
            Confinement::new(policy, *identity).map_err(|e| anyhow::anyhow!("{e}"))
        }
        Decision::Unconfined(_) => Ok(Confinement::unconfined()),
        Decision::Refuse(why) => bail!("{why}"),
    }
}

/// Variables `pip` keeps from this process's environment: its own settings
/// and the proxy; nothing of the platform's.
fn pip_environment() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("PIP_")
                || k.starts_with("UV_")
                || matches!(
                    k.to_ascii_lowercase().as_str(),
                    "http_proxy" | "https_proxy" | "no_proxy" | "ssl_cert_file" | "ssl_cert_dir"
                )
        })
        .collect()
}

/// A loopback address for a fronted app server: a port free now, on the
/// loopback address of the node's family.
fn app_backend(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let ip = match listen.ip() {
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let probe = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .context("cannot find a loopback port for the app server")?;
    probe
        .local_addr()
        .context("cannot find a loopback port for the app server")
}

pub(super) async fn start_app(
    launch: &Launch,
    prepared: &Prepared,
    mut accepted: Accepted,
    listener: tokio::net::TcpListener,
    stop: &mut watch::Receiver<Option<String>>,
) -> anyhow::Result<String> {
    let log = &prepared.log;
    let dirs = &prepared.dirs;
    let listen = listener
        .local_addr()
        .context("cannot read the listening address")?;
    // The persistent home, restored before anything is written into it.
    let write_back = match (&launch.storage, accepted.storage_key.take()) {
        (Some(kept), Some(key)) => {
            let confined = matches!(prepared.sandbox, Decision::Confine { .. });
            let previous = accepted.previous_storage_key.take();
            Some(storage::open(kept, key, previous, &dirs.home, confined, log).await?)
        }
        (Some(_), None) => bail!("this app keeps persistent storage and has no storage key"),
        (None, _) => None,
    };
    let secrets_path = dirs.home.join(storage::SECRETS_IN_HOME);
    if let Some(secrets) = &accepted.app_secrets {
        if let Some(parent) = secrets_path.parent() {
            create_private_dir(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        mse_package::context::write_private(&secrets_path, &serde_json::to_vec(secrets)?)
            .context("cannot write the app's secrets")?;
    }

    // What the front presents first: the owner's certificate, or the
    // RA-TLS certificate until the CA issues one.
    let first = match &prepared.tls {
        TlsSetup::Owner { chain_pem, .. } => {
            let key = accepted
                .ssl_private_key
                .as_ref()
                .ok_or_else(|| anyhow!("the owner's private key is missing"))?;
            Some(owner_key(chain_pem, key)?)
        }
        TlsSetup::Acme(_) => Some(ratls_key(&prepared.ratls)?),
        TlsSetup::RaTls | TlsSetup::Plain => None,
    };
    drop(accepted);
    // The app server serves the RA-TLS certificate: to its clients, or
    // behind the front (on a loopback port) to the front alone.
    let (serving, pinned) = match &prepared.tls {
        TlsSetup::Plain => (Serving::Plain, None),
        TlsSetup::RaTls | TlsSetup::Owner { .. } | TlsSetup::Acme(_) => {
            let serving = write_tls(dirs, &prepared.ratls.cert_pem, &prepared.ratls.key_pem)?;
            (serving, Some(prepared.ratls.cert_der.clone()))
        }
    };
    let socket = if prepared.tls.fronted() {
        Some(app_backend(listen)?)
    } else {
        None
    };
    // Fronted, the listener stays the node's; otherwise it closes here, so
    // that the app server can listen on its port.
    let listener = socket.as_ref().map(|_| listener);
    let owner = app_owner(&prepared.sandbox);
    if let Some(uid) = owner {
        // The app's own uid owns its folders; the work folder above them
        // only lets it through.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            &launch.node.work_dir,
            std::fs::Permissions::from_mode(0o711),
        )
        .context("cannot open the work folder to the app's user")?;
        for dir in [&dirs.app, &dirs.home, &dirs.tmp, &dirs.tls] {
            if dir.exists() {
                sandbox::chown_tree(dir, uid)
                    .with_context(|| format!("cannot give {} to the app's user", dir.display()))?;
            }
        }
    }

    let mut app = App::new(&prepared.env, &launch.app.application, &dirs.app, &dirs.tmp);
    app.secrets_path = Some(secrets_path);
    app.home = Some(dirs.home.clone());
    app.clean_env = true;
    let requirements = dirs.app.join(mse_package::REQUIREMENTS);
    if requirements.is_file() {
        log.note("installing requirements.txt");
        let cache = prepared.cache.clone();
        let env = prepared.env.clone();
        let note_log = log.clone();
        let decision = prepared.sandbox.clone();
        let installer = cache.installer().program().map(Path::to_path_buf);
        let site = tokio::task::spawn_blocking(move || {
            // The installer runs as a uid of its own (never the app's: what
            // it builds is shared by every app of the same requirements, and
            // is the node's once built), with a scratch home of its own.
            let mut confine = |pip: &mut std::process::Command, site: &Path, scratch: &Path| {
                let identity = match &decision {
                    Decision::Confine {
                        identity: Identity::Uid(_),
                        ..
                    } => {
                        let uid = sandbox::installer_uid(site);
                        for dir in [site, scratch] {
                            sandbox::chown_tree(dir, uid).map_err(|e| e.to_string())?;
                        }
                        Some(uid)
                    }
                    _ => None,
                };
                let mut read = runtime_read_paths(&env);
                read.extend(site.parent().map(|dir| dir.join(mse_package::REQUIREMENTS)));
                read.extend(installer.clone());
                for (key, value) in pip_environment() {
                    if matches!(key.as_str(), "PIP_CERT" | "PIP_FIND_LINKS") {
                        read.extend(
                            value
                                .split_whitespace()
                                .map(|v| PathBuf::from(v.trim_start_matches("file://")))
                                .filter(|p| p.is_absolute() && p.exists()),
                        );
                    }
                }
                let policy = Policy {
                    read,
                    write: vec![site.to_path_buf(), scratch.to_path_buf()],
                    bind_tcp: Vec::new(),
                    private_tmp: identity.map(|_| scratch.to_path_buf()),
                    open_files: Some(limits::OPEN_FILES),
                };
                pip.env_clear()
                    .env("PATH", mse_runtime::CLEAN_PATH)
                    .env("LANG", "C.UTF-8")
                    .env("HOME", scratch)
                    .env("TMPDIR", scratch)
                    .envs(pip_environment())
                    .stdin(Stdio::null());
                let confinement = match (&decision, identity) {
                    (Decision::Confine { .. }, Some(uid)) => {
                        Confinement::new(&policy, Identity::Uid(uid)).map_err(|e| e.to_string())
                    }
                    _ => confinement(&decision, &policy).map_err(|e| format!("{e:#}")),
                }?;
                confinement.apply(pip);
                Ok(())
            };
            cache.requirements(&env, &requirements, &mut |m| note_log.note(m), &mut confine)
        })
        .await?
        .context("cannot install requirements.txt")?;
        app.extra_paths.push(site);
    }

    let bind = socket.unwrap_or(listen).to_string();
    let mut command = app.server(&bind, &serving);
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut read = runtime_read_paths(&prepared.env);
    read.extend(app.extra_paths.iter().cloned());
    read.extend([dirs.app.clone(), dirs.tls.clone()]);
    let policy = Policy {
        read,
        write: vec![dirs.home.clone(), dirs.tmp.clone()],
        bind_tcp: vec![socket.unwrap_or(listen).port()],
        private_tmp: app_owner(&prepared.sandbox).map(|_| dirs.tmp.clone()),
        open_files: prepared.asked.open_files,
    };
    // In its cgroup first (while this process's privileges still hold), so
    // the limits bind the app server from its first instruction.
    if let Some(cgroup) = prepared.limits.cgroup() {
        cgroup
            .enter(&mut command)
            .context("cannot put the app server in its cgroup")?;
    }
    // The app server and everything it starts: confined, and killed by the
    // kernel if this runtime dies without stopping it.
    confinement(&prepared.sandbox, &policy)?.apply(&mut command);
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let mut child = command.spawn().context("cannot start the app server")?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the app server has no pid"))?;
    // The output is read on the runtime's threads and written to the log by
    // a thread of its own, so file writes never block them; a slow disk
    // slows the app's writes down instead of losing lines.
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let writer_log = log.clone();
    let writer = std::thread::spawn(move || {
        while let Some(chunk) = received.blocking_recv() {
            writer_log.write(&chunk);
        }
    });
    for output in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let chunks = chunks.clone();
        tokio::spawn(async move {
            let mut output = output;
            let mut buffer = vec![0u8; 16 * 1024];
            while let Ok(n) = output.read(&mut buffer).await {
                if n == 0 || chunks.send(buffer[..n].to_vec()).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(chunks);
    log.note(&format!("app server started (pid {pid})"));
    let keeper = write_back.map(|w| storage::keep(w, log.clone()));
    // The listener serves the front now (fronted apps), or is closed so
    // that the app server has the port.
    let probe_at = socket.unwrap_or_else(|| loopback(listen));
    let (certificate, tasks) = match (first, socket, listener) {
        (Some(first), Some(socket), Some(listener)) => start_front(
            launch,
            prepared,
            listener,
            first,
            socket,
            pinned.clone(),
            stop,
        )?,
        _ => (watch::channel(None).1, Vec::new()),
    };
    let outcome = supervise(
        launch,
        log,
        pid,
        &mut child,
        pinned,
        probe_at,
        certificate,
        stop,
    )
    .await;
    for task in tasks {
        task.abort();
    }
    // The app server is gone: after a graceful stop its home is written
    // back once more, before the node says it stopped.
    if let Some(keeper) = keeper {
        keeper.finish(outcome.is_ok(), log.clone()).await;
    }
    // Every line the app wrote is in the log before the final state is told
    // (the app's group is gone, so its pipes are closed).
    let _ = tokio::time::timeout(
        STOP_GRACE,
        tokio::task::spawn_blocking(move || writer.join()),
    )
    .await;
    outcome
}

fn write_tls(dirs: &Dirs, cert_pem: &str, key_pem: &str) -> anyhow::Result<Serving> {
    let cert = dirs.tls.join("cert.pem");
    let key = dirs.tls.join("key.pem");
    std::fs::write(&cert, cert_pem).context("cannot write the app's certificate")?;
    mse_package::context::write_private(&key, key_pem.as_bytes())
        .context("cannot write the app's key")?;
    Ok(Serving::Tls { cert, key })
}
