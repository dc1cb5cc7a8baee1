//! The event bus seam: how events travel from whoever changes state to every API replica.
//!
//! - [`InProcessBus`]: a broadcast channel (single node: workers run inside the API process).
//! - [`RedisStreamBus`]: `XADD` to one bounded stream (`MAXLEN ~`), and in each API process one
//!   reader that `XREAD`s it and feeds a local broadcast channel, so any replica serves any
//!   subscriber. Event ids are the stream ids.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{AsyncCommands, streams::StreamReadOptions};
use tokio::sync::broadcast;

use crate::{Result, domain::event::Event};

/// The stream all events go to in distributed mode.
pub const EVENT_STREAM: &str = "mcp:events";
/// Approximate number of events retained in the stream (`XADD … MAXLEN ~`).
pub const EVENT_STREAM_MAXLEN: usize = 100_000;
/// Per-process fan-out buffer; a subscriber that falls further behind is told it lagged.
const LOCAL_BUFFER: usize = 8192;

#[async_trait::async_trait]
pub trait EventBus: Send + Sync + fmt::Debug {
    /// Publishes an event; returns it with its bus-assigned id.
    async fn publish(&self, event: Event) -> Result<Event>;
    /// Live events published from now on, in publication order.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
}

/// Publishes, logging instead of failing: an event that cannot be sent must not undo the state
/// change it reports (the row is the truth; subscribers resync from snapshots).
pub async fn emit(bus: &dyn EventBus, event: Event) {
    let kind = event.kind;
    if let Err(e) = bus.publish(event).await {
        tracing::warn!(event = %kind, error = %e, "event not published");
    }
}

#[derive(Debug)]
pub struct InProcessBus {
    tx: broadcast::Sender<Event>,
    seq: AtomicU64,
}

impl InProcessBus {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: broadcast::channel(LOCAL_BUFFER).0,
            seq: AtomicU64::new(0),
        })
    }
}

#[async_trait::async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, mut event: Event) -> Result<Event> {
        event.id = format!("{}-0", self.seq.fetch_add(1, Ordering::Relaxed) + 1);
        let _ = self.tx.send(event.clone());
        Ok(event)
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

pub struct RedisStreamBus {
    conn: redis::aio::ConnectionManager,
    tx: broadcast::Sender<Event>,
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
        Arc::new(Self { conn, tx })
    }
}

#[async_trait::async_trait]
impl EventBus for RedisStreamBus {
    async fn publish(&self, mut event: Event) -> Result<Event> {
        let body = serde_json::to_string(&event)?;
        let mut conn = self.conn.clone();
        let id: String = redis::cmd("XADD")
            .arg(EVENT_STREAM)
            .arg("MAXLEN")
            .arg("~")
            .arg(EVENT_STREAM_MAXLEN)
            .arg("*")
            .arg("e")
            .arg(body)
            .query_async(&mut conn)
            .await?;
        event.id = id;
        Ok(event)
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// Follows the stream with blocking reads on a dedicated connection, reconnecting with backoff.
/// Starts at the stream's end (`$`) and then always continues after the last id seen, so a
/// reconnect neither skips nor repeats events that are still retained.
async fn read_stream(
    client: redis::Client,
    tx: broadcast::Sender<Event>,
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
                            let Some(redis::Value::BulkString(raw)) = entry.map.get("e") else {
                                continue;
                            };
                            match serde_json::from_slice::<Event>(raw) {
                                Ok(mut event) => {
                                    event.id = entry.id;
                                    let _ = tx.send(event);
                                }
                                Err(e) => tracing::warn!(error = %e, "undecodable event skipped"),
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
