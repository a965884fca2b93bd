//! The CRM row: its Rust type and its field list, both written out once, in [`crm_row!`] below.
//!
//! Every other place that knows a row's fields derives them from here rather than repeating them: the row's SQL
//! (its column list built from [`FIELDS`], its values read and written through [`crate::columns`]), the `PATCH`
//! body and the lead fields the API accepts, the JSON Schema of the row in the OpenAPI document and in
//! `proto-schemas/`, and the sheet's columns in the console. Adding a field is one line below plus a migration
//! that adds the column; tests fail where a copy that cannot be derived (a migration, a stored schema file)
//! disagrees.

use crate::columns::{Column, ColumnSink, ColumnSource};
use crate::value::FieldValue;
use crate::PipelineStage;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a field holds, and so how a request that sets it is checked and how it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Uuid,
    /// A whole number, at least `min`.
    Integer {
        min: i64,
    },
    /// Free text of at most `max_chars` characters; blank is stored as null.
    Text {
        max_chars: usize,
    },
    /// An email address (RFC 5321 length limits), unique per workspace, case-insensitively.
    Email,
    /// An `http(s)` URL of at most `max_chars` characters.
    Url {
        max_chars: usize,
    },
    /// A [`PipelineStage`].
    Stage,
    /// A non-negative decimal string such as `"1250.00"`, at most 4 fractional digits, its scale kept.
    Decimal,
    /// An ISO 4217 currency code, upper case.
    Currency,
    /// RFC 3339, UTC, microseconds.
    Timestamp,
    /// A JSON object (the workspace's custom fields), merged by a `PATCH` (RFC 7386).
    Object,
}

/// Who sets a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// The system: identity and bookkeeping.
    System,
    /// The interest upsert, from the interest it records; not editable.
    Interest,
    /// A sheet edit (`PATCH`).
    Edit,
    /// A sheet edit, and the interest upsert's lead (`lead.<name>`), which fills it only while it is empty: an
    /// inbound pipeline never overwrites what a sales person typed.
    Contact,
}

/// One field of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The JSON name, which is also the column name.
    pub name: &'static str,
    /// The sheet's column header.
    pub label: &'static str,
    pub kind: Kind,
    pub writer: Writer,
    /// Whether the value may be null (a `PATCH` may clear it).
    pub nullable: bool,
    /// What the field means, for the API's and the schemas' readers.
    pub description: &'static str,
}

impl Field {
    const fn new(kind: Kind, writer: Writer, nullable: bool, label: &'static str, description: &'static str) -> Self {
        Field { name: "", label, kind, writer, nullable, description }
    }

    const fn named(self, name: &'static str) -> Self {
        Field { name, ..self }
    }

    /// Whether a sheet edit may set it.
    pub const fn editable(&self) -> bool {
        matches!(self.writer, Writer::Edit | Writer::Contact)
    }

    /// Bookkeeping moves with every change and is not listed among a change's `changed_fields`.
    pub const fn is_bookkeeping(&self) -> bool {
        matches!(self.writer, Writer::System)
    }

    /// The longest text the field takes, for the kinds that are text.
    pub const fn max_chars(&self) -> Option<usize> {
        match self.kind {
            Kind::Text { max_chars } | Kind::Url { max_chars } => Some(max_chars),
            Kind::Email => Some(254),
            _ => None,
        }
    }
}

