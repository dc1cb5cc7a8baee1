//! Observability: `/metrics` figures moving under a real load run (distributed mode, separate
//! worker), `/api/v1/system/health`, and alerts raised and cleared — as `system.alert` events on
//! `/ws/system/events`, in the health report, in the metrics, and POSTed to a webhook.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::helpers::{App, Mode, wait::receive_until, wait_for};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn scrape(app: &App) -> String {
    let resp = app
        .send("GET", "/metrics", Some(&app.admin_token), None)
        .await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The value of one series, written exactly as exposed (`name{a="b",c="d"}`).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `/metrics` until `series` satisfies `want`; returns the scrape.
async fn wait_metric(app: &App, series: &str, want: impl Fn(f64) -> bool) -> String {
    wait_for(series, Duration::from_secs(60), || async {
        let text = scrape(app).await;
        match metric(&text, series) {
            Some(v) if want(v) => Ok(text),
            other => Err(format!("{series} = {other:?}")),
        }
    })
    .await
}

async fn system_events(app: &App) -> Socket {
    let url = app.ws_url(&format!("/ws/system/events?token={}", app.admin_token));
    let (ws, _) = connect_async(url).await.expect("websocket connects");
    ws
}

/// Reads `system.alert` events until the one with `key` in `state` (`raised` or `cleared`)
/// arrives.
async fn next_alert(ws: &mut Socket, key: &str, state: &str) -> Value {
    receive_until(
        &format!("a {state} {key} alert"),
        Duration::from_secs(30),
        async || ws.next().await,
        |msg| {
            let event = system_alert(msg)?;
            (event["data"]["key"] == key && event["data"]["state"] == state)
                .then(|| event["data"].clone())
        },
    )
    .await
}

/// A `system.alert` event, from a WebSocket message.
fn system_alert(msg: Result<Message, tokio_tungstenite::tungstenite::Error>) -> Option<Value> {
    let Message::Text(text) = msg.expect("socket error") else {
        return None;
    };
    let event: Value = serde_json::from_str(&text).unwrap();
    (event["type"] == "system.alert").then_some(event)
}

async fn system_health(app: &App) -> Value {
    let (status, body) = app.admin("GET", "/api/v1/system/health", None).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// A webhook receiver on a loopback port: answers 500 to the first `refuse` requests (so the
/// sender must retry), 200 afterwards, and hands every JSON body it got to the test.
async fn webhook(refuse: usize) -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hooks/alerts",
        listener.local_addr().unwrap().port()
    );
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut served = 0usize;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            // One request per connection is enough: the answer closes it.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(buf[end + 4..end + 4 + len].to_vec());
                }
            };
            let Some(body) = body else { continue };
            served += 1;
            let status = if served <= refuse {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = sock
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
        }
    });
    (url, rx)
}

