//! Schemas that are not a Rust type's own: the row's, derived from `crm-mapping`'s field list (the row, a `PATCH`
//! body, the interest upsert's lead), the stored vocabularies as enums, and the parameters several operations
//! share.

use super::schema_of;
use crm_mapping::{schema, Kind, Writer, FIELDS};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;

/// The OpenAPI component name of a row schema definition.
fn component_name(def: &str) -> &'static str {
    match def {
        "uuid" => "Uuid",
        "row_timestamp" => "Timestamp",
        "pipeline_stage" => "PipelineStage",
        "changeable_field" => "ChangeableField",
        _ => "CrmRow",
    }
}

fn row_defs() -> Map<String, Value> {
    let mut defs = schema::row_schema_defs_at("#/components/schemas/");
    // The defs refer to each other by their own names; here they live under their component names.
    let text = serde_json::to_string(&defs).unwrap_or_default();
    let renamed =
        ["uuid", "row_timestamp", "pipeline_stage", "changeable_field", "crm_row"].iter().fold(text, |text, def| {
            text.replace(
                &format!("#/components/schemas/{def}\""),
                &format!("#/components/schemas/{}\"", component_name(def)),
            )
        });
    defs = serde_json::from_str(&renamed).unwrap_or_default();
    defs
}

/// Registers the row definitions a row schema refers to.
fn push_row_defs(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    for (def, value) in row_defs() {
        schemas.push((component_name(&def).to_owned(), schema_of(value)));
    }
}

macro_rules! row_schema {
    ($(#[$doc:meta])* $name:ident as $component:literal = $build:expr) => {
        $(#[$doc])*
        pub struct $name;
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                schema_of($build)
            }
        }
        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($component)
            }
            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                push_row_defs(schemas);
            }
        }
    };
}

fn ref_to(def: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", component_name(def)) })
}

fn field_schema(field: &crm_mapping::Field) -> Value {
    schema::field_schema(field, &ref_to)
}

row_schema!(
    /// One CRM row, every field always present.
    CrmRowSchema as "CrmRow" = row_defs().remove("crm_row").unwrap_or_default()
);

row_schema!(
    /// A `PATCH` body: any subset of the editable fields.
    RowPatchSchema as "RowPatch" = {
        let mut properties = Map::new();
        for field in FIELDS.iter().filter(|f| f.editable()) {
            let mut schema = field_schema(field);
            if field.kind == Kind::Email {
                schema["description"] = json!(
                    "Not null: a row always has an email. An email address as the lead's `email` takes it \
                     (`name@example.com`: no whitespace, local part 1..64 characters, a domain with a dot); another \
                     row of the workspace with the same email (case-insensitively) is a 409 on `email`."
                );
            }
            if field.kind == Kind::Object {
                schema["description"] = json!(
                    "Merged per RFC 7386: a key set to `null` is removed, other keys are set, keys not mentioned are \
                     kept. At most 100 keys of 1–100 characters, each value at most 4 KiB as JSON, the whole object \
                     (as the edit leaves it) at most 16 KiB."
                );
            }
            properties.insert(field.name.to_owned(), schema);
        }
        json!({
            "type": "object",
            "additionalProperties": false,
            "description": "A cell edit from the sheet: any subset of the editable fields. An absent field is \
                unchanged; `null` clears a field that may be empty; text is trimmed and blank text clears the field. \
                The other fields (identity, bookkeeping and the interest fields) are not editable: sending one is a \
                422 `is not editable`; an unknown name is a 422 `unknown field`. A patch that leaves the row as it \
                is (including `{}`) returns 200 with the unchanged row, does not bump the version and emits no event. \
                Another row of the workspace with the same email (case-insensitively) is a 409 on `email`.",
            "properties": properties,
        })
    }
);

/// The lead of an interest: `email` and the contact fields.
fn lead_schema() -> Value {
    let mut lead = Map::new();
    let mut email = field_schema(crm_mapping::field("email").expect("email is a row field"));
    email["description"] = json!(
        "Required. Finds the lead case-insensitively. Must look like `name@example.com`: \
        no whitespace, local part 1..64 characters, a domain with a dot whose labels are letters, digits and inner \
        hyphens."
    );
    lead.insert("email".into(), email);
    for field in FIELDS.iter().filter(|f| f.writer == Writer::Contact) {
        lead.insert(field.name.to_owned(), field_schema(field));
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["email"],
        "description": "The lead's contact fields. Text is trimmed; blank counts as absent. On an existing row they \
            only fill fields that are empty: an edit made in the sheet is never overwritten.",
        "properties": lead,
    })
}

fn cap(name: &str) -> usize {
    crm_mapping::field(name).and_then(crm_mapping::Field::max_chars).unwrap_or(0)
}

/// The interest itself.
fn interest_detail_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["type"],
        "description": "The interest. Its fields replace the row's `interest_type`, `interest_channel`, \
            `interest_message` and `interest_at` (an absent channel or message clears the row's).",
        "properties": {
            "type": {"type": "string", "minLength": 1, "maxLength": cap("interest_type"),
                "description": "Required, not blank (for example `positive_reply`)."},
            "channel": {"type": ["string", "null"], "maxLength": cap("interest_channel"),
                "description": "For example `email`."},
            "message": {"type": ["string", "null"], "maxLength": cap("interest_message")},
            "occurred_at": {"type": ["string", "null"], "format": "date-time",
                "description": "RFC 3339 with any offset; stored in UTC, truncated to microseconds. Defaults to the \
                    time of the request."}
        }
    })
}

