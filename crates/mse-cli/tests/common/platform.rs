//! The platform the `mse` binary talks to ([`mse_testkit::platform`]), and
//! what a test does on it as a user of the `mse` binary: log in, deploy an
//! app without `mse deploy`.

use std::path::Path;

use serde_json::{json, Value};

pub use mse_testkit::platform::Platform;

use super::TestContext;

/// What a test does on a [`Platform`] with the `mse` binary.
pub trait PlatformExt {
    /// Deploys app `name` through the raw API, as `user` (a context of that
    /// user): `mse scaffold`, `mse package`, then `POST /apps` with the
    /// config of its `mse.toml`. Nobody sends the node its key, so the app
    /// stays `initializing`. Returns the app as the API describes it.
    fn deploy_scaffold(&self, user: &TestContext, token: &str, name: &str) -> Value;
}

impl PlatformExt for Platform {
    fn deploy_scaffold(&self, user: &TestContext, token: &str, name: &str) -> Value {
        let app = user.scaffold(name);
        let out = app.join("package");
        user.ok_in(
            &app,
            &[
                "package",
                "--path",
                &app.join("mse.toml").to_string_lossy(),
                "--output",
                &out.to_string_lossy(),
            ],
        );
        let config = deploy_config(&app.join("mse.toml"));
        let code = std::fs::read(out.join("code.tar")).expect("mse package wrote code.tar");
        let form = reqwest::blocking::multipart::Form::new()
            .part(
                "config",
                reqwest::blocking::multipart::Part::text(config.to_string())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "code",
                reqwest::blocking::multipart::Part::bytes(code)
                    .file_name("code.tar")
                    .mime_str("application/x-tar")
                    .unwrap(),
            );
        let (status, body) = self.post_form(token, "/apps", form);
        assert_eq!(status, 201, "POST /apps: {body}\n{}", self.output());
        body
    }
}

/// The deployment config of an `mse.toml`, as `POST /apps` takes it.
pub fn deploy_config(mse_toml: &Path) -> Value {
    let text = std::fs::read_to_string(mse_toml).expect("mse.toml is readable");
    let toml: toml::Value = toml::from_str(&text).expect("mse.toml is TOML");
    let field = |table: &toml::Value, key: &str| -> String {
        table
            .get(key)
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("mse.toml has no `{key}`"))
            .to_string()
    };
    let code = toml.get("code").expect("mse.toml has [code]");
    json!({
        "name": field(&toml, "name"),
        "project": field(&toml, "project"),
        "resource": field(&toml, "resource"),
        "docker": field(code, "docker"),
        "python_application": field(code, "python_application"),
        "healthcheck_endpoint": field(code, "healthcheck_endpoint"),
    })
}

/// `mse login --url … --token … [--allow-simulation]` as `user`; panics
/// unless it succeeds.
pub fn login(platform: &Platform, user: &TestContext, token: &str, allow_simulation: bool) {
    let mut command = user.mse();
    command.args(["login", "--url", &platform.url, "--token", token]);
    if allow_simulation {
        command.arg("--allow-simulation");
    }
    let output = command.output().expect("mse runs");
    assert!(output.status.success(), "mse login failed: {output:?}");
}

/// A user of the platform: a home of their own, logged in with a new token.
pub fn user(platform: &Platform, name: &str) -> (TestContext, String) {
    let ctx = TestContext::new();
    let token = platform.create_user(name);
    login(platform, &ctx, &token, true);
    (ctx, token)
}
