//! One WebSocket connection: its subscriptions, the client's actions, keep-alive pings, and a
//! bounded outbound queue so a client that stops reading never slows anyone else.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use mcp_shared::{bus::EventId, domain::event::Event};
use poem::web::websocket::{CloseCode, Message, WebSocketStream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast::error::RecvError, mpsc};

use super::channel::{Channel, channel_snapshot, render};
use crate::{
    error::ErrorCode,
    principal::Principal,
    services::{
        events::{self as subscriptions, Filter},
        sessions,
    },
    state::AppState,
};

/// Messages waiting for one client; past this (or [`OUTBOUND_BYTES`]) the client is sent
/// `lagged` and events are dropped until it catches up.
pub const OUTBOUND_BUFFER: usize = 1024;
/// Bytes waiting for one client, so large events cannot make a slow client expensive.
pub const OUTBOUND_BYTES: usize = 1024 * 1024;
/// Largest client message accepted; bigger ones close the connection with 1009.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Subscriptions one connection may hold; a subscribe beyond them is answered with an error.
pub const MAX_SUBSCRIPTIONS: usize = 32;
/// Client messages one connection may send in a burst, and per second after it.
pub const MESSAGE_BURST: u32 = 20;
pub const MESSAGES_PER_SECOND: u32 = 10;
/// Messages refused for the rate within [`STRIKE_WINDOW`] after which the connection is closed
/// with 1008: a client that ignores the error frames is not served further.
pub const MAX_STRIKES: u32 = 50;
const STRIKE_WINDOW: Duration = Duration::from_secs(10);

/// A token bucket over the client's messages, and a count of the ones it refused.
struct MessageBudget {
    tokens: f64,
    refilled: tokio::time::Instant,
    strikes: u32,
    strikes_since: tokio::time::Instant,
}

/// What to do with one client message.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    Handle,
    Refuse,
    Close,
}

impl MessageBudget {
    fn new() -> Self {
        let now = tokio::time::Instant::now();
        Self {
            tokens: f64::from(MESSAGE_BURST),
            refilled: now,
            strikes: 0,
            strikes_since: now,
        }
    }

    fn admit(&mut self) -> Admission {
        let now = tokio::time::Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(MESSAGES_PER_SECOND)).min(f64::from(MESSAGE_BURST));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Handle;
        }
        if now.duration_since(self.strikes_since) > STRIKE_WINDOW {
            self.strikes = 0;
            self.strikes_since = now;
        }
        self.strikes += 1;
        if self.strikes > MAX_STRIKES {
            Admission::Close
        } else {
            Admission::Refuse
        }
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::close_with(CloseCode::from(code), reason.to_string())
}

fn error(code: &str, message: &str) -> Value {
    json!({"type": "error.occurred", "ts": chrono::Utc::now(), "data": {"code": code, "message": message}})
}

/// One subscription of the connection.
struct Subscription {
    filter: Filter,
    /// Checked against the task it names (an agent's own task).
    authorized: bool,
    /// Events up to this id were already sent by a replay.
    replayed_to: Option<EventId>,
}

#[derive(Debug, Deserialize)]
struct ClientMessage {
    action: String,
    #[serde(flatten)]
    filter: Filter,
    criteria: Option<Filter>,
    since: Option<String>,
}

/// Where the connection's outbound messages go: a bounded queue drained by a writer task.
struct Outbound {
    tx: mpsc::Sender<Message>,
    /// Bytes queued and not yet written; the writer subtracts what it sends.
    queued: Arc<AtomicUsize>,
    /// Events were dropped; the `lagged` notice goes out as soon as there is room again.
    lagged: bool,
}

impl Outbound {
    /// Queues a message, or drops it and marks the client lagged when its queue is full.
    fn push(&mut self, text: String) {
        if self.lagged {
            return;
        }
        let len = text.len();
        if self.queued.load(Ordering::Relaxed) + len > OUTBOUND_BYTES {
            self.lagged = true;
            return;
        }
        // Counted before it is queued, so the writer never subtracts first.
        self.queued.fetch_add(len, Ordering::Relaxed);
        if self.tx.try_send(Message::text(text)).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.lagged = true;
        }
    }

    /// A reply to the client's own request (snapshot, pong, error): sent even while events are
    /// being dropped, so the client can always resynchronise.
    fn reply(&mut self, text: String) {
        let len = text.len();
        self.queued.fetch_add(len, Ordering::Relaxed);
        if self.tx.try_send(Message::text(text)).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
        }
    }

    /// After a lag, once the client has drained half its backlog: the `lagged` notice, and
    /// events flow again.
    fn try_resume(&mut self) {
        if self.queued.load(Ordering::Relaxed) <= OUTBOUND_BYTES / 2
            && self.tx.capacity() >= OUTBOUND_BUFFER / 2
        {
            self.lagged = false;
            self.reply(json!({"type": "lagged"}).to_string());
        }
    }
}

pub struct Session {
    pub state: AppState,
    pub principal: Principal,
    pub channel: Channel,
}

