//! Server-Sent Events: the WebSocket channels' events over plain HTTP, for clients behind
//! proxies that break WebSockets. Filters by type, task and execution; `Last-Event-ID` (or
//! `since`) resumes after an event still retained.

use std::time::Duration;

use futures::{StreamExt, stream::BoxStream};
use mcp_shared::{
    auth::Permission,
    bus::EventId,
    domain::event::{Event, EventType},
};
use poem::{
    IntoResponse, Response,
    web::{Data, sse},
};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Header, Query},
    payload::EventStream,
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};
use serde_json::{Value, json};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};
use uuid::Uuid;

use super::ApiTags;
use crate::{
    auth::Auth,
    error::{ApiError, ApiResult},
    services::{
        events::{self as service, Filter},
        sessions,
    },
    state::AppState,
};

pub struct EventsApi;

/// The stream of Server-Sent Events.
pub struct EventsResponse(EventStream<BoxStream<'static, Value>>);

/// One Server-Sent Event as it appears on the stream.
#[derive(Object)]
pub struct SseEvent {
    /// The event id; send it back as `Last-Event-ID` to resume after it.
    pub id: Option<String>,
    /// The event type (`task.completed`, …, or `lagged`).
    pub event: Option<String>,
    /// `{type, id, ts, data}` as JSON.
    pub data: String,
}

impl IntoResponse for EventsResponse {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl ApiResponse for EventsResponse {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "`text/event-stream`: each event's `id`, its type as the SSE `event`, \
                    and `{type, id, ts, data}` as JSON `data`. A `lagged` event means this client \
                    fell behind and events were dropped; reconnect with `Last-Event-ID` to fill \
                    the gap.",
                status: Some(200),
                status_range: None,
                // The schema describes one event, as clients and validators read the stream.
                content: vec![MetaMediaType {
                    content_type: "text/event-stream",
                    schema: SseEvent::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        SseEvent::register(registry);
    }
}

/// Each item as one SSE event: its id, its type as `event`, and the JSON as `data`.
fn sse_stream(stream: BoxStream<'static, Value>) -> EventStream<BoxStream<'static, Value>> {
    EventStream::new(stream)
        .keep_alive(Duration::from_secs(15))
        .to_event(|v| {
            let mut event = sse::Event::message(v.to_string())
                .event_type(v["type"].as_str().unwrap_or("message"));
            // A replica's own notices are not retained and carry no id to resume after.
            if let Some(id) = v["id"].as_str().filter(|id| !id.is_empty()) {
                event = event.id(id);
            }
            event
        })
}

fn wire(event: &Event) -> Value {
    json!({"type": event.kind, "id": event.id, "ts": event.ts, "data": event.data})
}

fn parse_types(raw: Option<&str>) -> Result<Option<Vec<EventType>>, ApiError> {
    let Some(raw) = raw.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    raw.split(',')
        .map(|t| {
            EventType::parse(t.trim()).ok_or_else(|| {
                ApiError::invalid_field(
                    "type",
                    format!("unknown event type {t:?}; known: {}", EventType::allowed()),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::System")]
impl EventsApi {
    /// Live events as Server-Sent Events. `type` is a comma-separated list of event types.
    #[oai(path = "/events", method = "get", operation_id = "listEvents")]
    #[allow(clippy::too_many_arguments)]
    async fn events(
        &self,
        state: Data<&AppState>,
        auth: Auth,
        #[oai(name = "type")] types: Query<Option<String>>,
        task_id: Query<Option<Uuid>>,
        execution_id: Query<Option<Uuid>>,
        /// Resume after this event id (the `Last-Event-ID` header takes precedence).
        since: Query<Option<String>>,
        #[oai(name = "Last-Event-ID")] last_event_id: Header<Option<String>>,
    ) -> ApiResult<EventsResponse> {
        let principal = auth.0;
        principal.require(Permission::TaskRead)?;
        let principal_for_end = principal.clone();
        if execution_id.0.is_some() {
            principal.require(Permission::PipelineRead)?;
        }
        let filter = Filter {
            task_id: task_id.0,
            execution_id: execution_id.0,
            types: parse_types(types.0.as_deref())?,
            agent_id: None,
        };
        let resume = match last_event_id.0.or(since.0) {
            None => None,
            Some(raw) => Some(EventId::parse(&raw).ok_or_else(|| {
                ApiError::invalid_field("since", "an event id looks like 1732400000000-0")
            })?),
        };
        service::snapshot(&state, &principal, &filter)
            .await
            .map_err(|reason| {
                if reason == service::NOT_VISIBLE {
                    ApiError::not_found("task or execution")
                } else {
                    ApiError::unavailable("database")
                }
            })?;
        let authorized = filter.task_id.is_some();

        // Live first, then the replay: an event in both is sent once (ids only grow).
        let live = BroadcastStream::new(service::subscribe(&state));
        let (replayed, truncated_at) = match resume {
            Some(after) => {
                let r = service::replay(&state, &principal, &filter, authorized, after).await?;
                (r.events, r.truncated_at)
            }
            None => (Vec::new(), None),
        };
        let mut sent_up_to = replayed
            .last()
            .and_then(|e| EventId::parse(&e.id))
            .or(resume);
        let mut history: Vec<Value> = replayed.iter().map(wire).collect();
        if let Some(at) = truncated_at {
            // More is retained than one replay returns: end here with the id to resume from
            // (EventSource reconnects with it as `Last-Event-ID`), so nothing is skipped.
            history.push(json!({"type": "replay_truncated", "id": at.to_string(), "data": {"next_since": at.to_string()}}));
            let stream = futures::stream::iter(history).boxed();
            return Ok(EventsResponse(sse_stream(stream)));
        }
        let history = futures::stream::iter(history);
        let live = live.filter_map(move |item| {
            let out = match item {
                Ok(event) => {
                    let id = EventId::parse(&event.id);
                    let repeat = matches!((sent_up_to, id), (Some(upto), Some(id)) if id <= upto);
                    if repeat
                        || !filter.matches(&event)
                        || !service::visible_to(&principal, &event, authorized)
                    {
                        None
                    } else {
                        sent_up_to = id.or(sent_up_to);
                        Some(wire(&event))
                    }
                }
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    Some(json!({"type": "lagged", "data": {"missed": n}}))
                }
            };
            std::future::ready(out)
        });
        // After a lag the stream ends (the notice carries no id), so the client reconnects with
        // the last event it really got and the retained events fill the gap.
        let live = live.scan(false, |ended, v| {
            if *ended {
                return std::future::ready(None);
            }
            *ended = v["type"] == "lagged";
            std::future::ready(Some(v))
        });
        // Logged out, expired, disabled or deregistered: the stream ends within a ping interval.
        let ended = sessions::credentials_end(
            state.0.clone(),
            principal_for_end,
            state.settings.ws_ping_interval,
        );
        let stream = history.chain(live).take_until(ended).boxed();
        Ok(EventsResponse(sse_stream(stream)))
    }
}