/// The interest upsert's body.
pub struct InterestRequestSchema;

impl PartialSchema for InterestRequestSchema {
    fn schema() -> RefOr<Schema> {
        schema_of(json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["lead", "interest"],
            "description": "The lead-interest upsert of an inbound pipeline. Text fields must not contain NUL \
                characters.",
            "properties": {
                "lead": {"$ref": "#/components/schemas/Lead"},
                "interest": {"$ref": "#/components/schemas/InterestDetail"},
                "campaign": {"type": ["string", "null"], "maxLength": cap("campaign"),
                    "description": "When given (not blank) it replaces the row's campaign; absent keeps it."}
            },
            "examples": [{
                "lead": {"email": "ada@example.com", "first_name": "Ada", "company": "Analytical Engines"},
                "interest": {"type": "positive_reply", "channel": "email", "message": "Sounds good",
                    "occurred_at": "2026-11-01T09:30:00Z"},
                "campaign": "autumn"
            }]
        }))
    }
}

impl ToSchema for InterestRequestSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("InterestRequest")
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        push_row_defs(schemas);
        schemas.push(("Lead".into(), schema_of(lead_schema())));
        schemas.push(("InterestDetail".into(), schema_of(interest_detail_schema())));
    }
}

/// A delivery's status.
pub struct DeliveryStatusSchema;

impl PartialSchema for DeliveryStatusSchema {
    fn schema() -> RefOr<Schema> {
        schema_of(json!({
            "type": "string",
            "enum": crm_db::DeliveryStatus::ALL.map(crm_db::DeliveryStatus::as_str),
            "description": "`pending` (not attempted yet), `retrying` (waiting for its next attempt), `succeeded` \
                (2xx), `failed` (terminal: a non-retryable answer, a redirect or a blocked target), `dead` (attempts \
                exhausted), `skipped` (webhook off, not configured, or the event not subscribed)."
        }))
    }
}

impl ToSchema for DeliveryStatusSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("DeliveryStatus")
    }
}

/// A bulk recovery's status.
pub struct RecoveryStatusSchema;

impl PartialSchema for RecoveryStatusSchema {
    fn schema() -> RefOr<Schema> {
        schema_of(json!({
            "type": "string",
            "enum": crate::repo::recoveries::STATUSES,
            "description": "`running` while matched deliveries are being re-queued; `completed` once every one has \
                been reached."
        }))
    }
}

impl ToSchema for RecoveryStatusSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RecoveryStatus")
    }
}

/// An event a webhook can subscribe to.
pub struct SubscribableEventSchema;

impl PartialSchema for SubscribableEventSchema {
    fn schema() -> RefOr<Schema> {
        schema_of(json!({
            "type": "string",
            "enum": crm_events::EventType::SUBSCRIBABLE.map(crm_events::EventType::as_str),
            "description": "`webhook.test` is not subscribable: a test event is sent whenever an admin asks for one."
        }))
    }
}

impl ToSchema for SubscribableEventSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SubscribableEvent")
    }
}

/// Any event type.
pub struct EventTypeSchema;

impl PartialSchema for EventTypeSchema {
    fn schema() -> RefOr<Schema> {
        let all =
            [crm_events::EventType::RowCreated, crm_events::EventType::RowUpdated, crm_events::EventType::WebhookTest];
        schema_of(json!({ "type": "string", "enum": all.map(crm_events::EventType::as_str) }))
    }
}

impl ToSchema for EventTypeSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventType")
    }
}

/// A pipeline stage (the row's own definition), for parameters.
pub struct PipelineStageSchema;

impl PartialSchema for PipelineStageSchema {
    fn schema() -> RefOr<Schema> {
        schema_of(row_defs().remove("pipeline_stage").unwrap_or_default())
    }
}

impl ToSchema for PipelineStageSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PipelineStage")
    }
}

/// A page of rows.
#[derive(ToSchema)]
#[schema(as = RowList)]
#[allow(dead_code)]
pub struct RowList {
    /// Newest first.
    rows: Vec<CrmRowSchema>,
    /// Pass it back as `?cursor=` for the next page; null on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
    /// How many rows match the filter (`stage`, `q`) in all, counted when the first page is read; null on the
    /// later pages (asked for with a `cursor`), so paging through a list counts once.
    #[schema(required = true, minimum = 0)]
    total: Option<i64>,
}

// ---------------------------------------------------------------------------------------------------------------
// Parameters shared by several operations.

/// `{ws}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct WsParam {
    /// The workspace id. A value that is not a UUID is a 404.
    ws: Uuid,
}

/// `{ws}` and `{id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct WsIdParams {
    /// The workspace id. A value that is not a UUID is a 404.
    ws: Uuid,
    /// The id of the resource in the workspace. A value that is not a UUID is a 404.
    id: Uuid,
}

/// `?limit=&cursor=`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Page size, 1 to 200; absent or empty: 50. Anything else is a 422 on `limit`.
    #[param(value_type = Option<String>, pattern = "^([1-9][0-9]?|1[0-9]{2}|200)?$")]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page; absent or empty for the first page. Opaque; a value this API did
    /// not return is a 422 on `cursor`.
    cursor: Option<String>,
}
