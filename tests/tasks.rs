//! The task path end to end, in both run modes: HTTP create → queue → worker → completed row →
//! event on the bus → status endpoint and WebSocket.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::helpers::{App, Mode, ws::next_of_type};

async fn runs_a_task_end_to_end(mode: Mode) {
    let app = App::start(mode).await;

    // A task that takes a moment, so the WebSocket subscriber is connected before it finishes.
    let task = app
        .create_task(
            json!({"type": "generic", "priority": "high", "payload": {"sleep_ms": 400, "n": 7}}),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(task["status"], "pending");
    assert_eq!(task["priority"], "high");

    let url = app.ws_url(&format!("/ws/tasks/{id}?token={}", app.admin_token));
    let (mut ws, _) = connect_async(url).await.expect("websocket connects");
    let (completed, before) =
        next_of_type(&mut ws, "task.completed", Duration::from_secs(15)).await;
    assert_eq!(
        before.first().map(|v| v["type"].clone()),
        Some(json!("snapshot"))
    );
    assert_eq!(completed["data"]["task_id"], id.as_str());
    assert_eq!(completed["data"]["result"]["n"], 7);
    assert!(
        completed["id"].as_str().is_some_and(|s| !s.is_empty()),
        "events carry an id"
    );

    let (status, body) = app
        .admin("GET", &format!("/api/v1/tasks/{id}/status"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "completed");
    assert_eq!(body["data"]["progress"], 100);
    assert_eq!(body["data"]["attempt"], 1);

    // Every tier has a queue and a worker.
    let mut ids = Vec::new();
    for priority in ["critical", "high", "medium", "low"] {
        let t = app
            .create_task(
                json!({"type": "generic", "priority": priority, "payload": {"p": priority}}),
            )
            .await;
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let done = app
            .wait_status(id, "completed", Duration::from_secs(15))
            .await;
        assert_eq!(done["result"], done["payload"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn single_node_runs_a_task_end_to_end() {
    runs_a_task_end_to_end(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_runs_a_task_end_to_end() {
    runs_a_task_end_to_end(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_replays_and_conflicts() {
    let app = App::start(Mode::SingleNode).await;
    let body = json!({"type": "generic", "payload": {"a": 1}, "idempotency_key": "order-42"});
    let (s1, first) = app.admin("POST", "/api/v1/tasks", Some(body.clone())).await;
    let (s2, second) = app.admin("POST", "/api/v1/tasks", Some(body)).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(first["data"]["id"], second["data"]["id"]);
    let (s3, conflict) = app
        .admin(
            "POST",
            "/api/v1/tasks",
            Some(json!({"type": "generic", "payload": {"a": 2}, "idempotency_key": "order-42"})),
        )
        .await;
    assert_eq!(s3, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_key_reused");
    let (_, list) = app.admin("GET", "/api/v1/tasks?limit=10", None).await;
    assert_eq!(list["count"], 1, "no second task was created: {list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_task_ends_dead_after_its_attempts() {
    let app = App::start(Mode::SingleNode).await;
    let t = app
        .create_task(json!({"type": "generic", "payload": {"fail": true}, "max_attempts": 1}))
        .await;
    let dead = app
        .wait_status(t["id"].as_str().unwrap(), "dead", Duration::from_secs(15))
        .await;
    assert_eq!(dead["attempt"], 1);
    assert!(dead["error"].as_str().unwrap().contains("fail"));
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_pages_with_a_cursor() {
    let app = App::start(Mode::SingleNode).await;
    for i in 0..5 {
        app.create_task(json!({"type": "generic", "payload": {"i": i}}))
            .await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = app
            .admin(
                "GET",
                &format!("/api/v1/tasks?limit=2&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        for t in page["data"].as_array().unwrap() {
            seen.push(t["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), 5, "no task appears twice across pages");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_rejects_bad_credentials_with_4401() {
    let app = App::start(Mode::SingleNode).await;
    let t = app
        .create_task(json!({"type": "generic", "payload": {}}))
        .await;
    let url = app.ws_url(&format!(
        "/ws/tasks/{}?token=not-a-token",
        t["id"].as_str().unwrap()
    ));
    let (mut ws, _) = connect_async(url).await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a close frame within 5 s");
    match code {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4401),
        other => panic!("expected close 4401, got {other:?}"),
    }
}

/// The named channels are real routes (not captured by `/ws/tasks/{id}`), and carry their events.
#[tokio::test(flavor = "multi_thread")]
async fn named_channels_carry_their_events() {
    let app = App::start(Mode::SingleNode).await;
    let connect =
        |path: &str| connect_async(app.ws_url(&format!("{path}?token={}", app.admin_token)));
    let (mut tasks, _) = connect("/ws/tasks/progress").await.unwrap();
    let (mut system, _) = connect("/ws/system/events").await.unwrap();
    let (mut agents, _) = connect("/ws/agents/status").await.unwrap();
    for ws in [&mut tasks, &mut system, &mut agents] {
        let (snapshot, _) = next_of_type(ws, "snapshot", Duration::from_secs(5)).await;
        assert!(snapshot["data"].is_object());
    }
    let t = app
        .create_task(json!({"type": "generic", "payload": {"k": 1}}))
        .await;
    let (done, before) = next_of_type(&mut tasks, "task.completed", Duration::from_secs(15)).await;
    assert_eq!(done["data"]["task_id"], t["id"]);
    assert!(
        before.iter().any(|e| e["type"] == "task.created"),
        "{before:?}"
    );
    let (done, _) = next_of_type(&mut system, "task.completed", Duration::from_secs(15)).await;
    assert_eq!(done["data"]["task_id"], t["id"]);
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/agents/register",
            Some(json!({"name": "a1", "type": "validation", "capabilities": ["validation"]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (reg, _) = next_of_type(&mut agents, "agent.registered", Duration::from_secs(15)).await;
    assert_eq!(reg["data"]["name"], "a1");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_is_the_creators_alone() {
    let app = App::start(Mode::SingleNode).await;
    app.create_user_cli("other-op", "other-op-password-1", "operator");
    let other = app.login("other-op", "other-op-password-1").await;
    let body = |ssn: &str| {
        json!({"type": "generic", "payload": {"ssn": ssn, "run": false}, "sensitive_fields": ["/ssn"],
               "idempotency_key": "visit-2026-12-07", "run_at": "2099-01-01T00:00:00Z"})
    };
    let (s, b) = app
        .admin("POST", "/api/v1/tasks", Some(body("078-05-1120")))
        .await;
    assert_eq!(s, 201, "{b}");
    let id = b["data"]["id"].clone();
    // The creator replays it.
    let (s, b) = app
        .admin("POST", "/api/v1/tasks", Some(body("078-05-1120")))
        .await;
    assert_eq!((s, &b["data"]["id"]), (200, &id), "{b}");
    // Someone else gets one answer whether the guess is right or wrong, and never the task.
    let mut answers = Vec::new();
    for guess in ["078-05-1120", "000-00-0000"] {
        let (s, b) = app
            .call("POST", "/api/v1/tasks", Some(&other), Some(body(guess)))
            .await;
        assert_eq!(s, 409, "{b}");
        assert_eq!(b["error"]["code"], "idempotency_key_reused");
        assert!(!b.to_string().contains(id.as_str().unwrap()), "{b}");
        answers.push(b["error"].clone());
    }
    assert_eq!(answers[0], answers[1], "a replay is no oracle");
}