/// The next webhook body about `kind` in `state`.
async fn next_hook(rx: &mut mpsc::UnboundedReceiver<Value>, kind: &str, state: &str) -> Value {
    receive_until(
        &format!("a webhook POST of a {state} {kind} alert"),
        Duration::from_secs(30),
        async || rx.recv().await,
        |body| (body["alert"] == kind && body["state"] == state).then_some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_a_distributed_load_run() {
    let mut app = App::start(Mode::Distributed).await;
    // A worker for the pipeline stages beside the default generic one.
    app.start_worker(&["--stages", "all"]);

    // Not open: the contract opens only the probes and login.
    let resp = app.send("GET", "/metrics", None, None).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let resp = app
        .send("GET", "/metrics", Some(&app.admin_token), None)
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("# TYPE mcp_http_request_duration_seconds histogram"));

    // WebSocket gauge: one open connection.
    let ws = system_events(&app).await;
    wait_metric(&app, "mcp_websocket_connections", |v| v == 1.0).await;

    // Queue depth rises while the queue is paused, then drains.
    let (status, _) = app
        .admin("POST", "/api/v1/queues/generic/pause", None)
        .await;
    assert_eq!(status, 200);
    let mut tasks: Vec<Value> = (0..300)
        .map(|i| json!({"type": "generic", "payload": {"n": i}}))
        .collect();
    // Two that fail every attempt: one retry each, then dead.
    for _ in 0..2 {
        tasks.push(json!({"type": "generic", "payload": {"fail": true}, "max_attempts": 2}));
    }
    let (status, batch) = app
        .admin("POST", "/api/v1/tasks/batch", Some(json!({"tasks": tasks})))
        .await;
    assert_eq!(status, 202, "{batch}");
    let depth = r#"mcp_queue_depth{capability="generic",tier="low"}"#;
    wait_metric(&app, depth, |v| v == 302.0).await;
    let (status, _) = app
        .admin("POST", "/api/v1/queues/generic/resume", None)
        .await;
    assert_eq!(status, 200);
    wait_metric(&app, r#"mcp_tasks{status="completed"}"#, |v| v == 300.0).await;
    let text = wait_metric(&app, r#"mcp_tasks{status="dead"}"#, |v| v == 2.0).await;
    assert_eq!(metric(&text, depth), Some(0.0), "the queue drained");
    let text = wait_metric(
        &app,
        r#"mcp_task_duration_seconds_count{type="generic"}"#,
        |v| v == 300.0,
    )
    .await;
    assert_eq!(
        metric(
            &text,
            r#"mcp_task_duration_seconds_bucket{type="generic",le="+Inf"}"#
        ),
        Some(300.0)
    );
    // Counted from events, which follow the row updates by a moment.
    wait_metric(&app, "mcp_task_retries_total", |v| v == 2.0).await;
    let text = wait_metric(&app, "mcp_task_dead_letters_total", |v| v == 2.0).await;
    assert!(
        metric(&text, r#"mcp_agents{status="active"}"#).unwrap_or(0.0) >= 1.0,
        "the worker processes are agents"
    );

    // Requests are counted per route template, never per raw path.
    let id = batch["data"]["task_ids"][0].as_str().unwrap();
    let (status, _) = app.admin("GET", &format!("/api/v1/tasks/{id}"), None).await;
    assert_eq!(status, 200);
    let (status, _) = app.admin("GET", "/no/such/path/12345", None).await;
    assert_eq!(status, 404);
    let text = scrape(&app).await;
    assert_eq!(
        metric(
            &text,
            r#"mcp_http_requests_total{route="/api/v1/tasks/batch",method="POST",status="202"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"mcp_http_requests_total{route="/api/v1/queues/{name}/pause",method="POST",status="200"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"mcp_http_requests_total{route="/api/v1/tasks/{id}",method="GET",status="200"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"mcp_http_requests_total{route="unmatched",method="GET",status="404"}"#
        ),
        Some(1.0)
    );
    assert!(!text.contains(id), "raw ids never become labels");
    assert!(!text.contains("12345"));
    let scrapes =
        r#"mcp_http_request_duration_seconds_count{route="/metrics",method="GET",status="200"}"#;
    assert!(metric(&text, scrapes).unwrap_or(0.0) >= 3.0);

    // A small pipeline run: records per stage.
    let records = json!([
        {"question": "Is it okay to rest?", "answer": "Yes, rest is part of recovery and helps you think clearly."},
        {"prompt": "What helps with a racing heart?", "response": "Slow exhale breathing and naming five things you can see can calm it."}
    ]);
    let (status, run) = app
        .admin(
            "POST",
            "/api/v1/pipeline/agent-execute",
            Some(json!({"records": records, "wait": true, "wait_timeout_ms": 60000})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["data"]["status"], "completed", "{run}");
    let text = wait_metric(
        &app,
        r#"mcp_pipeline_records_out_total{stage="export"}"#,
        |v| v >= 1.0,
    )
    .await;
    for stage in [
        "ingestion",
        "standardization",
        "validation",
        "processing",
        "quality_assessment",
    ] {
        let series = format!(r#"mcp_pipeline_records_in_total{{stage="{stage}"}}"#);
        assert!(
            metric(&text, &series).unwrap_or(0.0) >= 1.0,
            "{series} in\n{text}"
        );
    }
    assert_eq!(
        metric(&text, r#"mcp_pipeline_records_in_total{stage="ingestion"}"#),
        Some(2.0)
    );

    drop(ws);
    wait_metric(&app, "mcp_websocket_connections", |v| v == 0.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn error_rate_alert_is_raised_and_cleared_everywhere() {
    let (hook_url, mut hooks) = webhook(1).await;
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("MCP_HEALTH_WINDOW_MS", "1500"),
            ("MCP_ALERT_INTERVAL_MS", "50"),
            ("MCP_ALERT_MIN_REQUESTS", "5"),
            ("ALERT_THRESHOLD_ERROR_RATE", "0.2"),
            ("ALERT_THRESHOLD_RESPONSE_TIME", "60000"),
            ("ALERT_WEBHOOK_URL", &hook_url),
        ],
    )
    .await;
    let mut ws = system_events(&app).await;
    let before = system_health(&app).await;
    assert_eq!(before["alerts"], json!([]), "{before}");
    assert_eq!(before["overall_health"], 1.0);
    assert_eq!(before["status"], "healthy");

    // Client errors are not server errors: a burst of 404s raises nothing.
    for _ in 0..10 {
        let (status, _) = app.admin("GET", "/api/v1/no-such-route", None).await;
        assert_eq!(status, 404);
    }
    let health = system_health(&app).await;
    assert_eq!(health["error_rate"], 0.0, "{health}");

    // Take the artifact store away: readiness answers 503, a server-side failure.
    let artifacts = app.dir.path().join("artifacts");
    let moved = app.dir.path().join("artifacts-away");
    std::fs::rename(&artifacts, &moved).unwrap();
    for _ in 0..20 {
        let (status, _) = app.call("GET", "/api/v1/ready", None, None).await;
        assert_eq!(status, 503);
    }
    let raised = next_alert(&mut ws, "error_rate", "raised").await;
    assert_eq!(raised["scope"], "replica");
    assert_eq!(raised["severity"], "critical");
    assert!(raised["value"].as_f64().unwrap() > 0.2, "{raised}");

    let health = system_health(&app).await;
    assert!(health["error_rate"].as_f64().unwrap() > 0.2, "{health}");
    assert_eq!(health["status"], "unhealthy");
    assert!(health["overall_health"].as_f64().unwrap() < 1.0);
    let listed: Vec<&Value> = health["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["alert"] == "error_rate")
        .collect();
    assert_eq!(listed.len(), 1, "{health}");
    let text = scrape(&app).await;
    assert_eq!(
        metric(&text, r#"mcp_alerts_active{alert="error_rate"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"mcp_alerts_raised_total{alert="error_rate"}"#),
        Some(1.0)
    );
    // The receiver refused the first POST: the same alert arrives again on the retry.
    let first = next_hook(&mut hooks, "error_rate", "raised").await;
    let retried = next_hook(&mut hooks, "error_rate", "raised").await;
    assert_eq!(first["raised_at"], retried["raised_at"]);
    assert_eq!(first["key"], "error_rate");

    // Put it back: once the failures leave the window, the alert clears.
    std::fs::rename(&moved, &artifacts).unwrap();
    let (status, _) = app.call("GET", "/api/v1/ready", None, None).await;
    assert_eq!(status, 200);
    let cleared = next_alert(&mut ws, "error_rate", "cleared").await;
    assert_eq!(cleared["raised_at"], raised["raised_at"]);
    assert!(cleared["cleared_at"].is_string());
    next_hook(&mut hooks, "error_rate", "cleared").await;
    let health = system_health(&app).await;
    assert_eq!(health["alerts"], json!([]), "{health}");
    let text = scrape(&app).await;
    assert_eq!(
        metric(&text, r#"mcp_alerts_active{alert="error_rate"}"#),
        Some(0.0),
        "the series stays, at 0"
    );
    assert_eq!(
        metric(&text, r#"mcp_alerts_raised_total{alert="error_rate"}"#),
        Some(1.0),
        "raised once, not once per evaluation"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn response_time_alert_is_raised_and_cleared() {
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("MCP_HEALTH_WINDOW_MS", "1500"),
            ("MCP_ALERT_INTERVAL_MS", "50"),
            ("MCP_ALERT_MIN_REQUESTS", "3"),
            ("ALERT_THRESHOLD_RESPONSE_TIME", "5"),
        ],
    )
    .await;
    let mut ws = system_events(&app).await;
    // Logins hash a password (argon2): each takes well over 5 ms.
    let slow = {
        let base = app.base.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for _ in 0..200 {
                let _ = http
                    .post(format!("{base}/api/v1/auth/login"))
                    .json(&json!({"username": "admin", "password": "not-the-password"}))
                    .send()
                    .await;
            }
        })
    };
    let raised = next_alert(&mut ws, "response_time", "raised").await;
    slow.abort();
    assert_eq!(raised["severity"], "warning");
    assert_eq!(raised["threshold"], 5.0);
    assert!(raised["value"].as_f64().unwrap() > 5.0, "{raised}");
    let health = system_health(&app).await;
    assert!(
        health["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["alert"] == "response_time"),
        "{health}"
    );
    let cleared = next_alert(&mut ws, "response_time", "cleared").await;
    assert_eq!(cleared["key"], "response_time");
    let text = scrape(&app).await;
    assert_eq!(
        metric(&text, r#"mcp_alerts_raised_total{alert="response_time"}"#),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_age_and_agent_health_alerts() {
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("MCP_ALERT_INTERVAL_MS", "50"),
            ("MCP_ALERT_QUEUE_AGE_MS", "300"),
            ("MCP_AGENT_HEARTBEAT_MS", "300"),
            ("MCP_HEALTH_WINDOW_MS", "5000"),
            ("MCP_ALERT_AGENT_FLAPS", "4"),
        ],
    )
    .await;
    let mut ws = system_events(&app).await;

    // A paused queue: its task waits past the threshold.
    let (status, _) = app
        .admin("POST", "/api/v1/queues/generic/pause", None)
        .await;
    assert_eq!(status, 200);
    let task = app
        .create_task(json!({"type": "generic", "priority": "high", "payload": {}}))
        .await;
    let raised = next_alert(&mut ws, "queue_age:mcp:generic:high", "raised").await;
    assert_eq!(raised["key"], "queue_age:mcp:generic:high");
    assert_eq!(raised["scope"], "cluster");
    assert!(raised["value"].as_f64().unwrap() > 300.0, "{raised}");
    let health = system_health(&app).await;
    assert!(health["queued_tasks"].as_i64().unwrap() >= 1, "{health}");
    assert!(
        health["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "queue_age:mcp:generic:high"),
        "{health}"
    );
    let text = scrape(&app).await;
    assert_eq!(
        metric(&text, r#"mcp_alerts_active{alert="queue_age"}"#),
        Some(1.0)
    );
    let (status, _) = app
        .admin("POST", "/api/v1/queues/generic/resume", None)
        .await;
    assert_eq!(status, 200);
    app.wait_status(
        task["id"].as_str().unwrap(),
        "completed",
        Duration::from_secs(30),
    )
    .await;
    let cleared = next_alert(&mut ws, "queue_age:mcp:generic:high", "cleared").await;
    assert_eq!(cleared["key"], "queue_age:mcp:generic:high");

    // An agent that changes status again and again flaps; one that goes silent is unhealthy.
    let (agent, key) = app
        .register_agent(
            json!({"name": "obs-agent", "type": "validation", "capabilities": ["validation"]}),
        )
        .await;
    for status in ["paused", "active", "paused", "active"] {
        let (code, body) = app
            .as_agent(
                "POST",
                &format!("/api/v1/agents/{agent}/heartbeat"),
                &key,
                Some(json!({"status": status})),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    let flapping = next_alert(&mut ws, &format!("agent_flapping:{agent}"), "raised").await;
    assert_eq!(flapping["subject"]["agent_id"], agent.as_str());
    assert_eq!(flapping["subject"]["name"], "obs-agent");
    // Silence: stale after three missed 300 ms beats.
    let unhealthy = next_alert(&mut ws, &format!("agent_unhealthy:{agent}"), "raised").await;
    assert_eq!(unhealthy["subject"]["agent_id"], agent.as_str());
    let (code, _) = app
        .as_agent(
            "POST",
            &format!("/api/v1/agents/{agent}/heartbeat"),
            &key,
            Some(json!({})),
        )
        .await;
    assert_eq!(code, 200);
    let back = next_alert(&mut ws, &format!("agent_unhealthy:{agent}"), "cleared").await;
    assert_eq!(back["subject"]["agent_id"], agent.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_two_replicas_cluster_figures_and_alerts_come_from_the_leader_only() {
    let mut app = App::start_with(
        Mode::Distributed,
        &[
            ("MCP_ALERT_INTERVAL_MS", "50"),
            ("MCP_ALERT_QUEUE_AGE_MS", "300"),
            ("MCP_METRICS_TOKEN", "scrape-token-0123456789"),
        ],
    )
    .await;
    let replica = app.start_replica().await;
    let bases = [app.base.clone(), format!("http://127.0.0.1:{replica}")];
    let scrape_at = |base: String| {
        let http = app.http.clone();
        async move {
            let resp = http
                .get(format!("{base}/metrics"))
                .bearer_auth("scrape-token-0123456789")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "the metrics token is accepted");
            resp.text().await.unwrap()
        }
    };
    // Exactly one replica exports the cluster-wide series, so summing across replicas is right.
    wait_for("one leader exporting", Duration::from_secs(30), || async {
        let mut exporting = 0;
        for base in &bases {
            let text = scrape_at(base.clone()).await;
            assert!(
                text.contains("mcp_http_requests_total"),
                "every replica: its own requests"
            );
            if text.contains("# TYPE mcp_queue_depth gauge") {
                exporting += 1;
            }
        }
        if exporting == 1 {
            Ok(())
        } else {
            Err(format!("{exporting} replicas export cluster series"))
        }
    })
    .await;

    let mut ws = system_events(&app).await;
    let (status, _) = app
        .admin("POST", "/api/v1/queues/generic/pause", None)
        .await;
    assert_eq!(status, 200);
    let task = app
        .create_task(json!({"type": "generic", "priority": "high", "payload": {}}))
        .await;
    let key = "queue_age:mcp:generic:high";
    next_alert(&mut ws, key, "raised").await;
    // Either replica lists the cluster alert.
    for base in &bases {
        let body: Value = app
            .http
            .get(format!("{base}/api/v1/system/health"))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let alerts = body["data"]["alerts"].as_array().unwrap();
        assert!(alerts.iter().any(|a| a["key"] == key), "{base}: {body}");
    }
    let (status, _) = app
        .admin("POST", "/api/v1/queues/generic/resume", None)
        .await;
    assert_eq!(status, 200);
    app.wait_status(
        task["id"].as_str().unwrap(),
        "completed",
        Duration::from_secs(30),
    )
    .await;
    // Raised once by the leader, not once per replica, then cleared once.
    let mut raised_again = 0;
    receive_until(
        "the alert to clear",
        Duration::from_secs(30),
        async || ws.next().await,
        |msg| {
            let event = system_alert(msg)?;
            if event["data"]["key"] != key {
                return None;
            }
            if event["data"]["state"] == "cleared" {
                return Some(());
            }
            raised_again += 1;
            None
        },
    )
    .await;
    assert_eq!(raised_again, 0, "one raise for one incident");
}

/// Every span in an OTLP/JSON export body, with its service name.
fn spans_of(body: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_string();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for span in ss["spans"].as_array().into_iter().flatten() {
                out.push((service.clone(), span.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_trace_continues_into_the_workers_job_span() {
    let (collector, mut exports) = webhook(0).await;
    let app = App::start_with(
        Mode::Distributed,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)],
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let resp = app
        .http
        .post(format!("{}/api/v1/tasks", app.base))
        .bearer_auth(&app.admin_token)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"type": "generic", "payload": {"traced": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let task: Value = resp.json().await.unwrap();
    let task_id = task["data"]["id"].as_str().unwrap().to_string();

    let mut server = None;
    let mut job = None;
    receive_until(
        "the request's and the job's spans",
        Duration::from_secs(30),
        async || exports.recv().await,
        |body| {
            for (service, span) in spans_of(&body) {
                if span["traceId"] != trace_id {
                    continue;
                }
                if span["name"] == "POST /api/v1/tasks" {
                    server = Some((service, span));
                } else if span["name"] == "job generic" {
                    job = Some((service, span));
                }
            }
            (server.is_some() && job.is_some()).then_some(())
        },
    )
    .await;
    let (server_service, server) = server.unwrap();
    let (job_service, job) = job.unwrap();
    assert_eq!(server_service, "mcp-api");
    assert_eq!(
        server["parentSpanId"], caller_span,
        "continues the caller's trace"
    );
    assert_eq!(server["kind"], 2);
    assert_eq!(job_service, "mcp-worker", "recorded by the worker process");
    assert_eq!(
        job["parentSpanId"], server["spanId"],
        "the job is a child of the request that created the task"
    );
    let task_attr = job["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "mcp.task.id")
        .map(|a| a["value"]["stringValue"].clone());
    assert_eq!(task_attr, Some(json!(task_id)));
    let start: u128 = job["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = job["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(end >= start);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_keeps_failing_raises_an_alert() {
    let app = App::start_with(
        Mode::SingleNode,
        &[
            ("MCP_ALERT_INTERVAL_MS", "50"),
            ("MCP_HEALTH_WINDOW_MS", "3000"),
            ("MCP_ALERT_AGENT_FAILURE_RATE", "0.5"),
        ],
    )
    .await;
    let mut ws = system_events(&app).await;
    // A capability of the test's own, so the built-in workers never take these tasks.
    app.define_capability("sentiment").await;
    let (agent, key) = app
        .register_agent(
            json!({"name": "flaky-analyst", "type": "ai_model", "capabilities": ["sentiment"]}),
        )
        .await;
    // Five attempts (the minimum before a rate means anything), all failed.
    for i in 0..5 {
        app.create_task(json!({"type": "analysis", "required_capabilities": ["sentiment"], "payload": {"i": i}}))
            .await;
        let (code, task) = app.claim(&agent, &key, 5000).await;
        assert_eq!(code, 200, "{task}");
        let id = task["data"]["id"].as_str().unwrap().to_string();
        let (code, body) = app
            .as_agent(
                "POST",
                &format!("/api/v1/tasks/{id}/fail"),
                &key,
                Some(json!({"error": "model unavailable", "retryable": false})),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    let key_of = format!("agent_failing:{agent}");
    let raised = next_alert(&mut ws, &key_of, "raised").await;
    assert_eq!(raised["value"], 1.0, "every attempt failed: {raised}");
    assert_eq!(raised["subject"]["name"], "flaky-analyst");
    // Once the failures leave the window, it clears.
    next_alert(&mut ws, &key_of, "cleared").await;
}

/// `ENABLE_DETAILED_METRICS` adds attempt outcomes per task type and per agent; off, those
/// series are left out while the others still count.
#[tokio::test(flavor = "multi_thread")]
async fn detailed_metrics_count_outcomes_per_type_and_agent() {
    for detailed in ["true", "false"] {
        let app = App::start_with(Mode::SingleNode, &[("ENABLE_DETAILED_METRICS", detailed)]).await;
        let task = app
            .create_task(json!({"type": "generic", "payload": {"detailed": detailed}}))
            .await;
        let done = app
            .wait_status(
                task["id"].as_str().unwrap(),
                "completed",
                Duration::from_secs(30),
            )
            .await;
        let agent = done["agent_id"].as_str().unwrap();
        if detailed == "true" {
            wait_metric(
                &app,
                r#"mcp_task_outcomes_total{type="generic",outcome="completed"}"#,
                |v| v >= 1.0,
            )
            .await;
            wait_metric(
                &app,
                &format!(
                    r#"mcp_agent_task_outcomes_total{{agent_id="{agent}",outcome="completed"}}"#
                ),
                |v| v >= 1.0,
            )
            .await;
        } else {
            let text = wait_metric(
                &app,
                r#"mcp_task_duration_seconds_count{type="generic"}"#,
                |v| v >= 1.0,
            )
            .await;
            assert!(
                !text.contains("mcp_task_outcomes_total")
                    && !text.contains("mcp_agent_task_outcomes_total"),
                "{text}"
            );
        }
    }
}

/// Runs one task per outcome through `agent` (`true` completes it, `false` fails it for good).
async fn run_through(app: &App, agent: &str, key: &str, capability: &str, outcomes: &[bool]) {
    for (i, ok) in outcomes.iter().enumerate() {
        app.create_task(
            json!({"type": "analysis", "required_capabilities": [capability],
                               "payload": {"i": i}, "max_attempts": 1}),
        )
        .await;
        let (code, task) = app.claim(agent, key, 5000).await;
        assert_eq!(code, 200, "{task}");
        let id = task["data"]["id"].as_str().unwrap().to_string();
        let (path, body) = if *ok {
            ("complete", json!({"result": {"label": "positive"}}))
        } else {
            (
                "fail",
                json!({"error": "model unavailable", "retryable": false}),
            )
        };
        let (code, body) = app
            .as_agent(
                "POST",
                &format!("/api/v1/tasks/{id}/{path}"),
                key,
                Some(body),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
}

async fn agent_health(app: &App, agent: &str) -> Value {
    let (status, body) = app
        .admin("GET", &format!("/api/v1/agents/{agent}/health"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// An agent that fails most of its tasks gets a low performance score, an `error_burst`
/// anomaly and an `agent_efficiency` alert, cleared once it recovers; a healthy agent gets none.
async fn efficiency_and_performance(mode: Mode) {
    // A 30 s window: the failures leave it soon enough for the recovery to be seen whatever
    // the machine's load does to the tasks' timings.
    let app = App::start_with(
        mode,
        &[
            ("MCP_ALERT_INTERVAL_MS", "50"),
            ("MCP_HEALTH_WINDOW_MS", "30000"),
        ],
    )
    .await;
    let mut ws = system_events(&app).await;
    app.define_capability("sentiment").await;
    app.define_capability("summarising").await;
    let (good, good_key) = app
        .register_agent(
            json!({"name": "steady", "type": "ai_model", "capabilities": ["summarising"]}),
        )
        .await;
    let (bad, bad_key) = app
        .register_agent(json!({"name": "flaky", "type": "ai_model", "capabilities": ["sentiment"]}))
        .await;
    run_through(&app, &good, &good_key, "summarising", &[true; 10]).await;
    let mut outcomes = [false; 10];
    outcomes[3] = true;
    outcomes[7] = true;
    run_through(&app, &bad, &bad_key, "sentiment", &outcomes).await;

    let raised = next_alert(&mut ws, &format!("agent_efficiency:{bad}"), "raised").await;
    assert_eq!(raised["subject"]["name"], "flaky", "{raised}");
    assert_eq!(
        raised["threshold"], 0.8,
        "the default ALERT_THRESHOLD_EFFICIENCY: {raised}"
    );
    assert!(raised["value"].as_f64().unwrap() < 0.8, "{raised}");
    let listed: Vec<String> = system_health(&app).await["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_string())
        .collect();
    assert!(
        listed.contains(&format!("agent_efficiency:{bad}")),
        "{listed:?}"
    );
    assert!(
        !listed.contains(&format!("agent_efficiency:{good}")),
        "{listed:?}"
    );

    // Both beat now, so their heartbeat regularity does not depend on how long the test took.
    for (agent, key) in [(&bad, &bad_key), (&good, &good_key)] {
        let (code, body) = app
            .as_agent(
                "POST",
                &format!("/api/v1/agents/{agent}/heartbeat"),
                key,
                Some(json!({})),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    let flaky = agent_health(&app, &bad).await;
    let steady = agent_health(&app, &good).await;
    assert_eq!(flaky["tasks_in_window"], 10, "{flaky}");
    assert_eq!(flaky["success_rate"], 0.2, "{flaky}");
    assert!(flaky["efficiency"].as_f64().unwrap() < 0.8, "{flaky}");
    let flaky_score = flaky["performance_score"].as_f64().unwrap();
    assert!(flaky_score < 0.7, "{flaky}");
    let kinds: Vec<&str> = flaky["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"error_burst"), "{flaky}");
    let burst = flaky["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "error_burst")
        .unwrap();
    assert_eq!(burst["value"], 0.8, "{burst}");

    assert_eq!(steady["success_rate"], 1.0, "{steady}");
    assert_eq!(steady["efficiency"], 1.0, "{steady}");
    assert!(
        steady["performance_score"].as_f64().unwrap() >= 0.9,
        "{steady}"
    );
    assert!(steady["performance_score"].as_f64().unwrap() > flaky_score);
    assert_eq!(steady["anomalies"], json!([]), "{steady}");

    // It recovers: it completes what it takes, and once its failures are behind it (outweighed,
    // or out of the window) the alert clears.
    run_through(&app, &bad, &bad_key, "sentiment", &[true; 10]).await;
    let key_of = format!("agent_efficiency:{bad}");
    let cleared = receive_until(
        "the agent_efficiency alert to clear",
        Duration::from_secs(90),
        async || ws.next().await,
        |msg| {
            let event = system_alert(msg)?;
            (event["data"]["key"] == key_of && event["data"]["state"] == "cleared")
                .then(|| event["data"].clone())
        },
    )
    .await;
    assert_eq!(cleared["subject"]["agent_id"], bad.as_str(), "{cleared}");
    let recovered = agent_health(&app, &bad).await;
    assert!(
        recovered["efficiency"].as_f64().is_none_or(|e| e >= 0.8),
        "{recovered}"
    );
    assert!(
        !recovered["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "error_burst"),
        "{recovered}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_efficiency_and_performance_single_node() {
    efficiency_and_performance(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_efficiency_and_performance_distributed() {
    efficiency_and_performance(Mode::Distributed).await;
}
