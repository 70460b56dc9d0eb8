//! The owner's journey on confidential-VM nodes, up to the hardware
//! boundary: `mse-server --quote-provider tdx` (or `sev-snp`) whose node
//! asks an emulated configfs-tsm (a mounted file system answering in the
//! hardware's formats, signed under test roots) for its evidence; the
//! catalog publishes the runtime's reference measurements; TDX collateral
//! comes from an emulated PCCS. `mse deploy` and an app user's `mse verify`
//! accept the node only under the test roots named on their command line,
//! and say EMULATED. A hostile app on the node tries to obtain evidence for
//! itself and gets none.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::deploy::*;
use common::platform::{login, Platform};
use common::TestContext;
use mse_testkit::tee::configfs::EmulatedTsm;
use mse_testkit::tee::intel::{self, EmulatedIntel, Pccs, TdxGuest};
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

/// A Flask app that, on `/steal`, asks configfs-tsm under `tsm` for a
/// report of its own choosing, the way the runtime does.
fn hostile_app(app: &Path, tsm: &Path) {
    let code = format!(
        r#"import os
from flask import Flask

app = Flask(__name__)
TSM = {tsm:?}


@app.get("/health")
def health():
    return "ok"


@app.get("/")
def hello():
    return "Hello world"


@app.get("/steal")
def steal():
    entry = os.path.join(TSM, "report", "stolen")
    try:
        os.mkdir(entry)
        with open(os.path.join(entry, "inblob"), "wb") as f:
            f.write(b"\xab" * 64)
        with open(os.path.join(entry, "outblob"), "rb") as f:
            return "stolen %d bytes" % len(f.read())
    except OSError as e:
        return "refused: %s" % e.strerror
"#,
        tsm = tsm.display().to_string()
    );
    std::fs::write(app.join("mse_src").join("app.py"), code).unwrap();
}

/// An emulated confidential-VM node: what the platform and its users are
/// given.
struct Node {
    tsm: EmulatedTsm,
    /// `tdx` or `sev-snp`.
    provider: &'static str,
    /// The catalog's reference of the runtime.
    reference: String,
    /// The test roots, PEM.
    roots: String,
    /// The emulated PCCS (TDX).
    pccs: Option<Pccs>,
    /// A measurement the verification report must show, and its value.
    shown: (&'static str, String),
}

fn journey(mut node: Node) {
    let root = node.tsm.root().to_string_lossy().to_string();
    let provider = node.provider;
    let platform = Platform::start_with(|command| {
        command.args(["--quote-provider", provider, "--tee-device", &root]);
    });
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
    hostile_app(&app, node.tsm.root());

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
    assert_eq!(out["tee"], provider, "{out}");
    assert_eq!(out["emulated"], true, "{out}");
    let (status, body) = call_app(&platform, &out, "/");
    assert_eq!((status, body.as_str()), (200, "Hello world"));
    let served_before = node.tsm.served();
    assert!(
        !served_before.is_empty() && served_before.iter().all(|s| s.uid == 0),
        "only the runtime (root) asked for reports: {served_before:?}"
    );

    // The hostile app asks configfs-tsm for a report: the sandbox refuses.
    let (status, body) = call_app(&platform, &out, "/steal");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("refused: "), "{body}");
    assert_eq!(
        node.tsm.served().len(),
        served_before.len(),
        "no report was made for the app"
    );

    // An owner-mode app ([ssl]) on the same node: its certificate carries
    // no quote; the node publishes the evidence that binds its key.
    let shop = ctx.scaffold("shop");
    let shop_domain = format!("shop-{provider}.example.test");
    owner_certificate_in(&shop, &shop_domain);
    let mut args = vec!["--test-roots", roots_arg.as_str()];
    args.extend_from_slice(&pccs);
    let shop_out = deploy_ok(&platform, &ctx, &shop, &args);
    assert_eq!(shop_out["certificate_origin"], "owner", "{shop_out}");
    assert_eq!(shop_out["tee"], provider, "{shop_out}");

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
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", target];
        args.extend_from_slice(&app_user);
        args.extend_from_slice(&pccs);
        args.extend_from_slice(extra);
        verify_json(&user, &args)
    };
    let (code, report, stderr) = verify(&["--test-roots", &user_roots_arg]);
    assert_eq!(code, 0, "{report}{stderr}");
    assert_eq!(report["tee"], provider);
    assert_eq!(report["emulated"], true);
    assert_eq!(report[node.shown.0], node.shown.1, "{report}");
    assert_eq!(report["tcb_status"], "UpToDate");
    assert!(stderr.contains("test roots"), "said loudly: {stderr}");

    // The owner-mode app, verified against the evidence its node publishes
    // (on SEV-SNP it carries the VCEK chain).
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
    args.extend_from_slice(&pccs);
    let (code, report, stderr) = verify_json(&user, &args);
    assert_eq!(code, 0, "{report}{stderr}");
    assert_eq!(report["tee"], provider, "{report}");
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
    assert_eq!(report["tee"], provider);
    let (code, report) = offline(&["--at", "2100-01-01T00:00:00Z"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        checks_failed(&report).contains(&"quote_signature".to_string()),
        "{report}"
    );
    if provider == "tdx" {
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
    let key = if provider == "tdx" {
        "mr_td"
    } else {
        "measurement"
    };
    reference[key] = "ab".repeat(48).into();
    // The digest recomputed, as anyone can: only the signature tells.
    let images: Vec<mse_runtime::ImageSpec> =
        serde_json::from_value(edited["images"].clone()).unwrap();
    edited["digest"] = mse_runtime::Catalog { images }.digest().into();
    user.write("catalog.json", &edited.to_string());
    let (code, report, stderr) = verify(&["--test-roots", &user_roots_arg]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        checks_failed(&report),
        ["runtime_measurements"],
        "{report}{stderr}"
    );
    let detail = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "runtime_measurements")
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

    // One changed byte of code: the fingerprint in REPORTDATA[32..64] no
    // longer matches.
    let app_py = code_dir.join("app.py");
    let mut text = std::fs::read_to_string(&app_py).unwrap();
    text.push_str("\n# changed\n");
    std::fs::write(&app_py, text).unwrap();
    let (code, report, _) = verify(&["--test-roots", &user_roots_arg]);
    assert_eq!(code, 1);
    assert_eq!(checks_failed(&report), ["fingerprint"], "{report}");
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
        tsm,
        provider: "sev-snp",
        reference: snp_reference(),
        roots: mse_attest::ratls::der_to_pem(&snp.ark_der()),
        pccs: None,
        shown: ("measurement", hex::encode(MEASUREMENT)),
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
        tsm,
        provider: "tdx",
        reference: tdx_reference(),
        roots: mse_attest::ratls::der_to_pem(&intel.root_der()),
        pccs: Some(pccs),
        shown: ("mr_td", hex::encode(MR_TD)),
    });
}
