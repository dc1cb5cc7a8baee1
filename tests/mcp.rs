//! The Model Context Protocol entry point `/mcp`, driven by the official MCP Python SDK from
//! outside the project: the handshake, tools as each role sees them, durable MCP tasks followed
//! to the end, cancellation, refused and malformed calls, idempotent retries, resources and
//! prompts; in distributed mode, a pipeline started on one API replica and followed to its end
//! on another after the first is killed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    App, Mode,
    mcp::{one, session},
    synth, wait_for,
};

/// The tools an administrator sees: every one.
const ALL_TOOLS: &[&str] = &[
    "submit_task",
    "submit_batch",
    "get_task",
    "list_tasks",
    "cancel_task",
    "retry_task",
    "run_pipeline",
    "get_execution",
    "get_execution_report",
    "list_queues",
    "pause_queue",
    "resume_queue",
    "discover_agents",
    "get_agent_health",
    "system_health",
];

/// The read-only tools a viewer may call (task.read, pipeline.read, system.read,
/// agent.discover, agent.basic).
const VIEWER_TOOLS: &[&str] = &[
    "get_task",
    "list_tasks",
    "get_execution",
    "get_execution_report",
    "list_queues",
    "discover_agents",
    "get_agent_health",
    "system_health",
];

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn user(app: &App, role: &str) -> String {
    let username = format!("mcp-{role}");
    let password = format!("{role}-password-0123456789");
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": username, "password": password, "role": role})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    bearer(&app.login(&username, &password).await)
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut n: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    n.sort();
    n
}

/// The structured error of a tool error result.
fn tool_error(result: &Value) -> &Value {
    assert_eq!(result["is_error"], true, "a tool error: {result}");
    &result["structured"]["error"]
}

fn ok(result: &Value) -> &Value {
    assert_eq!(result["is_error"], false, "a tool success: {result}");
    &result["structured"]
}

async fn task_count(app: &App) -> usize {
    let (s, b) = app.admin("GET", "/api/v1/tasks?limit=1000", None).await;
    assert_eq!(s, 200, "{b}");
    b["data"].as_array().unwrap().len()
}