/// Defines [`CrmRow`], [`FIELDS`], [`ROW_FIELDS`], [`CrmRow::blank`], [`CrmRow::set`], one field's value
/// ([`CrmRow::field`], [`CrmRow::changed_fields`]) and the row's columns ([`CrmRow::read_columns`],
/// [`CrmRow::write_columns`]) from one list: each entry
/// is the struct field (with its serde attributes), its value in a new row, and its [`Field`] description, so none
/// of them can disagree with another.
macro_rules! crm_row {
    (
        blank($($param:ident : $pty:ty),* $(,)?);
        $( $(#[$attr:meta])* $name:ident : $ty:ty = $default:expr => $spec:expr ),+ $(,)?
    ) => {
        /// One CRM row as the API, the sheet, the event and the webhook payload show it.
        ///
        /// Field order is the column order of the sheet and of the table. Timestamps are RFC 3339 UTC with
        /// microsecond precision (the precision PostgreSQL stores), so a row read back from the database
        /// serialises to the same bytes.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct CrmRow {
            $( $(#[$attr])* pub $name: $ty, )+
        }

        /// Every field of a row, in column order.
        pub const FIELDS: &[Field] = &[ $( $spec.named(stringify!($name)) ),+ ];

        /// The names of every field of a row, in column order.
        pub const ROW_FIELDS: &[&str] = &[ $( stringify!($name) ),+ ];

        impl CrmRow {
            /// A new lead's row at version 1: the given identity, every other field at its initial value (null,
            /// zero, stage `new`, no custom fields).
            pub fn blank($($param: $pty),*) -> CrmRow {
                CrmRow { $( $name: $default, )+ }
            }

            /// Reads a stored row, one column per field in [`FIELDS`] order.
            pub fn read_columns<S: ColumnSource>(source: &S) -> Result<CrmRow, S::Error> {
                let mut index = 0usize;
                $( let $name = Column::read(source, index)?; index += 1; )+
                let _ = index;
                Ok(CrmRow { $( $name, )+ })
            }

            /// Writes the row to be stored, one column per field in [`FIELDS`] order.
            pub fn write_columns<'r, K: ColumnSink<'r>>(&'r self, sink: &mut K) {
                let mut index = 0usize;
                $( Column::write(&self.$name, sink, index); index += 1; )+
                let _ = index;
            }

            /// The value of the field called `name`, as [`CrmRow::to_json`] shows it; `None` for no such field.
            pub fn field(&self, name: &str) -> Option<serde_json::Value> {
                match name {
                    $( stringify!($name) => Some(FieldValue::to_value(&self.$name)), )+
                    _ => None,
                }
            }

            /// The fields whose values `other` shows differently, in [`FIELDS`] order: what comparing the two rows'
            /// [`CrmRow::to_json`] field by field would find, without building either.
            pub fn changed_fields(&self, other: &CrmRow) -> impl Iterator<Item = &'static Field> {
                let same = [ $( FieldValue::shows_as(&self.$name, &other.$name) ),+ ];
                FIELDS.iter().zip(same).filter_map(|(field, same)| (!same).then_some(field))
            }

            /// Sets the field called `name` from its JSON value (as [`CrmRow::to_json`] shows it).
            pub fn set(&mut self, name: &str, value: serde_json::Value) -> Result<(), SetFieldError> {
                match name {
                    $( stringify!($name) => {
                        self.$name = serde_json::from_value(value)
                            .map_err(|e| SetFieldError::Invalid(stringify!($name), e.to_string()))?;
                    } )+
                    _ => return Err(SetFieldError::Unknown(name.to_owned())),
                }
                Ok(())
            }
        }
    };
}

/// Why [`CrmRow::set`] did not set a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetFieldError {
    #[error("a row has no field `{0}`")]
    Unknown(String),
    #[error("`{0}` cannot hold that value: {1}")]
    Invalid(&'static str, String),
}

use Kind as K;
use Writer as W;

crm_row! {
    blank(id: Uuid, workspace_id: Uuid, email: String, at: DateTime<Utc>);
    id: Uuid = id => Field::new(K::Uuid, W::System, false, "ID", "The row id (UUIDv7: id order is creation order)."),
    workspace_id: Uuid = workspace_id =>
        Field::new(K::Uuid, W::System, false, "Workspace ID", "The workspace the row belongs to."),
    /// Starts at 1 and grows by one on every effective change. Receivers order updates by it.
    version: i64 = 1 => Field::new(K::Integer { min: 1 }, W::System, false, "Version",
        "Starts at 1, +1 on every effective change; receivers order updates of a row by it."),
    email: String = email => Field::new(K::Email, W::Edit, false, "Email",
        "Never null; unique per workspace, case-insensitively (the interest upsert finds the lead by it)."),
    first_name: Option<String> = None => Field::new(K::Text { max_chars: 200 }, W::Contact, true, "First name", ""),
    last_name: Option<String> = None => Field::new(K::Text { max_chars: 200 }, W::Contact, true, "Last name", ""),
    phone: Option<String> = None => Field::new(K::Text { max_chars: 50 }, W::Contact, true, "Phone", ""),
    company: Option<String> = None => Field::new(K::Text { max_chars: 200 }, W::Contact, true, "Company", ""),
    job_title: Option<String> = None => Field::new(K::Text { max_chars: 200 }, W::Contact, true, "Job title", ""),
    linkedin_url: Option<String> = None => Field::new(K::Url { max_chars: 2048 }, W::Contact, true, "LinkedIn URL",
        "An http(s) URL, or null."),
    campaign: Option<String> = None => Field::new(K::Text { max_chars: 200 }, W::Edit, true, "Campaign",
        "The campaign of the latest interest that named one; editable."),
    interest_type: Option<String> = None => Field::new(K::Text { max_chars: 64 }, W::Interest, true, "Interest type",
        "The latest interest's type, such as positive_reply."),
    interest_channel: Option<String> = None =>
        Field::new(K::Text { max_chars: 64 }, W::Interest, true, "Interest channel",
        "The latest interest's channel, such as email."),
    interest_message: Option<String> = None =>
        Field::new(K::Text { max_chars: 10_000 }, W::Interest, true, "Interest message",
        "The latest interest's message."),
    #[serde(default, serialize_with = "crate::timestamp::serialize_opt", deserialize_with = "crate::timestamp::deserialize_opt")]
    interest_at: Option<DateTime<Utc>> = None => Field::new(K::Timestamp, W::Interest, true, "Interest at",
        "When the latest interest happened."),
    interest_count: i64 = 0 => Field::new(K::Integer { min: 0 }, W::Interest, false, "Interests",
        "How many interests were recorded for the lead."),
    pipeline_stage: PipelineStage = PipelineStage::New =>
        Field::new(K::Stage, W::Edit, false, "Stage", "Where the lead stands in the pipeline."),
    owner: Option<String> = None => Field::new(K::Text { max_chars: 200 }, W::Edit, true, "Owner", ""),
    /// A decimal string such as `"1250.00"`, never a float, so no cent is lost on the way.
    deal_value: Option<String> = None => Field::new(K::Decimal, W::Edit, true, "Deal value",
        concat!("A non-negative decimal string (never a JSON number), keeping the scale that was entered, ",
            "e.g. \"1250.00\"; or null.")),
    /// ISO 4217 code, upper case.
    deal_currency: Option<String> = None =>
        Field::new(K::Currency, W::Edit, true, "Currency", "ISO 4217 code, upper case; or null."),
    #[serde(default, serialize_with = "crate::timestamp::serialize_opt", deserialize_with = "crate::timestamp::deserialize_opt")]
    next_step_at: Option<DateTime<Utc>> = None => Field::new(K::Timestamp, W::Edit, true, "Next step at", ""),
    notes: Option<String> = None => Field::new(K::Text { max_chars: 10_000 }, W::Edit, true, "Notes", ""),
    /// Workspace-defined fields; always a JSON object.
    custom_fields: serde_json::Map<String, serde_json::Value> = serde_json::Map::new() =>
        Field::new(K::Object, W::Edit, false, "Custom fields",
        concat!("Workspace-defined fields; always an object ({} when none). A PATCH merges into it ",
            "(RFC 7386: a key set to null is removed).")),
    #[serde(serialize_with = "crate::timestamp::serialize", deserialize_with = "crate::timestamp::deserialize")]
    created_at: DateTime<Utc> = at => Field::new(K::Timestamp, W::System, false, "Created at", ""),
    #[serde(serialize_with = "crate::timestamp::serialize", deserialize_with = "crate::timestamp::deserialize")]
    updated_at: DateTime<Utc> = at => Field::new(K::Timestamp, W::System, false, "Updated at", ""),
}

/// The field called `name`.
pub fn field(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}
