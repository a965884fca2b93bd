//! The REST API's routes (docs/contract.md §2). Handlers are short: extract and authorise, call the function that does
//! the work in a transaction, shape the response.

mod admin;
mod deliveries;
mod outbox;
mod rows;
mod settings;

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

/// The OpenAPI document, checked by a test against the routes below.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// The API routes; [`crate::startup`] adds the operational routes and the metrics layer. At most `max_in_flight`
/// API requests are served at once.
pub fn router(state: AppState, max_in_flight: usize) -> Router {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    Router::new()
        .route("/admin/workspaces", post(admin::create_workspace).get(admin::list_workspaces))
        .route("/admin/workspaces/{ws}/tokens", post(admin::create_token))
        .route("/admin/workspaces/{ws}/tokens/{id}", delete(admin::delete_token))
        .route("/admin/outbox/parked", get(outbox::list_parked))
        .route("/admin/outbox/parked/{seq}/redrive", post(outbox::redrive))
        .route("/v1/workspaces/{ws}/crm/interest", post(rows::record_interest))
        .route("/v1/workspaces/{ws}/crm/rows", get(rows::list))
        .route("/v1/workspaces/{ws}/crm/rows/{id}", get(rows::get).patch(rows::patch))
        .route("/v1/workspaces/{ws}/settings/crm-webhook", get(settings::get).put(settings::put))
        .route("/v1/workspaces/{ws}/settings/crm-webhook/secret", post(settings::generate_secret))
        .route("/v1/workspaces/{ws}/settings/crm-webhook/secret/previous", delete(settings::drop_previous_secret))
        .route("/v1/workspaces/{ws}/settings/crm-webhook/test", post(settings::send_test))
        .route("/v1/workspaces/{ws}/crm-webhook/deliveries", get(deliveries::list))
        .route("/v1/workspaces/{ws}/crm-webhook/deliveries/{id}", get(deliveries::get))
        .route("/v1/workspaces/{ws}/crm-webhook/deliveries/{id}/redeliver", post(deliveries::redeliver))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::NotFound("route") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(slots, admit))
}

/// Admission control: a request beyond the limit is refused at once (503, `Retry-After: 1`) rather than queued, so
/// an overload costs the client a retry instead of costing the service unbounded memory and everyone's latency.
async fn admit(
    axum::extract::State(slots): axum::extract::State<std::sync::Arc<tokio::sync::Semaphore>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match slots.try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::Overloaded.into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], OPENAPI).into_response()
}

/// The 405 answer, in our problem+json shape.
pub struct MethodNotAllowed;

impl IntoResponse for MethodNotAllowed {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": "https://crm-webhook-sync.dev/problems/method-not-allowed",
            "title": "Method Not Allowed",
            "status": 405,
            "detail": "this route does not accept that method",
        });
        let mut response = (axum::http::StatusCode::METHOD_NOT_ALLOWED, body.to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        response
    }
}

/// The route templates served, for the OpenAPI coverage test.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/admin/workspaces"),
    ("get", "/admin/workspaces"),
    ("post", "/admin/workspaces/{ws}/tokens"),
    ("delete", "/admin/workspaces/{ws}/tokens/{id}"),
    ("get", "/admin/outbox/parked"),
    ("post", "/admin/outbox/parked/{seq}/redrive"),
    ("post", "/v1/workspaces/{ws}/crm/interest"),
    ("get", "/v1/workspaces/{ws}/crm/rows"),
    ("get", "/v1/workspaces/{ws}/crm/rows/{id}"),
    ("patch", "/v1/workspaces/{ws}/crm/rows/{id}"),
    ("get", "/v1/workspaces/{ws}/settings/crm-webhook"),
    ("put", "/v1/workspaces/{ws}/settings/crm-webhook"),
    ("post", "/v1/workspaces/{ws}/settings/crm-webhook/secret"),
    ("delete", "/v1/workspaces/{ws}/settings/crm-webhook/secret/previous"),
    ("post", "/v1/workspaces/{ws}/settings/crm-webhook/test"),
    ("get", "/v1/workspaces/{ws}/crm-webhook/deliveries"),
    ("get", "/v1/workspaces/{ws}/crm-webhook/deliveries/{id}"),
    ("post", "/v1/workspaces/{ws}/crm-webhook/deliveries/{id}/redeliver"),
    ("get", "/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/"),
    ("get", "/console/{file}"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_documents_every_route_and_only_those() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = Vec::new();
        for (path, ops) in paths {
            for method in ops.as_object().expect("operations").keys() {
                if matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                    documented.push((method.clone(), path.clone()));
                }
            }
        }
        let mut served: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }
}
