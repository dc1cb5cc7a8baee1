//! Around every request: a request id (echoing the client's), a tracing span, the body-size
//! limit, and the mapping of every error to the envelope.

use std::{net::IpAddr, sync::Arc, time::Instant};

use poem::{
    Endpoint, IntoResponse, Request, Response,
    error::{MethodNotAllowedError, NotFoundError, ReadBodyError},
    http::{HeaderValue, StatusCode},
};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};
use tracing::Instrument;

use mcp_shared::auth::{JwtKeys, TokenKind};

use crate::{
    audit::{self, AuditLog},
    error::{ApiError, ErrorCode, REQUEST_ID},
    security::Guard,
    templates::RouteTemplates,
};

/// The longest client-supplied request id we echo; longer or odd ones are replaced.
const MAX_REQUEST_ID: usize = 128;
/// How much of an oversize body we read (and discard) before answering 413, so an ordinary
/// client that is still sending sees the answer instead of a broken connection.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

async fn discard_body(body: poem::Body, limit: usize) {
    use futures::StreamExt;
    let mut stream = std::pin::pin!(body.into_bytes_stream());
    let mut read = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.len();
        if read > limit {
            break;
        }
    }
}

/// Request body limits: datasets stream to disk and get their own, larger one.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub default: u64,
    pub dataset: u64,
}

/// The one route whose body is a dataset upload.
const DATASET_UPLOAD_PATH: &str = "/api/v1/datasets";

/// Whether the body is streamed to the artifact store (a dataset, or a pipeline shard's output
/// written by an agent): those take the dataset limit.
fn streams_to_store(path: &str) -> bool {
    path == DATASET_UPLOAD_PATH
        || path.strip_prefix("/api/v1/tasks/").is_some_and(|rest| {
            rest.ends_with("/shard/output") && !rest[..rest.len() - 13].contains('/')
        })
}

/// What the request middleware needs from the application.
#[derive(Debug, Clone)]
pub struct RequestPolicy {
    pub limits: BodyLimits,
    pub production: bool,
    pub audit: AuditLog,
    /// The longest a client may pause while sending a body.
    pub read_timeout: std::time::Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<IpAddr>>,
    /// The routes, for the `Allow` header of a 405.
    pub routes: Arc<RouteTemplates>,
    /// The per-address limit before authentication.
    pub guard: Guard,
    /// To let a request whose bearer token verifies past an address's block.
    pub jwt: Arc<JwtKeys>,
}

/// Probes answer without credentials and must keep answering: a load balancer or the kubelet
/// can share an address with a flooding client.
const PROBES: &[&str] = &["/api/v1/health", "/api/v1/ready"];

/// Whether a request from a blocked address still goes through: a probe, or a caller whose
/// bearer token verifies (a signature and expiry check in memory: no store, no database). A
/// flood of made-up credentials is refused without being looked at.
fn passes_block(req: &Request, jwt: &JwtKeys) -> bool {
    if PROBES.contains(&req.uri().path()) {
        return true;
    }
    let verifies = |token: &str| jwt.verify(token, TokenKind::Access).is_ok();
    let header = req.header("authorization").and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    });
    if header.is_some_and(verifies) {
        return true;
    }
    // A browser's WebSocket carries its token in the query.
    req.uri().path().starts_with("/ws/")
        && req.uri().query().is_some_and(|q| {
            q.split('&')
                .filter_map(|pair| pair.strip_prefix("token="))
                .any(verifies)
        })
}

