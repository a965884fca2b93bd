//! The OpenAPI document, generated from the code: the router registers every route with its handler's
//! `#[utoipa::path]` description (so no route can be served undocumented, or documented unserved), request and
//! response types describe themselves, the row's schemas come from `crm-mapping`'s field list, and the errors an
//! operation can answer follow from how it is registered (its capability, whether it reads a body). Served at
//! `GET /openapi.json`. The schemas that are not a Rust type's own are in [`schemas`].

mod schemas;

pub use schemas::*;

use crate::auth::Capability;
use crate::error::{ApiError, FieldError, Problem};
use serde_json::{json, Value};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{self, Content, Ref, RefOr, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// The document's fixed parts; the paths come from the router ([`super::router`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "crm-webhook-sync API (crm-api)",
        description = include_str!("intro.md"),
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:8080", description = "Default `CRM_API_ADDR`.")),
    tags(
        (name = "admin", description = "Operator API: workspaces, their tokens, parked outbox events (`CRM_ADMIN_TOKEN`)."),
        (name = "crm-rows", description = "CRM rows: the lead-interest upsert, the list, one row, the cell edit."),
        (name = "webhook-settings", description = "The workspace's outbound CRM webhook."),
        (name = "deliveries", description = "The delivery log: what was sent, when, and with what result."),
        (name = "operations", description = "Health, readiness and metrics (no authentication)."),
        (name = "meta", description = "This document."),
        (name = "console", description = "The admin console: static files embedded in the binary. It uses only the `/v1` API, with a workspace token entered on its sign-in screen. No authentication to load the files."),
    ),
    components(
        schemas(Problem, FieldError, ValidationProblem, PreconditionFailedProblem),
        responses(
            MalformedBody, Unauthorized, Forbidden, NotFound, AdminNotFound, Conflict, PreconditionFailed,
            PayloadTooLarge, UnsupportedMediaType, ValidationFailed, Unavailable, InternalError, RequestTimeout,
        ),
    ),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some(
            "The operator token, the value of `CRM_ADMIN_TOKEN`. Only for `/admin/*`; when the variable is unset \
             the admin API is off (404)."
                .into(),
        );
        components.add_security_scheme(ADMIN_BEARER, SecurityScheme::Http(admin));
        let mut workspace = Http::new(HttpAuthScheme::Bearer);
        workspace.bearer_format = Some("crm_<base64url of 32 bytes>".into());
        workspace.description = Some(
            "A workspace token created by `POST /admin/workspaces/{ws}/tokens`. Valid only for its own workspace; \
             its role (`viewer`, `editor`, `admin`) grants capabilities."
                .into(),
        );
        components.add_security_scheme(WORKSPACE_BEARER, SecurityScheme::Http(workspace));
    }
}

const ADMIN_BEARER: &str = "adminBearer";
const WORKSPACE_BEARER: &str = "workspaceBearer";

/// The whole document: [`ApiDoc`] with `paths` (from the router) and the schemas they refer to.
pub fn document(paths: openapi::OpenApi) -> Value {
    let mut doc = ApiDoc::openapi();
    doc.merge(paths);
    let mut value = serde_json::to_value(&doc).unwrap_or(Value::Null);
    value["jsonSchemaDialect"] = json!("https://json-schema.org/draft/2020-12/schema");
    value["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    value
}

// ---------------------------------------------------------------------------------------------------------------
// How an operation is registered decides its security and the errors it can answer.

/// A route for workspace tokens whose role grants `capability`: 401, 403, 404 and the server errors, and the
/// body errors when it reads a body.
pub fn for_workspace(op: &mut Operation, capability: Capability) {
    let role = capability.minimum_role();
    op.security = Some(vec![SecurityRequirement::new::<_, _, &str>(WORKSPACE_BEARER, [])]);
    let extensions = op.extensions.get_or_insert_with(Default::default);
    extensions.insert("x-capability".into(), json!(capability.as_str()));
    extensions.insert("x-minimum-role".into(), json!(role.as_str()));
    let needs = format!("Needs capability `{}` (role `{}` or higher).", capability.as_str(), role.as_str());
    op.description = Some(match op.description.take() {
        Some(description) if !description.is_empty() => format!("{description}\n\n{needs}"),
        _ => needs,
    });
    add_errors(op, &["401", "403", "404", "500", "503"], "NotFound");
}

/// A route for the operator's `CRM_ADMIN_TOKEN`.
pub fn for_admin(op: &mut Operation) {
    op.security = Some(vec![SecurityRequirement::new::<_, _, &str>(ADMIN_BEARER, [])]);
    let takes = "Takes `CRM_ADMIN_TOKEN` only.";
    op.description = Some(match op.description.take() {
        Some(description) if !description.is_empty() => format!("{description} {takes}"),
        _ => takes.to_owned(),
    });
    add_errors(op, &["401", "404", "500", "503"], "AdminNotFound");
}

fn add_errors(op: &mut Operation, statuses: &[&str], not_found: &str) {
    let reads_body = op.request_body.is_some();
    let body_errors: &[&str] = if reads_body { &["400", "408", "413", "415", "422"] } else { &[] };
    for status in statuses.iter().chain(body_errors) {
        let name = match *status {
            "400" => "MalformedBody",
            "401" => "Unauthorized",
            "403" => "Forbidden",
            "404" => not_found,
            "408" => "RequestTimeout",
            "413" => "PayloadTooLarge",
            "415" => "UnsupportedMediaType",
            "422" => "ValidationFailed",
            "500" => "InternalError",
            _ => "Unavailable",
        };
        op.responses.responses.entry((*status).to_owned()).or_insert_with(|| Ref::from_response_name(name).into());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Error responses, each with an example rendered by the error type itself.

fn problem_response(description: &str, example: ApiError, schema: &str) -> RefOr<Response> {
    let mut content = Content::new(Some(Ref::from_schema_name(schema)));
    content.example = serde_json::to_value(example.problem()).ok();
    ResponseBuilder::new().description(description).content("application/problem+json", content).build().into()
}

macro_rules! problem_responses {
    ($($name:ident: $description:expr, $example:expr, $schema:expr;)*) => {$(
        #[doc = concat!("The `", stringify!($name), "` error response.")]
        pub struct $name;
        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), problem_response($description, $example, $schema))
            }
        }
    )*};
}

