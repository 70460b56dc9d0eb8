//! The owner's journey on confidential hardware, up to its boundary:
//! `mse-server --quote-provider tdx` (or `sev-snp`) whose node asks an
//! emulated configfs-tsm (a mounted file system answering in the
//! hardware's formats, signed under test roots) for its evidence, and
//! `--quote-provider gramine` whose node host signs each app's enclave and
//! starts it with an emulated Gramine loader, which measures the enclave
//! as SGX does and serves its `/dev/attestation`. The catalog publishes the
//! runtime's reference measurements (on SGX, the manifest template and
//! enclave layout MRENCLAVE is replayed from); Intel collateral comes from
//! an emulated PCCS. `mse deploy` and an app user's `mse verify` accept the
//! node only under the test roots named on their command line, and say
//! EMULATED. A hostile app on a confidential VM tries to obtain evidence
//! and gets none; in an enclave it gets its own enclave's only.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::deploy::*;
use common::platform::{login, Platform};
use common::TestContext;
use mse_testkit::tee::configfs::EmulatedTsm;
use mse_testkit::tee::intel::{self, EmulatedIntel, Pccs, TdxGuest};
use mse_testkit::tee::loader;
use mse_testkit::tee::snp::{self as emulated, EmulatedSnp, SnpGuest};
use serde_json::Value;

const MEASUREMENT: [u8; 48] = [0x5E; 48];
const MR_TD: [u8; 48] = [0x7D; 48];
const RTMRS: [[u8; 48]; 4] = [[0x10; 48], [0x11; 48], [0x12; 48], [0; 48]];
const POLICY: u64 = 0x3_0000;
const TCB: emulated::Tcb = emulated::Tcb {
    bootloader: 4,
    tee: 0,
    snp: 22,
    microcode: 213,
    fmc: None,
};

/// The SEV-SNP reference of the emulated guest, as the catalog writes it.
fn snp_reference() -> String {
    format!(
        "\n[image.tee.sev-snp]\nmeasurement = \"{}\"\npolicy = \"{POLICY:#x}\"\n\
         min_tcb = \"bl={} tee={} snp={} ucode={}\"\n",
        hex::encode(MEASUREMENT),
        TCB.bootloader,
        TCB.tee,
        TCB.snp,
        TCB.microcode
    )
}

/// The TDX reference of the emulated TD.
fn tdx_reference() -> String {
    format!(
        "\n[image.tee.tdx]\nmr_td = \"{}\"\nrtmr0 = \"{}\"\nrtmr1 = \"{}\"\nrtmr2 = \"{}\"\n",
        hex::encode(MR_TD),
        hex::encode(RTMRS[0]),
        hex::encode(RTMRS[1]),
        hex::encode(RTMRS[2])
    )
}

