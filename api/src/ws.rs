//! WebSocket channels. A client authenticates with the `Authorization` header or `?token=`,
//! gets a snapshot first and then live events, and may send `{"action":"ping"}`.
//!
//! Close codes: 4401 bad credentials, 4403 not permitted, 4404 unknown task.

use futures::{SinkExt, StreamExt};
use mcp_shared::{
    auth::{Permission, TokenKind},
    db::tasks,
    domain::event::Event,
};
use poem::{
    IntoResponse, Request, handler,
    web::{
        Data, Path, Query,
        websocket::{CloseCode, Message, WebSocket},
    },
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::{auth::Principal, state::AppState};

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// Authenticates from the header or the `token` query parameter (browsers cannot set headers).
fn authenticate(state: &AppState, req: &Request, query: &TokenQuery) -> Option<Principal> {
    let raw = req
        .header("authorization")
        .map(str::to_owned)
        .or_else(|| query.token.as_ref().map(|t| format!("Bearer {t}")))?;
    let (scheme, credential) = raw.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let claims = state
        .jwt
        .verify(credential.trim(), TokenKind::Access)
        .ok()?;
    Some(Principal {
        id: claims.sub,
        name: claims.name,
        role: claims.role,
    })
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
    let state = state.0.clone();
    let principal = authenticate(&state, req, &query);
    let task_id = Uuid::parse_str(&id).ok();
    ws.on_upgrade(move |socket| async move {
        let (mut sink, mut stream) = socket.split();
        let close = |code: u16, reason: &str| Message::close_with(CloseCode::from(code), reason.to_string());
        let Some(principal) = principal else {
            let _ = sink.send(close(4401, "invalid or missing credentials")).await;
            return;
        };
        if principal.require(Permission::TaskRead).is_err() {
            let _ = sink.send(close(4403, "not permitted to read tasks")).await;
            return;
        }
        let Some(task_id) = task_id else {
            let _ = sink.send(close(4404, "unknown task")).await;
            return;
        };
        // Subscribe before reading the snapshot, so nothing between the two is missed.
        let mut events = state.bus.subscribe();
        let snapshot = match tasks::find(&state.db.conn, task_id).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                let _ = sink.send(close(4404, "unknown task")).await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "snapshot failed");
                let _ = sink.send(close(1011, "temporarily unavailable")).await;
                return;
            }
        };
        let first = json!({
            "type": "snapshot",
            "ts": chrono::Utc::now(),
            "data": {"task_id": snapshot.id, "status": snapshot.status, "progress": snapshot.progress, "result": snapshot.result, "error": snapshot.error},
        });
        if sink.send(Message::text(first.to_string())).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) if event.task_id == Some(task_id) => {
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
                        let reply = match serde_json::from_str::<serde_json::Value>(&text) {
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
    })
}

/// The wire form of an event: `{type, id, ts, data}`.
pub fn render(event: &Event) -> String {
    json!({"type": event.kind, "id": event.id, "ts": event.ts, "data": event.data}).to_string()
}
