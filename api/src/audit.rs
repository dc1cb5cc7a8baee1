//! The audit trail as the API writes it: one record for every mutating request and every
//! security event (401, 403, 429, failed logins, key rotation), written by the request
//! middleware after the handler ran.
//!
//! Handlers do not write records; they annotate the one their request will produce with
//! [`note`] (a domain action name such as `task.create`, the target, a few details), and the
//! security scheme names the caller with [`set_actor`]. Records are group-committed: concurrent
//! requests share one chained insert, and each request still waits until its record is stored.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mcp_shared::db::{
    Database,
    audit::{self, AuditEntry},
};
use poem::http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::templates::RouteTemplates;

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
    /// Overrides the outcome the status implies (a WebSocket refused after its 101).
    outcome: Option<&'static str>,
    /// A credential (a token that verifies, a known agent key) named the caller.
    authenticated: bool,
}

tokio::task_local! {
    static NOTE: Arc<Mutex<Note>>;
}

/// Runs `fut` with an empty note for the current request.
pub async fn scope<F: Future>(note: Arc<Mutex<Note>>, fut: F) -> F::Output {
    NOTE.scope(note, fut).await
}

/// The current request's note, to carry it into work the request hands to another task.
pub fn current_note() -> Option<Arc<Mutex<Note>>> {
    NOTE.try_with(Clone::clone).ok()
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

/// Marks the caller as named by a valid credential: its refusals are its own, recorded one by
/// one, never grouped with anonymous ones.
pub fn set_authenticated() {
    with_note(|n| n.authenticated = true);
}

/// Names the action and its target for the current request's record.
pub fn note(action: &'static str, target: Option<String>, details: Option<Value>) {
    with_note(|n| {
        n.action = Some(action.to_string());
        n.target = target;
        n.details = details;
    });
}

/// Records the current request even when it is a read, as refused.
pub fn note_security_event(action: &'static str, details: Option<Value>) {
    with_note(|n| {
        n.action = Some(action.to_string());
        n.details = details;
        n.always = true;
        n.outcome = Some("denied");
    });
}

/// What the middleware knows about a finished request.
struct Finished<'a> {
    method: &'a Method,
    path: &'a str,
    /// Names the route `path` matches.
    routes: &'a RouteTemplates,
    status: StatusCode,
    client_ip: Option<String>,
    request_id: &'a str,
}

/// The record a finished request produces, or `None` when it is a plain read.
fn record_for(note: &Note, req: &Finished<'_>) -> Option<AuditEntry> {
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
    let route = req.routes.template(req.path);
    let action = note.action.clone().unwrap_or_else(|| match req.status {
        StatusCode::UNAUTHORIZED => "security.unauthenticated".into(),
        StatusCode::FORBIDDEN => "security.forbidden".into(),
        StatusCode::TOO_MANY_REQUESTS => "security.rate_limited".into(),
        // The route, never the raw path: a scanner's junk must not become a new action.
        _ => format!("{} {route}", req.method),
    });
    let mut details = Map::new();
    details.insert("method".into(), json!(req.method.as_str()));
    details.insert("route".into(), json!(route));
    details.insert("path".into(), json!(clean(req.path, MAX_PATH)));
    details.insert("status".into(), json!(req.status.as_u16()));
    if let Some(ip) = &req.client_ip {
        details.insert("ip".into(), json!(ip));
    }
    if let Some(Value::Object(extra)) = &note.details {
        details.extend(extra.clone());
    }
    let outcome = note.outcome.unwrap_or(outcome);
    Some(sanitized(AuditEntry {
        actor: note.actor.clone().unwrap_or_else(|| "anonymous".into()),
        action,
        target: note.target.clone(),
        outcome: outcome.into(),
        request_id: Some(req.request_id.to_string()).filter(|r| !r.is_empty()),
        details: Some(Value::Object(details)),
    }))
}

const MAX_FIELD: usize = 256;
const MAX_PATH: usize = 512;

/// At most `max` bytes, without NUL (PostgreSQL refuses it in text and JSON): client-controlled
/// values (a username, a path) must never make a record unwritable, nor huge.
fn clean(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| *c != '\0').collect();
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

fn clean_json(v: &mut Value) {
    match v {
        Value::String(s) => *s = clean(s, MAX_PATH),
        Value::Array(a) => a.iter_mut().for_each(clean_json),
        Value::Object(m) => {
            if m.keys().any(|k| k.contains('\0')) {
                *m = std::mem::take(m)
                    .into_iter()
                    .map(|(k, v)| (clean(&k, MAX_FIELD), v))
                    .collect();
            }
            m.values_mut().for_each(clean_json);
        }
        _ => {}
    }
}

fn sanitized(mut e: AuditEntry) -> AuditEntry {
    e.actor = clean(&e.actor, MAX_FIELD);
    e.action = clean(&e.action, MAX_FIELD);
    e.target = e.target.map(|t| clean(&t, MAX_FIELD));
    e.request_id = e.request_id.map(|r| clean(&r, MAX_FIELD));
    if let Some(d) = e.details.as_mut() {
        clean_json(d);
    }
    e
}