/// The platform's catalog with `reference` for every image.
fn publish_references(platform: &Platform, reference: &str) {
    let path = platform.data_dir().join("catalog.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let images: Vec<&str> = text.split("[[image]]").collect();
    let mut out = images[0].to_string();
    for image in &images[1..] {
        out.push_str("[[image]]");
        out.push_str(image.trim_end());
        out.push_str(reference);
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
}

/// `mse ARGS` as `user`, whose standard output is a JSON report:
/// (exit code, report, standard error).
fn verify_json(user: &TestContext, args: &[&str]) -> (i32, Value, String) {
    let (code, stdout, stderr) = run_in(user, &user.work(), args);
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    (code, report, stderr)
}

fn checks_failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// A Flask app that serves `/` and, on `/steal`, runs `steal` (Python,
/// with `DEVICE` the device's folder), answering "refused: …" when the
/// system refuses.
fn hostile_flask(app: &Path, device: &Path, steal: &str) {
    let code = format!(
        r#"import os
from flask import Flask

app = Flask(__name__)
DEVICE = {device:?}


@app.get("/health")
def health():
    return "ok"


@app.get("/")
def hello():
    return "Hello world"


@app.get("/steal")
def steal():
    try:
{steal}
    except OSError as e:
        return "refused: %s" % e.strerror
"#,
        device = device.display().to_string()
    );
    std::fs::write(app.join("mse_src").join("app.py"), code).unwrap();
}

/// A Flask app that, on `/steal`, asks configfs-tsm under `tsm` for a
/// report of its own choosing, the way the runtime does.
fn hostile_app(app: &Path, tsm: &Path) {
    hostile_flask(
        app,
        tsm,
        r#"        entry = os.path.join(DEVICE, "report", "stolen")
        os.mkdir(entry)
        with open(os.path.join(entry, "inblob"), "wb") as f:
            f.write(b"\xab" * 64)
        with open(os.path.join(entry, "outblob"), "rb") as f:
            return "stolen %d bytes" % len(f.read())"#,
    );
}

/// A Flask app that, on `/steal`, writes REPORTDATA of its choosing to
/// Gramine's attestation device at `device` and returns the quote, hex.
fn hostile_enclave_app(app: &Path, device: &Path) {
    hostile_flask(
        app,
        device,
        r#"        with open(os.path.join(DEVICE, "user_report_data"), "wb") as f:
            f.write(b"\xab" * 64)
        with open(os.path.join(DEVICE, "quote"), "rb") as f:
            return f.read().hex()"#,
    );
}

/// Where an emulated node's evidence comes from.
enum Device {
    /// A confidential VM's configfs-tsm, served by the test.
    Tsm(EmulatedTsm),
    /// SGX: the emulated Gramine loader mounts each enclave's
    /// `/dev/attestation` on `root`, in the enclave's own mount namespace.
    Enclaves {
        root: tempfile::TempDir,
        /// The platform the loader quotes on, saved for it (0600).
        _intel: tempfile::TempDir,
        /// The image's enclave, as the catalog publishes it.
        published: mse_attest::enclave::SgxEnclave,
        /// mse-server's extra arguments and environment.
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
}

impl Device {
    fn root(&self) -> PathBuf {
        match self {
            Device::Tsm(tsm) => tsm.root().to_path_buf(),
            Device::Enclaves { root, .. } => root.path().join("attestation"),
        }
    }
}

/// An emulated confidential node: what the platform and its users are
/// given.
struct Node {
    device: Device,
    /// `tdx`, `sev-snp` or `gramine`.
    provider: &'static str,
    /// The TEE's name in reports: `tdx`, `sev-snp` or `sgx`.
    tee: &'static str,
    /// The catalog's reference of the runtime.
    reference: String,
    /// The test roots, PEM.
    roots: String,
    /// The emulated PCCS (SGX, TDX).
    pccs: Option<Pccs>,
    /// Whether the evidence is checked with Intel collateral.
    pccs_used: bool,
    /// A measurement the verification report must show, and its value
    /// (SGX: MRENCLAVE, which depends on the app).
    shown: Option<(&'static str, String)>,
}

impl Node {
    /// The check that tells the runtime's measurements are not the
    /// reference's, and the one that tells the app is not the one given.
    fn checks(&self) -> (&'static str, &'static str) {
        match self.device {
            Device::Tsm(_) => ("runtime_measurements", "fingerprint"),
            Device::Enclaves { .. } => ("mr_enclave", "mr_enclave"),
        }
    }
}

fn journey(mut node: Node) {
    let device = node.device.root();
    let root = device.to_string_lossy().to_string();
    let provider = node.provider;
    let pccs_url = node.pccs.as_ref().map(|p| p.url().to_string());
    let configure = |command: &mut std::process::Command, pccs_url: &Option<String>| {
        command.args(["--quote-provider", provider, "--tee-device", &root]);
        if let Device::Enclaves { args, env, .. } = &node.device {
            command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        }
        // Nodes fetch their quote's collateral and serve it in their
        // certificate.
        if let Some(url) = &pccs_url {
            command.args(["--pccs-url", url]);
        }
    };
    let mut platform = Platform::start_with(|command| configure(command, &pccs_url));
    publish_references(&platform, &node.reference);
    let pccs: Vec<String> = match &node.pccs {
        Some(pccs) => vec!["--pccs-url".into(), pccs.url().into()],
        None => Vec::new(),
    };
    let pccs: Vec<&str> = pccs.iter().map(String::as_str).collect();

    // The owner logs in without accepting simulation: this platform has none.
    let ctx = TestContext::new();
    login(&platform, &ctx, &platform.admin, false);
    let roots = ctx.write("test-roots.pem", &node.roots);
    let app = ctx.scaffold("confidential");
    match &node.device {
        Device::Tsm(_) => hostile_app(&app, &device),
        Device::Enclaves { .. } => hostile_enclave_app(&app, &device),
    }

    // Without the test roots, the emulated node is refused and sent nothing.
    let mut args = vec!["deploy", "--json"];
    args.extend_from_slice(&pccs);
    let (code, stdout, stderr) = run_in(&ctx, &app, &args);
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("quote_signature"), "{stderr}");
    assert!(
        stderr.contains("the node was stopped"),
        "the refused node is stopped: {stderr}"
    );

    let roots_arg = roots.to_string_lossy().to_string();
    let mut args = vec!["--test-roots", roots_arg.as_str(), "--yes"];
    args.extend_from_slice(&pccs);
    let out = deploy_ok(&platform, &ctx, &app, &args);
    assert_eq!(out["verified"], true, "{out}");
    assert_eq!(out["tee"], node.tee, "{out}");
    assert_eq!(out["emulated"], true, "{out}");
    let (status, body) = call_app(&platform, &out, "/");
    assert_eq!((status, body.as_str()), (200, "Hello world"));
    let mut fingerprint = [0u8; 32];
    hex::decode_to_slice(out["fingerprint"].as_str().unwrap(), &mut fingerprint).unwrap();
    match &node.device {
        Device::Tsm(tsm) => {
            let served_before = tsm.served();
            assert!(
                !served_before.is_empty() && served_before.iter().all(|s| s.uid == 0),
                "only the runtime (root) asked for reports: {served_before:?}"
            );
            // The hostile app asks configfs-tsm for a report: the sandbox
            // refuses.
            let (status, body) = call_app(&platform, &out, "/steal");
            assert_eq!(status, 200, "{body}");
            assert!(body.starts_with("refused: "), "{body}");
            assert_eq!(
                tsm.served().len(),
                served_before.len(),
                "no report was made for the app"
            );
        }
        Device::Enclaves { published, .. } => {
            // The enclave is the one the catalog's template and layout
            // replay to for this app's fingerprint.
            let own = hex::encode(published.mr_enclave(&fingerprint).unwrap());
            node.shown = Some(("mr_enclave", own.clone()));
            // The hostile app, in its enclave, writes REPORTDATA of its
            // choosing: the quote (if the sandbox lets it have one) is of
            // its own enclave only.
            let (status, body) = call_app(&platform, &out, "/steal");
            assert_eq!(status, 200, "{body}");
            if !body.starts_with("refused: ") {
                let quote = mse_attest::quote::Quote::parse(&hex::decode(&body).unwrap()).unwrap();
                assert_eq!(quote.body.report_data(), [0xab; 64]);
                assert_eq!(hex::encode(quote.body.mr_enclave()), own);
            }
        }
    }

    // An owner-mode app ([ssl]) on the same node: its certificate carries
    // no quote; the node publishes the evidence that binds its key.
    let shop = ctx.scaffold("shop");
    let shop_domain = format!("shop-{provider}.example.test");
    owner_certificate_in(&shop, &shop_domain);
    let mut args = vec!["--test-roots", roots_arg.as_str()];
    args.extend_from_slice(&pccs);
    let shop_out = deploy_ok(&platform, &ctx, &shop, &args);
    assert_eq!(shop_out["certificate_origin"], "owner", "{shop_out}");
    assert_eq!(shop_out["tee"], node.tee, "{shop_out}");

    // An app user, with no account: the exported context, the code, the
    // platform's public catalog and the test roots.
    let uuid = out["uuid"].as_str().unwrap();
    let exported = ctx.work().join("confidential.mse");
    let exported_arg = exported.to_string_lossy().to_string();
    run_in(
        &ctx,
        &ctx.work(),
        &["context", "--export", uuid, "--output", &exported_arg],
    );
    let user = TestContext::new();
    let (_, catalog) = platform.get("", "/catalog");
    let catalog_arg = user
        .write("catalog.json", &catalog.to_string())
        .to_string_lossy()
        .to_string();
    let user_roots_arg = user
        .write("test-roots.pem", &node.roots)
        .to_string_lossy()
        .to_string();
    let (_, signer) = platform.get("", "/signer");
    let signer_arg = user
        .write("signer.pub", signer.as_str().unwrap())
        .to_string_lossy()
        .to_string();
    let code_dir = user.work().join("code");
    std::fs::create_dir_all(&code_dir).unwrap();
    for entry in std::fs::read_dir(app.join("mse_src")).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), code_dir.join(entry.file_name())).unwrap();
        }
    }
    let code_arg = code_dir.to_string_lossy().to_string();
    let target = out["url"].as_str().unwrap().trim_start_matches("https://");
    // What an app user gives: the context, the code, the platform's public
    // catalog and signer key.
    let app_user = [
        "--context",
        exported_arg.as_str(),
        "--code",
        code_arg.as_str(),
        "--catalog",
        catalog_arg.as_str(),
        "--signer-key",
        signer_arg.as_str(),
        "--json",
    ];
    // The app user has no PCCS (the one named refuses every connection):
    // the node serves the collateral of its quote in its certificate.
    let no_pccs: &[&str] = if node.pccs_used {
        &["--pccs-url", "http://127.0.0.1:9"]
    } else {
        &[]
    };
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", target];
        args.extend_from_slice(&app_user);
        args.extend_from_slice(no_pccs);
        args.extend_from_slice(extra);
        verify_json(&user, &args)
    };
    let (code, report, stderr) = verify(&["--test-roots", &user_roots_arg]);
    assert_eq!(code, 0, "{report}{stderr}");
    assert_eq!(report["tee"], node.tee);
    assert_eq!(report["emulated"], true);
    let (name, value) = node.shown.clone().unwrap();
    assert_eq!(report[name], value, "{report}");
    assert_eq!(report["tcb_status"], "UpToDate");
    assert!(stderr.contains("test roots"), "said loudly: {stderr}");
    if let Device::Enclaves { .. } = node.device {
        // The replay, which reads every page of the enclave, is kept: the
        // next verification reads it (a wrong kept value fails it).
        let kept: Vec<PathBuf> = std::fs::read_dir(user.root.path().join("home/conf/enclaves"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), value);
        std::fs::write(&kept[0], "ab".repeat(32)).unwrap();
        let (code, report, _) = verify(&["--test-roots", &user_roots_arg]);
        assert_eq!(code, 1);
        assert_eq!(checks_failed(&report), ["mr_enclave"], "{report}");
        std::fs::write(&kept[0], &value).unwrap();
    }

    // The owner-mode app, verified against the evidence its node publishes
    // (with the VCEK chain on SEV-SNP, Intel's collateral on SGX and TDX).
    let port = proxy_port(&platform);
    let shop_target = format!("{shop_domain}:{port}");
    let resolve = format!("{shop_domain}:{port}:127.0.0.1");
    let mut args = vec![
        "verify",
        shop_target.as_str(),
        "--resolve",
        resolve.as_str(),
        "--fingerprint",
        shop_out["fingerprint"].as_str().unwrap(),
        "--catalog",
        catalog_arg.as_str(),
        "--signer-key",
        signer_arg.as_str(),
        "--test-roots",
        user_roots_arg.as_str(),
        "--json",
    ];
    args.extend_from_slice(no_pccs);
    let (code, report, stderr) = verify_json(&user, &args);
    assert_eq!(code, 0, "{report}{stderr}");
    assert_eq!(report["tee"], node.tee, "{report}");
    assert!(report["evidence_url"].is_string(), "{report}");

    // The evidence, saved, checks again with no network (the PCCS gone),
    // and fails once its time is past the certificates' validity.
    let bundle = user.work().join("evidence.json");
    let bundle_arg = bundle.to_string_lossy().to_string();
    let (code, _, stderr) = verify(&[
        "--test-roots",
        &user_roots_arg,
        "--save-evidence",
        &bundle_arg,
    ]);
    assert_eq!(code, 0, "{stderr}");
    drop(node.pccs.take());
    let offline = |extra: &[&str]| {
        let mut args = vec!["verify", "--offline", bundle_arg.as_str()];
        args.extend_from_slice(&app_user);
        args.extend_from_slice(&["--test-roots", user_roots_arg.as_str()]);
        args.extend_from_slice(extra);
        let (code, report, _) = verify_json(&user, &args);
        (code, report)
    };
    let (code, report) = offline(&[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["tee"], node.tee);
    let (code, report) = offline(&["--at", "2100-01-01T00:00:00Z"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        checks_failed(&report).contains(&"quote_signature".to_string()),
        "{report}"
    );
    if node.pccs_used {
        // One digit of the saved TCB info changed: its signature fails.
        let mut saved: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
        let tcb_info = saved["collateral"]["tcb_info"]
            .as_str()
            .unwrap()
            .to_string();
        let at = tcb_info.find(|c: char| c.is_ascii_digit()).unwrap();
        let mut changed = tcb_info.into_bytes();
        changed[at] = if changed[at] == b'9' {
            b'8'
        } else {
            changed[at] + 1
        };
        saved["collateral"]["tcb_info"] = String::from_utf8(changed).unwrap().into();
        std::fs::write(&bundle, saved.to_string()).unwrap();
        let (code, report) = offline(&[]);
        assert_eq!(code, 1, "{report}");
        assert!(
            checks_failed(&report).contains(&"quote_signature".to_string()),
            "{report}"
        );
    }

    // References changed in the user's copy of the catalog are not the
    // platform's: they are not used, and the node's runtime is not accepted.
    let mut edited: Value = serde_json::from_str(&catalog.to_string()).unwrap();
    let entry = edited["images"][0]["tee"].as_object_mut().unwrap();
    let (_, reference) = entry.iter_mut().next().unwrap();
    match provider {
        "tdx" => reference["mr_td"] = "ab".repeat(48).into(),
        "sev-snp" => reference["measurement"] = "ab".repeat(48).into(),
        _ => reference[0]["layout"]["ssa_frame_pages"] = 2.into(),
    }
    // The digest recomputed, as anyone can: only the signature tells.
    let images: Vec<mse_runtime::ImageSpec> =
        serde_json::from_value(edited["images"].clone()).unwrap();
    edited["digest"] = mse_runtime::Catalog { images }.digest().into();
    user.write("catalog.json", &edited.to_string());
    let (code, report, stderr) = verify(&["--test-roots", &user_roots_arg]);
    let (runtime_check, app_check) = node.checks();
    assert_eq!(code, 1, "{report}");
    assert_eq!(checks_failed(&report), [runtime_check], "{report}{stderr}");
    let detail = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == runtime_check)
        .unwrap()["detail"]
        .to_string();
    assert!(
        detail.contains("not signed by the platform"),
        "{detail}{stderr}"
    );
    user.write("catalog.json", &catalog.to_string());

    // Under the vendor's real roots the same node is refused.
    let (code, report, _) = verify(&[]);
    assert_eq!(code, 1);
    assert_eq!(
        checks_failed(&report),
        ["quote_signature", "tcb"],
        "{report}"
    );

    // One changed byte of code: the fingerprint in REPORTDATA[32..64] (in
    // the enclave's manifest on SGX) no longer matches.
    let app_py = code_dir.join("app.py");
    let mut text = std::fs::read_to_string(&app_py).unwrap();
    text.push_str("\n# changed\n");
    std::fs::write(&app_py, text).unwrap();
    let (code, report, _) = verify(&["--test-roots", &user_roots_arg]);
    assert_eq!(code, 1);
    assert_eq!(checks_failed(&report), [app_check], "{report}");

    // A kept app on this hardware outlives its node: the key service checks
    // the next node's evidence as the owner's client did (the test roots
    // the owner's policy names, the catalog's signed references) before it
    // releases anything.
    // (The key service does not run in an SGX enclave yet: a Gramine
    // platform has none.)
    if let Device::Tsm(_) = &node.device {
        // The PCCS was stopped above: another one, for the owner and the
        // restarted platform's nodes.
        let pccs = node
            .pccs_used
            .then(|| Pccs::start(EmulatedIntel::shared()).unwrap());
        let pccs_url = pccs.as_ref().map(|p| p.url().to_string());
        let kept = ctx.scaffold("kept");
        let mut args = vec!["--keep-running", "--test-roots", roots_arg.as_str()];
        if let Some(url) = &pccs_url {
            args.extend_from_slice(&["--pccs-url", url.as_str()]);
        }
        let out = deploy_ok(&platform, &ctx, &kept, &args);
        assert_eq!(out["tee"], node.tee, "{out}");
        let id = out["uuid"].as_str().unwrap().to_string();
        let domain = out["domain_name"].as_str().unwrap().to_string();
        // The policy signed says which roots the owner trusted.
        let (code, shown, stderr) = run_in(&ctx, &kept, &["policy", "show", "kept"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            shown.contains("emulated      accepted, under 1 test root certificate(s)"),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("tees          {}", node.tee)),
            "{shown}"
        );
        let before = served_certificate(&domain, proxy_port(&platform));
        platform.crash_and_restart(|command| configure(command, &pccs_url));
        let back = platform.wait_app(&platform.admin, &id, Duration::from_secs(90), |a| {
            a["status"] == "running"
                || a["rescheduled"]
                    .as_str()
                    .is_some_and(|n| n.contains("keys refused"))
        });
        let note = back["rescheduled"].as_str().unwrap_or_default();
        assert!(note.contains("keys released by the key service"), "{back}");
        assert_eq!(back["tee"], node.tee, "{back}");
        // A new node, with evidence of its own, serves the app.
        let after = served_certificate(&domain, proxy_port(&platform));
        assert_ne!(after, before);
        let pem = mse_attest::ratls::der_to_pem(&after);
        let (status, body) = https_get(pinned(&pem), &domain, proxy_port(&platform), "/");
        assert_eq!((status, body.as_str()), (200, "Hello world"));
        assert!(platform
            .output()
            .contains(&format!("released the keys of app {id}")));
    }
}

