//! The web console's defences, checked without a browser (the browser
//! journey is `mse-cli`'s `tests/console.rs`): what its answers let a
//! browser do, and what its script never does with text it shows.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt as _;

async fn get(
    platform: &common::Platform,
    path: &str,
    origin: Option<&str>,
) -> axum::http::Response<Body> {
    let mut request = Request::get(path);
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    platform
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn every_console_file_forbids_inline_script_framing_and_sniffing() {
    let platform = common::platform().await;
    for path in ["/console/", "/console/console.js", "/console/console.css"] {
        let response = get(&platform, path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert!(headers.get("set-cookie").is_none(), "{path} sets no cookie");
    }
    let response = get(&platform, "/console", None).await;
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(response.headers()["location"], "/console/");
}

#[tokio::test]
async fn another_origin_gets_no_cors_grant_to_read_the_api() {
    let platform = common::platform().await;
    let response = get(&platform, "/me", Some("https://evil.example")).await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "no page of another origin may read the API's answers"
    );
}

#[test]
fn the_console_script_never_parses_text_as_html_nor_keeps_the_token_in_a_cookie_or_url() {
    let script = include_str!("../console/console.js");
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "document.cookie",
        "localStorage",
    ] {
        assert!(!script.contains(forbidden), "console.js uses {forbidden}");
    }
    assert!(
        script.contains("sessionStorage"),
        "the token is kept per tab"
    );
    assert!(
        script.contains("Authorization: `Bearer"),
        "sent as a bearer header"
    );
    let page = include_str!("../console/index.html");
    assert!(
        !page.contains("<script>"),
        "index.html has no inline script"
    );
    // No `onclick=`-like attribute: ` on` then letters then `=`.
    let handlers = page.match_indices(" on").filter(|(at, _)| {
        let rest = &page[at + 3..];
        let name = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        name > 0 && rest[name..].starts_with('=')
    });
    assert_eq!(
        handlers.count(),
        0,
        "index.html has no inline event handler"
    );
}

#[tokio::test]
async fn only_an_administrator_lists_the_users_and_their_grants() {
    let platform = common::platform().await;
    let (alice, token) = platform.user("alice").await;
    let (status, _) = platform.get("/users", &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, users) = platform.get("/users", &platform.admin).await;
    assert_eq!(status, StatusCode::OK, "{users}");
    let alice = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == alice.as_str())
        .expect("alice is listed");
    assert_eq!(alice["name"], "alice");
    assert!(alice["grants"].is_array(), "{alice}");
    assert!(alice.get("token").is_none() && alice.get("hash").is_none());
}
