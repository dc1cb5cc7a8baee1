//! `mcpctl watch task ID` and `mcpctl watch pipeline ID`: live progress over the WebSocket until
//! the task or execution ends; the exit code says how it ended.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

use crate::{
    client::Client,
    config::{Config, Output},
    error::{Error, Exit, Result},
    output::{Progress, bar},
};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Consecutive dropped connections tolerated before giving up.
const RECONNECTS: u32 = 5;

pub const STAGES: [&str; 6] = [
    "ingestion",
    "standardization",
    "validation",
    "processing",
    "quality_assessment",
    "export",
];

async fn connect(client: &mut Client, path: &str) -> Result<Socket> {
    let url = client.ws_url(path);
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::usage(format!("bad WebSocket URL {url}: {e}")))?;
    if let Some(t) = client.token().await? {
        let value = format!("Bearer {t}")
            .parse()
            .map_err(|_| Error::auth("the token is not a valid header value"))?;
        req.headers_mut().insert("authorization", value);
    }
    match connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(Error::new(
            Error::exit_for_status(resp.status().as_u16()),
            format!("the WebSocket upgrade was refused: HTTP {}", resp.status()),
        )),
        Err(e) => Err(Error::server(format!("cannot open {url}: {e}"))),
    }
}

/// Reads the next text message as JSON; `None` when the connection dropped (reconnect), and
/// the close codes that answer the watch (credentials, unknown task) as errors.
async fn next(ws: &mut Socket) -> Result<Option<Value>> {
    loop {
        match ws.next().await {
            None | Some(Err(_)) => return Ok(None),
            Some(Ok(Message::Text(text))) => {
                return Ok(Some(serde_json::from_str(&text).unwrap_or(Value::Null)));
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((u16::from(CloseCode::Normal), String::new()));
                return match code {
                    4401 | 4403 => Err(Error::auth(format!(
                        "the server closed the watch: {reason}"
                    ))),
                    4404 => Err(Error::new(Exit::NotFound, format!("not found: {reason}"))),
                    _ => Ok(None),
                };
            }
            Some(Ok(_)) => {}
        }
    }
}

fn task_exit(status: &str) -> Option<Exit> {
    match status {
        "completed" => Some(Exit::Ok),
        "dead" | "cancelled" => Some(Exit::Failed),
        _ => None,
    }
}

pub async fn task(config: &Config, id: &str) -> Result<Exit> {
    let mut client = Client::authenticated(config)?;
    // A clear 404 (and a token refreshed) before the socket opens.
    let task = client.get(&format!("/api/v1/tasks/{id}")).await?;
    let mut status = task["status"].as_str().unwrap_or("unknown").to_string();
    let mut progress_pct = task["progress"].as_u64().unwrap_or(0);
    let mut progress = Progress::new();
    let mut drops = 0;
    let exit = 'watch: loop {
        let mut ws = connect(&mut client, &format!("/ws/tasks/{id}")).await?;
        loop {
            let msg = match next(&mut ws).await? {
                Some(v) => v,
                None => {
                    drops += 1;
                    if drops > RECONNECTS {
                        return Err(Error::server("the WebSocket kept dropping; giving up"));
                    }
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(drops))).await;
                    // The snapshot on reconnect brings the state up to date.
                    continue 'watch;
                }
            };
            let data = &msg["data"];
            match msg["type"].as_str().unwrap_or("") {
                "snapshot" => {
                    drops = 0;
                    if let Some(s) = data["status"].as_str() {
                        status = s.into();
                    }
                    progress_pct = data["progress"].as_u64().unwrap_or(progress_pct);
                }
                "task.progress" => progress_pct = data["progress"].as_u64().unwrap_or(progress_pct),
                "task.assigned" => status = "assigned".into(),
                "task.started" => status = "running".into(),
                "task.failed" => status = "failed (will retry)".into(),
                "task.completed" => {
                    status = "completed".into();
                    progress_pct = 100;
                }
                "task.dead" => status = "dead".into(),
                "task.cancelled" => status = "cancelled".into(),
                // Missed events: a fresh connection's snapshot has the current state.
                "lagged" => continue 'watch,
                _ => {}
            }
            progress.draw(vec![format!(
                "task {id} {} {progress_pct:>3}% {status}",
                bar(progress_pct, 100, 30)
            )]);
            if let Some(exit) = task_exit(&status) {
                let _ = ws.close(None).await;
                break 'watch exit;
            }
        }
    };
    let task = client.get(&format!("/api/v1/tasks/{id}")).await?;
    match config.output {
        Output::Json => println!("{task}"),
        Output::Human => {
            let mut line = format!("task {id} {}", task["status"].as_str().unwrap_or(&status));
            if let Some(e) = task["error"].as_str() {
                line.push_str(&format!(": {e}"));
            }
            println!("{line}");
        }
    }
    Ok(exit)
}