/// Whether REST lists the `generic` queue as paused.
async fn generic_paused(app: &App) -> Value {
    let (_, queues) = app.admin("GET", "/api/v1/queues", None).await;
    queues["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["capability"] == "generic")
        .map(|q| q["paused"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_single_node_tools_tasks_errors_and_roles() {
    let app = App::start(Mode::SingleNode).await;
    let admin = bearer(&app.admin_token);
    let viewer = user(&app, "viewer").await;

    // No credentials: refused before the protocol, with the REST envelope.
    let resp = app
        .http
        .post(format!("{}/mcp", app.base))
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");

    // The handshake, and tools as each role sees them.
    let listing = session(&app.base, &admin, json!([{"op": "tools"}])).await;
    assert_eq!(listing["protocol_version"], "2026-07-28", "{listing}");
    assert_eq!(names(&listing["results"][0]), sorted(ALL_TOOLS));
    let legacy = session(
        &app.base,
        &admin,
        json!({"mode": "legacy", "tasks": false, "steps": [{"op": "tools"}]}),
    )
    .await;
    assert_eq!(legacy["protocol_version"], "2025-11-25", "{legacy}");
    assert_eq!(names(&legacy["results"][0]), sorted(ALL_TOOLS));
    let seen_by_viewer = one(&app.base, &viewer, json!({"op": "tools"})).await;
    assert_eq!(names(&seen_by_viewer), sorted(VIEWER_TOOLS));

    // Argument schemas come from the REST request types.
    let schemas = one(&app.base, &admin, json!({"op": "tool_schemas"})).await;
    let submit = &schemas["submit_task"];
    assert_eq!(submit["type"], "object", "{submit}");
    for field in ["type", "priority", "payload", "idempotency_key", "wait"] {
        assert!(submit["properties"][field].is_object(), "{field}: {submit}");
    }
    assert!(
        schemas["run_pipeline"]["properties"]["records"].is_object(),
        "{schemas}"
    );

    // An unauthorised call is refused with the code REST uses, and creates nothing.
    let before = task_count(&app).await;
    let refused = one(
        &app.base,
        &viewer,
        json!({"op": "call", "tool": "submit_task",
               "args": {"type": "generic", "payload": {"n": 1}}}),
    )
    .await;
    assert_eq!(tool_error(&refused)["code"], "forbidden", "{refused}");

    // Malformed arguments never reach the engine: 422's code, naming the field.
    let malformed = one(
        &app.base,
        &admin,
        json!({"op": "call", "tool": "submit_task",
               "args": {"type": "generic", "priority": "urgent", "payload": {"n": 1}}}),
    )
    .await;
    let error = tool_error(&malformed);
    assert_eq!(error["code"], "validation_failed", "{malformed}");
    assert_eq!(error["details"]["field"], "priority", "{malformed}");
    let missing = one(
        &app.base,
        &admin,
        json!({"op": "call", "tool": "get_task", "args": {"task_id": "not-a-uuid"}}),
    )
    .await;
    assert_eq!(tool_error(&missing)["details"]["field"], "task_id");
    assert_eq!(task_count(&app).await, before, "nothing was created");

    // An unknown id answers not_found, as REST does.
    let unknown = one(
        &app.base,
        &admin,
        json!({"op": "call", "tool": "get_task",
               "args": {"task_id": "0192f5a0-0000-7000-8000-000000000000"}}),
    )
    .await;
    assert_eq!(tool_error(&unknown)["code"], "not_found", "{unknown}");

    // Submit with wait: a durable MCP task whose id is the task's; follow it to the end.
    let submitted = one(
        &app.base,
        &admin,
        json!({"op": "call_task", "tool": "submit_task",
               "args": {"type": "generic", "priority": "high",
                        "payload": {"hello": "mcp", "sleep_ms": 300}, "wait": true}}),
    )
    .await;
    let handle = &submitted["task"];
    assert_eq!(handle["resultType"], "task", "{submitted}");
    let task_id = handle["taskId"].as_str().unwrap().to_string();
    let (s, rest) = app
        .admin("GET", &format!("/api/v1/tasks/{task_id}"), None)
        .await;
    assert_eq!(s, 200, "the handle's id is the task's id: {rest}");
    // A new connection (a new client) follows it: nothing lives in the first one.
    let followed = one(
        &app.base,
        &admin,
        json!({"op": "follow", "id": task_id, "timeout": 60}),
    )
    .await;
    let last = &followed["final"];
    assert_eq!(last["status"], "completed", "{followed}");
    let result = &last["result"]["structuredContent"]["task"];
    assert_eq!(result["status"], "completed", "{followed}");
    assert_eq!(result["result"]["hello"], "mcp", "{followed}");

    // Idempotent retries: the same arguments without a key give the same task.
    let args = json!({"type": "generic", "payload": {"once": true}});
    let first = one(
        &app.base,
        &admin,
        json!({"op": "call", "tool": "submit_task", "args": args}),
    )
    .await;
    let again = one(
        &app.base,
        &admin,
        json!({"op": "call", "tool": "submit_task", "args": args}),
    )
    .await;
    let first_id = ok(&first)["task"]["id"].clone();
    assert!(first_id.is_string(), "{first}");
    assert_eq!(ok(&again)["task"]["id"], first_id, "{again}");
    // An explicit key reused with other arguments is refused with REST's code.
    let keyed = json!({"type": "generic", "payload": {"n": 1}, "idempotency_key": "mcp-k1"});
    ok(&one(
        &app.base,
        &admin,
        json!({"op": "call", "tool": "submit_task", "args": keyed}),
    )
    .await);
    let reused = one(
        &app.base,
        &admin,
        json!({"op": "call", "tool": "submit_task",
               "args": {"type": "generic", "payload": {"n": 2}, "idempotency_key": "mcp-k1"}}),
    )
    .await;
    assert_eq!(
        tool_error(&reused)["code"],
        "idempotency_key_reused",
        "{reused}"
    );

    // Cancel through the tasks extension: a task scheduled an hour ahead.
    let run_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let scheduled = one(
        &app.base,
        &admin,
        json!({"op": "call_task", "tool": "submit_task",
               "args": {"type": "generic", "payload": {"later": true}, "run_at": run_at,
                        "wait": true}}),
    )
    .await;
    let later = scheduled["task"]["taskId"].as_str().unwrap().to_string();
    assert_eq!(scheduled["task"]["status"], "working", "{scheduled}");
    let cancelled = session(
        &app.base,
        &admin,
        json!([{"op": "task_cancel", "id": later}, {"op": "follow", "id": later, "timeout": 30}]),
    )
    .await;
    assert_eq!(cancelled["results"][0], json!({}), "{cancelled}");
    assert_eq!(
        cancelled["results"][1]["final"]["status"], "cancelled",
        "{cancelled}"
    );
    app.wait_status(&later, "cancelled", Duration::from_secs(10))
        .await;
    // Cancelling again is harmless; a viewer may not.
    let again = one(&app.base, &admin, json!({"op": "task_cancel", "id": later})).await;
    assert_eq!(again, json!({}), "{again}");
    let by_viewer = one(
        &app.base,
        &viewer,
        json!({"op": "task_cancel", "id": later}),
    )
    .await;
    assert_eq!(
        by_viewer["error"]["data"]["code"], "forbidden",
        "{by_viewer}"
    );

    // A task whose attempts run out ends as a failed MCP task.
    let dying = one(
        &app.base,
        &admin,
        json!({"op": "call_task", "tool": "submit_task",
               "args": {"type": "generic", "payload": {"fail": true}, "max_attempts": 1,
                        "wait": true}}),
    )
    .await;
    let dead = dying["task"]["taskId"].as_str().unwrap().to_string();
    let followed = one(
        &app.base,
        &admin,
        json!({"op": "follow", "id": dead, "timeout": 60}),
    )
    .await;
    assert_eq!(followed["final"]["status"], "failed", "{followed}");
    app.wait_status(&dead, "dead", Duration::from_secs(10))
        .await;

    // Without the tasks extension, wait answers with the ended task.
    let waited = session(
        &app.base,
        &admin,
        json!({"tasks": false, "steps": [{"op": "call", "tool": "submit_task",
               "args": {"type": "generic", "payload": {"waited": true}, "wait": true,
                        "wait_timeout_ms": 60000}}]}),
    )
    .await;
    assert_eq!(
        ok(&waited["results"][0])["task"]["status"],
        "completed",
        "{waited}"
    );

    // Without the extension, a pipeline run with wait reports stage progress as it goes.
    let records: Vec<Value> = (0..30)
        .map(|i| json!({"question": format!("How do I keep a streak going, day {i}?"),
                        "answer": format!("Plan a small step for day {i} and write it down before bed.")}))
        .collect();
    let run = session(
        &app.base,
        &admin,
        json!({"tasks": false, "steps": [{"op": "call", "tool": "run_pipeline", "progress": true,
               "args": {"records": records, "wait": true, "wait_timeout_ms": 120000,
                        "options": {"shard_size": 10}}}]}),
    )
    .await;
    let run = &run["results"][0];
    assert_eq!(ok(run)["execution"]["status"], "completed", "{run}");
    let reports = run["progress"].as_array().unwrap();
    assert!(!reports.is_empty(), "progress notifications: {run}");
    let last = reports.last().unwrap();
    assert_eq!(last["progress"], 100.0, "{run}");
    assert!(
        reports
            .iter()
            .any(|r| r["message"].as_str().unwrap_or("").contains("stage")),
        "{run}"
    );

    // Resources and prompts.
    let res = session(
        &app.base,
        &viewer,
        json!([
            {"op": "templates"},
            {"op": "read", "uri": format!("task://{task_id}")},
            {"op": "resources"},
            {"op": "prompts"},
            {"op": "prompt", "name": "triage_dead_tasks", "args": {"limit": "5"}},
        ]),
    )
    .await;
    let r = &res["results"];
    assert_eq!(
        names(&r[0]),
        sorted(&[
            "task://{id}",
            "pipeline://{id}",
            "pipeline://{id}/report",
            "queue://{name}"
        ])
    );
    assert_eq!(r[1]["task"]["id"], task_id.as_str(), "{res}");
    assert_eq!(r[1]["task"]["status"], "completed", "{res}");
    assert!(
        names(&r[2]).contains(&"queue://mcp:generic".to_string()),
        "{res}"
    );
    assert_eq!(
        names(&r[3]),
        sorted(&["run_dataset_and_summarise", "triage_dead_tasks"])
    );
    assert!(r[4]["text"].as_str().unwrap().contains("limit 5"), "{res}");

    // Subscriptions: a task submitted while listening is reported updated, as is its queue.
    let scheduled_later = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let waiting = one(
        &app.base,
        &admin,
        json!({"op": "call", "tool": "submit_task",
               "args": {"type": "generic", "payload": {"watched": true},
                        "run_at": scheduled_later}}),
    )
    .await;
    let watched = ok(&waiting)["task"]["id"].as_str().unwrap().to_string();
    let listened = one(
        &app.base,
        &admin,
        json!({"op": "listen",
               "uris": [format!("task://{watched}"), "queue://mcp:generic", "nothing://x"],
               "then": [{"op": "call", "tool": "cancel_task", "args": {"task_id": watched}}],
               "timeout": 20}),
    )
    .await;
    assert_eq!(
        names(&listened["honored"]),
        sorted(&["queue://mcp:generic", &format!("task://{watched}")]),
        "{listened}"
    );
    assert_eq!(
        ok(&listened["then"][0])["task"]["status"],
        "cancelled",
        "{listened}"
    );
    let updated = names(&listened["updated"]);
    assert!(
        updated.contains(&format!("task://{watched}"))
            && updated.contains(&"queue://mcp:generic".to_string()),
        "{listened}"
    );

    // Queues: pause is idempotent and visible to REST; resume undoes it.
    let paused = session(
        &app.base,
        &admin,
        json!([
            {"op": "call", "tool": "pause_queue", "args": {"name": "mcp:generic"}},
            {"op": "call", "tool": "pause_queue", "args": {"name": "mcp:generic"}},
        ]),
    )
    .await;
    assert_eq!(
        ok(&paused["results"][1])["queue"]["paused"],
        true,
        "{paused}"
    );
    assert_eq!(generic_paused(&app).await, true);
    let resumed = one(
        &app.base,
        &admin,
        json!({"op": "call", "tool": "resume_queue", "args": {"name": "mcp:generic"}}),
    )
    .await;
    assert_eq!(ok(&resumed)["queue"]["paused"], false, "{resumed}");
    assert_eq!(generic_paused(&app).await, false);

    // The audit trail names the MCP actions like the REST ones.
    wait_for(
        "the task.create audit record",
        Duration::from_secs(10),
        || async {
            let (_, audit) = app
                .admin("GET", "/api/v1/audit?action=task.create", None)
                .await;
            let records = audit["data"].as_array().cloned().unwrap_or_default();
            if records.iter().any(|r| r["target"] == task_id.as_str()) {
                Ok(())
            } else {
                Err(audit.to_string())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_distributed_pipeline_resumes_on_another_replica() {
    let mut app = App::start(Mode::Distributed).await;
    app.start_stage_workers(1).await;
    let admin = bearer(&app.admin_token);
    let replica = format!("http://127.0.0.1:{}", app.start_replica().await);
    let (s, dataset) = app
        .upload("application/x-ndjson", synth::ndjson(20, 400))
        .await;
    assert_eq!(s, 201, "{dataset}");
    let dataset_id = dataset["data"]["dataset_id"].clone();

    // Started on the first replica: a durable MCP task whose id is the execution's.
    let args = json!({"dataset_id": dataset_id, "options": {"shard_size": 25}});
    let started = one(
        &app.base,
        &admin,
        json!({"op": "call_task", "tool": "run_pipeline", "args": args}),
    )
    .await;
    let execution = started["task"]["taskId"].as_str().unwrap().to_string();
    assert_eq!(started["task"]["status"], "working", "{started}");
    let (s, rest) = app
        .admin("GET", &format!("/api/v1/pipeline/{execution}"), None)
        .await;
    assert_eq!(s, 200, "the handle's id is the execution's id: {rest}");

    // The first replica dies mid-pipeline; the client reconnects to the second.
    app.kill_api();
    let seen = one(&replica, &admin, json!({"op": "task_get", "id": execution})).await;
    assert_eq!(seen["taskId"], execution.as_str(), "{seen}");
    // Retrying the same call on the second replica starts nothing new.
    let retried = one(
        &replica,
        &admin,
        json!({"op": "call_task", "tool": "run_pipeline", "args": args}),
    )
    .await;
    assert_eq!(retried["task"]["taskId"], execution.as_str(), "{retried}");
    let followed = one(
        &replica,
        &admin,
        json!({"op": "follow", "id": execution, "timeout": 180}),
    )
    .await;
    assert_eq!(followed["final"]["status"], "completed", "{followed}");
    let statuses = followed["statuses"].as_array().unwrap();
    assert_eq!(statuses.last().unwrap(), "completed", "{followed}");
    let result = &followed["final"]["result"]["structuredContent"];
    assert_eq!(result["execution"]["status"], "completed", "{followed}");
    assert_eq!(result["progress"]["progress"], 100, "{followed}");

    let report = one(
        &replica,
        &admin,
        json!({"op": "call", "tool": "get_execution_report",
               "args": {"execution_id": execution}}),
    )
    .await;
    assert!(ok(&report)["report"].is_object(), "{report}");
    let resource = one(
        &replica,
        &admin,
        json!({"op": "read", "uri": format!("pipeline://{execution}/report")}),
    )
    .await;
    assert_eq!(resource["report"], ok(&report)["report"], "{resource}");
}