pub async fn request_context<E: Endpoint>(
    next: E,
    req: Request,
    policy: RequestPolicy,
) -> poem::Result<Response> {
    let RequestPolicy {
        limits,
        production,
        audit,
        read_timeout,
        trusted_proxies,
        routes,
        guard,
        jwt,
    } = policy;
    let mut req = req;
    if req.header("content-length").is_some_and(|l| l != "0")
        || req.header("transfer-encoding").is_some()
    {
        let body = req.take_body();
        req.set_body(crate::slow_clients::with_body_timeout(body, read_timeout));
    }
    let max_body = if streams_to_store(req.uri().path()) {
        limits.dataset
    } else {
        limits.default
    };
    let request_id = req
        .header("x-request-id")
        .filter(|id| {
            !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resolved_ip = resolve_client_ip(&req, &trusted_proxies);
    let mut req = req;
    if let Some(ip) = resolved_ip {
        req.extensions_mut().insert(ClientIp(ip));
    }
    let client_ip_text = resolved_ip.map(|ip| ip.to_string());
    let record = audit::RequestRecord::new(
        audit.clone(),
        method.clone(),
        path.clone(),
        client_ip_text.clone(),
        request_id.clone(),
    );
    let span = tracing::info_span!("request", request_id = %request_id, %method, %path);
    let started = Instant::now();

    let has_encoded_nul = req.uri().path_and_query().is_some_and(|pq| {
        pq.as_str()
            .as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    });
    let declared_len = req
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok());
    let blocked = resolved_ip
        .and_then(|ip| guard.preauth_blocked(ip))
        .filter(|_| !passes_block(&req, &jwt));
    let guard_refusal = guard.clone();
    let mut resp = REQUEST_ID
        .scope(
            request_id.clone(),
            audit::scope(record.note(), async move {
                if let Some(wait) = blocked {
                    return guard_refusal.preauth_refusal(wait).into_response();
                }
                if has_encoded_nul {
                    return ApiError::new(
                        ErrorCode::InvalidRequest,
                        "the path or query contains a NUL character (%00), which is not accepted",
                    )
                    .into_response();
                }
                if declared_len.is_some_and(|len| len > max_body) {
                    discard_body(req.take_body(), DRAIN_LIMIT).await;
                    return ApiError::payload_too_large(max_body as usize).into_response();
                }
                match next.call(req).await {
                    Ok(resp) => resp.into_response(),
                    Err(err) => to_api_error(err).into_response(),
                }
            })
            .instrument(span.clone()),
        )
        .await;
    let anonymous_denial = record.anonymous_denial(resp.status());
    if anonymous_denial
        && resp.status() != StatusCode::TOO_MANY_REQUESTS
        && let Some(ip) = resolved_ip
    {
        guard.preauth_denied(ip).instrument(span.clone()).await;
    }
    if let Some(entry) = record.finish(resp.status())
        && !(anonymous_denial && audit.group_denial(client_ip_text.as_deref(), &entry))
    {
        // Before answering: a client that saw the answer can rely on the record existing.
        audit.record(entry).instrument(span.clone()).await;
    }

    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    security_headers(&mut resp, &path, production);
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Ok(v) = HeaderValue::from_str(&routes.allowed_methods(&path))
    {
        resp.headers_mut().insert("allow", v);
    }
    let status = resp.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, elapsed_ms, "request failed");
        } else {
            tracing::debug!(status, elapsed_ms, "request handled");
        }
    });
    Ok(resp)
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest address
/// in `X-Forwarded-For` that is not one (entries further left are the client's to forge).
fn resolve_client_ip(req: &Request, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.remote_addr().as_socket_addr()?.ip().to_canonical();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect::<Vec<_>>();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted.contains(ip))
            .unwrap_or(peer),
    )
}

/// The client address the request middleware resolved.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The client address of a request that passed the request middleware.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ClientIp>().map(|c| c.0)
}

/// Headers that keep browsers from misusing responses: no sniffing, no framing, no referrer,
/// and (outside the Swagger UI, which needs its scripts) a content policy that allows nothing,
/// unless the response brings a narrower one of its own (the dashboard's).
fn security_headers(resp: &mut Response, path: &str, production: bool) {
    let headers = resp.headers_mut();
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !path.starts_with("/docs") && !headers.contains_key("content-security-policy") {
        headers.insert(
            "content-security-policy",
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if production {
        headers.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
}

/// Maps any error raised below us (routing, extractors, security schemes, our handlers).
pub fn to_api_error(err: poem::Error) -> ApiError {
    if let Some(e) = err.downcast_ref::<ApiError>() {
        return e.clone();
    }
    if err.is::<NotFoundError>() {
        return ApiError::new(ErrorCode::NotFound, "no such route; see /docs for the API");
    }
    if err.is::<MethodNotAllowedError>() {
        return ApiError::new(
            ErrorCode::MethodNotAllowed,
            "this route does not accept that method; see /docs",
        );
    }
    if err.is::<AuthorizationError>() {
        return ApiError::unauthorized(
            "missing credentials: send `Authorization: Bearer <token>` or `Authorization: Agent <key>`",
        );
    }
    if let Some(e) = err.downcast_ref::<ParseParamError>() {
        return ApiError::invalid_field(e.name, format!("parameter `{}`: {}", e.name, e.reason));
    }
    if err.is::<ParsePathError>() {
        return ApiError::not_found("resource");
    }
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return ApiError::new(
            ErrorCode::InvalidBody,
            format!("the body could not be parsed: {}", e.reason),
        );
    }
    if let Some(e) = err.downcast_ref::<ContentTypeError>() {
        return ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("{e}; send `Content-Type: application/json`"),
        );
    }
    if let Some(ReadBodyError::PayloadTooLarge) = err.downcast_ref::<ReadBodyError>() {
        return ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large");
    }
    let status = err.status();
    if status.is_server_error() {
        return ApiError::internal(err);
    }
    ApiError::from_status(status, err.to_string())
}
