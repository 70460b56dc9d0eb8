//! The control plane never receives or stores a code key, a private key or an
//! app secret: a deployment in owner mode carries a known marker in each,
//! sent only to the verified node, and the data folder and the database are
//! searched for them while the app runs and after it stops.

mod common;

use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use common::{deploy_config, multipart, platform, IMAGE};
use http_body_util::BodyExt;
use serde_json::json;
use sha2::Digest;

fn assert_absent(root: &Path, markers: &[(&str, &str)]) {
    for path in mse_testkit::files_under(root) {
        let bytes = std::fs::read(&path).unwrap_or_default();
        for (what, marker) in markers {
            let found = bytes.windows(marker.len()).any(|w| w == marker.as_bytes());
            assert!(!found, "the {what} is in {}", path.display());
        }
    }
}

/// `POST /` to the node at `addr`, over TLS pinned to `cert`.
async fn post_config(addr: std::net::SocketAddr, cert: &[u8], body: Vec<u8>) -> StatusCode {
    let config = mse_attest::pin::client_config(cert, &[b"http/1.1"]);
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("node.localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::post("/")
        .header("host", "node.localhost")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

/// The node's RA-TLS certificate, captured on first contact.
async fn capture(addr: std::net::SocketAddr) -> Vec<u8> {
    let (config, seen) = mse_attest::pin::capture_config(&[b"http/1.1"]);
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("node.localhost").unwrap();
    let _ = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .unwrap();
    seen.seen().unwrap()
}

#[tokio::test]
async fn keys_and_secrets_reach_only_the_verified_node_never_the_control_plane() {
    let p = platform().await;
    let (_, bob) = p.user("bob").await;

    // The owner's certificate for a custom domain, from a test CA.
    let owner_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["custom.example.com".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let owner_cert = params.self_signed(&owner_key).unwrap();
    let key_pem = owner_key.serialize_pem();
    let key_marker = key_pem.lines().nth(1).unwrap().to_string();
    let secret_marker = "app-secret-marker-4f1c2a9e";

    let (code, code_key) = common::scaffold_package();
    let config = deploy_config(
        "secretive",
        json!({"ssl": {"domain_name": "custom.example.com", "certificate": owner_cert.pem()}}),
    )
    .to_string();
    let (status, app) = p
        .deploy_raw(
            &bob,
            multipart(&[("config", config.as_bytes()), ("code", &code)]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    assert_eq!(app["certificate_origin"], "owner");
    assert_eq!(app["domain_name"], "custom.example.com");
    let id = app["id"].as_str().unwrap().to_string();
    p.wait_app(&bob, &id, "initializing", |a| a["status"] == "initializing")
        .await;

    // The owner's side: verify the node, then send the secrets to it alone.
    let route = p
        .state
        .routes
        .get(app["config_domain_name"].as_str().unwrap())
        .unwrap();
    let cert = capture(route.addr).await;
    let (_, signer) = p.call(axum::http::Method::GET, "/signer", None, None).await;
    let (_, sim_ca) = p
        .call(axum::http::Method::GET, "/simulation-ca", None, None)
        .await;
    let spec = mse_runtime::Catalog::default_catalog()
        .find(IMAGE)
        .unwrap()
        .clone();
    let expected =
        mse_attest::fingerprint::fingerprint(&mse_attest::fingerprint::FingerprintInput {
            runtime_image: IMAGE.to_string(),
            runtime_spec_digest: spec.digest(),
            enclave_size: "1G".to_string(),
            app_uuid: id.clone(),
            app_domain: "custom.example.com".to_string(),
            python_application: "app:app".to_string(),
            tls: mse_attest::fingerprint::TlsMode::Owner {
                certificate_sha256: sha2::Sha256::digest(owner_cert.der()).into(),
            },
            code_sha256: sha2::Sha256::digest(&code).into(),
        });
    let policy = mse_attest::verify::Policy {
        mr_signer: Some(mse_attest::signer::mr_signer_from_pem(signer.as_str().unwrap()).unwrap()),
        mr_enclave: Some(expected),
        allow_simulation: true,
        simulation_ca: Some(
            mse_attest::ratls::pem_to_der(sim_ca.as_str().unwrap().as_bytes()).unwrap(),
        ),
        simulation_revoked: Some(Vec::new()),
        ..Default::default()
    };
    let verification = mse_attest::verify::verify_certificate(
        &cert,
        &policy,
        Err(mse_attest::verify::NO_COLLATERAL),
        chrono::Utc::now(),
    );
    assert!(verification.verified, "{verification:#?}");
    let body = json!({
        "uuid": id,
        "code_secret_key": code_key.to_hex(),
        "ssl_private_key": key_pem,
        "app_secrets": {"token": secret_marker},
    });
    assert_eq!(
        post_config(route.addr, &cert, body.to_string().into_bytes()).await,
        StatusCode::OK
    );
    p.wait_app(&bob, &id, "running", |a| a["status"] == "running")
        .await;

    let markers = [
        ("code key", code_key.to_hex()),
        ("owner private key", key_marker),
        ("app secret", secret_marker.to_string()),
    ];
    let markers: Vec<(&str, &str)> = markers.iter().map(|(w, m)| (*w, m.as_str())).collect();
    let data = p.dir.path().join("data");
    assert_absent(&data, &markers);

    p.stop_app(&bob, &id).await;
    assert_absent(&data, &markers);
    // The node removed its decrypted code, secrets and keys; its log stays.
    assert_absent(&p.dir.path().join("data.nodes"), &markers);
}
