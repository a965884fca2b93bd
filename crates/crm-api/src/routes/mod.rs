//! The REST API's routes (docs/contract.md §2). Handlers are short: extract and authorise, call the service that
//! does the work, shape the response.
//!
//! Every route is registered here with its handler's OpenAPI description, and the document served at
//! `/openapi.json` is generated from exactly these registrations ([`docs`]), so the two cannot drift apart.

mod admin;
mod deliveries;
pub mod docs;
mod endpoint;
mod outbox;
mod recoveries;
mod rows;
mod settings;
mod stats;

use crate::auth::{can, Needs};
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, Paths};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

/// The API routes with their OpenAPI descriptions, before a state is given to them.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(admin(routes!(admin::create_workspace, admin::list_workspaces)))
        .routes(admin(routes!(admin::create_token)))
        .routes(admin(routes!(admin::delete_token)))
        .routes(admin(routes!(outbox::list_parked)))
        .routes(admin(routes!(outbox::redrive)))
        .routes(workspace::<can::RecordInterest>(routes!(rows::record_interest)))
        .routes(workspace::<can::ReadRows>(routes!(rows::list)))
        .routes(workspace::<can::ReadRows>(routes!(rows::get)))
        .routes(workspace::<can::EditRows>(routes!(rows::patch)))
        .routes(workspace::<can::ReadSettings>(routes!(settings::get)))
        .routes(workspace::<can::WriteSettings>(routes!(settings::put)))
        .routes(workspace::<can::WriteSettings>(routes!(settings::generate_secret)))
        .routes(workspace::<can::WriteSettings>(routes!(settings::drop_previous_secret)))
        .routes(workspace::<can::SendTestEvent>(routes!(settings::send_test)))
        .routes(workspace::<can::ReadDeliveries>(routes!(deliveries::list)))
        .routes(workspace::<can::ReadDeliveries>(routes!(deliveries::get)))
        .routes(workspace::<can::Redeliver>(routes!(deliveries::redeliver)))
        .routes(workspace::<can::ReadDeliveries>(routes!(endpoint::health)))
        .routes(workspace::<can::ResumeEndpoint>(routes!(endpoint::resume)))
        .routes(workspace::<can::ReadDeliveries>(routes!(stats::get)))
        .routes(workspace::<can::RecoverDeliveries>(routes!(recoveries::start)))
        .routes(workspace::<can::ReadDeliveries>(routes!(recoveries::list)))
        .routes(workspace::<can::ReadDeliveries>(routes!(recoveries::get)))
        .routes(routes!(openapi))
}

/// Every operation of a registration.
fn operations(paths: &mut Paths) -> impl Iterator<Item = &mut Operation> {
    paths.paths.values_mut().flat_map(|item| {
        [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head]
            .into_iter()
            .flatten()
    })
}

/// Registers a workspace route whose handler takes `Authorized<N>`: its document says the capability, the role,
/// the security scheme and the errors that follow from them.
fn workspace<N: Needs>((schemas, mut paths, router): UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
    operations(&mut paths).for_each(|op| docs::for_workspace(op, N::CAPABILITY));
    (schemas, paths, router)
}

/// Registers an operator route (its handler takes [`crate::auth::Admin`]).
fn admin((schemas, mut paths, router): UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
    operations(&mut paths).for_each(docs::for_admin);
    (schemas, paths, router)
}

/// The whole OpenAPI document, as served.
pub fn openapi_document() -> &'static [u8] {
    static DOCUMENT: OnceLock<Vec<u8>> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut paths = api_routes().into_openapi();
        paths.merge(service_common::health::openapi_routes().into_openapi());
        paths.merge(crate::console::routes().into_openapi());
        serde_json::to_vec_pretty(&docs::document(paths)).unwrap_or_default()
    })
}

/// This OpenAPI document
///
/// No authentication.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", operation_id = "getOpenApi",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)))]
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], openapi_document()).into_response()
}