type Pending = (AuditEntry, oneshot::Sender<()>);

/// The audit record one request will produce. The request middleware creates it, handlers
/// annotate its [`Note`], and [`RequestRecord::finish`] turns it into the entry to store. If the
/// request future is dropped first (the client hung up mid-handler), the record is still sent,
/// with status 499 and `abandoned: true`: what the handler committed stays accounted for.
pub struct RequestRecord {
    finished: bool,
    audit: AuditLog,
    note: Arc<Mutex<Note>>,
    method: Method,
    path: String,
    client_ip: Option<String>,
    request_id: String,
}

impl RequestRecord {
    pub fn new(
        audit: AuditLog,
        method: Method,
        path: String,
        client_ip: Option<String>,
        request_id: String,
    ) -> Self {
        Self {
            finished: false,
            audit,
            note: Arc::default(),
            method,
            path,
            client_ip,
            request_id,
        }
    }

    /// What handlers annotate, through [`scope`].
    pub fn note(&self) -> Arc<Mutex<Note>> {
        self.note.clone()
    }

    /// Whether the answer refused a caller no credential named, for no reason a handler named
    /// (no credentials, a bad token, an unknown route): the kind of request a flood is made of.
    pub fn anonymous_denial(&self, status: StatusCode) -> bool {
        status.is_client_error()
            && self
                .note
                .lock()
                .is_ok_and(|n| !n.authenticated && n.action.is_none())
    }

    /// The entry for the answered request, if it is one to record.
    pub fn finish(mut self, status: StatusCode) -> Option<AuditEntry> {
        self.finished = true;
        self.entry(status)
    }

    fn entry(&self, status: StatusCode) -> Option<AuditEntry> {
        let note = self.note.lock().ok()?;
        record_for(
            &note,
            &Finished {
                method: &self.method,
                path: &self.path,
                routes: &self.audit.routes,
                status,
                client_ip: self.client_ip.clone(),
                request_id: &self.request_id,
            },
        )
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let status = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
        if let Some(mut entry) = self.entry(status) {
            if let Some(Value::Object(d)) = entry.details.as_mut() {
                d.insert("abandoned".into(), Value::Bool(true));
            }
            let (done, _) = oneshot::channel();
            if self.audit.tx.try_send((entry, done)).is_err() {
                tracing::error!("audit record of an abandoned request not written");
            }
        }
    }
}

/// After a group failed: each record alone, so one bad record cannot cost the others; a record
/// the database still refuses is replaced by a marker, so the trail shows the gap.
async fn write_one_by_one(db: &Database, chain: &audit::Chain, entries: Vec<AuditEntry>) {
    for entry in entries {
        let action = entry.action.clone();
        if audit::append(db, chain, vec![entry]).await.is_ok() {
            continue;
        }
        let marker = AuditEntry {
            actor: "system:audit".into(),
            action: "audit.unwritable".into(),
            target: None,
            outcome: "failure".into(),
            request_id: None,
            details: Some(json!({"action": action})),
        };
        if let Err(e) = audit::append(db, chain, vec![marker]).await {
            tracing::error!(error = %e, action, "audit record not written");
        }
    }
}

/// The group-committing writer. Cloning shares it.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
    /// Names a request's route in its record (never the raw path).
    routes: Arc<RouteTemplates>,
    denials: Arc<Denials>,
}

/// Most addresses whose anonymous denials are gathered at once; past it, each denial of a new
/// address is recorded on its own (records are never dropped to save memory).
const MAX_DENIAL_GROUPS: usize = 50_000;
/// Distinct actions and statuses one group keeps counts of.
const MAX_GROUP_KINDS: usize = 16;

/// Repeated anonymous denials, per client address and window: the first of a window is recorded
/// as it happens, the rest are counted and recorded as one `security.anonymous_denials` record
/// when the window ends. A flood of unauthenticated requests then writes a record per address
/// and window instead of one per request, and its requests never wait for the database.
#[derive(Debug)]
struct Denials {
    window: Duration,
    groups: Mutex<HashMap<String, DenialGroup>>,
}

#[derive(Debug)]
struct DenialGroup {
    started: Instant,
    started_at: chrono::DateTime<chrono::Utc>,
    /// Denials after the first (which has a record of its own).
    repeated: u64,
    /// By action (`security.unauthenticated`, `POST unmatched`, …) and by status.
    actions: BTreeMap<String, u64>,
    statuses: BTreeMap<u16, u64>,
}

impl DenialGroup {
    fn summary(self, ip: &str) -> AuditEntry {
        sanitized(AuditEntry {
            actor: "anonymous".into(),
            action: "security.anonymous_denials".into(),
            target: None,
            outcome: "denied".into(),
            request_id: None,
            details: Some(json!({
                "ip": ip,
                "count": self.repeated,
                "since": self.started_at,
                "until": chrono::Utc::now(),
                "actions": self.actions,
                "statuses": self.statuses,
            })),
        })
    }
}

