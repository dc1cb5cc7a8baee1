//! Trace export over OTLP/HTTP with JSON bodies, switched on by `OTEL_EXPORTER_OTLP_ENDPOINT`.
//!
//! Deliberately small: W3C trace context (`traceparent`), spans recorded when they end, and one
//! background task per process that batches them to `{endpoint}/v1/traces`. The API records a
//! server span per request and runs the request inside its context; a task created meanwhile
//! stores that context (`tasks.traceparent`), and the worker that runs the task records its job
//! span as a child of it — so one trace follows a request into every process that worked on it.
//! Without the variable nothing is recorded and nothing is spawned.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A span's identity within its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

fn random_16() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

fn random_8() -> [u8; 8] {
    let b = random_16();
    [b[0], b[1], b[2], b[3], b[4], b[5], b[9], b[10]]
}

impl TraceContext {
    /// A new trace.
    pub fn root() -> Self {
        Self {
            trace_id: random_16(),
            span_id: random_8(),
        }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: random_8(),
        }
    }

    /// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); all-zero ids are invalid.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || flags.len() != 2 {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, span_id })
    }

    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-01",
            hex::encode(self.trace_id),
            hex::encode(self.span_id)
        )
    }
}

tokio::task_local! {
    /// The span whose work is running: tasks created inside it carry it to their workers.
    static CURRENT: TraceContext;
}

/// Runs `fut` inside `ctx`.
pub async fn scope<F: std::future::Future>(ctx: TraceContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// The `traceparent` to store with a task created now, when export is on.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    CURRENT.try_with(TraceContext::traceparent).ok()
}

/// `SPAN_KIND_SERVER`.
pub const SERVER: i32 = 2;
/// `SPAN_KIND_CONSUMER`.
pub const CONSUMER: i32 = 5;

/// A finished span.
#[derive(Debug, Clone)]
pub struct Span {
    pub context: TraceContext,
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: i32,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, Value)>,
    pub error: bool,
}

impl Span {
    fn to_otlp(&self) -> Value {
        let nanos = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                .to_string()
        };
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|(k, v)| json!({"key": k, "value": any_value(v)}))
            .collect();
        json!({
            "traceId": hex::encode(self.context.trace_id),
            "spanId": hex::encode(self.context.span_id),
            "parentSpanId": self.parent.map(hex::encode).unwrap_or_default(),
            "name": self.name,
            "kind": self.kind,
            "startTimeUnixNano": nanos(self.start),
            "endTimeUnixNano": nanos(self.end),
            "attributes": attributes,
            // STATUS_CODE_ERROR = 2, STATUS_CODE_UNSET = 0.
            "status": {"code": if self.error { 2 } else { 0 }},
        })
    }
}

fn any_value(v: &Value) -> Value {
    match v {
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64()}),
        Value::String(s) => json!({"stringValue": s}),
        other => json!({"stringValue": other.to_string()}),
    }
}

/// Spans waiting for the exporter; past it, new ones are dropped rather than slowing work.
const QUEUE: usize = 8192;
const BATCH: usize = 512;
const FLUSH_EVERY: Duration = Duration::from_millis(200);

static EXPORTER: OnceLock<mpsc::Sender<Span>> = OnceLock::new();

pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// Hands a finished span to the exporter (never waits).
pub fn export(span: Span) {
    if let Some(tx) = EXPORTER.get()
        && tx.try_send(span).is_err()
    {
        tracing::debug!("trace export queue full; span dropped");
    }
}

/// Starts exporting to `endpoint` (the collector's base URL, or its full `/v1/traces` URL) as
/// `service`. Call once per process, inside the runtime; later calls do nothing.
pub fn init(endpoint: &str, service: &str, shutdown: CancellationToken) {
    let url = if endpoint.ends_with("/v1/traces") {
        endpoint.to_string()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    let (tx, mut rx) = mpsc::channel::<Span>(QUEUE);
    if EXPORTER.set(tx).is_err() {
        return;
    }
    let resource = json!({"attributes": [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "service.version", "value": {"stringValue": crate::VERSION}},
    ]});
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let mut batch: Vec<Span> = Vec::new();
        loop {
            let stop = tokio::select! {
                got = rx.recv_many(&mut batch, BATCH) => got == 0,
                _ = shutdown.cancelled() => true,
            };
            // Gather what else arrives shortly, so one POST carries many spans.
            if !stop && batch.len() < BATCH {
                let _ = tokio::time::timeout(FLUSH_EVERY, async {
                    while batch.len() < BATCH {
                        let room = BATCH - batch.len();
                        if rx.recv_many(&mut batch, room).await == 0 {
                            break;
                        }
                    }
                })
                .await;
            }
            if stop {
                while let Ok(span) = rx.try_recv() {
                    batch.push(span);
                }
            }
            if !batch.is_empty() {
                let spans: Vec<Value> = batch.drain(..).map(|s| s.to_otlp()).collect();
                let body = json!({"resourceSpans": [{
                    "resource": resource,
                    "scopeSpans": [{"scope": {"name": "mcp", "version": crate::VERSION}, "spans": spans}],
                }]});
                send(&client, &url, &body).await;
            }
            if stop {
                return;
            }
        }
    });
}

/// POSTs one batch, with a few quick retries; a collector that stays down loses the batch.
async fn send(client: &reqwest::Client, url: &str, body: &Value) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=3 {
        match client.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!(
                attempt,
                status = r.status().as_u16(),
                "trace collector refused spans"
            ),
            Err(e) => {
                tracing::warn!(attempt, error = %e.without_url(), "trace collector unreachable")
            }
        }
        tokio::time::sleep(delay).await;
        delay *= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_junk() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(tp).unwrap();
        assert_eq!(ctx.traceparent(), tp);
        let child = ctx.child();
        assert_eq!(child.trace_id, ctx.trace_id);
        assert_ne!(child.span_id, ctx.span_id);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
    }
}
