//! The original platform's client, `mse-cli` 0.10.2 from PyPI, unmodified,
//! pointed at this platform's compatibility API (docs/compat.md), as its
//! user would: `mse login` opens its "browser" on our authorize page —
//! here a script that approves with the user's API token, as
//! `BROWSER=<script>` allows — then reads who signed in, lists an app,
//! shows its status and log, and stops it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::platform::{login, Platform, PlatformExt as _};
use common::TestContext;

/// A "browser" for Python's `webbrowser`: it asks the authorize URL with
/// the token of `MSE_TEST_TOKEN` as bearer, and follows the one redirect to
/// the client's loopback listener, as a browser would.
const BROWSER: &str = r#"import os, sys, urllib.error, urllib.request

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None

opener = urllib.request.build_opener(NoRedirect)
request = urllib.request.Request(
    sys.argv[1], headers={"Authorization": "Bearer " + os.environ["MSE_TEST_TOKEN"]}
)
try:
    opener.open(request, timeout=30)
    sys.exit("no redirect")
except urllib.error.HTTPError as e:
    location = e.headers["Location"]
try:
    urllib.request.build_opener(NoRedirect).open(location, timeout=30)
except urllib.error.HTTPError:
    pass
"#;

/// `mse ARGS` of mse-cli 0.10.2, pointed at `api`, with its own home:
/// whether it succeeded, and what it printed.
fn original(home: &Path, api: &str, token: &str, args: &[&str]) -> (bool, String) {
    original_in(home, home, api, token, args)
}

