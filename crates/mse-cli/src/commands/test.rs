//! `mse test`: runs the plaintext app locally in the runtime environment of
//! its image, as the node would run it, without encryption or attestation.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mse_runtime::{App, EnvCache, Serving};

use crate::commands::{check_config, valid_config};
use crate::exit::{CmdResult, Failure};

/// Arguments of `mse test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file [default: ./mse.toml]
    #[arg(long, value_name = "FILE")]
    path: Option<PathBuf>,
    /// Port to serve the app on, on localhost
    #[arg(long, default_value_t = 5000)]
    port: u16,
}

/// Runs `mse test`.
pub fn run(args: Args) -> CmdResult {
    // The app is served over plain HTTP here: an [ssl] section is not
    // used (nor its files checked), and the warning says why.
    let mut report = check_config(args.path.as_deref(), true)?;
    for diagnostic in &mut report.diagnostics {
        if diagnostic.key == "ssl" && !diagnostic.is_error() {
            diagnostic.message = "the [ssl] section is not used by `mse test`: the app is served \
                                  over plain HTTP on localhost (`mse deploy` uses it)"
                .into();
            diagnostic.label = Some("not used here".into());
        }
    }
    let config = valid_config(report)?;
    let current = crate::catalog::for_local_use()?;
    for note in current
        .note
        .iter()
        .chain(&crate::catalog::legacy_file_note())
    {
        eprintln!("note: {note}");
    }
    let spec = current
        .catalog
        .find(&config.code.docker)
        .map_err(|e| Failure::Invalid(format!("{e} ({})", current.origin)))?;
    let cache = EnvCache::new(mse_runtime::default_cache_dir());
    let mut progress = |message: &str| eprintln!("==> {message}");
    let env = cache
        .ensure(spec, &mut progress)
        .map_err(|e| Failure::Other(e.into()))?;
    let location = &config.code.location;
    let tmp = tempfile_dir()?;
    let mut app = App::new(
        &env,
        &config.code.python_application.to_string(),
        location,
        &tmp,
    );
    app.secrets_path = config.code.secrets.clone();
    let requirements = location.join(mse_package::REQUIREMENTS);
    if requirements.is_file() {
        app.extra_paths.push(
            cache
                .requirements(&env, &requirements, &mut progress, &mut |_, _, _| Ok(()))
                .map_err(|e| Failure::Other(e.into()))?,
        );
    }
    let name = &config.code.python_application;

    // Fail fast, with the traceback, when the app cannot be imported.
    let check = app
        .import_check()
        .output()
        .context("cannot run the app's Python")?;
    if !check.status.success() {
        eprint!("{}", String::from_utf8_lossy(&check.stderr));
        return Err(Failure::Other(anyhow::anyhow!(
            "the app `{name}` cannot be imported from {}",
            location.display()
        )));
    }

    let url = format!("http://localhost:{}", args.port);
    outln!("Serving `{name}` from {} on {url}", location.display())?;
    outln!("  curl {url}{}", config.code.healthcheck_endpoint)?;
    outln!("  MSE_APP_URL={url} pytest tests     # from the app's folder")?;
    outln!("Press Ctrl-C to stop.")?;

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot handle Ctrl-C")?;
    let mut child = app
        .server(&format!("127.0.0.1:{}", args.port), &Serving::Plain)
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start the app server")?;
    loop {
        if let Some(status) = child.try_wait().context("cannot watch the app")? {
            let _ = std::fs::remove_dir_all(&tmp);
            if stop.load(Ordering::SeqCst) {
                outln!("Stopped.")?;
                return Ok(());
            }
            return Err(Failure::Other(anyhow::anyhow!(
                "the app stopped by itself ({status})"
            )));
        }
        if stop.load(Ordering::SeqCst) {
            terminate(&mut child);
            let _ = std::fs::remove_dir_all(&tmp);
            outln!("Stopped.")?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then SIGKILL after ten seconds.
fn terminate(child: &mut std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: sending a signal to our own child process.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tempfile_dir() -> Result<PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("mse-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
