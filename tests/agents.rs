//! The agent registry over HTTP: registration, keys, heartbeats, discovery, capabilities,
//! metrics, allocation and deregistration, in both run modes; and liveness derived from silence.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::helpers::{App, Mode, wait::receive_until, wait_for};

async fn discover(app: &App, query: &str) -> Vec<Value> {
    let (s, b) = app
        .admin("GET", &format!("/api/v1/agents/discover?{query}"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    b["data"].as_array().unwrap().clone()
}

async fn agent_surface(mode: Mode) -> App {
    let app = App::start(mode).await;
    // A capability of the test's own: the built-in workers, which register as agents too, serve
    // every task type's capability and would show up in discovery.
    app.define_capability("translation").await;

    // Registration: key shown once, secrets sealed and never returned, PII redacted.
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/agents/register",
            Some(json!({
                "name": "validator-1",
                "type": "validation",
                "capabilities": ["validation", {"name": "analysis", "version": "2"}],
                "max_concurrency": 4,
                "metadata": {"owner": "ann.lee@example.org", "oncall": "(555) 123-4567", "ssn": "123-45-6789",
                             "card": "4111 1111 1111 1111", "region": "eu-west"},
                "configuration": {"api_keys": {"openai": "sk-canary-0123456789"}, "endpoint": "https://v.example"}
            })),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let text = b.to_string();
    assert!(
        !text.contains("sk-canary"),
        "secrets never come back: {text}"
    );
    let agent = &b["data"]["agent"];
    let id = agent["id"].as_str().unwrap().to_string();
    let key = b["data"]["agent_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("mcp_ak_") && key.len() >= 7 + 43, "{key}");
    assert_eq!(agent["status"], "active");
    assert_eq!(agent["type"], "validation");
    assert_eq!(
        agent["capabilities"][1],
        json!({"name": "analysis", "version": "2"})
    );
    assert_eq!(
        agent["metadata"],
        json!({"owner": "[EMAIL]", "oncall": "[PHONE]", "ssn": "[SSN]", "card": "[CREDIT_CARD]", "region": "eu-west"})
    );

    // Bad input changes nothing.
    let before = discover(&app, "limit=1000").await.len();
    for (body, status, field) in [
        (
            json!({"name": "validator-1", "type": "validation", "capabilities": ["validation"]}),
            409,
            None,
        ),
        (
            json!({"name": "x2", "type": "validation", "capabilities": ["telepathy"]}),
            422,
            Some("capabilities"),
        ),
        (
            json!({"name": "x3", "type": "validation", "capabilities": ["validation"], "max_concurrency": 0}),
            422,
            Some("max_concurrency"),
        ),
        (
            json!({"name": "x4", "type": "robot", "capabilities": ["validation"]}),
            422,
            Some("type"),
        ),
        (
            json!({"name": "x5", "type": "validation", "capabilities": [42]}),
            422,
            Some("capabilities[0]"),
        ),
    ] {
        let (s, b) = app
            .admin("POST", "/api/v1/agents/register", Some(body.clone()))
            .await;
        assert_eq!(s, status, "{body} → {b}");
        if let Some(f) = field {
            assert_eq!(b["error"]["details"]["field"], f, "{b}");
        }
    }
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/agents/register",
            Some(json!({"name": "x2", "type": "validation", "capabilities": ["telepathy"]})),
        )
        .await;
    assert_eq!(s, 422);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("telepathy"),
        "names the capability: {b}"
    );
    let big = json!({"name": "x6", "type": "validation", "capabilities": ["validation"], "metadata": {"blob": "y".repeat(2_000_000)}});
    let (s, _) = app
        .admin("POST", "/api/v1/agents/register", Some(big))
        .await;
    assert_eq!(s, 413);
    assert_eq!(
        discover(&app, "limit=1000").await.len(),
        before,
        "no agent stored on any error"
    );

    // The agent acts on its own record with its key, and only on its own.
    let (other, other_key) = app
        .register_agent(
            json!({"name": "exporter-1", "type": "data_processor", "capabilities": ["translation"]}),
        )
        .await;
    let (s, b) = app
        .as_agent("GET", &format!("/api/v1/agents/{id}"), &key, None)
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = app
        .as_agent("GET", &format!("/api/v1/agents/{other}"), &key, None)
        .await;
    assert_eq!(s, 403);
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/agents/{id}/heartbeat"),
            &key,
            Some(json!({"current_load": 1, "status": "busy"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["status"], "busy");
    let (s, _) = app
        .as_agent(
            "POST",
            &format!("/api/v1/agents/{other}/heartbeat"),
            &key,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403, "heartbeat for another agent");
    let (s, _) = app
        .admin(
            "POST",
            &format!("/api/v1/agents/{id}/heartbeat"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403, "users do not beat for agents");
    let (s, _) = app
        .as_agent("GET", "/api/v1/tasks", "mcp_ak_not-a-real-key", None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = app
        .admin(
            "GET",
            &format!("/api/v1/agents/{}", uuid::Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .as_agent(
            "POST",
            "/api/v1/agents/register",
            &key,
            Some(json!({"name": "z", "type": "validation", "capabilities": ["validation"]})),
        )
        .await;
    assert_eq!(s, 403, "agents cannot register agents");

    // Health and metrics.
    let (s, h) = app
        .admin("GET", &format!("/api/v1/agents/{id}/health"), None)
        .await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["data"]["status"], "busy");
    let health = h["data"]["overall_health"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&health) && health > 0.5, "{h}");
    assert!(h["data"]["heartbeat_age_ms"].as_i64().unwrap() >= 0);
    let (s, m) = app
        .admin("GET", &format!("/api/v1/agents/{id}/metrics"), None)
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["data"]["tasks_completed"], 0);
    assert_eq!(m["data"]["max_concurrency"], 4);

    // Capabilities: add, replace, validate; unknown names refused.
    let (s, b) = app
        .admin(
            "POST",
            &format!("/api/v1/agents/{id}/capabilities"),
            Some(json!({"capabilities": ["bias_detection"], "mode": "add"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["capabilities"].as_array().unwrap().len(), 3);
    let (s, b) = app
        .admin(
            "POST",
            &format!("/api/v1/agents/{id}/capabilities"),
            Some(json!({"capabilities": ["nope"], "mode": "add"})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/capabilities",
            Some(json!({"name": "sentiment", "description": "tone scoring"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, _) = app
        .admin(
            "POST",
            "/api/v1/capabilities",
            Some(json!({"name": "sentiment"})),
        )
        .await;
    assert_eq!(s, 409);
    let (_, cat) = app.admin("GET", "/api/v1/capabilities", None).await;
    assert!(
        cat["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "sentiment"),
        "{cat}"
    );
    // Granting a capability is an operator's; the agent itself may only narrow (see
    // an_agent_cannot_widen_its_own_capabilities).
    let (s, b) = app
        .admin(
            "POST",
            &format!("/api/v1/agents/{id}/capabilities"),
            Some(json!({"capabilities": ["validation", "sentiment"]})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let names: Vec<&str> = b["data"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["validation", "sentiment"]);
    let (s, v) = app
        .admin("POST", &format!("/api/v1/agents/{id}/validate"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["valid"], true);

    // Discovery: all capabilities required, healthy first, then least loaded.
    let (a, _) = app.register_agent(json!({"name": "proc-a", "type": "data_processor", "capabilities": ["processing", "translation"], "max_concurrency": 10})).await;
    let (b_id, _) = app.register_agent(json!({"name": "proc-b", "type": "data_processor", "capabilities": ["processing", "translation"], "max_concurrency": 10})).await;
    let (s, alloc) = app
        .admin(
            "POST",
            &format!("/api/v1/agents/{a}/allocate"),
            Some(json!({"slots": 6, "ttl_seconds": 600, "purpose": "batch"})),
        )
        .await;
    assert_eq!(s, 201, "{alloc}");
    assert!(alloc["data"]["expires_at"].is_string());
    let (s, _) = app
        .admin(
            "POST",
            &format!("/api/v1/agents/{a}/allocate"),
            Some(json!({"slots": 0})),
        )
        .await;
    assert_eq!(s, 422);
    let found = discover(&app, "capability=processing&capability=translation").await;
    let order: Vec<&str> = found.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        [b_id.as_str(), a.as_str()],
        "least loaded first: {found:?}"
    );
    assert_eq!(found[1]["current_load"], 6);
    let both = discover(&app, "capability=translation").await;
    assert_eq!(both.len(), 3, "exporter-1 too: {both:?}");
    assert!(
        discover(&app, "capability=translation&type=validation")
            .await
            .is_empty()
    );
    assert!(
        discover(&app, "capability=processing&capability=validation")
            .await
            .is_empty()
    );

    // Viewer may discover but not register.
    let (s, _) = app
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": "vic", "password": "viewer-password-1", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 201);
    let viewer = app.login("vic", "viewer-password-1").await;
    let (s, _) = app
        .call(
            "GET",
            "/api/v1/agents/discover?capability=translation",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .call(
            "POST",
            "/api/v1/agents/register",
            Some(&viewer),
            Some(json!({"name": "v", "type": "validation", "capabilities": ["validation"]})),
        )
        .await;
    assert_eq!(s, 403);

    // Deregistration revokes the key at once.
    let (s, b) = app
        .admin("DELETE", &format!("/api/v1/agents/{other}"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = app
        .as_agent("GET", &format!("/api/v1/agents/{other}"), &other_key, None)
        .await;
    assert_eq!(s, 401, "a deregistered key fails at once");
    let (s, _) = app
        .admin("GET", &format!("/api/v1/agents/{other}"), None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .admin("DELETE", &format!("/api/v1/agents/{other}"), None)
        .await;
    assert_eq!(s, 404);
    // An agent may deregister itself.
    let (s, _) = app
        .as_agent("DELETE", &format!("/api/v1/agents/{id}"), &key, None)
        .await;
    assert_eq!(s, 200);
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_surface_single_node() {
    agent_surface(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_surface_distributed() {
    let app = agent_surface(Mode::Distributed).await;
    // Every mutation above left an audit record, and the records form one unbroken chain.
    let count = |action: &str| -> i64 {
        app.sql(&format!(
            "SELECT count(*) FROM audit_records WHERE action = '{action}' AND outcome = 'success'"
        ))
        .parse()
        .unwrap()
    };
    assert_eq!(count("agent.register"), 4);
    assert_eq!(count("agent.deregister"), 2);
    assert_eq!(count("agent.allocate"), 1);
    assert_eq!(count("agent.capabilities"), 2);
    assert_eq!(count("capability.create"), 2);
    assert_eq!(count("user.create"), 1);
    let broken = app.sql(
        "SELECT count(*) FROM (SELECT prev_hash, lag(hash) OVER (ORDER BY id) AS prev FROM audit_records) t \
         WHERE prev IS NOT NULL AND prev_hash <> prev",
    );
    assert_eq!(broken, "0", "the audit chain is unbroken");
    let first = app.sql("SELECT prev_hash FROM audit_records ORDER BY id LIMIT 1");
    assert_eq!(first, "genesis");
    let with_request_ids =
        app.sql("SELECT count(*) FROM audit_records WHERE request_id IS NULL OR request_id = ''");
    assert_eq!(with_request_ids, "0", "every record names its request");
}

/// A worker killed with SIGKILL stops beating: its agent goes stale, then offline, and both
/// transitions reach `/ws/agents/status`.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_goes_stale_then_offline() {
    let mut app = App::start_with(
        Mode::Distributed,
        &[
            ("MCP_AGENT_HEARTBEAT_MS", "200"),
            ("MCP_AGENT_STALE_AFTER_MISSED", "3"),
            ("MCP_AGENT_OFFLINE_AFTER_MISSED", "8"),
        ],
    )
    .await;
    let worker = wait_for(
        "the worker to register as an agent",
        Duration::from_secs(20),
        || async {
            let found = discover(&app, "type=data_processor&capability=generic").await;
            found
                .first()
                .cloned()
                .ok_or_else(|| "no worker agent yet".to_string())
        },
    )
    .await;
    let worker_id = worker["id"].as_str().unwrap().to_string();
    assert!(worker["name"].as_str().unwrap().starts_with("worker-"));
    assert_eq!(worker["status"], "active");

    let (mut ws, _) =
        connect_async(app.ws_url(&format!("/ws/agents/status?token={}", app.admin_token)))
            .await
            .unwrap();
    app.kill_worker();

    let mut transitions = Vec::new();
    receive_until(
        "stale and offline events",
        Duration::from_secs(30),
        async || ws.next().await,
        |msg| {
            let Message::Text(text) = msg.unwrap() else {
                return None;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "agent.status_updated" && v["data"]["agent_id"] == worker_id.as_str() {
                transitions.push(v["data"]["status"].as_str().unwrap().to_string());
            }
            (transitions.len() == 2).then_some(())
        },
    )
    .await;
    assert_eq!(transitions, ["stale", "offline"]);
    let (_, h) = app
        .admin("GET", &format!("/api/v1/agents/{worker_id}/health"), None)
        .await;
    assert_eq!(h["data"]["status"], "offline");
    assert_eq!(h["data"]["overall_health"], 0.0);
}

/// Deregistering an agent sends the tasks it holds back to their queues; they run again on
/// another worker, and the deregistered worker process stops taking work.
#[tokio::test(flavor = "multi_thread")]
async fn deregistering_an_agent_requeues_its_unfinished_tasks() {
    let mut app = App::start_with(
        Mode::Distributed,
        &[
            ("MCP_AGENT_HEARTBEAT_MS", "1000"),
            ("MCP_AGENT_STALE_AFTER_MISSED", "30"),
        ],
    )
    .await;
    let task = app
        .create_task(json!({"type": "generic", "payload": {"sleep_ms": 20000}, "max_attempts": 5}))
        .await;
    let id = task["id"].as_str().unwrap().to_string();
    let running = app
        .wait_status(&id, "running", Duration::from_secs(20))
        .await;
    let holder = running["agent_id"]
        .as_str()
        .expect("the running task names its agent")
        .to_string();
    app.start_worker(&[]);
    wait_for(
        "a second worker to register",
        Duration::from_secs(20),
        || async {
            let n = discover(&app, "type=data_processor&status=active")
                .await
                .len();
            if n >= 2 {
                Ok(())
            } else {
                Err(format!("{n} active workers"))
            }
        },
    )
    .await;
    let (s, b) = app
        .admin("DELETE", &format!("/api/v1/agents/{holder}"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["released_tasks"], 1);
    let done = app
        .wait_status(&id, "completed", Duration::from_secs(90))
        .await;
    assert!(
        done["attempt"].as_i64().unwrap() >= 2,
        "it ran again after being released: {done}"
    );
    // The deregistered worker noticed and stopped: only the new one is left.
    wait_for(
        "the deregistered worker to stop",
        Duration::from_secs(20),
        || async {
            let workers = discover(&app, "type=data_processor").await;
            if workers.len() == 1 && workers[0]["id"] != holder.as_str() {
                Ok(())
            } else {
                Err(format!("{workers:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_cannot_widen_its_own_capabilities() {
    let app = App::start(Mode::SingleNode).await;
    let (id, key) = app
        .register_agent(json!({"name": "narrow-1", "type": "data_processor",
                                "capabilities": ["analysis", "validation"]}))
        .await;
    let path = format!("/api/v1/agents/{id}/capabilities");
    for (mode, caps) in [("add", json!(["generic"])), ("replace", json!(["generic"]))] {
        let (s, b) = app
            .as_agent(
                "POST",
                &path,
                &key,
                Some(json!({"capabilities": caps, "mode": mode})),
            )
            .await;
        assert_eq!(s, 403, "an agent granting itself a queue ({mode}): {b}");
        assert_eq!(b["error"]["code"], "forbidden");
    }
    let (_, b) = app
        .admin("GET", &format!("/api/v1/agents/{id}"), None)
        .await;
    let names: Vec<&str> = b["data"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["analysis", "validation"]);

    // Narrowing is the agent's own business; widening is an operator's.
    let (s, b) = app
        .as_agent(
            "POST",
            &path,
            &key,
            Some(json!({"capabilities": ["analysis"], "mode": "replace"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["capabilities"].as_array().unwrap().len(), 1);
    let (s, b) = app
        .admin(
            "POST",
            &path,
            Some(json!({"capabilities": ["generic"], "mode": "add"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["capabilities"].as_array().unwrap().len(), 2);
}

/// Every byte of what the database holds about agents: the PostgreSQL rows as JSON, or the
/// SQLite files (database and write-ahead log) as they sit on disk.
fn stored_agent_data(app: &App) -> String {
    if app.redis.is_some() {
        return app.sql("SELECT row_to_json(agents)::text FROM agents");
    }
    let mut bytes = Vec::new();
    for file in ["mcp.db", "mcp.db-wal"] {
        if let Ok(b) = std::fs::read(app.dir.path().join(file)) {
            bytes.extend(b);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn agent_data_is_sealed_at_rest_unless_switched_off(mode: Mode) {
    let mut app = App::start(mode).await;
    let (sealed_id, _) = app
        .register_agent(json!({
            "name": "sealed-agent", "type": "ai_model", "capabilities": ["analysis"],
            "metadata": {"team": "team-orchid-7731"},
            "configuration": {"endpoint": "https://models.example/orchid-7731", "api_keys": ["sk-orchid-7731"]},
        }))
        .await;
    // Readers get the metadata opened; the configuration is never returned.
    let (status, agent) = app
        .admin("GET", &format!("/api/v1/agents/{sealed_id}"), None)
        .await;
    assert_eq!(status, 200, "{agent}");
    assert_eq!(agent["data"]["metadata"]["team"], "team-orchid-7731");
    assert!(!agent.to_string().contains("models.example"), "{agent}");
    let stored = stored_agent_data(&app);
    assert!(
        stored.contains("sealed-agent"),
        "the agents are where we look"
    );
    for clear in ["team-orchid", "models.example/orchid", "sk-orchid"] {
        assert!(!stored.contains(clear), "{clear} is stored in clear");
    }

    // Switched off: only the secret fields are sealed.
    app.restart_api_with(&[("ENCRYPT_AGENT_DATA", "false")])
        .await;
    app.admin_token = app
        .login("admin", crate::helpers::app::ADMIN_PASSWORD)
        .await;
    app.register_agent(json!({
        "name": "plain-agent", "type": "ai_model", "capabilities": ["analysis"],
        "metadata": {"team": "team-lupin-4410"},
        "configuration": {"endpoint": "https://models.example/lupin-4410", "api_keys": ["sk-lupin-4410"]},
    }))
    .await;
    let stored = stored_agent_data(&app);
    assert!(
        stored.contains("team-lupin-4410"),
        "metadata in clear when off"
    );
    assert!(stored.contains("models.example/lupin-4410"));
    assert!(
        !stored.contains("sk-lupin"),
        "secrets are sealed whatever the setting"
    );
    // What was sealed before still reads back.
    let (_, agent) = app
        .admin("GET", &format!("/api/v1/agents/{sealed_id}"), None)
        .await;
    assert_eq!(
        agent["data"]["metadata"]["team"], "team-orchid-7731",
        "{agent}"
    );
}

#[tokio::test]
async fn agent_data_is_sealed_at_rest_unless_switched_off_single_node() {
    agent_data_is_sealed_at_rest_unless_switched_off(Mode::SingleNode).await;
}

#[tokio::test]
async fn agent_data_is_sealed_at_rest_unless_switched_off_distributed() {
    agent_data_is_sealed_at_rest_unless_switched_off(Mode::Distributed).await;
}

/// The max_concurrency each agent shows through the API.
async fn concurrency(app: &App, id: &str) -> Value {
    let (_, agent) = app
        .admin("GET", &format!("/api/v1/agents/{id}"), None)
        .await;
    agent["data"]["max_concurrency"].clone()
}

/// A row whose `updated_at` moved backwards (edited by hand, or by a replica whose clock is far
/// behind) is missed by the incremental pull; the directory's full re-read every
/// `CACHE_TTL_SECONDS` picks it up.
async fn edit_behind_the_directory(ttl: &str) -> (App, String) {
    let app = App::start_with(Mode::SingleNode, &[("CACHE_TTL_SECONDS", ttl)]).await;
    let register = |name: &str| json!({"name": name, "type": "ai_model", "capabilities": ["analysis"], "max_concurrency": 3});
    let (hidden, _) = app.register_agent(register("edited-quietly")).await;
    let (seen, _) = app.register_agent(register("edited-loudly")).await;
    app.sqlite(
        "UPDATE agents SET max_concurrency = 77, updated_at = '2000-01-01T00:00:00+00:00'
           WHERE name = 'edited-quietly';
         UPDATE agents SET max_concurrency = 88, updated_at = '2999-01-01T00:00:00+00:00'
           WHERE name = 'edited-loudly';",
    )
    .await;
    // Once the loud edit shows, the directory has pulled since both edits.
    wait_for("the incremental pull", Duration::from_secs(10), || async {
        match concurrency(&app, &seen).await {
            v if v == 88 => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    (app, hidden)
}

#[tokio::test]
async fn the_agent_directory_is_read_again_in_full_every_cache_ttl() {
    let (app, hidden) = edit_behind_the_directory("3600").await;
    assert_eq!(
        concurrency(&app, &hidden).await,
        3,
        "within the TTL, the quiet edit is not seen"
    );
    let (app, hidden) = edit_behind_the_directory("1").await;
    wait_for("the full re-read", Duration::from_secs(10), || async {
        match concurrency(&app, &hidden).await {
            v if v == 77 => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
}
