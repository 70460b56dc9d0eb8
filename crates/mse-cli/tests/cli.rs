//! The `mse` binary as a user drives it: scaffold, validate, init.

mod common;

use common::{texts, TestContext};

#[test]
fn help_lists_only_the_commands_that_exist() {
    let ctx = TestContext::new();
    let output = ctx.mse().arg("--help").output().unwrap();
    assert!(output.status.success());
    insta::assert_snapshot!(ctx.filter(&texts(&output).0));
}

#[test]
fn help_names_the_configuration_folder_from_mse_conf_path() {
    let ctx = TestContext::new();
    let output = ctx
        .mse()
        .env("MSE_CONF_PATH", "/srv/mse-conf")
        .arg("--help")
        .output()
        .unwrap();
    assert!(texts(&output).0.contains("state in /srv/mse-conf"));
    let output = ctx
        .mse()
        .env_remove("MSE_CONF_PATH")
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        texts(&output)
            .0
            .contains("state in [TEMP]/home/.config/mse")
            || ctx
                .filter(&texts(&output).0)
                .contains("state in [TEMP]/home/.config/mse")
    );
}

#[test]
fn version_prints_the_package_version() {
    let ctx = TestContext::new();
    let output = ctx.mse().arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        texts(&output).0,
        format!("mse {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_command_is_a_usage_error_with_exit_code_2() {
    let ctx = TestContext::new();
    let output = ctx.mse().arg("deplyo").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn scaffold_creates_an_app_that_validates() {
    let ctx = TestContext::new();
    let output = ctx.mse().args(["scaffold", "helloworld"]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    insta::assert_snapshot!("scaffold_output", ctx.filter(&texts(&output).0));

    let app = ctx.work().join("helloworld");
    for file in [
        "mse.toml",
        "mse_src/app.py",
        "mse_src/.mseignore",
        "tests/test_app.py",
        "tests/conftest.py",
        "README.md",
    ] {
        assert!(app.join(file).is_file(), "{file} missing");
    }
    insta::assert_snapshot!(
        "scaffold_mse_toml",
        std::fs::read_to_string(app.join("mse.toml")).unwrap()
    );
    let ignore = std::fs::read_to_string(app.join("mse_src/.mseignore")).unwrap();
    for pattern in mse_package::walk::DEFAULT_IGNORES {
        assert!(
            ignore.lines().any(|l| l == *pattern),
            "{pattern} missing from .mseignore"
        );
    }

    let output = ctx.mse_in(&app).arg("validate").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let (stdout, stderr) = texts(&output);
    assert_eq!(stderr, "", "a scaffolded app has no warnings");
    insta::assert_snapshot!("validate_scaffolded_app", ctx.filter(&stdout));
}

#[test]
fn scaffolded_app_passes_its_own_tests() {
    let ctx = TestContext::new();
    ctx.scaffold("hello");
    let python = mse_testkit::python();
    let output = std::process::Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(ctx.work().join("hello"))
        .env_remove("MSE_APP_URL")
        .env_remove("TEST_REMOTE_URL")
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("3 passed"), "{stdout}");
}

#[test]
fn scaffold_refuses_a_non_empty_folder_and_leaves_it_untouched() {
    let ctx = TestContext::new();
    let existing = ctx.write("taken/notes.txt", "mine");
    let output = ctx.mse().args(["scaffold", "taken"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(ctx
        .filter(&texts(&output).1)
        .contains("[TEMP]/work/taken already exists and is not empty"));
    assert_eq!(
        std::fs::read_dir(ctx.work().join("taken")).unwrap().count(),
        1
    );
    assert_eq!(std::fs::read_to_string(existing).unwrap(), "mine");
}

#[test]
fn scaffold_accepts_an_existing_empty_folder() {
    let ctx = TestContext::new();
    std::fs::create_dir(ctx.work().join("empty")).unwrap();
    let output = ctx.mse().args(["scaffold", "empty"]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(ctx.work().join("empty/mse.toml").is_file());
}

#[test]
fn scaffold_refuses_a_path_as_name() {
    let ctx = TestContext::new();
    let output = ctx.mse().args(["scaffold", "../escape"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(!ctx.root.path().join("escape").exists());
}

const INVALID: &str = r#"name = "x"
projet = "default"
resource = "free"
expiration_date = "someday"

[code]
location = "nowhere"
docker = "mse-flask"
python_application = "app"
helthcheck_endpoint = "/"
"#;

#[test]
fn validate_reports_every_error_with_snippets_and_exits_2() {
    let ctx = TestContext::new();
    ctx.write("mse.toml", INVALID);
    let output = ctx.mse().arg("validate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let (stdout, stderr) = texts(&output);
    assert_eq!(stdout, "");
    insta::assert_snapshot!("validate_invalid", ctx.filter(&stderr));
}

#[test]
fn validate_json_lists_errors_with_positions() {
    let ctx = TestContext::new();
    ctx.write("mse.toml", INVALID);
    let output = ctx.mse().args(["validate", "--json"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["config"], serde_json::Value::Null);
    let errors = json["errors"].as_array().unwrap();
    let keys: Vec<&str> = errors.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "projet",
            "expiration_date",
            "code.healthcheck_endpoint",
            "code.location",
            "code.python_application",
            "code.helthcheck_endpoint",
            "project"
        ]
    );
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[0]["column"], 1);
    assert_eq!(errors[0]["help"], "did you mean `project`?");
    assert_eq!(errors[6]["line"], serde_json::Value::Null);
    let warnings = json["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0]["key"], "code.docker");
}

#[test]
fn validate_json_of_a_valid_file_carries_the_resolved_configuration() {
    let ctx = TestContext::new();
    ctx.scaffold("app");
    let output = ctx
        .mse()
        .args(["validate", "--json", "--path", "app/mse.toml"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["errors"], serde_json::json!([]));
    let location = json["config"]["code"]["location"].as_str().unwrap();
    assert_eq!(ctx.filter(location), "[TEMP]/work/app/mse_src");
    assert_eq!(
        json["config"]["expiry"],
        serde_json::json!({"source": "free_plan", "hours": 4})
    );
}

#[test]
fn validate_without_a_file_says_how_to_create_one() {
    let ctx = TestContext::new();
    let output = ctx.mse().arg("validate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = ctx.filter(&texts(&output).1);
    assert_eq!(stderr, "error: [TEMP]/work/mse.toml does not exist; create it with `mse init` or `mse scaffold NAME`, or pass --path FILE\n");
}

#[test]
fn validate_with_untrusted_ssl_warns_that_ssl_is_ignored() {
    let ctx = TestContext::new();
    ctx.scaffold("app");
    let toml = ctx.work().join("app/mse.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("\n[ssl]\ndomain_name = \"app.example.com\"\nprivate_key = \"k.pem\"\ncertificate = \"c.pem\"\n");
    std::fs::write(&toml, text).unwrap();

    let strict = ctx
        .mse_in(&ctx.work().join("app"))
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(
        strict.status.code(),
        Some(2),
        "missing key files are errors"
    );

    let output = ctx
        .mse_in(&ctx.work().join("app"))
        .args(["validate", "--untrusted-ssl"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    insta::assert_snapshot!(
        "validate_untrusted_ssl_warning",
        ctx.filter(&texts(&output).1)
    );
}

#[test]
fn init_without_a_terminal_writes_a_valid_file_from_flags() {
    let ctx = TestContext::new();
    ctx.write("app.py", "app = None\n");
    let output = ctx
        .mse()
        .args([
            "init",
            "--name",
            "shop",
            "--healthcheck-endpoint",
            "/health",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    insta::assert_snapshot!("init_output", ctx.filter(&texts(&output).0));
    insta::assert_snapshot!(
        "init_mse_toml",
        std::fs::read_to_string(ctx.work().join("mse.toml")).unwrap()
    );
}

#[test]
fn init_without_a_terminal_and_without_a_name_fails_without_writing() {
    let ctx = TestContext::new();
    let output = ctx.mse().arg("init").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(texts(&output)
        .1
        .contains("--name is required when there is no terminal"));
    assert!(!ctx.work().join("mse.toml").exists());
}

#[test]
fn init_never_overwrites_without_force() {
    let ctx = TestContext::new();
    ctx.write("app.py", "app = None\n");
    let path = ctx.write("mse.toml", "# mine\n");
    let output = ctx.mse().args(["init", "--name", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(texts(&output).1.contains("already exists; pass --force"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\n");

    let output = ctx
        .mse()
        .args(["init", "--name", "x", "--force"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .starts_with("name = \"x\""));
}

#[test]
fn init_with_secrets_flag_checks_the_file_and_writes_the_key() {
    let ctx = TestContext::new();
    ctx.write("app.py", "app = None\n");
    ctx.write("secrets.json", "[]");
    let output = ctx
        .mse()
        .args(["init", "--name", "x", "--secrets", "secrets.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        texts(&output).1.contains("must hold a JSON object"),
        "{output:?}"
    );

    ctx.write("secrets.json", "{\"token\": \"t\"}");
    let output = ctx
        .mse()
        .args(["init", "--name", "x", "--secrets", "secrets.json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(ctx.work().join("mse.toml")).unwrap();
    assert!(text.ends_with("secrets = \"secrets.json\"\n"), "{text}");
}

#[test]
fn init_from_flags_refuses_to_write_an_invalid_file_and_names_the_flags_that_fix_it() {
    let ctx = TestContext::new();
    let output = ctx
        .mse()
        .args(["init", "--name", "x", "--no-secrets"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(!ctx.work().join("mse.toml").exists(), "nothing is written");
    insta::assert_snapshot!("init_invalid_from_flags", ctx.filter(&texts(&output).1));

    let output = ctx
        .mse()
        .args(["init", "--name", "x", "--code-location", "src"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = texts(&output).1;
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("give --code-location"), "{stderr}");
    assert!(!ctx.work().join("mse.toml").exists(), "nothing is written");
}

#[test]
fn init_on_a_terminal_asks_each_question_and_asks_again_after_an_invalid_answer() {
    let ctx = TestContext::new();
    ctx.write("main.py", "application = None\n");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mse"));
    command
        .arg("init")
        .current_dir(ctx.work())
        .env("MSE_CONF_PATH", ctx.root.path().join("home/conf"))
        .env("NO_COLOR", "1")
        .env("TERM", "dumb");
    let mut session = rexpect::session::spawn_command(command, Some(20_000)).unwrap();
    session.exp_string("App name").unwrap();
    session.send_line("shop").unwrap();
    session.exp_string("Project name [default]").unwrap();
    session.send_line("").unwrap();
    session.exp_string("Resource name [free]").unwrap();
    session.send_line("a-resource-name-too-long").unwrap();
    session.exp_string("at most 16 are allowed").unwrap();
    session.exp_string("Resource name [free]").unwrap();
    session.send_line("").unwrap();
    session
        .exp_string("Docker url [ghcr.io/cosmian/mse-flask:20230124182826]")
        .unwrap();
    session.send_line("").unwrap();
    session.exp_string("Code location [.]").unwrap();
    session.send_line("").unwrap();
    session.exp_string("Python application [app:app]").unwrap();
    session.send_line("main:application").unwrap();
    session.exp_string("Health check endpoint [/]").unwrap();
    session.send_line("health").unwrap();
    session.exp_string("must start with `/`").unwrap();
    session.send_line("/health").unwrap();
    session.exp_string("secrets").unwrap();
    session.send_line("n").unwrap();
    session.exp_string("It is valid").unwrap();
    session.exp_eof().unwrap();
    insta::assert_snapshot!(
        "init_interactive_mse_toml",
        std::fs::read_to_string(ctx.work().join("mse.toml")).unwrap()
    );
}
