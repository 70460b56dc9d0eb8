//! What the app sandbox costs at start: the same commands started confined
//! (as `mse-run` starts an app: ruleset built, identity set, Landlock
//! entered before exec) and unconfined, alternating, in one run.
//!
//! Usage: `sandbox_cost PYTHON [ROUNDS]` where PYTHON is the interpreter of
//! a runtime environment with Flask and hypercorn (default 20 rounds).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use mse_run::sandbox::{self, Confinement, Decision, Identity, Policy};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(python) = args.next().map(PathBuf::from) else {
        eprintln!("usage: sandbox_cost PYTHON [ROUNDS]");
        return ExitCode::from(2);
    };
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(20);
    let decision = sandbox::decide(
        sandbox::Mode::Required,
        sandbox::Offered {
            landlock_abi: sandbox::landlock_abi(),
            root: sandbox::running_as_root(),
        },
        sandbox::app_uid("00000000-0000-4000-8000-000000000000"),
    );
    let Decision::Confine { identity, .. } = decision else {
        eprintln!("no sandbox here: {}", sandbox::describe(&decision));
        return ExitCode::from(2);
    };
    println!("sandbox: {}", sandbox::describe(&decision));
    let tmp = std::env::temp_dir().join(format!("mse-sandbox-cost-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&tmp);
    if let Identity::Uid(uid) = identity {
        let _ = sandbox::chown_tree(&tmp, uid);
    }
    let mut read = sandbox::system_read_paths();
    read.extend(sandbox::python_paths(&python));
    let policy = Policy {
        read,
        write: vec![tmp.clone()],
        bind_tcp: vec![],
        private_tmp: None,
        open_files: None,
    };

    let import = "import flask, hypercorn.asyncio, hypercorn.config";
    let cases: [(&str, Vec<&str>, &Path); 2] = [
        ("exec /bin/true", vec![], Path::new("/bin/true")),
        (
            "python: import flask, hypercorn",
            vec!["-c", import],
            python.as_path(),
        ),
    ];
    println!(
        "{:<34} {:>12} {:>12} {:>8}",
        "start of", "unconfined", "confined", "ratio"
    );
    for (name, argv, program) in cases {
        let mut plain = Vec::with_capacity(rounds);
        let mut confined = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let Some(elapsed) = time(program, &argv, None) else {
                return ExitCode::FAILURE;
            };
            plain.push(elapsed);
            match time(program, &argv, Some((&policy, identity))) {
                Some(elapsed) => confined.push(elapsed),
                None => return ExitCode::FAILURE,
            }
        }
        let (p, c) = (median(&mut plain), median(&mut confined));
        println!(
            "{name:<34} {:>9.2} ms {:>9.2} ms {:>7.3}x",
            ms(p),
            ms(c),
            c.as_secs_f64() / p.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    ExitCode::SUCCESS
}

/// Time to run `program argv` to its end; confined under `policy` when
/// given one (the ruleset is built inside the timed span, as in a node).
fn time(program: &Path, argv: &[&str], confined: Option<(&Policy, Identity)>) -> Option<Duration> {
    let started = Instant::now();
    let mut command = Command::new(program);
    command
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((policy, identity)) = confined {
        match Confinement::new(policy, identity) {
            Ok(confinement) => confinement.apply(&mut command),
            Err(e) => {
                eprintln!("cannot build the sandbox: {e}");
                return None;
            }
        }
    }
    let status = command.status();
    let elapsed = started.elapsed();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("{} failed", program.display());
        return None;
    }
    Some(elapsed)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
