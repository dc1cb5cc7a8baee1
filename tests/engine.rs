//! The task engine: lifecycle transitions, batches, agents claiming and reporting, assignment,
//! queue pause and counts, large backlogs, and nothing lost when workers die.

use std::{collections::HashSet, time::Duration};

use serde_json::{Value, json};

use crate::helpers::{
    App, Mode,
    soak::{self, Soak},
    wait_for,
};

async fn status_of(app: &App, id: &str) -> Value {
    let (s, b) = app.admin("GET", &format!("/api/v1/tasks/{id}"), None).await;
    assert_eq!(s, 200, "{b}");
    b["data"].clone()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_retry_and_illegal_transitions() {
    let app = App::start(Mode::SingleNode).await;

    // Scheduled for later → cancelled at once.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let t = app
        .create_task(json!({"type": "generic", "payload": {}, "run_at": later}))
        .await;
    assert_eq!(t["status"], "scheduled");
    let (s, b) = app
        .admin("POST", &format!("/api/v1/tasks/{}/cancel", id(&t)), None)
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["status"], "cancelled");
    let (s, b) = app
        .admin("POST", &format!("/api/v1/tasks/{}/cancel", id(&t)), None)
        .await;
    assert_eq!(s, 409, "cancelling a cancelled task: {b}");
    assert_eq!(b["error"]["details"]["current_status"], "cancelled");

    // Running → the worker learns it and stops.
    let t = app
        .create_task(json!({"type": "generic", "payload": {"sleep_ms": 30000}}))
        .await;
    app.wait_status(&id(&t), "running", Duration::from_secs(15))
        .await;
    let (s, b) = app
        .admin("POST", &format!("/api/v1/tasks/{}/cancel", id(&t)), None)
        .await;
    assert_eq!(s, 200, "{b}");
    app.wait_status(&id(&t), "cancelled", Duration::from_secs(10))
        .await;

    // Dead → retry → runs again with a fresh attempt budget.
    let t = app
        .create_task(json!({"type": "generic", "payload": {"fail": true}, "max_attempts": 1}))
        .await;
    app.wait_status(&id(&t), "dead", Duration::from_secs(15))
        .await;
    let (s, b) = app
        .admin("POST", &format!("/api/v1/tasks/{}/retry", id(&t)), None)
        .await;
    assert_eq!(s, 200, "{b}");
    let dead_again = app
        .wait_status(&id(&t), "dead", Duration::from_secs(15))
        .await;
    assert_eq!(dead_again["attempt"], 1, "attempts start over on a retry");
    let ok = app
        .create_task(json!({"type": "generic", "payload": {}}))
        .await;
    let done = app
        .wait_status(&id(&ok), "completed", Duration::from_secs(15))
        .await;
    let (s, b) = app
        .admin("POST", &format!("/api/v1/tasks/{}/retry", id(&done)), None)
        .await;
    assert_eq!(s, 409, "only dead or cancelled tasks are re-driven: {b}");
    let (s, _) = app
        .admin("POST", &format!("/api/v1/tasks/{}/cancel", id(&done)), None)
        .await;
    assert_eq!(s, 409);

    // Retries back off: a failing task with three attempts ends dead after three.
    let t = app
        .create_task(json!({"type": "generic", "payload": {"fail": true}, "max_attempts": 2}))
        .await;
    let dead = app
        .wait_status(&id(&t), "dead", Duration::from_secs(30))
        .await;
    assert_eq!(dead["attempt"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_accept_valid_items_and_reject_others_by_index() {
    let app = App::start(Mode::SingleNode).await;
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/tasks/batch",
            Some(json!({"tasks": [
                {"type": "generic", "payload": {"n": 0}},
                {"type": "generic", "payload": {"n": 1}, "priority": "urgent"},
                {"type": "generic", "payload": {"n": 2}, "priority": "high"},
                {"type": "generic"},
                {"type": "generic", "payload": {"n": 4}, "max_attempts": 0},
            ]})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["data"]["accepted"], 2);
    let rejected: Vec<(u64, String)> = b["data"]["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["error"]["field"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        [
            (1, "priority".to_string()),
            (3, "payload".to_string()),
            (4, "max_attempts".to_string())
        ]
    );
    let ids: Vec<String> = b["data"]["task_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let first = app
        .wait_status(&ids[0], "completed", Duration::from_secs(15))
        .await;
    assert_eq!(first["priority"], "low", "batch items default to low");
    let second = app
        .wait_status(&ids[1], "completed", Duration::from_secs(15))
        .await;
    assert_eq!(second["priority"], "high");

    let too_many: Vec<Value> = (0..10_001)
        .map(|_| json!({"type": "generic", "payload": {}}))
        .collect();
    let r = app
        .http
        .post(format!("{}/api/v1/tasks/batch", app.base))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body(json!({"tasks": too_many}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
}

async fn register_agent(app: &App, name: &str, caps: Value) -> (String, String) {
    app.register_agent(
        json!({"name": name, "type": "external_api", "capabilities": caps, "max_concurrency": 4}),
    )
    .await
}

async fn agent_flow(mode: Mode) {
    let app = App::start(mode).await;
    // Capabilities of the test's own, so the built-in workers never take these tasks.
    for name in ["sentiment", "tone", "translation"] {
        app.define_capability(name).await;
    }
    let (agent, key) = register_agent(&app, "analyst", json!(["sentiment", "tone"])).await;
    let (_, other_key) = register_agent(&app, "other", json!(["translation"])).await;

    // Nothing to claim yet: 204 after the wait.
    let (s, _) = app.claim(&agent, &key, 200).await;
    assert_eq!(s, 204);
    let (s, _) = app.claim(&agent, &key, 40000).await;
    assert_eq!(s, 422);

    // A long poll is answered as soon as a task for the agent's capabilities appears.
    let claim = {
        let app_base = app.base.clone();
        let http = app.http.clone();
        let key = key.clone();
        let agent = agent.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = http
                .post(format!(
                    "{app_base}/api/v1/agents/{agent}/tasks/claim?wait_ms=20000"
                ))
                .header("authorization", format!("Agent {key}"))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
                started.elapsed(),
            )
        })
    };
    // Time for the long poll to reach the server and wait: nothing outside the server shows that
    // it waits, and the answer must be the task either way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = app
        .create_task(json!({"type": "analysis", "required_capabilities": ["sentiment", "tone"], "payload": {"q": 1}}))
        .await;
    let (s, claimed, waited) = claim.await.unwrap();
    assert_eq!(s, 200, "{claimed}");
    assert_eq!(claimed["data"]["id"], t["id"]);
    assert_eq!(claimed["data"]["status"], "running");
    assert!(
        waited < Duration::from_secs(10),
        "answered when the task arrived, not at the deadline"
    );

    // Only the holder reports; progress, then completion; a repeat is harmless; after that, 409.
    let tid = id(&t);
    let (s, _) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{tid}/progress"),
            &other_key,
            Some(json!({"progress": 5})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .admin(
            "POST",
            &format!("/api/v1/tasks/{tid}/progress"),
            Some(json!({"progress": 5})),
        )
        .await;
    assert_eq!(s, 403, "users do not report progress");
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{tid}/progress"),
            &key,
            Some(json!({"progress": 40, "message": "halfway"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(status_of(&app, &tid).await["progress"], 40);
    let (s, _) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{tid}/progress"),
            &key,
            Some(json!({"progress": 140})),
        )
        .await;
    assert_eq!(s, 422);
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{tid}/complete"),
            &key,
            Some(json!({"result": {"answer": 42}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{tid}/complete"),
            &key,
            Some(json!({"result": {"answer": 42}})),
        )
        .await;
    assert_eq!(s, 200, "repeating the completion is harmless: {b}");
    assert_eq!(b["data"]["result"]["answer"], 42);
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{tid}/fail"),
            &key,
            Some(json!({"error": "late", "retryable": true})),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["details"]["current_status"], "completed");
    let (s, _) = app
        .as_agent("GET", &format!("/api/v1/tasks/{tid}"), &other_key, None)
        .await;
    assert_eq!(s, 403, "an agent sees only tasks routed to it");

    // A task needing a capability the agent lacks is not claimed by it.
    let foreign = app
        .create_task(json!({"type": "analysis", "required_capabilities": ["sentiment", "translation"], "payload": {}}))
        .await;
    let (s, _) = app.claim(&agent, &key, 300).await;
    assert_eq!(s, 204);
    assert_eq!(status_of(&app, &id(&foreign)).await["status"], "pending");

    // Explicit assignment routes to the agent; it claims it; a failure is retried, then dead.
    let t = app
        .create_task(json!({"type": "validation", "required_capabilities": ["tone"], "payload": {}, "max_attempts": 1}))
        .await;
    let (s, b) = app
        .admin(
            "POST",
            &format!("/api/v1/tasks/{}/assign", id(&t)),
            Some(json!({"criteria": {"capabilities": ["tone"]}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["agent_id"], agent.as_str());
    assert_eq!(b["data"]["status"], "assigned");
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/agents/{agent}/tasks/claim"),
            &key,
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["id"], t["id"]);
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{}/fail", id(&t)),
            &key,
            Some(json!({"error": "model refused", "retryable": true})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["status"], "dead", "no attempts left");

    // Cancelling a running agent task: the agent learns at its next progress report.
    let t = app
        .create_task(
            json!({"type": "validation", "required_capabilities": ["tone"], "payload": {}}),
        )
        .await;
    let (s, _) = app
        .admin(
            "POST",
            &format!("/api/v1/tasks/{}/assign", id(&t)),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .as_agent(
            "POST",
            &format!("/api/v1/agents/{agent}/tasks/claim"),
            &key,
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = app
        .admin("POST", &format!("/api/v1/tasks/{}/cancel", id(&t)), None)
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{}/progress", id(&t)),
            &key,
            Some(json!({"progress": 10})),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["code"], "task_cancelled");
    assert_eq!(status_of(&app, &id(&t)).await["status"], "cancelled");

    // No agent fits → 409 no_suitable_agent.
    let t = app
        .create_task(
            json!({"type": "generic", "required_capabilities": ["summarization"], "payload": {}}),
        )
        .await;
    let (s, b) = app
        .admin(
            "POST",
            &format!("/api/v1/tasks/{}/assign", id(&t)),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["code"], "no_suitable_agent");
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_claim_report_and_get_assigned_single_node() {
    agent_flow(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_claim_report_and_get_assigned_distributed() {
    agent_flow(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_queues_hold_tasks_until_resumed() {
    let app = App::start(Mode::SingleNode).await;
    let (s, b) = app
        .admin("POST", "/api/v1/queues/mcp:generic/pause", None)
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["paused"], true);
    let t = app
        .create_task(json!({"type": "generic", "priority": "critical", "payload": {}}))
        .await;
    // Queued after it on another queue, left to the dispatcher, and dispatched: the dispatcher
    // has passed the paused queue by since the task was created.
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/tasks/batch",
            Some(json!({"tasks": [{"type": "generic", "required_capabilities": ["stage_export"], "payload": {}}]})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let later = b["data"]["task_ids"][0].as_str().unwrap().to_string();
    wait_for(
        "a task queued later on another queue to be dispatched",
        Duration::from_secs(15),
        async || {
            let now = status_of(&app, &later).await;
            if now["status"] == "pending" {
                Err(now.to_string())
            } else {
                Ok(())
            }
        },
    )
    .await;
    assert_eq!(status_of(&app, &id(&t)).await["status"], "pending");
    let (_, queues) = app.admin("GET", "/api/v1/queues", None).await;
    let generic = queues["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["capability"] == "generic")
        .unwrap()
        .clone();
    assert_eq!(generic["paused"], true);
    assert_eq!(generic["pending"]["critical"], 1, "{generic}");
    let (s, _) = app
        .admin("POST", "/api/v1/queues/generic/resume", None)
        .await;
    assert_eq!(s, 200);
    app.wait_status(&id(&t), "completed", Duration::from_secs(15))
        .await;
    let (_, queues) = app.admin("GET", "/api/v1/queues", None).await;
    let generic = queues["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["capability"] == "generic")
        .unwrap()
        .clone();
    assert_eq!(generic["processed_total"], 1, "{generic}");
    let (s, _) = app
        .admin("POST", "/api/v1/queues/Bad%20Name/pause", None)
        .await;
    assert_eq!(s, 404);
}

/// 20,000 due tasks at once: apalis-redis alone stops fetching past ~8,000 due jobs; the
/// dispatcher keeps each queue's backlog bounded, so all of them run.
#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_due_tasks_drain() {
    let app = App::start(Mode::Distributed).await;
    let mut all = Vec::new();
    for chunk in 0..2 {
        let tasks: Vec<Value> = (0..10_000)
            .map(|i| json!({"type": "generic", "payload": {"c": chunk, "i": i}}))
            .collect();
        let (s, b) = app
            .admin("POST", "/api/v1/tasks/batch", Some(json!({"tasks": tasks})))
            .await;
        assert_eq!(s, 202, "{}", b["error"]);
        assert_eq!(b["data"]["accepted"], 10_000);
        all.extend(
            b["data"]["task_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
    }
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 20_000);
    wait_for(
        "20,000 tasks to complete",
        Duration::from_secs(600),
        || async {
            let (_, q) = app.admin("GET", "/api/v1/queues", None).await;
            let g = q["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["capability"] == "generic")
                .cloned()
                .unwrap_or_default();
            if g["processed_total"] == 20_000 {
                Ok(())
            } else {
                Err(g.to_string())
            }
        },
    )
    .await;
}

/// Workers SIGKILLed and restarted mid-run: every task completes, none is lost, none runs to
/// completion twice (the completion is a conditional update).
#[tokio::test(flavor = "multi_thread")]
async fn killing_workers_loses_nothing() {
    let mut app = App::start_with(
        Mode::Distributed,
        &[
            ("MCP_AGENT_HEARTBEAT_MS", "200"),
            ("MCP_AGENT_STALE_AFTER_MISSED", "3"),
            ("MCP_WORKER_HEARTBEAT_MS", "1000"),
            ("MCP_REDELIVER_AFTER_MS", "3000"),
        ],
    )
    .await;
    app.start_worker(&[]);
    let tasks: Vec<Value> = (0..2000)
        .map(
            |i| json!({"type": "generic", "payload": {"i": i, "sleep_ms": 20}, "max_attempts": 10}),
        )
        .collect();
    let (s, b) = app
        .admin("POST", "/api/v1/tasks/batch", Some(json!({"tasks": tasks})))
        .await;
    assert_eq!(s, 202, "{}", b["error"]);
    for round in 0..3 {
        // Let some work happen, then kill a worker mid-task and start a fresh one.
        let before = app.processed("generic").await;
        wait_for(
            "progress before the kill",
            Duration::from_secs(60),
            || async {
                let now = app.processed("generic").await;
                if now > before + 100 || now >= 2000 {
                    Ok(())
                } else {
                    Err(format!("{now}"))
                }
            },
        )
        .await;
        app.kill_worker();
        app.start_worker(&[]);
        eprintln!(
            "round {round}: killed and restarted a worker at {} processed",
            app.processed("generic").await
        );
    }
    wait_for("all 2,000 tasks to complete", Duration::from_secs(300), || async {
        let n = app.processed("generic").await;
        if n == 2000 {
            return Ok(());
        }
        let stuck = app.sql(
            "SELECT status, attempt, enqueued_at IS NOT NULL, run_at, lease_expires_at, agent_id, error \
             FROM tasks WHERE status <> 'completed' LIMIT 5",
        );
        Err(format!("{n} processed; not completed: {stuck}"))
    })
    .await;
    let (_, list) = app
        .admin("GET", "/api/v1/tasks?status=completed&limit=1000", None)
        .await;
    for t in list["data"].as_array().unwrap() {
        assert_eq!(
            t["result"]["i"], t["payload"]["i"],
            "each result belongs to its task"
        );
    }
    assert_eq!(app.worker_count(), 2);
}

/// One execution slot, a backlog of low tasks, then a critical one: the critical task runs next,
/// not after the backlog.
#[tokio::test(flavor = "multi_thread")]
async fn critical_work_overtakes_a_low_backlog() {
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("MCP_WORKER_CONCURRENCY", "1"),
            ("MCP_STARVATION_MS", "60000"),
        ],
    )
    .await;
    let low: Vec<Value> = (0..40)
        .map(|i| json!({"type": "generic", "payload": {"i": i, "sleep_ms": 50}}))
        .collect();
    let (s, b) = app
        .admin("POST", "/api/v1/tasks/batch", Some(json!({"tasks": low})))
        .await;
    assert_eq!(s, 202, "{b}");
    // Let the backlog start moving.
    wait_for(
        "the low backlog to start",
        Duration::from_secs(15),
        || async {
            let (_, l) = app
                .admin("GET", "/api/v1/tasks?status=completed&limit=1", None)
                .await;
            if l["count"].as_u64() == Some(1) {
                Ok(())
            } else {
                Err(l.to_string())
            }
        },
    )
    .await;
    let critical = app
        .create_task(
            json!({"type": "generic", "priority": "critical", "payload": {"urgent": true}}),
        )
        .await;
    app.wait_status(&id(&critical), "completed", Duration::from_secs(15))
        .await;
    let (_, q) = app.admin("GET", "/api/v1/queues", None).await;
    let generic = q["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["capability"] == "generic")
        .unwrap()
        .clone();
    let low_left = generic["pending"]["low"].as_i64().unwrap();
    assert!(
        low_left >= 20,
        "the critical task did not wait for the low backlog: {generic}"
    );
}

/// Redis (append-only) restarted in the middle of a run: the queue, the workers and the event
/// reader reconnect, and every task still completes.
#[tokio::test(flavor = "multi_thread")]
async fn restarting_redis_mid_run_loses_nothing() {
    redis_lost_mid_run(false).await;
}

/// Redis SIGKILLed and started again empty (its machine lost): the task rows are the record, so
/// every job it held is pushed again and every task still completes.
#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_empty_mid_run_loses_nothing() {
    redis_lost_mid_run(true).await;
}

async fn redis_lost_mid_run(empty: bool) {
    let mut app = App::start(Mode::Distributed).await;
    let tasks: Vec<Value> = (0..1000)
        .map(|i| json!({"type": "generic", "payload": {"i": i, "sleep_ms": 5}}))
        .collect();
    let (s, b) = app
        .admin("POST", "/api/v1/tasks/batch", Some(json!({"tasks": tasks})))
        .await;
    assert_eq!(s, 202, "{}", b["error"]);
    wait_for("some progress", Duration::from_secs(60), || async {
        let n = app.processed("generic").await;
        if n >= 100 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    let redis = app.redis.as_mut().unwrap();
    redis.stop();
    if empty {
        redis.wipe();
    }
    redis.spawn();
    wait_for(
        "all 1,000 tasks to complete after the restart",
        Duration::from_secs(240),
        || async {
            let n = app.processed("generic").await;
            if n == 1000 {
                Ok(())
            } else {
                Err(format!("{n} processed"))
            }
        },
    )
    .await;
    let (_, list) = app
        .admin("GET", "/api/v1/tasks?status=dead&limit=1", None)
        .await;
    assert_eq!(list["count"], 0, "no task died of the loss: {list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_tasks_wait_for_their_time() {
    let app = App::start(Mode::SingleNode).await;
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let t = app
        .create_task(json!({"type": "generic", "payload": {}, "run_at": at}))
        .await;
    assert_eq!(t["status"], "scheduled");
    let done = app
        .wait_status(&id(&t), "completed", Duration::from_secs(20))
        .await;
    let (_, st) = app
        .admin("GET", &format!("/api/v1/tasks/{}/status", id(&t)), None)
        .await;
    assert_eq!(st["data"]["status"], "completed");
    let finished =
        chrono::DateTime::parse_from_rfc3339(done["updated_at"].as_str().unwrap()).unwrap();
    assert!(finished >= at, "ran at {finished}, scheduled for {at}");
}

/// A task that crashes its worker process every time is counted on each start and ends dead;
/// it does not loop forever, and the workers that replace the crashed ones go on working.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_crashes_its_worker_ends_dead() {
    let mut app = App::start_with(
        Mode::Distributed,
        &[
            ("MCP_ENABLE_TEST_HOOKS", "1"),
            ("MCP_AGENT_HEARTBEAT_MS", "300"),
            ("MCP_WORKER_HEARTBEAT_MS", "1000"),
        ],
    )
    .await;
    let t = app
        .create_task(json!({"type": "generic", "payload": {"crash": true}, "max_attempts": 2}))
        .await;
    let mut crashes = 0;
    let dead = wait_for(
        "the crashing task to be dead",
        Duration::from_secs(90),
        async || {
            crashes += app.revive_workers();
            let now = status_of(&app, &id(&t)).await;
            if now["status"] == "dead" {
                Ok(now)
            } else {
                Err(format!("{now} after {crashes} crashes"))
            }
        },
    )
    .await;
    assert_eq!(dead["attempt"], 2, "{dead}");
    assert!(crashes >= 2, "each attempt crashed a worker ({crashes})");
    let ok = app
        .create_task(json!({"type": "generic", "payload": {"after": "crashes"}}))
        .await;
    app.revive_workers();
    app.wait_status(&id(&ok), "completed", Duration::from_secs(30))
        .await;
}

/// A task needing several capabilities runs only on a worker that has them all.
#[tokio::test(flavor = "multi_thread")]
async fn multi_capability_tasks_go_only_to_workers_with_all_of_them() {
    let mut app = App::start(Mode::Distributed).await; // its worker serves the built-in types
    let both = app
        .create_task(json!({"type": "generic", "required_capabilities": ["generic", "sentiment"], "payload": {}}))
        .await;
    // A plain task submitted after it completes on the generic worker; the combined one is left.
    let plain = app
        .create_task(json!({"type": "generic", "payload": {}}))
        .await;
    app.wait_status(&id(&plain), "completed", Duration::from_secs(15))
        .await;
    let waiting = status_of(&app, &id(&both)).await;
    assert_eq!(waiting["status"], "pending", "{waiting}");
    app.start_worker(&["--capabilities", "generic,sentiment"]);
    let done = app
        .wait_status(&id(&both), "completed", Duration::from_secs(20))
        .await;
    let (_, agent) = app
        .admin(
            "GET",
            &format!("/api/v1/agents/{}", done["agent_id"].as_str().unwrap()),
            None,
        )
        .await;
    let caps: Vec<&str> = agent["data"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        caps.contains(&"sentiment") && caps.contains(&"generic"),
        "{agent}"
    );
}

/// A task already queued for the built-in workers and then assigned to an agent runs on that
/// agent: the worker that later receives its job leaves it alone.
#[tokio::test(flavor = "multi_thread")]
async fn an_assigned_task_is_not_taken_by_a_worker() {
    let app = App::start_with(Mode::SingleNode, &[("MCP_WORKER_CONCURRENCY", "1")]).await;
    let (agent, key) = register_agent(&app, "specialist", json!(["generic"])).await;
    let busy = app
        .create_task(json!({"type": "generic", "payload": {"sleep_ms": 1500}}))
        .await;
    app.wait_status(&id(&busy), "running", Duration::from_secs(15))
        .await;
    // Queued behind the busy one, then routed to the agent.
    let queued = app
        .create_task(json!({"type": "generic", "payload": {"for": "agent"}}))
        .await;
    let (s, b) = app
        .admin(
            "POST",
            &format!("/api/v1/tasks/{}/assign", id(&queued)),
            Some(json!({"criteria": {"agent_id": agent}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    app.wait_status(&id(&busy), "completed", Duration::from_secs(15))
        .await;
    // The worker is free and has had the job; the task is still waiting for its agent.
    let other = app
        .create_task(json!({"type": "generic", "payload": {}}))
        .await;
    app.wait_status(&id(&other), "completed", Duration::from_secs(15))
        .await;
    assert_eq!(status_of(&app, &id(&queued)).await["status"], "assigned");
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/agents/{agent}/tasks/claim"),
            &key,
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["id"], queued["id"]);
}

/// An attempt that fails after a cancel was requested ends the task cancelled, not retried.
#[tokio::test(flavor = "multi_thread")]
async fn a_failure_after_a_cancel_request_ends_cancelled() {
    let app = App::start(Mode::SingleNode).await;
    app.define_capability("moderation").await;
    let (agent, key) = register_agent(&app, "canceller", json!(["moderation"])).await;
    let t = app
        .create_task(json!({"type": "validation", "required_capabilities": ["moderation"], "payload": {}, "max_attempts": 5}))
        .await;
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/agents/{agent}/tasks/claim"),
            &key,
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = app
        .admin("POST", &format!("/api/v1/tasks/{}/cancel", id(&t)), None)
        .await;
    assert_eq!(s, 200);
    let (s, b) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{}/fail", id(&t)),
            &key,
            Some(json!({"error": "boom", "retryable": true})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["status"], "cancelled");
}

/// Two API processes and three worker processes, one of each SIGKILLed and started again every
/// 3 s, while 20,000 tasks of all tiers go through: every task completes exactly once (one
/// completed row within its attempts, one `task.completed` event). The benchmark runs the same
/// soak with 200,000 tasks.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_killed_again_and_again_completes_every_task_exactly_once() {
    let report = soak::run(Soak {
        tasks: 20_000,
        rate: 2_000.0,
        kill_every: Duration::from_secs(3),
        durable: false,
    })
    .await;
    eprintln!(
        "soak: {:.1} s, created → completed p50 {:.0} ms p99 {:.0} ms, {} retried",
        report.elapsed.as_secs_f64(),
        report.p50_ms,
        report.p99_ms,
        report.retried
    );
    assert!(
        report.worker_kills >= 2 && report.api_kills >= 2,
        "the processes were killed while work went on: {report:?}"
    );
}
