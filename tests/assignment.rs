//! Assignment cannot strand work: `POST /tasks/{id}/assign` never picks a built-in worker (they
//! take work from their queues only), and an assignment the agent does not claim within
//! `AGENT_ASSIGNMENT_TIMEOUT` goes back to the queue with an event, a metric and an audit record.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;

use crate::helpers::{App, Mode, wait::receive_until, wait_for};

/// Waits until a built-in worker has registered as an agent serving `generic`.
async fn builtin_worker_registered(app: &App) {
    wait_for(
        "a built-in worker agent",
        Duration::from_secs(30),
        || async {
            let (_, b) = app
                .admin("GET", "/api/v1/agents/discover?capability=generic", None)
                .await;
            let found = b["data"].as_array().cloned().unwrap_or_default();
            if found
                .iter()
                .any(|a| a["metadata"]["kind"] == "builtin_worker")
            {
                Ok(())
            } else {
                Err(b.to_string())
            }
        },
    )
    .await;
}

async fn never_assigned_to_a_builtin_worker(mode: Mode) {
    let app = App::start(mode).await;
    builtin_worker_registered(&app).await;
    // Scheduled an hour ahead, so the worker does not simply run it first.
    let run_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let task = app
        .create_task(json!({"type": "generic", "payload": {}, "run_at": run_at}))
        .await;
    let (s, b) = app
        .admin(
            "POST",
            &format!("/api/v1/tasks/{}/assign", task["id"].as_str().unwrap()),
            Some(json!({"criteria": {}})),
        )
        .await;
    assert_eq!(s, 409, "only a built-in worker has `generic`: {b}");
    assert_eq!(b["error"]["code"], "no_suitable_agent", "{b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn assignment_never_picks_a_builtin_worker_single_node() {
    never_assigned_to_a_builtin_worker(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn assignment_never_picks_a_builtin_worker_distributed() {
    never_assigned_to_a_builtin_worker(Mode::Distributed).await;
}

async fn unclaimed_assignment_is_released(mode: Mode) {
    let app = App::start_with(mode, &[("AGENT_ASSIGNMENT_TIMEOUT", "1")]).await;
    // A capability of the test's own, so no built-in worker races the agents.
    app.define_capability("sentiment").await;
    let register = |name: &'static str| {
        app.register_agent(
            json!({"name": name, "type": "ai_model", "capabilities": ["sentiment"], "max_concurrency": 2}),
        )
    };
    let (idle, _) = register("idle-agent").await;
    let (busy, busy_key) = register("next-agent").await;
    let task = app
        .create_task(
            json!({"type": "generic", "required_capabilities": ["sentiment"], "payload": {"n": 1}}),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_string();
    let url = app.ws_url(&format!("/ws/tasks/{id}?token={}", app.admin_token));
    let (mut ws, _) = connect_async(url).await.expect("websocket connects");

    let (s, b) = app
        .admin(
            "POST",
            &format!("/api/v1/tasks/{id}/assign"),
            Some(json!({"criteria": {"agent_id": idle}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["agent_id"], idle.as_str());

    // The idle agent never claims: within the timeout (and a sweep) the task is back in its queue.
    let event = receive_until(
        "task.unassigned",
        Duration::from_secs(20),
        async || ws.next().await,
        |msg| {
            let text = msg.ok()?.into_text().ok()?;
            let v: Value = serde_json::from_str(&text).ok()?;
            (v["type"] == "task.unassigned").then_some(v)
        },
    )
    .await;
    assert_eq!(event["data"]["agent_id"], idle.as_str(), "{event}");
    assert_eq!(event["data"]["reason"], "assignment_timeout", "{event}");
    let (_, now) = app.admin("GET", &format!("/api/v1/tasks/{id}"), None).await;
    assert_eq!(now["data"]["status"], "pending", "{now}");
    assert!(now["data"]["agent_id"].is_null(), "{now}");

    // The next agent with the capability takes it from the queue.
    let (s, claimed) = app.claim(&busy, &busy_key, 10_000).await;
    assert_eq!(s, 200, "{claimed}");
    assert_eq!(claimed["data"]["id"], id.as_str());

    // The release is counted and audited.
    let scrape = app
        .send("GET", "/metrics", Some(&app.admin_token), None)
        .await
        .text()
        .await
        .unwrap();
    let expired = scrape
        .lines()
        .find_map(|l| l.strip_prefix("mcp_task_assignments_expired_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(expired, Some(1.0), "{scrape}");
    let (_, audit) = app
        .admin("GET", "/api/v1/audit?action=task.assignment_expired", None)
        .await;
    let records = audit["data"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{audit}");
    assert_eq!(records[0]["target"], id.as_str(), "{audit}");
    assert_eq!(records[0]["details"]["agent_id"], idle.as_str(), "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unclaimed_assignment_goes_back_to_the_queue_single_node() {
    unclaimed_assignment_is_released(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unclaimed_assignment_goes_back_to_the_queue_distributed() {
    unclaimed_assignment_is_released(Mode::Distributed).await;
}