/// Per-stage state of an execution.
struct Stages {
    status: [String; 6],
    progress: [u64; 6],
}

impl Stages {
    fn index(stage: &str) -> Option<usize> {
        STAGES.iter().position(|s| *s == stage)
    }

    fn apply_snapshot(&mut self, data: &Value) {
        for s in data["stages"].as_array().into_iter().flatten() {
            if let Some(i) = s["stage"].as_str().and_then(Self::index) {
                if let Some(st) = s["status"].as_str() {
                    self.status[i] = st.into();
                }
                self.progress[i] = s["progress"].as_u64().unwrap_or(self.progress[i]);
            }
        }
    }

    fn lines(&self, id: &str, status: &str) -> Vec<String> {
        let mut lines = vec![format!("execution {id} {status}")];
        for (i, stage) in STAGES.iter().enumerate() {
            lines.push(format!(
                "  {stage:<18} {} {:>3}% {}",
                bar(self.progress[i], 100, 24),
                self.progress[i],
                self.status[i]
            ));
        }
        lines
    }
}

fn pipeline_exit(status: &str) -> Option<Exit> {
    match status {
        "completed" => Some(Exit::Ok),
        "failed" | "cancelled" => Some(Exit::Failed),
        _ => None,
    }
}

pub async fn pipeline(config: &Config, id: &str) -> Result<Exit> {
    let mut client = Client::authenticated(config)?;
    let execution = client.get(&format!("/api/v1/pipeline/{id}")).await?;
    let mut status = execution["status"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    let mut stages = Stages {
        status: std::array::from_fn(|_| "pending".to_string()),
        progress: [0; 6],
    };
    let mut progress = Progress::new();
    let mut drops = 0;
    // Even an execution that has ended is read through the socket: its snapshot draws the
    // final state before the exit.
    let exit = 'watch: loop {
        let mut ws = connect(&mut client, "/ws/pipeline/updates").await?;
        // No `since` on a reconnect: the subscription's snapshot is the current state.
        let subscribe = json!({"action": "subscribe", "execution_id": id});
        if ws.send(Message::text(subscribe.to_string())).await.is_err() {
            drops += 1;
            continue 'watch;
        }
        loop {
            let msg = match next(&mut ws).await? {
                Some(v) => v,
                None => {
                    drops += 1;
                    if drops > RECONNECTS {
                        return Err(Error::server("the WebSocket kept dropping; giving up"));
                    }
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(drops))).await;
                    continue 'watch;
                }
            };
            let data = &msg["data"];
            // The channel also carries other executions' events until the subscription narrows it.
            if data["execution_id"].as_str().is_some_and(|e| e != id) {
                continue;
            }
            match msg["type"].as_str().unwrap_or("") {
                // The channel's own snapshot, sent on connect, is not about this execution.
                "snapshot" if msg.get("subscription").is_none() => continue,
                "snapshot" => {
                    drops = 0;
                    if let Some(s) = data["status"].as_str() {
                        status = s.into();
                    }
                    stages.apply_snapshot(data);
                }
                "error.occurred" if data["code"] == "not_visible" => {
                    return Err(Error::new(
                        Exit::NotFound,
                        format!("execution {id} not found or not visible"),
                    ));
                }
                "stage.started" => {
                    status = "running".into();
                    if let Some(i) = data["stage"].as_str().and_then(Stages::index) {
                        stages.status[i] = "running".into();
                    }
                }
                "task.progress" => {
                    if let Some(i) = data["stage"].as_str().and_then(Stages::index) {
                        stages.progress[i] = data["progress"]
                            .as_u64()
                            .unwrap_or(stages.progress[i])
                            .min(99);
                    }
                }
                "stage.completed" => {
                    if let Some(i) = data["stage"].as_str().and_then(Stages::index) {
                        stages.status[i] = "completed".into();
                        stages.progress[i] = 100;
                    }
                }
                "pipeline.completed" => status = "completed".into(),
                "pipeline.failed" => {
                    status = "failed".into();
                    if let Some(i) = data["stage"].as_str().and_then(Stages::index) {
                        stages.status[i] = "failed".into();
                    }
                }
                "pipeline.cancelled" => status = "cancelled".into(),
                // Missed events: a fresh connection's snapshot has the current state.
                "lagged" => continue 'watch,
                _ => {}
            }
            progress.draw(stages.lines(id, &status));
            if let Some(exit) = pipeline_exit(&status) {
                let _ = ws.close(None).await;
                break 'watch exit;
            }
        }
    };
    let execution = client.get(&format!("/api/v1/pipeline/{id}")).await?;
    match config.output {
        Output::Json => println!("{execution}"),
        Output::Human => println!(
            "execution {id} {}",
            execution["status"].as_str().unwrap_or(&status)
        ),
    }
    Ok(exit)
}
