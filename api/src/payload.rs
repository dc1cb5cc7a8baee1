//! `ApiJson<T>`: a JSON request body that tells malformed JSON (400) from a well-formed body with
//! an invalid field (422, naming the field's path), reads at most the configured number of bytes
//! (413), and still documents `T`'s schema in the OpenAPI spec.

use poem::{Request, RequestBody};
use poem_openapi::{
    impl_apirequest_for_payload,
    payload::{ParsePayload, Payload},
    registry::{MetaSchemaRef, Registry},
    types::Type,
};
use serde::de::DeserializeOwned;

use crate::{
    error::{ApiError, ErrorCode},
    state::AppState,
};

pub struct ApiJson<T>(pub T);

impl<T: Type> Payload for ApiJson<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        matches!(content_type.parse::<mime::Mime>(), Ok(m) if m.type_() == "application"
            && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json")))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// Deepest nesting accepted in a JSON body; deeper input is refused before parsing.
const MAX_DEPTH: usize = 64;

impl<T: Type + DeserializeOwned> ParsePayload for ApiJson<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let limit = request
            .data::<AppState>()
            .map(|s| s.settings.max_body_bytes)
            .unwrap_or(1024 * 1024);
        let bytes = body
            .take()?
            .into_bytes_limit(limit)
            .await
            .map_err(|e| match e {
                poem::error::ReadBodyError::PayloadTooLarge => ApiError::payload_too_large(limit),
                other => {
                    ApiError::new(ErrorCode::InvalidBody, format!("reading the body: {other}"))
                }
            })?;
        Ok(Self(parse_json(&bytes)?))
    }
}

/// The parsing rules of [`ApiJson`], usable on raw bytes.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "the request body is empty; send a JSON object",
        ));
    }
    if nesting_depth(bytes) > MAX_DEPTH {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            format!("the JSON body is nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if let Some(field) = nul_at(&value, "") {
        // PostgreSQL stores no NUL in text or JSON: refuse it here, naming where it is.
        let field = if field.is_empty() {
            "body".into()
        } else {
            field
        };
        return Err(ApiError::invalid_field(
            &field,
            format!("`{field}` contains a NUL character (\\u0000), which is not accepted"),
        ));
    }
    from_value(value)
}

/// Deserialises a JSON value, naming the invalid field's path in a 422.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        // serde reports a missing field at its parent's path; name the field itself.
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_string(),
            (".", None) => "body".to_string(),
            (parent, Some(name)) => format!("{parent}.{name}"),
            (parent, None) => parent.to_string(),
        };
        ApiError::invalid_field(&field, format!("`{field}`: {inner}"))
    })
}

/// The path (`a.b[2]`) of the first string or key holding a NUL character.
fn nul_at(v: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0').then(|| at.to_string()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, c)| nul_at(c, &format!("{at}[{i}]"))),
        Value::Object(m) => m.iter().find_map(|(k, c)| {
            let here = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                Some(here)
            } else {
                nul_at(c, &here)
            }
        }),
        _ => None,
    }
}

/// Maximum bracket nesting, ignoring brackets inside strings.
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

impl_apirequest_for_payload!(ApiJson<T>, T: Type + DeserializeOwned);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn nul_characters_are_refused_naming_the_field() {
        let e = parse_json::<Body>(br#"{"name": "a\u0000b", "inner": {"count": 1}}"#).unwrap_err();
        assert_eq!(e.status.as_u16(), 422);
        assert_eq!(e.details.unwrap()["field"], "name");
    }

    #[test]
    fn malformed_is_400_and_invalid_field_is_422_with_path() {
        let e = parse_json::<Body>(b"{not json").unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let e = parse_json::<Body>(br#"{"name": "x", "inner": {"count": -1}}"#).unwrap_err();
        assert_eq!(e.status.as_u16(), 422);
        assert_eq!(e.details.unwrap()["field"], "inner.count");
        let e = parse_json::<Body>(br#"{"inner": {"count": 1}}"#).unwrap_err();
        assert_eq!(e.status.as_u16(), 422);
        assert_eq!(e.details.unwrap()["field"], "name");
        let e = parse_json::<Body>(br#"{"name": "x", "inner": {}}"#).unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "inner.count");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(
            parse_json::<serde_json::Value>(deep.as_bytes())
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
        assert_eq!(nesting_depth(br#"{"a": "[[[[["}"#), 1);
    }
}
