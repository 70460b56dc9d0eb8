//! `mse verify` as an app user runs it: against a certificate file or a live
//! TLS endpoint, with the fingerprint given or recomputed from a context.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use chrono::{Duration, Utc};
use common::{texts, TestContext};
use mse_attest::fingerprint::{fingerprint, FingerprintInput, TlsMode};
use mse_attest::ratls::{self, RaTls};
use mse_attest::simulation::{SimulationCa, SimulationProvider};
use mse_package::context::{CertificateOrigin, Context, ContextConfig, ContextInstance};

/// The platform: its enclave-signing key and simulation CA.
struct Platform {
    signer_pem: String,
    mr_signer: [u8; 32],
    ca: SimulationCa,
}

fn platform() -> &'static Platform {
    static PLATFORM: OnceLock<Platform> = OnceLock::new();
    PLATFORM.get_or_init(|| {
        use rsa::pkcs8::EncodePublicKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 3072).unwrap();
        let signer_pem = key
            .to_public_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        Platform {
            mr_signer: mse_attest::signer::mr_signer_from_pem(&signer_pem).unwrap(),
            signer_pem,
            ca: SimulationCa::generate(Utc::now()).unwrap(),
        }
    })
}

/// A node's RA-TLS certificate for an enclave measuring `mr_enclave`.
fn node_cert(domain: &str, mr_enclave: [u8; 32]) -> RaTls {
    let p = platform();
    let provider = SimulationProvider::new(
        p.ca.issue_pck("test-host", Utc::now()).unwrap(),
        mr_enclave,
        p.mr_signer,
    );
    ratls::create(
        domain,
        Utc::now() + Duration::hours(4),
        None,
        &provider,
        Utc::now(),
    )
    .unwrap()
}

/// Writes the platform's public material into the work folder.
fn platform_files(ctx: &TestContext) {
    ctx.write("signer.pem", &platform().signer_pem);
    ctx.write("simulation-ca.pem", platform().ca.cert_pem());
    ctx.write("revoked.json", r#"{"revoked": []}"#);
}

const TRUST: [&str; 7] = [
    "--signer-key",
    "signer.pem",
    "--simulation-ca",
    "simulation-ca.pem",
    "--simulation-revoked",
    "revoked.json",
    "--allow-simulation",
];

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"))
}

#[test]
fn verify_of_a_simulated_node_passes_every_check_and_saves_the_certificate() {
    let ctx = TestContext::new();
    platform_files(&ctx);
    let cert = node_cert("app.localhost", [0xaa; 32]);
    ctx.write("node.pem", &cert.cert_pem);
    let output = ctx
        .mse()
        .args([
            "verify",
            "--cert",
            "node.pem",
            "--fingerprint",
            &"aa".repeat(32),
            "--json",
        ])
        .args(TRUST)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert_eq!(report["verified"], true);
    assert_eq!(report["tee"], "simulation");
    assert_eq!(report["mr_enclave"], "aa".repeat(32));
    assert_eq!(report["mr_signer"], hex::encode(platform().mr_signer));
    assert_eq!(report["debug"], false);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "quote_present",
            "report_data_binding",
            "debug_disabled",
            "mr_signer",
            "mr_enclave",
            "quote_signature",
            "tcb"
        ]
    );
    assert!(report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));
    let saved = std::fs::read_to_string(ctx.work().join("cert.pem")).unwrap();
    assert_eq!(ratls::pem_to_der(saved.as_bytes()).unwrap(), cert.cert_der);
}

