//! Real-time channels: the WebSocket protocol (subscribe, unsubscribe, ping, errors, limits),
//! fan-out across two API replicas, resuming with `since`, a client that stops reading, and the
//! same events over Server-Sent Events.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::helpers::{
    App, Mode,
    wait::receive_until,
    wait_for,
    ws::{close_frame, next_of_type},
};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &App, path: &str, token: &str) -> Socket {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (ws, _) = connect_async(app.ws_url(&format!("{path}{sep}token={token}")))
        .await
        .expect("websocket connects");
    ws
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Reads until the server closes; returns the close code.
async fn close_code(ws: &mut Socket) -> u16 {
    close_frame(ws, Duration::from_secs(10)).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_subscribe_unsubscribe_ping_and_bad_input() {
    let app = App::start(Mode::SingleNode).await;
    let mut ws = connect(&app, "/ws/tasks/progress", &app.admin_token).await;
    let (snapshot, _) = next_of_type(&mut ws, "snapshot", Duration::from_secs(5)).await;
    assert!(snapshot["data"].is_object());

    // Narrow the connection to one task: its snapshot first, then only its events.
    let task = app
        .create_task(json!({"type": "generic", "payload": {"sleep_ms": 300}}))
        .await;
    let id = task["id"].as_str().unwrap();
    // `since` from the start of what is retained: the test does not race the task.
    send(
        &mut ws,
        json!({"action": "subscribe", "task_id": id, "since": "0-0"}),
    )
    .await;
    let (snap, _) = next_of_type(&mut ws, "snapshot", Duration::from_secs(5)).await;
    assert_eq!(snap["data"]["task_id"], id);
    assert_eq!(snap["subscription"]["task_id"], id);
    let other = app
        .create_task(json!({"type": "generic", "payload": {}}))
        .await;
    let (done, before) = next_of_type(&mut ws, "task.completed", Duration::from_secs(15)).await;
    assert_eq!(done["data"]["task_id"], id);
    for e in &before {
        assert_ne!(
            e["data"]["task_id"], other["id"],
            "an unsubscribed task's event: {e}"
        );
    }
    assert!(
        done["id"].as_str().unwrap().contains('-'),
        "events carry ids"
    );

    // Unknown action and malformed JSON: an error message, and the connection stays usable.
    send(&mut ws, json!({"action": "dance"})).await;
    let (err, _) = next_of_type(&mut ws, "error.occurred", Duration::from_secs(5)).await;
    assert_eq!(err["data"]["code"], "unknown_action");
    ws.send(Message::text("{not json")).await.unwrap();
    let (err, _) = next_of_type(&mut ws, "error.occurred", Duration::from_secs(5)).await;
    assert_eq!(err["data"]["code"], "invalid_message");
    send(&mut ws, json!({"action": "ping"})).await;
    next_of_type(&mut ws, "pong", Duration::from_secs(5)).await;

    // An id nobody may see: an error that does not say whether it exists.
    send(
        &mut ws,
        json!({"action": "subscribe", "task_id": uuid::Uuid::now_v7()}),
    )
    .await;
    let (err, _) = next_of_type(&mut ws, "error.occurred", Duration::from_secs(5)).await;
    assert_eq!(err["data"]["code"], "not_visible");
    send(&mut ws, json!({"action": "unsubscribe", "task_id": id})).await;
    next_of_type(&mut ws, "unsubscribed", Duration::from_secs(5)).await;

    // A message over 64 KiB closes the connection with 1009.
    let big = "x".repeat(70 * 1024);
    ws.send(Message::text(
        json!({"action": "ping", "pad": big}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_sees_only_its_own_tasks() {
    let app = App::start(Mode::SingleNode).await;
    app.define_capability("sentiment").await;
    let (agent_id, key) = app
        .register_agent(
            json!({"name": "rt-agent", "type": "ai_model", "capabilities": ["sentiment"]}),
        )
        .await;
    let mut ws = connect(&app, "/ws/tasks/progress", &key).await;
    next_of_type(&mut ws, "snapshot", Duration::from_secs(5)).await;

    // Someone else's task: subscribing is refused, and its events never arrive.
    let foreign = app
        .create_task(json!({"type": "generic", "payload": {}}))
        .await;
    send(
        &mut ws,
        json!({"action": "subscribe", "task_id": foreign["id"]}),
    )
    .await;
    let (err, _) = next_of_type(&mut ws, "error.occurred", Duration::from_secs(5)).await;
    assert_eq!(err["data"]["code"], "not_visible");

    // Its own task: claimed and completed over HTTP, seen on the socket.
    let mine = app
        .create_task(
            json!({"type": "generic", "required_capabilities": ["sentiment"], "payload": {}}),
        )
        .await;
    let (status, claimed) = app.claim(&agent_id, &key, 10000).await;
    assert_eq!(status, 200, "{claimed}");
    let (status, _) = app
        .as_agent(
            "POST",
            &format!("/api/v1/tasks/{}/complete", mine["id"].as_str().unwrap()),
            &key,
            Some(json!({"result": {"ok": true}})),
        )
        .await;
    assert_eq!(status, 200);
    let (done, before) = next_of_type(&mut ws, "task.completed", Duration::from_secs(15)).await;
    assert_eq!(done["data"]["task_id"], mine["id"]);
    for e in before.iter().chain([&done]) {
        assert_ne!(e["data"]["task_id"], foreign["id"], "leaked: {e}");
    }
    // The pipeline channel is not for agents.
    let mut denied = connect(&app, "/ws/pipeline/updates", &key).await;
    assert_eq!(close_code(&mut denied).await, 4403);
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_limit_and_dead_connections() {
    let app = App::start_with(
        Mode::SingleNode,
        &[("MAX_AGENT_CONNECTIONS", "2"), ("MCP_WS_PING_MS", "200")],
    )
    .await;
    let mut a = connect(&app, "/ws/system/events", &app.admin_token).await;
    next_of_type(&mut a, "snapshot", Duration::from_secs(5)).await;
    let mut b = connect(&app, "/ws/system/events", &app.admin_token).await;
    next_of_type(&mut b, "snapshot", Duration::from_secs(5)).await;
    let mut c = connect(&app, "/ws/system/events", &app.admin_token).await;
    let (code, reason) = close_frame(&mut c, Duration::from_secs(10)).await;
    assert_eq!(code, 1013);
    assert!(reason.contains("MAX_AGENT_CONNECTIONS"), "{reason}");

    // `a` keeps reading (and so answers pings); `b` stops reading, so it never answers and is
    // dropped, which frees a slot.
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while let Some(Ok(m)) = a.next().await {
            if matches!(m, Message::Ping(_)) {
                seen += 1;
                if seen == 10 {
                    return a;
                }
            }
        }
        panic!("the reading client was disconnected");
    });
    let mut a = reader.await.unwrap();
    assert_eq!(
        close_code(&mut b).await,
        1001,
        "the silent client is dropped"
    );
    drop(b);
    wait_for("a slot to free up", Duration::from_secs(10), || async {
        let mut d = connect(&app, "/ws/system/events", &app.admin_token).await;
        match tokio::time::timeout(Duration::from_secs(2), d.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("snapshot") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    send(&mut a, json!({"action": "ping"})).await;
    next_of_type(&mut a, "pong", Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_flood_is_refused_and_closed_while_others_keep_receiving() {
    let app = App::start(Mode::SingleNode).await;
    // Retained events for every replay to read.
    let tasks: Vec<Value> = (0..200)
        .map(|i| json!({"type": "generic", "payload": {"i": i}}))
        .collect();
    let (s, b) = app
        .admin("POST", "/api/v1/tasks/batch", Some(json!({"tasks": tasks})))
        .await;
    assert_eq!(s, 202, "{b}");

    let mut reader = connect(&app, "/ws/tasks/progress", &app.admin_token).await;
    next_of_type(&mut reader, "snapshot", Duration::from_secs(5)).await;
    let (completions, mut completed) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = reader.next().await {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "task.completed" {
                    let _ = completions.send(v["data"]["task_id"].as_str().unwrap().to_string());
                }
            }
        }
    });

    let flooder = connect(&app, "/ws/tasks/progress", &app.admin_token).await;
    let (mut flood_tx, mut flood_rx) = flooder.split();
    // 3,000 replaying subscribes, each with a filter of its own, as fast as the socket takes them.
    let sender = tokio::spawn(async move {
        for _ in 0..3000 {
            let msg = json!({"action": "subscribe", "since": "0-0",
                             "criteria": {"agent_id": uuid::Uuid::now_v7()}});
            if flood_tx.send(Message::text(msg.to_string())).await.is_err() {
                break;
            }
        }
    });
    let (mut snapshots, mut refused) = (0, 0);
    let close = receive_until(
        "the flooding client to be closed",
        Duration::from_secs(60),
        async || flood_rx.next().await,
        |msg| match msg {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "snapshot" {
                    snapshots += 1;
                } else if v["type"] == "error.occurred" && v["data"]["code"] == "rate_limited" {
                    refused += 1;
                }
                None
            }
            Ok(Message::Close(frame)) => Some(frame.map(|f| u16::from(f.code))),
            Ok(_) => None,
            // Closed while the flood was still arriving: the reset may overtake the close frame.
            Err(_) => Some(None),
        },
    )
    .await;
    assert!(
        matches!(close, Some(1008) | None),
        "a client that keeps flooding is closed: {close:?}"
    );
    // Error frames came first, unless the reset of the closed connection overtook them.
    assert!(
        refused > 0 || close.is_none(),
        "messages over the rate get error frames"
    );
    assert!(
        snapshots < 200,
        "{snapshots} subscribes of the flood were served"
    );
    let _ = sender.await;

    // The other client still gets the events of new tasks.
    let marker = app
        .create_task(json!({"type": "generic", "payload": {"marker": true}}))
        .await;
    let marker = marker["id"].as_str().unwrap().to_string();
    receive_until(
        "the reading client to see the new task complete",
        Duration::from_secs(30),
        async || completed.recv().await,
        |id| (id == marker).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_holds_a_bounded_number_of_subscriptions() {
    let app = App::start(Mode::SingleNode).await;
    let mut ws = connect(&app, "/ws/tasks/progress", &app.admin_token).await;
    next_of_type(&mut ws, "snapshot", Duration::from_secs(5)).await;
    // A client within the message rate (10 a second): its pace is what is tested, not a wait.
    let mut pace = tokio::time::interval(Duration::from_millis(150));
    let mut last = Value::Null;
    for i in 0..33 {
        pace.tick().await;
        let msg = json!({"action": "subscribe", "criteria": {"agent_id": uuid::Uuid::now_v7()}});
        send(&mut ws, msg).await;
        last = receive_until(
            "a reply to a subscribe",
            Duration::from_secs(10),
            async || ws.next().await,
            |m| match m.expect("socket error") {
                Message::Text(t) => Some(serde_json::from_str::<Value>(&t).unwrap()),
                _ => None,
            },
        )
        .await;
        if i < 32 {
            assert_eq!(last["type"], "snapshot", "subscription {i}: {last}");
        }
    }
    assert_eq!(last["type"], "error.occurred", "{last}");
    assert_eq!(last["data"]["code"], "too_many_subscriptions");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_reach_clients_of_either_replica_and_resume_with_since() {
    let mut app = App::start(Mode::Distributed).await;
    let port_b = app.start_replica().await;
    let replica_b = |path: &str| format!("ws://127.0.0.1:{port_b}{path}");

    // A task created through replica A, run by the worker, followed on replica B.
    let (mut on_b, _) = connect_async(replica_b(&format!(
        "/ws/tasks/progress?token={}",
        app.admin_token
    )))
    .await
    .unwrap();
    let mut on_a = connect(&app, "/ws/tasks/progress", &app.admin_token).await;
    let task = app
        .create_task(json!({"type": "generic", "payload": {"n": 1}}))
        .await;
    for ws in [&mut on_a, &mut on_b] {
        let (done, before) = next_of_type(ws, "task.completed", Duration::from_secs(15)).await;
        assert_eq!(done["data"]["task_id"], task["id"]);
        let created = before
            .iter()
            .find(|e| e["type"] == "task.created")
            .expect("task.created before task.completed");
        assert_eq!(created["data"]["task_id"], task["id"]);
    }

    // Resume: events of a second task after its `task.created`, replayed on B without gaps or
    // repeats, then live.
    let second = app
        .create_task(json!({"type": "generic", "payload": {"sleep_ms": 800}}))
        .await;
    let sid = second["id"].as_str().unwrap();
    let (created, _) = next_of_type(&mut on_a, "task.created", Duration::from_secs(15)).await;
    assert_eq!(created["data"]["task_id"], sid);
    let (started, _) = next_of_type(&mut on_a, "task.started", Duration::from_secs(15)).await;
    assert_eq!(started["data"]["task_id"], sid);
    let (mut late, _) = connect_async(replica_b(&format!(
        "/ws/tasks/progress?token={}",
        app.admin_token
    )))
    .await
    .unwrap();
    next_of_type(&mut late, "snapshot", Duration::from_secs(5)).await;
    send(
        &mut late,
        json!({"action": "subscribe", "task_id": sid, "since": created["id"]}),
    )
    .await;
    let (snap, _) = next_of_type(&mut late, "snapshot", Duration::from_secs(5)).await;
    assert_eq!(snap["data"]["task_id"], sid);
    let (done, between) = next_of_type(&mut late, "task.completed", Duration::from_secs(15)).await;
    let types: Vec<&str> = between
        .iter()
        .filter(|e| e["data"]["task_id"] == sid)
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["task.started"],
        "replayed once, then live: {between:?}"
    );
    let replayed = between
        .iter()
        .find(|e| e["type"] == "task.started")
        .unwrap();
    assert_eq!(replayed["id"], started["id"], "{between:?}");
    assert_eq!(done["data"]["task_id"], sid);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_told_it_lagged_and_slows_no_one() {
    let app = App::start_with(Mode::SingleNode, &[("MCP_WORKER_CONCURRENCY", "64")]).await;
    // The stalled client connects and then does not read at all.
    let mut stalled = connect(&app, "/ws/tasks/progress", &app.admin_token).await;
    // Another client reads everything it is sent, as fast as it can.
    let mut reader = connect(&app, "/ws/tasks/progress", &app.admin_token).await;
    next_of_type(&mut reader, "snapshot", Duration::from_secs(5)).await;
    let (completions, mut completed) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = reader.next().await {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "task.completed" {
                    let _ = completions.send(v["data"]["task_id"].as_str().unwrap().to_string());
                }
            }
        }
    });

    // Enough event volume (1,500 tasks with 16 KiB payloads echoed in their results, ~25 MB
    // of events) to overflow the stalled client's 1 MiB queue and its socket buffers.
    let pad = "p".repeat(16 * 1024);
    let n = 1500;
    let before = app.processed("generic").await;
    for chunk in 0..n / 50 {
        let tasks: Vec<Value> = (0..50)
            .map(|i| json!({"type": "generic", "payload": {"i": chunk * 50 + i, "pad": pad}}))
            .collect();
        let (s, b) = app
            .admin("POST", "/api/v1/tasks/batch", Some(json!({"tasks": tasks})))
            .await;
        assert_eq!(s, 202, "{b}");
    }
    wait_for(
        "the flood to be processed",
        Duration::from_secs(180),
        || async {
            let done = app.processed("generic").await - before;
            if done >= n as i64 {
                Ok(())
            } else {
                Err(format!("{done}"))
            }
        },
    )
    .await;

    // The hub and the workers kept going, and a new task still reaches the reading client.
    let marker = app
        .create_task(json!({"type": "generic", "payload": {"marker": true}}))
        .await;
    let marker = marker["id"].as_str().unwrap().to_string();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(id) = completed.recv().await {
            if id == marker {
                return;
            }
        }
        panic!("the reading client was disconnected");
    })
    .await
    .expect("the reading client gets new events while another client is stalled");

    // Now the stalled client reads: what it gets includes the lag notice.
    receive_until(
        "the stalled client to be told it lagged",
        Duration::from_secs(60),
        async || stalled.next().await,
        |msg| match msg.expect("the stalled client stays connected") {
            Message::Text(t) if t.contains("\"lagged\"") => Some(()),
            _ => None,
        },
    )
    .await;
    send(&mut stalled, json!({"action": "ping"})).await;
    next_of_type(&mut stalled, "pong", Duration::from_secs(30)).await;
}

/// Reads SSE events from a streaming response until `stop` matches one; returns them all.
async fn read_sse(resp: reqwest::Response, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    receive_until(
        "the SSE event that ends the read",
        Duration::from_secs(20),
        async || stream.next().await,
        |chunk| {
            buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                let mut kind = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = Some(v.trim().to_string());
                    }
                }
                let Some(data) = data else { continue };
                let v: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(kind.as_deref(), v["type"].as_str());
                assert_eq!(id.as_deref(), v["id"].as_str());
                let done = stop(&v);
                events.push(v);
                if done {
                    return Some(());
                }
            }
            None
        },
    )
    .await;
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn server_sent_events_filter_and_resume() {
    let app = App::start(Mode::SingleNode).await;
    let task = app
        .create_task(json!({"type": "generic", "payload": {"sleep_ms": 500}}))
        .await;
    let id = task["id"].as_str().unwrap().to_string();
    let resp = app
        .http
        // From the start of what is retained, so the test does not race the task.
        .get(format!("{}/api/v1/events?task_id={id}&since=0-0", app.base))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_sse(resp, |v| v["type"] == "task.completed").await;
    assert!(
        events.iter().all(|e| e["data"]["task_id"] == id.as_str()),
        "{events:?}"
    );

    // Resume after the first event this client saw: exactly the rest, in order.
    let after = events[0]["id"].as_str().unwrap();
    let resp = app
        .http
        .get(format!("{}/api/v1/events?task_id={id}", app.base))
        .bearer_auth(&app.admin_token)
        .header("last-event-id", after)
        .send()
        .await
        .unwrap();
    let resumed = read_sse(resp, |v| v["type"] == "task.completed").await;
    let ids = |evs: &[Value]| evs.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&resumed), ids(&events[1..]));

    // A filter by type, and bad filters.
    let (status, body) = app
        .call(
            "GET",
            "/api/v1/events?type=task.bogus",
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = app.call("GET", "/api/v1/events", None, None).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_end_when_their_credentials_are_revoked() {
    let app = App::start_with(Mode::SingleNode, &[("MCP_WS_PING_MS", "300")]).await;
    let token = app
        .login(
            crate::helpers::app::ADMIN,
            crate::helpers::app::ADMIN_PASSWORD,
        )
        .await;
    let mut ws = connect(&app, "/ws/system/events", &token).await;
    next_of_type(&mut ws, "snapshot", Duration::from_secs(5)).await;
    let sse = app
        .http
        .get(format!("{}/api/v1/events", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let (agent_id, key) = app
        .register_agent(
            json!({"name": "rt-gone", "type": "ai_model", "capabilities": ["analysis"]}),
        )
        .await;
    let mut agent_ws = connect(&app, "/ws/tasks/progress", &key).await;
    next_of_type(&mut agent_ws, "snapshot", Duration::from_secs(5)).await;

    let (s, b) = app
        .call("POST", "/api/v1/auth/logout", Some(&token), Some(json!({})))
        .await;
    assert_eq!(s, 200, "{b}");
    let (code, reason) = close_frame(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(code, 4401, "{reason}");
    // The event stream ends too.
    let mut body = sse.bytes_stream();
    receive_until(
        "the event stream to end",
        Duration::from_secs(10),
        async || Some(body.next().await),
        |chunk| matches!(chunk, None | Some(Err(_))).then_some(()),
    )
    .await;

    let (s, b) = app
        .admin("DELETE", &format!("/api/v1/agents/{agent_id}"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    let (code, reason) = close_frame(&mut agent_ws, Duration::from_secs(10)).await;
    assert_eq!(code, 4401, "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_shows_a_sealed_result_as_rest_does() {
    let app = App::start(Mode::SingleNode).await;
    let task = app
        .create_task(
            json!({"type": "generic", "payload": {"secret": "s3cr3t-value-42", "n": 1},
                            "sensitive_fields": ["/secret"]}),
        )
        .await;
    let id = task["id"].as_str().unwrap();
    let done = app
        .wait_status(id, "completed", Duration::from_secs(30))
        .await;
    let rest = done["result"].clone();
    assert!(
        !rest.is_null(),
        "the generic handler echoes its input: {done}"
    );
    let mut ws = connect(&app, &format!("/ws/tasks/{id}"), &app.admin_token).await;
    let (snapshot, _) = next_of_type(&mut ws, "snapshot", Duration::from_secs(5)).await;
    assert_eq!(snapshot["data"]["result"], rest, "{snapshot}");
    assert!(
        !snapshot.to_string().contains("v1:"),
        "no sealed ciphertext in a snapshot: {snapshot}"
    );
}

/// Reads `error.occurred` events until `done` says the ones seen so far are enough.
async fn collect_errors(
    ws: &mut Socket,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let mut errors = Vec::new();
    receive_until(
        what,
        timeout,
        async || ws.next().await,
        |msg| {
            let Message::Text(text) = msg.expect("socket error") else {
                return None;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "error.occurred" {
                errors.push(v);
                if done(&errors) {
                    return Some(());
                }
            }
            None
        },
    )
    .await;
    errors
}

/// A failed stage, a storm of dead tasks (cut to a burst, every one sent or counted) and a
/// dependency outage with its recovery all reach a `/ws/system/events` subscriber.
async fn server_side_errors_reach_system_subscribers(mode: Mode) {
    let mut app = App::start(mode).await;
    if mode == Mode::Distributed {
        app.start_worker_binary("mcp-worker-ingestion", &[]);
        wait_for("an ingestion worker", Duration::from_secs(30), || async {
            let (_, b) = app
                .admin(
                    "GET",
                    "/api/v1/agents/discover?capability=stage_ingestion",
                    None,
                )
                .await;
            if b["count"].as_u64().unwrap_or(0) > 0 {
                Ok(())
            } else {
                Err(b.to_string())
            }
        })
        .await;
    }
    let mut ws = connect(&app, "/ws/system/events", &app.admin_token).await;
    next_of_type(&mut ws, "snapshot", Duration::from_secs(5)).await;

    // A stage whose input is gone fails its execution: one `stage_failed` error.
    let (status, body) = app
        .upload(
            "application/x-ndjson",
            b"{\"question\": \"a\", \"answer\": \"b\"}\n".to_vec(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let dataset = body["data"]["dataset_id"].as_str().unwrap().to_string();
    std::fs::remove_file(
        app.dir
            .path()
            .join(format!("artifacts/datasets/{dataset}.ndjson")),
    )
    .unwrap();
    let execution = app.start_execution(&json!(dataset), json!({})).await;
    let errors = collect_errors(
        &mut ws,
        "a stage_failed error",
        Duration::from_secs(60),
        |e| e.iter().any(|e| e["data"]["code"] == "stage_failed"),
    )
    .await;
    let failed = errors
        .iter()
        .find(|e| e["data"]["code"] == "stage_failed")
        .unwrap();
    assert_eq!(failed["data"]["execution_id"], execution, "{failed}");
    assert_eq!(failed["data"]["stage"], "ingestion", "{failed}");
    assert_eq!(failed["data"]["source"], "pipeline", "{failed}");
    assert!(
        failed["data"]["message"]
            .as_str()
            .unwrap()
            .contains("ingestion"),
        "{failed}"
    );
    assert!(
        !failed["id"].as_str().unwrap_or("").is_empty(),
        "a broadcast event has an id: {failed}"
    );

    // A storm: 30 tasks dead at once. Subscribers get at most a burst of them one by one, and
    // every other one is counted on a later error or a summary.
    let storm = 30;
    let tasks: Vec<Value> = (0..storm)
        .map(|i| json!({"type": "generic", "payload": {"fail": true, "n": i}, "max_attempts": 1}))
        .collect();
    let (status, body) = app
        .admin("POST", "/api/v1/tasks/batch", Some(json!({"tasks": tasks})))
        .await;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<Value> = body["data"]["task_ids"].as_array().unwrap().clone();
    let mine = |e: &Value| e["data"]["code"] == "task_dead" && ids.contains(&e["data"]["task_id"]);
    let held_back = |e: &Value| {
        let summary = e["data"]["code"] == "errors_suppressed" && e["data"]["kind"] == "task_dead";
        if summary || e["data"]["code"] == "task_dead" {
            e["data"]["suppressed"].as_u64().unwrap_or(0)
        } else {
            0
        }
    };
    // The pipeline's own dead shard was the first `task_dead` error: sent, so never counted.
    let errors = collect_errors(
        &mut ws,
        "every dead task sent or counted",
        Duration::from_secs(60),
        |e| {
            let sent = e.iter().filter(|e| mine(e)).count() as u64;
            let counted: u64 = e.iter().map(held_back).sum();
            sent + counted >= storm
        },
    )
    .await;
    let sent: Vec<&Value> = errors.iter().filter(|e| mine(e)).collect();
    let counted: u64 = errors.iter().map(held_back).sum();
    assert!(counted > 0, "a storm of {storm} is cut: {errors:?}");
    assert!(
        sent.len() <= 20,
        "{} of {storm} sent one by one",
        sent.len()
    );
    for e in &sent {
        assert_eq!(e["data"]["source"], "task", "{e}");
        assert!(
            e["data"]["message"].as_str().unwrap().contains("dead"),
            "{e}"
        );
        assert_eq!(e["data"]["attempt"], 1, "{e}");
    }
    // The tasks really are dead: the errors report, they do not invent.
    let (_, t) = app
        .admin(
            "GET",
            &format!(
                "/api/v1/tasks/{}",
                sent[0]["data"]["task_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(t["data"]["status"], "dead", "{t}");

    // A dependency outage and its recovery. Distributed: Redis. Single node: the artifact
    // directory.
    let (dependency, artifacts, moved) = (
        if mode == Mode::Distributed {
            "redis"
        } else {
            "artifact store"
        },
        app.dir.path().join("artifacts"),
        app.dir.path().join("artifacts.away"),
    );
    match mode {
        Mode::Distributed => app.redis.as_mut().unwrap().stop(),
        Mode::SingleNode => std::fs::rename(&artifacts, &moved).unwrap(),
    }
    let errors = collect_errors(&mut ws, "the outage", Duration::from_secs(30), |e| {
        e.iter()
            .any(|e| e["data"]["code"] == "dependency_unavailable")
    })
    .await;
    let outage = errors
        .iter()
        .find(|e| e["data"]["code"] == "dependency_unavailable")
        .unwrap();
    assert_eq!(outage["data"]["dependency"], dependency, "{outage}");
    assert_eq!(outage["data"]["state"], "raised", "{outage}");
    match mode {
        Mode::Distributed => app.redis.as_mut().unwrap().spawn(),
        Mode::SingleNode => std::fs::rename(&moved, &artifacts).unwrap(),
    }
    let errors = collect_errors(&mut ws, "the recovery", Duration::from_secs(30), |e| {
        e.iter()
            .any(|e| e["data"]["code"] == "dependency_recovered")
    })
    .await;
    let recovered = errors
        .iter()
        .find(|e| e["data"]["code"] == "dependency_recovered")
        .unwrap();
    assert_eq!(recovered["data"]["dependency"], dependency, "{recovered}");
    assert!(
        recovered["data"]["down_ms"].as_u64().unwrap() > 0,
        "{recovered}"
    );
    assert_eq!(
        recovered["data"]["replica"], outage["data"]["replica"],
        "{recovered}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_side_errors_reach_system_subscribers_single_node() {
    server_side_errors_reach_system_subscribers(Mode::SingleNode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_side_errors_reach_system_subscribers_distributed() {
    server_side_errors_reach_system_subscribers(Mode::Distributed).await;
}