impl AuditLog {
    /// Starts the writer on the current runtime; anonymous denials are gathered over
    /// `denial_window`.
    pub fn start(
        db: Database,
        chain: audit::Chain,
        routes: Arc<RouteTemplates>,
        denial_window: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel(16 * MAX_GROUP);
        tokio::spawn(write_groups(db, chain, rx));
        Self {
            tx,
            routes,
            denials: Arc::new(Denials {
                window: denial_window,
                groups: Mutex::default(),
            }),
        }
    }

    /// Counts an anonymous denial from `ip` into its window's group. False when it is the first
    /// of its window (or cannot be grouped): the caller records it as usual.
    pub fn group_denial(&self, ip: Option<&str>, entry: &AuditEntry) -> bool {
        let Some(ip) = ip else {
            return false;
        };
        let Ok(mut groups) = self.denials.groups.lock() else {
            return false;
        };
        let Some(group) = groups.get_mut(ip) else {
            if groups.len() < MAX_DENIAL_GROUPS {
                groups.insert(
                    ip.to_string(),
                    DenialGroup {
                        started: Instant::now(),
                        started_at: chrono::Utc::now(),
                        repeated: 0,
                        actions: BTreeMap::new(),
                        statuses: BTreeMap::new(),
                    },
                );
            }
            return false;
        };
        group.repeated += 1;
        let status = entry
            .details
            .as_ref()
            .and_then(|d| d["status"].as_u64())
            .unwrap_or(0) as u16;
        if group.actions.len() < MAX_GROUP_KINDS || group.actions.contains_key(&entry.action) {
            *group.actions.entry(entry.action.clone()).or_default() += 1;
        }
        if group.statuses.len() < MAX_GROUP_KINDS || group.statuses.contains_key(&status) {
            *group.statuses.entry(status).or_default() += 1;
        }
        true
    }

    /// Records the groups whose window ended (all of them when `all`).
    async fn flush_denials(&self, all: bool) {
        let ended: Vec<(String, DenialGroup)> = {
            let Ok(mut groups) = self.denials.groups.lock() else {
                return;
            };
            let window = self.denials.window;
            let keys: Vec<String> = groups
                .iter()
                .filter(|(_, g)| all || g.started.elapsed() >= window)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| groups.remove(&k).map(|g| (k, g)))
                .collect()
        };
        for (ip, group) in ended {
            if group.repeated > 0 {
                self.record(group.summary(&ip)).await;
            }
        }
    }

    /// Records the gathered denials as their windows end, and the rest at shutdown.
    pub fn spawn_denial_flush(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        // A quarter window: a group's record is at most that late.
        let period = (self.denials.window / 4).max(Duration::from_millis(250));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => log.flush_denials(false).await,
                    _ = shutdown.cancelled() => {
                        log.flush_denials(true).await;
                        return;
                    }
                }
            }
        })
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

async fn write_groups(db: Database, chain: audit::Chain, mut rx: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (entries, waiters): (Vec<_>, Vec<_>) = group.drain(..).unzip();
        let mut attempt = 0;
        loop {
            match audit::append(&db, &chain, entries.clone()).await {
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
                    tracing::error!(error = %e, records = entries.len(), "audit group not written; writing one by one");
                    write_one_by_one(&db, &chain, entries).await;
                    for w in waiters {
                        let _ = w.send(());
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> &'static RouteTemplates {
        static ROUTES: std::sync::LazyLock<RouteTemplates> = std::sync::LazyLock::new(|| {
            RouteTemplates::from_spec(r#"{"paths": {"/api/v1/tasks": {"get": {}, "post": {}}}}"#)
        });
        &ROUTES
    }

    fn finished(method: &Method, status: StatusCode) -> Finished<'_> {
        Finished {
            method,
            path: "/api/v1/tasks",
            routes: routes(),
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
    fn client_input_cannot_make_a_record_unwritable_or_huge() {
        let junk = format!("/{}", "x".repeat(10_000));
        let mut req = finished(&Method::POST, StatusCode::NOT_FOUND);
        req.path = &junk;
        let note = Note {
            actor: Some("user:a\0b".into()),
            details: Some(json!({"k\0": ["v\0"]})),
            ..Note::default()
        };
        let e = record_for(&note, &req).unwrap();
        assert_eq!(e.action, "POST unmatched");
        assert_eq!(e.actor, "user:ab");
        let d = e.details.unwrap();
        assert!(d["path"].as_str().unwrap().len() <= MAX_PATH);
        assert_eq!(d["k"][0], "v");
    }

    #[test]
    fn a_note_names_the_action_and_adds_details() {
        let note = Note {
            actor: Some("admin:root".into()),
            action: Some("task.create".into()),
            target: Some("t1".into()),
            details: Some(json!({"type": "echo"})),
            always: false,
            outcome: None,
            authenticated: true,
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
