//! WebSocket channels, fed by the event bus (in distributed mode, the Redis stream every replica
//! reads, so any replica serves any subscriber).
//!
//! - Auth: the `Authorization` header or `?token=` (a JWT or an agent key). Close codes: 4401 bad
//!   credentials, 4403 not permitted on the channel, 4404 unknown task (`/ws/tasks/{id}`), 1013
//!   when the replica already holds `MAX_AGENT_CONNECTIONS` connections, 1009 for a client
//!   message over 64 KiB, 1001 when pings go unanswered.
//! - On connect: a snapshot, then the channel's live events. `{"action":"subscribe", "task_id"?,
//!   "execution_id"?, "criteria"?: {"types"?, "agent_id"?}, "since"?}` narrows the connection to
//!   what it names (each subscription adds to the previous ones), answering with that snapshot,
//!   then the retained events after `since`, then live ones without gaps or repeats.
//!   `unsubscribe` removes one (or, with no keys, all); `ping` gets `pong`.
//! - A client that stops reading gets `{"type":"lagged"}` past [`session::OUTBOUND_BUFFER`]
//!   queued messages; it may resubscribe with `since`.

mod channel;
mod session;

use poem::{
    IntoResponse, Request, handler,
    web::{
        Data, Path, Query,
        websocket::{CloseCode, Message, WebSocket, WebSocketConfig},
    },
};
use serde::Deserialize;
use uuid::Uuid;

use self::channel::Channel;
use crate::{audit, principal::Principal, services::sessions, state::AppState};

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// Authenticates from the header or the `token` query parameter (browsers cannot set headers).
pub async fn authenticate(
    state: &AppState,
    req: &Request,
    token: Option<&str>,
) -> Option<Principal> {
    let header = match (req.header("authorization"), token) {
        (Some(h), _) => h.to_string(),
        (None, Some(t)) if t.starts_with(mcp_shared::domain::agent::AGENT_KEY_PREFIX) => {
            format!("Agent {t}")
        }
        (None, Some(t)) => format!("Bearer {t}"),
        (None, None) => return None,
    };
    sessions::resolve(state, &header).await.ok()
}

fn close(code: u16, reason: &str) -> Message {
    Message::close_with(CloseCode::from(code), reason.to_string())
}

async fn upgrade(
    req: &Request,
    ws: WebSocket,
    query: TokenQuery,
    state: &AppState,
    channel: Option<Channel>,
) -> impl IntoResponse + use<> {
    let state = state.clone();
    let principal = authenticate(&state, req, query.token.as_deref()).await;
    // Refusals are closes after the upgrade, which the middleware sees as 101: note them here.
    match (&principal, channel) {
        (None, _) => audit::note_security_event("security.ws_unauthenticated", None),
        (Some(p), Some(c)) if p.require(c.permission()).is_err() => {
            audit::set_actor(p.actor());
            audit::note_security_event("security.ws_forbidden", None);
        }
        _ => {}
    }
    let slot = state.connections.open(state.settings.max_agent_connections);
    // Clients send small control messages: a small read buffer keeps an idle connection cheap
    // (the default reserves 128 KiB for each).
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(session::MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(session::MAX_CLIENT_MESSAGE));
    ws.config(config).on_upgrade(move |socket| async move {
        use futures::SinkExt;
        let mut socket = socket;
        let refusal = match (&principal, channel, &slot) {
            (None, _, _) => Some(close(4401, "invalid or missing credentials")),
            (_, None, _) => Some(close(4404, "unknown task")),
            (_, _, None) => Some(close(
                1013,
                &format!(
                    "too many connections: this replica allows MAX_AGENT_CONNECTIONS={}",
                    state.settings.max_agent_connections
                ),
            )),
            (Some(p), Some(c), Some(_)) if p.require(c.permission()).is_err() => {
                Some(close(4403, "not permitted on this channel"))
            }
            _ => None,
        };
        if let Some(message) = refusal {
            let _ = socket.send(message).await;
            let _ = socket.close().await;
            return;
        }
        let (Some(principal), Some(channel)) = (principal, channel) else {
            return;
        };
        session::Session {
            state,
            principal,
            channel,
        }
        .run(socket)
        .await;
        drop(slot);
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
