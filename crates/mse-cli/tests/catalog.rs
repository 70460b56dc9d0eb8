//! One image catalog, the platform's: published at `GET /catalog`, fetched
//! at login, refreshed when the operator changes it, and used by the
//! client's `validate` and `deploy` with no copy kept by hand; the default
//! images prepared at start into `$MSE_CACHE_DIR`.

mod common;

use std::time::Duration;

use common::deploy::*;
use common::platform::{user, Platform};
use mse_testkit::wait;
use serde_json::Value;

const SEED: &str = "ghcr.io/cosmian/mse-flask:20230124182826";

fn set_docker(app: &std::path::Path, image: &str) {
    let path = app.join("mse.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(SEED, image);
    assert!(text.contains(image), "the scaffold names the seed image");
    std::fs::write(&path, text).unwrap();
}

#[test]
fn the_client_checks_and_deploys_against_the_platforms_catalog_as_the_operator_changes_it() {
    let platform = Platform::start();
    let http = reqwest::blocking::Client::new();

    // Published without a token, with its digest as the ETag.
    let response = http
        .get(format!("{}/catalog", platform.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let published: Value = response.json().unwrap();
    assert_eq!(
        etag,
        format!("\"{}\"", published["digest"].as_str().unwrap())
    );
    let seed = published["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == SEED)
        .expect("the seed image is approved")
        .clone();
    let unchanged = http
        .get(format!("{}/catalog", platform.url))
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(unchanged.status(), 304, "a current copy is not sent again");

    let (owner, _) = user(&platform, "owner");
    let app = owner.scaffold("aliased");
    let alias = "ghcr.io/example/mse-flask-reviewed:20240101000000";
    set_docker(&app, alias);

    // Not approved yet: validate refuses it as deploy would.
    let (code, stdout, stderr) = run_in(&owner, &app, &["validate"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let flat = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("code.docker")
            && flat.contains("is not approved by the catalog of")
            && flat.contains(&platform.url),
        "{stderr}"
    );

    // The operator approves it on the platform only; the client follows.
    let entry = format!(
        "\n[[image]]\nreference = \"{alias}\"\npython = \"{}\"\npackages = {}\n",
        seed["python"].as_str().unwrap(),
        seed["packages"]
    );
    let catalog = platform.data_dir().join("catalog.toml");
    let mut text = std::fs::read_to_string(&catalog).unwrap();
    text.push_str(&entry);
    std::fs::write(&catalog, text).unwrap();

    let (code, stdout, stderr) = run_in(&owner, &app, &["validate"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("approved by the catalog of {}", platform.url)),
        "{stdout}"
    );
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(owner.root.path().join("home/conf/catalog.json")).unwrap(),
    )
    .unwrap();
    assert_ne!(
        saved["digest"], published["digest"],
        "the saved copy was refreshed"
    );

    // Deployed and verified: the fingerprint the client recomputes uses the
    // platform's environment for the image; it was built already (the seed
    // has the same lock), so nobody is told to wait for a build.
    let (code, stdout, stderr) = run_in(&owner, &app, &["deploy", "--json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", platform.output());
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["verified"], true);
    assert!(
        !stderr.contains("builds the Python environment"),
        "{stderr}"
    );
    assert_eq!(call_app(&platform, &out, "/health").0, 200);
}

#[test]
fn a_platform_prepares_its_default_images_at_start_into_mse_cache_dir() {
    let cache = tempfile::tempdir().unwrap();
    let platform = Platform::start_with(|command| {
        command.env("MSE_CACHE_DIR", cache.path());
    });
    let catalog = mse_runtime::Catalog::parse(
        "served",
        &std::fs::read_to_string(platform.data_dir().join("catalog.toml")).unwrap(),
    )
    .unwrap();
    let prepared: Vec<_> = catalog.images.iter().filter(|i| i.prepare).collect();
    assert!(prepared.iter().any(|i| i.reference == SEED));
    let total = prepared.len();
    wait::until(
        "the catalog's images are prepared",
        Duration::from_secs(600),
        || {
            let output = platform.output();
            let done = (1..=total)
                .filter(|n| {
                    output.lines().any(|l| {
                        l.starts_with(&format!("runtime image {n}/{total} "))
                            && l.contains(": ready")
                    })
                })
                .count();
            if done == total {
                assert!(
                    output.contains(&format!("{SEED}: building its environment with uv")),
                    "{output}"
                );
                return Ok(());
            }
            assert!(
                !output.contains("its first deploy will try again"),
                "a build failed:\n{output}"
            );
            Err(format!("{done} of {total} ready:\n{output}"))
        },
    );
    for image in &prepared {
        let ready = cache
            .path()
            .join("envs")
            .join(image.digest())
            .join(".ready");
        assert!(
            ready.exists(),
            "{} built into $MSE_CACHE_DIR",
            image.reference
        );
    }

    let (owner, _) = user(&platform, "owner");
    let app = owner.scaffold("first");
    let (code, stdout, stderr) = run_in(&owner, &app, &["deploy"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", platform.output());
    assert!(
        !stderr.contains("builds the Python environment"),
        "{stderr}"
    );
}