#[test]
fn verify_refuses_a_simulated_node_unless_simulation_is_allowed() {
    let ctx = TestContext::new();
    platform_files(&ctx);
    ctx.write("node.pem", &node_cert("app.localhost", [0xaa; 32]).cert_pem);
    let output = ctx
        .mse()
        .args([
            "verify",
            "--cert",
            "node.pem",
            "--signer-key",
            "signer.pem",
            "--simulation-ca",
            "simulation-ca.pem",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert_eq!(report["verified"], false);
    assert_eq!(report["tee"], serde_json::Value::Null);
    assert!(
        !ctx.work().join("cert.pem").exists(),
        "nothing is saved on failure"
    );
}

#[test]
fn verify_with_a_wrong_fingerprint_fails_with_exit_code_1() {
    let ctx = TestContext::new();
    platform_files(&ctx);
    ctx.write("node.pem", &node_cert("app.localhost", [0xaa; 32]).cert_pem);
    let output = ctx
        .mse()
        .args([
            "verify",
            "--cert",
            "node.pem",
            "--fingerprint",
            &"bb".repeat(32),
        ])
        .args(TRUST)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let (stdout, stderr) = texts(&output);
    assert!(stdout.contains("✗ mr_enclave"), "{stdout}");
    assert!(
        stderr.contains("verification failed: 1 of 7 checks failed"),
        "{stderr}"
    );
}

#[test]
fn verify_without_a_fingerprint_skips_that_check_with_a_warning() {
    let ctx = TestContext::new();
    platform_files(&ctx);
    ctx.write("node.pem", &node_cert("app.localhost", [0xaa; 32]).cert_pem);
    let output = ctx
        .mse()
        .args(["verify", "--cert", "node.pem"])
        .args(TRUST)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (stdout, stderr) = texts(&output);
    assert!(stdout.contains("- mr_enclave"), "{stdout}");
    assert!(stderr.contains("no fingerprint was given"), "{stderr}");
    assert!(
        stderr.contains("SIMULATION — no hardware protection"),
        "{stderr}"
    );
}

/// Serves `cert` over TLS on a free loopback port for a few connections.
fn serve(cert: &RaTls) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![CertificateDer::from(cert.cert_der.clone())];
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let config = mse_attest::tls::server_config(chain, key, &[]).unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
            while conn.is_handshaking() {
                if conn.complete_io(&mut stream).is_err() {
                    break;
                }
            }
            conn.send_close_notify();
            let _ = conn.complete_io(&mut stream);
            let _ = stream.flush();
        }
    });
    port
}

