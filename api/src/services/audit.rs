//! The audit trail as the API writes it: one record for every mutating request and every
//! security event (401, 403, 429, failed logins, key rotation), written by the request
//! middleware after the handler ran.
//!
//! Handlers do not write records; they annotate the one their request will produce with
//! [`note`] (a domain action name such as `task.create`, the target, a few details), and the
//! security scheme names the caller with [`set_actor`]. Records are group-committed: concurrent
//! requests share one chained insert, and each request still waits until its record is stored.

use std::sync::{Arc, Mutex};

use mcp_shared::db::{
    Database,
    audit::{self, AuditEntry},
};
use poem::http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

/// How many records one commit takes at most.
const MAX_GROUP: usize = 512;

/// What a handler adds to its request's audit record.
#[derive(Debug, Default)]
pub struct Note {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    details: Option<Value>,
    /// Forces a record even for a read (a security event on a GET, say).
    always: bool,
}

tokio::task_local! {
    static NOTE: Arc<Mutex<Note>>;
}

/// Runs `fut` with an empty note for the current request.
pub async fn scope<F: Future>(note: Arc<Mutex<Note>>, fut: F) -> F::Output {
    NOTE.scope(note, fut).await
}

fn with_note(f: impl FnOnce(&mut Note)) {
    let _ = NOTE.try_with(|n| {
        if let Ok(mut n) = n.lock() {
            f(&mut n);
        }
    });
}

/// Names the caller (`role:name`) once authenticated.
pub fn set_actor(actor: String) {
    with_note(|n| n.actor = Some(actor));
}

/// Names the action and its target for the current request's record.
pub fn note(action: &'static str, target: Option<String>, details: Option<Value>) {
    with_note(|n| {
        n.action = Some(action.to_string());
        n.target = target;
        n.details = details;
    });
}

/// Records the current request even when it is a read.
pub fn note_security_event(action: &'static str, details: Option<Value>) {
    with_note(|n| {
        n.action = Some(action.to_string());
        n.details = details;
        n.always = true;
    });
}

/// What the middleware knows about a finished request.
pub struct Finished<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub status: StatusCode,
    pub client_ip: Option<String>,
    pub request_id: &'a str,
}

/// The record a finished request produces, or `None` when it is a plain read.
pub fn record_for(note: &Note, req: &Finished<'_>) -> Option<AuditEntry> {
    let mutating = !matches!(*req.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let security = matches!(
        req.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
    );
    if !(mutating || security || note.always) {
        return None;
    }
    let outcome = if req.status.is_success() || req.status.is_redirection() {
        "success"
    } else if security {
        "denied"
    } else {
        "failure"
    };
    let action = note.action.clone().unwrap_or_else(|| match req.status {
        StatusCode::UNAUTHORIZED => "security.unauthenticated".into(),
        StatusCode::FORBIDDEN => "security.forbidden".into(),
        StatusCode::TOO_MANY_REQUESTS => "security.rate_limited".into(),
        _ => format!("{} {}", req.method, route_of(req.path)),
    });
    let mut details = Map::new();
    details.insert("method".into(), json!(req.method.as_str()));
    details.insert("path".into(), json!(req.path));
    details.insert("status".into(), json!(req.status.as_u16()));
    if let Some(ip) = &req.client_ip {
        details.insert("ip".into(), json!(ip));
    }
    if let Some(Value::Object(extra)) = &note.details {
        details.extend(extra.clone());
    }
    Some(AuditEntry {
        actor: note.actor.clone().unwrap_or_else(|| "anonymous".into()),
        action,
        target: note.target.clone(),
        outcome: outcome.into(),
        request_id: Some(req.request_id.to_string()).filter(|r| !r.is_empty()),
        details: Some(Value::Object(details)),
    })
}

/// A path with its ids replaced, so actions group by route: `/api/v1/tasks/{id}/cancel`.
pub fn route_of(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if uuid::Uuid::parse_str(seg).is_ok()
                || (!seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()))
            {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

type Pending = (AuditEntry, oneshot::Sender<()>);

/// The group-committing writer. Cloning shares it.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
}

impl AuditLog {
    /// Starts the writer on the current runtime.
    pub fn start(db: Database) -> Self {
        let (tx, rx) = mpsc::channel(16 * MAX_GROUP);
        tokio::spawn(write_groups(db, rx));
        Self { tx }
    }

    /// Stores `entry`, returning once it is committed. An audit failure is logged loudly but
    /// does not undo the action it records.
    pub async fn record(&self, entry: AuditEntry) {
        let action = entry.action.clone();
        let (done, stored) = oneshot::channel();
        if self.tx.send((entry, done)).await.is_err() || stored.await.is_err() {
            tracing::error!(action, "audit record not written");
        }
    }
}

async fn write_groups(db: Database, mut rx: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (entries, waiters): (Vec<_>, Vec<_>) = group.drain(..).unzip();
        let mut attempt = 0;
        loop {
            match audit::append(&db, entries.clone()).await {
                Ok(()) => {
                    for w in waiters {
                        let _ = w.send(());
                    }
                    break;
                }
                // A brief database outage should not cost records: retry a few times first.
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "audit append failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, records = entries.len(), "audit records not written");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_group_by_template() {
        assert_eq!(
            route_of("/api/v1/tasks/0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b/cancel"),
            "/api/v1/tasks/{id}/cancel"
        );
        assert_eq!(
            route_of("/api/v1/queues/mcp:generic:low/pause"),
            "/api/v1/queues/mcp:generic:low/pause"
        );
    }

    fn finished(method: &Method, status: StatusCode) -> Finished<'_> {
        Finished {
            method,
            path: "/api/v1/tasks",
            status,
            client_ip: Some("127.0.0.1".into()),
            request_id: "r1",
        }
    }

    #[test]
    fn reads_are_not_recorded_but_security_events_are() {
        let note = Note::default();
        assert!(record_for(&note, &finished(&Method::GET, StatusCode::OK)).is_none());
        let denied = record_for(&note, &finished(&Method::GET, StatusCode::FORBIDDEN)).unwrap();
        assert_eq!(denied.action, "security.forbidden");
        assert_eq!(denied.outcome, "denied");
        assert_eq!(denied.actor, "anonymous");
        let post = record_for(
            &note,
            &finished(&Method::POST, StatusCode::UNPROCESSABLE_ENTITY),
        )
        .unwrap();
        assert_eq!(post.action, "POST /api/v1/tasks");
        assert_eq!(post.outcome, "failure");
    }

    #[test]
    fn a_note_names_the_action_and_adds_details() {
        let note = Note {
            actor: Some("admin:root".into()),
            action: Some("task.create".into()),
            target: Some("t1".into()),
            details: Some(json!({"type": "echo"})),
            always: false,
        };
        let e = record_for(&note, &finished(&Method::POST, StatusCode::CREATED)).unwrap();
        assert_eq!(e.actor, "admin:root");
        assert_eq!(e.action, "task.create");
        assert_eq!(e.target.as_deref(), Some("t1"));
        let d = e.details.unwrap();
        assert_eq!(d["type"], "echo");
        assert_eq!(d["status"], 201);
    }
}
