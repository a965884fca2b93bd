//! Request extractors whose rejections are our own problem+json errors.
//!
//! [`ApiJson`] names the offending field for every kind of bad body: an unknown field (`lead.nickname`), a value of
//! the wrong type (`interest.occurred_at`), a missing required field. Path parameters are parsed by hand so a
//! malformed id is a plain 404 rather than axum's text rejection. [`ApiQuery`] does the same for query strings.
//!
//! Every text input is swept for NUL here, once, before any handler sees it: PostgreSQL refuses NUL in `text` and
//! `jsonb`, so a NUL that reached a query would be a 500; caught here it is a 422 naming the field.

use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The raw bytes of a JSON body (content type checked), for handlers that need them as sent. The whole body must
/// arrive within `CRM_API_BODY_TIMEOUT_MS` (else 408): a client trickling bytes would otherwise hold an admission
/// slot for as long as it likes. Authorisation extractors run before this one, so only a caller allowed to do
/// what the route does gets this far.
pub struct JsonBytes(pub axum::body::Bytes);

impl FromRequest<AppState> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        match tokio::time::timeout(state.body_read_timeout, axum::body::Bytes::from_request(req, state)).await {
            Err(_elapsed) => Err(ApiError::RequestTimeout),
            Ok(read) => read.map(JsonBytes).map_err(|_| ApiError::PayloadTooLarge(MAX_BODY_BYTES)),
        }
    }
}

/// A JSON body, deserialised with our error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserialises a JSON document, turning serde's error into a field-named validation error. A string (or key)
/// holding NUL is refused with its path, whatever type it deserialises into.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // A raw NUL byte is not valid JSON (serde reports it as malformed); an escaped one is `\u0000`. Only a body
    // with that spelling pays for the second parse that finds where it is.
    if contains_escaped_nul(bytes) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
            if let Some(path) = nul_path(&value, String::new()) {
                let field = if path.is_empty() { "body".to_owned() } else { path };
                return Err(ApiError::field(field, "must not contain NUL characters"));
            }
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(describe)?;
    // Trailing characters after the document.
    de.end().map_err(|e| ApiError::MalformedBody(format!("line {} column {}", e.line(), e.column())))?;
    Ok(value)
}

/// Whether `bytes` hold the JSON escape `\u0000`. May say yes for an escaped backslash followed by
/// `u0000`; [`nul_path`] then finds nothing.
fn contains_escaped_nul(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w[0] == b'\\' && w[1] == b'u' && &w[2..] == b"0000")
}

/// The path (`custom_fields.note`, `events[2]`) of the first string or key holding NUL, in the style of the
/// paths serde names.
fn nul_path(value: &serde_json::Value, at: String) -> Option<String> {
    let join = |at: &str, key: &str| if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
    match value {
        serde_json::Value::String(s) => s.contains('\0').then_some(at),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, item)| nul_path(item, format!("{at}[{i}]")))
        }
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(join(&at, &key.replace('\0', "\\u0000")))
            } else {
                nul_path(item, join(&at, key))
            }
        }),
        _ => None,
    }
}

fn describe(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::MalformedBody(format!("line {} column {}", inner.line(), inner.column()));
    }
    let text = inner.to_string();
    // serde's messages end with " at line L column C"; the path already says where.
    let message = text.split(" at line ").next().unwrap_or(&text).to_owned();
    // For an unknown field the path already ends with its name; for a missing one it is the parent's path.
    let join = |parent: &str, name: &str| {
        if parent.is_empty() || parent == "." {
            name.to_owned()
        } else if parent == name || parent.ends_with(&format!(".{name}")) {
            parent.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    };
    if let Some(name) = backticked(&message, "unknown field `") {
        return ApiError::Validation(vec![FieldError::new(join(&path, &name), "unknown field")]);
    }
    if let Some(name) = backticked(&message, "missing field `") {
        return ApiError::Validation(vec![FieldError::new(join(&path, &name), "is required")]);
    }
    let field = if path.is_empty() || path == "." { "body".to_owned() } else { path };
    ApiError::Validation(vec![FieldError::new(field, message)])
}

fn backticked(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest.split('`').next()?.to_owned())
}