/// The API routes; [`crate::startup`] adds the operational routes, the console and the metrics layer. At most
/// `max_in_flight` API requests are served at once, each for at most `request_timeout`.
pub fn router(state: AppState, max_in_flight: usize, request_timeout: std::time::Duration) -> Router {
    let (router, _) = api_routes().split_for_parts();
    router
        .fallback(|| async { ApiError::NotFound("route") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(Admission::new(max_in_flight, request_timeout), admit))
}

/// How many API requests are served at once, and for how long each.
#[derive(Clone)]
pub struct Admission {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    request_timeout: std::time::Duration,
}

impl Admission {
    pub fn new(max_in_flight: usize, request_timeout: std::time::Duration) -> Admission {
        Admission { slots: std::sync::Arc::new(tokio::sync::Semaphore::new(max_in_flight)), request_timeout }
    }
}

/// Admission control: a request beyond the limit is refused at once (503, `Retry-After: 1`) rather than queued, so
/// an overload costs the client a retry instead of costing the service unbounded memory and everyone's latency.
/// A request still unanswered after the request timeout (its database path hangs, say) is answered 503 and
/// dropped, and gives its slot back: without that, requests stuck until TCP gives up would hold every slot and
/// the API would refuse everything long after the database was back. A change it had handed to a writer may
/// still commit, as when a connection breaks before its answer.
pub async fn admit(
    axum::extract::State(admission): axum::extract::State<Admission>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match admission.slots.clone().try_acquire_owned() {
        Ok(_permit) => match tokio::time::timeout(admission.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!(
                    timeout_ms = admission.request_timeout.as_millis() as u64,
                    "request unanswered within the request timeout"
                );
                ApiError::Unavailable.into_response()
            }
        },
        Err(_) => ApiError::Overloaded.into_response(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The status line and headers of one HTTP/1.1 `GET path` to `app`, served on a port of its own.
    async fn get_head(app: Router, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_string(&mut response))
            .await
            .expect("an answer")
            .unwrap();
        response.split("\r\n\r\n").next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn a_request_unanswered_within_the_request_timeout_is_unavailable_and_frees_its_slot() {
        let admission = Admission::new(1, std::time::Duration::from_millis(200));
        let app = Router::new()
            .route("/hangs", axum::routing::get(std::future::pending::<&'static str>))
            .route("/answers", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(admission, admit));
        let head = get_head(app.clone(), "/hangs").await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(head.contains("application/problem+json"), "{head}");
        assert!(head.to_lowercase().contains("retry-after: 1"), "{head}");
        // The one slot is free again.
        let head = get_head(app, "/answers").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }

    fn document() -> Value {
        serde_json::from_slice(openapi_document()).expect("the document is JSON")
    }

    #[test]
    fn every_operation_is_described_and_every_schema_it_refers_to_exists() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"));
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let responses = doc["components"]["responses"].as_object().expect("responses");
        for reference in text.split("\"$ref\":\"").skip(1).filter_map(|r| r.split('"').next()) {
            let known = match reference.rsplit_once('/') {
                Some(("#/components/schemas", name)) => schemas.contains_key(name),
                Some(("#/components/responses", name)) => responses.contains_key(name),
                _ => false,
            };
            assert!(known, "dangling reference {reference}");
        }
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("operations") {
                let what = format!("{method} {path}");
                assert!(op["operationId"].is_string(), "{what} has no operationId");
                assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{what} has no summary");
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{what} has no responses");
                if path.starts_with("/v1/") {
                    assert!(op["x-capability"].is_string() && op["security"].is_array(), "{what} has no capability");
                    for status in ["401", "403", "404", "500", "503"] {
                        assert!(op["responses"][status].is_object(), "{what} does not document {status}");
                    }
                }
                if op["requestBody"].is_object() {
                    for status in ["400", "413", "415", "422"] {
                        assert!(op["responses"][status].is_object(), "{what} reads a body but omits {status}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_row_schemas_follow_the_field_list() {
        let doc = document();
        let row = &doc["components"]["schemas"]["CrmRow"];
        let properties: Vec<&str> =
            row["properties"].as_object().expect("properties").keys().map(String::as_str).collect();
        let mut fields: Vec<&str> = crm_mapping::ROW_FIELDS.to_vec();
        let mut got = properties.clone();
        fields.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, fields);
        let patch = doc["components"]["schemas"]["RowPatch"]["properties"].as_object().expect("patch properties");
        for field in crm_mapping::FIELDS {
            assert_eq!(patch.contains_key(field.name), field.editable(), "{}", field.name);
        }
    }
}