#[test]
fn on_an_emulated_sev_snp_node_the_owner_deploys_and_an_app_user_verifies_under_test_roots_only() {
    let test =
        "on_an_emulated_sev_snp_node_the_owner_deploys_and_an_app_user_verifies_under_test_roots_only";
    let snp = Arc::new(EmulatedSnp::new("Milan", TCB, [0xC1; 64]).unwrap());
    let guest = SnpGuest {
        snp: snp.clone(),
        measurement: MEASUREMENT,
        policy: POLICY,
    };
    let Some(tsm) = EmulatedTsm::for_test(test, guest) else {
        return;
    };
    journey(Node {
        device: Device::Tsm(tsm),
        provider: "sev-snp",
        tee: "sev-snp",
        reference: snp_reference(),
        roots: mse_attest::ratls::der_to_pem(&snp.ark_der()),
        pccs: None,
        pccs_used: false,
        shown: Some(("measurement", hex::encode(MEASUREMENT))),
    });
}

#[test]
fn on_an_emulated_tdx_node_the_owner_deploys_and_an_app_user_verifies_under_test_roots_only() {
    let test =
        "on_an_emulated_tdx_node_the_owner_deploys_and_an_app_user_verifies_under_test_roots_only";
    let intel = EmulatedIntel::shared();
    let guest = TdxGuest {
        intel: intel.clone(),
        mr_td: MR_TD,
        rtmrs: RTMRS,
        td_attributes: intel::TD_ATTRIBUTES,
    };
    let Some(tsm) = EmulatedTsm::for_test(test, guest) else {
        return;
    };
    let pccs = Pccs::start(intel.clone()).unwrap();
    journey(Node {
        device: Device::Tsm(tsm),
        provider: "tdx",
        tee: "tdx",
        reference: tdx_reference(),
        roots: mse_attest::ratls::der_to_pem(&intel.root_der()),
        pccs: Some(pccs),
        pccs_used: true,
        shown: Some(("mr_td", hex::encode(MR_TD))),
    });
}