/// A query string as name → value (the last of repeated names wins), with our error shape: a NUL in a name or a
/// value is a 422 naming the parameter.
pub struct ApiQuery(pub std::collections::HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for ApiQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or("");
        let mut query = std::collections::HashMap::new();
        for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            if name.contains('\0') {
                return Err(ApiError::field("query", "parameter names must not contain NUL characters"));
            }
            if value.contains('\0') {
                return Err(ApiError::field(name.into_owned(), "must not contain NUL characters"));
            }
            query.insert(name.into_owned(), value.into_owned());
        }
        Ok(ApiQuery(query))
    }
}

/// The path parameters of a workspace route: `ws`, and `id` where the route has one. A malformed UUID is "not
/// found", exactly like a well-formed one that does not exist.
pub struct WsPath {
    pub workspace_id: Uuid,
    pub id: Option<Uuid>,
}

impl<S: Send + Sync> FromRequestParts<S> for WsPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("workspace"))?;
        let mut workspace_id = None;
        let mut id = None;
        for (name, value) in params.iter() {
            match name {
                "ws" => workspace_id = Some(Uuid::parse_str(value).map_err(|_| ApiError::NotFound("workspace"))?),
                "id" => id = Some(Uuid::parse_str(value).map_err(|_| ApiError::NotFound("resource"))?),
                _ => {}
            }
        }
        Ok(WsPath { workspace_id: workspace_id.ok_or(ApiError::NotFound("workspace"))?, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        email: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        lead: Inner,
        count: Option<u32>,
    }

    fn field_of(err: ApiError) -> String {
        match err {
            ApiError::Validation(errors) => errors[0].field.clone(),
            other => panic!("expected validation, got {other:?}"),
        }
    }

    #[test]
    fn unknown_nested_field_is_named_with_its_path() {
        let err = parse_json::<Outer>(br#"{"lead":{"email":"a@b.c","nick":"x"}}"#).unwrap_err();
        assert_eq!(field_of(err), "lead.nick");
        let err = parse_json::<Outer>(br#"{"lead":{"email":"a@b.c"},"extra":1}"#).unwrap_err();
        assert_eq!(field_of(err), "extra");
    }

    #[test]
    fn wrong_type_and_missing_field_are_named() {
        assert_eq!(field_of(parse_json::<Outer>(br#"{"lead":{"email":5}}"#).unwrap_err()), "lead.email");
        assert_eq!(field_of(parse_json::<Outer>(br#"{"lead":{}}"#).unwrap_err()), "lead.email");
        assert_eq!(field_of(parse_json::<Outer>(br#"{"lead":{"email":"x"},"count":-1}"#).unwrap_err()), "count");
    }

    #[test]
    fn nul_in_any_string_or_key_is_named() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Free {
            custom_fields: serde_json::Map<String, serde_json::Value>,
        }
        let err = parse_json::<Free>(br#"{"custom_fields":{"x":"a\u0000b"}}"#).unwrap_err();
        assert_eq!(field_of(err), "custom_fields.x");
        let err = parse_json::<Free>(br#"{"custom_fields":{"k\u0000":1}}"#).unwrap_err();
        assert_eq!(field_of(err), "custom_fields.k\\u0000");
        let err = parse_json::<Free>(br#"{"custom_fields":{"list":["ok","\u0000"]}}"#).unwrap_err();
        assert_eq!(field_of(err), "custom_fields.list[1]");
        let err = parse_json::<Outer>(br#"{"lead":{"email":"a\u0000@b.c"}}"#).unwrap_err();
        assert_eq!(field_of(err), "lead.email");
        // An escaped backslash before `u0000` is text, not NUL.
        let ok = parse_json::<Free>(br#"{"custom_fields":{"x":"\\u0000"}}"#).unwrap();
        assert_eq!(ok.custom_fields["x"], "\\u0000");
    }

    #[test]
    fn syntax_errors_are_malformed_bodies() {
        assert!(matches!(parse_json::<Outer>(b"{\"lead\":").unwrap_err(), ApiError::MalformedBody(_)));
        assert!(matches!(parse_json::<Outer>(b"not json").unwrap_err(), ApiError::MalformedBody(_)));
    }
}
