//! The error envelope for every client mistake: right status, right code, a request id, never a 500.

use serde_json::{Value, json};

use crate::helpers::{App, Mode, app::JWT_SECRET};

fn assert_envelope(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Signs a token with the server's secret but the given claims.
fn token_with(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_client_error_gets_the_envelope() {
    let app = App::start(Mode::SingleNode).await;
    let tok = app.admin_token.clone();
    let url = |p: &str| format!("{}{p}", app.base);

    // 400: malformed JSON.
    let r = app
        .http
        .post(url("/api/v1/tasks"))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body("{\"type\": ")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_envelope(status, &r.json().await.unwrap(), 400, "invalid_json");

    // 404: unknown route, and unknown id.
    let (s, b) = app.admin("GET", "/api/v1/nowhere", None).await;
    assert_envelope(s, &b, 404, "not_found");
    let (s, b) = app
        .admin(
            "GET",
            &format!("/api/v1/tasks/{}", uuid::Uuid::now_v7()),
            None,
        )
        .await;
    assert_envelope(s, &b, 404, "not_found");

    // 405: wrong method.
    let (s, b) = app.admin("DELETE", "/api/v1/health", None).await;
    assert_envelope(s, &b, 405, "method_not_allowed");

    // 413: oversize body (over the 1 MiB default).
    let big = json!({"type": "generic", "payload": {"blob": "x".repeat(2 * 1024 * 1024)}});
    let (s, b) = app.admin("POST", "/api/v1/tasks", Some(big)).await;
    assert_envelope(s, &b, 413, "payload_too_large");

    // 422: each invalid field is named.
    for (body, field) in [
        (json!({"type": "nope", "payload": {}}), "type"),
        (
            json!({"type": "generic", "priority": "urgent", "payload": {}}),
            "priority",
        ),
        (json!({"type": "generic"}), "payload"),
        (
            json!({"type": "generic", "payload": {}, "max_attempts": 0}),
            "max_attempts",
        ),
        (
            json!({"type": "generic", "payload": {}, "max_attempts": 101}),
            "max_attempts",
        ),
        (
            json!({"type": "generic", "payload": {}, "run_at": "tomorrow"}),
            "run_at",
        ),
        (
            json!({"type": "generic", "payload": {}, "required_capabilities": ["a", "b", "c", "d"]}),
            "required_capabilities",
        ),
    ] {
        let (s, b) = app.admin("POST", "/api/v1/tasks", Some(body.clone())).await;
        assert_envelope(s, &b, 422, "validation_failed");
        assert_eq!(b["error"]["details"]["field"], field, "{body} → {b}");
    }
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/tasks",
            Some(json!({"type": "nope", "payload": {}})),
        )
        .await;
    assert_eq!(s, 422);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("generic"),
        "lists allowed values: {b}"
    );
    let (s, b) = app.admin("GET", "/api/v1/tasks?limit=5000", None).await;
    assert_envelope(s, &b, 422, "validation_failed");

    // 401: missing, malformed, forged, expired, wrong audience.
    let (s, b) = app.call("GET", "/api/v1/tasks", None, None).await;
    assert_envelope(s, &b, 401, "unauthorized");
    let (s, b) = app
        .call("GET", "/api/v1/tasks", Some("garbage"), None)
        .await;
    assert_envelope(s, &b, 401, "unauthorized");
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64, aud: &str| {
        json!({"sub": uuid::Uuid::now_v7(), "name": "admin", "role": "admin", "typ": "access",
               "jti": uuid::Uuid::now_v7(), "iss": "techdeck-mcp", "aud": aud,
               "iat": now - 100, "nbf": now - 100, "exp": exp})
    };
    let expired = token_with(claims(now - 60, "mcp-api"));
    let (s, b) = app.call("GET", "/api/v1/tasks", Some(&expired), None).await;
    assert_envelope(s, &b, 401, "unauthorized");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("expired"),
        "{b}"
    );
    let wrong_aud = token_with(claims(now + 600, "someone-else"));
    let (s, b) = app
        .call("GET", "/api/v1/tasks", Some(&wrong_aud), None)
        .await;
    assert_envelope(s, &b, 401, "unauthorized");
    let valid = token_with(claims(now + 600, "mcp-api"));
    let (s, _) = app.call("GET", "/api/v1/tasks", Some(&valid), None).await;
    assert_eq!(s, 200, "the control token is accepted");
    let forged = {
        let mut parts: Vec<String> = valid.split('.').map(String::from).collect();
        parts[2] = "AAAA".into();
        parts.join(".")
    };
    let (s, b) = app.call("GET", "/api/v1/tasks", Some(&forged), None).await;
    assert_envelope(s, &b, 401, "unauthorized");

    // 403: a viewer may read but not create.
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": "vera", "password": "viewer-password-1", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert!(b["data"].get("password_hash").is_none() && b["data"].get("password").is_none());
    let viewer = app.login("vera", "viewer-password-1").await;
    let (s, _) = app.call("GET", "/api/v1/tasks", Some(&viewer), None).await;
    assert_eq!(s, 200);
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/tasks",
            Some(&viewer),
            Some(json!({"type": "generic", "payload": {}})),
        )
        .await;
    assert_envelope(s, &b, 403, "forbidden");
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/users",
            Some(&viewer),
            Some(json!({"username": "x1x", "password": "long-enough-pass", "role": "admin"})),
        )
        .await;
    assert_envelope(s, &b, 403, "forbidden");

    // Nothing above created a task.
    let (_, list) = app.admin("GET", "/api/v1/tasks", None).await;
    assert_eq!(list["count"], 0, "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_echoed_or_assigned() {
    let app = App::start(Mode::SingleNode).await;
    // The docs are open and the spec is the committed one.
    let docs = app
        .http
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(
        docs.text().await.unwrap().contains("swagger"),
        "Swagger UI at /docs"
    );
    let spec: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let committed: Value = serde_json::from_str(include_str!("../openapi/openapi.json")).unwrap();
    assert_eq!(
        spec["paths"], committed["paths"],
        "the served spec is the committed one"
    );
    // Generated clients name their methods after operationIds: each operation has one, unique.
    let mut ids = std::collections::BTreeMap::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(
                id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{method} {path}: operationId {id:?} is not lowerCamelCase"
            );
            if let Some(other) = ids.insert(id.to_string(), format!("{method} {path}")) {
                panic!("operationId {id:?} names both {other} and {method} {path}");
            }
        }
    }
    assert!(ids.len() >= 47, "{ids:?}");
    let r = app
        .http
        .get(format!("{}/api/v1/health", app.base))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
    let r = app
        .http
        .get(format!("{}/api/v1/nowhere", app.base))
        .send()
        .await
        .unwrap();
    let assigned = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!assigned.is_empty());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], assigned.as_str());
}

/// Security headers on every response; CORS closed unless origins are configured; `/docs` can
/// be turned off.
#[tokio::test]
async fn security_headers_cors_and_docs_switch() {
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("MCP_CORS_ORIGINS", "https://ops.example"),
            ("MCP_DOCS", "false"),
        ],
    )
    .await;
    let resp = app.send("GET", "/api/v1/health", None, None).await;
    let h = resp.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );

    let preflight = |origin: &'static str| {
        app.http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/v1/tasks", app.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let ok = preflight("https://ops.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://ops.example"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    for path in ["/docs", "/openapi.json"] {
        let (status, body) = app.call("GET", path, None, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }

    // Without configured origins, no CORS headers at all.
    let closed = App::start(Mode::SingleNode).await;
    let resp = closed
        .http
        .get(format!("{}/api/v1/health", closed.base))
        .header("origin", "https://ops.example")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let (status, _) = closed.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
}