/// The manifest template of the platform's enclaves, as the operator
/// renders it (`mse-server tee gramine-manifest`, fingerprint zeros).
fn gramine_template() -> String {
    let output = std::process::Command::new(mse_testkit::workspace_binary("mse-server"))
        .args([
            "tee",
            "gramine-manifest",
            "--enclave-size",
            "1G",
            "--python-env",
            "/var/cache/mse/env",
            "--mse-run",
        ])
        .arg(mse_testkit::workspace_binary("mse-run"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn on_an_emulated_sgx_node_the_owner_deploys_and_an_app_user_verifies_under_test_roots_only() {
    let test =
        "on_an_emulated_sgx_node_the_owner_deploys_and_an_app_user_verifies_under_test_roots_only";
    // The loader mounts FUSE in a mount namespace of its own: root and
    // FUSE, as the emulated devices need.
    let probe = mse_testkit::tee::gramine::EmulatedAttestation::for_test(
        test,
        mse_testkit::tee::gramine::Enclave {
            intel: EmulatedIntel::shared(),
            mr_enclave: [0; 32],
            mr_signer: [0; 32],
        },
    );
    if probe.is_none() {
        return;
    }
    drop(probe);
    let intel = EmulatedIntel::shared();
    let saved = tempfile::tempdir().unwrap();
    let intel_file = saved.path().join("intel.json");
    intel.save(&intel_file).unwrap();
    let template = gramine_template();
    let layout = loader::example_layout(1 << 30, template.len());
    let layout_file = saved.path().join("layout.json");
    std::fs::write(&layout_file, layout.to_string()).unwrap();
    let published = mse_attest::enclave::SgxEnclave {
        enclave_size: "1G".into(),
        manifest: template,
        layout: serde_json::from_value(layout).unwrap(),
    };
    // The operator's signing of the template (gramine-sgx-sign on an SGX
    // machine; here the SIGSTRUCT of the measurement the loader makes),
    // then the catalog entry, which the reference command writes only once
    // the layout replays to the signed MRENCLAVE.
    let operator_key = rsa::RsaPrivateKey::new_with_exp(
        &mut rsa::rand_core::OsRng,
        3072,
        &rsa::BigUint::from(3u8),
    )
    .unwrap();
    let operator_pem = {
        use rsa::pkcs8::EncodePrivateKey as _;
        operator_key.to_pkcs8_pem(Default::default()).unwrap()
    };
    let manifest_file = saved.path().join("template.manifest.sgx");
    std::fs::write(&manifest_file, &published.manifest).unwrap();
    let measured = loader::measure(
        &serde_json::to_value(&published.layout).unwrap(),
        published.manifest.as_bytes(),
    )
    .unwrap();
    let sig_file = saved.path().join("template.sig");
    let reference_command = |sig: &[u8]| {
        std::fs::write(&sig_file, sig).unwrap();
        std::process::Command::new(mse_testkit::workspace_binary("mse-server"))
            .args(["tee", "gramine-reference", "--enclave-size", "1G"])
            .arg("--manifest")
            .arg(&manifest_file)
            .arg("--sig")
            .arg(&sig_file)
            .arg("--layout")
            .arg(&layout_file)
            .output()
            .unwrap()
    };
    let wrong = mse_attest::enclave::sigstruct(&operator_pem, &[0x11; 32], 20261207).unwrap();
    let refused = reference_command(&wrong);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("does not replay to the signed enclave"),
        "{refused:?}"
    );
    let signed = mse_attest::enclave::sigstruct(&operator_pem, &measured, 20261207).unwrap();
    let written = reference_command(&signed);
    assert!(written.status.success(), "{written:?}");
    let reference = format!("\n{}", String::from_utf8(written.stdout).unwrap());
    let root = tempfile::tempdir().unwrap();
    // Any user may walk to the device, as to /dev.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(root.path().join("attestation")).unwrap();
    let pccs = Pccs::start(intel.clone()).unwrap();
    let path = |p: &Path| p.to_string_lossy().to_string();
    journey(Node {
        device: Device::Enclaves {
            args: vec![
                "--gramine-sgx".into(),
                path(&mse_testkit::workspace_binary("mse-emulated-gramine-sgx")),
            ],
            env: vec![
                ("MSE_EMULATED_INTEL".into(), path(&intel_file)),
                ("MSE_EMULATED_GRAMINE_LAYOUT".into(), path(&layout_file)),
                (
                    "MSE_EMULATED_ATTESTATION_ROOT".into(),
                    path(&root.path().join("attestation")),
                ),
            ],
            root,
            _intel: saved,
            published,
        },
        provider: "gramine",
        tee: "sgx",
        reference,
        roots: mse_attest::ratls::der_to_pem(&intel.root_der()),
        pccs: Some(pccs),
        pccs_used: true,
        shown: None,
    });
}
