//! The API's error type and its problem+json rendering (RFC 9457).
//!
//! A 4xx names what is wrong, with `errors: [{field, message}]` for validation, so a frontend can show the message
//! at the field. A 5xx is opaque to the caller and logs its whole source chain, because internal error text (SQL,
//! hostnames) is not for the outside world.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One invalid field: a JSON path such as `lead.email`, or a header or query parameter name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// A JSON path into the body (`lead.email`, `events[1]`, `lead.nickname` for an unknown field), `body` when the
    /// whole body has the wrong type, or a header or query parameter name (`Idempotency-Key`, `limit`, `cursor`,
    /// `stage`, `q`).
    pub field: String,
    /// What is wrong, for showing next to the field. Never echoes a secret.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown bearer token")]
    Unauthorized,
    #[error("the token's role lacks the `{0}` capability")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    #[error("the row is at version {current}; the If-Match precondition does not hold")]
    PreconditionFailed { current: i64 },
    #[error("{message}")]
    Conflict { field: Option<&'static str>, message: String },
    #[error("request body is not valid JSON: {0}")]
    MalformedBody(String),
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body was not received in time")]
    RequestTimeout,
    #[error("the service is not accepting requests right now")]
    Unavailable,
    #[error("too many requests in progress; retry shortly")]
    Overloaded,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// One invalid field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(error.into())
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Validation(_) => "validation",
            ApiError::PreconditionFailed { .. } => "precondition-failed",
            ApiError::Conflict { .. } => "conflict",
            ApiError::MalformedBody(_) => "malformed-body",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::RequestTimeout => "request-timeout",
            ApiError::Unavailable => "unavailable",
            ApiError::Overloaded => "overloaded",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if service_common::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::Unavailable
        } else {
            ApiError::Internal(e.into())
        }
    }
}

/// An RFC 9457 problem, sent with `content-type: application/problem+json` for every 4xx and 5xx. A 5xx is opaque:
/// its detail never carries internal error text.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `https://crm-webhook-sync.dev/problems/<slug>`, the slug being one of `unauthorized`, `forbidden`,
    /// `not-found`, `validation`, `precondition-failed`, `conflict`, `malformed-body`, `unsupported-media-type`,
    /// `payload-too-large`, `request-timeout`, `method-not-allowed`, `unavailable`, `overloaded`, `internal`.
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    pub kind: String,
    /// The status code's reason phrase (for example `Unprocessable Entity`).
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// A human-readable explanation. For a validation problem with one error: `<field>: <message>`.
    pub detail: String,
    /// Present on 422 (every invalid field at once) and on a 409 that concerns one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// Present on 412 only: the row's current version.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub current_version: Option<i64>,
}

impl ApiError {
    /// The problem this error is answered with.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let errors = match self {
            ApiError::Validation(errors) => Some(errors.clone()),
            ApiError::Conflict { field: Some(field), message } => Some(vec![FieldError::new(*field, message.clone())]),
            _ => None,
        };
        let detail = match self {
            ApiError::Validation(errors) if errors.len() == 1 => {
                format!("{}: {}", errors[0].field, errors[0].message)
            }
            other => other.to_string(),
        };
        Problem {
            kind: format!("https://crm-webhook-sync.dev/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            errors,
            current_version: match self {
                ApiError::PreconditionFailed { current } => Some(*current),
                _ => None,
            },
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable | ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = ?e, "request failed");
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
