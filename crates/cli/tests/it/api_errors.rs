//! One error shape everywhere: the management API's own codes, rejected
//! paths, query strings, bodies and methods as JSON, never plain text.

use reqwest::Method;
use serde_json::Value;

use crate::common::Berth;
use crate::oci::*;

/// Sends `method path` (with an optional raw body) and checks the JSON
/// error answer; returns its message.
async fn refused(
    b: &Berth,
    method: Method,
    path: &str,
    body: Option<&str>,
    status: u16,
    code: &str,
) -> String {
    let c = client();
    let mut r = c.request(method.clone(), format!("{}{path}", b.url()));
    if let Some(body) = body {
        r = r
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let r = r.send().await.unwrap();
    let what = format!("{method} {path}");
    assert_eq!(r.status().as_u16(), status, "{what}");
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/json"),
        "{what}"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], code, "{what}: {v}");
    let msg = v["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(!msg.is_empty(), "{what}");
    msg
}

#[tokio::test]
async fn management_api_has_its_own_codes() {
    let b = Berth::start();
    // A missing object is NOT_FOUND, not UNSUPPORTED.
    let msg = refused(
        &b,
        Method::GET,
        "/api/v1/namespaces/team/retention",
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    assert!(msg.contains("team") && msg.contains("retention"), "{msg}");
    refused(
        &b,
        Method::DELETE,
        "/api/v1/namespaces/team/tag-rules/42",
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    refused(
        &b,
        Method::GET,
        "/api/v1/repositories/team/none/tags",
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    // Unknown paths and methods.
    refused(
        &b,
        Method::GET,
        "/api/v1/no-such-thing",
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    refused(
        &b,
        Method::DELETE,
        "/api/v1/whoami",
        None,
        405,
        "METHOD_NOT_ALLOWED",
    )
    .await;
    // Invalid names in paths.
    refused(
        &b,
        Method::GET,
        "/api/v1/namespaces/Team/usage",
        None,
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    // The registry API keeps the OCI codes for the same kinds of failure.
    let r = client()
        .get(format!("{}/v2/team/none/tags/list", b.url()))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "NAME_UNKNOWN").await;
    let r = client()
        .get(format!("{}/v2/nothing/here", b.url()))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "UNSUPPORTED").await;
}

#[tokio::test]
async fn rejected_requests_answer_in_json() {
    let b = Berth::start();
    // A query string that does not parse.
    let msg = refused(
        &b,
        Method::GET,
        "/api/v1/audit?limit=many",
        None,
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    assert!(msg.contains("query"), "{msg}");
    let msg = refused(
        &b,
        Method::GET,
        "/api/v1/namespaces/team/retention/plan?now=soon",
        None,
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    assert!(msg.contains("query"), "{msg}");
    // A path segment that is not UTF-8 once decoded.
    let msg = refused(
        &b,
        Method::DELETE,
        "/api/v1/tokens/%FF%FE",
        None,
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    assert!(msg.contains("path"), "{msg}");
    // JSON bodies: malformed, and of the wrong shape.
    refused(
        &b,
        Method::POST,
        "/api/v1/users",
        Some("{\"name\":"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    refused(
        &b,
        Method::POST,
        "/api/v1/users",
        Some("{\"name\": 7}"),
        400,
        "INVALID_ARGUMENT",
    )
    .await;
    // The token endpoint: OCI codes, JSON too.
    let r = client()
        .delete(format!("{}/token", b.url()))
        .send()
        .await
        .unwrap();
    expect_error(r, 405, "UNSUPPORTED").await;
}
