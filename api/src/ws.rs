//! WebSocket channels, fed by the event bus. A client authenticates with the `Authorization`
//! header or `?token=` (a JWT or an agent key), gets a snapshot first and then live events, and
//! may send `{"action":"ping"}`.
//!
//! Close codes: 4401 bad credentials, 4403 not permitted, 4404 unknown task.

use futures::{SinkExt, StreamExt};
use mcp_shared::{auth::Permission, db::tasks, domain::event::Event};
use poem::{
    IntoResponse, Request, handler,
    web::{
        Data, Path, Query,
        websocket::{CloseCode, Message, WebSocket, WebSocketStream},
    },
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::{
    auth::{self, Principal},
    directory,
    state::AppState,
};

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// Which events a channel carries.
#[derive(Debug, Clone, Copy)]
enum Channel {
    AgentsStatus,
    TasksProgress,
    PipelineUpdates,
    SystemEvents,
    Task(Uuid),
}

impl Channel {
    fn permission(self) -> Permission {
        match self {
            Channel::AgentsStatus => Permission::AgentBasic,
            Channel::TasksProgress | Channel::Task(_) => Permission::TaskRead,
            Channel::PipelineUpdates => Permission::PipelineRead,
            Channel::SystemEvents => Permission::SystemRead,
        }
    }

    fn carries(self, event: &Event) -> bool {
        let kind = event.kind.as_str();
        match self {
            Channel::AgentsStatus => kind.starts_with("agent."),
            Channel::TasksProgress => kind.starts_with("task."),
            Channel::PipelineUpdates => kind.starts_with("stage.") || kind.starts_with("pipeline."),
            Channel::SystemEvents => true,
            Channel::Task(id) => event.task_id == Some(id),
        }
    }
}

/// An agent sees only events about itself; users see everything their role may read.
fn visible_to(principal: &Principal, event: &Event) -> bool {
    match principal.agent_id() {
        Some(me) => event.agent_id == Some(me),
        None => true,
    }
}

/// Authenticates from the header or the `token` query parameter (browsers cannot set headers).
async fn authenticate(state: &AppState, req: &Request, query: &TokenQuery) -> Option<Principal> {
    let header = match (req.header("authorization"), &query.token) {
        (Some(h), _) => h.to_string(),
        (None, Some(t)) if t.starts_with(mcp_shared::domain::agent::AGENT_KEY_PREFIX) => {
            format!("Agent {t}")
        }
        (None, Some(t)) => format!("Bearer {t}"),
        (None, None) => return None,
    };
    auth::resolve(state, &header).await.ok()
}

fn close(code: u16, reason: &str) -> Message {
    Message::close_with(CloseCode::from(code), reason.to_string())
}

/// The wire form of an event: `{type, id, ts, data}`.
pub fn render(event: &Event) -> String {
    json!({"type": event.kind, "id": event.id, "ts": event.ts, "data": event.data}).to_string()
}

async fn snapshot(
    state: &AppState,
    principal: &Principal,
    channel: Channel,
) -> Result<Value, (u16, &'static str)> {
    let data = match channel {
        Channel::Task(id) => match tasks::find(&state.db.conn, id).await {
            Ok(Some(t)) => {
                if principal.agent_id().is_some() && t.agent_id != principal.agent_id() {
                    return Err((4403, "this task is not routed to you"));
                }
                json!({"task_id": t.id, "status": t.status, "progress": t.progress, "result": t.result, "error": t.error})
            }
            Ok(None) => return Err((4404, "unknown task")),
            Err(_) => return Err((1011, "temporarily unavailable")),
        },
        Channel::AgentsStatus => {
            let found = state
                .directory
                .discover(&directory::Query {
                    limit: 1000,
                    ..Default::default()
                })
                .await;
            let agents: Vec<Value> = found
                .iter()
                .filter(|e| principal.agent_id().is_none_or(|me| me == e.model.id))
                .map(|e| json!({"agent_id": e.model.id, "name": e.model.name, "status": e.status, "current_load": e.load()}))
                .collect();
            json!({"agents": agents})
        }
        _ => json!({}),
    };
    Ok(json!({"type": "snapshot", "ts": chrono::Utc::now(), "data": data}))
}

async fn serve(
    socket: WebSocketStream,
    state: AppState,
    principal: Option<Principal>,
    channel: Option<Channel>,
) {
    let (mut sink, mut stream) = socket.split();
    let Some(principal) = principal else {
        let _ = sink
            .send(close(4401, "invalid or missing credentials"))
            .await;
        return;
    };
    let Some(channel) = channel else {
        let _ = sink.send(close(4404, "unknown task")).await;
        return;
    };
    if principal.require(channel.permission()).is_err() {
        let _ = sink
            .send(close(4403, "not permitted on this channel"))
            .await;
        return;
    }
    // Subscribe before reading the snapshot, so nothing between the two is missed.
    let mut events = state.bus.subscribe();
    let first = match snapshot(&state, &principal, channel).await {
        Ok(v) => v,
        Err((code, reason)) => {
            let _ = sink.send(close(code, reason)).await;
            return;
        }
    };
    if sink.send(Message::text(first.to_string())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) if channel.carries(&event) && visible_to(&principal, &event) => {
                    if sink.send(Message::text(render(&event))).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    if sink.send(Message::text(json!({"type": "lagged"}).to_string())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let reply = match serde_json::from_str::<Value>(&text) {
                        Ok(v) if v["action"] == "ping" => json!({"type": "pong", "ts": chrono::Utc::now()}),
                        _ => json!({"type": "error.occurred", "data": {"message": "unknown action; send {\"action\":\"ping\"}"}}),
                    };
                    if sink.send(Message::text(reply.to_string())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn upgrade(
    req: &Request,
    ws: WebSocket,
    query: TokenQuery,
    state: &AppState,
    channel: Option<Channel>,
) -> impl IntoResponse + use<> {
    let state = state.clone();
    let principal = authenticate(&state, req, &query).await;
    ws.on_upgrade(move |socket| serve(socket, state, principal, channel))
}

/// `/ws/tasks/{id}`: the task's snapshot, then its events.
#[handler]
pub async fn task_channel(
    req: &Request,
    ws: WebSocket,
    Path(id): Path<String>,
    Query(query): Query<TokenQuery>,
    state: Data<&AppState>,
) -> impl IntoResponse {
    let channel = Uuid::parse_str(&id).ok().map(Channel::Task);
    upgrade(req, ws, query, &state, channel).await
}

macro_rules! channel_handler {
    ($(#[$doc:meta])* $name:ident => $channel:expr) => {
        $(#[$doc])*
        #[handler]
        pub async fn $name(
            req: &Request,
            ws: WebSocket,
            Query(query): Query<TokenQuery>,
            state: Data<&AppState>,
        ) -> impl IntoResponse {
            upgrade(req, ws, query, &state, Some($channel)).await
        }
    };
}

channel_handler!(
    /// `/ws/agents/status`: agent registrations, status changes, deregistrations.
    agents_status => Channel::AgentsStatus
);
channel_handler!(
    /// `/ws/tasks/progress`: every task event.
    tasks_progress => Channel::TasksProgress
);
channel_handler!(
    /// `/ws/pipeline/updates`: stage and pipeline events.
    pipeline_updates => Channel::PipelineUpdates
);
channel_handler!(
    /// `/ws/system/events`: everything.
    system_events => Channel::SystemEvents
);
