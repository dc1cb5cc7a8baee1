//! The API's one error type and the error envelope of the contract:
//! `{"success": false, "error": {"code", "message", "details"?}, "request_id"}`.
//!
//! Every failure (ours, poem's routing and parsing errors, security-scheme failures) is rendered
//! here, once. 5xx bodies never carry internal text: the cause is logged with the request id.

use mcp_shared::Error as SharedError;
use poem::{IntoResponse, Response, error::ResponseError, http::StatusCode};
use poem_openapi::{
    ApiResponse, Object,
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};
use serde_json::{Value, json};

tokio::task_local! {
    /// The current request's id, set by the request middleware for everything the request runs.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// Declares [`ErrorCode`]: one line per code, with its HTTP status and what it means.
macro_rules! error_codes {
    ($($variant:ident = $status:ident, $code:literal, $meaning:literal;)+) => {
        /// Every `error.code` the API answers with. Integrators branch on these: a code is never
        /// renamed or reused for something else. The table in `docs/api-guide.md` is generated
        /// from this list (a test compares them).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The wire name, snake_case.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)+ }
            }

            /// The HTTP status the code is answered with.
            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)+ }
            }

            /// When it happens, in one line (for the documentation).
            pub fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)+ }
            }
        }
    };
}

error_codes! {
    InvalidJson = BAD_REQUEST, "invalid_json", "the body is not JSON, is empty, or nests too deep";
    InvalidBody = BAD_REQUEST, "invalid_body", "the body could not be read or does not have the operation's shape";
    InvalidRequest = BAD_REQUEST, "invalid_request", "the request itself is malformed: a NUL character (`%00`) in the path or query, or another request the HTTP layer refuses";
    Unauthorized = UNAUTHORIZED, "unauthorized", "no credentials, a malformed `Authorization` header, an expired, invalid or revoked token or agent key, a wrong password";
    Forbidden = FORBIDDEN, "forbidden", "authenticated, but the role lacks the permission, or an agent touching what is not its own";
    NotFound = NOT_FOUND, "not_found", "unknown id or route";
    MethodNotAllowed = METHOD_NOT_ALLOWED, "method_not_allowed", "the route exists with another method (`Allow` lists them)";
    IllegalTransition = CONFLICT, "illegal_transition", "the current state forbids it; `details.current_status` says which";
    IdempotencyKeyReused = CONFLICT, "idempotency_key_reused", "the same `idempotency_key` with a different body (`details.task_id` or `details.execution_id` names what the key made), or a task key another user or agent already used (no details)";
    NoSuitableAgent = CONFLICT, "no_suitable_agent", "assignment found no healthy agent with spare capacity";
    TaskCancelled = CONFLICT, "task_cancelled", "an agent's progress report on a task that was cancelled: stop working on it";
    AgentNameTaken = CONFLICT, "agent_name_taken", "an agent with this name is already registered";
    CapabilityExists = CONFLICT, "capability_exists", "a capability with this name is already in the catalog";
    NotReady = CONFLICT, "not_ready", "pipeline results or report asked for before the execution completed";
    PayloadPurged = CONFLICT, "payload_purged", "retention purged the task's payload, so it cannot be retried; submit it again";
    Conflict = CONFLICT, "conflict", "the request conflicts with what is stored (a name or key already in use)";
    PayloadTooLarge = PAYLOAD_TOO_LARGE, "payload_too_large", "body over `MCP_MAX_BODY_BYTES` (1 MiB; datasets: `MCP_MAX_DATASET_BYTES`)";
    BatchTooLarge = PAYLOAD_TOO_LARGE, "batch_too_large", "more than 10,000 tasks or executions in one batch";
    UnsupportedMediaType = UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "a content type the operation does not take";
    ValidationFailed = UNPROCESSABLE_ENTITY, "validation_failed", "well-formed but invalid; `details.field` names the field (`executions[3].options.pii` inside a batch)";
    RateLimited = TOO_MANY_REQUESTS, "rate_limited", "over a rate limit, or logins for a locked-out username; retry after `Retry-After` seconds";
    InternalError = INTERNAL_SERVER_ERROR, "internal_error", "a fault of ours; the log line with the same `request_id` has the cause";
    DependencyUnavailable = SERVICE_UNAVAILABLE, "dependency_unavailable", "the database, the queue backend or the artifact store is down; `details.dependency` names it; `Retry-After: 5`";
}

