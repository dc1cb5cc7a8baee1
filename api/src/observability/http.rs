//! HTTP instrumentation: one middleware that times every request and files it under its route
//! template (`/api/v1/tasks/{id}`, never the raw path), so label cardinality stays bounded.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use mcp_shared::otlp;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use super::Observability;

/// Routes that wait on purpose (long polls, waiting for a pipeline): their time says nothing
/// about responsiveness, so it stays out of the health window's average (they still count as
/// requests and errors, and in the latency histogram).
const WAITING_ROUTES: &[&str] = &[
    "/api/v1/agents/{id}/tasks/claim",
    "/api/v1/pipeline/agent-execute",
    "/api/v1/events",
];

/// A bounded method label.
fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The middleware: `.with(Track::new(observability))`.
pub struct Track(Arc<Observability>);

impl Track {
    pub fn new(observability: &Arc<Observability>) -> Self {
        Self(observability.clone())
    }
}

impl<E: Endpoint> Middleware<E> for Track {
    type Output = TrackEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        TrackEndpoint {
            inner: ep,
            obs: self.0.clone(),
        }
    }
}

pub struct TrackEndpoint<E> {
    inner: E,
    obs: Arc<Observability>,
}

impl<E: Endpoint> Endpoint for TrackEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let route = self.obs.routes.template(req.uri().path());
        let method = method_label(req.method());
        // With trace export on: continue the caller's trace (`traceparent`) or start one, and run
        // the request inside it so tasks it creates carry it to their workers.
        let trace = otlp::enabled().then(|| {
            let parent = req
                .header("traceparent")
                .and_then(otlp::TraceContext::parse);
            let context = parent.map_or_else(otlp::TraceContext::root, |p| p.child());
            (context, parent.map(|p| p.span_id))
        });
        let wall_start = SystemTime::now();
        let started = Instant::now();
        let call = self.inner.call(req);
        let result = match trace {
            Some((context, _)) => otlp::scope(context, call).await,
            None => call.await,
        }
        .map(IntoResponse::into_response);
        let status = match &result {
            Ok(resp) => resp.status(),
            Err(e) => e.status(),
        };
        self.obs
            .record_request(route, method, status.as_u16(), started.elapsed());
        if let Some((context, parent)) = trace {
            otlp::export(otlp::Span {
                context,
                parent,
                name: format!("{method} {route}"),
                kind: otlp::SERVER,
                start: wall_start,
                end: SystemTime::now(),
                attributes: vec![
                    ("http.request.method", method.into()),
                    ("http.route", route.into()),
                    ("http.response.status_code", status.as_u16().into()),
                ],
                error: status.is_server_error(),
            });
        }
        result
    }
}

impl Observability {
    fn record_request(&self, route: &'static str, method: &str, status: u16, elapsed: Duration) {
        self.metrics
            .observe_request(route, method, status, elapsed.as_secs_f64());
        let timed = (!WAITING_ROUTES.contains(&route)).then_some(elapsed);
        // Server errors only: a 4xx is the client's mistake, not a sign of ill health.
        self.requests.record(Instant::now(), status >= 500, timed);
    }
}
