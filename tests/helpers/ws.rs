//! WebSocket client helpers.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Reads until a message of type `kind` arrives; returns it and the messages before it.
pub async fn next_of_type<S>(ws: &mut S, kind: &str, timeout: Duration) -> (Value, Vec<Value>)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message in {timeout:?}; saw {seen:?}"))
            .expect("socket closed")
            .expect("socket error");
        if let Message::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == kind {
                return (v, seen);
            }
            seen.push(v);
        }
    }
}
