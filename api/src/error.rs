//! The API's one error type and the error envelope of the contract:
//! `{"success": false, "error": {"code", "message", "details"?}, "request_id"}`.
//!
//! Every failure (ours, poem's routing and parsing errors, security-scheme failures) is rendered
//! here, once. 5xx bodies never carry internal text: the cause is logged with the request id.

use std::borrow::Cow;

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

/// An error as the client sees it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
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
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400: the body is not what it must be (malformed JSON, wrong content type).
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: missing, invalid or expired credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: authenticated, but the role lacks the permission.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: unknown id or route.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409: the current state forbids this.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422: well-formed, but a field is invalid; `details.field` names it.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
        .with_details(json!({ "field": field }))
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
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 503: a dependency is down; `details.dependency` names it.
    pub fn unavailable(dependency: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency_unavailable",
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
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred; quote the request id when reporting it",
        )
    }

    fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
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
            SharedError::IllegalTransition { current } => ApiError::conflict(
                "illegal_transition",
                format!("the task is {current}, which does not allow this"),
            )
            .with_details(json!({ "current_status": current })),
            SharedError::Conflict(msg) => ApiError::conflict("conflict", msg),
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
            other => ApiError::internal(other),
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
