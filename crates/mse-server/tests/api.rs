//! The REST API in-process: every rule and authorization boundary, against a
//! real SQLite store in a temporary data folder.

use axum::http::{Method, StatusCode};
use serde_json::json;

mod common;

use common::{platform, settings, Platform};

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn first_start_initialises_the_data_dir_and_a_restart_keeps_everything() {
    let p = platform().await;
    let data = p.dir.path().join("data");
    assert_eq!(mode(&data), 0o700);
    for key in [
        "signer.key",
        "simulation-ca.key",
        "operator-ca.key",
        "wildcard.key",
        "admin.token",
    ] {
        assert_eq!(mode(&data.join(key)), 0o600, "{key}");
    }
    assert_eq!(
        std::fs::read_to_string(data.join("admin.token")).unwrap(),
        p.admin
    );
    let signer = std::fs::read_to_string(data.join("signer.pub")).unwrap();
    mse_attest::signer::mr_signer_from_pem(&signer).expect("an RSA-3072 signer key");
    let (_, bob) = p.user("bob").await;
    drop(p.router);
    drop(p.state);

    let opened = mse_server::open(&settings(&data)).await.unwrap();
    assert!(opened.admin_token.is_none(), "the admin token is made once");
    let state = opened.state;
    let again = Platform {
        dir: p.dir,
        router: mse_server::api::router(state.clone()),
        state,
        runner: opened.runner,
        admin: p.admin,
    };
    assert_eq!(
        std::fs::read_to_string(data.join("signer.pub")).unwrap(),
        signer
    );
    let (status, me) = again.get("/me", &bob).await;
    assert_eq!((status, me["name"].as_str()), (StatusCode::OK, Some("bob")));
    let (status, me) = again.get("/me", &again.admin).await;
    assert_eq!(
        (status, me["is_admin"].as_bool()),
        (StatusCode::OK, Some(true))
    );
}