problem_responses! {
    MalformedBody: "The body is not valid JSON (or has trailing characters). Nothing was changed.",
        ApiError::MalformedBody("line 1 column 9".into()), "Problem";
    Unauthorized: "Missing, malformed or unknown bearer token (or a deleted one). Carries `WWW-Authenticate: Bearer`.",
        ApiError::Unauthorized, "Problem";
    Forbidden: "The token's role lacks the capability this route needs (see `x-capability`).",
        ApiError::Forbidden(Capability::EditRows.as_str()), "Problem";
    NotFound: "Not found. For workspace routes also when `{ws}` or `{id}` is not a UUID, and when the token belongs \
        to another workspace (exactly as if the workspace did not exist, so tokens cannot probe for workspace ids).",
        ApiError::NotFound("workspace"), "Problem";
    AdminNotFound: "The admin API is off (`CRM_ADMIN_TOKEN` unset: every `/admin` request is 404, before any token \
        check), or the workspace, token or event does not exist, or an id is not a UUID.",
        ApiError::NotFound("route"), "Problem";
    Conflict: "The change conflicts with another resource or with the resource's state; `errors` names the field \
        when one is concerned.",
        ApiError::Conflict { field: Some("email"), message: "another row of this workspace already has this email".into() },
        "Problem";
    PreconditionFailed: "`If-Match` does not match the row's current version; nothing was changed.",
        ApiError::PreconditionFailed { current: 4 }, "PreconditionFailedProblem";
    PayloadTooLarge: "The body is larger than 256 KiB. Nothing was changed.",
        ApiError::PayloadTooLarge(crate::extract::MAX_BODY_BYTES), "Problem";
    UnsupportedMediaType: "The body is not `application/json` (or another `application/*+json`).",
        ApiError::UnsupportedMediaType, "Problem";
    ValidationFailed: "The body, a header or a query parameter is invalid; `errors` names every invalid field. \
        Nothing was changed.",
        ApiError::field("lead.email", "must be an email address such as name@example.com"), "ValidationProblem";
    Unavailable: "The database is unreachable, more requests are in progress than `CRM_API_MAX_IN_FLIGHT`, or the \
        request was not answered within `CRM_API_REQUEST_TIMEOUT_MS`: retry after the `Retry-After` seconds (1).",
        ApiError::Overloaded, "Problem";
    InternalError: "An unexpected error. The body is opaque; the error is logged with its cause.",
        ApiError::internal(anyhow::anyhow!("opaque")), "Problem";
    RequestTimeout: "The body did not arrive within `CRM_API_BODY_TIMEOUT_MS`. Nothing was changed.",
        ApiError::RequestTimeout, "Problem";
}

/// A JSON Schema written as JSON, as a schema utoipa can hold.
pub(super) fn schema_of(value: Value) -> RefOr<Schema> {
    serde_json::from_value(value).unwrap_or_else(|_| RefOr::T(Schema::default()))
}

/// The 422 problem.
pub struct ValidationProblem;

impl PartialSchema for ValidationProblem {
    fn schema() -> RefOr<Schema> {
        schema_of(json!({
            "allOf": [
                {"$ref": "#/components/schemas/Problem"},
                {"type": "object", "required": ["errors"], "properties": {
                    "type": {"const": "https://crm-webhook-sync.dev/problems/validation"},
                    "status": {"const": 422},
                    "errors": {"minItems": 1}
                }}
            ],
            "description": "422: the body, a header or a query parameter is invalid. `errors` names every invalid \
                field. Unknown body fields are reported as `unknown field` at their path (for example \
                `lead.nickname`), missing required fields as `is required`, values of the wrong JSON type at their \
                path. Nothing was changed."
        }))
    }
}

impl ToSchema for ValidationProblem {}

/// The 412 problem.
pub struct PreconditionFailedProblem;

impl PartialSchema for PreconditionFailedProblem {
    fn schema() -> RefOr<Schema> {
        schema_of(json!({
            "allOf": [
                {"$ref": "#/components/schemas/Problem"},
                {"type": "object", "required": ["current_version"], "properties": {
                    "type": {"const": "https://crm-webhook-sync.dev/problems/precondition-failed"},
                    "status": {"const": 412}
                }}
            ],
            "description": "412: the `If-Match` precondition does not hold; nothing was changed. `current_version` is \
                the row's version now (its ETag is `\"<current_version>\"`)."
        }))
    }
}

impl ToSchema for PreconditionFailedProblem {}