impl ErrorCode {
    /// The code for an error that arrives as a bare HTTP status (from the server framework).
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::CONFLICT => ErrorCode::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::ValidationFailed,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::DependencyUnavailable,
            s if s.is_server_error() => ErrorCode::InternalError,
            _ => ErrorCode::InvalidRequest,
        }
    }

    /// The documentation's table of codes, as `docs/api-guide.md` carries it.
    pub fn markdown_table() -> String {
        let mut table = String::from("| status | `error.code` | when |\n|---|---|---|\n");
        for c in Self::ALL {
            table.push_str(&format!(
                "| {} | `{}` | {} |\n",
                c.status().as_u16(),
                c.as_str(),
                c.meaning()
            ));
        }
        table
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as the client sees it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Normally the code's own status; a bare HTTP error from the framework keeps its status.
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// An error the framework raised as a bare status (no code of ours).
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            ..Self::new(ErrorCode::for_status(status), message)
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 401: missing, invalid or expired credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// 403: authenticated, but the role lacks the permission.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 404: unknown id or route.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// 409 `illegal_transition`, naming the current state.
    pub fn illegal_transition(message: impl Into<String>, current_status: &str) -> Self {
        Self::new(ErrorCode::IllegalTransition, message)
            .with_details(json!({ "current_status": current_status }))
    }

    /// 422: well-formed, but a field is invalid; `details.field` names it.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message).with_details(json!({ "field": field }))
    }

    /// The same error about an item of a list: `details.field` gets the item's path in front.
    pub fn within(mut self, prefix: &str) -> Self {
        if let Some(Value::Object(d)) = &mut self.details
            && let Some(Value::String(f)) = d.get("field").cloned()
        {
            let path = if f.starts_with('.') || f.starts_with('[') {
                format!("{prefix}{f}")
            } else {
                format!("{prefix}.{f}")
            };
            d.insert("field".into(), Value::String(path));
        }
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    /// 413.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 503: a dependency is down; `details.dependency` names it.
    pub fn unavailable(dependency: &str) -> Self {
        Self::new(
            ErrorCode::DependencyUnavailable,
            format!("{dependency} is unavailable; retry shortly"),
        )
        .with_details(json!({ "dependency": dependency }))
        .retry_after(5)
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 500: logs the cause; the client gets a generic message and the request id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::internal_unlogged()
    }

    /// 500 for an error with sources: logs the whole chain (`database error: …: …`), since the
    /// outermost message alone rarely says what failed.
    pub fn internal_error(cause: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::internal_unlogged()
    }

    fn internal_unlogged() -> Self {
        Self::new(
            ErrorCode::InternalError,
            "an internal error occurred; quote the request id when reporting it",
        )
    }

    fn body(&self) -> Value {
        let mut error = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(d) = &self.details {
            error["details"] = d.clone();
        }
        json!({ "success": false, "error": error, "request_id": current_request_id() })
    }
}

impl From<SharedError> for ApiError {
    fn from(e: SharedError) -> Self {
        match e {
            SharedError::NotFound(what) => ApiError::not_found(what),
            SharedError::IllegalTransition { current } => ApiError::illegal_transition(
                format!("the task is {current}, which does not allow this"),
                current.as_str(),
            ),
            SharedError::Conflict(msg) => ApiError::new(ErrorCode::Conflict, msg),
            SharedError::Unauthorized(msg) => ApiError::unauthorized(msg),
            SharedError::Database(ref db) if is_connection_error(db) => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::unavailable("database")
            }
            SharedError::Redis(ref r)
                if r.is_io_error() || r.is_connection_dropped() || r.is_timeout() =>
            {
                tracing::error!(error = %e, "redis unavailable");
                ApiError::unavailable("queue backend")
            }
            SharedError::Queue(_) | SharedError::Redis(_) => {
                tracing::error!(error = %e, "queue backend error");
                ApiError::unavailable("queue backend")
            }
            other => ApiError::internal_error(&other),
        }
    }
}

fn is_connection_error(e: &sea_orm::DbErr) -> bool {
    matches!(
        e,
        sea_orm::DbErr::Conn(_) | sea_orm::DbErr::ConnectionAcquire(_)
    )
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        let mut resp = poem::web::Json(self.body())
            .with_status(self.status)
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", poem::http::HeaderValue::from(secs));
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.as_response()
    }
}

/// The error envelope's schema, for the OpenAPI document.
#[derive(Object)]
pub struct ErrorEnvelope {
    /// Always false.
    pub success: bool,
    pub error: ErrorBody,
    /// The `x-request-id` of the request.
    pub request_id: String,
}

#[derive(Object)]
pub struct ErrorBody {
    /// Machine-readable, snake_case.
    pub code: String,
    /// What went wrong and how to fix it.
    pub message: String,
    /// For 422, `{"field": …}`; for 409, the current state.
    pub details: Option<Value>,
}

const ERROR_STATUSES: &[(u16, &str)] = &[
    (400, "Malformed request body"),
    (401, "Missing, invalid or expired credentials"),
    (403, "Not permitted for this role"),
    (404, "Unknown id or route"),
    (409, "State conflict"),
    (413, "Request body too large"),
    (
        415,
        "Unsupported Content-Type; send the one the operation names",
    ),
    (422, "Invalid field; details.field names it"),
    (429, "Rate limited; see Retry-After"),
    (503, "A dependency is unavailable"),
];

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: ERROR_STATUSES
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: ErrorEnvelope::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ErrorEnvelope::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_error_codes_are_the_codes() {
        let guide = include_str!("../../docs/api-guide.md");
        let start = "<!-- error codes: generated from ErrorCode in api/src/error.rs; a test keeps them equal -->\n";
        let documented = guide
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once("<!-- end of error codes -->"))
            .map(|(table, _)| table)
            .expect("docs/api-guide.md marks its error code table");
        assert_eq!(
            documented,
            ErrorCode::markdown_table(),
            "docs/api-guide.md's error codes differ from ErrorCode: replace its table with this one"
        );
    }

    #[test]
    fn codes_are_unique_snake_case_and_keep_their_status() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(
                c.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
            assert_eq!(ApiError::new(*c, "x").status, c.status());
        }
        // A bare status from the HTTP layer keeps its status and gets the generic code.
        let e = ApiError::from_status(StatusCode::LENGTH_REQUIRED, "no length");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::LENGTH_REQUIRED, ErrorCode::InvalidRequest)
        );
        assert_eq!(
            ErrorCode::for_status(StatusCode::BAD_REQUEST),
            ErrorCode::InvalidRequest
        );
    }
}
