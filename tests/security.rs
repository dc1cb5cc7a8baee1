//! Security and compliance: the audit trail and its tamper evidence, retention, rate limits and
//! login lockout across replicas, logout, JWT forgeries, sealed task fields with key rotation,
//! and slow clients.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::helpers::{
    app::{ADMIN, ADMIN_PASSWORD, App, JWT_SECRET, Mode},
    wait::wait_for,
};

fn token_with(header: jsonwebtoken::Header, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn b64(data: &[u8]) -> String {
    use std::fmt::Write as _;
    // URL-safe base64 without padding, enough for hand-made tokens.
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            let _ = out.write_char(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn audit(app: &App, query: &str) -> Vec<Value> {
    audit_as(app, &app.admin_token, query).await
}

async fn audit_as(app: &App, token: &str, query: &str) -> Vec<Value> {
    let (s, b) = app
        .call("GET", &format!("/api/v1/audit?{query}"), Some(token), None)
        .await;
    assert_eq!(s, 200, "{b}");
    b["data"].as_array().unwrap().clone()
}

async fn verify(app: &App) -> Value {
    let (s, b) = app.admin("GET", "/api/v1/audit/verify", None).await;
    assert_eq!(s, 200, "{b}");
    b["data"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_trail_records_mutations_and_security_events_and_shows_tampering() {
    let app = App::start(Mode::Distributed).await;
    let task = app
        .create_task(json!({"type": "generic", "payload": {"n": 1}, "required_capabilities": ["nobody_serves_this"]}))
        .await;
    let task_id = task["id"].as_str().unwrap();
    let (s, _) = app
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": "vera", "password": "viewer-password-1", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 201);
    let viewer = app.login("vera", "viewer-password-1").await;
    let (s, _) = app
        .call(
            "POST",
            "/api/v1/tasks",
            Some(&viewer),
            Some(json!({"type": "generic", "payload": {}})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app.call("GET", "/api/v1/tasks", None, None).await;
    assert_eq!(s, 401);
    let (s, _) = app.try_login("vera", "wrong-password-1").await;
    assert_eq!(s, 401);
    let (s, _) = app.admin("GET", "/api/v1/tasks", None).await;
    assert_eq!(s, 200);
    let (s, _) = app.call("GET", "/api/v1/audit", Some(&viewer), None).await;
    assert_eq!(s, 403, "the audit trail is for admins");

    let created = audit(&app, "action=task.create").await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["actor"], "admin:admin");
    assert_eq!(created[0]["target"], task_id);
    assert_eq!(created[0]["outcome"], "success");
    assert_eq!(created[0]["details"]["status"], 201);
    let forbidden = audit(&app, "action=security.forbidden").await;
    assert_eq!(
        forbidden.len(),
        2,
        "the task create and the audit read: {forbidden:?}"
    );
    assert!(
        forbidden
            .iter()
            .all(|r| r["actor"] == "viewer:vera" && r["outcome"] == "denied")
    );
    let unauthenticated = audit(&app, "action=security.unauthenticated").await;
    assert_eq!(unauthenticated.len(), 1);
    assert_eq!(unauthenticated[0]["details"]["path"], "/api/v1/tasks");
    let logins = audit(&app, "action=auth.login&actor=user:vera").await;
    assert_eq!(logins.len(), 1, "the failed login: {logins:?}");
    assert_eq!(logins[0]["outcome"], "denied");
    assert!(
        audit(&app, "action=GET%20%2Fapi%2Fv1%2Ftasks")
            .await
            .is_empty(),
        "plain reads are not audited"
    );
    assert_eq!(audit(&app, "action=task.*").await.len(), 1);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert!(
        audit(&app, &format!("since={}", urlencode(&future)))
            .await
            .is_empty()
    );
    let (s, b) = app
        .admin("GET", "/api/v1/audit?since=yesterday", None)
        .await;
    assert_eq!(s, 422, "{b}");

    // Paging with a cursor visits every record once, oldest first.
    let all = audit(&app, "limit=1000").await;
    assert!(all.len() >= 6, "{all:?}");
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, b) = app
            .admin(
                "GET",
                &format!("/api/v1/audit?limit=2&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(s, 200);
        paged.extend(
            b["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
        match b["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let ids: Vec<i64> = all.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(
        paged[..ids.len()],
        ids[..],
        "pages cover the trail in order"
    );

    let v = verify(&app).await;
    assert_eq!(v["valid"], true, "{v}");
    assert!(v["records_checked"].as_u64().unwrap() >= ids.len() as u64);

    // Edit one record in the database: the chain breaks there. Undo it: whole again.
    let victim = ids[2];
    let actor = app.sql(&format!(
        "SELECT actor FROM audit_records WHERE id = {victim}"
    ));
    app.sql(&format!(
        "UPDATE audit_records SET actor = 'mallory' WHERE id = {victim}"
    ));
    let v = verify(&app).await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["first_broken_id"], victim);
    app.sql(&format!(
        "UPDATE audit_records SET actor = '{}' WHERE id = {victim}",
        actor.trim()
    ));
    assert_eq!(verify(&app).await["valid"], true);
    // Delete one: the record after it no longer links.
    app.sql(&format!("DELETE FROM audit_records WHERE id = {victim}"));
    let v = verify(&app).await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["first_broken_id"], ids[3]);
}

/// Reads one whole HTTP/1.1 response (head and a `content-length` body).
fn read_response(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed mid-response: {}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_purges_old_payloads_and_audit_records_and_the_chain_still_verifies() {
    // Records and finished tasks older than ~1.7 s are purged every second.
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("AGENT_DATA_RETENTION_DAYS", "0.00002"),
            ("MCP_AUDIT_RETENTION_DAYS", "0.00002"),
            ("MCP_RETENTION_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let task = app
        .create_task(json!({"type": "generic", "payload": {"note": "patient notes"}}))
        .await;
    let id = task["id"].as_str().unwrap().to_string();
    let done = app
        .wait_status(&id, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(done["status"], "completed");
    let later = app
        .create_task(
            json!({"type": "generic", "payload": {"n": 2}, "run_at": "2100-01-01T00:00:00Z"}),
        )
        .await;
    let later = later["id"].as_str().unwrap().to_string();
    let (s, _) = app
        .admin("POST", &format!("/api/v1/tasks/{later}/cancel"), None)
        .await;
    assert_eq!(s, 200);
    let first = audit(&app, "limit=1").await[0]["id"].as_i64().unwrap();

    let purged = wait_for(
        "the finished task's payload to be purged",
        Duration::from_secs(30),
        || async {
            let (_, b) = app.admin("GET", &format!("/api/v1/tasks/{id}"), None).await;
            if b["data"]["payload"] == json!({}) && b["data"]["result"].is_null() {
                Ok(b["data"].clone())
            } else {
                Err(b.to_string())
            }
        },
    )
    .await;
    assert_eq!(purged["status"], "completed", "the task itself stays");
    let (s, b) = wait_for(
        "the cancelled task to be purged",
        Duration::from_secs(30),
        || async {
            let (s, b) = app
                .admin("POST", &format!("/api/v1/tasks/{later}/retry"), None)
                .await;
            if s == 409 && b["error"]["code"] == "payload_purged" {
                Ok((s, b))
            } else {
                Err(format!("{s} {b}"))
            }
        },
    )
    .await;
    assert_eq!(s, 409, "a purged task cannot be retried: {b}");
    wait_for(
        "old audit records to be purged",
        Duration::from_secs(30),
        || async {
            let oldest = audit(&app, "limit=1").await;
            match oldest.first().and_then(|r| r["id"].as_i64()) {
                Some(now) if now > first => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let v = verify(&app).await;
    assert_eq!(v["valid"], true, "the chain verifies from its anchor: {v}");
    // New records keep chaining after a purge.
    app.create_task(json!({"type": "generic", "payload": {}}))
        .await;
    assert_eq!(verify(&app).await["valid"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_lockouts_and_logout_hold_across_replicas() {
    let mut app = App::start_with(
        Mode::Distributed,
        &[
            ("MCP_RATE_LIMIT_PER_MINUTE", "25"),
            ("MCP_LOGIN_RATE_LIMIT_PER_MINUTE", "12"),
            ("MCP_LOGIN_MAX_FAILURES", "3"),
        ],
    )
    .await;
    let replica = format!("http://127.0.0.1:{}", app.start_replica().await);
    app.create_user_cli("root2", "root2-password-1", "admin");
    let lou_admin = app.login("root2", "root2-password-1").await;
    let bases = [app.base.clone(), replica.clone()];
    let get = |base: &str, token: &str| {
        app.http
            .get(format!("{base}/api/v1/tasks?limit=1"))
            .bearer_auth(token)
            .send()
    };

    // One principal's budget is shared by both replicas.
    let mut allowed = 0;
    let mut limited = None;
    for i in 0..40 {
        let r = get(&bases[i % 2], &app.admin_token).await.unwrap();
        match r.status().as_u16() {
            200 => allowed += 1,
            429 => {
                limited = Some(r);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(allowed, 25, "exactly the limit is served, across replicas");
    let limited = limited.expect("the 26th request is limited");
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    // Another principal is not affected.
    let (s, _) = app.try_login("nobody", "x").await;
    assert_eq!(s, 401);
    app.create_user_cli("lou", "lou-password-123", "operator");
    let lou = app.login("lou", "lou-password-123").await;
    assert_eq!(get(&replica, &lou).await.unwrap().status(), 200);

    // Logout revokes the access token at once, on every replica, and the refresh token.
    let (s, pair) = app.try_login("lou", "lou-password-123").await;
    assert_eq!(s, 200);
    let first_access = pair["data"]["access_token"].as_str().unwrap().to_string();
    let (s, pair) = app.refresh(&pair["data"]["refresh_token"]).await;
    assert_eq!(s, 200, "{pair}");
    let access = pair["data"]["access_token"].as_str().unwrap().to_string();
    let refresh = pair["data"]["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(get(&replica, &access).await.unwrap().status(), 200);
    assert_eq!(get(&replica, &first_access).await.unwrap().status(), 200);
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/auth/logout",
            Some(&access),
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    for base in &bases {
        let r = get(base, &access).await.unwrap();
        assert_eq!(r.status(), 401, "revoked on {base}");
        let r = get(base, &first_access).await.unwrap();
        assert_eq!(
            r.status(),
            401,
            "the login's earlier access token too, on {base}"
        );
    }
    let (s, _) = app.refresh(&refresh).await;
    assert_eq!(s, 401, "the refresh family is revoked");
    assert_eq!(
        get(&replica, &lou).await.unwrap().status(),
        200,
        "other sessions stay"
    );

    // Three wrong passwords lock the username, even against the right one, on every replica.
    app.create_user_cli("locky", "locky-password-1", "viewer");
    let login = |base: String, password: &'static str| {
        let http = app.http.clone();
        async move {
            let r = http
                .post(format!("{base}/api/v1/auth/login"))
                .json(&json!({"username": "locky", "password": password}))
                .send()
                .await
                .unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (r.status().as_u16(), retry)
        }
    };
    for i in 0..3 {
        assert_eq!(login(bases[i % 2].clone(), "wrong-password-0").await.0, 401);
    }
    let (s, retry) = login(replica.clone(), "locky-password-1").await;
    assert_eq!(s, 429, "locked out");
    let retry = retry.expect("Retry-After on a lockout");
    assert!((1..=2).contains(&retry), "first lockout is short: {retry}");
    // The lockout is the subject here: wait it out, then the right password works.
    tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(200)).await;
    let (s, _) = login(app.base.clone(), "locky-password-1").await;
    assert_eq!(s, 200, "the lock expires");

    // Logins per client address: the budget is shared by both replicas.
    let mut statuses = Vec::new();
    for i in 0..12 {
        let (s, retry) = login(bases[i % 2].clone(), "wrong-password-0").await;
        statuses.push(s);
        if s == 429 && retry.is_some() {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    // Even the right password waits until the address's window ends.
    let (s, b) = app.try_login("root2", "root2-password-1").await;
    assert_eq!(s, 429, "{b}");
    // The first admin spent its request budget above: the second reads the trail.
    let events: Vec<String> = audit_as(&app, &lou_admin, "outcome=denied&limit=1000")
        .await
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    for expected in [
        "security.rate_limited",
        "auth.login_locked",
        "auth.login_rate_limited",
        "auth.login",
    ] {
        assert!(
            events.iter().any(|e| e == expected),
            "{expected} audited: {events:?}"
        );
    }
    assert!(
        !audit_as(&app, &lou_admin, "action=auth.logout")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_misused_tokens_are_refused() {
    let app = App::start_with(Mode::SingleNode, &[("MCP_PREAUTH_WINDOW_SECS", "10")]).await;
    let now = chrono::Utc::now().timestamp();
    let (s, me) = app.admin("GET", "/api/v1/tasks?limit=1", None).await;
    assert_eq!(s, 200, "{me}");
    let claims = |over: Value| {
        let mut c = json!({"sub": uuid::Uuid::now_v7(), "name": "admin", "role": "admin",
            "typ": "access", "jti": uuid::Uuid::now_v7(), "iss": "techdeck-mcp", "aud": "mcp-api",
            "iat": now - 10, "nbf": now - 10, "exp": now + 600});
        for (k, v) in over.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let secret = JWT_SECRET.as_bytes();
    let control = token_with(hs256.clone(), &claims(json!({})), secret);
    let (s, _) = app.call("GET", "/api/v1/tasks", Some(&control), None).await;
    assert_eq!(s, 200, "the control token passes");

    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims(json!({})).to_string().as_bytes())
    );
    let confused = token_with(
        jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims(json!({})),
        secret,
    );
    let rs_header = {
        // An RS256 header over an HMAC signature: algorithm confusion.
        let body = format!(
            "{}.{}",
            b64(br#"{"alg":"RS256","typ":"JWT"}"#),
            b64(claims(json!({})).to_string().as_bytes())
        );
        let sig = control.rsplit('.').next().unwrap();
        format!("{body}.{sig}")
    };
    let cases = [
        ("alg none", unsigned),
        ("HS512", confused),
        ("RS256 header", rs_header),
        (
            "other secret",
            token_with(
                hs256.clone(),
                &claims(json!({})),
                b"another-secret-entirely-000000000",
            ),
        ),
        (
            "expired",
            token_with(hs256.clone(), &claims(json!({"exp": now - 60})), secret),
        ),
        (
            "not yet valid",
            token_with(hs256.clone(), &claims(json!({"nbf": now + 600})), secret),
        ),
        (
            "wrong issuer",
            token_with(hs256.clone(), &claims(json!({"iss": "evil"})), secret),
        ),
        (
            "wrong audience",
            token_with(hs256.clone(), &claims(json!({"aud": "other"})), secret),
        ),
        (
            "refresh as access",
            token_with(hs256.clone(), &claims(json!({"typ": "refresh"})), secret),
        ),
    ];
    for (what, token) in cases {
        let (s, b) = app.call("GET", "/api/v1/tasks", Some(&token), None).await;
        assert_eq!(s, 401, "{what}: {b}");
        assert_eq!(b["error"]["code"], "unauthorized", "{what}");
    }
    // Every refusal is audited: the first of the window on its own, the rest counted in one
    // record for the address when the window ends.
    let refused = audit(&app, "action=security.unauthenticated&limit=100").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    let grouped = wait_for(
        "the grouped refusals",
        Duration::from_secs(30),
        async || {
            let rows = audit(&app, "action=security.anonymous_denials").await;
            if rows.is_empty() {
                Err("none yet".to_string())
            } else {
                Ok(rows)
            }
        },
    )
    .await;
    assert_eq!(grouped[0]["details"]["count"], 8, "{grouped:?}");
    assert_eq!(
        grouped[0]["details"]["actions"]["security.unauthenticated"], 8,
        "{grouped:?}"
    );
    // A reused refresh token revokes its family (see also the auth tests).
    let (s, pair) = app.try_login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(s, 200);
    let refresh = pair["data"]["refresh_token"].as_str().unwrap();
    let (s, next) = app.refresh(&refresh).await;
    assert_eq!(s, 200);
    let (s, _) = app.refresh(&refresh).await;
    assert_eq!(s, 401);
    let (s, _) = app.refresh(&next["data"]["refresh_token"]).await;
    assert_eq!(s, 401, "the whole family is revoked");
    assert_eq!(audit(&app, "action=auth.refresh_reused").await.len(), 1);
}

/// The agent claims its next task (it runs it: sealed fields come in clear).
async fn claim(app: &App, agent: &str, key: &str) -> Value {
    let (s, b) = app.claim(agent, key, 10000).await;
    assert_eq!(s, 200, "{b}");
    b["data"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn sensitive_fields_are_sealed_and_keys_rotate_while_the_service_runs() {
    let generate = |id: &str| {
        let out = std::process::Command::new(crate::helpers::app::binary("mcp-api"))
            .args(["keys", "generate", "--id", id])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (k1, k2) = (generate("k1"), generate("k2"));
    assert!(k1.starts_with("k1:") && k1 != k2);
    let mut app = App::start_with(Mode::Distributed, &[("MCP_ENCRYPTION_KEYS", k1.as_str())]).await;
    const SSN: &str = "123-45-6789";
    const TOKEN: &str = "sk-live-CANARY-7f3a9c";
    const AGENT_SECRET: &str = "agent-secret-CANARY-51d2";
    app.define_capability("sentiment").await;
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/agents/register",
            Some(
                json!({"name": "vault", "type": "external_api", "capabilities": ["sentiment"],
                        "configuration": {"region": "eu", "api_keys": {"upstream": AGENT_SECRET}}}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let agent = b["data"]["agent"]["id"].as_str().unwrap().to_string();
    let key = b["data"]["agent_key"].as_str().unwrap().to_string();

    let payload = json!({"patient": {"ssn": SSN, "name": "Ann"}, "token": TOKEN});
    let request = |n: u32| {
        json!({"type": "generic", "required_capabilities": ["sentiment"], "payload": payload,
               "sensitive_fields": ["/patient/ssn", "/token"], "idempotency_key": format!("sealed-{n}")})
    };
    let (s, b) = app.admin("POST", "/api/v1/tasks", Some(request(1))).await;
    assert_eq!(s, 201, "{b}");
    let t1 = b["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        b["data"]["payload"]["patient"]["ssn"],
        json!({"$sealed": "k1"})
    );
    assert_eq!(b["data"]["payload"]["patient"]["name"], "Ann");
    let (s, again) = app.admin("POST", "/api/v1/tasks", Some(request(1))).await;
    assert_eq!(
        (s, again["data"]["id"].as_str()),
        (200, Some(t1.as_str())),
        "idempotent"
    );
    let (s, _) = app.admin("POST", "/api/v1/tasks", Some(request(2))).await;
    assert_eq!(s, 201);
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/tasks",
            Some(json!({"type": "generic", "payload": {"a": 1}, "sensitive_fields": ["/b"]})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["details"]["field"], "sensitive_fields");
    // Only the service seals: a client-made marker could smuggle another task's ciphertext.
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/tasks",
            Some(json!({"type": "generic", "payload": {"x": {"$sealed": "v1:k1:AAAA"}}})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["details"]["field"].as_str()),
        (422, Some("payload")),
        "{b}"
    );

    let stored = app.sql("SELECT payload::text || coalesce(sealed_key, '') FROM tasks");
    assert!(
        !stored.contains(SSN) && !stored.contains(TOKEN),
        "sealed at rest: {stored}"
    );
    assert!(stored.contains("v1:k1:"));
    let agents = app.sql("SELECT coalesce(configuration::text, '') || coalesce(configuration_sealed, '') FROM agents");
    assert!(
        !agents.contains(AGENT_SECRET) && agents.contains("v1:k1:"),
        "{agents}"
    );

    // The agent that runs a task gets the values in clear.
    let first = claim(&app, &agent, &key).await;
    assert_eq!(first["payload"], payload, "opened for the runner");

    // Roll in k2 ahead of k1: new values seal with k2, old ones still open.
    let ring = format!("{k2},{k1}");
    app.restart_api_with(&[("MCP_ENCRYPTION_KEYS", ring.as_str())])
        .await;
    let (s, b) = app.admin("POST", "/api/v1/tasks", Some(request(3))).await;
    assert_eq!(s, 201);
    assert_eq!(b["data"]["payload"]["token"], json!({"$sealed": "k2"}));
    // The server re-seals what k1 sealed by itself, in the background.
    wait_for(
        "the background re-sealing",
        Duration::from_secs(60),
        || async {
            let (ok, out) = app.run_api_command(&["keys", "status"]);
            if ok && !out.contains("by k1") {
                Ok(())
            } else {
                Err(out)
            }
        },
    )
    .await;
    let left = app.sql("SELECT count(*) FROM tasks WHERE sealed_key = 'k1'");
    assert_eq!(left.trim(), "0", "every task re-sealed");
    let agents = app.sql("SELECT configuration_sealed FROM agents");
    assert!(
        agents.contains("v1:k2:") && !agents.contains("v1:k1:"),
        "{agents}"
    );
    let (ok, out) = app.run_api_command(&["keys", "status"]);
    assert!(
        ok && out.contains("active key: k2") && !out.contains("by k1"),
        "{out}"
    );
    assert!(
        out.contains("audit chain keyed by k2"),
        "audit rows re-keyed: {out}"
    );

    // Retire k1: everything still opens.
    app.restart_api_with(&[("MCP_ENCRYPTION_KEYS", k2.as_str())])
        .await;
    let second = claim(&app, &agent, &key).await;
    assert_ne!(second["id"], first["id"]);
    assert_eq!(
        second["payload"], payload,
        "re-sealed values open with the new key alone"
    );
    let rotations = audit(&app, "action=keys.rotate").await;
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0]["target"], "k2");
    assert_eq!(rotations[0]["outcome"], "success");
    let v = verify(&app).await;
    assert_eq!(
        v["valid"], true,
        "the re-keyed audit chain verifies with k2 alone: {v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_without_hurting_idle_connections() {
    let app = App::start_with(Mode::SingleNode, &[("MCP_READ_TIMEOUT_SECS", "1")]).await;
    let addr = format!("127.0.0.1:{}", app.port);

    // Headers trickled in and never finished: the connection is closed.
    let started = Instant::now();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = slow.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(started.elapsed() < Duration::from_secs(15));

    // A body that stops halfway: the request fails instead of waiting forever.
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stalled
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":",
        )
        .unwrap();
    let n = stalled.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a stalled body gets a client error or a closed connection: {answer}"
    );

    // An idle keep-alive connection between requests is left alone.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let request = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n";
    idle.write_all(request).unwrap();
    assert!(read_response(&mut idle).starts_with("HTTP/1.1 200"));
    // Idling past the read timeout is the subject of this check.
    std::thread::sleep(Duration::from_millis(1500));
    idle.write_all(request).unwrap();
    assert!(
        read_response(&mut idle).starts_with("HTTP/1.1 200"),
        "still served"
    );

    // NUL characters are refused wherever they come, before they reach the database.
    let (s, b) = app.try_login("a\u{0}b", "x").await;
    assert_eq!(
        (s, b["error"]["details"]["field"].as_str()),
        (422, Some("username")),
        "{b}"
    );
    let (s, b) = app.admin("GET", "/api/v1/audit?actor=%00", None).await;
    assert_eq!(s, 400, "{b}");

    // Deeply nested JSON is refused before parsing.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let r = app
        .http
        .post(format!("{}/api/v1/tasks", app.base))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body(format!("{{\"type\":\"generic\",\"payload\":{deep}}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_login_limits_count_the_forwarded_client() {
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("MCP_TRUSTED_PROXIES", "127.0.0.1"),
            ("MCP_LOGIN_RATE_LIMIT_PER_MINUTE", "2"),
        ],
    )
    .await;
    let login = |forwarded: &'static str| {
        let http = app.http.clone();
        let base = app.base.clone();
        async move {
            http.post(format!("{base}/api/v1/auth/login"))
                .header("x-forwarded-for", forwarded)
                .json(&json!({"username": "nobody", "password": "wrong-password"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // A forged entry left of the proxy's own is ignored: the proxy appended the real client.
    assert_eq!(login("6.6.6.6, 10.0.0.1").await, 401);
    assert_eq!(login("10.0.0.1").await, 401);
    assert_eq!(
        login("7.7.7.7, 10.0.0.1").await,
        429,
        "10.0.0.1 spent its budget"
    );
    assert_eq!(
        login("10.0.0.2").await,
        401,
        "another client is not affected"
    );
    // IPv6 clients are counted per /64.
    assert_eq!(login("2001:db8:1:2::1").await, 401);
    assert_eq!(login("2001:db8:1:2::ffff").await, 401);
    assert_eq!(login("2001:db8:1:2:abcd::3").await, 429, "same /64");
    let records = audit(&app, "action=auth.login&limit=100").await;
    assert!(
        records.iter().any(|r| r["details"]["ip"] == "10.0.0.2"),
        "the audit trail names the forwarded client: {records:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_development_server_keeps_its_generated_secrets_across_restarts() {
    // Empty counts as unset: the development server generates both secrets.
    let mut app = App::start_with(
        Mode::SingleNode,
        &[("MCP_SECRET_KEY", ""), ("JWT_SECRET_KEY", "")],
    )
    .await;
    let kept = app.dir.path().join("mcp.db.secrets");
    let text = std::fs::read_to_string(&kept).expect("the secrets are kept beside the database");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner may read them");
    }
    let values: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(_, v)| v.trim().to_string())
        .collect();
    assert_eq!(values.len(), 2, "{kept:?} holds both secrets");

    const SECRET: &str = "kept-CANARY-9e1f";
    app.define_capability("sentiment").await;
    let (agent, key) = app
        .register_agent(
            json!({"name": "keeper", "type": "external_api", "capabilities": ["sentiment"],
            "configuration": {"api_keys": {"upstream": SECRET}}}),
        )
        .await;
    let payload = json!({"patient": {"ssn": "123-45-6789"}});
    let task = app
        .create_task(
            json!({"type": "generic", "required_capabilities": ["sentiment"],
            "payload": payload, "sensitive_fields": ["/patient/ssn"]}),
        )
        .await;
    assert!(task["payload"]["patient"]["ssn"]["$sealed"].is_string());
    assert_eq!(verify(&app).await["valid"], true);

    app.restart_api_with(&[]).await;
    // The token issued before the restart is still good, the agent key still opens its door,
    // the sealed field still opens for its runner, and the audit chain still verifies.
    let (s, b) = app.admin("GET", "/api/v1/tasks?limit=1", None).await;
    assert_eq!(s, 200, "the JWT key was kept: {b}");
    let claimed = claim(&app, &agent, &key).await;
    assert_eq!(claimed["payload"], payload, "the field key was kept");
    let v = verify(&app).await;
    assert_eq!(v["valid"], true, "the audit key was kept: {v}");
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        text,
        "the same secrets"
    );
    let log = std::fs::read_to_string(app.dir.path().join("api.log")).unwrap();
    assert!(
        values.iter().all(|v| !log.contains(v.as_str())),
        "generated secrets are never logged"
    );
    assert!(log.contains("mcp.db.secrets"), "the log names the file");
}

/// The audit chain as an attacker with the database, and the code, but not the key would
/// rebuild it: `rows` (oldest first) from `from` on, with `edit` applied to the first.
fn rechain(
    rows: &[Value],
    from: usize,
    edit: impl Fn(&mut Value),
) -> Vec<(i64, Value, String, String)> {
    use mcp_shared::db::audit::{AuditEntry, record_hash};
    let entry = |r: &Value| AuditEntry {
        actor: r["actor"].as_str().unwrap().into(),
        action: r["action"].as_str().unwrap().into(),
        target: r["target"].as_str().map(Into::into),
        outcome: r["outcome"].as_str().unwrap().into(),
        request_id: r["request_id"].as_str().map(Into::into),
        details: r.get("details").cloned().filter(|d| !d.is_null()),
    };
    let at = |r: &Value| r["occurred_at"].as_str().unwrap().parse().unwrap();
    // The attacker's recomputation is faithful: an untouched record hashes to what it holds.
    let r = &rows[from];
    assert_eq!(
        record_hash(r["prev_hash"].as_str().unwrap(), at(r), &entry(r)),
        r["hash"].as_str().unwrap()
    );
    let mut prev = rows[from]["prev_hash"].as_str().unwrap().to_string();
    let mut out = Vec::new();
    for (i, r) in rows[from..].iter().enumerate() {
        let mut r = r.clone();
        if i == 0 {
            edit(&mut r);
        }
        let hash = record_hash(&prev, at(&r), &entry(&r));
        out.push((
            r["id"].as_i64().unwrap(),
            r.clone(),
            prev.clone(),
            hash.clone(),
        ));
        prev = hash;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_keyed_audit_chain_shows_re_chaining_forged_anchors_and_truncation() {
    let mut app = App::start(Mode::Distributed).await;
    for n in 0..8 {
        app.create_task(
            json!({"type": "generic", "payload": {"n": n}, "run_at": "2100-01-01T00:00:00Z"}),
        )
        .await;
    }
    let v = verify(&app).await;
    assert_eq!(v["valid"], true, "{v}");
    let rows = audit(&app, "limit=500").await;
    assert!(rows.len() >= 8, "{rows:?}");
    let last = rows.last().unwrap()["id"].as_i64().unwrap();
    // Reads are not audited, so the trail stands still while it is tampered with and restored.
    app.sql("CREATE TABLE audit_backup AS SELECT * FROM audit_records");
    let restore = |app: &App| {
        app.sql("DELETE FROM audit_records; INSERT INTO audit_records SELECT * FROM audit_backup");
    };

    // Edit a record and re-chain everything after it, hashes and links right: no key, no MAC.
    let victim = rows[2]["id"].as_i64().unwrap();
    for (id, r, prev, hash) in rechain(&rows, 2, |r| r["actor"] = json!("mallory")) {
        app.sql(&format!(
            "UPDATE audit_records SET actor = '{}', prev_hash = '{prev}', hash = '{hash}' WHERE id = {id}",
            r["actor"].as_str().unwrap()
        ));
    }
    let v = verify(&app).await;
    assert_eq!(v["valid"], false, "a re-chained trail is caught: {v}");
    assert_eq!(v["first_broken_id"], victim, "{v}");
    assert!(v["problem"].as_str().unwrap().contains("MAC"), "{v}");
    restore(&app);
    assert_eq!(verify(&app).await["valid"], true, "restored");

    // Delete the newest records: the head published in Redis still names the last one.
    app.sql(
        "DELETE FROM audit_records WHERE id IN (SELECT id FROM audit_records ORDER BY id DESC LIMIT 3)",
    );
    let v = verify(&app).await;
    assert_eq!(v["valid"], false, "a truncated trail is caught: {v}");
    assert_eq!(v["first_broken_id"], last, "{v}");
    assert!(v["problem"].as_str().unwrap().contains("truncated"), "{v}");
    restore(&app);
    assert_eq!(verify(&app).await["valid"], true, "restored");

    // Forge a retention anchor to hide the deletion of the oldest records, as an unkeyed
    // anchor from before the chain was keyed would look. Caught, and a restart does not key it.
    let cut = &rows[3];
    let mut anchor = mcp_shared::entities::audit_anchors::Model {
        id: 1,
        purged_through_id: cut["id"].as_i64().unwrap(),
        anchor_hash: cut["hash"].as_str().unwrap().into(),
        records_purged: 4,
        purged_at: chrono::Utc::now(),
        prev_hash: None,
        hash: None,
        key_id: None,
        mac: None,
    };
    let hash = mcp_shared::db::audit::anchor_hash("genesis", &anchor);
    anchor.hash = Some(hash.clone());
    app.sql(&format!(
        "DELETE FROM audit_records WHERE id <= {}; \
         INSERT INTO audit_anchors (purged_through_id, anchor_hash, records_purged, purged_at, prev_hash, hash) \
         VALUES ({}, '{}', 4, '{}', 'genesis', '{hash}')",
        anchor.purged_through_id,
        anchor.purged_through_id,
        anchor.anchor_hash,
        anchor.purged_at.to_rfc3339(),
    ));
    let v = verify(&app).await;
    assert_eq!(v["valid"], false, "a forged anchor is caught: {v}");
    assert!(v["problem"].as_str().unwrap().contains("anchor"), "{v}");
    app.restart_api_with(&[]).await;
    let v = verify(&app).await;
    assert_eq!(
        v["valid"], false,
        "a restart does not launder the forged anchor: {v}"
    );
    app.sql("DELETE FROM audit_anchors");
    restore(&app);
    assert_eq!(verify(&app).await["valid"], true, "restored");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_publishes_its_audit_head_and_a_cli_append_under_load_keeps_one_chain() {
    let app = App::start_with(Mode::SingleNode, &[("MCP_AUDIT_CHECKPOINT_SECS", "1")]).await;
    // Requests and `mcp-api keys rotate` (a second process appending to the same SQLite chain)
    // at once: one chain, every record in it.
    let load = async {
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..6 {
            let http = app.http.clone();
            let base = app.base.clone();
            let token = app.admin_token.clone();
            tasks.spawn(async move {
                for n in 0..25 {
                    let r = http
                        .post(format!("{base}/api/v1/tasks"))
                        .bearer_auth(&token)
                        .json(&json!({"type": "generic", "payload": {"w": worker, "n": n},
                            "run_at": "2100-01-01T00:00:00Z"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    };
    // Four processes at a time, each rotating four times: appends from five processes at once.
    let rotations = async {
        tokio::task::block_in_place(|| {
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..4 {
                            let (ok, out) = app.run_api_command(&["keys", "rotate"]);
                            assert!(ok, "{out}");
                        }
                    });
                }
            })
        });
    };
    tokio::join!(load, rotations);
    let v = verify(&app).await;
    assert_eq!(
        v["valid"], true,
        "appends from two processes keep one chain: {v}"
    );
    assert!(v["records_checked"].as_u64().unwrap() >= 166, "{v}");
    assert_eq!(audit(&app, "action=keys.rotate").await.len(), 16);

    // The head is published beside the database, signed; the checkpoint reaches the store.
    let rows = audit(&app, "limit=1000").await;
    let newest = rows.last().unwrap()["id"].as_i64().unwrap();
    let head_file = app.dir.path().join("mcp.db.audit-head");
    let head: Value = serde_json::from_str(&std::fs::read_to_string(&head_file).unwrap()).unwrap();
    assert_eq!(head["id"], newest, "{head}");
    assert!(head["mac"].as_str().unwrap().len() == 64, "{head}");
    let checkpoint = app.dir.path().join("artifacts/audit/checkpoint.json");
    wait_for(
        "the checkpoint to reach the newest record",
        Duration::from_secs(30),
        || async {
            // Sealed like every artifact: opened here with the service's key ring.
            let bytes = std::fs::read(&checkpoint).map_err(|e| e.to_string())?;
            assert!(bytes.starts_with(b"MCPSEAL1"), "the checkpoint is sealed");
            let secret = &app
                .env
                .iter()
                .find(|(k, _)| k == "MCP_SECRET_KEY")
                .unwrap()
                .1;
            let ring = mcp_shared::crypto::KeyRing::new(secret, None).unwrap();
            let text =
                mcp_shared::sealed_stream::open_all(&ring, &bytes).map_err(|e| e.to_string())?;
            let c: Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
            if c["id"] == newest {
                Ok(())
            } else {
                Err(c.to_string())
            }
        },
    )
    .await;

    // A head file not signed by the key is refused.
    let original = std::fs::read_to_string(&head_file).unwrap();
    let mut forged = head.clone();
    forged["mac"] = json!("0".repeat(64));
    std::fs::write(&head_file, forged.to_string()).unwrap();
    let v = verify(&app).await;
    assert_eq!(v["valid"], false, "{v}");
    assert!(v["problem"].as_str().unwrap().contains("not signed"), "{v}");
    std::fs::write(&head_file, &original).unwrap();
    assert_eq!(verify(&app).await["valid"], true);

    // Delete the newest records from the database file: the published head names one of them.
    app.sqlite(&format!(
        "DELETE FROM audit_records WHERE id > {}",
        newest - 2
    ))
    .await;
    let v = verify(&app).await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["first_broken_id"], newest, "{v}");
    assert!(
        v["problem"].as_str().unwrap().contains("published head"),
        "{v}"
    );
    // Delete the head file too: the checkpoint in the artifact store still shows it.
    std::fs::remove_file(&head_file).unwrap();
    let v = verify(&app).await;
    assert_eq!(v["valid"], false, "{v}");
    assert!(v["problem"].as_str().unwrap().contains("checkpoint"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_and_lockout_fail_closed_while_redis_is_down() {
    let mut app = App::start_with(Mode::Distributed, &[("MCP_LOGIN_MAX_FAILURES", "3")]).await;
    let (s, b) = app.try_login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(s, 200, "{b}");
    let revoked = b["data"]["access_token"].as_str().unwrap().to_string();
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/auth/logout",
            Some(&revoked),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = app
        .call("GET", "/api/v1/tasks?limit=1", Some(&revoked), None)
        .await;
    assert_eq!(s, 401);

    app.redis.as_mut().unwrap().stop();
    // Whether a token was revoked cannot be checked: refused, as a dependency outage.
    for token in [&revoked, &app.admin_token] {
        let r = app
            .send("GET", "/api/v1/tasks?limit=1", Some(token), None)
            .await;
        assert_eq!(
            r.status(),
            503,
            "a bearer token while revocations are unknown"
        );
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "dependency_unavailable", "{body}");
        assert!(body["request_id"].is_string());
    }
    // Nor can a lockout or a login limit: logins are refused before the password is checked.
    for password in ["wrong-password-0", ADMIN_PASSWORD] {
        let r = app
            .send(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": ADMIN, "password": password})),
            )
            .await;
        assert_eq!(r.status(), 503, "a login while lockouts are unknown");
        assert!(r.headers().contains_key("retry-after"));
    }

    // Back again, the revocation still holds and the rest works.
    app.redis.as_mut().unwrap().spawn();
    wait_for(
        "requests to be served again",
        Duration::from_secs(30),
        || async {
            let (s, b) = app.admin("GET", "/api/v1/tasks?limit=1", None).await;
            if s == 200 {
                Ok(())
            } else {
                Err(format!("{s} {b}"))
            }
        },
    )
    .await;
    let (s, _) = app
        .call("GET", "/api/v1/tasks?limit=1", Some(&revoked), None)
        .await;
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_keeps_revocations_and_lockouts_across_a_restart() {
    let mut app = App::start_with(
        Mode::SingleNode,
        &[
            ("MCP_LOGIN_MAX_FAILURES", "1"),
            ("MCP_LOGIN_RATE_LIMIT_PER_MINUTE", "0"),
        ],
    )
    .await;
    let (s, b) = app.try_login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(s, 200, "{b}");
    let revoked = b["data"]["access_token"].as_str().unwrap().to_string();
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/auth/logout",
            Some(&revoked),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    app.create_user_cli("locky", "locky-password-1", "viewer");
    // Failures while locked are refused without being counted, so each waits out the lock
    // before the next: 2 s, 4 s, 8 s; the fourth leaves the username locked for 16 s.
    for _ in 0..4 {
        wait_for(
            "the login to be checked",
            Duration::from_secs(20),
            || async {
                match app.try_login("locky", "wrong-password-0").await {
                    (401, _) => Ok(()),
                    (s, b) => Err(format!("{s} {b}")),
                }
            },
        )
        .await;
    }
    let (s, _) = app.try_login("locky", "locky-password-1").await;
    assert_eq!(s, 429, "locked");

    app.restart_api_with(&[]).await;
    let (s, b) = app
        .call("GET", "/api/v1/tasks?limit=1", Some(&revoked), None)
        .await;
    assert_eq!(s, 401, "the logged-out token after a restart: {b}");
    let (s, b) = app.try_login("locky", "locky-password-1").await;
    assert_eq!(s, 429, "the lockout after a restart: {b}");
    let (s, _) = app
        .call("GET", "/api/v1/tasks?limit=1", Some(&app.admin_token), None)
        .await;
    assert_eq!(s, 200, "other sessions survive the restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_are_shown_only_to_their_creator_and_admins() {
    let app = App::start(Mode::SingleNode).await;
    for (name, role) in [
        ("otto", "operator"),
        ("vic", "viewer"),
        ("opal", "operator"),
    ] {
        let (s, b) = app
            .admin(
                "POST",
                "/api/v1/users",
                Some(json!({"username": name, "password": "a-long-password-42", "role": role})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let otto = app.login("otto", "a-long-password-42").await;
    let vic = app.login("vic", "a-long-password-42").await;
    let opal = app.login("opal", "a-long-password-42").await;
    const KEY: &str = "invoice-4711-for-acme";
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/tasks",
            Some(&otto),
            Some(
                json!({"type": "generic", "payload": {"n": 1}, "idempotency_key": KEY,
                        "run_at": "2100-01-01T00:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["data"]["idempotency_key"], KEY, "the creator sees it");
    let id = b["data"]["id"].as_str().unwrap().to_string();
    let one = format!("/api/v1/tasks/{id}");

    for (who, token, shown) in [
        ("the creator", otto.as_str(), true),
        ("an admin", app.admin_token.as_str(), true),
        ("a viewer", vic.as_str(), false),
        ("another operator", opal.as_str(), false),
    ] {
        let (s, b) = app.call("GET", &one, Some(token), None).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            b["data"].get("idempotency_key").is_some(),
            shown,
            "{who} reading the task: {b}"
        );
        let (s, b) = app.call("GET", "/api/v1/tasks", Some(token), None).await;
        assert_eq!(s, 200, "{b}");
        let listed = b["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{who} lists the task: {b}"));
        assert_eq!(
            listed.get("idempotency_key").is_some(),
            shown,
            "{who} listing tasks: {listed}"
        );
        assert!(
            shown || !b.to_string().contains(KEY),
            "{who} never sees the key: {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rotation_reseals_the_sealed_copies_inside_results() {
    let generate = |id: &str| {
        let out = std::process::Command::new(crate::helpers::app::binary("mcp-api"))
            .args(["keys", "generate", "--id", id])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (k1, k2) = (generate("k1"), generate("k2"));
    let mut app = App::start_with(Mode::SingleNode, &[("MCP_ENCRYPTION_KEYS", k1.as_str())]).await;
    app.define_capability("echoing").await;
    let (agent, key) = app
        .register_agent(
            json!({"name": "echo", "type": "external_api", "capabilities": ["echoing"]}),
        )
        .await;
    const SSN: &str = "987-65-4321";
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/tasks",
            Some(
                json!({"type": "generic", "required_capabilities": ["echoing"],
                        "payload": {"ssn": SSN, "name": "Bo"}, "sensitive_fields": ["/ssn"]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let id = b["data"]["id"].as_str().unwrap().to_string();
    let task = claim(&app, &agent, &key).await;
    assert_eq!(task["payload"]["ssn"], SSN);
    // The agent echoes its input at its place: the result keeps the value sealed, under k1.
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{id}/complete"),
            &key,
            Some(json!({"result": {"ssn": SSN, "name": "Bo", "checked": true}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.admin("GET", &format!("/api/v1/tasks/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["result"]["ssn"], json!({"$sealed": "k1"}), "{b}");

    let ring = format!("{k2},{k1}");
    app.restart_api_with(&[("MCP_ENCRYPTION_KEYS", ring.as_str())])
        .await;
    let (ok, out) = app.run_api_command(&["keys", "status"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("sealed by k1: 1 tasks, 1 task results"),
        "the copy inside the result is counted: {out}"
    );
    let (ok, out) = app.run_api_command(&["keys", "rotate"]);
    assert!(ok, "{out}");
    let (ok, out) = app.run_api_command(&["keys", "status"]);
    assert!(ok && !out.contains("by k1"), "nothing left under k1: {out}");

    // With k1 retired, the result's copy is sealed by k2.
    app.restart_api_with(&[("MCP_ENCRYPTION_KEYS", k2.as_str())])
        .await;
    let (s, b) = app.admin("GET", &format!("/api/v1/tasks/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["result"]["ssn"], json!({"$sealed": "k2"}), "{b}");
    assert_eq!(b["data"]["payload"]["ssn"], json!({"$sealed": "k2"}), "{b}");
    assert!(!b.to_string().contains(SSN));
}

/// Reads until the server closes the connection (or `limit` passes); true if it closed.
fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
    false
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 0x4, 0, 0, 0, 0, 0];

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slow_http1_and_http2_connections_are_closed_and_connections_are_capped() {
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("MCP_READ_TIMEOUT_SECS", "1"),
            ("MCP_IDLE_TIMEOUT_SECS", "2"),
            ("MCP_MAX_CONNECTIONS", "8"),
        ],
    )
    .await;
    let addr = format!("127.0.0.1:{}", app.port);
    let request = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n";

    // HTTP/1: a keep-alive connection left idle after its answer is closed.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(request).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(read_response(&mut idle).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(20)),
        "an idle HTTP/1 connection is closed"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "not before the idle timeout"
    );

    // HTTP/2 with prior knowledge: a connection that opens no stream is closed, however many
    // PINGs keep it busy.
    let mut h2_idle = TcpStream::connect(&addr).unwrap();
    h2_idle.write_all(H2_PREFACE).unwrap();
    h2_idle.write_all(H2_SETTINGS).unwrap();
    let pinger = {
        let mut s = h2_idle.try_clone().unwrap();
        std::thread::spawn(move || {
            let ping = [0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
            // The client's keep-busy traffic, a PING every 300 ms until the server hangs up.
            for _ in 0..100 {
                if s.write_all(&ping).is_err() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            false
        })
    };
    assert!(
        closed_by_server(&mut h2_idle, Duration::from_secs(20)),
        "an HTTP/2 connection without streams is closed"
    );
    assert!(
        pinger.join().unwrap(),
        "the server hung up on the pinging client"
    );

    // HTTP/2 slowloris: a HEADERS frame trickled in a byte at a time is cut off.
    let mut h2_slow = TcpStream::connect(&addr).unwrap();
    h2_slow.write_all(H2_PREFACE).unwrap();
    h2_slow.write_all(H2_SETTINGS).unwrap();
    h2_slow
        .write_all(&[0, 0, 64, 0x1, 0x4, 0, 0, 0, 1])
        .unwrap();
    let trickler = {
        let mut s = h2_slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..64 {
                if s.write_all(&[0x82]).is_err() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            false
        })
    };
    assert!(
        closed_by_server(&mut h2_slow, Duration::from_secs(20)),
        "a trickled HTTP/2 header block is cut off"
    );
    assert!(
        trickler.join().unwrap(),
        "cut off before the headers were complete"
    );

    // HTTP/2 itself still works: a request over prior knowledge is answered.
    let mut h2 = TcpStream::connect(&addr).unwrap();
    h2.write_all(H2_PREFACE).unwrap();
    h2.write_all(H2_SETTINGS).unwrap();
    // HEADERS, END_STREAM | END_HEADERS, stream 1: GET (0x82), http (0x86), :path /api/v1/health
    // (0x44 + literal), :authority x (0x41 + literal).
    let mut block = vec![0x82, 0x86, 0x44, 14];
    block.extend_from_slice(b"/api/v1/health");
    block.extend_from_slice(&[0x41, 1, b'x']);
    let mut frame = vec![0, 0, block.len() as u8, 0x1, 0x5, 0, 0, 0, 1];
    frame.extend_from_slice(&block);
    h2.write_all(&frame).unwrap();
    h2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answered = false;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = h2.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&seen).contains("\"status\":\"ok\"") {
            answered = true;
            break;
        }
    }
    assert!(answered, "an HTTP/2 request is answered: {seen:?}");
    drop(h2);

    // The connection cap: beyond it, new connections are closed unanswered.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let served = c.write_all(request).is_ok() && {
            let mut first = [0u8; 12];
            matches!(c.read(&mut first), Ok(n) if n > 0)
        };
        if served {
            held.push(c);
        } else {
            refused += 1;
        }
    }
    assert!(
        refused >= 2,
        "10 connections against a cap of 8: {refused} refused"
    );
    assert!(held.len() <= 8, "{} served at once", held.len());
    drop(held);
    // Room again once connections end.
    wait_for(
        "a connection served again",
        Duration::from_secs(10),
        async || {
            let mut c = TcpStream::connect(&addr).map_err(|e| e.to_string())?;
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(request).map_err(|e| e.to_string())?;
            let mut first = [0u8; 12];
            match c.read(&mut first) {
                Ok(n) if n > 0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_floods_are_cut_before_authentication_and_grouped_in_the_audit_trail() {
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("MCP_PREAUTH_LIMIT", "20"),
            ("MCP_PREAUTH_WINDOW_SECS", "3"),
        ],
    )
    .await;
    // Within the limit, refused requests are answered as usual.
    for n in 0..20 {
        let (s, b) = if n % 2 == 0 {
            app.call("GET", "/api/v1/tasks", None, None).await
        } else {
            app.call(
                "POST",
                "/api/v1/no-such-route",
                Some("made-up"),
                Some(json!({})),
            )
            .await
        };
        assert!(s == 401 || s == 404, "{n}: {s} {b}");
    }
    // Past it, every request from the address is refused before its credentials are looked at.
    let mut refused: u64 = 0;
    for (method, path, auth) in [
        ("GET", "/api/v1/tasks", None),
        ("POST", "/api/v1/no-such-route", None),
        (
            "GET",
            "/api/v1/agents/discover",
            Some("Agent made-up-agent-key"),
        ),
        ("GET", "/api/v1/tasks", Some("Bearer not-a-token")),
    ] {
        let mut req = app
            .http
            .request(method.parse().unwrap(), format!("{}{path}", app.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 429, "{method} {path}");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3).contains(&wait), "Retry-After {wait}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"]["code"], "rate_limited", "{b}");
        assert!(b["request_id"].is_string(), "{b}");
        refused += 1;
    }
    // A caller whose token verifies, and the probes, still get through.
    let (s, b) = app.admin("GET", "/api/v1/tasks", None).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = app.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(s, 200);

    // The audit trail: the first denial of the window has its own record, the others are
    // counted in one record for the address, written when the window ends.
    let first = audit(&app, "action=security.unauthenticated").await;
    assert_eq!(first.len(), 1, "{first:?}");
    let grouped = wait_for("the grouped denials", Duration::from_secs(20), async || {
        let rows = audit(&app, "action=security.anonymous_denials").await;
        if rows.is_empty() {
            Err("none yet".to_string())
        } else {
            Ok(rows)
        }
    })
    .await;
    assert_eq!(grouped.len(), 1, "{grouped:?}");
    let d = &grouped[0]["details"];
    assert_eq!(d["ip"], "127.0.0.1", "{d}");
    assert_eq!(d["count"], 19 + refused, "every denial but the first: {d}");
    assert_eq!(d["statuses"]["429"], refused, "{d}");
    assert_eq!(d["actions"]["POST unmatched"], 10, "{d}");
    let all = audit(&app, "limit=1000").await;
    let anonymous = all.iter().filter(|r| r["actor"] == "anonymous").count();
    assert_eq!(
        anonymous,
        2,
        "two records for {} denials: {all:?}",
        20 + refused
    );

    // The block ends with its window.
    wait_for(
        "the address admitted again",
        Duration::from_secs(20),
        async || match app.call("GET", "/api/v1/tasks", None, None).await {
            (401, _) => Ok(()),
            (s, b) => Err(format!("{s} {b}")),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pre_authentication_limit_is_shared_by_replicas() {
    let mut app = App::start_with(
        Mode::Distributed,
        &[
            ("MCP_PREAUTH_LIMIT", "10"),
            ("MCP_PREAUTH_WINDOW_SECS", "60"),
        ],
    )
    .await;
    let replica = format!("http://127.0.0.1:{}", app.start_replica().await);
    let anonymous = |base: String| {
        let http = app.http.clone();
        async move {
            http.get(format!("{base}/api/v1/tasks"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for n in 0..10 {
        assert_eq!(anonymous(app.base.clone()).await, 401, "refusal {n}");
    }
    assert_eq!(
        anonymous(app.base.clone()).await,
        429,
        "the first replica cuts it off"
    );
    // The other replica has seen none of them: its first refusal of the address finds the shared
    // count past the limit, and from then on it cuts the address off too.
    assert_eq!(anonymous(replica.clone()).await, 401);
    assert_eq!(anonymous(replica.clone()).await, 429, "the count is shared");
    let (s, b) = app.admin("GET", "/api/v1/tasks", None).await;
    assert_eq!(s, 200, "a verified token still passes: {b}");
}