impl Session {
    pub async fn run(self, socket: WebSocketStream) {
        let (mut sink, mut stream) = socket.split();
        let (tx, mut rx) = mpsc::channel::<Message>(OUTBOUND_BUFFER);
        let queued = Arc::new(AtomicUsize::new(0));
        let written = queued.clone();
        let writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let closing = matches!(m, Message::Close(_));
                let len = match &m {
                    Message::Text(t) => t.len(),
                    _ => 0,
                };
                if sink.send(m).await.is_err() || closing {
                    break;
                }
                written.fetch_sub(len, Ordering::Relaxed);
            }
            let _ = sink.close().await;
        });
        let mut out = Outbound {
            tx,
            queued,
            lagged: false,
        };

        // Subscribe to the bus before any snapshot or replay, so nothing falls between them.
        let mut events = subscriptions::subscribe(&self.state);
        let mut subs = Vec::new();
        match self.channel {
            Channel::Task(id) => {
                let filter = Filter {
                    task_id: Some(id),
                    ..Default::default()
                };
                match subscriptions::snapshot(&self.state, &self.principal, &filter).await {
                    Ok(data) => {
                        out.reply(
                            json!({"type": "snapshot", "ts": chrono::Utc::now(), "data": data})
                                .to_string(),
                        );
                        subs.push(Subscription {
                            filter,
                            authorized: true,
                            replayed_to: None,
                        });
                    }
                    Err(reason) => {
                        let _ = out.tx.send(close(4404, reason)).await;
                        let _ = writer.await;
                        return;
                    }
                }
            }
            channel => {
                let data = channel_snapshot(&self.state, &self.principal, channel).await;
                out.reply(
                    json!({"type": "snapshot", "ts": chrono::Utc::now(), "data": data}).to_string(),
                );
                subs.push(Subscription {
                    filter: Filter::default(),
                    authorized: false,
                    replayed_to: None,
                });
            }
        }
        // Until the client subscribes explicitly, it follows the whole channel (or its task).
        let mut implicit = true;

        let ping_every = self.state.settings.ws_ping_interval;
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let mut last_heard = tokio::time::Instant::now();
        let mut resume_check = tokio::time::interval(Duration::from_millis(50));
        let mut budget = MessageBudget::new();
        // Logged out, expired, disabled or deregistered: the connection ends within a ping.
        let credentials_end =
            sessions::credentials_end(self.state.clone(), self.principal.clone(), ping_every);
        tokio::pin!(credentials_end);

        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => self.deliver(&event, &mut subs, &mut out),
                    // This process's fan-out overran the connection: same as a full queue.
                    Err(RecvError::Lagged(_)) => out.lagged = true,
                    Err(RecvError::Closed) => break,
                },
                incoming = stream.next() => {
                    last_heard = tokio::time::Instant::now();
                    match incoming {
                        Some(Ok(Message::Text(text))) => match budget.admit() {
                            Admission::Handle => {
                                if let Err(close_with) =
                                    self.handle(&text, &mut subs, &mut implicit, &mut out).await
                                {
                                    let _ = out.tx.try_send(close_with);
                                    break;
                                }
                            }
                            Admission::Refuse => out.reply(
                                error(
                                    "rate_limited",
                                    &format!(
                                        "more than {MESSAGES_PER_SECOND} messages a second (bursts of {MESSAGE_BURST}); \
                                         this one was ignored, slow down"
                                    ),
                                )
                                .to_string(),
                            ),
                            Admission::Close => {
                                tracing::warn!(actor = %self.principal.actor(), "websocket client flooding: closed");
                                let _ = out.tx.try_send(close(1008, "too many messages"));
                                break;
                            }
                        },
                        Some(Ok(Message::Binary(_))) => {
                            out.reply(error("unsupported", "send JSON text messages").to_string());
                        }
                        Some(Ok(Message::Close(_))) | None => break,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            if e.to_string().contains("too long") || e.to_string().contains("too big") {
                                let _ = out.tx.try_send(close(1009, "message too big"));
                            }
                            break;
                        }
                    }
                }
                ended = &mut credentials_end => {
                    let _ = out.tx.try_send(close(ended.code, ended.reason));
                    break;
                }
                _ = resume_check.tick(), if out.lagged => out.try_resume(),
                _ = ping.tick() => {
                    if last_heard.elapsed() > ping_every * 2 {
                        let _ = out.tx.try_send(close(1001, "no answer to pings"));
                        break;
                    }
                    let _ = out.tx.try_send(Message::Ping(Vec::new()));
                }
            }
            if writer.is_finished() {
                break;
            }
        }
        drop(out);
        // Give the writer a moment to flush a close frame; a client that stopped reading does
        // not get to hold the task.
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }

    fn deliver(&self, event: &Event, subs: &mut [Subscription], out: &mut Outbound) {
        if !self.channel.carries(event) {
            return;
        }
        let id = EventId::parse(&event.id);
        let wanted = subs.iter().any(|s| {
            s.filter.matches(event)
                && subscriptions::visible_to(&self.principal, event, s.authorized)
                && !matches!((s.replayed_to, id), (Some(upto), Some(id)) if id <= upto)
        });
        if wanted {
            out.push(render(event));
        }
    }

    async fn handle(
        &self,
        text: &str,
        subs: &mut Vec<Subscription>,
        implicit: &mut bool,
        out: &mut Outbound,
    ) -> Result<(), Message> {
        let msg: ClientMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                out.reply(
                    error(
                        "invalid_message",
                        &format!("expected {{\"action\": \"subscribe\"|\"unsubscribe\"|\"ping\", …}}: {e}"),
                    )
                    .to_string(),
                );
                return Ok(());
            }
        };
        match msg.action.as_str() {
            "ping" => out.reply(json!({"type": "pong", "ts": chrono::Utc::now()}).to_string()),
            "subscribe" => {
                let mut filter = msg.criteria.unwrap_or_default();
                filter.task_id = msg.filter.task_id.or(filter.task_id);
                filter.execution_id = msg.filter.execution_id.or(filter.execution_id);
                filter.types = msg.filter.types.or(filter.types);
                filter.agent_id = msg.filter.agent_id.or(filter.agent_id);
                let since = match msg.since.as_deref().map(EventId::parse) {
                    Some(None) => {
                        out.reply(
                            error(
                                "invalid_since",
                                "`since` must be an event id like 1732400000000-0",
                            )
                            .to_string(),
                        );
                        return Ok(());
                    }
                    Some(Some(id)) => Some(id),
                    None => None,
                };
                let known = subs.iter().any(|s| s.filter == filter);
                if !known && !*implicit && subs.len() >= MAX_SUBSCRIPTIONS {
                    out.reply(
                        error(
                            "too_many_subscriptions",
                            &format!(
                                "a connection holds at most {MAX_SUBSCRIPTIONS} subscriptions; \
                                 unsubscribe from one first"
                            ),
                        )
                        .to_string(),
                    );
                    return Ok(());
                }
                if since.is_some() {
                    // A replay reads up to a page of retained events: it counts against the
                    // principal's request budget like a REST call, and it must not outlive a
                    // revocation of the credentials.
                    if let Err(e) = self.state.guard.admit(&self.principal).await {
                        if e.code == ErrorCode::Unauthorized {
                            return Err(close(4401, &e.message));
                        }
                        out.reply(error(e.code.as_str(), &e.message).to_string());
                        return Ok(());
                    }
                }
                let snapshot =
                    match subscriptions::snapshot(&self.state, &self.principal, &filter).await {
                        Ok(s) => s,
                        Err(reason) => {
                            out.reply(error("not_visible", reason).to_string());
                            return Ok(());
                        }
                    };
                let authorized = filter.task_id.is_some();
                if std::mem::take(implicit) {
                    subs.clear();
                }
                out.reply(
                    json!({"type": "snapshot", "ts": chrono::Utc::now(), "subscription": filter.describe(), "data": snapshot})
                        .to_string(),
                );
                let mut replayed_to = None;
                if let Some(since) = since {
                    match subscriptions::replay(
                        &self.state,
                        &self.principal,
                        &filter,
                        authorized,
                        since,
                    )
                    .await
                    {
                        Ok(replay) => {
                            for e in replay.events.iter().filter(|e| self.channel.carries(e)) {
                                out.push(render(e));
                            }
                            if let Some(at) = replay.truncated_at {
                                // More is retained than one replay returns: the client asks
                                // again from here, and only then goes live, so nothing is
                                // skipped.
                                out.reply(
                                    json!({"type": "replay_truncated", "ts": chrono::Utc::now(),
                                           "subscription": filter.describe(),
                                           "data": {"next_since": at.to_string()}})
                                    .to_string(),
                                );
                                return Ok(());
                            }
                            replayed_to = replay
                                .events
                                .last()
                                .and_then(|e| EventId::parse(&e.id))
                                .or(Some(since));
                        }
                        Err(_) => {
                            out.reply(
                                error(
                                    "replay_unavailable",
                                    "could not read retained events; resubscribe without `since`",
                                )
                                .to_string(),
                            );
                        }
                    }
                }
                subs.retain(|s| s.filter != filter);
                subs.push(Subscription {
                    filter,
                    authorized,
                    replayed_to,
                });
            }
            "unsubscribe" => {
                let filter = msg.criteria.unwrap_or(msg.filter);
                if filter == Filter::default() {
                    subs.clear();
                } else {
                    subs.retain(|s| s.filter != filter);
                }
                *implicit = false;
                out.reply(json!({"type": "unsubscribed", "ts": chrono::Utc::now(), "subscription": filter.describe()}).to_string());
            }
            other => out.reply(
                error(
                    "unknown_action",
                    &format!("unknown action {other:?}; use subscribe, unsubscribe or ping"),
                )
                .to_string(),
            ),
        }
        Ok(())
    }
}
