//! What ACME adds to a deploy: `mse deploy` to `running` of the scaffolded
//! app with a browser-trusted certificate from a real Pebble, against the
//! same deploy with `--no-acme` (the RA-TLS certificate) in the same run,
//! alternating, with a warm runtime environment.
//!
//! Run with `./scripts/bench-acme.sh [DEPLOYS]` (release build).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::acme::start;
use common::deploy::deploy_ok;
use common::platform::user;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn p90(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(values.len() * 9 / 10).min(values.len() - 1)]
}

fn main() {
    let deploys: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .filter(|n| (1..=100).contains(n))
        .unwrap_or(10);
    let acme = start(None);
    let (ctx, _token) = user(&acme.platform, "bench");
    // The first deploy builds or checks the runtime environment: not timed.
    let warm = ctx.scaffold("warm");
    deploy_ok(&acme.platform, &ctx, &warm, &["--no-acme"]);

    let (mut with, mut without, mut browser) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..deploys {
        for acme_on in [true, false] {
            let name = format!("app{round}{}", if acme_on { "a" } else { "r" });
            let app = ctx.scaffold(&name);
            let args: &[&str] = if acme_on { &[] } else { &["--no-acme"] };
            let started = Instant::now();
            let out = deploy_ok(&acme.platform, &ctx, &app, args);
            let seconds = started.elapsed().as_secs_f64();
            if acme_on {
                assert_eq!(out["browser_verified"], true, "{out}");
                with.push(seconds);
                browser.push(out["timings"]["browser"].as_f64().unwrap_or(0.0));
            } else {
                assert_eq!(out["certificate_origin"], "self", "{out}");
                without.push(seconds);
            }
            let id = out["uuid"].as_str().unwrap_or_default();
            let _ = ctx.mse().args(["stop", id]).output();
        }
    }
    let (m_with, m_without) = (median(&mut with), median(&mut without));
    println!("mse deploy to running, {deploys} deploys each, alternating:");
    println!(
        "  RA-TLS (--no-acme):   median {:.0} ms, p90 {:.0} ms",
        m_without * 1e3,
        p90(&mut without) * 1e3
    );
    println!(
        "  ACME (Pebble):        median {:.0} ms, p90 {:.0} ms",
        m_with * 1e3,
        p90(&mut with) * 1e3
    );
    println!(
        "  ACME adds:            {:+.0} ms (median), of which the client's check of the served \
         certificate against the evidence: median {:.0} ms",
        (m_with - m_without) * 1e3,
        median(&mut browser) * 1e3
    );
}
