//! The event bus seam: how events travel from whoever changes state to every API replica.
//!
//! - [`InProcessBus`]: a broadcast channel (single node: workers run inside the API process),
//!   retaining the last [`IN_PROCESS_RETAINED`] events for replay.
//! - [`RedisStreamBus`]: `XADD` to one bounded stream (`MAXLEN ~`), and in each API process one
//!   reader that `XREAD`s it and feeds a local broadcast channel, so any replica serves any
//!   subscriber. Event ids are the stream ids.
//!
//! Ids have the Redis stream form `<ms>-<seq>` on both buses and grow with publication order, so
//! a subscriber can resume after an id ([`EventBus::replay`]) and drop live events it has
//! already seen ([`EventId`]).

use std::{fmt, sync::Arc, time::Duration};

use redis::{AsyncCommands, streams::StreamReadOptions};
use tokio::sync::broadcast;

use crate::{Result, domain::event::Event};

/// The stream all events go to in distributed mode.
pub const EVENT_STREAM: &str = "mcp:events";
/// Approximate number of events retained in the stream (`XADD … MAXLEN ~`).
pub const EVENT_STREAM_MAXLEN: usize = 100_000;
/// Per-process fan-out buffer; a subscriber that falls further behind is told it lagged.
const LOCAL_BUFFER: usize = 8192;
/// Events the in-process bus keeps for replay.
pub const IN_PROCESS_RETAINED: usize = 10_000;
/// Most events one replay returns; a client further behind resumes again from the last one.
pub const MAX_REPLAY: usize = 10_000;

/// An event id, `<ms>-<seq>`, ordered as the bus published them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub u64, pub u64);

impl EventId {
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

#[async_trait::async_trait]
pub trait EventBus: Send + Sync + fmt::Debug {
    /// Publishes an event; returns it with its bus-assigned id.
    async fn publish(&self, event: Event) -> Result<Event>;
    /// Live events published from now on, in publication order (shared, not copied, between
    /// subscribers).
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;
    /// Retained events published after `after`, oldest first, at most [`MAX_REPLAY`].
    async fn replay(&self, after: EventId) -> Result<Vec<Event>>;
    /// The id of the oldest event still retained (`None`: none is).
    async fn oldest(&self) -> Result<Option<EventId>>;
    /// Hands an event to this process's subscribers only. For what one replica alone observes
    /// (its own view of a dependency), which must reach its subscribers even while the shared
    /// stream is unreachable. On the Redis bus such an event is not retained and has no id.
    fn deliver_locally(&self, event: Event);
    /// Publishes without waiting for the outcome (see [`emit`]); a failure is logged.
    async fn send(&self, event: Event) {
        let kind = event.kind;
        if let Err(e) = self.publish(event).await {
            tracing::warn!(event = %kind, error = %e, "event not published");
        }
    }
}

/// Publishes, logging instead of failing: an event that cannot be sent must not undo the state
/// change it reports (the row is the truth; subscribers resync from snapshots). The Redis bus
/// queues it and returns at once; its writer sends what queued meanwhile in one round trip, in
/// the order emitted.
pub async fn emit(bus: &dyn EventBus, event: Event) {
    bus.send(event).await;
}

#[derive(Debug)]
pub struct InProcessBus {
    tx: broadcast::Sender<Arc<Event>>,
    /// The last id given and the retained events. One lock, so ids are handed out, retained and
    /// sent in the same order.
    state: std::sync::Mutex<(EventId, std::collections::VecDeque<Arc<Event>>)>,
}

impl InProcessBus {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: broadcast::channel(LOCAL_BUFFER).0,
            state: std::sync::Mutex::new((EventId(0, 0), Default::default())),
        })
    }
}

/// The next id after `last`, from the clock like Redis does (so ids stay increasing across a
/// restart unless the clock went back).
fn next_id(last: EventId) -> EventId {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if now > last.0 {
        EventId(now, 0)
    } else {
        EventId(last.0, last.1 + 1)
    }
}

impl InProcessBus {
    /// Numbers the event, retains it and hands it to the subscribers: one allocation shared by
    /// the retained copy and every subscriber.
    fn append(&self, mut event: Event) -> Arc<Event> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let id = next_id(state.0);
        state.0 = id;
        event.id = id.to_string();
        if state.1.len() == IN_PROCESS_RETAINED {
            state.1.pop_front();
        }
        let shared = Arc::new(event);
        state.1.push_back(shared.clone());
        let _ = self.tx.send(shared.clone());
        shared
    }
}

#[async_trait::async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, event: Event) -> Result<Event> {
        Ok((*self.append(event)).clone())
    }

    async fn send(&self, event: Event) {
        self.append(event);
    }

    /// This process is the whole bus: the event is published like any other.
    fn deliver_locally(&self, event: Event) {
        self.append(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    async fn replay(&self, after: EventId) -> Result<Vec<Event>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(state
            .1
            .iter()
            .filter(|e| EventId::parse(&e.id).is_some_and(|id| id > after))
            .take(MAX_REPLAY)
            .map(|e| (**e).clone())
            .collect())
    }

    async fn oldest(&self) -> Result<Option<EventId>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(state.1.front().and_then(|e| EventId::parse(&e.id)))
    }
}

pub struct RedisStreamBus {
    conn: redis::aio::ConnectionManager,
    tx: broadcast::Sender<Arc<Event>>,
    /// Events [`EventBus::send`] queued for the writer.
    outbox: tokio::sync::mpsc::UnboundedSender<Event>,
}

