//! WebSocket client helpers.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::wait::receive_until;

/// Reads until a message of type `kind` arrives; returns it and the messages before it.
pub async fn next_of_type<S>(ws: &mut S, kind: &str, timeout: Duration) -> (Value, Vec<Value>)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut seen = Vec::new();
    let found = receive_until(
        &format!("a {kind} message"),
        timeout,
        async || ws.next().await,
        |msg| {
            let Message::Text(text) = msg.expect("socket error") else {
                return None;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == kind {
                return Some(v);
            }
            seen.push(v);
            None
        },
    )
    .await;
    (found, seen)
}

/// Reads until the server closes; returns the close frame's code and reason.
pub async fn close_frame<S>(ws: &mut S, timeout: Duration) -> (u16, String)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    receive_until(
        "a close frame",
        timeout,
        async || ws.next().await,
        |msg| match msg.expect("socket error") {
            Message::Close(Some(frame)) => Some((u16::from(frame.code), frame.reason.to_string())),
            Message::Close(None) => panic!("closed without a close code"),
            _ => None,
        },
    )
    .await
}