/// One `mse login` at a time in this process: the client listens on the
/// fixed port 5355 (across processes, nextest runs these tests one at a
/// time: `.config/nextest.toml`).
static LOGIN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`original`] run in `dir`.
fn original_in(home: &Path, dir: &Path, api: &str, token: &str, args: &[&str]) -> (bool, String) {
    let _one_login = (args.first() == Some(&"login")).then(|| {
        LOGIN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    });
    let browser = home.join("browser.py");
    std::fs::write(&browser, BROWSER).unwrap();
    let python = mse_testkit::original_client().with_file_name("python");
    let mut command = Command::new(mse_testkit::original_client());
    command
        .current_dir(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("MSE_CONF_PATH", home.join("conf"))
        .env("MSE_BASE_URL", format!("{api}/compat/mse-0.10"))
        .env(
            "MSE_AUTH0_DOMAIN_NAME",
            format!("{api}/compat/mse-0.10/auth"),
        )
        .env("MSE_AUTH0_CLIENT_ID", "mse-cli")
        .env("MSE_AUTH0_AUDIENCE", "mse")
        .env("MSE_CONSOLE_URL", format!("{api}/console"))
        .env(
            "BROWSER",
            format!("{} {} %s", python.display(), browser.display()),
        )
        .env("MSE_TEST_TOKEN", token);
    let log = home.join("output.txt");
    let file = std::fs::File::create(&log).unwrap();
    command
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    let mut child = command.spawn().unwrap();
    let status = mse_testkit::wait::exit(
        &format!("mse-cli 0.10.2 `mse {}`", args.join(" ")),
        &mut child,
        Duration::from_secs(120),
    );
    (status.success(), std::fs::read_to_string(&log).unwrap())
}

#[test]
fn the_original_client_signs_in_then_lists_shows_reads_the_log_of_and_stops_an_app() {
    let platform = Platform::start();
    let token = platform.create_user("carol@example.com");
    let home = tempfile::tempdir().unwrap();
    let api = platform.url.clone();

    let (ok, text) = original(home.path(), &api, &token, &["login"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("Successfully logged in as carol@example.com"),
        "{text}"
    );
    // It keeps the refresh token, one of our API tokens.
    let saved = std::fs::read_to_string(home.path().join("conf/login.toml")).unwrap();
    assert!(saved.contains("mse_"), "{saved}");

    let (ok, text) = original(home.path(), &api, &token, &["login", "--whoami"]);
    assert!(ok, "{text}");
    assert!(text.contains("logged in as: carol@example.com"), "{text}");
    // Its `GET /users/me` answered in the shape its model reads (else it
    // warns the account is not configured).
    assert!(!text.contains("Don't forget"), "{text}");

    // An app of this user (deployed with our client; nobody configures it,
    // so it waits `initializing`): the original client lists it, shows its
    // status and its log, and stops it.
    let ctx = TestContext::new();
    login(&platform, &ctx, &token, true);
    let deployed = platform.deploy_scaffold(&ctx, &token, "legacy");
    let uuid = deployed["id"].as_str().unwrap();
    mse_testkit::wait::until(
        "the app's node waits for its key",
        Duration::from_secs(120),
        || {
            let (_, app) = platform.get(&token, &format!("/apps/{uuid}"));
            (app["status"] == "initializing").then_some(())
        },
    );
    let run = |args: &[&str]| {
        let (ok, text) = original(home.path(), &api, &token, args);
        assert!(ok, "mse {}: {text}", args.join(" "));
        text
    };
    let listed = run(&["list", "default"]);
    assert!(
        listed.contains(uuid) && listed.contains("initializing"),
        "{listed}"
    );
    let status = run(&["status", uuid]);
    assert!(
        status.contains("legacy")
            && status.contains(&format!(
                "Resource    = {}",
                deployed["resource"].as_str().unwrap()
            )),
        "{status}"
    );
    let logs = run(&["logs", uuid]);
    assert!(logs.contains("[mse-run]"), "{logs}");
    run(&["stop", uuid]);
    let (_, app) = platform.get(&token, &format!("/apps/{uuid}"));
    assert_eq!(app["status"], "stopped", "{app}");
    let listed = run(&["list", "default"]);
    assert!(
        !listed.contains(uuid),
        "a stopped app is listed with --all only: {listed}"
    );
    let listed = run(&["list", "default", "--all"]);
    assert!(
        listed.contains(uuid) && listed.contains("stopped"),
        "{listed}"
    );
}

/// Binds port 443 (the original client sends the node its key there):
/// serialized with the other such tests.
#[test]
fn the_original_client_scaffolds_and_deploys_an_app_on_port_443_which_then_serves() {
    let platform = Platform::start_with_proxy("127.0.0.1:443", |_| {});
    let token = platform.create_user("dave@example.com");
    let home = tempfile::tempdir().unwrap();
    let api = platform.url.clone();
    let work = home.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let run_in = |dir: &Path, args: &[&str]| {
        let (ok, text) = original_in(home.path(), dir, &api, &token, args);
        assert!(ok, "mse {}: {text}", args.join(" "));
        text
    };
    run_in(&work, &["login"]);
    run_in(&work, &["scaffold", "legacy"]);
    // Its verification needs Docker and Intel's PCCS: as its users on a
    // machine without them, with --no-verify.
    let (ok, deployed) = original_in(
        home.path(),
        &work.join("legacy"),
        &api,
        &token,
        &["deploy", "--no-verify"],
    );
    if !ok || !deployed.contains("Your application is now deployed") {
        let (_, apps) = platform.get(&token, "/apps");
        let logs: Vec<String> = apps
            .as_array()
            .into_iter()
            .flatten()
            .map(|app| {
                let id = app["id"].as_str().unwrap_or_default();
                format!("{}", platform.get(&token, &format!("/apps/{id}/logs")).1)
            })
            .collect();
        panic!("mse deploy --no-verify: {deployed}\napps: {apps}\nlogs: {logs:?}");
    }
    let (_, apps) = platform.get(&token, "/apps");
    let app = &apps.as_array().unwrap()[0];
    assert_eq!(app["status"], "running", "{app}");
    assert_eq!(app["name"], "legacy");
    let uuid = app["id"].as_str().unwrap();
    let status = run_in(&work, &["status", uuid]);
    assert!(status.contains("running"), "{status}");
    // Its plan's `memory` is the resource's enclave size, which it shows.
    assert!(status.contains("Enclave size       = 1024M"), "{status}");
    // Its users call it trusting the certificate its node serves, as the
    // client's own advice (`curl --cacert`) has them do.
    let domain = app["domain_name"].as_str().unwrap();
    let call = Command::new(mse_testkit::python())
        .args([
            "-c",
            "import ssl, sys, tempfile, requests\n\
             pem = ssl.get_server_certificate((sys.argv[1], 443))\n\
             cert = tempfile.NamedTemporaryFile('w', suffix='.pem', delete=False)\n\
             cert.write(pem); cert.close()\n\
             answer = requests.get('https://' + sys.argv[1] + '/', verify=cert.name, timeout=30)\n\
             print(answer.status_code, answer.text)",
            domain,
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = common::texts(&call);
    assert!(stdout.starts_with("200 "), "{stdout}{stderr}");
    let exported = run_in(&work, &["context", "--export", uuid]);
    assert!(exported.contains("successfully exported"), "{exported}");

    // This platform's `mse verify` checks the node of the app the original
    // client deployed (quote, key binding, MRSIGNER, and MRENCLAVE = the
    // fingerprint the app's record names).
    let ctx = TestContext::new();
    login(&platform, &ctx, &token, true);
    let (_, record) = platform.get(&token, &format!("/apps/{uuid}"));
    let fingerprint = record["fingerprint"].as_str().unwrap();
    let verify = ctx
        .mse()
        .args(["verify", domain, "--json", "--fingerprint", fingerprint])
        .output()
        .unwrap();
    let (stdout, stderr) = common::texts(&verify);
    assert!(verify.status.success(), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["verified"], true, "{report}");
    run_in(&work, &["stop", uuid]);
}