#[tokio::test]
async fn public_endpoints_serve_the_operator_material_without_a_token() {
    let p = platform().await;
    let data = p.dir.path().join("data");
    for (path, file) in [
        ("/signer", "signer.pub"),
        ("/simulation-ca", "simulation-ca.pem"),
        ("/operator-ca", "operator-ca.pem"),
    ] {
        let (status, body) = p.call(Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            body.as_str().unwrap(),
            std::fs::read_to_string(data.join(file)).unwrap()
        );
    }
    let (status, body) = p.call(Method::GET, "/health", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let p = platform().await;
    let (status, body) = p.call(Method::GET, "/projects", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("Bearer"));
    let (status, _) = p.get("/projects", "mse_0000").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (_, bob) = p.user("bob").await;
    let (status, tokens) = p.get("/tokens", &bob).await;
    assert_eq!(status, StatusCode::OK);
    let id = tokens[0]["id"].as_str().unwrap().to_string();
    let (status, _) = p
        .call(Method::DELETE, &format!("/tokens/{id}"), Some(&bob), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = p.get("/me", &bob).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked token is refused"
    );
}

#[tokio::test]
async fn only_administrators_create_users_and_grant_resources() {
    let p = platform().await;
    let (bob_id, bob) = p.user("bob").await;
    let (status, body) = p.post("/users", &bob, json!({"name": "eve"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = p
        .post(
            &format!("/users/{bob_id}/grants"),
            &bob,
            json!({"resource": "standard"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = p.post("/users", &p.admin, json!({"name": "bob"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = p.post("/users", &p.admin, json!({"name": ""})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = p
        .post("/users", &p.admin, json!({"name": "x", "role": "root"}))
        .await;
    assert!(status.is_client_error(), "unknown fields are refused");
}

#[tokio::test]
async fn projects_are_private_to_their_owner_and_default_exists() {
    let p = platform().await;
    let (_, alice) = p.user("alice").await;
    let (_, bob) = p.user("bob").await;
    let (status, body) = p.get("/projects/default", &alice).await;
    assert_eq!(
        (status, body["name"].as_str()),
        (StatusCode::OK, Some("default"))
    );

    let (status, created) = p
        .post("/projects", &bob, json!({"name": "secret-plans"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = p
        .post("/projects", &bob, json!({"name": "secret-plans"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = p
        .post("/projects", &alice, json!({"name": "secret-plans"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "names are per user");

    let (status, body) = p.get("/projects/secret-plans", &bob).await;
    assert_eq!((status, &body["id"]), (StatusCode::OK, &created["id"]));
    let (_, alices) = p.get("/projects/secret-plans", &alice).await;
    assert_ne!(
        alices["id"], created["id"],
        "alice sees her own project, never bob's"
    );
    // Another user's project answers exactly as a missing one.
    p.post("/projects", &bob, json!({"name": "bob-only"})).await;
    let (status, theirs) = p.get("/projects/bob-only", &alice).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, missing) = p.get("/projects/nobody-has-it", &alice).await;
    assert_eq!(
        theirs["error"].as_str().unwrap().replace("bob-only", "X"),
        missing["error"]
            .as_str()
            .unwrap()
            .replace("nobody-has-it", "X")
    );
    let (_, list) = p.get("/projects", &alice).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "secret-plans"]);
}

#[tokio::test]
async fn free_is_for_everyone_and_other_resources_only_when_granted() {
    let p = platform().await;
    let (bob_id, bob) = p.user("bob").await;
    let (status, free) = p.get("/resources/free", &bob).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(free["default_hours"], 4);
    let (_, list) = p.get("/resources", &bob).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, _) = p.get("/resources/standard", &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = p
        .post(
            &format!("/users/{bob_id}/grants"),
            &p.admin,
            json!({"resource": "standard"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, standard) = p.get("/resources/standard", &bob).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(standard["enclave_size"], "4G");
    let (status, _) = p
        .post(
            &format!("/users/{bob_id}/grants"),
            &p.admin,
            json!({"resource": "huge"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn users_manage_only_their_own_tokens_and_secrets_are_shown_once() {
    let p = platform().await;
    let (_, alice) = p.user("alice").await;
    let (_, bob) = p.user("bob").await;
    let (status, created) = p.post("/tokens", &bob, json!({"name": "laptop"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = created["token"].as_str().unwrap();
    assert!(secret.starts_with("mse_") && secret.len() == 68);
    let (status, _) = p.get("/me", secret).await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = p.get("/tokens", &bob).await;
    assert!(
        !list.to_string().contains(secret),
        "listing never shows secrets"
    );
    let id = created["id"].as_str().unwrap();
    let (status, _) = p
        .call(Method::DELETE, &format!("/tokens/{id}"), Some(&alice), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "alice cannot revoke bob's token"
    );
    let (status, _) = p.get("/me", secret).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn tokens_are_stored_hashed() {
    let p = platform().await;
    let (_, bob) = p.user("bob").await;
    let db = std::fs::read(p.dir.path().join("data/mse.db")).unwrap();
    let wal = std::fs::read(p.dir.path().join("data/mse.db-wal")).unwrap_or_default();
    for token in [&bob, &p.admin] {
        let found = |bytes: &[u8]| bytes.windows(token.len()).any(|w| w == token.as_bytes());
        assert!(!found(&db) && !found(&wal), "a token in clear in the store");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_operations_the_router_serves() {
    use std::collections::BTreeSet;
    let p = platform().await;
    let (bob_id, _) = p.user("bob").await;
    let (status, doc) = p.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
            let params = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = &segment[1..segment.len() - 1];
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{method} {path} documents its {name} parameter"
                );
            }
        }
    }
    for (method, path) in [
        ("POST", "/apps"),
        ("GET", "/apps"),
        ("GET", "/apps/{id}"),
        ("DELETE", "/apps/{id}"),
        ("POST", "/apps/{id}/stop"),
        ("GET", "/apps/{id}/logs"),
        ("POST", "/resources"),
    ] {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{method} {path}"
        );
    }
    let list = &doc["paths"]["/apps"]["get"]["parameters"];
    for name in ["project", "name", "status", "limit", "offset"] {
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == name && p["in"] == "query"),
            "GET /apps documents its {name} parameter"
        );
    }
    for (path, media) in [
        ("/apps", "multipart/form-data"),
        ("/resources", "application/json"),
        ("/users", "application/json"),
        ("/projects", "application/json"),
        ("/tokens", "application/json"),
        ("/users/{id}/grants", "application/json"),
    ] {
        assert!(
            doc["paths"][path]["post"]["requestBody"]["content"][media]["schema"].is_object(),
            "POST {path} documents its {media} body"
        );
    }

    // What the router serves, probed without a token on every documented
    // path and every path above them, with every method: a served route
    // answers (401 when it needs a token), any other the JSON 404 or 405.
    let mut paths: BTreeSet<String> = BTreeSet::new();
    for (_, path) in &documented {
        let segments: Vec<&str> = path.split('/').collect();
        for end in 2..=segments.len() {
            paths.insert(segments[..end].join("/"));
        }
    }
    paths.extend(
        [
            "/",
            "/apps/{id}/start",
            "/users/{id}",
            "/resources/{name}/grants",
        ]
        .map(String::from),
    );
    // The documented operation a probe reaches: its own path's, else that
    // of a template whose parameters match it (`DELETE /nodes/logs` is
    // `DELETE /nodes/{node}`, the node named `logs`).
    let template = |method: &str, path: &str| -> String {
        if documented.contains(&(method.to_string(), path.to_string())) {
            return path.to_string();
        }
        let probe: Vec<&str> = path.split('/').collect();
        documented
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, t)| t)
            .find(|t| {
                let segments: Vec<&str> = t.split('/').collect();
                segments.len() == probe.len()
                    && segments
                        .iter()
                        .zip(&probe)
                        .all(|(t, p)| t == p || t.starts_with('{'))
            })
            .cloned()
            .unwrap_or_else(|| path.to_string())
    };
    let mut served = BTreeSet::new();
    for path in &paths {
        let concrete = path.replace("{id}", &bob_id).replace("{name}", "default");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let (status, body) = p
                .call(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    &concrete,
                    None,
                    None,
                )
                .await;
            assert!(
                body["error"].is_string() || status.is_success(),
                "{method} {path}: {body}"
            );
            let unserved = status == StatusCode::METHOD_NOT_ALLOWED
                || (status == StatusCode::NOT_FOUND
                    && body["error"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("no such route"));
            if !unserved {
                let path = template(method, path);
                let operation = &doc["paths"][&path][method.to_ascii_lowercase()];
                served.insert((method.to_string(), path.clone()));
                let secured = operation["security"].is_array();
                if secured {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
                } else if operation["requestBody"].is_object() {
                    // A public operation that takes a body refuses none.
                    assert!(status.is_client_error(), "{method} {path}: {body}");
                } else {
                    assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
                }
            }
        }
    }
    let only_served: Vec<_> = served.difference(&documented).collect();
    let only_documented: Vec<_> = documented.difference(&served).collect();
    assert!(
        only_served.is_empty(),
        "served but not documented: {only_served:?}"
    );
    assert!(
        only_documented.is_empty(),
        "documented but not served: {only_documented:?}"
    );
}

/// What the router answers to `method` on `path` without a token: its
/// status, the `Allow` header of a 405, and the error message, if any.
async fn probe(p: &Platform, method: &Method, path: &str) -> (StatusCode, String, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method.clone())
        .uri(path)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = p.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let allow = response
        .headers()
        .get(axum::http::header::ALLOW)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let error = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, allow, error)
}

/// True when the router has no route for the request: its fallback 404,
/// or the 405 of a path that does not take the method.
fn unrouted(status: StatusCode, error: &str) -> bool {
    status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND && error.contains("no such route"))
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_every_other_method_or_path_is_not() {
    use std::collections::BTreeSet;
    let p = platform().await;
    let (status, doc) = p.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 20, "{paths:?}");
    let concrete = |path: &str| {
        path.replace("{id}", "00000000-0000-4000-8000-000000000000")
            .replace("{name}", "default")
    };
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ];
    for (path, operations) in paths {
        let mut documented: BTreeSet<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        // HTTP answers HEAD wherever it answers GET (RFC 9110 §9.3.2).
        if documented.contains("GET") {
            documented.insert("HEAD".to_string());
        }
        for method in &methods {
            let (status, allow, error) = probe(&p, method, &concrete(path)).await;
            if documented.contains(method.as_str()) {
                assert!(
                    !unrouted(status, &error),
                    "documented {method} {path} is not routed: {status} {error}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "undocumented {method} {path} is routed: {error}"
                );
                let allowed: BTreeSet<String> = allow
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect();
                assert_eq!(allowed, documented, "the Allow header of {path}");
            }
        }
    }

    // Paths the document does not list: what lies under or between its
    // paths answers the fallback 404 to every method.
    let mut undocumented: BTreeSet<String> = BTreeSet::new();
    for path in paths.keys() {
        undocumented.insert(format!("{path}/more"));
        let segments: Vec<&str> = path.split('/').collect();
        for end in 1..segments.len() {
            undocumented.insert(segments[..end].join("/"));
        }
    }
    undocumented.insert("/".to_string());
    // A documented path's `{param}` takes any segment: `/apps/more` is
    // `/apps/{id}`.
    let documents = |path: &str, template: &str| {
        let (path, template): (Vec<&str>, Vec<&str>) =
            (path.split('/').collect(), template.split('/').collect());
        path.len() == template.len()
            && path
                .iter()
                .zip(&template)
                .all(|(segment, t)| t.starts_with('{') || segment == t)
    };
    let undocumented: Vec<String> = undocumented
        .into_iter()
        .map(|path| concrete(&path))
        .filter(|path| !path.is_empty() && !paths.keys().any(|t| documents(path, t)))
        .collect();
    assert!(undocumented.len() > 20, "{undocumented:?}");
    for path in &undocumented {
        for method in &methods {
            let (status, _, error) = probe(&p, method, path).await;
            assert!(
                status == StatusCode::NOT_FOUND
                    && (error.contains("no such route") || *method == Method::HEAD),
                "undocumented {method} {path} is routed: {status} {error}"
            );
        }
    }
}

#[tokio::test]
async fn administrators_create_resources_that_others_see_once_granted() {
    let p = platform().await;
    let (bob_id, bob) = p.user("bob").await;
    let brief = json!({"name": "brief", "memory_mb": 256, "cores": 1, "enclave_size": "512M", "default_hours": 1});
    let (status, _) = p.post("/resources", &bob, brief.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = p.post("/resources", &p.admin, brief.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = p.post("/resources", &p.admin, brief).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let bad = json!({"name": "odd", "memory_mb": 1, "cores": 1, "enclave_size": "lots", "default_hours": 1});
    let (status, body) = p.post("/resources", &p.admin, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("enclave_size"));
    let (status, _) = p.get("/resources/brief", &bob).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    p.post(
        &format!("/users/{bob_id}/grants"),
        &p.admin,
        json!({"resource": "brief"}),
    )
    .await;
    let (status, body) = p.get("/resources/brief", &bob).await;
    assert_eq!(
        (status, body["enclave_size"].as_str()),
        (StatusCode::OK, Some("512M"))
    );
}

#[tokio::test]
async fn a_resource_names_the_tee_kinds_it_accepts_and_apps_go_only_to_hosts_of_those_kinds() {
    let p = platform().await;
    let (bob_id, bob) = p.user("bob").await;
    let resource = |name: &str, tees: serde_json::Value| {
        json!({"name": name, "memory_mb": 256, "cores": 1, "enclave_size": "512M",
               "default_hours": 1, "tees": tees})
    };
    let (status, body) = p
        .post("/resources", &p.admin, resource("odd", json!(["sgx2"])))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("`sgx2`"), "{body}");
    let (status, _) = p.get("/resources/odd", &p.admin).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused resource is not created"
    );

    for (name, tees) in [("tdx-only", json!(["tdx"])), ("sim", json!(["simulation"]))] {
        let (status, body) = p
            .post("/resources", &p.admin, resource(name, tees.clone()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        p.post(
            &format!("/users/{bob_id}/grants"),
            &p.admin,
            json!({"resource": name}),
        )
        .await;
        let (_, shown) = p.get(&format!("/resources/{name}"), &bob).await;
        assert_eq!(shown["tees"], tees, "{shown}");
    }

    // The platform's only node host is a simulation one.
    let (status, body) = p
        .deploy(
            &bob,
            common::deploy_config("on-tdx", json!({"resource": "tdx-only"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("accepts (tdx)") && error.contains("(simulation)"),
        "the refusal names the kinds accepted and running: {error}"
    );
    let (status, app) = p
        .deploy(
            &bob,
            common::deploy_config("on-sim", json!({"resource": "sim"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    assert_eq!(app["tee"], "simulation", "{app}");
}

#[tokio::test]
async fn apps_page_with_limit_and_offset_newest_first_each_exactly_once() {
    // The API alone: deployed apps wait, `spawning`, and start no node.
    let p = common::platform_as(mse_server::Roles {
        api: true,
        proxy: false,
        node: false,
    })
    .await;
    let (_, bob) = p.user("bob").await;
    let (_, alice) = p.user("alice").await;
    p.post("/projects", &bob, json!({"name": "other"})).await;
    for i in 0..7 {
        let (status, app) = p
            .deploy(&bob, common::deploy_config(&format!("app-{i}"), json!({})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{app}");
        assert_eq!(app["status"], "spawning");
    }
    p.deploy(
        &bob,
        common::deploy_config("elsewhere", json!({"project": "other"})),
    )
    .await;
    p.deploy(&alice, common::deploy_config("hers", json!({})))
        .await;

    let ids = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, all) = p.get("/apps?project=default", &bob).await;
    assert_eq!(status, StatusCode::OK);
    let all = ids(&all);
    assert_eq!(all.len(), 7);
    let mut paged = Vec::new();
    let mut offset = 0;
    loop {
        let (status, page) = p
            .get(
                &format!("/apps?project=default&limit=3&offset={offset}"),
                &bob,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let page = ids(&page);
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        offset += page.len();
        paged.extend(page);
    }
    assert_eq!(paged, all, "the pages cover every app once, in order");
    let (_, newest) = p.get("/apps?project=default&limit=1", &bob).await;
    let (_, created) = p.get(&format!("/apps/{}", ids(&newest)[0]), &bob).await;
    let (_, oldest) = p.get("/apps?project=default&offset=6", &bob).await;
    let (_, oldest) = p.get(&format!("/apps/{}", ids(&oldest)[0]), &bob).await;
    assert!(created["created_at"].as_i64() >= oldest["created_at"].as_i64());
    let (_, rest) = p.get("/apps?project=default&offset=5", &bob).await;
    assert_eq!(ids(&rest), all[5..], "an offset alone gives the rest");
    let (_, beyond) = p.get("/apps?offset=100", &bob).await;
    assert_eq!(beyond, json!([]));
    let (_, everything) = p.get("/apps?limit=100&offset=0", &bob).await;
    assert_eq!(everything.as_array().unwrap().len(), 8, "bob's apps only");

    for (query, name) in [
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("limit=-3", "limit"),
        ("limit=1.5", "limit"),
        ("limit=99999999999", "limit"),
    ] {
        let (status, body) = p.get(&format!("/apps?{query}"), &bob).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(name) && error.contains("non-negative integer"),
            "{error}"
        );
    }
    let (status, body) = p.get("/apps?page=2", &bob).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("offset"), "{body}");
}
