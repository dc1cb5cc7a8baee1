//! Work nothing can take says so: a pipeline or task waiting on a capability that no live worker
//! or agent holds names it in `waiting_for`, `/system/health` raises `queue_unserved`, and both
//! clear once something serves it. A plain `mcp-worker` serves every stage, so starting one is
//! all a pipeline needs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{App, Mode, synth, wait_for};

const UNSERVED: &[(&str, &str)] = &[
    ("MCP_ALERT_INTERVAL_MS", "50"),
    ("MCP_ALERT_UNSERVED_AFTER_MS", "300"),
];

/// Polls `path` until its `data.waiting_for` is `want` (or absent, for `None`).
async fn wait_waiting_for(app: &App, path: &str, want: Option<&str>) -> Value {
    wait_for(
        &format!("{path} waiting_for to be {want:?}"),
        Duration::from_secs(30),
        || async {
            let (status, body) = app.admin("GET", path, None).await;
            if status != 200 {
                return Err(body.to_string());
            }
            match (body["data"]["waiting_for"].as_str(), want) {
                (got, want) if got == want => Ok(body["data"].clone()),
                _ => Err(body.to_string()),
            }
        },
    )
    .await
}

async fn unserved_alerts(app: &App) -> Vec<String> {
    let (status, body) = app.admin("GET", "/api/v1/system/health", None).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["alert"] == "queue_unserved")
        .map(|a| a["key"].as_str().unwrap().to_string())
        .collect()
}

async fn start_pipeline(app: &App) -> String {
    let (status, dataset) = app
        .upload("application/x-ndjson", synth::ndjson(7, 30))
        .await;
    assert_eq!(status, 201, "{dataset}");
    app.start_execution(&dataset["data"]["dataset_id"], json!({}))
        .await
}

#[tokio::test]
async fn a_plain_worker_completes_a_pipeline_that_waited_for_one() {
    // The app's own worker serves every task type but no stage.
    let mut app = App::start_with(Mode::Distributed, UNSERVED).await;
    let id = start_pipeline(&app).await;
    let path = format!("/api/v1/pipeline/{id}");
    let waiting = wait_waiting_for(&app, &path, Some("stage_ingestion")).await;
    assert_eq!(waiting["status"], "pending", "{waiting}");
    let (_, progress) = app
        .admin("GET", &format!("{path}/agent-progress"), None)
        .await;
    assert_eq!(
        progress["data"]["waiting_for"], "stage_ingestion",
        "{progress}"
    );
    assert!(
        unserved_alerts(&app)
            .await
            .contains(&"queue_unserved:stage_ingestion".to_string())
    );

    // A task needing a capability nobody holds says so too, on both reads.
    app.define_capability("sentiment").await;
    let task = app
        .create_task(
            json!({"type": "generic", "required_capabilities": ["sentiment"], "payload": {}}),
        )
        .await;
    let task_id = task["id"].as_str().unwrap();
    wait_waiting_for(&app, &format!("/api/v1/tasks/{task_id}"), Some("sentiment")).await;
    let (_, status) = app
        .admin("GET", &format!("/api/v1/tasks/{task_id}/status"), None)
        .await;
    assert_eq!(status["data"]["waiting_for"], "sentiment", "{status}");

    // A worker started without flags serves all six stages: the pipeline completes.
    app.start_worker(&[]);
    let done = app.wait_execution(&id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done.get("waiting_for").is_none(), "{done}");
    wait_for(
        "the stage alert to clear",
        Duration::from_secs(30),
        || async {
            let alerts = unserved_alerts(&app).await;
            if alerts.contains(&"queue_unserved:stage_ingestion".to_string()) {
                Err(format!("{alerts:?}"))
            } else {
                Ok(())
            }
        },
    )
    .await;
    // Nothing serves `sentiment` yet: that one still waits, and says so.
    let (_, task) = app
        .admin("GET", &format!("/api/v1/tasks/{task_id}"), None)
        .await;
    assert_eq!(task["data"]["waiting_for"], "sentiment", "{task}");
    assert_eq!(task["data"]["status"], "pending", "{task}");
}

#[tokio::test]
async fn waiting_for_clears_when_an_agent_takes_the_stage_on_a_single_node() {
    let mut env = UNSERVED.to_vec();
    env.push(("MCP_EMBEDDED_CAPABILITIES", "generic"));
    let app = App::start_with(Mode::SingleNode, &env).await;
    let id = start_pipeline(&app).await;
    let path = format!("/api/v1/pipeline/{id}");
    wait_waiting_for(&app, &path, Some("stage_ingestion")).await;

    // An operator registers an agent that holds the stage: the work is no longer unserved.
    app.define_capability("stage_ingestion").await;
    app.register_agent(json!({
        "name": "ingestion-service",
        "type": "data_processor",
        "capabilities": ["stage_ingestion"],
    }))
    .await;
    let still = wait_waiting_for(&app, &path, None).await;
    assert_eq!(still["status"], "pending", "{still}");
    assert!(
        !unserved_alerts(&app)
            .await
            .contains(&"queue_unserved:stage_ingestion".to_string())
    );
}