#[test]
fn verify_fetches_the_certificate_over_tls_from_a_localhost_name() {
    let ctx = TestContext::new();
    platform_files(&ctx);
    let cert = node_cert("app.localhost", [0xcd; 32]);
    let port = serve(&cert);
    let target = format!("app.localhost:{port}");
    let output = ctx
        .mse()
        .args([
            "verify",
            &target,
            "--fingerprint",
            &"cd".repeat(32),
            "--output",
            "app.pem",
        ])
        .args(TRUST)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = ctx
        .filter(&texts(&output).0)
        .replace(&port.to_string(), "[PORT]")
        .replace(&hex::encode(platform().mr_signer), "[MRSIGNER]");
    let stdout: String = stdout
        .lines()
        .map(|l| match l.find("SGX quote v3, ") {
            Some(at) => format!("{}SGX quote v3, [N] bytes", &l[..at]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("verify_over_tls", stdout);
    assert_eq!(
        ratls::pem_to_der(&std::fs::read(ctx.work().join("app.pem")).unwrap()).unwrap(),
        cert.cert_der
    );
}

#[test]
fn verify_reports_an_unreachable_target_as_a_failure() {
    let ctx = TestContext::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = ctx
        .mse()
        .args(["verify", &format!("gone.localhost:{port}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        texts(&output)
            .1
            .contains("cannot connect to gone.localhost"),
        "{output:?}"
    );
}

fn write_code(dir: &Path) {
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    std::fs::write(
        dir.join("app.py"),
        "from flask import Flask\napp = Flask(__name__)\n",
    )
    .unwrap();
    std::fs::write(dir.join("pkg/util.py"), "X = 1\n").unwrap();
}

#[test]
fn verify_recomputes_the_fingerprint_from_an_exported_context_and_the_code() {
    let ctx = TestContext::new();
    platform_files(&ctx);
    let code = ctx.work().join("code");
    write_code(&code);
    let key = mse_package::CodeKey::generate();
    let packed =
        mse_package::pack(&code, &key, mse_package::Nonces::Random, std::io::sink()).unwrap();
    let id = "0f4e8a52-9c1b-4d7e-a3f0-1b2c3d4e5f60";
    let expires_at = chrono::DateTime::from_timestamp(Utc::now().timestamp() + 3600, 0).unwrap();
    let context = Context {
        version: "1.0".into(),
        config: ContextConfig {
            name: "app".into(),
            project: "default".into(),
            python_application: "app:app".into(),
            docker: mse_config::DEFAULT_DOCKER_IMAGE.into(),
            code_secret_key: key.to_hex(),
            ssl_app_certificate: None,
        },
        instance: ContextInstance {
            id: id.into(),
            config_domain_name: format!("{id}.config.localhost"),
            domain_name: Some(format!("{id}.localhost")),
            runtime_spec_digest: Some("5d".repeat(32)),
            enclave_size: "4G".into(),
            expires_at,
            ssl_certificate_origin: CertificateOrigin::SelfSigned,
            nonces: mse_package::context::nonces_to_hex(&packed.nonces),
        },
    };
    ctx.write("app.mse", &context.to_toml());
    // What the node measures, computed here from the same facts.
    let expected = fingerprint(&FingerprintInput {
        runtime_image: mse_config::DEFAULT_DOCKER_IMAGE.into(),
        runtime_spec_digest: "5d".repeat(32),
        enclave_size: "4G".into(),
        app_uuid: id.into(),
        app_domain: format!("{id}.localhost"),
        python_application: "app:app".into(),
        tls: TlsMode::SelfSigned { expires_at },
        code_sha256: packed.sha256,
    });
    ctx.write(
        "node.pem",
        &node_cert(&format!("{id}.localhost"), expected).cert_pem,
    );
    let args = [
        "verify",
        "--cert",
        "node.pem",
        "--context",
        "app.mse",
        "--code",
        "code",
        "--json",
    ];
    let output = ctx.mse().args(args).args(TRUST).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(json(&output)["mr_enclave"], hex::encode(expected));

    // One changed byte of plaintext: the enclave is not running this code.
    std::fs::write(code.join("pkg/util.py"), "X = 2\n").unwrap();
    let output = ctx.mse().args(args).args(TRUST).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "mr_enclave")
        .unwrap()
        .clone();
    assert_eq!(check["ok"], false);

    // A file the context does not know about: the code differs, said plainly.
    std::fs::write(code.join("extra.py"), "").unwrap();
    let output = ctx.mse().args(args).args(TRUST).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        texts(&output).1.contains("`extra.py` has no nonce"),
        "{output:?}"
    );
}

#[test]
fn verify_refuses_a_file_that_is_not_an_ratls_certificate() {
    let ctx = TestContext::new();
    platform_files(&ctx);
    let key = rcgen::KeyPair::generate().unwrap();
    let plain = rcgen::CertificateParams::new(vec!["x.localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    ctx.write("plain.pem", &plain.pem());
    let output = ctx
        .mse()
        .args(["verify", "--cert", "plain.pem", "--json"])
        .args(TRUST)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert!(report["checks"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("not an RA-TLS certificate"));
    ctx.write("junk.pem", "junk");
    let output = ctx
        .mse()
        .args(["verify", "--cert", "junk.pem"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn verify_help_reads_well() {
    let ctx = TestContext::new();
    let output = ctx.mse().args(["verify", "--help"]).output().unwrap();
    assert!(output.status.success());
    insta::assert_snapshot!("verify_help", texts(&output).0);
}

#[test]
fn verify_of_an_sgx_quote_without_reachable_collateral_fails_with_a_way_out() {
    // A certificate carrying a genuine SGX quote (the dcap-qvl sample).
    struct Fixed(Vec<u8>);
    impl mse_attest::provider::QuoteProvider for Fixed {
        fn quote(&self, _: &[u8; 64]) -> Result<Vec<u8>, mse_attest::AttestError> {
            Ok(self.0.clone())
        }
        fn name(&self) -> &'static str {
            "fixed"
        }
    }
    let quote = std::fs::read(mse_testkit::dcap_sample_dir().join("sgx_quote")).unwrap();
    let cert = ratls::create(
        "sgx.localhost",
        Utc::now() + Duration::hours(1),
        None,
        &Fixed(quote),
        Utc::now(),
    )
    .unwrap();
    let ctx = TestContext::new();
    ctx.write("node.pem", &cert.cert_pem);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = ctx
        .mse()
        .args([
            "verify",
            "--cert",
            "node.pem",
            "--json",
            "--pccs-url",
            &format!("http://127.0.0.1:{closed}"),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    let signature = &report["checks"][5];
    assert_eq!(signature["name"], "quote_signature");
    assert_eq!(signature["ok"], false);
    assert!(
        signature["detail"]
            .as_str()
            .unwrap()
            .contains("pass --collateral FILE"),
        "{signature}"
    );

    // The sample collateral is out of date today: verification refuses it.
    let collateral = mse_testkit::dcap_sample_dir().join("sgx_quote_collateral.json");
    let output = ctx
        .mse()
        .args(["verify", "--cert", "node.pem", "--json", "--collateral"])
        .arg(&collateral)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json(&output)["tee"], serde_json::Value::Null);
}

#[test]
fn verify_resolve_reaches_a_domain_at_the_given_address_as_curl_does() {
    let ctx = TestContext::new();
    platform_files(&ctx);
    let cert = node_cert("app.example.test", [0xcd; 32]);
    let port = serve(&cert);
    let target = format!("app.example.test:{port}");
    let resolve = format!("app.example.test:{port}:127.0.0.1");

    let output = ctx
        .mse()
        .args(["verify", &target, "--fingerprint", &"cd".repeat(32)])
        .args(TRUST)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        texts(&output).1.contains("cannot resolve app.example.test"),
        "{output:?}"
    );

    let output = ctx
        .mse()
        .args(["verify", &target, "--resolve", &resolve])
        .args(["--fingerprint", &"cd".repeat(32)])
        .args(TRUST)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = texts(&output).0;
    assert!(
        stdout.contains(&format!(
            "curl --cacert {} --resolve {resolve} https://{target}/",
            ctx.work().join("cert.pem").display()
        )),
        "{stdout}"
    );

    let output = ctx
        .mse()
        .args([
            "verify",
            &target,
            "--resolve",
            "app.example.test:x:127.0.0.1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn verify_skip_fingerprint_runs_every_other_check_and_reports_mrenclave_skipped_loudly() {
    let ctx = TestContext::new();
    platform_files(&ctx);
    ctx.write("node.pem", &node_cert("app.localhost", [0xaa; 32]).cert_pem);
    let output = ctx
        .mse()
        .args(["verify", "--cert", "node.pem", "--skip-fingerprint"])
        .args(TRUST)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (stdout, stderr) = texts(&output);
    assert!(
        stdout.contains("- mr_enclave           SKIPPED (--skip-fingerprint)"),
        "{stdout}"
    );
    assert!(stdout.contains("✓ mr_signer"), "{stdout}");
    assert!(stdout.contains("✓ quote_signature"), "{stdout}");
    assert!(
        stdout.contains("Verified, except the code it runs"),
        "{stdout}"
    );
    assert!(
        stderr.contains("MRENCLAVE SKIPPED (--skip-fingerprint)"),
        "{stderr}"
    );

    let output = ctx
        .mse()
        .args([
            "verify",
            "--cert",
            "node.pem",
            "--skip-fingerprint",
            "--json",
        ])
        .args(TRUST)
        .output()
        .unwrap();
    let report = json(&output);
    assert_eq!(report["verified"], true);
    assert_eq!(report["checks"][4]["name"], "mr_enclave");
    assert_eq!(report["checks"][4]["status"], "skipped");

    let output = ctx
        .mse()
        .args(["verify", "--cert", "node.pem", "--skip-fingerprint"])
        .args(["--fingerprint", &"aa".repeat(32)])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

/// Real public evidence, as `mse-attest`'s tests keep it.
fn evidence_data(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mse-attest/tests/data")
        .join(path)
}

/// A time at which all of a DCAP sample's collateral is current: the
/// latest issue date of its TCB info and QE identity, plus a day.
fn collateral_time(collateral: &Path) -> String {
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(collateral).unwrap()).unwrap();
    let issued = ["tcb_info", "qe_identity"]
        .iter()
        .map(|key| {
            let inner: serde_json::Value =
                serde_json::from_str(value[key].as_str().unwrap()).unwrap();
            chrono::DateTime::parse_from_rfc3339(inner["issueDate"].as_str().unwrap()).unwrap()
        })
        .max()
        .unwrap();
    (issued + Duration::days(1)).to_rfc3339()
}

/// The Milan SEV-SNP chain as `--collateral` takes it: VCEK, ASK, ARK.
fn milan_chain_pem() -> String {
    let vcek = std::fs::read(evidence_data("snp/vcek_milan.der")).unwrap();
    let mut pem = mse_attest::ratls::der_to_pem(&vcek);
    pem.push_str(&std::fs::read_to_string(evidence_data("snp/ask_ark_milan.pem")).unwrap());
    pem
}

/// `mse verify --quote` of evidence with its collateral, as at `at`.
fn verify_quote(
    ctx: &TestContext,
    quote: &Path,
    collateral: &Path,
    at: &str,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let output = ctx
        .mse()
        .args(["verify", "--json", "--quote"])
        .arg(quote)
        .arg("--collateral")
        .arg(collateral)
        .args(["--at", at])
        .args(extra)
        .output()
        .unwrap();
    let report = json(&output);
    (output, report)
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
}

#[test]
fn real_sgx_and_tdx_quotes_verify_with_their_collateral_and_show_their_measurements() {
    let ctx = TestContext::new();
    // (sample, TEE, statuses to accept, measurements it must show)
    let samples: [(&str, &str, &[&str], &[&str]); 3] = [
        (
            "sgx_quote",
            "sgx",
            &["--accept-tcb", "ConfigurationAndSWHardeningNeeded"],
            &["mr_enclave", "mr_signer", "report_data"],
        ),
        (
            "tdx_quote",
            "tdx",
            &[],
            &["mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "report_data"],
        ),
        (
            "tdx_quote_td15ex",
            "tdx",
            &[],
            &["mr_td", "rtmr3", "mr_service_td", "report_data"],
        ),
    ];
    for (sample, tee, accept, shown) in samples {
        let quote = evidence_data(&format!("dcap/{sample}"));
        let collateral = evidence_data(&format!("dcap/{sample}_collateral.json"));
        let at = collateral_time(&collateral);
        let (output, report) = verify_quote(&ctx, &quote, &collateral, &at, accept);
        assert!(output.status.success(), "{sample}: {report}");
        assert_eq!(report["verified"], true, "{sample}");
        assert_eq!(report["tee"], tee, "{sample}");
        assert!(
            report.get("emulated").is_none(),
            "real evidence is not emulated"
        );
        for name in shown {
            assert!(
                report[name].as_str().is_some_and(|v| !v.is_empty()),
                "{sample} shows {name}: {report}"
            );
        }
        let names: Vec<&str> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["quote_present", "debug_disabled", "quote_signature", "tcb"]
        );
    }
}

#[test]
fn the_sgx_sample_fails_tcb_unless_its_status_is_accepted() {
    let ctx = TestContext::new();
    let quote = evidence_data("dcap/sgx_quote");
    let collateral = evidence_data("dcap/sgx_quote_collateral.json");
    let at = collateral_time(&collateral);
    let (output, report) = verify_quote(&ctx, &quote, &collateral, &at, &[]);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert_eq!(check(&report, "quote_signature")["ok"], true);
    assert_eq!(check(&report, "tcb")["ok"], false);
    assert!(check(&report, "tcb")["detail"]
        .as_str()
        .unwrap()
        .contains("INTEL-SA-"));
}

#[test]
fn tampered_real_quotes_and_collateral_are_refused_naming_the_check() {
    let ctx = TestContext::new();
    for sample in ["sgx_quote", "tdx_quote"] {
        let quote = std::fs::read(evidence_data(&format!("dcap/{sample}"))).unwrap();
        let collateral = evidence_data(&format!("dcap/{sample}_collateral.json"));
        let at = collateral_time(&collateral);
        let accept = ["--accept-tcb", "ConfigurationAndSWHardeningNeeded"];
        // The measurement (MRENCLAVE or MRTD), the report data, the signature.
        let (measurement, report_data, signature) = if sample == "sgx_quote" {
            (48 + 64, 48 + 320, 48 + 384 + 4)
        } else {
            (48 + 136, 48 + 520, 48 + 584 + 4)
        };
        for (what, at_byte) in [
            ("measurement", measurement),
            ("report data", report_data),
            ("signature", signature),
        ] {
            let mut tampered = quote.clone();
            tampered[at_byte] ^= 1;
            let path = ctx.work().join(format!("{sample}-{what}"));
            std::fs::write(&path, &tampered).unwrap();
            let (output, report) = verify_quote(&ctx, &path, &collateral, &at, &accept);
            assert_eq!(output.status.code(), Some(1), "{sample} {what}: {report}");
            assert_eq!(report["verified"], false);
            assert_eq!(
                check(&report, "quote_signature")["ok"],
                false,
                "{sample} with its {what} changed: {report}"
            );
        }
        // One digit of the signed TCB info changed.
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&collateral).unwrap()).unwrap();
        let tcb_info = json["tcb_info"].as_str().unwrap().to_string();
        let digit = tcb_info.find(|c: char| c.is_ascii_digit()).unwrap();
        let mut changed = tcb_info.into_bytes();
        changed[digit] = if changed[digit] == b'9' {
            b'8'
        } else {
            changed[digit] + 1
        };
        json["tcb_info"] = String::from_utf8(changed).unwrap().into();
        let bad = ctx.work().join(format!("{sample}-collateral.json"));
        std::fs::write(&bad, json.to_string()).unwrap();
        let path = evidence_data(&format!("dcap/{sample}"));
        let (output, report) = verify_quote(&ctx, &path, &bad, &at, &accept);
        assert_eq!(output.status.code(), Some(1), "{report}");
        assert_eq!(check(&report, "quote_signature")["ok"], false, "{report}");
    }
}

#[test]
fn a_real_sev_snp_report_verifies_up_to_amds_ark_and_tampered_copies_fail() {
    let ctx = TestContext::new();
    let chain = ctx.write("milan-chain.pem", &milan_chain_pem());
    let report_path = evidence_data("snp/report_milan.hex");
    let at = "2024-01-01T00:00:00Z";
    let min_tcb = ["--snp-min-tcb", "bl=3 tee=0 snp=8 ucode=115"];
    let (output, report) = verify_quote(&ctx, &report_path, &chain, at, &min_tcb);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["tee"], "sev-snp");
    assert_eq!(report["tcb_status"], "UpToDate");
    assert_eq!(report["tcb_components"], "bl=3 tee=0 snp=8 ucode=115");
    for name in [
        "measurement",
        "host_data",
        "report_data",
        "policy",
        "chip_id",
    ] {
        assert!(report[name].is_string(), "{name}: {report}");
    }
    assert!(check(&report, "quote_signature")["detail"]
        .as_str()
        .unwrap()
        .contains("AMD's ARK of Milan"));

    // Without a minimum TCB, the status is NoMinimum: refused unless named.
    let (output, report) = verify_quote(&ctx, &report_path, &chain, at, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(check(&report, "tcb")["ok"], false);
    let (output, _) = verify_quote(
        &ctx,
        &report_path,
        &chain,
        at,
        &["--accept-tcb", "NoMinimum"],
    );
    assert!(output.status.success());

    // A byte of the measurement (0x90), the report data (0x50) or the
    // signature (0x2A0) changed: the signature no longer verifies.
    let bytes = mse_attest::hardware::decode(&std::fs::read(&report_path).unwrap());
    for (what, at_byte) in [
        ("measurement", 0x90),
        ("report data", 0x50),
        ("signature", 0x2A0),
    ] {
        let mut tampered = bytes.clone();
        tampered[at_byte] ^= 1;
        let path = ctx.work().join(format!("snp-{what}.bin"));
        std::fs::write(&path, &tampered).unwrap();
        let (output, report) = verify_quote(&ctx, &path, &chain, at, &min_tcb);
        assert_eq!(output.status.code(), Some(1), "{what}: {report}");
        assert_eq!(
            check(&report, "quote_signature")["ok"],
            false,
            "{what}: {report}"
        );
    }
    // Outside the VCEK's validity.
    let (output, report) =
        verify_quote(&ctx, &report_path, &chain, "2035-01-01T00:00:00Z", &min_tcb);
    assert_eq!(output.status.code(), Some(1));
    assert!(check(&report, "quote_signature")["detail"]
        .as_str()
        .unwrap()
        .contains("valid from"));
}

#[test]
fn verify_quote_reads_hex_like_binary_and_refuses_what_is_no_evidence() {
    let ctx = TestContext::new();
    let collateral = evidence_data("dcap/tdx_quote_collateral.json");
    let at = collateral_time(&collateral);
    let binary = std::fs::read(evidence_data("dcap/tdx_quote")).unwrap();
    let hex_path = ctx.write("tdx_quote.hex", &hex::encode(&binary));
    let (output, report) = verify_quote(&ctx, &hex_path, &collateral, &at, &[]);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["tee"], "tdx");

    let junk = ctx.write("junk.txt", "hello, world\n");
    let (output, report) = verify_quote(&ctx, &junk, &collateral, &at, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(check(&report, "quote_present")["ok"], false);

    // An SNP report with Intel's collateral: refused saying what it needs.
    let chain_for_tdx = ctx.write("chain.pem", &milan_chain_pem());
    let output = ctx
        .mse()
        .args(["verify", "--quote"])
        .arg(&hex_path)
        .arg("--collateral")
        .arg(&chain_for_tdx)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("QuoteCollateralV3"),
        "{output:?}"
    );
}

#[test]
fn an_sev_snp_report_without_its_chain_is_checked_with_amds_kds_then_its_cache() {
    use mse_testkit::tee::snp::{EmulatedSnp, Kds, ReportFields, Tcb};
    let tcb = Tcb {
        bootloader: 9,
        tee: 0,
        snp: 23,
        microcode: 72,
        fmc: None,
    };
    let snp = Arc::new(EmulatedSnp::new("Genoa", tcb, [0xC3; 64]).unwrap());
    let kds = Kds::start(snp.clone()).unwrap();
    let ctx = TestContext::new();
    let roots = ctx.write("roots.pem", &mse_attest::ratls::der_to_pem(&snp.ark_der()));
    let write_report = |name: &str, fields: &ReportFields| {
        let path = ctx.work().join(name);
        std::fs::write(&path, snp.report_with(fields)).unwrap();
        path
    };
    let report = write_report("report.bin", &ReportFields::default());
    let verify = |report: &Path, extra: &[&str]| {
        let output = ctx
            .mse()
            .args(["verify", "--json", "--quote"])
            .arg(report)
            .arg("--test-roots")
            .arg(&roots)
            .args(["--kds-url", kds.url()])
            .args(["--snp-min-tcb", "bl=9 tee=0 snp=23 ucode=72"])
            .args(extra)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (code, stdout, stderr) = verify(&report, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["tee"], "sev-snp");
    assert_eq!(kds.requests(), 2, "the VCEK and the product's chain");

    // Kept: the same chip at the same TCB needs no KDS again.
    let (code, _, stderr) = verify(&report, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(kds.requests(), 2);

    // Another chip: the KDS has no VCEK for it, and the error says where.
    let other = write_report(
        "other.bin",
        &ReportFields {
            chip_id: Some([0xC4; 64]),
            ..ReportFields::default()
        },
    );
    let (code, stdout, _) = verify(&other, &[]);
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("AMD's KDS") && stdout.contains("404"),
        "{stdout}"
    );

    // A version 2 report does not name its processor: the user names it.
    let v2 = write_report(
        "v2.bin",
        &ReportFields {
            version: 2,
            ..ReportFields::default()
        },
    );
    let (code, stdout, _) = verify(&v2, &[]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("--snp-product"), "{stdout}");
    let (code, stdout, stderr) = verify(&v2, &["--snp-product", "Genoa"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}
