//! Request extractors whose rejections are our own problem+json errors.
//!
//! [`ApiJson`] names the offending field for every kind of bad body: an unknown field (`lead.nickname`), a value of
//! the wrong type (`interest.occurred_at`), a missing required field. Path parameters are parsed by hand so a
//! malformed id is a plain 404 rather than axum's text rejection.

use crate::error::{ApiError, FieldError};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The raw bytes of a JSON body (content type checked), for handlers that need them as sent.
pub struct JsonBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
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
        axum::body::Bytes::from_request(req, state)
            .await
            .map(JsonBytes)
            .map_err(|_| ApiError::PayloadTooLarge(MAX_BODY_BYTES))
    }
}

/// A JSON body, deserialised with our error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserialises a JSON document, turning serde's error into a field-named validation error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(describe)?;
    // Trailing characters after the document.
    de.end().map_err(|e| ApiError::MalformedBody(format!("line {} column {}", e.line(), e.column())))?;
    Ok(value)
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
    fn syntax_errors_are_malformed_bodies() {
        assert!(matches!(parse_json::<Outer>(b"{\"lead\":").unwrap_err(), ApiError::MalformedBody(_)));
        assert!(matches!(parse_json::<Outer>(b"not json").unwrap_err(), ApiError::MalformedBody(_)));
    }
}
