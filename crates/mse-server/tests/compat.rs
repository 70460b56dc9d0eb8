//! The original client's sign-in (docs/compat.md): OAuth 2.0 with PKCE
//! under `/compat/mse-0.10/auth`, refresh tokens that are this platform's
//! API tokens, short access JWTs, and `GET /users/me` in the original's
//! shape.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::Engine as _;
use common::platform;
use http_body_util::BodyExt as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower::ServiceExt as _;

const AUTH: &str = "/compat/mse-0.10/auth";
const REDIRECT: &str = "http://localhost:5355/";
const VERIFIER: &str = "dBjftJeZ4CVPmB92K27uhbUJU1p1rwW1gFWFOEjXkdBjftJeZ4CVPmB92K27uhbUJU";

/// (status, headers, body) of one request to the platform's router.
async fn raw(
    p: &common::Platform,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    form: Option<&[(&str, &str)]>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = match form {
        Some(fields) => request
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(serde_urlencoded::to_string(fields).unwrap())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = p.router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The query `mse login` sends to `/authorize`.
fn authorize_query(redirect: &str, state: &str) -> String {
    serde_urlencoded::to_string([
        ("response_type", "code"),
        ("code_challenge_method", "S256"),
        ("code_challenge", &challenge(VERIFIER)),
        ("client_id", "mse-cli"),
        ("redirect_uri", redirect),
        ("scope", "openid profile email offline_access"),
        ("audience", "mse"),
        ("state", state),
    ])
    .unwrap()
}

/// The code of a redirect to `REDIRECT?code=…&state=…`.
fn code_of(location: &str, state: &str) -> String {
    let query = location
        .strip_prefix(REDIRECT)
        .unwrap()
        .trim_start_matches('?');
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("state"), state);
    get("code")
}

fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// Approves a sign-in with `token` as a script does (bearer on
/// `/authorize`) and trades the code: the token answer.
async fn sign_in(p: &common::Platform, token: &str) -> Value {
    let (status, headers, body) = raw(
        p,
        Method::GET,
        &format!("{AUTH}/authorize?{}", authorize_query(REDIRECT, "s1")),
        &[("authorization", format!("Bearer {token}"))],
        None,
    )
    .await;
    assert!(status.is_redirection(), "{status} {body}");
    let code = code_of(headers[header::LOCATION].to_str().unwrap(), "s1");
    let (status, _, body) = raw(
        p,
        Method::POST,
        &format!("{AUTH}/oauth/token"),
        &[],
        Some(&[
            ("grant_type", "authorization_code"),
            ("client_id", "mse-cli"),
            ("code_verifier", VERIFIER),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn the_original_clients_sign_in_gets_a_revocable_token_of_ours_and_reads_who_signed_in() {
    let p = platform().await;
    let (user_id, token) = p.user("alice@example.com").await;

    // A person gets the sign-in page, which posts the token it is given.
    let (status, headers, page) = raw(
        &p,
        Method::GET,
        &format!("{AUTH}/authorize?{}", authorize_query(REDIRECT, "s0")),
        &[],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("name=\"token\"") && page.contains(REDIRECT),
        "{page}"
    );
    assert!(headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let challenge = challenge(VERIFIER);
    let form = [
        ("token", token.as_str()),
        ("response_type", "code"),
        ("code_challenge_method", "S256"),
        ("code_challenge", &challenge),
        ("client_id", "mse-cli"),
        ("redirect_uri", REDIRECT),
        ("state", "s0"),
    ];
    let (status, headers, _) = raw(
        &p,
        Method::POST,
        &format!("{AUTH}/authorize"),
        &[],
        Some(&form),
    )
    .await;
    assert!(status.is_redirection(), "{status}");
    code_of(headers[header::LOCATION].to_str().unwrap(), "s0");
    // A wrong token: the page again, saying so, and no redirect.
    let mut wrong = form;
    wrong[0].1 = "mse_0000";
    let (status, _, page) = raw(
        &p,
        Method::POST,
        &format!("{AUTH}/authorize"),
        &[],
        Some(&wrong),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("does not work"), "{page}");

    // A script approves with its bearer token and trades the code.
    let answer = sign_in(&p, &token).await;
    let refresh = answer["refresh_token"].as_str().unwrap();
    assert!(
        refresh.starts_with("mse_"),
        "one of our API tokens: {answer}"
    );
    assert_eq!(
        payload(answer["id_token"].as_str().unwrap())["email"],
        "alice@example.com"
    );
    let access = answer["access_token"].as_str().unwrap();
    assert!(payload(access)["exp"].as_i64().unwrap() > chrono::Utc::now().timestamp());

    // The original's `GET /users/me`, with the access token.
    let me = |access: String| {
        let p = &p;
        async move {
            raw(
                p,
                Method::GET,
                "/compat/mse-0.10/users/me",
                &[("authorization", format!("Bearer {access}"))],
                None,
            )
            .await
        }
    };
    let (status, _, body) = me(access.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["uuid"], user_id.as_str());
    assert_eq!(body["email"], "alice@example.com");
    for field in ["first_name", "last_name", "created_at"] {
        assert!(body[field].is_string(), "{field}: {body}");
    }

    // The refresh grant, as the client makes at every command.
    let (status, _, body) = raw(
        &p,
        Method::POST,
        &format!("{AUTH}/oauth/token"),
        &[],
        Some(&[
            ("grant_type", "refresh_token"),
            ("client_id", "mse-cli"),
            ("refresh_token", refresh),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refreshed: Value = serde_json::from_str(&body).unwrap();
    let second = refreshed["access_token"].as_str().unwrap().to_string();
    assert_eq!(me(second.clone()).await.0, StatusCode::OK);

    // The sign-in's token is one of the user's, which it revokes: the
    // refresh and the access tokens stop working at once.
    let (_, tokens) = p.get("/tokens", &token).await;
    let sign_in_token = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "mse-cli-0.10-sign-in")
        .unwrap_or_else(|| panic!("{tokens}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = p
        .call(
            Method::DELETE,
            &format!("/tokens/{sign_in_token}"),
            Some(&token),
            None,
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, _, body) = me(second).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = raw(
        &p,
        Method::POST,
        &format!("{AUTH}/oauth/token"),
        &[],
        Some(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"], "invalid_grant");
    assert!(error["error_description"]
        .as_str()
        .unwrap()
        .contains("mse login"));
}

#[tokio::test]
async fn a_sign_in_is_refused_for_other_redirects_wrong_verifiers_reused_codes_and_forged_jwts() {
    let p = platform().await;
    let (_, token) = p.user("bob").await;
    let bearer = [("authorization", format!("Bearer {token}"))];

    // Only a loopback http redirect: nothing is sent elsewhere.
    for redirect in [
        "https://evil.example/",
        "http://evil.example:5355/",
        "javascript:alert(1)",
    ] {
        let (status, headers, body) = raw(
            &p,
            Method::GET,
            &format!("{AUTH}/authorize?{}", authorize_query(redirect, "s")),
            &bearer,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{redirect}: {body}");
        assert!(headers.get(header::LOCATION).is_none());
    }
    // No PKCE, or plain: refused.
    let plain = authorize_query(REDIRECT, "s").replace("S256", "plain");
    let (status, _, _) = raw(
        &p,
        Method::GET,
        &format!("{AUTH}/authorize?{plain}"),
        &bearer,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A revoked or unknown bearer approves nothing.
    let (status, headers, _) = raw(
        &p,
        Method::GET,
        &format!("{AUTH}/authorize?{}", authorize_query(REDIRECT, "s")),
        &[("authorization", "Bearer mse_00".to_string())],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get(header::LOCATION).is_none());

    // A code traded with the wrong verifier is spent: the right one after
    // it gets nothing either.
    let (_, headers, _) = raw(
        &p,
        Method::GET,
        &format!("{AUTH}/authorize?{}", authorize_query(REDIRECT, "s2")),
        &bearer,
        None,
    )
    .await;
    let code = code_of(headers[header::LOCATION].to_str().unwrap(), "s2");
    let trade = |verifier: &'static str| {
        let (p, code) = (&p, code.clone());
        async move {
            raw(
                p,
                Method::POST,
                &format!("{AUTH}/oauth/token"),
                &[],
                Some(&[
                    ("grant_type", "authorization_code"),
                    ("client_id", "mse-cli"),
                    ("code_verifier", verifier),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                ]),
            )
            .await
        }
    };
    let (status, _, body) = trade("wrong-verifier-wrong-verifier-wrong-verifier-00").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("code_verifier"), "{body}");
    let (status, _, body) = trade(VERIFIER).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("used"), "{body}");

    // An access token whose payload is changed (another user's id), or one
    // signed with another key, is refused.
    let answer = sign_in(&p, &token).await;
    let access = answer["access_token"].as_str().unwrap();
    let mut parts: Vec<String> = access.split('.').map(str::to_string).collect();
    let mut claims = payload(access);
    claims["sub"] = "00000000-0000-4000-8000-000000000000".into();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let forged = parts.join(".");
    let other_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &payload(access),
        &jsonwebtoken::EncodingKey::from_secret(b"another key"),
    )
    .unwrap();
    for jwt in [forged, other_key, token.clone()] {
        let (status, _, _) = raw(
            &p,
            Method::GET,
            "/compat/mse-0.10/users/me",
            &[("authorization", format!("Bearer {jwt}"))],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn another_users_sign_in_sees_none_of_a_tenants_projects_or_apps() {
    use mse_server::domain::lifecycle::CertificateOrigin;
    let p = platform().await;
    let (alice_id, _) = p.user("alice").await;
    let (_, bob) = p.user("bob").await;
    let store = &p.state.store;
    let project = store.project(&alice_id, "default").await.unwrap().unwrap();
    let new = common::new_app(&project.id, "private", CertificateOrigin::Acme, 1);
    let id = new.id.clone();
    store.insert_app(&new).await.unwrap();

    let access = sign_in(&p, &bob).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let bearer = [("authorization", format!("Bearer {access}"))];
    let base = "/compat/mse-0.10";
    for (method, path) in [
        (Method::GET, format!("{base}/apps/{id}")),
        (Method::GET, format!("{base}/apps/{id}/logs")),
        (Method::POST, format!("{base}/apps/{id}/stop")),
        (Method::DELETE, format!("{base}/apps/{id}")),
        (Method::GET, format!("{base}/projects/{}", project.id)),
        (Method::GET, format!("{base}/projects/{}/apps", project.id)),
    ] {
        let (status, _, body) = raw(&p, method.clone(), &path, &bearer, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    // Bob's own projects are his, and name only his.
    let (status, _, body) = raw(
        &p,
        Method::GET,
        &format!("{base}/projects?name=default"),
        &bearer,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let projects: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(projects.as_array().unwrap().len(), 1);
    assert_ne!(projects[0]["uuid"], project.id.as_str());
    assert_eq!(store.app(&id).await.unwrap().unwrap().spec.name, "private");
}
