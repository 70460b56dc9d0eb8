//! `mse` writing into a pipe whose reader went away (`mse list | head -1`,
//! once `head` has exited): the command ends quietly with exit code 0,
//! without a panic or any word on stderr.
//!
//! The reader here closes its end before `mse` writes anything (`mse` first
//! asks the platform), so every write of the command meets the closed pipe:
//! the case a reader that exits early leaves for whatever `mse` still has to
//! say.

mod common;

use std::io::Read as _;
use std::process::Stdio;

use common::platform::{user, Platform, PlatformExt};
use common::TestContext;

/// Runs `mse ARGS` as `ctx` with stdout a pipe whose reader goes away after
/// reading `bytes` bytes (none: at once); returns the exit code and stderr.
fn into_closed_pipe(ctx: &TestContext, args: &[&str], bytes: usize) -> (Option<i32>, String) {
    let mut child = ctx
        .mse_process_in(&ctx.work())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mse starts");
    let mut stdout = child.stdout.take().expect("a piped stdout");
    let mut read = vec![0; bytes];
    stdout
        .read_exact(&mut read)
        .expect("mse writes what is read");
    drop(stdout);
    let output = child.wait_with_output().expect("mse ends");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn id_of(app: &serde_json::Value) -> String {
    app["id"].as_str().expect("an app has an id").to_string()
}

#[test]
fn list_into_a_closed_pipe_exits_0_with_nothing_on_stderr() {
    let platform = Platform::start();
    let (alice, token) = user(&platform, "alice");
    for name in ["first", "second", "third"] {
        platform.deploy_scaffold(&alice, &token, name);
    }
    let output = alice.mse().args(["list"]).output().unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(table.lines().count(), 4, "a header and three apps: {table}");

    for args in [&["list"][..], &["list", "--all", "--json"]] {
        let (code, stderr) = into_closed_pipe(&alice, args, 0);
        assert_eq!(code, Some(0), "mse {args:?}: {stderr}");
        assert_eq!(stderr, "", "mse {args:?}");
    }
}

#[test]
fn status_into_a_closed_pipe_exits_0_with_nothing_on_stderr() {
    let platform = Platform::start();
    let (alice, token) = user(&platform, "alice");
    let id = id_of(&platform.deploy_scaffold(&alice, &token, "hello"));
    platform.wait_initializing(&token, &id);

    for args in [&["status", &id][..], &["status", &id, "--json"]] {
        // Where this machine does not resolve the app's name, `status` warns
        // on stderr whatever stdout is: nothing more is said.
        let output = alice.mse().args(args).output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let warning = String::from_utf8_lossy(&output.stderr).into_owned();
        let (code, stderr) = into_closed_pipe(&alice, args, 0);
        assert_eq!(code, Some(0), "mse {args:?}: {stderr}");
        assert_eq!(stderr, warning, "mse {args:?}");
    }
}

#[test]
fn logs_into_a_closed_pipe_exits_0_with_nothing_on_stderr() {
    let platform = Platform::start();
    let (alice, token) = user(&platform, "alice");
    let id = id_of(&platform.deploy_scaffold(&alice, &token, "hello"));
    platform.wait_initializing(&token, &id);
    let output = alice.mse().args(["logs", &id]).output().unwrap();
    assert!(
        !output.stdout.is_empty(),
        "the node's log has its runtime's lines: {output:?}"
    );

    let (code, stderr) = into_closed_pipe(&alice, &["logs", &id], 0);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
    // A reader that takes the first byte and goes: what is left of the
    // log has nowhere to go either.
    let (code, stderr) = into_closed_pipe(&alice, &["logs", &id], 1);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
}
