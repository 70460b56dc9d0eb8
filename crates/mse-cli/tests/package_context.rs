//! `mse package` and `mse context`, driven as a user does.

mod common;

use std::collections::BTreeMap;

use chrono::TimeZone;
use common::{texts, TestContext};
use mse_package::context::{
    CertificateOrigin, Context, ContextConfig, ContextInstance, ContextStore,
};

fn scaffold(ctx: &TestContext) -> std::path::PathBuf {
    let app = ctx.scaffold("app");
    std::fs::write(app.join("mse_src/requirements.txt"), "flask\n").unwrap();
    app
}

#[test]
fn package_writes_the_tarball_and_a_private_package_toml() {
    let ctx = TestContext::new();
    let app = scaffold(&ctx);
    let output = ctx
        .mse_in(&app)
        .args(["package", "--output", "out"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (stdout, stderr) = texts(&output);
    assert!(
        stderr.contains("package.toml holds the code key"),
        "{stderr}"
    );
    let filtered = ctx.filter(&stdout);
    let filtered: String = filtered
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("sha256 ") {
                "  sha256 [SHA256]"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("package_output", filtered);

    let toml_path = app.join("out/package.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&toml_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&toml_path).unwrap();
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(parsed["code_secret_key"].as_str().unwrap().len(), 64);
    let nonces = parsed["nonces"].as_table().unwrap();
    let keys: Vec<&String> = nonces.keys().collect();
    assert_eq!(
        keys,
        [".mseignore", "app.py"],
        "requirements.txt is not encrypted"
    );
    let tar = std::fs::read(app.join("out/code.tar")).unwrap();
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&tar)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(parsed["code_sha256"].as_str().unwrap(), digest);
}

#[test]
fn package_reproduces_a_package_byte_for_byte_from_its_package_toml() {
    let ctx = TestContext::new();
    let app = scaffold(&ctx);
    ctx.ok_in(&app, &["package", "-o", "first"]);
    let output = ctx
        .mse_in(&app)
        .args(["package", "-o", "second", "--nonces", "first/package.toml"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        std::fs::read(app.join("first/code.tar")).unwrap(),
        std::fs::read(app.join("second/code.tar")).unwrap()
    );
    // The same with the key given explicitly.
    let table: toml::Table =
        toml::from_str(&std::fs::read_to_string(app.join("first/package.toml")).unwrap()).unwrap();
    let key = table["code_secret_key"].as_str().unwrap();
    let output = ctx
        .mse_in(&app)
        .args([
            "package",
            "-o",
            "third",
            "--key",
            key,
            "--nonces",
            "first/package.toml",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["code_sha256"], table["code_sha256"].as_str().unwrap());
    assert_eq!(json["encrypted_files"], 2);
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains(key),
        "the key is never printed"
    );
}

#[test]
fn package_refuses_nonces_that_do_not_match_the_code() {
    let ctx = TestContext::new();
    let app = scaffold(&ctx);
    ctx.ok_in(&app, &["package", "-o", "first"]);
    std::fs::write(app.join("mse_src/extra.py"), "x = 1\n").unwrap();
    let output = ctx
        .mse_in(&app)
        .args(["package", "-o", "second", "--nonces", "first/package.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        texts(&output).1.contains("`extra.py` has no nonce"),
        "{output:?}"
    );
    assert!(!app.join("second/code.tar").exists(), "nothing is written");
}

#[test]
fn package_refuses_a_malformed_key() {
    let ctx = TestContext::new();
    let app = scaffold(&ctx);
    let output = ctx
        .mse_in(&app)
        .args(["package", "-o", "o", "--key", "abc"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(texts(&output).1.contains("64 hex digits"));
}

#[test]
fn package_of_an_invalid_config_packages_nothing() {
    let ctx = TestContext::new();
    let app = scaffold(&ctx);
    std::fs::write(app.join("mse.toml"), "name = 1\n").unwrap();
    let output = ctx
        .mse_in(&app)
        .args(["package", "-o", "o"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(!app.join("o").exists());
}

const ID_A: &str = "0f4e8a52-9c1b-4d7e-a3f0-1b2c3d4e5f60";
const ID_B: &str = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

fn save_context(ctx: &TestContext, id: &str, name: &str, year: i32) {
    let store = ContextStore::new(&ctx.root.path().join("home/conf"));
    let context = Context {
        version: "1.0".into(),
        config: ContextConfig {
            name: name.into(),
            project: "default".into(),
            python_application: "app:app".into(),
            docker: mse_config::DEFAULT_DOCKER_IMAGE.into(),
            code_secret_key: "ab".repeat(32),
            ssl_app_certificate: None,
        },
        instance: ContextInstance {
            id: id.into(),
            config_domain_name: format!("{id}.config.localhost"),
            domain_name: None,
            runtime_spec_digest: None,
            enclave_size: "4G".into(),
            expires_at: chrono::Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap(),
            ssl_certificate_origin: CertificateOrigin::SelfSigned,
            nonces: BTreeMap::from([("app.py".to_string(), "cd".repeat(24))]),
        },
    };
    let tar = ctx.root.path().join("code.tar");
    std::fs::write(&tar, b"tar").unwrap();
    store.save(&context, &tar).unwrap();
}

/// True when the store holds a folder for `id`.
fn stored(ctx: &TestContext, id: &str) -> bool {
    ctx.root.path().join("home/conf/context").join(id).exists()
}

#[test]
fn context_list_shows_saved_contexts_by_expiry() {
    let ctx = TestContext::new();
    let output = ctx.mse().args(["context", "--list"]).output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        ctx.filter(&texts(&output).0),
        "No context in [TEMP]/home/conf/context\n"
    );

    save_context(&ctx, ID_A, "later", 2031);
    save_context(&ctx, ID_B, "sooner", 2030);
    let output = ctx.mse().args(["context", "--list"]).output().unwrap();
    insta::assert_snapshot!("context_list", texts(&output).0);

    let output = ctx
        .mse()
        .args(["context", "--list", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json[0]["uuid"], ID_B);
    assert_eq!(json[1]["name"], "later");
    assert!(!String::from_utf8_lossy(&output.stdout).contains(&"ab".repeat(32)));
}

#[test]
fn context_export_writes_a_private_copy_that_loads_back() {
    let ctx = TestContext::new();
    save_context(&ctx, ID_A, "app", 2031);
    let output = ctx
        .mse()
        .args(["context", "--export", ID_A])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(texts(&output).1.contains("holds the code key"));
    let exported = ctx.work().join(format!("{ID_A}.mse"));
    let text = std::fs::read_to_string(&exported).unwrap();
    let context = Context::from_toml(&exported, &text).unwrap();
    assert_eq!(context.instance.id, ID_A);

    let output = ctx
        .mse()
        .args(["context", "--export", ID_A, "--output", "shared/ctx.mse"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "missing parent folder is an I/O failure: {output:?}"
    );
    std::fs::create_dir(ctx.work().join("shared")).unwrap();
    let output = ctx
        .mse()
        .args(["context", "--export", ID_A, "--output", "shared/ctx.mse"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        std::fs::read_to_string(ctx.work().join("shared/ctx.mse")).unwrap(),
        text
    );
}

#[test]
fn context_remove_needs_confirmation_without_a_terminal() {
    let ctx = TestContext::new();
    save_context(&ctx, ID_A, "app", 2031);
    let output = ctx
        .mse()
        .args(["context", "--remove", ID_A])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(texts(&output).1.contains("pass -y"), "{output:?}");
    assert!(stored(&ctx, ID_A));

    let output = ctx
        .mse()
        .args(["context", "--remove", ID_A, "-y"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        texts(&output).0,
        format!("Removed the context of app {ID_A} (app in project default)\n")
    );
    assert!(!stored(&ctx, ID_A));

    let output = ctx
        .mse()
        .args(["context", "--remove", ID_A, "-y"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(texts(&output).1.contains("no context for app"));
}

#[test]
fn context_commands_refuse_ids_that_are_not_uuids() {
    let ctx = TestContext::new();
    save_context(&ctx, ID_A, "app", 2031);
    for args in [["--remove", "../context"], ["--export", "../../etc"]] {
        let output = ctx
            .mse()
            .arg("context")
            .args(args)
            .arg("-y")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert!(
            texts(&output).1.contains("is not an app UUID"),
            "{output:?}"
        );
    }
    assert!(stored(&ctx, ID_A));
}

#[test]
fn context_purge_removes_everything_after_confirmation() {
    let ctx = TestContext::new();
    save_context(&ctx, ID_A, "a", 2031);
    save_context(&ctx, ID_B, "b", 2031);
    let output = ctx.mse().args(["context", "--purge"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = ctx
        .mse()
        .args(["context", "--purge", "--yes"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(texts(&output).0, "Removed 2 contexts\n");
    let output = ctx.mse().args(["context", "--list"]).output().unwrap();
    assert!(texts(&output).0.starts_with("No context"));
}

#[test]
fn context_needs_exactly_one_action() {
    let ctx = TestContext::new();
    assert_eq!(
        ctx.mse().arg("context").output().unwrap().status.code(),
        Some(2)
    );
    assert_eq!(
        ctx.mse()
            .args(["context", "--list", "--purge"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn package_reproduces_a_package_from_a_context_file() {
    let ctx = TestContext::new();
    let app = scaffold(&ctx);
    let first = ctx.ok_in(&app, &["package", "-o", "first", "--json"]);
    let sha = json_field(&first, "code_sha256");
    let table: toml::Table =
        toml::from_str(&std::fs::read_to_string(app.join("first/package.toml")).unwrap()).unwrap();
    // A context holds the same key and nonces under [config] and [instance.nonces].
    let nonces: BTreeMap<String, String> = table["nonces"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let context = Context {
        version: "1.0".into(),
        config: ContextConfig {
            name: "app".into(),
            project: "default".into(),
            python_application: "app:app".into(),
            docker: mse_config::DEFAULT_DOCKER_IMAGE.into(),
            code_secret_key: table["code_secret_key"].as_str().unwrap().into(),
            ssl_app_certificate: None,
        },
        instance: ContextInstance {
            id: ID_A.into(),
            config_domain_name: format!("{ID_A}.config.localhost"),
            domain_name: None,
            runtime_spec_digest: None,
            enclave_size: "4G".into(),
            expires_at: chrono::Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).unwrap(),
            ssl_certificate_origin: CertificateOrigin::SelfSigned,
            nonces,
        },
    };
    std::fs::write(app.join("app.mse"), context.to_toml()).unwrap();
    let again = ctx.ok_in(
        &app,
        &["package", "-o", "again", "--nonces", "app.mse", "--json"],
    );
    assert_eq!(json_field(&again, "code_sha256"), sha);
}

fn json_field(output: &std::process::Output, field: &str) -> String {
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    json[field].as_str().unwrap().to_string()
}