impl fmt::Debug for RedisStreamBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamBus").finish_non_exhaustive()
    }
}

impl RedisStreamBus {
    /// A publisher only (workers).
    pub fn publisher(conn: redis::aio::ConnectionManager) -> Arc<Self> {
        Arc::new(Self {
            outbox: spawn_writer(conn.clone()),
            conn,
            tx: broadcast::channel(1).0,
        })
    }

    /// A publisher that also reads the stream from now on and fans it out locally (API replicas).
    pub fn with_reader(
        conn: redis::aio::ConnectionManager,
        client: redis::Client,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Arc<Self> {
        let tx = broadcast::channel(LOCAL_BUFFER).0;
        tokio::spawn(read_stream(client, tx.clone(), shutdown));
        Arc::new(Self {
            outbox: spawn_writer(conn.clone()),
            conn,
            tx,
        })
    }
}

/// Most events sent in one round trip.
const WRITE_BATCH: usize = 512;

/// The `XADD` of one event, bounded like every append to the stream.
fn xadd(event: &Event) -> Result<redis::Cmd> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(EVENT_STREAM)
        .arg("MAXLEN")
        .arg("~")
        .arg(EVENT_STREAM_MAXLEN)
        .arg("*")
        .arg("e")
        .arg(serde_json::to_string(event)?);
    Ok(cmd)
}

/// The writer behind [`EventBus::send`]: whatever queued while the last round trip was out goes
/// in the next one, as one pipeline, so events keep their order and a busy process sends a few
/// round trips a millisecond instead of one per event.
fn spawn_writer(conn: redis::aio::ConnectionManager) -> tokio::sync::mpsc::UnboundedSender<Event> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            let mut pipe = redis::pipe();
            for event in &batch {
                match xadd(event) {
                    Ok(cmd) => {
                        pipe.add_command(cmd).ignore();
                    }
                    Err(e) => {
                        tracing::warn!(event = %event.kind, error = %e, "event not published")
                    }
                }
            }
            let mut conn = conn.clone();
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::warn!(events = batch.len(), error = %e, "events not published");
            }
            batch.clear();
        }
    });
    tx
}

#[async_trait::async_trait]
impl EventBus for RedisStreamBus {
    async fn publish(&self, mut event: Event) -> Result<Event> {
        let mut conn = self.conn.clone();
        event.id = xadd(&event)?.query_async(&mut conn).await?;
        Ok(event)
    }

    async fn send(&self, event: Event) {
        let kind = event.kind;
        if self.outbox.send(event).is_err() {
            tracing::warn!(event = %kind, "event not published: the writer stopped");
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    fn deliver_locally(&self, event: Event) {
        let _ = self.tx.send(Arc::new(event));
    }

    async fn replay(&self, after: EventId) -> Result<Vec<Event>> {
        let mut conn = self.conn.clone();
        // `(` makes the start exclusive.
        let reply: redis::streams::StreamRangeReply = conn
            .xrange_count(EVENT_STREAM, format!("({after}"), "+", MAX_REPLAY)
            .await?;
        Ok(reply.ids.into_iter().filter_map(decode).collect())
    }

    async fn oldest(&self) -> Result<Option<EventId>> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply =
            conn.xrange_count(EVENT_STREAM, "-", "+", 1).await?;
        Ok(reply.ids.first().and_then(|e| EventId::parse(&e.id)))
    }
}

/// An event from a stream entry, with the entry's id.
fn decode(entry: redis::streams::StreamId) -> Option<Event> {
    let Some(redis::Value::BulkString(raw)) = entry.map.get("e") else {
        return None;
    };
    match serde_json::from_slice::<Event>(raw) {
        Ok(mut event) => {
            event.id = entry.id;
            Some(event)
        }
        Err(e) => {
            tracing::warn!(error = %e, "undecodable event skipped");
            None
        }
    }
}

/// Follows the stream with blocking reads on a dedicated connection, reconnecting with backoff.
/// Starts at the stream's end (`$`) and then always continues after the last id seen, so a
/// reconnect neither skips nor repeats events that are still retained.
async fn read_stream(
    client: redis::Client,
    tx: broadcast::Sender<Arc<Event>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut last_id = String::from("$");
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        // The blocking read waits up to a second; give the connection room beyond that.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let mut conn = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "event stream reader cannot connect; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if last_id == "$" {
            // Pin the starting point so events published while we (re)connect are not lost.
            let latest: redis::RedisResult<redis::streams::StreamRangeReply> =
                conn.xrevrange_count(EVENT_STREAM, "+", "-", 1).await;
            last_id = match latest {
                Ok(reply) => reply
                    .ids
                    .first()
                    .map(|e| e.id.clone())
                    .unwrap_or_else(|| "0-0".into()),
                Err(_) => continue,
            };
        }
        backoff = Duration::from_millis(100);
        loop {
            let opts = StreamReadOptions::default().block(1000).count(512);
            let ids = [last_id.clone()];
            let read = tokio::select! {
                r = conn.xread_options::<_, _, redis::streams::StreamReadReply>(&[EVENT_STREAM], &ids, &opts) => r,
                _ = shutdown.cancelled() => return,
            };
            match read {
                Ok(reply) => {
                    for key in reply.keys {
                        for entry in key.ids {
                            last_id = entry.id.clone();
                            if let Some(event) = decode(entry) {
                                let _ = tx.send(Arc::new(event));
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event stream read failed; reconnecting");
                    break;
                }
            }
        }
    }
}
